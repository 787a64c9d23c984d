//! The default route cache, `route_cache = "tracking"`, against a real
//! redis-server: lookups are reused until Redis reports a change to a key
//! they read, and after the report the next request is served the new
//! route (exact hosts, wildcards, `*`, new hosts, dead marks, deletes,
//! FLUSHALL, writes replicated from a master, a Redis replaced under it). A
//! Redis that refuses tracking, or stops answering, means a lookup per
//! request; a report that arrives while a lookup is in flight keeps that
//! lookup out of the cache (driven by a scripted RESP server, since a real
//! Redis cannot be made to order the two on demand).

mod harness;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use harness::fake_redis::{array, FakeRedis};
use harness::{get, metric_total, wait_for, Backend, Lopache, Redis};

/// lopache on `redis_url` with an admin endpoint and extra `[server]` lines.
fn start(redis_url: &str, server: &str) -> (Lopache, SocketAddr) {
    start_with(redis_url, server, "")
}

/// As [`start`], with `tail` (tables such as `[[routes]]`) at the end.
fn start_with(redis_url: &str, server: &str, tail: &str) -> (Lopache, SocketAddr) {
    let cfg = harness::proxy::config(&format!("{redis_url:?}"), server)
        + "[admin]\nbind = \"127.0.0.1:0\"\n"
        + tail;
    let proxy = Lopache::start_config(&cfg, &[]);
    let admin = proxy.admin_addr.expect("admin address");
    (proxy, admin)
}

/// Connections subscribed to Redis's invalidation channel: one per shard
/// once tracking is on.
fn tracking_sessions(redis: &Redis) -> i64 {
    redis.subscribers("__redis__:invalidate")
}

/// lopache on `redis` whose `shards` shards all track it.
fn start_tracking(redis: &Redis, server: &str, shards: i64) -> (Lopache, SocketAddr) {
    let started = start(&redis.url(), server);
    wait_for("every shard to track", || {
        (tracking_sessions(redis) == shards).then_some(())
    });
    started
}

/// Waits until `host` is served from the cache on every shard: ten
/// requests in a row that cost Redis no lookup (each request opens a new
/// connection, which SO_REUSEPORT spreads over the shards).
fn wait_cached(proxy: &Lopache, redis: &Redis, host: &str) {
    wait_for("the lookup to be cached on every shard", || {
        redis.cmd(&["CONFIG", "RESETSTAT"]);
        for _ in 0..10 {
            get(proxy.addr, host, "/");
        }
        (redis.calls("smembers") == 0).then_some(())
    });
}

/// Runs `write` and waits until every one of `shards` shards has received
/// its report (`keys` keys each); returns how long that took.
fn write_and_wait_reports(
    admin: SocketAddr,
    shards: u64,
    keys: u64,
    write: impl FnOnce(),
) -> Duration {
    let before = metric_total(admin, "lopache_route_cache_invalidations_total");
    let start = Instant::now();
    write();
    wait_for("every shard to receive the change report", || {
        let now = metric_total(admin, "lopache_route_cache_invalidations_total");
        (now >= before + shards * keys).then_some(())
    });
    start.elapsed()
}

/// Every one of ten requests for `host` gets `expected` (a backend's
/// name, or the status for an error).
fn assert_served(proxy: &Lopache, host: &str, expected: &str) {
    for _ in 0..10 {
        let r = get(proxy.addr, host, "/");
        let got = match r.status {
            200 => r.text(),
            status => status.to_string(),
        };
        assert_eq!(got, expected, "Host: {host}");
    }
}

#[test]
fn a_change_is_served_by_the_next_request_after_its_report() {
    let redis = Redis::start();
    let (a, b) = (Backend::named("a"), Backend::named("b"));
    redis.frontend("", "app.example", "app", &[a.url()]);
    let (proxy, admin) = start_tracking(&redis, "workers = 2", 2);
    wait_cached(&proxy, &redis, "app.example");
    assert!(metric_total(admin, "lopache_route_cache_hits_total") >= 10);
    let took = write_and_wait_reports(admin, 2, 1, || {
        redis.cmd(&["LSET", "frontend:app.example", "1", &b.url()]);
    });
    assert_served(&proxy, "app.example", "b");
    // A correctness bound, not a speed goal: without the report the old
    // route would be served for the 60 s backstop.
    assert!(took < Duration::from_secs(2), "the report took {took:?}");
    // And the new route is cached again.
    wait_cached(&proxy, &redis, "app.example");
    assert_served(&proxy, "app.example", "b");
}

