//! What the master does when a worker exits (a crash is restarted at once,
//! with a doubling pause while workers keep dying young), when a timer is
//! due (restarts, readiness and drain deadlines, the upgrade deadline), and
//! when the memory guard finds the worker over `server.memory_limit_mb`.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use super::signals::send;
use super::upgrade::UPGRADE_TIMEOUT;
use super::worker::{describe_status, exit_code};
use super::{notify, Why, BACKOFF_MAX, BACKOFF_START, MEMORY_CHECK, MIN_UPTIME, READY_TIMEOUT};
use crate::{log_error, log_info, log_warn};

impl super::Master {
    pub(super) fn on_exit(&mut self, pid: i32, status: libc::c_int) -> Result<(), ExitCode> {
        let how = describe_status(status);
        if self.upgrade.as_ref().is_some_and(|u| u.pid == pid) {
            self.upgrade = None;
            log_error!("upgrade: new master {pid} {how} before serving; keeping this binary");
            self.main_pid_again();
            return Ok(());
        }
        if self.successor == Some(pid) {
            self.successor = None;
            // A clean exit is an operator's stop; a crash while this master
            // still drains would leave nothing serving: serve again.
            if status != 0 && self.stopping && !self.sockets.raw_fds().is_empty() {
                log_error!(
                    "upgrade: new master {pid} {how} after taking over; this master serves again"
                );
                self.stopping = false;
                self.main_pid_again();
                let (config, text) = (self.config.clone(), self.text.clone());
                let _ = self.start_worker(config, text, Why::Restart);
            }
            return Ok(());
        }
        if self.pending.as_ref().is_some_and(|p| p.worker.pid == pid) {
            let p = self.pending.take().expect("checked above");
            if self.first_start {
                log_error!("worker {pid} {how} before serving");
                return Err(ExitCode::from(exit_code(status)));
            }
            if p.why == Why::Reload {
                notify::send("READY=1");
            }
            match &self.serving {
                Some(w) => log_error!(
                    "{}: new worker {pid} {how} before serving; worker {} keeps serving",
                    p.why.name(),
                    w.pid
                ),
                None => log_error!("{}: new worker {pid} {how} before serving", p.why.name()),
            }
            self.forget_unused_sockets();
            if self.serving.is_none() && !self.stopping {
                self.schedule_restart(p.worker.started.elapsed());
            }
            if p.why == Why::Memory {
                // A replacement that cannot start would otherwise be tried
                // again at the next check, every second.
                self.memory_backoff = (self.memory_backoff * 2).min(BACKOFF_MAX);
                self.next_memory_check = crate::clock::from_now(self.memory_backoff);
                log_warn!(
                    "memory limit: next replacement in {} ms",
                    self.memory_backoff.as_millis()
                );
            }
            return Ok(());
        }
        if self.serving.as_ref().is_some_and(|w| w.pid == pid) {
            let w = self.serving.take().expect("checked above");
            log_error!("worker {pid} {how}; starting a new one");
            if self.pending.is_none() {
                self.schedule_restart(w.started.elapsed());
            }
            return Ok(());
        }
        if let Some(at) = self.draining.iter().position(|d| d.worker.pid == pid) {
            self.draining.remove(at);
            log_info!("worker {pid} finished draining ({how})");
        }
        Ok(())
    }

    /// Plans the start of a replacement: at once after a worker that ran
    /// for a while, with a doubling pause while they keep dying young.
    pub(super) fn schedule_restart(&mut self, lived: Duration) {
        if lived >= MIN_UPTIME {
            self.crashes = 0;
        } else {
            self.crashes += 1;
        }
        let pause = match self.crashes {
            0 | 1 => Duration::ZERO,
            n => (BACKOFF_START * 2u32.saturating_pow(n - 2)).min(BACKOFF_MAX),
        };
        if !pause.is_zero() {
            log_warn!(
                "workers keep dying young ({} in a row): next start in {} ms",
                self.crashes,
                pause.as_millis()
            );
        }
        self.restart_at = Some(Instant::now() + pause);
    }

    pub(super) fn on_timers(&mut self) {
        let now = Instant::now();
        if self.restart_at.is_some_and(|at| at <= now) && !self.stopping {
            self.restart_at = None;
            if self.serving.is_none() && self.pending.is_none() {
                let (config, text) = (self.config.clone(), self.text.clone());
                let _ = self.start_worker(config, text, Why::Restart);
            }
        }
        if let Some(p) = &self.pending {
            if p.worker.started.elapsed() >= READY_TIMEOUT {
                log_error!(
                    "{}: new worker {} not ready after {} s; killing it",
                    p.why.name(),
                    p.worker.pid,
                    READY_TIMEOUT.as_secs()
                );
                send(p.worker.pid, libc::SIGKILL);
            }
        }
        if let Some(u) = self.upgrade.as_ref().filter(|u| u.deadline <= now) {
            log_error!(
                "upgrade: new master {} not serving after {} s; stopping it, keeping this binary",
                u.pid,
                UPGRADE_TIMEOUT.as_secs()
            );
            // Its exit, reaped later, finds no upgrade pending.
            send(u.pid, libc::SIGTERM);
            self.upgrade = None;
            self.main_pid_again();
        }
        for d in &self.draining {
            if d.deadline <= now {
                log_warn!(
                    "worker {} still draining past its deadline; killing it",
                    d.worker.pid
                );
                send(d.worker.pid, libc::SIGKILL);
            }
        }
        if now >= self.next_memory_check {
            self.next_memory_check = now + MEMORY_CHECK;
            self.check_memory();
        }
    }

    /// Hipache's memory monitor: a worker over `server.memory_limit_mb` is
    /// replaced like on reload (same config), and the old one drains.
    pub(super) fn check_memory(&mut self) {
        let (Some(limit), Some(w)) = (self.config.memory_limit, &self.serving) else {
            return;
        };
        if self.pending.is_some() || self.stopping || w.started.elapsed() < MIN_UPTIME {
            return;
        }
        let Some(rss) = w.rss_bytes() else { return };
        if rss > limit {
            log_warn!(
                "worker {} uses {} MiB, over server.memory_limit_mb = {}: replacing it",
                w.pid,
                rss >> 20,
                limit >> 20
            );
            let (config, text) = (self.config.clone(), self.text.clone());
            let _ = self.start_worker(config, text, Why::Memory);
        }
    }
}
