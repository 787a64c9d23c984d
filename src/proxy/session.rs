//! One client connection: read a head, answer it (locally or through a
//! backend), repeat while keep-alive holds. Pipelined requests are answered in
//! order because each is handled to completion before the next head is parsed
//! from the bytes already buffered.

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use monoio::io::{AsyncReadRent, AsyncWriteRent};

use super::error::ProxyError;
use super::exchange::{Exchange, LogFields, Next};
use super::forward::forward;
use super::reply::{refuse, reply_error, reply_ping};
use super::stream::ClientStream;
use super::tunnel;
use crate::http::request::{parse_request, Method, RequestError, RequestHead};
use crate::http::rewrite::{upstream_request, ClientSide, RequestRewrite};
use crate::io::timed::{read_into_spare, read_some, read_spare, IoFailure};
use crate::observe::access_log::Record;
use crate::observe::metrics;
use crate::routing::candidates::normalize_host;
use crate::routing::rules::RequestFacts;
use crate::shard::Shard;

/// Initial size of a client's read buffer: most request heads fit.
const HEAD_BUFFER: usize = 8 * 1024;
/// The buffer an idle keep-alive connection lends to its pending read on
/// io_uring: small, so that an idle connection stays cheap. A connection
/// whose heads do not fit waits for readability instead (as on epoll).
const IDLE_READ_BUFFER: usize = 256;
/// After an error response, how long and how much the client may still send
/// before the socket is closed (so our answer is not lost to a TCP reset).
const LINGER_TIME: Duration = Duration::from_secs(1);
const LINGER_BYTES: usize = 256 * 1024;

/// What the connection knows about where it came from.
#[derive(Debug, Clone, Copy)]
pub struct ClientInfo {
    pub peer: SocketAddr,
    pub local_port: u16,
    pub proto: ClientProto,
}

/// What the client spoke to lopache: plain HTTP or HTTP over TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientProto {
    Http,
    Https,
}

impl ClientProto {
    /// As `X-Forwarded-Proto` says it.
    pub fn as_str(self) -> &'static str {
        match self {
            ClientProto::Http => "http",
            ClientProto::Https => "https",
        }
    }
}

/// The client socket and the bytes read from it but not yet used.
pub(super) struct Client<S> {
    pub stream: S,
    pub buf: BytesMut,
    /// The last request head fit in `IDLE_READ_BUFFER` (see `wait_idle`).
    pub small_heads: bool,
}

enum HeadRead {
    Head(RequestHead),
    Closed,
    Refused(RequestError),
}

/// Serves one accepted connection until it closes.
pub async fn serve_client<S: ClientStream>(shard: Rc<Shard>, stream: S, info: ClientInfo) {
    let mut client = Client {
        stream,
        buf: BytesMut::new(),
        small_heads: true,
    };
    loop {
        if client.buf.is_empty() && !wait_idle(&shard, &mut client).await {
            return;
        }
        // Every phase but the idle wait is boxed, so the task itself stays
        // as small as an idle connection needs. The usual head arrived whole
        // with the idle read and is parsed here, without boxing a read.
        let head = match buffered_head(&shard, &mut client) {
            Some(found) => found,
            None => Box::pin(read_head(&shard, &mut client)).await,
        };
        let next = match head {
            // Boxed: the request's state (forwarding, relays, retries) is
            // allocated per request and freed before the connection idles,
            // instead of being inlined into every connection's task.
            HeadRead::Head(head) => {
                Box::pin(handle_request(&shard, &mut client, &info, head)).await
            }
            HeadRead::Closed => return,
            HeadRead::Refused(err) => {
                crate::log_debug!("refused request: {err}");
                Box::pin(refuse(&shard, &mut client, err.status())).await
            }
        };
        match next {
            Next::KeepAlive => continue,
            Next::Close => return,
            Next::CloseLinger => return Box::pin(linger_close(&mut client)).await,
            Next::Tunnel(upgraded) => {
                let Client { stream, buf, .. } = client;
                metrics::add(&shard.metrics.tunnels, 1);
                Box::pin(tunnel::run(&shard, stream, buf, *upgraded)).await;
                metrics::sub(&shard.metrics.tunnels, 1);
                return;
            }
        }
    }
}

