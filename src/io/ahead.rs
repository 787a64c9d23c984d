//! The response relay: reads a body from the backend ahead of a slow
//! client, up to a bound, and hands the upstream connection back the moment
//! the body has been read in full (nginx does the same with its proxy
//! buffers). A client that reads a few bytes a second then holds its own
//! connection and some memory, never one of the backend's `max_sockets`
//! connections. Reading and writing overlap: the next read runs while the
//! previous piece is being written, so a fast client loses nothing.

use std::collections::VecDeque;
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::task::Poll;

use bytes::BytesMut;
use monoio::io::{AsyncReadRent, AsyncWriteRent};

use super::budget::{Budget, Charge};
use super::pump::{BodyRelay, Deadlines, RelayError};
use super::timed::{read_some, write_all, IoFailure};
use super::RELAY_CHUNK;

/// How far a body may be read ahead of its destination.
#[derive(Debug, Clone)]
pub struct ReadAhead<'b> {
    /// Bytes held for one response at most (`server.response_buffer_bytes`).
    pub per_response: usize,
    /// The shard's buffer budget; read-ahead beyond one relay chunk stops
    /// while it is used up.
    pub budget: &'b Budget,
}

type Pending<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

enum Event<'a, R, W> {
    Wrote(Result<usize, IoFailure>, &'a mut W),
    Read(Result<usize, IoFailure>, R, BytesMut),
}

impl BodyRelay {
    /// Writes `first` (the response head with the body bytes that came with
    /// it) and then the rest of the body from `src` to `dst`, reading ahead
    /// of `dst` within `ahead`. As soon as the body has been read in full,
    /// `src` and whatever followed the body are handed to `done_reading`,
    /// while the last pieces may still be on their way to `dst`. Returns
    /// the body bytes written in all.
    #[allow(clippy::too_many_arguments)]
    pub async fn run_ahead<'a, R, W>(
        &mut self,
        src: R,
        buf: BytesMut,
        first: Vec<u8>,
        dst: &'a mut W,
        ahead: ReadAhead<'_>,
        deadlines: Deadlines,
        done_reading: impl FnOnce(R, BytesMut),
    ) -> Result<u64, RelayError>
    where
        R: AsyncReadRent + 'a,
        W: AsyncWriteRent + 'a,
    {
        let mut queue: VecDeque<BytesMut> = VecDeque::new();
        let mut charge = Charge::new(ahead.budget);
        let mut source = Some((src, buf));
        let mut done_reading = Some(done_reading);
        let mut idle_dst: Option<&'a mut W> = None;
        let mut writing: Option<Pending<'a, Event<'a, R, W>>> = None;
        let mut reading: Option<Pending<'a, Event<'a, R, W>>> = None;
        // The head is not body: its bytes are not counted as written.
        let mut writing_head = !first.is_empty();
        if writing_head {
            writing = Some(Box::pin(async move {
                let r = write_all(dst, first, deadlines.write).await;
                Event::Wrote(r.map(|b| b.len()), dst)
            }));
        } else {
            idle_dst = Some(dst);
        }
        loop {
            if let Some((_, buf)) = source.as_mut() {
                let before: usize = queue.iter().map(BytesMut::len).sum();
                self.extract(buf, &mut queue)?;
                let after: usize = queue.iter().map(BytesMut::len).sum();
                charge.add(after - before);
            }
            if self.is_done() {
                if let (Some((src, rest)), Some(done)) = (source.take(), done_reading.take()) {
                    done(src, rest);
                }
            }
            if writing.is_none() && !queue.is_empty() {
                if let (Some(dst), Some(chunk)) = (idle_dst.take(), queue.pop_front()) {
                    writing = Some(Box::pin(async move {
                        let r = write_all(dst, chunk, deadlines.write).await;
                        Event::Wrote(r.map(|b| b.len()), dst)
                    }));
                }
            }
            let may_read = charge.held() < RELAY_CHUNK
                || (charge.held() < ahead.per_response && charge.room_for(1));
            if reading.is_none() && !self.is_done() && may_read {
                if let Some((mut src, mut buf)) = source.take() {
                    reading = Some(Box::pin(async move {
                        let r = read_some(&mut src, &mut buf, deadlines.read).await;
                        Event::Read(r, src, buf)
                    }));
                }
            }
            if writing.is_none() && reading.is_none() {
                // Nothing in flight and nothing to write: the body is done.
                return Ok(self.written);
            }
            let event = poll_fn(|cx| {
                for slot in [&mut writing, &mut reading] {
                    if let Some(fut) = slot.as_mut() {
                        if let Poll::Ready(event) = fut.as_mut().poll(cx) {
                            *slot = None;
                            return Poll::Ready(event);
                        }
                    }
                }
                Poll::Pending
            })
            .await;
            match event {
                Event::Wrote(Ok(n), dst) => {
                    idle_dst = Some(dst);
                    if writing_head {
                        writing_head = false;
                    } else {
                        charge.release(n);
                        self.count_written(n as u64);
                    }
                }
                Event::Wrote(Err(e), _) => return Err(RelayError::Write(e)),
                Event::Read(Ok(0), src, buf) => {
                    self.source_closed()?;
                    source = Some((src, buf));
                }
                Event::Read(Ok(_), src, buf) => source = Some((src, buf)),
                Event::Read(Err(e), _, _) => return Err(RelayError::Read(e)),
            }
        }
    }
}
