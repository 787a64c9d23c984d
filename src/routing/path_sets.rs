//! The `path_matches` sets the route cache keeps whole: a set
//! (`<prefix><host>` on one Redis server) of at most [`MEMBERS_KEPT`]
//! members is fetched along with a request's `SISMEMBER`s, and later
//! requests' path conditions are answered from it, whatever their path.
//! Kept whole rather than per pattern because paths are the client's
//! choice: random paths would fill a per-pattern cache, never hit it, and
//! push out what real traffic uses. A larger set is remembered as too
//! large (until it changes), and asked per request without being fetched
//! again. What is kept per shard is bounded in sets and in bytes: when a
//! set would pass a bound, the sets not used since a bound was last reached
//! go (`lease`, as for hosts), and if that is not enough, all of them.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use super::lease::Lease;
use super::rules::PathPatterns;
use crate::redis::codec::{array_items, encode_command_parts, string_bytes, Reply};

/// A set of more members than this is not kept: its conditions are asked
/// per request, as without a cache.
pub const MEMBERS_KEPT: usize = 256;

/// Sets kept per shard, and their size, counted as the strings' bytes plus
/// an estimate of the tables around them.
const MAX_SETS: usize = 10_000;
const MAX_BYTES: usize = 4 << 20;
const SET_OVERHEAD: usize = 160;
const MEMBER_OVERHEAD: usize = 64;

/// Keys longer than this are not kept: a host name has at most 253 bytes,
/// so only a Host header no DNS name can match makes one, and such keys
/// must not decide how many real sets fit.
const MAX_KEY_BYTES: usize = 512;

/// A set as fetched: its members, or too many of them to keep.
pub type Fetched = Option<HashSet<String>>;

struct Kept {
    members: Fetched,
    bytes: usize,
    lease: Lease,
}

/// What the kept sets say of one set for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Known {
    /// Whether one of the request's patterns is a member.
    Answer(bool),
    /// The set is too large to keep: ask, do not fetch.
    TooLarge,
    /// Not kept (or expired).
    Unknown,
}

/// The kept sets: one map per Redis server, by key.
pub struct PathSets {
    servers: Vec<HashMap<String, Kept>>,
    bytes: usize,
}

/// Appends the commands that fetch set `key` for keeping: `SRANDMEMBER key
/// 257` (distinct members, so the whole set when it has at most 256) and,
/// with `with_ttl`, `PTTL key`. Returns how many commands it appended.
pub fn encode_fetch(key: &[u8], with_ttl: bool, out: &mut Vec<u8>) -> usize {
    let count = (MEMBERS_KEPT + 1).to_string();
    encode_command_parts(out, &[&[b"SRANDMEMBER"], &[key], &[count.as_bytes()]]);
    if with_ttl {
        encode_command_parts(out, &[&[b"PTTL"], &[key]]);
    }
    1 + usize::from(with_ttl)
}

/// The set and when it expires, from the replies to [`encode_fetch`]: its
/// members, or `None` when it cannot be kept (more than [`MEMBERS_KEPT`]
/// members, or a reply that is not a set's: the wrong type, an error, a
/// reply over the size limit), which is kept as such so that it is not
/// fetched again before it changes; nothing at all when the `PTTL` reply is
/// unusable. Members that are not UTF-8 are left out: no path pattern can
/// equal them.
pub fn decode_fetch(replies: &[Reply]) -> Option<(Fetched, Option<Duration>)> {
    let expires_in = match replies.get(1) {
        None | Some(Reply::Integer(-1 | -2)) => None,
        Some(Reply::Integer(ms)) if *ms >= 0 => Some(Duration::from_millis(*ms as u64)),
        Some(_) => return None,
    };
    Some((members(replies.first()?), expires_in))
}

fn members(reply: &Reply) -> Fetched {
    let items = array_items(reply)?;
    if items.len() > MEMBERS_KEPT {
        return None;
    }
    let mut members = HashSet::with_capacity(items.len());
    for item in items {
        if let Ok(member) = std::str::from_utf8(string_bytes(item)?) {
            members.insert(member.to_string());
        }
    }
    Some(members)
}

/// Whether a set under `key` may be kept at all (so whether fetching it is
/// worth anything).
pub fn is_keepable(key: &str) -> bool {
    key.len() <= MAX_KEY_BYTES
}

impl PathSets {
    pub fn new(servers: usize) -> PathSets {
        PathSets {
            servers: (0..servers).map(|_| HashMap::new()).collect(),
            bytes: 0,
        }
    }

    /// What set `key` of `server` says of `patterns`, if it is kept and
    /// has not expired.
    pub fn lookup(&self, server: usize, key: &str, patterns: &PathPatterns, now: Instant) -> Known {
        let Some(kept) = self.servers.get(server).and_then(|m| m.get(key)) else {
            return Known::Unknown;
        };
        if !kept.lease.serve(now) {
            return Known::Unknown;
        }
        let Some(members) = &kept.members else {
            return Known::TooLarge;
        };
        let mut pattern = String::new();
        Known::Answer(patterns.iter().any(|(a, b)| {
            pattern.clear();
            pattern.push_str(a);
            pattern.push_str(b);
            members.contains(&pattern)
        }))
    }

