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
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};

use super::timed::read_spare;
use super::RELAY_CHUNK;
use crate::log_debug;

/// Bytes moved per splice call; a pipe holds 64 KiB by default.
const PIPE_CHUNK: u32 = 64 * 1024;

/// When bytes last moved in either direction, for the idle timeout.
pub struct Activity(Cell<Instant>);

impl Activity {
    pub fn new() -> Activity {
        Activity(Cell::new(crate::clock::now()))
    }

    pub fn touch(&self) {
        self.0.set(crate::clock::now());
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

/// A read at least this large means the source sends faster than single
/// copies drain it: a bulk transfer, which splicing moves more cheaply. Below
/// it (chat-sized WebSocket messages) a copy costs less than two splices
/// through a pipe: on the benchmark box, 128-byte echoes ran 20-40 % faster
/// copied than spliced.
pub const BULK_READ: usize = 16 * 1024;

/// What a direction reads into while its traffic comes in small pieces. A
/// quiet tunnel's pending read holds this buffer, one per direction, so it is
/// what an idle tunnel pins; a read that fills it gets a relay-sized one next.
const SMALL_READ: usize = 2 * 1024;

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
    // Whether the last read filled its buffer: more is probably queued.
    let mut filled = false;
    loop {
        let pending = buf.len();
        if pending > 0 {
            let chunk = buf.split_to(pending);
            // No deadline (the tunnel's idle watchdog is the only timer), so
            // not `timed::write_all`, whose timed variant would make every
            // direction's future some 700 bytes larger.
            dst.write_all(chunk).await.0?;
            total += pending as u64;
            activity.touch();
            if pending >= bulk {
                return Ok((total, Stop::Bulk));
            }
        }
        size_next_read(&mut buf, filled);
        let room = buf.capacity();
        let n = read_spare(src, &mut buf).await?;
        if n == 0 {
            return Ok((total, Stop::Eof));
        }
        filled = n == room;
        activity.touch();
    }
}

/// Gives the empty `buf` room for the next read: [`RELAY_CHUNK`] after a read
/// that filled its buffer, else [`SMALL_READ`]. A larger buffer is dropped
/// rather than kept waiting; a smaller one is grown (reusing its allocation
/// once the bytes written from it are gone).
fn size_next_read(buf: &mut BytesMut, filled: bool) {
    debug_assert!(buf.is_empty());
    let want = if filled { RELAY_CHUNK } else { SMALL_READ };
    if buf.capacity() > 2 * want {
        *buf = BytesMut::with_capacity(want);
    } else if buf.capacity() < want / 2 {
        buf.reserve(want);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quiet_direction_waits_on_a_small_buffer() {
        // The handshake's leftover buffer may be large: it is not kept.
        let mut buf = BytesMut::with_capacity(64 * 1024);
        size_next_read(&mut buf, false);
        assert!((SMALL_READ..2 * SMALL_READ).contains(&buf.capacity()));
        // After a relay-sized read that did not fill, back to small.
        let mut buf = BytesMut::with_capacity(RELAY_CHUNK);
        size_next_read(&mut buf, false);
        assert!(buf.capacity() < 2 * SMALL_READ, "{}", buf.capacity());
    }

    #[test]
    fn a_read_that_filled_its_buffer_gets_a_relay_sized_one() {
        let mut buf = BytesMut::with_capacity(SMALL_READ);
        size_next_read(&mut buf, true);
        assert!(buf.capacity() >= RELAY_CHUNK, "{}", buf.capacity());
        // A small buffer whose tail ran low is grown back to a small read.
        let mut buf = BytesMut::with_capacity(SMALL_READ);
        buf.extend_from_slice(&[0; SMALL_READ - 100]);
        drop(buf.split());
        assert!(buf.capacity() < SMALL_READ / 2);
        size_next_read(&mut buf, false);
        assert!(buf.capacity() >= SMALL_READ, "{}", buf.capacity());
    }
}
