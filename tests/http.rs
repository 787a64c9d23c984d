//! HTTP/1.1 behaviour through the real binary: keep-alive on both sides,
//! pipelining, chunked bodies, HEAD/204/304, Expect: 100-continue, the RFC 9112
//! smuggling rejections, limits, and the headers the backend receives.

mod harness;

use harness::{request, Backend, Lopache, RawConn, Redis, Reply};

/// A proxy routing `app.example` to `backend`.
fn setup(backend: &Backend, server: &str) -> (Redis, Lopache) {
    let redis = Redis::start();
    redis.frontend("", "app.example", "app", &[backend.url()]);
    let proxy = Lopache::start(&redis.url(), server);
    (redis, proxy)
}

fn echo_path() -> Backend {
    Backend::start(|r| Reply::ok(&format!("{} {}", r.method, r.target)))
}

#[test]
fn keep_alive_serves_large_and_small_heads_alike() {
    // Heads over the small idle read buffer (256 bytes on io_uring) take a
    // second read and switch the connection to waiting for readability;
    // small ones switch it back.
    let backend = echo_path();
    let (_redis, proxy) = setup(&backend, "");
    let mut conn = RawConn::connect(proxy.addr);
    let cookie = "c".repeat(2000);
    for (i, big) in [false, true, true, false, true, false, false]
        .iter()
        .enumerate()
    {
        let extra = if *big {
            format!("Cookie: {cookie}\r\n")
        } else {
            String::new()
        };
        conn.send(format!("GET /{i} HTTP/1.1\r\nHost: app.example\r\n{extra}\r\n").as_bytes());
        let r = conn.read_response(false);
        assert_eq!((r.status, r.text()), (200, format!("GET /{i}")));
    }
}

#[test]
fn keep_alive_is_reused_on_both_sides() {
    let backend = echo_path();
    let (_redis, proxy) = setup(&backend, "workers = 1");
    let mut conn = RawConn::connect(proxy.addr);
    for i in 0..5 {
        conn.send(format!("GET /{i} HTTP/1.1\r\nHost: app.example\r\n\r\n").as_bytes());
        let r = conn.read_response(false);
        assert_eq!((r.status, r.text()), (200, format!("GET /{i}")));
        assert_eq!(r.header("connection"), None);
    }
    // Separate client connections share the pooled upstream connection too.
    for _ in 0..3 {
        assert_eq!(harness::get(proxy.addr, "app.example", "/x").status, 200);
    }
    assert_eq!(backend.count(), 8);
    assert_eq!(
        backend.connections(),
        1,
        "upstream connection was not reused"
    );
}

#[test]
fn http10_keep_alive_and_close() {
    let backend = echo_path();
    let (_redis, proxy) = setup(&backend, "");
    let mut conn = RawConn::connect(proxy.addr);
    conn.send(b"GET /a HTTP/1.0\r\nHost: app.example\r\nConnection: keep-alive\r\n\r\n");
    let r = conn.read_response(false);
    assert_eq!(
        (r.status, r.header("connection")),
        (200, Some("keep-alive"))
    );
    conn.send(b"GET /b HTTP/1.0\r\nHost: app.example\r\n\r\n");
    let r = conn.read_response(false);
    assert_eq!(
        (r.text().as_str(), r.header("connection")),
        ("GET /b", Some("close"))
    );
    assert!(conn.closed());
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let backend = echo_path();
    let (_redis, proxy) = setup(&backend, "");
    let mut conn = RawConn::connect(proxy.addr);
    let mut batch = String::new();
    for i in 0..10 {
        batch.push_str(&format!("GET /p{i} HTTP/1.1\r\nHost: app.example\r\n\r\n"));
    }
    batch.push_str("POST /body HTTP/1.1\r\nHost: app.example\r\nContent-Length: 5\r\n\r\nhelloGET /last HTTP/1.1\r\nHost: app.example\r\n\r\n");
    conn.send(batch.as_bytes());
    for i in 0..10 {
        assert_eq!(conn.read_response(false).text(), format!("GET /p{i}"));
    }
    assert_eq!(conn.read_response(false).text(), "POST /body");
    assert_eq!(conn.read_response(false).text(), "GET /last");
    assert_eq!(backend.received()[10].body, b"hello");
}

#[test]
fn chunked_request_body_is_forwarded_intact() {
    let backend = echo_path();
    let (_redis, proxy) = setup(&backend, "");
    let r = request(
        proxy.addr,
        "POST /up HTTP/1.1\r\nHost: app.example\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
         5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nX-Trailer: t\r\n\r\n",
    );
    assert_eq!(r.status, 200);
    let got = &backend.received()[0];
    assert_eq!(got.body, b"hello, world");
    assert_eq!(got.header("transfer-encoding"), Some("chunked"));
    assert_eq!(got.header("content-length"), None);
}

