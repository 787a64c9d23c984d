//! Graceful drain on SIGTERM: requests in flight finish (and close their
//! connection), new connections are refused at once, idle keep-alive
//! connections close, tunnels run on until the drain deadline, and the
//! process exits 0.

mod harness;

use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use harness::ws::{self, WsEcho};
use harness::{wait_for, Backend, Lopache, RawConn, Redis, Reply};
use tungstenite::Message;

#[test]
fn in_flight_requests_finish_and_new_connections_are_refused() {
    let redis = Redis::start();
    let started = Arc::new(AtomicBool::new(false));
    let flag = started.clone();
    let slow = Backend::start(move |_| {
        flag.store(true, Ordering::SeqCst);
        Reply::Delay(Duration::from_millis(700), Box::new(Reply::ok("slow done")))
    });
    redis.frontend("", "app.example", "app", &[slow.url()]);
    let mut proxy = Lopache::start(&redis.url(), "drain_timeout = 20");
    let addr = proxy.addr;
    let client = std::thread::spawn(move || {
        let mut conn = RawConn::connect(addr);
        conn.send(b"GET /slow HTTP/1.1\r\nHost: app.example\r\n\r\n");
        let r = conn.read_response(false);
        (
            r.status,
            r.text(),
            r.header("connection").map(str::to_string),
            conn.closed(),
        )
    });
    wait_for("the request to reach the backend", || {
        started.load(Ordering::SeqCst).then_some(())
    });
    proxy.signal("TERM");
    wait_for("listeners to close", || {
        TcpStream::connect(addr).is_err().then_some(())
    });
    let (status, body, connection, closed) = client.join().unwrap();
    assert_eq!(
        (status, body.as_str()),
        (200, "slow done"),
        "the request in flight was cut"
    );
    assert_eq!(connection.as_deref(), Some("close"));
    assert!(closed);
    assert_eq!(proxy.wait_exit().code(), Some(0));
}

/// A proxy (drain_timeout 30 s) with one keep-alive connection, idle after
/// one answered request.
fn idle_keep_alive_connection() -> (Redis, Backend, Lopache, RawConn) {
    let redis = Redis::start();
    let app = Backend::named("app");
    redis.frontend("", "app.example", "app", &[app.url()]);
    let proxy = Lopache::start(&redis.url(), "drain_timeout = 30");
    let mut conn = RawConn::connect(proxy.addr);
    conn.send(b"GET / HTTP/1.1\r\nHost: app.example\r\n\r\n");
    assert_eq!(conn.read_response(false).status, 200);
    (redis, app, proxy, conn)
}

#[test]
fn idle_keep_alive_connections_close_and_the_process_exits_early() {
    let (_redis, _app, mut proxy, mut conn) = idle_keep_alive_connection();
    let signalled = Instant::now();
    proxy.signal("TERM");
    assert!(conn.closed(), "the idle connection stayed open");
    assert_eq!(proxy.wait_exit().code(), Some(0));
    // Nothing was left to wait for: no need to sit out the 30 s deadline.
    assert!(
        signalled.elapsed() < Duration::from_secs(5),
        "{:?}",
        signalled.elapsed()
    );
}

#[test]
fn a_request_sent_on_an_idle_connection_within_the_drain_grace_is_answered() {
    let (_redis, _app, mut proxy, mut conn) = idle_keep_alive_connection();
    proxy.signal("TERM");
    // Once new connections are refused the shards are draining; idle
    // connections get a grace in which a request already on its way is
    // still answered (and closes the connection).
    let addr = proxy.addr;
    wait_for("listeners to close", || {
        TcpStream::connect(addr).is_err().then_some(())
    });
    // Not synchronisation but the subject: the request comes a while into
    // the drain (well inside the 1 s grace, well past the 50 ms the shards
    // take to notice a drain).
    std::thread::sleep(Duration::from_millis(300));
    conn.send(b"GET /late HTTP/1.1\r\nHost: app.example\r\n\r\n");
    let late = conn.read_response(false);
    assert_eq!((late.status, late.text().as_str()), (200, "app"));
    assert_eq!(late.header("connection"), Some("close"));
    assert!(conn.closed());
    assert_eq!(proxy.wait_exit().code(), Some(0));
}

#[test]
fn tunnels_run_on_until_the_drain_deadline() {
    let redis = Redis::start();
    let echo = WsEcho::start();
    redis.frontend("", "ws.example", "ws", &[echo.url()]);
    let mut proxy = Lopache::start(&redis.url(), "drain_timeout = 2");
    let mut client = ws::connect(proxy.addr, "ws.example");
    client.send(Message::text("before")).unwrap();
    assert_eq!(client.read().unwrap(), Message::text("before"));
    let signalled = Instant::now();
    proxy.signal("TERM");
    wait_for("listeners to close", || {
        TcpStream::connect(proxy.addr).is_err().then_some(())
    });
    client.send(Message::text("during the drain")).unwrap();
    assert_eq!(client.read().unwrap(), Message::text("during the drain"));
    assert_eq!(proxy.wait_exit().code(), Some(0));
    let took = signalled.elapsed();
    assert!(
        took >= Duration::from_millis(1800),
        "exited before the deadline: {took:?}"
    );
    assert!(client.read().is_err(), "the tunnel outlived the process");
}
