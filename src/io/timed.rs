//! Reads and writes with an optional deadline, on buffers owned by the caller.
//! A timed-out operation's buffer stays with the cancelled op; the connection
//! is closed right after, so nothing is lost that matters.
//!
//! A wait gets its deadline one of two ways ([`Bound`]): a timer of its own
//! ([`Fresh`]), or a [`Timer`] that a task's successive waits share,
//! re-armed for each, as nginx re-arms a connection's one timer event.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::BytesMut;
use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRent};

use super::RELAY_CHUNK;

/// What went wrong moving bytes on one socket.
#[derive(Debug, thiserror::Error)]
pub enum IoFailure {
    #[error("timed out")]
    Timeout,
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// `fut`, bounded by `limit` if there is one. A plain enum future rather
/// than an `async fn`: the generator of an async fn would keep both the
/// argument and the `Timeout` it is moved into, doubling the size of every
/// pending read, and so of every idle connection's task.
pub fn with_deadline<F: Future>(limit: Option<Duration>, fut: F) -> Deadline<F> {
    match limit {
        Some(d) => Deadline::Timed(crate::clock::timeout(d, fut)),
        None => Deadline::Untimed(fut),
    }
}

// The timed variant is large because monoio's `Sleep` is (cache-padded timer
// state, about 600 bytes); boxing it would allocate per operation, and the
// untimed variant is the rare one.
#[allow(clippy::large_enum_variant)]
pub enum Deadline<F> {
    Timed(monoio::time::Timeout<F>),
    Untimed(F),
}

impl<F: Future> Future for Deadline<F> {
    type Output = Result<F::Output, IoFailure>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // SAFETY: structural pinning: the inner future is never moved out of
        // the enum while pinned, and the variant never changes after creation.
        unsafe {
            match self.get_unchecked_mut() {
                Deadline::Timed(t) => Pin::new_unchecked(t)
                    .poll(cx)
                    .map(|r| r.map_err(|_| IoFailure::Timeout)),
                Deadline::Untimed(f) => Pin::new_unchecked(f).poll(cx).map(Ok),
            }
        }
    }
}

/// How a wait is bounded: by a timer of its own ([`Fresh`]) or by a shared
/// [`Timer`] (`&mut Timer`).
pub trait Bound {
    type Wait<F: Future>: Future<Output = Result<F::Output, IoFailure>>;

    /// `fut`, bounded by `limit` if there is one.
    fn bound<F: Future>(self, limit: Option<Duration>, fut: F) -> Self::Wait<F>;
}

/// A timer made for the one wait ([`with_deadline`]): for waits that run
/// side by side, or alone.
pub struct Fresh;

impl Bound for Fresh {
    type Wait<F: Future> = Deadline<F>;

    fn bound<F: Future>(self, limit: Option<Duration>, fut: F) -> Deadline<F> {
        with_deadline(limit, fut)
    }
}

/// One timer for the waits of one task that come one after another (a
/// request's write to its backend, the wait for the answer, the write to
/// the client). A fresh timer per wait costs its construction, its insertion
/// in and removal from monoio's timer wheel, and the copies of a future that
/// carries it inline (monoio's `Sleep` is about 600 bytes): a third of a
/// proxied request's user-space time went to that. This one is made at its
/// first wait, moved to each next deadline (in place when the deadline is
/// later, as they usually are) and dropped with its owner.
///
/// A poll with another waker than the last (see `waker`) costs a new
/// `Sleep`; an attempt's waits are all polled by its own task.
#[derive(Default)]
pub struct Timer {
    sleep: Option<Pin<Box<monoio::time::Sleep>>>,
    /// The waker `sleep` was last polled with. A `Sleep` keeps the first
    /// waker it is polled with until it fires, so a poll with another one
    /// (another task, or a combinator's own waker) gets a new `Sleep` for
    /// the same deadline, which wakes the right one.
    waker: Option<Waker>,
}

impl Timer {
    pub fn new() -> Timer {
        Timer::default()
    }

    /// Moves the timer to `deadline` (making it at the first wait).
    fn arm(&mut self, deadline: monoio::time::Instant) {
        match &mut self.sleep {
            Some(sleep) => sleep.as_mut().reset(deadline),
            None => self.sleep = Some(Box::pin(monoio::time::sleep_until(deadline))),
        }
    }

    /// Whether the deadline it was last armed for has passed.
    fn poll_expired(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let Some(sleep) = &mut self.sleep else {
            return Poll::Pending; // never armed: nothing bounds the wait
        };
        if !self.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            if self.waker.is_some() {
                *sleep = Box::pin(monoio::time::sleep_until(sleep.deadline()));
            }
            self.waker = Some(cx.waker().clone());
        }
        sleep.as_mut().poll(cx)
    }
}

