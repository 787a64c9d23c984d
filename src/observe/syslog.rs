//! The access log sent to syslog (`server.access_log = "syslog"`, PlanB's
//! `--access-log syslog`): one message per line, a datagram each. To a UDP
//! address, RFC 5424. To the local socket (`/dev/log`, or another local
//! path), the format glibc's syslog(3) and Go's log/syslog write there,
//! `<PRI>Mmm dd hh:mm:ss TAG[PID]: MSG`, because that is what the readers
//! of that socket parse: rsyslog's imuxsock (its default parser for the
//! system socket) reads an RFC 5424 message there as APP-NAME `1`, and
//! journald takes the identifier from `TAG[PID]:`. The sends
//! happen on the access log's writer thread and never wait: a datagram the
//! socket will not take now (the receiver is behind, or not there) is
//! dropped and counted.

use std::io::{self, Write};
use std::net::{SocketAddr, UdpSocket};
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::time::SystemTime;

use super::access_log::{Utc, MONTHS};

/// The local syslog socket.
pub const DEV_LOG: &str = "/dev/log";
/// Severity of every access log message: informational.
const SEVERITY_INFO: u8 = 6;

/// Where messages go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyslogAddr {
    /// A local datagram socket: `/dev/log`, or `syslog:unix:///path`.
    Unix(PathBuf),
    /// `syslog:udp://host:port`, resolved when the config is read.
    Udp(SocketAddr),
}

/// `server.access_log = "syslog..."` with `server.syslog_facility` and
/// `server.syslog_tag`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyslogTarget {
    pub addr: SyslogAddr,
    /// The facility's number (local0 = 16).
    pub facility: u8,
    /// APP-NAME: printable ASCII, at most 48 characters (RFC 5424).
    pub tag: String,
}

impl SyslogAddr {
    /// `syslog`, `syslog:unix:///path` or `syslog:udp://host:port`; `None`
    /// for any other access log setting; `Err` for a `syslog:` one that is
    /// not understood.
    pub fn parse(setting: &str) -> Option<Result<SyslogAddr, String>> {
        if setting == "syslog" {
            return Some(Ok(SyslogAddr::Unix(DEV_LOG.into())));
        }
        let rest = setting.strip_prefix("syslog:")?;
        Some(if let Some(path) = rest.strip_prefix("unix://") {
            if path.starts_with('/') {
                Ok(SyslogAddr::Unix(path.into()))
            } else {
                Err(format!(
                    "{setting:?}: expected an absolute path after unix://"
                ))
            }
        } else if let Some(host_port) = rest.strip_prefix("udp://") {
            use std::net::ToSocketAddrs;
            host_port
                .to_socket_addrs()
                .ok()
                .and_then(|mut addrs| addrs.next())
                .map(SyslogAddr::Udp)
                .ok_or_else(|| format!("{setting:?}: expected udp://host:port"))
        } else {
            Err(format!(
                "{setting:?}: expected \"syslog\", \"syslog:udp://host:port\" or \"syslog:unix:///path\""
            ))
        })
    }
}

impl std::fmt::Display for SyslogAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SyslogAddr::Unix(path) if path.as_os_str() == DEV_LOG => f.write_str("syslog"),
            SyslogAddr::Unix(path) => write!(f, "syslog:unix://{}", path.display()),
            SyslogAddr::Udp(addr) => write!(f, "syslog:udp://{addr}"),
        }
    }
}

/// The facilities by name, as `<syslog.h>` and syslog.conf name them
/// (`security` is syslog.conf's old name for `auth`).
pub fn facility(name: &str) -> Option<u8> {
    const NAMES: [(&str, u8); 21] = [
        ("kern", 0),
        ("user", 1),
        ("mail", 2),
        ("daemon", 3),
        ("auth", 4),
        ("security", 4),
        ("syslog", 5),
        ("lpr", 6),
        ("news", 7),
        ("uucp", 8),
        ("cron", 9),
        ("authpriv", 10),
        ("ftp", 11),
        ("local0", 16),
        ("local1", 17),
        ("local2", 18),
        ("local3", 19),
        ("local4", 20),
        ("local5", 21),
        ("local6", 22),
        ("local7", 23),
    ];
    NAMES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|&(_, code)| code)
}