/// Between requests a keep-alive connection holds little memory. On
/// io_uring a read waits in the kernel, so a connection with small request
/// heads simply reads with a small buffer: one operation per request instead
/// of a readiness poll and a read. Otherwise (epoll, where the read would
/// first fail with EAGAIN, or heads that need a second read) the connection
/// waits for readability holding no buffer at all, then gets a head-sized
/// one. False: close.
async fn wait_idle<S: ClientStream>(shard: &Shard, client: &mut Client<S>) -> bool {
    // The idle timeout is a slot in the shard's table, not a timer in every
    // idle connection's task (see `shard::idle`).
    let idle_limit = shard.idle.deadline(shard.config.tcp_timeout);
    if shard.read_waits_in_kernel() && client.small_heads {
        // Read here, not in the boxed `read_head`: the idle connection then
        // holds only its task, the small buffer and the pending read.
        // The last request's buffer is reused when it is a small one: on an
        // emptied, unshared BytesMut, `reserve` reclaims the consumed space
        // instead of allocating. One that grew (a body went through it) is
        // swapped for a small one, so an idle connection stays cheap.
        client.buf.clear();
        client.buf.reserve(IDLE_READ_BUFFER);
        if client.buf.capacity() > IDLE_READ_BUFFER {
            client.buf = BytesMut::with_capacity(IDLE_READ_BUFFER);
        }
        let read = read_spare(&mut client.stream, &mut client.buf);
        return monoio::select! {
            got = read => matches!(got, Ok(n) if n > 0),
            _ = idle_limit => false,
            _ = shard.drain.idle_expired() => false,
        };
    }
    client.buf = BytesMut::new();
    // An idle connection closes shortly after the shard drains.
    let ok = monoio::select! {
        ready = client.stream.wait_readable() => ready.is_ok(),
        _ = idle_limit => false,
        _ = shard.drain.idle_expired() => false,
    };
    client.buf.reserve(HEAD_BUFFER);
    ok
}

/// The request head already in the buffer, if it is complete (or refused).
fn buffered_head<S>(shard: &Shard, client: &mut Client<S>) -> Option<HeadRead> {
    if client.buf.is_empty() {
        return None;
    }
    match parse_request(&client.buf, &shard.config.limits) {
        Ok(Some(head)) => {
            client.small_heads = head.len <= IDLE_READ_BUFFER;
            Some(HeadRead::Head(head))
        }
        Ok(None) => None,
        Err(e) => Some(HeadRead::Refused(e)),
    }
}

/// Reads until a whole head is buffered. Once its first byte is here, the
/// head has `client_header_timeout` to arrive in full (a slowloris client
/// trickling one header byte at a time gets 408), whatever `tcp_timeout` is.
async fn read_head<S: AsyncReadRent>(shard: &Shard, client: &mut Client<S>) -> HeadRead {
    let mut head_deadline: Option<Instant> = None;
    loop {
        if let Some(found) = buffered_head(shard, client) {
            return found;
        }
        // Until a request's first byte arrives, a drain ends the wait after
        // its grace (the readiness wait before can be a stale "readable" on
        // epoll).
        let timeout = shard.config.tcp_timeout;
        let got = if client.buf.is_empty() {
            // The first read uses the buffer as `wait_idle` left it.
            let read = read_into_spare(&mut client.stream, &mut client.buf, timeout);
            monoio::select! {
                got = read => got,
                _ = shard.drain.idle_expired() => return HeadRead::Closed,
            }
        } else {
            let deadline = *head_deadline
                .get_or_insert_with(|| crate::clock::from_now(shard.config.client_header_timeout));
            let left = deadline.saturating_duration_since(Instant::now());
            // The rest of a head: grow by a head-sized step, not a relay chunk.
            if client.buf.capacity() - client.buf.len() < IDLE_READ_BUFFER {
                client.buf.reserve(HEAD_BUFFER);
            }
            read_into_spare(&mut client.stream, &mut client.buf, Some(left)).await
        };
        match got {
            Err(IoFailure::Timeout) if head_deadline.is_some() => {
                metrics::add(&shard.metrics.client_timeouts, 1);
                return HeadRead::Refused(RequestError::HeadTimeout);
            }
            Ok(0) | Err(_) => return HeadRead::Closed,
            Ok(_) => {}
        }
    }
}

