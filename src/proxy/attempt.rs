//! One attempt at one backend, in its phases: take the request body in
//! (up to `request_buffer_bytes`), open a connection (pooled or new), send
//! the head and body, await the response head (passing interim responses
//! on), then relay the response or switch to a tunnel. A phase that fails
//! before the client saw any answer returns a [`Failure`]; what follows from
//! it (dead mark, retry, error page) is decided in `failure.rs`.

use std::time::Instant;

use bytes::{Buf, BytesMut};
use monoio::io::{AsyncReadRent, AsyncWriteRent};

use super::client::Client;
use super::error::ProxyError;
use super::exchange::{debug_headers, Exchange, Next, Target};
use super::failure::Failure;
use super::reply::{
    after_relay, keeps_alive, refuse, reply_error, response_delimits_itself, send_continue,
};
use super::request_body::buffer_request_body;
use super::tunnel::Upgraded;
use crate::http::request::Method;
use crate::http::response::{parse_response, ResponseHead};
use crate::http::rewrite::{client_response, ClientFraming};
use crate::http::{BodyKind, Version};
use crate::io::ahead::ReadAhead;
use crate::io::pump::{BodyRelay, ChunkedMode, Deadlines, RelayError};
use crate::io::timed::{read_some_on, write_all_telling, IoFailure, Timer};
use crate::log_debug;
use crate::observe::metrics;
use crate::shard::Shard;
use crate::upstream::pool::{connect, PoolKey, Slot};
use crate::upstream::stream::UpstreamStream;
use crate::upstream::{BackendUrl, Scheme};

/// How long an answer that came before the whole request body is waited for
/// once the backend stopped taking the body.
const EARLY_ANSWER_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Interim (1xx) responses taken before the final one; more is a 502.
const MAX_INTERIM_RESPONSES: usize = 32;

/// Room for the rewritten response head beyond the backend's own.
const RESPONSE_HEAD_SLACK: usize = 64;

/// How an attempt ended.
pub(super) enum Attempt {
    /// The client got an answer (or is gone): the connection goes on as said.
    Done(Next),
    /// Failed before the client saw any of an answer.
    Failed(Failure),
}

impl From<Failure> for Attempt {
    fn from(failure: Failure) -> Self {
        Attempt::Failed(failure)
    }
}

/// A phase's result: its value, or how the attempt ends.
type Phase<T> = Result<T, Attempt>;

/// The connection to the chosen backend and what it holds.
struct Upstream {
    stream: UpstreamStream,
    /// Taken from the pool (an earlier request used it).
    reused: bool,
    key: PoolKey,
    /// The `max_sockets` slot this connection takes.
    slot: Slot,
}

/// The final response head of a backend.
enum Answer {
    Final(ResponseHead),
    /// A WebSocket `101 Switching Protocols` the client asked for.
    Switch(ResponseHead),
}

/// A backend's final answer, with the connection it came on.
struct Response {
    upstream: Upstream,
    /// The head, and whatever followed it in the same reads.
    buf: BytesMut,
    head: ResponseHead,
    /// The backend stopped taking the request body (see `send_request`).
    body_cut: bool,
}

/// One try against one backend.
pub(super) async fn attempt<S: AsyncReadRent + AsyncWriteRent>(
    shard: &Shard,
    client: &mut Client<S>,
    exchange: &mut Exchange,
    up_head: &[u8],
    target: &Target<'_>,
) -> Attempt {
    match phases(shard, client, exchange, up_head, target).await {
        Ok(next) => Attempt::Done(next),
        Err(ended) => ended,
    }
}

async fn phases<S: AsyncReadRent + AsyncWriteRent>(
    shard: &Shard,
    client: &mut Client<S>,
    exchange: &mut Exchange,
    up_head: &[u8],
    target: &Target<'_>,
) -> Phase<Next> {
    buffer_request_body(shard, client, exchange)
        .await
        .map_err(Attempt::Done)?;
    let mut upstream = open_upstream(shard, target).await?;
    exchange.backend_started = Some(Instant::now());
    // The deadlines of the waits from here on, one after another.
    let mut timer = Timer::new();
    let body_cut =
        send_request(shard, client, exchange, up_head, &mut upstream, &mut timer).await?;
    let mut ubuf = shard.head_buffers.take();
    let answer = await_answer(
        shard,
        client,
        exchange,
        &mut upstream,
        &mut ubuf,
        body_cut,
        &mut timer,
    )
    .await?;
    let (switch, head) = match answer {
        Answer::Final(head) => (false, head),
        Answer::Switch(head) => (true, head),
    };
    let response = Response {
        upstream,
        buf: ubuf,
        head,
        body_cut,
    };
    match switch {
        false => relay_response(shard, client, exchange, target, response, &mut timer).await,
        true => {
            let switching = switch_protocols(shard, client, exchange, target, response);
            Ok(Box::pin(switching).await)
        }
    }
}

