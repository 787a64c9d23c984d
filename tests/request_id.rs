//! Request IDs (`server.request_id_header`) through the real binary: one is
//! generated when the client sent none, kept when it sent one valid value,
//! replaced when the value is invalid or given twice; the backend, the
//! client (over a backend's own value, and on lopache's error pages) and
//! the access log see the same ID; 100,000 generated IDs are all distinct.

mod harness;

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};

use harness::{wait_for, Backend, HttpResponse, Lopache, Redis, Reply, TempDir};

/// A backend that answers with the ID it received, and a different one of
/// its own in the same header.
fn echo_id() -> Backend {
    Backend::start(|r| {
        let seen = r.headers_named("x-request-id").join("|");
        Reply::with_headers(200, &[("X-Request-Id", "from-backend")], &seen)
    })
}

fn start(redis: &Redis, log: &std::path::Path) -> Lopache {
    Lopache::start(
        &redis.url(),
        &format!(
            "request_id_header = \"X-Request-Id\"\naccess_log = {:?}",
            log.to_str().unwrap()
        ),
    )
}

fn with_id(addr: SocketAddr, host: &str, lines: &str) -> HttpResponse {
    harness::request(
        addr,
        &format!("GET / HTTP/1.1\r\nHost: {host}\r\n{lines}\r\n"),
    )
}

fn is_generated(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

#[test]
fn generated_kept_replaced_and_logged() {
    let redis = Redis::start();
    let app = echo_id();
    redis.frontend("", "app.example", "app", &[app.url()]);
    redis.frontend(
        "",
        "down.example",
        "down",
        &[harness::backend::refused_url()],
    );
    let dir = TempDir::new("request-id");
    let log = dir.path().join("access.log");
    let proxy = start(&redis, &log);
    let mut ids = Vec::new();

    // None sent: generated, the same at the backend and the client.
    let r = with_id(proxy.addr, "app.example", "");
    let id = r.header("x-request-id").unwrap().to_string();
    assert!(is_generated(&id), "{id}");
    assert_eq!(r.text(), id, "the backend saw another ID");
    ids.push(id);

    // One valid value: kept (the backend's own value does not win).
    let r = with_id(
        proxy.addr,
        "app.example",
        "x-request-id: trace-7f3a.b_1\r\n",
    );
    assert_eq!(r.header("x-request-id"), Some("trace-7f3a.b_1"));
    assert_eq!(r.text(), "trace-7f3a.b_1");
    ids.push("trace-7f3a.b_1".into());

    // Invalid values, and two values: replaced by a fresh ID.
    let long = "x".repeat(129);
    for lines in [
        format!("X-Request-Id: {long}\r\n"),
        "X-Request-Id: caf\u{e9}\r\n".to_string(),
        "X-Request-Id: a b\r\n".to_string(),
        "X-Request-Id: one\r\nX-Request-Id: two\r\n".to_string(),
    ] {
        let r = with_id(proxy.addr, "app.example", &lines);
        let id = r.header("x-request-id").unwrap().to_string();
        assert!(is_generated(&id), "{lines:?} gave {id}");
        assert_eq!(r.text(), id, "{lines:?}: one ID, lopache's, at the backend");
        ids.push(id);
    }

    // lopache's own answers carry it too: an unknown host, a dead backend.
    for host in ["unknown.example", "down.example"] {
        let r = with_id(proxy.addr, host, "");
        assert!(r.status >= 400);
        let id = r.header("x-request-id").unwrap().to_string();
        assert!(is_generated(&id), "{host}: {id}");
        ids.push(id);
    }

    // The access log's last field is the same ID, line for line.
    let lines = wait_for("eight access log lines", || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        (text.lines().count() >= ids.len()).then_some(text)
    });
    let mut logged: Vec<String> = lines
        .lines()
        .map(|l| {
            let last = l.rsplit(' ').next().unwrap();
            last.trim_matches('"').to_string()
        })
        .collect();
    logged.sort();
    ids.sort();
    assert_eq!(logged, ids);
}

#[test]
fn off_by_default() {
    let redis = Redis::start();
    let app = echo_id();
    redis.frontend("", "app.example", "app", &[app.url()]);
    let proxy = Lopache::start(&redis.url(), "");
    let r = with_id(proxy.addr, "app.example", "X-Request-Id: mine\r\n");
    // Passed through untouched both ways, as any other header.
    assert_eq!(r.text(), "mine");
    assert_eq!(r.header("x-request-id"), Some("from-backend"));
}

#[test]
fn a_hundred_thousand_ids_are_distinct() {
    const CONNECTIONS: usize = 4;
    const BATCHES: usize = 250;
    const PIPELINED: usize = 100;
    let redis = Redis::start();
    let app = Backend::start(|_| Reply::ok(""));
    redis.frontend("", "app.example", "app", &[app.url()]);
    let proxy = Lopache::start(&redis.url(), "request_id_header = \"X-Request-Id\"");
    let addr = proxy.addr;
    let threads: Vec<_> = (0..CONNECTIONS)
        .map(|_| {
            std::thread::spawn(move || {
                let stream = TcpStream::connect(addr).unwrap();
                stream.set_read_timeout(Some(harness::WAIT)).unwrap();
                let mut writer = stream.try_clone().unwrap();
                let mut reader = BufReader::new(stream);
                let batch = "GET / HTTP/1.1\r\nHost: app.example\r\n\r\n".repeat(PIPELINED);
                let mut ids = Vec::with_capacity(BATCHES * PIPELINED);
                let mut line = String::new();
                for _ in 0..BATCHES {
                    writer.write_all(batch.as_bytes()).unwrap();
                    let mut answered = 0;
                    while answered < PIPELINED {
                        line.clear();
                        assert!(reader.read_line(&mut line).unwrap() > 0, "closed");
                        if let Some(id) = line
                            .strip_prefix("X-Request-Id: ")
                            .or_else(|| line.strip_prefix("x-request-id: "))
                        {
                            ids.push(id.trim_end().to_string());
                        } else if line == "\r\n" {
                            answered += 1; // empty bodies: a head's end is the response's
                        }
                    }
                }
                ids
            })
        })
        .collect();
    let mut seen = HashSet::new();
    for t in threads {
        for id in t.join().unwrap() {
            assert!(is_generated(&id), "{id}");
            assert!(seen.insert(id.clone()), "{id} came twice");
        }
    }
    assert_eq!(seen.len(), CONNECTIONS * BATCHES * PIPELINED);
}
