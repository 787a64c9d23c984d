//! One client connection: read a head, answer it (locally or through a
//! backend), repeat while keep-alive holds. Pipelined requests are answered in
//! order because each is handled to completion before the next head is parsed
//! from the bytes already buffered.

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use monoio::io::{AsyncReadRent, AsyncWriteRent};

use super::client::{Client, HeadRead};
use super::error::ProxyError;
use super::exchange::{Exchange, LogFields, Next, RequestId};
use super::forward::forward;
use super::reply::{refuse, reply_error, reply_ping};
use super::stream::ClientStream;
use super::tunnel;
use crate::http::request::{Method, RequestHead};
use crate::http::rewrite::{upstream_request, ClientSide, RequestRewrite};
use crate::observe::access_log::Record;
use crate::observe::metrics;
use crate::routing::candidates::normalize_host;
use crate::routing::rules::RequestFacts;
use crate::shard::Shard;

/// What the connection knows about where it came from.
#[derive(Debug, Clone, Copy)]
pub struct ClientInfo {
    pub peer: SocketAddr,
    pub local_port: u16,
    pub proto: ClientProto,
}

impl ClientInfo {
    /// The client as a PROXY protocol header names it: its address, and
    /// the port it connected to at the balancer.
    pub fn relayed(&mut self, relayed: Option<crate::net::proxy_protocol::Relayed>) {
        if let Some(r) = relayed {
            // `::ffff:192.0.2.1` (a v1 TCP6 line, a v2 IPv6 block) is the
            // IPv4 client it names, as for a dual-stack listener's peers.
            self.peer = SocketAddr::new(r.source.ip().to_canonical(), r.source.port());
            self.local_port = r.destination.port();
        }
    }
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

/// Serves one accepted connection until it closes.
pub async fn serve_client<S: ClientStream>(shard: Rc<Shard>, stream: S, info: ClientInfo) {
    let mut client = Client::new(stream);
    loop {
        if client.is_idle() && !client.wait_idle(&shard).await {
            return;
        }
        // Every phase but the idle wait is boxed, so the task itself stays
        // as small as an idle connection needs. The usual head arrived whole
        // with the idle read and is parsed here, without boxing a read.
        let head = match client.buffered_head(&shard) {
            Some(found) => found,
            None => Box::pin(client.read_head(&shard)).await,
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
            Next::CloseLinger => return Box::pin(client.linger_close()).await,
            Next::Tunnel(upgraded) => {
                let (stream, buf) = client.into_parts();
                metrics::add(&shard.metrics.tunnels, 1);
                Box::pin(tunnel::run(&shard, stream, buf, *upgraded)).await;
                metrics::sub(&shard.metrics.tunnels, 1);
                return;
            }
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
    if let Some(name) = &shard.config.request_id_header {
        let head_bytes = client.head_bytes();
        let sent = head
            .headers
            .iter()
            .filter(|h| h.name(head_bytes).eq_ignore_ascii_case(name.as_bytes()))
            .map(|h| h.value(head_bytes));
        exchange.request_id = Some(RequestId::new(name, sent, &shard.request_ids));
    }
    let host = match head.host(client.head_bytes()) {
        None => Err(ProxyError::MissingHost),
        Some(raw) => normalize_host(raw).ok_or(ProxyError::BadHost),
    };
    // RFC 9112 section 3.2.2: an absolute-form target's authority overrides
    // Host. Routing on one while the backend honours the other would split
    // the request between two sites, so they must name the same host.
    let host = host.and_then(
        |h| match absolute_form_authority(head.target(client.head_bytes())) {
            Some(authority) if normalize_host(authority).as_deref() != Some(h.as_str()) => {
                Err(ProxyError::BadHost)
            }
            _ => Ok(h),
        },
    );
    if head.method == Method::Connect {
        client.finish_head();
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
            client.finish_head();
            return reply_error(shard, client, &mut exchange, e, None).await;
        }
    };
    if host == "__ping__" {
        client.finish_head();
        return reply_ping(shard, client, &exchange).await;
    }
    let host_hash = shard.route_cache.hash(&host);
    if shard.config.routing.routes.is_empty() {
        // The head is rewritten meanwhile: its cached route arrives from
        // memory while the CPU has work (see `routing::host_table`).
        shard.route_cache.prefetch(0, host_hash);
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
        extra: exchange.request_id.as_ref().map_or(b"", |id| id.line()),
    };
    upstream_request(client.head_bytes(), &head, &side, how, &mut up_head);
    if shard.access_log.is_some() {
        exchange.log = Some(Box::new(log_fields(client.head_bytes(), &head)));
    }
    let facts = if shard.config.routing.routes.is_empty() {
        RequestFacts::default()
    } else {
        request_facts(client.head_bytes(), &head)
    };
    client.finish_head();
    let next = forward(
        shard,
        client,
        &mut exchange,
        up_head,
        host,
        host_hash,
        facts,
    )
    .await;
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
        request_id: exchange.request_id.as_ref().map(|id| id.value()),
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

    /// What an idle keep-alive connection costs is mostly its task's future;
    /// keep it small (the request's state is boxed separately).
    #[test]
    fn connection_task_future_stays_small() {
        let size = crate::shard::testing::with_connection(|shard, stream, addr| async move {
            let info = ClientInfo {
                peer: addr,
                local_port: addr.port(),
                proto: ClientProto::Http,
            };
            let raw = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
            let head = crate::http::request::parse_request(raw, &shard.config.limits)
                .unwrap()
                .unwrap();
            let mut client = Client::new(stream);
            eprintln!(
                "read_head future: {} bytes",
                std::mem::size_of_val(&client.read_head(&shard))
            );
            eprintln!(
                "handle_request future: {} bytes",
                std::mem::size_of_val(&handle_request(&shard, &mut client, &info, head))
            );
            let (stream, _) = client.into_parts();
            std::mem::size_of_val(&serve_client(shard, stream, info))
        });
        eprintln!("connection future: {size} bytes");
        assert!(size <= 1024, "connection future is {size} bytes");
    }
}
