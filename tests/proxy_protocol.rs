//! PROXY protocol listeners (`proxy_protocol = true`) through the real
//! binary: v1 TCP4/TCP6/UNKNOWN and v2 (with TLVs, LOCAL) name the client
//! the backend and the access log see; truncated, oversized, missing and
//! late headers close the connection and are counted; a header split over
//! many packets is read whole and not one byte more (TLS starts right
//! after it); `proxy_protocol_from` limits who must send it; and HAProxy
//! itself, with `send-proxy` and `send-proxy-v2`, is the sender.

mod harness;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use harness::tls::{connect_over, Pki};
use harness::{wait_for, Backend, HttpResponse, Lopache, RawConn, Redis, Reply, TempDir};
use lopache::net::proxy_protocol::{v2_header, Relayed};

/// A backend that answers with what it was told about the client.
fn echo_backend() -> Backend {
    Backend::start(|r| {
        Reply::ok(&format!(
            "xff={} real={} port={} proto={}",
            r.header("x-forwarded-for").unwrap_or("-"),
            r.header("x-real-ip").unwrap_or("-"),
            r.header("x-forwarded-port").unwrap_or("-"),
            r.header("x-forwarded-proto").unwrap_or("-"),
        ))
    })
}

struct Site {
    _redis: Redis,
    _backend: Backend,
    proxy: Lopache,
    log: std::path::PathBuf,
    _dir: TempDir,
}

/// lopache with an HTTP listener reading PROXY headers (`[http]` lines
/// `http`), `server` lines, an admin endpoint and an access log.
fn site(http: &str, server: &str) -> Site {
    let redis = Redis::start();
    let backend = echo_backend();
    redis.frontend("", "app.example", "app", &[backend.url()]);
    let dir = TempDir::new("proxy-protocol");
    let log = dir.path().join("access.log");
    let bind = if http.contains("bind") {
        ""
    } else {
        "bind = [\"127.0.0.1\"]\n"
    };
    let cfg = format!(
        "driver = {:?}\n[server]\nworkers = 2\nclient_header_timeout = 1\naccess_log = {:?}\n{server}\n\
         [http]\nport = 0\n{bind}{http}\n[admin]\nbind = \"127.0.0.1:0\"\n",
        redis.url(),
        log.to_str().unwrap()
    );
    let proxy = Lopache::start_config(&cfg, &[]);
    Site {
        _redis: redis,
        _backend: backend,
        proxy,
        log,
        _dir: dir,
    }
}

const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: app.example\r\n\r\n";

/// Sends `header` then a request on one connection; the response.
fn through(addr: SocketAddr, header: &[u8]) -> HttpResponse {
    let mut conn = RawConn::connect(addr);
    conn.send(&[header, REQUEST].concat());
    conn.read_response(false)
}

fn refused_count(site: &Site) -> u64 {
    harness::metric_total(
        site.proxy.admin_addr.unwrap(),
        "lopache_proxy_protocol_refused_total",
    )
}

/// The connection is closed without a byte of answer.
fn closed_silently(mut conn: TcpStream) {
    conn.set_read_timeout(Some(harness::WAIT)).unwrap();
    let mut rest = Vec::new();
    let _ = conn.read_to_end(&mut rest);
    assert!(
        rest.is_empty(),
        "answered: {}",
        String::from_utf8_lossy(&rest)
    );
}

fn relayed(source: &str, destination: &str) -> Relayed {
    Relayed {
        source: source.parse().unwrap(),
        destination: destination.parse().unwrap(),
    }
}