impl<'a> Bound for &'a mut Timer {
    type Wait<F: Future> = Bounded<'a, F>;

    fn bound<F: Future>(self, limit: Option<Duration>, fut: F) -> Bounded<'a, F> {
        let timer = limit.map(|d| {
            self.arm(monoio::time::Instant::from_std(crate::clock::from_now(d)));
            self
        });
        Bounded { fut, timer }
    }
}

/// A wait bounded by a shared [`Timer`] (`None`: not bounded).
pub struct Bounded<'a, F> {
    fut: F,
    timer: Option<&'a mut Timer>,
}

impl<F: Future> Future for Bounded<'_, F> {
    type Output = Result<F::Output, IoFailure>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // SAFETY: `fut` is pinned structurally (never moved out of the
        // struct while pinned); `timer` is not (the `Sleep` it holds is
        // pinned in its own box), so taking it by `&mut` moves nothing
        // pinned.
        let this = unsafe { self.get_unchecked_mut() };
        // SAFETY: as above, `fut` stays where it is.
        let fut = unsafe { Pin::new_unchecked(&mut this.fut) };
        // As monoio's `Timeout`: the operation first, so one that is done
        // is not lost to a deadline that passed meanwhile.
        if let Poll::Ready(out) = fut.poll(cx) {
            return Poll::Ready(Ok(out));
        }
        match &mut this.timer {
            Some(timer) => timer.poll_expired(cx).map(|()| Err(IoFailure::Timeout)),
            None => Poll::Pending,
        }
    }
}

/// Reads once, appending to `buf` (growing it by up to [`RELAY_CHUNK`] if it is
/// nearly full). Returns the byte count; 0 means the peer closed.
pub fn read_some<'a, S: AsyncReadRent>(
    stream: &'a mut S,
    buf: &'a mut BytesMut,
    limit: Option<Duration>,
) -> impl Future<Output = Result<usize, IoFailure>> + 'a {
    read_some_on(stream, buf, limit, Fresh)
}

/// [`read_some`], bounded by `bound`.
pub async fn read_some_on<S: AsyncReadRent, B: Bound>(
    stream: &mut S,
    buf: &mut BytesMut,
    limit: Option<Duration>,
    bound: B,
) -> Result<usize, IoFailure> {
    if buf.capacity() - buf.len() < RELAY_CHUNK / 4 {
        buf.reserve(RELAY_CHUNK);
    }
    Ok(bound.bound(limit, read_spare(stream, buf)).await??)
}

/// Reads once into `buf`'s spare capacity as it is (a small buffer stays
/// small; one with none gets a little). Returns the byte count; 0 means the
/// peer closed.
pub async fn read_into_spare<S: AsyncReadRent>(
    stream: &mut S,
    buf: &mut BytesMut,
    limit: Option<Duration>,
) -> Result<usize, IoFailure> {
    Ok(with_deadline(limit, read_spare(stream, buf)).await??)
}

/// [`read_into_spare`] without a deadline, for callers that bound the wait
/// themselves (and whose futures should not carry a timer). If the read is
/// dropped before it completes, `buf` is left empty.
pub async fn read_spare<S: AsyncReadRent>(stream: &mut S, buf: &mut BytesMut) -> io::Result<usize> {
    if buf.capacity() == buf.len() {
        buf.reserve(1024);
    }
    // monoio reads at the buffer's start; a slice from `len` appends instead.
    let filled = buf.len();
    let owned = std::mem::take(buf).slice_mut(filled..);
    let (res, owned) = stream.read(owned).await;
    *buf = owned.into_inner();
    res
}

/// Writes all of `data`.
pub fn write_all<'a, S: AsyncWriteRent, B: monoio::buf::IoBuf + 'static>(
    stream: &'a mut S,
    data: B,
    limit: Option<Duration>,
) -> impl Future<Output = Result<B, IoFailure>> + 'a {
    write_all_on(stream, data, limit, Fresh)
}

/// [`write_all`], bounded by `bound`.
pub async fn write_all_on<S: AsyncWriteRent, B: monoio::buf::IoBuf + 'static, T: Bound>(
    stream: &mut S,
    data: B,
    limit: Option<Duration>,
    bound: T,
) -> Result<B, IoFailure> {
    write_all_telling(stream, data, limit, bound)
        .await
        .map_err(|failed| failed.failure)
}

/// A write that failed, and whether any of its bytes went out first.
pub struct WriteFailed {
    pub failure: IoFailure,
    pub sent_some: bool,
}

