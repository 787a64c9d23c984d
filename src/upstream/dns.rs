//! Host name resolution that never blocks a shard: IP literals are parsed in
//! place; names go to the worker's resolver threads and are cached per shard.
//!
//! getaddrinfo cannot be cancelled and a resolver that does not answer holds
//! its thread for the libc timeout (seconds), so one slow name must not take
//! the capacity other names need:
//! - concurrent lookups of one name on a shard share one resolution;
//! - a shard runs at most [`LOOKUPS_PER_SHARD`] resolutions at once, and the
//!   worker has that many threads per shard, so a lookup never queues behind
//!   another shard's; past the cap a new name fails at once ("resolver busy")
//!   instead of waiting;
//! - a requester that gives up (its `connect_timeout`, or its client gone)
//!   just stops waiting; the resolution finishes on its own and its answer
//!   is cached for the next request.

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::poll_fn;
use std::io;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

/// Resolutions one shard runs at once (and resolver threads per shard).
pub const LOOKUPS_PER_SHARD: usize = 8;

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

type Key = (String, u16);
/// A resolution's outcome, shared by everyone waiting for it (io::Error is
/// not Clone: its kind and text are, and make an equal error per waiter).
type Outcome = Result<SocketAddr, (io::ErrorKind, String)>;

/// One resolution in flight and the requests waiting for it.
#[derive(Default)]
struct InFlight {
    outcome: RefCell<Option<Outcome>>,
    waiters: RefCell<Vec<Waker>>,
}

#[derive(Default)]
struct Names {
    cache: HashMap<Key, (SocketAddr, Instant)>,
    in_flight: HashMap<Key, Rc<InFlight>>,
}

/// Per-shard cache of resolved names with a fixed TTL.
pub struct Resolver {
    ttl: Duration,
    names: Rc<RefCell<Names>>,
}

impl Resolver {
    pub fn new(ttl: Duration) -> Self {
        Resolver {
            ttl,
            names: Rc::default(),
        }
    }

    /// One address for `host:port`, from the cache when fresh.
    pub async fn resolve(&self, host: &str, port: u16) -> io::Result<SocketAddr> {
        if let Some(ip) = ip_literal(host) {
            return Ok(SocketAddr::new(ip, port));
        }
        let key = (host.to_string(), port);
        let flight = {
            let mut names = self.names.borrow_mut();
            if let Some((addr, at)) = names.cache.get(&key) {
                if at.elapsed() < self.ttl {
                    return Ok(*addr);
                }
            }
            match names.in_flight.get(&key) {
                Some(f) => f.clone(),
                None if names.in_flight.len() >= LOOKUPS_PER_SHARD => {
                    return Err(io::Error::other(format!(
                        "resolver busy: {LOOKUPS_PER_SHARD} names being resolved"
                    )));
                }
                None => {
                    let f = Rc::new(InFlight::default());
                    names.in_flight.insert(key.clone(), f.clone());
                    // Its own task: the resolution outlives a requester that
                    // stops waiting, and its answer still gets cached.
                    monoio::spawn(run(self.names.clone(), key, f.clone(), self.ttl));
                    f
                }
            }
        };
        let outcome = poll_fn(|cx| {
            if let Some(o) = flight.outcome.borrow().as_ref() {
                return Poll::Ready(o.clone());
            }
            let mut waiters = flight.waiters.borrow_mut();
            if !waiters.iter().any(|w| w.will_wake(cx.waker())) {
                waiters.push(cx.waker().clone());
            }
            Poll::Pending
        })
        .await;
        outcome.map_err(|(kind, text)| io::Error::new(kind, text))
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

/// Resolves one name, caches a success, and wakes whoever still waits.
async fn run(names: Rc<RefCell<Names>>, key: Key, flight: Rc<InFlight>, ttl: Duration) {
    let outcome = match lookup(&key.0, key.1).await {
        Ok(addrs) => Ok(addrs[fastrand::usize(..addrs.len())]),
        Err(e) => Err((e.kind(), e.to_string())),
    };
    {
        let mut names = names.borrow_mut();
        names.in_flight.remove(&key);
        if let Ok(addr) = outcome {
            if names.cache.len() >= MAX_NAMES {
                names.cache.retain(|_, (_, at)| at.elapsed() < ttl);
                if names.cache.len() >= MAX_NAMES {
                    names.cache.clear();
                }
            }
            names.cache.insert(key, (addr, Instant::now()));
        }
    }
    *flight.outcome.borrow_mut() = Some(outcome);
    for w in flight.waiters.borrow_mut().drain(..) {
        w.wake();
    }
}