/// A tag RFC 5424 allows as APP-NAME.
pub fn valid_tag(tag: &str) -> bool {
    crate::ascii::is_visible(tag.as_bytes(), 48)
}

enum Socket {
    Unix(UnixDatagram, PathBuf),
    Udp(UdpSocket, SocketAddr),
}

/// The writer thread's end.
pub struct Sink {
    socket: Socket,
    /// `<PRI>1 ` (RFC 5424) or `<PRI>` (local) before the time.
    pri: Vec<u8>,
    /// ` HOSTNAME APP-NAME PROCID MSGID - ` (RFC 5424) or ` TAG[PID]: `
    /// (local) after the time.
    fields: Vec<u8>,
    /// A send failed since the last warning.
    failing: bool,
}

impl Sink {
    pub fn open(target: &SyslogTarget) -> io::Result<Sink> {
        let socket = match &target.addr {
            SyslogAddr::Unix(path) => Socket::Unix(UnixDatagram::unbound()?, path.clone()),
            SyslogAddr::Udp(addr) => {
                let any: SocketAddr = match addr {
                    SocketAddr::V4(_) => ([0, 0, 0, 0], 0).into(),
                    SocketAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
                };
                Socket::Udp(UdpSocket::bind(any)?, *addr)
            }
        };
        match &socket {
            Socket::Unix(s, _) => s.set_nonblocking(true)?,
            Socket::Udp(s, _) => s.set_nonblocking(true)?,
        }
        let pri = u16::from(target.facility) * 8 + u16::from(SEVERITY_INFO);
        let (tag, pid) = (&target.tag, std::process::id());
        let (pri, fields) = match &socket {
            Socket::Udp(..) => (
                format!("<{pri}>1 "),
                format!(" {} {tag} {pid} access - ", hostname()),
            ),
            Socket::Unix(..) => (format!("<{pri}>"), format!(" {tag}[{pid}]: ")),
        };
        Ok(Sink {
            socket,
            pri: pri.into_bytes(),
            fields: fields.into_bytes(),
            failing: false,
        })
    }

    /// Sends each line of `batch` as one message; how many were dropped.
    pub fn send_batch(&mut self, batch: &[u8]) -> u64 {
        let mut stamp = Vec::with_capacity(32);
        match &self.socket {
            Socket::Udp(..) => rfc3339(SystemTime::now(), &mut stamp),
            Socket::Unix(..) => local_stamp(SystemTime::now(), &mut stamp),
        }
        let mut message = Vec::with_capacity(512);
        let mut dropped = 0;
        for line in batch.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            message.clear();
            message.extend_from_slice(&self.pri);
            message.extend_from_slice(&stamp);
            message.extend_from_slice(&self.fields);
            message.extend_from_slice(line);
            let sent = match &self.socket {
                Socket::Unix(s, path) => s.send_to(&message, path),
                Socket::Udp(s, addr) => s.send_to(&message, addr),
            };
            match sent {
                Ok(_) => self.failing = false,
                Err(e) => {
                    if !self.failing {
                        crate::log_warn!("syslog access log: {e}; dropping lines (counted)");
                        self.failing = true;
                    }
                    dropped += 1;
                }
            }
        }
        dropped
    }
}

/// This machine's name, as RFC 5424's HOSTNAME (`-` if unknown).
fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most `buf.len()` bytes into `buf`.
    let ok = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } == 0;
    let name = buf.split(|&b| b == 0).next().unwrap_or_default();
    match std::str::from_utf8(name) {
        Ok(n) if ok && valid_tag(n) => n.to_string(),
        _ => "-".to_string(),
    }
}

/// `Dec  6 15:57:30` (UTC; the local socket's readers stamp messages with
/// their own clock anyway).
fn local_stamp(t: SystemTime, out: &mut Vec<u8>) {
    let u = Utc::at(t);
    let _ = write!(
        out,
        "{} {:>2} {:02}:{:02}:{:02}",
        MONTHS[(u.month - 1) as usize],
        u.day,
        u.hour,
        u.minute,
        u.second
    );
}