async fn handle_request<S: AsyncReadRent + AsyncWriteRent>(
    shard: &Shard,
    client: &mut Client<S>,
    info: &ClientInfo,
    head: RequestHead,
) -> Next {
    let mut exchange = Exchange::new(&head, Instant::now(), shard.config.debug_headers);
    let host = match head.host(&client.buf) {
        None => Err(ProxyError::MissingHost),
        Some(raw) => normalize_host(raw).ok_or(ProxyError::BadHost),
    };
    // RFC 9112 section 3.2.2: an absolute-form target's authority overrides
    // Host. Routing on one while the backend honours the other would split
    // the request between two sites, so they must name the same host.
    let host = host.and_then(
        |h| match absolute_form_authority(head.target(&client.buf)) {
            Some(authority) if normalize_host(authority).as_deref() != Some(h.as_str()) => {
                Err(ProxyError::BadHost)
            }
            _ => Ok(h),
        },
    );
    if head.method == Method::Connect {
        client.buf.advance(head.len);
        return reply_error(
            shard,
            client,
            &mut exchange,
            ProxyError::MethodNotAllowed,
            None,
        )
        .await;
    }
    let host = match host {
        Ok(h) => h,
        Err(e) => {
            client.buf.advance(head.len);
            return reply_error(shard, client, &mut exchange, e, None).await;
        }
    };
    if host == "__ping__" {
        client.buf.advance(head.len);
        return reply_ping(shard, client, &exchange).await;
    }
    let side = ClientSide {
        peer: info.peer.ip(),
        proto: info.proto.as_str(),
        port: info.local_port,
    };
    let mut up_head = Vec::with_capacity(head.len + 192);
    let how = RequestRewrite {
        keep_alive: shard.config.http_keep_alive,
        underscores_in_headers: shard.config.underscores_in_headers,
    };
    upstream_request(&client.buf[..head.len], &head, &side, how, &mut up_head);
    if shard.access_log.is_some() {
        exchange.log = Some(Box::new(log_fields(&client.buf[..head.len], &head)));
    }
    let facts = if shard.config.routing.routes.is_empty() {
        RequestFacts::default()
    } else {
        request_facts(&client.buf[..head.len], &head)
    };
    client.buf.advance(head.len);
    let next = forward(shard, client, &mut exchange, up_head, host, facts).await;
    if let Some(status) = exchange.status {
        // Read the clock once for the metrics and the access log alike.
        let now = Instant::now();
        let total = now - exchange.started;
        let backend = exchange.backend_started.map(|t| now - t);
        shard.metrics.request(status, total, backend);
        log_exchange(shard, info, &exchange, status, total, backend);
    }
    next
}

/// Copies what the access log needs out of the head.
fn log_fields(head_bytes: &[u8], head: &RequestHead) -> LogFields {
    let mut request_line = Vec::with_capacity(64);
    request_line.extend_from_slice(head.method_bytes(head_bytes));
    request_line.push(b' ');
    request_line.extend_from_slice(head.target(head_bytes));
    request_line.push(b' ');
    request_line.extend_from_slice(head.version.as_str().as_bytes());
    LogFields {
        started: std::time::SystemTime::now(),
        request_line,
        referer: head
            .header(head_bytes, "referer")
            .unwrap_or_default()
            .to_vec(),
        user_agent: head
            .header(head_bytes, "user-agent")
            .unwrap_or_default()
            .to_vec(),
    }
}

/// One access log line for a request that reached routing and was answered.
fn log_exchange(
    shard: &Shard,
    info: &ClientInfo,
    exchange: &Exchange,
    status: u16,
    total: Duration,
    backend: Option<Duration>,
) {
    let (Some(log), Some(fields)) = (&shard.access_log, &exchange.log) else {
        return;
    };
    log.record(&Record {
        peer: info.peer.ip(),
        started: fields.started,
        request_line: &fields.request_line,
        status,
        bytes: exchange.bytes,
        referer: &fields.referer,
        user_agent: &fields.user_agent,
        identifier: exchange.identifier.as_deref().unwrap_or(""),
        total,
        backend: backend.unwrap_or_default(),
    });
}

