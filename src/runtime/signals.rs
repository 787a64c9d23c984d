//! The worker's signals, blocked in every thread (the mask is set before
//! shards start, so they inherit it) and taken by one thread with `sigwait`:
//! SIGTERM/SIGINT (the service stops) and SIGQUIT (the master hands over to
//! a new worker) start a drain; SIGUSR1 reopens the access log; SIGHUP and
//! SIGUSR2 are for the master and ignored here, so `pkill -HUP lopache`
//! reaching the worker too does no harm.

use std::sync::mpsc::{Sender, SyncSender};

use crate::observe::access_log;

/// Why the main thread stops waiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    ShardDied(usize),
    Signal(i32),
}

fn termination_set() -> libc::sigset_t {
    // SAFETY: sigemptyset/sigaddset initialise and fill a local sigset_t; the
    // zeroed value is only a placeholder that sigemptyset overwrites.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGQUIT);
        libc::sigaddset(&mut set, libc::SIGUSR1);
        libc::sigaddset(&mut set, libc::SIGHUP);
        libc::sigaddset(&mut set, libc::SIGUSR2);
        set
    }
}

/// Blocks the worker's signals for this thread and every thread it starts later.
pub fn block_termination() {
    let set = termination_set();
    // SAFETY: pthread_sigmask with a valid, initialised set and a null old-set
    // pointer only changes this thread's signal mask.
    unsafe {
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

/// Starts the thread that takes SIGTERM/SIGINT/SIGQUIT (reported to the main
/// thread) and SIGUSR1 (the access log is reopened).
pub fn spawn_waiter(
    tx: Sender<Stop>,
    access_log: Option<SyncSender<access_log::Message>>,
) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("lopache-signals".into())
        .spawn(move || loop {
            let set = termination_set();
            let mut sig: libc::c_int = 0;
            // SAFETY: sigwait reads the initialised set and writes the received
            // signal number into a local; the signals are blocked in all threads.
            if unsafe { libc::sigwait(&set, &mut sig) } != 0 {
                return;
            }
            match sig {
                libc::SIGUSR1 => {
                    if let Some(log) = &access_log {
                        let _ = log.send(access_log::Message::Reopen);
                    }
                }
                libc::SIGHUP | libc::SIGUSR2 => {}
                _ => {
                    if tx.send(Stop::Signal(sig)).is_err() {
                        return;
                    }
                }
            }
        })?;
    Ok(())
}
