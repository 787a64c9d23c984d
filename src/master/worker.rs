//! Worker processes as the master sees them: started from this binary with
//! `--worker`, given the listening sockets, the config text (a memfd, so a
//! worker runs exactly the text the master validated) and the write end of a
//! readiness pipe; watched through their pid.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read, Seek, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use crate::files::Files;
use crate::net::sockets::{set_fd_cloexec, SocketKey, Sockets, SOCKETS_ENV};

/// Names the descriptor holding the config text.
pub const CONFIG_FD_ENV: &str = "LOPACHE_CONFIG_FD";
/// Names the descriptor the worker writes one byte to once it serves.
pub const READY_FD_ENV: &str = "LOPACHE_READY_FD";

/// A worker process.
pub struct Worker {
    pub pid: i32,
    pub started: Instant,
    /// Read end of the readiness pipe, until the worker has reported.
    pub ready: Option<File>,
    /// The sockets it was given (how many of each group).
    pub holding: HashMap<SocketKey, usize>,
}

impl Worker {
    /// A worker this process did not start itself (inherited across a binary
    /// upgrade): already serving, holding `holding`.
    pub fn adopted(pid: i32, holding: HashMap<SocketKey, usize>) -> Worker {
        Worker {
            pid,
            started: Instant::now(),
            ready: None,
            holding,
        }
    }

    /// Resident set size in bytes, from /proc; `None` once it has gone.
    pub fn rss_bytes(&self) -> Option<u64> {
        let statm = std::fs::read_to_string(format!("/proc/{}/statm", self.pid)).ok()?;
        let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        Some(pages * page.max(1) as u64)
    }

    /// Whether the readiness byte has arrived (never blocks: the pipe is
    /// only read after poll said it is readable). `Err`: the pipe closed
    /// without it, i.e. the worker failed before serving.
    pub fn read_ready(&mut self) -> io::Result<bool> {
        let Some(pipe) = &mut self.ready else {
            return Ok(true);
        };
        let mut byte = [0u8; 1];
        match pipe.read(&mut byte) {
            Ok(1) => {
                self.ready = None;
                Ok(true)
            }
            Ok(_) => Err(io::Error::other("closed its readiness pipe")),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(false),
            Err(e) => Err(e),
        }
    }
}

/// Starts a worker: `exe --worker --config <path>` with `argv0` as its name.
pub fn spawn(
    exe: &Path,
    argv0: &OsStr,
    config_path: &Path,
    config_text: &str,
    files: &Files,
    sockets: &Sockets,
) -> io::Result<Worker> {
    let config = config_memfd(config_text, files)?;
    let (ready_read, ready_write) = pipe()?;
    let mut inherit = sockets.raw_fds();
    inherit.push(config.as_raw_fd());
    inherit.push(ready_write.as_raw_fd());
    // SAFETY: getpid has no preconditions.
    let master = unsafe { libc::getpid() };
    let mut cmd = Command::new(exe);
    cmd.arg0(argv0)
        .arg("--worker")
        .arg("--config")
        .arg(config_path)
        .env(SOCKETS_ENV, sockets.encode())
        .env(CONFIG_FD_ENV, config.as_raw_fd().to_string())
        .env(READY_FD_ENV, ready_write.as_raw_fd().to_string())
        .env_remove(super::WORKERS_ENV)
        .stdin(Stdio::null());
    // SAFETY: the closure runs between fork and exec and only makes
    // async-signal-safe calls (fcntl, prctl, getppid) on integers it owns.
    unsafe {
        cmd.pre_exec(move || {
            for &fd in &inherit {
                set_fd_cloexec(fd, false);
            }
            // A worker whose master is gone drains and exits rather than
            // serving unsupervised.
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            if libc::getppid() != master {
                return Err(io::Error::other("the master exited"));
            }
            Ok(())
        });
    }
    let child = cmd.spawn()?;
    // Our copies of the worker's ends close here; the child keeps its own.
    drop(ready_write);
    drop(config);
    Ok(Worker {
        pid: child.id() as i32,
        started: Instant::now(),
        ready: Some(ready_read),
        holding: sockets.counts(),
    })
}

