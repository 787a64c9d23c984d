//! Lopache route conditions, sans-io: path patterns, cookie parsing, session
//! segments, and evaluation in two steps. `pre_evaluate` decides what it can
//! without Redis (three-valued: `path_matches` is unknown), so a route whose
//! cookie or prefix test already fails costs no Redis at all; `evaluate`
//! finishes with the answers to the `path_matches` queries.

use crate::config::routes::Condition;

/// What the conditions look at in a request.
#[derive(Debug, Clone, Default)]
pub struct RequestFacts {
    /// The request path without query string, normalised ([`normalize_path`]).
    pub path: String,
    /// The Cookie header values, joined with `; `.
    pub cookies: String,
}

/// The path as a backend reads it, for route conditions (the request itself
/// is forwarded unchanged): percent-encoded unreserved characters decoded
/// (RFC 3986 section 6.2.2.2), repeated slashes merged (as nginx's
/// `merge_slashes`), then dot-segments removed (section 5.2.4). Otherwise a
/// rule on `/api/` would miss `/%61pi/x`, `//api/x` and `/x/../api/x`, which
/// reach `/api/x` all the same. Case is kept; other escapes stay as sent.
pub fn normalize_path(raw: &[u8]) -> String {
    let mut decoded = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let byte = match raw[i..] {
            [b'%', h, l, ..] => match (hex(h), hex(l)) {
                (Some(h), Some(l)) if is_unreserved(h << 4 | l) => Some(h << 4 | l),
                _ => None,
            },
            _ => None,
        };
        match byte {
            Some(b) => {
                decoded.push(b);
                i += 3;
            }
            None => {
                // A repeated slash is merged into one.
                if !(raw[i] == b'/' && decoded.last() == Some(&b'/')) {
                    decoded.push(raw[i]);
                }
                i += 1;
            }
        }
    }
    let mut out: Vec<&[u8]> = Vec::new();
    let absolute = decoded.first() == Some(&b'/');
    let segments: Vec<&[u8]> = decoded.split(|&b| b == b'/').collect();
    let last = segments.len().saturating_sub(1);
    for (n, segment) in segments.iter().enumerate() {
        match *segment {
            b"." => {}
            b".." => {
                out.pop();
            }
            s if n == 0 && absolute => debug_assert!(s.is_empty()),
            s => out.push(s),
        }
        // A path ending in a dot-segment ends in a slash (`/a/..` is `/`).
        if n == last && n > 0 && matches!(*segment, b"." | b"..") {
            out.push(b"");
        }
    }
    let mut path = Vec::with_capacity(decoded.len());
    for (n, segment) in out.iter().enumerate() {
        if absolute || n > 0 {
            path.push(b'/');
        }
        path.extend_from_slice(segment);
    }
    if path.is_empty() && absolute {
        path.push(b'/');
    }
    String::from_utf8_lossy(&path).into_owned()
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// RFC 3986 section 2.3.
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// A truth value that may not be known yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tri {
    True,
    False,
    Unknown,
}

impl From<bool> for Tri {
    fn from(b: bool) -> Tri {
        if b {
            Tri::True
        } else {
            Tri::False
        }
    }
}

/// Lopache's patterns for a path: `/public/jobs/1` gives `/*`, `/public/*`,
/// `/public/jobs/*`, `/public/jobs/1`; `/` gives `/*` and `/`. A pattern is a
/// prefix of the path and an optional `/*`, given as those two slices so
/// that it is written straight into a Redis command, never copied. One
/// pattern per `/` plus the path itself: a path of more than
/// `limits.path_segments` slashes is refused before any is built (414), so
/// the work (and the SISMEMBERs sent to Redis) stay bounded per request.
#[derive(Debug, Clone, Copy)]
pub struct PathPatterns<'p> {
    path: &'p str,
}

/// Why a path is refused before its patterns are built (414).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathTooLong {
    #[error("more than {0} path segments")]
    Segments(usize),
    /// The queries would carry more than this many bytes to Redis.
    #[error("path patterns of more than {0} bytes")]
    Bytes(usize),
}

/// Bytes of SISMEMBER keys and patterns one condition may send to Redis
/// for one request: 32 patterns of an 8 KiB path would be 256 KiB, 30 times
/// what the client sent.
pub const MAX_PATTERN_BYTES: usize = 32 * 1024;

impl<'p> PathPatterns<'p> {
    pub fn new(path: &'p str, max_segments: usize) -> Result<Self, PathTooLong> {
        if path.bytes().filter(|&b| b == b'/').count() > max_segments {
            return Err(PathTooLong::Segments(max_segments));
        }
        Ok(PathPatterns { path })
    }

