//! A client's TLS connection once the handshake is done: rustls over a
//! monoio `TcpStream`, with rent-style reads and writes. Ours rather than
//! monoio-rustls's stream because that one only ever writes when its owner
//! writes: what rustls queues while a read waits for plaintext (the
//! `no_renegotiation` alert that answers a TLS 1.2 client's renegotiation)
//! sat unsent until the idle timeout. Here a read sends it at once.
//!
//! A WebSocket tunnel splits the stream into a read half and a write half
//! that run concurrently on the shard. Both may flush rustls' output, so
//! one flush at a time owns the socket: a read that finds a flush in
//! progress leaves its bytes to that flush (it loops until rustls has
//! nothing more to send), and a write waits for the flush to finish.

use std::future::poll_fn;
use std::io::{self, Read, Write};
use std::task::{Poll, Waker};

use monoio::buf::{IoBuf, IoBufMut, IoVecBuf, IoVecBufMut, RawBuf};
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt, Split};
use monoio::net::TcpStream;
use monoio::BufResult;
use rustls::ServerConnection;

/// Ciphertext read from the socket at a time. At most rustls' limit for
/// plaintext waiting to be read (16 KiB), so one read never overfills it.
const READ_CHUNK: usize = 16 * 1024;

pub struct TlsStream {
    tcp: TcpStream,
    conn: ServerConnection,
    /// Ciphertext read from the socket (kept between reads; empty until the
    /// first read needs it).
    raw: Vec<u8>,
    /// Ciphertext on its way to the socket.
    out: Vec<u8>,
    /// A flush owns the socket's write side.
    flushing: bool,
    /// A write waiting for that flush to end.
    flush_waiter: Option<Waker>,
}

// Safety: the halves share the stream on one thread (monoio's split); the
// only state both touch across an await is the write side of the socket,
// which `flushing` hands to one flush at a time.
unsafe impl Split for TlsStream {}

impl TlsStream {
    /// A stream whose handshake has completed (`tls::accept`).
    pub fn new(tcp: TcpStream, conn: ServerConnection) -> Self {
        Self {
            tcp,
            conn,
            raw: Vec::new(),
            out: Vec::new(),
            flushing: false,
            flush_waiter: None,
        }
    }

    /// Reads ciphertext from the socket into rustls and processes it. Ok(0)
    /// at the end of the stream (rustls then answers reads with EOF).
    async fn read_tls(&mut self) -> io::Result<usize> {
        if self.raw.capacity() < READ_CHUNK {
            self.raw = Vec::with_capacity(READ_CHUNK);
        }
        let mut raw = std::mem::take(&mut self.raw);
        raw.clear();
        let (got, raw) = self.tcp.read(raw).await;
        self.raw = raw;
        let n = got?;
        let mut input = &self.raw[..n];
        loop {
            // Fed in pieces if rustls' buffer takes less than all of it.
            self.conn.read_tls(&mut input)?;
            if let Err(e) = self.conn.process_new_packets() {
                // Tell the peer why (rustls queued a fatal alert), if the
                // socket is ours to write.
                let _ = self.flush_if_free().await;
                return Err(io::Error::new(io::ErrorKind::InvalidData, e));
            }
            if input.is_empty() {
                break;
            }
        }
        // What the read made rustls say (a `no_renegotiation` alert) goes now.
        self.flush_if_free().await?;
        Ok(n)
    }

    /// Sends what rustls has queued unless another flush owns the socket, in
    /// which case that flush sends it.
    async fn flush_if_free(&mut self) -> io::Result<()> {
        if self.flushing {
            return Ok(());
        }
        self.flush_tls().await
    }

    /// Waits for another flush to finish, then sends everything rustls has.
    async fn flush_owned(&mut self) -> io::Result<()> {
        poll_fn(|cx| {
            if self.flushing {
                self.flush_waiter = Some(cx.waker().clone());
                Poll::Pending
            } else {
                Poll::Ready(())
            }
        })
        .await;
        self.flush_tls().await
    }

    async fn flush_tls(&mut self) -> io::Result<()> {
        self.flushing = true;
        let result = self.send_queued().await;
        self.flushing = false;
        if let Some(w) = self.flush_waiter.take() {
            w.wake();
        }
        result
    }

    async fn send_queued(&mut self) -> io::Result<()> {
        while self.conn.wants_write() {
            let mut out = std::mem::take(&mut self.out);
            out.clear();
            self.conn.write_tls(&mut out)?;
            let (sent, mut out) = self.tcp.write_all(out).await;
            // Keep a normal record's buffer, not one a burst grew.
            if out.capacity() > 2 * READ_CHUNK {
                out = Vec::new();
            }
            self.out = out;
            sent?;
        }
        Ok(())
    }
}

impl AsyncReadRent for TlsStream {
    async fn read<T: IoBufMut>(&mut self, mut buf: T) -> BufResult<usize, T> {
        loop {
            // Safety: the slice is the buffer's own memory, as monoio's
            // IoBufMut contract describes (the pointer and total length).
            let slice =
                unsafe { std::slice::from_raw_parts_mut(buf.write_ptr(), buf.bytes_total()) };
            match self.conn.reader().read(slice) {
                Ok(n) => {
                    // Safety: rustls wrote n bytes into the slice above.
                    unsafe { buf.set_init(n) };
                    return (Ok(n), buf);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return (Err(e), buf),
            }
            if let Err(e) = self.read_tls().await {
                return (Err(e), buf);
            }
        }
    }

    /// Fills the first buffer of the vector (the session code never reads
    /// vectored; this is the trait's contract, kept correct).
    async fn readv<T: IoVecBufMut>(&mut self, mut buf: T) -> BufResult<usize, T> {
        // Safety: `buf` is owned here until the read returns, so its first
        // iovec stays valid for the RawBuf's life.
        let n = match unsafe { RawBuf::new_from_iovec_mut(&mut buf) } {
            Some(raw) => self.read(raw).await.0,
            None => Ok(0),
        };
        if let Ok(n) = n {
            // Safety: the read initialised n bytes of the first iovec.
            unsafe { buf.set_init(n) };
        }
        (n, buf)
    }
}

impl AsyncWriteRent for TlsStream {
    async fn write<T: IoBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        // Safety: the initialised bytes of the caller's buffer.
        let slice = unsafe { std::slice::from_raw_parts(buf.read_ptr(), buf.bytes_init()) };
        let n = match self.conn.writer().write(slice) {
            Ok(n) => n,
            Err(e) => return (Err(e), buf),
        };
        match self.flush_owned().await {
            Ok(()) => (Ok(n), buf),
            Err(e) => (Err(e), buf),
        }
    }

    /// Writes from the first buffer of the vector (a short write, as writev
    /// may be; the session code writes vectored to backends only).
    async fn writev<T: IoVecBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        // Safety: `buf` is owned here until the write returns.
        let n = match unsafe { RawBuf::new_from_iovec(&buf) } {
            Some(raw) => self.write(raw).await.0,
            None => Ok(0),
        };
        (n, buf)
    }

    async fn flush(&mut self) -> io::Result<()> {
        self.conn.writer().flush()?;
        self.flush_owned().await?;
        self.tcp.flush().await
    }

    async fn shutdown(&mut self) -> io::Result<()> {
        self.conn.send_close_notify();
        self.flush_owned().await?;
        self.tcp.shutdown().await
    }
}
