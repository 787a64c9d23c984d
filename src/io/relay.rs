//! Tunnel relays: move one direction of a byte stream until its source ends,
//! then half-close the destination. Two flavours: `splice` through a pipe (the
//! bytes never enter user space; io_uring only) and a bounded user-space copy
//! that works on any stream (epoll, and TLS later).

use std::cell::Cell;
use std::io;
use std::time::Instant;

use bytes::BytesMut;
use monoio::io::as_fd::{AsReadFd, AsWriteFd};
use monoio::io::splice::{SpliceDestination, SpliceSource};
use monoio::io::{AsyncReadRent, AsyncWriteRent};

use super::timed::{read_some, write_all, IoFailure};

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

/// Copies `src` to `dst` through one bounded buffer, starting with `first`
/// (bytes that arrived with the handshake), then half-closes `dst`.
pub async fn copy_until_eof<R: AsyncReadRent, W: AsyncWriteRent>(
    src: &mut R,
    dst: &mut W,
    first: BytesMut,
    activity: &Activity,
) -> io::Result<u64> {
    let mut buf = first;
    let mut total = 0u64;
    loop {
        if !buf.is_empty() {
            let n = buf.len();
            let chunk = buf.split_to(n);
            write_all(dst, chunk, None).await.map_err(plain)?;
            total += n as u64;
            activity.touch();
        }
        if read_some(src, &mut buf, None).await.map_err(plain)? == 0 {
            break;
        }
        activity.touch();
    }
    dst.shutdown().await?;
    Ok(total)
}

/// Splices `src` to `dst` through a pipe, after writing `first` normally,
/// then half-closes `dst`.
pub async fn splice_until_eof<R, W>(
    src: &mut R,
    dst: &mut W,
    first: BytesMut,
    activity: &Activity,
) -> io::Result<u64>
where
    R: AsReadFd,
    W: AsWriteFd + AsyncWriteRent,
{
    let mut total = first.len() as u64;
    if !first.is_empty() {
        write_all(dst, first, None).await.map_err(plain)?;
        activity.touch();
    }
    let (mut pipe_read, mut pipe_write) = monoio::net::unix::new_pipe()?;
    loop {
        let n = src.splice_to_pipe(&mut pipe_write, PIPE_CHUNK).await?;
        if n == 0 {
            break;
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
    dst.shutdown().await?;
    Ok(total)
}
