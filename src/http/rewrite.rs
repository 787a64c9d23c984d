//! Writing heads out: the request as the backend receives it (hop-by-hop
//! headers removed, forwarded headers set) and the response as the client
//! receives it (hop-by-hop removed, the connection's own fate announced).

use std::net::IpAddr;

use crate::ascii::{push_decimal, push_ip};

use super::headers::{is_framing, is_hop_by_hop, is_protected, list_elements};
use super::request::RequestHead;
use super::response::ResponseHead;
use super::{BodyKind, HeaderSpan, Version};

/// Facts about the client connection that the backend is told.
#[derive(Debug, Clone, Copy)]
pub struct ClientSide {
    pub peer: IpAddr,
    /// `http` or `https`: the scheme the client actually used.
    pub proto: &'static str,
    /// The local port the client connected to.
    pub port: u16,
}

/// Headers that the proxy sets itself; client-supplied copies are replaced
/// (X-Forwarded-For is appended to rather than replaced).
fn is_replaced_request_header(name: &[u8]) -> bool {
    [
        &b"x-real-ip"[..],
        b"x-forwarded-proto",
        b"x-forwarded-port",
        b"expect",
    ]
    .iter()
    .any(|h| h.eq_ignore_ascii_case(name))
}

/// Names listed in the message's Connection fields: hop-by-hop for this
/// message (RFC 9110 section 7.6.1). Names that are hop-by-hop anyway
/// (`keep-alive`, the usual one) are left out, so the common message
/// allocates nothing here, and so are the protected names, which
/// `Connection` can never remove (see `headers::is_protected`).
fn connection_named<'a>(head: &'a [u8], headers: &[HeaderSpan]) -> Vec<&'a [u8]> {
    headers
        .iter()
        .filter(|h| h.name(head).eq_ignore_ascii_case(b"connection"))
        .flat_map(|h| list_elements(h.value(head)))
        .filter(|name| !is_hop_by_hop(name) && !is_protected(name))
        .collect()
}

fn is_dropped(name: &[u8], named: &[&[u8]]) -> bool {
    is_hop_by_hop(name) || is_framing(name) || named.iter().any(|n| n.eq_ignore_ascii_case(name))
}

/// An underscored name that, read with `_` as `-` (as CGI-style backends
/// and some frameworks do), would still not be a framing, hop-by-hop or
/// forwarded header: `Transfer_Encoding` never reaches a backend, even with
/// `underscores_in_headers` on.
fn underscore_is_safe(name: &[u8], extra: &[u8]) -> bool {
    let mut dashed = [0u8; 32];
    let Some(dashed) = dashed.get_mut(..name.len()) else {
        return true; // longer than any such header
    };
    for (d, &b) in dashed.iter_mut().zip(name) {
        *d = if b == b'_' { b'-' } else { b };
    }
    !(is_protected(dashed)
        || is_hop_by_hop(dashed)
        || is_replaced_request_header(dashed)
        || named_in(extra, dashed))
}

fn write_field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

fn write_content_length(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(b"Content-Length: ");
    push_decimal(out, n);
    out.extend_from_slice(b"\r\n");
}

/// How the request head is rewritten (from the config).
#[derive(Debug, Clone, Copy)]
pub struct RequestRewrite<'a> {
    /// The proxy wants to reuse the upstream connection afterwards.
    pub keep_alive: bool,
    /// Forward client headers whose names contain `_` (nginx's
    /// `underscores_in_headers`). Off by default: CGI-style backends read
    /// `X_Real_IP` as the `X-Real-IP` that lopache just set.
    pub underscores_in_headers: bool,
    /// Complete header lines (each ending in CRLF) lopache adds, e.g. the
    /// request ID; they replace the client's fields of the same names.
    pub extra: &'a [u8],
}

/// `name` is the name of one of the complete header lines in `extra`.
fn named_in(extra: &[u8], name: &[u8]) -> bool {
    extra
        .split(|&b| b == b'\n')
        .filter_map(|line| line.iter().position(|&b| b == b':').map(|at| &line[..at]))
        .any(|n| n.eq_ignore_ascii_case(name))
}

