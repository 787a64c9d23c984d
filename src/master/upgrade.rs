//! Binary upgrade (SIGUSR2), as nginx does it: the binary on disk checks the
//! config (`--dry`), then starts as a new master holding the same sockets;
//! this master serves on until the new one's worker serves and it says so
//! (SIGWINCH), then retires. A new master that fails leaves this one serving.

use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::signals::send;
use super::{notify, Draining, KILL_GRACE, UPGRADE_FROM_ENV};
use crate::net::sockets::SOCKETS_ENV;
use crate::{log_error, log_info, log_warn};

/// A new master must serve within this (its worker's readiness and some),
/// or it is stopped and this one keeps serving.
pub(super) const UPGRADE_TIMEOUT: Duration = Duration::from_secs(70);
/// How long the new binary's `--dry` may take on SIGUSR2.
const DRY_RUN_TIMEOUT: Duration = Duration::from_secs(10);
/// The new master a SIGUSR2 started, until it serves (or fails).
pub(super) struct Upgrade {
    pub pid: i32,
    pub deadline: Instant,
    /// A SIGHUP arrived meanwhile: the new master may have read the config
    /// before it changed, so it gets the SIGHUP once it serves.
    pub reload_asked: bool,
}

impl super::Master {
    /// SIGUSR2: start the binary on disk as a new master holding the same
    /// sockets. This master and its worker serve on until the new master's
    /// worker serves and it says so (SIGWINCH); then this one retires. A
    /// new binary that refuses the config (`--dry`), cannot start, dies or
    /// does not serve within `UPGRADE_TIMEOUT` leaves this one serving.
    pub(super) fn upgrade(&mut self) {
        if let Some(u) = &self.upgrade {
            log_warn!("upgrade: master {} is still starting; wait for it", u.pid);
            return;
        }
        if self.pending.is_some() {
            log_warn!("upgrade: a new worker is still starting; send SIGUSR2 again once it serves");
            return;
        }
        if let Err(why) = self.dry_run() {
            log_error!(
                "upgrade: {} --dry {why}; keeping this binary",
                self.exe.display()
            );
            return;
        }
        let fds = self.sockets.raw_fds();
        let mut cmd = Command::new(&self.exe);
        cmd.arg0(&self.argv0)
            .args(&self.args)
            .env(SOCKETS_ENV, self.sockets.encode())
            .env(UPGRADE_FROM_ENV, std::process::id().to_string());
        // SAFETY: between fork and exec only fcntl runs (async-signal-safe),
        // on descriptors this process holds, from a list built before fork.
        unsafe {
            cmd.pre_exec(move || {
                for &fd in &fds {
                    crate::net::sockets::set_fd_cloexec(fd, false);
                }
                Ok(())
            })
        };
        match cmd.spawn() {
            Ok(child) => {
                let pid = child.id() as i32;
                log_info!(
                    "upgrade: started {} as master {pid}; serving until it does",
                    self.exe.display()
                );
                // Reaped with the workers (waitpid(-1)); the handle is not needed.
                drop(child);
                self.upgrade = Some(Upgrade {
                    pid,
                    deadline: crate::clock::from_now(UPGRADE_TIMEOUT),
                    reload_asked: false,
                });
            }
            Err(e) => log_error!(
                "upgrade: cannot start {}: {e}; keeping this binary",
                self.exe.display()
            ),
        }
    }

    /// Runs the binary on disk with `--dry` on the config, for at most
    /// [`DRY_RUN_TIMEOUT`] (a new binary that hangs must not hang the
    /// master: it waits here, and signals wait in the signalfd meanwhile).
    pub(super) fn dry_run(&self) -> Result<(), String> {
        let mut child = Command::new(&self.exe)
            .arg("--dry")
            .arg("--config")
            .arg(&self.config_path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot run: {e}"))?;
        let deadline = Instant::now() + DRY_RUN_TIMEOUT;
        loop {
            match child.try_wait() {
                Ok(Some(s)) if s.success() => return Ok(()),
                Ok(Some(s)) => return Err(format!("refused the config ({s})")),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                Ok(None) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(format!(
                        "did not finish within {} s",
                        DRY_RUN_TIMEOUT.as_secs()
                    ));
                }
                Err(e) => return Err(format!("cannot be waited for: {e}")),
            }
        }
    }

    /// SIGWINCH from the new master: it serves. Every worker here drains as
    /// on a reload (the sockets stay open: they are the new master's too),
    /// and this master exits once they have.
    pub(super) fn retire(&mut self) {
        let Some(u) = self.upgrade.take() else { return };
        log_info!("upgrade: master {} serves; this master retires", u.pid);
        if u.reload_asked {
            log_info!(
                "upgrade: passing the SIGHUP received meanwhile to master {}",
                u.pid
            );
            send(u.pid, libc::SIGHUP);
        }
        self.successor = Some(u.pid);
        self.stopping = true;
        self.restart_at = None;
        let deadline = crate::clock::from_now(self.config.drain_timeout + KILL_GRACE);
        let retiring = self
            .serving
            .take()
            .into_iter()
            .chain(self.pending.take().map(|p| p.worker));
        for worker in retiring.collect::<Vec<_>>() {
            send(worker.pid, libc::SIGQUIT);
            self.draining.push(Draining { worker, deadline });
        }
    }

    /// After a failed upgrade: systemd's main PID is this master again (the
    /// new one may have claimed it just before it was stopped).
    pub(super) fn main_pid_again(&self) {
        notify::send(&format!("MAINPID={}\nREADY=1", std::process::id()));
    }

    /// Once the first worker of a master started by SIGUSR2 serves: tell the
    /// old master to retire (if it is still our parent, so that no other
    /// process gets the signal) and systemd which process is the service's
    /// main one now.
    pub(super) fn took_over(&mut self) {
        let me = std::process::id();
        match self.replaces.take() {
            Some(parent) if std::os::unix::process::parent_id() as i32 == parent => {
                log_info!("upgrade: master {me} serving; master {parent} retires");
                send(parent, libc::SIGWINCH);
                notify::send(&format!("MAINPID={me}\nREADY=1"));
            }
            Some(parent) => {
                log_warn!("upgrade: master {parent} is gone; master {me} serves alone");
                notify::send(&format!("MAINPID={me}\nREADY=1"));
            }
            None => notify::send("READY=1"),
        }
    }
}
