//! The access log, in Hipache's format:
//! `PEER - - [22/Nov/2026:10:00:00 +0000] "GET /path HTTP/1.1" 200 1234 "referer" "user-agent" "identifier" 0.011 0.009`
//! (body bytes sent; total and backend seconds). Each shard formats lines into
//! its own buffer; a flush every `FLUSH_INTERVAL` (or at `FLUSH_BYTES`) hands
//! the batch to one writer thread over a bounded channel, so a slow disk never
//! blocks a shard. A full channel drops the batch and counts the lines.
//! SIGUSR1 makes the writer reopen the file (for logrotate).

use std::cell::{Cell, RefCell};
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::metrics::{self, ShardMetrics};
use super::syslog::{Sink, SyslogAddr, SyslogTarget};
use crate::log_warn;

pub const FLUSH_INTERVAL: Duration = Duration::from_millis(100);
const FLUSH_BYTES: usize = 64 * 1024;
/// Batches waiting for the writer before shards start dropping.
const QUEUE_BATCHES: usize = 256;

/// One request, as logged.
pub struct Record<'a> {
    pub peer: IpAddr,
    pub started: SystemTime,
    /// `METHOD TARGET HTTP/x.y`.
    pub request_line: &'a [u8],
    pub status: u16,
    pub bytes: u64,
    pub referer: &'a [u8],
    pub user_agent: &'a [u8],
    pub identifier: &'a str,
    pub total: Duration,
    pub backend: Duration,
    /// With `server.request_id_header`: the request's ID, a last field.
    pub request_id: Option<&'a [u8]>,
}

/// Appends one line (with its newline).
pub fn format(r: &Record<'_>, out: &mut Vec<u8>) {
    let _ = write!(out, "{} - - [", r.peer);
    clf_time(r.started, out);
    out.extend_from_slice(b"] \"");
    escaped(r.request_line, out);
    let _ = write!(out, "\" {} {} \"", r.status, r.bytes);
    escaped(r.referer, out);
    out.extend_from_slice(b"\" \"");
    escaped(r.user_agent, out);
    out.extend_from_slice(b"\" \"");
    escaped(r.identifier.as_bytes(), out);
    let _ = write!(
        out,
        "\" {:.3} {:.3}",
        r.total.as_secs_f64(),
        r.backend.as_secs_f64()
    );
    if let Some(id) = r.request_id {
        out.extend_from_slice(b" \"");
        escaped(id, out);
        out.push(b'"');
    }
    out.push(b'\n');
}

/// Quotes and control bytes are escaped so a line can never be split or
/// forged by what a client sends.
fn escaped(field: &[u8], out: &mut Vec<u8>) {
    if field.is_empty() {
        out.push(b'-');
        return;
    }
    for &b in field {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            0x20..=0x7e => out.push(b),
            _ => {
                let _ = write!(out, "\\x{b:02X}");
            }
        }
    }
}

/// `22/Nov/2026:10:00:00 +0000` (UTC).
fn clf_time(t: SystemTime, out: &mut Vec<u8>) {
    let u = Utc::at(t);
    let _ = write!(
        out,
        "{:02}/{}/{}:{:02}:{:02}:{:02} +0000",
        u.day,
        MONTHS[(u.month - 1) as usize],
        u.year,
        u.hour,
        u.minute,
        u.second
    );
}

/// Month abbreviations, as both log time formats write them.
pub(super) const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// A time's UTC calendar fields.
pub(super) struct Utc {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
    pub micros: u32,
}

impl Utc {
    pub fn at(t: SystemTime) -> Utc {
        let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
        let secs = since.as_secs();
        let (days, rem) = (secs / 86_400, secs % 86_400);
        // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
        let z = days as i64 + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        Utc {
            year: yoe + era * 400 + i64::from(month <= 2),
            month: month as u32,
            day: day as u32,
            hour: (rem / 3600) as u32,
            minute: (rem / 60 % 60) as u32,
            second: (rem % 60) as u32,
            micros: since.subsec_micros(),
        }
    }
}

/// What the writer thread is told.
pub enum Message {
    Lines(Vec<u8>),
    Reopen,
}

/// `server.access_log`: where access log lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessLogTarget {
    /// `"none"`: no access log (and no per-request log work at all).
    Off,
    /// `"stdout"`: the worker's standard output.
    Stdout,
    /// Any other value: a file, appended to and reopened on SIGUSR1.
    File(PathBuf),
    /// `"syslog"`, `"syslog:udp://host:port"`, `"syslog:unix:///path"`.
    Syslog(SyslogTarget),
}

impl AccessLogTarget {
    /// A setting that is not syslog's (see [`SyslogAddr::parse`]).
    pub fn parse(setting: &str) -> AccessLogTarget {
        match setting {
            "none" => AccessLogTarget::Off,
            "stdout" => AccessLogTarget::Stdout,
            path => AccessLogTarget::File(PathBuf::from(path)),
        }
    }
}

impl std::fmt::Display for AccessLogTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AccessLogTarget::Off => f.write_str("none"),
            AccessLogTarget::Stdout => f.write_str("stdout"),
            AccessLogTarget::File(path) => write!(f, "{}", path.display()),
            AccessLogTarget::Syslog(target) => write!(f, "{}", target.addr),
        }
    }
}

/// Where the writer thread's lines go.
enum Target {
    Stdout,
    File(PathBuf, File),
    Syslog(Sink),
}

/// Opens (creating the file, never its directory) for appending.
fn open(path: &PathBuf) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

