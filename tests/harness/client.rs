//! A raw HTTP/1.1 client on std sockets: send exact bytes, read responses
//! framed by Content-Length, chunked coding or close.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use super::WAIT;

#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A client connection over any byte stream (plain TCP or TLS).
pub struct RawConn<S: Read + Write = TcpStream> {
    pub stream: S,
    buf: Vec<u8>,
}

impl RawConn<TcpStream> {
    pub fn connect(addr: SocketAddr) -> RawConn {
        let stream = TcpStream::connect(addr).expect("connect to lopache");
        stream.set_read_timeout(Some(WAIT)).unwrap();
        RawConn::over(stream)
    }

    pub fn set_timeout(&self, d: Duration) {
        self.stream.set_read_timeout(Some(d)).unwrap();
    }
}

impl<S: Read + Write> RawConn<S> {
    pub fn over(stream: S) -> RawConn<S> {
        RawConn {
            stream,
            buf: Vec::new(),
        }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("send");
    }

    fn fill(&mut self) -> usize {
        let mut chunk = [0u8; 64 * 1024];
        match self.stream.read(&mut chunk) {
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                n
            }
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                panic!("timed out reading from lopache")
            }
            Err(_) => 0,
        }
    }

    fn take_line(&mut self) -> String {
        loop {
            if let Some(i) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=i).collect();
                return String::from_utf8_lossy(&line)
                    .trim_end_matches(['\r', '\n'])
                    .to_string();
            }
            assert!(self.fill() > 0, "connection closed mid-line");
        }
    }

    fn take_exact(&mut self, n: usize) -> Vec<u8> {
        while self.buf.len() < n {
            assert!(self.fill() > 0, "connection closed mid-body");
        }
        self.buf.drain(..n).collect()
    }

    /// Reads one response head (including interim 1xx ones).
    pub fn read_head(&mut self) -> HttpResponse {
        let status_line = self.take_line();
        let status = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
        let mut headers = Vec::new();
        loop {
            let line = self.take_line();
            if line.is_empty() {
                break;
            }
            let (n, v) = line.split_once(':').expect("header line");
            headers.push((n.trim().to_string(), v.trim().to_string()));
        }
        HttpResponse {
            status,
            headers,
            body: Vec::new(),
        }
    }

    /// Reads one final response; `head_request` says the body is absent.
    pub fn read_response(&mut self, head_request: bool) -> HttpResponse {
        let mut resp = self.read_head();
        while (100..200).contains(&resp.status) && resp.status != 101 {
            resp = self.read_head();
        }
        if head_request || resp.status == 204 || resp.status == 304 {
            return resp;
        }
        if resp
            .header("transfer-encoding")
            .is_some_and(|t| t.to_ascii_lowercase().contains("chunked"))
        {
            loop {
                let size =
                    usize::from_str_radix(self.take_line().split(';').next().unwrap().trim(), 16)
                        .unwrap();
                if size == 0 {
                    while !self.take_line().is_empty() {}
                    break;
                }
                let data = self.take_exact(size);
                resp.body.extend_from_slice(&data);
                self.take_line();
            }
        } else if let Some(len) = resp
            .header("content-length")
            .map(|v| v.parse::<usize>().unwrap())
        {
            resp.body = self.take_exact(len);
        } else {
            while self.fill() > 0 {}
            resp.body = std::mem::take(&mut self.buf);
        }
        resp
    }

    /// True when the peer closes (EOF or reset) before `WAIT` runs out.
    pub fn closed(&mut self) -> bool {
        loop {
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut =>
                {
                    return false
                }
                Err(_) => return true,
            }
        }
    }

    /// Bytes already read past the last response head (e.g. the start of a body).
    pub fn take_buffered(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.buf)
    }
}

/// One request on a fresh connection; returns the response.
pub fn request(addr: SocketAddr, raw: &str) -> HttpResponse {
    let mut c = RawConn::connect(addr);
    c.send(raw.as_bytes());
    c.read_response(raw.starts_with("HEAD "))
}

pub fn get(addr: SocketAddr, host: &str, path: &str) -> HttpResponse {
    request(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
    )
}
