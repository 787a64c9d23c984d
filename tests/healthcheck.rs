//! Active health checks (`[healthcheck]`) through the real binary and a real
//! Redis: a backend that starts failing its health path is marked dead at
//! its `fall`-th failing check (SADD, EXPIRE, PUBLISH `dead`), one that
//! recovers leaves the dead set at its `rise`-th passing check and gets
//! requests again; `status` and `body` of the hash are honoured; a frontend
//! without `healthcheck:<host>` is never probed; 1,000 frontends are all
//! checked in one interval with at most `concurrency` checks at once.

mod harness;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use harness::redis::text;
use harness::{get, wait_for, Backend, Lopache, Redis, Reply};

const INTERVAL_MS: u64 = 200;
const RISE: usize = 2;
const FALL: usize = 3;

fn start(redis: &Redis, extra: &str) -> Lopache {
    let cfg = harness::proxy::config(&format!("{:?}", redis.url()), "dead_backend_ttl = 30")
        + &format!(
            "[healthcheck]\nenabled = true\ninterval_ms = {INTERVAL_MS}\ntimeout_ms = 150\n\
             rise = {RISE}\nfall = {FALL}\n{extra}\n[admin]\nbind = \"127.0.0.1:0\"\n"
        );
    Lopache::start_config(&cfg, &[])
}

fn is_dead(redis: &Redis, host: &str, index: usize) -> bool {
    text(&redis.cmd(&["SISMEMBER", &format!("dead:{host}"), &index.to_string()])) == "1"
}

/// What the health path of a switchable backend saw: for each answer,
/// whether it failed and whether the backend was in the dead set just
/// before answering.
#[derive(Default)]
struct Answers {
    list: Mutex<Vec<(bool, bool)>>,
}

/// A backend whose `/health` fails while `failing` is set; every other path
/// answers 200 "app". Each health answer is recorded with the dead set's
/// state right before it.
fn switchable(
    redis_port: u16,
    failing: Arc<AtomicBool>,
    answers: Arc<Answers>,
    proxied: Arc<AtomicUsize>,
) -> Backend {
    Backend::start(move |r| {
        if r.target != "/health" {
            proxied.fetch_add(1, Ordering::SeqCst);
            return Reply::ok("app");
        }
        assert_eq!(r.header("host"), Some("app.example"));
        assert_eq!(r.header("user-agent"), Some("lopache-healthcheck"));
        let dead = harness::redis::RedisConn::connect(redis_port).cmd(&[
            "SISMEMBER",
            "dead:app.example",
            "0",
        ]);
        let failed = failing.load(Ordering::SeqCst);
        answers
            .list
            .lock()
            .unwrap()
            .push((failed, text(&dead) == "1"));
        if failed {
            Reply::status(500, "sick")
        } else {
            Reply::ok("healthy")
        }
    })
}

