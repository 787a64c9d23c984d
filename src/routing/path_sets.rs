//! The `path_matches` sets the route cache keeps whole: a set
//! (`<prefix><host>` on one Redis server) of at most [`MEMBERS_KEPT`]
//! members is fetched along with a request's `SISMEMBER`s, and later
//! requests' path conditions are answered from it, whatever their path.
//! Kept whole rather than per pattern because paths are the client's
//! choice: random paths would fill a per-pattern cache, never hit it, and
//! push out what real traffic uses. A larger set is asked per request. The
//! bytes kept per shard are bounded: when a set would pass the bound, the
//! sets not used since it was last reached go (a second chance, as for
//! hosts), and if that is not enough, all of them.

use std::cell::Cell;
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use super::rules::PathPatterns;
use crate::redis::codec::{array_items, encode_command_parts, string_bytes, Reply};

/// A set of more members than this is not kept: its conditions are asked
/// per request, as without a cache.
pub const MEMBERS_KEPT: usize = 256;

/// What is kept per shard, counted as the strings' bytes plus
/// [`OVERHEAD`] for each string.
const MAX_BYTES: usize = 4 << 20;
const OVERHEAD: usize = 64;

struct Kept {
    members: HashSet<String>,
    bytes: usize,
    until: Instant,
    /// Answered a request since it was kept or the bound was last reached.
    used: Cell<bool>,
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

/// The whole set and when it expires, from the replies to [`encode_fetch`];
/// `None` when it is not to be kept (too many members, an error, a reply
/// of the wrong shape). Members that are not UTF-8 are left out: no path
/// pattern can equal them.
pub fn decode_fetch(replies: &[Reply]) -> Option<(HashSet<String>, Option<Duration>)> {
    let items = array_items(replies.first()?)?;
    if items.len() > MEMBERS_KEPT {
        return None;
    }
    let mut members = HashSet::with_capacity(items.len());
    for item in items {
        if let Ok(member) = std::str::from_utf8(string_bytes(item)?) {
            members.insert(member.to_string());
        }
    }
    let expires_in = match replies.get(1) {
        None | Some(Reply::Integer(-1 | -2)) => None,
        Some(Reply::Integer(ms)) if *ms >= 0 => Some(Duration::from_millis(*ms as u64)),
        Some(_) => return None,
    };
    Some((members, expires_in))
}

impl PathSets {
    pub fn new(servers: usize) -> PathSets {
        PathSets {
            servers: (0..servers).map(|_| HashMap::new()).collect(),
            bytes: 0,
        }
    }

    /// Whether one of `patterns` is in set `key` of `server`, if that set
    /// is kept and has not expired.
    pub fn answer(
        &self,
        server: usize,
        key: &str,
        patterns: &PathPatterns,
        now: Instant,
    ) -> Option<bool> {
        let kept = self.servers.get(server)?.get(key)?;
        if kept.until <= now {
            return None;
        }
        kept.used.set(true);
        let mut pattern = String::new();
        Some(patterns.iter().any(|(a, b)| {
            pattern.clear();
            pattern.push_str(a);
            pattern.push_str(b);
            kept.members.contains(&pattern)
        }))
    }

