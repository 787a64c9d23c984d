//! The master's signals, read from a signalfd so one `poll` waits for them,
//! for worker readiness and for timers alike. They are blocked first thing;
//! workers get a clean mask (std resets it between fork and exec).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// SIGHUP reload, SIGUSR2 upgrade, SIGUSR1 reopen logs, SIGTERM/SIGINT/SIGQUIT
/// stop, SIGCHLD a worker ended, SIGWINCH a new master (started by our
/// SIGUSR2) serves and this one retires.
const HANDLED: [libc::c_int; 8] = [
    libc::SIGHUP,
    libc::SIGUSR1,
    libc::SIGUSR2,
    libc::SIGTERM,
    libc::SIGINT,
    libc::SIGQUIT,
    libc::SIGCHLD,
    libc::SIGWINCH,
];

pub struct SignalFd(OwnedFd);

fn handled_set() -> libc::sigset_t {
    // SAFETY: sigemptyset/sigaddset initialise and fill a local sigset_t.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for sig in HANDLED {
            libc::sigaddset(&mut set, sig);
        }
        set
    }
}

impl SignalFd {
    /// Blocks the handled signals and opens a non-blocking signalfd for them.
    pub fn open() -> io::Result<SignalFd> {
        let set = handled_set();
        // SAFETY: sigprocmask and signalfd take a valid, initialised set; the
        // returned descriptor is new and owned by us alone.
        unsafe {
            if libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) != 0 {
                return Err(io::Error::last_os_error());
            }
            let fd = libc::signalfd(-1, &set, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK);
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(SignalFd(OwnedFd::from_raw_fd(fd)))
        }
    }

    /// Every signal that arrived since the last call, in order, with the
    /// pid of its sender.
    pub fn drain(&self) -> Vec<(libc::c_int, i32)> {
        let mut out = Vec::new();
        loop {
            // SAFETY: signalfd_siginfo is plain data, valid when zeroed.
            let mut info: libc::signalfd_siginfo = unsafe { std::mem::zeroed() };
            let size = std::mem::size_of::<libc::signalfd_siginfo>();
            // SAFETY: read writes at most `size` bytes into `info`, and we only
            // look at it after a full read.
            let n = unsafe {
                libc::read(
                    self.0.as_raw_fd(),
                    (&mut info as *mut libc::signalfd_siginfo).cast(),
                    size,
                )
            };
            if n != size as isize {
                return out;
            }
            out.push((info.ssi_signo as libc::c_int, info.ssi_pid as i32));
        }
    }

    pub fn raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

/// Sends `sig` to `pid`, ignoring a process that has already gone.
pub fn send(pid: i32, sig: libc::c_int) {
    // SAFETY: kill takes plain integers; a vanished pid only yields ESRCH.
    unsafe { libc::kill(pid, sig) };
}
