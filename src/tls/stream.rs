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

/// Ciphertext read from the socket at a time: one full TLS record.
const READ_CHUNK: usize = 16 * 1024 + 256;

pub struct TlsStream {
    tcp: TcpStream,
    conn: ServerConnection,
    /// Ciphertext read from the socket; `raw[fed..]` is not yet rustls'.
    /// Kept between reads (empty until the first read needs it).
    raw: Vec<u8>,
    fed: usize,
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

/// Marks a flush in progress; clears the mark and wakes a waiting write
/// however the flush ends (also when its future is dropped by a timeout).
struct Flushing<'a>(&'a mut TlsStream);

impl<'a> Flushing<'a> {
    fn start(stream: &'a mut TlsStream) -> Self {
        stream.flushing = true;
        Flushing(stream)
    }
}

impl Drop for Flushing<'_> {
    fn drop(&mut self) {
        self.0.flushing = false;
        if let Some(w) = self.0.flush_waiter.take() {
            w.wake();
        }
    }
}

impl TlsStream {
    /// A stream whose handshake has completed (`tls::accept`).
    pub fn new(tcp: TcpStream, conn: ServerConnection) -> Self {
        Self {
            tcp,
            conn,
            raw: Vec::new(),
            fed: 0,
            out: Vec::new(),
            flushing: false,
            flush_waiter: None,
        }
    }

    /// Gives rustls more ciphertext: from what an earlier socket read left,
    /// else from a new read. Called only when rustls holds no plaintext, so
    /// its 16 KiB plaintext limit is never passed (rustls refuses input
    /// beyond it), however records were split across reads.
    async fn feed(&mut self) -> io::Result<()> {
        if self.fed == self.raw.len() {
            if self.raw.capacity() < READ_CHUNK {
                self.raw = Vec::with_capacity(READ_CHUNK);
            }
            let mut raw = std::mem::take(&mut self.raw);
            raw.clear();
            self.fed = 0;
            let (got, raw) = self.tcp.read(raw).await;
            self.raw = raw;
            if got? == 0 {
                // The end of the stream: rustls answers reads with EOF (or
                // an error without close_notify) from now on.
                self.conn.read_tls(&mut &[][..])?;
                return self.process().await;
            }
        }
        let taken = self.conn.read_tls(&mut &self.raw[self.fed..])?;
        self.fed += taken;
        if taken == 0 {
            // rustls takes nothing after the peer's close_notify: the rest
            // is dropped (feeding it again would never end).
            self.fed = self.raw.len();
        }
        self.process().await
    }

    /// Processes what rustls was given; sends what that made it say.
    async fn process(&mut self) -> io::Result<()> {
        if let Err(e) = self.conn.process_new_packets() {
            // Tell the peer why (rustls queued a fatal alert), if the
            // socket is ours to write.
            let _ = self.flush_if_free().await;
            return Err(io::Error::new(io::ErrorKind::InvalidData, e));
        }
        // E.g. the `no_renegotiation` alert: sent now, not at the next write.
        self.flush_if_free().await
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
        let flushing = Flushing::start(self);
        flushing.0.send_queued().await
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
            if let Err(e) = self.feed().await {
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
