//! The per-shard pipelined RESP client. Callers append their commands to one
//! shared buffer and wait on a oneshot; a single connection task writes the
//! whole buffer in one go and hands replies back in FIFO order. While one batch
//! is in flight, new commands accumulate for the next write, so under load many
//! requests share one write and one read (and Redis spends far less CPU).
//! A read queued with [`RedisClient::query_shared`] goes further: when the very
//! same commands are already waiting for the next write, it joins them and
//! gets a share of their replies instead of adding a copy (a hot host's
//! concurrent lookups cost Redis one lookup per batch).
//!
//! Connection trouble never escapes as a panic: a lost connection fails the
//! in-flight batch, the next query reconnects, and repeated failures back off
//! (queries during a back-off fail at once, so requests get a quick 503).

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use local_sync::oneshot;
use monoio::buf::{IoBufMut, SliceMut};
use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::net::{TcpStream, UnixStream};

use super::codec::{self, decode_reply, encode_command, Reply};
use super::scan::{ReplyScanner, Scan};
use super::sentinel;
use super::url::{Endpoint, RedisUrl};
use crate::observe::log::{truncated, RateLimit};
use crate::observe::metrics::{self, ShardMetrics};
use crate::{log_debug, log_info, log_warn};

const MIN_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(2);
const READ_CHUNK: usize = 16 * 1024;
/// Room for one pipelined batch of commands; grows for larger ones.
const BATCH_BUFFER: usize = 4096;
/// How many shareable queries of one batch are remembered for joining; later
/// ones are still sent, just not offered for sharing (bounds the search).
const MAX_SHAREABLE: usize = 64;

/// The replies to one query. Shared between the callers that joined it.
pub type SharedReplies = Rc<Vec<Reply>>;
type Outcome = Result<SharedReplies, RedisError>;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RedisError {
    #[error("redis unavailable")]
    Unavailable,
    #[error("redis did not answer in time")]
    Timeout,
}

/// Why a connection to Redis failed, kept as what happened: logged as such,
/// and read by the one decision made on it (a connection that broke the
/// protocol is not retried; one that went stale is).
#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("connect timed out")]
    ConnectTimeout,
    #[error("{0} timed out")]
    Timeout(&'static str),
    #[error("redis closed the connection")]
    Closed,
    /// Bytes that are not the replies asked for: the connection is unusable.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// `AUTH` or `SELECT` answered with an error.
    #[error("refused: {0}")]
    Refused(String),
    #[error("the connection was lost twice")]
    LostTwice,
    /// A sentinel URL whose sentinels name no server now (a failover).
    #[error("the sentinels name no server")]
    NoServer,
}

struct Waiter {
    replies: usize,
    tx: oneshot::Sender<Outcome>,
    /// Callers that queued the same commands after this one, same batch.
    joined: Vec<oneshot::Sender<Outcome>>,
}

impl Waiter {
    fn answer(self, outcome: Outcome) {
        for tx in self.joined {
            let _ = tx.send(outcome.clone());
        }
        let _ = self.tx.send(outcome);
    }
}

/// Where a shareable query's commands sit in `queued`, and whose they are.
struct Shareable {
    bytes: std::ops::Range<usize>,
    waiter: usize,
}

struct Inner {
    url: RedisUrl,
    timeout: Duration,
    /// Encoded commands not yet written.
    queued: RefCell<Vec<u8>>,
    /// Callers whose commands are in `queued`, in order.
    waiters: RefCell<VecDeque<Waiter>>,
    /// The shareable queries in `queued`.
    shareable: RefCell<Vec<Shareable>>,
    task_waker: RefCell<Option<Waker>>,
    task_started: Cell<bool>,
    /// While set and in the future, queries fail at once (back-off after a failed connect).
    down_until: Cell<Option<Instant>>,
    /// Where each batch's round trip is recorded.
    metrics: Arc<ShardMetrics>,
}

/// A handle to one shard's connection to one Redis server. Cheap to clone.
#[derive(Clone)]
pub struct RedisClient {
    inner: Rc<Inner>,
}

