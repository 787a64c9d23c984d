//! Response head parsing on httparse for what backends send back: status,
//! headers, body framing relative to the request, and reuse eligibility.

use std::mem::MaybeUninit;

use super::framing::MessageHeaders;
use super::{BodyKind, HeaderSpan, Limits, Version};

/// Why a backend's response head could not be used; all are answered with 502.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ResponseError {
    #[error("malformed response head")]
    Malformed,
    #[error("response head larger than the limit")]
    TooLarge,
    #[error("more response header fields than the limit")]
    TooManyHeaders,
    #[error("invalid Content-Length or Transfer-Encoding in response")]
    BadLength,
}

#[derive(Debug, Clone)]
pub struct ResponseHead {
    pub status: u16,
    pub version: Version,
    pub reason: (u32, u32),
    pub headers: Vec<HeaderSpan>,
    /// Bytes of the head including the blank line.
    pub len: usize,
    pub body: BodyKind,
    /// The backend's Content-Length when valid: forwarded on HEAD and 304
    /// answers, where it describes a body that is not sent.
    pub content_length: Option<u64>,
    /// Transfer codings applied before chunked (forwarded with it), lowercased.
    pub other_codings: Vec<Vec<u8>>,
    /// Both Content-Length and Transfer-Encoding were sent: the body is
    /// framed by chunked and both connections close after it.
    pub framing_conflict: bool,
    /// The backend will keep the connection open and the framing allows reuse.
    pub reusable: bool,
    /// A `Retry-After` header is present (a 503 with it does not mark the backend dead).
    pub retry_after: bool,
    /// `Upgrade: websocket` was sent (only meaningful with 101).
    pub upgrade_websocket: bool,
}

impl ResponseHead {
    pub fn reason<'a>(&self, head: &'a [u8]) -> &'a [u8] {
        &head[self.reason.0 as usize..self.reason.1 as usize]
    }

    pub fn is_interim(&self) -> bool {
        (100..200).contains(&self.status) && self.status != 101
    }
}

/// Header slots on the stack; a response with more fields (up to
/// `limits.response_header_count`) is parsed again with slots on the heap.
const INLINE_HEADERS: usize = 128;

/// Parses a response head from the start of `buf`; `Ok(None)` means more bytes needed.
pub fn parse_response(
    buf: &[u8],
    limits: &Limits,
    request_was_head: bool,
) -> Result<Option<ResponseHead>, ResponseError> {
    // Uninitialised slots, as for requests: no zeroing per response.
    let mut inline = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; INLINE_HEADERS];
    match parse_with(buf, limits, request_was_head, &mut inline) {
        Err(ResponseError::TooManyHeaders) if limits.response_header_count >= INLINE_HEADERS => {
            let mut heap: Vec<MaybeUninit<httparse::Header<'_>>> =
                std::iter::repeat_with(MaybeUninit::uninit)
                    .take(limits.response_header_count + 1)
                    .collect();
            parse_with(buf, limits, request_was_head, &mut heap)
        }
        other => other,
    }
}