    /// Keeps set `key` of `server` (or that it is too large) until `until`.
    /// A set over the byte bound on its own is kept as too large.
    pub fn put(
        &mut self,
        server: usize,
        key: &str,
        members: Fetched,
        until: Instant,
        now: Instant,
    ) {
        if server >= self.servers.len() || !is_keepable(key) {
            return;
        }
        let marker = SET_OVERHEAD + key.len();
        let bytes = marker
            + members
                .iter()
                .flatten()
                .map(|m| m.len() + MEMBER_OVERHEAD)
                .sum::<usize>();
        let (members, bytes) = if bytes > MAX_BYTES {
            (None, marker)
        } else {
            (members, bytes)
        };
        self.remove(server, key);
        let full = |sets: &PathSets| {
            sets.bytes + bytes > MAX_BYTES
                || sets.servers.iter().map(HashMap::len).sum::<usize>() >= MAX_SETS
        };
        if full(self) {
            self.retain(|k| k.lease.survives_bound(now));
        }
        if full(self) {
            self.clear();
        }
        self.bytes += bytes;
        let kept = Kept {
            members,
            bytes,
            lease: Lease::until(until),
        };
        self.servers[server].insert(key.to_string(), kept);
    }

    /// Set `key` of `server` changed: it is fetched again when next needed.
    pub fn remove(&mut self, server: usize, key: &str) {
        if let Some(kept) = self.servers.get_mut(server).and_then(|m| m.remove(key)) {
            self.bytes -= kept.bytes;
        }
    }

    /// Drops every set kept from `server`.
    pub fn flush(&mut self, server: usize) {
        if let Some(map) = self.servers.get_mut(server) {
            self.bytes -= map.values().map(|k| k.bytes).sum::<usize>();
            map.clear();
        }
    }

    pub fn clear(&mut self) {
        self.servers.iter_mut().for_each(HashMap::clear);
        self.bytes = 0;
    }

    /// Drops the expired sets; returns how many are kept.
    pub fn sweep(&mut self, now: Instant) -> usize {
        self.retain(|k| k.lease.is_fresh(now));
        self.servers.iter().map(HashMap::len).sum()
    }

    fn retain(&mut self, keep: impl Fn(&Kept) -> bool) {
        let mut freed = 0;
        for map in &mut self.servers {
            map.retain(|_, k| {
                let kept = keep(k);
                if !kept {
                    freed += k.bytes;
                }
                kept
            });
        }
        self.bytes -= freed;
    }

    /// Bytes counted against the bound (tests).
    #[cfg(test)]
    fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(members: &[&str]) -> Fetched {
        Some(members.iter().map(|m| m.to_string()).collect())
    }

