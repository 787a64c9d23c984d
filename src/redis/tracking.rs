//! Redis's client-side caching, as much of it as lopache needs: one
//! connection per server asks Redis (6 or later) to report every change to
//! keys under some prefixes (`CLIENT TRACKING on BCAST PREFIX ...`), and
//! hears the reports on that same connection. It names itself as the
//! `REDIRECT` target and subscribes to `__redis__:invalidate`, so the
//! reports arrive as ordinary RESP2 pub/sub messages: no RESP3 anywhere.
//! A PING after each second without a message proves the connection alive;
//! one not answered within the Redis timeout ends the session (as a lost
//! connection does), and the caller must then stop trusting what it cached.
//!
//! [`Unread`] lets the cache ask, before it serves a result, whether a
//! report has reached the connection and not been applied yet (bytes in the
//! socket, or a read in progress): a report that arrived before a request is
//! honoured for that request, whatever order the shard's tasks run in. An
//! [`ArrivalWatch`] on the socket answers that without a system call; where
//! io_uring is unavailable the socket is peeked instead.

use std::cell::{Cell, RefCell};
use std::os::fd::RawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::client::{connect, ConnError, Session};
use super::codec::{encode_command, string_bytes, Reply};
use super::sentinel::Watch;
use super::url::RedisUrl;
use crate::net::arrival::ArrivalWatch;
use crate::{log_debug, log_info, log_warn};

/// What a tracking session reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Tracking is on and subscribed: every change from now on is reported.
    Live,
    /// These keys changed (written, deleted, expired or evicted).
    Changed(Vec<Vec<u8>>),
    /// Anything may have changed: FLUSHALL/FLUSHDB, or a replica's full
    /// resynchronisation.
    All,
    /// The session ended: changes go unreported until the next `Live`.
    Lost,
}

/// Whether a session has received bytes it has not applied yet. Shared by
/// the session (which updates it) and the cache (which asks).
#[derive(Default)]
pub struct Unread {
    /// The live session's socket.
    fd: Cell<Option<RawFd>>,
    /// The session is reading or applying a message.
    busy: Cell<bool>,
    /// Fires when bytes reach the live session's socket; re-armed after
    /// each message is applied. `None`: peek instead.
    watch: RefCell<Option<ArrivalWatch>>,
    /// For a sentinel URL: the watch and the generation the session is on.
    /// Once the sentinels name another server, lookups go there at once
    /// while this session still hears the old one.
    followed: RefCell<Option<(Arc<Watch>, u64)>>,
}

impl Unread {
    /// Watches `fd` as if a session on it were live (for the cache's tests).
    #[cfg(test)]
    pub fn watch_for_test(&self, fd: RawFd, with_arrival_watch: bool) {
        let arrival = with_arrival_watch.then(|| arrival_watch(fd)).flatten();
        assert_eq!(arrival.is_some(), with_arrival_watch);
        self.watch(fd, arrival);
    }

    /// Starts watching a live session's socket, with `arrival` (made for
    /// that socket by `arrival_watch`) if there is one.
    fn watch(&self, fd: RawFd, mut arrival: Option<ArrivalWatch>) {
        if let Some(Err(e)) = arrival.as_mut().map(ArrivalWatch::rearm) {
            // Not quiet until armed: the socket is peeked meanwhile.
            log_debug!("arrival watch not armed: {e}");
        }
        self.watch.replace(arrival);
        self.busy.set(false);
        self.fd.set(Some(fd));
    }

    /// The live session's socket is gone: nothing may be trusted.
    fn unwatch(&self) {
        self.fd.set(None);
        self.watch.replace(None);
    }

    /// A message was read and applied: what arrives from now on counts.
    fn applied(&self) {
        if let Some(watch) = self.watch.borrow_mut().as_mut() {
            if let Err(e) = watch.rearm() {
                // Not quiet until re-armed: the socket is peeked meanwhile.
                log_debug!("arrival watch not re-armed: {e}");
            }
        }
        self.busy.set(false);
    }