    /// Checks what the queries for these patterns would send, each under a
    /// key of `key_len` bytes, against [`MAX_PATTERN_BYTES`].
    pub fn check_bytes(&self, key_len: usize) -> Result<(), PathTooLong> {
        let bytes: usize = self.iter().map(|(a, b)| a.len() + b.len() + key_len).sum();
        match bytes > MAX_PATTERN_BYTES {
            true => Err(PathTooLong::Bytes(MAX_PATTERN_BYTES)),
            false => Ok(()),
        }
    }

    /// How many patterns there are.
    pub fn len(&self) -> usize {
        self.path.bytes().filter(|&b| b == b'/').count() + 1
    }

    pub fn is_empty(&self) -> bool {
        false
    }

    /// Each pattern as (prefix of the path, `"/*"` or `""`).
    pub fn iter(&self) -> impl Iterator<Item = (&'p str, &'static str)> + 'p {
        let path = self.path;
        path.match_indices('/')
            .map(move |(at, _)| (&path[..at], "/*"))
            .chain(std::iter::once((path, "")))
    }
}

/// The patterns as strings (tests, and the fuzz target's comparison).
pub fn path_patterns(path: &str) -> Vec<String> {
    PathPatterns { path }
        .iter()
        .map(|(a, b)| format!("{a}{b}"))
        .collect()
}

/// The value of cookie `name` (RFC 6265 section 5.4 syntax: `name=value`
/// pairs separated by `;`, names and values trimmed, a quoted value unquoted).
/// The first occurrence wins.
pub fn cookie_value<'a>(cookies: &'a str, name: &str) -> Option<&'a str> {
    cookies.split(';').find_map(|pair| {
        let (n, v) = pair.split_once('=')?;
        if n.trim() != name {
            return None;
        }
        let v = v.trim();
        Some(
            v.strip_prefix('"')
                .and_then(|x| x.strip_suffix('"'))
                .unwrap_or(v),
        )
    })
}

/// The session's segment: CRC-32 (IEEE) of the value, mod 100.
pub fn segment(value: &str) -> u32 {
    crc32fast::hash(value.as_bytes()) % 100
}

/// Everything decidable without Redis.
pub fn pre_evaluate(c: &Condition, facts: &RequestFacts) -> Tri {
    match c {
        Condition::And(items) => {
            let mut all = Tri::True;
            for item in items {
                match pre_evaluate(item, facts) {
                    Tri::False => return Tri::False,
                    Tri::Unknown => all = Tri::Unknown,
                    Tri::True => {}
                }
            }
            all
        }
        Condition::Or(items) => {
            let mut any = Tri::False;
            for item in items {
                match pre_evaluate(item, facts) {
                    Tri::True => return Tri::True,
                    Tri::Unknown => any = Tri::Unknown,
                    Tri::False => {}
                }
            }
            any
        }
        Condition::Not(inner) => match pre_evaluate(inner, facts) {
            Tri::True => Tri::False,
            Tri::False => Tri::True,
            Tri::Unknown => Tri::Unknown,
        },
        Condition::PathPrefix(p) => facts.path.starts_with(p.as_str()).into(),
        Condition::PathMatches { .. } => Tri::Unknown,
        Condition::InSegment {
            cookie,
            max_segment_id,
        } => cookie_value(&facts.cookies, cookie)
            .is_some_and(|v| segment(v) <= *max_segment_id)
            .into(),
    }
}

/// The `path_matches` nodes of `c`, depth first; their answers are passed to
/// [`evaluate`] in the same order.
pub fn path_queries(c: &Condition) -> Vec<(&str, usize)> {
    let mut out = Vec::new();
    collect(c, &mut out);
    out
}

fn collect<'a>(c: &'a Condition, out: &mut Vec<(&'a str, usize)>) {
    match c {
        Condition::And(items) | Condition::Or(items) => items.iter().for_each(|i| collect(i, out)),
        Condition::Not(inner) => collect(inner, out),
        Condition::PathMatches { prefix, server } => out.push((prefix, *server)),
        Condition::PathPrefix(_) | Condition::InSegment { .. } => {}
    }
}

fn all_results(
    items: &[Condition],
    facts: &RequestFacts,
    answers: &[bool],
    next: &mut usize,
) -> Vec<bool> {
    items
        .iter()
        .map(|i| eval(i, facts, answers, next))
        .collect()
}

/// The full value, with `answers[i]` the result of the i-th `path_matches` node.
pub fn evaluate(c: &Condition, facts: &RequestFacts, answers: &[bool]) -> bool {
    let mut next = 0;
    eval(c, facts, answers, &mut next)
}