#[test]
fn invalid_chunked_request_body_is_400() {
    let backend = echo_path();
    let (_redis, proxy) = setup(&backend, "");
    let mut conn = RawConn::connect(proxy.addr);
    conn.send(b"POST /up HTTP/1.1\r\nHost: app.example\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n");
    let r = conn.read_response(false);
    assert_eq!(r.status, 400);
    assert!(conn.closed());
}

#[test]
fn chunked_response_is_relayed_and_dechunked_for_http10() {
    let raw =
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n"
            .to_vec();
    let backend = Backend::start(move |_| Reply::Raw(raw.clone()));
    let (_redis, proxy) = setup(&backend, "");
    let mut conn = RawConn::connect(proxy.addr);
    conn.send(b"GET / HTTP/1.1\r\nHost: app.example\r\n\r\n");
    let r = conn.read_response(false);
    assert_eq!(
        (r.header("transfer-encoding"), r.text().as_str()),
        (Some("chunked"), "abcdefg")
    );
    // Same connection still works: the chunked framing ended where it should.
    conn.send(b"GET / HTTP/1.0\r\nHost: app.example\r\n\r\n");
    let r = conn.read_response(false);
    assert_eq!(r.header("transfer-encoding"), None);
    assert_eq!(r.text(), "abcdefg");
    assert!(conn.closed());
}

#[test]
fn close_delimited_response_closes_the_client() {
    let backend =
        Backend::start(|_| Reply::RawClose(b"HTTP/1.1 200 OK\r\n\r\nuntil the end".to_vec()));
    let (_redis, proxy) = setup(&backend, "");
    let mut conn = RawConn::connect(proxy.addr);
    conn.send(b"GET / HTTP/1.1\r\nHost: app.example\r\n\r\n");
    let r = conn.read_response(false);
    assert_eq!((r.status, r.text().as_str()), (200, "until the end"));
    assert_eq!(r.header("connection"), Some("close"));
}

