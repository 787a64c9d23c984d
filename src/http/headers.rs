//! Header-value helpers shared by request and response handling: token lists
//! (RFC 9110 section 5.6.1), hop-by-hop classification and Content-Length checks.

/// Iterates the comma-separated elements of a list-valued field, trimmed of
/// optional whitespace, skipping empty elements (RFC 9110 section 5.6.1).
pub fn list_elements(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(trim_ows)
        .filter(|e| !e.is_empty())
}

/// Strips spaces and horizontal tabs from both ends.
pub fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// True when the list-valued `value` holds `token`, compared case-insensitively.
pub fn list_contains(value: &[u8], token: &[u8]) -> bool {
    list_elements(value).any(|e| e.eq_ignore_ascii_case(token))
}

/// Headers that describe one connection and are never forwarded as they are
/// (RFC 9110 section 7.6.1), plus the proxy-era `Proxy-Connection`.
pub fn is_hop_by_hop(name: &[u8]) -> bool {
    const HOP: [&[u8]; 6] = [
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"upgrade",
    ];
    HOP.iter().any(|h| h.eq_ignore_ascii_case(name))
}

/// Parses a Content-Length value strictly: 1*DIGIT only (RFC 9110 section 8.6).
/// Rust's `parse` would accept `+5`, so digits are checked first. A value with
/// commas is a list whose members must all be equal (RFC 9112 section 6.3 item 5).
pub fn parse_content_length(value: &[u8]) -> Option<u64> {
    let mut result: Option<u64> = None;
    let mut any = false;
    for part in value.split(|&b| b == b',') {
        let part = trim_ows(part);
        let n = parse_digits(part)?;
        if result.is_some_and(|r| r != n) {
            return None;
        }
        result = Some(n);
        any = true;
    }
    if any {
        result
    } else {
        None
    }
}

/// Parses 1 to 19 ASCII digits (19 digits always fit in a u64).
pub fn parse_digits(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 19 || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(
        s.iter()
            .fold(0u64, |acc, &d| acc * 10 + u64::from(d - b'0')),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_elements_trim_and_skip_empty() {
        let v: Vec<&[u8]> = list_elements(b" keep-alive ,, Upgrade\t,").collect();
        assert_eq!(v, vec![&b"keep-alive"[..], &b"Upgrade"[..]]);
        assert!(list_contains(b"Keep-Alive, UPGRADE", b"upgrade"));
        assert!(!list_contains(b"upgrades", b"upgrade"));
    }

    #[test]
    fn content_length_table() {
        let table: &[(&[u8], Option<u64>)] = &[
            (b"0", Some(0)),
            (b"42", Some(42)),
            (b"007", Some(7)),
            (b"+5", None),
            (b"-1", None),
            (b"5 ", Some(5)),
            (b"", None),
            (b"1e3", None),
            (b"0x10", None),
            (b"5, 5", Some(5)),
            (b"5,6", None),
            (b"5,", None),
            (b"99999999999999999999", None),
            (b"9999999999999999999", Some(9_999_999_999_999_999_999)),
        ];
        for (input, want) in table {
            assert_eq!(
                parse_content_length(input),
                *want,
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn hop_by_hop_names() {
        for n in [
            "Connection",
            "keep-alive",
            "Proxy-Connection",
            "TE",
            "Trailer",
            "upgrade",
        ] {
            assert!(is_hop_by_hop(n.as_bytes()), "{n}");
        }
        for n in ["Host", "Content-Length", "Transfer-Encoding", "Trailers"] {
            assert!(!is_hop_by_hop(n.as_bytes()), "{n}");
        }
    }
}
