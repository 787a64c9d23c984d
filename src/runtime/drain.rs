//! Graceful drain, per shard. The main thread raises a shared flag on
//! SIGTERM/SIGINT; each shard notices within `DRAIN_POLL`, closes its gate,
//! and everything waiting on the gate wakes: accept loops stop (closing the
//! listeners), idle keep-alive connections close, responses in flight finish
//! with `Connection: close`, tunnels run on. The shard ends when its last
//! connection does; the main thread stops waiting at `server.drain_timeout`.

use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use local_sync::semaphore::Semaphore;

/// How often a shard looks at the shared flag (the flag crosses threads; the
/// gate below never does).
pub const DRAIN_POLL: Duration = Duration::from_millis(50);

/// A broadcast that fires once: a semaphore with no permits, closed to drain.
/// Waiters unregister when their future is dropped, so waiting per request
/// leaves nothing behind.
pub struct Drain {
    gate: Rc<Semaphore>,
}

impl Default for Drain {
    fn default() -> Self {
        Drain {
            gate: Rc::new(Semaphore::new(0)),
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
    while open() > 0 {
        monoio::time::sleep(DRAIN_POLL).await;
    }
}
