//! Forwarding one request: look the host up, pick a live backend, connect (or
//! reuse a pooled connection), send the head and stream the body, read the
//! response head, stream the response back, and return the connection to the
//! pool when it is clean. Failures mark backends dead and are retried under
//! the SPEC's rules; whatever cannot be retried becomes an error page.

use std::borrow::Cow;
use std::io::Write;
use std::time::Instant;

use bytes::{Buf, BytesMut};
use monoio::io::{AsyncReadRent, AsyncWriteRent};

use super::error::ProxyError;
use super::session::Client;
use super::tunnel::Upgraded;
use crate::config::routes::Destination;
use crate::http::request::{Method, RequestHead};
use crate::http::response::{parse_response, ResponseHead};
use crate::http::rewrite::{client_response, ClientFraming};
use crate::http::{BodyKind, Version};
use crate::io::ahead::ReadAhead;
use crate::io::budget::Charge;
use crate::io::pump::{BodyRelay, ChunkedMode, Deadlines, RelayError};
use crate::io::timed::{read_into_spare, read_some, write_all, IoFailure};
use crate::log_debug;
use crate::observe::metrics;
use crate::routing::cache::RouteCache;
use crate::routing::dead::{self, DeadMark};
use crate::routing::lookup::LookupError;
use crate::routing::rules::RequestFacts;
use crate::routing::{choose_backend, choose_destination, find_frontend, Frontend, RouteError};
use crate::shard::Shard;
use crate::upstream::pool::{connect, PoolKey};
use crate::upstream::stream::UpstreamStream;
use crate::upstream::{BackendUrl, Scheme};

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
    /// The status sent to the client (0: none yet).
    pub status: u16,
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
            status: 0,
            bytes: 0,
            identifier: None,
            body_consumed: head.body.is_empty(),
            body_buffered: head.body.is_empty(),
            continue_sent: false,
            body_charge: None,
        }
    }

    /// Safe to send again after a failure mid-flight (SPEC section 3, Retries).
    fn replayable(&self) -> bool {
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
    destination: &'c Destination,
    /// The requested host (the frontend's matched key is derived from it).
    host: &'c str,
    frontend: Frontend,
    /// The chosen backend, 0-based.
    index: usize,
}

impl Target<'_> {
    fn url(&self) -> Cow<'_, str> {
        self.frontend.backend(self.index)
    }

    /// How many backends the frontend has.
    fn count(&self) -> usize {
        self.frontend.backend_count()
    }
}

enum Attempt {
    Done(Next),
    Failed {
        error: ProxyError,
        mark_dead: bool,
        retry: bool,
    },
}

pub(super) async fn forward<S: AsyncReadRent + AsyncWriteRent>(
    shard: &Shard,
    client: &mut Client<S>,
    exchange: &mut Exchange,
    up_head: Vec<u8>,
    host: String,
    facts: RequestFacts,
) -> Next {
    let cfg = &shard.config;
    let (destination, mut prefetched) = match choose_destination(
        &cfg.routing,
        &shard.redis,
        &facts,
        &host,
        cfg.limits.path_segments,
    )
    .await
    {
        Ok(chosen) => chosen,
        Err(e) => return routing_unavailable(shard, client, exchange, &host, e, None).await,
    };
    let slot = RouteCache::slot(&cfg.routing, destination);
    let mut tried: Vec<usize> = Vec::new();
    let mut failures = 0u32;
    let mut last: Option<Target> = None;
    loop {
        // Each attempt looks the host up afresh (SPEC: retries re-read Redis),
        // except the first when the route's conditions already fetched it.
        // With the route cache on, the first attempt may reuse a recent
        // lookup; a retry always reads Redis (and refreshes the cache).
        let cached = match failures {
            0 => shard.route_cache.get(slot, &host),
            _ => None,
        };
        let looked_up = match (prefetched.take(), cached) {
            (Some(found), _) => {
                shard.route_cache.put(slot, &host, &found);
                Ok(found)
            }
            (None, Some(found)) => Ok(found),
            (None, None) => {
                let found =
                    find_frontend(&shard.redis[destination.read], &destination.prefix, &host).await;
                if let Ok(f) = &found {
                    shard.route_cache.put(slot, &host, f);
                }
                found
            }
        };
        let frontend = match looked_up {
            Ok(Some(f)) => f,
            Ok(None) => {
                return reply_error(shard, client, exchange, ProxyError::UnknownFrontend, None)
                    .await
            }
            Err(e) => {
                return routing_unavailable(shard, client, exchange, &host, e, last.as_ref()).await;
            }
        };
        let Some(index) = choose_backend(&frontend, &host, &shard.dead, &tried) else {
            let error = if failures > 0 {
                ProxyError::UpstreamConnect
            } else {
                ProxyError::NoLiveBackend
            };
            return reply_error(shard, client, exchange, error, last.as_ref()).await;
        };
        if exchange.log.is_some() {
            exchange.identifier = Some(frontend.identifier().into_owned());
        }
        let target = Target {
            destination,
            host: &host,
            frontend,
            index,
        };
        match attempt(shard, client, exchange, &host, &up_head, &target).await {
            Attempt::Done(next) => return next,
            Attempt::Failed {
                error,
                mark_dead,
                retry,
            } => {
                log_debug!("{host}: backend {} failed: {error}", target.url());
                tried.push(index);
                if mark_dead {
                    mark_backend_dead(shard, &host, &target);
                }
                failures += 1;
                let may_retry = retry && failures <= cfg.retry_on_error;
                if may_retry {
                    metrics::add(&shard.metrics.retries, 1);
                }
                last = Some(target);
                if !may_retry {
                    return reply_error(shard, client, exchange, error, last.as_ref()).await;
                }
            }
        }
    }
}

