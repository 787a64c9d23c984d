//! Host name resolution that never blocks a shard: IP literals are parsed in
//! place; names go to the runtime's blocking pool and are cached per shard.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::time::{Duration, Instant};

/// Resolves `host:port` on the blocking pool (getaddrinfo may take seconds).
pub async fn lookup(host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
    if let Ok(ip) = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
    {
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

/// Names kept per shard; past this, expired ones go, and then all.
const MAX_NAMES: usize = 10_000;

/// Per-shard cache of resolved names with a fixed TTL.
pub struct Resolver {
    ttl: Duration,
    cache: RefCell<HashMap<(String, u16), (SocketAddr, Instant)>>,
}

impl Resolver {
    pub fn new(ttl: Duration) -> Self {
        Resolver {
            ttl,
            cache: RefCell::new(HashMap::new()),
        }
    }

    /// One address for `host:port`, from the cache when fresh.
    pub async fn resolve(&self, host: &str, port: u16) -> io::Result<SocketAddr> {
        if let Ok(ip) = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
        {
            return Ok(SocketAddr::new(ip, port));
        }
        let key = (host.to_string(), port);
        if let Some((addr, at)) = self.cache.borrow().get(&key) {
            if at.elapsed() < self.ttl {
                return Ok(*addr);
            }
        }
        let addrs = lookup(host, port).await?;
        let addr = addrs[fastrand::usize(..addrs.len())];
        let mut cache = self.cache.borrow_mut();
        if cache.len() >= MAX_NAMES {
            let ttl = self.ttl;
            cache.retain(|_, (_, at)| at.elapsed() < ttl);
            if cache.len() >= MAX_NAMES {
                cache.clear();
            }
        }
        cache.insert(key, (addr, Instant::now()));
        Ok(addr)
    }

    /// Forgets expired names (run by the shard once a second, so names of
    /// backends long gone do not stay); returns how many are kept.
    pub fn sweep(&self) -> usize {
        let ttl = self.ttl;
        let mut cache = self.cache.borrow_mut();
        cache.retain(|_, (_, at)| at.elapsed() < ttl);
        cache.len()
    }
}
