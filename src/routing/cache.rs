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
//! bounded, so random Host headers cannot grow it.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use super::Lookup;
use crate::config::routes::{Destination, RouteTable};
pub use crate::config::CacheMode;
use crate::redis::tracking::Unread;

/// Hosts kept per shard; past this, expired entries are swept, and if that
/// is not enough the cache starts over.
const MAX_ENTRIES: usize = 10_000;

/// With tracking, a result is kept at most this long all the same: a
/// backstop against a report lost in a way nobody noticed.
pub const TRACKING_BACKSTOP: Duration = Duration::from_secs(60);

struct Cached {
    found: Lookup,
    until: Instant,
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

pub struct RouteCache {
    mode: CacheMode,
    /// One map per destination: the default one first, then one per route.
    maps: RefCell<Vec<HashMap<String, Cached>>>,
    /// Per destination, in the same order.
    sources: Vec<Source>,
    /// Per Redis server: its change reports are being received.
    live: RefCell<Vec<bool>>,
    /// Per Redis server: whether its session holds a report not applied yet.
    unread: Vec<Rc<Unread>>,
    /// Bumped by every change report and every start or end of tracking.
    epoch: Cell<u64>,
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
        RouteCache {
            mode,
            maps: RefCell::new(sources.iter().map(|_| HashMap::new()).collect()),
            sources,
            live: RefCell::new(vec![false; table.servers.len()]),
            unread: table.servers.iter().map(|_| Rc::default()).collect(),
            epoch: Cell::new(0),
        }
    }

