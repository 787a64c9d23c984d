//! The Hipache lookup as one pipeline: `LRANGE P frontend:<cand> 0 1000` for
//! each candidate and `SMEMBERS P dead:<host>`, then the first non-empty list
//! wins. A list's first [`MAX_BACKENDS`] backends are used; a list whose reply
//! is over the Redis client's size limit fails its lookup alone (502).
//! For the tracking route cache the pipeline also asks each key's `PTTL`:
//! Redis reports an expired key only once it deletes it, which may be much
//! later, so a cached result must not outlive the keys it was built from.

use std::cell::RefCell;
use std::rc::{Rc, Weak};
use std::time::Duration;

use super::candidates::Candidates;
use crate::redis::codec::{
    array_items, encode_command_parts, is_too_large, string_bytes, strings, Reply,
};
use crate::redis::SharedReplies;

/// A frontend as found in Redis: the matched list, decoded once, behind one
/// `Rc` that the requests which shared the lookup and the route cache hold.
/// Its items are kept as text back to back, so a request served from the
/// route cache reads one small block of memory (with a thousand hosts, the
/// lookups' reply trees were a chain of cache misses per request). Two are
/// equal when their matched lists read the same (tests compare them).
#[derive(Debug, Clone, PartialEq)]
pub struct Frontend(Rc<Matched>);

#[derive(Debug, Clone, PartialEq)]
struct Matched {
    /// Which candidate matched.
    candidate: usize,
    /// The list's items (the identifier, then the backends' URLs) as text,
    /// back to back; invalid UTF-8 is replaced, as a display needs.
    text: String,
    /// Where each item ends in `text`.
    ends: Box<[usize]>,
    /// 0-based backend indexes in the `dead:<host>` set.
    dead: Vec<usize>,
    /// When the first key it was built from expires, if it was asked and
    /// any has a time to live.
    expires_in: Option<Duration>,
}

impl Frontend {
    /// A frontend from the matched list's items (checked to be strings).
    fn from_items(
        candidate: usize,
        items: &[Reply],
        dead: Vec<usize>,
        expires_in: Option<Duration>,
    ) -> Frontend {
        let mut text = String::new();
        // The identifier and at most MAX_BACKENDS backends, whatever the reply held.
        let ends = items
            .iter()
            .take(MAX_BACKENDS + 1)
            .map(|item| {
                text.push_str(&String::from_utf8_lossy(string_bytes(item).unwrap_or(b"")));
                text.len()
            })
            .collect();
        Frontend(Rc::new(Matched {
            candidate,
            text,
            ends,
            dead,
            expires_in,
        }))
    }

    /// A frontend from its parts, as if its list had matched the host itself.
    #[cfg(test)]
    pub fn new(identifier: &str, backends: &[&str], dead: Vec<usize>) -> Frontend {
        let list: Vec<Reply> = std::iter::once(identifier)
            .chain(backends.iter().copied())
            .map(|s| Reply::BulkString(s.as_bytes().to_vec()))
            .collect();
        Frontend::from_items(0, &list, dead, None)
    }

    /// The same frontend, expiring after `expires_in` (tests of the cache).
    #[cfg(test)]
    pub fn expiring(&self, expires_in: Duration) -> Frontend {
        Frontend(Rc::new(Matched {
            expires_in: Some(expires_in),
            ..Matched::clone(&self.0)
        }))
    }

    /// The matched key without prefix, e.g. `*.example.com`, for the host
    /// the lookup was made for.
    pub fn key(&self, host: &str) -> String {
        Candidates::new(host).key(self.0.candidate)
    }

    /// Element 0 of the list: a display name.
    pub fn identifier(&self) -> &str {
        self.item(0)
    }

    /// How many backends the list has (elements 1..n).
    pub fn backend_count(&self) -> usize {
        self.0.ends.len().saturating_sub(1)
    }

    /// Backend `i`'s URL (0-based, element i + 1 of the list).
    pub fn backend(&self, i: usize) -> &str {
        self.item(i + 1)
    }

    /// Whether the `dead:<host>` set lists backend `i`.
    pub fn listed_dead(&self, i: usize) -> bool {
        self.0.dead.contains(&i)
    }

