//! Request head parsing on httparse: request line, headers, the limits, and the
//! facts the proxy needs (host, framing, keep-alive, expectations, upgrade).

use std::mem::MaybeUninit;

use super::framing::{FramingError, MessageHeaders};
use super::headers::list_contains;
use super::{BodyKind, HeaderSpan, Limits, Version, HARD_MAX_HEADERS};

/// Request methods the proxy treats specially; everything else is `Other`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Post,
    Put,
    Delete,
    Options,
    Trace,
    Connect,
    Patch,
    Other,
}

impl Method {
    fn from_bytes(m: &[u8]) -> Method {
        match m {
            b"GET" => Method::Get,
            b"HEAD" => Method::Head,
            b"POST" => Method::Post,
            b"PUT" => Method::Put,
            b"DELETE" => Method::Delete,
            b"OPTIONS" => Method::Options,
            b"TRACE" => Method::Trace,
            b"CONNECT" => Method::Connect,
            b"PATCH" => Method::Patch,
            _ => Method::Other,
        }
    }

    /// RFC 9110 section 9.2.2: safe to repeat after a failure mid-flight.
    pub fn is_idempotent(self) -> bool {
        matches!(
            self,
            Method::Get
                | Method::Head
                | Method::Put
                | Method::Delete
                | Method::Options
                | Method::Trace
        )
    }
}

/// Why a request head was refused. Every variant closes the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("malformed request: {0}")]
    Malformed(&'static str),
    #[error("request head larger than the limit")]
    HeadTooLarge,
    #[error("too many header fields")]
    TooManyHeaders,
    #[error("request target longer than the limit")]
    UriTooLong,
    #[error("more than one Host header")]
    DuplicateHost,
    #[error("bad framing: {0}")]
    Framing(#[from] FramingError),
    /// Not a parse result: the head did not arrive within `client_header_timeout`.
    #[error("request head not received in time")]
    HeadTimeout,
}

impl RequestError {
    /// The status this refusal is answered with.
    pub fn status(self) -> u16 {
        match self {
            RequestError::Framing(FramingError::UnsupportedTransferCoding) => 501,
            RequestError::Malformed(_) | RequestError::DuplicateHost | RequestError::Framing(_) => {
                400
            }
            RequestError::HeadTooLarge | RequestError::TooManyHeaders => 431,
            RequestError::UriTooLong => 414,
            RequestError::HeadTimeout => 408,
        }
    }
}

/// A parsed request head. Spans point into the bytes it was parsed from, which
/// stay at the front of the connection's read buffer until the head is consumed.
#[derive(Debug, Clone)]
pub struct RequestHead {
    pub method: Method,
    pub method_span: (u32, u32),
    pub target: (u32, u32),
    pub version: Version,
    pub headers: Vec<HeaderSpan>,
    /// Bytes of the head, including leading empty lines and the final blank line.
    pub len: usize,
    /// Index into `headers` of the one Host field.
    pub host: Option<usize>,
    pub body: BodyKind,
    /// A Content-Length field was sent (so an empty body is announced as
    /// `Content-Length: 0` upstream, as the client did).
    pub content_length_sent: bool,
    /// The client wants the connection kept open after this exchange.
    pub keep_alive: bool,
    /// `Expect: 100-continue` was sent (with a body to follow).
    pub expect_continue: bool,
    /// `Connection: upgrade` with `Upgrade: websocket`.
    pub upgrade_websocket: bool,
    /// An `X-Debug` header asks for debug response headers.
    pub x_debug: bool,
}

impl RequestHead {
    pub fn target<'a>(&self, head: &'a [u8]) -> &'a [u8] {
        &head[self.target.0 as usize..self.target.1 as usize]
    }

    pub fn method_bytes<'a>(&self, head: &'a [u8]) -> &'a [u8] {
        &head[self.method_span.0 as usize..self.method_span.1 as usize]
    }

    pub fn host<'a>(&self, head: &'a [u8]) -> Option<&'a [u8]> {
        self.host.map(|i| self.headers[i].value(head))
    }

    /// The value of the first header named `name` (case-insensitive).
    pub fn header<'a>(&self, head: &'a [u8], name: &str) -> Option<&'a [u8]> {
        self.headers
            .iter()
            .find(|h| h.name(head).eq_ignore_ascii_case(name.as_bytes()))
            .map(|h| h.value(head))
    }
}

