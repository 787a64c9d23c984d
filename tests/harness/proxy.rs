//! The real lopache binary, started on an ephemeral port with a config built
//! by the test; ready when its readiness line names the bound address. The
//! process started is the master; `worker_pid` finds the worker serving.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use super::{TempDir, WAIT};

pub struct Lopache {
    child: Child,
    /// The first plain HTTP listener (the first HTTPS one if there is none).
    pub addr: SocketAddr,
    /// The first HTTPS listener, if any.
    pub https_addr: Option<SocketAddr>,
    /// The admin endpoint, if configured.
    pub admin_addr: Option<SocketAddr>,
    stderr: Arc<Mutex<String>>,
    pub dir: TempDir,
}

/// A config for `driver`, with `[server]` lines and an ephemeral http port.
pub fn config(driver: &str, server: &str) -> String {
    let workers = if server.contains("workers") {
        ""
    } else {
        "workers = 2\n"
    };
    format!("driver = {driver}\n[server]\n{workers}{server}\n[http]\nport = 0\nbind = [\"127.0.0.1\"]\n")
}

/// Tests do not write to /var/log unless they ask for an access log: a TOML
/// config that does not mention one gets `access_log = "none"`.
fn without_access_log(text: &str, file: &str) -> String {
    if !file.ends_with(".toml") || text.contains("access_log") {
        return text.to_string();
    }
    match text.find("[server]\n") {
        Some(i) => {
            let at = i + "[server]\n".len();
            format!("{}access_log = \"none\"\n{}", &text[..at], &text[at..])
        }
        None => format!("{text}\n[server]\naccess_log = \"none\"\n"),
    }
}

impl Lopache {
    /// Starts with one Redis URL and extra `[server]` lines.
    pub fn start(redis_url: &str, server: &str) -> Lopache {
        Lopache::start_config(&config(&format!("{redis_url:?}"), server), &[])
    }

    /// Starts with a complete config text and extra environment variables.
    pub fn start_config(config_text: &str, env: &[(&str, &str)]) -> Lopache {
        Lopache::launch(config_text, env, &[])
    }

    /// Starts with an existing config file (e.g. a config.json).
    pub fn start_file(path: &std::path::Path) -> Lopache {
        let text = std::fs::read_to_string(path).unwrap();
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        Lopache::launch_named(&text, &name, &[], &[])
    }

    /// Starts a copy of the binary at `binary` (for upgrade tests).
    pub fn start_from(binary: &std::path::Path, config_text: &str) -> Lopache {
        Lopache::launch_binary(binary, config_text, "config.toml", &[], &[])
    }

    /// Starts under a wrapper command (e.g. `prlimit --nofile=48:48 --`).
    pub fn start_wrapped(config_text: &str, wrapper: &[&str]) -> Lopache {
        Lopache::launch(config_text, &[], wrapper)
    }

    fn launch(config_text: &str, env: &[(&str, &str)], wrapper: &[&str]) -> Lopache {
        Lopache::launch_named(config_text, "config.toml", env, wrapper)
    }