/// Opens (or takes from the pool) a connection to the target's backend.
/// Everything that fails here before a connect is lopache's or the routing
/// data's failure, never the backend's.
async fn open_upstream(shard: &Shard, target: &Target<'_>) -> Result<Upstream, Failure> {
    let cfg = &shard.config;
    let url = target.url();
    let backend = BackendUrl::parse(url).map_err(|e| {
        // Routing data, not a backend: nothing to mark dead, and another
        // attempt would only read the same list again.
        shard.warn_bad_backend_url(target.host, &e);
        Failure::NotTheBackend(ProxyError::BadBackendUrl)
    })?;
    // A name that does not resolve says nothing about the backend's health
    // (the resolver, or lopache's own descriptors, may be what failed): no
    // dead mark, no retry, and no longer than `connect_timeout`.
    let resolved = (shard.dns)
        .resolve_within(backend.host, backend.port, cfg.connect_timeout)
        .await;
    let addr = match resolved {
        Ok(a) => a,
        Err(e) if crate::net::is_local_shortage(&e) => {
            shard.note_local_shortage(&backend.host, &e);
            return Err(Failure::NotTheBackend(ProxyError::LocalResources));
        }
        Err(e) => {
            log_debug!("resolving {} failed: {e}", backend.host);
            return Err(Failure::NotTheBackend(ProxyError::DnsFailed));
        }
    };
    // A full pool is lopache's limit (`max_sockets`), not the backend's
    // failure: 503 after `connect_timeout`, nothing marked dead.
    let Some(slot) = shard.pool.slot_within(addr, cfg.connect_timeout).await else {
        metrics::add(&shard.metrics.pool_exhausted, 1);
        return Err(Failure::NotTheBackend(ProxyError::PoolExhausted));
    };
    let key = PoolKey {
        addr,
        tls_name: (backend.scheme == Scheme::Https).then(|| backend.host.to_string()),
    };
    if let Some(stream) = shard.pool.take_idle(&key) {
        return Ok(Upstream {
            stream,
            reused: true,
            key,
            slot,
        });
    }
    // Boxed, like the other rare paths: a new connection (maybe a TLS
    // handshake) would otherwise size every request's future.
    let connecting = Box::pin(connect(
        addr,
        key.tls_name.as_deref(),
        &shard.backend_tls,
        cfg.connect_timeout,
    ));
    match connecting.await {
        Ok(stream) => {
            metrics::add(&shard.metrics.upstream_opened, 1);
            Ok(Upstream {
                stream,
                reused: false,
                key,
                slot,
            })
        }
        Err(e) if crate::net::is_local_shortage(&e) => {
            shard.note_local_shortage(&addr, &e);
            Err(Failure::NotTheBackend(ProxyError::LocalResources))
        }
        Err(e) => {
            log_debug!("connect to {addr} failed: {e}");
            Err(Failure::Connect)
        }
    }
}

