//! Things going away: Redis stopping and coming back, backends that are slow,
//! that hang up, or that answer garbage. The proxy answers with the right 5xx
//! and keeps serving.

mod harness;

use std::time::{Duration, Instant};

use harness::{
    get, metric_total, sockets_to, wait_for, Backend, Lopache, RawConn, Redis, Reply,
    TCP_ESTABLISHED,
};

#[test]
fn redis_outage_gives_503_and_service_returns_by_itself() {
    let mut redis = Redis::start();
    let app = Backend::named("app");
    redis.frontend("", "app.example", "app", &[app.url()]);
    let mut proxy = Lopache::start(&redis.url(), "redis_timeout_ms = 500");
    assert_eq!(get(proxy.addr, "app.example", "/").status, 200);
    redis.stop();
    for _ in 0..5 {
        let r = get(proxy.addr, "app.example", "/");
        assert_eq!(r.status, 503);
        assert!(r.text().contains("503"));
    }
    // __ping__ needs no Redis and keeps answering.
    assert_eq!(get(proxy.addr, "__ping__", "/").status, 200);
    assert!(proxy.alive());
    redis.restart();
    redis.frontend("", "app.example", "app", &[app.url()]);
    wait_for("service to return after redis restart", || {
        (get(proxy.addr, "app.example", "/").status == 200).then_some(())
    });
    wait_for("the outage in the log", || {
        proxy.stderr().contains("unavailable").then_some(())
    });
}

#[test]
fn redis_restart_between_requests_costs_no_error() {
    let mut redis = Redis::start();
    let app = Backend::named("app");
    redis.frontend("", "app.example", "app", &[app.url()]);
    let proxy = Lopache::start(&redis.url(), "workers = 1");
    assert_eq!(get(proxy.addr, "app.example", "/").status, 200);
    // The shard's connection is now stale; the next lookup must reconnect
    // transparently rather than fail.
    redis.stop();
    redis.restart();
    redis.frontend("", "app.example", "app", &[app.url()]);
    assert_eq!(get(proxy.addr, "app.example", "/").status, 200);
}

#[test]
fn slow_backend_gives_504() {
    let redis = Redis::start();
    let slow =
        Backend::start(|_| Reply::Delay(Duration::from_secs(3), Box::new(Reply::ok("late"))));
    redis.frontend("", "slow.example", "slow", &[slow.url()]);
    let proxy = Lopache::start(&redis.url(), "response_timeout = 1");
    let started = Instant::now();
    let r = get(proxy.addr, "slow.example", "/");
    assert_eq!(r.status, 504);
    assert!(
        started.elapsed() < Duration::from_millis(2900),
        "504 came after the backend answered"
    );
}

#[test]
fn backend_hanging_up_without_answer_gives_502() {
    let redis = Redis::start();
    let rude = Backend::start(|_| Reply::Close);
    redis.frontend("", "rude.example", "rude", &[rude.url()]);
    let proxy = Lopache::start(&redis.url(), "retry_on_error = 2");
    let r = get(proxy.addr, "rude.example", "/");
    assert_eq!(r.status, 502);
    // A GET without body is idempotent: it was retried on the only backend.
    assert_eq!(rude.count(), 3);
}

#[test]
fn post_is_not_retried_after_it_was_sent() {
    let redis = Redis::start();
    let rude = Backend::start(|_| Reply::Close);
    redis.frontend("", "rude.example", "rude", &[rude.url()]);
    let proxy = Lopache::start(&redis.url(), "retry_on_error = 2");
    let r = harness::request(
        proxy.addr,
        "POST / HTTP/1.1\r\nHost: rude.example\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi",
    );
    assert_eq!(r.status, 502);
    assert_eq!(rude.count(), 1);
}

