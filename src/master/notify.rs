//! systemd's notification protocol without libsystemd: one datagram to the
//! socket named by `NOTIFY_SOCKET` (a path, or `@name` in the abstract
//! namespace). Nothing happens when the variable is unset (not run by
//! systemd with `Type=notify`).

use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};

use crate::log_warn;

/// Sends `state` (e.g. `READY=1`, `MAINPID=123\nREADY=1`); a failure is
/// logged, never fatal.
pub fn send(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let bytes = path.as_bytes();
    let addr = match bytes.strip_prefix(b"@") {
        Some(name) => SocketAddr::from_abstract_name(name),
        None => SocketAddr::from_pathname(&path),
    };
    let sent = addr.and_then(|addr| {
        UnixDatagram::unbound().and_then(|s| s.send_to_addr(state.as_bytes(), &addr))
    });
    if let Err(e) = sent {
        log_warn!("cannot notify systemd ({}): {e}", path.to_string_lossy());
    }
}