#[test]
fn wildcards_star_new_hosts_deletes_and_flushes() {
    let redis = Redis::start();
    let (a, b) = (Backend::named("a"), Backend::named("b"));
    redis.frontend("", "*.example.com", "wild", &[a.url()]);
    let (proxy, admin) = start_tracking(&redis, "workers = 1", 1);

    // A wildcard's change reaches the hosts under it.
    wait_cached(&proxy, &redis, "x.example.com");
    write_and_wait_reports(admin, 1, 1, || {
        redis.cmd(&["LSET", "frontend:*.example.com", "1", &b.url()]);
    });
    assert_served(&proxy, "x.example.com", "b");

    // A host unknown a moment ago (its negative answer was cached).
    wait_cached(&proxy, &redis, "new.example.org");
    assert_served(&proxy, "new.example.org", "400");
    write_and_wait_reports(admin, 1, 1, || {
        redis.cmd(&["RPUSH", "frontend:new.example.org", "new", &a.url()]);
    });
    assert_served(&proxy, "new.example.org", "a");

    // `frontend:*` catches every host without a list of its own.
    wait_cached(&proxy, &redis, "other.net");
    assert_served(&proxy, "other.net", "400");
    write_and_wait_reports(admin, 1, 1, || {
        redis.cmd(&["RPUSH", "frontend:*", "catchall", &b.url()]);
    });
    assert_served(&proxy, "other.net", "b");

    // A delete.
    wait_cached(&proxy, &redis, "new.example.org");
    write_and_wait_reports(admin, 1, 1, || {
        redis.cmd(&["DEL", "frontend:new.example.org"]);
    });
    assert_served(&proxy, "new.example.org", "b");

    // FLUSHALL empties the cache in one report.
    wait_cached(&proxy, &redis, "x.example.com");
    let flushes = metric_total(admin, "lopache_route_cache_flushes_total");
    redis.cmd(&["FLUSHALL"]);
    wait_for("the flush to be reported", || {
        (metric_total(admin, "lopache_route_cache_flushes_total") > flushes).then_some(())
    });
    assert_served(&proxy, "x.example.com", "400");
    assert_served(&proxy, "other.net", "400");
}

#[test]
fn a_dead_mark_from_another_process_takes_effect_at_once() {
    let redis = Redis::start();
    let (a, b) = (Backend::named("a"), Backend::named("b"));
    redis.frontend("", "app.example", "app", &[a.url(), b.url()]);
    let (proxy, admin) = start_tracking(&redis, "workers = 2", 2);
    wait_cached(&proxy, &redis, "app.example");
    // The SADD alone (no PUBLISH): the dead set's own change report.
    write_and_wait_reports(admin, 2, 1, || {
        redis.cmd(&["SADD", "dead:app.example", "0"]);
    });
    assert_served(&proxy, "app.example", "b");
    assert!(a.count() > 0, "backend a served before the mark");
    let a_before = a.count();
    for _ in 0..10 {
        get(proxy.addr, "app.example", "/");
    }
    assert_eq!(a.count(), a_before, "a dead backend got a request");
}

#[test]
fn writes_on_the_master_reach_a_cache_reading_the_replica() {
    let master = Redis::start();
    let replica = Redis::start_with(&["--replicaof", "127.0.0.1", &master.port.to_string()]);
    wait_for("the replica to sync", || {
        let info = harness::redis::text(&replica.cmd(&["INFO", "replication"]));
        info.contains("master_link_status:up").then_some(())
    });
    let (a, b) = (Backend::named("a"), Backend::named("b"));
    master.frontend("", "app.example", "app", &[a.url()]);
    wait_for("the route to replicate", || {
        (replica.cmd(&["LLEN", "frontend:app.example"]) == lopache::redis::Reply::Integer(2))
            .then_some(())
    });
    let (proxy, admin) = start_tracking(&replica, "workers = 2", 2);
    wait_cached(&proxy, &replica, "app.example");
    write_and_wait_reports(admin, 2, 1, || {
        master.cmd(&["LSET", "frontend:app.example", "1", &b.url()]);
    });
    assert_served(&proxy, "app.example", "b");
}

