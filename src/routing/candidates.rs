//! Host normalisation and Hipache's candidate order (README, "Host resolution").

/// Wildcards cover at most this many labels of the host (Hipache's depth).
const MAX_WILDCARD_LABELS: usize = 5;

/// Strips the port, lowercases and drops one trailing dot:
/// `Example.COM.:8080` -> `example.com`, `[::1]:80` -> `[::1]`.
/// `None` for an empty or malformed host.
pub fn normalize_host(raw: &[u8]) -> Option<String> {
    let raw = std::str::from_utf8(raw).ok()?.trim();
    let host = if raw.starts_with('[') {
        let end = raw.find(']')?;
        let rest = &raw[end + 1..];
        if !(rest.is_empty() || rest.strip_prefix(':').is_some_and(is_port)) {
            return None;
        }
        &raw[..=end]
    } else {
        match raw.rsplit_once(':') {
            Some((h, port)) if is_port(port) => h,
            Some(_) => return None,
            None => raw,
        }
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.is_empty() || !host.bytes().all(is_host_byte) {
        return None;
    }
    Some(host.to_ascii_lowercase())
}

fn is_port(p: &str) -> bool {
    p.bytes().all(|b| b.is_ascii_digit())
}

/// Letters, digits and the punctuation a reg-name or IP literal may hold;
/// nothing that could confuse a log line or a Redis key reader.
fn is_host_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'.' | b'_' | b'[' | b']' | b':' | b'*' | b'~' | b'%'
        )
}

/// The keys to try, in order: the host, then `*.` + each proper suffix of up to
/// five labels, longest first, then `*`. Built per request without allocating:
/// the wildcards are offsets into the host.
pub struct Candidates<'a> {
    host: &'a str,
    /// Where each wildcard's suffix starts in `host`, longest suffix first.
    suffixes: [usize; MAX_WILDCARD_LABELS],
    wildcards: usize,
}

impl<'a> Candidates<'a> {
    pub fn new(host: &'a str) -> Self {
        // The byte after each of the last five dots, walking back: shortest
        // suffix first, then reversed.
        let mut suffixes = [0; MAX_WILDCARD_LABELS];
        let mut wildcards = 0;
        for (at, byte) in host.bytes().enumerate().rev() {
            if byte == b'.' {
                if wildcards == MAX_WILDCARD_LABELS {
                    break;
                }
                suffixes[wildcards] = at + 1;
                wildcards += 1;
            }
        }
        suffixes[..wildcards].reverse();
        Candidates {
            host,
            suffixes,
            wildcards,
        }
    }

    pub fn len(&self) -> usize {
        self.wildcards + 2
    }

    /// Never: the host and `*` are always candidates.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Candidate `i` as two pieces to concatenate (so it can be written into
    /// a command without first being assembled).
    pub fn parts(&self, i: usize) -> [&'a str; 2] {
        match i {
            0 => [self.host, ""],
            i if i <= self.wildcards => ["*.", &self.host[self.suffixes[i - 1]..]],
            _ => ["*", ""],
        }
    }

    /// Candidate `i` as text.
    pub fn key(&self, i: usize) -> String {
        self.parts(i).concat()
    }

    /// Every candidate as text, in order.
    #[cfg(test)]
    pub fn keys(&self) -> Vec<String> {
        (0..self.len()).map(|i| self.key(i)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalisation_table() {
        let table: &[(&str, Option<&str>)] = &[
            ("example.com", Some("example.com")),
            ("Example.COM:8080", Some("example.com")),
            ("example.com.", Some("example.com")),
            ("example.com.:80", Some("example.com")),
            ("[::1]:80", Some("[::1]")),
            ("[::1]", Some("[::1]")),
            ("127.0.0.1:1", Some("127.0.0.1")),
            ("", None),
            (":80", None),
            ("a b", None),
            ("a/b", None),
            ("host:port", None),
            ("[::1]x", None),
        ];
        for (input, want) in table {
            assert_eq!(
                normalize_host(input.as_bytes()).as_deref(),
                *want,
                "{input:?}"
            );
        }
    }

    #[test]
    fn candidate_order_matches_spec() {
        let candidates = |host| Candidates::new(host).keys();
        assert_eq!(
            candidates("a.b.c.d.e.f.g.h"),
            [
                "a.b.c.d.e.f.g.h",
                "*.d.e.f.g.h",
                "*.e.f.g.h",
                "*.f.g.h",
                "*.g.h",
                "*.h",
                "*"
            ]
        );
        assert_eq!(candidates("foo.bar"), ["foo.bar", "*.bar", "*"]);
        assert_eq!(candidates("localhost"), ["localhost", "*"]);
        assert_eq!(
            candidates("too.deep.quuux.foo.bar.baz.qux.quux")[1],
            "*.foo.bar.baz.qux.quux"
        );
        assert_eq!(
            candidates("127.0.0.1"),
            ["127.0.0.1", "*.0.0.1", "*.0.1", "*.1", "*"]
        );
        assert_eq!(candidates("[::1]"), ["[::1]", "*"]);
        assert_eq!(candidates("a..b"), ["a..b", "*..b", "*.b", "*"]);
    }
}
