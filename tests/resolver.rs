//! Backend names resolved through a DNS server that stalls chosen names:
//! a slow name takes no capacity from the others, concurrent requests for a
//! name share one resolution, and an answer that comes after its requesters
//! gave up is still cached. lopache runs in a private mount namespace
//! (`unshare -m`) whose /etc/resolv.conf points at the test's DNS server;
//! no system file is touched.

mod harness;

use harness::dns::FakeDns;
use harness::{get, wait_for, Backend, Lopache, Redis, TempDir};

/// These tests count the queries each name reaches the DNS server with and
/// hold resolver slots for seconds: run side by side, the other tests' load
/// can end a stalled resolution early and free a slot the ninth name must
/// not get. They run one at a time.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

/// lopache with /etc/resolv.conf replaced, in its own mount namespace, by
/// one that names `dns`.
fn start_with_dns(redis: &Redis, dns: &FakeDns, dir: &TempDir) -> Lopache {
    start_with_dns_and(redis, dns, dir, 1)
}

/// [`start_with_dns`] with another `connect_timeout` (seconds).
fn start_with_dns_and(
    redis: &Redis,
    dns: &FakeDns,
    dir: &TempDir,
    connect_timeout: u32,
) -> Lopache {
    let resolv = dir.path().join("resolv.conf");
    std::fs::write(&resolv, dns.resolv_conf()).unwrap();
    let cfg = harness::proxy::config(
        &format!("{:?}", redis.url()),
        &format!("workers = 1\nconnect_timeout = {connect_timeout}\nretry_on_error = 0"),
    );
    Lopache::start_wrapped(
        &cfg,
        &[
            "unshare",
            "-m",
            "--",
            "sh",
            "-c",
            "mount --bind \"$0\" /etc/resolv.conf && exec \"$@\"",
            resolv.to_str().unwrap(),
        ],
    )
}

/// Routes `<name>.example` to `http://<name>.lopache.test:<port>`.
fn route(redis: &Redis, backend: &Backend, name: &str) -> String {
    let url = format!("http://{name}.lopache.test:{}", backend.addr.port());
    redis.frontend("", &format!("{name}.example"), name, &[url]);
    format!("{name}.example")
}

#[test]
fn a_stalled_name_takes_no_capacity_from_other_names() {
    let _serial = one_at_a_time();
    let redis = Redis::start();
    let app = Backend::named("app");
    let dns = FakeDns::start();
    let dir = TempDir::new("resolver");
    let proxy = start_with_dns(&redis, &dns, &dir);
    // Three names the DNS server never answers, two requests each at once.
    let stalled: Vec<String> = (0..3)
        .map(|i| route(&redis, &app, &format!("stall-{i}")))
        .collect();
    let addr = proxy.addr;
    let clients: Vec<_> = stalled
        .iter()
        .flat_map(|host| [host.clone(), host.clone()])
        .map(|host| std::thread::spawn(move || get(addr, &host, "/").status))
        .collect();
    // All three are being resolved at once (a small shared pool would hold
    // the third back behind the first two).
    wait_for("the stalled names to reach the DNS server", || {
        (0..3)
            .all(|i| dns.queries(&format!("stall-{i}.lopache.test")) > 0)
            .then_some(())
    });
    // Meanwhile every other name resolves and is served.
    for i in 0..6 {
        let host = route(&redis, &app, &format!("fast-{i}"));
        let answer = get(addr, &host, "/");
        assert_eq!(
            (answer.status, answer.text()),
            (200, "app".to_string()),
            "{host}"
        );
    }
    for client in clients {
        // Not resolved within connect_timeout: 502, no retry.
        assert_eq!(client.join().unwrap(), 502);
    }
    for i in 0..3 {
        let name = format!("stall-{i}.lopache.test");
        assert_eq!(
            dns.queries(&name),
            1,
            "{name}: one resolution for two requests"
        );
    }
}