fn parse_with<'b>(
    buf: &'b [u8],
    limits: &Limits,
    request_was_head: bool,
    storage: &mut [MaybeUninit<httparse::Header<'b>>],
) -> Result<Option<ResponseHead>, ResponseError> {
    let max_head = limits.response_head_bytes;
    let mut resp = httparse::Response::new(&mut []);
    let len = match httparse::ParserConfig::default()
        .parse_response_with_uninit_headers(&mut resp, buf, storage)
    {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() > max_head => {
            return Err(ResponseError::TooLarge)
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(ResponseError::TooManyHeaders),
        Err(_) => return Err(ResponseError::Malformed),
    };
    if resp.headers.len() > limits.response_header_count {
        return Err(ResponseError::TooManyHeaders);
    }
    if len > max_head {
        return Err(ResponseError::TooLarge);
    }
    let (Some(status), Some(minor)) = (resp.code, resp.version) else {
        return Err(ResponseError::Malformed);
    };
    // httparse takes any three digits; `050` would go out as `50`.
    if status < 100 {
        return Err(ResponseError::Malformed);
    }
    let version = if minor == 0 {
        Version::Http10
    } else {
        Version::Http11
    };
    // A status line without a reason phrase gives no slice of `buf` at
    // all: only a non-empty reason has an offset into it.
    let reason_span = match resp.reason {
        Some(reason) if !reason.is_empty() => super::span_in(buf, reason.as_bytes()),
        _ => (0, 0),
    };

    let mut shared = MessageHeaders::default();
    let mut retry_after = false;
    let mut headers = Vec::with_capacity(resp.headers.len());
    for h in resp.headers.iter() {
        headers.push(HeaderSpan::from_httparse(buf, h));
        let name = h.name.as_bytes();
        if !shared.take(name, h.value) && name.eq_ignore_ascii_case(b"retry-after") {
            retry_after = true;
        }
    }
    let persistent = shared.persistent(version);
    let framing = &mut shared.framing;
    let delimited = framing
        .response_body(status, request_was_head, version)
        .map_err(|_| ResponseError::BadLength)?;
    Ok(Some(ResponseHead {
        status,
        version,
        reason: reason_span,
        headers,
        len,
        body: delimited.body,
        content_length: framing.valid_content_length(),
        other_codings: std::mem::take(&mut framing.other_codings),
        framing_conflict: delimited.conflict,
        reusable: persistent && delimited.clean && status != 101,
        retry_after,
        upgrade_websocket: shared.upgrade_websocket,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_at_every_split() {
        let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX: y\r\n\r\nhello";
        let head_len = raw.len() - 5;
        for cut in 0..head_len {
            assert!(
                parse_response(&raw[..cut], &Limits::default(), false)
                    .unwrap()
                    .is_none(),
                "{cut}"
            );
        }
        let r = parse_response(raw, &Limits::default(), false)
            .unwrap()
            .unwrap();
        assert_eq!(
            (r.status, r.len, r.body, r.reusable),
            (200, head_len, BodyKind::Length(5), true)
        );
        assert_eq!(r.reason(raw), b"OK");
    }

    #[test]
    fn header_count_limit_beyond_the_inline_slots() {
        let head = |n: usize| {
            format!(
                "HTTP/1.1 200 OK\r\n{}Content-Length: 0\r\n\r\n",
                "X: y\r\n".repeat(n)
            )
        };
        let limits = Limits::default();
        // 999 + Content-Length = 1000 fields: taken; one more: refused.
        let r = parse_response(head(999).as_bytes(), &limits, false)
            .unwrap()
            .unwrap();
        assert_eq!(r.headers.len(), 1000);
        assert_eq!(
            parse_response(head(1000).as_bytes(), &limits, false).unwrap_err(),
            ResponseError::TooManyHeaders
        );
        let few = Limits {
            response_header_count: 10,
            ..limits
        };
        assert!(parse_response(head(9).as_bytes(), &few, false).is_ok());
        assert!(parse_response(head(10).as_bytes(), &few, false).is_err());
    }

    #[test]
    fn reuse_and_framing_facts() {
        let p = |s: &str, head| {
            parse_response(s.as_bytes(), &Limits::default(), head)
                .unwrap()
                .unwrap()
        };
        let r = p(
            "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\n",
            false,
        );
        assert!(!r.reusable);
        let r = p("HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n", false);
        assert!(!r.reusable);
        let r = p(
            "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\n",
            false,
        );
        assert!(r.reusable);
        let r = p("HTTP/1.1 200 OK\r\n\r\n", false);
        assert_eq!((r.body, r.reusable), (BodyKind::UntilClose, false));
        let r = p("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", true);
        assert_eq!((r.body, r.reusable), (BodyKind::Empty, true));
        let r = p(
            "HTTP/1.1 503 Busy\r\nRetry-After: 1\r\nContent-Length: 0\r\n\r\n",
            false,
        );
        assert!(r.retry_after);
        let r = p("HTTP/1.1 100 Continue\r\n\r\n", false);
        assert!(r.is_interim());
        assert!(parse_response(
            b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
            &Limits::default(),
            false
        )
        .is_err());
        assert!(parse_response(b"garbage\r\n\r\n", &Limits::default(), false).is_err());
        // Found by the fuzzer: a status below 100 is no status at all.
        assert!(
            parse_response(b"HTTP/1.1 050 Continue\r\n\r\n", &Limits::default(), false).is_err()
        );
        for status in ["000", "012", "099"] {
            let raw = format!("HTTP/1.1 {status} X\r\n\r\n");
            assert!(
                parse_response(raw.as_bytes(), &Limits::default(), false).is_err(),
                "{status}"
            );
        }
        // Found by the fuzz seeds: no reason phrase at all.
        let r = p("HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n", false);
        assert_eq!((r.status, r.reason(b"")), (200, &b""[..]));
    }
}
