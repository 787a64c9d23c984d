//! Fuzz target bodies, shared by the cargo-fuzz harness in `fuzz/` (nightly)
//! and by `tests/fuzz_corpus.rs`, which replays every committed corpus and
//! regression input as an ordinary test on stable. Each function takes any
//! bytes and panics only when a property is broken.
//!
//! Besides "no panic" for every parser, two re-parse properties hold the
//! proxy to its word: whatever lopache accepts and forwards, read again by
//! the independent strict reader in [`strict`], is exactly one message with
//! the same start line, the same end-to-end fields and the same body. That is
//! the property a `Connection: Content-Length` request broke.

pub mod strict;

use std::net::{IpAddr, Ipv4Addr};

use crate::http::chunked::{ChunkedDecoder, Step};
use crate::http::headers::{is_hop_by_hop, list_elements};
use crate::http::request::{parse_request, Method, RequestHead};
use crate::http::response::parse_response;
use crate::http::rewrite::{
    client_response, upstream_request, ClientFraming, ClientSide, RequestRewrite,
};
use crate::http::{BodyKind, HeaderSpan, Limits, Version};
use crate::io::pump::{BodyRelay, ChunkedMode};

/// A fuzz target: any bytes in, a panic only when a property breaks.
pub type Target = fn(&[u8]);

/// Every fuzz target by name, as `fuzz/` and the corpus test know them.
pub const TARGETS: [(&str, Target); 12] = [
    ("request_head", request_head),
    ("response_head", response_head),
    ("chunked", chunked),
    ("resp_reply", resp_reply),
    ("config_toml", config_toml),
    ("config_json", config_json),
    ("request_reparse", request_reparse),
    ("response_reparse", response_reparse),
    ("path_patterns", path_patterns),
    ("cert_keys", cert_keys),
    ("normalize_path", normalize_path),
    ("proxy_header", proxy_header),
];

/// Small limits, so the fuzzer reaches every limit branch quickly.
fn limits() -> Limits {
    Limits {
        request_head_bytes: 2048,
        header_count: 24,
        uri_bytes: 512,
        chunk_line_bytes: 64,
        trailer_bytes: 256,
        response_head_bytes: 2048,
        response_header_count: 64,
        path_segments: 8,
    }
}

/// The request head parser: no panic, and every span it reports lies inside
/// the head it measured.
pub fn request_head(data: &[u8]) {
    let limits = limits();
    if let Ok(Some(head)) = parse_request(data, &limits) {
        assert!(head.len <= data.len());
        let bytes = &data[..head.len];
        let _ = (
            head.method_bytes(bytes),
            head.target(bytes),
            head.host(bytes),
        );
        for h in &head.headers {
            let _ = (h.name(bytes), h.value(bytes));
        }
        assert!(head.headers.len() <= limits.header_count);
    }
}

/// The response head parser: no panic, spans inside the head.
pub fn response_head(data: &[u8]) {
    let Some((&flags, data)) = data.split_first() else {
        return;
    };
    if let Ok(Some(resp)) = parse_response(data, &limits(), flags & 1 == 1) {
        let bytes = &data[..resp.len];
        let _ = resp.reason(bytes);
        for h in &resp.headers {
            let _ = (h.name(bytes), h.value(bytes));
        }
    }
}

/// The chunked decoder: the same verdict and the same data whether the
/// input comes whole or split at the point the first byte names.
pub fn chunked(data: &[u8]) {
    let Some((&split, data)) = data.split_first() else {
        return;
    };
    let whole = decode_chunked(&[data]);
    let cut = usize::from(split).min(data.len());
    let parts = decode_chunked(&[&data[..cut], &data[cut..]]);
    assert_eq!(whole, parts, "splitting the input changed the result");
}

/// Decodes the concatenation of `parts`, fed one part at a time.
fn decode_chunked(parts: &[&[u8]]) -> Result<(Vec<u8>, usize, bool), ()> {
    let limits = limits();
    let mut d = ChunkedDecoder::new(limits.chunk_line_bytes, limits.trailer_bytes);
    let (mut data, mut used) = (Vec::new(), 0);
    for part in parts {
        let mut pos = 0;
        while pos < part.len() && !d.is_done() {
            match d.step(&part[pos..]).map_err(|_| ())? {
                Step::Framing(n) => pos += n,
                Step::Data(n) => {
                    data.extend_from_slice(&part[pos..pos + n]);
                    pos += n;
                }
            }
        }
        used += pos;
        if d.is_done() {
            break;
        }
    }
    Ok((data, used, d.is_done()))
}

