//! One request's state between its head and its answer (`Exchange`), the
//! backend chosen for one attempt at it (`Target`), and how the client
//! connection goes on afterwards (`Next`).

use std::io::Write;
use std::time::Instant;

use super::tunnel::Upgraded;
use crate::config::routes::Destination;
use crate::http::request::{Method, RequestHead};
use crate::http::{BodyKind, Version};
use crate::io::budget::Charge;
use crate::observe::request_id;
use crate::routing::Frontend;

/// How the client connection continues after an exchange.
#[derive(Debug)]
pub(super) enum Next {
    KeepAlive,
    Close,
    /// Close after a short lingering read: the client may still be sending.
    CloseLinger,
    /// The backend switched protocols: relay raw bytes from now on.
    Tunnel(Box<Upgraded>),
}

/// The request facts that outlive its head, plus what has happened so far.
pub(super) struct Exchange {
    pub method: Method,
    pub version: Version,
    pub body: BodyKind,
    pub keep_alive: bool,
    pub expect_continue: bool,
    pub x_debug: bool,
    /// A WebSocket opening handshake: a 101 switches to a tunnel.
    pub upgrade: bool,
    pub started: Instant,
    /// When the current attempt's backend connection was ready.
    pub backend_started: Option<Instant>,
    /// Access log facts, captured only when the shard logs.
    pub log: Option<Box<LogFields>>,
    /// The status sent to the client, once one was.
    pub status: Option<u16>,
    /// Body bytes sent to the client.
    pub bytes: u64,
    /// The frontend's identifier (for the access log).
    pub identifier: Option<String>,
    /// The request body has been read from the client completely.
    pub body_consumed: bool,
    /// `request_buffer_bytes` of the body (or all of it) are in the client buffer.
    pub body_buffered: bool,
    /// lopache already answered `Expect: 100-continue` itself.
    pub continue_sent: bool,
    /// The buffered body's share of the shard's buffer budget, given back
    /// once the body has gone upstream (or the exchange ends).
    pub body_charge: Option<Charge>,
    /// With `server.request_id_header`: the request's ID, sent to the
    /// backend and the client and logged.
    pub request_id: Option<RequestId>,
}

/// A request ID as its header line (`X-Request-Id: <value>` and CRLF).
pub(super) struct RequestId {
    line: Vec<u8>,
    value_at: usize,
}

impl RequestId {
    /// The client's `value` if one valid value came (one field of the
    /// header, see [`request_id::is_valid`]), else a fresh one from `ids`.
    pub fn new<'a>(
        name: &str,
        mut sent: impl Iterator<Item = &'a [u8]>,
        ids: &request_id::RandomIds,
    ) -> RequestId {
        let mut line = Vec::with_capacity(name.len() + 2 + 32 + 2);
        line.extend_from_slice(name.as_bytes());
        line.extend_from_slice(b": ");
        let value_at = line.len();
        match (sent.next(), sent.next()) {
            (Some(value), None) if request_id::is_valid(value) => line.extend_from_slice(value),
            _ => ids.push_new(&mut line),
        }
        line.extend_from_slice(b"\r\n");
        RequestId { line, value_at }
    }

    /// The whole header line, CRLF included.
    pub fn line(&self) -> &[u8] {
        &self.line
    }

    pub fn value(&self) -> &[u8] {
        &self.line[self.value_at..self.line.len() - 2]
    }
}

impl Exchange {
    /// `debug_headers`: `server.debug_headers`, without which `X-Debug` is ignored.
    pub fn new(head: &RequestHead, started: Instant, debug_headers: bool) -> Self {
        Exchange {
            method: head.method,
            version: head.version,
            body: head.body,
            keep_alive: head.keep_alive,
            expect_continue: head.expect_continue,
            x_debug: head.x_debug && debug_headers,
            upgrade: head.upgrade_websocket,
            started,
            backend_started: None,
            log: None,
            status: None,
            bytes: 0,
            identifier: None,
            body_consumed: head.body.is_empty(),
            body_buffered: head.body.is_empty(),
            continue_sent: false,
            body_charge: None,
            request_id: None,
        }
    }

    /// Safe to send again after a failure mid-flight (README, "Retries").
    pub fn replayable(&self) -> bool {
        self.method.is_idempotent() && self.body.is_empty()
    }
}

/// What the access log needs from the request head, copied before the head
/// leaves the buffer.
pub(super) struct LogFields {
    pub started: std::time::SystemTime,
    pub request_line: Vec<u8>,
    pub referer: Vec<u8>,
    pub user_agent: Vec<u8>,
}

/// The backend chosen for one attempt.
pub(super) struct Target<'c> {
    /// The keyspace it came from (where dead marks go).
    pub destination: &'c Destination,
    /// The requested host (the frontend's matched key is derived from it).
    pub host: &'c str,
    pub frontend: Frontend,
    /// The chosen backend, 0-based.
    pub index: usize,
}

impl Target<'_> {
    pub fn url(&self) -> &str {
        self.frontend.backend(self.index)
    }

    /// How many backends the frontend has.
    pub fn count(&self) -> usize {
        self.frontend.backend_count()
    }
}

/// The `x-debug-*` headers that say where a request went and how long it took.
pub(super) fn debug_headers(out: &mut Vec<u8>, target: &Target<'_>, exchange: &Exchange) {
    push_header(out, "x-debug-backend-url", target.url());
    push_header(out, "x-debug-backend-id", &target.index.to_string());
    push_header(out, "x-debug-vhost", target.frontend.identifier());
    push_header(
        out,
        "x-debug-frontend-key",
        &target.frontend.key(target.host),
    );
    let ms = |t: Instant| format!("{:.3}", t.elapsed().as_secs_f64() * 1000.0);
    push_header(out, "x-debug-time-total", &ms(exchange.started));
    if let Some(b) = exchange.backend_started {
        push_header(out, "x-debug-time-backend", &ms(b));
    }
}

/// Writes one header line; values from Redis are cleaned of control bytes so
/// they can never split the head.
pub(super) fn push_header(out: &mut Vec<u8>, name: &str, value: &str) {
    let _ = write!(out, "{name}: ");
    out.extend(
        value
            .bytes()
            .map(|b| if b.is_ascii_control() { b'?' } else { b }),
    );
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::{push_header, request_id, RequestId};

    #[test]
    fn a_request_id_is_kept_only_when_one_valid_value_came() {
        let ids = request_id::RandomIds::default();
        let id = RequestId::new("X-Request-Id", [&b"abc-1"[..]].into_iter(), &ids);
        assert_eq!(id.line(), b"X-Request-Id: abc-1\r\n");
        assert_eq!(id.value(), b"abc-1");
        for sent in [
            &[][..],
            &[&b"a b"[..]],
            &[&b"one"[..], &b"two"[..]],
            &[&[b'x'; 129][..]],
        ] {
            let id = RequestId::new("X-Request-Id", sent.iter().copied(), &ids);
            assert_eq!(id.value().len(), 32, "{sent:?}");
            assert!(id.value().iter().all(u8::is_ascii_hexdigit));
        }
    }

    #[test]
    fn header_values_from_redis_cannot_split_the_head() {
        let mut out = Vec::new();
        push_header(&mut out, "x-debug-vhost", "evil\r\nset-cookie: a=b");
        assert_eq!(out, b"x-debug-vhost: evil??set-cookie: a=b\r\n");
    }
}