    /// When the first key it was built from expires, if it was asked and
    /// any has a time to live.
    pub fn expires_in(&self) -> Option<Duration> {
        self.0.expires_in
    }

    /// Item `i` of the list, or "" past its end.
    fn item(&self, i: usize) -> &str {
        let ends = &self.0.ends;
        let Some(&end) = ends.get(i) else {
            return "";
        };
        let start = i.checked_sub(1).map_or(0, |before| ends[before]);
        &self.0.text[start..end]
    }
}

/// Backends read from one frontend list: Hipache reads them all, but a list
/// is routing data, and a thousand backends behind one name is already far
/// beyond any deployment; more are ignored (README, Redis schema).
pub const MAX_BACKENDS: usize = 1000;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LookupError {
    #[error("unexpected reply from redis: {0}")]
    BadReply(String),
    /// The reply for this key was over the Redis client's size limit.
    #[error("{0}: reply over the size limit")]
    TooLarge(String),
}

/// Appends the lookup pipeline, with each key's `PTTL` after it when
/// `with_ttls`; returns how many replies to expect.
pub fn encode_lookup(
    prefix: &str,
    host: &str,
    candidates: &Candidates,
    with_ttls: bool,
    out: &mut Vec<u8>,
) -> usize {
    const LRANGE: &[&[u8]] = &[b"LRANGE"];
    const PTTL: &[&[u8]] = &[b"PTTL"];
    // The identifier and MAX_BACKENDS backends: elements 0 to MAX_BACKENDS.
    const ALL: [&[&[u8]]; 2] = [&[b"0"], &[b"1000"]];
    let prefix = prefix.as_bytes();
    let list_key = |i: usize| {
        let [a, b] = candidates.parts(i).map(str::as_bytes);
        [prefix, b"frontend:", a, b]
    };
    for i in 0..candidates.len() {
        encode_command_parts(out, &[LRANGE, &list_key(i), ALL[0], ALL[1]]);
    }
    let dead_key: &[&[u8]] = &[prefix, b"dead:", host.as_bytes()];
    encode_command_parts(out, &[&[b"SMEMBERS"], dead_key]);
    if !with_ttls {
        return candidates.len() + 1;
    }
    for i in 0..candidates.len() {
        encode_command_parts(out, &[PTTL, &list_key(i)]);
    }
    encode_command_parts(out, &[PTTL, dead_key]);
    2 * (candidates.len() + 1)
}

/// The backend indexes of a `SMEMBERS dead:<host>` reply (members that are
/// not numbers are skipped); `None` if it is not a set of strings.
pub fn dead_indexes(reply: &Reply) -> Option<Vec<usize>> {
    Some(
        strings(reply)?
            .into_iter()
            .filter_map(|m| std::str::from_utf8(m).ok()?.trim().parse().ok())
            .collect(),
    )
}

thread_local! {
    /// The last shared lookup this shard's thread decoded, and the result.
    static LAST_SHARED: RefCell<Option<(Weak<Vec<Reply>>, Decoded)>> = const { RefCell::new(None) };
}

type Decoded = Result<Option<Frontend>, LookupError>;

/// [`decode_lookup`] for replies that requests share (`query_shared`):
/// every request that joined one lookup gets one decoded frontend, instead
/// of each copying the list (which may be megabytes). The same replies
/// come from the same commands, so from the same candidates and
/// `with_ttls`; the `Weak` keeps their allocation, so its address is never
/// another lookup's while remembered. The last result stays until the next
/// shared lookup: one list per shard.
pub fn decode_shared_lookup(
    replies: &SharedReplies,
    candidates: &Candidates,
    with_ttls: bool,
) -> Decoded {
    LAST_SHARED.with(|last| {
        let mut last = last.borrow_mut();
        if let Some((seen, decoded)) = last.as_ref() {
            if std::ptr::eq(seen.as_ptr(), Rc::as_ptr(replies)) {
                return decoded.clone();
            }
        }
        let decoded = decode_lookup(replies, candidates, with_ttls);
        *last = Some((Rc::downgrade(replies), decoded.clone()));
        decoded
    })
}

