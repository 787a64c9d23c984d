//! Body relays: Content-Length, chunked (validated and forwarded verbatim, or
//! decoded for HTTP/1.0 clients) and close-delimited, each streamed through the
//! source's own buffer so memory stays bounded for any body size.
//!
//! A relay is a small state machine ([`BodyRelay`]) so that body bytes already
//! read with a head can be sent in the same write as the head (one syscall and
//! one TCP segment instead of two), and the rest streamed afterwards.

use std::time::Duration;

use bytes::{Buf, BytesMut};
use monoio::io::{AsyncReadRent, AsyncWriteRent};

use super::timed::{read_some, write_all, IoFailure};
use crate::http::chunked::{ChunkedDecoder, ChunkedError, Step};
use crate::http::{BodyKind, Limits};

/// Which side of a relay failed, so the caller can tell client trouble from
/// upstream trouble.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("reading: {0}")]
    Read(IoFailure),
    #[error("source closed before the body ended")]
    Truncated,
    #[error("invalid chunked body: {0}")]
    Chunked(#[from] ChunkedError),
    #[error("writing: {0}")]
    Write(IoFailure),
    /// The destination sent something (or closed) before the body was all
    /// written: see [`BodyRelay::run_watching`].
    #[error("the destination answered before the body ended")]
    Answered,
}

/// How a chunked body reaches the destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkedMode {
    /// Forward the validated chunked bytes as they are.
    Verbatim,
    /// Write only the data (an HTTP/1.0 client, ended by closing).
    Decode,
}

/// Deadlines for the two directions of one relay.
#[derive(Debug, Clone, Copy)]
pub struct Deadlines {
    pub read: Option<Duration>,
    pub write: Option<Duration>,
}

/// Where one body stands.
#[derive(Debug, Clone)]
enum State {
    /// Bytes still to come of a Content-Length body.
    Length(u64),
    Chunked(ChunkedDecoder, ChunkedMode),
    UntilClose,
    Done,
}

/// One body being relayed.
#[derive(Debug, Clone)]
pub struct BodyRelay {
    state: State,
    /// Bytes written to the destination so far.
    pub written: u64,
}

impl BodyRelay {
    pub fn new(kind: BodyKind, mode: ChunkedMode, limits: &Limits) -> BodyRelay {
        let state = match kind {
            BodyKind::Empty | BodyKind::Length(0) => State::Done,
            BodyKind::Length(n) => State::Length(n),
            BodyKind::Chunked => State::Chunked(
                ChunkedDecoder::new(limits.chunk_line_bytes, limits.trailer_bytes),
                mode,
            ),
            BodyKind::UntilClose => State::UntilClose,
        };
        BodyRelay { state, written: 0 }
    }

    /// How many bytes at the front of `buf` can be sent verbatim as part of
    /// this body, and the relay as it will be once they are sent. Nothing is
    /// consumed: the caller commits with [`BodyRelay::commit`] after a
    /// successful write, so a failed write loses no body bytes.
    pub fn buffered(&self, buf: &[u8]) -> Result<(usize, BodyRelay), RelayError> {
        let mut next = self.clone();
        let n = match &mut next.state {
            State::Length(left) => {
                let n = (buf.len() as u64).min(*left) as usize;
                *left -= n as u64;
                if *left == 0 {
                    next.state = State::Done;
                }
                n
            }
            State::Chunked(decoder, ChunkedMode::Verbatim) => {
                let n = decoder.advance(buf)?;
                if decoder.is_done() {
                    next.state = State::Done;
                }
                n
            }
            State::UntilClose => buf.len(),
            // Decoding rewrites the bytes; it is left to `run`.
            State::Chunked(_, ChunkedMode::Decode) | State::Done => 0,
        };
        next.written += n as u64;
        Ok((n, next))
    }

    /// The whole body has been accounted for.
    pub fn is_done(&self) -> bool {
        matches!(self.state, State::Done)
    }

    /// Moves what belongs to the body from the front of `buf` to `out`, as it
    /// is to be written (chunked coding removed in `Decode` mode); what
    /// follows the body stays in `buf`. `written` is not counted here: the
    /// caller counts pieces as their writes complete.
    pub fn extract(
        &mut self,
        buf: &mut BytesMut,
        out: &mut std::collections::VecDeque<BytesMut>,
    ) -> Result<(), RelayError> {
        let mut push = |piece: BytesMut| {
            if !piece.is_empty() {
                out.push_back(piece);
            }
        };
        match &mut self.state {
            State::Done => {}
            State::Length(left) => {
                let take = (buf.len() as u64).min(*left) as usize;
                *left -= take as u64;
                if *left == 0 {
                    self.state = State::Done;
                }
                push(buf.split_to(take));
            }
            State::Chunked(decoder, ChunkedMode::Verbatim) => {
                let n = decoder.advance(buf)?;
                if decoder.is_done() {
                    self.state = State::Done;
                }
                push(buf.split_to(n));
            }
            State::Chunked(decoder, ChunkedMode::Decode) => {
                while !buf.is_empty() && !decoder.is_done() {
                    match decoder.step(buf)? {
                        Step::Framing(n) => buf.advance(n),
                        Step::Data(n) => push(buf.split_to(n)),
                    }
                }
                if decoder.is_done() {
                    self.state = State::Done;
                }
            }
            State::UntilClose => push(buf.split()),
        }
        Ok(())
    }

    /// The source ended: the end of a close-delimited body, else a body cut short.
    pub fn source_closed(&mut self) -> Result<(), RelayError> {
        match self.state {
            State::UntilClose | State::Done => {
                self.state = State::Done;
                Ok(())
            }
            _ => Err(RelayError::Truncated),
        }
    }

