//! Redis Sentinel (`redis-sentinel://` driver URLs) with real sentinels:
//! three `redis-server --sentinel`, a master and a replica on loopback
//! ports. Reads from the replica and dead marks through the sentinels to
//! the master; the master is killed under load: every routed request is
//! served throughout (the read Redis stayed up), and once the sentinels
//! have promoted the replica the next dead mark lands on it. A sentinel URL
//! also works as the only driver, `?role=replica` reads from the replica,
//! and the default route cache tracks the new master after a failover.

mod harness;

use std::process::{Child, Command, Stdio};

use harness::load::Load;
use harness::redis::{members, text};
use harness::{get, wait_for, Backend, Lopache, Redis, TempDir};

const MASTER_NAME: &str = "mymaster";

/// One `redis-server --sentinel` with a config file of its own.
struct Sentinel {
    child: Child,
    port: u16,
    _dir: TempDir,
}

impl Drop for Sentinel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Sentinel {
    fn start(master_port: u16) -> Sentinel {
        let dir = TempDir::new("sentinel");
        let port = free_port();
        let conf = dir.path().join("sentinel.conf");
        std::fs::write(
            &conf,
            format!(
                "port {port}\nbind 127.0.0.1\ndir {}\n\
                 sentinel monitor {MASTER_NAME} 127.0.0.1 {master_port} 2\n\
                 sentinel down-after-milliseconds {MASTER_NAME} 1000\n\
                 sentinel failover-timeout {MASTER_NAME} 3000\n\
                 sentinel parallel-syncs {MASTER_NAME} 1\n",
                dir.path().display()
            ),
        )
        .unwrap();
        let child = Command::new("redis-server")
            .arg(&conf)
            .arg("--sentinel")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server --sentinel");
        let sentinel = Sentinel {
            child,
            port,
            _dir: dir,
        };
        wait_for("the sentinel to answer", || {
            sentinel.ask(&["PING"]).filter(|r| r == "PONG")
        });
        sentinel
    }

    /// A command's reply as text, `None` if the sentinel is not up yet.
    fn ask(&self, args: &[&str]) -> Option<String> {
        std::net::TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        Some(text(
            &harness::redis::RedisConn::connect(self.port).cmd(args),
        ))
    }

    fn count(&self, what: &str) -> usize {
        match harness::redis::RedisConn::connect(self.port).cmd(&["SENTINEL", what, MASTER_NAME]) {
            lopache::redis::Reply::Array(items) => items.len(),
            _ => 0,
        }
    }

    fn master_port(&self) -> Option<u16> {
        match harness::redis::RedisConn::connect(self.port).cmd(&[
            "SENTINEL",
            "get-master-addr-by-name",
            MASTER_NAME,
        ]) {
            lopache::redis::Reply::Array(parts) => text(&parts[1]).parse().ok(),
            _ => None,
        }
    }
}

/// A master, its replica (synced) and three sentinels that know both and
/// each other.
fn cluster() -> (Redis, Redis, Vec<Sentinel>) {
    let master = Redis::start();
    let port = master.port.to_string();
    let replica = Redis::start_with(&["--replicaof", "127.0.0.1", &port]);
    wait_for("the replica to sync", || {
        text(&replica.cmd(&["INFO", "replication"]))
            .contains("master_link_status:up")
            .then_some(())
    });
    let sentinels: Vec<Sentinel> = (0..3).map(|_| Sentinel::start(master.port)).collect();
    for s in &sentinels {
        wait_for("each sentinel to know the replica and the others", || {
            (s.count("replicas") == 1 && s.count("sentinels") == 2).then_some(())
        });
    }
    (master, replica, sentinels)
}

fn sentinel_url(sentinels: &[Sentinel], query: &str) -> String {
    let hosts: Vec<String> = sentinels
        .iter()
        .map(|s| format!("127.0.0.1:{}", s.port))
        .collect();
    format!("redis-sentinel://{}/{MASTER_NAME}{query}", hosts.join(","))
}

