//! Steady keep-alive load for reload tests: client threads send GETs back to
//! back, reconnect when a response says `Connection: close` (as any HTTP
//! client must), and count every response and every failure instead of
//! panicking on the first.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use super::WAIT;

#[derive(Default)]
struct Counters {
    ok: AtomicU64,
    non_2xx: AtomicU64,
    failures: AtomicU64,
    errors: Mutex<Vec<String>>,
}

pub struct Load {
    stop: Arc<AtomicBool>,
    counters: Arc<Counters>,
    threads: Vec<JoinHandle<()>>,
}

/// What a run produced.
#[derive(Debug)]
pub struct LoadReport {
    pub ok: u64,
    pub non_2xx: u64,
    pub failures: u64,
    /// The first few failure descriptions.
    pub errors: Vec<String>,
}

impl Load {
    /// `clients` keep-alive connections sending `GET /` with `host`.
    pub fn start(addr: SocketAddr, host: &str, clients: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let counters = Arc::new(Counters::default());
        let threads = (0..clients)
            .map(|_| {
                let (stop, counters) = (stop.clone(), counters.clone());
                let request = format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n");
                std::thread::spawn(move || client(addr, &request, &stop, &counters))
            })
            .collect();
        Load {
            stop,
            counters,
            threads,
        }
    }

    /// Successful responses so far.
    pub fn ok(&self) -> u64 {
        self.counters.ok.load(Ordering::Relaxed)
    }

    /// Waits (bounded) until `n` more requests have succeeded.
    pub fn wait_for_more(&self, n: u64) {
        let target = self.ok() + n;
        super::wait_for(&format!("{n} more successful requests"), || {
            (self.ok() >= target).then_some(())
        });
    }

    pub fn stop(self) -> LoadReport {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            t.join().expect("load client thread");
        }
        let c = &self.counters;
        LoadReport {
            ok: c.ok.load(Ordering::Relaxed),
            non_2xx: c.non_2xx.load(Ordering::Relaxed),
            failures: c.failures.load(Ordering::Relaxed),
            errors: c.errors.lock().unwrap().clone(),
        }
    }
}

fn client(addr: SocketAddr, request: &str, stop: &AtomicBool, counters: &Counters) {
    let started = Instant::now();
    // The connection and how many requests it has carried.
    let mut conn: Option<(TcpStream, u64)> = None;
    while !stop.load(Ordering::Relaxed) {
        let (stream, carried) = match conn.take() {
            Some(kept) => kept,
            None => match TcpStream::connect(addr) {
                Ok(s) => {
                    s.set_read_timeout(Some(WAIT)).unwrap();
                    (s, 0)
                }
                Err(e) => {
                    fail(counters, format!("connect: {e}"));
                    continue;
                }
            },
        };
        // Where a failure happened, to tell a connection no worker took
        // from one a draining worker let go of.
        let local = stream.local_addr().map(|a| a.port()).unwrap_or(0);
        let sent = started.elapsed();
        match exchange(stream, request) {
            Ok((status, keep)) => {
                if (200..300).contains(&status) {
                    counters.ok.fetch_add(1, Ordering::Relaxed);
                } else {
                    counters.non_2xx.fetch_add(1, Ordering::Relaxed);
                }
                conn = keep.map(|s| (s, carried + 1));
            }
            Err(e) => fail(
                counters,
                format!(
                    "{e} (request {} on the connection from port {local}, sent {sent:?} after the start, failed after {:?}); sockets then:\n{}",
                    carried + 1,
                    started.elapsed() - sent,
                    sockets_of(local, addr.port())
                ),
            ),
        }
    }
}

/// What `ss` shows of the failed connection (both ends, and which process
/// holds the proxy's end, if any has accepted it) and of the proxy's
/// listening sockets (a connection no worker accepted waits in one of
/// their queues): to tell "no worker took it" from "a worker took it and
/// went quiet". Best effort: empty without `ss`.
fn sockets_of(client_port: u16, proxy_port: u16) -> String {
    let ss = |state: &str, filter: String| {
        std::process::Command::new("ss")
            .args(["-tanpi", "state", state, &filter])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    };
    ss(
        "all",
        format!("( sport = :{client_port} or dport = :{client_port} )"),
    ) + &ss("listening", format!("( sport = :{proxy_port} )"))
}

fn fail(counters: &Counters, error: String) {
    counters.failures.fetch_add(1, Ordering::Relaxed);
    let mut errors = counters.errors.lock().unwrap();
    if errors.len() < 10 {
        errors.push(error);
    }
}

/// One request and its response (framed by Content-Length). Returns the
/// status and the stream if the connection stays open.
fn exchange(mut stream: TcpStream, request: &str) -> Result<(u16, Option<TcpStream>), String> {
    stream
        .write_all(request.as_bytes())
        .map_err(|e| format!("write: {e}"))?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match stream.read(&mut chunk) {
            Ok(0) => return Err(format!("closed after {} bytes of head", buf.len())),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => return Err(format!("read: {e}")),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let status: u16 = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad head {head:?}"))?;
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| format!("no content-length in {head:?}"))?;
    while buf.len() < head_end + length {
        match stream.read(&mut chunk) {
            Ok(0) => return Err("closed mid-body".into()),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => return Err(format!("read body: {e}")),
        }
    }
    let closes = head.lines().any(|l| l.trim() == "connection: close");
    Ok((status, (!closes).then_some(stream)))
}
