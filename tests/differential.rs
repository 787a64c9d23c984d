//! Differential test in the manner of HTTP Garden: an adversarial corpus
//! (tests/differential/corpus.rs, over 300 requests) goes through lopache to
//! three real backends with parsers of their own: nginx, Node's http server
//! (llhttp) and Python's h11. Each backend reports every request it parsed
//! (method, target, body length). A recording relay between lopache and each
//! backend keeps the bytes lopache sent; read by the strict parser of
//! `lopache::fuzzing::strict`, they are lopache's account of what it
//! forwarded. The test fails when lopache sent something the strict parser
//! refuses, or when a backend saw a request, method, target or body length
//! that lopache's account does not hold. Requests a backend refused or did
//! not get to are printed, not failed: a refusal desynchronises nothing.
//!
//! nginx cannot report a body it discards, so it proxies (buffered, with a
//! Content-Length it computed itself) to an h11 recorder: what that recorder
//! sees is what nginx parsed.

mod harness;

#[path = "differential/corpus.rs"]
mod corpus;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use harness::{Lopache, Redis, TempDir};
use lopache::fuzzing::strict;

/// One request as a parser saw it: method, target (origin form), body bytes.
type Seen = (String, String, u64);

/// A backend process that prints one JSON line per parsed request.
struct Reporter {
    child: Child,
    port: u16,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Reporter {
    fn start(program: &str, args: &[&str]) -> Reporter {
        let mut child = Command::new(program)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("start {program} (scripts/test.sh installs it): {e}"));
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let out = child.stdout.take().unwrap();
        let kept = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
                match v.get("port").and_then(serde_json::Value::as_u64) {
                    Some(port) => {
                        let _ = tx.send(port as u16);
                    }
                    None => kept.lock().unwrap().push(line),
                }
            }
        });
        let port = rx
            .recv_timeout(harness::WAIT)
            .unwrap_or_else(|_| panic!("{program} did not report its port"));
        Reporter { child, port, lines }
    }

    /// Requests parsed so far, and refusals (connections it gave up on).
    fn seen(&self) -> (Vec<Seen>, Vec<String>) {
        let (mut seen, mut refused) = (Vec::new(), Vec::new());
        for line in self.lines.lock().unwrap().iter() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            match v.get("error") {
                Some(e) => refused.push(e.to_string()),
                None => seen.push((
                    v["m"].as_str().unwrap().to_string(),
                    origin_form(v["t"].as_str().unwrap()),
                    v["n"].as_u64().unwrap(),
                )),
            }
        }
        (seen, refused)
    }
}

impl Drop for Reporter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// nginx in the foreground on a free loopback port, proxying to `upstream`.
struct Nginx {
    child: Child,
    port: u16,
    _dir: TempDir,
}

