//! Binding: for each configured address, one SO_REUSEPORT socket per shard so
//! the kernel spreads connections across shards. Sockets are bound on the main
//! thread (so port 0 resolves to one port for every shard, and failures stop
//! startup before any shard runs) and handed to the shards.

use std::io;
use std::net::{SocketAddr, TcpListener};

use socket2::{Domain, Protocol, Socket, Type};

const BACKLOG: i32 = 4096;

#[derive(Debug, thiserror::Error)]
pub enum BindError {
    #[error("{addr} is already in use by another process")]
    InUse { addr: SocketAddr },
    #[error("cannot listen on {addr}: {source}")]
    Io { addr: SocketAddr, source: io::Error },
}

fn reuseport_socket(addr: SocketAddr) -> io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    if addr.is_ipv6() {
        // `::` should not silently also take IPv4; bind both if both are wanted.
        socket.set_only_v6(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    Ok(socket)
}

/// Refuses an address that another process already listens on. SO_REUSEPORT
/// would otherwise let us join its group (same user) and silently split its
/// traffic; a probe bound without SO_REUSEPORT fails if anyone holds the port.
fn ensure_free(addr: SocketAddr) -> Result<(), BindError> {
    let probe = || -> io::Result<()> {
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        socket.set_reuse_address(true)?;
        if addr.is_ipv6() {
            socket.set_only_v6(true)?;
        }
        socket.bind(&addr.into())
    };
    match probe() {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => Err(BindError::InUse { addr }),
        Err(source) => Err(BindError::Io { addr, source }),
    }
}

/// Binds every address once per shard. Returns, per shard, its listeners in
/// address order, and the actual addresses (port 0 resolved).
pub fn bind_all(
    addrs: &[SocketAddr],
    shards: usize,
) -> Result<(Vec<Vec<TcpListener>>, Vec<SocketAddr>), BindError> {
    let mut per_shard: Vec<Vec<TcpListener>> = (0..shards).map(|_| Vec::new()).collect();
    let mut bound = Vec::with_capacity(addrs.len());
    for &addr in addrs {
        if addr.port() != 0 {
            ensure_free(addr)?;
        }
        let first = reuseport_socket(addr).map_err(|source| BindError::Io { addr, source })?;
        let actual = first
            .local_addr()
            .ok()
            .and_then(|a| a.as_socket())
            .ok_or_else(|| BindError::Io {
                addr,
                source: io::Error::other("no local address"),
            })?;
        bound.push(actual);
        per_shard[0].push(first.into());
        for shard in per_shard.iter_mut().skip(1) {
            let s = reuseport_socket(actual).map_err(|source| BindError::Io {
                addr: actual,
                source,
            })?;
            shard.push(s.into());
        }
    }
    Ok((per_shard, bound))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_zero_is_shared_by_all_shards_and_busy_ports_are_refused() {
        let (per_shard, bound) = bind_all(&["127.0.0.1:0".parse().unwrap()], 3).unwrap();
        assert_eq!(per_shard.len(), 3);
        for l in per_shard.iter().flatten() {
            assert_eq!(l.local_addr().unwrap(), bound[0]);
        }
        let other = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let busy = other.local_addr().unwrap();
        assert!(matches!(bind_all(&[busy], 1), Err(BindError::InUse { .. })));
    }
}
