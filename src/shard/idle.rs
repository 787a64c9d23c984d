//! Coarse deadlines for connections waiting between requests
//! (`server.tcp_timeout`). A monoio timer is 640 bytes (cache-padded wheel
//! state) and would sit in every idle connection's task, making it three
//! times larger than everything else it holds. Here a waiting connection
//! takes one small slot in a per-shard table instead, and a sweeper task
//! wakes the expired ones every [`TICK`]: a connection closes between its
//! timeout and its timeout plus one tick, never early.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// How often expired waits are woken; the precision of idle timeouts.
pub const TICK: Duration = Duration::from_millis(100);

struct Slot {
    deadline: Instant,
    waker: Option<Waker>,
    expired: bool,
}

/// One shard's table of pending idle deadlines.
#[derive(Default)]
pub struct IdleTimers {
    slots: RefCell<Vec<Option<Slot>>>,
    /// Indexes of empty slots, reused before the table grows.
    free: RefCell<Vec<usize>>,
    waiting: Cell<usize>,
}

impl IdleTimers {
    /// A future that resolves `limit` from now (never when `limit` is None).
    /// It takes a slot on its first poll and frees it when dropped.
    pub fn deadline(&self, limit: Option<Duration>) -> IdleDeadline<'_> {
        IdleDeadline {
            timers: self,
            deadline: limit.map(crate::clock::from_now),
            slot: None,
        }
    }

    /// How many deadlines are pending.
    pub fn waiting(&self) -> usize {
        self.waiting.get()
    }

    /// Wakes every wait whose deadline has passed.
    pub fn expire(&self, now: Instant) {
        let mut slots = self.slots.borrow_mut();
        for slot in slots.iter_mut().flatten() {
            if !slot.expired && slot.deadline <= now {
                slot.expired = true;
                if let Some(w) = slot.waker.take() {
                    w.wake();
                }
            }
        }
    }

    /// Runs for the life of the shard: expires deadlines every [`TICK`].
    pub async fn sweep(&self) {
        loop {
            monoio::time::sleep(TICK).await;
            // Deadlines were set on the coarse clock (ahead of the precise
            // one); checked against the precise one, none expires early.
            self.expire(Instant::now());
            self.compact();
        }
    }

    /// Drops empty slots at the end of the table, so that a burst of idle
    /// connections does not leave a large table (and a long sweep) behind.
    fn compact(&self) {
        let mut slots = self.slots.borrow_mut();
        let before = slots.len();
        while matches!(slots.last(), Some(None)) {
            slots.pop();
        }
        if slots.len() == before {
            return;
        }
        let len = slots.len();
        let mut free = self.free.borrow_mut();
        free.retain(|&i| i < len);
        if slots.capacity() > 2 * len.max(64) {
            slots.shrink_to(len.max(64));
            free.shrink_to(len.max(64));
        }
    }

    fn insert(&self, slot: Slot) -> usize {
        self.waiting.set(self.waiting.get() + 1);
        let mut slots = self.slots.borrow_mut();
        match self.free.borrow_mut().pop() {
            Some(i) => {
                slots[i] = Some(slot);
                i
            }
            None => {
                slots.push(Some(slot));
                slots.len() - 1
            }
        }
    }

    fn remove(&self, i: usize) {
        self.waiting.set(self.waiting.get() - 1);
        self.slots.borrow_mut()[i] = None;
        self.free.borrow_mut().push(i);
    }
}

/// See [`IdleTimers::deadline`].
pub struct IdleDeadline<'a> {
    timers: &'a IdleTimers,
    deadline: Option<Instant>,
    slot: Option<usize>,
}

impl Future for IdleDeadline<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let Some(deadline) = self.deadline else {
            return Poll::Pending;
        };
        let Some(i) = self.slot else {
            let i = self.timers.insert(Slot {
                deadline,
                waker: Some(cx.waker().clone()),
                expired: false,
            });
            self.slot = Some(i);
            return Poll::Pending;
        };
        let mut slots = self.timers.slots.borrow_mut();
        let Some(slot) = slots[i].as_mut() else {
            return Poll::Pending;
        };
        if slot.expired {
            return Poll::Ready(());
        }
        match &mut slot.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            w => *w = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

impl Drop for IdleDeadline<'_> {
    fn drop(&mut self) {
        if let Some(i) = self.slot {
            self.timers.remove(i);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::rc::Rc;

    fn runtime() -> monoio::Runtime<monoio::time::TimeDriver<monoio::LegacyDriver>> {
        monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .enable_timer()
            .build()
            .unwrap()
    }

    #[test]
    fn expires_after_its_limit_and_frees_its_slot() {
        runtime().block_on(async {
            let timers = Rc::new(IdleTimers::default());
            let sweeper = timers.clone();
            monoio::spawn(async move { sweeper.sweep().await });
            let started = Instant::now();
            timers.deadline(Some(Duration::from_millis(150))).await;
            let waited = started.elapsed();
            assert!(waited >= Duration::from_millis(150), "{waited:?}");
            assert_eq!(timers.waiting(), 0);
        });
    }

    #[test]
    fn only_expired_waits_wake_and_dropped_ones_leave_nothing() {
        runtime().block_on(async {
            let timers = IdleTimers::default();
            let now = Instant::now();
            let mut short = Box::pin(timers.deadline(Some(Duration::from_secs(1))));
            let mut long = Box::pin(timers.deadline(Some(Duration::from_secs(60))));
            let mut never = Box::pin(timers.deadline(None));
            let poll = |f: &mut Pin<Box<IdleDeadline<'_>>>| {
                let mut cx = Context::from_waker(Waker::noop());
                f.as_mut().poll(&mut cx).is_ready()
            };
            assert!(!poll(&mut short) && !poll(&mut long) && !poll(&mut never));
            assert_eq!(timers.waiting(), 2, "an endless wait takes no slot");
            timers.expire(now + Duration::from_millis(999));
            assert!(!poll(&mut short));
            timers.expire(now + Duration::from_secs(2));
            assert!(poll(&mut short) && !poll(&mut long) && !poll(&mut never));
            drop(short);
            // The freed slot is reused by the next wait.
            let mut next = Box::pin(timers.deadline(Some(Duration::from_secs(60))));
            assert!(!poll(&mut next));
            assert_eq!((timers.waiting(), timers.slots.borrow().len()), (2, 2));
            drop((long, next, never));
            assert_eq!(timers.waiting(), 0);
            // A burst leaves no table behind once its waits are gone.
            let burst: Vec<_> = (0..1000)
                .map(|_| Box::pin(timers.deadline(Some(Duration::from_secs(60)))))
                .collect();
            let mut burst: Vec<_> = burst.into_iter().map(|mut f| (!poll(&mut f), f)).collect();
            assert!(burst.iter().all(|(pending, _)| *pending));
            let kept = burst.swap_remove(10).1;
            drop(burst);
            timers.compact();
            assert_eq!(
                timers.slots.borrow().len(),
                11,
                "slots up to the one still waiting"
            );
            drop(kept);
            timers.compact();
            assert_eq!(timers.slots.borrow().len(), 0);
            assert!(timers.slots.borrow().capacity() <= 64);
            assert!(timers.free.borrow().is_empty());
        });
    }
}