/// Sends the head and the body. `Ok(true)`: the backend stopped taking the
/// body (it may have answered early; its answer, if any, is relayed and both
/// connections close).
async fn send_request<S: AsyncReadRent + AsyncWriteRent>(
    shard: &Shard,
    client: &mut Client<S>,
    exchange: &mut Exchange,
    up_head: &[u8],
    upstream: &mut Upstream,
    timer: &mut Timer,
) -> Phase<bool> {
    let cfg = &shard.config;
    // The head, and whatever body bytes already arrived with it, in one write.
    // The body bytes stay in the client buffer until the write succeeded, so
    // a retry after a failed write loses nothing.
    let mut request_body = BodyRelay::new(exchange.body, ChunkedMode::Verbatim, &cfg.limits);
    let (early, after_early) = match request_body.buffered(client.body_bytes()) {
        Ok(found) => found,
        Err(e) => {
            log_debug!("invalid chunked request body: {e}");
            return Err(Attempt::Done(refuse(shard, client, 400).await));
        }
    };
    let mut first = Vec::with_capacity(up_head.len() + early);
    first.extend_from_slice(up_head);
    first.extend_from_slice(&client.body_bytes()[..early]);
    let mut body_cut = false;
    let reused = upstream.reused;
    let limit = Some(cfg.response_timeout);
    match write_all_telling(&mut upstream.stream, first, limit, &mut *timer).await {
        Ok(_) => {
            request_body.commit(after_early);
            client.consume_body(early);
            exchange.body_charge = None;
        }
        // Nothing went out: the request never reached the backend (a
        // pooled connection's had closed it).
        Err(failed) if !failed.sent_some && (reused || exchange.body.is_empty()) => {
            return Err(Failure::Send { reused }.into());
        }
        // A backend may refuse a body by answering and closing at once (an
        // answer, if one came, is relayed).
        Err(_) if !exchange.body.is_empty() => body_cut = true,
        // Part of the request went out: it may be running on the backend,
        // and is sent again only if it is safe to.
        Err(_) => return Err(Failure::ClosedBeforeAnswer { reused }.into()),
    }
    if exchange.expect_continue && !exchange.continue_sent && !body_cut {
        // We answer 100 ourselves, once a backend is ready.
        if !send_continue(shard, client, exchange).await {
            return Err(Attempt::Done(Next::Close));
        }
    }
    if exchange.body.is_empty() || body_cut {
        return Ok(body_cut);
    }
    let deadlines = Deadlines {
        read: Some(cfg.client_body_timeout),
        write: Some(cfg.response_timeout),
    };
    // A backend may answer before it has the whole body (a 413 for an
    // upload it will not take) and stop reading: between pieces the relay
    // looks for such an answer (plain TCP only: a TLS connection carries
    // records, session tickets say, that are no answer).
    let plain = upstream.stream.plain_fd();
    let answered = move || plain.is_some_and(|fd| !crate::net::is_quiet(fd));
    let relayed = client
        .relay_body(
            &mut request_body,
            &mut upstream.stream,
            deadlines,
            &answered,
        )
        .await;
    match relayed {
        Ok(_) => {
            exchange.body_consumed = true;
            Ok(false)
        }
        Err(RelayError::Read(IoFailure::Timeout)) => {
            // The backend saw part of a body: its connection goes with ours.
            metrics::add(&shard.metrics.client_timeouts, 1);
            let next = reply_error(shard, client, exchange, ProxyError::BodyTimeout, None);
            Err(Attempt::Done(Box::pin(next).await))
        }
        Err(RelayError::Read(_) | RelayError::Truncated) => Err(Attempt::Done(Next::Close)),
        Err(RelayError::Chunked(e)) => {
            log_debug!("invalid chunked request body: {e}");
            Err(Attempt::Done(refuse(shard, client, 400).await))
        }
        // The backend stopped taking the body, or answered before it had it
        // all. Closing on a body it refuses is its right, so no answer is a
        // 502 but never a dead mark.
        Err(RelayError::Write(_) | RelayError::Answered) => Ok(true),
    }
}

