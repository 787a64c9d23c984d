//! Termination signals. SIGTERM and SIGINT are blocked in every thread (the
//! mask is set before shards start, so they inherit it) and taken by one
//! thread with `sigwait`, which reports them to the main thread. Draining
//! in-flight requests before exiting arrives with the operations work; for
//! now a signal ends the process with status 0.

use std::sync::mpsc::Sender;

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
        set
    }
}

/// Blocks SIGTERM and SIGINT for this thread and every thread it starts later.
pub fn block_termination() {
    let set = termination_set();
    // SAFETY: pthread_sigmask with a valid, initialised set and a null old-set
    // pointer only changes this thread's signal mask.
    unsafe {
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

/// Starts the thread that waits for SIGTERM/SIGINT and reports the first one.
pub fn spawn_waiter(tx: Sender<Stop>) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("lopache-signals".into())
        .spawn(move || {
            let set = termination_set();
            let mut sig: libc::c_int = 0;
            // SAFETY: sigwait reads the initialised set and writes the received
            // signal number into a local; the signals are blocked in all threads.
            if unsafe { libc::sigwait(&set, &mut sig) } == 0 {
                let _ = tx.send(Stop::Signal(sig));
            }
        })?;
    Ok(())
}
