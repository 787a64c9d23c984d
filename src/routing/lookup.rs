//! The Hipache lookup as one pipeline: `LRANGE P frontend:<cand> 0 -1` for each
//! candidate and `SMEMBERS P dead:<host>`, then the first non-empty list wins.

use super::candidates::Candidates;
use crate::redis::codec::{array_items, encode_command_parts, string_bytes, strings, Reply};

/// A frontend as found in Redis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frontend {
    /// The matched key without prefix, e.g. `*.example.com`.
    pub key: String,
    /// Element 0 of the list: a display name.
    pub identifier: String,
    /// Elements 1..n: backend URLs.
    pub backends: Vec<String>,
    /// 0-based backend indexes in the `dead:<host>` set.
    pub dead: Vec<usize>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LookupError {
    #[error("unexpected reply from redis: {0}")]
    BadReply(String),
}

/// Appends the lookup pipeline; returns how many replies to expect.
pub fn encode_lookup(
    prefix: &str,
    host: &str,
    candidates: &Candidates,
    out: &mut Vec<u8>,
) -> usize {
    const LRANGE: &[&[u8]] = &[b"LRANGE"];
    const ALL: [&[&[u8]]; 2] = [&[b"0"], &[b"-1"]];
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
pub fn decode_lookup(
    replies: &[Reply],
    candidates: &Candidates,
) -> Result<Option<Frontend>, LookupError> {
    let [lists @ .., dead_reply] = replies else {
        return Err(LookupError::BadReply("no replies".into()));
    };
    if lists.len() != candidates.len() {
        return Err(LookupError::BadReply(format!("{} replies", replies.len())));
    }
    if let Reply::Error(e) = dead_reply {
        return Err(LookupError::BadReply(e.clone()));
    }
    let dead = strings(dead_reply)
        .ok_or_else(|| LookupError::BadReply("dead set is not a set".into()))?
        .into_iter()
        .filter_map(|m| std::str::from_utf8(m).ok()?.trim().parse().ok())
        .collect();
    for (i, reply) in lists.iter().enumerate() {
        if let Reply::Error(e) = reply {
            let cand = candidates.key(i);
            return Err(LookupError::BadReply(format!("frontend:{cand}: {e}")));
        }
        let not_a_list = || {
            let cand = candidates.key(i);
            LookupError::BadReply(format!("frontend:{cand} is not a list"))
        };
        let items = array_items(reply).ok_or_else(not_a_list)?;
        let mut texts = items
            .iter()
            .map(|item| string_bytes(item).map(|b| String::from_utf8_lossy(b).into_owned()));
        let Some(identifier) = texts.next() else {
            continue;
        };
        let identifier = identifier.ok_or_else(not_a_list)?;
        let backends = texts
            .collect::<Option<Vec<String>>>()
            .ok_or_else(not_a_list)?;
        return Ok(Some(Frontend {
            key: candidates.key(i),
            identifier,
            backends,
            dead,
        }));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

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
                &[b"LRANGE", key.as_bytes(), b"0", b"-1"],
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
        let f = decode_lookup(&replies, &cands).unwrap().unwrap();
        assert_eq!(f.key, "*.b");
        assert_eq!(f.identifier, "wild");
        assert_eq!(f.backends, vec!["http://x:1", "http://y:2"]);
        assert_eq!(f.dead, vec![1]);
    }

    #[test]
    fn nothing_found_and_bad_replies() {
        let cands = Candidates::new("a");
        assert_eq!(
            decode_lookup(&[bulk(&[]), bulk(&[]), bulk(&[])], &cands).unwrap(),
            None
        );
        let wrongtype = Reply::Error("WRONGTYPE".into());
        assert!(decode_lookup(&[wrongtype, bulk(&[]), bulk(&[])], &cands).is_err());
        assert!(decode_lookup(&[bulk(&[])], &cands).is_err());
    }
}
