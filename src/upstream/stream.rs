//! A connection to a backend: plain TCP for `http://` URLs, TLS over TCP
//! (verified, SNI = the URL's host) for `https://` ones. One type so the pool,
//! the forwarding code and the relays are written once.

use std::io;
use std::os::fd::{AsRawFd, RawFd};

use monoio::buf::{IoBuf, IoBufMut, IoVecBuf, IoVecBufMut};
use monoio::io::{AsyncReadRent, AsyncWriteRent, Split};
use monoio::net::TcpStream;
use monoio::BufResult;
use monoio_rustls::ClientTlsStream;

pub enum UpstreamStream {
    Plain(TcpStream),
    /// The raw fd is kept for the pool's liveness peek.
    Tls(Box<ClientTlsStream<TcpStream>>, RawFd),
}

impl UpstreamStream {
    pub fn tls(stream: ClientTlsStream<TcpStream>, fd: RawFd) -> Self {
        UpstreamStream::Tls(Box::new(stream), fd)
    }

    /// The socket of a plain TCP connection (`None` over TLS, where bytes
    /// to read are not necessarily application data).
    pub fn plain_fd(&self) -> Option<RawFd> {
        match self {
            UpstreamStream::Plain(s) => Some(s.as_raw_fd()),
            UpstreamStream::Tls(..) => None,
        }
    }

    pub fn raw_fd(&self) -> RawFd {
        match self {
            UpstreamStream::Plain(s) => s.as_raw_fd(),
            UpstreamStream::Tls(_, fd) => *fd,
        }
    }
}

// SAFETY: Split marks streams whose read and write halves may be driven
// concurrently. Both variants are such streams (monoio's TcpStream, and
// monoio-rustls' stream over it, which implements Split for Split IO).
unsafe impl Split for UpstreamStream {}

// The TLS operations are boxed: monoio-rustls's futures are several hundred
// bytes, and inline they would size (and be copied with) every plain
// connection's read and write too. Next to a TLS record's work, the
// allocation is noise.

impl AsyncReadRent for UpstreamStream {
    async fn read<T: IoBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            UpstreamStream::Plain(s) => s.read(buf).await,
            UpstreamStream::Tls(s, _) => Box::pin(s.read(buf)).await,
        }
    }

    async fn readv<T: IoVecBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            UpstreamStream::Plain(s) => s.readv(buf).await,
            UpstreamStream::Tls(s, _) => Box::pin(s.readv(buf)).await,
        }
    }
}

impl AsyncWriteRent for UpstreamStream {
    async fn write<T: IoBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            UpstreamStream::Plain(s) => s.write(buf).await,
            UpstreamStream::Tls(s, _) => Box::pin(s.write(buf)).await,
        }
    }

    async fn writev<T: IoVecBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            UpstreamStream::Plain(s) => s.writev(buf).await,
            UpstreamStream::Tls(s, _) => Box::pin(s.writev(buf)).await,
        }
    }

    async fn flush(&mut self) -> io::Result<()> {
        match self {
            UpstreamStream::Plain(s) => s.flush().await,
            UpstreamStream::Tls(s, _) => Box::pin(s.flush()).await,
        }
    }

    async fn shutdown(&mut self) -> io::Result<()> {
        match self {
            UpstreamStream::Plain(s) => s.shutdown().await,
            UpstreamStream::Tls(s, _) => Box::pin(s.shutdown()).await,
        }
    }
}