#[test]
fn a_late_answer_is_cached_for_the_next_request() {
    let _serial = one_at_a_time();
    let redis = Redis::start();
    let app = Backend::named("app");
    let dns = FakeDns::start();
    let dir = TempDir::new("resolver");
    let proxy = start_with_dns(&redis, &dns, &dir);
    let host = route(&redis, &app, "slow-1");
    let addr = proxy.addr;
    // Four requests at once; the answer comes after their connect_timeout.
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let host = host.clone();
            std::thread::spawn(move || get(addr, &host, "/").status)
        })
        .collect();
    for client in clients {
        assert_eq!(client.join().unwrap(), 502);
    }
    wait_for("the DNS server to answer the slow name", || {
        (dns.answered("slow-1.lopache.test") > 0).then_some(())
    });
    // The resolution the four shared went on after they gave up; its answer
    // serves the next request without asking again.
    let answer = get(addr, &host, "/");
    assert_eq!((answer.status, answer.text()), (200, "app".to_string()));
    assert_eq!(dns.queries("slow-1.lopache.test"), 1);
}

/// A shard resolves at most 8 names at once; a ninth waits for a slot. Its
/// request gives up after connect_timeout (502), and the queued resolution,
/// which nobody waits for any more, is dropped: never sent, even once the
/// slots free up.
#[test]
fn a_shard_resolves_at_most_eight_names_at_once() {
    let _serial = one_at_a_time();
    let redis = Redis::start();
    let app = Backend::named("app");
    let dns = FakeDns::start();
    let dir = TempDir::new("resolver");
    let proxy = start_with_dns(&redis, &dns, &dir);
    let addr = proxy.addr;
    let hosts: Vec<String> = (0..9)
        .map(|i| route(&redis, &app, &format!("stall-{i}")))
        .collect();
    let clients: Vec<_> = hosts
        .iter()
        .cloned()
        .map(|host| std::thread::spawn(move || get(addr, &host, "/").status))
        .collect();
    let asked = || {
        (0..9)
            .filter(|i| dns.queries(&format!("stall-{i}.lopache.test")) > 0)
            .count()
    };
    wait_for("eight names to reach the DNS server", || {
        (asked() >= 8).then_some(())
    });
    for client in clients {
        assert_eq!(client.join().unwrap(), 502);
    }
    let unasked = (0..9)
        .find(|i| dns.queries(&format!("stall-{i}.lopache.test")) == 0)
        .expect("one name not asked for while eight stall");
    // Once the stalled resolutions end (the resolver's 5 s timeout), a name
    // asked for again is resolved anew; by then the abandoned one had its
    // slot and was dropped unsent. The name asked again must be one of the
    // eight that stalled, never the abandoned one (which one that is depends
    // on which client thread ran last).
    let stalled = (0..9).find(|i| *i != unasked).expect("eight names stalled");
    let again = format!("stall-{stalled}.lopache.test");
    let first = dns.queries(&again);
    wait_for("the stalled resolutions to end", || {
        get(addr, &hosts[stalled], "/");
        (dns.queries(&again) > first).then_some(())
    });
    assert_eq!(dns.queries(&format!("stall-{unasked}.lopache.test")), 0);
}

/// More names than slots at once, each answered after 300 ms: every request
/// is served (the names beyond eight wait for a slot, well within
/// connect_timeout), and one host name behind many ports is looked up once.
#[test]
fn a_burst_of_new_names_is_served_in_turn() {
    let _serial = one_at_a_time();
    let redis = Redis::start();
    let dns = FakeDns::start();
    let dir = TempDir::new("resolver");
    let proxy = start_with_dns_and(&redis, &dns, &dir, 5);
    let addr = proxy.addr;
    let backends: Vec<Backend> = (0..12).map(|_| Backend::named("app")).collect();
    let mut hosts: Vec<String> = (0..12)
        .map(|i| route(&redis, &backends[i], &format!("lag-{i}")))
        .collect();
    // The same name on twelve ports.
    for (i, b) in backends.iter().enumerate() {
        let url = format!("http://lag-shared.lopache.test:{}", b.addr.port());
        redis.frontend("", &format!("port-{i}.example"), "app", &[url]);
        hosts.push(format!("port-{i}.example"));
    }
    let clients: Vec<_> = hosts
        .into_iter()
        .map(|host| std::thread::spawn(move || (get(addr, &host, "/").status, host)))
        .collect();
    for client in clients {
        let (status, host) = client.join().unwrap();
        assert_eq!(status, 200, "{host}");
    }
    assert_eq!(dns.queries("lag-shared.lopache.test"), 1);
}