#[test]
fn a_redis_replaced_under_the_cache_never_serves_the_old_route() {
    let mut redis = Redis::start();
    let (a, b) = (Backend::named("a"), Backend::named("b"));
    redis.frontend("", "app.example", "app", &[a.url()]);
    let (proxy, admin) = start_tracking(&redis, "workers = 2", 2);
    wait_cached(&proxy, &redis, "app.example");
    let reconnects = metric_total(admin, "lopache_route_cache_tracking_reconnects_total");
    redis.stop();
    redis.restart();
    // Different data: no persistence, so the old list is gone.
    redis.frontend("", "app.example", "app", &[b.url()]);
    let answers: Vec<String> = (0..20)
        .map(|_| get(proxy.addr, "app.example", "/").text())
        .collect();
    assert!(
        !answers.iter().any(|t| t == "a"),
        "old route served: {answers:?}"
    );
    wait_for("tracking to come back", || {
        (metric_total(admin, "lopache_route_cache_tracking_reconnects_total") >= reconnects + 2)
            .then_some(())
    });
    wait_cached(&proxy, &redis, "app.example");
    assert_served(&proxy, "app.example", "b");
}

#[test]
fn a_tracking_connection_that_stops_answering_empties_the_cache() {
    let redis = Redis::start_with(&["--enable-debug-command", "yes"]);
    let a = Backend::named("a");
    redis.frontend("", "app.example", "app", &[a.url()]);
    let (proxy, admin) = start_tracking(&redis, "workers = 1\nredis_timeout_ms = 300", 1);
    wait_cached(&proxy, &redis, "app.example");
    let flushes = metric_total(admin, "lopache_route_cache_flushes_total");
    // Redis hangs for 3 s: the PING goes unanswered past redis_timeout_ms.
    let port = redis.port;
    let sleeper = std::thread::spawn(move || {
        harness::redis::RedisConn::connect(port).cmd(&["DEBUG", "SLEEP", "3"])
    });
    wait_for("the silent connection to be given up", || {
        (metric_total(admin, "lopache_route_cache_flushes_total") > flushes).then_some(())
    });
    // Meanwhile nothing is served from the cache: the lookup waits for
    // Redis and fails after redis_timeout_ms.
    assert_eq!(get(proxy.addr, "app.example", "/").status, 503);
    sleeper.join().unwrap();
    wait_for("tracking to come back", || {
        (metric_total(admin, "lopache_route_cache_tracking_reconnects_total") >= 1).then_some(())
    });
    wait_cached(&proxy, &redis, "app.example");
}

/// Redis reports an expired key only when it deletes it, which with its
/// active expiry off (or busy elsewhere) waits until someone reads the key:
/// a cached result lives no longer than the keys it was read from.
#[test]
fn expiring_routes_and_dead_marks_end_with_their_keys() {
    let redis = Redis::start_with(&["--enable-debug-command", "yes"]);
    redis.cmd(&["DEBUG", "SET-ACTIVE-EXPIRE", "0"]);
    let (a, b) = (Backend::named("a"), Backend::named("b"));
    redis.frontend("", "exp.example", "exp", &[a.url()]);
    redis.frontend("", "pair.example", "pair", &[a.url(), b.url()]);
    redis.cmd(&["SADD", "dead:pair.example", "0"]);
    let (proxy, _admin) = start_tracking(&redis, "workers = 1", 1);
    wait_cached(&proxy, &redis, "exp.example");
    wait_cached(&proxy, &redis, "pair.example");
    // (The times to live travel with the lookups.)
    assert_eq!(redis.calls("pttl"), 0);
    get(proxy.addr, "new.example", "/");
    assert_eq!(
        redis.calls("pttl"),
        4,
        "frontend:new.example, *.example, * and the dead set"
    );
    assert_served(&proxy, "pair.example", "b");
    // Each PEXPIRE is itself a change, reported: the next lookups read the
    // times to live. Then nothing reports the expiry.
    redis.cmd(&["PEXPIRE", "frontend:exp.example", "300"]);
    redis.cmd(&["PEXPIRE", "dead:pair.example", "300"]);
    // Well within the harness's wait, far below the 60 s backstop.
    wait_for("the expired route to be gone", || {
        (get(proxy.addr, "exp.example", "/").status == 400).then_some(())
    });
    wait_for("the expired dead mark to be gone", || {
        (get(proxy.addr, "pair.example", "/").text() == "a").then_some(())
    });
}

