//! The master process: reload on SIGHUP (a bad file keeps the running
//! config), binary upgrade on SIGUSR2, both under steady keep-alive load with
//! no failed request; a killed worker replaced at once with the sockets kept;
//! crash-loop back-off; the memory guard; the privilege drop.

mod harness;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use harness::load::Load;
use harness::{get, is_dead, send_signal, wait_for, Backend, Lopache, Redis, Reply, TempDir};

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// The lines of /proc/<pid>/status starting with `field` ("Uid:", ...).
fn status_field(pid: u32, field: &str) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find(|l| l.starts_with(field))
        .unwrap_or_default()
        .to_string()
}

/// A Redis with `app.example` routed to one backend answering "a".
fn app_on_one_backend() -> (Redis, Backend) {
    let redis = Redis::start();
    let backend = Backend::named("a");
    redis.frontend("", "app.example", "app", &[backend.url()]);
    (redis, backend)
}

/// Copies `source` to `dest`, an executable, through a child process: the
/// test process never holds `dest` open for writing. A process another test
/// thread spawns meanwhile would inherit that descriptor until its own exec,
/// and running `dest` in that window (the master's `--dry` run after
/// SIGUSR2) fails with ETXTBSY, "Text file busy".
fn install_executable(source: &std::path::Path, dest: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    let copied = std::process::Command::new("cp")
        .arg(source)
        .arg(dest)
        .status()
        .unwrap();
    assert!(copied.success(), "cp {source:?} {dest:?}: {copied}");
    std::fs::set_permissions(dest, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// [`install_executable`] of the lopache under test.
fn install_lopache(dest: &std::path::Path) {
    install_executable(env!("CARGO_BIN_EXE_lopache").as_ref(), dest);
}

/// lopache started from a copy of the binary in a directory of its own, so
/// that a test can replace the file before SIGUSR2. Keep the directory.
fn start_from_copy(redis: &Redis) -> (TempDir, std::path::PathBuf, Lopache) {
    let bin_dir = TempDir::new("upgrade");
    let binary = bin_dir.path().join("lopache");
    install_lopache(&binary);
    let config = harness::proxy::config(&format!("{:?}", redis.url()), "");
    let proxy = Lopache::start_from(&binary, &config);
    (bin_dir, binary, proxy)
}

fn rewrite_config(proxy: &Lopache, edit: impl Fn(&str) -> String) {
    let path = proxy.config_path();
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, edit(&text)).unwrap();
}

#[test]
fn sighup_applies_a_changed_redis_prefix() {
    let redis = Redis::start();
    let (old, new) = (Backend::named("old"), Backend::named("new"));
    redis.frontend("", "app.example", "app", &[old.url()]);
    redis.frontend("v2:", "app.example", "app", &[new.url()]);
    let proxy = Lopache::start(&redis.url(), "");
    assert_eq!(get(proxy.addr, "app.example", "/").text(), "old");
    let url = redis.url();
    rewrite_config(&proxy, |t| t.replace(&url, &format!("{url}#v2:")));
    proxy.signal("HUP");
    proxy.wait_for_log("serving (reload)", 1);
    // The old worker stops accepting within a moment of the handover.
    let old = proxy.serving_pids()[0];
    wait_for("the old worker to exit", || is_dead(old).then_some(()));
    assert_eq!(get(proxy.addr, "app.example", "/").text(), "new");
    assert_eq!(proxy.serving_pids().len(), 2);
}

#[test]
fn sighup_with_a_broken_file_keeps_serving_and_logs_why() {
    let (redis, _backend) = app_on_one_backend();
    let mut proxy = Lopache::start(&redis.url(), "");
    let worker = proxy.worker_pid();
    rewrite_config(&proxy, |t| t.replace("workers = 2", "workers = \"many\""));
    proxy.signal("HUP");
    proxy.wait_for_log("is invalid, still serving the previous config", 1);
    assert!(
        proxy.stderr().contains("server.workers"),
        "{}",
        proxy.stderr()
    );
    assert_eq!(get(proxy.addr, "app.example", "/").text(), "a");
    assert_eq!(proxy.worker_pid(), worker);
    assert!(proxy.alive());
}

#[test]
fn reloads_keep_unchanged_listeners_and_follow_a_new_shard_count() {
    let (redis, _backend) = app_on_one_backend();
    let proxy = Lopache::start(&redis.url(), "workers = 2");
    rewrite_config(&proxy, |t| t.replace("workers = 2", "workers = 3"));
    proxy.signal("HUP");
    proxy.wait_for_log("serving (reload)", 1);
    let stderr = proxy.stderr();
    let last = stderr.lines().rfind(|l| l.contains(" listening on "));
    assert!(
        last.is_some_and(|l| l.contains(&proxy.addr.to_string()) && l.contains("(3 shards")),
        "{stderr}"
    );
    for _ in 0..20 {
        assert_eq!(get(proxy.addr, "app.example", "/").text(), "a");
    }
    // And back down: the third socket stays open and is served by a shard.
    rewrite_config(&proxy, |t| t.replace("workers = 3", "workers = 1"));
    proxy.signal("HUP");
    proxy.wait_for_log("serving (reload)", 2);
    for _ in 0..20 {
        assert_eq!(get(proxy.addr, "app.example", "/").text(), "a");
    }
}

#[test]
fn reloads_and_a_binary_upgrade_under_load_fail_no_request() {
    let (redis, _backend) = app_on_one_backend();
    // A copy of the binary, replaced on disk before the upgrade.
    let (bin_dir, binary, mut proxy) = start_from_copy(&redis);
    let master = proxy.pid();
    let load = Load::start(proxy.addr, "app.example", 4);
    load.wait_for_more(200);
    for n in 1..=5 {
        proxy.signal("HUP");
        proxy.wait_for_log("serving (reload)", n);
        load.wait_for_more(100);
    }
    let staged = bin_dir.path().join("lopache.new");
    install_lopache(&staged);
    std::fs::rename(&staged, &binary).unwrap();
    let exe = || std::fs::read_link(format!("/proc/{master}/exe")).unwrap();
    assert!(exe().to_string_lossy().ends_with("(deleted)"));
    proxy.signal("USR2");
    proxy.wait_for_log("serving (upgrade)", 1);
    let new_master = wait_for("the new master to take over", || {
        proxy.new_masters().first().copied()
    });
    load.wait_for_more(200);
    // The old master retires once its worker has drained.
    wait_for("the old master to exit", || {
        (!proxy.alive_master()).then_some(())
    });
    load.wait_for_more(200);
    let report = load.stop();
    eprintln!("reload under load: {report:?}");
    assert_eq!(report.failures, 0, "failed requests: {:?}", report.errors);
    assert_eq!(report.non_2xx, 0);
    assert!(report.ok >= 1100, "{report:?}");
    // A new master runs the new file, started by the old one; 7 workers in
    // turn.
    assert_ne!(new_master, master);
    assert!(!is_dead(new_master));
    assert_eq!(
        std::fs::read_link(format!("/proc/{new_master}/exe")).unwrap(),
        binary
    );
    assert_eq!(proxy.serving_pids().len(), 7, "{}", proxy.stderr());
    // Every retired worker drained and exited.
    for pid in &proxy.serving_pids()[..6] {
        let pid = *pid;
        wait_for("an old worker to exit", || is_dead(pid).then_some(()));
    }
}

/// A new binary that passes `--dry` but cannot start (here: the loader
/// fails, as with a missing shared library) leaves the old master and its
/// worker serving, under load, with not one request failed.
#[test]
fn a_failed_binary_upgrade_keeps_the_old_image_serving() {
    let (redis, _backend) = app_on_one_backend();
    let (bin_dir, binary, mut proxy) = start_from_copy(&redis);
    let worker = proxy.worker_pid();
    let load = Load::start(proxy.addr, "app.example", 4);
    load.wait_for_more(200);
    let staged = wrapped_binary(
        bin_dir.path(),
        "case \" $* \" in *\" --dry \"*) ;; *) \
         echo 'lopache: error while loading shared libraries: libgone.so.1' >&2; exit 127 ;; esac",
    );
    std::fs::rename(&staged, &binary).unwrap();
    proxy.signal("USR2");
    proxy.wait_for_log("before serving; keeping this binary", 1);
    load.wait_for_more(300);
    let report = load.stop();
    assert_eq!(report.failures, 0, "failed requests: {:?}", report.errors);
    assert_eq!(report.non_2xx, 0);
    // The same master and worker, still serving.
    assert!(proxy.alive_master());
    assert_eq!(proxy.worker_pid(), worker);
    assert!(!is_dead(worker));
    assert_eq!(get(proxy.addr, "app.example", "/").status, 200);
    // A good binary afterwards upgrades as usual.
    install_lopache(&staged);
    std::fs::rename(&staged, &binary).unwrap();
    proxy.signal("USR2");
    proxy.wait_for_log("serving (upgrade)", 1);
    assert_eq!(get(proxy.addr, "app.example", "/").status, 200);
}

/// A binary copied to `dir` as `lopache`, run through a shell script that
/// first runs `before` (to hang or to slow the start).
fn wrapped_binary(dir: &std::path::Path, before: &str) -> std::path::PathBuf {
    let real = dir.join("lopache.real");
    install_lopache(&real);
    // Written here, but only ever read: the executable is cp's copy of it.
    let script = dir.join("lopache.script");
    std::fs::write(
        &script,
        format!("#!/bin/sh\n{before}\nexec {real:?} \"$@\"\n"),
    )
    .unwrap();
    let staged = dir.join("lopache.staged");
    install_executable(&script, &staged);
    staged
}

/// A new binary whose `--dry` hangs is given up after 10 s; meanwhile the
/// old worker serves, and afterwards the master answers signals again.
#[test]
fn a_hanging_dry_run_does_not_hang_the_master() {
    let (redis, _backend) = app_on_one_backend();
    let (bin_dir, binary, mut proxy) = start_from_copy(&redis);
    let hanging = wrapped_binary(
        bin_dir.path(),
        "case \" $* \" in *\" --dry \"*) exec sleep 600 ;; esac",
    );
    std::fs::rename(&hanging, &binary).unwrap();
    proxy.signal("USR2");
    assert_eq!(get(proxy.addr, "app.example", "/").status, 200);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !proxy
        .stderr()
        .contains("did not finish within 10 s; keeping this binary")
    {
        assert!(Instant::now() < deadline, "{}", proxy.stderr());
        std::thread::sleep(Duration::from_millis(50));
    }
    proxy.signal("HUP");
    proxy.wait_for_log("serving (reload)", 1);
    assert!(proxy.alive_master());
    assert_eq!(get(proxy.addr, "app.example", "/").status, 200);
}

/// The new master crashes after taking over, while the old one still
/// drains a slow request: the old master serves again.
#[test]
fn a_new_master_that_crashes_after_taking_over_is_replaced_by_the_old_one() {
    let redis = Redis::start();
    let backend = Backend::start(|r| {
        if r.target == "/slow" {
            Reply::Delay(Duration::from_secs(3), Box::new(Reply::ok("slow")))
        } else {
            Reply::ok("a")
        }
    });
    redis.frontend("", "app.example", "app", &[backend.url()]);
    let config = harness::proxy::config(&format!("{:?}", redis.url()), "drain_timeout = 20");
    let proxy = Lopache::start_config(&config, &[]);
    let addr = proxy.addr;
    let slow = std::thread::spawn(move || get(addr, "app.example", "/slow").status);
    wait_for("the slow request to reach the backend", || {
        (backend.received().len() == 1).then_some(())
    });
    proxy.signal("USR2");
    let new_master = wait_for("the new master to take over", || {
        proxy.new_masters().first().copied()
    });
    proxy.wait_for_log("this master retires", 1);
    send_signal(new_master, "KILL");
    proxy.wait_for_log("this master serves again", 1);
    proxy.wait_for_log("serving (restart)", 1);
    assert_eq!(get(proxy.addr, "app.example", "/").text(), "a");
    assert_eq!(slow.join().unwrap(), 200);
}

/// A SIGHUP that reaches the old master while the new one starts is passed
/// on to the new one once it serves, so a config edited meanwhile applies.
#[test]
fn a_reload_asked_during_an_upgrade_reaches_the_new_master() {
    let (redis, _backend) = app_on_one_backend();
    let (bin_dir, binary, proxy) = start_from_copy(&redis);
    // The new binary takes a second to start: the window for the SIGHUP.
    let slow_start = wrapped_binary(
        bin_dir.path(),
        "case \" $* \" in *\" --dry \"*) ;; *) sleep 1 ;; esac",
    );
    std::fs::rename(&slow_start, &binary).unwrap();
    proxy.signal("USR2");
    proxy.wait_for_log("as master", 1);
    proxy.signal("HUP");
    proxy.wait_for_log("passing the SIGHUP received meanwhile", 1);
    let new_master = proxy.new_masters()[0];
    // A worker of the new master's serving after a reload.
    let parent = |pid: u32| {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        stat.rsplit(')')
            .next()?
            .split_whitespace()
            .nth(1)?
            .parse::<u32>()
            .ok()
    };
    wait_for("the new master's reload", || {
        proxy
            .stderr()
            .lines()
            .filter(|l| l.contains("serving (reload)"))
            .filter_map(|l| l.split("worker ").nth(1)?.split(' ').next()?.parse().ok())
            .any(|pid| parent(pid) == Some(new_master))
            .then_some(())
    });
    assert!(!is_dead(new_master));
    assert_eq!(get(proxy.addr, "app.example", "/").status, 200);
}

/// Under systemd (`Type=notify`, `NotifyAccess=all`): READY=1 once the first
/// worker serves, RELOADING=1 then READY=1 around a reload, MAINPID from the
/// new master after an upgrade, STOPPING=1 on stop.
#[test]
fn systemd_hears_ready_and_the_new_main_pid() {
    use std::os::unix::net::UnixDatagram;
    let (redis, _backend) = app_on_one_backend();
    let dir = TempDir::new("notify");
    let path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&path).unwrap();
    socket.set_read_timeout(Some(harness::WAIT)).unwrap();
    let next = || {
        let mut buf = [0u8; 256];
        let n = socket.recv(&mut buf).expect("a notification");
        String::from_utf8_lossy(&buf[..n]).to_string()
    };
    let config = harness::proxy::config(&format!("{:?}", redis.url()), "");
    let mut proxy = Lopache::start_config(&config, &[("NOTIFY_SOCKET", path.to_str().unwrap())]);
    assert_eq!(next(), "READY=1");
    proxy.signal("HUP");
    assert_eq!(next(), "RELOADING=1");
    assert_eq!(next(), "READY=1");
    proxy.wait_for_log("serving (reload)", 1);
    let master = proxy.pid();
    proxy.signal("USR2");
    let said = next();
    let new_master = wait_for("the new master to take over", || {
        proxy.new_masters().first().copied()
    });
    assert_ne!(new_master, master);
    assert_eq!(said, format!("MAINPID={new_master}\nREADY=1"));
    wait_for("the old master to exit", || {
        (!proxy.alive_master()).then_some(())
    });
    assert_eq!(get(proxy.addr, "app.example", "/").status, 200);
    send_signal(new_master, "TERM");
    assert_eq!(next(), "STOPPING=1");
    wait_for("the new master to exit", || {
        is_dead(new_master).then_some(())
    });
}

