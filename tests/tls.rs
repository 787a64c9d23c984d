//! TLS termination through the real binary, with a CA and leaf certificates
//! generated per test: HTTPS requests and keep-alive, SNI from a certificate
//! directory (exact names, a wildcard, the default), presets, plaintext on
//! the TLS port, wss://, certificate errors at load time, and certificate
//! files read again on reload.

mod harness;

use std::io::Read;
use std::time::{Duration, Instant};

use harness::tls::{connect, peer_cert, Pki};
use harness::ws::WsEcho;
use harness::{Backend, Lopache, Redis, Reply, TempDir};
use tungstenite::client::IntoClientRequest;
use tungstenite::Message;

const TLS12: &rustls::SupportedProtocolVersion = &rustls::version::TLS12;
const TLS13: &rustls::SupportedProtocolVersion = &rustls::version::TLS13;

/// lopache with an HTTP listener and an HTTPS one; `https` is the rest of
/// the `[https]` table.
fn start(redis: &Redis, https: &str) -> Lopache {
    let cfg = format!(
        "driver = {:?}\n[server]\nworkers = 2\n[http]\nport = 0\nbind = [\"127.0.0.1\"]\n\
         [https]\nport = 0\nbind = [\"127.0.0.1\"]\n{https}",
        redis.url()
    );
    Lopache::start_config(&cfg, &[])
}

/// A certificate for `name` written to a fresh directory, and the `[https]`
/// lines serving it as the default certificate. Keep the directory alive.
fn site_files(pki: &Pki, name: &str) -> (TempDir, String) {
    let dir = TempDir::new("tls");
    pki.leaf(&[name]).write(dir.path(), "site");
    let lines = format!(
        "cert = {:?}\nkey = {:?}",
        dir.path().join("site.crt"),
        dir.path().join("site.key")
    );
    (dir, lines)
}

fn echo_backend() -> Backend {
    Backend::start(|r| {
        Reply::ok(&format!(
            "{} {} proto={} port={} body={}",
            r.method,
            r.target,
            r.header("x-forwarded-proto").unwrap_or("-"),
            r.header("x-forwarded-port").unwrap_or("-"),
            r.body_len
        ))
    })
}

/// `secure.example` served over HTTPS by lopache from the echo backend.
/// Keep the whole tuple alive for the test.
fn secure_site() -> (Pki, TempDir, Redis, Backend, Lopache) {
    let pki = Pki::new();
    let (dir, files) = site_files(&pki, "secure.example");
    let redis = Redis::start();
    let backend = echo_backend();
    redis.frontend("", "secure.example", "secure", &[backend.url()]);
    let proxy = start(&redis, &files);
    (pki, dir, redis, backend, proxy)
}

#[test]
fn https_requests_keep_alive_and_forwarded_proto() {
    let (pki, _dir, _redis, _backend, proxy) = secure_site();
    let tls_addr = proxy.https_addr.expect("an https listener");
    let mut conn =
        connect(tls_addr, "secure.example", pki.client(&[TLS13, TLS12])).expect("handshake");
    assert_eq!(conn.stream.conn.alpn_protocol(), Some(&b"http/1.1"[..]));
    let port = tls_addr.port();
    conn.send(b"GET /one HTTP/1.1\r\nHost: secure.example\r\n\r\n");
    assert_eq!(
        conn.read_response(false).text(),
        format!("GET /one proto=https port={port} body=0")
    );
    conn.send(
        b"POST /two HTTP/1.1\r\nHost: secure.example\r\nContent-Length: 11\r\n\r\nhello world",
    );
    assert_eq!(
        conn.read_response(false).text(),
        format!("POST /two proto=https port={port} body=11")
    );
    // Plain HTTP on the other listener says http.
    let r = harness::get(proxy.addr, "secure.example", "/three");
    assert!(
        r.text().starts_with("GET /three proto=http port="),
        "{}",
        r.text()
    );
}

