//! Answers lopache writes itself: error pages, a refused request, `100
//! Continue`, `Host: __ping__`; and the one rule for whether the client
//! connection stays open after an answer, lopache's or a backend's.

use monoio::io::AsyncWriteRent;

use super::client::Client;
use super::error::ProxyError;
use super::exchange::{debug_headers, push_header, Exchange, Next, Target};
use crate::http::request::Method;
use crate::http::response::ResponseHead;
use crate::http::rewrite::ClientFraming;
use crate::http::BodyKind;
use crate::shard::Shard;

/// Room for an error page's head (its body is appended; pages are small).
const ERROR_PAGE_CAPACITY: usize = 1024;

/// The keep-alive rule: the client connection stays open after an answer
/// only if the client asked for that, its request body was read in full
/// (unread body bytes would otherwise be parsed as the next request), the
/// shard is not draining, and the answer's end is visible from its framing
/// (`self_delimited`; always so for lopache's own answers).
pub(super) fn keeps_alive(exchange: &Exchange, draining: bool, self_delimited: bool) -> bool {
    exchange.keep_alive && exchange.body_consumed && !draining && self_delimited
}

/// A backend's response as relayed ends where its framing says, so the
/// client can tell it from the next one: not when it is delimited by the
/// backend closing, when its Content-Length and Transfer-Encoding conflict,
/// or when it is de-chunked for an HTTP/1.0 client (then sent until close).
pub(super) fn response_delimits_itself(resp: &ResponseHead, framing: ClientFraming) -> bool {
    resp.body != BodyKind::UntilClose && !resp.framing_conflict && framing == ClientFraming::AsIs
}

/// How the connection ends after a reply that was written (or not).
fn after_reply(written: bool, keep: bool) -> Next {
    match (written, keep) {
        (true, true) => Next::KeepAlive,
        // The client may still be sending: closing at once would reset the
        // connection under our answer.
        (true, false) => Next::CloseLinger,
        (false, _) => Next::Close,
    }
}

/// How the connection ends after a relayed response went out in full.
pub(super) fn after_relay(keep: bool, body_consumed: bool) -> Next {
    match (keep, body_consumed) {
        (true, _) => Next::KeepAlive,
        // The client may still be sending the body the backend refused:
        // closing at once would reset the connection under our answer.
        (false, false) => Next::CloseLinger,
        (false, true) => Next::Close,
    }
}

/// Answers with an error page. The connection stays open per [`keeps_alive`].
pub(super) async fn reply_error<S: AsyncWriteRent>(
    shard: &Shard,
    client: &mut Client<S>,
    exchange: &mut Exchange,
    error: ProxyError,
    target: Option<&Target<'_>>,
) -> Next {
    let keep = keeps_alive(exchange, shard.drain.is_draining(), true);
    let head_only = exchange.method == Method::Head;
    let status = error.status();
    exchange.status = Some(status);
    exchange.bytes = match head_only {
        true => 0,
        false => shard.config.error_pages.body(status).len() as u64,
    };
    let mut extra = Vec::new();
    if let Some(id) = &exchange.request_id {
        extra.extend_from_slice(id.line());
    }
    if exchange.x_debug {
        push_header(&mut extra, "x-debug-error", error.tag());
        if let Some(t) = target {
            debug_headers(&mut extra, t, exchange);
        }
    }
    let mut out = Vec::with_capacity(ERROR_PAGE_CAPACITY);
    shard
        .config
        .error_pages
        .write_response(status, keep, head_only, &extra, &mut out);
    let written = client.write(out, shard.config.tcp_timeout).await;
    after_reply(written.is_ok(), keep)
}

/// A request lopache will not read on (a broken head, or a chunked body
/// that broke its framing): its 4xx, and the connection closes after a
/// lingering read (a backend that saw part of the body is dropped too).
pub(super) async fn refuse<S: AsyncWriteRent>(
    shard: &Shard,
    client: &mut Client<S>,
    status: u16,
) -> Next {
    let mut out = Vec::with_capacity(ERROR_PAGE_CAPACITY);
    shard
        .config
        .error_pages
        .write_response(status, false, false, b"", &mut out);
    let _ = client.write(out, shard.config.tcp_timeout).await;
    Next::CloseLinger
}

