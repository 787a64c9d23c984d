//! The admin endpoint: /metrics in Prometheus text (counts match the traffic
//! sent), /healthz 200 while serving and 503 while draining.

mod harness;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use harness::{get, wait_for, Backend, HttpResponse, Lopache, Redis, Reply};

fn admin(addr: SocketAddr, path: &str) -> HttpResponse {
    harness::request(addr, &format!("GET {path} HTTP/1.1\r\nHost: admin\r\n\r\n"))
}

/// The sum of a metric's values over every series matching `label`.
fn sum(text: &str, metric: &str, label: &str) -> u64 {
    text.lines()
        .filter(|l| l.starts_with(&format!("{metric}{{")) && l.contains(label))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum()
}

/// Checks `text` against the Prometheus text exposition format: HELP and
/// TYPE before each family's samples, well-formed names, labels and values,
/// counters named `_total`, histogram buckets cumulative up to `+Inf` and
/// equal to `_count`. Returns how many families it saw.
fn check_exposition(text: &str) -> usize {
    use std::collections::HashMap;
    let name_ok = |n: &str| {
        !n.is_empty()
            && n.chars().enumerate().all(|(i, c)| {
                c.is_ascii_alphabetic() || c == '_' || c == ':' || (i > 0 && c.is_ascii_digit())
            })
    };
    let mut types: HashMap<String, String> = HashMap::new();
    let mut helped = std::collections::HashSet::new();
    let mut last_bucket: HashMap<String, f64> = HashMap::new();
    let mut inf: HashMap<String, f64> = HashMap::new();
    assert!(text.ends_with('\n'), "the exposition ends with a newline");
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').expect("HELP name text");
            assert!(name_ok(name) && !help.is_empty(), "{line}");
            helped.insert(name.to_string());
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE name kind");
            assert!(helped.contains(name), "TYPE before HELP: {line}");
            assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
            if kind == "counter" {
                assert!(name.ends_with("_total"), "counter without _total: {line}");
            }
            assert!(
                types.insert(name.into(), kind.into()).is_none(),
                "twice: {line}"
            );
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("sample: series value");
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("bad value: {line}")),
        };
        let (name, labels) = match series.split_once('{') {
            Some((n, l)) => (n, l.strip_suffix('}').expect("labels end with }")),
            None => (series, ""),
        };
        assert!(name_ok(name), "{line}");
        let mut le = None;
        for pair in labels.split(',').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').expect("label=value");
            assert!(name_ok(k), "{line}");
            assert!(
                v.len() >= 2 && v.starts_with('"') && v.ends_with('"'),
                "{line}"
            );
            if k == "le" {
                le = Some(v.trim_matches('"').to_string());
            }
        }
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| {
                name.strip_suffix(s)
                    .filter(|f| types.get(*f).is_some_and(|k| k == "histogram"))
            })
            .unwrap_or(name);
        assert!(types.contains_key(family), "sample before its TYPE: {line}");
        let key = format!("{family}|{}", labels.split(",le=").next().unwrap());
        if name.ends_with("_bucket") {
            let previous = last_bucket.insert(key.clone(), value).unwrap_or(0.0);
            assert!(value >= previous, "buckets not cumulative: {line}");
            if le.as_deref() == Some("+Inf") {
                inf.insert(key, value);
            }
        } else if name.ends_with("_count") && family != name {
            assert_eq!(inf.get(&key), Some(&value), "+Inf bucket != _count: {line}");
        }
    }
    types.len()
}

#[test]
fn metrics_count_the_traffic_and_healthz_answers() {
    let redis = Redis::start();
    let app = Backend::named("app");
    redis.frontend(
        "",
        "app.example",
        "app",
        &[app.url(), harness::backend::refused_url()],
    );
    let cfg = harness::proxy::config(&format!("{:?}", redis.url()), "")
        + "[admin]\nbind = \"127.0.0.1:0\"\n";
    let proxy = Lopache::start_config(&cfg, &[]);
    let admin_addr = proxy
        .admin_addr
        .expect("admin address on the readiness line");
    for _ in 0..10 {
        assert_eq!(get(proxy.addr, "app.example", "/").status, 200);
    }
    assert_eq!(get(proxy.addr, "unknown.example", "/").status, 400);
    let health = admin(admin_addr, "/healthz");
    assert_eq!((health.status, health.text().as_str()), (200, "ok\n"));
    let metrics = admin(admin_addr, "/metrics");
    assert_eq!(metrics.status, 200);
    let text = metrics.text();
    assert_eq!(
        sum(&text, "lopache_requests_total", "class=\"2xx\""),
        10,
        "{text}"
    );
    assert_eq!(sum(&text, "lopache_requests_total", "class=\"4xx\""), 1);
    assert_eq!(sum(&text, "lopache_request_seconds_count", "shard="), 11);
    // The refused backend was picked at some point unless chance avoided it
    // ten times; retries and dead marks move together.
    assert_eq!(
        sum(&text, "lopache_retries_total", "shard="),
        sum(&text, "lopache_dead_marks_total", "shard=")
    );
    assert_eq!(check_exposition(&text), 30, "{text}");
    // Every answered request had its backend timed; lookups went to Redis.
    assert_eq!(sum(&text, "lopache_backend_seconds_count", "shard="), 10);
    assert!(sum(&text, "lopache_redis_roundtrip_seconds_count", "shard=") >= 1);
    // The last client closed after its answer; the shard counts the close
    // when it reads the EOF, which may come after this scrape.
    wait_for("the client connection gauge to drop to 0", || {
        let text = admin(admin_addr, "/metrics").text();
        (sum(&text, "lopache_client_connections", "shard=") == 0).then_some(())
    });
    // The keep-alive connections to the backend are pooled (the gauge is
    // refreshed every second).
    wait_for(
        "the pool gauge to show the idle upstream connections",
        || {
            let text = admin(admin_addr, "/metrics").text();
            (sum(&text, "lopache_upstream_idle_connections", "shard=") >= 1).then_some(())
        },
    );
    assert_eq!(admin(admin_addr, "/nope").status, 404);
}

#[test]
fn healthz_says_draining_during_a_drain() {
    let redis = Redis::start();
    let started = Arc::new(AtomicBool::new(false));
    let flag = started.clone();
    let slow = Backend::start(move |_| {
        flag.store(true, Ordering::SeqCst);
        Reply::Delay(Duration::from_millis(1500), Box::new(Reply::ok("slow")))
    });
    redis.frontend("", "app.example", "app", &[slow.url()]);
    let cfg = harness::proxy::config(&format!("{:?}", redis.url()), "drain_timeout = 20")
        + "[admin]\nbind = \"127.0.0.1:0\"\n";
    let mut proxy = Lopache::start_config(&cfg, &[]);
    let (addr, admin_addr) = (proxy.addr, proxy.admin_addr.unwrap());
    let client = std::thread::spawn(move || get(addr, "app.example", "/").status);
    wait_for("the slow request", || {
        started.load(Ordering::SeqCst).then_some(())
    });
    assert_eq!(admin(admin_addr, "/healthz").status, 200);
    proxy.signal("TERM");
    wait_for("healthz to say draining", || {
        (admin(admin_addr, "/healthz").status == 503).then_some(())
    });
    assert_eq!(client.join().unwrap(), 200);
    assert_eq!(proxy.wait_exit().code(), Some(0));
}
