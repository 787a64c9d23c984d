//! The master process (the nginx/HAProxy model): it binds and owns every
//! listening socket and keeps one worker process serving on them. The worker
//! is replaced, without a socket ever closing, on SIGHUP (reload: the config
//! is validated first), SIGUSR2 (binary upgrade: the binary on disk starts as
//! a new master holding the same sockets; once its worker serves it tells
//! this master to retire, and a new master that fails leaves this one
//! serving, as nginx's upgrade does), a crash
//! (restarted at once, with back-off when it keeps crashing) and when its RSS
//! passes `server.memory_limit_mb`. A new worker takes over only once it
//! reports that every shard accepts; then the old one drains.
//! Single-threaded on purpose: it forks, and waits on one `poll`.

mod exits;
mod notify;
mod signals;
mod upgrade;
mod worker;

use std::ffi::OsString;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::net::sockets::{Sockets, SOCKETS_ENV};
use crate::{log_error, log_info};
use signals::{send, SignalFd};
use upgrade::Upgrade;
use worker::Worker;

pub use worker::worker_inputs;

/// What `ps`, `top` and `pkill -x` show for the master and for a worker
/// (the kernel keeps 15 bytes). Workers also get it as their argv[0].
pub const MASTER_NAME: &str = "lopache: master";
pub const WORKER_NAME: &str = "lopache: worker";

/// Names the calling thread, which for the main thread is the process name
/// (`/proc/<pid>/comm`).
pub fn set_process_name(name: &str) {
    let Ok(name) = std::ffi::CString::new(name) else {
        return;
    };
    // SAFETY: PR_SET_NAME reads a NUL-terminated string (truncated to 15
    // bytes by the kernel) that outlives the call.
    unsafe { libc::prctl(libc::PR_SET_NAME, name.as_ptr()) };
}

/// Names the workers a re-executed master inherits: `serving=12;draining=10,11`.
/// Masters of earlier releases upgraded by re-executing in place and named
/// their workers so; it is still read, so that such a master hands over to
/// this one.
pub const WORKERS_ENV: &str = "LOPACHE_WORKERS";
/// Set for a new master started by SIGUSR2: the pid of the master it replaces.
pub const UPGRADE_FROM_ENV: &str = "LOPACHE_UPGRADE_FROM";

/// A worker that dies younger than this counts towards a crash loop.
const MIN_UPTIME: Duration = Duration::from_secs(2);
/// First and last pause before restarting a crash-looping worker.
const BACKOFF_START: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// A new worker must report readiness within this, or it is killed.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How often the memory guard reads the worker's RSS.
const MEMORY_CHECK: Duration = Duration::from_secs(1);
/// Grace after `server.drain_timeout` before a draining worker is killed
/// (it enforces the timeout itself; this catches a hung one).
const KILL_GRACE: Duration = Duration::from_secs(5);

/// Why a new worker is being started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Why {
    Start,
    Reload,
    Upgrade,
    Restart,
    Memory,
}

impl Why {
    fn name(self) -> &'static str {
        match self {
            Why::Start => "start",
            Why::Reload => "reload",
            Why::Upgrade => "upgrade",
            Why::Restart => "restart",
            Why::Memory => "memory limit",
        }
    }
}

/// A worker that has not reported readiness yet, with the config it runs.
struct Pending {
    worker: Worker,
    config: Config,
    text: String,
    why: Why,
}

/// A worker told to drain, and when it must be gone.
struct Draining {
    worker: Worker,
    deadline: Instant,
}