/// `HTTP/1.1 100 Continue`: lopache answers `Expect` itself (it is not
/// forwarded). False: the client is gone.
pub(super) async fn send_continue<S: AsyncWriteRent>(
    shard: &Shard,
    client: &mut Client<S>,
    exchange: &mut Exchange,
) -> bool {
    let continue_head = &b"HTTP/1.1 100 Continue\r\n\r\n"[..];
    let sent = client.write(continue_head, shard.config.tcp_timeout).await;
    exchange.continue_sent = sent.is_ok();
    sent.is_ok()
}

/// `Host: __ping__`: answered here, no Redis involved.
pub(super) async fn reply_ping<S: AsyncWriteRent>(
    shard: &Shard,
    client: &mut Client<S>,
    exchange: &Exchange,
) -> Next {
    let keep = keeps_alive(exchange, shard.drain.is_draining(), true);
    let head: &'static [u8] = match (keep, exchange.method == Method::Head) {
        (true, false) => b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 2\r\n\r\nok",
        (false, false) => b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
        (true, true) => b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 2\r\n\r\n",
        (false, true) => b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 2\r\nconnection: close\r\n\r\n",
    };
    let written = client.write(head, shard.config.tcp_timeout).await;
    after_reply(written.is_ok(), keep)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::request::parse_request;
    use crate::http::response::parse_response;
    use crate::http::Limits;
    use std::time::Instant;

    fn exchange(request: &[u8]) -> Exchange {
        let head = parse_request(request, &Limits::default()).unwrap().unwrap();
        Exchange::new(&head, Instant::now(), false)
    }

    #[test]
    fn keep_alive_needs_every_condition() {
        let get11 = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
        let close = b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n";
        let get10 = b"GET / HTTP/1.0\r\nHost: a\r\n\r\n";
        let get10_keep = b"GET / HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\n\r\n";
        let post = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\n";
        // (request, body read since, draining, self-delimited answer) -> keep
        let table: [(&[u8], bool, bool, bool, bool); 9] = [
            (get11, false, false, true, true),
            (get11, false, true, true, false),
            (get11, false, false, false, false),
            (close, false, false, true, false),
            (get10, false, false, true, false),
            (get10_keep, false, false, true, true),
            // A body not read in full would be parsed as the next request.
            (post, false, false, true, false),
            (post, true, false, true, true),
            (post, true, true, true, false),
        ];
        for (request, body_read, draining, delimited, keep) in table {
            let mut e = exchange(request);
            e.body_consumed |= body_read;
            assert_eq!(
                keeps_alive(&e, draining, delimited),
                keep,
                "{} body_read={body_read} draining={draining} delimited={delimited}",
                String::from_utf8_lossy(request).lines().next().unwrap()
            );
        }
    }

    #[test]
    fn relayed_responses_keep_alive_only_when_framed() {
        // (response head, client framing) -> the client can find its end
        let table: [(&[u8], ClientFraming, bool); 6] = [
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n",
                ClientFraming::AsIs,
                true,
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                ClientFraming::AsIs,
                true,
            ),
            (
                b"HTTP/1.1 204 No Content\r\n\r\n",
                ClientFraming::AsIs,
                true,
            ),
            (b"HTTP/1.1 200 OK\r\n\r\n", ClientFraming::AsIs, false),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                ClientFraming::Dechunk,
                false,
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n",
                ClientFraming::AsIs,
                false,
            ),
        ];
        for (raw, framing, delimited) in table {
            let resp = parse_response(raw, &Limits::default(), false)
                .unwrap()
                .unwrap();
            assert_eq!(
                response_delimits_itself(&resp, framing),
                delimited,
                "{}",
                String::from_utf8_lossy(raw).lines().next().unwrap()
            );
        }
    }

    #[test]
    fn after_a_relayed_response() {
        assert!(matches!(after_relay(true, true), Next::KeepAlive));
        assert!(matches!(after_relay(false, false), Next::CloseLinger));
        assert!(matches!(after_relay(false, true), Next::Close));
    }

    #[test]
    fn a_reply_that_was_not_written_closes_at_once() {
        assert!(matches!(after_reply(true, true), Next::KeepAlive));
        assert!(matches!(after_reply(true, false), Next::CloseLinger));
        assert!(matches!(after_reply(false, true), Next::Close));
        assert!(matches!(after_reply(false, false), Next::Close));
    }
}