#[test]
fn version_1_names_the_client() {
    let site = site("proxy_protocol = true", "");
    let addr = site.proxy.addr;
    let r = through(addr, b"PROXY TCP4 192.0.2.7 10.0.0.1 56324 443\r\n");
    assert_eq!(r.text(), "xff=192.0.2.7 real=192.0.2.7 port=443 proto=http");
    let r = through(addr, b"PROXY TCP6 2001:db8::7 2001:db8::1 56324 8443\r\n");
    assert_eq!(
        r.text(),
        "xff=2001:db8::7 real=2001:db8::7 port=8443 proto=http"
    );
    // An IPv4 client written as IPv6 is the IPv4 client.
    let r = through(
        addr,
        b"PROXY TCP6 ::ffff:192.0.2.9 ::ffff:10.0.0.1 1 80\r\n",
    );
    assert!(
        r.text().starts_with("xff=192.0.2.9 real=192.0.2.9 "),
        "{}",
        r.text()
    );
    // UNKNOWN: the balancer could not tell; the connection's own peer stands.
    let port = addr.port();
    let r = through(addr, b"PROXY UNKNOWN\r\n");
    assert_eq!(
        r.text(),
        format!("xff=127.0.0.1 real=127.0.0.1 port={port} proto=http")
    );
    // Keep-alive goes on after the header: one header per connection.
    let mut conn = RawConn::connect(addr);
    conn.send(&[&b"PROXY TCP4 198.51.100.2 10.0.0.1 1 80\r\n"[..], REQUEST].concat());
    assert!(conn
        .read_response(false)
        .text()
        .contains("real=198.51.100.2"));
    conn.send(REQUEST);
    assert!(conn
        .read_response(false)
        .text()
        .contains("real=198.51.100.2"));
    // The access log names the relayed client.
    let lines = wait_for("six access log lines", || {
        let text = std::fs::read_to_string(&site.log).unwrap_or_default();
        (text.lines().count() >= 6).then_some(text)
    });
    // Sorted: the two shards flush their lines independently.
    let mut peers: Vec<&str> = lines
        .lines()
        .map(|l| l.split(' ').next().unwrap())
        .collect();
    peers.sort();
    assert_eq!(
        peers,
        [
            "127.0.0.1",
            "192.0.2.7",
            "192.0.2.9",
            "198.51.100.2",
            "198.51.100.2",
            "2001:db8::7"
        ]
    );
    assert_eq!(refused_count(&site), 0);
}

#[test]
fn version_2_with_tlvs_and_local() {
    let site = site("proxy_protocol = true", "");
    let addr = site.proxy.addr;
    // An AWS-style VPC endpoint TLV and an ALPN TLV.
    let tlvs = [
        &[0xea, 0x00, 0x06, 0x01][..],
        b"vpce-",
        &[0x01, 0x00, 0x02],
        b"h2",
    ]
    .concat();
    let header = v2_header(&relayed("203.0.113.9:40000", "10.1.2.3:80"), &tlvs);
    assert_eq!(
        through(addr, &header).text(),
        "xff=203.0.113.9 real=203.0.113.9 port=80 proto=http"
    );
    let header = v2_header(&relayed("[2001:db8::9]:40000", "[2001:db8::1]:8080"), &[]);
    assert_eq!(
        through(addr, &header).text(),
        "xff=2001:db8::9 real=2001:db8::9 port=8080 proto=http"
    );
    // LOCAL (the balancer's own health check): the peer stands.
    let mut local = v2_header(&relayed("203.0.113.9:40000", "10.1.2.3:80"), &[]);
    local[12] = 0x20;
    assert!(through(addr, &local).text().contains("real=127.0.0.1 "));
    assert_eq!(refused_count(&site), 0);
}

#[test]
fn a_header_split_over_many_packets_is_read_whole() {
    let site = site("proxy_protocol = true", "");
    let v1 = b"PROXY TCP4 192.0.2.55 10.0.0.1 1234 80\r\n".to_vec();
    let v2 = v2_header(
        &relayed("192.0.2.66:1", "10.0.0.1:81"),
        &[0x04, 0x00, 0x01, b'x'],
    );
    for (header, client) in [(v1, "192.0.2.55"), (v2, "192.0.2.66")] {
        let mut conn = TcpStream::connect(site.proxy.addr).unwrap();
        conn.set_nodelay(true).unwrap();
        conn.set_read_timeout(Some(harness::WAIT)).unwrap();
        // One byte per segment, the request's first bytes in the header's
        // last segment: lopache must take the header and leave the rest.
        let (last, bytes) = header.split_last().unwrap();
        for &b in bytes {
            conn.write_all(&[b]).unwrap();
            // A pause lets each byte leave as its own segment (the point of
            // the test), not as a synchronisation.
            std::thread::sleep(Duration::from_millis(2));
        }
        conn.write_all(&[&[*last][..], REQUEST].concat()).unwrap();
        let r = RawConn::over(conn).read_response(false);
        assert_eq!(r.status, 200);
        assert!(
            r.text().contains(&format!("real={client} ")),
            "{}",
            r.text()
        );
    }
}

