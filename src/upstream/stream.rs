//! A connection to a backend: plain TCP for `http://` URLs, TLS over TCP
//! (verified, SNI = the URL's host) for `https://` ones. One type so the pool,
//! the forwarding code and the relays are written once. A plain connection
//! taken from the pool comes armed (see `armed.rs`) until its response's
//! first bytes are read with [`UpstreamStream::read_response_bytes`].

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::time::Duration;

use bytes::BytesMut;
use monoio::buf::{IoBuf, IoBufMut, IoVecBuf, IoVecBufMut};
use monoio::io::{AsyncReadRent, AsyncWriteRent, Split};
use monoio::net::TcpStream;
use monoio::BufResult;
use monoio_rustls::ClientTlsStream;

use super::armed::Armed;
use crate::io::timed::{read_some, IoFailure};

pub enum UpstreamStream {
    Plain(TcpStream),
    /// The raw fd is kept for the pool's liveness peek.
    Tls(Box<ClientTlsStream<TcpStream>>, RawFd),
    /// A pooled plain connection with a receive posted: writable, and read
    /// first through [`UpstreamStream::read_response_bytes`].
    Armed(Armed),
}

impl UpstreamStream {
    pub fn tls(stream: ClientTlsStream<TcpStream>, fd: RawFd) -> Self {
        UpstreamStream::Tls(Box::new(stream), fd)
    }

    pub fn raw_fd(&self) -> RawFd {
        match self {
            UpstreamStream::Plain(s) => s.as_raw_fd(),
            UpstreamStream::Tls(_, fd) => *fd,
            UpstreamStream::Armed(a) => a.raw_fd(),
        }
    }

    /// Whether an idle connection is still quiet: the backend sent nothing
    /// and did not close. Armed: its receive has not completed, as far as
    /// the shard has seen (events are taken in between task rounds, so one
    /// that came before the request that asks is seen). Otherwise a peek.
    pub fn is_quiet_idle(&mut self) -> bool {
        match self {
            UpstreamStream::Armed(a) => !a.received(),
            _ => crate::net::is_quiet(self.raw_fd()),
        }
    }

    /// Whether the backend answered (or closed) while a request body is
    /// still going out to it. Over TLS nothing is looked at: bytes there
    /// are records (session tickets, say), not necessarily an answer. An
    /// armed connection is also peeked: on the epoll driver a relay whose
    /// reads and writes all complete at once never lets the runtime take
    /// the event that would complete the receive, and until the receive is
    /// polled with that event the bytes wait in the socket.
    pub fn answered_early(&mut self) -> bool {
        match self {
            UpstreamStream::Plain(s) => !crate::net::is_quiet(s.as_raw_fd()),
            UpstreamStream::Tls(..) => false,
            UpstreamStream::Armed(a) => a.received() || !crate::net::is_quiet(a.raw_fd()),
        }
    }

    /// Reads once, appending to `buf`, within `limit`: the first read of a
    /// response. An armed connection hands over its posted receive (the
    /// buffer it filled becomes `buf` when that is empty) and is plain TCP
    /// again afterwards.
    pub async fn read_response_bytes(
        &mut self,
        buf: &mut BytesMut,
        limit: Option<Duration>,
    ) -> Result<usize, IoFailure> {
        let UpstreamStream::Armed(armed) = self else {
            return read_some(self, buf, limit).await;
        };
        let (stream, res, got) = armed.finish(limit).await?;
        *self = UpstreamStream::Plain(stream);
        let n = res?;
        if buf.is_empty() {
            *buf = got;
        } else {
            buf.extend_from_slice(&got);
        }
        Ok(n)
    }
}

/// A read or write an armed connection cannot take (reads go through
/// [`UpstreamStream::read_response_bytes`] first).
fn not_while_armed<T>(buf: T) -> BufResult<usize, T> {
    let e = io::Error::other("an armed upstream connection must be read as a response first");
    (Err(e), buf)
}

// SAFETY: Split marks streams whose read and write halves may be driven
// concurrently. Every variant is such a stream: monoio's TcpStream,
// monoio-rustls' stream over it (which implements Split for Split IO), and
// an armed connection, whose reads fail at once and whose writes go to
// monoio's own write half.
unsafe impl Split for UpstreamStream {}

impl AsyncReadRent for UpstreamStream {
    async fn read<T: IoBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            UpstreamStream::Plain(s) => s.read(buf).await,
            UpstreamStream::Tls(s, _) => s.read(buf).await,
            UpstreamStream::Armed(_) => not_while_armed(buf),
        }
    }

    async fn readv<T: IoVecBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            UpstreamStream::Plain(s) => s.readv(buf).await,
            UpstreamStream::Tls(s, _) => s.readv(buf).await,
            UpstreamStream::Armed(_) => not_while_armed(buf),
        }
    }
}

impl AsyncWriteRent for UpstreamStream {
    async fn write<T: IoBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            UpstreamStream::Plain(s) => s.write(buf).await,
            UpstreamStream::Tls(s, _) => s.write(buf).await,
            UpstreamStream::Armed(a) => match a.writer() {
                Ok(w) => w.write(buf).await,
                Err(e) => (Err(e), buf),
            },
        }
    }

    async fn writev<T: IoVecBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            UpstreamStream::Plain(s) => s.writev(buf).await,
            UpstreamStream::Tls(s, _) => s.writev(buf).await,
            UpstreamStream::Armed(a) => match a.writer() {
                Ok(w) => w.writev(buf).await,
                Err(e) => (Err(e), buf),
            },
        }
    }

    async fn flush(&mut self) -> io::Result<()> {
        match self {
            UpstreamStream::Plain(s) => s.flush().await,
            UpstreamStream::Tls(s, _) => s.flush().await,
            UpstreamStream::Armed(a) => a.writer()?.flush().await,
        }
    }

    async fn shutdown(&mut self) -> io::Result<()> {
        match self {
            UpstreamStream::Plain(s) => s.shutdown().await,
            UpstreamStream::Tls(s, _) => s.shutdown().await,
            UpstreamStream::Armed(a) => a.writer()?.shutdown().await,
        }
    }
}