/// Routing failed: Redis could not answer (counted, 503), the frontend's
/// list is too large (502), or the path too long for route conditions (414).
async fn routing_unavailable<S: AsyncWriteRent>(
    shard: &Shard,
    client: &mut Client<S>,
    exchange: &mut Exchange,
    host: &str,
    error: RouteError,
    target: Option<&Target<'_>>,
) -> Next {
    log_debug!("routing {host} failed: {error}");
    let answer = match error {
        RouteError::Redis(_) | RouteError::BadReply(LookupError::BadReply(_)) => {
            metrics::add(&shard.metrics.redis_errors, 1);
            ProxyError::RoutingUnavailable
        }
        RouteError::BadReply(LookupError::TooLarge(_)) => ProxyError::RouteTooLarge,
        RouteError::PathTooLong(_) => ProxyError::PathTooLong,
    };
    reply_error(shard, client, exchange, answer, target).await
}

/// One try against one backend.
async fn attempt<S: AsyncReadRent + AsyncWriteRent>(
    shard: &Shard,
    client: &mut Client<S>,
    exchange: &mut Exchange,
    host: &str,
    up_head: &[u8],
    target: &Target<'_>,
) -> Attempt {
    let cfg = &shard.config;
    let failed = |error, mark_dead, retry| Attempt::Failed {
        error,
        mark_dead,
        retry,
    };
    if let Err(next) = buffer_request_body(shard, client, exchange).await {
        return Attempt::Done(next);
    }
    let url = target.url();
    let backend = match BackendUrl::parse(&url) {
        Ok(b) => b,
        Err(e) => {
            // Routing data, not a backend: nothing to mark dead, and another
            // attempt would only read the same list again.
            shard.warn_bad_backend_url(host, &e);
            return failed(ProxyError::BadBackendUrl, false, false);
        }
    };
    // A name that does not resolve says nothing about the backend's health
    // (the resolver, or lopache's own descriptors, may be what failed): no
    // dead mark, no retry, and no longer than `connect_timeout`.
    let resolved = monoio::time::timeout(
        cfg.connect_timeout,
        shard.dns.resolve(backend.host, backend.port),
    )
    .await;
    let addr = match resolved {
        Ok(Ok(a)) => a,
        Ok(Err(e)) if crate::net::is_local_shortage(&e) => {
            shard.note_local_shortage(&backend.host, &e);
            return failed(ProxyError::LocalResources, false, false);
        }
        Ok(Err(e)) => {
            log_debug!("resolving {} failed: {e}", backend.host);
            return failed(ProxyError::DnsFailed, false, false);
        }
        Err(_) => {
            log_debug!("resolving {} timed out", backend.host);
            return failed(ProxyError::DnsFailed, false, false);
        }
    };
    // A full pool is lopache's limit (`max_sockets`), not the backend's
    // failure: 503 after `connect_timeout`, nothing marked dead.
    let Ok(Some(slot)) = monoio::time::timeout(cfg.connect_timeout, shard.pool.slot(addr)).await
    else {
        metrics::add(&shard.metrics.pool_exhausted, 1);
        return failed(ProxyError::PoolExhausted, false, false);
    };
    let key = PoolKey {
        addr,
        tls_name: (backend.scheme == Scheme::Https).then(|| backend.host.to_string()),
    };
    let (mut up, reused) = match shard.pool.take_idle(&key) {
        Some(s) => (s, true),
        // Boxed, like the other rare paths below: a new connection (maybe a
        // TLS handshake) would otherwise size every request's future.
        None => match Box::pin(connect(
            addr,
            key.tls_name.as_deref(),
            &shard.backend_tls,
            cfg.connect_timeout,
        ))
        .await
        {
            Ok(s) => {
                metrics::add(&shard.metrics.upstream_opened, 1);
                (s, false)
            }
            Err(e) if crate::net::is_local_shortage(&e) => {
                shard.note_local_shortage(&addr, &e);
                return failed(ProxyError::LocalResources, false, false);
            }
            Err(e) => {
                log_debug!("connect to {addr} failed: {e}");
                return failed(ProxyError::UpstreamConnect, true, true);
            }
        },
    };
    exchange.backend_started = Some(Instant::now());
    // The head, and whatever body bytes already arrived with it, in one write.
    // The body bytes stay in the client buffer until the write succeeded, so
    // a retry after a failed write loses nothing.
    let mut request_body = BodyRelay::new(exchange.body, ChunkedMode::Verbatim, &cfg.limits);
    let (early, after_early) = match request_body.buffered(&client.buf) {
        Ok(found) => found,
        Err(e) => {
            log_debug!("invalid chunked request body: {e}");
            return Attempt::Done(refuse_body(shard, client).await);
        }
    };
    let mut first = Vec::with_capacity(up_head.len() + early);
    first.extend_from_slice(up_head);
    first.extend_from_slice(&client.buf[..early]);
    // The request body was not all sent (the backend stopped taking it).
    let mut body_cut = false;
    match write_all(&mut up, first, Some(cfg.response_timeout)).await {
        Ok(_) => {
            request_body.commit(after_early);
            client.buf.advance(early);
            exchange.body_charge = None;
        }
        // A pooled connection the backend had closed is not its fault.
        Err(_) if reused => return failed(ProxyError::UpstreamFailed, false, true),
        // A backend may refuse a body by answering and closing at once.
        Err(_) if !exchange.body.is_empty() => body_cut = true,
        Err(_) => return failed(ProxyError::UpstreamFailed, true, exchange.replayable()),
    }
    if exchange.expect_continue && !exchange.continue_sent && !body_cut {
        // We answer 100 ourselves (Expect is not forwarded), once a backend is ready.
        if write_all(
            &mut client.stream,
            &b"HTTP/1.1 100 Continue\r\n\r\n"[..],
            cfg.tcp_timeout,
        )
        .await
        .is_err()
        {
            return Attempt::Done(Next::Close);
        }
    }
    if !exchange.body.is_empty() && !body_cut {
        let deadlines = Deadlines {
            read: Some(cfg.client_body_timeout),
            write: Some(cfg.response_timeout),
        };
        // A backend may answer before it has the whole body (a 413 for an
        // upload it will not take) and stop reading: between pieces the
        // relay looks for such an answer (plain TCP only: a TLS connection
        // carries records, session tickets say, that are no answer).
        let plain = up.plain_fd();
        let answered = move || plain.is_some_and(|fd| !crate::net::is_quiet(fd));
        let relayed = Box::pin(request_body.run_watching(
            &mut client.stream,
            &mut client.buf,
            &mut up,
            deadlines,
            &answered,
        ))
        .await;
        match relayed {
            Ok(_) => exchange.body_consumed = true,
            Err(RelayError::Read(IoFailure::Timeout)) => {
                // The backend saw part of a body: its connection goes with ours.
                metrics::add(&shard.metrics.client_timeouts, 1);
                let next = reply_error(shard, client, exchange, ProxyError::BodyTimeout, None);
                return Attempt::Done(Box::pin(next).await);
            }
            Err(RelayError::Read(_) | RelayError::Truncated) => return Attempt::Done(Next::Close),
            Err(RelayError::Chunked(e)) => {
                log_debug!("invalid chunked request body: {e}");
                return Attempt::Done(refuse_body(shard, client).await);
            }
            // The backend stopped taking the body, or answered before it
            // had it all. Its answer (if any) is relayed and both
            // connections close; closing on a body it refuses is its right,
            // so no answer is a 502 but never a dead mark.
            Err(RelayError::Write(_) | RelayError::Answered) => body_cut = true,
        }
    }

    let mut ubuf = BytesMut::with_capacity(8 * 1024);
    // `response_timeout` bounds the wait for the final status line, however
    // many interim responses come first, and those are counted too: a
    // backend streaming `100 Continue` forever is a broken backend.
    let final_deadline = match body_cut {
        // An answer that came early is already here (or never will be).
        true => crate::clock::from_now(cfg.response_timeout.min(EARLY_ANSWER_WAIT)),
        false => crate::clock::from_now(cfg.response_timeout),
    };
    let mut interim_seen = 0;
    let was_head = exchange.method == Method::Head;
    let resp = loop {
        match read_response_head(shard, &mut up, &mut ubuf, was_head, final_deadline).await {
            Ok(r) if r.is_interim() && interim_seen == MAX_INTERIM_RESPONSES => {
                log_debug!(
                    "backend {url} sent more than {MAX_INTERIM_RESPONSES} interim responses"
                );
                return failed(ProxyError::BadUpstreamResponse, false, false);
            }
            Ok(r) if r.is_interim() => {
                interim_seen += 1;
                // 1xx other than 101: pass on to HTTP/1.1 clients (a 100 only
                // if we did not already send our own).
                let pass = exchange.version == Version::Http11
                    && !(r.status == 100 && exchange.expect_continue);
                if pass {
                    // Rewritten like a final head (hop-by-hop and framing
                    // fields dropped, lines in CRLF), not passed on byte for
                    // byte.
                    let mut interim = Vec::with_capacity(r.len);
                    client_response(
                        &ubuf[..r.len],
                        &r,
                        exchange.version,
                        true,
                        ClientFraming::AsIs,
                        b"",
                        &mut interim,
                    );
                    if write_all(&mut client.stream, interim, cfg.tcp_timeout)
                        .await
                        .is_err()
                    {
                        return Attempt::Done(Next::Close);
                    }
                }
                ubuf.advance(r.len);
            }
            Ok(r) if r.status == 101 => {
                // Only a real WebSocket switch opens a tunnel; a 101 nobody
                // asked for, or to another protocol, is a broken backend.
                if !(exchange.upgrade && r.upgrade_websocket) {
                    return failed(ProxyError::BadUpstreamResponse, false, false);
                }
                exchange.status = 101;
                return Box::pin(switch_protocols(
                    shard, client, exchange, target, up, ubuf, &r,
                ))
                .await;
            }
            Ok(r) => break r,
            Err(HeadFailure::Timeout | HeadFailure::Closed) if body_cut => {
                return failed(ProxyError::UpstreamFailed, false, false);
            }
            Err(HeadFailure::Timeout) => return failed(ProxyError::UpstreamTimeout, true, false),
            Err(HeadFailure::Closed) => {
                return failed(ProxyError::UpstreamFailed, !reused, exchange.replayable());
            }
            Err(HeadFailure::Invalid) => {
                return failed(ProxyError::BadUpstreamResponse, false, false)
            }
        }
    };

    if marks_dead(shard, &resp) {
        mark_backend_dead(shard, host, target);
    }
    let framing = if exchange.version == Version::Http10 && resp.body == BodyKind::Chunked {
        ClientFraming::Dechunk
    } else {
        ClientFraming::AsIs
    };
    // While draining, every response closes its connection.
    let client_keep = exchange.keep_alive
        && !shard.drain.is_draining()
        && exchange.body_consumed
        && resp.body != BodyKind::UntilClose
        && !resp.framing_conflict
        && framing == ClientFraming::AsIs;
    let mode = match framing {
        ClientFraming::AsIs => ChunkedMode::Verbatim,
        ClientFraming::Dechunk => ChunkedMode::Decode,
    };
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
            log_debug!("backend {} sent a broken chunked body: {e}", url);
            return failed(ProxyError::BadUpstreamResponse, false, false);
        }
    }
    exchange.status = resp.status;
    exchange.bytes = response_body.written;
    // After an upgrade request that was refused, the backend's view of the
    // connection is uncertain: do not reuse it.
    let reuse = resp.reusable && cfg.http_keep_alive && !exchange.upgrade && !body_cut;
    // The upstream connection (and its `max_sockets` slot) goes back as soon
    // as the backend's response is read in full, before the client has taken
    // it: a slow reader holds only its own connection.
    let release = move |up: UpstreamStream, rest: BytesMut| {
        if reuse && rest.is_empty() {
            shard.pool.put_idle(key, up);
        }
        drop(slot);
    };
    let written = if response_body.is_done() {
        // The usual response: all of it came with the head.
        release(up, ubuf);
        write_all(&mut client.stream, out, cfg.tcp_timeout)
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
        let relay =
            response_body.run_ahead(up, ubuf, out, &mut client.stream, ahead, deadlines, release);
        Box::pin(relay).await
    };
    match written {
        Ok(bytes) => exchange.bytes = bytes,
        Err(RelayError::Write(_)) => return Attempt::Done(Next::Close),
        Err(e) => {
            // The head is already out: all we can do is cut the client off.
            log_debug!("backend {} broke off its response: {e}", url);
            return Attempt::Done(Next::Close);
        }
    }
    Attempt::Done(if client_keep {
        Next::KeepAlive
    } else if !exchange.body_consumed {
        // The client may still be sending the body the backend refused:
        // closing at once would reset the connection under our answer.
        Next::CloseLinger
    } else {
        Next::Close
    })
}

