//! Amplification and memory bounds (the second adversarial review): random
//! SNI names against a wildcard certificate in Redis, long paths against
//! `path_matches` routes, oversized Redis replies, unusable backend URLs,
//! status codes below 100, many response headers, and endless interim
//! responses. Each test measures what a bound is about (the worker's memory,
//! Redis's command counts, the bytes relayed, the time) and fails on 9fd0124.

mod harness;

use std::io::Write;
use std::time::{Duration, Instant};

use harness::tls::{connect, Pki};
use harness::{request, wait_for, Backend, Lopache, RawConn, Redis, Reply};

fn https_proxy(redis: &Redis, server: &str) -> Lopache {
    let cfg = format!(
        "driver = {:?}\n[server]\nworkers = 1\ndebug_headers = true\n{server}\n[http]\nport = 0\n\
         bind = [\"127.0.0.1\"]\n[https]\nport = 0\nbind = [\"127.0.0.1\"]\nredis_certificates = true\n\
         redis_certificates_ttl = 600\n",
        redis.url()
    );
    Lopache::start_config(&cfg, &[])
}

fn store_certificate(redis: &Redis, key: &str, cert: &str, private_key: &str) {
    redis.cmd(&["HSET", key, "certificate", cert, "key", private_key]);
}

#[test]
fn random_sni_names_share_the_wildcard_certificate() {
    let pki = Pki::new();
    let redis = Redis::start();
    let wildcard = pki.leaf(&["*.wild.test"]);
    store_certificate(
        &redis,
        "tls:*.wild.test",
        &wildcard.cert_pem,
        &wildcard.key_pem,
    );
    store_certificate(&redis, "tls:*.bad.test", "not a certificate", "not a key");
    let proxy = https_proxy(&redis, "");
    let addr = proxy.https_addr.unwrap();
    let client = pki.client(&[&rustls::version::TLS13]);
    let handshake = |name: &str| connect(addr, name, client.clone()).is_ok();
    for i in 0..50 {
        assert!(handshake(&format!("warm{i}.wild.test")));
    }
    let before = proxy.peak_rss_kb();
    redis.cmd(&["CONFIG", "RESETSTAT"]);
    // 3000 names, four clients at a time: one config per name took ~38 KB
    // each (114 MB here); one per Redis key takes nothing more.
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let client = client.clone();
            std::thread::spawn(move || {
                (0..750)
                    .filter(|i| {
                        connect(addr, &format!("n{t}x{i}.wild.test"), client.clone()).is_ok()
                    })
                    .count()
            })
        })
        .collect();
    let served: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
    assert_eq!(served, 3000);
    let grown_mb = (proxy.peak_rss_kb().saturating_sub(before)) / 1024;
    assert!(
        grown_mb < 30,
        "the worker grew by {grown_mb} MB over 3000 names"
    );
    // Each new name cost one EXISTS, not two HGETALLs.
    assert_eq!(redis.calls("hgetall"), 0);
    assert_eq!(redis.calls("exists"), 3000);
    // A garbage certificate is reported once per key, not per handshake.
    for i in 0..50 {
        assert!(!handshake(&format!("g{i}.bad.test")));
    }
    wait_for("the warning", || {
        proxy
            .stderr()
            .contains("tls:*.bad.test is unusable")
            .then_some(())
    });
    assert_eq!(
        proxy.stderr().matches("is unusable").count(),
        1,
        "{}",
        proxy.stderr()
    );
}