/// Starts the writer for `server.access_log`; `None` for `none`. Opening
/// a path fails here, before any shard starts. Lines the writer itself
/// drops (syslog would not take them) count in `dropped`'s
/// `access_log_dropped`.
pub fn start_writer(
    setting: &AccessLogTarget,
    dropped: Arc<ShardMetrics>,
) -> io::Result<Option<SyncSender<Message>>> {
    let target = match setting {
        AccessLogTarget::Off => return Ok(None),
        AccessLogTarget::Stdout => Target::Stdout,
        AccessLogTarget::File(path) => {
            let file = open(path)?;
            Target::File(path.clone(), file)
        }
        AccessLogTarget::Syslog(syslog) => {
            if let SyslogAddr::Unix(path) = &syslog.addr {
                if !path.exists() {
                    log_warn!(
                        "server.access_log: {} does not exist (yet): lines are dropped, counted, until a syslog daemon listens there",
                        path.display()
                    );
                }
            }
            Target::Syslog(Sink::open(syslog)?)
        }
    };
    let (tx, rx) = sync_channel(QUEUE_BATCHES);
    std::thread::Builder::new()
        .name("lopache-access-log".into())
        .spawn(move || write_loop(target, rx, &dropped))?;
    Ok(Some(tx))
}

fn write_loop(mut target: Target, rx: Receiver<Message>, metrics: &ShardMetrics) {
    for message in rx {
        match (message, &mut target) {
            (Message::Lines(batch), Target::Syslog(sink)) => {
                let dropped = sink.send_batch(&batch);
                metrics::add(&metrics.access_log_dropped, dropped);
            }
            (Message::Reopen, Target::Syslog(_)) => {}
            (Message::Lines(batch), Target::Stdout) => {
                let _ = io::stdout().lock().write_all(&batch);
            }
            (Message::Lines(batch), Target::File(_, file)) => {
                if let Err(e) = file.write_all(&batch) {
                    log_warn!("access log write failed: {e}");
                }
            }
            (Message::Reopen, Target::File(path, file)) => match open(path) {
                Ok(f) => *file = f,
                Err(e) => log_warn!("cannot reopen access log {}: {e}", path.display()),
            },
            (Message::Reopen, Target::Stdout) => {}
        }
    }
}

/// A shard's side: a buffer of formatted lines and the way to the writer.
pub struct AccessLog {
    tx: SyncSender<Message>,
    buf: RefCell<Vec<u8>>,
    /// Where lines dropped because the writer fell behind are counted
    /// (`access_log_dropped`, which the writer adds its own drops to).
    metrics: Arc<ShardMetrics>,
    /// The first drop has been warned about.
    warned: Cell<bool>,
}

impl AccessLog {
    pub fn new(tx: SyncSender<Message>, metrics: Arc<ShardMetrics>) -> Self {
        AccessLog {
            tx,
            buf: RefCell::new(Vec::with_capacity(FLUSH_BYTES)),
            metrics,
            warned: Cell::new(false),
        }
    }

    pub fn record(&self, r: &Record<'_>) {
        let full = {
            let mut buf = self.buf.borrow_mut();
            format(r, &mut buf);
            buf.len() >= FLUSH_BYTES
        };
        if full {
            self.flush();
        }
    }

    /// Hands the buffered lines to the writer without waiting.
    pub fn flush(&self) {
        let batch = std::mem::replace(&mut *self.buf.borrow_mut(), Vec::with_capacity(FLUSH_BYTES));
        if batch.is_empty() {
            return;
        }
        let lines = batch.iter().filter(|&&b| b == b'\n').count() as u64;
        match self.tx.try_send(Message::Lines(batch)) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                if !self.warned.replace(true) {
                    log_warn!("access log writer is behind: dropping lines (counted)");
                }
                metrics::add(&self.metrics.access_log_dropped, lines);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hipache_format() {
        let mut out = Vec::new();
        let started = UNIX_EPOCH + Duration::from_secs(1_795_341_600); // 2026-11-22 10:00:00 UTC
        format(
            &Record {
                peer: "10.0.0.9".parse().unwrap(),
                started,
                request_line: b"GET /path HTTP/1.1",
                status: 200,
                bytes: 1234,
                referer: b"http://ref/",
                user_agent: b"curl/8 \"quoted\"\n",
                identifier: "mysite",
                total: Duration::from_millis(11),
                backend: Duration::from_millis(9),
                request_id: None,
            },
            &mut out,
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "10.0.0.9 - - [22/Nov/2026:10:00:00 +0000] \"GET /path HTTP/1.1\" 200 1234 \"http://ref/\" \
             \"curl/8 \\\"quoted\\\"\\x0A\" \"mysite\" 0.011 0.009\n"
        );
    }

    #[test]
    fn a_request_id_is_the_last_field() {
        let mut out = Vec::new();
        format(
            &Record {
                peer: "10.0.0.9".parse().unwrap(),
                started: UNIX_EPOCH,
                request_line: b"GET / HTTP/1.1",
                status: 502,
                bytes: 0,
                referer: b"",
                user_agent: b"",
                identifier: "",
                total: Duration::ZERO,
                backend: Duration::ZERO,
                request_id: Some(b"4f1c\"x"),
            },
            &mut out,
        );
        assert!(String::from_utf8(out)
            .unwrap()
            .ends_with(" 0.000 0.000 \"4f1c\\\"x\"\n"),);
    }

    #[test]
    fn dates_across_years_and_leap_days() {
        let at = |s: u64| {
            let mut out = Vec::new();
            clf_time(UNIX_EPOCH + Duration::from_secs(s), &mut out);
            String::from_utf8(out).unwrap()
        };
        assert_eq!(at(0), "01/Jan/1970:00:00:00 +0000");
        assert_eq!(at(951_782_400), "29/Feb/2000:00:00:00 +0000");
        assert_eq!(at(1_798_761_599), "31/Dec/2026:23:59:59 +0000");
    }
}
