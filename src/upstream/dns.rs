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
        self.cache.borrow_mut().insert(key, (addr, Instant::now()));
        Ok(addr)
    }
}
