//! The command line (SPEC section 1): flags, exit codes, `--dry`, the default
//! config path and `SETTINGS_FLAVOR`, the readiness line, the driver choice,
//! and refusing an address another process already serves.

mod harness;

use std::process::{Command, Output};

use harness::{Lopache, Redis, TempDir};

fn lopache(args: &[&str], cwd: &std::path::Path, env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_lopache"));
    cmd.args(args).current_dir(cwd);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run lopache")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn version_and_help_exit_zero() {
    let dir = TempDir::new("cli");
    let v = lopache(&["--version"], dir.path(), &[]);
    assert!(v.status.success());
    assert_eq!(
        String::from_utf8_lossy(&v.stdout).trim(),
        format!("lopache {}", env!("CARGO_PKG_VERSION"))
    );
    let h = lopache(&["--help"], dir.path(), &[]);
    assert!(h.status.success());
    assert!(String::from_utf8_lossy(&h.stdout).contains("--dry"));
    let bad = lopache(&["--frobnicate"], dir.path(), &[]);
    assert_eq!(bad.status.code(), Some(2));
}

#[test]
fn dry_prints_effective_config_with_secrets_masked() {
    let dir = TempDir::new("cli");
    let path = dir.path().join("c.toml");
    std::fs::write(&path, "driver = [\"redis://:hunter2@10.0.0.1:6380/2#p:\", \"redis://:pw2@10.0.0.2\"]\n[server]\naccess_log = \"none\"\nretry_on_error = 7\n").unwrap();
    let o = lopache(
        &["--config", path.to_str().unwrap(), "--dry"],
        dir.path(),
        &[],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        !out.contains("hunter2") && !out.contains("pw2"),
        "secret printed:\n{out}"
    );
    assert!(out.contains("redis://:***@10.0.0.1:6380/2#p:"), "{out}");
    assert!(out.contains("retry_on_error = 7"));
    assert!(
        out.contains("max_sockets = 100"),
        "defaults are shown:\n{out}"
    );
}

#[test]
fn config_errors_exit_2_naming_the_key() {
    let dir = TempDir::new("cli");
    let cases = [
        (
            "[server]\nretry_on_error = \"x\"\n",
            "server.retry_on_error: ",
        ),
        ("[server]\nnope = 1\n", "server.nope: unknown key"),
        ("driver = \"mysql://x\"\n", "driver: "),
        ("[http]\nbind = [\"not an address!\"]\n", "http.bind[0]: "),
        // Durations near 2^63 passed and then panicked at the first deadline.
        (
            "[server]\ndead_backend_ttl = 9223372036854775807\n",
            "server.dead_backend_ttl: at most",
        ),
        (
            "[server]\ntcp_timeout = 9223372036854775807\n",
            "server.tcp_timeout: at most",
        ),
        (
            "[server]\ndrain_timeout = 31536001\n",
            "server.drain_timeout: at most",
        ),
        (
            "[server]\nredis_timeout_ms = 9223372036854775807\n",
            "server.redis_timeout_ms: at most",
        ),
    ];
    let json = dir.path().join("bad.json");
    std::fs::write(
        &json,
        r#"{"server": {"deadBackendTTL": 9223372036854775807}}"#,
    )
    .unwrap();
    let o = lopache(
        &["--config", json.to_str().unwrap(), "--dry"],
        dir.path(),
        &[],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("server.dead_backend_ttl: at most"),
        "{}",
        stderr(&o)
    );
    for (text, want) in cases {
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, text).unwrap();
        for extra in [&[][..], &["--dry"][..]] {
            let mut args = vec!["--config", path.to_str().unwrap()];
            args.extend_from_slice(extra);
            let o = lopache(&args, dir.path(), &[]);
            assert_eq!(o.status.code(), Some(2), "{text:?}");
            assert!(stderr(&o).contains(want), "{text:?}: {}", stderr(&o));
        }
    }
    let o = lopache(&["--config", "/nonexistent/lopache.toml"], dir.path(), &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("cannot read"));
}

