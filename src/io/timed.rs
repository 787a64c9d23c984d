//! Reads and writes with an optional deadline, on buffers owned by the caller.
//! A timed-out operation's buffer stays with the cancelled op; the connection
//! is closed right after, so nothing is lost that matters.

use std::io;
use std::time::Duration;

use bytes::BytesMut;
use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};

use super::RELAY_CHUNK;

/// What went wrong moving bytes on one socket.
#[derive(Debug, thiserror::Error)]
pub enum IoFailure {
    #[error("timed out")]
    Timeout,
    #[error("{0}")]
    Io(#[from] io::Error),
}

async fn with_deadline<F: std::future::Future>(
    limit: Option<Duration>,
    fut: F,
) -> Result<F::Output, IoFailure> {
    match limit {
        Some(d) => monoio::time::timeout(d, fut)
            .await
            .map_err(|_| IoFailure::Timeout),
        None => Ok(fut.await),
    }
}

/// Reads once, appending to `buf` (growing it by up to [`RELAY_CHUNK`] if it is
/// nearly full). Returns the byte count; 0 means the peer closed.
pub async fn read_some<S: AsyncReadRent>(
    stream: &mut S,
    buf: &mut BytesMut,
    limit: Option<Duration>,
) -> Result<usize, IoFailure> {
    if buf.capacity() - buf.len() < RELAY_CHUNK / 4 {
        buf.reserve(RELAY_CHUNK);
    }
    read_into_spare(stream, buf, limit).await
}

/// Reads once into `buf`'s spare capacity as it is (a small buffer stays
/// small; one with none gets a little). Returns the byte count; 0 means the
/// peer closed.
pub async fn read_into_spare<S: AsyncReadRent>(
    stream: &mut S,
    buf: &mut BytesMut,
    limit: Option<Duration>,
) -> Result<usize, IoFailure> {
    if buf.capacity() == buf.len() {
        buf.reserve(1024);
    }
    // monoio reads at the buffer's start; a slice from `len` appends instead.
    let filled = buf.len();
    let owned = std::mem::take(buf).slice_mut(filled..);
    let (res, owned) = with_deadline(limit, stream.read(owned)).await?;
    *buf = owned.into_inner();
    Ok(res?)
}

/// Writes all of `data`.
pub async fn write_all<S: AsyncWriteRent, B: monoio::buf::IoBuf + 'static>(
    stream: &mut S,
    data: B,
    limit: Option<Duration>,
) -> Result<B, IoFailure> {
    let (res, data) = with_deadline(limit, stream.write_all(data)).await?;
    res?;
    Ok(data)
}