#[test]
fn sni_picks_names_then_wildcard_then_default() {
    let pki = Pki::new();
    let certs = TempDir::new("certs");
    let leaves: Vec<_> = ["a.example", "b.example", "c.example"]
        .iter()
        .map(|n| {
            let leaf = pki.leaf(&[n]);
            leaf.write(certs.path(), n);
            (n.to_string(), leaf.der)
        })
        .collect();
    let wildcard = pki.leaf(&["*.wild.example"]);
    wildcard.write(certs.path(), "*.wild.example");
    let default_dir = TempDir::new("default");
    let default = pki.leaf(&["default.example"]);
    default.write(default_dir.path(), "default");
    let redis = Redis::start();
    let proxy = start(
        &redis,
        &format!(
            "certificates_dir = {:?}\ncert = {:?}\nkey = {:?}",
            certs.path(),
            default_dir.path().join("default.crt"),
            default_dir.path().join("default.key")
        ),
    );
    let addr = proxy.https_addr.unwrap();
    let client = pki.client(&[TLS13, TLS12]);
    for (name, der) in &leaves {
        let conn = connect(addr, name, client.clone()).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(&peer_cert(&conn), der, "{name}");
    }
    let conn = connect(addr, "shop.wild.example", client.clone()).expect("wildcard");
    assert_eq!(peer_cert(&conn), wildcard.der);
    let conn = connect(addr, "default.example", client.clone()).expect("default");
    assert_eq!(peer_cert(&conn), default.der);
    // A name nothing covers gets the default certificate, which the client rejects.
    assert!(connect(addr, "deep.shop.wild.example", client).is_err());
}

#[test]
fn presets_choose_protocol_versions() {
    let pki = Pki::new();
    let (_dir, files) = site_files(&pki, "secure.example");
    let redis = Redis::start();
    let modern = start(&redis, &format!("{files}\npreset = \"modern\""));
    let intermediate = start(&redis, &files);
    let tls12_only = pki.client(&[TLS12]);
    assert!(connect(
        modern.https_addr.unwrap(),
        "secure.example",
        tls12_only.clone()
    )
    .is_err());
    assert!(connect(
        modern.https_addr.unwrap(),
        "secure.example",
        pki.client(&[TLS13])
    )
    .is_ok());
    let conn = connect(
        intermediate.https_addr.unwrap(),
        "secure.example",
        tls12_only,
    )
    .expect("TLS 1.2");
    assert_eq!(
        conn.stream.conn.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_2)
    );
}

/// A TLS 1.2 client asking to renegotiate is told no at once (the
/// `no_renegotiation` alert), not left waiting for an answer; with
/// `tcp_timeout = 0` it would otherwise wait forever.
#[test]
fn renegotiation_is_refused_at_once() {
    use std::io::{BufRead, BufReader, Write};
    use std::process::{Command, Stdio};
    use std::sync::{Arc, Mutex};
    let pki = Pki::new();
    let (_dir, files) = site_files(&pki, "secure.example");
    let redis = Redis::start();
    let cfg = format!(
        "driver = {:?}\n[server]\nworkers = 1\ntcp_timeout = 0\n[http]\nport = 0\n\
         bind = [\"127.0.0.1\"]\n[https]\nport = 0\nbind = [\"127.0.0.1\"]\n{files}",
        redis.url()
    );
    let proxy = Lopache::start_config(&cfg, &[]);
    let mut client = Command::new("openssl")
        .args([
            "s_client",
            "-tls1_2",
            "-msg",
            "-servername",
            "secure.example",
        ])
        .arg("-connect")
        .arg(proxy.https_addr.unwrap().to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("openssl (scripts/test.sh installs it)");
    let seen = Arc::new(Mutex::new(String::new()));
    let out = BufReader::new(client.stdout.take().unwrap());
    let sink = seen.clone();
    std::thread::spawn(move || {
        for line in out.lines().map_while(Result::ok) {
            let mut s = sink.lock().unwrap();
            s.push_str(&line);
            s.push('\n');
        }
    });
    let has = |what: &str| seen.lock().unwrap().contains(what).then_some(());
    harness::wait_for("the TLS 1.2 handshake", || has("Verify return code"));
    let mut stdin = client.stdin.take().unwrap();
    stdin.write_all(b"R\n").unwrap();
    stdin.flush().unwrap();
    harness::wait_for("the no_renegotiation alert", || {
        has("warning no_renegotiation")
    });
    let _ = client.kill();
    let _ = client.wait();
}

#[test]
fn plaintext_on_the_tls_port_is_closed_promptly() {
    let pki = Pki::new();
    let (_dir, files) = site_files(&pki, "secure.example");
    let redis = Redis::start();
    let proxy = start(&redis, &files);
    let mut conn = harness::RawConn::connect(proxy.https_addr.unwrap());
    let started = Instant::now();
    conn.send(b"GET / HTTP/1.1\r\nHost: secure.example\r\n\r\n");
    let mut rest = Vec::new();
    let _ = conn.stream.read_to_end(&mut rest);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "took {:?}",
        started.elapsed()
    );
    assert!(!String::from_utf8_lossy(&rest).contains("HTTP/1.1 200"));
}

