//! Reads and writes with an optional deadline, on buffers owned by the caller.
//! A timed-out operation's buffer stays with the cancelled op; the connection
//! is closed right after, so nothing is lost that matters.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::BytesMut;
use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRent};

use super::RELAY_CHUNK;

/// What went wrong moving bytes on one socket.
#[derive(Debug, thiserror::Error)]
pub enum IoFailure {
    #[error("timed out")]
    Timeout,
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// `fut`, bounded by `limit` if there is one. A plain enum future rather
/// than an `async fn`: the generator of an async fn would keep both the
/// argument and the `Timeout` it is moved into, doubling the size of every
/// pending read, and so of every idle connection's task.
pub fn with_deadline<F: Future>(limit: Option<Duration>, fut: F) -> Deadline<F> {
    match limit {
        Some(d) => Deadline::Timed(crate::clock::timeout(d, fut)),
        None => Deadline::Untimed(fut),
    }
}

// The timed variant is large because monoio's `Sleep` is (cache-padded timer
// state, about 600 bytes); boxing it would allocate per operation, and the
// untimed variant is the rare one.
#[allow(clippy::large_enum_variant)]
pub enum Deadline<F> {
    Timed(monoio::time::Timeout<F>),
    Untimed(F),
}

impl<F: Future> Future for Deadline<F> {
    type Output = Result<F::Output, IoFailure>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // SAFETY: structural pinning: the inner future is never moved out of
        // the enum while pinned, and the variant never changes after creation.
        unsafe {
            match self.get_unchecked_mut() {
                Deadline::Timed(t) => Pin::new_unchecked(t)
                    .poll(cx)
                    .map(|r| r.map_err(|_| IoFailure::Timeout)),
                Deadline::Untimed(f) => Pin::new_unchecked(f).poll(cx).map(Ok),
            }
        }
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
    Ok(with_deadline(limit, read_spare(stream, buf)).await??)
}

/// [`read_into_spare`] without a deadline, for callers that bound the wait
/// themselves (and whose futures should not carry a timer). If the read is
/// dropped before it completes, `buf` is left empty.
pub async fn read_spare<S: AsyncReadRent>(stream: &mut S, buf: &mut BytesMut) -> io::Result<usize> {
    if buf.capacity() == buf.len() {
        buf.reserve(1024);
    }
    // monoio reads at the buffer's start; a slice from `len` appends instead.
    let filled = buf.len();
    let owned = std::mem::take(buf).slice_mut(filled..);
    let (res, owned) = stream.read(owned).await;
    *buf = owned.into_inner();
    res
}

/// Writes all of `data`.
pub async fn write_all<S: AsyncWriteRent, B: monoio::buf::IoBuf + 'static>(
    stream: &mut S,
    data: B,
    limit: Option<Duration>,
) -> Result<B, IoFailure> {
    write_all_telling(stream, data, limit)
        .await
        .map_err(|failed| failed.failure)
}

/// A write that failed, and whether any of its bytes went out first.
pub struct WriteFailed {
    pub failure: IoFailure,
    pub sent_some: bool,
}

/// [`write_all`], telling on failure whether part of `data` went out: a
/// request nothing of which reached a backend may be sent elsewhere, one
/// that went out in part may be running there.
pub async fn write_all_telling<S: AsyncWriteRent, B: monoio::buf::IoBuf + 'static>(
    stream: &mut S,
    data: B,
    limit: Option<Duration>,
) -> Result<B, WriteFailed> {
    let sent = std::cell::Cell::new(0);
    let writing = async {
        let len = data.bytes_init();
        let mut buf = data;
        while sent.get() < len {
            let (res, slice) = stream.write(buf.slice(sent.get()..)).await;
            buf = slice.into_inner();
            match res {
                Ok(0) => return Err(io::Error::from(io::ErrorKind::WriteZero)),
                Ok(n) => sent.set(sent.get() + n),
                Err(e) => return Err(e),
            }
        }
        Ok(buf)
    };
    let failure = match with_deadline(limit, writing).await {
        Ok(Ok(buf)) => return Ok(buf),
        Ok(Err(e)) => IoFailure::Io(e),
        Err(timeout) => timeout,
    };
    Err(WriteFailed {
        failure,
        sent_some: sent.get() > 0,
    })
}