#[test]
fn a_redis_without_tracking_means_a_lookup_per_request() {
    let redis = Redis::start_with(&["--rename-command", "CLIENT", ""]);
    let (a, b) = (Backend::named("a"), Backend::named("b"));
    redis.frontend("", "app.example", "app", &[a.url()]);
    let (proxy, admin) = start(&redis.url(), "workers = 2");
    proxy.wait_for_log("refuses client tracking", 2);
    redis.cmd(&["CONFIG", "RESETSTAT"]);
    assert_served(&proxy, "app.example", "a");
    assert_eq!(redis.calls("smembers"), 10);
    redis.frontend("", "app.example", "app", &[b.url()]);
    assert_served(&proxy, "app.example", "b");
    assert_eq!(metric_total(admin, "lopache_route_cache_hits_total"), 0);
}

#[test]
fn route_cache_off_reads_redis_for_every_request() {
    let redis = Redis::start();
    let a = Backend::named("a");
    redis.frontend("", "app.example", "app", &[a.url()]);
    let (proxy, admin) = start(&redis.url(), "workers = 1\nroute_cache = \"off\"");
    redis.cmd(&["CONFIG", "RESETSTAT"]);
    assert_served(&proxy, "app.example", "a");
    assert_eq!(redis.calls("smembers"), 10);
    assert_eq!(tracking_sessions(&redis), 0);
    assert_eq!(metric_total(admin, "lopache_route_cache_misses_total"), 0);
}

/// Every one of ten requests for `path` on app.example gets backend `expected`.
fn assert_path_served(proxy: &Lopache, path: &str, expected: &str) {
    for _ in 0..10 {
        let r = get(proxy.addr, "app.example", path);
        assert_eq!((r.status, r.text()), (200, expected.to_string()), "{path}");
    }
}

/// What ten requests for each of `paths` cost Redis in `path_matches`
/// queries: (SISMEMBERs asked, sets fetched to keep).
fn path_queries_for(proxy: &Lopache, redis: &Redis, paths: &[&str]) -> (u64, u64) {
    redis.cmd(&["CONFIG", "RESETSTAT"]);
    for path in paths {
        for _ in 0..10 {
            get(proxy.addr, "app.example", path);
        }
    }
    (redis.calls("sismember"), redis.calls("srandmember"))
}

/// lopache with app.example on backend "old" in `redis`, and on "new" in
/// its keyspace `rollout:` for the paths the set `paths:app.example` on
/// `paths` (the same server or another) holds a pattern of.
fn start_path_route(
    redis: &Redis,
    paths: &Redis,
    server: &str,
) -> ([Backend; 2], Lopache, SocketAddr) {
    let backends = [Backend::named("old"), Backend::named("new")];
    redis.frontend("", "app.example", "app", &[backends[0].url()]);
    redis.frontend("rollout:", "app.example", "app", &[backends[1].url()]);
    let routes = format!(
        "[[routes]]\ncondition = {{ path_matches = {{ prefix = \"paths:\", driver = {:?} }} }}\n\
         destination = {{ random_backend_for_host = {{ driver = \"{}#rollout:\" }} }}\n",
        paths.url(),
        redis.url()
    );
    let (proxy, admin) = start_with(&redis.url(), server, &routes);
    (backends, proxy, admin)
}