    /// Keeps set `key` of `server` until `until`.
    pub fn put(
        &mut self,
        server: usize,
        key: &str,
        members: HashSet<String>,
        until: Instant,
        now: Instant,
    ) {
        if server >= self.servers.len() {
            return;
        }
        let bytes =
            key.len() + OVERHEAD + members.iter().map(|m| m.len() + OVERHEAD).sum::<usize>();
        self.remove(server, key);
        if self.bytes + bytes > MAX_BYTES {
            self.retain(|k| k.until > now && k.used.replace(false));
        }
        if self.bytes + bytes > MAX_BYTES {
            self.clear();
        }
        if bytes > MAX_BYTES {
            return;
        }
        self.bytes += bytes;
        let kept = Kept {
            members,
            bytes,
            until,
            used: Cell::new(false),
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
        self.retain(|k| k.until > now);
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

    fn set(members: &[&str]) -> HashSet<String> {
        members.iter().map(|m| m.to_string()).collect()
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
        let answer =
            |sets: &PathSets, server, path, at| sets.answer(server, "paths:a", &patterns(path), at);
        assert_eq!(answer(&sets, 1, "/api/v1/x", now), Some(true));
        assert_eq!(answer(&sets, 1, "/exact", now), Some(true));
        assert_eq!(answer(&sets, 1, "/exact/more", now), Some(false));
        assert_eq!(answer(&sets, 1, "/", now), Some(false));
        assert_eq!(answer(&sets, 0, "/api/x", now), None, "another server");
        assert_eq!(answer(&sets, 1, "/api/x", later), None, "expired");
        sets.remove(1, "paths:a");
        assert_eq!(answer(&sets, 1, "/api/x", now), None, "changed");
        assert_eq!(sets.bytes(), 0);
    }

    #[test]
    fn flush_clear_and_sweep_keep_the_byte_count() {
        let now = Instant::now();
        let mut sets = PathSets::new(2);
        sets.put(0, "k0", set(&["/a"]), now + Duration::from_secs(1), now);
        sets.put(
            1,
            "k1",
            set(&["/b", "/c"]),
            now + Duration::from_secs(9),
            now,
        );
        sets.put(1, "k1", set(&["/b"]), now + Duration::from_secs(9), now);
        let one = 2 + OVERHEAD + 2 + OVERHEAD;
        assert_eq!(sets.bytes(), 2 * one, "a set put again is counted once");
        assert_eq!(sets.sweep(now + Duration::from_secs(2)), 1);
        assert_eq!(sets.bytes(), one);
        sets.flush(1);
        assert_eq!(sets.bytes(), 0);
        sets.put(0, "k0", set(&["/a"]), now + Duration::from_secs(1), now);
        sets.clear();
        assert_eq!((sets.bytes(), sets.sweep(now)), (0, 0));
    }

    #[test]
    fn the_bytes_kept_are_bounded() {
        let now = Instant::now();
        let until = now + Duration::from_secs(60);
        let mut sets = PathSets::new(1);
        let member = "/".to_string() + &"m".repeat(1000);
        for i in 0..10_000 {
            sets.put(0, &format!("paths:host{i}"), set(&[&member]), until, now);
            assert!(sets.bytes() <= MAX_BYTES);
        }
        let last = format!("paths:host{}", 9_999);
        assert_eq!(sets.answer(0, &last, &patterns(&member), now), Some(true));
        // A set in use outlives a flood of sets asked once.
        for i in 0..10_000 {
            sets.put(0, &format!("paths:flood{i}"), set(&[&member]), until, now);
            if i % 1_000 == 0 {
                assert_eq!(
                    sets.answer(0, &last, &patterns(&member), now),
                    Some(true),
                    "{i}"
                );
            }
        }
        // One set over the bound on its own is not kept.
        let huge: Vec<String> = (0..MEMBERS_KEPT)
            .map(|i| format!("/{i}{}", "x".repeat(20_000)))
            .collect();
        sets.put(0, "paths:huge", huge.into_iter().collect(), until, now);
        assert_eq!(sets.answer(0, "paths:huge", &patterns("/0"), now), None);
    }

    #[test]
    fn only_a_whole_small_set_of_strings_is_kept() {
        let bulk = |s: &str| Reply::BulkString(s.as_bytes().to_vec());
        let members = |n: usize| Reply::Array((0..n).map(|i| bulk(&format!("/{i}"))).collect());
        let (kept, ttl) = decode_fetch(&[members(3), Reply::Integer(1500)]).unwrap();
        assert_eq!((kept.len(), ttl), (3, Some(Duration::from_millis(1500))));
        assert_eq!(
            decode_fetch(&[members(MEMBERS_KEPT)]).unwrap().0.len(),
            MEMBERS_KEPT
        );
        assert_eq!(
            decode_fetch(&[members(MEMBERS_KEPT + 1)]),
            None,
            "a larger set"
        );
        assert_eq!(
            decode_fetch(&[Reply::Array(vec![]), Reply::Integer(-2)])
                .unwrap()
                .0
                .len(),
            0
        );
        assert_eq!(
            decode_fetch(&[members(1), Reply::Integer(-1)]).unwrap().1,
            None
        );
        assert_eq!(decode_fetch(&[Reply::Error("WRONGTYPE".into())]), None);
        assert_eq!(
            decode_fetch(&[members(1), Reply::Error("ERR".into())]),
            None
        );
        assert_eq!(decode_fetch(&[Reply::Array(vec![Reply::Integer(1)])]), None);
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