#[test]
fn default_path_and_settings_flavor() {
    let dir = TempDir::new("cli");
    std::fs::write(
        dir.path().join("config.toml"),
        "[server]\naccess_log = \"none\"\nretry_on_error = 4\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("config_staging.toml"),
        "[server]\naccess_log = \"none\"\nretry_on_error = 9\n",
    )
    .unwrap();
    let plain = lopache(&["--dry"], dir.path(), &[]);
    assert!(String::from_utf8_lossy(&plain.stdout).contains("retry_on_error = 4"));
    let flavored = lopache(&["--dry"], dir.path(), &[("SETTINGS_FLAVOR", "staging")]);
    assert!(String::from_utf8_lossy(&flavored.stdout).contains("retry_on_error = 9"));
    assert!(stderr(&flavored).contains("reading config_staging.toml"));
    // Hipache's names: config_<flavor>.json, and config/config.json.
    let hipache = TempDir::new("cli");
    std::fs::write(
        hipache.path().join("config_test.json"),
        r#"{"server": {"accessLog": null, "retryOnError": 5}}"#,
    )
    .unwrap();
    std::fs::create_dir(hipache.path().join("config")).unwrap();
    std::fs::write(
        hipache.path().join("config/config.json"),
        r#"{"server": {"accessLog": null, "retryOnError": 6}}"#,
    )
    .unwrap();
    let o = lopache(&["--dry"], hipache.path(), &[("SETTINGS_FLAVOR", "test")]);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("retry_on_error = 5"),
        "{}",
        stderr(&o)
    );
    assert!(stderr(&o).contains("reading config_test.json"));
    let o = lopache(&["--dry"], hipache.path(), &[]);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("retry_on_error = 6"),
        "{}",
        stderr(&o)
    );
    assert!(stderr(&o).contains("reading config/config.json"));
    // Nothing there: the error names the first place looked at.
    let empty = TempDir::new("cli");
    let o = lopache(&["--dry"], empty.path(), &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("cannot read config.toml"),
        "{}",
        stderr(&o)
    );
}

