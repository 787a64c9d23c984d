//! The admin endpoint on `[admin] bind`: `GET /metrics` (Prometheus text)
//! and `GET /healthz` (200 while serving, 503 while draining). It runs on its
//! own threads with blocking IO, away from the shards; scrapes are rare. Each
//! connection is answered on a thread of its own (at most
//! `MAX_CONNECTIONS` at once) with a deadline for the whole exchange, so a
//! stalled client can never delay a health check. The listening socket comes
//! from the master and is shared with the next worker during a handover: this
//! one stops accepting as soon as it is told to.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::metrics::{render, ShardMetrics};
use crate::log_warn;

const MAX_HEAD: usize = 8 * 1024;

/// Admin connections served at once; more are closed unanswered.
const MAX_CONNECTIONS: usize = 32;

/// The whole exchange (reading the request, writing the answer) on one
/// admin connection.
const EXCHANGE_DEADLINE: Duration = Duration::from_secs(5);

/// How often the accept loop looks at its stop flag.
const STOP_POLL_MS: libc::c_int = 200;

/// Serves `listener` on a thread until `stop` is raised.
pub fn start(
    listener: TcpListener,
    shards: Vec<Arc<ShardMetrics>>,
    draining: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<()> {
    // Non-blocking, so the loop can notice `stop` between connections (the
    // flag is shared with the other worker's copy; both set it alike).
    listener.set_nonblocking(true)?;
    let shards: Arc<[Arc<ShardMetrics>]> = shards.into();
    let active = Arc::new(AtomicUsize::new(0));
    std::thread::Builder::new()
        .name("lopache-admin".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        if active.load(Ordering::Relaxed) >= MAX_CONNECTIONS {
                            continue; // dropped: closed unanswered
                        }
                        active.fetch_add(1, Ordering::Relaxed);
                        let (shards, draining, active) =
                            (shards.clone(), draining.clone(), active.clone());
                        let spawned = std::thread::Builder::new()
                            .name("lopache-admin-conn".into())
                            .spawn(move || {
                                let answered = stream
                                    .set_nonblocking(false)
                                    .and_then(|()| answer(stream, &shards, &draining));
                                if let Err(e) = answered {
                                    crate::log_debug!("admin request failed: {e}");
                                }
                                active.fetch_sub(1, Ordering::Relaxed);
                            });
                        if let Err(e) = spawned {
                            log_warn!("admin: cannot start a thread: {e}");
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        wait_readable(&listener)
                    }
                    Err(e) => {
                        log_warn!("admin accept failed: {e}");
                        std::thread::sleep(Duration::from_millis(100));
                    }
                }
            }
        })?;
    Ok(())
}

/// Waits until a connection may be pending, at most `STOP_POLL_MS`.
fn wait_readable(listener: &TcpListener) {
    use std::os::fd::AsRawFd;
    let mut pfd = libc::pollfd {
        fd: listener.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: poll reads and writes one pollfd that lives across the call.
    unsafe { libc::poll(&mut pfd, 1, STOP_POLL_MS) };
}

fn answer(
    mut stream: TcpStream,
    shards: &[Arc<ShardMetrics>],
    draining: &AtomicBool,
) -> std::io::Result<()> {
    let deadline = Instant::now() + EXCHANGE_DEADLINE;
    let left = || {
        let left = deadline.saturating_duration_since(Instant::now());
        // A zero timeout means "block forever" to the socket API.
        (!left.is_zero())
            .then_some(left)
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::TimedOut, "deadline"))
    };
    stream.set_write_timeout(Some(EXCHANGE_DEADLINE))?;
    let mut head = Vec::new();
    let mut chunk = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && !head.windows(2).any(|w| w == b"\n\n") {
        stream.set_read_timeout(Some(left()?))?;
        let n = stream.read(&mut chunk)?;
        if n == 0 || head.len() > MAX_HEAD {
            return Ok(());
        }
        head.extend_from_slice(&chunk[..n]);
    }
    let line = String::from_utf8_lossy(&head);
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let (status, content_type, body) = match (method, path) {
        ("GET", "/healthz") if draining.load(Ordering::Relaxed) => (
            "503 Service Unavailable",
            "text/plain",
            "draining\n".to_string(),
        ),
        ("GET", "/healthz") => ("200 OK", "text/plain", "ok\n".to_string()),
        ("GET", "/metrics") => ("200 OK", "text/plain; version=0.0.4", render(shards)),
        _ => ("404 Not Found", "text/plain", "not found\n".to_string()),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes())
}