    fn patterns(path: &str) -> PathPatterns<'_> {
        PathPatterns::new(path, 32).unwrap()
    }

    #[test]
    fn a_kept_set_answers_any_path_until_it_expires_or_changes() {
        let now = Instant::now();
        let later = now + Duration::from_secs(10);
        let mut sets = PathSets::new(2);
        sets.put(1, "paths:a", set(&["/api/*", "/exact"]), later, now);
        let known =
            |sets: &PathSets, server, path, at| sets.lookup(server, "paths:a", &patterns(path), at);
        assert_eq!(known(&sets, 1, "/api/v1/x", now), Known::Answer(true));
        assert_eq!(known(&sets, 1, "/exact", now), Known::Answer(true));
        assert_eq!(known(&sets, 1, "/exact/more", now), Known::Answer(false));
        assert_eq!(known(&sets, 1, "/", now), Known::Answer(false));
        assert_eq!(
            known(&sets, 0, "/api/x", now),
            Known::Unknown,
            "another server"
        );
        assert_eq!(known(&sets, 1, "/api/x", later), Known::Unknown, "expired");
        sets.remove(1, "paths:a");
        assert_eq!(known(&sets, 1, "/api/x", now), Known::Unknown, "changed");
        assert_eq!(sets.bytes(), 0);
        // A set too large to keep is remembered as such until it changes.
        sets.put(1, "paths:a", None, later, now);
        assert_eq!(known(&sets, 1, "/api/x", now), Known::TooLarge);
        sets.remove(1, "paths:a");
        assert_eq!(known(&sets, 1, "/api/x", now), Known::Unknown);
    }

    #[test]
    fn flush_clear_and_sweep_keep_the_byte_count() {
        let now = Instant::now();
        let mut sets = PathSets::new(2);
        let (soon, later) = (now + Duration::from_secs(1), now + Duration::from_secs(9));
        sets.put(0, "k0", set(&["/a"]), soon, now);
        sets.put(1, "k1", set(&["/b", "/c"]), later, now);
        sets.put(1, "k1", set(&["/b"]), later, now);
        let one = SET_OVERHEAD + 2 + 2 + MEMBER_OVERHEAD;
        assert_eq!(sets.bytes(), 2 * one, "a set put again is counted once");
        assert_eq!(sets.sweep(now + Duration::from_secs(2)), 1);
        assert_eq!(sets.bytes(), one);
        sets.flush(1);
        assert_eq!(sets.bytes(), 0);
        sets.put(0, "k0", set(&["/a"]), soon, now);
        sets.clear();
        assert_eq!((sets.bytes(), sets.sweep(now)), (0, 0));
    }

    #[test]
    fn what_is_kept_is_bounded_and_sets_in_use_outlive_a_flood() {
        let now = Instant::now();
        let until = now + Duration::from_secs(60);
        let mut sets = PathSets::new(1);
        let count = |sets: &PathSets| sets.servers[0].len();
        let member = "/".to_string() + &"m".repeat(1000);
        let real = |sets: &PathSets| sets.lookup(0, "paths:real", &patterns(&member), now);
        sets.put(0, "paths:real", set(&[&member]), until, now);
        // Large sets fill the bytes, empty ones (unknown hosts) the count.
        for (i, members) in (0..20_000).map(|i| {
            (
                i,
                if i % 2 == 0 {
                    set(&[&member])
                } else {
                    set(&[])
                },
            )
        }) {
            sets.put(0, &format!("paths:flood{i}"), members, until, now);
            assert!(sets.bytes() <= MAX_BYTES && count(&sets) <= MAX_SETS);
            if i % 500 == 0 {
                assert_eq!(
                    real(&sets),
                    Known::Answer(true),
                    "asked now and then: kept ({i})"
                );
            }
        }
        // Not asked through the next flood: gone.
        for i in 0..2 * MAX_SETS {
            sets.put(0, &format!("paths:again{i}"), set(&[]), until, now);
        }
        assert_eq!(real(&sets), Known::Unknown);
        // A set over the byte bound on its own is kept as too large, and
        // empties nothing; a key no host name can make is not kept.
        sets.put(0, "paths:small", set(&["/s"]), until, now);
        let huge: Vec<String> = (0..MEMBERS_KEPT)
            .map(|i| format!("/{i}{}", "x".repeat(20_000)))
            .collect();
        sets.put(
            0,
            "paths:huge",
            Some(huge.into_iter().collect()),
            until,
            now,
        );
        assert_eq!(
            sets.lookup(0, "paths:huge", &patterns("/0"), now),
            Known::TooLarge
        );
        assert_eq!(
            sets.lookup(0, "paths:small", &patterns("/s"), now),
            Known::Answer(true)
        );
        let long_key = format!("paths:{}", "h".repeat(MAX_KEY_BYTES));
        assert!(!is_keepable(&long_key) && is_keepable("paths:app.example"));
        sets.put(0, &long_key, set(&[]), until, now);
        assert_eq!(
            sets.lookup(0, &long_key, &patterns("/"), now),
            Known::Unknown
        );
    }

    #[test]
    fn a_fetch_is_kept_whole_or_marked_too_large() {
        let bulk = |s: &str| Reply::BulkString(s.as_bytes().to_vec());
        let members = |n: usize| Reply::Array((0..n).map(|i| bulk(&format!("/{i}"))).collect());
        let size = |replies: &[Reply]| decode_fetch(replies).map(|(m, _)| m.map(|m| m.len()));
        let (kept, ttl) = decode_fetch(&[members(3), Reply::Integer(1500)]).unwrap();
        assert_eq!(
            (kept.map(|m| m.len()), ttl),
            (Some(3), Some(Duration::from_millis(1500)))
        );
        assert_eq!(size(&[members(MEMBERS_KEPT)]), Some(Some(MEMBERS_KEPT)));
        assert_eq!(size(&[members(MEMBERS_KEPT + 1)]), Some(None), "too large");
        assert_eq!(
            size(&[Reply::Array(vec![]), Reply::Integer(-2)]),
            Some(Some(0))
        );
        assert_eq!(
            decode_fetch(&[members(1), Reply::Integer(-1)]).unwrap().1,
            None
        );
        // Not a set's reply: kept as not to be fetched again before it changes.
        assert_eq!(size(&[Reply::Error("WRONGTYPE".into())]), Some(None));
        assert_eq!(size(&[Reply::Array(vec![Reply::Integer(1)])]), Some(None));
        // An unusable PTTL: nothing is kept.
        assert_eq!(size(&[members(1), Reply::Error("ERR".into())]), None);
        assert_eq!(size(&[]), None);
        let odd = Reply::Array(vec![Reply::BulkString(vec![0xff]), bulk("/a")]);
        assert_eq!(
            decode_fetch(&[odd]).unwrap().0,
            set(&["/a"]),
            "not UTF-8: left out"
        );
        let mut out = Vec::new();
        assert_eq!(encode_fetch(b"paths:a", true, &mut out), 2);
        assert_eq!(
            out,
            b"*3\r\n$11\r\nSRANDMEMBER\r\n$7\r\npaths:a\r\n$3\r\n257\r\n*2\r\n$4\r\nPTTL\r\n$7\r\npaths:a\r\n"
        );
    }
}