impl RedisClient {
    /// Creates the client; nothing connects until the first query.
    pub fn new(url: RedisUrl, timeout: Duration, metrics: Arc<ShardMetrics>) -> Self {
        RedisClient {
            inner: Rc::new(Inner {
                url,
                timeout,
                queued: RefCell::new(Vec::with_capacity(BATCH_BUFFER)),
                waiters: RefCell::new(VecDeque::new()),
                shareable: RefCell::new(Vec::new()),
                task_waker: RefCell::new(None),
                task_started: Cell::new(false),
                down_until: Cell::new(None),
                metrics,
            }),
        }
    }

    /// One client per server of a route table, in its order.
    pub fn for_servers(
        urls: &[RedisUrl],
        timeout: Duration,
        metrics: &Arc<ShardMetrics>,
    ) -> Vec<RedisClient> {
        urls.iter()
            .map(|url| RedisClient::new(url.clone(), timeout, metrics.clone()))
            .collect()
    }

    /// Sends the commands that `encode` appends (it returns how many) as part of
    /// the next pipelined write, and returns their replies in order. Error
    /// replies from Redis come back as `Reply::Error`, not as `Err`.
    pub async fn query(
        &self,
        encode: impl FnOnce(&mut Vec<u8>) -> usize,
    ) -> Result<Vec<Reply>, RedisError> {
        let replies = self.enqueue(encode, false).await?;
        // Nobody joins a query that was not offered for sharing.
        Ok(Rc::try_unwrap(replies).unwrap_or_else(|shared| shared.to_vec()))
    }

    /// Like [`query`](Self::query), for reads only: if the same commands are
    /// already queued for the next write, this caller shares their replies.
    /// The commands still run after the call was made (they are not sent
    /// yet), so the answer is as fresh as a query of its own.
    pub async fn query_shared(
        &self,
        encode: impl FnOnce(&mut Vec<u8>) -> usize,
    ) -> Result<SharedReplies, RedisError> {
        self.enqueue(encode, true).await
    }

    async fn enqueue(
        &self,
        encode: impl FnOnce(&mut Vec<u8>) -> usize,
        shareable: bool,
    ) -> Outcome {
        let inner = &self.inner;
        if inner.down_until.get().is_some_and(|t| Instant::now() < t) {
            return Err(RedisError::Unavailable);
        }
        if !inner.task_started.replace(true) {
            monoio::spawn(run(inner.clone()));
        }
        let (tx, rx) = oneshot::channel();
        inner.push(encode, tx, shareable);
        match monoio::time::timeout(inner.timeout, rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(RedisError::Unavailable),
            Err(_) => Err(RedisError::Timeout),
        }
    }

    /// Convenience for a single command.
    pub async fn command(&self, args: &[&[u8]]) -> Result<Reply, RedisError> {
        let mut replies = self
            .query(|out| {
                encode_command(out, args);
                1
            })
            .await?;
        replies.pop().ok_or(RedisError::Unavailable)
    }
}

impl Inner {
    /// Queues a caller's commands for the next write, or joins it to the same
    /// commands already queued when `shareable`.
    fn push(
        &self,
        encode: impl FnOnce(&mut Vec<u8>) -> usize,
        tx: oneshot::Sender<Outcome>,
        shareable: bool,
    ) {
        let mut queued = self.queued.borrow_mut();
        let mut waiters = self.waiters.borrow_mut();
        let start = queued.len();
        let replies = encode(&mut queued);
        if shareable {
            let mut offered = self.shareable.borrow_mut();
            let mine = &queued[start..];
            if let Some(same) = offered.iter().find(|s| queued[s.bytes.clone()] == *mine) {
                let waiter = same.waiter;
                queued.truncate(start);
                waiters[waiter].joined.push(tx);
                metrics::add(&self.metrics.redis_shared, 1);
                return;
            }
            if offered.len() < MAX_SHAREABLE {
                offered.push(Shareable {
                    bytes: start..queued.len(),
                    waiter: waiters.len(),
                });
            }
        }
        waiters.push_back(Waiter {
            replies,
            tx,
            joined: Vec::new(),
        });
        if let Some(w) = self.task_waker.borrow_mut().take() {
            w.wake();
        }
    }

    fn fail(&self, batch: impl IntoIterator<Item = Waiter>, err: RedisError) {
        for w in batch {
            w.answer(Err(err.clone()));
        }
    }

    fn take_batch(&self) -> (Vec<u8>, Vec<Waiter>) {
        self.shareable.borrow_mut().clear();
        let bytes = std::mem::replace(
            &mut *self.queued.borrow_mut(),
            Vec::with_capacity(BATCH_BUFFER),
        );
        let waiters = self.waiters.borrow_mut().drain(..).collect();
        (bytes, waiters)
    }
}