#[test]
fn bad_missing_and_late_headers_close_the_connection() {
    let site = site("proxy_protocol = true", "");
    let addr = site.proxy.addr;
    let mut oversized_v2 = v2_header(&relayed("192.0.2.1:1", "10.0.0.1:80"), &[]);
    oversized_v2[14..16].copy_from_slice(&5000u16.to_be_bytes());
    let cases: Vec<Vec<u8>> = vec![
        // No header at all: a plain request.
        REQUEST.to_vec(),
        // Malformed v1.
        b"PROXY TCP4 192.0.2.1 10.0.0.1 99999 80\r\n".to_vec(),
        b"PROXY TCP4 192.0.2.1 10.0.0.1 1 80\n".to_vec(),
        // Over v1's 107 bytes.
        [&b"PROXY UNKNOWN "[..], &[b'x'; 120], b"\r\n"].concat(),
        // v2 longer than lopache takes (answered without waiting for it).
        oversized_v2,
        // v2 with a bad command.
        {
            let mut h = v2_header(&relayed("192.0.2.1:1", "10.0.0.1:80"), &[]);
            h[12] = 0x22;
            h
        },
    ];
    for (i, bytes) in cases.iter().enumerate() {
        let mut conn = TcpStream::connect(addr).unwrap();
        conn.write_all(bytes).unwrap();
        closed_silently(conn);
        assert_eq!(refused_count(&site), i as u64 + 1, "case {i}");
    }
    // Truncated, then the client closes its side.
    let mut conn = TcpStream::connect(addr).unwrap();
    conn.write_all(b"PROXY TCP4 192.0.2.1").unwrap();
    conn.shutdown(std::net::Shutdown::Write).unwrap();
    closed_silently(conn);
    // Truncated, then silence: closed at client_header_timeout (1 s).
    let mut conn = TcpStream::connect(addr).unwrap();
    conn.write_all(&v2_header(&relayed("192.0.2.1:1", "10.0.0.1:80"), &[])[..20])
        .unwrap();
    closed_silently(conn);
    // Nothing at all: also closed at the timeout.
    closed_silently(TcpStream::connect(addr).unwrap());
    wait_for("every refusal counted", || {
        (refused_count(&site) == cases.len() as u64 + 3).then_some(())
    });
    // The shard serves on.
    let r = through(addr, b"PROXY TCP4 192.0.2.8 10.0.0.1 1 80\r\n");
    assert!(r.text().contains("real=192.0.2.8 "));
}

#[test]
fn proxy_protocol_from_limits_who_sends_it() {
    // 127.0.0.1 is not a balancer here: its connections are direct clients,
    // and a PROXY line from it is just a bad request.
    let direct = site(
        "proxy_protocol = true",
        "proxy_protocol_from = [\"10.0.0.0/8\"]",
    );
    let r = through(direct.proxy.addr, b"");
    assert!(r.text().contains("real=127.0.0.1 "), "{}", r.text());
    let r = through(direct.proxy.addr, b"PROXY TCP4 192.0.2.1 10.0.0.1 1 80\r\n");
    assert_eq!(r.status, 400);
    assert_eq!(refused_count(&direct), 0);
    // A range that holds the peer: the header is required and honoured.
    let balanced = site(
        "proxy_protocol = true",
        "proxy_protocol_from = [\"127.0.0.0/8\", \"::1\"]",
    );
    let r = through(
        balanced.proxy.addr,
        b"PROXY TCP4 192.0.2.1 10.0.0.1 1 80\r\n",
    );
    assert!(r.text().contains("real=192.0.2.1 "), "{}", r.text());
    closed_silently({
        let mut c = TcpStream::connect(balanced.proxy.addr).unwrap();
        c.write_all(REQUEST).unwrap();
        c
    });
}

#[test]
fn a_bind_table_entry_overrides_its_section() {
    // Two listeners: the first reads headers, the second does not.
    let site = site(
        "bind = [{ address = \"127.0.0.1\", proxy_protocol = true }, \"127.0.0.2\"]",
        "",
    );
    let r = through(site.proxy.addr, b"PROXY TCP4 192.0.2.3 10.0.0.1 1 80\r\n");
    assert!(r.text().contains("real=192.0.2.3 "), "{}", r.text());
    let stderr = site.proxy.stderr();
    let second = stderr
        .split_whitespace()
        .find_map(|w| {
            w.trim_matches(|c| c == ',' || c == ')')
                .strip_prefix("127.0.0.2:")
        })
        .and_then(|p| p.parse::<u16>().ok())
        .map(|port| SocketAddr::from(([127, 0, 0, 2], port)))
        .unwrap_or_else(|| panic!("second listener's address in {stderr}"));
    let r = through(second, b"");
    assert!(r.text().contains("real=127.0.0.1 "), "{}", r.text());
}

