//! A map with a hard cap on its entries that forgets the least recently
//! used one when full, in amortised O(1): a hash map for the entries and a
//! queue of uses, oldest first, in which a use that a later one superseded
//! is skipped when it reaches the front. For maps keyed by what the network
//! or Redis chooses (SNI names, Redis keys), which must stay bounded.

use std::borrow::Borrow;
use std::collections::{HashMap, VecDeque};
use std::hash::Hash;

#[derive(Debug)]
pub struct Lru<K, V> {
    /// Each entry with the stamp of its latest use.
    entries: HashMap<K, (V, u64)>,
    /// Uses, oldest first; stale when the entry's stamp has moved on.
    uses: VecDeque<(K, u64)>,
    cap: usize,
    clock: u64,
}

impl<K: Clone + Eq + Hash, V> Lru<K, V> {
    /// A map of at most `cap` entries (at least one).
    pub fn new(cap: usize) -> Lru<K, V> {
        Lru {
            entries: HashMap::new(),
            uses: VecDeque::new(),
            cap: cap.max(1),
            clock: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn clear(&mut self) {
        self.entries.clear();
        self.uses.clear();
    }

    /// The entry for `key`, now the most recently used.
    pub fn get<Q>(&mut self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let stamp = self.tick();
        let (owned, _) = self.entries.get_key_value(key)?;
        let owned = owned.clone();
        if let Some(entry) = self.entries.get_mut(key) {
            entry.1 = stamp;
        }
        self.uses.push_back((owned, stamp));
        self.compact();
        self.entries.get(key).map(|(v, _)| v)
    }

    /// Inserts or replaces `key`, evicting the least recently used entry
    /// when the map is full.
    pub fn insert(&mut self, key: K, value: V) {
        let stamp = self.tick();
        self.entries.insert(key.clone(), (value, stamp));
        self.uses.push_back((key, stamp));
        while self.entries.len() > self.cap {
            let Some((old, used)) = self.uses.pop_front() else {
                break;
            };
            if self.entries.get(&old).is_some_and(|(_, s)| *s == used) {
                self.entries.remove(&old);
            }
        }
        self.compact();
    }

    fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    /// Drops superseded uses once they outnumber the entries: each entry
    /// then has one use left, so the queue's length stays within twice the
    /// cap and the work per call is constant on average.
    fn compact(&mut self) {
        if self.uses.len() > 2 * self.cap + 16 {
            let entries = &self.entries;
            self.uses
                .retain(|(k, s)| entries.get(k).is_some_and(|(_, latest)| latest == s));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_the_least_recently_used() {
        let mut lru = Lru::new(2);
        lru.insert("a", 1);
        lru.insert("b", 2);
        assert_eq!(lru.get(&"a"), Some(&1)); // b is now the oldest
        lru.insert("c", 3);
        assert_eq!(lru.get(&"b"), None);
        assert_eq!(lru.get(&"a"), Some(&1));
        assert_eq!(lru.get(&"c"), Some(&3));
        lru.insert("a", 10); // replacing keeps one entry
        assert_eq!(lru.len(), 2);
        assert_eq!(lru.get(&"a"), Some(&10));
    }

    #[test]
    fn stays_bounded_under_any_traffic() {
        let mut lru = Lru::new(100);
        for i in 0..100_000u32 {
            lru.insert(i % 1000, i);
            let _ = lru.get(&(i % 7));
            assert!(lru.len() <= 100);
            assert!(lru.uses.len() <= 2 * 100 + 17, "{}", lru.uses.len());
        }
        // A key used all along was never the least recently used.
        assert!(lru.get(&3).is_some());
    }
}
