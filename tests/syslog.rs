//! The access log sent to syslog (`server.access_log = "syslog..."`) by the
//! real binary: RFC 5424 messages with the configured facility and tag to a
//! UDP receiver and a local datagram socket the test binds; rsyslog itself
//! as the receiver, on both; and a receiver that stops reading costs
//! lines (counted), never requests.

mod harness;

use std::net::UdpSocket;
use std::os::unix::net::UnixDatagram;
use std::process::{Child, Command, Stdio};

use harness::{get, wait_for, Backend, Lopache, Redis, TempDir};

fn site(access_log: &str, extra: &str) -> (Redis, Backend, Lopache) {
    let redis = Redis::start();
    let app = Backend::named("app");
    redis.frontend("", "app.example", "mysite", &[app.url()]);
    let proxy = Lopache::start(
        &redis.url(),
        &format!("access_log = {access_log:?}\n{extra}"),
    );
    (redis, app, proxy)
}

/// The access log line for `path` as the message's end.
fn check_line(line: &str, msg: &str, path: &str) {
    assert!(line.starts_with("127.0.0.1 - - ["), "{msg}");
    assert!(
        line.contains(&format!("\"GET {path} HTTP/1.1\" 200 ")),
        "{msg}"
    );
    assert!(line.contains("\"mysite\""), "{msg}");
}

/// An RFC 5424 message (UDP): `<PRI>1 TIME HOST TAG PID access - LINE`.
fn check_rfc5424(msg: &str, pri: u16, tag: &str, pid: u32, path: &str) {
    let fields: Vec<&str> = msg.splitn(8, ' ').collect();
    assert_eq!(fields[0], format!("<{pri}>1"), "{msg}");
    let stamp = fields[1];
    assert!(
        stamp.len() == 27 && stamp.ends_with('Z') && stamp.as_bytes()[10] == b'T',
        "{msg}"
    );
    assert_eq!(
        &fields[3..7],
        [tag, &pid.to_string(), "access", "-"],
        "{msg}"
    );
    check_line(fields[7], msg, path);
}

/// A local-socket message: `<PRI>Mmm dd hh:mm:ss TAG[PID]: LINE`.
fn check_local(msg: &str, pri: u16, tag: &str, pid: u32, path: &str) {
    let rest = msg
        .strip_prefix(&format!("<{pri}>"))
        .unwrap_or_else(|| panic!("{msg}"));
    let (stamp, rest) = rest.split_at(15);
    assert_eq!(stamp.as_bytes()[3], b' ', "{msg}");
    assert_eq!(&stamp[9..10], ":", "{msg}");
    let line = rest
        .strip_prefix(&format!(" {tag}[{pid}]: "))
        .unwrap_or_else(|| panic!("{msg}"));
    check_line(line, msg, path);
}

#[test]
fn udp_and_local_datagram_receivers() {
    // UDP, facility local3 (19 * 8 + 6 = 158), tag "edge".
    let receiver = UdpSocket::bind("127.0.0.1:0").unwrap();
    receiver.set_read_timeout(Some(harness::WAIT)).unwrap();
    let setting = format!("syslog:udp://{}", receiver.local_addr().unwrap());
    let (_redis, _app, proxy) = site(
        &setting,
        "syslog_facility = \"local3\"\nsyslog_tag = \"edge\"",
    );
    for path in ["/one", "/two"] {
        assert_eq!(get(proxy.addr, "app.example", path).status, 200);
    }
    let mut buf = [0u8; 4096];
    let mut got = Vec::new();
    for _ in 0..2 {
        let n = receiver.recv(&mut buf).expect("a message");
        got.push(String::from_utf8(buf[..n].to_vec()).unwrap());
    }
    // The shards flush on their own: the order may be either.
    got.sort_by_key(|m| m.contains("/two"));
    let pid = proxy.worker_pid();
    check_rfc5424(&got[0], 158, "edge", pid, "/one");
    check_rfc5424(&got[1], 158, "edge", pid, "/two");

    // A local datagram socket (what /dev/log is), defaults local0/lopache.
    let dir = TempDir::new("syslog");
    let path = dir.path().join("log.sock");
    let receiver = UnixDatagram::bind(&path).unwrap();
    receiver.set_read_timeout(Some(harness::WAIT)).unwrap();
    let setting = format!("syslog:unix://{}", path.display());
    let (_redis, _app, proxy) = site(&setting, "");
    assert_eq!(get(proxy.addr, "app.example", "/three").status, 200);
    let n = receiver.recv(&mut buf).expect("a message");
    let msg = String::from_utf8(buf[..n].to_vec()).unwrap();
    check_local(&msg, 134, "lopache", proxy.worker_pid(), "/three");
}

fn dropped(proxy: &Lopache) -> u64 {
    harness::metric_total(
        proxy.admin_addr.unwrap(),
        "lopache_access_log_dropped_total",
    )
}

