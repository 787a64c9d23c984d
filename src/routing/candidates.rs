//! Host normalisation and Hipache's candidate order (SPEC section 3, steps 2-3).

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
/// five labels, longest first, then `*`.
pub fn candidates(host: &str) -> Vec<String> {
    let labels: Vec<&str> = host.split('.').collect();
    let mut out = Vec::with_capacity(MAX_WILDCARD_LABELS + 2);
    out.push(host.to_string());
    let longest = labels.len().saturating_sub(1).min(MAX_WILDCARD_LABELS);
    for k in (1..=longest).rev() {
        out.push(format!("*.{}", labels[labels.len() - k..].join(".")));
    }
    out.push("*".to_string());
    out
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
    }
}