#[test]
fn long_paths_cannot_multiply_route_queries() {
    let redis = Redis::start();
    let app = Backend::named("app");
    redis.frontend("", "app.example", "app", &[app.url()]);
    redis.cmd(&["SADD", "paths:app.example", "/api/*"]);
    let cfg = format!(
        "driver = {:?}\n[server]\nworkers = 1\ndebug_headers = true\n\
         # Counts the queries of each request: nothing kept between them.\n\
         route_cache = \"off\"\n[http]\nport = 0\n\
         bind = [\"127.0.0.1\"]\n[[routes]]\ncondition = {{ path_matches = {{ prefix = \"paths:\" }} }}\n\
         destination = {{ random_backend_for_host = {{ driver = {:?} }} }}\n",
        redis.url(),
        format!("{}#rollout:", redis.url())
    );
    let proxy = Lopache::start_config(&cfg, &[]);
    let get = |path: &str| {
        request(
            proxy.addr,
            &format!("GET {path} HTTP/1.1\r\nHost: app.example\r\nX-Debug: 1\r\nConnection: close\r\n\r\n"),
        )
    };
    redis.cmd(&["CONFIG", "RESETSTAT"]);
    // 32 segments: 33 patterns, one SISMEMBER each.
    let ok = format!("{}/x", "/s".repeat(31));
    assert_eq!(get(&ok).status, 200);
    assert_eq!(redis.calls("sismember"), 33);
    // 33 segments, or 31 segments of 8 KB (a quarter of a megabyte of
    // patterns): refused before any query.
    redis.cmd(&["CONFIG", "RESETSTAT"]);
    let wide = format!("/{}/{}", "a".repeat(8000), "b/".repeat(30));
    for path in [format!("{}/x", "/s".repeat(32)), wide] {
        let r = get(&path);
        assert_eq!(
            (r.status, r.header("x-debug-error")),
            (414, Some("path-too-long"))
        );
    }
    assert_eq!(redis.calls("sismember"), 0);
    // 8000 slashes in a row (under the 8 KiB URI limit) are one segment,
    // as backends read them: two patterns.
    let r = get(&format!("/{}", "/".repeat(7999)));
    assert_eq!(r.status, 200);
    assert_eq!(redis.calls("sismember"), 2);
    // Without a path condition to evaluate, a long path is no concern.
    let plain = Lopache::start(&redis.url(), "");
    assert_eq!(
        request(
            plain.addr,
            &format!(
                "GET /{} HTTP/1.1\r\nHost: app.example\r\nConnection: close\r\n\r\n",
                "/".repeat(7999)
            ),
        )
        .status,
        200
    );
}

#[test]
fn an_oversized_frontend_list_fails_its_own_lookup_only() {
    let redis = Redis::start();
    let app = Backend::named("app");
    redis.frontend("", "app.example", "app", &[app.url()]);
    // 5 MiB and 20 MiB lists: over the 4 MiB reply limit.
    let mb = "x".repeat(1 << 20);
    for (host, items) in [("five.example", 5), ("twenty.example", 20)] {
        let key = format!("frontend:{host}");
        redis.cmd(&["RPUSH", &key, "big"]);
        for _ in 0..items {
            redis.cmd(&["RPUSH", &key, &mb]);
        }
    }
    let proxy = Lopache::start(&redis.url(), "workers = 1\ndebug_headers = true");
    let addr = proxy.addr;
    // Plenty of ordinary lookups share the Redis connection meanwhile.
    let busy: Vec<_> = (0..8)
        .map(|_| {
            std::thread::spawn(move || {
                (0..40)
                    .map(|_| harness::get(addr, "app.example", "/").status)
                    .collect::<Vec<u16>>()
            })
        })
        .collect();
    for host in ["five.example", "twenty.example", "twenty.example"] {
        let r = request(
            addr,
            &format!("GET / HTTP/1.1\r\nHost: {host}\r\nX-Debug: 1\r\nConnection: close\r\n\r\n"),
        );
        assert_eq!(
            (r.status, r.header("x-debug-error")),
            (502, Some("route-too-large")),
            "{host}"
        );
    }
    for t in busy {
        let statuses = t.join().unwrap();
        assert!(statuses.iter().all(|&s| s == 200), "{statuses:?}");
    }
    assert!(
        !proxy.stderr().contains("connection lost"),
        "the Redis connection was dropped:\n{}",
        proxy.stderr()
    );
}

#[test]
fn only_the_first_thousand_backends_of_a_list_are_used() {
    let redis = Redis::start();
    let app = Backend::named("app");
    let urls = vec![app.url(); 1500];
    redis.frontend("", "app.example", "app", &urls);
    let proxy = Lopache::start(&redis.url(), "debug_headers = true");
    for _ in 0..60 {
        let r = request(
            proxy.addr,
            "GET / HTTP/1.1\r\nHost: app.example\r\nX-Debug: 1\r\nConnection: close\r\n\r\n",
        );
        let id: usize = r.header("x-debug-backend-id").unwrap().parse().unwrap();
        assert!(id < 1000, "backend {id} of a list read as 1000");
    }
}