#[test]
fn head_204_and_304_have_no_body() {
    let backend = Backend::start(|r| match r.target.as_str() {
        "/head" => Reply::Raw(b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n".to_vec()),
        "/204" => Reply::Raw(b"HTTP/1.1 204 No Content\r\n\r\n".to_vec()),
        "/304" => Reply::Raw(b"HTTP/1.1 304 Not Modified\r\nContent-Length: 11\r\n\r\n".to_vec()),
        _ => Reply::ok("after"),
    });
    let (_redis, proxy) = setup(&backend, "workers = 1");
    let mut conn = RawConn::connect(proxy.addr);
    conn.send(b"HEAD /head HTTP/1.1\r\nHost: app.example\r\n\r\n");
    let r = conn.read_response(true);
    assert_eq!((r.status, r.header("content-length")), (200, Some("11")));
    for path in ["/204", "/304"] {
        conn.send(format!("GET {path} HTTP/1.1\r\nHost: app.example\r\n\r\n").as_bytes());
        assert_eq!(
            conn.read_response(false).status,
            path[1..].parse::<u16>().unwrap()
        );
    }
    // If any body had been expected, this response would be misread.
    conn.send(b"GET /next HTTP/1.1\r\nHost: app.example\r\n\r\n");
    assert_eq!(conn.read_response(false).text(), "after");
    assert_eq!(
        backend.connections(),
        1,
        "bodyless responses must leave the upstream reusable"
    );
}

#[test]
fn expect_100_continue() {
    let backend = echo_path();
    let (_redis, proxy) = setup(&backend, "");
    let mut conn = RawConn::connect(proxy.addr);
    conn.send(b"PUT /data HTTP/1.1\r\nHost: app.example\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n");
    // The client waits for the interim response before sending its body.
    let interim = conn.read_head();
    assert_eq!(interim.status, 100);
    conn.send(b"data");
    let r = conn.read_response(false);
    assert_eq!((r.status, r.text().as_str()), (200, "PUT /data"));
    let got = &backend.received()[0];
    assert_eq!(got.body, b"data");
    assert_eq!(got.header("expect"), None);
}

#[test]
fn smuggling_shapes_are_rejected_with_400_and_close() {
    let backend = echo_path();
    let (_redis, proxy) = setup(&backend, "");
    let cases = [
        "POST / HTTP/1.1\r\nHost: app.example\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: app.example\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: app.example\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        "POST / HTTP/1.1\r\nHost: app.example\r\nContent-Length: 5, 6\r\n\r\nhello!",
        "POST / HTTP/1.1\r\nHost: app.example\r\nContent-Length: +5\r\n\r\nhello",
        "POST / HTTP/1.1\r\nHost: app.example\r\nContent-Length: 0x5\r\n\r\nhello",
        "POST / HTTP/1.1\r\nHost: app.example\r\nContent-Length: -1\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: app.example\r\nTransfer-Encoding: gzip\r\n\r\nxx",
        "POST / HTTP/1.1\r\nHost: app.example\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: app.example\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        "POST / HTTP/1.0\r\nHost: app.example\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: app.example\r\nHost: other.example\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: app.example\r\nBad Header: x\r\n\r\n",
    ];
    for raw in cases {
        let mut conn = RawConn::connect(proxy.addr);
        conn.send(raw.as_bytes());
        let r = conn.read_response(false);
        assert_eq!(r.status, 400, "{raw:?}");
        assert_eq!(r.header("connection"), Some("close"), "{raw:?}");
        assert!(conn.closed(), "connection left open after {raw:?}");
    }
    assert_eq!(backend.count(), 0, "a rejected request reached the backend");
}

#[test]
fn bare_lf_line_endings_are_served() {
    let backend = echo_path();
    let (_redis, proxy) = setup(&backend, "");
    let r = request(
        proxy.addr,
        "GET /lf HTTP/1.1\nHost: app.example\nConnection: close\n\n",
    );
    assert_eq!((r.status, r.text().as_str()), (200, "GET /lf"));
}

#[test]
fn oversized_heads_get_431_and_414() {
    let backend = echo_path();
    let (_redis, proxy) = setup(&backend, "");
    let cases = [
        (
            format!(
                "GET / HTTP/1.1\r\nHost: app.example\r\nX-Big: {}\r\n\r\n",
                "a".repeat(20_000)
            ),
            431,
        ),
        (
            format!(
                "GET /{} HTTP/1.1\r\nHost: app.example\r\n\r\n",
                "u".repeat(10_000)
            ),
            414,
        ),
        (
            format!(
                "GET / HTTP/1.1\r\nHost: app.example\r\n{}\r\n",
                "X-Many: 1\r\n".repeat(150)
            ),
            431,
        ),
    ];
    for (raw, status) in cases {
        let mut conn = RawConn::connect(proxy.addr);
        conn.send(raw.as_bytes());
        assert_eq!(conn.read_response(false).status, status);
        assert!(conn.closed());
    }
    assert_eq!(backend.count(), 0);
}

#[test]
fn configured_limits_apply() {
    let backend = echo_path();
    let redis = Redis::start();
    redis.frontend("", "app.example", "app", &[backend.url()]);
    let text = format!(
        "driver = {:?}\n[http]\nport = 0\nbind = [\"127.0.0.1\"]\n[limits]\nuri_bytes = 300\n",
        redis.url()
    );
    let proxy = Lopache::start_config(&text, &[]);
    let ok = format!(
        "GET /{} HTTP/1.1\r\nHost: app.example\r\nConnection: close\r\n\r\n",
        "u".repeat(250)
    );
    assert_eq!(request(proxy.addr, &ok).status, 200);
    let long = format!(
        "GET /{} HTTP/1.1\r\nHost: app.example\r\nConnection: close\r\n\r\n",
        "u".repeat(400)
    );
    assert_eq!(request(proxy.addr, &long).status, 414);
}

#[test]
fn forwarded_headers_as_the_backend_sees_them() {
    let backend = echo_path();
    let (_redis, proxy) = setup(&backend, "");
    let r = request(
        proxy.addr,
        "GET / HTTP/1.1\r\nHost: app.example\r\nX-Forwarded-For: 203.0.113.7\r\nX-Real-IP: 6.6.6.6\r\n\
         X-Forwarded-Proto: https\r\nX-Forwarded-Port: 1\r\nConnection: close, X-Private\r\nX-Private: secret\r\n\
         Keep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\nTE: trailers\r\nUpgrade: h2c\r\nX-Kept: yes\r\n\r\n",
    );
    assert_eq!(r.status, 200);
    let got = &backend.received()[0];
    assert_eq!(
        got.header("x-forwarded-for"),
        Some("203.0.113.7, 127.0.0.1")
    );
    assert_eq!(got.headers_named("x-real-ip"), ["127.0.0.1"]);
    assert_eq!(got.headers_named("x-forwarded-proto"), ["http"]);
    assert_eq!(
        got.headers_named("x-forwarded-port"),
        [proxy.addr.port().to_string().as_str()]
    );
    for gone in [
        "x-private",
        "keep-alive",
        "proxy-connection",
        "te",
        "upgrade",
    ] {
        assert_eq!(got.header(gone), None, "{gone} was forwarded");
    }
    assert_eq!(got.header("x-kept"), Some("yes"));
    assert_eq!(got.header("host"), Some("app.example"));
}

#[test]
fn hop_by_hop_response_headers_are_dropped() {
    let backend = Backend::start(|_| {
        Reply::with_headers(
            200,
            &[
                ("Connection", "X-Secret"),
                ("X-Secret", "1"),
                ("Keep-Alive", "timeout=9"),
                ("X-App", "a"),
            ],
            "ok",
        )
    });
    let (_redis, proxy) = setup(&backend, "");
    let r = harness::get(proxy.addr, "app.example", "/");
    assert_eq!(r.header("x-secret"), None);
    assert_eq!(r.header("keep-alive"), None);
    assert_eq!(r.header("x-app"), Some("a"));
}

#[test]
fn debug_headers_on_request() {
    let backend = echo_path();
    let (redis, proxy) = setup(&backend, "debug_headers = true");
    let r = request(
        proxy.addr,
        "GET / HTTP/1.1\r\nHost: app.example\r\nX-Debug: 1\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(
        r.header("x-debug-backend-url"),
        Some(backend.url().as_str())
    );
    assert_eq!(r.header("x-debug-backend-id"), Some("0"));
    assert_eq!(r.header("x-debug-vhost"), Some("app"));
    assert_eq!(r.header("x-debug-frontend-key"), Some("app.example"));
    assert!(r
        .header("x-debug-time-total")
        .unwrap()
        .parse::<f64>()
        .is_ok());
    assert!(r
        .header("x-debug-time-backend")
        .unwrap()
        .parse::<f64>()
        .is_ok());
    let r = request(
        proxy.addr,
        "GET / HTTP/1.1\r\nHost: none.example\r\nX-Debug: 1\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(
        (r.status, r.header("x-debug-error")),
        (400, Some("unknown-frontend"))
    );
    let plain = harness::get(proxy.addr, "app.example", "/");
    assert_eq!(plain.header("x-debug-backend-url"), None);
    // A wildcard match names the wildcard key and its own identifier.
    redis.frontend("", "*.wild.example", "wild", &[backend.url()]);
    let r = request(
        proxy.addr,
        "GET / HTTP/1.1\r\nHost: a.b.WILD.example:80\r\nX-Debug: 1\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-debug-vhost"), Some("wild"));
    assert_eq!(r.header("x-debug-frontend-key"), Some("*.wild.example"));
}