#[test]
fn a_post_that_went_out_in_part_on_a_pooled_connection_is_not_sent_again() {
    // Each connection answers its first request, then reads the next one's
    // head and resets. The POST's body (buffered whole, 8 MiB) cannot all
    // go out before the reset, so lopache's write fails with part of the
    // POST on the backend: it may be running there, and sending it again
    // on a new connection (as after a write that sent nothing) would run
    // it twice.
    use std::io::Write;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    let (posts, connections) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (seen, opened) = (posts.clone(), connections.clone());
    let url = harness::backend::after_head(move |mut conn| {
        opened.fetch_add(1, Ordering::SeqCst);
        let _ = conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nwarm");
        if harness::backend::read_head(&conn).starts_with("POST") {
            seen.fetch_add(1, Ordering::SeqCst);
        }
        let _ = socket2::SockRef::from(&conn).set_linger(Some(Duration::ZERO));
    });
    let redis = Redis::start();
    redis.frontend("", "app.example", "app", &[url]);
    let proxy = Lopache::start(
        &redis.url(),
        "workers = 1\nrequest_buffer_bytes = 8388608\nretry_on_error = 2\ndebug_headers = true",
    );
    assert_eq!(get(proxy.addr, "app.example", "/").text(), "warm");
    let mut c = RawConn::connect(proxy.addr);
    c.send(
        b"POST / HTTP/1.1\r\nHost: app.example\r\nX-Debug: 1\r\nContent-Length: 8388608\r\n\r\n",
    );
    c.send(&vec![b'x'; 8 << 20]);
    let r = c.read_response(false);
    assert_eq!(r.status, 502, "{:?}", r.header("x-debug-error"));
    assert_eq!(
        posts.load(Ordering::SeqCst),
        1,
        "the POST reached the backend"
    );
    assert_eq!(
        connections.load(Ordering::SeqCst),
        1,
        "and was not sent again"
    );
}

#[test]
fn garbage_from_backend_gives_502() {
    let redis = Redis::start();
    let junk = Backend::start(|_| Reply::RawClose(b"SSH-2.0-OpenSSH\r\n\r\n".to_vec()));
    redis.frontend("", "junk.example", "junk", &[junk.url()]);
    let proxy = Lopache::start(&redis.url(), "");
    assert_eq!(get(proxy.addr, "junk.example", "/").status, 502);
    let bad_length = Backend::start(|_| {
        Reply::Raw(b"HTTP/1.1 200 OK\r\nContent-Length: 1, 2\r\n\r\nx".to_vec())
    });
    redis.frontend("", "junk.example", "junk", &[bad_length.url()]);
    assert_eq!(get(proxy.addr, "junk.example", "/").status, 502);
}

#[test]
fn stale_pooled_connection_is_not_an_error() {
    let redis = Redis::start();
    // Answers, then closes its side a moment later: the pooled connection goes
    // stale, here with no wait for the FIN (a request may meet it in flight
    // and be retried; the test below waits, and finds no retry at all).
    let flaky = Backend::start(|_| {
        Reply::RawClose(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec())
    });
    redis.frontend("", "flaky.example", "flaky", &[flaky.url()]);
    let proxy = Lopache::start(&redis.url(), "workers = 1");
    for _ in 0..10 {
        assert_eq!(get(proxy.addr, "flaky.example", "/").status, 200);
    }
    assert_eq!(flaky.count(), 10);
}

/// Sends `raw` through `proxy` `n` times to a backend that answers, then
/// closes the connection; before each request after the first, waits until
/// no connection to the backend is without the backend's FIN (a pooled one
/// is in CLOSE-WAIT).
/// Returns the statuses and the retries lopache counted. (The Host is
/// `closes.example`.)
fn on_closed_pooled_connections(server: &str, raw: &str, n: usize) -> (Vec<u16>, u64) {
    let redis = Redis::start();
    let closes = Backend::start(|_| {
        Reply::RawClose(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec())
    });
    redis.frontend("", "closes.example", "closes", &[closes.url()]);
    let port: u16 = closes.url().rsplit(':').next().unwrap().parse().unwrap();
    let proxy = harness::one_shard_with_admin(&redis, server);
    let statuses = (0..n)
        .map(|i| {
            if i > 0 {
                let unclosed = || sockets_to(port, TCP_ESTABLISHED);
                wait_for("the backend's FIN", || (unclosed() == 0).then_some(()));
            }
            harness::request(proxy.addr, raw).status
        })
        .collect();
    assert_eq!(closes.count(), n, "each request reached the backend once");
    let admin = proxy.admin_addr.expect("admin");
    (statuses, metric_total(admin, "lopache_retries_total"))
}