#[test]
fn an_unusable_backend_url_is_neither_retried_nor_logged_in_full() {
    let redis = Redis::start();
    let long = format!("http://[{}", "x".repeat(10_000));
    redis.frontend("", "app.example", "app", &[long]);
    let proxy = Lopache::start(
        &redis.url(),
        "workers = 1\ndebug_headers = true\nroute_cache = \"off\"",
    );
    redis.cmd(&["CONFIG", "RESETSTAT"]);
    for _ in 0..20 {
        let r = request(
            proxy.addr,
            "GET / HTTP/1.1\r\nHost: app.example\r\nX-Debug: 1\r\nConnection: close\r\n\r\n",
        );
        assert_eq!(
            (r.status, r.header("x-debug-error")),
            (502, Some("bad-backend-url"))
        );
    }
    // One lookup per request (3 candidates: app.example, *.example, *).
    assert_eq!(redis.calls("lrange"), 60);
    assert_eq!(redis.calls("smembers"), 20);
    assert_eq!(redis.calls("sadd") + redis.calls("publish"), 0);
    let log = proxy.stderr();
    let warnings: Vec<&str> = log.lines().filter(|l| l.contains("app.example:")).collect();
    assert!(!warnings.is_empty() && warnings.len() <= 3, "{warnings:?}");
    assert!(warnings.iter().all(|l| l.len() < 400), "{warnings:?}");
}

#[test]
fn a_status_below_100_is_a_502() {
    for status in ["000", "012", "099"] {
        let backend = Backend::start(move |_| {
            Reply::Raw(format!("HTTP/1.1 {status} Odd\r\nContent-Length: 2\r\n\r\nok").into_bytes())
        });
        let redis = Redis::start();
        redis.frontend("", "app.example", "app", &[backend.url()]);
        let proxy = Lopache::start(&redis.url(), "retry_on_error = 0");
        assert_eq!(
            harness::get(proxy.addr, "app.example", "/").status,
            502,
            "{status}"
        );
    }
}

#[test]
fn response_header_count_is_a_documented_limit() {
    let backend = Backend::start(|r| {
        let n: usize = r.target.trim_start_matches('/').parse().unwrap();
        Reply::Raw(
            format!(
                "HTTP/1.1 200 OK\r\n{}Content-Length: 2\r\n\r\nok",
                "X-H: v\r\n".repeat(n)
            )
            .into_bytes(),
        )
    });
    let redis = Redis::start();
    redis.frontend("", "app.example", "app", &[backend.url()]);
    let proxy = Lopache::start(&redis.url(), "retry_on_error = 0");
    let r = harness::get(proxy.addr, "app.example", "/600");
    assert_eq!((r.status, r.text().as_str()), (200, "ok"));
    assert_eq!(r.headers.iter().filter(|(n, _)| n == "X-H").count(), 600);
    // 999 fields plus Content-Length is the default limit; one more is 502.
    assert_eq!(harness::get(proxy.addr, "app.example", "/999").status, 200);
    assert_eq!(harness::get(proxy.addr, "app.example", "/1000").status, 502);
}

/// A backend that answers every request with `interim` repeated every
/// `pause`, for as long as the connection takes it.
fn interim_backend(interim: &'static [u8], pause: Duration) -> String {
    harness::backend::after_head(move |mut conn| {
        while conn.write_all(interim).is_ok() {
            if !pause.is_zero() {
                std::thread::sleep(pause);
            }
        }
    })
}

#[test]
fn interim_responses_cannot_go_on_forever() {
    let redis = Redis::start();
    let flood = interim_backend(b"HTTP/1.1 100 Continue\r\n\r\n", Duration::ZERO);
    let slow = interim_backend(
        b"HTTP/1.1 102 Processing\r\n\r\n",
        Duration::from_millis(300),
    );
    redis.frontend("", "flood.example", "flood", &[flood]);
    redis.frontend("", "slow.example", "slow", &[slow]);
    let proxy = Lopache::start(
        &redis.url(),
        "retry_on_error = 0\nresponse_timeout = 2\ndebug_headers = true",
    );
    // A flood: at most 32 interim responses reach the client, then a 502.
    let mut c = RawConn::connect(proxy.addr);
    c.send(b"GET / HTTP/1.1\r\nHost: flood.example\r\nX-Debug: 1\r\n\r\n");
    let mut interim = 0;
    let mut last = None;
    while interim <= 1000 {
        let head = c.read_head();
        if head.status != 100 {
            last = Some(head.status);
            break;
        }
        interim += 1;
    }
    assert_eq!((last, interim), (Some(502), 32));
    // A trickle: response_timeout bounds the wait for the final status,
    // however often an interim response arrives.
    let started = Instant::now();
    let mut c = RawConn::connect(proxy.addr);
    c.send(b"GET / HTTP/1.1\r\nHost: slow.example\r\nX-Debug: 1\r\n\r\n");
    let last = loop {
        let head = c.read_head();
        if head.status != 102 || started.elapsed() > harness::WAIT {
            break head;
        }
    };
    assert_eq!(
        (last.status, last.header("x-debug-error")),
        (504, Some("backend-timeout"))
    );
    // The 2 s deadline, not the 32-response cap (which would take 10 s).
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
}
