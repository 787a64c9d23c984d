//! The per-shard route cache: a host's lookup result (its frontend, or "no
//! frontend") kept so that the next request need not ask Redis. Three modes
//! (`server.route_cache`, README "Route cache"):
//!
//! - `tracking` (the default): Redis reports every change to the keys the
//!   lookups read (`redis::tracking`), and a result is dropped as soon as a
//!   key it was built from changes. Results are kept only while the
//!   report stream of their server is live, and only if no report arrived
//!   while they were being looked up (see [`Ticket`]): a stale result is
//!   never stored, so none is ever served.
//! - `ttl` (`route_cache_ms`): a result is reused for that long.
//! - `off`: every request asks Redis, as Hipache does.
//!
//! In every mode a result is forgotten when this shard marks one of the
//! host's backends dead and when any proxy announces a dead backend on the
//! `dead` channel; a retry always reads Redis. The number of hosts kept is
//! bounded, so random Host headers cannot grow it. The sets `path_matches`
//! conditions read are kept the same way (`path_sets`), by the same rules.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

pub use super::host_table::HostHash;
use super::host_table::HostTable;
use super::lease::Lease;
use super::path_sets::{is_keepable, Fetched, Known, PathSets};
use super::rules::PathPatterns;
use super::Lookup;
use crate::config::routes::{Destination, RouteTable};
pub use crate::config::CacheMode;
use crate::redis::tracking::Unread;
use std::collections::hash_map::RandomState;

/// Hosts kept per shard. When a new one would pass this, the entries not
/// served since the last time the bound was reached go (expired ones too),
/// so a flood of hosts asked once cannot push out the hosts in use; if
/// every entry was served since, the cache starts over.
const MAX_ENTRIES: usize = 10_000;

/// With tracking, a result is kept at most this long all the same: a
/// backstop against a report lost in a way nobody noticed.
pub const TRACKING_BACKSTOP: Duration = Duration::from_secs(60);

/// 32 bytes, so that with its host an entry fills one cache line
/// (`host_table`).
struct Cached {
    found: Lookup,
    lease: Lease,
}

/// Where a destination's lookups come from: its read server and keyspace.
struct Source {
    server: usize,
    prefix: String,
}

/// Taken before a lookup is queued, handed back to store its result: the
/// result is stored only if no change report arrived (and tracking did not
/// stop) in between. That closes the race between a reply and the report of
/// a change that reply may predate, although the two travel on different
/// connections: a reply can only be stale if Redis ran the lookup before the
/// change, and then it sent the change's report after the lookup had been
/// queued, that is after this ticket was taken; so either the report has
/// arrived by the time the result is stored (and the ticket is void), or it
/// arrives later and drops the stored result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket(u64);

/// What a request does about one `path_matches` set ([`RouteCache::path_set`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathSet {
    /// The kept set answers: one of the path's patterns is in it, or not.
    Answer(bool),
    /// Ask Redis.
    Ask,
    /// Ask Redis, and fetch the set to keep.
    AskAndFetch,
}

pub struct RouteCache {
    mode: CacheMode,
    /// One map per destination: the default one first, then one per route.
    maps: RefCell<Vec<HostTable<Cached>>>,
    /// The maps' one hasher, so that a request hashes its host once.
    hasher: RandomState,
    /// Per destination, in the same order.
    sources: Vec<Source>,
    /// Per Redis server: its change reports are being received.
    live: RefCell<Vec<bool>>,
    /// Per Redis server: whether its session holds a report not applied yet.
    unread: Vec<Rc<Unread>>,
    /// Bumped by every change report and every start or end of tracking.
    epoch: Cell<u64>,
    /// The `path_matches` sets kept whole.
    paths: RefCell<PathSets>,
}

