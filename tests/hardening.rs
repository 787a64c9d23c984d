//! Attacks found by the adversarial review, each kept as a test: `Connection`
//! naming framing headers on either side, both lengths on a response,
//! lenient framing, slow heads and bodies, a full pool, local fd shortage,
//! a stalled admin client, and header hygiene (X-Debug, underscores).

mod harness;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use harness::{request, wait_for, Backend, Lopache, RawConn, Redis, Reply};

fn setup(backends: &[&Backend], server: &str) -> (Redis, Lopache) {
    let redis = Redis::start();
    let urls: Vec<String> = backends.iter().map(|b| b.url()).collect();
    redis.frontend("", "app.example", "app", &urls);
    let proxy = Lopache::start(&redis.url(), server);
    (redis, proxy)
}

/// Sends `raw` on a fresh connection and returns the first response.
fn send(proxy: &Lopache, raw: &[u8]) -> harness::HttpResponse {
    let mut c = RawConn::connect(proxy.addr);
    c.send(raw);
    c.read_response(false)
}

#[test]
fn connection_cannot_unframe_or_unroute_a_request() {
    let backend = Backend::start(|r| Reply::ok(&format!("{} {}", r.method, r.target)));
    let (_redis, proxy) = setup(&[&backend], "");
    let hidden = "GET /smuggled HTTP/1.1\r\nHost: app.example\r\n\r\n";
    let cases = [
        format!(
            "POST /a HTTP/1.1\r\nHost: app.example\r\nConnection: Content-Length\r\nContent-Length: {}\r\n\r\n{hidden}",
            hidden.len()
        ),
        format!(
            "POST /a HTTP/1.1\r\nHost: app.example\r\nConnection: keep-alive, Transfer-Encoding\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{hidden}\r\n0\r\n\r\n",
            hidden.len()
        ),
        "GET /a HTTP/1.1\r\nHost: app.example\r\nConnection: Host\r\n\r\n".to_string(),
    ];
    for raw in &cases {
        let mut c = RawConn::connect(proxy.addr);
        c.send(raw.as_bytes());
        let r = c.read_response(false);
        assert_eq!(r.status, 200, "{raw:?}");
        // The connection still works: a second request gets its own answer.
        c.send(b"GET /b HTTP/1.1\r\nHost: app.example\r\n\r\n");
        assert_eq!(c.read_response(false).text(), "GET /b", "{raw:?}");
    }
    let seen = backend.received();
    let targets: Vec<&str> = seen.iter().map(|r| r.target.as_str()).collect();
    assert_eq!(targets, ["/a", "/b", "/a", "/b", "/a", "/b"], "{seen:?}");
    assert_eq!(seen[0].body_len, hidden.len() as u64);
    assert_eq!(
        seen[0].header("content-length"),
        Some(&*hidden.len().to_string())
    );
    assert_eq!(seen[2].body_len, hidden.len() as u64);
    assert_eq!(seen[2].header("transfer-encoding"), Some("chunked"));
    assert_eq!(seen[4].header("host"), Some("app.example"));
}

#[test]
fn connection_cannot_unframe_a_response() {
    let backend = Backend::start(|r| {
        match r.target.as_str() {
        "/cl" => Reply::Raw(
            b"HTTP/1.1 200 OK\r\nConnection: Content-Length\r\nContent-Length: 5\r\n\r\nhello".to_vec(),
        ),
        "/te" => Reply::Raw(
            b"HTTP/1.1 200 OK\r\nConnection: Transfer-Encoding\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
                .to_vec(),
        ),
        _ => Reply::ok("next"),
    }
    });
    let (_redis, proxy) = setup(&[&backend], "");
    for path in ["/cl", "/te"] {
        let mut c = RawConn::connect(proxy.addr);
        c.send(format!("GET {path} HTTP/1.1\r\nHost: app.example\r\n\r\n").as_bytes());
        let r = c.read_response(false);
        assert_eq!((r.status, r.text().as_str()), (200, "hello"), "{path}");
        match path {
            "/cl" => assert_eq!(r.header("content-length"), Some("5")),
            _ => assert_eq!(r.header("transfer-encoding"), Some("chunked")),
        }
        c.send(b"GET /next HTTP/1.1\r\nHost: app.example\r\n\r\n");
        assert_eq!(c.read_response(false).text(), "next", "{path}");
    }
}