#[test]
fn a_receiver_that_stops_reading_costs_lines_not_requests() {
    const REQUESTS: u64 = 3000;
    let dir = TempDir::new("syslog");
    let path = dir.path().join("log.sock");
    // Bound, never read until the end: the socket's queue (512 datagrams
    // by default) fills, and lopache must drop rather than wait.
    let receiver = UnixDatagram::bind(&path).unwrap();
    let redis = Redis::start();
    let app = Backend::named("app");
    redis.frontend("", "app.example", "mysite", &[app.url()]);
    let cfg = harness::proxy::config(
        &format!("{:?}", redis.url()),
        &format!("access_log = \"syslog:unix://{}\"", path.display()),
    ) + "[admin]\nbind = \"127.0.0.1:0\"\n";
    let proxy = Lopache::start_config(&cfg, &[]);
    let mut conn = harness::RawConn::connect(proxy.addr);
    for _ in 0..REQUESTS {
        conn.send(b"GET / HTTP/1.1\r\nHost: app.example\r\n\r\n");
        assert_eq!(conn.read_response(false).status, 200);
    }
    // Every line is either in the receiver's queue or counted as dropped.
    receiver.set_nonblocking(true).unwrap();
    let mut received = 0;
    let mut buf = [0u8; 4096];
    wait_for("every line received or counted", || {
        while receiver.recv(&mut buf).is_ok() {
            received += 1;
        }
        (received + dropped(&proxy) == REQUESTS).then_some(())
    });
    assert!(dropped(&proxy) > 0, "the queue never filled");
    assert!(received > 0);
    // And once the receiver reads again, lines arrive again.
    assert_eq!(get(proxy.addr, "app.example", "/after").status, 200);
    receiver.set_nonblocking(false).unwrap();
    receiver.set_read_timeout(Some(harness::WAIT)).unwrap();
    let n = receiver.recv(&mut buf).expect("a line after the drops");
    assert!(String::from_utf8_lossy(&buf[..n]).contains("GET /after "));
}

/// rsyslogd in the foreground with its own config, socket and output file.
struct Rsyslog {
    child: Child,
    out: std::path::PathBuf,
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Rsyslog {
    fn start(dir: &std::path::Path, socket: &std::path::Path, udp_port: u16) -> Rsyslog {
        let out = dir.join("out.log");
        let conf = dir.join("rsyslog.conf");
        std::fs::write(
            &conf,
            format!(
                "global(workDirectory=\"{dir}\")\n\
                 module(load=\"imuxsock\" SysSock.Use=\"off\")\n\
                 input(type=\"imuxsock\" Socket=\"{socket}\")\n\
                 module(load=\"imudp\")\n\
                 input(type=\"imudp\" address=\"127.0.0.1\" port=\"{udp_port}\")\n\
                 template(name=\"fields\" type=\"string\" \
                 string=\"%syslogfacility-text% %syslogseverity-text% %app-name% %msgid% %msg%\\n\")\n\
                 *.* action(type=\"omfile\" file=\"{out}\" template=\"fields\")\n",
                dir = dir.display(),
                socket = socket.display(),
                out = out.display()
            ),
        )
        .unwrap();
        let binary = ["/usr/sbin/rsyslogd", "/sbin/rsyslogd"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .expect("rsyslogd (scripts/test.sh installs rsyslog)");
        let child = Command::new(binary)
            .arg("-n")
            .arg("-f")
            .arg(&conf)
            .arg("-i")
            .arg(dir.join("rsyslogd.pid"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start rsyslogd");
        wait_for("rsyslogd's socket", || socket.exists().then_some(()));
        Rsyslog { child, out }
    }

    fn lines(&self, n: usize) -> Vec<String> {
        wait_for(&format!("{n} lines from rsyslog"), || {
            let text = std::fs::read_to_string(&self.out).unwrap_or_default();
            let lines: Vec<String> = text.lines().map(str::to_string).collect();
            (lines.len() >= n).then_some(lines)
        })
    }
}

#[test]
fn rsyslog_receives_the_access_log() {
    let dir = TempDir::new("rsyslog");
    let socket = dir.path().join("log.sock");
    let udp_port = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let rsyslog = Rsyslog::start(dir.path(), &socket, udp_port);
    let (_r1, _a1, local) = site(&format!("syslog:unix://{}", socket.display()), "");
    assert_eq!(get(local.addr, "app.example", "/local").status, 200);
    let lines = rsyslog.lines(1);
    let (_r2, _a2, remote) = site(
        &format!("syslog:udp://127.0.0.1:{udp_port}"),
        "syslog_facility = \"daemon\"\nsyslog_tag = \"edge\"",
    );
    assert_eq!(get(remote.addr, "app.example", "/remote").status, 200);
    let lines = [lines, rsyslog.lines(2)].concat();
    let find = |path: &str| {
        lines
            .iter()
            .find(|l| l.contains(&format!("\"GET {path} HTTP/1.1\" 200 ")))
            .unwrap_or_else(|| panic!("no line for {path} in {lines:?}"))
            .clone()
    };
    // rsyslog parsed each header: facility, severity, APP-NAME, MSGID (only
    // RFC 5424 has one), and the access log line as the message (for the
    // local format after the space that follows `TAG[PID]:`).
    let local_line = find("/local");
    let message = local_line
        .strip_prefix("local0 info lopache - ")
        .unwrap_or_else(|| panic!("{local_line}"));
    assert!(
        message.trim_start().starts_with("127.0.0.1 - - ["),
        "{local_line}"
    );
    let remote_line = find("/remote");
    assert!(
        remote_line.starts_with("daemon info edge access 127.0.0.1 - - ["),
        "{remote_line}"
    );
}