/// The RESP reply decoder: no panic, and a decoded reply never claims more
/// bytes than it was given. An array reply is also read as a lookup's
/// replies for host `a` (the lists of `a` and `*`, then the dead set): the
/// frontend found reads as the first non-empty list's items, with at most
/// `MAX_BACKENDS` backends.
pub fn resp_reply(data: &[u8]) {
    use crate::redis::codec::{array_items, decode_reply, string_bytes, Reply};
    use crate::routing::lookup::{decode_lookup, MAX_BACKENDS};
    let Ok(Some((reply, used))) = decode_reply(data) else {
        return;
    };
    assert!(used <= data.len());
    let Reply::Array(replies) = reply else {
        return;
    };
    let candidates = crate::routing::candidates::Candidates::new("a");
    let Ok(Some(found)) = decode_lookup(&replies, &candidates, false) else {
        return;
    };
    let list = replies
        .iter()
        .find_map(|r| array_items(r).filter(|items| !items.is_empty()))
        .expect("a frontend comes from a non-empty list");
    let text = |i: usize| String::from_utf8_lossy(string_bytes(&list[i]).expect("a string"));
    assert_eq!(found.identifier(), text(0));
    assert_eq!(found.backend_count(), (list.len() - 1).min(MAX_BACKENDS));
    for i in 0..found.backend_count() {
        assert_eq!(found.backend(i), text(i + 1));
    }
    assert_eq!(found.backend(found.backend_count()), "");
}

/// TOML config loading: no panic on any text.
pub fn config_toml(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = crate::config::from_toml(text, std::path::Path::new("/nonexistent"));
    }
}

/// Hipache/Lopache JSON config loading: no panic on any text.
pub fn config_json(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = crate::config::from_json(text, std::path::Path::new("/nonexistent"));
    }
}

/// The `path_matches` pattern builder against the obvious implementation
/// (split, join, append `/*`): same patterns, and a path over the segment
/// limit is refused rather than turned into patterns.
pub fn path_patterns(data: &[u8]) {
    let path = String::from_utf8_lossy(data);
    let max = limits().path_segments;
    let slashes = path.matches('/').count();
    match crate::routing::rules::PathPatterns::new(&path, max) {
        Err(_) => assert!(slashes > max),
        Ok(patterns) => {
            let parts: Vec<&str> = path.split('/').collect();
            let want: Vec<String> = (0..parts.len())
                .map(|i| {
                    let joined = parts[..=i].join("/");
                    if i + 1 < parts.len() {
                        format!("{joined}/*")
                    } else {
                        joined
                    }
                })
                .collect();
            let got: Vec<String> = patterns.iter().map(|(a, b)| format!("{a}{b}")).collect();
            assert_eq!(got, want);
            assert_eq!(patterns.len(), want.len());
        }
    }
}

/// The path route rules see: what comes out has no empty, `.` or `..`
/// segment (nothing a backend would resolve further), and for a path whose
/// escapes are all well formed, normalising again changes nothing. (In
/// `/%6%61pi` the stray `%6` meets the decoded `a`: a new escape, which a
/// backend decoding once does not decode either.)
pub fn normalize_path(data: &[u8]) {
    let once = crate::routing::rules::normalize_path(data);
    let well_formed = data.iter().enumerate().all(|(i, &b)| {
        b != b'%'
            || data
                .get(i + 1..i + 3)
                .is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit))
    });
    if well_formed {
        assert_eq!(crate::routing::rules::normalize_path(once.as_bytes()), once);
    }
    if let Some(inner) = once.strip_prefix('/') {
        let segments: Vec<&str> = inner.split('/').collect();
        for (i, seg) in segments.iter().enumerate() {
            assert!(*seg != "." && *seg != "..", "{once:?}");
            assert!(!seg.is_empty() || i + 1 == segments.len(), "{once:?}");
        }
    }
}

/// The Redis keys a certificate is looked up under: the exact name first,
/// and every name below one parent shares that parent's wildcard key (which
/// is what the certificate cache is keyed by).
pub fn cert_keys(data: &[u8]) {
    let name = String::from_utf8_lossy(data);
    let (exact, wildcard) = crate::tls::redis_certs::cert_keys(&name);
    assert_eq!(exact, format!("tls:{name}"));
    match name.split_once('.') {
        Some((_, parent)) if !parent.is_empty() => {
            assert_eq!(
                wildcard.as_deref(),
                Some(format!("tls:*.{parent}").as_str())
            );
            let sibling = format!("other.{parent}");
            assert_eq!(crate::tls::redis_certs::cert_keys(&sibling).1, wildcard);
        }
        _ => assert_eq!(wildcard, None),
    }
}

const CLIENT: ClientSide = ClientSide {
    peer: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
    proto: "http",
    port: 80,
};

/// Fields lopache adds or regenerates on the way upstream, and so leaves
/// out of the end-to-end comparison.
const SET_BY_LOPACHE: [&[u8]; 8] = [
    b"content-length",
    b"transfer-encoding",
    b"x-forwarded-for",
    b"x-real-ip",
    b"x-forwarded-proto",
    b"x-forwarded-port",
    b"connection",
    b"upgrade",
];

