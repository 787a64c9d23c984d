//! Lopache routes through the real binary: session-segment rollouts, path
//! patterns from Redis sets, and/or/not with first-match order, dead marks in
//! the destination's keyspace, and what the conditions cost in Redis.

mod harness;

use harness::redis::members;
use harness::{request, wait_for, Backend, Lopache, Redis};

/// `frontend:app.example` -> "old", `rollout:frontend:app.example` -> "new".
fn two_keyspaces(redis: &Redis) -> (Backend, Backend) {
    let old = Backend::named("old");
    let new = Backend::named("new");
    redis.frontend("", "app.example", "app", &[old.url()]);
    redis.frontend("rollout:", "app.example", "app", &[new.url()]);
    (old, new)
}

/// Without the route cache: these tests count what each request costs Redis.
fn proxy_with_routes(redis: &Redis, routes: &str) -> Lopache {
    let cfg = format!(
        "driver = {:?}\n[server]\nworkers = 2\nroute_cache = \"off\"\n[http]\nport = 0\nbind = [\"127.0.0.1\"]\n{routes}",
        redis.url()
    );
    Lopache::start_config(&cfg, &[])
}

fn get_with(proxy: &Lopache, path: &str, cookie: Option<&str>) -> String {
    let cookie = cookie
        .map(|c| format!("Cookie: {c}\r\n"))
        .unwrap_or_default();
    let r = request(
        proxy.addr,
        &format!("GET {path} HTTP/1.1\r\nHost: app.example\r\n{cookie}Connection: close\r\n\r\n"),
    );
    assert_eq!(r.status, 200, "{path} {cookie}");
    r.text()
}

fn segment(v: &str) -> u32 {
    crc32fast::hash(v.as_bytes()) % 100
}

/// Session ids whose segment is at most / above `max`.
fn sessions(max: u32) -> (Vec<String>, Vec<String>) {
    let ids: Vec<String> = (0..400).map(|i| format!("sess-{i:04}")).collect();
    let low = ids
        .iter()
        .filter(|s| segment(s) <= max)
        .take(5)
        .cloned()
        .collect();
    let high = ids
        .iter()
        .filter(|s| segment(s) > max)
        .take(5)
        .cloned()
        .collect();
    (low, high)
}

const SEGMENT_ROUTE: &str =
    "[[routes]]\ncondition = { included_in_segment = { cookie = \"_s\", max_segment_id = 50 } }\n\
    destination = { random_backend_for_host = { driver = \"DRIVER#rollout:\" } }\n";

#[test]
fn session_segments_pick_the_keyspace_and_stick() {
    let redis = Redis::start();
    let _backends = two_keyspaces(&redis);
    let proxy = proxy_with_routes(&redis, &SEGMENT_ROUTE.replace("DRIVER", &redis.url()));
    let (low, high) = sessions(50);
    assert!(!low.is_empty() && !high.is_empty());
    for s in &low {
        assert_eq!(
            get_with(&proxy, "/", Some(&format!("_s={s}"))),
            "new",
            "segment {}",
            segment(s)
        );
    }
    for s in &high {
        assert_eq!(
            get_with(&proxy, "/", Some(&format!("_s={s}"))),
            "old",
            "segment {}",
            segment(s)
        );
    }
    // The same session always lands on the same side.
    for _ in 0..100 {
        assert_eq!(
            get_with(&proxy, "/", Some(&format!("_s={}", low[0]))),
            "new"
        );
    }
    assert_eq!(get_with(&proxy, "/", None), "old", "no cookie header");
    assert_eq!(
        get_with(&proxy, "/", Some("other=1")),
        "old",
        "no such cookie"
    );
    let many = format!("theme=dark; _s={}; lang=en", low[1]);
    assert_eq!(
        get_with(&proxy, "/", Some(&many)),
        "new",
        "several cookies in one header"
    );
    let quoted = format!("_s=\"{}\"", low[2]);
    assert_eq!(get_with(&proxy, "/", Some(&quoted)), "new", "quoted value");
}

