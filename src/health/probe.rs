//! One health check: a request of lopache's own to one backend (a fresh
//! connection, `Connection: close`), judged by the response's status and,
//! if asked, by a string its body must contain.

use std::time::Duration;

use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio_rustls::TlsConnector;

use crate::http::chunked::{ChunkedDecoder, Step};
use crate::http::response::parse_response;
use crate::http::{BodyKind, Limits};
use crate::upstream::backend::{BackendUrl, Scheme};
use crate::upstream::{dns, pool};

/// Body bytes read at most to look for the expected string.
const MAX_BODY: usize = 64 * 1024;
const READ_SIZE: usize = 16 * 1024;

/// What one frontend asks of its backends (its `healthcheck:<host>` hash).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Check {
    /// The frontend's host: the request's `Host`.
    pub host: String,
    pub method: String,
    pub path: String,
    /// The status to expect; `None`: any 2xx or 3xx (HAProxy's rule).
    pub status: Option<u16>,
    /// A string the body must contain.
    pub body: Option<String>,
}

impl Check {
    fn passes(&self, status: u16) -> bool {
        match self.status {
            Some(want) => status == want,
            None => (200..400).contains(&status),
        }
    }

    fn request(&self) -> Vec<u8> {
        format!(
            "{} {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: lopache-healthcheck\r\nConnection: close\r\n\r\n",
            self.method, self.path, self.host
        )
        .into_bytes()
    }
}

/// How checks are made: TLS for `https://` backends, the response limits,
/// the time one check may take, and names resolved as the shards resolve
/// them (cached for `dns_ttl`, one lookup per name at a time, at most 8).
pub struct Prober {
    pub connector: TlsConnector,
    pub limits: Limits,
    pub timeout: Duration,
    pub resolver: dns::Resolver,
}

/// Why a check did not pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failed {
    /// The backend failed it.
    Backend(String),
    /// It could not be made (the backend's name did not resolve in time,
    /// or its URL is unusable): says nothing about the backend.
    Unchecked(String),
}

impl Prober {
    /// Checks `url` once: its name within `timeout`, then everything else
    /// (connection, TLS, answer) within `timeout` again.
    pub async fn probe(&self, url: &str, check: &Check) -> Result<(), Failed> {
        let backend = BackendUrl::parse(url).map_err(|e| Failed::Unchecked(e.to_string()))?;
        let addr = (self.resolver)
            .resolve_within(backend.host, backend.port, self.timeout)
            .await
            .map_err(|e| Failed::Unchecked(format!("resolve: {e}")))?;
        match monoio::time::timeout(self.timeout, self.exchange(addr, &backend, check)).await {
            Ok(outcome) => outcome.map_err(Failed::Backend),
            Err(_) => Err(Failed::Backend("timed out".into())),
        }
    }

    async fn exchange(
        &self,
        addr: std::net::SocketAddr,
        backend: &BackendUrl<'_>,
        check: &Check,
    ) -> Result<(), String> {
        let (connector, limits, timeout) = (&self.connector, &self.limits, self.timeout);
        let tls_name = (backend.scheme == Scheme::Https).then_some(backend.host);
        let mut stream = pool::connect(addr, tls_name, connector, timeout)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let (written, _) = stream.write_all(check.request()).await;
        written.map_err(|e| format!("send: {e}"))?;
        let mut buf: Vec<u8> = Vec::with_capacity(READ_SIZE);
        let head = loop {
            if let Some(head) = parse_response(&buf, limits, check.method == "HEAD")
                .map_err(|e| format!("bad response: {e}"))?
            {
                if !head.is_interim() {
                    break head;
                }
                buf.drain(..head.len);
                continue;
            }
            if buf.len() > limits.response_head_bytes || !read_more(&mut stream, &mut buf).await? {
                return Err("closed before a whole response head".into());
            }
        };
        if !check.passes(head.status) {
            return Err(format!("status {}", head.status));
        }
        let Some(want) = &check.body else {
            return Ok(());
        };
        let mut body = buf.split_off(head.len);
        let mut decoded = Vec::new();
        let mut chunked = ChunkedDecoder::new(limits.chunk_line_bytes, limits.trailer_bytes);
        loop {
            let complete = match head.body {
                BodyKind::Length(n) => body.len() as u64 >= n,
                BodyKind::Empty => true,
                BodyKind::Chunked => {
                    dechunk(&mut chunked, &mut body, &mut decoded)?;
                    chunked.is_done()
                }
                BodyKind::UntilClose => false,
            };
            let seen = if head.body == BodyKind::Chunked {
                &decoded
            } else {
                &body
            };
            if contains(seen, want.as_bytes()) {
                return Ok(());
            }
            if complete || seen.len() >= MAX_BODY || !read_more(&mut stream, &mut body).await? {
                return Err(format!("body without {want:?}"));
            }
        }
    }
}

/// Appends what the socket has to `buf`; false at its end.
async fn read_more<S: AsyncReadRent>(stream: &mut S, buf: &mut Vec<u8>) -> Result<bool, String> {
    let (read, chunk) = stream.read(Vec::with_capacity(READ_SIZE)).await;
    match read {
        Ok(0) => Ok(false),
        Ok(_) => {
            buf.extend_from_slice(&chunk);
            Ok(true)
        }
        Err(e) => Err(format!("read: {e}")),
    }
}

/// Moves the chunk data of `raw` into `decoded`, leaving an unfinished
/// piece of framing in `raw`.
fn dechunk(
    decoder: &mut ChunkedDecoder,
    raw: &mut Vec<u8>,
    decoded: &mut Vec<u8>,
) -> Result<(), String> {
    let mut at = 0;
    while at < raw.len() && !decoder.is_done() {
        match decoder
            .step(&raw[at..])
            .map_err(|e| format!("bad chunked body: {e:?}"))?
        {
            Step::Data(n) => {
                decoded.extend_from_slice(&raw[at..at + n]);
                at += n;
            }
            Step::Framing(n) => at += n,
        }
    }
    raw.drain(..at);
    Ok(())
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(status: Option<u16>) -> Check {
        Check {
            host: "app.example".into(),
            method: "GET".into(),
            path: "/health".into(),
            status,
            body: None,
        }
    }

    #[test]
    fn statuses() {
        assert!(check(None).passes(200) && check(None).passes(302));
        assert!(!check(None).passes(404) && !check(None).passes(500) && !check(None).passes(101));
        assert!(check(Some(204)).passes(204) && !check(Some(204)).passes(200));
        assert_eq!(
            check(None).request(),
            b"GET /health HTTP/1.1\r\nHost: app.example\r\nUser-Agent: lopache-healthcheck\r\nConnection: close\r\n\r\n"
        );
    }

    #[test]
    fn chunked_bodies_are_searched_decoded() {
        let mut decoder = ChunkedDecoder::new(64, 256);
        let mut raw = b"3\r\nOK-\r\n2\r\nGO\r\n0\r\n\r\n".to_vec();
        let mut decoded = Vec::new();
        dechunk(&mut decoder, &mut raw, &mut decoded).unwrap();
        assert_eq!(decoded, b"OK-GO");
        assert!(decoder.is_done() && raw.is_empty());
        assert!(contains(&decoded, b"K-G") && !contains(&decoded, b"K-\r\n"));
    }
}