#[test]
fn path_conditions_are_answered_from_kept_sets_until_they_change() {
    let redis = Redis::start();
    redis.cmd(&["SADD", "paths:app.example", "/api/*"]);
    let (_backends, proxy, admin) = start_path_route(&redis, &redis, "workers = 2");
    wait_for("every shard to track", || {
        (tracking_sessions(&redis) == 2).then_some(())
    });
    // Kept on every shard once asked: then no path costs a query, even
    // paths never asked before (the set is kept whole).
    wait_for("the set to be kept on every shard", || {
        (path_queries_for(&proxy, &redis, &["/api/x"]) == (0, 0)).then_some(())
    });
    assert_eq!(
        path_queries_for(&proxy, &redis, &["/web/y", "/", "/api/z/1"]),
        (0, 0)
    );
    assert_path_served(&proxy, "/api/x", "new");
    assert_path_served(&proxy, "/web/y", "old");

    // A member added, one removed, the set deleted: each applies to the
    // requests after its report.
    write_and_wait_reports(admin, 2, 1, || {
        redis.cmd(&["SADD", "paths:app.example", "/web/*"]);
    });
    assert_path_served(&proxy, "/web/y", "new");
    write_and_wait_reports(admin, 2, 1, || {
        redis.cmd(&["SREM", "paths:app.example", "/api/*"]);
    });
    assert_path_served(&proxy, "/api/x", "old");
    assert_path_served(&proxy, "/web/y", "new");
    write_and_wait_reports(admin, 2, 1, || {
        redis.cmd(&["DEL", "paths:app.example"]);
    });
    assert_path_served(&proxy, "/web/y", "old");
    // A set that did not exist is kept too, and its creation reported.
    wait_for("the missing set to be kept on every shard", || {
        (path_queries_for(&proxy, &redis, &["/web/y"]) == (0, 0)).then_some(())
    });
    write_and_wait_reports(admin, 2, 1, || {
        redis.cmd(&["SADD", "paths:app.example", "/web/*"]);
    });
    assert_path_served(&proxy, "/web/y", "new");

    // A set too large to keep is fetched once per shard, then asked for
    // every request without being fetched again, and answers right.
    let many: Vec<String> = (0..300).map(|i| format!("/page{i}")).collect();
    write_and_wait_reports(admin, 2, 1, || {
        let mut args = vec!["SADD", "paths:app.example"];
        args.extend(many.iter().map(String::as_str));
        redis.cmd(&args);
    });
    // "/web/y" has three patterns: `/*`, `/web/*`, `/web/y`.
    wait_for("both shards to know the set is too large", || {
        (path_queries_for(&proxy, &redis, &["/web/y"]) == (30, 0)).then_some(())
    });
    assert_path_served(&proxy, "/web/y", "new");
    assert_path_served(&proxy, "/page7", "new");
    assert_path_served(&proxy, "/page7/x", "old");

    // A key of another type fails its conditions, as without a cache, and
    // is fetched once per shard, not with every request.
    write_and_wait_reports(admin, 2, 1, || {
        redis.cmd(&["SET", "paths:app.example", "/page7"]);
    });
    wait_for("both shards to know the key holds no set", || {
        (path_queries_for(&proxy, &redis, &["/page7"]) == (20, 0)).then_some(())
    });
    assert_path_served(&proxy, "/page7", "old");
}

#[test]
fn a_path_set_on_another_redis_is_tracked_there() {
    let (routes_redis, paths_redis) = (Redis::start(), Redis::start());
    let (_backends, proxy, admin) = start_path_route(&routes_redis, &paths_redis, "workers = 2");
    // A session per shard on each server: the paths server has only sets.
    wait_for("every shard to track both servers", || {
        (tracking_sessions(&routes_redis) == 2 && tracking_sessions(&paths_redis) == 2)
            .then_some(())
    });
    wait_for("the set to be kept on every shard", || {
        (path_queries_for(&proxy, &paths_redis, &["/api/x"]) == (0, 0)).then_some(())
    });
    assert_path_served(&proxy, "/api/x", "old");
    write_and_wait_reports(admin, 2, 1, || {
        paths_redis.cmd(&["SADD", "paths:app.example", "/api/*"]);
    });
    assert_path_served(&proxy, "/api/x", "new");
    // Losing that server ends its session, and what was kept from it is
    // no longer served: requests get the answer they get without a cache.
    drop(paths_redis);
    let status = wait_for("the kept set to stop answering", || {
        let r = get(proxy.addr, "app.example", "/api/x");
        (r.status != 200).then_some(r.status)
    });
    assert_eq!(status, 503);
}