/// Parses a request head from the start of `buf`. `Ok(None)` means more bytes
/// are needed; the caller must not call again with fewer bytes.
pub fn parse_request(buf: &[u8], limits: &Limits) -> Result<Option<RequestHead>, RequestError> {
    // RFC 9112 section 2.2: ignore empty lines before the request line.
    let skip = buf
        .iter()
        .take_while(|&&b| b == b'\r' || b == b'\n')
        .count();
    let input = &buf[skip..];
    // Uninitialised header slots: zeroing 512 of them cost 16 KB of stores
    // per request (httparse writes each slot it uses before reading it).
    let mut storage = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; HARD_MAX_HEADERS];
    let cap = limits.header_count.min(HARD_MAX_HEADERS - 1) + 1;
    let mut req = httparse::Request::new(&mut []);
    let parsed_len = match req.parse_with_uninit_headers(input, &mut storage[..cap]) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            if buf.len() > limits.request_head_bytes {
                return Err(over_limit(input, limits));
            }
            return Ok(None);
        }
        Err(e) => return Err(refusal(e)),
    };
    let len = skip + parsed_len;
    let (Some(method), Some(path), Some(minor)) = (req.method, req.path, req.version) else {
        return Err(RequestError::Malformed("incomplete request line"));
    };
    if path.len() > limits.uri_bytes {
        return Err(RequestError::UriTooLong);
    }
    if !is_plain_method(method.as_bytes()) {
        return Err(RequestError::Malformed("invalid method"));
    }
    if !is_known_target_form(method.as_bytes(), path.as_bytes()) {
        return Err(RequestError::Malformed("invalid request target"));
    }
    if len > limits.request_head_bytes {
        return Err(RequestError::HeadTooLarge);
    }
    if req.headers.len() > limits.header_count {
        return Err(RequestError::TooManyHeaders);
    }
    let version = match minor {
        0 => Version::Http10,
        1 => Version::Http11,
        _ => return Err(RequestError::Malformed("unsupported HTTP version")),
    };
    let base = buf;
    let span = |s: &[u8]| super::span_in(base, s);

    let mut head = RequestHead {
        method: Method::from_bytes(method.as_bytes()),
        method_span: span(method.as_bytes()),
        target: span(path.as_bytes()),
        version,
        headers: Vec::with_capacity(req.headers.len()),
        len,
        host: None,
        body: BodyKind::Empty,
        content_length_sent: false,
        keep_alive: version == Version::Http11,
        expect_continue: false,
        upgrade_websocket: false,
        x_debug: false,
    };
    let mut shared = MessageHeaders::default();
    for (i, h) in req.headers.iter().enumerate() {
        head.headers.push(HeaderSpan::from_httparse(base, h));
        let name = h.name.as_bytes();
        if shared.take(name, h.value) {
            continue;
        }
        if name.eq_ignore_ascii_case(b"host") {
            if head.host.is_some() {
                return Err(RequestError::DuplicateHost);
            }
            head.host = Some(i);
        } else if name.eq_ignore_ascii_case(b"expect") {
            head.expect_continue |= list_contains(h.value, b"100-continue");
        } else if name.eq_ignore_ascii_case(b"x-debug") {
            head.x_debug = true;
        }
    }
    head.body = shared.framing.request_body(version)?;
    head.content_length_sent =
        shared.framing.content_length != super::framing::ContentLength::Absent;
    head.keep_alive = shared.persistent(version);
    // RFC 9110 section 10.1.1: 100-continue in an HTTP/1.0 request is
    // ignored (no 1xx may be sent to a 1.0 client).
    head.expect_continue &= !head.body.is_empty() && version == Version::Http11;
    // RFC 6455 section 4.1: the opening handshake is an HTTP/1.1 GET.
    head.upgrade_websocket = shared.connection_upgrade
        && shared.upgrade_websocket
        && version == Version::Http11
        && head.method == Method::Get;
    Ok(Some(head))
}