/// Waits for the final response head, passing interim ones on to HTTP/1.1
/// clients. `response_timeout` bounds the wait for the final status line,
/// however many interim responses come first, and those are counted too: a
/// backend streaming `100 Continue` forever is a broken backend.
async fn await_answer<S: AsyncWriteRent>(
    shard: &Shard,
    client: &mut Client<S>,
    exchange: &mut Exchange,
    upstream: &mut Upstream,
    ubuf: &mut BytesMut,
    body_cut: bool,
    timer: &mut Timer,
) -> Phase<Answer> {
    let cfg = &shard.config;
    let final_deadline = match body_cut {
        // An answer that came early is already here (or never will be).
        true => crate::clock::from_now(cfg.response_timeout.min(EARLY_ANSWER_WAIT)),
        false => crate::clock::from_now(cfg.response_timeout),
    };
    let was_head = exchange.method == Method::Head;
    let mut interim_seen = 0;
    loop {
        let up = &mut upstream.stream;
        let head = read_response_head(shard, up, ubuf, was_head, final_deadline, timer);
        let resp = match head.await {
            Ok(r) => r,
            Err(failure) if body_cut => {
                // Closing on a body it refuses is the backend's right.
                let failure = match failure {
                    HeadFailure::Invalid => Failure::BadResponse,
                    HeadFailure::Timeout | HeadFailure::Closed => Failure::BodyRefused,
                };
                return Err(failure.into());
            }
            Err(HeadFailure::Timeout) => return Err(Failure::Timeout.into()),
            Err(HeadFailure::Closed) => {
                let reused = upstream.reused;
                return Err(Failure::ClosedBeforeAnswer { reused }.into());
            }
            Err(HeadFailure::Invalid) => return Err(Failure::BadResponse.into()),
        };
        if resp.status == 101 {
            // Only a real WebSocket switch opens a tunnel; a 101 nobody
            // asked for, or to another protocol, is a broken backend.
            if !(exchange.upgrade && resp.upgrade_websocket) {
                return Err(Failure::BadResponse.into());
            }
            return Ok(Answer::Switch(resp));
        }
        if !resp.is_interim() {
            return Ok(Answer::Final(resp));
        }
        if interim_seen == MAX_INTERIM_RESPONSES {
            log_debug!("a backend sent more than {MAX_INTERIM_RESPONSES} interim responses");
            return Err(Failure::BadResponse.into());
        }
        interim_seen += 1;
        // A 100 only if we did not already send our own.
        let pass = exchange.version == Version::Http11
            && !(resp.status == 100 && exchange.expect_continue);
        if pass {
            // Rewritten like a final head (hop-by-hop and framing fields
            // dropped, lines in CRLF), not passed on byte for byte.
            let mut interim = Vec::with_capacity(resp.len);
            client_response(
                &ubuf[..resp.len],
                &resp,
                exchange.version,
                true,
                ClientFraming::AsIs,
                b"",
                &mut interim,
            );
            if client
                .write_on(interim, cfg.tcp_timeout, timer)
                .await
                .is_err()
            {
                return Err(Attempt::Done(Next::Close));
            }
        }
        ubuf.advance(resp.len);
    }
}

/// Relays the final response: its head (rewritten) with the body bytes that
/// came along in one write, then the rest of the body. The upstream
/// connection goes back to the pool as soon as the backend's response is
/// read in full.
async fn relay_response<S: AsyncReadRent + AsyncWriteRent>(
    shard: &Shard,
    client: &mut Client<S>,
    exchange: &mut Exchange,
    target: &Target<'_>,
    response: Response,
    timer: &mut Timer,
) -> Phase<Next> {
    let cfg = &shard.config;
    let Response {
        upstream,
        buf: mut ubuf,
        head: resp,
        body_cut,
    } = response;
    if super::forward::marks_dead(shard, &resp) {
        super::forward::mark_backend_dead(shard, target);
    }
    let (framing, mode) = client_framing(exchange.version, resp.body);
    let delimited = response_delimits_itself(&resp, framing);
    let client_keep = keeps_alive(exchange, shard.drain.is_draining(), delimited);
    let mut out = response_head(exchange, target, &mut ubuf, &resp, client_keep, framing);
    // Body bytes that came with the head leave in the same write.
    let mut response_body = BodyRelay::new(resp.body, mode, &cfg.limits);
    match response_body.buffered(&ubuf) {
        Ok((early, after_early)) => {
            out.extend_from_slice(&ubuf[..early]);
            ubuf.advance(early);
            response_body.commit(after_early);
        }
        Err(e) => {
            log_debug!("backend {} sent a broken chunked body: {e}", target.url());
            return Err(Failure::BadResponse.into());
        }
    }
    exchange.status = Some(resp.status);
    exchange.bytes = response_body.written;
    // After an upgrade request that was refused, the backend's view of the
    // connection is uncertain: do not reuse it.
    let reuse = resp.reusable && cfg.http_keep_alive && !exchange.upgrade && !body_cut;
    let Upstream {
        stream, key, slot, ..
    } = upstream;
    // Before the client has taken the response: a slow reader holds only its
    // own connection, not a backend connection or its `max_sockets` slot.
    let release = move |up: UpstreamStream, surplus: bool| {
        if reuse && !surplus {
            shard.pool.put_idle(key, up);
        }
        drop(slot);
    };
    let written = if response_body.is_done() {
        // The usual response: all of it came with the head.
        release(stream, !ubuf.is_empty());
        shard.head_buffers.give(ubuf);
        client
            .write_on(out, cfg.tcp_timeout, timer)
            .await
            .map(|_| response_body.written)
            .map_err(RelayError::Write)
    } else {
        let deadlines = Deadlines {
            read: Some(cfg.response_timeout),
            write: cfg.tcp_timeout,
        };
        let ahead = ReadAhead {
            per_response: cfg.response_buffer_bytes,
            budget: &shard.buffer_budget,
        };
        let relay = response_body.run_ahead(
            stream,
            ubuf,
            out,
            client.writer(),
            ahead,
            deadlines,
            |up, rest: BytesMut| release(up, !rest.is_empty()),
        );
        Box::pin(relay).await
    };
    match written {
        Ok(bytes) => exchange.bytes = bytes,
        Err(RelayError::Write(_)) => return Ok(Next::Close),
        Err(e) => {
            // The head is already out: all we can do is cut the client off.
            log_debug!("backend {} broke off its response: {e}", target.url());
            return Ok(Next::Close);
        }
    }
    Ok(after_relay(client_keep, exchange.body_consumed))
}

