//! Writing heads out: the request as the backend receives it (hop-by-hop
//! headers removed, forwarded headers set) and the response as the client
//! receives it (hop-by-hop removed, the connection's own fate announced).

use std::net::IpAddr;

use crate::ascii::{push_decimal, push_ip};

use super::headers::{is_hop_by_hop, list_elements};
use super::request::RequestHead;
use super::response::ResponseHead;
use super::{HeaderSpan, Version};

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

/// Names listed in the message's Connection fields: hop-by-hop for this message
/// (RFC 9110 section 7.6.1). Names that are hop-by-hop anyway (`keep-alive`,
/// the usual one) are left out, so the common message allocates nothing here.
fn connection_named<'a>(head: &'a [u8], headers: &[HeaderSpan]) -> Vec<&'a [u8]> {
    headers
        .iter()
        .filter(|h| h.name(head).eq_ignore_ascii_case(b"connection"))
        .flat_map(|h| list_elements(h.value(head)))
        .filter(|name| !is_hop_by_hop(name))
        .collect()
}

fn is_dropped(name: &[u8], named: &[&[u8]]) -> bool {
    is_hop_by_hop(name) || named.iter().any(|n| n.eq_ignore_ascii_case(name))
}

fn write_field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Appends the request head sent upstream to `out`. `keep_alive` says whether
/// the proxy wants to reuse the upstream connection afterwards.
pub fn upstream_request(
    head: &[u8],
    req: &RequestHead,
    client: &ClientSide,
    keep_alive: bool,
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
        if name.eq_ignore_ascii_case(b"x-forwarded-for") {
            if !h.value(head).is_empty() {
                forwarded_for.push(h.value(head));
            }
            continue;
        }
        write_field(out, name, h.value(head));
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
    } else if !keep_alive {
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
/// header lines (each ending in CRLF), e.g. the X-Debug ones.
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
        if framing == ClientFraming::Dechunk && name.eq_ignore_ascii_case(b"transfer-encoding") {
            continue;
        }
        write_field(out, name, h.value(head));
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
    use crate::http::{BodyKind, Limits};

    const CLIENT: ClientSide = ClientSide {
        peer: IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 9)),
        proto: "http",
        port: 8080,
    };

    fn rewrite(raw: &str) -> String {
        let req = parse_request(raw.as_bytes(), &Limits::default())
            .unwrap()
            .unwrap();
        let mut out = Vec::new();
        upstream_request(raw.as_bytes(), &req, &CLIENT, true, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn forwarded_headers_replace_spoofed_ones_and_append_xff() {
        let out = rewrite(
            "GET /p HTTP/1.0\r\nHost: a.b\r\nX-Forwarded-For: 1.1.1.1\r\nx-forwarded-for: 2.2.2.2\r\n\
             X-Real-IP: 6.6.6.6\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Port: 1\r\n\r\n",
        );
        assert_eq!(
            out,
            "GET /p HTTP/1.1\r\nHost: a.b\r\nX-Forwarded-For: 1.1.1.1, 2.2.2.2, 10.0.0.9\r\n\
             X-Real-IP: 10.0.0.9\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Port: 8080\r\n\r\n"
        );
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
        let resp = parse_response(raw, 1 << 16, false).unwrap().unwrap();
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
