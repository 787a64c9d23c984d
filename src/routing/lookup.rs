//! The Hipache lookup as one pipeline: `LRANGE P frontend:<cand> 0 1000` for
//! each candidate and `SMEMBERS P dead:<host>`, then the first non-empty list
//! wins. A list's first [`MAX_BACKENDS`] backends are used; a list whose reply
//! is over the Redis client's size limit fails its lookup alone (502).

use std::borrow::Cow;

use super::candidates::Candidates;
use crate::redis::codec::{
    array_items, encode_command_parts, is_too_large, string_bytes, strings, Reply,
};
use crate::redis::SharedReplies;

/// A frontend as found in Redis. It points into the lookup's replies, which
/// the requests that shared the lookup (and the route cache) hold through one
/// `Rc`: finding a frontend copies no strings.
#[derive(Debug, Clone, PartialEq)]
pub struct Frontend {
    /// The lookup's replies; `replies[candidate]` is the matched list, whose
    /// items were checked to be strings.
    replies: SharedReplies,
    /// Which candidate matched.
    candidate: usize,
    /// 0-based backend indexes in the `dead:<host>` set.
    pub dead: Vec<usize>,
}

impl Frontend {
    /// A frontend from its parts, as if its list had matched the host itself.
    #[cfg(test)]
    pub fn new(identifier: &str, backends: &[&str], dead: Vec<usize>) -> Frontend {
        let list = std::iter::once(identifier)
            .chain(backends.iter().copied())
            .map(|s| Reply::BulkString(s.as_bytes().to_vec()))
            .collect();
        Frontend {
            replies: std::rc::Rc::new(vec![Reply::Array(list)]),
            candidate: 0,
            dead,
        }
    }

    /// The matched key without prefix, e.g. `*.example.com`, for the host
    /// the lookup was made for.
    pub fn key(&self, host: &str) -> String {
        Candidates::new(host).key(self.candidate)
    }

    /// Element 0 of the list: a display name.
    pub fn identifier(&self) -> Cow<'_, str> {
        self.text(0)
    }

    /// How many backends the list has (elements 1..n).
    pub fn backend_count(&self) -> usize {
        self.items().len().saturating_sub(1)
    }

    /// Backend `i`'s URL (0-based, element i + 1 of the list).
    pub fn backend(&self, i: usize) -> Cow<'_, str> {
        self.text(i + 1)
    }

    fn items(&self) -> &[Reply] {
        self.replies
            .get(self.candidate)
            .and_then(array_items)
            .unwrap_or(&[])
    }

    /// Item `i` as text (invalid UTF-8 replaced, as a display needs).
    fn text(&self, i: usize) -> Cow<'_, str> {
        self.items()
            .get(i)
            .and_then(string_bytes)
            .map_or(Cow::Borrowed(""), String::from_utf8_lossy)
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

/// Appends the lookup pipeline; returns how many replies to expect.
pub fn encode_lookup(
    prefix: &str,
    host: &str,
    candidates: &Candidates,
    out: &mut Vec<u8>,
) -> usize {
    const LRANGE: &[&[u8]] = &[b"LRANGE"];
    // The identifier and MAX_BACKENDS backends: elements 0 to MAX_BACKENDS.
    const ALL: [&[&[u8]]; 2] = [&[b"0"], &[b"1000"]];
    let prefix = prefix.as_bytes();
    for i in 0..candidates.len() {
        let [a, b] = candidates.parts(i).map(str::as_bytes);
        let key: &[&[u8]] = &[prefix, b"frontend:", a, b];
        encode_command_parts(out, &[LRANGE, key, ALL[0], ALL[1]]);
    }
    let dead_key: &[&[u8]] = &[prefix, b"dead:", host.as_bytes()];
    encode_command_parts(out, &[&[b"SMEMBERS"], dead_key]);
    candidates.len() + 1
}

/// Interprets the replies: `Ok(None)` when no candidate has a list.
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

pub fn decode_lookup(
    replies: &SharedReplies,
    candidates: &Candidates,
) -> Result<Option<Frontend>, LookupError> {
    let [lists @ .., dead_reply] = replies.as_slice() else {
        return Err(LookupError::BadReply("no replies".into()));
    };
    if lists.len() != candidates.len() {
        return Err(LookupError::BadReply(format!("{} replies", replies.len())));
    }
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
        return Ok(Some(Frontend {
            replies: replies.clone(),
            candidate: i,
            dead,
        }));
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
        let n = encode_lookup("p:", "x.a.b", &cands, &mut out);
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
        let f = decode_lookup(&Rc::new(replies), &cands).unwrap().unwrap();
        assert_eq!(f.key("a.b"), "*.b");
        assert_eq!(f.identifier(), "wild");
        assert_eq!(f.backend_count(), 2);
        assert_eq!(
            (f.backend(0), f.backend(1)),
            ("http://x:1".into(), "http://y:2".into())
        );
        assert_eq!(f.dead, vec![1]);
    }

    #[test]
    fn nothing_found_and_bad_replies() {
        let cands = Candidates::new("a");
        let decode = |replies: Vec<Reply>| decode_lookup(&Rc::new(replies), &cands);
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
