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

struct Entry<V> {
    hash: u64,
    key: HostKey,
    value: V,
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
        HostTable {
            slots: Box::default(),
            len: 0,
            hasher: RandomState::new(),
        }
    }
}

impl<V> HostTable<V> {
    pub fn len(&self) -> usize {
        self.len
    }

    fn hash(&self, host: &[u8]) -> u64 {
        self.hasher.hash_one(host)
    }

    fn mask(&self) -> usize {
        self.slots.len().wrapping_sub(1)
    }

    /// Where a hash's probe starts (the table is not empty).
    fn home(&self, hash: u64) -> usize {
        // Truncation is the point: the low bits pick the slot.
        (hash as usize) & self.mask()
    }

    /// The slot holding `host`, if any.
    fn find(&self, host: &[u8], hash: u64) -> Option<usize> {
        if self.slots.is_empty() {
            return None;
        }
        let mut i = self.home(hash);
        loop {
            match &self.slots[i] {
                None => return None,
                Some(e) if e.hash == hash && e.key.as_bytes() == host => return Some(i),
                Some(_) => i = (i + 1) & self.mask(),
            }
        }
    }

    /// Asks the CPU to start fetching `host`'s entry (an entry may straddle
    /// two cache lines: both are asked for). Nothing else happens.
    pub fn prefetch(&self, host: &str) {
        if self.slots.is_empty() {
            return;
        }
        let slot = &self.slots[self.home(self.hash(host.as_bytes()))];
        let start = slot as *const Option<Entry<V>> as *const i8;
        prefetch_line(start);
        prefetch_line(start.wrapping_add(std::mem::size_of::<Option<Entry<V>>>() - 1));
    }

    pub fn get(&self, host: &str) -> Option<&V> {
        let host = host.as_bytes();
        let i = self.find(host, self.hash(host))?;
        self.slots[i].as_ref().map(|e| &e.value)
    }

    /// Inserts or replaces `host`'s value.
    pub fn insert(&mut self, host: &str, value: V) {
        let hash = self.hash(host.as_bytes());
        if let Some(i) = self.find(host.as_bytes(), hash) {
            if let Some(e) = &mut self.slots[i] {
                e.value = value;
            }
            return;
        }
        if (self.len + 1) * 8 > self.slots.len() * 7 {
            self.grow();
        }
        self.place(Entry {
            hash,
            key: HostKey::new(host),
            value,
        });
        self.len += 1;
    }

    /// Puts an entry whose host is not in the table in the first free slot
    /// of its probe (there is one: the table is never full).
    fn place(&mut self, entry: Entry<V>) {
        let mut i = self.home(entry.hash);
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
        let host = host.as_bytes();
        let Some(mut hole) = self.find(host, self.hash(host)) else {
            return;
        };
        self.slots[hole] = None;
        self.len -= 1;
        // Backward shift: an entry after the hole, in the same run of full
        // slots, moves into it unless its probe starts after the hole (then
        // a probe for it would not pass the hole). No tombstones, so a probe
        // ends at the first empty slot.
        let mask = self.mask();
        let mut i = hole;
        loop {
            i = (i + 1) & mask;
            let Some(entry) = &self.slots[i] else {
                return;
            };
            let home = self.home(entry.hash);
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

    /// Keeps the entries for which `keep` (called once for each) is true.
    pub fn retain(&mut self, mut keep: impl FnMut(&HostKey, &V) -> bool) {
        let mut dropped = 0;
        for slot in self.slots.iter_mut() {
            if slot.as_ref().is_some_and(|e| !keep(&e.key, &e.value)) {
                *slot = None;
                dropped += 1;
            }
        }
        if dropped == 0 {
            return;
        }
        self.len -= dropped;
        // The dropped entries left holes in probe runs, which would end a
        // probe early: what is left is placed again.
        let slots = self.slots.len();
        let old = std::mem::replace(&mut self.slots, (0..slots).map(|_| None).collect());
        for entry in old.into_vec().into_iter().flatten() {
            self.place(entry);
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
                90..=98 => assert_eq!(table.get(&host), model.get(&host)),
                _ => {
                    let cut = rng.u32(..4);
                    table.retain(|_, v| v % 4 != cut);
                    model.retain(|_, v| *v % 4 != cut);
                }
            }
            assert_eq!(table.len(), model.len());
            if step % 1000 == 0 {
                for (k, v) in &model {
                    assert_eq!(table.get(k), Some(v), "step {step}: {k}");
                }
                assert_eq!(table.iter().count(), model.len());
            }
        }
    }

    #[test]
    fn stays_under_seven_eighths_full_and_empties() {
        let mut table = HostTable::default();
        for i in 0..1000 {
            table.insert(&format!("host{i}"), i);
            assert!(table.len() * 8 <= table.slots.len() * 7);
        }
        table.prefetch("host1");
        table.prefetch("nowhere");
        assert_eq!(table.get("host999"), Some(&999));
        table.retain(|key, _| key.as_bytes().ends_with(b"7"));
        assert_eq!(table.len(), 100);
        assert_eq!(table.get("host998"), None);
        assert_eq!(table.get("host997"), Some(&997));
        table.clear();
        assert_eq!(table.len(), 0);
        assert_eq!(table.get("host997"), None);
        table.prefetch("host997");
    }
}
