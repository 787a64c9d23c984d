//! Tunnel relays: move one direction of a byte stream until its source ends,
//! then half-close the destination. A bounded user-space copy works on any
//! stream; on io_uring with two plain sockets a direction starts by copying
//! and moves to `splice` through a pipe (the bytes never enter user space)
//! once a read shows a bulk transfer.

use std::cell::Cell;
use std::io;
use std::time::Instant;

use bytes::BytesMut;
use monoio::io::as_fd::{AsReadFd, AsWriteFd};
use monoio::io::splice::{SpliceDestination, SpliceSource};
use monoio::io::{AsyncReadRent, AsyncWriteRent};

use super::timed::{read_some, write_all, IoFailure};
use crate::log_debug;

/// Bytes moved per splice call; a pipe holds 64 KiB by default.
const PIPE_CHUNK: u32 = 64 * 1024;

/// When bytes last moved in either direction, for the idle timeout.
pub struct Activity(Cell<Instant>);

impl Activity {
    pub fn new() -> Activity {
        Activity(Cell::new(Instant::now()))
    }

    pub fn touch(&self) {
        self.0.set(Instant::now());
    }

    pub fn last(&self) -> Instant {
        self.0.get()
    }
}

impl Default for Activity {
    fn default() -> Self {
        Activity::new()
    }
}

fn plain(e: IoFailure) -> io::Error {
    match e {
        IoFailure::Io(e) => e,
        IoFailure::Timeout => io::Error::new(io::ErrorKind::TimedOut, "timed out"),
    }
}

/// A read at least this large means the source sends faster than single
/// copies drain it: a bulk transfer, which splicing moves more cheaply. Below
/// it (chat-sized WebSocket messages) a copy costs less than two splices
/// through a pipe: on the benchmark box, 128-byte echoes ran about 20 %
/// faster copied than spliced.
pub const BULK_READ: usize = 16 * 1024;

/// Why a copy phase stopped.
#[derive(Debug, PartialEq, Eq)]
enum Stop {
    /// The source closed.
    Eof,
    /// A read of at least the bulk threshold was passed on.
    Bulk,
}

/// Copies `src` to `dst` through one bounded buffer, starting with `first`
/// (bytes that arrived with the handshake), until the source ends or a chunk
/// of at least `bulk` bytes has been written.
async fn copy_until<R: AsyncReadRent, W: AsyncWriteRent>(
    src: &mut R,
    dst: &mut W,
    first: BytesMut,
    activity: &Activity,
    bulk: usize,
) -> io::Result<(u64, Stop)> {
    let mut buf = first;
    let mut total = 0u64;
    loop {
        let pending = buf.len();
        if pending > 0 {
            let chunk = buf.split_to(pending);
            write_all(dst, chunk, None).await.map_err(plain)?;
            total += pending as u64;
            activity.touch();
            if pending >= bulk {
                return Ok((total, Stop::Bulk));
            }
        }
        if read_some(src, &mut buf, None).await.map_err(plain)? == 0 {
            return Ok((total, Stop::Eof));
        }
        activity.touch();
    }
}

/// Copies `src` to `dst` until the source ends, then half-closes `dst`.
pub async fn copy_until_eof<R: AsyncReadRent, W: AsyncWriteRent>(
    src: &mut R,
    dst: &mut W,
    first: BytesMut,
    activity: &Activity,
) -> io::Result<u64> {
    let (total, _) = copy_until(src, dst, first, activity, usize::MAX).await?;
    dst.shutdown().await?;
    Ok(total)
}

/// Copies `src` to `dst` like [`copy_until_eof`] until a read of at least
/// `bulk` bytes, then splices the rest through a pipe; half-closes `dst` when
/// the source ends.
pub async fn copy_then_splice<R, W>(
    src: &mut R,
    dst: &mut W,
    first: BytesMut,
    activity: &Activity,
    bulk: usize,
) -> io::Result<u64>
where
    R: AsReadFd + AsyncReadRent,
    W: AsWriteFd + AsyncWriteRent,
{
    let (mut total, stop) = copy_until(src, dst, first, activity, bulk).await?;
    if stop == Stop::Bulk {
        log_debug!("tunnel: a read of {bulk} bytes or more, splicing the rest of this direction");
        total += splice_until_eof(src, dst, activity).await?;
    }
    dst.shutdown().await?;
    Ok(total)
}

/// Splices `src` to `dst` through a pipe until the source ends.
async fn splice_until_eof<R: AsReadFd, W: AsWriteFd>(
    src: &mut R,
    dst: &mut W,
    activity: &Activity,
) -> io::Result<u64> {
    let mut total = 0u64;
    let (mut pipe_read, mut pipe_write) = monoio::net::unix::new_pipe()?;
    loop {
        let n = src.splice_to_pipe(&mut pipe_write, PIPE_CHUNK).await?;
        if n == 0 {
            return Ok(total);
        }
        activity.touch();
        let mut left = n;
        while left > 0 {
            let written = dst.splice_from_pipe(&mut pipe_read, left).await?;
            if written == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    "peer stopped accepting bytes",
                ));
            }
            left -= written;
        }
        total += u64::from(n);
        activity.touch();
    }
}
