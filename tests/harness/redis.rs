//! A real redis-server per test, on a free loopback port, plus a tiny
//! blocking RESP client built on lopache's own codec.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use lopache::redis::codec::{decode_reply, encode_command, Reply};

use super::{wait_for, TempDir};

pub struct Redis {
    pub port: u16,
    child: Option<Child>,
    dir: TempDir,
    extra: Vec<String>,
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind probe");
    l.local_addr().unwrap().port()
}

impl Redis {
    pub fn start() -> Redis {
        Redis::start_with(&[])
    }

    /// Starts redis-server with extra arguments (e.g. `--requirepass`).
    pub fn start_with(extra: &[&str]) -> Redis {
        let mut r = Redis {
            port: 0,
            child: None,
            dir: TempDir::new("redis"),
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        r.spawn_on(free_port());
        r
    }

    fn spawn_on(&mut self, port: u16) {
        // A port picked this way can be taken in between; retry on a new one.
        for attempt in 0..5 {
            let port = if attempt == 0 { port } else { free_port() };
            let mut cmd = self.command(port);
            let mut child = cmd
                .spawn()
                .expect("redis-server must be installed (scripts/test.sh installs it)");
            let deadline = std::time::Instant::now() + super::WAIT;
            loop {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                // Something else may have taken the port first: only a PONG
                // from a still-running child proves it is our Redis.
                if answers_ping(port) && matches!(child.try_wait(), Ok(None)) {
                    self.port = port;
                    self.child = Some(child);
                    return;
                }
                if std::time::Instant::now() > deadline {
                    let _ = child.kill();
                    panic!("redis-server did not start on {port}");
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        panic!("could not start redis-server");
    }

    /// redis-server on `port`, in this server's directory, with its extra arguments.
    fn command(&self, port: u16) -> Command {
        let mut cmd = Command::new("redis-server");
        cmd.args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .arg("--dir")
        .arg(self.dir.path())
        .args(&self.extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        cmd
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Stops the server (as an outage would).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port.
    pub fn restart(&mut self) {
        let port = self.port;
        let mut cmd = self.command(port);
        self.child = Some(cmd.spawn().expect("restart redis"));
        wait_for("redis restart", || answers_ping(port).then_some(()));
    }

    pub fn conn(&self) -> RedisConn {
        let mut c = RedisConn::connect(self.port);
        if let Some(i) = self.extra.iter().position(|a| a == "--requirepass") {
            let pass = self.extra[i + 1].clone();
            c.cmd(&["AUTH", &pass]);
        }
        c
    }

    /// Runs one command on a fresh connection.
    pub fn cmd(&self, args: &[&str]) -> Reply {
        self.conn().cmd(args)
    }

    /// Connections subscribed to `channel`.
    #[allow(dead_code)]
    pub fn subscribers(&self, channel: &str) -> i64 {
        match self.cmd(&["PUBSUB", "NUMSUB", channel]) {
            Reply::Array(parts) => match parts.get(1) {
                Some(Reply::Integer(n)) => *n,
                _ => 0,
            },
            _ => 0,
        }
    }

    /// Calls of one command (e.g. "lrange") since the last CONFIG RESETSTAT.
    pub fn calls(&self, command: &str) -> u64 {
        let info = text(&self.cmd(&["INFO", "commandstats"]));
        info.lines()
            .find_map(|l| l.strip_prefix(&format!("cmdstat_{command}:calls=")))
            .and_then(|rest| rest.split(',').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    }

    /// `RPUSH frontend:<host> id backends...` after clearing the key.
    pub fn frontend(&self, prefix: &str, host: &str, id: &str, backends: &[String]) {
        let key = format!("{prefix}frontend:{host}");
        self.cmd(&["DEL", &key]);
        let mut args = vec!["RPUSH", key.as_str(), id];
        args.extend(backends.iter().map(String::as_str));
        self.cmd(&args);
    }
}

/// True when a Redis answers PING on `port` (an auth error counts: it is Redis).
fn answers_ping(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    if s.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut reply = [0u8; 7];
    match s.read(&mut reply) {
        Ok(n) => reply[..n].starts_with(b"+PONG") || reply[..n].starts_with(b"-NOAUTH"),
        Err(_) => false,
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A blocking RESP connection for assertions and subscriptions.
pub struct RedisConn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl RedisConn {
    pub fn connect(port: u16) -> RedisConn {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect redis");
        stream.set_read_timeout(Some(super::WAIT)).unwrap();
        RedisConn {
            stream,
            buf: Vec::new(),
        }
    }

    pub fn send(&mut self, args: &[&str]) {
        let mut out = Vec::new();
        let bytes: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        encode_command(&mut out, &bytes);
        self.stream.write_all(&out).unwrap();
    }

    pub fn read(&mut self) -> Reply {
        loop {
            if let Some((reply, used)) = decode_reply(&self.buf).expect("valid RESP") {
                self.buf.drain(..used);
                return reply;
            }
            let mut chunk = [0u8; 4096];
            let n = self
                .stream
                .read(&mut chunk)
                .expect("redis read (timed out?)");
            assert!(n > 0, "redis closed the connection");
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    pub fn cmd(&mut self, args: &[&str]) -> Reply {
        self.send(args);
        self.read()
    }
}

/// Bulk/simple string payload of a reply, for assertions.
pub fn text(reply: &Reply) -> String {
    match reply {
        Reply::BulkString(b) | Reply::SimpleString(b) => String::from_utf8_lossy(b).into_owned(),
        Reply::Integer(i) => i.to_string(),
        other => format!("{other:?}"),
    }
}

/// Sorted string members of an array reply.
pub fn members(reply: &Reply) -> Vec<String> {
    let mut v: Vec<String> = match reply {
        Reply::Array(items) => items.iter().map(text).collect(),
        _ => Vec::new(),
    };
    v.sort();
    v
}
