//! Sockets: the listening sockets (socket2, SO_REUSEPORT, one per shard per
//! address) the master holds and hands down, and the socket-level facts the
//! layers above ask about (a local shortage, an idle peer that spoke).

pub mod arrival;
pub mod cidr;
pub mod listener;
pub mod proxy_protocol;
pub mod sockets;

/// An error that says lopache itself ran short (descriptors, socket buffers,
/// memory, local ports), not that the peer failed. Such errors are never
/// blamed on a backend.
pub fn is_local_shortage(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM | libc::EADDRNOTAVAIL)
    )
}

/// An idle connection (a pooled backend connection, the Redis connection
/// between batches) must have nothing to read: a 0-byte peek means the peer
/// closed it, bytes mean it sent something unsolicited, and only "would
/// block" means it is still open and quiet.
pub fn is_quiet(fd: std::os::fd::RawFd) -> bool {
    let mut byte = [0u8; 1];
    matches!(recv_now(fd, &mut byte, libc::MSG_PEEK), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
}

/// One `recv` that never waits (`MSG_DONTWAIT` besides `flags`), whatever
/// mode the runtime left the fd in.
pub fn recv_now(
    fd: std::os::fd::RawFd,
    buf: &mut [u8],
    flags: libc::c_int,
) -> std::io::Result<usize> {
    // SAFETY: recv on an open fd the caller's stream owns, into a buffer of
    // `buf.len()` writable bytes.
    let n = unsafe {
        libc::recv(
            fd,
            buf.as_mut_ptr().cast(),
            buf.len(),
            flags | libc::MSG_DONTWAIT,
        )
    };
    if n < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::is_local_shortage;
    use std::io::Error;

    #[test]
    fn local_shortages_are_told_from_peer_failures() {
        for code in [
            libc::EMFILE,
            libc::ENFILE,
            libc::ENOBUFS,
            libc::ENOMEM,
            libc::EADDRNOTAVAIL,
        ] {
            assert!(is_local_shortage(&Error::from_raw_os_error(code)), "{code}");
        }
        for code in [
            libc::ECONNREFUSED,
            libc::ETIMEDOUT,
            libc::EHOSTUNREACH,
            libc::ECONNRESET,
        ] {
            assert!(
                !is_local_shortage(&Error::from_raw_os_error(code)),
                "{code}"
            );
        }
        assert!(!is_local_shortage(&Error::other("TLS")));
    }
}
