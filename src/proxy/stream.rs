//! The two kinds of client connection, plain TCP and TLS over TCP, behind one
//! trait, so the session code is written once. The differences it captures:
//! whether the connection can wait for readability without a buffer, and
//! whether a tunnel may splice the raw socket.

use std::future::Future;
use std::io;

use monoio::io::{AsyncReadRent, AsyncWriteRent, Split};
use monoio::net::TcpStream;

use crate::tls::stream::TlsStream;

pub trait ClientStream: AsyncReadRent + AsyncWriteRent + Split + Sized + 'static {
    /// Resolves when a read would find bytes, without holding a read buffer.
    fn wait_readable(&self) -> impl Future<Output = io::Result<()>>;
    /// The plain socket when no TLS layer sits in between (tunnels splice it).
    fn into_plain_tcp(self) -> Result<TcpStream, Self>;
}

impl ClientStream for TcpStream {
    fn wait_readable(&self) -> impl Future<Output = io::Result<()>> {
        self.readable(true)
    }

    fn into_plain_tcp(self) -> Result<TcpStream, Self> {
        Ok(self)
    }
}

impl ClientStream for TlsStream {
    /// rustls may already hold decrypted bytes that no socket readiness would
    /// announce, so a TLS connection reads directly (and keeps its buffer).
    fn wait_readable(&self) -> impl Future<Output = io::Result<()>> {
        std::future::ready(Ok(()))
    }

    fn into_plain_tcp(self) -> Result<TcpStream, Self> {
        Err(self)
    }
}