#[test]
fn a_response_with_both_lengths_is_framed_by_chunked_and_closed() {
    let backend = Backend::start(|_| {
        Reply::Raw(
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
                .to_vec(),
        )
    });
    let (_redis, proxy) = setup(&[&backend], "");
    let mut c = RawConn::connect(proxy.addr);
    c.send(b"GET / HTTP/1.1\r\nHost: app.example\r\n\r\n");
    let r = c.read_response(false);
    assert_eq!((r.status, r.text().as_str()), (200, "abc"));
    assert_eq!(r.header("content-length"), None);
    assert_eq!(r.header("transfer-encoding"), Some("chunked"));
    assert_eq!(r.header("connection"), Some("close"));
    assert!(
        c.closed(),
        "the client connection closes after such a response"
    );
    // An HTTP/1.0 client gets the decoded body, no stale length, and a close.
    let mut c = RawConn::connect(proxy.addr);
    c.send(b"GET / HTTP/1.0\r\nHost: app.example\r\n\r\n");
    let r = c.read_response(false);
    assert_eq!((r.status, r.text().as_str()), (200, "abc"));
    assert_eq!(r.header("content-length"), None);
    assert_eq!(r.header("transfer-encoding"), None);
}

#[test]
fn lenient_framing_is_refused_or_normalised() {
    let backend = Backend::start(|r| Reply::ok(&format!("{} {}", r.method, r.target)));
    let (_redis, proxy) = setup(&[&backend], "");
    let refused: [(&[u8], u16); 6] = [
        (b"POST /x HTTP/1.1\r\nHost: app.example\r\nTransfer-Encoding: chunked;x=1\r\n\r\n0\r\n\r\n", 400),
        (b"POST /x HTTP/1.1\r\nHost: app.example\r\nTransfer-Encoding: chunked\r\n\r\n5 xyz\r\nhello\r\n0\r\n\r\n", 400),
        (b"POST /x HTTP/1.1\r\nHost: app.example\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX: a\r\n b\r\n\r\n", 400),
        (b"POST /x HTTP/1.1\r\nHost: app.example\r\nTransfer-Encoding: chunked\r\n\r\n5;a=b c\r\nhello\r\n0\r\n\r\n", 400),
        (b"POST /x HTTP/1.1\r\nHost: app.example\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501),
        (b"POST /x HTTP/1.1\r\nHost: app.example\r\nContent-Length: 5, 6\r\n\r\nhello", 400),
    ];
    for (raw, status) in refused {
        let mut c = RawConn::connect(proxy.addr);
        c.send(raw);
        let r = c.read_response(false);
        assert_eq!(r.status, status, "{:?}", String::from_utf8_lossy(raw));
        assert!(c.closed(), "{:?}", String::from_utf8_lossy(raw));
    }
    assert_eq!(backend.count(), 0, "nothing refused reached the backend");
    // Accepted forms reach the backend in one canonical form.
    let normalised: [(&[u8], &str, &str); 2] = [
        (
            b"POST /y HTTP/1.1\r\nHost: app.example\r\nTransfer-Encoding: ,chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            "transfer-encoding",
            "chunked",
        ),
        (
            b"POST /y HTTP/1.1\r\nHost: app.example\r\nContent-Length: 5, 5\r\n\r\nhello",
            "content-length",
            "5",
        ),
    ];
    for (raw, name, value) in normalised {
        assert_eq!(send(&proxy, raw).status, 200);
        let seen = backend.received().pop().unwrap();
        assert_eq!(seen.headers_named(name), [value], "{seen:?}");
        assert_eq!(seen.body, b"hello");
    }
}

#[test]
fn trickled_request_bodies_never_hold_an_upstream_connection() {
    let backend = Backend::start(|r| Reply::ok(&format!("{}", r.body_len)));
    let (_redis, proxy) = setup(
        &[&backend],
        "workers = 1\nmax_sockets = 2\nclient_body_timeout = 2\nconnect_timeout = 1\ndebug_headers = true",
    );
    // Four clients announce large bodies and send one byte each.
    let mut slow: Vec<RawConn> = (0..4)
        .map(|_| {
            let mut c = RawConn::connect(proxy.addr);
            c.send(b"POST /up HTTP/1.1\r\nHost: app.example\r\nContent-Length: 100000\r\n\r\nx");
            c
        })
        .collect();
    // Others are served at once: the pool of two is still free.
    for _ in 0..3 {
        let r = request(
            proxy.addr,
            "POST /small HTTP/1.1\r\nHost: app.example\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc",
        );
        assert_eq!(
            (r.status, r.text().as_str()),
            (200, "3"),
            "{:?}",
            r.header("x-debug-error")
        );
    }
    // The trickling clients get 408 once client_body_timeout passes.
    for c in &mut slow {
        let r = c.read_response(false);
        assert_eq!(r.status, 408);
        assert!(c.closed());
    }
    let targets: Vec<String> = backend.received().into_iter().map(|r| r.target).collect();
    assert_eq!(
        targets, ["/small"; 3],
        "no trickled body reached the backend"
    );
}

#[test]
fn a_body_that_fits_the_buffer_is_sent_whole_and_a_larger_one_streams() {
    let backend = Backend::start(|r| Reply::ok(&format!("{} {}", r.body_len, r.body_hash)));
    let (_redis, proxy) = setup(&[&backend], "request_buffer_bytes = 1024");
    let block = harness::backend::pattern_block();
    for len in [1000usize, 200_000] {
        let mut c = RawConn::connect(proxy.addr);
        c.send(
            format!("POST / HTTP/1.1\r\nHost: app.example\r\nContent-Length: {len}\r\nExpect: 100-continue\r\n\r\n")
                .as_bytes(),
        );
        // lopache answers the expectation itself, before it reads the body.
        assert_eq!(c.read_head().status, 100);
        let body: Vec<u8> = block.iter().cycle().take(len).copied().collect();
        c.send(&body);
        let r = c.read_response(false);
        let want = format!(
            "{len} {}",
            harness::backend::fnv(harness::backend::FNV_START, &body)
        );
        assert_eq!((r.status, r.text()), (200, want));
    }
}

#[test]
fn a_full_pool_is_a_503_of_lopache_not_a_504_of_the_backend() {
    let backend = Backend::start(|r| match r.target.as_str() {
        "/hold" => Reply::Delay(Duration::from_secs(4), Box::new(Reply::ok("held"))),
        _ => Reply::ok("quick"),
    });
    // Two entries (so a failure would be marked dead), one address (so
    // both share the pool's single slot).
    let (redis, proxy) = setup(
        &[&backend, &backend],
        "workers = 1\nmax_sockets = 1\nconnect_timeout = 1\ndebug_headers = true",
    );
    let addr = proxy.addr;
    let holder = std::thread::spawn(move || {
        request(
            addr,
            "GET /hold HTTP/1.1\r\nHost: app.example\r\nConnection: close\r\n\r\n",
        )
    });
    wait_for("the holding request at the backend", || {
        (backend.count() == 1).then_some(())
    });
    let started = Instant::now();
    let r = request(
        proxy.addr,
        "GET / HTTP/1.1\r\nHost: app.example\r\nX-Debug: 1\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(
        (r.status, r.header("x-debug-error")),
        (503, Some("pool-exhausted"))
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(holder.join().unwrap().text(), "held");
    assert_eq!(
        redis.calls("sadd") + redis.calls("publish"),
        0,
        "nothing marked dead"
    );
}

#[test]
fn a_request_head_must_arrive_within_client_header_timeout() {
    let backend = Backend::named("app");
    let (_redis, proxy) = setup(&[&backend], "client_header_timeout = 1\ntcp_timeout = 30");
    // A slowloris client keeps sending, one byte at a time: the head's
    // deadline counts from its first byte, not from the last one.
    let mut c = RawConn::connect(proxy.addr);
    let started = Instant::now();
    c.send(b"GET / HTTP/1.1\r\nHost: app.example\r\n");
    let mut sent = 0;
    let mut answered = None;
    while started.elapsed() < Duration::from_secs(8) {
        if c.stream.write_all(b"X").is_err() {
            break;
        }
        sent += 1;
        c.stream
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut byte = [0u8; 1];
        match c.stream.peek(&mut byte) {
            Ok(n) if n > 0 => {
                answered = Some(started.elapsed());
                break;
            }
            Ok(_) => break,
            Err(_) => {}
        }
    }
    let took = answered.expect("lopache answered the trickled head");
    assert!(sent > 1, "the client was still sending");
    c.set_timeout(harness::WAIT);
    assert_eq!(c.read_head().status, 408);
    assert!(took < Duration::from_secs(5), "{took:?}");
    // An idle keep-alive connection is governed by tcp_timeout, not this.
    let mut idle = RawConn::connect(proxy.addr);
    idle.send(b"GET / HTTP/1.1\r\nHost: app.example\r\n\r\n");
    assert_eq!(idle.read_response(false).status, 200);
    idle.set_timeout(Duration::from_millis(1500));
    let mut byte = [0u8; 1];
    assert!(
        idle.stream.read(&mut byte).is_err(),
        "an idle connection is not closed by the head timeout"
    );
}

#[test]
fn lopaches_own_fd_shortage_is_a_503_and_marks_nothing_dead() {
    let a = Backend::named("a");
    let b = Backend::named("b");
    let redis = Redis::start();
    redis.frontend("", "app.example", "app", &[a.url(), b.url()]);
    // The same backends by name: resolving needs descriptors too.
    let by_name = |be: &Backend| format!("http://localhost:{}", be.addr.port());
    redis.frontend("", "named.example", "named", &[by_name(&a), by_name(&b)]);
    let cfg = harness::proxy::config(
        &format!("{:?}", redis.url()),
        "workers = 1\nhttp_keep_alive = false\ndebug_headers = true\nretry_on_error = 3\n\
         dns_ttl = 0",
    );
    let proxy = Lopache::start_wrapped(&cfg, &["prlimit", "--nofile=64:64", "--"]);
    let mut client = RawConn::connect(proxy.addr);
    client.send(b"GET / HTTP/1.1\r\nHost: app.example\r\n\r\n");
    assert_eq!(client.read_response(false).status, 200);
    // Use up the worker's descriptors with idle connections.
    let held = harness::exhaust_fds(&proxy, 100);
    redis.cmd(&["CONFIG", "RESETSTAT"]);
    for _ in 0..3 {
        client.send(b"GET / HTTP/1.1\r\nHost: app.example\r\nX-Debug: 1\r\n\r\n");
        let r = client.read_response(false);
        assert_eq!(
            (r.status, r.header("x-debug-error")),
            (503, Some("local-resources"))
        );
    }
    // By name, the shortage shows while resolving or while connecting:
    // lopache's failure either way, never a dead backend.
    for _ in 0..3 {
        client.send(b"GET / HTTP/1.1\r\nHost: named.example\r\nX-Debug: 1\r\n\r\n");
        let r = client.read_response(false);
        let error = r.header("x-debug-error").unwrap_or("").to_string();
        assert!(
            (r.status, error.as_str()) == (503, "local-resources")
                || (r.status, error.as_str()) == (502, "dns-failed"),
            "{} {error}",
            r.status
        );
    }
    assert_eq!(
        redis.calls("sadd") + redis.calls("publish") + redis.calls("eval"),
        0,
        "no backend marked dead"
    );
    assert_eq!(
        harness::redis::members(&redis.cmd(&["SMEMBERS", "dead:app.example"])).len(),
        0
    );
    wait_for("the rate-limited local-resources warning", || {
        proxy.stderr().contains("lopache's own limit").then_some(())
    });
    drop(held);
    wait_for("service after the shortage", || {
        client.send(b"GET / HTTP/1.1\r\nHost: app.example\r\n\r\n");
        (client.read_response(false).status == 200).then_some(())
    });
}

#[test]
fn stalled_admin_clients_cannot_delay_healthz() {
    let redis = Redis::start();
    let cfg = format!(
        "{}\n[admin]\nbind = \"127.0.0.1:0\"\n",
        harness::proxy::config(&format!("{:?}", redis.url()), "")
    );
    let proxy = Lopache::start_config(&cfg, &[]);
    let admin = proxy.admin_addr.expect("admin address");
    // Six connections that never send a request.
    let stalled: Vec<TcpStream> = (0..6).map(|_| TcpStream::connect(admin).unwrap()).collect();
    for _ in 0..3 {
        let mut c = TcpStream::connect(admin).unwrap();
        // Below the 5 s a stalled connection may take: answered concurrently.
        c.set_read_timeout(Some(Duration::from_secs(4))).unwrap();
        c.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut out = String::new();
        c.read_to_string(&mut out)
            .expect("healthz answered while others stall");
        assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    }
    drop(stalled);
}

#[test]
fn debug_headers_are_off_unless_configured_and_underscored_names_dropped() {
    let backend = Backend::start(|r| {
        Reply::ok(&format!(
            "{:?}",
            r.headers
                .iter()
                .map(|(n, _)| n.as_str())
                .collect::<Vec<_>>()
        ))
    });
    let (_redis, proxy) = setup(&[&backend], "");
    let r = request(
        proxy.addr,
        "GET / HTTP/1.1\r\nHost: app.example\r\nX-Debug: 1\r\nX_Real_IP: 6.6.6.6\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 200);
    assert!(
        r.headers.iter().all(|(n, _)| !n.starts_with("x-debug")),
        "{:?}",
        r.headers
    );
    assert!(!r.text().contains("X_Real_IP"), "{}", r.text());
    let r = request(
        proxy.addr,
        "GET / HTTP/1.1\r\nHost: none.example\r\nX-Debug: 1\r\nConnection: close\r\n\r\n",
    );
    assert_eq!((r.status, r.header("x-debug-error")), (400, None));
    let (_redis, allowing) = setup(&[&backend], "underscores_in_headers = true");
    let r = request(
        allowing.addr,
        "GET / HTTP/1.1\r\nHost: app.example\r\nX_App_Id: 1\r\nX_Real_IP: 6.6.6.6\r\n\
         Content_Length: 5\r\nConnection: close\r\n\r\n",
    );
    // Allowed, except names a backend may read as a header lopache owns.
    assert!(r.text().contains("X_App_Id"), "{}", r.text());
    assert!(
        !r.text().contains("X_Real_IP") && !r.text().contains("Content_Length"),
        "{}",
        r.text()
    );
}

/// A client connection with a tiny receive buffer: what it does not read
/// stays in the proxy, not in the kernel.
fn slow_reader(addr: std::net::SocketAddr) -> RawConn {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect(&addr.into()).unwrap();
    let stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(harness::WAIT)).unwrap();
    RawConn::over(stream)
}

/// A 32 MiB body (more than the kernel's socket buffers on both sides hold
/// together: tcp_wmem and tcp_rmem are at most 4 and 6 MiB by default) goes
/// to a client that reads none of it, with `read_ahead` bytes of read-ahead
/// and one upstream connection allowed. Returns the answer another client
/// then gets, and the body the slow client finally reads.
fn slow_reader_beside_another(read_ahead: u64) -> (harness::HttpResponse, Vec<u8>) {
    let backend = Backend::start(|r| match r.target.as_str() {
        "/big" => Reply::Stream {
            len: BIG,
            chunked: true,
        },
        _ => Reply::ok("quick"),
    });
    let (_redis, proxy) = setup(
        &[&backend],
        &format!(
            "workers = 1\nmax_sockets = 1\nconnect_timeout = 1\ndebug_headers = true\n\
             response_buffer_bytes = {read_ahead}"
        ),
    );
    let mut slow = slow_reader(proxy.addr);
    slow.send(b"GET /big HTTP/1.1\r\nHost: app.example\r\n\r\n");
    wait_for("the large response to start", || {
        (backend.count() == 1).then_some(())
    });
    let other = request(
        proxy.addr,
        "GET / HTTP/1.1\r\nHost: app.example\r\nX-Debug: 1\r\nConnection: close\r\n\r\n",
    );
    (other, slow.read_response(false).body)
}

const BIG: u64 = 32 << 20;

#[test]
fn a_slow_reader_never_holds_the_backends_connection() {
    let (other, body) = slow_reader_beside_another(64 << 20);
    // The one connection the backend may have on this shard was free again.
    assert_eq!(
        (other.status, other.text().as_str()),
        (200, "quick"),
        "{:?}",
        other.header("x-debug-error")
    );
    // And the slow reader still gets every byte.
    let block = harness::backend::pattern_block();
    let want: Vec<u8> = block.iter().cycle().take(BIG as usize).copied().collect();
    assert!(body == want, "the body arrived changed");
}

#[test]
fn read_ahead_stays_within_its_bounds() {
    // 64 KiB of read-ahead cannot take 32 MiB: the slow reader keeps the
    // connection, and the next request finds the pool full.
    let (other, body) = slow_reader_beside_another(64 << 10);
    assert_eq!(
        (other.status, other.header("x-debug-error")),
        (503, Some("pool-exhausted"))
    );
    assert_eq!(body.len() as u64, BIG);
}

/// A backend that reads a request head, answers 413 at once without reading
/// the body, and then closes (`close`) or keeps the connection without
/// reading anything more.
fn early_413(close: bool) -> String {
    harness::backend::after_head(move |mut conn| {
        let _ = conn.write_all(
            b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 4\r\nConnection: close\r\n\r\nbig!",
        );
        if !close {
            std::thread::sleep(Duration::from_secs(20));
        }
    })
}

const PIECE: usize = 100_000;

/// Sends up to `pieces` pieces of a request body, then reads the response.
/// lopache stops reading once it has an answer: the writes then fail or
/// time out, as with any server.
fn send_pieces_then_read(c: &mut RawConn, pieces: usize) -> harness::HttpResponse {
    c.stream
        .set_write_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    for _ in 0..pieces {
        if c.stream.write_all(&[b'x'; PIECE]).is_err() {
            break;
        }
    }
    c.read_response(false)
}

#[test]
fn a_backend_refusing_a_body_early_is_answered_and_not_marked_dead() {
    for close in [true, false] {
        let url = early_413(close);
        let redis = Redis::start();
        // Two entries, so that a failure would be marked dead.
        redis.frontend("", "app.example", "app", &[url.clone(), url]);
        let proxy = Lopache::start(
            &redis.url(),
            "workers = 1\nresponse_timeout = 3\nretry_on_error = 0\ndebug_headers = true",
        );
        let mut c = RawConn::connect(proxy.addr);
        c.send(b"POST /up HTTP/1.1\r\nHost: app.example\r\nX-Debug: 1\r\nContent-Length: 4000000\r\n\r\n");
        // More than the 64 KiB buffered up front; then the rest, in pieces,
        // while the backend has long answered.
        let r = send_pieces_then_read(&mut c, 40);
        assert_eq!(
            (r.status, r.text().as_str()),
            (413, "big!"),
            "close={close}: {:?}",
            r.header("x-debug-error")
        );
        assert_eq!(
            redis.calls("eval") + redis.calls("sadd"),
            0,
            "close={close}: a backend refusing a body is not dead"
        );
    }
}

#[test]
fn a_pooled_connection_refusing_a_body_early_is_answered_while_the_body_comes() {
    // The backend answers a GET, then answers the POST that follows on the
    // same connection with a 413 at once and stops reading. The POST goes
    // out on the pooled connection: the body relay must look for an answer
    // between pieces, or it writes on until the backend's buffers fill and
    // waits out `response_timeout` (30 s, beyond the client's wait) before
    // anyone reads the answer.
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;
    let connections = Arc::new(AtomicUsize::new(0));
    let answered = Arc::new(AtomicBool::new(false));
    let (counted, told) = (connections.clone(), answered.clone());
    let url = harness::backend::after_head(move |mut conn| {
        counted.fetch_add(1, Ordering::SeqCst);
        let _ = conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nwarm");
        harness::backend::read_head(&conn);
        let _ = conn.write_all(
            b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 4\r\nConnection: close\r\n\r\nbig!",
        );
        told.store(true, Ordering::SeqCst);
        std::thread::sleep(Duration::from_secs(40));
    });
    let redis = Redis::start();
    redis.frontend("", "app.example", "app", &[url]);
    let proxy = Lopache::start(
        &redis.url(),
        "workers = 1\nresponse_timeout = 30\nretry_on_error = 0\ndebug_headers = true",
    );
    let warm = request(proxy.addr, "GET / HTTP/1.1\r\nHost: app.example\r\n\r\n");
    assert_eq!(warm.text(), "warm");
    let mut c = RawConn::connect(proxy.addr);
    c.send(
        b"POST /up HTTP/1.1\r\nHost: app.example\r\nX-Debug: 1\r\nContent-Length: 67108864\r\n\r\n",
    );
    // The first piece fills lopache's request buffer (64 KiB), so the head
    // goes out; the rest only once the answer is on its way (else the body
    // could fill the backend's buffers first, and a relay blocked on a write
    // looks at nothing).
    c.send(&[b'x'; PIECE]);
    wait_for("the backend's early answer", || {
        answered.load(Ordering::SeqCst).then_some(())
    });
    let r = send_pieces_then_read(&mut c, 670);
    assert_eq!(
        (r.status, r.text().as_str()),
        (413, "big!"),
        "{:?}",
        r.header("x-debug-error")
    );
    assert_eq!(
        connections.load(Ordering::SeqCst),
        1,
        "the POST went out on the pooled connection"
    );
}

#[test]
fn no_100_continue_for_http10_and_interim_heads_are_rewritten() {
    let backend = Backend::start(|r| {
        match r.target.as_str() {
        "/hints" => Reply::Raw(
            b"HTTP/1.1 103 Early Hints\nLink: </a.css>\nConnection: X-Hop\nX-Hop: 1\nContent-Length: 5\n\n\
              HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
                .to_vec(),
        ),
        _ => Reply::ok(&format!("{}", r.body_len)),
    }
    });
    let (_redis, proxy) = setup(&[&backend], "");
    // HTTP/1.0 with Expect: no 1xx may go to a 1.0 client.
    let mut c = RawConn::connect(proxy.addr);
    c.send(b"POST / HTTP/1.0\r\nHost: app.example\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\nabc");
    let r = c.read_head();
    assert_eq!(r.status, 200);
    // An interim head reaches the client as lopache writes heads.
    let mut c = RawConn::connect(proxy.addr);
    c.send(b"GET /hints HTTP/1.1\r\nHost: app.example\r\n\r\n");
    let hints = c.read_head();
    assert_eq!(hints.status, 103);
    assert_eq!(hints.header("link"), Some("</a.css>"));
    for gone in ["x-hop", "content-length", "connection"] {
        assert_eq!(hints.header(gone), None, "{gone}");
    }
    assert_eq!(c.read_response(false).text(), "ok");
}

#[test]
fn buffered_bodies_stay_within_the_shards_buffer_budget() {
    let backend = Backend::named("app");
    // 1 MiB holds sixteen 64 KiB bodies; the rest stream as they come.
    let (_redis, proxy) = setup(
        &[&backend],
        "workers = 1\nbuffer_budget_mb = 1\nclient_body_timeout = 3",
    );
    let mut clients: Vec<RawConn> = (0..40)
        .map(|_| {
            let mut c = RawConn::connect(proxy.addr);
            c.send(b"POST /up HTTP/1.1\r\nHost: app.example\r\nContent-Length: 65536\r\n\r\nx");
            c
        })
        .collect();
    wait_for("the bodies beyond the budget to stream", || {
        (backend.connections() == 24).then_some(())
    });
    for c in &mut clients {
        assert_eq!(c.read_response(false).status, 408);
    }
    assert_eq!(backend.connections(), 24, "sixteen bodies were buffered");
}