/// TLS records of every size, split across TCP reads anyhow: a 16 KiB record
/// followed by many small ones must not overfill rustls' plaintext buffer
/// (the connection was dropped with "received plaintext buffer full").
#[test]
fn a_body_of_large_and_small_records_arrives_whole() {
    use std::io::Write;
    let (pki, _dir, _redis, _backend, proxy) = secure_site();
    let mut conn = connect(
        proxy.https_addr.unwrap(),
        "secure.example",
        pki.client(&[TLS13]),
    )
    .unwrap();
    let (big, small, rounds) = (16 * 1024, 100, 40);
    let length = rounds * (big + 20 * small);
    let stream = &mut conn.stream;
    let mut record = |bytes: &[u8]| {
        stream.conn.writer().write_all(bytes).unwrap();
        while stream.conn.wants_write() {
            stream.conn.write_tls(&mut stream.sock).unwrap();
        }
    };
    record(
        format!(
            "POST /records HTTP/1.1\r\nHost: secure.example\r\nContent-Length: {length}\r\n\r\n"
        )
        .as_bytes(),
    );
    for _ in 0..rounds {
        record(&vec![b'b'; big]);
        for _ in 0..20 {
            record(&[b's'; 100]);
        }
    }
    let port = proxy.https_addr.unwrap().port();
    assert_eq!(
        conn.read_response(false).text(),
        format!("POST /records proto=https port={port} body={length}")
    );
}

/// A client's close_notify followed by more bytes in the same packet, after
/// the handshake or with its last message, must not make the shard spin on
/// input rustls no longer takes: the next connections are served.
#[test]
fn bytes_after_close_notify_do_not_stall_the_shard() {
    use std::io::Write;
    let pki = Pki::new();
    let (_dir, files) = site_files(&pki, "secure.example");
    let redis = Redis::start();
    let backend = echo_backend();
    redis.frontend("", "secure.example", "secure", &[backend.url()]);
    let cfg = format!(
        "driver = {:?}\n[server]\nworkers = 1\n[http]\nport = 0\nbind = [\"127.0.0.1\"]\n\
         [https]\nport = 0\nbind = [\"127.0.0.1\"]\n{files}",
        redis.url()
    );
    let proxy = Lopache::start_config(&cfg, &[]);
    let tls_addr = proxy.https_addr.unwrap();
    // After the handshake.
    let mut conn = connect(tls_addr, "secure.example", pki.client(&[TLS13])).unwrap();
    let stream = &mut conn.stream;
    stream.conn.send_close_notify();
    let mut wire = Vec::new();
    stream.conn.write_tls(&mut wire).unwrap();
    wire.extend([0x17u8; 8192]);
    stream.sock.write_all(&wire).unwrap();
    // With the client's Finished.
    let tcp = std::net::TcpStream::connect(tls_addr).unwrap();
    tcp.set_read_timeout(Some(harness::WAIT)).unwrap();
    let name = rustls::pki_types::ServerName::try_from("secure.example").unwrap();
    let mut client = rustls::ClientConnection::new(pki.client(&[TLS13]), name).unwrap();
    let mut sock = tcp;
    loop {
        let mut out = Vec::new();
        client.write_tls(&mut out).unwrap();
        if !client.is_handshaking() {
            client.send_close_notify();
            client.write_tls(&mut out).unwrap();
            out.extend([0x17u8; 8192]);
            sock.write_all(&out).unwrap();
            break;
        }
        sock.write_all(&out).unwrap();
        client.read_tls(&mut sock).unwrap();
        client.process_new_packets().unwrap();
    }
    // The one shard still serves, over TLS and plain HTTP.
    let mut next = connect(tls_addr, "secure.example", pki.client(&[TLS13])).unwrap();
    next.send(b"GET /after HTTP/1.1\r\nHost: secure.example\r\n\r\n");
    assert!(next.read_response(false).text().starts_with("GET /after"));
    assert_eq!(harness::get(proxy.addr, "secure.example", "/").status, 200);
}