/// What a head httparse refused is answered with.
fn refusal(e: httparse::Error) -> RequestError {
    match e {
        httparse::Error::TooManyHeaders => RequestError::TooManyHeaders,
        httparse::Error::Version => RequestError::Malformed("unsupported HTTP version"),
        httparse::Error::Token => RequestError::Malformed("invalid method or header name"),
        httparse::Error::HeaderName => RequestError::Malformed("invalid header name"),
        httparse::Error::HeaderValue => RequestError::Malformed("invalid header value"),
        _ => RequestError::Malformed("invalid request line or header"),
    }
}

/// Methods in upper case letters, `-` and `_` only, as nginx takes them:
/// `get` or `helloGET` (what follows a misframed body) is refused here
/// rather than forwarded to backends that refuse or misread it.
fn is_plain_method(m: &[u8]) -> bool {
    !m.is_empty()
        && m.iter()
            .all(|&b| b.is_ascii_uppercase() || b == b'-' || b == b'_')
}

/// RFC 9112 section 3.2: origin-form (`/path`), absolute-form
/// (`http://host/path`), asterisk-form (`*`, OPTIONS only) and
/// authority-form (CONNECT only, which is refused later with 405).
fn is_known_target_form(method: &[u8], target: &[u8]) -> bool {
    let lower_starts = |prefix: &[u8]| {
        target.len() > prefix.len() && target[..prefix.len()].eq_ignore_ascii_case(prefix)
    };
    target.starts_with(b"/")
        || lower_starts(b"http://")
        || lower_starts(b"https://")
        || (target == b"*" && method == b"OPTIONS")
        || method == b"CONNECT"
}

