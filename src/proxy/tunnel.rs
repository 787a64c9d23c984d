//! WebSocket tunnels: after a backend's real `101 Switching Protocols`, bytes
//! flow both ways until both sides have closed. Each direction half-closes its
//! destination when its source ends, so a FIN is passed on while the other
//! direction keeps flowing; an error on either side ends the whole tunnel; the
//! idle timeout ends a tunnel in which no byte moved for that long.

use std::future::Future;
use std::pin::pin;
use std::task::Poll;
use std::time::Duration;

use bytes::BytesMut;
use monoio::io::Splitable;
use monoio::net::TcpStream;

use crate::io::relay::{copy_until_eof, splice_until_eof, Activity};
use crate::log_debug;
use crate::runtime::{DriverKind, Shard};

/// The upstream side of a switched connection.
pub struct Upgraded {
    pub upstream: TcpStream,
    /// Bytes the backend sent after its 101 head (its first frames).
    pub leftover: BytesMut,
}

impl std::fmt::Debug for Upgraded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Upgraded({} bytes buffered)", self.leftover.len())
    }
}

/// How a tunnel ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// Both directions reached end of stream.
    Closed,
    /// One direction failed (reset, broken pipe).
    Error,
    Idle,
}

/// Relays between `client` and the upgraded upstream until the tunnel ends.
/// `client_leftover` holds client bytes that followed the handshake.
pub async fn run(shard: &Shard, client: TcpStream, client_leftover: BytesMut, up: Upgraded) {
    let activity = Activity::new();
    // Splice needs io_uring's splice op and two plain TCP ends; otherwise copy.
    let splice = DriverKind::probe() == DriverKind::IoUring;
    let (mut client_read, mut client_write) = client.into_split();
    let (mut up_read, mut up_write) = up.upstream.into_split();
    log_debug!(
        "tunnel opened via {}",
        if splice { "splice" } else { "copy" }
    );
    let to_backend = async {
        if splice {
            splice_until_eof(&mut client_read, &mut up_write, client_leftover, &activity).await
        } else {
            copy_until_eof(&mut client_read, &mut up_write, client_leftover, &activity).await
        }
    };
    let to_client = async {
        if splice {
            splice_until_eof(&mut up_read, &mut client_write, up.leftover, &activity).await
        } else {
            copy_until_eof(&mut up_read, &mut client_write, up.leftover, &activity).await
        }
    };
    let end = relay_both(
        to_backend,
        to_client,
        shard.config.websocket_idle_timeout,
        &activity,
    )
    .await;
    log_debug!("tunnel ended: {end:?}");
    // Dropping the halves closes both sockets; an in-flight op is cancelled
    // first, which is safe because nothing is reused afterwards.
}

/// Drives both directions; ends when both finished, when either failed, or
/// when nothing moved for `idle`.
async fn relay_both<A, B, T>(a: A, b: B, idle: Option<Duration>, activity: &Activity) -> End
where
    A: Future<Output = std::io::Result<T>>,
    B: Future<Output = std::io::Result<T>>,
{
    let mut a = pin!(a);
    let mut b = pin!(b);
    let mut watchdog = pin!(idle_watch(idle, activity));
    let mut done = [false, false];
    std::future::poll_fn(|cx| {
        if !done[0] {
            if let Poll::Ready(r) = a.as_mut().poll(cx) {
                if r.is_err() {
                    return Poll::Ready(End::Error);
                }
                done[0] = true;
            }
        }
        if !done[1] {
            if let Poll::Ready(r) = b.as_mut().poll(cx) {
                if r.is_err() {
                    return Poll::Ready(End::Error);
                }
                done[1] = true;
            }
        }
        if done == [true, true] {
            return Poll::Ready(End::Closed);
        }
        if watchdog.as_mut().poll(cx).is_ready() {
            return Poll::Ready(End::Idle);
        }
        Poll::Pending
    })
    .await
}

/// Resolves once no byte has moved for `limit`; never with `None`.
async fn idle_watch(limit: Option<Duration>, activity: &Activity) {
    let Some(limit) = limit else {
        return std::future::pending().await;
    };
    loop {
        let deadline = activity.last() + limit;
        let now = std::time::Instant::now();
        if now >= deadline {
            return;
        }
        monoio::time::sleep(deadline - now).await;
    }
}