#[test]
fn tls_starts_after_the_header() {
    let pki = Pki::new();
    let dir = TempDir::new("tls");
    pki.leaf(&["secure.example"]).write(dir.path(), "site");
    let redis = Redis::start();
    let backend = echo_backend();
    redis.frontend("", "secure.example", "secure", &[backend.url()]);
    let cfg = format!(
        "driver = {:?}\n[server]\nworkers = 2\n[http]\nport = 0\nbind = [\"127.0.0.1\"]\n\
         [https]\nport = 0\nbind = [\"127.0.0.1\"]\nproxy_protocol = true\ncert = {:?}\nkey = {:?}\n",
        redis.url(),
        dir.path().join("site.crt"),
        dir.path().join("site.key")
    );
    let proxy = Lopache::start_config(&cfg, &[]);
    let tls_addr = proxy.https_addr.unwrap();
    let mut tcp = TcpStream::connect(tls_addr).unwrap();
    tcp.write_all(&v2_header(&relayed("192.0.2.44:5555", "10.0.0.1:443"), &[]))
        .unwrap();
    let client = pki.client(&[&rustls::version::TLS13]);
    let mut conn = connect_over(tcp, "secure.example", client).expect("handshake");
    conn.send(b"GET / HTTP/1.1\r\nHost: secure.example\r\n\r\n");
    assert_eq!(
        conn.read_response(false).text(),
        "xff=192.0.2.44 real=192.0.2.44 port=443 proto=https"
    );
    // The plain listener of the same config does not expect a header.
    let r = harness::get(proxy.addr, "secure.example", "/");
    assert!(r.text().contains("real=127.0.0.1 "), "{}", r.text());
}

/// HAProxy in TCP mode on a free port, relaying to `to` with `send`
/// (`send-proxy` or `send-proxy-v2`).
struct Haproxy {
    child: Child,
    addr: SocketAddr,
    _dir: TempDir,
}

impl Haproxy {
    fn start(to: SocketAddr, send: &str) -> Haproxy {
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let dir = TempDir::new("haproxy");
        let cfg = dir.path().join("haproxy.cfg");
        std::fs::write(
            &cfg,
            format!(
                "defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 30s\n  timeout server 30s\n\
                 frontend f\n  bind {addr}\n  default_backend b\n\
                 backend b\n  server lopache {to} {send}\n"
            ),
        )
        .unwrap();
        let child = Command::new(haproxy_binary())
            .args(["-db", "-f"])
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start haproxy");
        wait_for("haproxy to listen", || TcpStream::connect(addr).ok());
        Haproxy {
            child,
            addr,
            _dir: dir,
        }
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn haproxy_binary() -> &'static str {
    if std::path::Path::new("/usr/sbin/haproxy").exists() {
        "/usr/sbin/haproxy"
    } else {
        "haproxy"
    }
}

#[test]
fn haproxy_as_the_sender() {
    let site = site("proxy_protocol = true", "");
    for send in ["send-proxy", "send-proxy-v2"] {
        let haproxy = Haproxy::start(site.proxy.addr, send);
        // The client comes from 127.0.0.2, HAProxy from 127.0.0.1: the
        // backend must hear of the former.
        let socket =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        socket
            .bind(&SocketAddr::from(([127, 0, 0, 2], 0)).into())
            .unwrap();
        socket.connect(&haproxy.addr.into()).unwrap();
        let stream: TcpStream = socket.into();
        stream.set_read_timeout(Some(harness::WAIT)).unwrap();
        let mut conn = RawConn::over(stream);
        conn.send(REQUEST);
        let r = conn.read_response(false);
        let port = haproxy.addr.port();
        assert_eq!(
            r.text(),
            format!("xff=127.0.0.2 real=127.0.0.2 port={port} proto=http"),
            "{send}"
        );
    }
    assert_eq!(refused_count(&site), 0);
}

#[test]
fn config_errors_name_the_key() {
    let check = |extra: &str, http: &str, want: &str| {
        let (code, _, stderr) = harness::proxy::dry(&format!(
            "[server]\n{extra}\n[http]\nport = 0\nbind = [\"127.0.0.1\"]\n{http}\n"
        ));
        assert_eq!(code, Some(2), "{stderr}");
        assert!(stderr.contains(want), "{stderr}");
    };
    check(
        "proxy_protocol_from = [\"10.0.0.0/8\"]",
        "",
        "server.proxy_protocol_from: no listener has proxy_protocol = true",
    );
    check(
        "proxy_protocol_from = [\"10.0.0.0/8\", \"10.0.0.0/33\"]",
        "proxy_protocol = true",
        "server.proxy_protocol_from[1]:",
    );
}
