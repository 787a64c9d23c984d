//! The listening sockets of a config, owned by the master and handed down as
//! inherited file descriptors: to each worker it starts, and to its own new
//! image on a binary upgrade. They are named in one environment variable,
//! `http/127.0.0.1:8080=3,4;admin/127.0.0.1:9090=5`, keyed by the address as
//! configured (so `port = 0` keeps its one resolved port across reloads).

use std::collections::HashMap;
use std::fmt;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use super::listener::{bind_group, BindError};

/// The variable that carries the descriptors.
pub const SOCKETS_ENV: &str = "LOPACHE_SOCKETS";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Http,
    Https,
    Admin,
}

/// One configured listening address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SocketKey {
    pub kind: Kind,
    pub addr: SocketAddr,
}

impl fmt::Display for SocketKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            Kind::Http => "http",
            Kind::Https => "https",
            Kind::Admin => "admin",
        };
        write!(f, "{kind}/{}", self.addr)
    }
}

impl std::str::FromStr for SocketKey {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (kind, addr) = s.split_once('/').ok_or_else(|| format!("bad key {s:?}"))?;
        let kind = match kind {
            "http" => Kind::Http,
            "https" => Kind::Https,
            "admin" => Kind::Admin,
            _ => return Err(format!("bad socket kind {kind:?}")),
        };
        let addr = addr.parse().map_err(|_| format!("bad address {addr:?}"))?;
        Ok(SocketKey { kind, addr })
    }
}

/// Groups of listening sockets, one group per key.
#[derive(Default)]
pub struct Sockets {
    groups: Vec<(SocketKey, Vec<OwnedFd>)>,
}

impl Sockets {
    /// Makes sure every key has (at least) its number of sockets: groups
    /// already held are kept (grown if there are now more shards), new keys
    /// are bound. Nothing is closed here; see `retain`.
    pub fn bind(&mut self, wanted: &[(SocketKey, usize)]) -> Result<(), BindError> {
        for &(key, want) in wanted {
            let existing = self.groups.iter_mut().find(|(k, _)| *k == key);
            match existing {
                Some((_, fds)) if fds.len() >= want => {}
                Some((_, fds)) => {
                    let actual = local_addr(&fds[0]).unwrap_or(key.addr);
                    let (more, _) = bind_group(actual, want - fds.len(), true)?;
                    fds.extend(more.into_iter().map(OwnedFd::from));
                }
                None => {
                    let (fds, _) = bind_group(key.addr, want, false)?;
                    self.groups
                        .push((key, fds.into_iter().map(OwnedFd::from).collect()));
                }
            }
        }
        Ok(())
    }

    /// Closes every socket beyond `keep` (key -> how many of its group stay).
    pub fn retain(&mut self, keep: &HashMap<SocketKey, usize>) {
        self.groups.retain_mut(|(key, fds)| match keep.get(key) {
            Some(&n) => {
                fds.truncate(n);
                n > 0
            }
            None => false,
        });
    }

    /// How many sockets each group has (what a worker started now holds).
    pub fn counts(&self) -> HashMap<SocketKey, usize> {
        self.groups.iter().map(|(k, f)| (*k, f.len())).collect()
    }

    /// Closes everything.
    pub fn close_all(&mut self) {
        self.groups.clear();
    }

    /// The environment value naming every descriptor.
    pub fn encode(&self) -> String {
        let groups: Vec<String> = self
            .groups
            .iter()
            .map(|(key, fds)| {
                let fds: Vec<String> = fds.iter().map(|f| f.as_raw_fd().to_string()).collect();
                format!("{key}={}", fds.join(","))
            })
            .collect();
        groups.join(";")
    }

    pub fn raw_fds(&self) -> Vec<RawFd> {
        self.groups
            .iter()
            .flat_map(|(_, fds)| fds.iter().map(|f| f.as_raw_fd()))
            .collect()
    }