/// Requests `host` until `redis` holds a dead mark for it; every answer 200.
fn mark_via_requests(proxy: &Lopache, redis: &Redis, host: &str) {
    wait_for(&format!("a dead mark for {host}"), || {
        assert_eq!(get(proxy.addr, host, "/").status, 200);
        let dead = members(&redis.cmd(&["SMEMBERS", &format!("dead:{host}")]));
        (!dead.is_empty()).then_some(())
    });
}

/// Routes on the master (`app.example` served by `good`; `before.example`
/// and `after.example` with a refused backend first, so requests mark it
/// dead), and lopache reading the replica and writing through the sentinels.
fn reading_the_replica(
    master: &Redis,
    replica: &Redis,
    sentinels: &[Sentinel],
) -> (Backend, Lopache) {
    let good = Backend::named("good");
    let refused = harness::backend::refused_url();
    master.frontend("", "app.example", "app", &[good.url()]);
    master.frontend(
        "",
        "before.example",
        "before",
        &[refused.clone(), good.url()],
    );
    master.frontend("", "after.example", "after", &[refused, good.url()]);
    wait_for("the routes on the replica", || {
        (text(&replica.cmd(&["EXISTS", "frontend:after.example"])) == "1").then_some(())
    });
    let driver = format!(
        "[\"redis://127.0.0.1:{}\", {:?}]",
        replica.port,
        sentinel_url(sentinels, "")
    );
    let proxy = Lopache::start_config(&harness::proxy::config(&driver, ""), &[]);
    (good, proxy)
}

/// Waits for the sentinels to name `replica` as the master, then for
/// lopache to say it follows.
fn promoted(sentinels: &[Sentinel], replica: &Redis, proxy: &Lopache) {
    wait_for("the sentinels to promote the replica", || {
        (sentinels[0].master_port() == Some(replica.port)).then_some(())
    });
    proxy.wait_for_log(
        &format!(
            "sentinel: {MASTER_NAME} master is 127.0.0.1:{}",
            replica.port
        ),
        1,
    );
}

/// `SENTINEL FAILOVER` with the master still up, then [`promoted`].
fn fail_over(sentinels: &[Sentinel], replica: &Redis, proxy: &Lopache) {
    assert_eq!(
        sentinels[0]
            .ask(&["SENTINEL", "FAILOVER", MASTER_NAME])
            .as_deref(),
        Some("OK")
    );
    promoted(sentinels, replica, proxy);
}

#[test]
fn the_master_fails_over_under_load() {
    let (mut master, replica, sentinels) = cluster();
    let (_good, proxy) = reading_the_replica(&master, &replica, &sentinels);
    proxy.wait_for_log(
        &format!(
            "sentinel: {MASTER_NAME} master is 127.0.0.1:{}",
            master.port
        ),
        1,
    );
    mark_via_requests(&proxy, &master, "before.example");

    let load = Load::start(proxy.addr, "app.example", 4);
    load.wait_for_more(100);
    master.stop();
    promoted(&sentinels, &replica, &proxy);
    // The next dead mark goes to the new master.
    mark_via_requests(&proxy, &replica, "after.example");
    load.wait_for_more(100);
    let report = load.stop();
    assert_eq!(
        (report.failures, report.non_2xx),
        (0, 0),
        "requests failed during the failover: {:?}",
        report.errors
    );
    assert!(report.ok > 200);
}

#[test]
fn a_manual_failover_moves_writes_off_a_master_that_is_still_up() {
    let (master, replica, sentinels) = cluster();
    let (_good, proxy) = reading_the_replica(&master, &replica, &sentinels);
    // Each shard's write connection to the master is open and used.
    mark_via_requests(&proxy, &master, "before.example");
    // The old master stays up and becomes a replica (Sentinel also kills
    // its clients' connections; lopache drops a connection to a server the
    // sentinels no longer name even without that).
    fail_over(&sentinels, &replica, &proxy);
    mark_via_requests(&proxy, &replica, "after.example");
}

