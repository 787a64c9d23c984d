//! The routing store misbehaving: a reply nobody asked for, error replies,
//! a Redis that closes every connection, and lists that change while a
//! request is in flight (dead marks must name the backend that failed).

mod harness;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use harness::fake_redis::{array, FakeRedis};
use harness::{get, wait_for, Backend, Lopache, Redis, Reply};

/// A fake Redis holding `frontend:a.example` -> a and `frontend:b.example`
/// -> b; every other key is empty.
fn two_hosts(a: &Backend, b: &Backend, extra_once: Option<Vec<u8>>) -> FakeRedis {
    let (a, b) = (a.url(), b.url());
    let extra_sent = AtomicBool::new(false);
    FakeRedis::start(move |_, args| {
        let mut out = match (args[0].as_slice(), args.get(1).map(Vec::as_slice)) {
            (b"LRANGE", Some(b"frontend:a.example")) => array(&["a", &a]),
            (b"LRANGE", Some(b"frontend:b.example")) => array(&["b", &b]),
            _ => array(&[]),
        };
        // After the first lookup's last reply, one reply nobody asked for.
        if args[0] == b"SMEMBERS" {
            if let Some(extra) = &extra_once {
                if !extra_sent.swap(true, Ordering::SeqCst) {
                    out.extend_from_slice(extra);
                }
            }
        }
        out
    })
}

#[test]
fn a_reply_nobody_asked_for_cannot_shift_later_replies() {
    let a = Backend::named("A");
    let b = Backend::named("B");
    // An extra frontend list for a.example, as a misbehaving server or a
    // proxy in between might send: read as the next lookup's first reply, it
    // sent b.example's requests to a's backend.
    let fake = two_hosts(&a, &b, Some(array(&["a", &a.url()])));
    let proxy = Lopache::start(&fake.url(), "workers = 1");
    let first = get(proxy.addr, "a.example", "/");
    assert!(
        first.status == 503 || first.text() == "A",
        "{}",
        first.status
    );
    // The batch that carried the extra reply failed; after the back-off
    // (50 ms) a new connection answers, and every answer is the right one.
    let after = wait_for("Redis to be asked again", || {
        let r = get(proxy.addr, "b.example", "/");
        (r.status != 503).then_some(r)
    });
    assert_eq!(after.text(), "B");
    for _ in 0..5 {
        assert_eq!(get(proxy.addr, "b.example", "/").text(), "B");
        assert_eq!(get(proxy.addr, "a.example", "/").text(), "A");
    }
    assert!(
        fake.connections() >= 2,
        "the connection was dropped and made again"
    );
}

#[test]
fn error_replies_are_logged_once_and_their_end_too() {
    let loading = Arc::new(AtomicBool::new(true));
    let flag = loading.clone();
    let fake = FakeRedis::start(move |_, _| {
        if flag.load(Ordering::SeqCst) {
            b"-LOADING Redis is loading the dataset in memory\r\n".to_vec()
        } else {
            array(&[])
        }
    });
    let proxy = Lopache::start(&fake.url(), "workers = 1");
    for _ in 0..200 {
        assert_eq!(get(proxy.addr, "app.example", "/").status, 503);
    }
    let log = wait_for("the error to be logged", || {
        let log = proxy.stderr();
        log.contains("LOADING").then_some(log)
    });
    let lines: Vec<&str> = log.lines().filter(|l| l.contains("LOADING")).collect();
    assert!(lines.len() <= 2, "{lines:?}");
    assert!(lines[0].contains(&fake.url()), "{lines:?}");
    loading.store(false, Ordering::SeqCst);
    assert_eq!(get(proxy.addr, "app.example", "/").status, 400);
    wait_for("the end of the errors to be logged", || {
        proxy
            .stderr()
            .contains("answers without errors again")
            .then_some(())
    });
}

