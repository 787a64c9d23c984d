//! Hipache routing through the real binary: host handling, wildcard priority
//! and depth, random spread, dead marking with Redis side effects, retries,
//! driver URL parts and the read/write split.

mod harness;

use std::collections::HashMap;

use harness::backend::refused_url;
use harness::redis::{members, text, RedisConn};
use harness::{get, request, wait_for, Backend, Lopache, RawConn, Redis, Reply};

#[test]
fn exact_host_port_case_and_trailing_dot() {
    let redis = Redis::start();
    let app = Backend::named("app");
    redis.frontend("", "www.example.com", "site", &[app.url()]);
    let proxy = Lopache::start(&redis.url(), "");
    for host in [
        "www.example.com",
        "WWW.Example.COM",
        "www.example.com:8080",
        "www.example.com.",
    ] {
        let r = get(proxy.addr, host, "/");
        assert_eq!((r.status, r.text().as_str()), (200, "app"), "Host: {host}");
    }
    assert_eq!(app.count(), 4);
    // The Host header reaches the backend unchanged.
    assert_eq!(
        app.received()[2].header("host"),
        Some("www.example.com:8080")
    );
}

#[test]
fn wildcard_priority_and_depth() {
    let redis = Redis::start();
    let keys = [
        "*.quux",
        "*.qux.quux",
        "*.baz.qux.quux",
        "*.bar.baz.qux.quux",
        "foo.bar.baz.qux.quux",
        "*.foo.bar.baz.qux.quux",
        "*.quuux.foo.bar.baz.qux.quux",
    ];
    let backends: Vec<Backend> = keys.iter().map(|k| Backend::named(k)).collect();
    for (k, b) in keys.iter().zip(&backends) {
        redis.frontend("", k, k, &[b.url()]);
    }
    let star = Backend::named("*");
    redis.frontend("", "*", "*", &[star.url()]);
    let proxy = Lopache::start(&redis.url(), "");
    let table = [
        ("foo.bar.baz.qux.quux", "foo.bar.baz.qux.quux"),
        ("a.foo.bar.baz.qux.quux", "*.foo.bar.baz.qux.quux"),
        (
            "too.deep.quuux.foo.bar.baz.qux.quux",
            "*.foo.bar.baz.qux.quux",
        ),
        ("x.bar.baz.qux.quux", "*.bar.baz.qux.quux"),
        ("x.baz.qux.quux", "*.baz.qux.quux"),
        ("x.qux.quux", "*.qux.quux"),
        ("x.quux", "*.quux"),
        ("quux", "*"),
        ("unrelated.org", "*"),
    ];
    for (host, want) in table {
        assert_eq!(get(proxy.addr, host, "/").text(), want, "Host: {host}");
    }
}

#[test]
fn unknown_host_is_400_and_ping_needs_no_redis() {
    let mut redis = Redis::start();
    let proxy = Lopache::start(&redis.url(), "");
    let r = get(proxy.addr, "nobody.example", "/");
    assert_eq!(r.status, 400);
    assert_eq!(r.header("content-type"), Some("text/html"));
    assert_eq!(r.header("cache-control"), Some("no-cache"));
    let r = request(proxy.addr, "GET / HTTP/1.1\r\nConnection: close\r\n\r\n");
    assert_eq!(r.status, 400, "no Host header");
    redis.stop();
    let r = get(proxy.addr, "__ping__", "/");
    assert_eq!((r.status, r.text().as_str()), (200, "ok"));
}

#[test]
fn identifier_only_frontend_is_502() {
    let redis = Redis::start();
    redis.frontend("", "empty.example", "nobody-home", &[]);
    let proxy = Lopache::start(&redis.url(), "");
    assert_eq!(get(proxy.addr, "empty.example", "/").status, 502);
}

#[test]
fn requests_spread_over_backends() {
    let redis = Redis::start();
    let backends: Vec<Backend> = (0..3).map(|i| Backend::named(&format!("b{i}"))).collect();
    redis.frontend(
        "",
        "spread.example",
        "spread",
        &backends.iter().map(Backend::url).collect::<Vec<_>>(),
    );
    let proxy = Lopache::start(&redis.url(), "");
    let mut seen: HashMap<String, usize> = HashMap::new();
    for _ in 0..300 {
        *seen
            .entry(get(proxy.addr, "spread.example", "/").text())
            .or_default() += 1;
    }
    assert_eq!(seen.len(), 3, "{seen:?}");
    // Uniform choice: each of 3 gets ~100 of 300; 50 is far outside chance.
    assert!(seen.values().all(|&n| n >= 50), "{seen:?}");
}

