//! PaaS churn: backends come and go, each used a few times. Whatever a
//! backend leaves behind on a shard (a pooled connection it closed, a slot
//! semaphore, a resolved name, a dead flag) goes within a sweep interval of
//! expiring, without further traffic to that backend.

mod harness;

use std::io::Write;
use std::time::Duration;

use harness::{close_wait_to, get, metric, wait_for, Redis};

/// A backend that answers one keep-alive request, then closes the
/// connection after `idle` (as backends with a short keep-alive do).
fn closes_when_idle(idle: Duration) -> String {
    harness::backend::after_head(move |mut conn| {
        let _ = conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
        std::thread::sleep(idle);
    })
}

#[test]
fn a_pooled_connection_the_backend_closed_is_released_within_a_sweep() {
    let redis = Redis::start();
    let url = closes_when_idle(Duration::from_millis(200));
    let port: u16 = url.rsplit(':').next().unwrap().parse().unwrap();
    redis.frontend("", "app.example", "app", &[url]);
    // A long idle timeout: only the backend's close can end the connection.
    let proxy = harness::one_shard_with_admin(&redis, "upstream_idle_timeout = 3600");
    assert_eq!(get(proxy.addr, "app.example", "/").text(), "ok");
    wait_for("the backend to close its end", || {
        (close_wait_to(port) > 0).then_some(())
    });
    wait_for("lopache to release its end", || {
        (close_wait_to(port) == 0).then_some(())
    });
    let admin = proxy.admin_addr.unwrap();
    assert_eq!(metric(admin, "lopache_upstream_idle_closed_total"), 1);
    assert_eq!(metric(admin, "lopache_upstream_idle_connections"), 0);
}

#[test]
fn hundreds_of_short_lived_backends_leave_nothing_behind() {
    let redis = Redis::start();
    let proxy = harness::one_shard_with_admin(&redis, "upstream_idle_timeout = 1\ndns_ttl = 1");
    let admin = proxy.admin_addr.unwrap();
    // The connection to Redis is opened by the first lookup; the
    // subscriptions (dead marks, route-cache tracking) by the shard as it
    // starts.
    assert_eq!(get(proxy.addr, "nobody.example", "/").status, 400);
    wait_for("the shard's subscriptions", || {
        let subscribed = |channel| redis.subscribers(channel) == 1;
        (subscribed("dead") && subscribed("__redis__:invalidate")).then_some(())
    });
    let baseline = proxy.fd_count();
    // 300 backends, each behind a host of its own and used once; named by
    // host name, so that the resolver cache fills too.
    let backends: Vec<harness::Backend> = (0..300)
        .map(|i| harness::Backend::named(&format!("b{i}")))
        .collect();
    for (i, b) in backends.iter().enumerate() {
        let url = format!("http://localhost:{}", b.addr.port());
        redis.frontend("", &format!("h{i}.example"), "h", &[url]);
        assert_eq!(
            get(proxy.addr, &format!("h{i}.example"), "/").text(),
            format!("b{i}")
        );
    }
    assert!(
        proxy.fd_count() >= baseline + 250,
        "pooled: {}",
        proxy.fd_count()
    );
    // No request to them afterwards: within the idle timeout and a sweep,
    // descriptors and maps are back where they started.
    wait_for("the pooled connections to close", || {
        (proxy.fd_count() <= baseline).then_some(())
    });
    wait_for("the shard's maps to empty", || {
        let pool = metric(admin, "lopache_shard_map_entries{shard=\"0\",map=\"pool\"}");
        let dns = metric(admin, "lopache_shard_map_entries{shard=\"0\",map=\"dns\"}");
        (pool == 0 && dns == 0).then_some(())
    });
    assert!(metric(admin, "lopache_upstream_opened_total") >= 300);
}

/// The sweep takes only what expired or was closed: a backend in use keeps
/// its pooled connection across sweeps (no lost reuse), while a connection
/// another backend closed in between is released.
#[test]
fn a_backend_in_use_keeps_its_pooled_connection_across_sweeps() {
    let redis = Redis::start();
    let kept = harness::Backend::named("kept");
    redis.frontend("", "kept.example", "kept", &[kept.url()]);
    redis.frontend(
        "",
        "closing.example",
        "closing",
        &[closes_when_idle(Duration::from_millis(100))],
    );
    let proxy = harness::one_shard_with_admin(&redis, "upstream_idle_timeout = 3600");
    let admin = proxy.admin_addr.unwrap();
    for round in 1..=3 {
        assert_eq!(get(proxy.addr, "kept.example", "/").text(), "kept");
        assert_eq!(get(proxy.addr, "closing.example", "/").text(), "ok");
        // A sweep ran once the closing backend's connection is released.
        wait_for("a sweep to release the closed connection", || {
            (metric(admin, "lopache_upstream_idle_closed_total") >= round).then_some(())
        });
    }
    assert_eq!(get(proxy.addr, "kept.example", "/").text(), "kept");
    // Four requests to the kept backend over one connection; one new
    // connection per round to the closing one.
    assert_eq!(kept.connections(), 1);
    assert_eq!(metric(admin, "lopache_upstream_opened_total"), 1 + 3);
}
