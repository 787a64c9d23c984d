//! The accept loop of one listener on one shard: at most
//! `server.max_connections` open client connections per shard (the rest wait
//! in the kernel's backlog), and a pause instead of a busy loop when the
//! process runs out of file descriptors.

use std::rc::Rc;
use std::time::Duration;

use local_sync::semaphore::{OwnedSemaphorePermit, Semaphore};
use monoio::io::Canceller;
use monoio::net::{TcpListener, TcpStream};

use crate::net::proxy_protocol;
use crate::observe::metrics;
use crate::proxy::session::{serve_client, ClientInfo, ClientProto};
use crate::shard::Shard;
use crate::tls::accept::TlsListener;
use crate::tls::HANDSHAKE_TIMEOUT;
use crate::{log_debug, log_error, log_warn};

/// Pause after EMFILE/ENFILE/ENOBUFS/ENOMEM before accepting again.
const RESOURCE_BACKOFF: Duration = Duration::from_millis(100);

/// How a listener's connections begin.
#[derive(Clone)]
pub struct Arrival {
    /// Terminate TLS on this listener's connections.
    pub tls: Option<Rc<TlsListener>>,
    /// Connections start with a PROXY protocol header (before any TLS).
    pub proxy_protocol: bool,
}

pub async fn accept_loop(
    shard: Rc<Shard>,
    listener: TcpListener,
    how: Arrival,
    slots: Rc<Semaphore>,
) {
    let local_port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
    let mut warned_resources = false;
    loop {
        // A drain stops the loop wherever it waits; returning drops (and so
        // closes) this shard's copy of the listener. The socket itself lives
        // on in the master and the next worker, or closes with the master.
        let permit = monoio::select! {
            permit = slots.clone().acquire_owned() => permit,
            _ = shard.drain.started() => return,
        };
        let Ok(permit) = permit else {
            return;
        };
        let canceller = Canceller::new();
        let mut accept = std::pin::pin!(listener.cancelable_accept(canceller.handle()));
        let drained = monoio::select! {
            accepted = &mut accept => Some(accepted),
            _ = shard.drain.started() => None,
        };
        // On a drain the accept is cancelled and then awaited: a connection
        // the kernel handed to it in the meantime (the listening socket is
        // shared with the next worker) is served, not dropped unanswered.
        let (accepted, last) = match drained {
            Some(accepted) => (accepted, false),
            None => {
                let _ = canceller.cancel();
                (accept.await, true)
            }
        };
        if last && accepted.is_err() {
            return;
        }
        match accepted {
            Ok((stream, peer)) => {
                warned_resources = false;
                let _ = stream.set_nodelay(true);
                metrics::add(&shard.metrics.connections, 1);
                let info = ClientInfo {
                    peer,
                    local_port,
                    proto: ClientProto::Http,
                };
                monoio::spawn(serve_connection(
                    shard.clone(),
                    stream,
                    info,
                    how.clone(),
                    permit,
                ));
            }
            Err(e) if crate::net::is_local_shortage(&e) => {
                if !warned_resources {
                    log_warn!("accept: {e}; pausing accepts (raise the fd limit?)");
                    warned_resources = true;
                }
                monoio::time::sleep(RESOURCE_BACKOFF).await;
            }
            Err(e) if is_per_connection(&e) => {}
            Err(e) => {
                log_error!("accept: {e}");
                monoio::time::sleep(RESOURCE_BACKOFF).await;
            }
        }
        if last {
            return;
        }
    }
}

/// One accepted connection's task, holding its `max_connections` permit.
async fn serve_connection(
    shard: Rc<Shard>,
    stream: TcpStream,
    mut info: ClientInfo,
    how: Arrival,
    permit: OwnedSemaphorePermit,
) {
    let header_expected =
        how.proxy_protocol && shard.config.proxy_protocol.expected_from(info.peer.ip());
    // Boxed: the header's read is rare and must not grow every task.
    let admitted = !header_expected || Box::pin(proxy_header(&shard, &stream, &mut info)).await;
    if admitted {
        match how.tls {
            None => serve_client(shard.clone(), stream, info).await,
            // Boxed: the handshake's state is several KiB, and inline it would
            // make every plain connection's task (what an idle keep-alive
            // connection costs) as large as a TLS one's.
            Some(tls) => Box::pin(serve_tls(&shard, stream, &tls, info)).await,
        }
    }
    metrics::sub(&shard.metrics.connections, 1);
    drop(permit);
}

/// Reads the connection's PROXY header within `client_header_timeout` and
/// makes the client it names (if any: not for UNKNOWN and LOCAL) the
/// connection's. False: no valid header in time; the connection is closed.
async fn proxy_header(shard: &Shard, stream: &TcpStream, info: &mut ClientInfo) -> bool {
    let read = proxy_protocol::read(stream);
    let failure = match monoio::time::timeout(shard.config.client_header_timeout, read).await {
        Ok(Ok(relayed)) => {
            info.relayed(relayed);
            return true;
        }
        Ok(Err(e)) => e.to_string(),
        Err(_) => "timed out".to_string(),
    };
    metrics::add(&shard.metrics.proxy_protocol_refused, 1);
    log_debug!("PROXY header from {}: {failure}", info.peer);
    false
}

/// Completes the TLS handshake and serves the connection. A failed or slow
/// handshake (plaintext on the TLS port, an unknown name) just closes it.
async fn serve_tls(shard: &Rc<Shard>, stream: TcpStream, tls: &TlsListener, info: ClientInfo) {
    let handshake = crate::tls::accept::accept(stream, tls, shard.redis_certs());
    match monoio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
        Ok(Ok(tls_stream)) => {
            metrics::add(&shard.metrics.tls_handshakes, 1);
            let info = ClientInfo {
                proto: ClientProto::Https,
                ..info
            };
            serve_client(shard.clone(), tls_stream, info).await
        }
        Ok(Err(e)) => {
            metrics::add(&shard.metrics.tls_failures, 1);
            log_debug!("TLS handshake from {} failed: {e}", info.peer)
        }
        Err(_) => {
            metrics::add(&shard.metrics.tls_failures, 1);
            log_debug!("TLS handshake from {} timed out", info.peer)
        }
    }
}

/// Errors about one aborted connection, not the listener.
fn is_per_connection(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ECONNABORTED | libc::ECONNRESET | libc::EPROTO | libc::EPERM | libc::EINTR)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An idle keep-alive connection costs mostly its task: the accept
    /// loop's task for one must stay as small as the session's own future
    /// (a TLS handshake inlined in it once made it 9 KB larger).
    #[test]
    fn a_connection_task_stays_small() {
        let size = crate::shard::testing::with_connection(|shard, stream, addr| async move {
            let permit = Rc::new(Semaphore::new(1)).acquire_owned().await.unwrap();
            let info = ClientInfo {
                peer: addr,
                local_port: addr.port(),
                proto: ClientProto::Http,
            };
            let how = Arrival {
                tls: None,
                proxy_protocol: false,
            };
            std::mem::size_of_val(&serve_connection(shard, stream, info, how, permit))
        });
        eprintln!("connection task: {size} bytes");
        assert!(size <= 1024 + 128, "a connection's task is {size} bytes");
    }
}