#[test]
fn path_patterns_from_a_redis_set() {
    let redis = Redis::start();
    let _backends = two_keyspaces(&redis);
    let routes = format!(
        "[[routes]]\ncondition = {{ path_matches = {{ prefix = \"paths:\" }} }}\n\
         destination = {{ random_backend_for_host = {{ driver = \"{}#rollout:\" }} }}\n",
        redis.url()
    );
    let proxy = proxy_with_routes(&redis, &routes);
    redis.cmd(&["SADD", "paths:app.example", "/public/*", "/exact"]);
    assert_eq!(get_with(&proxy, "/public/jobs/1", None), "new");
    assert_eq!(get_with(&proxy, "/public/", None), "new");
    assert_eq!(
        get_with(&proxy, "/exact?q=1", None),
        "new",
        "the query is not part of the path"
    );
    assert_eq!(get_with(&proxy, "/exact/more", None), "old");
    assert_eq!(get_with(&proxy, "/private?next=/public/x", None), "old");
    assert_eq!(get_with(&proxy, "/", None), "old");
    redis.cmd(&["SADD", "paths:app.example", "/"]);
    assert_eq!(
        get_with(&proxy, "/", None),
        "new",
        "the root path matches its own pattern"
    );
    assert_eq!(get_with(&proxy, "/private", None), "old");
    redis.cmd(&["SADD", "paths:app.example", "/*"]);
    assert_eq!(
        get_with(&proxy, "/private", None),
        "new",
        "/* covers everything"
    );
}

#[test]
fn and_or_not_and_first_match_order() {
    let redis = Redis::start();
    let backends: Vec<Backend> = ["r0", "r1", "r2", "default"]
        .iter()
        .map(|n| Backend::named(n))
        .collect();
    for (prefix, b) in ["r0:", "r1:", "r2:", ""].iter().zip(&backends) {
        redis.frontend(prefix, "app.example", "app", &[b.url()]);
    }
    let u = redis.url();
    let routes = format!(
        "[[routes]]\ncondition = {{ and = [ {{ path_prefix = \"/api/\" }}, \
         {{ included_in_segment = {{ cookie = \"_s\", max_segment_id = 50 }} }} ] }}\n\
         destination = {{ random_backend_for_host = {{ driver = \"{u}#r0:\" }} }}\n\
         [[routes]]\ncondition = {{ or = [ {{ path_prefix = \"/api/\" }}, {{ path_prefix = \"/beta/\" }} ] }}\n\
         destination = {{ random_backend_for_host = {{ driver = \"{u}#r1:\" }} }}\n\
         [[routes]]\ncondition = {{ not = {{ path_prefix = \"/\" }} }}\n\
         destination = {{ random_backend_for_host = {{ driver = \"{u}#r2:\" }} }}\n\
         [[routes]]\ncondition = {{ and = [ {{ not = {{ path_prefix = \"/api/\" }} }}, {{ path_prefix = \"/v\" }} ] }}\n\
         destination = {{ random_backend_for_host = {{ driver = \"{u}#r2:\" }} }}\n"
    );
    let proxy = proxy_with_routes(&redis, &routes);
    let (low, high) = sessions(50);
    let low = format!("_s={}", low[0]);
    let high = format!("_s={}", high[0]);
    assert_eq!(
        get_with(&proxy, "/api/x", Some(&low)),
        "r0",
        "first matching route wins"
    );
    assert_eq!(
        get_with(&proxy, "/api/x", Some(&high)),
        "r1",
        "falls through to the next route"
    );
    assert_eq!(get_with(&proxy, "/beta/y", Some(&low)), "r1");
    assert_eq!(get_with(&proxy, "/v2", None), "r2", "not + and");
    assert_eq!(
        get_with(&proxy, "/other", Some(&low)),
        "default",
        "no route holds"
    );
}

#[test]
fn dead_marks_go_to_the_destination_keyspace() {
    let redis = Redis::start();
    let good = Backend::named("good");
    let dead_url = harness::backend::refused_url();
    redis.frontend("", "app.example", "app", &[good.url()]);
    redis.frontend("rollout:", "app.example", "app", &[dead_url, good.url()]);
    let proxy = proxy_with_routes(&redis, &SEGMENT_ROUTE.replace("DRIVER", &redis.url()));
    let (low, _) = sessions(50);
    let cookie = format!("_s={}", low[0]);
    for _ in 0..50 {
        assert_eq!(get_with(&proxy, "/", Some(&cookie)), "good");
        if !members(&redis.cmd(&["SMEMBERS", "rollout:dead:app.example"])).is_empty() {
            break;
        }
    }
    wait_for("mark in rollout:dead", || {
        (members(&redis.cmd(&["SMEMBERS", "rollout:dead:app.example"])) == ["0"]).then_some(())
    });
    assert_eq!(
        redis.cmd(&["EXISTS", "dead:app.example"]),
        lopache::redis::Reply::Integer(0)
    );
}

