//! Scriptable HTTP/1.1 backends on real loopback sockets. Each records what it
//! received (head, headers, body length and hash) and answers with whatever
//! the test's handler says, including broken answers for fault tests.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Bodies longer than this are hashed and counted, not kept.
const KEEP_BODY: usize = 1 << 20;

#[derive(Debug, Clone, Default)]
pub struct Received {
    pub method: String,
    pub target: String,
    pub version: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub body_len: u64,
    pub body_hash: u64,
    /// Which accepted connection (0-based) carried it.
    pub connection: usize,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn headers_named(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// What a backend does with one request.
pub enum Reply {
    /// A response; Content-Length is added unless a framing header is given
    /// or the status has no body.
    Response {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
    /// Bytes written as they are; the connection stays open.
    Raw(Vec<u8>),
    /// Bytes written, then the connection is closed.
    RawClose(Vec<u8>),
    /// Close without answering.
    Close,
    /// Wait, then do the inner reply.
    Delay(Duration, Box<Reply>),
    /// A 200 whose body of `len` bytes is generated on the fly (pattern bytes).
    Stream { len: u64, chunked: bool },
}

impl Reply {
    pub fn ok(body: &str) -> Reply {
        Reply::status(200, body)
    }

    pub fn status(status: u16, body: &str) -> Reply {
        Reply::Response {
            status,
            headers: vec![],
            body: body.as_bytes().to_vec(),
        }
    }

    pub fn with_headers(status: u16, headers: &[(&str, &str)], body: &str) -> Reply {
        Reply::Response {
            status,
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            body: body.as_bytes().to_vec(),
        }
    }
}

type Handler = dyn Fn(&Received) -> Reply + Send + Sync;

pub struct Backend {
    pub addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
    connections: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl Backend {
    pub fn start(handler: impl Fn(&Received) -> Reply + Send + Sync + 'static) -> Backend {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind backend");
        let addr = listener.local_addr().unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let handler: Arc<Handler> = Arc::new(handler);
        {
            let (received, connections, stop) =
                (received.clone(), connections.clone(), stop.clone());
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    let Ok(stream) = stream else { continue };
                    let id = connections.fetch_add(1, Ordering::SeqCst);
                    let (handler, received) = (handler.clone(), received.clone());
                    std::thread::spawn(move || serve(stream, id, handler, received));
                }
            });
        }
        Backend {
            addr,
            received,
            connections,
            stop,
        }
    }

    /// Answers every request with 200 and `name` as the body.
    pub fn named(name: &str) -> Backend {
        let name = name.to_string();
        Backend::start(move |_| Reply::ok(&name))
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    pub fn count(&self) -> usize {
        self.received.lock().unwrap().len()
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
    }
}

/// A URL on which nothing listens (connection refused). The port stays
/// bound, without listening, for the rest of the test process: a port only
/// found free could be given to another test's backend meanwhile (under two
/// suites at once a request to the "refused" backend of
/// `dropin::hipache_fixture_config_behaves_like_its_toml_equivalent` was
/// answered by another test's backend named "old").
pub fn refused_url() -> String {
    static HELD: Mutex<Vec<socket2::Socket>> = Mutex::new(Vec::new());
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    let any_port: SocketAddr = "127.0.0.1:0".parse().unwrap();
    socket.bind(&any_port.into()).unwrap();
    let addr = socket.local_addr().unwrap().as_socket().unwrap();
    HELD.lock().unwrap().push(socket);
    format!("http://{addr}")
}

fn serve(stream: TcpStream, id: usize, handler: Arc<Handler>, received: Arc<Mutex<Vec<Received>>>) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let mut writer = match stream.try_clone() {
        Ok(w) => w,
        Err(_) => return,
    };
    let mut reader = BufReader::with_capacity(64 * 1024, stream);
    loop {
        let Some(mut req) = read_request(&mut reader) else {
            return;
        };
        req.connection = id;
        let close = req
            .header("connection")
            .is_some_and(|c| c.eq_ignore_ascii_case("close"));
        let reply = handler(&req);
        received.lock().unwrap().push(req);
        if !answer(&mut writer, reply) || close {
            return;
        }
    }
}

/// Writes the reply; false when the connection should end.
fn answer(w: &mut TcpStream, reply: Reply) -> bool {
    match reply {
        Reply::Response {
            status,
            headers,
            body,
        } => {
            let mut head = format!("HTTP/1.1 {status} X\r\n");
            let framed = headers.iter().any(|(n, _)| {
                n.eq_ignore_ascii_case("content-length")
                    || n.eq_ignore_ascii_case("transfer-encoding")
            });
            for (n, v) in &headers {
                head.push_str(&format!("{n}: {v}\r\n"));
            }
            let bodyless = (100..200).contains(&status) || status == 204 || status == 304;
            if !framed && !bodyless {
                head.push_str(&format!("Content-Length: {}\r\n", body.len()));
            }
            head.push_str("\r\n");
            let mut out = head.into_bytes();
            out.extend_from_slice(&body);
            w.write_all(&out).is_ok()
        }
        Reply::Raw(bytes) => w.write_all(&bytes).is_ok(),
        Reply::RawClose(bytes) => {
            let _ = w.write_all(&bytes);
            false
        }
        Reply::Close => false,
        Reply::Delay(d, inner) => {
            std::thread::sleep(d);
            answer(w, *inner)
        }
        Reply::Stream { len, chunked } => {
            let head = if chunked {
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_string()
            } else {
                format!("HTTP/1.1 200 OK\r\nContent-Length: {len}\r\n\r\n")
            };
            if w.write_all(head.as_bytes()).is_err() {
                return false;
            }
            let block = pattern_block();
            let mut left = len;
            while left > 0 {
                let n = left.min(block.len() as u64) as usize;
                let ok = if chunked {
                    w.write_all(format!("{n:x}\r\n").as_bytes()).is_ok()
                        && w.write_all(&block[..n]).is_ok()
                        && w.write_all(b"\r\n").is_ok()
                } else {
                    w.write_all(&block[..n]).is_ok()
                };
                if !ok {
                    return false;
                }
                left -= n as u64;
            }
            !chunked || w.write_all(b"0\r\n\r\n").is_ok()
        }
    }
}

/// 64 KiB of a byte pattern whose hash over any length is checkable.
pub fn pattern_block() -> Vec<u8> {
    (0..64 * 1024).map(|i| (i % 251) as u8).collect()
}

/// FNV-1a, continued across calls.
pub fn fnv(mut h: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

pub const FNV_START: u64 = 0xcbf29ce484222325;

fn read_line(r: &mut impl BufRead) -> Option<String> {
    let mut line = String::new();
    match r.read_line(&mut line) {
        Ok(0) | Err(_) => None,
        Ok(_) => Some(line),
    }
}

fn read_request(r: &mut BufReader<TcpStream>) -> Option<Received> {
    let mut line = read_line(r)?;
    while line.trim().is_empty() {
        line = read_line(r)?;
    }
    let mut parts = line.trim_end().splitn(3, ' ');
    let mut req = Received {
        method: parts.next()?.to_string(),
        target: parts.next()?.to_string(),
        version: parts.next().unwrap_or("").to_string(),
        ..Default::default()
    };
    loop {
        let l = read_line(r)?;
        let l = l.trim_end_matches(['\r', '\n']);
        if l.is_empty() {
            break;
        }
        let (n, v) = l.split_once(':')?;
        req.headers
            .push((n.trim().to_string(), v.trim().to_string()));
    }
    let mut hash = FNV_START;
    let mut keep = |req: &mut Received, data: &[u8]| {
        hash = fnv(hash, data);
        req.body_len += data.len() as u64;
        if req.body.len() < KEEP_BODY {
            req.body
                .extend_from_slice(&data[..data.len().min(KEEP_BODY - req.body.len())]);
        }
    };
    let chunked = req
        .header("transfer-encoding")
        .is_some_and(|t| t.to_ascii_lowercase().ends_with("chunked"));
    let mut buf = vec![0u8; 64 * 1024];
    if chunked {
        loop {
            let size_line = read_line(r)?;
            let size =
                usize::from_str_radix(size_line.trim().split(';').next()?.trim(), 16).ok()?;
            if size == 0 {
                // Trailers until the blank line.
                while !read_line(r)?.trim().is_empty() {}
                break;
            }
            let mut left = size;
            while left > 0 {
                let n = left.min(buf.len());
                r.read_exact(&mut buf[..n]).ok()?;
                keep(&mut req, &buf[..n]);
                left -= n;
            }
            read_line(r)?;
        }
    } else if let Some(len) = req
        .header("content-length")
        .and_then(|v| v.parse::<u64>().ok())
    {
        let mut left = len;
        while left > 0 {
            let n = left.min(buf.len() as u64) as usize;
            r.read_exact(&mut buf[..n]).ok()?;
            keep(&mut req, &buf[..n]);
            left -= n as u64;
        }
    }
    req.body_hash = hash;
    Some(req)
}

/// A raw backend for answers the scriptable one cannot give: for each
/// connection it reads one request head, then hands the socket to `then`
/// (which may write anything, stall, or close). Returns its URL.
pub fn after_head(then: impl Fn(TcpStream) + Send + Sync + 'static) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind backend");
    let url = format!("http://{}", listener.local_addr().unwrap());
    let then = Arc::new(then);
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let then = then.clone();
            std::thread::spawn(move || {
                read_head(&conn);
                then(conn);
            });
        }
    });
    url
}

/// Reads one request head from `conn` (and maybe bytes after it, into a
/// buffer that is then dropped); returns its request line, "" if the
/// connection closed first.
pub fn read_head(conn: &TcpStream) -> String {
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return String::new();
    }
    let mut line = String::new();
    while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
        line.clear();
    }
    request_line
}
