//! The opt-in per-shard route cache (`server.route_cache_ms`, 0 = off, which
//! is Hipache's behaviour: Redis is asked on every request). When on, a host's
//! lookup result (its frontend, or "no frontend") is reused for that long.
//! It is forgotten early when this shard marks one of the host's backends
//! dead, when any proxy announces a dead backend on the `dead` channel (see
//! `redis::subscriber`), and on every retry, which reads Redis afresh.
//! The number of hosts kept is bounded, so random Host headers cannot grow it.

use std::cell::RefCell;
use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::Lookup;
use crate::config::routes::{Destination, RouteTable};

/// Hosts kept per shard; past this, expired entries are swept, and if that
/// is not enough the cache starts over.
const MAX_ENTRIES: usize = 10_000;

struct Cached {
    found: Lookup,
    until: Instant,
}

pub struct RouteCache {
    ttl: Option<Duration>,
    /// One map per destination: the default one first, then one per route.
    maps: RefCell<Vec<HashMap<String, Cached>>>,
}

impl RouteCache {
    /// `ttl` None: off. `destinations`: 1 + the number of routes.
    pub fn new(ttl: Option<Duration>, destinations: usize) -> RouteCache {
        RouteCache {
            ttl,
            maps: RefCell::new((0..destinations).map(|_| HashMap::new()).collect()),
        }
    }

    pub fn enabled(&self) -> bool {
        self.ttl.is_some()
    }

    /// The slot of `dest` in `table`: 0 for the default destination.
    pub fn slot(table: &RouteTable, dest: &Destination) -> usize {
        table
            .routes
            .iter()
            .position(|r| std::ptr::eq(&r.destination, dest))
            .map_or(0, |i| i + 1)
    }

    /// A fresh cached lookup of `host`, if there is one.
    pub fn get(&self, slot: usize, host: &str) -> Option<Lookup> {
        self.ttl?;
        let maps = self.maps.borrow();
        let cached = maps.get(slot)?.get(host)?;
        (Instant::now() < cached.until).then(|| cached.found.clone())
    }

    pub fn put(&self, slot: usize, host: &str, found: &Lookup) {
        let Some(ttl) = self.ttl else { return };
        let now = Instant::now();
        let mut maps = self.maps.borrow_mut();
        let entries =
            |maps: &[HashMap<String, Cached>]| maps.iter().map(HashMap::len).sum::<usize>();
        if entries(&maps) >= MAX_ENTRIES {
            for map in maps.iter_mut() {
                map.retain(|_, c| c.until > now);
            }
            if entries(&maps) >= MAX_ENTRIES {
                maps.iter_mut().for_each(HashMap::clear);
            }
        }
        let Some(map) = maps.get_mut(slot) else {
            return;
        };
        map.insert(
            host.to_string(),
            Cached {
                found: found.clone(),
                until: crate::clock::after(now, ttl),
            },
        );
    }

    /// Forgets `host` in every destination.
    pub fn forget(&self, host: &str) {
        for map in self.maps.borrow_mut().iter_mut() {
            map.remove(host);
        }
    }

    pub fn clear(&self) {
        self.maps.borrow_mut().iter_mut().for_each(HashMap::clear);
    }

    /// Forgets expired entries (run by the shard once a second, so hosts
    /// nobody asks for again do not stay); returns how many are kept.
    pub fn sweep(&self) -> usize {
        let now = Instant::now();
        let mut maps = self.maps.borrow_mut();
        for map in maps.iter_mut() {
            map.retain(|_, c| c.until > now);
        }
        maps.iter().map(HashMap::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::Frontend;

    fn frontend(name: &str) -> Lookup {
        Lookup::Frontend(Frontend::new(name, &["http://b"], vec![]))
    }

    #[test]
    fn off_keeps_nothing_and_on_keeps_until_forgotten() {
        let off = RouteCache::new(None, 1);
        off.put(0, "a", &frontend("a"));
        assert_eq!(off.get(0, "a"), None);

        let on = RouteCache::new(Some(Duration::from_secs(60)), 2);
        on.put(0, "a", &frontend("a"));
        on.put(1, "a", &Lookup::NoFrontend);
        assert_eq!(on.get(0, "a"), Some(frontend("a")));
        assert_eq!(on.get(1, "a"), Some(Lookup::NoFrontend));
        assert_eq!(on.get(0, "b"), None);
        on.forget("a");
        assert_eq!(on.get(0, "a"), None);
        assert_eq!(on.get(1, "a"), None);
        on.put(0, "c", &frontend("c"));
        on.clear();
        assert_eq!(on.get(0, "c"), None);
    }

    #[test]
    fn entries_expire_and_the_size_is_bounded() {
        let short = RouteCache::new(Some(Duration::ZERO), 1);
        short.put(0, "a", &frontend("a"));
        assert_eq!(short.get(0, "a"), None);

        let cache = RouteCache::new(Some(Duration::from_secs(60)), 1);
        for i in 0..MAX_ENTRIES + 5 {
            cache.put(0, &format!("h{i}"), &Lookup::NoFrontend);
        }
        let kept = cache.maps.borrow()[0].len();
        assert!((1..=MAX_ENTRIES).contains(&kept), "{kept} entries");
        assert_eq!(short.sweep(), 0, "expired entries are swept");
        assert_eq!(cache.sweep(), kept);
    }
}
