//! Redis Sentinel (`redis-sentinel://` driver URLs, PlanB's
//! `--*-redis-sentinel-*`): which server of a monitored master lopache
//! talks to, kept current without a restart. Per worker, one thread per
//! sentinel set asks a sentinel for the master's address
//! (`SENTINEL get-master-addr-by-name`), checks it with `ROLE`, and with
//! `?role=replica` picks a healthy replica instead (one on a loopback
//! address first); then it listens for `+switch-master` on that sentinel,
//! asks again on each switch and every few seconds, and moves to the next
//! sentinel when one stops answering. The shards' Redis clients read the
//! answer (an address and a generation) when they connect, and drop a
//! connection whose generation is no longer current before its next batch.
//! Nothing here runs on a shard: the shards only read two fields.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use super::codec::{decode_reply, encode_command, Reply};
use super::url::SentinelSet;
use crate::{log_debug, log_info, log_warn};

/// How long one sentinel or server may take to answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(1);
/// How often the address is asked for again without a `+switch-master`.
const RECHECK: Duration = Duration::from_secs(5);
/// The pause after every sentinel failed in turn.
const ALL_FAILED_PAUSE: Duration = Duration::from_millis(500);

/// The server lopache should talk to, as last found.
#[derive(Default)]
pub struct Watch {
    /// The address and its generation, read and written together.
    addr: Mutex<(Option<SocketAddr>, u64)>,
    /// The generation again, for the lock-free check before each batch.
    generation: AtomicU64,
}