/// An anonymous in-memory file holding `text` and the files it names (as
/// the master read them), rewound: the text's length, the text, the files.
fn config_memfd(text: &str, files: &Files) -> io::Result<File> {
    // SAFETY: memfd_create takes a NUL-terminated name and flags; the new
    // descriptor is owned by the File from here on.
    let fd = unsafe { libc::memfd_create(c"lopache-config".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just created and is owned by nothing else.
    let mut file = unsafe { File::from_raw_fd(fd) };
    file.write_all(&(text.len() as u64).to_le_bytes())?;
    file.write_all(text.as_bytes())?;
    file.write_all(&files.encode())?;
    file.rewind()?;
    Ok(file)
}

/// A close-on-exec pipe whose read end does not block.
fn pipe() -> io::Result<(File, OwnedFd)> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: pipe2 writes two new descriptors into the local array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both descriptors were just created and are owned only here.
    let (read, write) = unsafe { (File::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: fcntl on a descriptor we own.
    unsafe {
        let flags = libc::fcntl(fds[0], libc::F_GETFL);
        libc::fcntl(fds[0], libc::F_SETFL, flags | libc::O_NONBLOCK);
    }
    Ok((read, write))
}

/// In the worker: the config text, the files it names as the master read
/// them, and the readiness pipe the master passed.
pub fn worker_inputs() -> Result<(String, Files, Option<File>), String> {
    let fd_from = |name: &str| -> Result<Option<RawFd>, String> {
        match std::env::var(name) {
            Ok(v) => v
                .parse::<RawFd>()
                .map(Some)
                .map_err(|_| format!("{name}: bad descriptor {v:?}")),
            Err(_) => Ok(None),
        }
    };
    let config_fd = fd_from(CONFIG_FD_ENV)?
        .ok_or_else(|| "--worker is only for processes the master starts".to_string())?;
    // SAFETY: the master passed these descriptors to this process alone.
    let mut config = unsafe { File::from_raw_fd(config_fd) };
    let mut bundle = Vec::new();
    config
        .read_to_end(&mut bundle)
        .map_err(|e| format!("cannot read the config from the master: {e}"))?;
    let (text, files) = split_bundle(&bundle)?;
    // SAFETY: as above, the readiness pipe's write end is ours alone.
    let ready = fd_from(READY_FD_ENV)?.map(|fd| unsafe { File::from_raw_fd(fd) });
    if let Some(r) = &ready {
        set_fd_cloexec(r.as_raw_fd(), true);
    }
    Ok((text, files, ready))
}

/// The config text and the files from what [`config_memfd`] wrote.
fn split_bundle(bundle: &[u8]) -> Result<(String, Files), String> {
    let bad = || "the config from the master is cut short".to_string();
    let (len, rest) = bundle.split_first_chunk::<8>().ok_or_else(bad)?;
    let len = usize::try_from(u64::from_le_bytes(*len)).map_err(|_| bad())?;
    if rest.len() < len {
        return Err(bad());
    }
    let (text, files) = rest.split_at(len);
    let text =
        String::from_utf8(text.to_vec()).map_err(|_| "the config is not UTF-8".to_string())?;
    Ok((text, Files::decode(files)?))
}

/// How a waited-for process ended, for the log.
pub fn describe_status(status: libc::c_int) -> String {
    if libc::WIFEXITED(status) {
        format!("exited with status {}", libc::WEXITSTATUS(status))
    } else if libc::WIFSIGNALED(status) {
        format!("killed by signal {}", libc::WTERMSIG(status))
    } else {
        format!("ended (wait status {status})")
    }
}

/// The exit code to hand on for a worker that ended with `status`.
pub fn exit_code(status: libc::c_int) -> u8 {
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status) as u8
    } else {
        1
    }
}

/// Every child that has ended since the last call: (pid, wait status).
pub fn reap() -> Vec<(i32, libc::c_int)> {
    let mut out = Vec::new();
    loop {
        let mut status: libc::c_int = 0;
        // SAFETY: waitpid writes the status into a local; WNOHANG never blocks.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if pid <= 0 {
            return out;
        }
        out.push((pid, status));
    }
}