#[test]
fn conditions_cost_redis_only_when_needed_and_share_the_lookup_trip() {
    let redis = Redis::start();
    let _backends = two_keyspaces(&redis);
    let u = redis.url();
    let routes = format!(
        "[[routes]]\ncondition = {{ and = [ {{ included_in_segment = {{ cookie = \"_s\", max_segment_id = 50 }} }}, \
         {{ path_matches = {{ prefix = \"paths:\" }} }} ] }}\n\
         destination = {{ random_backend_for_host = {{ driver = \"{u}#rollout:\" }} }}\n"
    );
    let proxy = proxy_with_routes(&redis, &routes);
    redis.cmd(&["SADD", "paths:app.example", "/*"]);
    let (low, high) = sessions(50);
    // Warm both shards' connections, then count.
    for _ in 0..4 {
        get_with(&proxy, "/", None);
    }
    redis.cmd(&["CONFIG", "RESETSTAT"]);
    // The cookie test fails first: no SISMEMBER at all.
    for _ in 0..10 {
        assert_eq!(
            get_with(&proxy, "/a", Some(&format!("_s={}", high[0]))),
            "old"
        );
    }
    assert_eq!(redis.calls("sismember"), 0);
    // 3 candidates (app.example, *.example, *): 3 LRANGE per request.
    assert_eq!(redis.calls("lrange"), 30);
    redis.cmd(&["CONFIG", "RESETSTAT"]);
    // The cookie test passes: the path check (2 patterns for /a) travels with
    // the destination's lookup, which is then used, not repeated.
    for _ in 0..10 {
        assert_eq!(
            get_with(&proxy, "/a", Some(&format!("_s={}", low[0]))),
            "new"
        );
    }
    assert_eq!(redis.calls("sismember"), 20);
    assert_eq!(redis.calls("lrange"), 30);
}

#[test]
fn a_destination_on_another_redis_server() {
    let main = Redis::start();
    let other = Redis::start();
    let old = Backend::named("old");
    let new = Backend::named("new");
    main.frontend("", "app.example", "app", &[old.url()]);
    other.frontend(
        "rollout:",
        "app.example",
        "app",
        &[new.url(), harness::backend::refused_url()],
    );
    let proxy = proxy_with_routes(&main, &SEGMENT_ROUTE.replace("DRIVER", &other.url()));
    let (low, high) = sessions(50);
    let low = format!("_s={}", low[0]);
    assert_eq!(
        get_with(&proxy, "/", Some(&format!("_s={}", high[0]))),
        "old"
    );
    // Requests until the refused backend is tried: its mark lands on the other server.
    for _ in 0..50 {
        assert_eq!(get_with(&proxy, "/", Some(&low)), "new");
        if !members(&other.cmd(&["SMEMBERS", "rollout:dead:app.example"])).is_empty() {
            break;
        }
    }
    wait_for("mark on the destination's server", || {
        (members(&other.cmd(&["SMEMBERS", "rollout:dead:app.example"])) == ["1"]).then_some(())
    });
    assert_eq!(
        main.cmd(&["EXISTS", "dead:app.example"]),
        lopache::redis::Reply::Integer(0)
    );
}

#[test]
fn rules_see_the_path_the_backend_sees_and_forward_it_unchanged() {
    let redis = Redis::start();
    let old = Backend::named("old");
    let new = Backend::start(|r| harness::Reply::ok(&format!("new {}", r.target)));
    redis.frontend("", "app.example", "app", &[old.url()]);
    redis.frontend("rollout:", "app.example", "app", &[new.url()]);
    redis.cmd(&["SADD", "paths:app.example", "/admin/*"]);
    let routes = format!(
        "[[routes]]\ncondition = {{ or = [ {{ path_prefix = \"/api/\" }}, \
         {{ path_matches = {{ prefix = \"paths:\" }} }} ] }}\n\
         destination = {{ random_backend_for_host = {{ driver = \"{}#rollout:\" }} }}\n",
        redis.url()
    );
    let proxy = proxy_with_routes(&redis, &routes);
    // Each reaches /api/x (or /admin/x) at a backend that decodes and
    // resolves the path, so each is held to the rule.
    for path in [
        "/api/x",
        "/%61pi/x",
        "//api/x",
        "/x/../api/x",
        "/./api/x",
        "/%2E%2E/api/x",
        "/admin/x",
        "/%61dmin//x",
        "/y/../admin/x",
    ] {
        assert_eq!(
            get_with(&proxy, path, None),
            format!("new {path}"),
            "{path}"
        );
    }
    assert_eq!(get_with(&proxy, "/apix", None), "old");
    assert_eq!(
        get_with(&proxy, "/%2Fapi/x", None),
        "old",
        "an encoded slash is data"
    );
}