#[test]
fn fall_marks_rise_clears_and_unlisted_frontends_are_not_probed() {
    let redis = Redis::start();
    let failing = Arc::new(AtomicBool::new(false));
    let answers = Arc::new(Answers::default());
    let proxied = Arc::new(AtomicUsize::new(0));
    let a = switchable(
        redis.port,
        failing.clone(),
        answers.clone(),
        proxied.clone(),
    );
    let b = Backend::named("b");
    let unlisted = Backend::named("unlisted");
    redis.frontend("", "app.example", "app", &[a.url(), b.url()]);
    redis.frontend("", "other.example", "other", &[unlisted.url()]);
    redis.cmd(&["HSET", "healthcheck:app.example", "path", "/health"]);
    let proxy = start(&redis, "");
    let mut subscriber = redis.conn();
    subscriber.cmd(&["SUBSCRIBE", "dead"]);

    // Healthy: checked every interval, never marked.
    wait_for("three passing checks", || {
        (answers.list.lock().unwrap().len() >= 3).then_some(())
    });
    assert!(!is_dead(&redis, "app.example", 0));

    // Failing: marked dead exactly at the FALL-th failing check.
    let since = Instant::now();
    failing.store(true, Ordering::SeqCst);
    wait_for("the dead mark", || {
        is_dead(&redis, "app.example", 0).then_some(())
    });
    let took = since.elapsed();
    let failed: Vec<bool> = answers
        .list
        .lock()
        .unwrap()
        .iter()
        .filter(|(failed, _)| *failed)
        .map(|(_, dead_before)| *dead_before)
        .collect();
    assert!(failed.len() >= FALL, "{failed:?}");
    assert!(
        failed[..FALL].iter().all(|dead| !dead),
        "marked before the {FALL}th failure: {failed:?}"
    );
    // One interval to the first check, then FALL - 1 more (generous slack:
    // the exact count is what is asserted above).
    assert!(
        took < Duration::from_millis(INTERVAL_MS * (FALL as u64 + 1)) + Duration::from_secs(2),
        "took {took:?}"
    );
    let ttl: i64 = text(&redis.cmd(&["TTL", "dead:app.example"]))
        .parse()
        .unwrap();
    assert!((1..=30).contains(&ttl), "TTL {ttl}");
    match subscriber.read() {
        lopache::redis::Reply::Array(parts) => {
            assert_eq!(text(&parts[2]), format!("app.example;{};0;2", a.url()))
        }
        other => panic!("{other:?}"),
    }
    // While it fails, requests go to b only.
    for _ in 0..10 {
        assert_eq!(get(proxy.addr, "app.example", "/").text(), "b");
    }

    // Recovering: out of the dead set exactly at the RISE-th pass.
    let answered = answers.list.lock().unwrap().len();
    failing.store(false, Ordering::SeqCst);
    wait_for("the mark to go", || {
        (!is_dead(&redis, "app.example", 0)).then_some(())
    });
    let passes: Vec<bool> = answers.list.lock().unwrap()[answered..]
        .iter()
        .filter(|(failed, _)| !*failed)
        .map(|(_, dead_before)| *dead_before)
        .collect();
    assert!(passes.len() >= RISE, "{passes:?}");
    assert!(
        passes[..RISE].iter().all(|dead| *dead),
        "cleared early: {passes:?}"
    );
    wait_for("a request to reach the recovered backend", || {
        get(proxy.addr, "app.example", "/");
        (proxied.load(Ordering::SeqCst) > 0).then_some(())
    });

    // The frontend without a healthcheck: hash was never asked anything.
    assert_eq!(unlisted.count(), 0);
    let changes = harness::metric_total(
        proxy.admin_addr.unwrap(),
        "lopache_healthcheck_state_changes_total",
    );
    assert_eq!(changes, 2);
    let checks = harness::metric_total(proxy.admin_addr.unwrap(), "lopache_healthchecks_total");
    let failures = harness::metric_total(
        proxy.admin_addr.unwrap(),
        "lopache_healthcheck_failures_total",
    );
    assert!(checks >= answers.list.lock().unwrap().len() as u64 && failures >= FALL as u64);
}

/// A backend whose `/health` answers 200 while `up` is set, 500 otherwise.
fn health_switch(up: Arc<AtomicBool>) -> Backend {
    Backend::start(move |_| {
        if up.load(Ordering::SeqCst) {
            Reply::ok("up")
        } else {
            Reply::status(500, "down")
        }
    })
}

#[test]
fn the_checks_decide_for_their_frontends() {
    let redis = Redis::start();
    let healthy = health_switch(Arc::new(AtomicBool::new(true)));
    let sick = health_switch(Arc::new(AtomicBool::new(false)));
    let twice = Arc::new(AtomicBool::new(false));
    let listed_twice = health_switch(twice.clone());
    // A name that does not resolve is not checked: it says nothing of the backend.
    redis.frontend(
        "",
        "app.example",
        "app",
        &[
            healthy.url(),
            sick.url(),
            listed_twice.url(),
            listed_twice.url(),
            "http://no-such-backend.invalid:80".into(),
        ],
    );
    redis.cmd(&["HSET", "healthcheck:app.example", "path", "/"]);
    // A mark a failed request made on a backend the checks find healthy
    // (the sick sibling keeps the set's expiry renewed).
    redis.cmd(&["SADD", "dead:app.example", "0"]);
    let _proxy = start(&redis, "");
    let dead = || harness::redis::members(&redis.cmd(&["SMEMBERS", "dead:app.example"]));
    wait_for(
        "the healthy backend cleared, the sick and doubled ones marked",
        || (dead() == ["1", "2", "3"]).then_some(()),
    );
    // A URL listed twice is two backends: both come back.
    twice.store(true, Ordering::SeqCst);
    wait_for("both indexes of the doubled URL cleared", || {
        (dead() == ["1"]).then_some(())
    });
    // Several more rounds: the unresolvable backend stays unmarked.
    let seen = sick.count();
    wait_for("more checks", || {
        (sick.count() >= seen + FALL + 2).then_some(())
    });
    assert_eq!(dead(), ["1"]);
}