/// `ps` and `pkill -x` tell the processes apart: the master is
/// "lopache: master", a worker "lopache: worker" (also its argv[0]), and the
/// worker's shard threads "lopache-shard-N".
#[test]
fn processes_and_shard_threads_are_named() {
    let (redis, _backend) = app_on_one_backend();
    let proxy = Lopache::start(&redis.url(), "workers = 2");
    let worker = proxy.worker_pid();
    let comm = |path: String| {
        std::fs::read_to_string(path)
            .unwrap()
            .trim_end()
            .to_string()
    };
    assert_eq!(
        comm(format!("/proc/{}/comm", proxy.pid())),
        "lopache: master"
    );
    assert_eq!(comm(format!("/proc/{worker}/comm")), "lopache: worker");
    let cmdline = std::fs::read(format!("/proc/{worker}/cmdline")).unwrap();
    assert!(
        cmdline.starts_with(b"lopache: worker\0--worker\0"),
        "{cmdline:?}"
    );
    let mut threads: Vec<String> = std::fs::read_dir(format!("/proc/{worker}/task"))
        .unwrap()
        .map(|t| comm(format!("{}/comm", t.unwrap().path().display())))
        .collect();
    threads.sort();
    assert!(
        threads.contains(&"lopache-shard-0".to_string()),
        "{threads:?}"
    );
    assert!(
        threads.contains(&"lopache-shard-1".to_string()),
        "{threads:?}"
    );
}

