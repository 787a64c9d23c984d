//! A client connection: its stream, the bytes read from it and not yet used,
//! and the span of the request head being answered. Callers ask for the next
//! head, the head's bytes, the body bytes that came with it, more of the
//! body, or the rest of the body sent on; the buffer's offsets are moved
//! only here.

use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use monoio::buf::IoBuf;
use monoio::io::{AsyncReadRent, AsyncWriteRent};

use super::stream::ClientStream;
use crate::http::request::{parse_request, RequestError, RequestHead};
use crate::io::pump::{BodyRelay, Deadlines, RelayError};
use crate::io::timed::{
    read_into_spare, read_some, read_spare, write_all, write_all_on, IoFailure, Timer,
};
use crate::observe::metrics;
use crate::shard::Shard;

/// Initial size of a client's read buffer: most request heads fit.
const HEAD_BUFFER: usize = 8 * 1024;
/// The buffer an idle keep-alive connection lends to its pending read on
/// io_uring: small, so that an idle connection stays cheap. A connection
/// whose heads do not fit waits for readability instead (as on epoll).
const IDLE_READ_BUFFER: usize = 256;
/// After an error response, how long and how much the client may still send
/// before the socket is closed (so our answer is not lost to a TCP reset).
const LINGER_TIME: Duration = Duration::from_secs(1);
const LINGER_BYTES: usize = 256 * 1024;

/// What reading the next request head came to.
pub(super) enum HeadRead {
    Head(RequestHead),
    Closed,
    Refused(RequestError),
}

/// The client socket and the bytes read from it but not yet used.
pub(super) struct Client<S> {
    stream: S,
    buf: BytesMut,
    /// The current request's head is the first this many bytes of `buf`
    /// (0: no head is being answered; what `buf` holds is body or the next
    /// request).
    head_len: usize,
    /// The last request head fit in `IDLE_READ_BUFFER` (see `wait_idle`).
    small_heads: bool,
}

impl<S> Client<S> {
    pub fn new(stream: S) -> Self {
        Client {
            stream,
            buf: BytesMut::new(),
            head_len: 0,
            small_heads: true,
        }
    }

    /// Nothing read and unused: the connection is between requests.
    pub fn is_idle(&self) -> bool {
        self.buf.is_empty()
    }

    /// The request head already in the buffer, if it is complete (or refused).
    pub fn buffered_head(&mut self, shard: &Shard) -> Option<HeadRead> {
        if self.buf.is_empty() {
            return None;
        }
        match parse_request(&self.buf, &shard.config.limits) {
            Ok(Some(head)) => {
                self.small_heads = head.len <= IDLE_READ_BUFFER;
                self.head_len = head.len;
                Some(HeadRead::Head(head))
            }
            Ok(None) => None,
            Err(e) => Some(HeadRead::Refused(e)),
        }
    }

    /// The current request head's bytes (what `RequestHead`'s spans index).
    pub fn head_bytes(&self) -> &[u8] {
        &self.buf[..self.head_len]
    }

    /// Done with the head: what follows it is its body or the next request.
    pub fn finish_head(&mut self) {
        self.buf.advance(self.head_len);
        self.head_len = 0;
    }

    /// Body bytes read and not yet sent on (after `finish_head`).
    pub fn body_bytes(&self) -> &[u8] {
        debug_assert_eq!(self.head_len, 0, "the head is still in the buffer");
        &self.buf
    }

    /// The first `n` body bytes were sent on.
    pub fn consume_body(&mut self, n: usize) {
        debug_assert_eq!(self.head_len, 0, "the head is still in the buffer");
        self.buf.advance(n);
    }

    /// The stream and what was read from it, for a tunnel.
    pub fn into_parts(self) -> (S, BytesMut) {
        (self.stream, self.buf)
    }
}

impl<S: AsyncWriteRent> Client<S> {
    /// Writes `bytes` to the client, within `timeout`.
    pub async fn write<T: IoBuf + 'static>(
        &mut self,
        bytes: T,
        timeout: Option<Duration>,
    ) -> Result<(), IoFailure> {
        write_all(&mut self.stream, bytes, timeout)
            .await
            .map(|_| ())
    }

    /// [`Client::write`], bounded by the request's `timer`.
    pub async fn write_on<T: IoBuf + 'static>(
        &mut self,
        bytes: T,
        timeout: Option<Duration>,
        timer: &mut Timer,
    ) -> Result<(), IoFailure> {
        write_all_on(&mut self.stream, bytes, timeout, timer)
            .await
            .map(|_| ())
    }

    /// The stream to write a response to (a relay takes it for the body).
    pub fn writer(&mut self) -> &mut S {
        &mut self.stream
    }
}

impl<S: AsyncReadRent> Client<S> {
    /// Reads more of the body, with room for at least `room` more bytes,
    /// within `left`. Ok(0): the client closed.
    pub async fn read_body(&mut self, room: usize, left: Duration) -> Result<usize, IoFailure> {
        if self.buf.capacity() - self.buf.len() < room {
            self.buf.reserve(room);
        }
        read_into_spare(&mut self.stream, &mut self.buf, Some(left)).await
    }

    /// Sends the rest of the body on to `dst` (see `BodyRelay::run_watching`);
    /// what follows the body stays buffered.
    pub async fn relay_body<W: AsyncWriteRent>(
        &mut self,
        body: &mut BodyRelay,
        dst: &mut W,
        deadlines: Deadlines,
        answered: &dyn Fn() -> bool,
    ) -> Result<u64, RelayError> {
        let relay = body.run_watching(&mut self.stream, &mut self.buf, dst, deadlines, answered);
        Box::pin(relay).await
    }