#[test]
fn connect_method_is_refused() {
    let backend = echo_path();
    let (_redis, proxy) = setup(&backend, "");
    let r = request(
        proxy.addr,
        "CONNECT app.example:443 HTTP/1.1\r\nHost: app.example:443\r\n\r\n",
    );
    assert_eq!(r.status, 405);
    assert_eq!(backend.count(), 0);
}

#[test]
fn head_spanning_several_reads_arrives_intact() {
    let backend = echo_path();
    let (_redis, proxy) = setup(&backend, "");
    // Larger than the initial read buffer, smaller than the head limit.
    let value = "v".repeat(12_000);
    let r = request(
        proxy.addr,
        &format!(
            "GET /big HTTP/1.1\r\nHost: app.example\r\nX-Big: {value}\r\nConnection: close\r\n\r\n"
        ),
    );
    assert_eq!((r.status, r.text().as_str()), (200, "GET /big"));
    assert_eq!(backend.received()[0].header("x-big"), Some(value.as_str()));
}

#[test]
fn absolute_form_must_agree_with_host() {
    let backend = echo_path();
    let (_redis, proxy) = setup(&backend, "");
    let ok = request(
        proxy.addr,
        "GET http://app.example/abs HTTP/1.1\r\nHost: app.example\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(
        (ok.status, ok.text().as_str()),
        (200, "GET http://app.example/abs")
    );
    let split = request(
        proxy.addr,
        "GET http://admin.internal/ HTTP/1.1\r\nHost: app.example\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(split.status, 400);
    assert_eq!(backend.count(), 1);
}

#[test]
fn broken_chunked_response_seen_with_the_head_is_502() {
    let backend = Backend::start(|_| {
        Reply::RawClose(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nnot chunked\r\n".to_vec(),
        )
    });
    let (_redis, proxy) = setup(&backend, "");
    assert_eq!(harness::get(proxy.addr, "app.example", "/").status, 502);
}