    /// True while a message is being read or applied, or bytes wait in the
    /// socket (or there is no live session: then nothing may be trusted).
    /// A memory load when the arrival watch is quiet; otherwise one
    /// `recv(MSG_PEEK)`.
    pub fn any(&self) -> bool {
        let moved = || {
            self.followed
                .borrow()
                .as_ref()
                .is_some_and(|(watch, generation)| watch.generation() != *generation)
        };
        match self.fd.get() {
            None => true,
            Some(_) if self.busy.get() || moved() => true,
            Some(fd) => !self.watch_is_quiet() && !crate::net::is_quiet(fd),
        }
    }

    /// The arrival watch says nothing came (false without one).
    fn watch_is_quiet(&self) -> bool {
        self.watch
            .borrow_mut()
            .as_mut()
            .is_some_and(ArrivalWatch::quiet)
    }
}

/// After how long without a message the connection is pinged.
const PING_INTERVAL: Duration = Duration::from_secs(1);
const RETRY_MIN: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(5);
/// A server that refused tracking is asked again this rarely (it may have
/// been upgraded or reconfigured since).
const REFUSED_RETRY: Duration = Duration::from_secs(60);

/// The prefixes to ask for, without duplicates and without any that another
/// one covers: Redis refuses overlapping BCAST prefixes.
pub fn bcast_prefixes(mut prefixes: Vec<String>) -> Vec<String> {
    prefixes.sort();
    prefixes.dedup();
    let mut kept: Vec<String> = Vec::with_capacity(prefixes.len());
    for p in prefixes {
        // Sorted: a prefix of `p` sorts before it.
        if !kept.iter().any(|k| p.starts_with(k.as_str())) {
            kept.push(p);
        }
    }
    kept
}

/// Why a session ended.
enum End {
    /// Connection trouble: try again soon.
    Lost(ConnError),
    /// The server will not track (Redis < 6, `CLIENT` renamed away, ...).
    Refused(String),
}

impl From<ConnError> for End {
    fn from(e: ConnError) -> End {
        End::Lost(e)
    }
}

/// Tracks `prefixes` on `url` for ever, reconnecting with back-off. The
/// first refusal is logged as a warning, and so is the first success after
/// one.
pub async fn track(
    url: RedisUrl,
    prefixes: Vec<String>,
    timeout: Duration,
    unread: &Unread,
    mut on_event: impl FnMut(Event),
) {
    let mut pause = RETRY_MIN;
    let mut refused = false;
    loop {
        let mut live = false;
        let end = session(&url, &prefixes, timeout, unread, &mut |event| {
            if event == Event::Live {
                live = true;
            }
            on_event(event);
        })
        .await;
        if live {
            on_event(Event::Lost);
            pause = RETRY_MIN;
            if std::mem::take(&mut refused) {
                log_info!("redis {} now tracks route keys", url.masked());
            }
        }
        let wait = match end {
            End::Lost(why) => {
                log_debug!("tracking on {} lost: {why}; retrying", url.masked());
                pause
            }
            End::Refused(why) => {
                if !std::mem::replace(&mut refused, true) {
                    log_warn!(
                        "redis {} refuses client tracking ({why}): no route cache, every request looks its route up",
                        url.masked()
                    );
                }
                REFUSED_RETRY
            }
        };
        monoio::time::sleep(wait).await;
        pause = (pause * 2).min(RETRY_MAX);
    }
}

/// An arrival watch for a tracking socket, or `None` (peek instead) where
/// io_uring cannot be set up.
fn arrival_watch(fd: RawFd) -> Option<ArrivalWatch> {
    ArrivalWatch::new(fd)
        .inspect_err(|e| log_debug!("no arrival watch ({e}): the tracking socket is peeked"))
        .ok()
}

/// One session: connect, turn tracking on, subscribe, then report changes
/// until the connection fails or stops answering PINGs.
async fn session(
    url: &RedisUrl,
    prefixes: &[String],
    timeout: Duration,
    unread: &Unread,
    on_event: &mut impl FnMut(Event),
) -> End {
    let mut session = match monoio::time::timeout(timeout, connect(url, timeout)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return End::Lost(e),
        Err(_) => return End::Lost(ConnError::ConnectTimeout),
    };
    // Made before tracking is turned on, so that once Redis lists this
    // session as a subscriber, every descriptor it holds in lopache exists
    // (tests that count descriptors wait for that).
    let arrival = arrival_watch(session.raw_fd());
    if let Err(end) = enable(&mut session, prefixes, timeout).await {
        return end;
    }
    unread.followed.replace(session.followed());
    unread.watch(session.raw_fd(), arrival);
    on_event(Event::Live);
    let result = report(&mut session, timeout, unread, on_event).await;
    unread.unwatch();
    match result {
        Ok(never) => match never {},
        Err(e) => End::Lost(e),
    }
}