#[test]
fn path_sets_are_asked_for_every_request_with_the_cache_off() {
    let redis = Redis::start();
    redis.cmd(&["SADD", "paths:app.example", "/api/*"]);
    let off = "workers = 1\nroute_cache = \"off\"";
    let (_backends, proxy, _admin) = start_path_route(&redis, &redis, off);
    // Two patterns for "/api": `/*` and `/api`; nothing fetched to keep.
    assert_eq!(path_queries_for(&proxy, &redis, &["/api"]), (20, 0));
    redis.cmd(&["SADD", "paths:app.example", "/api"]);
    assert_path_served(&proxy, "/api", "new");
}

#[test]
fn a_path_server_that_refuses_tracking_gets_no_fetches() {
    let routes_redis = Redis::start();
    let paths_redis = Redis::start_with(&["--rename-command", "CLIENT", ""]);
    paths_redis.cmd(&["SADD", "paths:app.example", "/api/*"]);
    let (_backends, proxy, _admin) = start_path_route(&routes_redis, &paths_redis, "workers = 1");
    proxy.wait_for_log("refuses client tracking", 1);
    // The routes server tracks; the paths server is asked every time (three
    // patterns: `/*`, `/api/*`, `/api/x`), and never sent a fetch whose
    // result could not be kept.
    assert_eq!(path_queries_for(&proxy, &paths_redis, &["/api/x"]), (30, 0));
    assert_path_served(&proxy, "/api/x", "new");
    paths_redis.cmd(&["SREM", "paths:app.example", "/api/*"]);
    assert_path_served(&proxy, "/api/x", "old");
}

/// A scripted Redis for what a real one cannot be made to do on demand. It
/// answers the tracking setup and PINGs as Redis does, and every `LRANGE`
/// with `list(key, report)`, where `report(keys)` pushes a change report to
/// the tracking connection at that moment.
fn scripted_redis(
    list: impl Fn(&str, &dyn Fn(&[&str])) -> Vec<u8> + Send + Sync + 'static,
) -> FakeRedis {
    let tracking = Arc::new(std::sync::Mutex::new(None::<usize>));
    FakeRedis::start_with_push(move |conn, args, push| {
        let arg =
            |i: usize| String::from_utf8_lossy(args.get(i).map_or(&[][..], |a| a)).to_string();
        let report = |keys: &[&str]| {
            let to = tracking.lock().unwrap().expect("a tracking connection");
            let mut bytes = b"*3\r\n$7\r\nmessage\r\n$20\r\n__redis__:invalidate\r\n".to_vec();
            bytes.extend_from_slice(&array(keys));
            push(to, &bytes);
        };
        match arg(0).to_ascii_uppercase().as_str() {
            "CLIENT" if arg(1).eq_ignore_ascii_case("ID") => {
                *tracking.lock().unwrap() = Some(conn);
                b":7\r\n".to_vec()
            }
            "CLIENT" => b"+OK\r\n".to_vec(),
            "SUBSCRIBE" => {
                let mut out = b"*3\r\n$9\r\nsubscribe\r\n$20\r\n__redis__:invalidate\r\n".to_vec();
                out.extend_from_slice(b":1\r\n");
                out
            }
            "PING" => array(&["pong", ""]),
            "SMEMBERS" => b"*0\r\n".to_vec(),
            "PTTL" => b":-1\r\n".to_vec(),
            "LRANGE" => list(&arg(1), &report),
            _ => b"-ERR unknown\r\n".to_vec(),
        }
    })
}