impl Watch {
    /// The address and its generation, if one is known.
    pub fn current(&self) -> Option<(SocketAddr, u64)> {
        let (addr, generation) = *self.addr.lock().unwrap_or_else(|e| e.into_inner());
        addr.map(|a| (a, generation))
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Names `addr` (crate-visible for the client's tests, which play the
    /// sentinels' part).
    pub(crate) fn set(&self, addr: Option<SocketAddr>) -> bool {
        let mut current = self.addr.lock().unwrap_or_else(|e| e.into_inner());
        if current.0 == addr {
            return false;
        }
        *current = (addr, current.1 + 1);
        self.generation.store(current.1, Ordering::Release);
        true
    }

    /// The address, waiting (a 10 ms poll, off the shard's critical path:
    /// only a connecting client waits) until one is known or `timeout`.
    pub async fn wait_current(&self, timeout: Duration) -> Option<(SocketAddr, u64)> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(found) = self.current() {
                return Some(found);
            }
            if Instant::now() >= deadline {
                return None;
            }
            monoio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// Credentials for the servers (and the sentinels, if they ask).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Auth {
    pub username: Option<String>,
    pub password: Option<String>,
}

type Key = (SentinelSet, Auth);

fn watches() -> &'static Mutex<HashMap<Key, Arc<Watch>>> {
    static WATCHES: OnceLock<Mutex<HashMap<Key, Arc<Watch>>>> = OnceLock::new();
    WATCHES.get_or_init(Mutex::default)
}

/// The watch of a `redis-sentinel://` URL (`None` for other URLs).
pub fn for_url(url: &super::url::RedisUrl) -> Option<Arc<Watch>> {
    let super::url::Endpoint::Sentinel(set) = &url.endpoint else {
        return None;
    };
    let auth = Auth {
        username: url.username.clone(),
        password: url.password.clone(),
    };
    Some(watch(set, &auth))
}

/// The watch for a sentinel set; the first call starts its thread.
pub fn watch(set: &SentinelSet, auth: &Auth) -> Arc<Watch> {
    let mut all = watches().lock().unwrap_or_else(|e| e.into_inner());
    let key = (set.clone(), auth.clone());
    if let Some(found) = all.get(&key) {
        return found.clone();
    }
    let watch = Arc::new(Watch::default());
    let (set, auth, theirs) = (set.clone(), auth.clone(), watch.clone());
    let started = std::thread::Builder::new()
        .name("lopache-sentinel".into())
        .spawn(move || follow(&set, &auth, &theirs));
    if let Err(e) = started {
        log_warn!("sentinel: cannot start a thread: {e}");
    }
    all.insert(key, watch.clone());
    watch
}

/// The thread: one sentinel at a time, the next when it fails.
fn follow(set: &SentinelSet, auth: &Auth, watch: &Watch) {
    let mut failed_in_a_row = 0;
    for (host, port) in set.sentinels.iter().cycle() {
        match follow_one(set, (host, *port), auth, watch) {
            Ok(()) => failed_in_a_row = 0,
            Err(e) => {
                log_debug!("sentinel {host}:{port}: {e}");
                failed_in_a_row += 1;
            }
        }
        if failed_in_a_row >= set.sentinels.len() {
            if watch.current().is_none() {
                log_warn!("sentinel: no sentinel of {} answers", set.master);
            }
            failed_in_a_row = 0;
            std::thread::sleep(ALL_FAILED_PAUSE);
        }
    }
}

/// Follows one sentinel until it fails.
fn follow_one(
    set: &SentinelSet,
    sentinel: (&str, u16),
    auth: &Auth,
    watch: &Watch,
) -> io::Result<()> {
    let mut conn = Conn::open(sentinel, auth)?;
    resolve(&mut conn, set, auth, watch)?;
    let mut events = Conn::open(sentinel, auth)?;
    match events.command(&[b"SUBSCRIBE", b"+switch-master"])? {
        Reply::Array(_) => {}
        other => {
            return Err(io::Error::other(format!("SUBSCRIBE answered {other:?}")));
        }
    }
    let mut asked = Instant::now();
    loop {
        match events.read() {
            Ok(Reply::Array(parts)) if is_switch_of(&parts, &set.master) => {
                resolve(&mut conn, set, auth, watch)?;
                asked = Instant::now();
            }
            Ok(_) => {}
            Err(e)
                if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::TimedOut => {
            }
            Err(e) => return Err(e),
        }
        if asked.elapsed() >= RECHECK {
            resolve(&mut conn, set, auth, watch)?;
            asked = Instant::now();
        }
    }
}

/// `message`, `+switch-master`, `<master> <old ip> <old port> <new ip> <new port>`.
fn is_switch_of(parts: &[Reply], master: &str) -> bool {
    match parts {
        [Reply::BulkString(kind), _, Reply::BulkString(payload)] if kind == b"message" => payload
            .split(|&b| b == b' ')
            .next()
            .is_some_and(|name| name == master.as_bytes()),
        _ => false,
    }
}

/// Asks `conn`'s sentinel where to go and publishes it on `watch`. An
/// answer that cannot be confirmed (no master named, or one that is down or
/// not a master: a sentinel cut off from the others) leaves no address,
/// so clients do not write to a server that is no longer the master, and
/// fails, so that the next sentinel is asked.
fn resolve(conn: &mut Conn, set: &SentinelSet, auth: &Auth, watch: &Watch) -> io::Result<()> {
    let name = set.master.as_bytes();
    let master = match conn.command(&[b"SENTINEL", b"get-master-addr-by-name", name])? {
        Reply::Array(parts) => address(parts.first(), parts.get(1)),
        _ => None,
    };
    let master = master.filter(|&addr| role_of(addr, auth).as_deref() == Some("master"));
    let chosen = match (set.replica, master) {
        (true, _) => pick_replica(conn, name, auth).or(master),
        (false, m) => m,
    };
    let role = if set.replica { "read server" } else { "master" };
    if watch.set(chosen) {
        match chosen {
            Some(addr) => log_info!("sentinel: {} {role} is {addr}", set.master),
            None => log_warn!("sentinel: {} has no confirmed {role} now", set.master),
        }
    }
    match chosen {
        Some(_) => Ok(()),
        None => Err(io::Error::other(format!(
            "names no confirmed {role} of {}",
            set.master
        ))),
    }
}

/// A replica the sentinel thinks healthy and that says it is one; on a
/// loopback address if there is such.
fn pick_replica(conn: &mut Conn, name: &[u8], auth: &Auth) -> Option<SocketAddr> {
    let Ok(Reply::Array(replicas)) = conn.command(&[b"SENTINEL", b"replicas", name]) else {
        return None;
    };
    let mut healthy: Vec<SocketAddr> = replicas
        .iter()
        .filter_map(|r| {
            let Reply::Array(fields) = r else {
                return None;
            };
            let field = |key: &[u8]| {
                fields
                    .chunks(2)
                    .find(|kv| matches!(&kv[0], Reply::BulkString(k) if k == key))
                    .and_then(|kv| kv.get(1))
            };
            let text = |r: Option<&Reply>| match r {
                Some(Reply::BulkString(v)) => String::from_utf8(v.clone()).ok(),
                _ => None,
            };
            let flags = text(field(b"flags"))?;
            let link = text(field(b"master-link-status"))?;
            let down = flags
                .split(',')
                .any(|f| matches!(f, "s_down" | "o_down" | "disconnected"));
            if down || link != "ok" {
                return None;
            }
            address(field(b"ip"), field(b"port"))
        })
        .collect();
    healthy.sort_by_key(|a| !a.ip().is_loopback());
    healthy
        .into_iter()
        .find(|&addr| role_of(addr, auth).as_deref() == Some("slave"))
}

/// An address as sentinels announce it: an IP, or a host name (with
/// `announce-hostnames yes`), resolved here, on the sentinel thread.
fn address(host: Option<&Reply>, port: Option<&Reply>) -> Option<SocketAddr> {
    let (Some(Reply::BulkString(host)), Some(Reply::BulkString(port))) = (host, port) else {
        return None;
    };
    let host = std::str::from_utf8(host).ok()?;
    let port: u16 = std::str::from_utf8(port).ok()?.parse().ok()?;
    match host.parse() {
        Ok(ip) => Some(SocketAddr::new(ip, port)),
        Err(_) => (host, port).to_socket_addrs().ok()?.next(),
    }
}

/// What `ROLE` says the server at `addr` is (`master`, `slave`), if it answers.
fn role_of(addr: SocketAddr, auth: &Auth) -> Option<String> {
    let mut conn = Conn::connect(addr).ok()?;
    conn.login(auth).ok()?;
    match conn.command(&[b"ROLE"]).ok()? {
        Reply::Array(parts) => match parts.first() {
            Some(Reply::BulkString(role)) => String::from_utf8(role.clone()).ok(),
            _ => None,
        },
        _ => None,
    }
}

/// A blocking RESP connection with deadlines, for this thread only.
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    auth: Option<Auth>,
}