/// Reads the request body, up to `server.request_buffer_bytes`, before an
/// upstream connection is taken (nginx's `proxy_request_buffering`,
/// HAProxy's `http-buffer-request`): a client that trickles its body holds
/// only its own connection, never one of the backend's `max_sockets`.
/// Larger bodies stream once that much has arrived. `Err`: the request was
/// answered (or the client left) and the connection goes on as returned.
async fn buffer_request_body<S: AsyncReadRent + AsyncWriteRent>(
    shard: &Shard,
    client: &mut Client<S>,
    exchange: &mut Exchange,
) -> Result<(), Next> {
    let cfg = &shard.config;
    if exchange.body_buffered || cfg.request_buffer_bytes == 0 {
        return Ok(());
    }
    if exchange.expect_continue {
        // The client waits for this before sending the body we wait for.
        let sent = write_all(
            &mut client.stream,
            &b"HTTP/1.1 100 Continue\r\n\r\n"[..],
            cfg.tcp_timeout,
        )
        .await;
        if sent.is_err() {
            return Err(Next::Close);
        }
        exchange.continue_sent = true;
    }
    let want = match exchange.body {
        BodyKind::Length(n) => usize::try_from(n).map_or(usize::MAX, |n| n),
        _ => usize::MAX,
    }
    .min(cfg.request_buffer_bytes);
    let mut charge = Charge::new(&shard.buffer_budget);
    if !charge.room_for(want) {
        // The shard holds all it may for slow peers: this body streams.
        exchange.body_buffered = true;
        return Ok(());
    }
    charge.add(want);
    exchange.body_charge = Some(charge);
    let deadline = crate::clock::from_now(cfg.client_body_timeout);
    let mut relay = BodyRelay::new(exchange.body, ChunkedMode::Verbatim, &cfg.limits);
    let mut scanned = 0;
    loop {
        match relay.buffered(&client.buf[scanned..]) {
            Ok((n, next)) => {
                relay = next;
                scanned += n;
            }
            Err(e) => {
                log_debug!("invalid chunked request body: {e}");
                return Err(refuse_body(shard, client).await);
            }
        }
        if relay.is_done() || scanned >= cfg.request_buffer_bytes {
            exchange.body_buffered = true;
            return Ok(());
        }
        let left = deadline.saturating_duration_since(Instant::now());
        // Room for what is still to come, and no more: a body read in 32 KiB
        // steps would double its buffer past what it needs.
        let missing = want.saturating_sub(scanned).max(1024);
        if client.buf.capacity() - client.buf.len() < missing {
            client.buf.reserve(missing);
        }
        match read_into_spare(&mut client.stream, &mut client.buf, Some(left)).await {
            Ok(0) | Err(IoFailure::Io(_)) => return Err(Next::Close),
            Ok(_) => {}
            Err(IoFailure::Timeout) => {
                metrics::add(&shard.metrics.client_timeouts, 1);
                let next = reply_error(shard, client, exchange, ProxyError::BodyTimeout, None);
                return Err(Box::pin(next).await);
            }
        }
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
    if exchange.x_debug {
        debug_headers(&mut extra, target, exchange);
    }
    let mut out = Vec::with_capacity(resp.len + 64 + extra.len());
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
    exchange: &Exchange,
    target: &Target<'_>,
    up: UpstreamStream,
    mut ubuf: BytesMut,
    resp: &ResponseHead,
) -> Attempt {
    let out = response_head(exchange, target, &mut ubuf, resp, true, ClientFraming::AsIs);
    if write_all(&mut client.stream, out, shard.config.tcp_timeout)
        .await
        .is_err()
    {
        return Attempt::Done(Next::Close);
    }
    Attempt::Done(Next::Tunnel(Box::new(Upgraded {
        upstream: up,
        leftover: ubuf,
    })))
}

/// A request body that broke its chunked framing: 400, and the connection
/// closed (the backend saw part of it, so that connection is dropped too).
async fn refuse_body<S: AsyncWriteRent>(shard: &Shard, client: &mut Client<S>) -> Next {
    let mut out = Vec::with_capacity(1024);
    shard
        .config
        .error_pages
        .write_response(400, false, false, b"", &mut out);
    let _ = write_all(&mut client.stream, out, shard.config.tcp_timeout).await;
    Next::CloseLinger
}

/// How long an answer that came before the whole request body is waited for
/// once the backend stopped taking the body.
const EARLY_ANSWER_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Interim (1xx) responses taken before the final one; more is a 502.
const MAX_INTERIM_RESPONSES: usize = 32;

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
        let left = deadline.saturating_duration_since(Instant::now());
        match read_some(up, buf, Some(left)).await {
            Ok(0) | Err(IoFailure::Io(_)) => return Err(HeadFailure::Closed),
            Ok(_) => {}
            Err(IoFailure::Timeout) => return Err(HeadFailure::Timeout),
        }
    }
}