/// lopache on a scripted Redis, once its one shard serves from the cache.
fn start_scripted(fake: &FakeRedis) -> (Lopache, SocketAddr) {
    let (proxy, admin) = start(&fake.url(), "workers = 1");
    // The session is live once its SUBSCRIBE is confirmed; a lookup taken
    // before that is not cached, so wait for a hit on a host of no interest.
    wait_for("the cache to serve a lookup", || {
        get(proxy.addr, "warm.example", "/");
        (metric_total(admin, "lopache_route_cache_hits_total") > 0).then_some(())
    });
    (proxy, admin)
}

/// The race a real Redis cannot be made to show on demand: the lookup's
/// reply predates a change whose report reaches lopache first. The scripted
/// server answers the first lookup of `race.example` with the old backend,
/// but only after pushing the report of the change and pausing; that
/// request gets the old backend (it was in flight), and the next one must
/// not: its lookup was never cached.
#[test]
fn a_report_during_a_lookup_keeps_it_out_of_the_cache() {
    let (a, b) = (Backend::named("a"), Backend::named("b"));
    let (old, new) = (a.url(), b.url());
    let changed = Arc::new(AtomicBool::new(false));
    let fake = {
        let changed = changed.clone();
        scripted_redis(move |key, report| match key {
            "frontend:race.example" if !changed.swap(true, Ordering::SeqCst) => {
                // The change lands after this lookup ran: report it first,
                // give lopache time to read the report, then answer with
                // what the lookup saw.
                report(&["frontend:race.example"]);
                std::thread::sleep(Duration::from_millis(200));
                array(&["race", &old])
            }
            "frontend:race.example" => array(&["race", &new]),
            _ => b"*0\r\n".to_vec(),
        })
    };
    let (proxy, _admin) = start_scripted(&fake);
    assert_eq!(get(proxy.addr, "race.example", "/").text(), "a");
    assert!(changed.load(Ordering::SeqCst));
    assert_eq!(get(proxy.addr, "race.example", "/").text(), "b");
    assert_served(&proxy, "race.example", "b");
}

/// A report too large to read (Redis sends one per event loop turn, listing
/// every key a big transaction or script touched) empties the cache: it is
/// never ignored, whatever keys it would have named.
#[test]
fn a_report_over_the_size_limit_empties_the_cache() {
    let (a, b) = (Backend::named("a"), Backend::named("b"));
    let (old, new) = (a.url(), b.url());
    let changed = Arc::new(AtomicBool::new(false));
    let lookups = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let push_big = Arc::new(AtomicBool::new(false));
    let fake = {
        let (changed, lookups, push_big) = (changed.clone(), lookups.clone(), push_big.clone());
        scripted_redis(move |key, report| {
            if push_big.swap(false, Ordering::SeqCst) {
                // 5 MiB of other keys, over the client's 4 MiB reply limit.
                let keys: Vec<String> = (0..100_000)
                    .map(|i| format!("frontend:filler-{i:06}.customer.example.org"))
                    .collect();
                report(&keys.iter().map(String::as_str).collect::<Vec<_>>());
            }
            match key {
                "frontend:big.example" => {
                    lookups.fetch_add(1, Ordering::SeqCst);
                    let url = if changed.load(Ordering::SeqCst) {
                        &new
                    } else {
                        &old
                    };
                    array(&["big", url])
                }
                _ => b"*0\r\n".to_vec(),
            }
        })
    };
    let (proxy, admin) = start_scripted(&fake);
    assert_eq!(get(proxy.addr, "big.example", "/").text(), "a");
    changed.store(true, Ordering::SeqCst);
    // Cached: the change is not seen without a report.
    assert_eq!(get(proxy.addr, "big.example", "/").text(), "a");
    assert_eq!(lookups.load(Ordering::SeqCst), 1);
    // The big report goes out while another host is looked up.
    let flushes = metric_total(admin, "lopache_route_cache_flushes_total");
    push_big.store(true, Ordering::SeqCst);
    get(proxy.addr, "other.example", "/");
    wait_for("the unreadable report to empty the cache", || {
        (metric_total(admin, "lopache_route_cache_flushes_total") > flushes).then_some(())
    });
    assert_served(&proxy, "big.example", "b");
}