/// Interprets the replies: `Ok(None)` when no candidate has a list.
pub fn decode_lookup(replies: &[Reply], candidates: &Candidates, with_ttls: bool) -> Decoded {
    let n = candidates.len();
    let expected = if with_ttls { 2 * (n + 1) } else { n + 1 };
    if replies.len() != expected {
        return Err(LookupError::BadReply(format!("{} replies", replies.len())));
    }
    let (lists, rest) = replies.split_at(n);
    let (dead_reply, ttls) = (&rest[0], &rest[1..]);
    if is_too_large(dead_reply) {
        return Err(LookupError::TooLarge("dead set".into()));
    }
    if let Reply::Error(e) = dead_reply {
        return Err(LookupError::BadReply(e.clone()));
    }
    let dead = dead_indexes(dead_reply)
        .ok_or_else(|| LookupError::BadReply("dead set is not a set".into()))?;
    for (i, reply) in lists.iter().enumerate() {
        if is_too_large(reply) {
            return Err(LookupError::TooLarge(format!(
                "frontend:{}",
                candidates.key(i)
            )));
        }
        if let Reply::Error(e) = reply {
            let cand = candidates.key(i);
            return Err(LookupError::BadReply(format!("frontend:{cand}: {e}")));
        }
        let not_a_list = || {
            let cand = candidates.key(i);
            LookupError::BadReply(format!("frontend:{cand} is not a list"))
        };
        let items = array_items(reply).ok_or_else(not_a_list)?;
        if items.is_empty() {
            continue;
        }
        if !items.iter().all(|item| string_bytes(item).is_some()) {
            return Err(not_a_list());
        }
        // The keys this result depends on: the matched list, the more
        // specific candidates before it (absent, so without a time to live)
        // and the dead set.
        let expires_in = ttls
            .get(..=i)
            .into_iter()
            .flatten()
            .chain(ttls.last())
            .filter_map(|t| match t {
                Reply::Integer(ms) if *ms >= 0 => Some(Duration::from_millis(*ms as u64)),
                _ => None,
            })
            .min();
        return Ok(Some(Frontend::from_items(i, items, dead, expires_in)));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::rc::Rc;

    fn bulk(items: &[&str]) -> Reply {
        Reply::Array(
            items
                .iter()
                .map(|s| Reply::BulkString(s.as_bytes().to_vec()))
                .collect(),
        )
    }

    #[test]
    fn encodes_one_lrange_per_candidate_then_smembers() {
        let cands = Candidates::new("x.a.b");
        let mut out = Vec::new();
        let n = encode_lookup("p:", "x.a.b", &cands, false, &mut out);
        assert_eq!(n, 5);
        let mut expected = Vec::new();
        for key in [
            "p:frontend:x.a.b",
            "p:frontend:*.a.b",
            "p:frontend:*.b",
            "p:frontend:*",
        ] {
            crate::redis::codec::encode_command(
                &mut expected,
                &[b"LRANGE", key.as_bytes(), b"0", b"1000"],
            );
        }
        crate::redis::codec::encode_command(&mut expected, &[b"SMEMBERS", b"p:dead:x.a.b"]);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            String::from_utf8(expected).unwrap()
        );
    }

    #[test]
    fn first_non_empty_list_wins() {
        let cands = Candidates::new("a.b");
        let replies = vec![
            bulk(&[]),
            bulk(&["wild", "http://x:1", "http://y:2"]),
            bulk(&["star", "http://z"]),
            bulk(&["1"]),
        ];
        let f = decode_lookup(&Rc::new(replies), &cands, false)
            .unwrap()
            .unwrap();
        assert_eq!(f.key("a.b"), "*.b");
        assert_eq!(f.identifier(), "wild");
        assert_eq!(f.backend_count(), 2);
        assert_eq!((f.backend(0), f.backend(1)), ("http://x:1", "http://y:2"));
        assert!(f.listed_dead(1) && !f.listed_dead(0));
    }

    #[test]
    fn with_ttls_the_result_expires_with_the_first_key_it_read() {
        let cands = Candidates::new("a.b");
        let mut out = Vec::new();
        assert_eq!(encode_lookup("", "a.b", &cands, true, &mut out), 8);
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.ends_with("PTTL\r\n$10\r\nfrontend:*\r\n*2\r\n$4\r\nPTTL\r\n$8\r\ndead:a.b\r\n")
        );
        let ms = |v: i64| Reply::Integer(v);
        let decode = |ttls: [i64; 4]| {
            let mut replies = vec![
                bulk(&[]),
                bulk(&["wild", "http://x"]),
                bulk(&["star", "http://z"]),
                bulk(&[]),
            ];
            replies.extend(ttls.map(ms));
            decode_lookup(&Rc::new(replies), &cands, true)
                .unwrap()
                .unwrap()
                .expires_in()
        };
        // `*.b` matched: its own time to live and the dead set's count, `*`'s not.
        assert_eq!(decode([-2, 5000, 10, -2]), Some(Duration::from_secs(5)));
        assert_eq!(decode([-2, -1, 10, 700]), Some(Duration::from_millis(700)));
        assert_eq!(decode([-2, -1, 10, -2]), None);
        assert_eq!(decode([-2, 0, -1, -2]), Some(Duration::ZERO));
        // Without the right number of replies, the lookup fails.
        let short = vec![bulk(&[]), bulk(&[]), bulk(&[]), bulk(&[])];
        assert!(decode_lookup(&Rc::new(short), &cands, true).is_err());
    }

    #[test]
    fn requests_sharing_a_lookup_share_one_decoded_list_of_at_most_max_backends() {
        let cands = Candidates::new("a");
        let urls: Vec<String> = (0..MAX_BACKENDS + 5)
            .map(|i| format!("http://b{i}"))
            .collect();
        let mut list = vec!["id"];
        list.extend(urls.iter().map(String::as_str));
        let shared = Rc::new(vec![bulk(&list), bulk(&[]), bulk(&[])]);
        let first = decode_shared_lookup(&shared, &cands, false)
            .unwrap()
            .unwrap();
        assert_eq!(first.backend_count(), MAX_BACKENDS);
        assert_eq!(first.backend(MAX_BACKENDS - 1), urls[MAX_BACKENDS - 1]);
        let joined = decode_shared_lookup(&shared, &cands, false)
            .unwrap()
            .unwrap();
        assert!(Rc::ptr_eq(&first.0, &joined.0), "one copy of the list");
        // Other replies (another lookup, even of the same host) are decoded anew.
        let other = Rc::new(vec![bulk(&list), bulk(&[]), bulk(&[])]);
        let fresh = decode_shared_lookup(&other, &cands, false)
            .unwrap()
            .unwrap();
        assert!(!Rc::ptr_eq(&first.0, &fresh.0));
        assert_eq!(fresh, first);
    }

    #[test]
    fn nothing_found_and_bad_replies() {
        let cands = Candidates::new("a");
        let decode = |replies: Vec<Reply>| decode_lookup(&Rc::new(replies), &cands, false);
        assert_eq!(decode(vec![bulk(&[]), bulk(&[]), bulk(&[])]).unwrap(), None);
        let wrongtype = Reply::Error("WRONGTYPE".into());
        assert!(decode(vec![wrongtype, bulk(&[]), bulk(&[])]).is_err());
        assert!(decode(vec![bulk(&[])]).is_err());
        // A list item that is not a string makes the list unusable.
        let mixed = Reply::Array(vec![Reply::BulkString(b"id".to_vec()), Reply::Integer(3)]);
        assert!(decode(vec![mixed, bulk(&[]), bulk(&[])]).is_err());
        // Invalid UTF-8 is shown with replacement characters, as before.
        let odd = Reply::Array(vec![Reply::BulkString(b"i\xffd".to_vec())]);
        let f = decode(vec![odd, bulk(&[]), bulk(&[])]).unwrap().unwrap();
        assert_eq!(f.identifier(), "i\u{fffd}d");
        assert_eq!(f.backend_count(), 0);
        // An oversized list fails this lookup alone, and says so.
        let big = crate::redis::codec::too_large();
        assert_eq!(
            decode(vec![big, bulk(&[]), bulk(&[])]),
            Err(LookupError::TooLarge("frontend:a".into()))
        );
    }
}