    /// Takes ownership of the descriptors named in `SOCKETS_ENV`; none when
    /// the variable is unset. Only descriptors that are listening sockets are
    /// accepted, so a stale or forged value cannot hand us some other file.
    pub fn inherit() -> Result<Sockets, String> {
        let Ok(value) = std::env::var(SOCKETS_ENV) else {
            return Ok(Sockets::default());
        };
        let mut sockets = Sockets::default();
        for group in value.split(';').filter(|g| !g.is_empty()) {
            let (key, fds) = group
                .split_once('=')
                .ok_or_else(|| format!("{SOCKETS_ENV}: bad group {group:?}"))?;
            let key: SocketKey = key.parse().map_err(|e| format!("{SOCKETS_ENV}: {e}"))?;
            let mut owned = Vec::new();
            for fd in fds.split(',') {
                let fd: RawFd = fd
                    .parse()
                    .map_err(|_| format!("{SOCKETS_ENV}: bad descriptor {fd:?}"))?;
                if !is_listening_socket(fd) {
                    return Err(format!(
                        "{SOCKETS_ENV}: descriptor {fd} for {key} is not a listening socket"
                    ));
                }
                // SAFETY: the descriptor was checked to be an open listening
                // socket that this process inherited and nothing else owns.
                owned.push(unsafe { OwnedFd::from_raw_fd(fd) });
            }
            set_cloexec(&owned, true);
            sockets.groups.push((key, owned));
        }
        Ok(sockets)
    }

    /// Removes and returns a key's sockets as std listeners.
    pub fn take(&mut self, key: SocketKey) -> Option<Vec<TcpListener>> {
        let at = self.groups.iter().position(|(k, _)| *k == key)?;
        let (_, fds) = self.groups.remove(at);
        Some(fds.into_iter().map(TcpListener::from).collect())
    }
}

/// The address a listening socket is bound to (its real port).
pub fn local_addr(fd: &OwnedFd) -> Option<SocketAddr> {
    socket2::SockRef::from(fd).local_addr().ok()?.as_socket()
}

fn is_listening_socket(fd: RawFd) -> bool {
    let mut value: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into a local int; on a
    // descriptor that is not an open socket it fails and we return false.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_ACCEPTCONN,
            (&mut value as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    rc == 0 && value == 1
}

/// Sets or clears close-on-exec on each descriptor.
pub fn set_cloexec<F: AsRawFd>(fds: &[F], on: bool) {
    for fd in fds {
        set_fd_cloexec(fd.as_raw_fd(), on);
    }
}

/// Sets or clears close-on-exec on one descriptor. Async-signal-safe (plain
/// fcntl calls), so it may run between fork and exec.
pub fn set_fd_cloexec(fd: RawFd, on: bool) {
    // SAFETY: fcntl on a descriptor we hold, reading then writing its flags.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFD);
        if flags >= 0 {
            let flags = if on {
                flags | libc::FD_CLOEXEC
            } else {
                flags & !libc::FD_CLOEXEC
            };
            libc::fcntl(fd, libc::F_SETFD, flags);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_through_their_text() {
        for text in [
            "http/127.0.0.1:0",
            "https/[::1]:8443",
            "admin/10.0.0.1:9090",
        ] {
            let key: SocketKey = text.parse().unwrap();
            assert_eq!(key.to_string(), text);
        }
        assert!("ftp/127.0.0.1:1".parse::<SocketKey>().is_err());
        assert!("http/nowhere".parse::<SocketKey>().is_err());
    }

    #[test]
    fn groups_grow_with_shards_and_keep_their_port() {
        let http = SocketKey {
            kind: Kind::Http,
            addr: "127.0.0.1:0".parse().unwrap(),
        };
        let admin = SocketKey {
            kind: Kind::Admin,
            addr: "127.0.0.1:0".parse().unwrap(),
        };
        let mut sockets = Sockets::default();
        sockets.bind(&[(http, 2), (admin, 1)]).unwrap();
        let counts = sockets.counts();
        assert_eq!(counts.len(), 2);
        assert_eq!(counts[&http], 2);
        let port = local_addr(&sockets.groups[0].1[0]).unwrap().port();
        sockets.bind(&[(http, 3), (admin, 1)]).unwrap();
        assert_eq!(sockets.counts()[&http], 3);
        for fd in &sockets.groups[0].1 {
            assert_eq!(local_addr(fd).unwrap().port(), port);
            assert!(is_listening_socket(fd.as_raw_fd()));
        }
        sockets.retain(&counts);
        assert_eq!(sockets.counts(), counts);
        sockets.retain(&HashMap::new());
        assert!(sockets.encode().is_empty());
    }
}
