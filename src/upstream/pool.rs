//! The per-shard upstream pool: idle keep-alive connections per backend
//! address (newest first), a liveness check before reuse, and a cap of
//! `server.max_sockets` connections in use per backend on this shard.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::time::{Duration, Instant};

use local_sync::semaphore::{OwnedSemaphorePermit, Semaphore};
use monoio::net::TcpStream;
use monoio_rustls::TlsConnector;
use rustls::pki_types::ServerName;

use super::stream::UpstreamStream;

struct Idle {
    stream: UpstreamStream,
    since: Instant,
}

/// Idle connections are reusable only for the same address and TLS name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PoolKey {
    pub addr: SocketAddr,
    /// The SNI name for `https://` backends; `None` for plain HTTP.
    pub tls_name: Option<String>,
}

pub struct UpstreamPool {
    idle: RefCell<HashMap<PoolKey, Vec<Idle>>>,
    in_use: RefCell<HashMap<SocketAddr, Rc<Semaphore>>>,
    max_sockets: usize,
    idle_timeout: Duration,
}

/// A connection slot for one backend, released when dropped.
pub struct Slot {
    _permit: OwnedSemaphorePermit,
}

impl UpstreamPool {
    pub fn new(max_sockets: usize, idle_timeout: Duration) -> Self {
        UpstreamPool {
            idle: RefCell::new(HashMap::new()),
            in_use: RefCell::new(HashMap::new()),
            max_sockets,
            idle_timeout,
        }
    }

    fn semaphore(&self, addr: SocketAddr) -> Rc<Semaphore> {
        self.in_use
            .borrow_mut()
            .entry(addr)
            .or_insert_with(|| Rc::new(Semaphore::new(self.max_sockets)))
            .clone()
    }

    /// A slot for `addr`, waiting at most `limit` until fewer than
    /// `max_sockets` connections to it are in use; `None` after that. A
    /// slot free now is taken without setting a timer (freed slots go to
    /// waiters first, so this never takes one from a request waiting).
    pub async fn slot_within(&self, addr: SocketAddr, limit: Duration) -> Option<Slot> {
        let semaphore = self.semaphore(addr);
        let permit = match semaphore.clone().try_acquire_owned() {
            Ok(permit) => permit,
            // The semaphore is never closed: an error is only the timeout.
            Err(_) => crate::clock::timeout(limit, semaphore.acquire_owned())
                .await
                .ok()?
                .ok()?,
        };
        Some(Slot { _permit: permit })
    }

    /// An idle connection for `key` that still looks alive, if any.
    pub fn take_idle(&self, key: &PoolKey) -> Option<UpstreamStream> {
        let mut idle = self.idle.borrow_mut();
        let list = idle.get_mut(key)?;
        let now = crate::clock::now();
        while let Some(conn) = list.pop() {
            if now.duration_since(conn.since) < self.idle_timeout
                && crate::net::is_quiet(conn.stream.raw_fd())
            {
                return Some(conn.stream);
            }
        }
        None
    }

    /// Idle connections kept now, over every backend.
    pub fn idle_count(&self) -> usize {
        self.idle.borrow().values().map(Vec::len).sum()
    }

    /// Backends with idle connections or a connection slot map entry.
    pub fn key_count(&self) -> usize {
        self.idle.borrow().len() + self.in_use.borrow().len()
    }

    /// Closes idle connections that expired or that the backend closed (a
    /// socket it closed would otherwise sit in CLOSE-WAIT until the same
    /// backend is used again, which after a deploy is never), and forgets
    /// backends nobody uses: their idle lists once empty, their slot
    /// semaphores once no request holds or waits for one. Run once a second
    /// by the shard; returns how many connections it closed.
    pub fn sweep(&self) -> usize {
        let now = crate::clock::now();
        let mut closed = 0;
        self.idle.borrow_mut().retain(|_, list| {
            let before = list.len();
            list.retain(|c| {
                now.duration_since(c.since) < self.idle_timeout
                    && crate::net::is_quiet(c.stream.raw_fd())
            });
            closed += before - list.len();
            !list.is_empty()
        });
        // A semaphore is shared only with the permits and waiters of
        // requests in flight: alone, it serves nobody.
        self.in_use
            .borrow_mut()
            .retain(|_, sem| Rc::strong_count(sem) > 1);
        closed
    }

    /// Keeps `stream` for reuse, unless `max_sockets` idle ones are already kept.
    pub fn put_idle(&self, key: PoolKey, stream: UpstreamStream) {
        self.put_idle_at(key, stream, crate::clock::now());
    }

    fn put_idle_at(&self, key: PoolKey, stream: UpstreamStream, now: Instant) {
        let mut idle = self.idle.borrow_mut();
        let list = idle.entry(key).or_default();
        // Oldest first (pushed in clock order, reused from the end): the
        // expired ones are a prefix, found without visiting the rest.
        let expired = list
            .iter()
            .take_while(|c| now.duration_since(c.since) >= self.idle_timeout)
            .count();
        list.drain(..expired);
        if list.len() < self.max_sockets {
            list.push(Idle { stream, since: now });
        }
    }
}

/// Connects to `addr` within `timeout`, with Nagle off (heads and small
/// bodies go out at once), and for `https://` backends completes a verified
/// TLS handshake with SNI `tls_name` within the same time.
pub async fn connect(
    addr: SocketAddr,
    tls_name: Option<&str>,
    connector: &TlsConnector,
    timeout: Duration,
) -> io::Result<UpstreamStream> {
    let attempt = async {
        let stream = TcpStream::connect_addr(addr).await?;
        let _ = stream.set_nodelay(true);
        let Some(name) = tls_name else {
            return Ok(UpstreamStream::Plain(stream));
        };
        let server_name = ServerName::try_from(name.to_string())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{name}: {e}")))?;
        let fd = stream.as_raw_fd();
        let tls = connector.connect(server_name, stream).await.map_err(|e| {
            io::Error::new(io::ErrorKind::InvalidData, format!("TLS to {name}: {e}"))
        })?;
        Ok(UpstreamStream::tls(tls, fd))
    };
    crate::clock::timeout(timeout, attempt)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))?
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Connections to a listener that accepts nothing: idle and quiet.
    fn streams(n: usize) -> (std::net::TcpListener, Vec<UpstreamStream>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let streams = (0..n)
            .map(|_| {
                let std = std::net::TcpStream::connect(addr).unwrap();
                UpstreamStream::Plain(TcpStream::from_std(std).unwrap())
            })
            .collect();
        (listener, streams)
    }

    #[test]
    fn expired_connections_are_dropped_as_new_ones_come_and_the_newest_is_reused() {
        monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .build()
            .unwrap()
            .block_on(async {
                let timeout = Duration::from_secs(10);
                let pool = UpstreamPool::new(8, timeout);
                let (listener, mut conns) = streams(4);
                let key = PoolKey {
                    addr: listener.local_addr().unwrap(),
                    tls_name: None,
                };
                let start = crate::clock::now();
                let newest = conns[3].raw_fd();
                for (i, conn) in conns.drain(..3).enumerate() {
                    pool.put_idle_at(key.clone(), conn, start + Duration::from_secs(i as u64));
                }
                assert_eq!(pool.idle_count(), 3);
                // At start + 11 s the first two (put at 0 s and 1 s) expired.
                let later = start + Duration::from_secs(11);
                pool.put_idle_at(key.clone(), conns.pop().unwrap(), later);
                assert_eq!(pool.idle_count(), 2);
                let reused = pool.take_idle(&key).expect("a live idle connection");
                assert_eq!(reused.raw_fd(), newest);
            });
    }
}