impl RouteCache {
    pub fn new(mode: CacheMode, table: &RouteTable) -> RouteCache {
        let sources: Vec<Source> = table
            .destinations()
            .map(|d| Source {
                server: d.read,
                prefix: d.prefix.clone(),
            })
            .collect();
        let hasher = RandomState::new();
        let map = || HostTable::with_hasher(hasher.clone());
        RouteCache {
            mode,
            maps: RefCell::new(sources.iter().map(|_| map()).collect()),
            hasher,
            sources,
            live: RefCell::new(vec![false; table.servers.len()]),
            unread: table.servers.iter().map(|_| Rc::default()).collect(),
            epoch: Cell::new(0),
            paths: RefCell::new(PathSets::new(table.servers.len())),
        }
    }

    pub fn mode(&self) -> CacheMode {
        self.mode
    }

    /// Whether lookups must also ask when their keys expire: tracking keeps
    /// a result until a key it read changes, and Redis reports an expiry
    /// only once it deletes the key.
    pub fn asks_expiry(&self) -> bool {
        self.mode == CacheMode::Tracking
    }

    /// Whether a result may be kept at all (which also means a `dead`
    /// announcement must be heard).
    pub fn enabled(&self) -> bool {
        self.mode != CacheMode::Off
    }

    /// The slot of `dest` in `table`: 0 for the default destination.
    pub fn slot(table: &RouteTable, dest: &Destination) -> usize {
        table
            .routes
            .iter()
            .position(|r| std::ptr::eq(&r.destination, dest))
            .map_or(0, |i| i + 1)
    }

    /// To be taken before a lookup is queued; see [`Ticket`].
    pub fn ticket(&self) -> Ticket {
        Ticket(self.epoch.get())
    }

    fn server_of(&self, slot: usize) -> Option<usize> {
        self.sources.get(slot).map(|s| s.server)
    }

    fn is_live(&self, server: usize) -> bool {
        self.live.borrow().get(server) == Some(&true)
    }

    /// What the tracking session of `server` shares with the cache.
    pub fn unread(&self, server: usize) -> Rc<Unread> {
        self.unread.get(server).cloned().unwrap_or_default()
    }

    /// Whether what was kept from `server` may be served: always with a
    /// TTL; with tracking, while its session is live and holds no report
    /// that has arrived but not been applied (a report that reached the
    /// shard before a request is honoured for it, whichever task runs
    /// first).
    fn may_serve(&self, server: usize) -> bool {
        match self.mode {
            CacheMode::Off => false,
            CacheMode::Ttl(_) => true,
            CacheMode::Tracking => {
                self.is_live(server) && self.unread.get(server).is_some_and(|u| !u.any())
            }
        }
    }

    /// For how long a result read from `server` may be kept, if at all: a
    /// TTL's length; with tracking, only if its lookup was queued after
    /// `ticket` was taken and no report came since (a result that may
    /// predate a change is not kept), and no longer than the first key it
    /// read lives (`expires_in`: expiry is reported only once Redis deletes
    /// the key) or the backstop.
    fn keep_for(
        &self,
        server: usize,
        ticket: Ticket,
        expires_in: Option<Duration>,
    ) -> Option<Duration> {
        match self.mode {
            CacheMode::Off => None,
            CacheMode::Ttl(ttl) => Some(ttl),
            CacheMode::Tracking if ticket != self.ticket() || !self.is_live(server) => None,
            CacheMode::Tracking => {
                Some(expires_in.map_or(TRACKING_BACKSTOP, |e| e.min(TRACKING_BACKSTOP)))
            }
        }
    }

    /// `host`'s hash, for [`RouteCache::prefetch`] and [`RouteCache::get`].
    pub fn hash(&self, host: &str) -> HostHash {
        HostHash::of(&self.hasher, host)
    }

    /// A cached lookup of `host` (whose [`RouteCache::hash`] is `hash`) that
    /// may be served, if there is one.
    pub fn get(&self, slot: usize, host: &str, hash: HostHash) -> Option<Lookup> {
        if !self
            .server_of(slot)
            .is_some_and(|server| self.may_serve(server))
        {
            return None;
        }
        let maps = self.maps.borrow();
        let cached = maps.get(slot)?.get(host, hash)?;
        cached
            .lease
            .serve(crate::clock::now())
            .then(|| cached.found.clone())
    }