/// What route conditions look at: the path (no query, no scheme or
/// authority) and every Cookie header value.
fn request_facts(head_bytes: &[u8], head: &RequestHead) -> RequestFacts {
    let target = head.target(head_bytes);
    let origin = match absolute_form_authority(target) {
        Some(authority) => {
            let after = authority.as_ptr() as usize - target.as_ptr() as usize + authority.len();
            &target[after..]
        }
        None => target,
    };
    let path = origin
        .split(|&b| b == b'?' || b == b'#')
        .next()
        .unwrap_or(b"");
    let path = if path.is_empty() { &b"/"[..] } else { path };
    let cookies: Vec<String> = head
        .headers
        .iter()
        .filter(|h| h.name(head_bytes).eq_ignore_ascii_case(b"cookie"))
        .map(|h| String::from_utf8_lossy(h.value(head_bytes)).into_owned())
        .collect();
    RequestFacts {
        path: crate::routing::rules::normalize_path(path),
        cookies: cookies.join("; "),
    }
}

/// Half-closes, then reads and discards what the client still sends for a
/// moment, so the response we wrote is not destroyed by a reset.
async fn linger_close<S: AsyncReadRent + AsyncWriteRent>(client: &mut Client<S>) {
    let deadline = Instant::now() + LINGER_TIME;
    // Over TLS the shutdown writes (close_notify, and whatever rustls still
    // holds): a client that stops reading must not hold the task past the
    // linger time.
    let _ = monoio::time::timeout(LINGER_TIME, client.stream.shutdown()).await;
    let mut discarded = 0;
    while discarded < LINGER_BYTES {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        client.buf.clear();
        match read_some(&mut client.stream, &mut client.buf, Some(left)).await {
            Ok(n) if n > 0 => discarded += n,
            _ => break,
        }
    }
}

/// The authority of an `http://` or `https://` request target, if it has that form.
fn absolute_form_authority(target: &[u8]) -> Option<&[u8]> {
    let lower = |n: usize| target.get(..n).map(|p| p.to_ascii_lowercase());
    let rest = if lower(7).as_deref() == Some(b"http://") {
        &target[7..]
    } else if lower(8).as_deref() == Some(b"https://") {
        &target[8..]
    } else {
        return None;
    };
    let end = rest
        .iter()
        .position(|&b| matches!(b, b'/' | b'?' | b'#'))
        .unwrap_or(rest.len());
    Some(&rest[..end])
}

#[cfg(test)]
mod tests {
    use super::absolute_form_authority;

    #[test]
    fn absolute_form_targets() {
        assert_eq!(
            absolute_form_authority(b"http://a.example:8080/x?y"),
            Some(&b"a.example:8080"[..])
        );
        assert_eq!(
            absolute_form_authority(b"HTTPS://b.example"),
            Some(&b"b.example"[..])
        );
        assert_eq!(absolute_form_authority(b"/path"), None);
        assert_eq!(absolute_form_authority(b"*"), None);
    }
}

#[cfg(test)]
mod size_tests {
    use super::*;
    use monoio::net::TcpStream;
    use std::sync::Arc;

    /// What an idle keep-alive connection costs is mostly its task's future;
    /// keep it small (the request's state is boxed separately).
    #[test]
    fn connection_task_future_stays_small() {
        let config = Arc::new(crate::config::from_toml("", std::path::Path::new(".")).unwrap());
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let mut rt = monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
            .enable_timer()
            .build()
            .unwrap();
        let size = rt.block_on(async move {
            let shard = Rc::new(Shard::new(
                0,
                config,
                Arc::default(),
                crate::shard::DriverKind::probe(),
                None,
            ));
            let stream = TcpStream::connect_addr(addr).await.unwrap();
            let info = ClientInfo {
                peer: addr,
                local_port: addr.port(),
                proto: ClientProto::Http,
            };
            let raw = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
            let head = crate::http::request::parse_request(raw, &shard.config.limits)
                .unwrap()
                .unwrap();
            let mut client = Client {
                stream,
                buf: BytesMut::from(&raw[..]),
                small_heads: true,
            };
            eprintln!(
                "read_head future: {} bytes",
                std::mem::size_of_val(&read_head(&shard, &mut client))
            );
            eprintln!(
                "handle_request future: {} bytes",
                std::mem::size_of_val(&handle_request(&shard, &mut client, &info, head))
            );
            let Client { stream, .. } = client;
            std::mem::size_of_val(&serve_client(shard, stream, info))
        });
        eprintln!("connection future: {size} bytes");
        assert!(size <= 1024, "connection future is {size} bytes");
    }
}
