//! Host name resolution that never blocks a shard: IP literals are parsed in
//! place; names go to the worker's resolver threads and are cached per shard.
//!
//! getaddrinfo cannot be cancelled and a resolver that does not answer holds
//! its thread for the libc timeout (seconds), so one slow name must not take
//! the capacity other names need:
//! - concurrent lookups of one host name on a shard share one resolution
//!   (whatever the port: the address is the host's);
//! - a shard runs at most [`LOOKUPS_PER_SHARD`] resolutions at once, and the
//!   worker has that many threads per shard (and some for Redis host names),
//!   so a resolution never waits for another shard's; more names wait for a
//!   free slot in order, each request for at most its `connect_timeout`;
//! - a resolution nobody waits for any more is dropped before it takes a
//!   slot; one already running finishes on its own and its answer is cached.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use local_sync::semaphore::Semaphore;

/// Resolutions one shard runs at once (and resolver threads per shard).
pub const LOOKUPS_PER_SHARD: usize = 8;
/// Resolver threads per shard beyond those, for Redis host names (looked up
/// when a Redis connection is made, outside the shard's cap).
pub const SPARE_THREADS_PER_SHARD: usize = 2;

/// Names kept per shard; past this, expired ones go, and then all.
const MAX_NAMES: usize = 10_000;

fn ip_literal(host: &str) -> Option<IpAddr> {
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
        .ok()
}

/// Resolves `host:port` on the blocking pool (getaddrinfo may take seconds).
pub async fn lookup(host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
    if let Some(ip) = ip_literal(host) {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let name = host.to_string();
    let joined = monoio::spawn_blocking(move || {
        (name.as_str(), port).to_socket_addrs().map(|a| a.collect())
    })
    .await
    .map_err(|_| io::Error::other("resolver thread failed"))?;
    let addrs: Vec<SocketAddr> = joined?;
    if addrs.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("{host} has no address"),
        ));
    }
    Ok(addrs)
}

/// A resolution's outcome, shared by everyone waiting for it (io::Error is
/// not Clone: its kind and text are, and make an equal error per waiter).
type Outcome = Result<IpAddr, (io::ErrorKind, String)>;

/// One resolution (queued or running) and the requests waiting for it.
#[derive(Default)]
struct InFlight {
    outcome: RefCell<Option<Outcome>>,
    /// Waiting requests by ticket; a request that gives up takes its
    /// ticket out (see [`Wait`]), so only live requesters are kept.
    waiters: RefCell<HashMap<u64, Waker>>,
    next_ticket: Cell<u64>,
}

impl InFlight {
    fn finish(&self, outcome: Outcome) {
        *self.outcome.borrow_mut() = Some(outcome);
        for (_, w) in self.waiters.borrow_mut().drain() {
            w.wake();
        }
    }
}

/// Waits for an [`InFlight`]'s outcome; dropping it withdraws the request.
struct Wait {
    flight: Rc<InFlight>,
    ticket: Option<u64>,
}

impl Future for Wait {
    type Output = Outcome;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Outcome> {
        if let Some(o) = self.flight.outcome.borrow().as_ref() {
            return Poll::Ready(o.clone());
        }
        let ticket = match self.ticket {
            Some(t) => t,
            None => {
                let t = self.flight.next_ticket.get();
                self.flight.next_ticket.set(t + 1);
                self.ticket = Some(t);
                t
            }
        };
        let mut waiters = self.flight.waiters.borrow_mut();
        match waiters.get_mut(&ticket) {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => {
                waiters.insert(ticket, cx.waker().clone());
            }
        }
        Poll::Pending
    }
}

impl Drop for Wait {
    fn drop(&mut self) {
        if let Some(t) = self.ticket {
            self.flight.waiters.borrow_mut().remove(&t);
        }
    }
}

#[derive(Default)]
struct Names {
    cache: HashMap<String, (IpAddr, Instant)>,
    in_flight: HashMap<String, Rc<InFlight>>,
}

/// Per-shard cache of resolved names with a fixed TTL.
pub struct Resolver {
    ttl: Duration,
    names: Rc<RefCell<Names>>,
    slots: Rc<Semaphore>,
}

