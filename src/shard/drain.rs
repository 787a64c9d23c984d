//! Graceful drain, per shard. The main thread raises a shared flag on
//! SIGTERM/SIGINT; each shard notices within `DRAIN_POLL`, closes its gate,
//! and everything waiting on the gate wakes: accept loops stop (closing the
//! listeners), idle keep-alive connections close after `IDLE_GRACE`,
//! responses in flight finish with `Connection: close`, tunnels run on. The shard ends when its last
//! connection does; the main thread stops waiting at `server.drain_timeout`.

use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use local_sync::semaphore::Semaphore;

/// How often a shard looks at the shared flag (the flag crosses threads; the
/// gate below never does).
pub const DRAIN_POLL: Duration = Duration::from_millis(50);

/// How long a keep-alive connection idle at the start of a drain may still
/// send its next request (answered, with `Connection: close`). Closing it at
/// once would race a request already on the wire, which the client sees as
/// a failure: on a reload under load that is every busy connection.
pub const IDLE_GRACE: Duration = Duration::from_secs(1);

/// A broadcast that fires once: a semaphore with no permits, closed to drain.
/// Waiters unregister when their future is dropped, so waiting per request
/// leaves nothing behind.
pub struct Drain {
    gate: Rc<Semaphore>,
    /// Closed `IDLE_GRACE` after `gate`: idle connections close then.
    idle_gate: Rc<Semaphore>,
}

impl Default for Drain {
    fn default() -> Self {
        Drain {
            gate: Rc::new(Semaphore::new(0)),
            idle_gate: Rc::new(Semaphore::new(0)),
        }
    }
}

impl Drain {
    pub fn is_draining(&self) -> bool {
        self.gate.is_closed()
    }

    /// Resolves once draining has started.
    pub async fn started(&self) {
        // No permit is ever added: acquiring only ends when the gate closes.
        let _ = self.gate.acquire().await;
    }

    /// Resolves `IDLE_GRACE` after draining has started: an idle connection
    /// closes then. (A second gate rather than a timer per waiter keeps every
    /// idle connection's task small.)
    pub async fn idle_expired(&self) {
        let _ = self.idle_gate.acquire().await;
    }

    pub fn start(&self) {
        self.gate.close();
    }
}

/// Waits for the shared flag, then drains this shard and waits until it has
/// no client connection left (`open` reports how many there are).
pub async fn watch(flag: Arc<AtomicBool>, drain: &Drain, open: impl Fn() -> usize) {
    while !flag.load(Ordering::Relaxed) {
        monoio::time::sleep(DRAIN_POLL).await;
    }
    drain.start();
    let started = std::time::Instant::now();
    while open() > 0 {
        monoio::time::sleep(DRAIN_POLL).await;
        if started.elapsed() >= IDLE_GRACE {
            drain.idle_gate.close();
        }
    }
}