/// Appends the request head sent upstream to `out`. Framing headers are
/// lopache's own: the client's Content-Length and Transfer-Encoding are
/// replaced by one canonical field describing the body lopache relays.
pub fn upstream_request(
    head: &[u8],
    req: &RequestHead,
    client: &ClientSide,
    how: RequestRewrite<'_>,
    out: &mut Vec<u8>,
) {
    out.extend_from_slice(req.method_bytes(head));
    out.push(b' ');
    out.extend_from_slice(req.target(head));
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let named = connection_named(head, &req.headers);
    let mut forwarded_for = Vec::new();
    for h in &req.headers {
        let name = h.name(head);
        if is_dropped(name, &named) || is_replaced_request_header(name) {
            continue;
        }
        if !how.extra.is_empty() && named_in(how.extra, name) {
            continue;
        }
        if name.contains(&b'_')
            && !(how.underscores_in_headers && underscore_is_safe(name, how.extra))
        {
            continue;
        }
        if name.eq_ignore_ascii_case(b"x-forwarded-for") {
            if !h.value(head).is_empty() {
                forwarded_for.push(h.value(head));
            }
            continue;
        }
        write_field(out, name, h.value(head));
    }
    out.extend_from_slice(how.extra);
    match req.body {
        BodyKind::Length(n) => write_content_length(out, n),
        BodyKind::Chunked => out.extend_from_slice(b"Transfer-Encoding: chunked\r\n"),
        BodyKind::Empty if req.content_length_sent => write_content_length(out, 0),
        BodyKind::Empty | BodyKind::UntilClose => {}
    }
    // Earlier hops' X-Forwarded-For values, joined, then the client's address.
    out.extend_from_slice(b"X-Forwarded-For: ");
    for value in forwarded_for {
        out.extend_from_slice(value);
        out.extend_from_slice(b", ");
    }
    push_ip(out, client.peer);
    out.extend_from_slice(b"\r\nX-Real-IP: ");
    push_ip(out, client.peer);
    out.extend_from_slice(b"\r\nX-Forwarded-Proto: ");
    out.extend_from_slice(client.proto.as_bytes());
    out.extend_from_slice(b"\r\nX-Forwarded-Port: ");
    push_decimal(out, client.port.into());
    out.extend_from_slice(b"\r\n");
    if req.upgrade_websocket {
        out.extend_from_slice(b"Connection: upgrade\r\nUpgrade: websocket\r\n");
    } else if !how.keep_alive {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// How the client connection continues after this response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientFraming {
    /// Forward the body as the backend framed it.
    AsIs,
    /// The client is HTTP/1.0: strip chunked coding and end the body by closing.
    Dechunk,
}

/// Appends the response head sent to the client. `extra` holds complete
/// header lines (each ending in CRLF), e.g. the X-Debug ones and the
/// request ID; they replace the backend's fields of the same names. The backend's
/// Content-Length and Transfer-Encoding are replaced by lopache's own,
/// describing the body as lopache relays it.
pub fn client_response(
    head: &[u8],
    resp: &ResponseHead,
    client_version: Version,
    keep_alive: bool,
    framing: ClientFraming,
    extra: &[u8],
    out: &mut Vec<u8>,
) {
    out.extend_from_slice(b"HTTP/1.1 ");
    push_decimal(out, resp.status.into());
    out.push(b' ');
    out.extend_from_slice(resp.reason(head));
    out.extend_from_slice(b"\r\n");
    let named = connection_named(head, &resp.headers);
    for h in &resp.headers {
        let name = h.name(head);
        let upgrade_kept = resp.status == 101 && name.eq_ignore_ascii_case(b"upgrade");
        if is_dropped(name, &named) && !upgrade_kept {
            continue;
        }
        if !extra.is_empty() && named_in(extra, name) {
            continue;
        }
        write_field(out, name, h.value(head));
    }
    match (resp.body, framing) {
        (BodyKind::Length(n), _) => write_content_length(out, n),
        (BodyKind::Chunked, ClientFraming::AsIs) => {
            out.extend_from_slice(b"Transfer-Encoding: ");
            for coding in &resp.other_codings {
                out.extend_from_slice(coding);
                out.extend_from_slice(b", ");
            }
            out.extend_from_slice(b"chunked\r\n");
        }
        // RFC 9110 section 8.6: no Content-Length in 1xx and 204; on a HEAD
        // or 304 answer (and a 0-length body) it is the backend's, checked.
        (BodyKind::Empty, _) if resp.status >= 200 && resp.status != 204 => {
            if let Some(n) = resp.content_length {
                write_content_length(out, n);
            }
        }
        (BodyKind::Empty | BodyKind::UntilClose | BodyKind::Chunked, _) => {}
    }
    out.extend_from_slice(extra);
    if resp.status == 101 {
        out.extend_from_slice(b"Connection: upgrade\r\n");
    } else if !keep_alive {
        out.extend_from_slice(b"Connection: close\r\n");
    } else if client_version == Version::Http10 {
        out.extend_from_slice(b"Connection: keep-alive\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::request::parse_request;
    use crate::http::response::parse_response;
    use crate::http::Limits;

    const REWRITE: RequestRewrite = RequestRewrite {
        keep_alive: true,
        underscores_in_headers: false,
        extra: b"",
    };

    const CLIENT: ClientSide = ClientSide {
        peer: IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 9)),
        proto: "http",
        port: 8080,
    };

    fn rewrite_with(raw: &str, how: RequestRewrite) -> String {
        let req = parse_request(raw.as_bytes(), &Limits::default())
            .unwrap()
            .unwrap();
        let mut out = Vec::new();
        upstream_request(raw.as_bytes(), &req, &CLIENT, how, &mut out);
        String::from_utf8(out).unwrap()
    }

    fn rewrite(raw: &str) -> String {
        rewrite_with(raw, REWRITE)
    }

    /// The Content-Length and Transfer-Encoding lines of a head.
    fn framing_lines(head: &str) -> Vec<&str> {
        head.split("\r\n")
            .filter(|l| {
                let l = l.to_ascii_lowercase();
                l.starts_with("content-length") || l.starts_with("transfer-encoding")
            })
            .collect()
    }

    fn respond(raw: &str, version: Version, framing: ClientFraming, head_req: bool) -> String {
        let resp = parse_response(raw.as_bytes(), &Limits::default(), head_req)
            .unwrap()
            .unwrap();
        let mut out = Vec::new();
        client_response(raw.as_bytes(), &resp, version, true, framing, b"", &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn extra_lines_replace_same_named_fields_both_ways() {
        let raw =
            "GET / HTTP/1.1\r\nHost: h\r\nx-request-id: client\r\nX-Request-Id: again\r\n\r\n";
        let out = rewrite_with(
            raw,
            RequestRewrite {
                extra: b"X-Request-Id: ours\r\n",
                ..REWRITE
            },
        );
        assert!(out.contains("X-Request-Id: ours\r\n"), "{out}");
        assert!(!out.contains("client") && !out.contains("again"), "{out}");
        // Nor as X_Request_Id, which CGI-style backends read as the same.
        let out = rewrite_with(
            "GET / HTTP/1.1\r\nHost: h\r\nX_Request_Id: forged\r\nX_Other: kept\r\n\r\n",
            RequestRewrite {
                extra: b"X-Request-Id: ours\r\n",
                underscores_in_headers: true,
                ..REWRITE
            },
        );
        assert!(
            !out.contains("forged") && out.contains("X_Other: kept"),
            "{out}"
        );
        let head = b"HTTP/1.1 200 OK\r\nX-Request-Id: backend\r\nContent-Length: 0\r\n\r\n";
        let resp = parse_response(head, &Limits::default(), false)
            .unwrap()
            .unwrap();
        let mut out = Vec::new();
        let extra = b"X-Request-Id: ours\r\n";
        client_response(
            head,
            &resp,
            Version::Http11,
            true,
            ClientFraming::AsIs,
            extra,
            &mut out,
        );
        let out = String::from_utf8(out).unwrap();
        assert!(
            out.contains("X-Request-Id: ours\r\n") && !out.contains("backend"),
            "{out}"
        );
    }

    #[test]
    fn connection_cannot_remove_framing_routing_or_forwarded_headers() {
        let out = rewrite(
            "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nX-Forwarded-For: 1.1.1.1\r\n\
             Connection: Content-Length, Host, X-Forwarded-For, X-Real-IP, Transfer-Encoding, Cookie\r\n\
             Cookie: c\r\n\r\n",
        );
        assert!(out.contains("Host: h\r\n"), "{out}");
        assert!(out.contains("Content-Length: 5\r\n"), "{out}");
        assert!(
            out.contains("X-Forwarded-For: 1.1.1.1, 10.0.0.9\r\n"),
            "{out}"
        );
        assert!(out.contains("X-Real-IP: 10.0.0.9\r\n"), "{out}");
        assert!(
            !out.contains("Cookie"),
            "a named end-to-end header goes: {out}"
        );
        let out = rewrite(
            "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nConnection: transfer-encoding\r\n\r\n",
        );
        assert!(out.contains("Transfer-Encoding: chunked\r\n"), "{out}");
    }

    #[test]
    fn request_framing_is_regenerated_in_one_canonical_form() {
        let table = [
            ("Content-Length: 5, 5\r\n", "Content-Length: 5\r\n"),
            (
                "Content-Length: 007\r\nContent-Length: 7\r\n",
                "Content-Length: 7\r\n",
            ),
            ("Content-Length: 0\r\n", "Content-Length: 0\r\n"),
            (
                "Transfer-Encoding: ,CHUNKED\r\n",
                "Transfer-Encoding: chunked\r\n",
            ),
            (
                "Transfer-Encoding: \r\nTransfer-Encoding: chunked\r\n",
                "Transfer-Encoding: chunked\r\n",
            ),
        ];
        for (framing, want) in table {
            let out = rewrite(&format!("POST / HTTP/1.1\r\nHost: h\r\n{framing}\r\n"));
            let fields = framing_lines(&out);
            assert_eq!(fields.len(), 1, "{framing:?} -> {out}");
            assert_eq!(format!("{}\r\n", fields[0]), want, "{framing:?}");
        }
        let out = rewrite("GET / HTTP/1.1\r\nHost: h\r\n\r\n");
        assert!(
            !out.to_ascii_lowercase().contains("content-length"),
            "{out}"
        );
    }

    #[test]
    fn underscored_header_names_are_dropped_unless_allowed() {
        let raw = "GET / HTTP/1.1\r\nHost: h\r\nX_Real_IP: 6.6.6.6\r\nX-Ok: 1\r\n\r\n";
        let out = rewrite(raw);
        assert!(
            !out.contains("X_Real_IP") && out.contains("X-Ok: 1"),
            "{out}"
        );
        let out = rewrite_with(
            raw,
            RequestRewrite {
                underscores_in_headers: true,
                ..REWRITE
            },
        );
        // Read as X-Real-IP by a CGI-style backend: never forwarded.
        assert!(!out.contains("X_Real_IP"), "{out}");
        let raw = "GET / HTTP/1.1\r\nHost: h\r\nX_App_Id: 1\r\nTransfer_Encoding: chunked\r\n\
                   content_length: 5\r\n\r\n";
        let out = rewrite_with(
            raw,
            RequestRewrite {
                underscores_in_headers: true,
                ..REWRITE
            },
        );
        assert!(out.contains("X_App_Id: 1\r\n"), "{out}");
        for gone in ["Transfer_Encoding", "content_length"] {
            assert!(!out.contains(gone), "{gone} in {out}");
        }
    }

    #[test]
    fn response_framing_is_lopaches_own() {
        use ClientFraming::{AsIs, Dechunk};
        use Version::{Http10, Http11};
        // (backend head, client version, framing, HEAD request, the one
        // framing line the client gets, or "" for none)
        let table = [
            // Connection naming a framing header cannot unframe the response.
            (
                "Connection: Content-Length\r\nContent-Length: 3",
                Http11,
                AsIs,
                false,
                "Content-Length: 3",
            ),
            (
                "Connection: Transfer-Encoding\r\nTransfer-Encoding: chunked",
                Http11,
                AsIs,
                false,
                "Transfer-Encoding: chunked",
            ),
            // Both lengths: chunked frames it, the length goes.
            (
                "Content-Length: 5\r\nTransfer-Encoding: chunked",
                Http11,
                AsIs,
                false,
                "Transfer-Encoding: chunked",
            ),
            (
                "Content-Length: 5\r\nTransfer-Encoding: chunked",
                Http10,
                Dechunk,
                false,
                "",
            ),
            (
                "Transfer-Encoding: GZIP , chunked",
                Http11,
                AsIs,
                false,
                "Transfer-Encoding: gzip, chunked",
            ),
            (
                "Content-Length: 0, 0",
                Http11,
                AsIs,
                false,
                "Content-Length: 0",
            ),
            // HEAD keeps the length of the body it describes.
            (
                "Content-Length: 42",
                Http11,
                AsIs,
                true,
                "Content-Length: 42",
            ),
            ("Transfer-Encoding: gzip", Http11, AsIs, false, ""),
        ];
        for (fields, version, framing, head, want) in table {
            let out = respond(
                &format!("HTTP/1.1 200 OK\r\n{fields}\r\n\r\n"),
                version,
                framing,
                head,
            );
            let framing_lines = framing_lines(&out);
            let want: Vec<&str> = [want].into_iter().filter(|w| !w.is_empty()).collect();
            assert_eq!(framing_lines, want, "{fields:?} -> {out}");
        }
        // 204 has no length, whatever the backend said.
        let out = respond(
            "HTTP/1.1 204 No Content\r\nContent-Length: 42\r\n\r\n",
            Http11,
            AsIs,
            false,
        );
        assert!(!out.contains("Content-Length"), "{out}");
    }

    #[test]
    fn hop_by_hop_and_connection_named_headers_are_dropped() {
        let out = rewrite(
            "POST / HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, X-Secret\r\nX-Secret: s\r\nKeep-Alive: 5\r\n\
             TE: trailers\r\nTrailer: X\r\nUpgrade: h2c\r\nProxy-Connection: x\r\nExpect: 100-continue\r\n\
             Transfer-Encoding: chunked\r\n\r\n",
        );
        for gone in [
            "X-Secret",
            "Keep-Alive",
            "TE:",
            "Trailer:",
            "Upgrade",
            "Proxy-Connection",
            "Expect",
            "Connection",
        ] {
            assert!(!out.contains(gone), "{gone} in {out}");
        }
        assert!(out.contains("Transfer-Encoding: chunked\r\n"));
    }

    #[test]
    fn response_head_for_client() {
        let raw = b"HTTP/1.1 200 OK\r\nConnection: close, X-Hop\r\nX-Hop: 1\r\nTransfer-Encoding: chunked\r\nX-App: 2\r\n\r\n";
        let resp = parse_response(raw, &Limits::default(), false)
            .unwrap()
            .unwrap();
        assert_eq!(resp.body, BodyKind::Chunked);
        let mut out = Vec::new();
        client_response(
            raw,
            &resp,
            Version::Http10,
            false,
            ClientFraming::Dechunk,
            b"x-debug-a: 1\r\n",
            &mut out,
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 200 OK\r\nX-App: 2\r\nx-debug-a: 1\r\nConnection: close\r\n\r\n"
        );
        let mut out = Vec::new();
        client_response(
            raw,
            &resp,
            Version::Http10,
            true,
            ClientFraming::AsIs,
            b"",
            &mut out,
        );
        assert!(String::from_utf8(out)
            .unwrap()
            .ends_with("Connection: keep-alive\r\n\r\n"));
    }
}