fn eval(c: &Condition, facts: &RequestFacts, answers: &[bool], next: &mut usize) -> bool {
    match c {
        // Every node is visited (no short-circuit) so answers stay aligned.
        Condition::And(items) => all_results(items, facts, answers, next).iter().all(|&b| b),
        Condition::Or(items) => all_results(items, facts, answers, next).iter().any(|&b| b),
        Condition::Not(inner) => !eval(inner, facts, answers, next),
        Condition::PathMatches { .. } => {
            let a = answers.get(*next).copied().unwrap_or(false);
            *next += 1;
            a
        }
        other => pre_evaluate(other, facts) == Tri::True,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_normalised_as_backends_read_them() {
        let table = [
            ("/api/x", "/api/x"),
            ("/%61pi/x", "/api/x"),
            ("/%41PI/x", "/API/x"),
            ("//api//x", "/api/x"),
            ("/x/../api/x", "/api/x"),
            ("/./api/./x", "/api/x"),
            ("/%2e%2e/api", "/api"),
            ("/a/b/..", "/a/"),
            ("/a/.", "/a/"),
            ("/..", "/"),
            ("/../../x", "/x"),
            ("/", "/"),
            ("/a%2Fb", "/a%2Fb"),
            ("/a%20b", "/a%20b"),
            ("/%zz", "/%zz"),
            ("/caf%C3%A9", "/caf%C3%A9"),
            ("*", "*"),
        ];
        for (raw, want) in table {
            assert_eq!(normalize_path(raw.as_bytes()), want, "{raw}");
        }
    }

    fn facts(path: &str, cookies: &str) -> RequestFacts {
        RequestFacts {
            path: path.into(),
            cookies: cookies.into(),
        }
    }

    #[test]
    fn patterns_match_lopache() {
        assert_eq!(
            path_patterns("/public/jobs/1"),
            ["/*", "/public/*", "/public/jobs/*", "/public/jobs/1"]
        );
        assert_eq!(path_patterns("/"), ["/*", "/"]);
        assert_eq!(path_patterns("/a/"), ["/*", "/a/*", "/a/"]);
    }

    #[test]
    fn cookie_parsing() {
        let h = "a=1; _sess = abc ;quoted=\"q v\"; a=2";
        assert_eq!(cookie_value(h, "a"), Some("1"));
        assert_eq!(cookie_value(h, "_sess"), Some("abc"));
        assert_eq!(cookie_value(h, "quoted"), Some("q v"));
        assert_eq!(cookie_value(h, "missing"), None);
        assert_eq!(cookie_value("", "a"), None);
        assert_eq!(cookie_value("novalue", "novalue"), None);
    }

    #[test]
    fn segments_are_crc32_mod_100() {
        // CRC-32/IEEE("123456789") = 0xCBF43926 = 3421780262.
        assert_eq!(segment("123456789"), 3421780262 % 100);
        assert_eq!(segment(""), 0);
    }

    #[test]
    fn three_valued_logic_and_full_evaluation() {
        let seg = |max| Condition::InSegment {
            cookie: "s".into(),
            max_segment_id: max,
        };
        let pm = || Condition::PathMatches {
            prefix: "p:".into(),
            server: 0,
        };
        let f = facts("/api/x", "s=123456789"); // segment 62
        assert_eq!(pre_evaluate(&seg(62), &f), Tri::True);
        assert_eq!(pre_evaluate(&seg(61), &f), Tri::False);
        assert_eq!(
            pre_evaluate(&seg(99), &facts("/", "")),
            Tri::False,
            "no cookie is false"
        );
        let and = Condition::And(vec![seg(10), pm()]);
        assert_eq!(
            pre_evaluate(&and, &f),
            Tri::False,
            "a false cookie test needs no Redis"
        );
        let and = Condition::And(vec![seg(90), pm()]);
        assert_eq!(pre_evaluate(&and, &f), Tri::Unknown);
        assert!(evaluate(&and, &f, &[true]));
        assert!(!evaluate(&and, &f, &[false]));
        let or = Condition::Or(vec![Condition::PathPrefix("/api/".into()), pm()]);
        assert_eq!(pre_evaluate(&or, &f), Tri::True);
        let not = Condition::Not(Box::new(pm()));
        assert_eq!(pre_evaluate(&not, &f), Tri::Unknown);
        assert!(evaluate(&not, &f, &[false]));
        let nested = Condition::Or(vec![
            Condition::And(vec![pm(), seg(90)]),
            Condition::Not(Box::new(pm())),
        ]);
        assert_eq!(path_queries(&nested).len(), 2);
        assert!(evaluate(&nested, &f, &[false, false]));
        assert!(!evaluate(&nested, &f, &[false, true]));
        assert!(evaluate(&nested, &f, &[true, true]));
    }
}
