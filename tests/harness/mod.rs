//! Test harness: a real `redis-server` on an ephemeral loopback port, the real
//! `lopache` binary, scriptable HTTP backends on real sockets, and a small raw
//! HTTP client. Everything waits on readiness (a PING answer, the readiness
//! line, a bound socket); nothing sleeps to synchronise.
#![allow(dead_code, unused_imports)]

pub mod backend;
pub mod client;
pub mod dns;
pub mod fake_redis;
pub mod load;
pub mod proxy;
pub mod redis;
pub mod tls;
pub mod ws;

pub use backend::{Backend, Received, Reply};
pub use client::{get, request, HttpResponse, RawConn};
pub use proxy::Lopache;
pub use redis::Redis;

use std::time::{Duration, Instant};

/// Generous bound for anything a test waits on; a hang fails instead of blocking CI.
pub const WAIT: Duration = Duration::from_secs(10);

/// Polls `check` until it returns `Some`, or panics after `WAIT` naming `what`.
pub fn wait_for<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(v) = check() {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out waiting for {what}");
        }
        std::thread::yield_now();
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Sends `signal` (e.g. "TERM") to `pid` with kill(1).
pub fn send_signal(pid: u32, signal: &str) {
    let ok = std::process::Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(ok.success(), "kill -{signal} {pid} failed");
}

/// The process is gone, or a zombie waiting for its parent to reap it.
pub fn is_dead(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z')),
        Err(_) => true,
    }
}

/// A fresh temporary directory removed on drop.
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "lopache-test-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    pub fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Opens idle connections to `proxy` until its worker runs out of file
/// descriptors (it logs that it pauses accepts); returns them to hold.
pub fn exhaust_fds(proxy: &Lopache, connections: usize) -> Vec<std::net::TcpStream> {
    let held: Vec<_> = (0..connections)
        .filter_map(|_| std::net::TcpStream::connect(proxy.addr).ok())
        .collect();
    wait_for("the EMFILE warning", || {
        proxy.stderr().contains("pausing accepts").then_some(())
    });
    held
}

/// A metric's sum over every shard, scraped from the admin endpoint.
pub fn metric_total(admin: std::net::SocketAddr, name: &str) -> u64 {
    metric(admin, &format!("{name}{{"))
}

/// TCP states as /proc/net/tcp writes them.
pub const TCP_ESTABLISHED: &str = "01";
pub const TCP_CLOSE_WAIT: &str = "08";

/// This network namespace's sockets towards `port` in `state`.
pub fn sockets_to(port: u16, state: &str) -> usize {
    tcp_sockets_to(port).filter(|cols| cols[3] == state).count()
}

/// Bytes received and not yet read on this namespace's sockets towards
/// `port` (their receive queues).
pub fn unread_from(port: u16) -> usize {
    tcp_sockets_to(port)
        .filter_map(|cols| cols[4].split(':').nth(1).map(str::to_string))
        .map(|rx| usize::from_str_radix(&rx, 16).unwrap())
        .sum()
}

/// The /proc/net/tcp{,6} rows (split in columns) of sockets whose remote
/// port is `port`.
fn tcp_sockets_to(port: u16) -> impl Iterator<Item = Vec<String>> {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap()
        + &std::fs::read_to_string("/proc/net/tcp6").unwrap_or_default();
    let rows: Vec<Vec<String>> = table
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().map(str::to_string).collect::<Vec<_>>())
        .filter(|cols| {
            cols.len() > 4
                && cols[2]
                    .rsplit(':')
                    .next()
                    .and_then(|p| u16::from_str_radix(p, 16).ok())
                    == Some(port)
        })
        .collect();
    rows.into_iter()
}

/// Sockets towards `port` in CLOSE-WAIT: connections whose peer on `port`
/// closed, and whose FIN has arrived.
pub fn close_wait_to(port: u16) -> usize {
    sockets_to(port, TCP_CLOSE_WAIT)
}

/// The sum of the `/metrics` lines on `admin` that start with `name_and_labels`.
pub fn metric(admin: std::net::SocketAddr, name_and_labels: &str) -> u64 {
    let text = request(admin, "GET /metrics HTTP/1.1\r\nHost: admin\r\n\r\n").text();
    text.lines()
        .filter(|l| l.starts_with(name_and_labels))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum()
}

/// lopache with one shard, an admin endpoint on a free port, and extra
/// `[server]` lines.
pub fn one_shard_with_admin(redis: &Redis, server: &str) -> Lopache {
    let cfg = format!(
        "{}[admin]\nbind = \"127.0.0.1:0\"\n",
        proxy::config(
            &format!("{:?}", redis.url()),
            &format!("workers = 1\n{server}")
        )
    );
    Lopache::start_config(&cfg, &[])
}