#[test]
fn status_body_and_method_from_the_hash() {
    let redis = Redis::start();
    // Answers 200 "state: DEGRADED", then "state: OK", to GETs of /deep.
    let degraded = Arc::new(AtomicBool::new(true));
    let flag = degraded.clone();
    let app = Backend::start(move |r| {
        assert_eq!((r.method.as_str(), r.target.as_str()), ("GET", "/deep"));
        // Chunked, the expected words split over two chunks.
        let body = if flag.load(Ordering::SeqCst) {
            "5\r\nstate\r\na\r\n: DEGRADED\r\n0\r\n\r\n"
        } else {
            "5\r\nstate\r\n4\r\n: OK\r\n0\r\n\r\n"
        };
        Reply::with_headers(200, &[("Transfer-Encoding", "chunked")], body)
    });
    let teapot = Backend::start(|_| Reply::status(418, "short and stout"));
    redis.frontend("", "app.example", "app", &[app.url()]);
    redis.frontend("", "tea.example", "tea", &[teapot.url()]);
    redis.cmd(&[
        "HSET",
        "healthcheck:app.example",
        "path",
        "/deep",
        "body",
        "state: OK",
    ]);
    redis.cmd(&[
        "HSET",
        "healthcheck:tea.example",
        "status",
        "418",
        "method",
        "GET",
    ]);
    let _proxy = start(&redis, "");
    wait_for("app marked for its body", || {
        is_dead(&redis, "app.example", 0).then_some(())
    });
    degraded.store(false, Ordering::SeqCst);
    wait_for("app cleared once the body says OK", || {
        (!is_dead(&redis, "app.example", 0)).then_some(())
    });
    // 418 is what tea.example expects: checked, never marked.
    wait_for("several checks of the teapot", || {
        (teapot.count() >= FALL + 2).then_some(())
    });
    assert!(!is_dead(&redis, "tea.example", 0));
}

#[test]
fn a_thousand_frontends_with_bounded_concurrency() {
    const FRONTENDS: usize = 1000;
    const CONCURRENCY: usize = 8;
    let redis = Redis::start();
    let active = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let hosts = Arc::new(Mutex::new(std::collections::HashSet::new()));
    let (a, m, h) = (active.clone(), most.clone(), hosts.clone());
    let app = Backend::start(move |r| {
        let now = a.fetch_add(1, Ordering::SeqCst) + 1;
        m.fetch_max(now, Ordering::SeqCst);
        // Slow enough that checks overlap and the cap is what holds them.
        std::thread::sleep(Duration::from_millis(20));
        h.lock()
            .unwrap()
            .insert(r.header("host").unwrap().to_string());
        a.fetch_sub(1, Ordering::SeqCst);
        Reply::ok("ok")
    });
    let mut conn = redis.conn();
    for i in 0..FRONTENDS {
        let host = format!("site{i}.example");
        conn.send(&["RPUSH", &format!("frontend:{host}"), "site", &app.url()]);
        conn.send(&["HSET", &format!("healthcheck:{host}"), "path", "/"]);
    }
    for _ in 0..FRONTENDS * 2 {
        conn.read();
    }
    let cfg = harness::proxy::config(&format!("{:?}", redis.url()), "")
        + &format!(
            "[healthcheck]\nenabled = true\ninterval_ms = 2000\ntimeout_ms = 1000\n\
             concurrency = {CONCURRENCY}\n"
        );
    let _proxy = Lopache::start_config(&cfg, &[]);
    wait_for("every frontend checked", || {
        (hosts.lock().unwrap().len() == FRONTENDS).then_some(())
    });
    let most = most.load(Ordering::SeqCst);
    assert!(most <= CONCURRENCY, "{most} checks at once");
    assert!(
        most >= 2,
        "checks never overlapped ({most}): the cap was not exercised"
    );
    for i in [0, 999] {
        assert!(!is_dead(&redis, &format!("site{i}.example"), 0));
    }
}

#[test]
fn config_errors_name_the_key() {
    for (lines, key) in [
        ("interval_ms = 10", "healthcheck.interval_ms"),
        ("timeout_ms = 5000", "healthcheck.timeout_ms"),
        ("path = \"health\"", "healthcheck.path"),
        ("rise = 0", "healthcheck.rise"),
        ("fall = 0", "healthcheck.fall"),
        ("concurrency = 0", "healthcheck.concurrency"),
    ] {
        let (code, _, stderr) = harness::proxy::dry(&format!(
            "[http]\nport = 0\n[healthcheck]\nenabled = true\n{lines}\n"
        ));
        assert_eq!(code, Some(2), "{lines}: {stderr}");
        assert!(stderr.contains(&format!("{key}: ")), "{lines}: {stderr}");
    }
}