/// [`write_all`], telling on failure whether part of `data` went out: a
/// request nothing of which reached a backend may be sent elsewhere, one
/// that went out in part may be running there.
pub async fn write_all_telling<S: AsyncWriteRent, B: monoio::buf::IoBuf + 'static, T: Bound>(
    stream: &mut S,
    data: B,
    limit: Option<Duration>,
    bound: T,
) -> Result<B, WriteFailed> {
    let sent = std::cell::Cell::new(0);
    let writing = async {
        let len = data.bytes_init();
        let mut buf = data;
        while sent.get() < len {
            let (res, slice) = stream.write(buf.slice(sent.get()..)).await;
            buf = slice.into_inner();
            match res {
                Ok(0) => return Err(io::Error::from(io::ErrorKind::WriteZero)),
                Ok(n) => sent.set(sent.get() + n),
                Err(e) => return Err(e),
            }
        }
        Ok(buf)
    };
    let failure = match bound.bound(limit, writing).await {
        Ok(Ok(buf)) => return Ok(buf),
        Ok(Err(e)) => IoFailure::Io(e),
        Err(timeout) => timeout,
    };
    Err(WriteFailed {
        failure,
        sent_some: sent.get() > 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn block_on<F: Future>(future: F) -> F::Output {
        monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
            .enable_timer()
            .build()
            .unwrap()
            .block_on(future)
    }

    /// An operation that completes after `d`.
    fn done_after(d: Duration) -> monoio::time::Sleep {
        monoio::time::sleep(d)
    }

    /// One timer bounds each wait by that wait's own limit, whether its
    /// deadline comes before the last one (the timer moves back), after it
    /// (it moves forward in place, and must not fire at the old deadline),
    /// or after the timer fired.
    #[test]
    fn a_shared_timer_bounds_each_wait_by_its_own_limit() {
        block_on(async {
            let mut timer = Timer::new();
            let long = Some(Duration::from_secs(60));
            let quick = done_after(Duration::from_millis(1));
            assert!(timer.bound(long, quick).await.is_ok());

            let started = Instant::now();
            let short = Some(Duration::from_millis(50));
            let stuck = timer.bound(short, std::future::pending::<()>()).await;
            assert!(matches!(stuck, Err(IoFailure::Timeout)));
            let waited = started.elapsed();
            assert!(waited >= Duration::from_millis(50), "{waited:?}");
            assert!(
                waited < Duration::from_secs(30),
                "the 60 s deadline held: {waited:?}"
            );

            // Fired, then armed again: an operation done in time is not cut.
            let slow = done_after(Duration::from_millis(100));
            assert!(timer.bound(long, slow).await.is_ok());

            // Moved forward in place: the earlier deadline passes unheeded.
            let quick = done_after(Duration::from_millis(1));
            assert!(timer
                .bound(Some(Duration::from_millis(30)), quick)
                .await
                .is_ok());
            let past_it = done_after(Duration::from_millis(200));
            assert!(timer.bound(long, past_it).await.is_ok());

            // No limit: the timer is not consulted.
            let started = Instant::now();
            let untimed = done_after(Duration::from_millis(50));
            assert!(timer.bound(None, untimed).await.is_ok());
            assert!(started.elapsed() >= Duration::from_millis(50));
        });
    }

    /// A wait polled once with another waker (a combinator's own) and then
    /// by the task still times out: the stale waker is not the one woken.
    #[test]
    fn a_timer_polled_with_another_waker_still_wakes_its_task() {
        block_on(async {
            let mut timer = Timer::new();
            let mut wait = Box::pin((&mut timer).bound(
                Some(Duration::from_millis(20)),
                std::future::pending::<()>(),
            ));
            let waker = std::sync::Arc::new(Counted::default());
            let other = Waker::from(waker.clone());
            assert!(wait
                .as_mut()
                .poll(&mut Context::from_waker(&other))
                .is_pending());
            let started = Instant::now();
            let guard = monoio::time::sleep(Duration::from_secs(10));
            monoio::select! {
                out = wait => assert!(matches!(out, Err(IoFailure::Timeout))),
                _ = guard => panic!("the task was never woken for its deadline"),
            }
            assert!(started.elapsed() < Duration::from_secs(10));
        });
    }

    #[derive(Default)]
    struct Counted(std::sync::atomic::AtomicUsize);

    impl std::task::Wake for Counted {
        fn wake(self: std::sync::Arc<Self>) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// A fresh timer per wait, as before the shared one: the same bounds.
    #[test]
    fn a_fresh_timer_bounds_its_wait() {
        block_on(async {
            let short = Some(Duration::from_millis(20));
            let stuck = Fresh.bound(short, std::future::pending::<()>()).await;
            assert!(matches!(stuck, Err(IoFailure::Timeout)));
            let quick = done_after(Duration::from_millis(1));
            assert!(Fresh
                .bound(Some(Duration::from_secs(60)), quick)
                .await
                .is_ok());
        });
    }
}