/// `2026-12-06T15:57:30.123456Z`.
fn rfc3339(t: SystemTime, out: &mut Vec<u8>) {
    let u = Utc::at(t);
    let _ = write!(
        out,
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
        u.year, u.month, u.day, u.hour, u.minute, u.second, u.micros
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn settings() {
        assert_eq!(
            SyslogAddr::parse("syslog"),
            Some(Ok(SyslogAddr::Unix(DEV_LOG.into())))
        );
        assert_eq!(
            SyslogAddr::parse("syslog:unix:///run/log.sock"),
            Some(Ok(SyslogAddr::Unix("/run/log.sock".into())))
        );
        assert_eq!(
            SyslogAddr::parse("syslog:udp://127.0.0.1:514"),
            Some(Ok(SyslogAddr::Udp("127.0.0.1:514".parse().unwrap())))
        );
        assert_eq!(SyslogAddr::parse("/var/log/syslog"), None);
        assert_eq!(SyslogAddr::parse("stdout"), None);
        for bad in [
            "syslog:",
            "syslog:tcp://x:1",
            "syslog:udp://nohost",
            "syslog:unix://rel",
        ] {
            assert!(matches!(SyslogAddr::parse(bad), Some(Err(_))), "{bad}");
        }
        for s in [
            "syslog",
            "syslog:unix:///run/x",
            "syslog:udp://127.0.0.1:514",
        ] {
            assert_eq!(SyslogAddr::parse(s).unwrap().unwrap().to_string(), s);
        }
        assert_eq!(facility("local0"), Some(16));
        assert_eq!(facility("daemon"), Some(3));
        assert_eq!(facility("local8"), None);
        assert_eq!(facility("security"), Some(4));
        assert_eq!(facility("local7"), Some(23));
        assert_eq!(facility("solaris-cron"), None);
        assert!(valid_tag("lopache") && !valid_tag("a b") && !valid_tag(""));
    }

    #[test]
    fn time_stamps() {
        let mut out = Vec::new();
        rfc3339(
            UNIX_EPOCH + Duration::from_micros(1_795_341_600_123_456),
            &mut out,
        );
        assert_eq!(out, b"2026-11-22T10:00:00.123456Z");
        let mut out = Vec::new();
        local_stamp(UNIX_EPOCH + Duration::from_secs(1_796_550_000), &mut out);
        assert_eq!(out, b"Dec  6 09:40:00");
    }

    #[test]
    fn one_message_per_line_and_drops_counted() {
        let receiver = UdpSocket::bind("127.0.0.1:0").unwrap();
        receiver
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let target = SyslogTarget {
            addr: SyslogAddr::Udp(receiver.local_addr().unwrap()),
            facility: 16,
            tag: "edge".into(),
        };
        let mut sink = Sink::open(&target).unwrap();
        assert_eq!(sink.send_batch(b"first line\nsecond line\n"), 0);
        let mut buf = [0u8; 1024];
        for want in ["first line", "second line"] {
            let n = receiver.recv(&mut buf).unwrap();
            let msg = std::str::from_utf8(&buf[..n]).unwrap();
            assert!(msg.starts_with("<134>1 20"), "{msg}");
            let pid = std::process::id();
            assert!(
                msg.ends_with(&format!(" edge {pid} access - {want}")),
                "{msg}"
            );
        }
        // Nobody at the path: every line dropped and counted.
        let gone = SyslogTarget {
            addr: SyslogAddr::Unix("/nonexistent/lopache-test.sock".into()),
            ..target
        };
        assert_eq!(Sink::open(&gone).unwrap().send_batch(b"a\nb\nc\n"), 3);
    }

    #[test]
    fn a_full_local_socket_drops_instead_of_waiting() {
        let dir = std::env::temp_dir().join(format!("lopache-syslog-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("full.sock");
        let _ = std::fs::remove_file(&path);
        let _receiver = UnixDatagram::bind(&path).unwrap();
        let mut sink = Sink::open(&SyslogTarget {
            addr: SyslogAddr::Unix(path.clone()),
            facility: 16,
            tag: "t".into(),
        })
        .unwrap();
        let batch = b"line\n".repeat(5000);
        let dropped = sink.send_batch(&batch);
        let _ = std::fs::remove_dir_all(&dir);
        assert!(dropped > 0 && dropped < 5000, "{dropped}");
    }
}