#[test]
fn a_killed_worker_is_replaced_within_a_second_with_its_sockets_intact() {
    let (redis, _backend) = app_on_one_backend();
    let proxy = Lopache::start(&redis.url(), "");
    let worker = proxy.worker_pid();
    send_signal(worker, "KILL");
    let killed = Instant::now();
    wait_for("the worker to die", || is_dead(worker).then_some(()));
    // While no worker runs, connections are accepted into the master's
    // sockets' backlog: never refused. (One the dead worker's io_uring
    // grabbed while the kernel tore it down may close unanswered; the
    // client then retries, as after any lost connection.)
    let mut attempts = 0;
    let body = loop {
        attempts += 1;
        let mut conn =
            std::net::TcpStream::connect(proxy.addr).expect("the listening socket must stay open");
        conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        conn.write_all(b"GET / HTTP/1.1\r\nHost: app.example\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut response = String::new();
        let _ = conn.read_to_string(&mut response);
        if response.starts_with("HTTP/1.1 200") {
            break response;
        }
        assert!(attempts < 20, "no answer after {attempts} connections");
    };
    let took = killed.elapsed();
    assert!(body.ends_with("\r\n\r\na"), "{body}");
    assert!(
        took < Duration::from_secs(1),
        "service came back after {took:?}"
    );
    proxy.wait_for_log("serving (restart)", 1);
    assert_ne!(proxy.worker_pid(), worker);
    assert!(proxy
        .stderr()
        .contains(&format!("worker {worker} killed by signal 9")));
}

#[test]
fn a_replacement_runs_the_last_good_config_even_if_the_file_broke_since() {
    let (redis, _backend) = app_on_one_backend();
    let proxy = Lopache::start(&redis.url(), "");
    rewrite_config(&proxy, |_| "this is [not toml".to_string());
    send_signal(proxy.worker_pid(), "KILL");
    proxy.wait_for_log("serving (restart)", 1);
    assert_eq!(get(proxy.addr, "app.example", "/").text(), "a");
}

/// lopache with an HTTPS listener whose certificate and key are files in
/// `dir`, and an HTTP one; `server` lines go to `[server]`.
fn with_certificate_files(
    redis: &Redis,
    dir: &TempDir,
    server: &str,
) -> (Lopache, harness::tls::Pki) {
    let pki = harness::tls::Pki::new();
    pki.leaf(&["app.example"]).write(dir.path(), "site");
    let cfg = format!(
        "driver = {:?}\n[server]\nworkers = 1\n{server}\n[http]\nport = 0\nbind = [\"127.0.0.1\"]\n\
         [https]\nport = 0\nbind = [\"127.0.0.1\"]\ncert = {:?}\nkey = {:?}\n",
        redis.url(),
        dir.path().join("site.crt"),
        dir.path().join("site.key")
    );
    (Lopache::start_config(&cfg, &[]), pki)
}

/// The certificate file is gone and the key file holds another key: what
/// the master read when it validated the config is what workers get.
fn break_certificate_files(dir: &TempDir, pki: &harness::tls::Pki) {
    std::fs::remove_file(dir.path().join("site.crt")).unwrap();
    std::fs::write(dir.path().join("site.key"), pki.leaf(&["other"]).key_pem).unwrap();
}

fn https_answers(proxy: &Lopache, pki: &harness::tls::Pki) -> bool {
    let client = pki.client(&[&rustls::version::TLS13]);
    harness::tls::connect(proxy.https_addr.unwrap(), "app.example", client).is_ok_and(|mut c| {
        c.send(b"GET / HTTP/1.1\r\nHost: app.example\r\nConnection: close\r\n\r\n");
        c.read_response(false).status == 200
    })
}

#[test]
fn a_worker_restarted_after_a_crash_uses_the_certificates_the_master_read() {
    let (redis, _backend) = app_on_one_backend();
    let dir = TempDir::new("certs");
    let (proxy, pki) = with_certificate_files(&redis, &dir, "");
    assert!(https_answers(&proxy, &pki));
    break_certificate_files(&dir, &pki);
    // A reload now is refused and the running config kept, as before ...
    proxy.signal("HUP");
    proxy.wait_for_log("still serving the previous config", 1);
    // ... and so is a worker started after a crash: plain HTTP and TLS both
    // keep answering, with the certificate that validated.
    send_signal(proxy.worker_pid(), "KILL");
    proxy.wait_for_log("serving (restart)", 1);
    assert_eq!(get(proxy.addr, "app.example", "/").text(), "a");
    assert!(https_answers(&proxy, &pki));
    assert!(
        !proxy.stderr().contains("config error"),
        "{}",
        proxy.stderr()
    );
}

#[test]
fn the_memory_guard_replacement_uses_the_certificates_the_master_read() {
    let (redis, _backend) = app_on_one_backend();
    let dir = TempDir::new("certs");
    let (proxy, pki) = with_certificate_files(&redis, &dir, "memory_limit_mb = 1");
    break_certificate_files(&dir, &pki);
    proxy.wait_for_log("serving (memory limit)", 1);
    assert_eq!(get(proxy.addr, "app.example", "/").text(), "a");
    assert!(https_answers(&proxy, &pki));
    let log = proxy.stderr();
    assert!(!log.contains("config error"), "{log}");
    assert!(log.contains("server.memory_limit_mb = 1 is below"), "{log}");
}

#[test]
fn a_crash_loop_backs_off_and_recovers() {
    let (redis, _backend) = app_on_one_backend();
    let proxy = Lopache::start(&redis.url(), "");
    // Three workers in a row die young (killed as soon as they serve).
    for served in 1..=3 {
        let pid = wait_for("a worker serving", || {
            let pids = proxy.serving_pids();
            (pids.len() == served).then(|| pids[served - 1])
        });
        send_signal(pid, "KILL");
    }
    proxy.wait_for_log("workers keep dying young (3 in a row)", 1);
    let stderr = proxy.stderr();
    assert!(stderr.contains("next start in 100 ms"), "{stderr}");
    assert!(stderr.contains("next start in 200 ms"), "{stderr}");
    // Left alone, the next one serves.
    wait_for("a fourth worker serving", || {
        (proxy.serving_pids().len() == 4).then_some(())
    });
    assert_eq!(get(proxy.addr, "app.example", "/").text(), "a");
}

#[test]
fn the_memory_guard_replaces_a_worker_over_the_limit() {
    let (redis, _backend) = app_on_one_backend();
    // Any worker is above 1 MiB: it is replaced once it has run 2 s.
    let proxy = Lopache::start(&redis.url(), "memory_limit_mb = 1");
    let first = proxy.worker_pid();
    let load = Load::start(proxy.addr, "app.example", 2);
    proxy.wait_for_log("over server.memory_limit_mb = 1: replacing it", 1);
    proxy.wait_for_log("serving (memory limit)", 1);
    load.wait_for_more(50);
    let report = load.stop();
    assert_eq!(report.failures, 0, "{:?}", report.errors);
    assert_eq!(report.non_2xx, 0);
    assert_ne!(proxy.worker_pid(), first, "{}", proxy.stderr());
    wait_for("the bloated worker to exit", || {
        is_dead(first).then_some(())
    });
}

#[test]
fn the_worker_drops_to_the_configured_user() {
    if !is_root() {
        eprintln!("skipped: dropping privileges needs root");
        return;
    }
    let (redis, _backend) = app_on_one_backend();
    let config = format!(
        "user = \"nobody\"\n{}",
        harness::proxy::config(&format!("{:?}", redis.url()), "drain_timeout = 1")
    );
    let proxy = Lopache::start_config(&config, &[]);
    let worker = proxy.worker_pid();
    assert_eq!(get(proxy.addr, "app.example", "/").text(), "a");
    let uid = status_field(worker, "Uid:");
    assert_eq!(
        uid.split_whitespace().skip(1).collect::<Vec<_>>(),
        ["65534"; 4],
        "{uid}"
    );
    let gid = status_field(worker, "Gid:");
    assert_eq!(
        gid.split_whitespace().skip(1).collect::<Vec<_>>(),
        ["65534"; 4],
        "{gid}"
    );
    // The master keeps root to bind new addresses on reload.
    assert!(status_field(proxy.pid(), "Uid:").contains("\t0\t"));
    assert!(!proxy.stderr().contains("running as root"));
    // Dropping privileges kept the parent-death signal: a worker whose
    // master dies does not serve on unsupervised.
    send_signal(proxy.pid(), "KILL");
    wait_for("the worker to follow its master", || {
        is_dead(worker).then_some(())
    });
}

#[test]
fn running_as_root_without_a_user_is_warned_about() {
    let redis = Redis::start();
    let proxy = Lopache::start(&redis.url(), "");
    proxy.worker_pid();
    assert_eq!(
        proxy
            .stderr()
            .contains("running as root with no `user` set"),
        is_root(),
        "{}",
        proxy.stderr()
    );
}
