//! A scriptable RESP server on a real loopback socket, for the faults a real
//! Redis cannot produce: replies nobody asked for, error replies on demand,
//! connections closed as soon as they open. Each command is handed to the
//! test's function with the connection's number; its answer (raw RESP bytes)
//! is written back, one write per batch of commands read together.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use lopache::redis::codec::{decode_reply, Reply};

/// Writes bytes to connection `id` out of turn (a push, as Redis's
/// invalidation messages are).
pub type Push<'a> = &'a dyn Fn(usize, &[u8]);
type Handler = dyn Fn(usize, &[Vec<u8>], Push) -> Vec<u8> + Send + Sync;
type Streams = Arc<std::sync::Mutex<Vec<(usize, TcpStream)>>>;

pub struct FakeRedis {
    pub port: u16,
    connections: Arc<AtomicUsize>,
}

impl FakeRedis {
    /// Answers every command with `handler(connection, args)`.
    pub fn start(
        handler: impl Fn(usize, &[Vec<u8>]) -> Vec<u8> + Send + Sync + 'static,
    ) -> FakeRedis {
        FakeRedis::start_with_push(move |id, args, _push| handler(id, args))
    }

    /// Like [`start`](Self::start); the handler may also write to any
    /// connection out of turn.
    #[allow(dead_code)]
    pub fn start_with_push(
        handler: impl Fn(usize, &[Vec<u8>], Push) -> Vec<u8> + Send + Sync + 'static,
    ) -> FakeRedis {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let connections = Arc::new(AtomicUsize::new(0));
        let handler: Arc<Handler> = Arc::new(handler);
        let streams: Streams = Arc::default();
        let counter = connections.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let id = counter.fetch_add(1, Ordering::SeqCst);
                if let Ok(clone) = conn.try_clone() {
                    streams.lock().unwrap().push((id, clone));
                }
                let (handler, streams) = (handler.clone(), streams.clone());
                std::thread::spawn(move || serve(conn, id, handler, streams));
            }
        });
        FakeRedis { port, connections }
    }

    /// Accepts connections and closes each at once.
    pub fn closing() -> FakeRedis {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let connections = Arc::new(AtomicUsize::new(0));
        let counter = connections.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                counter.fetch_add(1, Ordering::SeqCst);
                drop(conn);
            }
        });
        FakeRedis { port, connections }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

fn serve(mut conn: TcpStream, id: usize, handler: Arc<Handler>, streams: Streams) {
    let push = |to: usize, bytes: &[u8]| {
        let mut streams = streams.lock().unwrap();
        if let Some((_, s)) = streams.iter_mut().find(|(i, _)| *i == to) {
            let _ = s.write_all(bytes);
        }
    };
    let mut buf = Vec::new();
    let mut chunk = [0u8; 65536];
    loop {
        let n = match conn.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        let mut out = Vec::new();
        while let Ok(Some((Reply::Array(args), used))) = decode_reply(&buf) {
            buf.drain(..used);
            let args: Vec<Vec<u8>> = args
                .into_iter()
                .map(|a| match a {
                    Reply::BulkString(b) => b,
                    _ => Vec::new(),
                })
                .collect();
            out.extend_from_slice(&handler(id, &args, &push));
        }
        if conn.write_all(&out).is_err() {
            return;
        }
    }
}

/// RESP for an array of bulk strings.
pub fn array(items: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", items.len()).into_bytes();
    for item in items {
        out.extend_from_slice(format!("${}\r\n{item}\r\n", item.len()).as_bytes());
    }
    out
}