    /// Starts fetching into the CPU's cache where the result for the host
    /// of `hash` and the destination in `slot` would be, ahead of
    /// [`RouteCache::get`]: called as soon as a request's host is known.
    pub fn prefetch(&self, slot: usize, hash: HostHash) {
        if self.enabled() {
            if let Some(map) = self.maps.borrow().get(slot) {
                map.prefetch(hash);
            }
        }
    }

    /// Keeps a lookup's result, whose lookup was queued after `ticket` was
    /// taken (tracking ignores a result that may predate a change).
    pub fn put(&self, slot: usize, host: &str, found: &Lookup, ticket: Ticket) {
        let expires_in = match found {
            Lookup::Frontend(f) => f.expires_in(),
            Lookup::NoFrontend => None,
        };
        let Some(keep) = self
            .server_of(slot)
            .and_then(|server| self.keep_for(server, ticket, expires_in))
        else {
            return;
        };
        let now = crate::clock::now();
        let mut maps = self.maps.borrow_mut();
        let entries = |maps: &[HostTable<Cached>]| maps.iter().map(HostTable::len).sum::<usize>();
        if entries(&maps) >= MAX_ENTRIES {
            for map in maps.iter_mut() {
                map.retain(|_, c| c.lease.survives_bound(now));
            }
            if entries(&maps) >= MAX_ENTRIES {
                maps.iter_mut().for_each(HostTable::clear);
            }
        }
        let Some(map) = maps.get_mut(slot) else {
            return;
        };
        map.insert(
            host,
            Cached {
                found: found.clone(),
                lease: Lease::until(crate::clock::after(now, keep)),
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
        self.bump();
        self.maps.borrow_mut().iter_mut().for_each(HostTable::clear);
        self.paths.borrow_mut().clear();
    }

    /// What a request does about the `path_matches` set `key` on `server`:
    /// take the kept set's answer; or ask Redis, and also fetch the set to
    /// keep it when it could be kept (not while tracking is down, nor once
    /// a report came after `ticket`, nor for a set known to be too large).
    pub fn path_set(
        &self,
        server: usize,
        key: &str,
        patterns: &PathPatterns,
        ticket: Ticket,
    ) -> PathSet {
        if !self.may_serve(server) {
            return PathSet::Ask;
        }
        match self
            .paths
            .borrow()
            .lookup(server, key, patterns, crate::clock::now())
        {
            Known::Answer(answer) => PathSet::Answer(answer),
            Known::TooLarge => PathSet::Ask,
            Known::Unknown if is_keepable(key) && self.keep_for(server, ticket, None).is_some() => {
                PathSet::AskAndFetch
            }
            Known::Unknown => PathSet::Ask,
        }
    }

    /// Keeps the `path_matches` set `key` of `server` (or that it is too
    /// large), fetched after `ticket` was taken (as [`RouteCache::put`]).
    pub fn put_path_set(
        &self,
        server: usize,
        key: &str,
        members: Fetched,
        expires_in: Option<Duration>,
        ticket: Ticket,
    ) {
        if let Some(keep) = self.keep_for(server, ticket, expires_in) {
            let now = crate::clock::now();
            let until = crate::clock::after(now, keep);
            self.paths
                .borrow_mut()
                .put(server, key, members, until, now);
        }
    }

    fn bump(&self) {
        self.epoch.set(self.epoch.get().wrapping_add(1));
    }

    /// Tracking on `server` started (`true`) or stopped: either way what
    /// was cached from it is dropped, since changes may have gone
    /// unreported, and nothing is kept while it is stopped.
    pub fn set_live(&self, server: usize, live: bool) {
        if let Some(l) = self.live.borrow_mut().get_mut(server) {
            *l = live;
        }
        self.flush(server);
    }

    /// Drops everything cached from `server`.
    pub fn flush(&self, server: usize) {
        self.bump();
        self.paths.borrow_mut().flush(server);
        let mut maps = self.maps.borrow_mut();
        for (source, map) in self.sources.iter().zip(maps.iter_mut()) {
            if source.server == server {
                map.clear();
            }
        }
    }

    /// `key` changed on `server`: drops every result built from it. A
    /// lookup of host `h` reads `frontend:h`, `frontend:*.<suffix>` for its
    /// suffixes, `frontend:*` and `dead:h` (README, Redis schema).
    pub fn changed(&self, server: usize, key: &[u8]) {
        self.bump();
        let Ok(key) = std::str::from_utf8(key) else {
            return; // no host of ours has such a name
        };
        // Any key may be a `path_matches` set: their prefixes are free.
        self.paths.borrow_mut().remove(server, key);
        let mut maps = self.maps.borrow_mut();
        for (source, map) in self.sources.iter().zip(maps.iter_mut()) {
            if source.server != server {
                continue;
            }
            let Some(rest) = key.strip_prefix(source.prefix.as_str()) else {
                continue;
            };
            if let Some(name) = rest.strip_prefix("frontend:") {
                if name == "*" {
                    map.clear();
                } else if let Some(suffix) = name.strip_prefix('*') {
                    // `*.example.com` serves hosts under it, not itself.
                    map.retain(|host, _| !host.as_bytes().ends_with(suffix.as_bytes()));
                } else {
                    map.remove(name);
                }
            } else if let Some(host) = rest.strip_prefix("dead:") {
                map.remove(host);
            }
        }
    }

    /// Forgets expired entries (run by the shard once a second, so hosts
    /// nobody asks for again do not stay); returns how many are kept.
    pub fn sweep(&self) -> usize {
        let now = crate::clock::now();
        self.paths.borrow_mut().sweep(now);
        let mut maps = self.maps.borrow_mut();
        for map in maps.iter_mut() {
            map.retain(|_, c| c.lease.is_fresh(now));
        }
        maps.iter().map(HostTable::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::routes::{Condition, Route};
    use crate::redis::url::RedisUrl;
    use crate::routing::Frontend;
    use std::os::unix::net::UnixStream;

    #[test]
    fn an_entry_is_no_larger_than_the_table_lays_out_per_line() {
        assert!(std::mem::size_of::<Cached>() <= 32);
    }

    impl RouteCache {
        fn cached(&self, slot: usize, host: &str) -> Option<Lookup> {
            self.get(slot, host, self.hash(host))
        }
    }

    fn frontend(name: &str) -> Lookup {
        Lookup::Frontend(Frontend::new(name, &["http://b"], vec![]))
    }

    fn destination(read: usize, prefix: &str) -> Destination {
        Destination {
            read,
            write: read,
            prefix: prefix.into(),
        }
    }

    /// Two servers; the default destination reads server 0 with no prefix,
    /// the one route reads server 1 under `p:`.
    fn table() -> RouteTable {
        let url = |s: &str| RedisUrl::parse(s).unwrap();
        RouteTable {
            servers: vec![url("redis://127.0.0.1:1"), url("redis://127.0.0.1:2")],
            routes: vec![Route {
                condition: Condition::PathPrefix("/".into()),
                destination: destination(1, "p:"),
            }],
            default: destination(0, ""),
        }
    }

    fn cache(mode: CacheMode) -> RouteCache {
        RouteCache::new(mode, &table())
    }

    type Pair = (UnixStream, UnixStream);

    /// A stand-in for each server's tracking socket (the first of each
    /// pair): quiet until the test writes to the second. Watched by an
    /// arrival watch, as on a box with io_uring.
    fn sockets(c: &RouteCache) -> Vec<Pair> {
        sockets_watched(c, true)
    }

    /// `sockets`, with or without the arrival watch (without: peeked).
    fn sockets_watched(c: &RouteCache, with_arrival_watch: bool) -> Vec<Pair> {
        use std::os::fd::AsRawFd;
        (0..2)
            .map(|server| {
                let pair = UnixStream::pair().unwrap();
                c.unread(server)
                    .watch_for_test(pair.0.as_raw_fd(), with_arrival_watch);
                pair
            })
            .collect()
    }

    #[test]
    fn off_keeps_nothing_and_ttl_keeps_until_forgotten() {
        let off = cache(CacheMode::Off);
        off.put(0, "a", &frontend("a"), off.ticket());
        assert_eq!(off.cached(0, "a"), None);

        let on = cache(CacheMode::Ttl(Duration::from_secs(60)));
        on.put(0, "a", &frontend("a"), on.ticket());
        on.put(1, "a", &Lookup::NoFrontend, on.ticket());
        assert_eq!(on.cached(0, "a"), Some(frontend("a")));
        assert_eq!(on.cached(1, "a"), Some(Lookup::NoFrontend));
        assert_eq!(on.cached(0, "b"), None);
        on.forget("a");
        assert_eq!(on.cached(0, "a"), None);
        assert_eq!(on.cached(1, "a"), None);
        on.put(0, "c", &frontend("c"), on.ticket());
        on.clear();
        assert_eq!(on.cached(0, "c"), None);
    }

    #[test]
    fn entries_expire_and_the_size_is_bounded() {
        let short = cache(CacheMode::Ttl(Duration::ZERO));
        short.put(0, "a", &frontend("a"), short.ticket());
        assert_eq!(short.cached(0, "a"), None);

        let cache = cache(CacheMode::Ttl(Duration::from_secs(60)));
        for i in 0..MAX_ENTRIES + 5 {
            cache.put(0, &format!("h{i}"), &Lookup::NoFrontend, cache.ticket());
        }
        let kept = cache.maps.borrow()[0].len();
        assert!((1..=MAX_ENTRIES).contains(&kept), "{kept} entries");
        assert_eq!(short.sweep(), 0, "expired entries are swept");
        assert_eq!(cache.sweep(), kept);
    }

    #[test]
    fn a_flood_of_new_hosts_keeps_the_hosts_in_use() {
        let cache = cache(CacheMode::Ttl(Duration::from_secs(60)));
        let put = |host: &str| cache.put(0, host, &frontend(host), cache.ticket());
        put("real.example");
        for round in 0..3 {
            // The real host is asked between floods, as live traffic is.
            assert!(cache.cached(0, "real.example").is_some(), "round {round}");
            for i in 0..MAX_ENTRIES {
                put(&format!("flood{round}-{i}"));
                assert!(cache.maps.borrow()[0].len() <= MAX_ENTRIES);
            }
        }
        assert!(cache.cached(0, "real.example").is_some());
        // Asked before this flood reached the bound: kept through it.
        for i in 0..MAX_ENTRIES {
            put(&format!("again-{i}"));
        }
        // Not asked since: gone when the next flood reaches the bound.
        for i in 0..MAX_ENTRIES {
            put(&format!("more-{i}"));
        }
        assert_eq!(cache.cached(0, "real.example"), None);
    }

    #[test]
    fn tracking_keeps_results_only_while_live() {
        let c = cache(CacheMode::Tracking);
        let _sockets = sockets(&c);
        c.put(0, "a", &frontend("a"), c.ticket());
        assert_eq!(c.cached(0, "a"), None, "not live yet");
        c.set_live(0, true);
        c.put(0, "a", &frontend("a"), c.ticket());
        c.put(1, "a", &frontend("a"), c.ticket());
        assert_eq!(c.cached(0, "a"), Some(frontend("a")));
        assert_eq!(c.cached(1, "a"), None, "server 1 is not tracked");
        c.set_live(0, false);
        assert_eq!(c.cached(0, "a"), None);
        c.set_live(0, true);
        assert_eq!(c.cached(0, "a"), None, "dropped when tracking stopped");
    }

    #[test]
    fn a_report_during_a_lookup_voids_its_ticket() {
        let c = cache(CacheMode::Tracking);
        let _sockets = sockets(&c);
        c.set_live(0, true);
        let ticket = c.ticket();
        c.changed(0, b"frontend:unrelated");
        c.put(0, "a", &frontend("a"), ticket);
        assert_eq!(c.cached(0, "a"), None);
        let ticket = c.ticket();
        c.put(0, "a", &frontend("a"), ticket);
        assert_eq!(c.cached(0, "a"), Some(frontend("a")));
    }

    #[test]
    fn a_result_is_kept_no_longer_than_its_keys_live() {
        let c = cache(CacheMode::Tracking);
        let _sockets = sockets(&c);
        c.set_live(0, true);
        let expiring = |after: Duration| {
            let Lookup::Frontend(f) = frontend("a") else {
                unreachable!()
            };
            Lookup::Frontend(f.expiring(after))
        };
        c.put(0, "gone", &expiring(Duration::ZERO), c.ticket());
        assert_eq!(c.cached(0, "gone"), None);
        c.put(0, "later", &expiring(Duration::from_secs(30)), c.ticket());
        assert!(c.cached(0, "later").is_some());
        let until = |host: &str| {
            c.maps.borrow()[0]
                .get(host, c.hash(host))
                .unwrap()
                .lease
                .expires()
        };
        let now = crate::clock::now();
        assert!(until("later") <= now + Duration::from_secs(30));
        c.put(0, "far", &expiring(Duration::from_secs(3600)), c.ticket());
        assert!(
            until("far") <= crate::clock::now() + TRACKING_BACKSTOP,
            "capped by the backstop"
        );
    }

    #[test]
    fn a_report_waiting_in_the_socket_stops_the_cache_serving() {
        use std::io::Write;
        for with_arrival_watch in [true, false] {
            let c = cache(CacheMode::Tracking);
            let mut sockets = sockets_watched(&c, with_arrival_watch);
            c.set_live(0, true);
            c.put(0, "a", &frontend("a"), c.ticket());
            assert_eq!(c.cached(0, "a"), Some(frontend("a")));
            sockets[0].1.write_all(b">").unwrap();
            assert_eq!(
                c.cached(0, "a"),
                None,
                "a report is waiting to be read (watched: {with_arrival_watch})"
            );
        }
    }

    #[test]
    fn a_change_drops_exactly_the_results_built_from_the_key() {
        let c = cache(CacheMode::Tracking);
        c.set_live(0, true);
        c.set_live(1, true);
        let fill = || {
            for host in ["a.example.com", "b.example.com", "example.com", "other.org"] {
                c.put(0, host, &frontend(host), c.ticket());
                c.put(1, host, &frontend(host), c.ticket());
            }
        };
        let kept = |slot: usize| -> Vec<String> {
            let mut hosts: Vec<String> = c.maps.borrow()[slot]
                .iter()
                .map(|(k, _)| String::from_utf8_lossy(k.as_bytes()).into_owned())
                .collect();
            hosts.sort();
            hosts
        };
        fill();
        c.changed(0, b"frontend:a.example.com");
        assert_eq!(kept(0), ["b.example.com", "example.com", "other.org"]);
        assert_eq!(kept(1).len(), 4, "another server's keys are not these");
        c.changed(0, b"dead:other.org");
        assert_eq!(kept(0), ["b.example.com", "example.com"]);
        fill();
        c.changed(0, b"frontend:*.example.com");
        assert_eq!(kept(0), ["example.com", "other.org"]);
        c.changed(0, b"frontend:*");
        assert!(kept(0).is_empty());
        // Keys outside the keyspace's prefix, or of another kind, change nothing.
        c.changed(1, b"frontend:other.org");
        c.changed(1, b"p:tls:other.org");
        assert_eq!(kept(1).len(), 4);
        c.changed(1, b"p:frontend:other.org");
        assert_eq!(kept(1).len(), 3);
        c.flush(1);
        assert!(kept(1).is_empty());
    }
}