/// An error reply to setting tracking up: a passing state of the server
/// (loading its data, busy with a script, ...) is retried soon; anything
/// else means it will not track (unknown command, no permission, ...).
fn refusal(error: String) -> End {
    const PASSING: [&str; 4] = ["LOADING", "BUSY", "TRYAGAIN", "MASTERDOWN"];
    if PASSING.iter().any(|p| error.starts_with(p)) {
        End::Lost(ConnError::Refused(error))
    } else {
        End::Refused(error)
    }
}

/// A reply that is neither the one expected nor an error.
fn unexpected(what: &str, reply: Option<Reply>) -> End {
    End::Lost(ConnError::Protocol(format!(
        "{what} answered {}",
        crate::observe::log::truncated(&format!("{reply:?}"), 100)
    )))
}

/// `CLIENT ID`, `CLIENT TRACKING on REDIRECT <id> BCAST PREFIX ...`, then
/// `SUBSCRIBE __redis__:invalidate`. In RESP2 Redis delivers invalidations
/// only to a subscribed connection, so nothing is reported before the last
/// step, and `Live` comes after it.
async fn enable(session: &mut Session, prefixes: &[String], timeout: Duration) -> Result<(), End> {
    let mut command = Vec::new();
    encode_command(&mut command, &[b"CLIENT", b"ID"]);
    let id = match session.exchange(command, 1, timeout).await?.pop() {
        Some(Reply::Integer(id)) => id.to_string(),
        Some(Reply::Error(e)) => return Err(refusal(e)),
        other => return Err(unexpected("CLIENT ID", other)),
    };
    let mut args: Vec<&[u8]> = vec![
        b"CLIENT",
        b"TRACKING",
        b"on",
        b"REDIRECT",
        id.as_bytes(),
        b"BCAST",
    ];
    for p in prefixes {
        args.extend([b"PREFIX".as_slice(), p.as_bytes()]);
    }
    let mut command = Vec::new();
    encode_command(&mut command, &args);
    match session.exchange(command, 1, timeout).await?.pop() {
        Some(Reply::SimpleString(ok)) if ok == b"OK" => {}
        Some(Reply::Error(e)) => return Err(refusal(e)),
        other => return Err(unexpected("CLIENT TRACKING", other)),
    }
    let mut command = Vec::new();
    encode_command(&mut command, &[b"SUBSCRIBE", b"__redis__:invalidate"]);
    // Messages may follow the confirmation at once: not `exchange`, which
    // refuses bytes beyond the replies it asked for.
    session.send(command, timeout).await?;
    match session.read_replies(1, timeout).await?.pop() {
        Some(Reply::Array(parts)) if parts.first().and_then(string_bytes) == Some(b"subscribe") => {
            Ok(())
        }
        Some(Reply::Error(e)) => Err(refusal(e)),
        other => Err(unexpected("SUBSCRIBE", other)),
    }
}

/// Reads invalidation messages and PING replies until something fails.
async fn report(
    session: &mut Session,
    timeout: Duration,
    unread: &Unread,
    on_event: &mut impl FnMut(Event),
) -> Result<std::convert::Infallible, ConnError> {
    // When the unanswered PING was sent, if one is.
    let mut pinged: Option<Instant> = None;
    loop {
        if session.moved() {
            return Err(ConnError::Protocol("the sentinels moved the server".into()));
        }
        let wait = match pinged {
            Some(at) => timeout.saturating_sub(at.elapsed()),
            None => PING_INTERVAL,
        };
        if !session.arrives_within(wait).await? {
            if pinged.is_some() {
                return Err(ConnError::Timeout("PING"));
            }
            let mut ping = Vec::new();
            encode_command(&mut ping, &[b"PING"]);
            session.send(ping, timeout).await?;
            pinged = Some(Instant::now());
            continue;
        }
        // From the first byte to the report applied, the cache must not
        // trust what it holds.
        unread.busy.set(true);
        let reply = session.read_replies(1, timeout).await?.pop();
        match reply.map(message) {
            Some(Message::Pong) => pinged = None,
            Some(Message::Event(event)) => on_event(event),
            Some(Message::Other) | None => {}
        }
        unread.applied();
    }
}