struct Master {
    config_path: PathBuf,
    /// The binary on disk, started as the new master on upgrade.
    exe: PathBuf,
    argv0: OsString,
    args: Vec<OsString>,
    /// What the serving worker runs (or will run after a restart).
    config: Config,
    text: String,
    sockets: Sockets,
    serving: Option<Worker>,
    pending: Option<Pending>,
    draining: Vec<Draining>,
    /// A SIGHUP arrived while a worker was starting.
    reload_queued: bool,
    /// Crashes in a row of workers younger than `MIN_UPTIME`.
    crashes: u32,
    /// When to start a replacement worker (after a crash).
    restart_at: Option<Instant>,
    next_memory_check: Instant,
    /// Pause before the memory guard tries again after its replacement
    /// failed to start (doubles, as crash restarts do).
    memory_backoff: Duration,
    /// Set on SIGTERM/SIGINT/SIGQUIT, and when retiring after an upgrade.
    stopping: bool,
    /// A new master started by SIGUSR2 that has not served yet.
    upgrade: Option<Upgrade>,
    /// The new master this one retired for, while this one drains: if it
    /// crashes meanwhile, this one serves again.
    successor: Option<i32>,
    /// This master was started by SIGUSR2: the old master to retire once
    /// the first worker serves.
    replaces: Option<i32>,
    /// No worker has served yet: a failing first worker ends the master.
    first_start: bool,
}

/// Runs the master until it is stopped; returns the process exit code.
/// `config` and `text` are the validated config and its file's text.
pub fn run(config_path: PathBuf, config: Config, text: String) -> ExitCode {
    crate::observe::log::set_master();
    set_process_name(MASTER_NAME);
    let signals = match SignalFd::open() {
        Ok(s) => s,
        Err(e) => {
            log_error!("cannot set up signal handling: {e}");
            return ExitCode::from(1);
        }
    };
    let mut sockets = match Sockets::inherit() {
        Ok(s) => s,
        Err(e) => {
            log_error!("{e}");
            return ExitCode::from(1);
        }
    };
    let adopted = adopted_workers(&sockets);
    let replaces = std::env::var(UPGRADE_FROM_ENV)
        .ok()
        .and_then(|pid| pid.parse::<i32>().ok());
    // Single-threaded here: changing our own environment is safe.
    std::env::remove_var(SOCKETS_ENV);
    std::env::remove_var(WORKERS_ENV);
    std::env::remove_var(UPGRADE_FROM_ENV);
    if let Err(e) = sockets.bind(&config.sockets()) {
        log_error!("{e}");
        return ExitCode::from(1);
    }
    let mut args = std::env::args_os();
    let argv0 = args.next().unwrap_or_else(|| "lopache".into());
    let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from(&argv0));
    let mut master = Master {
        config_path,
        exe,
        argv0,
        args: args.collect(),
        config,
        text,
        sockets,
        serving: None,
        pending: None,
        draining: Vec::new(),
        reload_queued: false,
        crashes: 0,
        restart_at: None,
        next_memory_check: Instant::now() + MEMORY_CHECK,
        memory_backoff: MEMORY_CHECK,
        stopping: false,
        upgrade: None,
        successor: None,
        replaces,
        first_start: true,
    };
    let why = match adopted {
        Some((serving, draining)) => {
            // The binary upgrade continues in the new image: the old serving
            // worker hands over once the new one is ready.
            master.first_start = false;
            let holding = master.sockets.counts();
            master.serving = serving.map(|pid| Worker::adopted(pid, holding.clone()));
            let deadline = crate::clock::from_now(master.config.drain_timeout + KILL_GRACE);
            master.draining = draining
                .into_iter()
                .map(|pid| Draining {
                    worker: Worker::adopted(pid, holding.clone()),
                    deadline,
                })
                .collect();
            Why::Upgrade
        }
        None if replaces.is_some() => Why::Upgrade,
        None => Why::Start,
    };
    let config = master.config.clone();
    let text = master.text.clone();
    if let Err(code) = master.start_worker(config, text, why) {
        return code;
    }
    master.run_loop(&signals)
}

/// Workers named by a previous image of this master: (serving, draining).
fn adopted_workers(sockets: &Sockets) -> Option<(Option<i32>, Vec<i32>)> {
    let value = std::env::var(WORKERS_ENV).ok()?;
    if sockets.raw_fds().is_empty() {
        return None;
    }
    let mut serving = None;
    let mut draining = Vec::new();
    for part in value.split(';') {
        match part.split_once('=') {
            Some(("serving", pid)) => serving = pid.parse().ok(),
            Some(("draining", pids)) => {
                draining.extend(pids.split(',').filter_map(|p| p.parse::<i32>().ok()))
            }
            _ => {}
        }
    }
    Some((serving, draining))
}