#[test]
fn wss_echo_through_the_proxy() {
    let pki = Pki::new();
    let (_dir, files) = site_files(&pki, "ws.example");
    let redis = Redis::start();
    let echo = WsEcho::start();
    redis.frontend("", "ws.example", "ws", &[echo.url()]);
    let proxy = start(&redis, &files);
    let conn = connect(
        proxy.https_addr.unwrap(),
        "ws.example",
        pki.client(&[TLS13, TLS12]),
    )
    .unwrap();
    let request = "wss://ws.example/socket".into_client_request().unwrap();
    let (mut ws, response) =
        tungstenite::client::client_with_config(request, conn.stream, Some(harness::ws::config()))
            .unwrap();
    assert_eq!(response.status(), 101);
    for size in [0usize, 125, 70_000] {
        let msg: String = "w".repeat(size);
        ws.send(Message::text(msg.clone())).unwrap();
        assert_eq!(ws.read().unwrap(), Message::text(msg));
    }
    ws.close(None).unwrap();
}

#[test]
fn certificate_errors_name_the_key() {
    let pki = Pki::new();
    let dir = TempDir::new("tls");
    let a = pki.leaf(&["a.example"]);
    let b = pki.leaf(&["b.example"]);
    a.write(dir.path(), "a");
    b.write(dir.path(), "b");
    let d = dir.path();
    let cases = [
        (
            format!("cert = {:?}\nkey = {:?}", d.join("a.crt"), d.join("b.key")),
            "https.key: does not match",
        ),
        (
            format!(
                "cert = {:?}\nkey = {:?}",
                d.join("none.crt"),
                d.join("a.key")
            ),
            "https.cert: cannot read",
        ),
        (
            format!("cert = {:?}\nkey = {:?}", d.join("a.crt"), d.join("a.crt")),
            "https.key: cannot read a private key",
        ),
        (
            String::new(),
            "https.cert: https.bind[0] needs a certificate",
        ),
    ];
    for (https, want) in cases {
        let path = d.join("c.toml");
        std::fs::write(
            &path,
            format!("[https]\nport = 0\nbind = [\"127.0.0.1\"]\n{https}\n"),
        )
        .unwrap();
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_lopache"))
            .args(["--config", path.to_str().unwrap(), "--dry"])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{https}: {stderr}");
        assert!(stderr.contains(want), "want {want:?}, got {stderr}");
    }
}

#[test]
fn https_backends_are_verified() {
    let pki = Pki::new();
    let backend = harness::tls::TlsBackend::start(&pki.leaf(&["localhost"]), "secure backend");
    let redis = Redis::start();
    redis.frontend(
        "",
        "app.example",
        "app",
        &[format!("https://localhost:{}", backend.addr.port())],
    );
    let dir = TempDir::new("ca");
    std::fs::write(dir.path().join("ca.pem"), &pki.ca_pem).unwrap();
    let trusting = Lopache::start(
        &redis.url(),
        &format!("workers = 1\nbackend_ca = {:?}", dir.path().join("ca.pem")),
    );
    for _ in 0..3 {
        let r = harness::get(trusting.addr, "app.example", "/");
        assert_eq!((r.status, r.text().as_str()), (200, "secure backend"));
        assert_eq!(
            r.header("x-sni"),
            Some("localhost"),
            "SNI is the backend URL's host"
        );
    }
    assert_eq!(
        backend
            .connections
            .load(std::sync::atomic::Ordering::SeqCst),
        1,
        "the TLS connection is pooled"
    );
    // Without the test CA the backend's certificate is untrusted: 502.
    let untrusting = Lopache::start(&redis.url(), "retry_on_error = 0\ndebug_headers = true");
    let r = harness::request(
        untrusting.addr,
        "GET / HTTP/1.1\r\nHost: app.example\r\nX-Debug: 1\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(
        (r.status, r.header("x-debug-error")),
        (502, Some("connect-failed"))
    );
}