/// The request re-parse property. For any input the request path accepts
/// (a head, and a body complete in the input), the bytes lopache sends
/// upstream are exactly one strict HTTP/1.1 request with the same method,
/// target, end-to-end fields and body.
pub fn request_reparse(data: &[u8]) {
    let limits = limits();
    let Ok(Some(head)) = parse_request(data, &limits) else {
        return;
    };
    // The session answers these itself; nothing goes upstream.
    if head.method == Method::Connect || head.host.is_none() {
        return;
    }
    let Some(body) = complete_body(&data[head.len..], head.body) else {
        return;
    };
    let how = RequestRewrite {
        keep_alive: data.len() % 2 == 0,
        underscores_in_headers: data.len() % 3 == 0,
        extra: b"",
    };
    let mut out = Vec::new();
    upstream_request(&data[..head.len], &head, &CLIENT, how, &mut out);
    out.extend_from_slice(body);
    let sent = strict::read_request(&out).unwrap_or_else(|e| {
        panic!(
            "lopache would send a request a strict parser refuses ({e}): {:?}",
            String::from_utf8_lossy(&out)
        )
    });
    assert_eq!(sent.consumed, out.len(), "more than one request upstream");
    assert_eq!(sent.start[0], head.method_bytes(data));
    assert_eq!(sent.start[1], head.target(data));
    assert_eq!(
        end_to_end(&sent.headers),
        expected_request_fields(data, &head, how.underscores_in_headers),
        "end-to-end fields changed"
    );
    assert_eq!(sent.body, decoded(body, head.body), "the body changed");
}

/// The response re-parse property: for any backend response lopache relays
/// in full, the bytes the client gets are one strict response with the same
/// status, end-to-end fields and body.
pub fn response_reparse(data: &[u8]) {
    let Some((&flags, data)) = data.split_first() else {
        return;
    };
    let (was_head, client_version) = (
        flags & 1 == 1,
        if flags & 2 == 2 {
            Version::Http10
        } else {
            Version::Http11
        },
    );
    let Ok(Some(resp)) = parse_response(data, &limits(), was_head) else {
        return;
    };
    if resp.is_interim() || resp.status == 101 {
        return;
    }
    let framing = if client_version == Version::Http10 && resp.body == BodyKind::Chunked {
        ClientFraming::Dechunk
    } else {
        ClientFraming::AsIs
    };
    let Some(raw) = complete_body(&data[resp.len..], resp.body) else {
        return;
    };
    // As `proxy::forward` decides it: close-delimited, dechunked and
    // conflicting responses never keep the client connection.
    let keep = flags & 4 == 4
        && framing == ClientFraming::AsIs
        && resp.body != BodyKind::UntilClose
        && !resp.framing_conflict;
    let mut out = Vec::new();
    client_response(data, &resp, client_version, keep, framing, b"", &mut out);
    let data_bytes = decoded(raw, resp.body);
    match framing {
        ClientFraming::AsIs => out.extend_from_slice(raw),
        ClientFraming::Dechunk => out.extend_from_slice(&data_bytes),
    }
    let got = strict::read_response(&out, was_head).unwrap_or_else(|e| {
        panic!(
            "lopache would send a response a strict parser refuses ({e}): {:?}",
            String::from_utf8_lossy(&out)
        )
    });
    assert_eq!(
        got.consumed,
        out.len(),
        "more than one response to the client"
    );
    assert_eq!(got.start[1], resp.status.to_string().as_bytes());
    let mut want = end_to_end(&fields_of(data, &resp.headers, &[]));
    let named = connection_named(data, &resp.headers);
    want.retain(|(n, _)| !named.contains(n));
    assert_eq!(end_to_end(&got.headers), want, "end-to-end fields changed");
    assert_eq!(got.body, data_bytes, "the body changed");
}

/// Bytes of the body at the front of `rest` as it arrived, or `None` when
/// the body is refused or not complete in `rest`.
fn complete_body(rest: &[u8], kind: BodyKind) -> Option<&[u8]> {
    let relay = BodyRelay::new(kind, ChunkedMode::Verbatim, &limits());
    let (n, next) = relay.buffered(rest).ok()?;
    (next.is_done() || kind == BodyKind::UntilClose).then_some(&rest[..n])
}

/// The body's data: chunked coding removed with lopache's decoder.
fn decoded(body: &[u8], kind: BodyKind) -> Vec<u8> {
    if kind != BodyKind::Chunked {
        return body.to_vec();
    }
    match decode_chunked(&[body]) {
        Ok((data, _, true)) => data,
        other => panic!("a body lopache accepted does not decode: {other:?}"),
    }
}