    /// Reads until a whole head is buffered. Once its first byte is here, the
    /// head has `client_header_timeout` to arrive in full (a slowloris client
    /// trickling one header byte at a time gets 408), whatever `tcp_timeout` is.
    pub async fn read_head(&mut self, shard: &Shard) -> HeadRead {
        let mut head_deadline: Option<Instant> = None;
        loop {
            if let Some(found) = self.buffered_head(shard) {
                return found;
            }
            // Until a request's first byte arrives, a drain ends the wait after
            // its grace (the readiness wait before can be a stale "readable" on
            // epoll).
            let timeout = shard.config.tcp_timeout;
            let got = if self.buf.is_empty() {
                // The first read uses the buffer as `wait_idle` left it.
                let read = read_into_spare(&mut self.stream, &mut self.buf, timeout);
                monoio::select! {
                    got = read => got,
                    _ = shard.drain.idle_expired() => return HeadRead::Closed,
                }
            } else {
                let deadline = *head_deadline.get_or_insert_with(|| {
                    crate::clock::from_now(shard.config.client_header_timeout)
                });
                let left = deadline.saturating_duration_since(crate::clock::now());
                // The rest of a head: grow by a head-sized step, not a relay chunk.
                if self.buf.capacity() - self.buf.len() < IDLE_READ_BUFFER {
                    self.buf.reserve(HEAD_BUFFER);
                }
                read_into_spare(&mut self.stream, &mut self.buf, Some(left)).await
            };
            match got {
                Err(IoFailure::Timeout) if head_deadline.is_some() => {
                    metrics::add(&shard.metrics.client_timeouts, 1);
                    return HeadRead::Refused(RequestError::HeadTimeout);
                }
                Ok(0) | Err(_) => return HeadRead::Closed,
                Ok(_) => {}
            }
        }
    }
}

impl<S: AsyncReadRent + AsyncWriteRent> Client<S> {
    /// Half-closes, then reads and discards what the client still sends for
    /// a moment, so the response we wrote is not destroyed by a reset.
    pub async fn linger_close(&mut self) {
        let deadline = crate::clock::from_now(LINGER_TIME);
        // Over TLS the shutdown writes (close_notify, and whatever rustls still
        // holds): a client that stops reading must not hold the task past the
        // linger time.
        let _ = crate::clock::timeout(LINGER_TIME, self.stream.shutdown()).await;
        let mut discarded = 0;
        while discarded < LINGER_BYTES {
            let left = deadline.saturating_duration_since(crate::clock::now());
            if left.is_zero() {
                break;
            }
            self.buf.clear();
            match read_some(&mut self.stream, &mut self.buf, Some(left)).await {
                Ok(n) if n > 0 => discarded += n,
                _ => break,
            }
        }
    }
}

impl<S: ClientStream> Client<S> {
    /// Between requests a keep-alive connection holds little memory. On
    /// io_uring a read waits in the kernel, so a connection with small request
    /// heads simply reads with a small buffer: one operation per request instead
    /// of a readiness poll and a read. Otherwise (epoll, where the read would
    /// first fail with EAGAIN, or heads that need a second read) the connection
    /// waits for readability holding no buffer at all, then gets a head-sized
    /// one. False: close.
    pub async fn wait_idle(&mut self, shard: &Shard) -> bool {
        // The idle timeout is a slot in the shard's table, not a timer in every
        // idle connection's task (see `shard::idle`).
        let idle_limit = shard.idle.deadline(shard.config.tcp_timeout);
        if shard.read_waits_in_kernel() && self.small_heads {
            // Read here, not in the boxed `read_head`: the idle connection then
            // holds only its task, the small buffer and the pending read.
            // The last request's buffer is reused when it is a small one: on an
            // emptied, unshared BytesMut, `reserve` reclaims the consumed space
            // instead of allocating. One that grew (a body went through it) is
            // swapped for a small one, so an idle connection stays cheap.
            self.buf.clear();
            self.buf.reserve(IDLE_READ_BUFFER);
            if self.buf.capacity() > IDLE_READ_BUFFER {
                self.buf = BytesMut::with_capacity(IDLE_READ_BUFFER);
            }
            let read = read_spare(&mut self.stream, &mut self.buf);
            return monoio::select! {
                got = read => matches!(got, Ok(n) if n > 0),
                _ = idle_limit => false,
                _ = shard.drain.idle_expired() => false,
            };
        }
        self.buf = BytesMut::new();
        // An idle connection closes shortly after the shard drains.
        let ok = monoio::select! {
            ready = self.stream.wait_readable() => ready.is_ok(),
            _ = idle_limit => false,
            _ = shard.drain.idle_expired() => false,
        };
        self.buf.reserve(HEAD_BUFFER);
        ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The head, then the body, then the next request: each is handed out
    /// once, and what follows stays buffered.
    #[test]
    fn a_head_its_body_and_the_next_request_are_told_apart() {
        let shard = crate::shard::testing::shard();
        let mut client = Client::new(());
        let head = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\n";
        client.buf.extend_from_slice(head);
        client.buf.extend_from_slice(b"abcGET / HTTP/1.1\r\n");
        let Some(HeadRead::Head(parsed)) = client.buffered_head(&shard) else {
            panic!("no head");
        };
        assert_eq!(client.head_bytes(), &head[..]);
        assert_eq!(parsed.len, head.len());
        client.finish_head();
        assert_eq!(client.head_bytes(), b"");
        assert_eq!(&client.body_bytes()[..3], b"abc");
        client.consume_body(3);
        assert_eq!(client.body_bytes(), b"GET / HTTP/1.1\r\n");
        // The next request is incomplete: no head yet.
        assert!(client.buffered_head(&shard).is_none());
        assert!(!client.is_idle());
    }
}