    pub fn mode(&self) -> CacheMode {
        self.mode
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

    fn slot_is_live(&self, slot: usize) -> bool {
        self.sources
            .get(slot)
            .is_some_and(|s| self.live.borrow().get(s.server) == Some(&true))
    }

    /// What the tracking session of `server` shares with the cache.
    pub fn unread(&self, server: usize) -> Rc<Unread> {
        self.unread.get(server).cloned().unwrap_or_default()
    }

    /// With tracking: the slot's session is live and holds no report that
    /// has arrived but not been applied (a report that reached the shard
    /// before a request is honoured for it, whichever task runs first).
    fn may_serve(&self, slot: usize) -> bool {
        self.slot_is_live(slot)
            && self
                .sources
                .get(slot)
                .and_then(|s| self.unread.get(s.server))
                .is_some_and(|unread| !unread.any())
    }

    /// A cached lookup of `host` that may be served, if there is one.
    pub fn get(&self, slot: usize, host: &str) -> Option<Lookup> {
        match self.mode {
            CacheMode::Off => return None,
            CacheMode::Tracking if !self.may_serve(slot) => return None,
            _ => {}
        }
        let maps = self.maps.borrow();
        let cached = maps.get(slot)?.get(host)?;
        (Instant::now() < cached.until).then(|| cached.found.clone())
    }

    /// Keeps a lookup's result, whose lookup was queued after `ticket` was
    /// taken (tracking ignores a result that may predate a change).
    pub fn put(&self, slot: usize, host: &str, found: &Lookup, ticket: Ticket) {
        let keep = match self.mode {
            CacheMode::Off => return,
            CacheMode::Ttl(ttl) => ttl,
            CacheMode::Tracking => {
                if ticket != self.ticket() || !self.slot_is_live(slot) {
                    return;
                }
                // Expiry is reported only once Redis deletes the key.
                match found {
                    Lookup::Frontend(f) => f
                        .expires_in
                        .map_or(TRACKING_BACKSTOP, |e| e.min(TRACKING_BACKSTOP)),
                    Lookup::NoFrontend => TRACKING_BACKSTOP,
                }
            }
        };
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
                until: crate::clock::after(now, keep),
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
        self.maps.borrow_mut().iter_mut().for_each(HashMap::clear);
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
                    map.retain(|host, _| !host.ends_with(suffix));
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
    use crate::config::routes::{Condition, Route};
    use crate::redis::url::RedisUrl;
    use crate::routing::Frontend;
    use std::os::unix::net::UnixStream;

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
    /// pair): quiet until the test writes to the second.
    fn sockets(c: &RouteCache) -> Vec<Pair> {
        use std::os::fd::AsRawFd;
        (0..2)
            .map(|server| {
                let pair = UnixStream::pair().unwrap();
                c.unread(server).watch_for_test(pair.0.as_raw_fd());
                pair
            })
            .collect()
    }

    #[test]
    fn off_keeps_nothing_and_ttl_keeps_until_forgotten() {
        let off = cache(CacheMode::Off);
        off.put(0, "a", &frontend("a"), off.ticket());
        assert_eq!(off.get(0, "a"), None);

        let on = cache(CacheMode::Ttl(Duration::from_secs(60)));
        on.put(0, "a", &frontend("a"), on.ticket());
        on.put(1, "a", &Lookup::NoFrontend, on.ticket());
        assert_eq!(on.get(0, "a"), Some(frontend("a")));
        assert_eq!(on.get(1, "a"), Some(Lookup::NoFrontend));
        assert_eq!(on.get(0, "b"), None);
        on.forget("a");
        assert_eq!(on.get(0, "a"), None);
        assert_eq!(on.get(1, "a"), None);
        on.put(0, "c", &frontend("c"), on.ticket());
        on.clear();
        assert_eq!(on.get(0, "c"), None);
    }

    #[test]
    fn entries_expire_and_the_size_is_bounded() {
        let short = cache(CacheMode::Ttl(Duration::ZERO));
        short.put(0, "a", &frontend("a"), short.ticket());
        assert_eq!(short.get(0, "a"), None);

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
    fn tracking_keeps_results_only_while_live() {
        let c = cache(CacheMode::Tracking);
        let _sockets = sockets(&c);
        c.put(0, "a", &frontend("a"), c.ticket());
        assert_eq!(c.get(0, "a"), None, "not live yet");
        c.set_live(0, true);
        c.put(0, "a", &frontend("a"), c.ticket());
        c.put(1, "a", &frontend("a"), c.ticket());
        assert_eq!(c.get(0, "a"), Some(frontend("a")));
        assert_eq!(c.get(1, "a"), None, "server 1 is not tracked");
        c.set_live(0, false);
        assert_eq!(c.get(0, "a"), None);
        c.set_live(0, true);
        assert_eq!(c.get(0, "a"), None, "dropped when tracking stopped");
    }

    #[test]
    fn a_report_during_a_lookup_voids_its_ticket() {
        let c = cache(CacheMode::Tracking);
        let _sockets = sockets(&c);
        c.set_live(0, true);
        let ticket = c.ticket();
        c.changed(0, b"frontend:unrelated");
        c.put(0, "a", &frontend("a"), ticket);
        assert_eq!(c.get(0, "a"), None);
        let ticket = c.ticket();
        c.put(0, "a", &frontend("a"), ticket);
        assert_eq!(c.get(0, "a"), Some(frontend("a")));
    }

    #[test]
    fn a_result_is_kept_no_longer_than_its_keys_live() {
        let c = cache(CacheMode::Tracking);
        let _sockets = sockets(&c);
        c.set_live(0, true);
        let expiring = |after: Duration| {
            let Lookup::Frontend(mut f) = frontend("a") else {
                unreachable!()
            };
            f.expires_in = Some(after);
            Lookup::Frontend(f)
        };
        c.put(0, "gone", &expiring(Duration::ZERO), c.ticket());
        assert_eq!(c.get(0, "gone"), None);
        c.put(0, "later", &expiring(Duration::from_secs(30)), c.ticket());
        assert!(c.get(0, "later").is_some());
        let until = |host: &str| c.maps.borrow()[0][host].until;
        let now = Instant::now();
        assert!(until("later") <= now + Duration::from_secs(30));
        c.put(0, "far", &expiring(Duration::from_secs(3600)), c.ticket());
        assert!(
            until("far") <= Instant::now() + TRACKING_BACKSTOP,
            "capped by the backstop"
        );
    }

    #[test]
    fn a_report_waiting_in_the_socket_stops_the_cache_serving() {
        use std::io::Write;
        let c = cache(CacheMode::Tracking);
        let mut sockets = sockets(&c);
        c.set_live(0, true);
        c.put(0, "a", &frontend("a"), c.ticket());
        assert_eq!(c.get(0, "a"), Some(frontend("a")));
        sockets[0].1.write_all(b">").unwrap();
        assert_eq!(c.get(0, "a"), None, "a report is waiting to be read");
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
            let mut hosts: Vec<String> = c.maps.borrow()[slot].keys().cloned().collect();
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
