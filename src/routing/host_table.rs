//! The route cache's table of hosts: open addressing with linear probing
//! over one array of entries, each holding its host inline ([`HostKey`]).
//! A host's entry is where its hash points (or just after), so the entry
//! can be fetched into the CPU's cache as soon as the request's host is
//! known ([`HostTable::prefetch`]), while the rest of the head is
//! rewritten: with a thousand hosts in turn, the entry is otherwise a miss
//! to main memory on every request. Hashing is keyed (std's SipHash with a
//! random key), as a client chooses the hosts.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;

use super::host_key::HostKey;

/// The fewest slots a table that holds anything has.
const MIN_SLOTS: usize = 16;

/// A host and its value, on a cache line of its own when they fit in one
/// (the route cache's do: a 32-byte key and a 32-byte result): a lookup
/// then reads, and a prefetch fetches, one line. The hash is not kept; the
/// rare moves (growth, removal) compute it again.
#[repr(align(64))]
struct Entry<V> {
    key: HostKey,
    value: V,
}

/// A host's hash under a table's hasher, computed once per request for both
/// the prefetch and the lookup. One from another hasher finds nothing (keys
/// are compared byte for byte), never another host's entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HostHash(u64);

impl HostHash {
    pub fn of(hasher: &RandomState, host: &str) -> HostHash {
        HostHash(hasher.hash_one(host.as_bytes()))
    }
}

pub struct HostTable<V> {
    /// A power of two in length (or empty), never more than 7/8 full, so
    /// every probe meets an empty slot.
    slots: Box<[Option<Entry<V>>]>,
    len: usize,
    hasher: RandomState,
}

impl<V> Default for HostTable<V> {
    fn default() -> Self {
        HostTable::with_hasher(RandomState::new())
    }
}

impl<V> HostTable<V> {
    /// A table hashing with `hasher` (tables that share one take the same
    /// [`HostHash`]).
    pub fn with_hasher(hasher: RandomState) -> Self {
        HostTable {
            slots: Box::default(),
            len: 0,
            hasher,
        }
    }

    pub fn hash(&self, host: &str) -> HostHash {
        HostHash::of(&self.hasher, host)
    }

    pub fn len(&self) -> usize {
        self.len
    }

    fn mask(&self) -> usize {
        self.slots.len().wrapping_sub(1)
    }

    /// Where a probe for the host of `hash` starts (the table is not empty).
    fn home(&self, hash: HostHash) -> usize {
        // Truncation is the point: the low bits pick the slot.
        (hash.0 as usize) & self.mask()
    }

    /// Where the probe for `key`'s host starts (the table is not empty).
    fn home_of(&self, key: &HostKey) -> usize {
        self.home(HostHash(self.hasher.hash_one(key.as_bytes())))
    }

    /// The slot holding `host`, whose hash is `hash`, if any.
    fn find(&self, host: &str, hash: HostHash) -> Option<usize> {
        if self.slots.is_empty() {
            return None;
        }
        let host = host.as_bytes();
        let mut i = self.home(hash);
        loop {
            match &self.slots[i] {
                None => return None,
                Some(e) if e.key.as_bytes() == host => return Some(i),
                Some(_) => i = (i + 1) & self.mask(),
            }
        }
    }

    /// Asks the CPU to start fetching the line of the entry of the host of
    /// `hash` (or the entry's first line, if a value makes it longer).
    /// Nothing else happens.
    pub fn prefetch(&self, hash: HostHash) {
        if self.slots.is_empty() {
            return;
        }
        let slot = &self.slots[self.home(hash)];
        prefetch_line(slot as *const Option<Entry<V>> as *const i8);
    }

    /// `host`'s value; `hash` is its [`HostTable::hash`].
    pub fn get(&self, host: &str, hash: HostHash) -> Option<&V> {
        let i = self.find(host, hash)?;
        self.slots[i].as_ref().map(|e| &e.value)
    }

    /// Inserts or replaces `host`'s value.
    pub fn insert(&mut self, host: &str, value: V) {
        if let Some(i) = self.find(host, self.hash(host)) {
            if let Some(e) = &mut self.slots[i] {
                e.value = value;
            }
            return;
        }
        if (self.len + 1) * 8 > self.slots.len() * 7 {
            self.grow();
        }
        self.place(Entry {
            key: HostKey::new(host),
            value,
        });
        self.len += 1;
    }

    /// Puts an entry whose host is not in the table in the first free slot
    /// of its probe (there is one: the table is never full).
    fn place(&mut self, entry: Entry<V>) {
        let mut i = self.home_of(&entry.key);
        while self.slots[i].is_some() {
            i = (i + 1) & self.mask();
        }
        self.slots[i] = Some(entry);
    }

    fn grow(&mut self) {
        let slots = (self.slots.len() * 2).max(MIN_SLOTS);
        let old = std::mem::replace(&mut self.slots, (0..slots).map(|_| None).collect());
        for entry in old.into_vec().into_iter().flatten() {
            self.place(entry);
        }
    }

    pub fn remove(&mut self, host: &str) {
        if let Some(i) = self.find(host, self.hash(host)) {
            self.remove_at(i);
        }
    }

    /// Empties slot `hole`, then closes the gap by backward shift: an entry
    /// after it, in the same run of full slots, moves into it unless its
    /// probe starts after the hole (a probe for it would not pass the
    /// hole). No tombstones, so a probe ends at the first empty slot. Only
    /// entries after the hole, up to the run's end, move.
    fn remove_at(&mut self, mut hole: usize) {
        self.slots[hole] = None;
        self.len -= 1;
        let mask = self.mask();
        let mut i = hole;
        loop {
            i = (i + 1) & mask;
            let Some(entry) = &self.slots[i] else {
                return;
            };
            let home = self.home_of(&entry.key);
            // Whether `home` lies cyclically in (hole, i]: then it stays.
            let stays = if hole < i {
                hole < home && home <= i
            } else {
                hole < home || home <= i
            };
            if !stays {
                self.slots[hole] = self.slots[i].take();
                hole = i;
            }
        }
    }