impl Master {
    fn run_loop(&mut self, signals: &SignalFd) -> ExitCode {
        loop {
            let mut fds = vec![libc::pollfd {
                fd: signals.raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            }];
            if let Some(ready) = self.pending.as_ref().and_then(|p| p.worker.ready.as_ref()) {
                fds.push(libc::pollfd {
                    fd: ready.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                });
            }
            let timeout = self.next_timer().saturating_duration_since(Instant::now());
            // SAFETY: poll reads and writes the local pollfd array it is given.
            unsafe {
                libc::poll(
                    fds.as_mut_ptr(),
                    fds.len() as libc::nfds_t,
                    timeout.as_millis().min(1000) as libc::c_int,
                )
            };
            for (sig, sender) in signals.drain() {
                self.on_signal(sig, sender);
            }
            if fds.len() > 1 && fds[1].revents != 0 {
                self.check_ready();
            }
            for (pid, status) in worker::reap() {
                if let Err(code) = self.on_exit(pid, status) {
                    return code;
                }
            }
            self.on_timers();
            if self.stopping
                && self.serving.is_none()
                && self.pending.is_none()
                && self.draining.is_empty()
            {
                log_info!("all workers have exited");
                return ExitCode::SUCCESS;
            }
        }
    }

    /// The earliest moment something is due.
    fn next_timer(&self) -> Instant {
        let mut next = self.next_memory_check;
        if let Some(u) = &self.upgrade {
            next = next.min(u.deadline);
        }
        if let Some(at) = self.restart_at {
            next = next.min(at);
        }
        if let Some(p) = &self.pending {
            next = next.min(p.worker.started + READY_TIMEOUT);
        }
        for d in &self.draining {
            next = next.min(d.deadline);
        }
        next
    }

    fn on_signal(&mut self, sig: libc::c_int, sender: i32) {
        match sig {
            libc::SIGHUP if !self.stopping => {
                if let Some(u) = &mut self.upgrade {
                    u.reload_asked = true;
                }
                if self.pending.is_some() {
                    self.reload_queued = true;
                } else {
                    self.reload(Why::Reload);
                }
            }
            libc::SIGUSR2 if !self.stopping => self.upgrade(),
            libc::SIGUSR1 => {
                for pid in self.worker_pids() {
                    send(pid, libc::SIGUSR1);
                }
            }
            libc::SIGTERM | libc::SIGINT | libc::SIGQUIT if !self.stopping => self.stop(sig),
            libc::SIGWINCH if self.upgrade.as_ref().is_some_and(|u| u.pid == sender) => {
                self.retire()
            }
            _ => {}
        }
    }

    fn worker_pids(&self) -> Vec<i32> {
        let mut pids: Vec<i32> = self.draining.iter().map(|d| d.worker.pid).collect();
        pids.extend(self.serving.as_ref().map(|w| w.pid));
        pids.extend(self.pending.as_ref().map(|p| p.worker.pid));
        pids
    }

    /// Stops: listeners close at once (new connections are refused), every
    /// worker drains; the loop ends when the last has exited.
    fn stop(&mut self, sig: libc::c_int) {
        log_info!("signal {sig} received: stopping; workers drain");
        notify::send("STOPPING=1");
        // A new master that has not taken over yet stops with this one.
        if let Some(u) = self.upgrade.take() {
            send(u.pid, libc::SIGTERM);
        }
        self.stopping = true;
        self.restart_at = None;
        self.sockets.close_all();
        let deadline = crate::clock::from_now(self.config.drain_timeout + KILL_GRACE);
        for pid in self.worker_pids() {
            send(pid, libc::SIGTERM);
        }
        for d in &mut self.draining {
            d.deadline = d.deadline.min(deadline);
        }
        if let Some(w) = self.serving.take() {
            self.draining.push(Draining {
                worker: w,
                deadline,
            });
        }
        if let Some(p) = self.pending.take() {
            self.draining.push(Draining {
                worker: p.worker,
                deadline,
            });
        }
    }

