//! Resource bounds: upstream connections per backend (`max_sockets`), client
//! connections per shard (`max_connections`), connect timeouts, running out of
//! file descriptors, and a Redis that accepts but never answers.

mod harness;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use harness::{get, request, wait_for, Backend, Lopache, RawConn, Redis, Reply};

/// A backend that holds each request for `hold` and records peak concurrency.
fn counting_backend(hold: Duration) -> (Backend, Arc<AtomicUsize>) {
    let active = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let (a, p) = (active.clone(), peak.clone());
    let backend = Backend::start(move |_| {
        let now = a.fetch_add(1, Ordering::SeqCst) + 1;
        p.fetch_max(now, Ordering::SeqCst);
        std::thread::sleep(hold);
        a.fetch_sub(1, Ordering::SeqCst);
        Reply::ok("done")
    });
    (backend, peak)
}

fn concurrent_gets(proxy: &Lopache, n: usize) -> Vec<u16> {
    let addr = proxy.addr;
    let threads: Vec<_> = (0..n)
        .map(|_| std::thread::spawn(move || get(addr, "app.example", "/").status))
        .collect();
    threads.into_iter().map(|t| t.join().unwrap()).collect()
}

#[test]
fn max_sockets_caps_upstream_connections_per_backend() {
    for (cap, want_peak_at_most, want_peak_at_least) in [(1, 1, 1), (4, 4, 2)] {
        let redis = Redis::start();
        let (backend, peak) = counting_backend(Duration::from_millis(200));
        redis.frontend("", "app.example", "app", &[backend.url()]);
        let proxy = Lopache::start(&redis.url(), &format!("workers = 1\nmax_sockets = {cap}"));
        let statuses = concurrent_gets(&proxy, 4);
        assert!(statuses.iter().all(|&s| s == 200), "{statuses:?}");
        let peak = peak.load(Ordering::SeqCst);
        assert!(
            (want_peak_at_least..=want_peak_at_most).contains(&peak),
            "max_sockets = {cap}: peak concurrency {peak}"
        );
    }
}

#[test]
fn max_connections_caps_open_clients_per_shard() {
    let redis = Redis::start();
    let app = Backend::named("app");
    redis.frontend("", "app.example", "app", &[app.url()]);
    let proxy = Lopache::start(&redis.url(), "workers = 1\nmax_connections = 1");
    let mut first = RawConn::connect(proxy.addr);
    first.send(b"GET / HTTP/1.1\r\nHost: app.example\r\n\r\n");
    assert_eq!(first.read_response(false).status, 200);
    // The second connection is accepted by the kernel but not served while
    // the first one holds the shard's only slot.
    let mut second = RawConn::connect(proxy.addr);
    second.send(b"GET / HTTP/1.1\r\nHost: app.example\r\nConnection: close\r\n\r\n");
    second.set_timeout(Duration::from_millis(300));
    let mut byte = [0u8; 1];
    assert!(
        second.stream.read(&mut byte).is_err(),
        "served beyond max_connections"
    );
    drop(first);
    second.set_timeout(harness::WAIT);
    assert_eq!(second.read_response(false).status, 200);
}

#[test]
fn connect_timeout_marks_and_answers_502() {
    // A listener that never accepts, with its backlog filled: further SYNs
    // are dropped, so connecting hangs until the timeout.
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket
        .bind(
            &"127.0.0.1:0"
                .parse::<std::net::SocketAddr>()
                .unwrap()
                .into(),
        )
        .unwrap();
    socket.listen(0).unwrap();
    let addr = socket.local_addr().unwrap().as_socket().unwrap();
    let fillers: Vec<_> = (0..4)
        .filter_map(|_| TcpStream::connect_timeout(&addr, Duration::from_millis(200)).ok())
        .collect();
    assert!(!fillers.is_empty());
    let redis = Redis::start();
    redis.frontend("", "app.example", "app", &[format!("http://{addr}")]);
    let proxy = Lopache::start(
        &redis.url(),
        "connect_timeout = 1\nretry_on_error = 0\ndebug_headers = true",
    );
    let started = Instant::now();
    let r = request(
        proxy.addr,
        "GET / HTTP/1.1\r\nHost: app.example\r\nX-Debug: 1\r\nConnection: close\r\n\r\n",
    );
    let took = started.elapsed();
    assert_eq!(
        (r.status, r.header("x-debug-error")),
        (502, Some("connect-failed"))
    );
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(4),
        "{took:?}"
    );
}

#[test]
fn backend_host_names_are_resolved() {
    let redis = Redis::start();
    let app = Backend::named("by-name");
    redis.frontend(
        "",
        "app.example",
        "app",
        &[format!("http://localhost:{}", app.addr.port())],
    );
    let proxy = Lopache::start(&redis.url(), "");
    for _ in 0..3 {
        let r = get(proxy.addr, "app.example", "/");
        assert_eq!((r.status, r.text().as_str()), (200, "by-name"));
    }
}

#[test]
fn redis_over_a_unix_socket() {
    let dir = harness::TempDir::new("sock");
    let sock = dir.path().join("redis.sock");
    let redis = Redis::start_with(&[
        "--unixsocket",
        sock.to_str().unwrap(),
        "--unixsocketperm",
        "700",
    ]);
    let app = Backend::named("unix");
    redis.frontend("u:", "app.example", "app", &[app.url()]);
    let url = format!("redis+unix://{}#u:", sock.display());
    let proxy = Lopache::start(&url, "");
    assert_eq!(get(proxy.addr, "app.example", "/").text(), "unix");
}

#[test]
fn redis_that_never_answers_gives_503_within_the_timeout() {
    // A fault a real Redis cannot produce: it accepts and reads, but is silent.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in silent.incoming().flatten() {
            let mut c = conn.try_clone().unwrap();
            std::thread::spawn(move || {
                let mut sink = [0u8; 4096];
                while matches!(c.read(&mut sink), Ok(n) if n > 0) {}
            });
            held.push(conn);
        }
    });
    let proxy = Lopache::start(
        &format!("redis://127.0.0.1:{port}"),
        "redis_timeout_ms = 300",
    );
    let started = Instant::now();
    let r = get(proxy.addr, "app.example", "/");
    assert_eq!(r.status, 503);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn running_out_of_file_descriptors_pauses_accepts_and_recovers() {
    if std::process::Command::new("prlimit")
        .arg("--version")
        .output()
        .is_err()
    {
        panic!("prlimit (util-linux) is required for this test");
    }
    let redis = Redis::start();
    let app = Backend::named("app");
    redis.frontend("", "app.example", "app", &[app.url()]);
    let cfg = harness::proxy::config(&format!("{:?}", redis.url()), "workers = 1");
    let proxy = Lopache::start_wrapped(&cfg, &["prlimit", "--nofile=48:48", "--"]);
    assert_eq!(get(proxy.addr, "app.example", "/").status, 200);
    // Hold many idle connections: accept() starts failing with EMFILE.
    drop(harness::exhaust_fds(&proxy, 80));
    // Once descriptors are free again, service resumes by itself.
    wait_for("service after EMFILE", || {
        let mut c = TcpStream::connect(proxy.addr).ok()?;
        c.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        c.write_all(b"GET / HTTP/1.1\r\nHost: app.example\r\nConnection: close\r\n\r\n")
            .ok()?;
        let mut out = String::new();
        c.read_to_string(&mut out).ok()?;
        out.starts_with("HTTP/1.1 200").then_some(())
    });
}
