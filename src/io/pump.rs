//! Body relays: Content-Length, chunked (validated and forwarded verbatim, or
//! decoded for HTTP/1.0 clients) and close-delimited, each streamed through the
//! source's own buffer so memory stays bounded for any body size.

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

/// Relays one body from `src` to `dst`. `buf` holds bytes already read from
/// `src`; on success it keeps whatever followed the body (a pipelined request).
/// Returns the number of bytes written to `dst`.
pub async fn relay_body<R: AsyncReadRent, W: AsyncWriteRent>(
    src: &mut R,
    buf: &mut BytesMut,
    dst: &mut W,
    kind: BodyKind,
    mode: ChunkedMode,
    limits: &Limits,
    deadlines: Deadlines,
) -> Result<u64, RelayError> {
    let mut written = 0u64;
    match kind {
        BodyKind::Empty => {}
        BodyKind::Length(mut left) => {
            while left > 0 {
                fill(src, buf, deadlines.read).await?;
                let take = (buf.len() as u64).min(left) as usize;
                send(dst, buf, take, deadlines.write).await?;
                left -= take as u64;
                written += take as u64;
            }
        }
        BodyKind::Chunked => {
            let mut decoder = ChunkedDecoder::new(limits.chunk_line_bytes, limits.trailer_bytes);
            while !decoder.is_done() {
                fill(src, buf, deadlines.read).await?;
                match mode {
                    ChunkedMode::Verbatim => {
                        let n = decoder.advance(buf)?;
                        send(dst, buf, n, deadlines.write).await?;
                        written += n as u64;
                    }
                    ChunkedMode::Decode => {
                        while !buf.is_empty() && !decoder.is_done() {
                            match decoder.step(buf)? {
                                Step::Framing(n) => buf.advance(n),
                                Step::Data(n) => {
                                    send(dst, buf, n, deadlines.write).await?;
                                    written += n as u64;
                                }
                            }
                        }
                    }
                }
            }
        }
        BodyKind::UntilClose => loop {
            if buf.is_empty() {
                let n = read_some(src, buf, deadlines.read)
                    .await
                    .map_err(RelayError::Read)?;
                if n == 0 {
                    break;
                }
            }
            let n = buf.len();
            send(dst, buf, n, deadlines.write).await?;
            written += n as u64;
        },
    }
    Ok(written)
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