    /// SIGHUP (and the memory guard): re-read and validate the config; start
    /// a worker on it. A bad file changes nothing.
    fn reload(&mut self, why: Why) {
        // systemd shows "reloading" until the new worker serves or the
        // reload fails (the old worker serves on either way: READY=1).
        if why == Why::Reload {
            notify::send("RELOADING=1");
        }
        match crate::config::load(&self.config_path) {
            Ok((config, text)) => {
                log_info!("{}: config valid, starting a new worker", why.name());
                let _ = self.start_worker(config, text, why);
            }
            Err(e) => log_error!(
                "{}: {} is invalid, still serving the previous config: {e}",
                why.name(),
                self.config_path.display()
            ),
        }
        if why == Why::Reload && self.pending.is_none() {
            notify::send("READY=1");
        }
    }

    /// Binds what `config` adds and starts a worker on it. Err only for the
    /// first worker of a fresh start (the process then exits with the code).
    fn start_worker(&mut self, config: Config, text: String, why: Why) -> Result<(), ExitCode> {
        let started = match self.sockets.bind(&config.sockets()) {
            Err(e) => Err(e.to_string()),
            Ok(()) => worker::spawn(
                Path::new("/proc/self/exe"),
                WORKER_NAME.as_ref(),
                &self.config_path,
                &text,
                &config.files,
                &self.sockets,
            )
            .map_err(|e| format!("cannot run the worker: {e}")),
        };
        match started {
            Ok(w) => {
                self.pending = Some(Pending {
                    worker: w,
                    config,
                    text,
                    why,
                });
                Ok(())
            }
            Err(e) => {
                log_error!("{}: cannot start a worker: {e}", why.name());
                self.forget_unused_sockets();
                if self.first_start {
                    return Err(ExitCode::from(1));
                }
                if self.serving.is_none() {
                    self.schedule_restart(Duration::ZERO);
                }
                Ok(())
            }
        }
    }

    /// After a failed start: close sockets only a failed config wanted.
    fn forget_unused_sockets(&mut self) {
        if let Some(w) = &self.serving {
            self.sockets.retain(&w.holding);
        }
    }

    fn check_ready(&mut self) {
        let Some(p) = &mut self.pending else { return };
        match p.worker.read_ready() {
            Ok(true) => self.promote(),
            Ok(false) => {}
            // It failed before serving; its exit is handled when it is reaped.
            Err(_) => p.worker.ready = None,
        }
    }

    /// The pending worker is serving: it replaces the old one, which drains.
    fn promote(&mut self) {
        let Some(p) = self.pending.take() else { return };
        let Pending {
            worker,
            config,
            text,
            why,
        } = p;
        let pid = worker.pid;
        match self.serving.replace(worker) {
            Some(old) => {
                send(old.pid, libc::SIGQUIT);
                log_info!(
                    "worker {pid} serving ({}); worker {} draining",
                    why.name(),
                    old.pid
                );
                self.draining.push(Draining {
                    worker: old,
                    deadline: crate::clock::from_now(self.config.drain_timeout + KILL_GRACE),
                });
            }
            None => log_info!("worker {pid} serving ({})", why.name()),
        }
        // Addresses the new config dropped close now (the old worker stops
        // accepting as it drains).
        if let Some(w) = &self.serving {
            self.sockets.retain(&w.holding);
        }
        self.config = config;
        self.text = text;
        if self.first_start {
            self.took_over();
        } else if why == Why::Reload {
            notify::send("READY=1");
        }
        self.first_start = false;
        if why == Why::Memory {
            self.memory_backoff = MEMORY_CHECK;
        }
        if self.reload_queued {
            self.reload_queued = false;
            self.reload(Why::Reload);
        }
    }
}