enum Message {
    Pong,
    Event(Event),
    Other,
}

/// Reads `["message", "__redis__:invalidate", keys | null]` and a
/// subscribed connection's `["pong", ""]`. Anything else that is not an
/// array (an error, and a report over the reply size limit, which the
/// client turns into one) or a report lopache cannot read in full stands for
/// "anything may have changed": a report is never ignored.
fn message(reply: Reply) -> Message {
    let Reply::Array(mut parts) = reply else {
        return Message::Event(Event::All);
    };
    match parts.first().and_then(string_bytes) {
        Some(b"pong") => return Message::Pong,
        Some(b"message") if parts.len() == 3 => {}
        Some(b"message") => return Message::Event(Event::All),
        // (`subscribe` confirmations and the like.)
        _ => return Message::Other,
    }
    match parts.pop() {
        Some(Reply::Array(keys)) => {
            let keys: Option<Vec<Vec<u8>>> = keys
                .into_iter()
                .map(|k| match k {
                    Reply::BulkString(k) | Reply::SimpleString(k) => Some(k),
                    _ => None,
                })
                .collect();
            Message::Event(keys.map_or(Event::All, Event::Changed))
        }
        // Null is Redis's "everything"; anything else cannot be read.
        _ => Message::Event(Event::All),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_counts_from_its_arrival_until_it_is_applied() {
        use std::io::{Read, Write};
        use std::os::fd::AsRawFd;
        let (mut ours, mut redis) = std::os::unix::net::UnixStream::pair().unwrap();
        let unread = Unread::default();
        assert!(unread.any(), "no session: nothing may be trusted");
        unread.watch_for_test(ours.as_raw_fd(), true);
        assert!(!unread.any());
        redis.write_all(b">").unwrap();
        assert!(unread.any(), "arrived");
        unread.busy.set(true);
        let mut byte = [0u8; 1];
        ours.read_exact(&mut byte).unwrap();
        assert!(unread.any(), "read, not applied");
        unread.applied();
        assert!(!unread.any(), "applied, and the watch armed again");
        redis.write_all(b">").unwrap();
        assert!(unread.any(), "the next report");
        unread.unwatch();
        assert!(unread.any(), "the session ended");
    }

    #[test]
    fn overlapping_prefixes_are_folded_into_the_shorter() {
        let p = |v: &[&str]| bcast_prefixes(v.iter().map(|s| s.to_string()).collect());
        assert_eq!(
            p(&["frontend:", "dead:", "a:frontend:", "frontend:"]),
            ["a:frontend:", "dead:", "frontend:"]
        );
        assert_eq!(p(&["dead:", "dead:frontend:", "tls:"]), ["dead:", "tls:"]);
    }

    #[test]
    fn messages_are_read_as_events() {
        let bulk = |s: &str| Reply::BulkString(s.as_bytes().to_vec());
        let msg = |payload: Reply| {
            Reply::Array(vec![bulk("message"), bulk("__redis__:invalidate"), payload])
        };
        let keys = Reply::Array(vec![bulk("frontend:a"), bulk("dead:a")]);
        assert!(matches!(
            message(msg(keys)),
            Message::Event(Event::Changed(k)) if k == [b"frontend:a".to_vec(), b"dead:a".to_vec()]
        ));
        assert!(matches!(
            message(msg(Reply::Null)),
            Message::Event(Event::All)
        ));
        assert!(matches!(
            message(msg(Reply::Integer(3))),
            Message::Event(Event::All)
        ));
        assert!(matches!(
            message(Reply::Array(vec![bulk("pong"), bulk("")])),
            Message::Pong
        ));
        // What cannot be read in full means "anything may have changed".
        for unreadable in [
            bulk("x"),
            crate::redis::codec::too_large(),
            msg(Reply::Array(vec![Reply::Integer(1), bulk("frontend:a")])),
            Reply::Array(vec![bulk("message"), bulk("__redis__:invalidate")]),
        ] {
            assert!(matches!(message(unreadable), Message::Event(Event::All)));
        }
        let confirmation = Reply::Array(vec![bulk("subscribe"), bulk("c"), Reply::Integer(1)]);
        assert!(matches!(message(confirmation), Message::Other));
    }
}