impl Resolver {
    pub fn new(ttl: Duration) -> Self {
        Resolver {
            ttl,
            names: Rc::default(),
            slots: Rc::new(Semaphore::new(LOOKUPS_PER_SHARD)),
        }
    }

    /// `host` without waiting: an address literal, or a name resolved
    /// within the TTL.
    fn known(&self, host: &str, port: u16) -> Option<SocketAddr> {
        if let Some(ip) = ip_literal(host) {
            return Some(SocketAddr::new(ip, port));
        }
        let names = self.names.borrow();
        let (ip, at) = names.cache.get(host)?;
        (at.elapsed() < self.ttl).then(|| SocketAddr::new(*ip, port))
    }

    /// One address for `host:port`, from the cache when fresh.
    pub async fn resolve(&self, host: &str, port: u16) -> io::Result<SocketAddr> {
        match self.known(host, port) {
            Some(addr) => Ok(addr),
            None => self.look_up(host, port).await,
        }
    }

    /// Resolves a name that is not [`known`](Self::known): joins the
    /// resolution in flight for it, or starts one.
    async fn look_up(&self, host: &str, port: u16) -> io::Result<SocketAddr> {
        let flight = {
            let mut names = self.names.borrow_mut();
            match names.in_flight.get(host) {
                Some(f) => f.clone(),
                None => {
                    let f = Rc::new(InFlight::default());
                    names.in_flight.insert(host.to_string(), f.clone());
                    // Its own task: the resolution outlives a requester that
                    // stops waiting once it runs, and its answer is cached.
                    monoio::spawn(run(
                        self.names.clone(),
                        self.slots.clone(),
                        host.to_string(),
                        f.clone(),
                        self.ttl,
                    ));
                    f
                }
            }
        };
        let outcome = Wait {
            flight,
            ticket: None,
        }
        .await;
        outcome
            .map(|ip| SocketAddr::new(ip, port))
            .map_err(|(kind, text)| io::Error::new(kind, text))
    }

    /// [`resolve`](Self::resolve), given up after `limit` (a `TimedOut`
    /// error): a request waits no longer than its `connect_timeout`, a
    /// health check no longer than its own.
    pub async fn resolve_within(
        &self,
        host: &str,
        port: u16,
        limit: Duration,
    ) -> io::Result<SocketAddr> {
        // An address literal or a name cached fresh: no timer to set.
        if let Some(addr) = self.known(host, port) {
            return Ok(addr);
        }
        monoio::time::timeout(limit, self.look_up(host, port))
            .await
            .unwrap_or_else(|_| {
                Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("{host}: timed out"),
                ))
            })
    }

    /// Forgets expired names (run by the shard once a second, so names of
    /// backends long gone do not stay); returns how many are kept.
    pub fn sweep(&self) -> usize {
        let ttl = self.ttl;
        let mut names = self.names.borrow_mut();
        names.cache.retain(|_, (_, at)| at.elapsed() < ttl);
        names.cache.len()
    }
}

/// Resolves one name when a slot is free, caches a success, and wakes
/// whoever still waits. Skipped when nobody waits by the time a slot frees.
async fn run(
    names: Rc<RefCell<Names>>,
    slots: Rc<Semaphore>,
    host: String,
    flight: Rc<InFlight>,
    ttl: Duration,
) {
    let permit = slots.acquire().await;
    let outcome = if flight.waiters.borrow().is_empty() {
        Err((
            io::ErrorKind::TimedOut,
            format!("{host}: nobody waits any more"),
        ))
    } else {
        match lookup(&host, 0).await {
            Ok(addrs) => Ok(addrs[fastrand::usize(..addrs.len())].ip()),
            Err(e) => Err((e.kind(), e.to_string())),
        }
    };
    drop(permit);
    {
        let mut names = names.borrow_mut();
        names.in_flight.remove(&host);
        if let Ok(ip) = outcome {
            if names.cache.len() >= MAX_NAMES {
                names.cache.retain(|_, (_, at)| at.elapsed() < ttl);
                if names.cache.len() >= MAX_NAMES {
                    names.cache.clear();
                }
            }
            names.cache.insert(host, (ip, Instant::now()));
        }
    }
    flight.finish(outcome);
}