#[test]
fn a_redis_that_closes_every_connection_is_backed_off_and_logged_once() {
    let fake = FakeRedis::closing();
    let proxy = Lopache::start(&fake.url(), "workers = 1");
    for _ in 0..200 {
        assert_eq!(get(proxy.addr, "app.example", "/").status, 503);
    }
    let log = proxy.stderr();
    let lines: Vec<&str> = log.lines().filter(|l| l.contains(&fake.url())).collect();
    assert_eq!(lines.len(), 1, "{:?}", &lines[..lines.len().min(3)]);
    // Backed off: far fewer connections than requests.
    assert!(
        fake.connections() < 50,
        "{} connections for 200 requests",
        fake.connections()
    );
}

#[test]
fn a_dead_mark_names_the_backend_that_failed_when_the_list_changed() {
    let (redis, hung, healthy, proxy) = hung_then_healthy();
    let mut messages = redis.conn();
    messages.cmd(&["SUBSCRIBE", "dead"]);
    let addr = proxy.addr;
    let requests: Vec<_> = (0..4)
        .map(|_| std::thread::spawn(move || get(addr, "app.example", "/").status))
        .collect();
    wait_for("the requests at the hung backend", || {
        (hung.count() == 4).then_some(())
    });
    // A deploy swaps the two while the requests are in flight.
    redis.cmd(&["LSET", "frontend:app.example", "1", &healthy.url()]);
    redis.cmd(&["LSET", "frontend:app.example", "2", &hung.url()]);
    redis.cmd(&["DEL", "dead:app.example"]);
    for r in requests {
        assert_eq!(r.join().unwrap(), 504);
    }
    // The mark names the hung backend at its new index, once for all four.
    let message = push_payload(&messages.read());
    assert_eq!(message, format!("app.example;{};1;2", hung.url()));
    assert_eq!(
        harness::redis::members(&redis.cmd(&["SMEMBERS", "dead:app.example"])),
        ["1"]
    );
    assert_eq!(redis.calls("eval"), 1, "four failures, one mark");
    // And the healthy backend serves.
    assert_eq!(get(proxy.addr, "app.example", "/").text(), "healthy");
}

/// `frontend:app.example` -> [a backend that answers after 3 s, a healthy
/// one], with the healthy one in the dead set for now so that the hung one
/// is chosen, and lopache answering 504 after 1 s without retrying.
fn hung_then_healthy() -> (Redis, Backend, Backend, Lopache) {
    let redis = Redis::start();
    let hung = Backend::start(|_| {
        Reply::Delay(
            std::time::Duration::from_secs(3),
            Box::new(Reply::ok("late")),
        )
    });
    let healthy = Backend::named("healthy");
    redis.frontend("", "app.example", "app", &[hung.url(), healthy.url()]);
    redis.cmd(&["SADD", "dead:app.example", "1"]);
    let proxy = Lopache::start(
        &redis.url(),
        "workers = 1\nresponse_timeout = 1\nretry_on_error = 0",
    );
    (redis, hung, healthy, proxy)
}

/// The payload of a `["message", channel, payload]` push.
fn push_payload(reply: &lopache::redis::Reply) -> String {
    match reply {
        lopache::redis::Reply::Array(items) if items.len() == 3 => harness::redis::text(&items[2]),
        other => panic!("not a message: {other:?}"),
    }
}

#[test]
fn a_backend_no_longer_listed_is_not_marked() {
    let (redis, hung, _healthy, proxy) = hung_then_healthy();
    let addr = proxy.addr;
    let request = std::thread::spawn(move || get(addr, "app.example", "/").status);
    wait_for("the request at the hung backend", || {
        (hung.count() == 1).then_some(())
    });
    redis.cmd(&["LREM", "frontend:app.example", "0", &hung.url()]);
    redis.cmd(&["DEL", "dead:app.example"]);
    redis.cmd(&["CONFIG", "RESETSTAT"]);
    assert_eq!(request.join().unwrap(), 504);
    wait_for("the mark to be attempted", || {
        (redis.calls("eval") == 1).then_some(())
    });
    assert_eq!(redis.calls("sadd") + redis.calls("publish"), 0);
    assert!(harness::redis::members(&redis.cmd(&["SMEMBERS", "dead:app.example"])).is_empty());
}