    /// Keeps the entries for which `keep` (called once for each) is true,
    /// in place and in one pass.
    pub fn retain(&mut self, mut keep: impl FnMut(&HostKey, &V) -> bool) {
        // The walk starts just after an empty slot, so every run of full
        // slots lies whole within it, in order. Once an entry of a run is
        // dropped, each later entry of that run kept is placed again from
        // its probe's start: it lands in the first free slot there, which
        // is at most where it was (already walked, so no entry is asked
        // about twice), and the run has no gap a probe would stop at.
        let Some(empty) = self.slots.iter().position(Option::is_none) else {
            return; // empty table (a non-empty one always has a free slot)
        };
        let mask = self.mask();
        let mut dropped_in_run = false;
        for step in 1..=self.slots.len() {
            let i = (empty + step) & mask;
            let Some(entry) = &self.slots[i] else {
                dropped_in_run = false; // the run ended
                continue;
            };
            if !keep(&entry.key, &entry.value) {
                self.slots[i] = None;
                self.len -= 1;
                dropped_in_run = true;
            } else if dropped_in_run {
                if let Some(entry) = self.slots[i].take() {
                    self.place(entry);
                }
            }
        }
    }

    pub fn clear(&mut self) {
        self.slots = Box::default();
        self.len = 0;
    }

    #[cfg(test)]
    pub fn iter(&self) -> impl Iterator<Item = (&HostKey, &V)> {
        self.slots.iter().flatten().map(|e| (&e.key, &e.value))
    }
}

#[cfg(target_arch = "x86_64")]
fn prefetch_line(at: *const i8) {
    use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
    // SAFETY: SSE is part of x86_64, and a prefetch only hints the cache: it
    // neither reads nor faults, whatever the address.
    unsafe { _mm_prefetch::<_MM_HINT_T0>(at) }
}

#[cfg(not(target_arch = "x86_64"))]
fn prefetch_line(_at: *const i8) {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn get<'a, V>(table: &'a HostTable<V>, host: &str) -> Option<&'a V> {
        table.get(host, table.hash(host))
    }

    /// The table against std's map under a long random mix of inserts,
    /// replacements, removals and retains over a small key space (long
    /// probe runs, wrap-around, shifts across the array's end).
    #[test]
    fn behaves_as_a_map() {
        let mut table = HostTable::default();
        let mut model: HashMap<String, u32> = HashMap::new();
        let mut rng = fastrand::Rng::with_seed(7);
        for step in 0..200_000u32 {
            let host = format!("h{}.example", rng.u32(..300));
            match rng.u8(..100) {
                0..=49 => {
                    table.insert(&host, step);
                    model.insert(host, step);
                }
                50..=89 => {
                    table.remove(&host);
                    model.remove(&host);
                }
                90..=98 => assert_eq!(get(&table, &host), model.get(&host)),
                _ => {
                    let cut = rng.u32(..4);
                    table.retain(|_, v| v % 4 != cut);
                    model.retain(|_, v| *v % 4 != cut);
                }
            }
            assert_eq!(table.len(), model.len());
            if step % 1000 == 0 {
                for (k, v) in &model {
                    assert_eq!(get(&table, k), Some(v), "step {step}: {k}");
                }
                assert_eq!(table.iter().count(), model.len());
            }
        }
    }

    #[test]
    fn retain_asks_once_per_entry() {
        let mut table = HostTable::default();
        let mut rng = fastrand::Rng::with_seed(3);
        for round in 0..300 {
            for i in 0..rng.usize(..200) {
                table.insert(&format!("r{round}h{i}"), i);
            }
            let before = table.len();
            let mut asked = std::collections::HashSet::new();
            let mut kept = std::collections::HashSet::new();
            table.retain(|key, _| {
                assert!(asked.insert(key.as_bytes().to_vec()), "asked twice");
                let keep = rng.bool();
                if keep {
                    kept.insert(key.as_bytes().to_vec());
                }
                keep
            });
            assert_eq!(asked.len(), before);
            assert_eq!(table.len(), kept.len());
            assert_eq!(table.iter().count(), table.len());
            for key in &kept {
                let host = std::str::from_utf8(key).unwrap();
                assert!(get(&table, host).is_some(), "kept but not found");
            }
        }
    }

    #[test]
    fn a_route_cache_sized_entry_is_one_cache_line() {
        assert_eq!(std::mem::size_of::<Option<Entry<[u64; 4]>>>(), 64);
        assert_eq!(std::mem::align_of::<Option<Entry<[u64; 4]>>>(), 64);
    }

    #[test]
    fn stays_under_seven_eighths_full_and_empties() {
        let mut table = HostTable::default();
        for i in 0..1000 {
            table.insert(&format!("host{i}"), i);
            assert!(table.len() * 8 <= table.slots.len() * 7);
        }
        table.prefetch(table.hash("host1"));
        table.prefetch(table.hash("nowhere"));
        assert_eq!(get(&table, "host999"), Some(&999));
        table.retain(|key, _| key.as_bytes().ends_with(b"7"));
        assert_eq!(table.len(), 100);
        assert_eq!(get(&table, "host998"), None);
        assert_eq!(get(&table, "host997"), Some(&997));
        table.clear();
        assert_eq!(table.len(), 0);
        assert_eq!(get(&table, "host997"), None);
        table.prefetch(table.hash("host997"));
    }
}