/// What `Connection` may never remove, stated here again on purpose: the
/// property checks `http::headers` against the README's rule, not against
/// itself.
const NEVER_REMOVED: [&[u8]; 7] = [
    b"content-length",
    b"transfer-encoding",
    b"host",
    b"x-forwarded-for",
    b"x-forwarded-proto",
    b"x-forwarded-port",
    b"x-real-ip",
];

/// Names listed in Connection fields (lowercased), except those that may
/// not be removed that way (RFC 9110 section 7.6.1 and the README).
fn connection_named(head: &[u8], headers: &[HeaderSpan]) -> Vec<Vec<u8>> {
    headers
        .iter()
        .filter(|h| h.name(head).eq_ignore_ascii_case(b"connection"))
        .flat_map(|h| list_elements(h.value(head)))
        .map(<[u8]>::to_ascii_lowercase)
        .filter(|n| !NEVER_REMOVED.contains(&n.as_slice()))
        .collect()
}

fn fields_of(head: &[u8], headers: &[HeaderSpan], skip: &[&[u8]]) -> Vec<(Vec<u8>, Vec<u8>)> {
    headers
        .iter()
        .filter(|h| !skip.iter().any(|s| h.name(head).eq_ignore_ascii_case(s)))
        .map(|h| (h.name(head).to_vec(), h.value(head).to_vec()))
        .collect()
}

/// The fields a backend should see of the client's request.
fn expected_request_fields(
    data: &[u8],
    head: &RequestHead,
    underscores: bool,
) -> Vec<(Vec<u8>, Vec<u8>)> {
    let named = connection_named(data, &head.headers);
    let mut want = end_to_end(&fields_of(data, &head.headers, &[b"expect"]));
    want.retain(|(n, _)| !named.contains(n) && underscore_kept(n, underscores));
    want
}

/// Underscored names pass only when allowed, and never when reading `_` as
/// `-` makes them a header lopache frames, routes or sets.
fn underscore_kept(name: &[u8], allowed: bool) -> bool {
    if !name.contains(&b'_') {
        return true;
    }
    let dashed: Vec<u8> = name
        .iter()
        .map(|&b| {
            if b == b'_' {
                b'-'
            } else {
                b.to_ascii_lowercase()
            }
        })
        .collect();
    allowed
        && !NEVER_REMOVED.contains(&dashed.as_slice())
        && dashed != b"expect"
        && !is_hop_by_hop(&dashed)
}

/// Lowercased names with their values, hop-by-hop and lopache's own removed.
fn end_to_end(fields: &[(Vec<u8>, Vec<u8>)]) -> Vec<(Vec<u8>, Vec<u8>)> {
    fields
        .iter()
        .map(|(n, v)| (n.to_ascii_lowercase(), trim_value(v).to_vec()))
        .filter(|(n, _)| !is_hop_by_hop(n) && !SET_BY_LOPACHE.contains(&n.as_slice()))
        .collect()
}

fn trim_value(v: &[u8]) -> &[u8] {
    crate::http::headers::trim_ows(v)
}

/// The PROXY protocol header parser: no panic; a header it accepts lies
/// within the bytes and the bound, reads the same on its own, and every
/// shorter prefix of it asks for more (so a header split over packets
/// reads as it does whole).
pub fn proxy_header(data: &[u8]) {
    use crate::net::proxy_protocol::{parse, Parsed, MAX_HEADER};
    let Ok(Parsed::Header { len, relayed }) = parse(data) else {
        return;
    };
    assert!(
        len <= data.len() && len <= MAX_HEADER,
        "{len} of {}",
        data.len()
    );
    assert_eq!(parse(&data[..len]), Ok(Parsed::Header { len, relayed }));
    for n in 1..len {
        assert_eq!(
            parse(&data[..n]),
            Ok(Parsed::Incomplete),
            "prefix {n} of {len}"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties_hold_for_typical_messages() {
        request_reparse(b"POST /a?b HTTP/1.1\r\nHost: h\r\nConnection: Content-Length, X-A\r\nX-A: 1\r\nX-B: 2\r\nContent-Length: 3\r\n\r\nabc");
        request_reparse(b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: ,chunked\r\n\r\n3;x=\"y\"\r\nabc\r\n0\r\nT: 1\r\n\r\n");
        response_reparse(
            b"\x00HTTP/1.1 200 OK\r\nConnection: Content-Length\r\nContent-Length: 3\r\n\r\nabc",
        );
        response_reparse(b"\x02HTTP/1.1 200 OK\r\nContent-Length: 9\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n");
        response_reparse(b"\x01HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n");
        for (_, target) in TARGETS {
            target(b"");
            target(b"\x00GET / HTTP/1.1\r\n\r\n");
        }
    }
}