#[test]
fn concurrent_lookups_share_redis_work_and_each_host_gets_its_own_frontend() {
    let redis = Redis::start();
    let hosts = ["one.example", "two.example", "three.example"];
    let backends: Vec<Backend> = hosts.iter().map(|h| Backend::named(h)).collect();
    for (host, backend) in hosts.iter().zip(&backends) {
        redis.frontend("", host, host, &[backend.url()]);
    }
    // Without the route cache, so that every request looks its host up.
    let proxy = Lopache::start(&redis.url(), "workers = 1\nroute_cache = \"off\"");
    for host in hosts {
        assert_eq!(get(proxy.addr, host, "/").text(), host);
    }
    redis.cmd(&["CONFIG", "RESETSTAT"]);
    // 8 keep-alive clients per host, all at once, 100 requests each.
    const CLIENTS: usize = 8;
    const EACH: usize = 100;
    let threads: Vec<_> = (0..CLIENTS)
        .flat_map(|_| hosts)
        .map(|host| {
            let addr = proxy.addr;
            std::thread::spawn(move || {
                let mut conn = RawConn::connect(addr);
                let request = format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n");
                (0..EACH)
                    .map(|_| {
                        conn.send(request.as_bytes());
                        conn.read_response(false).text()
                    })
                    .filter(|body| body != host)
                    .collect::<Vec<String>>()
            })
        })
        .collect();
    for t in threads {
        assert_eq!(t.join().unwrap(), Vec::<String>::new(), "wrong frontend");
    }
    // One SMEMBERS per lookup sent: identical lookups queued for the same
    // pipeline write went to Redis once (24 clients on one shard overlap).
    let requests = (CLIENTS * hosts.len() * EACH) as u64;
    let lookups = redis.calls("smembers");
    assert!(
        lookups > 0 && lookups < requests,
        "{lookups} lookups for {requests} requests"
    );
    assert_eq!(redis.calls("lrange"), lookups * 3, "3 candidates per host");
}

#[test]
fn backend_answering_502_is_seen_once_then_avoided() {
    let redis = Redis::start();
    let bad = Backend::start(|_| Reply::status(502, "broken"));
    let good = Backend::named("good");
    redis.frontend("", "mixed.example", "mixed", &[bad.url(), good.url()]);
    let proxy = Lopache::start(&redis.url(), "");
    let mut statuses = Vec::new();
    while bad.count() == 0 {
        statuses.push(get(proxy.addr, "mixed.example", "/").status);
        assert!(statuses.len() < 200, "bad backend never chosen");
    }
    // The 502 itself is relayed to the client.
    assert_eq!(statuses.last(), Some(&502));
    wait_for("dead mark in redis", || {
        (members(&redis.cmd(&["SMEMBERS", "dead:mixed.example"])) == ["0"]).then_some(())
    });
    for _ in 0..50 {
        let r = get(proxy.addr, "mixed.example", "/");
        assert_eq!((r.status, r.text().as_str()), (200, "good"));
    }
    assert_eq!(bad.count(), 1);
}

#[test]
fn refused_backend_is_marked_in_redis_and_request_retried() {
    let redis = Redis::start();
    let mut sub = RedisConn::connect(redis.port);
    sub.cmd(&["SUBSCRIBE", "dead"]);
    let dead_url = refused_url();
    let good = Backend::named("good");
    redis.frontend(
        "",
        "retry.example",
        "retry",
        &[dead_url.clone(), good.url()],
    );
    let proxy = Lopache::start(&redis.url(), "dead_backend_ttl = 30");
    // Until the refused backend is picked, requests go to the good one; once it
    // is picked, the retry still answers from the good one.
    for _ in 0..100 {
        let r = get(proxy.addr, "retry.example", "/");
        assert_eq!((r.status, r.text().as_str()), (200, "good"));
        if !members(&redis.cmd(&["SMEMBERS", "dead:retry.example"])).is_empty() {
            break;
        }
    }
    let dead = wait_for("dead set", || {
        let m = members(&redis.cmd(&["SMEMBERS", "dead:retry.example"]));
        (!m.is_empty()).then_some(m)
    });
    assert_eq!(dead, ["0"]);
    let ttl: i64 = text(&redis.cmd(&["TTL", "dead:retry.example"]))
        .parse()
        .unwrap();
    assert!((1..=30).contains(&ttl), "ttl {ttl}");
    let msg = sub.read();
    let parts = members(&msg);
    assert!(
        parts.contains(&format!("retry.example;{dead_url};0;2")),
        "published message {msg:?}"
    );
}

#[test]
fn fresh_health_checker_means_publish_only() {
    let redis = Redis::start();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    redis.cmd(&["SET", "hchecker_ping", &now.to_string()]);
    let mut sub = RedisConn::connect(redis.port);
    sub.cmd(&["SUBSCRIBE", "dead"]);
    let bad = Backend::start(|_| Reply::status(500, "oops"));
    redis.frontend("", "hc.example", "hc", &[bad.url(), refused_url()]);
    let proxy = Lopache::start(&redis.url(), "retry_on_error = 0");
    while bad.count() == 0 {
        get(proxy.addr, "hc.example", "/");
    }
    let msg = members(&sub.read());
    assert!(msg.iter().any(|m| m.starts_with("hc.example;")), "{msg:?}");
    assert_eq!(
        redis.cmd(&["EXISTS", "dead:hc.example"]),
        lopache::redis::Reply::Integer(0)
    );
}