/// How a response's body goes to the client: as the backend framed it, or
/// de-chunked for an HTTP/1.0 client (which cannot read chunked).
fn client_framing(client: Version, body: BodyKind) -> (ClientFraming, ChunkedMode) {
    match (client, body) {
        (Version::Http10, BodyKind::Chunked) => (ClientFraming::Dechunk, ChunkedMode::Decode),
        _ => (ClientFraming::AsIs, ChunkedMode::Verbatim),
    }
}

/// The backend's response head as the client gets it (rewritten, with debug
/// headers when asked), taken off the front of `ubuf`.
fn response_head(
    exchange: &Exchange,
    target: &Target<'_>,
    ubuf: &mut BytesMut,
    resp: &ResponseHead,
    keep: bool,
    framing: ClientFraming,
) -> Vec<u8> {
    let mut extra = Vec::new();
    if let Some(id) = &exchange.request_id {
        extra.extend_from_slice(id.line());
    }
    if exchange.x_debug {
        debug_headers(&mut extra, target, exchange);
    }
    let mut out = Vec::with_capacity(resp.len + RESPONSE_HEAD_SLACK + extra.len());
    client_response(
        &ubuf[..resp.len],
        resp,
        exchange.version,
        keep,
        framing,
        &extra,
        &mut out,
    );
    ubuf.advance(resp.len);
    out
}

/// Relays the 101 head to the client and hands the upstream connection over
/// to the tunnel, with whatever the backend sent after its head.
async fn switch_protocols<S: AsyncWriteRent>(
    shard: &Shard,
    client: &mut Client<S>,
    exchange: &mut Exchange,
    target: &Target<'_>,
    response: Response,
) -> Next {
    let Response {
        upstream,
        buf: mut ubuf,
        head,
        ..
    } = response;
    exchange.status = Some(101);
    let out = response_head(
        exchange,
        target,
        &mut ubuf,
        &head,
        true,
        ClientFraming::AsIs,
    );
    if client.write(out, shard.config.tcp_timeout).await.is_err() {
        return Next::Close;
    }
    Next::Tunnel(Box::new(Upgraded {
        upstream: upstream.stream,
        leftover: ubuf,
    }))
}

enum HeadFailure {
    Timeout,
    /// Closed or failed before a complete head arrived.
    Closed,
    Invalid,
}

/// Reads one response head (interim or final), by `deadline`.
async fn read_response_head(
    shard: &Shard,
    up: &mut UpstreamStream,
    buf: &mut BytesMut,
    request_was_head: bool,
    deadline: Instant,
    timer: &mut Timer,
) -> Result<ResponseHead, HeadFailure> {
    let cfg = &shard.config;
    loop {
        if !buf.is_empty() {
            match parse_response(buf, &cfg.limits, request_was_head) {
                Ok(Some(r)) => return Ok(r),
                Ok(None) => {}
                Err(_) => return Err(HeadFailure::Invalid),
            }
        }
        let left = deadline.saturating_duration_since(crate::clock::now());
        match read_some_on(up, buf, Some(left), &mut *timer).await {
            Ok(0) | Err(IoFailure::Io(_)) => return Err(HeadFailure::Closed),
            Ok(_) => {}
            Err(IoFailure::Timeout) => return Err(HeadFailure::Timeout),
        }
    }
}