#[test]
fn a_sentinel_url_as_the_only_driver_and_replica_reads() {
    let (master, replica, sentinels) = cluster();
    let good = Backend::named("good");
    master.frontend("", "app.example", "app", &[good.url()]);
    wait_for("the route on the replica", || {
        (text(&replica.cmd(&["EXISTS", "frontend:app.example"])) == "1").then_some(())
    });
    // First in the list, a "sentinel" that knows no such master (a plain
    // Redis): lopache asks the next one.
    let stranger = Redis::start();
    let url = sentinel_url(&sentinels, "").replace(
        "redis-sentinel://",
        &format!("redis-sentinel://127.0.0.1:{},", stranger.port),
    );
    let proxy = Lopache::start(&url, "");
    assert_eq!(get(proxy.addr, "app.example", "/").text(), "good");
    drop(proxy);

    // ?role=replica: lookups go to the replica, not the master.
    master.cmd(&["CONFIG", "RESETSTAT"]);
    replica.cmd(&["CONFIG", "RESETSTAT"]);
    let driver = format!(
        "[{:?}, {:?}]",
        sentinel_url(&sentinels, "?role=replica"),
        sentinel_url(&sentinels, "")
    );
    let server = "route_cache = \"off\"";
    let proxy = Lopache::start_config(&harness::proxy::config(&driver, server), &[]);
    for _ in 0..5 {
        assert_eq!(get(proxy.addr, "app.example", "/").text(), "good");
    }
    assert!(replica.calls("lrange") >= 5, "the replica was not read");
    assert_eq!(master.calls("lrange"), 0, "the master was read");
}

#[test]
fn sentinel_urls_in_the_config() {
    let (code, stdout, stderr) = harness::proxy::dry(
        "driver = [\"redis-sentinel://:secret@127.0.0.1:26379,127.0.0.1:26380/mymaster/1?role=replica#p:\",\n\
         \"redis-sentinel://127.0.0.1:26379/mymaster\"]\n[server]\naccess_log = \"none\"\n",
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stdout.contains(
            "redis-sentinel://:***@127.0.0.1:26379,127.0.0.1:26380/mymaster/1?role=replica#p:"
        ),
        "{stdout}"
    );
    for (driver, want) in [
        (
            "redis-sentinel://127.0.0.1:26379",
            "driver: a sentinel URL names its master",
        ),
        // A replica cannot be the write side.
        (
            "redis-sentinel://127.0.0.1:26379/m?role=replica",
            "driver: ?role=replica cannot take dead marks",
        ),
    ] {
        let (code, _, stderr) = harness::proxy::dry(&format!("driver = {driver:?}\n"));
        assert_eq!(code, Some(2), "{stderr}");
        assert!(stderr.contains(want), "{stderr}");
    }
}

/// The default route cache reading through a sentinel URL: after a
/// failover the shards track the new master, and a route changed there is
/// served (nothing cached from the old master stays).
#[test]
fn the_tracking_cache_follows_a_failover() {
    let (master, replica, sentinels) = cluster();
    let (a, b) = (Backend::named("a"), Backend::named("b"));
    master.frontend("", "app.example", "app", &[a.url()]);
    wait_for("the route on the replica", || {
        (text(&replica.cmd(&["EXISTS", "frontend:app.example"])) == "1").then_some(())
    });
    let proxy = Lopache::start(&sentinel_url(&sentinels, ""), "");
    let tracking = |redis: &Redis| redis.subscribers("__redis__:invalidate");
    wait_for("both shards to track the master", || {
        (tracking(&master) == 2).then_some(())
    });
    for _ in 0..4 {
        assert_eq!(get(proxy.addr, "app.example", "/").text(), "a");
    }
    fail_over(&sentinels, &replica, &proxy);
    wait_for("both shards to track the new master", || {
        (tracking(&replica) == 2).then_some(())
    });
    replica.frontend("", "app.example", "app", &[b.url()]);
    wait_for("the route changed on the new master", || {
        (get(proxy.addr, "app.example", "/").text() == "b").then_some(())
    });
    for _ in 0..10 {
        assert_eq!(get(proxy.addr, "app.example", "/").text(), "b");
    }
}