/// Picks 414 while the request line itself is unfinished, 431 otherwise.
fn over_limit(input: &[u8], limits: &Limits) -> RequestError {
    match input.iter().position(|&b| b == b'\n') {
        None => RequestError::UriTooLong,
        Some(line_end) if line_end > limits.uri_bytes => RequestError::UriTooLong,
        Some(_) => RequestError::HeadTooLarge,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Option<RequestHead>, RequestError> {
        parse_request(s.as_bytes(), &Limits::default())
    }

    #[test]
    fn parses_a_simple_get() {
        let raw = "GET /a?b=1 HTTP/1.1\r\nHost: Example.COM:8080\r\nX-Debug: 1\r\n\r\nnext";
        let h = parse(raw).unwrap().unwrap();
        assert_eq!(h.method, Method::Get);
        assert_eq!(h.target(raw.as_bytes()), b"/a?b=1");
        assert_eq!(h.host(raw.as_bytes()), Some(&b"Example.COM:8080"[..]));
        assert_eq!(h.len, raw.len() - 4);
        assert!(h.keep_alive && h.x_debug && h.body.is_empty());
    }

    #[test]
    fn every_split_point_is_partial_until_complete() {
        let raw = b"\r\nPOST /up HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n";
        for cut in 0..raw.len() {
            assert!(
                parse_request(&raw[..cut], &Limits::default())
                    .unwrap()
                    .is_none(),
                "cut at {cut}"
            );
        }
        let h = parse_request(raw, &Limits::default()).unwrap().unwrap();
        assert_eq!(h.len, raw.len());
        assert_eq!(h.body, BodyKind::Length(3));
        assert!(h.expect_continue);
    }

    #[test]
    fn target_forms_and_methods_that_pass() {
        for line in [
            "GET /a HTTP/1.1",
            "OPTIONS * HTTP/1.1",
            "GET HTTP://h/x HTTP/1.1",
            "PURGE /x HTTP/1.1",
            "VERSION-CONTROL /x HTTP/1.1",
            "CONNECT h:443 HTTP/1.1",
        ] {
            let raw = format!("{line}\r\nHost: h\r\n\r\n");
            assert!(parse(&raw).unwrap().is_some(), "{line}");
        }
    }

    #[test]
    fn bare_lf_lines_are_accepted() {
        let h = parse("GET / HTTP/1.1\nHost: h\n\n").unwrap().unwrap();
        assert_eq!(
            h.host("GET / HTTP/1.1\nHost: h\n\n".as_bytes()),
            Some(&b"h"[..])
        );
    }

    #[test]
    fn keep_alive_rules() {
        let ka = |s: &str| parse(s).unwrap().unwrap().keep_alive;
        assert!(ka("GET / HTTP/1.1\r\nHost: h\r\n\r\n"));
        assert!(!ka(
            "GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"
        ));
        assert!(!ka("GET / HTTP/1.0\r\nHost: h\r\n\r\n"));
        assert!(ka(
            "GET / HTTP/1.0\r\nHost: h\r\nConnection: Keep-Alive\r\n\r\n"
        ));
    }

    #[test]
    fn websocket_upgrade_detection() {
        let h = parse("GET / HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n\r\n");
        assert!(h.unwrap().unwrap().upgrade_websocket);
        let h = parse("GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n\r\n");
        assert!(!h.unwrap().unwrap().upgrade_websocket);
    }

    #[test]
    fn refusals_table() {
        let long_uri = format!("GET /{} HTTP/1.1\r\nHost: h\r\n\r\n", "a".repeat(9000));
        let long_line_partial = format!("GET /{}", "a".repeat(20000));
        let big_head = format!(
            "GET / HTTP/1.1\r\nHost: h\r\nX: {}\r\n\r\n",
            "a".repeat(17000)
        );
        let many = format!("GET / HTTP/1.1\r\n{}\r\n", "X: y\r\n".repeat(101));
        let table: Vec<(String, RequestError)> = vec![
            ("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n".into(), RequestError::DuplicateHost),
            (long_uri, RequestError::UriTooLong),
            (long_line_partial, RequestError::UriTooLong),
            (big_head, RequestError::HeadTooLarge),
            (many, RequestError::TooManyHeaders),
            ("GET / HTTP/2.0\r\n\r\n".into(), RequestError::Malformed("unsupported HTTP version")),
            ("GET / HTTP/1.1\r\nBad Name: x\r\n\r\n".into(), RequestError::Malformed("invalid header name")),
            ("get / HTTP/1.1\r\nHost: h\r\n\r\n".into(), RequestError::Malformed("invalid method")),
            ("helloGET / HTTP/1.1\r\nHost: h\r\n\r\n".into(), RequestError::Malformed("invalid method")),
            ("GET x/y HTTP/1.1\r\nHost: h\r\n\r\n".into(), RequestError::Malformed("invalid request target")),
            ("GET * HTTP/1.1\r\nHost: h\r\n\r\n".into(), RequestError::Malformed("invalid request target")),
            ("GET http:// HTTP/1.1\r\nHost: h\r\n\r\n".into(), RequestError::Malformed("invalid request target")),
            (
                "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n".into(),
                RequestError::Framing(FramingError::TransferEncodingWithContentLength),
            ),
            (
                "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n".into(),
                RequestError::Framing(FramingError::InvalidContentLength),
            ),
        ];
        for (raw, want) in table {
            assert_eq!(
                parse(&raw).unwrap_err(),
                want,
                "{}",
                &raw[..raw.len().min(60)]
            );
        }
        assert_eq!(RequestError::UriTooLong.status(), 414);
        assert_eq!(RequestError::HeadTooLarge.status(), 431);
        assert_eq!(RequestError::DuplicateHost.status(), 400);
        assert_eq!(
            RequestError::Framing(FramingError::UnsupportedTransferCoding).status(),
            501
        );
    }
}
