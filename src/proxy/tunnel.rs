//! WebSocket tunnels: after a backend's real `101 Switching Protocols`, bytes
//! flow both ways until both sides have closed. Each direction half-closes its
//! destination when its source ends, so a FIN is passed on while the other
//! direction keeps flowing; an error on either side ends the whole tunnel; the
//! idle timeout ends a tunnel in which no byte moved for that long.

use std::future::Future;
use std::pin::pin;
use std::task::Poll;

use bytes::BytesMut;
use monoio::io::{AsyncReadRent, AsyncWriteRent, Split, Splitable};
use monoio::net::TcpStream;

use super::stream::ClientStream;
use crate::io::relay::{copy_then_splice, copy_until_eof, Activity, BULK_READ};
use crate::log_debug;
use crate::shard::Shard;
use crate::upstream::stream::UpstreamStream;

/// The upstream side of a switched connection.
pub struct Upgraded {
    pub upstream: UpstreamStream,
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
pub async fn run<S: ClientStream>(
    shard: &Shard,
    client: S,
    client_leftover: BytesMut,
    up: Upgraded,
) {
    let end = relay(shard, client, client_leftover, up).await;
    log_debug!("tunnel ended: {end:?}");
    // Dropping the halves closes both sockets; an in-flight op is cancelled
    // first, which is safe because nothing is reused afterwards.
}

/// Picks the relay and runs it. Splice needs io_uring's splice op and two
/// plain TCP ends; otherwise the tunnel copies all the way. Each variant is
/// boxed on its own, so a tunnel's allocation is the size of the variant it
/// runs, not of the largest one.
async fn relay<S: ClientStream>(
    shard: &Shard,
    mut client: S,
    client_leftover: BytesMut,
    up: Upgraded,
) -> End {
    let io_uring = shard.can_splice();
    let upstream = match up.upstream {
        UpstreamStream::Plain(upstream) if io_uring => match client.into_plain_tcp() {
            Ok(tcp) => {
                let tunnel = splice_tunnel(shard, tcp, client_leftover, upstream, up.leftover);
                return Box::pin(tunnel).await;
            }
            Err(tls) => {
                client = tls;
                UpstreamStream::Plain(upstream)
            }
        },
        upstream => upstream,
    };
    let tunnel = copy_tunnel(shard, client, client_leftover, upstream, up.leftover);
    Box::pin(tunnel).await
}

/// Both directions copy until one sees a bulk transfer, which it then splices.
async fn splice_tunnel(
    shard: &Shard,
    client: TcpStream,
    client_leftover: BytesMut,
    upstream: TcpStream,
    upstream_leftover: BytesMut,
) -> End {
    log_debug!("tunnel opened via copy, splice for bulk");
    let activity = Activity::new();
    let (mut client_read, mut client_write) = client.into_split();
    let (mut up_read, mut up_write) = upstream.into_split();
    let to_backend = copy_then_splice(
        &mut client_read,
        &mut up_write,
        client_leftover,
        &activity,
        BULK_READ,
    );
    let to_client = copy_then_splice(
        &mut up_read,
        &mut client_write,
        upstream_leftover,
        &activity,
        BULK_READ,
    );
    relay_both(shard, to_backend, to_client, &activity).await
}

async fn copy_tunnel<C>(
    shard: &Shard,
    client: C,
    client_leftover: BytesMut,
    upstream: UpstreamStream,
    upstream_leftover: BytesMut,
) -> End
where
    C: AsyncReadRent + AsyncWriteRent + Split,
{
    log_debug!("tunnel opened via copy only");
    let activity = Activity::new();
    let (mut client_read, mut client_write) = client.into_split();
    let (mut up_read, mut up_write) = upstream.into_split();
    let to_backend = copy_until_eof(&mut client_read, &mut up_write, client_leftover, &activity);
    let to_client = copy_until_eof(
        &mut up_read,
        &mut client_write,
        upstream_leftover,
        &activity,
    );
    relay_both(shard, to_backend, to_client, &activity).await
}

/// Drives both directions; ends when both finished, when either failed, or
/// when nothing moved for `server.websocket_idle_timeout`.
async fn relay_both<A, B, T>(shard: &Shard, a: A, b: B, activity: &Activity) -> End
where
    A: Future<Output = std::io::Result<T>>,
    B: Future<Output = std::io::Result<T>>,
{
    let mut a = pin!(a);
    let mut b = pin!(b);
    let mut watchdog = pin!(idle_watch(shard, activity));
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

/// Resolves once no byte has moved for `server.websocket_idle_timeout`; never
/// when it is off. It waits on the shard's idle table (100 ms precision) rather
/// than a monoio timer, which would add 640 bytes to every tunnel.
async fn idle_watch(shard: &Shard, activity: &Activity) {
    let Some(limit) = shard.config.websocket_idle_timeout else {
        return std::future::pending().await;
    };
    loop {
        // `last` is on the coarse clock, ahead of the precise one: checked
        // against the precise one, the tunnel is never closed early.
        let deadline = activity.last() + limit;
        let now = std::time::Instant::now();
        if now >= deadline {
            return;
        }
        shard.idle.deadline(Some(deadline - now)).await;
    }
}