/// A connected socket, TCP or unix.
enum Conn {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Conn {
    fn raw_fd(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsRawFd;
        match self {
            Conn::Tcp(s) => s.as_raw_fd(),
            Conn::Unix(s) => s.as_raw_fd(),
        }
    }

    async fn write_all(&mut self, buf: Vec<u8>) -> std::io::Result<()> {
        let (res, _) = match self {
            Conn::Tcp(s) => s.write_all(buf).await,
            Conn::Unix(s) => s.write_all(buf).await,
        };
        res.map(|_| ())
    }

    /// Resolves once the socket has bytes to read (or was closed). Unlike a
    /// read, it may be abandoned (by a timeout) without losing any byte.
    async fn readable(&self) -> std::io::Result<()> {
        match self {
            Conn::Tcp(s) => s.readable(false).await,
            Conn::Unix(s) => s.readable(false).await,
        }
    }

    async fn read(
        &mut self,
        buf: SliceMut<BytesMut>,
    ) -> (std::io::Result<usize>, SliceMut<BytesMut>) {
        match self {
            Conn::Tcp(s) => s.read(buf).await,
            Conn::Unix(s) => s.read(buf).await,
        }
    }
}

/// A live connection plus the bytes read from it but not yet decoded.
pub(super) struct Session {
    conn: Conn,
    buf: BytesMut,
    /// At least one batch has completed on it (so a failure may mean it went stale).
    used: bool,
    /// Where the reply being read ends (kept between reads).
    scanner: ReplyScanner,
    /// For a sentinel URL: the watch and the generation connected to.
    sentinel: Option<(Arc<sentinel::Watch>, u64)>,
}

impl Session {
    /// Reads until `count` replies are decoded. A reply over
    /// `MAX_REPLY_BYTES` is skipped as it arrives and stands in the batch as
    /// [`codec::too_large`], failing only the caller it belonged to.
    pub(super) async fn read_replies(
        &mut self,
        count: usize,
        timeout: Duration,
    ) -> Result<Vec<Reply>, ConnError> {
        let mut out = Vec::with_capacity(count);
        while out.len() < count {
            let scanned = self
                .scanner
                .scan(&self.buf)
                .map_err(|e| ConnError::Protocol(e.to_string()))?;
            match scanned {
                Scan::Complete(n) => {
                    let reply = decode_exact(&self.buf[..n])?;
                    self.buf.advance(n);
                    out.push(reply);
                    continue;
                }
                Scan::Skipped(n) => {
                    self.buf.advance(n);
                    out.push(codec::too_large());
                    continue;
                }
                Scan::NeedMore(droppable) => self.buf.advance(droppable),
            }
            if self.buf.capacity() - self.buf.len() < READ_CHUNK / 2 {
                self.buf.reserve(READ_CHUNK);
            }
            // monoio reads at the buffer's start; a slice from `len` appends instead.
            let filled = self.buf.len();
            let buf = std::mem::take(&mut self.buf).slice_mut(filled..);
            let (res, buf) = monoio::time::timeout(timeout, self.conn.read(buf))
                .await
                .map_err(|_| ConnError::Timeout("read"))?;
            self.buf = buf.into_inner();
            if res? == 0 {
                return Err(ConnError::Closed);
            }
        }
        Ok(out)
    }

    /// Writes `bytes`.
    pub(super) async fn send(
        &mut self,
        bytes: Vec<u8>,
        timeout: Duration,
    ) -> Result<(), ConnError> {
        let written = monoio::time::timeout(timeout, self.conn.write_all(bytes))
            .await
            .map_err(|_| ConnError::Timeout("write"))?;
        Ok(written?)
    }

    /// Writes `bytes` and reads exactly `count` replies. RESP2 replies carry
    /// no request id, so a reply nobody asked for would shift every later
    /// one onto the wrong caller: bytes left over after the batch are a
    /// protocol error, and the connection must be dropped.
    pub(super) async fn exchange(
        &mut self,
        bytes: Vec<u8>,
        count: usize,
        timeout: Duration,
    ) -> Result<Vec<Reply>, ConnError> {
        self.send(bytes, timeout).await?;
        let replies = self.read_replies(count, timeout).await?;
        if !self.buf.is_empty() {
            return Err(ConnError::Protocol("a reply nobody asked for".into()));
        }
        Ok(replies)
    }