/// SPEC section 3: 501-599 (but not 503 with Retry-After), and 500 when configured.
fn marks_dead(shard: &Shard, resp: &ResponseHead) -> bool {
    match resp.status {
        500 => shard.config.dead_backend_on_500,
        503 => !resp.retry_after,
        501..=599 => true,
        _ => false,
    }
}

/// Flags the backend on this shard and tells Redis, for frontends with a
/// choice of backends (a lone backend is never taken out of rotation).
fn mark_backend_dead(shard: &Shard, host: &str, target: &Target) {
    if target.count() < 2 {
        return;
    }
    let cfg = &shard.config;
    let url = target.url();
    if !shard.dead.flag(host, &url, cfg.dead_backend_ttl) {
        return; // flagged by a request that failed before this one
    }
    shard.route_cache.forget(host);
    let prefix = &target.destination.prefix;
    let mark = DeadMark {
        host: host.to_string(),
        list_key: format!("{prefix}frontend:{}", target.frontend.key(host)),
        url: url.into_owned(),
        index: target.index,
        count: target.count(),
    };
    metrics::add(&shard.metrics.dead_marks, 1);
    monoio::spawn(dead::publish(
        shard.redis[target.destination.write].clone(),
        target.destination.prefix.clone(),
        mark,
        cfg.dead_backend_ttl,
    ));
}