    /// Counts `n` bytes as written to the destination.
    pub fn count_written(&mut self, n: u64) {
        self.written += n;
    }

    /// Adopts the state `buffered` returned, once its bytes were written.
    pub fn commit(&mut self, next: BodyRelay) {
        *self = next;
    }

    /// Streams the rest of the body from `src` to `dst`. `buf` holds bytes
    /// already read from `src`; on success it keeps whatever followed the
    /// body (a pipelined request). Returns the total bytes written.
    pub async fn run<R: AsyncReadRent, W: AsyncWriteRent>(
        &mut self,
        src: &mut R,
        buf: &mut BytesMut,
        dst: &mut W,
        deadlines: Deadlines,
    ) -> Result<u64, RelayError> {
        self.run_watching(src, buf, dst, deadlines, &|| false).await
    }

    /// [`run`](Self::run), stopping with [`RelayError::Answered`] when
    /// `answered()` says so before a piece is read.
    pub async fn run_watching<R: AsyncReadRent, W: AsyncWriteRent>(
        &mut self,
        src: &mut R,
        buf: &mut BytesMut,
        dst: &mut W,
        deadlines: Deadlines,
        answered: &dyn Fn() -> bool,
    ) -> Result<u64, RelayError> {
        loop {
            if !matches!(self.state, State::Done) && answered() {
                return Err(RelayError::Answered);
            }
            match &mut self.state {
                State::Done => return Ok(self.written),
                State::Length(left) => {
                    fill(src, buf, deadlines.read).await?;
                    let take = (buf.len() as u64).min(*left) as usize;
                    *left -= take as u64;
                    if *left == 0 {
                        self.state = State::Done;
                    }
                    send(dst, buf, take, deadlines.write).await?;
                    self.written += take as u64;
                }
                State::Chunked(decoder, ChunkedMode::Verbatim) => {
                    fill(src, buf, deadlines.read).await?;
                    let n = decoder.advance(buf)?;
                    if decoder.is_done() {
                        self.state = State::Done;
                    }
                    send(dst, buf, n, deadlines.write).await?;
                    self.written += n as u64;
                }
                State::Chunked(decoder, ChunkedMode::Decode) => {
                    fill(src, buf, deadlines.read).await?;
                    while !buf.is_empty() && !decoder.is_done() {
                        match decoder.step(buf)? {
                            Step::Framing(n) => buf.advance(n),
                            Step::Data(n) => {
                                send(dst, buf, n, deadlines.write).await?;
                                self.written += n as u64;
                            }
                        }
                    }
                    if decoder.is_done() {
                        self.state = State::Done;
                    }
                }
                State::UntilClose => {
                    if buf.is_empty()
                        && read_some(src, buf, deadlines.read)
                            .await
                            .map_err(RelayError::Read)?
                            == 0
                    {
                        self.state = State::Done;
                        continue;
                    }
                    let n = buf.len();
                    send(dst, buf, n, deadlines.write).await?;
                    self.written += n as u64;
                }
            }
        }
    }
}

/// Ensures `buf` holds at least one byte, reading if it is empty.
async fn fill<R: AsyncReadRent>(
    src: &mut R,
    buf: &mut BytesMut,
    limit: Option<Duration>,
) -> Result<(), RelayError> {
    if buf.is_empty() && read_some(src, buf, limit).await.map_err(RelayError::Read)? == 0 {
        return Err(RelayError::Truncated);
    }
    Ok(())
}

/// Writes the first `n` bytes of `buf` and drops them from it.
async fn send<W: AsyncWriteRent>(
    dst: &mut W,
    buf: &mut BytesMut,
    n: usize,
    limit: Option<Duration>,
) -> Result<(), RelayError> {
    if n == 0 {
        return Ok(());
    }
    let chunk = buf.split_to(n);
    write_all(dst, chunk, limit)
        .await
        .map_err(RelayError::Write)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffered_prefix_then_commit() {
        let limits = Limits::default();
        let relay = BodyRelay::new(BodyKind::Length(5), ChunkedMode::Verbatim, &limits);
        let (n, next) = relay.buffered(b"helloGET /next").unwrap();
        assert_eq!((n, next.written), (5, 5));
        assert!(matches!(next.state, State::Done));
        assert!(
            matches!(relay.state, State::Length(5)),
            "peeking consumed nothing"
        );

        let relay = BodyRelay::new(BodyKind::Chunked, ChunkedMode::Verbatim, &limits);
        let (n, next) = relay.buffered(b"3\r\nabc\r\n0\r\n\r\nNEXT").unwrap();
        assert_eq!(n, 13);
        assert!(matches!(next.state, State::Done));
        let (n, next) = relay.buffered(b"3\r\nab").unwrap();
        assert_eq!(n, 5);
        assert!(matches!(next.state, State::Chunked(..)));
        assert!(relay.buffered(b"zz\r\n").is_err());

        let relay = BodyRelay::new(BodyKind::Chunked, ChunkedMode::Decode, &limits);
        assert_eq!(
            relay.buffered(b"3\r\nabc\r\n").unwrap().0,
            0,
            "decoding is left to run"
        );
        let relay = BodyRelay::new(BodyKind::UntilClose, ChunkedMode::Verbatim, &limits);
        assert_eq!(relay.buffered(b"everything").unwrap().0, 10);
        let relay = BodyRelay::new(BodyKind::Empty, ChunkedMode::Verbatim, &limits);
        assert_eq!(relay.buffered(b"GET /").unwrap().0, 0);
    }
}
