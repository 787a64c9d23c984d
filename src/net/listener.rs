//! Binding: for each configured address, one SO_REUSEPORT socket per shard so
//! the kernel spreads connections across shards. Sockets are bound on the main
//! thread of the master process (so port 0 resolves to one port for every
//! shard, and failures stop startup before any worker runs) and handed down.

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

/// Binds `count` SO_REUSEPORT sockets to `addr` and returns them with the
/// address they got (port 0 resolved once, shared by the whole group).
/// `joining`: the group already exists in this process, so the address is
/// known to be ours and the probe for other processes is skipped.
pub fn bind_group(
    addr: SocketAddr,
    count: usize,
    joining: bool,
) -> Result<(Vec<TcpListener>, SocketAddr), BindError> {
    if addr.port() != 0 && !joining {
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
    let mut group: Vec<TcpListener> = vec![first.into()];
    for _ in 1..count {
        let s = reuseport_socket(actual).map_err(|source| BindError::Io {
            addr: actual,
            source,
        })?;
        group.push(s.into());
    }
    Ok((group, actual))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_zero_is_shared_by_all_shards_and_busy_ports_are_refused() {
        let (group, bound) = bind_group("127.0.0.1:0".parse().unwrap(), 3, false).unwrap();
        assert_eq!(group.len(), 3);
        for l in &group {
            assert_eq!(l.local_addr().unwrap(), bound);
        }
        let other = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let busy = other.local_addr().unwrap();
        assert!(matches!(
            bind_group(busy, 1, false),
            Err(BindError::InUse { .. })
        ));
    }
}
