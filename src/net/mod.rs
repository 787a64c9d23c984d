//! Listening sockets (socket2, SO_REUSEPORT, one per shard per address) and
//! the accept loop with its connection cap and EMFILE back-off.

pub mod accept;
pub mod listener;
pub mod sockets;
pub mod stream;

/// An error that says lopache itself ran short (descriptors, socket buffers,
/// memory, local ports), not that the peer failed. Such errors are never
/// blamed on a backend.
pub fn is_local_shortage(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM | libc::EADDRNOTAVAIL)
    )
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