/// An empty file is a valid config: every key has its default. The default
/// access log's directory, `/var/log/lopache`, must exist (lopache creates
/// none): checked in a private mount namespace with a fresh `/var/log`, with
/// and without that directory, so the machine's own is never touched.
#[test]
fn empty_config_is_valid_where_the_log_directory_exists() {
    let dir = TempDir::new("cli");
    std::fs::write(dir.path().join("config.toml"), "").unwrap();
    let in_fresh_var_log = |setup: &str| {
        let script =
            format!("mount -t tmpfs none /var/log && {setup} exec \"$0\" --dry --config \"$1\"");
        Command::new("unshare")
            .args(["-m", "--", "sh", "-c", &script])
            .arg(env!("CARGO_BIN_EXE_lopache"))
            .arg(dir.path().join("config.toml"))
            .output()
            .expect("unshare (scripts/test.sh installs util-linux)")
    };
    let o = in_fresh_var_log("mkdir /var/log/lopache &&");
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("access_log = \"/var/log/lopache/access.log\"")
    );
    let o = in_fresh_var_log("");
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("server.access_log: directory /var/log/lopache does not exist"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn user_and_group_must_exist() {
    let dir = TempDir::new("cli");
    let path = dir.path().join("config.toml");
    let quiet = "[server]\naccess_log = \"none\"\n";
    std::fs::write(&path, format!("user = \"nobody\"\n{quiet}")).unwrap();
    let o = lopache(&["--dry"], dir.path(), &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    std::fs::write(&path, format!("user = \"no-such-user-x\"\n{quiet}")).unwrap();
    let o = lopache(&["--dry"], dir.path(), &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("user: no such user"), "{}", stderr(&o));
    std::fs::write(
        &path,
        format!("user = \"nobody\"\ngroup = \"no-such-group-x\"\n{quiet}"),
    )
    .unwrap();
    let o = lopache(&["--dry"], dir.path(), &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("group: no such group"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn readiness_line_names_address_shards_and_driver() {
    let redis = Redis::start();
    let proxy = Lopache::start(&redis.url(), "workers = 2");
    let line = proxy
        .stderr()
        .lines()
        .find(|l| l.contains("listening on"))
        .unwrap()
        .to_string();
    let uring = format!(
        "lopache {} listening on {} (2 shards, io_uring)",
        env!("CARGO_PKG_VERSION"),
        proxy.addr
    );
    let epoll = uring.replace("io_uring", "epoll");
    assert!(line == uring || line == epoll, "{line}");
    let forced = Lopache::start_config(
        &harness::proxy::config(&format!("{:?}", redis.url()), "workers = 1"),
        &[("MONOIO_FORCE_LEGACY_DRIVER", "1")],
    );
    assert!(
        forced.stderr().contains("(1 shard, epoll)"),
        "{}",
        forced.stderr()
    );
}

#[test]
fn an_address_served_by_another_process_is_refused() {
    let other = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = other.local_addr().unwrap().port();
    let dir = TempDir::new("cli");
    let path = dir.path().join("c.toml");
    std::fs::write(
        &path,
        format!("[server]\naccess_log = \"none\"\n[http]\nport = {port}\nbind = [\"127.0.0.1\"]\n"),
    )
    .unwrap();
    let o = lopache(&["--config", path.to_str().unwrap()], dir.path(), &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("already in use"), "{}", stderr(&o));
}

#[test]
fn ipv6_listener_works() {
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        eprintln!("no IPv6 loopback here; skipping");
        return;
    }
    let redis = Redis::start();
    let app = harness::Backend::named("v6");
    redis.frontend("", "v6.example", "v6", &[app.url()]);
    let text = format!(
        "driver = {:?}\n[http]\nport = 0\nbind = [\"::1\"]\n",
        redis.url()
    );
    let proxy = Lopache::start_config(&text, &[]);
    assert!(proxy.addr.is_ipv6());
    assert_eq!(harness::get(proxy.addr, "v6.example", "/").text(), "v6");
}

#[test]
fn sigterm_and_sigint_exit_zero() {
    let redis = Redis::start();
    for signal in ["TERM", "INT"] {
        let mut proxy = Lopache::start(&redis.url(), "");
        assert_eq!(harness::get(proxy.addr, "__ping__", "/").status, 200);
        let status = proxy.signal_and_wait(signal);
        assert_eq!(status.code(), Some(0), "SIG{signal}");
    }
}

/// Run as an unprivileged user, `--dry` reports an access log that user
/// cannot write (a root-owned directory), naming the key, instead of the
/// start failing later.
#[test]
fn an_access_log_this_user_cannot_write_is_a_config_error() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: switching to nobody needs root");
        return;
    }
    let dir = TempDir::new("cli");
    let logs = dir.path().join("logs");
    std::fs::create_dir(&logs).unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(
        &path,
        format!(
            "[server]\naccess_log = {:?}\n[http]\nport = 8080\n",
            logs.join("access.log")
        ),
    )
    .unwrap();
    // Readable by everyone, writable by root only.
    for p in [dir.path(), &logs, &path] {
        let mode = if p.is_dir() { 0o755 } else { 0o644 };
        std::fs::set_permissions(p, std::os::unix::fs::PermissionsExt::from_mode(mode)).unwrap();
    }
    let o = Command::new("setpriv")
        .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"])
        .arg(env!("CARGO_BIN_EXE_lopache"))
        .args(["--dry", "--config", path.to_str().unwrap()])
        .output()
        .expect("setpriv (util-linux)");
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("server.access_log:")
            && stderr(&o).contains("is not writable by this user"),
        "{}",
        stderr(&o)
    );
    // The same file as root passes.
    let o = lopache(
        &["--dry", "--config", path.to_str().unwrap()],
        dir.path(),
        &[],
    );
    assert!(o.status.success(), "{}", stderr(&o));
}

/// The fleet config the README shows under "Running in production" is valid.
#[test]
fn the_readmes_fleet_config_passes_dry() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let after = readme
        .split_once("**A fleet**")
        .expect("the README's fleet section")
        .1;
    let block = after
        .split_once("```toml\n")
        .and_then(|(_, rest)| rest.split_once("```"))
        .expect("its toml block")
        .0;
    let (code, _, stderr) = harness::proxy::dry(block);
    assert_eq!(code, Some(0), "{stderr}\n{block}");
}