    /// Whether a reply starts arriving within `wait`: bytes are buffered
    /// or the socket becomes readable. Safe to time out, unlike
    /// [`read_replies`](Self::read_replies), which drops the connection's
    /// state when abandoned.
    pub(super) async fn arrives_within(&self, wait: Duration) -> Result<bool, ConnError> {
        if !self.buf.is_empty() {
            return Ok(true);
        }
        match monoio::time::timeout(wait, self.conn.readable()).await {
            Ok(ready) => ready.map(|()| true).map_err(ConnError::Io),
            Err(_) => Ok(false),
        }
    }

    pub(super) fn raw_fd(&self) -> std::os::fd::RawFd {
        self.conn.raw_fd()
    }

    /// For a sentinel URL: the watch and the generation connected to.
    pub(super) fn followed(&self) -> Option<(Arc<sentinel::Watch>, u64)> {
        self.sentinel.clone()
    }

    /// The sentinels have named another server since this connected.
    pub(super) fn moved(&self) -> bool {
        self.sentinel
            .as_ref()
            .is_some_and(|(watch, generation)| watch.generation() != *generation)
    }

    /// Nothing arrived (and the peer did not close) since the last batch.
    fn is_quiet(&self) -> bool {
        self.buf.is_empty() && crate::net::is_quiet(self.conn.raw_fd())
    }
}

pub(super) async fn connect(url: &RedisUrl, timeout: Duration) -> Result<Session, ConnError> {
    let mut followed = None;
    let conn = match &url.endpoint {
        Endpoint::Tcp { host, port } => {
            let addrs = crate::upstream::dns::lookup(host, *port).await?;
            let stream = TcpStream::connect_addr(addrs[0]).await?;
            let _ = stream.set_nodelay(true);
            Conn::Tcp(stream)
        }
        Endpoint::Unix(path) => Conn::Unix(UnixStream::connect(path).await?),
        Endpoint::Sentinel(_) => {
            let watch = sentinel::for_url(url).ok_or(ConnError::NoServer)?;
            let (addr, generation) = watch
                .wait_current(timeout)
                .await
                .ok_or(ConnError::NoServer)?;
            followed = Some((watch, generation));
            let stream = TcpStream::connect_addr(addr).await?;
            let _ = stream.set_nodelay(true);
            Conn::Tcp(stream)
        }
    };
    let mut session = Session {
        conn,
        buf: BytesMut::with_capacity(READ_CHUNK),
        used: false,
        scanner: ReplyScanner::new(codec::MAX_REPLY_BYTES),
        sentinel: followed,
    };
    let mut hello = Vec::new();
    let mut count = 0;
    if let Some(password) = &url.password {
        match &url.username {
            Some(user) => {
                encode_command(&mut hello, &[b"AUTH", user.as_bytes(), password.as_bytes()])
            }
            None => encode_command(&mut hello, &[b"AUTH", password.as_bytes()]),
        }
        count += 1;
    }
    if url.db != 0 {
        encode_command(&mut hello, &[b"SELECT", url.db.to_string().as_bytes()]);
        count += 1;
    }
    if count > 0 {
        for reply in session.exchange(hello, count, timeout).await? {
            if let Reply::Error(e) = reply {
                return Err(ConnError::Refused(e));
            }
        }
    }
    Ok(session)
}

/// Decodes a reply the scanner found whole.
fn decode_exact(bytes: &[u8]) -> Result<Reply, ConnError> {
    match decode_reply(bytes) {
        Ok(Some((reply, used))) if used == bytes.len() => Ok(reply),
        other => Err(ConnError::Protocol(format!(
            "a reply the decoder reads differently: {other:?}"
        ))),
    }
}

/// Resolves when there is at least one queued command.
async fn work_queued(inner: &Inner) {
    std::future::poll_fn(|cx| {
        if inner.waiters.borrow().is_empty() {
            *inner.task_waker.borrow_mut() = Some(cx.waker().clone());
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await
}

/// How the Redis server has been doing, for the log and the back-off.
struct Health {
    backoff: Duration,
    /// It is unavailable (logged once when that starts, once when it ends).
    outage: bool,
    /// Batches have been answered with error replies (`-LOADING`, `-NOAUTH`,
    /// a wrong type...) since the last batch without.
    erroring: bool,
    error_log: RateLimit,
}

/// Error replies are logged at most this often.
const ERROR_LOG_INTERVAL: Duration = Duration::from_secs(10);

impl Health {
    fn new() -> Health {
        Health {
            backoff: MIN_BACKOFF,
            outage: false,
            erroring: false,
            error_log: RateLimit::default(),
        }
    }

    /// A batch failed: log the start of an outage, and back off (queries
    /// fail at once until then), whether connecting or the exchange failed.
    fn failed(&mut self, inner: &Inner, why: ConnError) {
        if !self.outage {
            log_warn!("redis {} unavailable: {why}", inner.url.masked());
        }
        self.outage = true;
        inner
            .down_until
            .set(Some(crate::clock::from_now(self.backoff)));
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
    }

    /// A batch was answered: the end of an outage, and error replies.
    fn answered(&mut self, inner: &Inner, replies: &[Reply]) {
        if std::mem::take(&mut self.outage) {
            log_info!("redis {} is back", inner.url.masked());
        }
        self.backoff = MIN_BACKOFF;
        inner.down_until.set(None);
        let error = replies.iter().find_map(|r| match r {
            Reply::Error(e) if !codec::is_too_large(r) => Some(e),
            _ => None,
        });
        match error {
            Some(e) => {
                if let Some(more) = self.error_log.allow(ERROR_LOG_INTERVAL) {
                    log_warn!(
                        "redis {} answers with an error: {} ({more} more batches since the last warning)",
                        inner.url.masked(),
                        truncated(e, 200)
                    );
                }
                self.erroring = true;
            }
            None if self.erroring => {
                log_info!("redis {} answers without errors again", inner.url.masked());
                self.erroring = false;
            }
            None => {}
        }
    }
}

/// The connection task: one per client, for the life of the shard.
async fn run(inner: Rc<Inner>) {
    let mut session: Option<Session> = None;
    let mut health = Health::new();
    loop {
        work_queued(&inner).await;
        let (bytes, batch) = inner.take_batch();
        let count: usize = batch.iter().map(|w| w.replies).sum();
        match exchange(&inner, &mut session, bytes, count).await {
            Ok(mut replies) => {
                health.answered(&inner, &replies);
                // Hand each caller its share, in the order they queued.
                let mut rest = replies.drain(..);
                for w in batch {
                    let mine: Vec<Reply> = rest.by_ref().take(w.replies).collect();
                    w.answer(Ok(Rc::new(mine)));
                }
            }
            Err(why) => {
                health.failed(&inner, why);
                inner.fail(batch, RedisError::Unavailable);
            }
        }
    }
}

/// After a failed exchange: a connection used before may only have gone
/// stale (Redis restarted, an idle timeout), so one fresh connection is
/// tried; a new connection failing, or any connection breaking the
/// protocol, is an answer in itself.
fn retry_on_fresh_connection(was_used: bool, e: &ConnError) -> bool {
    was_used && !matches!(e, ConnError::Protocol(_))
}

/// Sends one batch and reads its replies, connecting first if needed. A
/// connection that was used before may have gone stale (Redis restarted, or
/// sent something while idle): one retry on a fresh connection, which is
/// safe because every command we send is either a read or an idempotent
/// mark. `Err` says why the batch failed.
async fn exchange(
    inner: &Inner,
    session: &mut Option<Session>,
    bytes: Vec<u8>,
    count: usize,
) -> Result<Vec<Reply>, ConnError> {
    for _attempt in 0..2 {
        if session.is_none() {
            match monoio::time::timeout(inner.timeout, connect(&inner.url, inner.timeout)).await {
                Ok(Ok(s)) => *session = Some(s),
                Ok(Err(e)) => return Err(e),
                Err(_) => return Err(ConnError::ConnectTimeout),
            }
        }
        let Some(s) = session.as_mut() else {
            break;
        };
        let was_used = s.used;
        if s.moved() {
            log_debug!(
                "redis {}: the sentinels moved it, reconnecting",
                inner.url.masked()
            );
            *session = None;
            continue;
        }
        if was_used && !s.is_quiet() {
            // Closed, or a reply nobody asked for arrived while idle.
            log_debug!(
                "redis {}: idle connection not quiet, reconnecting",
                inner.url.masked()
            );
            *session = None;
            continue;
        }
        let sent = Instant::now();
        match s.exchange(bytes.clone(), count, inner.timeout).await {
            Ok(replies) => {
                inner.metrics.redis_rtt.observe(sent.elapsed());
                s.used = true;
                return Ok(replies);
            }
            Err(e) => {
                *session = None;
                if !retry_on_fresh_connection(was_used, &e) {
                    return Err(e);
                }
                log_debug!(
                    "redis {}: {e}; retrying on a new connection",
                    inner.url.masked()
                );
            }
        }
    }
    Err(ConnError::LostTwice)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::redis::codec::decode_reply;
    use std::io::{Read, Write};
    use std::sync::mpsc;

    #[test]
    fn only_a_stale_connection_is_retried() {
        let reset = || ConnError::Io(std::io::ErrorKind::ConnectionReset.into());
        let table = [
            (true, reset(), true),
            (true, ConnError::Closed, true),
            (true, ConnError::Timeout("read"), true),
            (
                true,
                ConnError::Protocol("a reply nobody asked for".into()),
                false,
            ),
            (false, reset(), false),
            (false, ConnError::Closed, false),
            (false, ConnError::Refused("NOAUTH".into()), false),
        ];
        for (was_used, error, retry) in table {
            assert_eq!(
                retry_on_fresh_connection(was_used, &error),
                retry,
                "{error} (used before: {was_used})"
            );
        }
    }

    /// A mock Redis that answers `ECHO x` with `x` and reports how many
    /// commands arrived in each read.
    fn echo_server() -> (u16, mpsc::Receiver<usize>) {
        echo_server_gated(None)
    }

    /// The same, but each read's answers wait for a message on `gate`.
    fn echo_server_gated(gate: Option<mpsc::Receiver<()>>) -> (u16, mpsc::Receiver<usize>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let mut buf = Vec::new();
            let mut chunk = [0u8; 65536];
            loop {
                let n = match conn.read(&mut chunk) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                buf.extend_from_slice(&chunk[..n]);
                let mut out = Vec::new();
                let mut commands = 0;
                while let Ok(Some((Reply::Array(args), used))) = decode_reply(&buf) {
                    buf.drain(..used);
                    commands += 1;
                    if let Some(Reply::BulkString(arg)) = args.get(1) {
                        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
                        out.extend_from_slice(arg);
                        out.extend_from_slice(b"\r\n");
                    }
                }
                let _ = tx.send(commands);
                if let Some(gate) = &gate {
                    let _ = gate.recv();
                }
                conn.write_all(&out).unwrap();
            }
        });
        (port, rx)
    }

    #[test]
    fn concurrent_queries_share_one_write_and_get_their_own_replies() {
        let (port, reads) = echo_server();
        let url = RedisUrl::parse(&format!("redis://127.0.0.1:{port}")).unwrap();
        let answers = block_on(async move {
            let client = RedisClient::new(url, Duration::from_secs(5), Arc::default());
            let tasks: Vec<_> = (0..50)
                .map(|i| {
                    let c = client.clone();
                    monoio::spawn(async move {
                        let arg = format!("value-{i}");
                        c.command(&[b"ECHO", arg.as_bytes()]).await
                    })
                })
                .collect();
            let mut answers = Vec::new();
            for t in tasks {
                answers.push(t.await);
            }
            answers
        });
        for (i, a) in answers.into_iter().enumerate() {
            assert_eq!(a, Ok(Reply::BulkString(format!("value-{i}").into_bytes())));
        }
        // All 50 were queued before the connection task ran: one write, one read.
        assert_eq!(reads.recv().unwrap(), 50);
    }

    /// A server that answers every command with `+<name>`.
    fn named_server(name: &'static str) -> std::net::SocketAddr {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { return };
                std::thread::spawn(move || {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 1024];
                    while let Ok(n) = conn.read(&mut chunk) {
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        while let Ok(Some((_, used))) = decode_reply(&buf) {
                            buf.drain(..used);
                            let _ = conn.write_all(format!("+{name}\r\n").as_bytes());
                        }
                    }
                });
            }
        });
        addr
    }

    /// A connection to a server the sentinels no longer name is dropped
    /// before the next batch, even while that server still answers (a
    /// demoted master keeps its clients until Sentinel kills them).
    #[test]
    fn a_sentinel_url_follows_the_server_the_sentinels_name() {
        let (a, b) = (named_server("A"), named_server("B"));
        // Sentinels that never answer: the test names the server itself.
        let url = RedisUrl::parse("redis-sentinel://127.0.0.1:1/client-test-master").unwrap();
        let watch = sentinel::for_url(&url).unwrap();
        watch.set(Some(a));
        let answers = block_on(async move {
            let client = RedisClient::new(url, Duration::from_secs(5), Arc::default());
            let first = client.command(&[b"PING"]).await;
            let again = client.command(&[b"PING"]).await;
            watch.set(Some(b));
            let moved = client.command(&[b"PING"]).await;
            (first, again, moved)
        });
        let simple = |s: &str| Ok(Reply::SimpleString(s.as_bytes().to_vec()));
        assert_eq!(answers, (simple("A"), simple("A"), simple("B")));
    }

    fn block_on<F: std::future::Future>(future: F) -> F::Output {
        monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
            .enable_timer()
            .build()
            .unwrap()
            .block_on(future)
    }

    fn echo(arg: &str) -> impl FnOnce(&mut Vec<u8>) -> usize + '_ {
        move |out| {
            encode_command(out, &[b"ECHO", arg.as_bytes()]);
            1
        }
    }

    #[test]
    fn identical_shared_reads_in_one_batch_are_sent_once() {
        let (port, reads) = echo_server();
        let url = RedisUrl::parse(&format!("redis://127.0.0.1:{port}")).unwrap();
        let metrics = Arc::new(ShardMetrics::default());
        let client = RedisClient::new(url, Duration::from_secs(5), metrics.clone());
        let answers = block_on(async move {
            let mut tasks = Vec::new();
            for i in 0..45 {
                let c = client.clone();
                tasks.push(monoio::spawn(async move {
                    // 30 identical shareable reads, 10 distinct ones, and 5 of
                    // the same command through `query`, which never shares.
                    let arg = match i {
                        0..30 => "same".to_string(),
                        30..40 => format!("other-{i}"),
                        _ => "same".to_string(),
                    };
                    let replies = match i {
                        0..40 => c.query_shared(echo(&arg)).await.map(|r| r.to_vec()),
                        _ => c.query(echo(&arg)).await,
                    };
                    (arg, replies)
                }));
            }
            let mut answers = Vec::new();
            for t in tasks {
                answers.push(t.await);
            }
            answers
        });
        for (arg, replies) in answers {
            assert_eq!(replies, Ok(vec![Reply::BulkString(arg.into_bytes())]));
        }
        assert_eq!(reads.recv().unwrap(), 1 + 10 + 5);
        assert_eq!(
            metrics
                .redis_shared
                .load(std::sync::atomic::Ordering::Relaxed),
            29
        );
    }

    #[test]
    fn a_read_never_joins_a_batch_already_written() {
        let (gate_tx, gate) = mpsc::channel();
        let (port, reads) = echo_server_gated(Some(gate));
        let url = RedisUrl::parse(&format!("redis://127.0.0.1:{port}")).unwrap();
        let client = RedisClient::new(url, Duration::from_secs(5), Arc::default());
        let (first, second) = block_on(async move {
            let c = client.clone();
            let first = monoio::spawn(async move { c.query_shared(echo("same")).await });
            // Wait until Redis holds the first batch (its answer is gated).
            let in_flight = loop {
                if let Ok(n) = reads.try_recv() {
                    break n;
                }
                monoio::time::sleep(Duration::from_millis(1)).await;
            };
            assert_eq!(in_flight, 1);
            let c = client.clone();
            let second = monoio::spawn(async move { c.query_shared(echo("same")).await });
            while client.inner.waiters.borrow().is_empty() {
                monoio::time::sleep(Duration::from_millis(1)).await;
            }
            // The second read is queued while the first is on the wire: it
            // must be written again, not answered from the older batch.
            gate_tx.send(()).unwrap();
            gate_tx.send(()).unwrap();
            let first = first.await;
            let second = second.await;
            assert_eq!(reads.recv().unwrap(), 1);
            (first, second)
        });
        let same = vec![Reply::BulkString(b"same".to_vec())];
        assert_eq!(first.unwrap().as_slice(), same.as_slice());
        assert_eq!(second.unwrap().as_slice(), same.as_slice());
    }
}