#[test]
fn unreadable_backend_ca_is_a_config_error() {
    let dir = TempDir::new("ca");
    let path = dir.path().join("c.toml");
    std::fs::write(&path, "[server]\nbackend_ca = \"/nonexistent/ca.pem\"\n").unwrap();
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_lopache"))
        .args(["--config", path.to_str().unwrap(), "--dry"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("server.backend_ca: cannot read"));
}

#[test]
fn certificates_from_redis_are_served_and_refreshed_within_the_ttl() {
    let pki = Pki::new();
    let redis = Redis::start();
    let first = pki.leaf(&["redis.example"]);
    redis.cmd(&[
        "HSET",
        "tls:redis.example",
        "certificate",
        &first.cert_pem,
        "key",
        &first.key_pem,
    ]);
    let wildcard = pki.leaf(&["*.wild.example"]);
    redis.cmd(&[
        "HSET",
        "tls:*.wild.example",
        "certificate",
        &wildcard.cert_pem,
        "key",
        &wildcard.key_pem,
    ]);
    let app = Backend::named("from redis");
    redis.frontend("", "redis.example", "app", &[app.url()]);
    let proxy = start(
        &redis,
        "redis_certificates = true\nredis_certificates_ttl = 1",
    );
    let addr = proxy.https_addr.unwrap();
    let client = pki.client(&[TLS13, TLS12]);
    let mut conn = connect(addr, "redis.example", client.clone()).expect("certificate from Redis");
    assert_eq!(peer_cert(&conn), first.der);
    conn.send(b"GET / HTTP/1.1\r\nHost: redis.example\r\n\r\n");
    assert_eq!(conn.read_response(false).text(), "from redis");
    let conn = connect(addr, "shop.wild.example", client.clone()).expect("wildcard from Redis");
    assert_eq!(peer_cert(&conn), wildcard.der);
    // A name Redis does not hold, with no default certificate: refused.
    assert!(connect(addr, "nobody.example", client.clone()).is_err());
    // Replace the certificate in Redis: served once the TTL has passed.
    let second = pki.leaf(&["redis.example"]);
    redis.cmd(&[
        "HSET",
        "tls:redis.example",
        "certificate",
        &second.cert_pem,
        "key",
        &second.key_pem,
    ]);
    harness::wait_for("the new certificate", || {
        let conn = connect(addr, "redis.example", client.clone()).ok()?;
        (peer_cert(&conn) == second.der).then_some(())
    });
}

/// With the default route cache (tracking), a certificate changed in Redis
/// is served at once, though the cache would keep it for an hour.
#[test]
fn a_certificate_changed_in_redis_is_served_after_its_report() {
    let pki = Pki::new();
    let redis = Redis::start();
    let set = |leaf: &harness::tls::Leaf| {
        redis.cmd(&[
            "HSET",
            "tls:redis.example",
            "certificate",
            &leaf.cert_pem,
            "key",
            &leaf.key_pem,
        ]);
    };
    let first = pki.leaf(&["redis.example"]);
    set(&first);
    let proxy = start(
        &redis,
        "redis_certificates = true\nredis_certificates_ttl = 3600",
    );
    harness::wait_for("both shards to track", || {
        (redis.subscribers("__redis__:invalidate") == 2).then_some(())
    });
    let addr = proxy.https_addr.unwrap();
    let client = pki.client(&[TLS13, TLS12]);
    for _ in 0..4 {
        let conn = connect(addr, "redis.example", client.clone()).expect("certificate");
        assert_eq!(peer_cert(&conn), first.der);
    }
    let second = pki.leaf(&["redis.example"]);
    set(&second);
    // Within the harness's wait, far below the hour the cache would keep it.
    harness::wait_for("the new certificate", || {
        let conn = connect(addr, "redis.example", client.clone()).ok()?;
        (peer_cert(&conn) == second.der).then_some(())
    });
}

#[test]
fn certificate_files_are_read_again_on_reload() {
    let pki = Pki::new();
    let certs = TempDir::new("certs");
    let first = pki.leaf(&["a.example"]);
    first.write(certs.path(), "a.example");
    let (_default_dir, files) = site_files(&pki, "default.example");
    let redis = Redis::start();
    let proxy = start(
        &redis,
        &format!("certificates_dir = {:?}\n{files}", certs.path()),
    );
    let addr = proxy.https_addr.unwrap();
    let client = pki.client(&[TLS13, TLS12]);
    let served = || peer_cert(&connect(addr, "a.example", client.clone()).expect("handshake"));
    assert_eq!(served(), first.der);
    // A renewed certificate, and a new name, appear after SIGHUP.
    let renewed = pki.leaf(&["a.example"]);
    renewed.write(certs.path(), "a.example");
    let added = pki.leaf(&["b.example"]);
    added.write(certs.path(), "b.example");
    assert_eq!(served(), first.der, "served before the reload");
    proxy.signal("HUP");
    proxy.wait_for_log("serving (reload)", 1);
    let old = proxy.serving_pids()[0];
    harness::wait_for("the old worker to hand over", || {
        harness::is_dead(old).then_some(())
    });
    assert_eq!(served(), renewed.der);
    let b = connect(addr, "b.example", client.clone()).expect("new name");
    assert_eq!(peer_cert(&b), added.der);
    // A broken key is refused at reload: the renewed certificate stays.
    std::fs::write(certs.path().join("a.example.key"), "not a key").unwrap();
    proxy.signal("HUP");
    proxy.wait_for_log("is invalid, still serving the previous config", 1);
    assert!(
        proxy.stderr().contains("a.example.key"),
        "{}",
        proxy.stderr()
    );
    assert_eq!(served(), renewed.der);
}

/// Runs openssl with `args`, returning its stdout (a PEM).
fn openssl(args: &[&str], input: Option<&str>) -> String {
    use std::io::Write;
    let mut child = std::process::Command::new("openssl")
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("openssl (scripts/test.sh installs it)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.unwrap_or("").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "openssl {args:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn keys_in_pkcs8_pkcs1_and_sec1_are_served() {
    let pki = Pki::new();
    let certs = TempDir::new("certs");
    // PKCS#8 (what rcgen writes).
    let pkcs8 = pki.leaf(&["p8.example"]);
    pkcs8.write(certs.path(), "p8.example");
    // SEC1: the same kind of EC key in "BEGIN EC PRIVATE KEY" form.
    let sec1 = pki.leaf(&["sec1.example"]);
    let sec1_pem = openssl(&["ec"], Some(&sec1.key_pem));
    assert!(sec1_pem.contains("BEGIN EC PRIVATE KEY"), "{sec1_pem}");
    sec1.write(certs.path(), "sec1.example");
    std::fs::write(certs.path().join("sec1.example.key"), &sec1_pem).unwrap();
    // PKCS#1: an RSA key in "BEGIN RSA PRIVATE KEY" form.
    let rsa_pkcs8 = openssl(
        &[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
        ],
        None,
    );
    let rsa_key = rcgen::KeyPair::from_pem(&rsa_pkcs8).expect("RSA key for rcgen");
    let rsa = pki.leaf_for_key(&["rsa.example"], rsa_key);
    let pkcs1_pem = openssl(&["rsa", "-traditional"], Some(&rsa_pkcs8));
    assert!(pkcs1_pem.contains("BEGIN RSA PRIVATE KEY"), "{pkcs1_pem}");
    rsa.write(certs.path(), "rsa.example");
    std::fs::write(certs.path().join("rsa.example.key"), &pkcs1_pem).unwrap();
    let redis = Redis::start();
    let (_default_dir, files) = site_files(&pki, "default.example");
    let proxy = start(
        &redis,
        &format!("certificates_dir = {:?}\n{files}", certs.path()),
    );
    let addr = proxy.https_addr.unwrap();
    for (name, leaf) in [
        ("p8.example", &pkcs8),
        ("sec1.example", &sec1),
        ("rsa.example", &rsa),
    ] {
        for versions in [&[TLS13][..], &[TLS12][..]] {
            let conn = connect(addr, name, pki.client(versions))
                .unwrap_or_else(|e| panic!("{name} {versions:?}: {e}"));
            assert_eq!(peer_cert(&conn), leaf.der, "{name}");
        }
    }
}

/// `https.chain` (Hipache's `https.ca`): the certificates of those files are
/// served after the certificate file's own, in order; a chain file without a
/// certificate is a config error naming it.
#[test]
fn chain_files_are_served_after_the_certificate() {
    let pki = Pki::new();
    let dir = TempDir::new("tls");
    let leaf = pki.leaf(&["secure.example"]);
    leaf.write(dir.path(), "site");
    std::fs::write(dir.path().join("intermediate.pem"), &pki.ca_pem).unwrap();
    let redis = Redis::start();
    let files = format!(
        "cert = {:?}\nkey = {:?}\nchain = [{:?}]",
        dir.path().join("site.crt"),
        dir.path().join("site.key"),
        dir.path().join("intermediate.pem")
    );
    let proxy = start(&redis, &files);
    let conn = connect(
        proxy.https_addr.unwrap(),
        "secure.example",
        pki.client(&[TLS13]),
    )
    .unwrap();
    let served = conn.stream.conn.peer_certificates().unwrap();
    assert_eq!(served.len(), 2);
    assert_eq!(served[0], leaf.der);
    assert_eq!(served[1], pki.ca_der);
    // Not a certificate: refused at start, naming the key.
    std::fs::write(dir.path().join("intermediate.pem"), "not a certificate").unwrap();
    let cfg = format!(
        "driver = {:?}\n[http]\nport = 0\nbind = [\"127.0.0.1\"]\n[https]\nport = 0\nbind = [\"127.0.0.1\"]\n{files}\n[server]\naccess_log = \"none\"\n",
        redis.url()
    );
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, cfg).unwrap();
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_lopache"))
        .args(["--dry", "--config", path.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("https.chain[0]"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}