#[test]
fn a_pooled_connection_the_backend_closed_is_never_handed_to_a_request() {
    // The pool peeks at each idle connection before reuse and drops the
    // closed ones: no request is sent into one, so none fails and none is
    // retried, a POST (never sent twice) and a GET alike.
    let get = "GET / HTTP/1.1\r\nHost: closes.example\r\nConnection: close\r\n\r\n";
    let post = "POST / HTTP/1.1\r\nHost: closes.example\r\nContent-Length: 1\r\nConnection: close\r\n\r\nx";
    for (server, raw) in [("", get), ("", post), ("retry_on_error = 0", get)] {
        let (statuses, retries) = on_closed_pooled_connections(server, raw, 5);
        assert_eq!((statuses, retries), (vec![200; 5], 0), "{server} {raw}");
    }
}

#[test]
fn bytes_a_backend_sends_on_an_idle_connection_never_reach_the_next_client() {
    // The first connection answers, then writes a second response nobody
    // asked for and waits; later connections answer normally. Were the idle
    // connection reused, the next request would be answered "poisoned".
    let first = std::sync::atomic::AtomicBool::new(true);
    let url = harness::backend::after_head(move |mut conn| {
        use std::io::{Read, Write};
        let _ = conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nreal");
        if first.swap(false, std::sync::atomic::Ordering::SeqCst) {
            let _ = conn.flush();
            let _ = conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\npoisoned");
            // Open until lopache closes it (or, wrongly, sends a request).
            let _ = conn.read(&mut [0u8; 1024]);
        }
    });
    let port: u16 = url.rsplit(':').next().unwrap().parse().unwrap();
    let redis = Redis::start();
    redis.frontend("", "app.example", "app", &[url]);
    let proxy = Lopache::start(&redis.url(), "workers = 1");
    assert_eq!(get(proxy.addr, "app.example", "/").text(), "real");
    // The unsolicited response sits unread on lopache's pooled connection,
    // or came in the same read as the answer (then lopache closed it).
    wait_for("the unsolicited bytes", || {
        let read_or_closed = harness::sockets_to(port, TCP_ESTABLISHED) == 0;
        (harness::unread_from(port) > 0 || read_or_closed).then_some(())
    });
    for _ in 0..3 {
        let answer = get(proxy.addr, "app.example", "/");
        assert_eq!((answer.status, answer.text()), (200, "real".to_string()));
    }
}

#[test]
fn static_dir_pages_are_served_for_errors() {
    let redis = Redis::start();
    let dir = harness::TempDir::new("pages");
    std::fs::write(
        dir.path().join("error_502.html"),
        "<p>custom bad gateway</p>",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("error_default.html"),
        "<p>custom default</p>",
    )
    .unwrap();
    redis.frontend("", "none.example", "none", &[]);
    let proxy = Lopache::start(
        &redis.url(),
        &format!("static_dir = {:?}", dir.path().to_str().unwrap()),
    );
    assert_eq!(
        get(proxy.addr, "none.example", "/").text(),
        "<p>custom bad gateway</p>"
    );
    assert_eq!(
        get(proxy.addr, "unknown.example", "/").text(),
        "<p>custom default</p>"
    );
}

#[test]
fn idle_client_is_closed_after_tcp_timeout() {
    let redis = Redis::start();
    let proxy = Lopache::start(&redis.url(), "tcp_timeout = 1");
    let mut conn = RawConn::connect(proxy.addr);
    let started = Instant::now();
    assert!(conn.closed(), "idle connection was not closed");
    assert!(started.elapsed() >= Duration::from_millis(900));
}
