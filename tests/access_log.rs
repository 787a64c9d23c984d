//! The access log: Hipache's line format for proxied requests, error pages
//! and keep-alive sequences; reopening on SIGUSR1 without losing a line; a
//! path that cannot be opened stops the start.

mod harness;

use std::path::Path;

use harness::{request, wait_for, Backend, Lopache, RawConn, Redis, TempDir};

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

fn wait_lines(path: &Path, n: usize) -> Vec<String> {
    wait_for(&format!("{n} lines in {}", path.display()), || {
        let l = lines(path);
        (l.len() >= n).then_some(l)
    })
}

/// Splits a line into the fields after the date: request, status, bytes,
/// referer, user agent, identifier, total, backend.
fn fields(line: &str) -> (String, u16, u64, String, String, String, f64, f64) {
    let (head, rest) = line.split_once("] \"").expect("date");
    assert!(head.starts_with("127.0.0.1 - - ["), "{line}");
    let (req, rest) = rest.split_once("\" ").unwrap();
    let mut it = rest.splitn(3, ' ');
    let status = it.next().unwrap().parse().unwrap();
    let bytes = it.next().unwrap().parse().unwrap();
    let quoted: Vec<&str> = it.next().unwrap().split('"').collect();
    let (referer, ua, id) = (quoted[1], quoted[3], quoted[5]);
    let times: Vec<f64> = quoted[6]
        .split_whitespace()
        .map(|t| t.parse().unwrap())
        .collect();
    (
        req.into(),
        status,
        bytes,
        referer.into(),
        ua.into(),
        id.into(),
        times[0],
        times[1],
    )
}

#[test]
fn lines_for_proxied_requests_errors_and_keep_alive() {
    let redis = Redis::start();
    let app = Backend::named("hello");
    redis.frontend("", "app.example", "mysite", &[app.url()]);
    let dir = TempDir::new("log");
    let path = dir.path().join("access.log");
    let proxy = Lopache::start(
        &redis.url(),
        &format!("access_log = {:?}", path.to_str().unwrap()),
    );
    request(
        proxy.addr,
        "GET /a?b=1 HTTP/1.1\r\nHost: app.example\r\nReferer: http://ref.example/\r\nUser-Agent: test-agent/1.0\r\nConnection: close\r\n\r\n",
    );
    request(
        proxy.addr,
        "GET /nope HTTP/1.1\r\nHost: unknown.example\r\nConnection: close\r\n\r\n",
    );
    let mut conn = RawConn::connect(proxy.addr);
    for path in ["/k1", "/k2"] {
        conn.send(format!("GET {path} HTTP/1.1\r\nHost: app.example\r\n\r\n").as_bytes());
        assert_eq!(conn.read_response(false).status, 200);
    }
    // __ping__ never reaches routing: no line.
    harness::get(proxy.addr, "__ping__", "/");
    let got = wait_lines(&path, 4);
    assert_eq!(got.len(), 4, "{got:#?}");
    let mut parsed: Vec<_> = got.iter().map(|l| fields(l)).collect();
    parsed.sort_by(|a, b| a.0.cmp(&b.0));
    let (req, status, bytes, referer, ua, id, total, backend) = &parsed[0];
    assert_eq!(
        (req.as_str(), *status, *bytes),
        ("GET /a?b=1 HTTP/1.1", 200, 5)
    );
    assert_eq!(
        (referer.as_str(), ua.as_str(), id.as_str()),
        ("http://ref.example/", "test-agent/1.0", "mysite")
    );
    assert!(*total >= *backend && *total < 5.0, "{total} {backend}");
    assert_eq!(
        (parsed[1].0.as_str(), parsed[1].1, parsed[1].5.as_str()),
        ("GET /k1 HTTP/1.1", 200, "mysite")
    );
    assert_eq!(
        (parsed[2].0.as_str(), parsed[2].1),
        ("GET /k2 HTTP/1.1", 200)
    );
    let error = &parsed[3];
    assert_eq!(
        (
            error.0.as_str(),
            error.1,
            error.3.as_str(),
            error.5.as_str()
        ),
        ("GET /nope HTTP/1.1", 400, "-", "-")
    );
    assert!(
        error.2 > 100,
        "the error page's body size is logged: {}",
        error.2
    );
}

#[test]
fn sigusr1_reopens_after_a_rename_without_losing_lines() {
    let redis = Redis::start();
    let app = Backend::named("hello");
    redis.frontend("", "app.example", "mysite", &[app.url()]);
    let dir = TempDir::new("log");
    let path = dir.path().join("access.log");
    let rotated = dir.path().join("access.log.1");
    let proxy = Lopache::start(
        &redis.url(),
        &format!("access_log = {:?}", path.to_str().unwrap()),
    );
    for i in 0..3 {
        harness::get(proxy.addr, "app.example", &format!("/before{i}"));
    }
    wait_lines(&path, 3);
    std::fs::rename(&path, &rotated).unwrap();
    proxy.signal("USR1");
    wait_for("the reopened file", || path.exists().then_some(()));
    for i in 0..2 {
        harness::get(proxy.addr, "app.example", &format!("/after{i}"));
    }
    let new = wait_lines(&path, 2);
    assert!(new.iter().all(|l| l.contains("/after")), "{new:#?}");
    let old = lines(&rotated);
    assert_eq!(old.len(), 3);
    assert!(old.iter().all(|l| l.contains("/before")), "{old:#?}");
}

/// A log path whose directory is missing stops the start and `--dry` with
/// a config error naming the key; lopache creates no directory (as nginx).
#[test]
fn an_access_log_in_a_missing_directory_is_a_config_error() {
    let dir = TempDir::new("log");
    let path = dir.path().join("c.toml");
    let missing = dir.path().join("no-such-dir");
    std::fs::write(
        &path,
        format!(
            "[server]\naccess_log = {:?}\n[http]\nport = 0\n",
            missing.join("access.log")
        ),
    )
    .unwrap();
    for extra in [&[][..], &["--dry"][..]] {
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_lopache"))
            .args(["--config", path.to_str().unwrap()])
            .args(extra)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{extra:?}: {stderr}");
        assert!(
            stderr.contains("server.access_log: directory") && stderr.contains("does not exist"),
            "{stderr}"
        );
        assert!(!missing.exists(), "a directory was created");
    }
}

/// A file that exists but cannot be written (here: a directory in its place
/// stops the open) is refused at start, naming the key.
#[test]
fn an_unopenable_access_log_stops_the_start() {
    let dir = TempDir::new("log");
    let path = dir.path().join("c.toml");
    let taken = dir.path().join("taken");
    std::fs::create_dir(&taken).unwrap();
    std::fs::write(
        &path,
        format!("[server]\naccess_log = {taken:?}\n[http]\nport = 0\n"),
    )
    .unwrap();
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_lopache"))
        .args(["--config", path.to_str().unwrap()])
        .output()
        .unwrap();
    assert_ne!(o.status.code(), Some(0));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("server.access_log"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}