    fn launch_named(
        config_text: &str,
        file: &str,
        env: &[(&str, &str)],
        wrapper: &[&str],
    ) -> Lopache {
        // LOPACHE_TEST_BINARY runs the suite against another build (e.g. an
        // older commit, to check that a new test fails there).
        let binary = std::env::var_os("LOPACHE_TEST_BINARY")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| env!("CARGO_BIN_EXE_lopache").into());
        Lopache::launch_binary(&binary, config_text, file, env, wrapper)
    }

    fn launch_binary(
        binary: &std::path::Path,
        config_text: &str,
        file: &str,
        env: &[(&str, &str)],
        wrapper: &[&str],
    ) -> Lopache {
        let dir = TempDir::new("lopache");
        let path = dir.path().join(file);
        std::fs::write(&path, without_access_log(config_text, file)).unwrap();
        let mut cmd = match wrapper.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(binary);
                c
            }
            None => Command::new(binary),
        };
        cmd.arg("--config")
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        // Binaries the tests copy are written by `cp`, never through a
        // descriptor of this process that a sibling test's child could
        // inherit (supervision.rs, `install_executable`): no ETXTBSY here.
        let mut child = cmd.spawn().expect("start lopache");
        let stderr = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel();
        {
            let pipe = child.stderr.take().unwrap();
            let log = stderr.clone();
            std::thread::spawn(move || {
                let mut tx = Some(tx);
                for line in BufReader::new(pipe).lines() {
                    let Ok(line) = line else { break };
                    // Log first, so a test that saw readiness also sees the line.
                    {
                        let mut l = log.lock().unwrap();
                        l.push_str(&line);
                        l.push('\n');
                    }
                    if let Some(rest) = line.split(" listening on ").nth(1) {
                        let list = rest.split(" (").next().unwrap_or("").to_string();
                        if let Some(tx) = tx.take() {
                            let _ = tx.send(list);
                        }
                    }
                }
            });
        }
        let (addr, https_addr, admin_addr) = match rx.recv_timeout(WAIT) {
            Ok(list) => {
                let (mut plain, mut tls, mut admin) = (None, None, None);
                for item in list.split(", ") {
                    if let Some(a) = item.strip_prefix("https://") {
                        tls = tls.or(Some(a.parse::<SocketAddr>().expect("https address")));
                    } else if let Some(a) = item.strip_prefix("admin://") {
                        admin = Some(a.parse::<SocketAddr>().expect("admin address"));
                    } else {
                        plain = plain.or(Some(item.parse::<SocketAddr>().expect("address")));
                    }
                }
                (plain.or(tls).expect("an address"), tls, admin)
            }
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "lopache did not become ready; stderr:\n{}",
                    stderr.lock().unwrap()
                );
            }
        };
        Lopache {
            child,
            addr,
            https_addr,
            admin_addr,
            stderr,
            dir,
        }
    }

    /// The master's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The pid of the worker serving now: the last one the master reported
    /// as serving (waiting, bounded, for the first report).
    pub fn worker_pid(&self) -> u32 {
        super::wait_for("the master to report a serving worker", || {
            self.serving_pids().last().copied()
        })
    }

    /// Masters started by SIGUSR2 that took over ("upgrade: master N
    /// serving; ..."), oldest first.
    pub fn new_masters(&self) -> Vec<u32> {
        self.stderr()
            .lines()
            .filter_map(|l| l.split("upgrade: master ").nth(1))
            .filter_map(|rest| rest.strip_suffix_serving_master())
            .collect()
    }

    /// Every worker the master has reported serving, oldest first.
    pub fn serving_pids(&self) -> Vec<u32> {
        self.stderr()
            .lines()
            .filter(|l| l.starts_with("lopache[master]"))
            .filter_map(|l| l.split("worker ").nth(1))
            .filter_map(|rest| rest.strip_suffix_serving())
            .collect()
    }

    /// Waits (bounded) until `needle` has appeared `count` times in stderr.
    pub fn wait_for_log(&self, needle: &str, count: usize) {
        super::wait_for(&format!("{count} log line(s) with {needle:?}"), || {
            (self.stderr().matches(needle).count() >= count).then_some(())
        })
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// The master is still running.
    pub fn alive_master(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Still running, with the worker it started with: the master is up,
    /// that worker is alive and was never replaced.
    pub fn alive(&mut self) -> bool {
        let worker = self.worker_pid();
        matches!(self.child.try_wait(), Ok(None))
            && std::path::Path::new(&format!("/proc/{worker}")).exists()
            && self.serving_pids().len() == 1
    }

    /// The worker's peak resident set size so far, in KiB (`VmHWM`).
    pub fn peak_rss_kb(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.worker_pid())).unwrap();
        status
            .lines()
            .find(|l| l.starts_with("VmHWM:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .expect("VmHWM")
    }

    /// The config file it was started with (rewrite it, then SIGHUP).
    pub fn config_path(&self) -> std::path::PathBuf {
        let dir = self.dir.path();
        ["config.toml", "config.json"]
            .iter()
            .map(|f| dir.join(f))
            .find(|p| p.exists())
            .expect("a config file")
    }

    /// Sends `signal` (e.g. "TERM") to the master.
    pub fn signal(&self, signal: &str) {
        super::send_signal(self.pid(), signal);
    }

    /// Waits (bounded) for the process to exit.
    pub fn wait_exit(&mut self) -> std::process::ExitStatus {
        super::wait_for("lopache to exit", || self.child.try_wait().ok().flatten())
    }

    /// Sends `signal` and waits (bounded) for the exit status.
    pub fn signal_and_wait(&mut self, signal: &str) -> std::process::ExitStatus {
        self.signal(signal);
        self.wait_exit()
    }

    /// Open descriptors of the worker.
    pub fn fd_count(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.worker_pid()))
            .map(|d| d.count())
            .unwrap_or(0)
    }
}

impl Drop for Lopache {
    fn drop(&mut self) {
        // A failing test shows what the proxy said (e.g. a worker that died).
        if std::thread::panicking() {
            eprintln!("--- lopache stderr ---\n{}", self.stderr());
        }
        // The master first, so that it restarts nothing; then its workers,
        // which would otherwise drain for up to server.drain_timeout.
        let _ = self.child.kill();
        let _ = self.child.wait();
        for pid in self.new_masters().into_iter().chain(self.serving_pids()) {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .stderr(std::process::Stdio::null())
                .status();
        }
    }
}

/// `"1234 serving (start)"` -> 1234; `"1234 serving; master 1200 retires"`
/// (a new master's line) -> 1234.
trait ServingLine {
    fn strip_suffix_serving(&self) -> Option<u32>;
    fn strip_suffix_serving_master(&self) -> Option<u32>;
}

impl ServingLine for &str {
    fn strip_suffix_serving(&self) -> Option<u32> {
        let (pid, rest) = self.split_once(' ')?;
        (rest.starts_with("serving") && !rest.starts_with("serving;")).then(|| pid.parse().ok())?
    }

    fn strip_suffix_serving_master(&self) -> Option<u32> {
        let (pid, rest) = self.split_once(' ')?;
        rest.starts_with("serving;").then(|| pid.parse().ok())?
    }
}

/// `lopache --dry` on a config file holding `text`: the exit code, stdout
/// and stderr.
#[allow(dead_code)]
pub fn dry(text: &str) -> (Option<i32>, String, String) {
    let dir = TempDir::new("dry");
    let path = dir.path().join("config.toml");
    std::fs::write(&path, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_lopache"))
        .args(["--dry", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
