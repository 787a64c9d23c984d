//! The TTL route cache (`server.route_cache_ms`): a host's lookup is
//! reused (Redis sees one lookup per shard), a `dead` announcement from any
//! proxy forgets it, retries still work; with `route_cache = "off"` every
//! request reads Redis. (The default, tracking: tests/route_tracking.rs.)

mod harness;

use harness::{get, wait_for, Backend, Lopache, Redis};

/// Subscribers on the `dead` channel.
fn dead_subscribers(redis: &Redis) -> i64 {
    redis.subscribers("dead")
}

#[test]
fn lookups_are_reused_until_a_dead_announcement() {
    let redis = Redis::start();
    let (a, b) = (Backend::named("a"), Backend::named("b"));
    redis.frontend("", "app.example", "app", &[a.url()]);
    let proxy = Lopache::start(&redis.url(), "workers = 2\nroute_cache_ms = 600000");
    wait_for("both shards to subscribe to dead", || {
        (dead_subscribers(&redis) == 2).then_some(())
    });
    redis.cmd(&["CONFIG", "RESETSTAT"]);
    for _ in 0..20 {
        assert_eq!(get(proxy.addr, "app.example", "/").text(), "a");
    }
    // At most one lookup (one SMEMBERS of the dead set) per shard for
    // twenty requests.
    let lookups = redis.calls("smembers");
    assert!((1..=2).contains(&lookups), "{lookups} lookups");
    // Redis changes; the cache still answers from what it read.
    redis.frontend("", "app.example", "app", &[b.url()]);
    for _ in 0..10 {
        assert_eq!(get(proxy.addr, "app.example", "/").text(), "a");
    }
    // Another proxy flags a backend dead: every shard forgets its lookups.
    redis.cmd(&["PUBLISH", "dead", "app.example;http://x;0;2"]);
    wait_for("the new route to be read", || {
        (get(proxy.addr, "app.example", "/").text() == "b").then_some(())
    });
    for _ in 0..10 {
        assert_eq!(get(proxy.addr, "app.example", "/").text(), "b");
    }
}

#[test]
fn unknown_hosts_are_cached_too_and_retries_still_work() {
    let redis = Redis::start();
    let a = Backend::named("a");
    redis.frontend(
        "",
        "app.example",
        "app",
        &[a.url(), harness::backend::refused_url()],
    );
    let proxy = Lopache::start(&redis.url(), "workers = 1\nroute_cache_ms = 600000");
    // The refused backend is retried away from and flagged dead; every
    // request is answered by the live one.
    for _ in 0..20 {
        let r = get(proxy.addr, "app.example", "/");
        assert_eq!((r.status, r.text().as_str()), (200, "a"));
    }
    assert_eq!(get(proxy.addr, "new.example", "/").status, 400);
    redis.frontend("", "new.example", "new", &[a.url()]);
    redis.cmd(&["CONFIG", "RESETSTAT"]);
    assert_eq!(get(proxy.addr, "new.example", "/").status, 400);
    assert_eq!(redis.calls("smembers"), 0, "the negative answer was cached");
}

#[test]
fn off_every_request_reads_redis() {
    let redis = Redis::start();
    let (a, b) = (Backend::named("a"), Backend::named("b"));
    redis.frontend("", "app.example", "app", &[a.url()]);
    let proxy = Lopache::start(&redis.url(), "route_cache = \"off\"");
    redis.cmd(&["CONFIG", "RESETSTAT"]);
    for _ in 0..5 {
        assert_eq!(get(proxy.addr, "app.example", "/").text(), "a");
    }
    assert_eq!(redis.calls("smembers"), 5);
    redis.frontend("", "app.example", "app", &[b.url()]);
    assert_eq!(get(proxy.addr, "app.example", "/").text(), "b");
    assert_eq!(dead_subscribers(&redis), 0);
}