#[test]
fn retry_on_error_zero_gives_one_502() {
    let redis = Redis::start();
    redis.frontend("", "down.example", "down", &[refused_url(), refused_url()]);
    let proxy = Lopache::start(&redis.url(), "retry_on_error = 0");
    let r = get(proxy.addr, "down.example", "/");
    assert_eq!(r.status, 502);
    // Exactly one backend was tried: exactly one dead mark.
    wait_for("one dead mark", || {
        (members(&redis.cmd(&["SMEMBERS", "dead:down.example"])).len() == 1).then_some(())
    });
    assert_eq!(
        members(&redis.cmd(&["SMEMBERS", "dead:down.example"])).len(),
        1
    );
}

#[test]
fn all_retries_fail_gives_502() {
    let redis = Redis::start();
    redis.frontend(
        "",
        "alldown.example",
        "down",
        &[refused_url(), refused_url(), refused_url()],
    );
    let proxy = Lopache::start(&redis.url(), "retry_on_error = 5");
    assert_eq!(get(proxy.addr, "alldown.example", "/").status, 502);
    wait_for("three dead marks", || {
        (members(&redis.cmd(&["SMEMBERS", "dead:alldown.example"])) == ["0", "1", "2"])
            .then_some(())
    });
}

#[test]
fn driver_password_db_and_prefix() {
    let redis = Redis::start_with(&["--requirepass", "s3cret"]);
    let app = Backend::named("prefixed");
    let mut c = redis.conn();
    c.cmd(&["SELECT", "3"]);
    c.cmd(&["RPUSH", "rollout:frontend:p.example", "p", &app.url()]);
    let url = format!("redis://:s3cret@127.0.0.1:{}/3#rollout:", redis.port);
    let proxy = Lopache::start(&url, "");
    let r = get(proxy.addr, "p.example", "/");
    assert_eq!((r.status, r.text().as_str()), (200, "prefixed"));
    // Without the prefix the same key is not found.
    let plain = Lopache::start(&format!("redis://:s3cret@127.0.0.1:{}/3", redis.port), "");
    assert_eq!(get(plain.addr, "p.example", "/").status, 400);
    // A wrong password means the routing store is unavailable.
    let wrong = Lopache::start(&format!("redis://:nope@127.0.0.1:{}/3", redis.port), "");
    assert_eq!(get(wrong.addr, "p.example", "/").status, 503);
}

#[test]
fn read_write_split_sends_marks_to_the_last_url() {
    let replica = Redis::start();
    let master = Redis::start();
    let bad = Backend::start(|_| Reply::status(503, "down"));
    let good = Backend::named("good");
    replica.frontend("", "split.example", "split", &[bad.url(), good.url()]);
    let driver = format!("[{:?}, {:?}]", replica.url(), master.url());
    let proxy = Lopache::start_config(&harness::proxy::config(&driver, ""), &[]);
    while bad.count() == 0 {
        get(proxy.addr, "split.example", "/");
    }
    wait_for("mark on master", || {
        (members(&master.cmd(&["SMEMBERS", "dead:split.example"])) == ["0"]).then_some(())
    });
    assert!(members(&replica.cmd(&["SMEMBERS", "dead:split.example"])).is_empty());
}

#[test]
fn dead_set_in_redis_is_honoured() {
    let redis = Redis::start();
    let b0 = Backend::named("b0");
    let b1 = Backend::named("b1");
    redis.frontend("", "ds.example", "ds", &[b0.url(), b1.url()]);
    redis.cmd(&["SADD", "dead:ds.example", "0"]);
    let proxy = Lopache::start(&redis.url(), "");
    for _ in 0..30 {
        assert_eq!(get(proxy.addr, "ds.example", "/").text(), "b1");
    }
    redis.cmd(&["SADD", "dead:ds.example", "1"]);
    assert_eq!(get(proxy.addr, "ds.example", "/").status, 502);
}

#[test]
fn large_frontend_list_spanning_several_redis_reads() {
    let redis = Redis::start();
    let app = Backend::named("last");
    // ~40 KB of backend URLs, all dead but the last: the reply spans reads.
    let mut urls: Vec<String> = (0..800)
        .map(|i| format!("http://127.0.0.1:1/padding-{i:04}-xxxxxxxxxxxx"))
        .collect();
    urls.push(app.url());
    redis.frontend("", "big.example", "big", &urls);
    let dead: Vec<String> = (0..800).map(|i| i.to_string()).collect();
    let mut args = vec!["SADD", "dead:big.example"];
    args.extend(dead.iter().map(String::as_str));
    redis.cmd(&args);
    let proxy = Lopache::start(&redis.url(), "");
    let r = get(proxy.addr, "big.example", "/");
    assert_eq!((r.status, r.text().as_str()), (200, "last"));
}