impl Conn {
    fn connect(addr: SocketAddr) -> io::Result<Conn> {
        let stream = TcpStream::connect_timeout(&addr, ANSWER_TIMEOUT)?;
        stream.set_read_timeout(Some(ANSWER_TIMEOUT))?;
        stream.set_write_timeout(Some(ANSWER_TIMEOUT))?;
        Ok(Conn {
            stream,
            buf: Vec::new(),
            auth: None,
        })
    }

    /// A sentinel: credentials are sent only if it asks for them.
    fn open((host, port): (&str, u16), auth: &Auth) -> io::Result<Conn> {
        let addr = (host, port).to_socket_addrs()?.next().ok_or_else(|| {
            io::Error::new(io::ErrorKind::NotFound, format!("{host} has no address"))
        })?;
        let mut conn = Conn::connect(addr)?;
        conn.auth = Some(auth.clone());
        Ok(conn)
    }

    fn login(&mut self, auth: &Auth) -> io::Result<()> {
        let Some(password) = &auth.password else {
            return Ok(());
        };
        let reply = match &auth.username {
            Some(user) => self.command(&[b"AUTH", user.as_bytes(), password.as_bytes()])?,
            None => self.command(&[b"AUTH", password.as_bytes()])?,
        };
        match reply {
            Reply::Error(e) => Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                e.to_string(),
            )),
            _ => Ok(()),
        }
    }

    fn send(&mut self, args: &[&[u8]]) -> io::Result<()> {
        let mut out = Vec::new();
        encode_command(&mut out, args);
        self.stream.write_all(&out)
    }

    fn command(&mut self, args: &[&[u8]]) -> io::Result<Reply> {
        self.send(args)?;
        let reply = self.read()?;
        if let Reply::Error(e) = &reply {
            if e.starts_with("NOAUTH") {
                if let Some(auth) = self.auth.take() {
                    self.login(&auth)?;
                    return self.command(args);
                }
            }
        }
        Ok(reply)
    }

    fn read(&mut self) -> io::Result<Reply> {
        loop {
            if let Ok(Some((reply, used))) = decode_reply(&self.buf) {
                self.buf.drain(..used);
                return Ok(reply);
            }
            if self.buf.len() > super::codec::MAX_REPLY_BYTES {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "reply too large",
                ));
            }
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk)? {
                0 => return Err(io::ErrorKind::UnexpectedEof.into()),
                n => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Reply {
        Reply::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn switch_messages() {
        let msg = |payload: &str| vec![bulk("message"), bulk("+switch-master"), bulk(payload)];
        assert!(is_switch_of(
            &msg("mymaster 127.0.0.1 1 127.0.0.1 2"),
            "mymaster"
        ));
        assert!(!is_switch_of(
            &msg("other 127.0.0.1 1 127.0.0.1 2"),
            "mymaster"
        ));
        assert!(!is_switch_of(
            &msg("mymaster2 127.0.0.1 1 127.0.0.1 2"),
            "mymaster"
        ));
        assert!(!is_switch_of(
            &[bulk("subscribe"), bulk("+switch-master"), Reply::Integer(1)],
            "mymaster"
        ));
    }

    #[test]
    fn a_watch_counts_changes_only() {
        let w = Watch::default();
        assert_eq!(w.current(), None);
        let a: SocketAddr = "127.0.0.1:1".parse().unwrap();
        assert!(w.set(Some(a)));
        assert!(!w.set(Some(a)));
        assert_eq!(w.current(), Some((a, 1)));
        assert!(w.set(None));
        assert_eq!((w.current(), w.generation()), (None, 2));
    }

    #[test]
    fn addresses() {
        assert_eq!(
            address(Some(&bulk("10.0.0.1")), Some(&bulk("6380"))),
            Some("10.0.0.1:6380".parse().unwrap())
        );
        assert_eq!(
            address(Some(&bulk("localhost")), Some(&bulk("6380"))).map(|a| a.port()),
            Some(6380)
        );
        assert_eq!(
            address(Some(&bulk("no such host.invalid")), Some(&bulk("1"))),
            None
        );
        assert_eq!(address(Some(&bulk("10.0.0.1")), Some(&bulk("x"))), None);
        assert_eq!(address(Some(&Reply::Null), None), None);
    }
}
