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
    assert!(text.contains("# TYPE lopache_request_seconds histogram"));
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