fn debug_headers(out: &mut Vec<u8>, target: &Target<'_>, exchange: &Exchange) {
    push_header(out, "x-debug-backend-url", &target.url());
    push_header(out, "x-debug-backend-id", &target.index.to_string());
    push_header(out, "x-debug-vhost", &target.frontend.identifier());
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
fn push_header(out: &mut Vec<u8>, name: &str, value: &str) {
    let _ = write!(out, "{name}: ");
    out.extend(
        value
            .bytes()
            .map(|b| if b.is_ascii_control() { b'?' } else { b }),
    );
    out.extend_from_slice(b"\r\n");
}

/// Answers with an error page. The connection stays open only when the client
/// wants that and its request body (if any) has been read in full.
pub(super) async fn reply_error<S: AsyncWriteRent>(
    shard: &Shard,
    client: &mut Client<S>,
    exchange: &mut Exchange,
    error: ProxyError,
    target: Option<&Target<'_>>,
) -> Next {
    let keep = exchange.keep_alive && exchange.body_consumed && !shard.drain.is_draining();
    let head_only = exchange.method == Method::Head;
    exchange.status = error.status();
    exchange.bytes = if head_only {
        0
    } else {
        shard.config.error_pages.body(error.status()).len() as u64
    };
    let mut extra = Vec::new();
    if exchange.x_debug {
        push_header(&mut extra, "x-debug-error", error.tag());
        if let Some(t) = target {
            debug_headers(&mut extra, t, exchange);
        }
    }
    let mut out = Vec::with_capacity(1024);
    shard.config.error_pages.write_response(
        error.status(),
        keep,
        exchange.method == Method::Head,
        &extra,
        &mut out,
    );
    match write_all(&mut client.stream, out, shard.config.tcp_timeout).await {
        Ok(_) if keep => Next::KeepAlive,
        Ok(_) => Next::CloseLinger,
        Err(_) => Next::Close,
    }
}