impl Nginx {
    fn start(upstream: u16) -> Nginx {
        let binary = ["nginx", "/usr/sbin/nginx"]
            .into_iter()
            .find(|b| Command::new(b).arg("-v").output().is_ok())
            .expect("nginx is required (scripts/test.sh installs it)");
        let dir = TempDir::new("nginx");
        // A port the kernel just handed out; nginx cannot report one itself.
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let d = dir.path().display();
        let user = if running_as_root() { "user root;" } else { "" };
        let conf = format!(
            "{user}\ndaemon off;\nmaster_process off;\nerror_log {d}/error.log;\npid {d}/nginx.pid;\n\
             events {{ worker_connections 1024; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
               fastcgi_temp_path {d}/f; uwsgi_temp_path {d}/u; scgi_temp_path {d}/s;\n\
               client_max_body_size 10m; client_body_buffer_size 1m; keepalive_requests 100000;\n\
               server {{\n    listen 127.0.0.1:{port};\n\
                 location / {{ proxy_pass http://127.0.0.1:{upstream}; proxy_read_timeout 10s; }}\n  }}\n}}\n"
        );
        std::fs::write(dir.path().join("nginx.conf"), conf).unwrap();
        let child = Command::new(binary)
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(dir.path().join("nginx.conf"))
            .stderr(Stdio::null())
            .spawn()
            .expect("start nginx");
        harness::wait_for("nginx to listen", || {
            TcpStream::connect(("127.0.0.1", port)).ok()
        });
        Nginx {
            child,
            port,
            _dir: dir,
        }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

/// The bytes one relayed connection carried towards the backend.
type Recording = Arc<Mutex<Vec<u8>>>;

/// A relay that records every byte lopache sends to `upstream`, per connection.
struct Tap {
    addr: SocketAddr,
    streams: Arc<Mutex<Vec<Recording>>>,
}

impl Tap {
    fn start(upstream: u16) -> Tap {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let streams: Arc<Mutex<Vec<Recording>>> = Arc::default();
        let kept = streams.clone();
        std::thread::spawn(move || {
            for down in listener.incoming().flatten() {
                let Ok(up) = TcpStream::connect(("127.0.0.1", upstream)) else {
                    continue;
                };
                let record = Arc::new(Mutex::new(Vec::new()));
                kept.lock().unwrap().push(record.clone());
                let (mut down_r, mut up_w) = (down.try_clone().unwrap(), up.try_clone().unwrap());
                std::thread::spawn(move || {
                    let mut buf = [0u8; 65536];
                    while let Ok(n) = down_r.read(&mut buf) {
                        if n == 0 {
                            break;
                        }
                        record.lock().unwrap().extend_from_slice(&buf[..n]);
                        if up_w.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    let _ = up_w.shutdown(Shutdown::Write);
                });
                let (mut up_r, mut down_w) = (up, down);
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut up_r, &mut down_w);
                    let _ = down_w.shutdown(Shutdown::Write);
                });
            }
        });
        Tap { addr, streams }
    }

    /// lopache's account: every request it sent, read strictly. Bytes the
    /// strict parser refuses are returned as the second value.
    fn sent(&self) -> (Vec<Seen>, Vec<String>) {
        let (mut sent, mut refused) = (Vec::new(), Vec::new());
        for stream in self.streams.lock().unwrap().iter() {
            let bytes = stream.lock().unwrap().clone();
            let mut pos = 0;
            while pos < bytes.len() {
                match strict::read_request(&bytes[pos..]) {
                    Ok(m) => {
                        sent.push((
                            String::from_utf8_lossy(&m.start[0]).into_owned(),
                            origin_form(&String::from_utf8_lossy(&m.start[1])),
                            m.body.len() as u64,
                        ));
                        pos += m.consumed;
                    }
                    Err(e) => {
                        let rest = String::from_utf8_lossy(&bytes[pos..]);
                        refused.push(format!("{e}: {:?}", &rest[..rest.len().min(300)]));
                        break;
                    }
                }
            }
        }
        (sent, refused)
    }
}

/// The path and query of a target, whatever its form (nginx forwards only
/// those of an absolute-form target).
fn origin_form(target: &str) -> String {
    let lower = target.to_ascii_lowercase();
    for scheme in ["http://", "https://"] {
        if lower.starts_with(scheme) {
            let rest = &target[scheme.len()..];
            return match rest.find('/') {
                Some(i) => rest[i..].to_string(),
                None => "/".to_string(),
            };
        }
    }
    target.to_string()
}

/// A Python interpreter that has h11 (Debian's python3-h11 or pip's).
fn python_with_h11() -> String {
    for python in ["python3", "/usr/bin/python3"] {
        let ok = Command::new(python)
            .args(["-c", "import h11"])
            .output()
            .is_ok_and(|o| o.status.success());
        if ok {
            return python.to_string();
        }
    }
    panic!("a python3 with h11 is required (scripts/test.sh installs python3-h11)");
}

/// Sends one case on its own connection and reads until lopache closes.
fn send_case(proxy: SocketAddr, bytes: &[u8]) {
    let Ok(mut c) = TcpStream::connect(proxy) else {
        return;
    };
    let _ = c.set_read_timeout(Some(Duration::from_secs(15)));
    let _ = c.write_all(bytes);
    let _ = c.shutdown(Shutdown::Write);
    let mut sink = Vec::new();
    let _ = c.read_to_end(&mut sink);
}

fn multiset(items: &[Seen]) -> BTreeMap<&Seen, i64> {
    let mut m = BTreeMap::new();
    for s in items {
        *m.entry(s).or_insert(0) += 1;
    }
    m
}

#[test]
fn backends_never_see_a_request_lopache_did_not_send() {
    let python = python_with_h11();
    let script = |name: &str| format!("{}/tests/differential/{name}", env!("CARGO_MANIFEST_DIR"));
    let node = Reporter::start("node", &[&script("node_backend.js")]);
    let h11 = Reporter::start(&python, &[&script("h11_backend.py")]);
    let behind_nginx = Reporter::start(&python, &[&script("h11_backend.py")]);
    let nginx = Nginx::start(behind_nginx.port);
    let backends: [(&str, &Reporter, Tap); 3] = [
        ("node", &node, Tap::start(node.port)),
        ("h11", &h11, Tap::start(h11.port)),
        ("nginx", &behind_nginx, Tap::start(nginx.port)),
    ];
    let redis = Redis::start();
    for (name, _, tap) in &backends {
        redis.frontend(
            "",
            &format!("{name}.diff"),
            name,
            &[format!("http://{}", tap.addr)],
        );
    }
    let proxy = Lopache::start(
        &redis.url(),
        "response_timeout = 5\ntcp_timeout = 5\nretry_on_error = 0",
    );

    let cases = corpus::cases();
    assert!(cases.len() >= 200, "{} cases", cases.len());
    let mut jobs = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        for (name, _, _) in &backends {
            // Placeholders are ASCII; replacing on bytes keeps the rest intact.
            let bytes = replace(&case.bytes, b"{H}", format!("{name}.diff").as_bytes());
            jobs.push(replace(&bytes, b"{T}", format!("/c{i}").as_bytes()));
        }
    }
    let jobs = Arc::new(Mutex::new(jobs));
    let workers: Vec<_> = (0..8)
        .map(|_| {
            let (jobs, addr) = (jobs.clone(), proxy.addr);
            std::thread::spawn(move || loop {
                let Some(job) = jobs.lock().unwrap().pop() else {
                    return;
                };
                send_case(addr, &job);
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }

    // Backends report a request once it is complete: wait until what they
    // saw stops changing.
    let (mut failures, mut notes) = (Vec::new(), Vec::new());
    let name_of = |target: &str| -> String {
        let id = target
            .trim_start_matches("/c")
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .and_then(|n| n.parse::<usize>().ok());
        id.and_then(|i| cases.get(i))
            .map_or_else(|| "?".to_string(), |c| c.name.clone())
    };
    for (name, reporter, tap) in &backends {
        let deadline = Instant::now() + Duration::from_secs(5);
        let (mut sent, mut seen);
        loop {
            (sent, _) = tap.sent();
            (seen, _) = reporter.seen();
            if seen.len() >= sent.len() || Instant::now() > deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let (sent, unparseable) = tap.sent();
        let (seen, refused) = reporter.seen();
        for u in unparseable {
            failures.push(format!(
                "{name}: lopache sent bytes a strict parser refuses: {u}"
            ));
        }
        // A refusal or a request the backend did not get to is no desync:
        // shown, not failed (nginx, for one, takes no `OPTIONS *`).
        for r in refused {
            notes.push(format!(
                "{name}: the backend refused what lopache sent: {r}"
            ));
        }
        let (want, got) = (multiset(&sent), multiset(&seen));
        for (req, n) in &got {
            let w = want.get(req).copied().unwrap_or(0);
            if *n > w {
                failures.push(format!(
                    "{name}: saw {req:?} {n} times, lopache sent it {w} times (case {})",
                    name_of(&req.1)
                ));
            }
        }
        for (req, n) in &want {
            let g = got.get(req).copied().unwrap_or(0);
            if *n > g {
                notes.push(format!(
                    "{name}: lopache sent {req:?} {n} times, the backend saw it {g} times (case {})",
                    name_of(&req.1)
                ));
            }
        }
        eprintln!(
            "{name}: lopache forwarded {} requests of {} cases; the backend parsed {}",
            sent.len(),
            cases.len(),
            seen.len()
        );
        assert!(!sent.is_empty(), "{name}: nothing was forwarded at all");
    }
    eprintln!("{}", notes.join("\n"));
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

fn replace(hay: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(hay.len());
    let mut i = 0;
    while i < hay.len() {
        if hay[i..].starts_with(from) {
            out.extend_from_slice(to);
            i += from.len();
        } else {
            out.push(hay[i]);
            i += 1;
        }
    }
    out
}
