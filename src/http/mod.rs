//! Sans-io HTTP/1.1: head parsing, RFC 9112 framing, chunked bodies, header
//! rewriting and canned responses. Nothing in here awaits or touches a socket;
//! `proxy` moves the bytes. That keeps every rule table-testable and fuzzable.

pub mod chunked;
pub mod error_page;
pub mod framing;
pub mod headers;
pub mod request;
pub mod response;
pub mod rewrite;

/// Limits on what a client may send. Defaults are named constants; operators
/// override them in the config's `[limits]` table, which is this struct.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Request line plus headers, in bytes. Over it: 431 (414 while still in the request line).
    pub request_head_bytes: usize,
    /// Header fields in one request. Over it: 431.
    pub header_count: usize,
    /// Request target length. Over it: 414.
    pub uri_bytes: usize,
    /// One chunk-size line including extensions. Over it: 400.
    pub chunk_line_bytes: usize,
    /// All trailer fields of a chunked body together. Over it: 400.
    pub trailer_bytes: usize,
    /// A backend's response head. Over it: 502.
    pub response_head_bytes: usize,
    /// Header fields in one response head. Over it: 502.
    pub response_header_count: usize,
    /// Segments (`/`) of a path that `path_matches` route conditions turn
    /// into patterns, one Redis SISMEMBER each. Over it: 414.
    pub path_segments: usize,
}

pub const DEFAULT_REQUEST_HEAD_BYTES: usize = 16 * 1024;
pub const DEFAULT_HEADER_COUNT: usize = 100;
pub const DEFAULT_URI_BYTES: usize = 8 * 1024;
pub const DEFAULT_CHUNK_LINE_BYTES: usize = 4 * 1024;
pub const DEFAULT_TRAILER_BYTES: usize = 16 * 1024;
pub const DEFAULT_RESPONSE_HEAD_BYTES: usize = 64 * 1024;
pub const DEFAULT_RESPONSE_HEADER_COUNT: usize = 1000;
pub const DEFAULT_PATH_SEGMENTS: usize = 32;
/// httparse needs a fixed array; configured request header counts are capped here.
pub const HARD_MAX_HEADERS: usize = 512;
/// Configured response header counts are capped here.
pub const HARD_MAX_RESPONSE_HEADERS: usize = 10_000;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            request_head_bytes: DEFAULT_REQUEST_HEAD_BYTES,
            header_count: DEFAULT_HEADER_COUNT,
            uri_bytes: DEFAULT_URI_BYTES,
            chunk_line_bytes: DEFAULT_CHUNK_LINE_BYTES,
            trailer_bytes: DEFAULT_TRAILER_BYTES,
            response_head_bytes: DEFAULT_RESPONSE_HEAD_BYTES,
            response_header_count: DEFAULT_RESPONSE_HEADER_COUNT,
            path_segments: DEFAULT_PATH_SEGMENTS,
        }
    }
}

/// HTTP version of a parsed message. HTTP/0.9 and 2+ never get this far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    Http10,
    Http11,
}

impl Version {
    pub fn as_str(self) -> &'static str {
        match self {
            Version::Http10 => "HTTP/1.0",
            Version::Http11 => "HTTP/1.1",
        }
    }
}

/// How the body of a message is delimited (RFC 9112 section 6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    /// No body at all.
    Empty,
    /// Exactly this many bytes (never 0: that is `Empty`).
    Length(u64),
    /// Chunked transfer coding; ends with the last chunk and trailers.
    Chunked,
    /// Responses only: everything until the backend closes.
    UntilClose,
}

impl BodyKind {
    pub fn is_empty(self) -> bool {
        self == BodyKind::Empty
    }
}

/// A header field as offsets into the head bytes it was parsed from, so a
/// parsed head owns no borrowed data and can live across awaits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderSpan {
    pub name: (u32, u32),
    pub value: (u32, u32),
}

/// Where `part`, a slice httparse cut from `base`, lies in it: (start, end).
/// Heads are bounded far below 4 GiB, so the offsets fit in u32.
fn span_in(base: &[u8], part: &[u8]) -> (u32, u32) {
    let start = part.as_ptr() as usize - base.as_ptr() as usize;
    debug_assert!(start + part.len() <= base.len());
    (start as u32, (start + part.len()) as u32)
}

impl HeaderSpan {
    fn from_httparse(base: &[u8], h: &httparse::Header<'_>) -> HeaderSpan {
        HeaderSpan {
            name: span_in(base, h.name.as_bytes()),
            value: span_in(base, h.value),
        }
    }

    pub fn name<'a>(&self, head: &'a [u8]) -> &'a [u8] {
        &head[self.name.0 as usize..self.name.1 as usize]
    }

    pub fn value<'a>(&self, head: &'a [u8]) -> &'a [u8] {
        &head[self.value.0 as usize..self.value.1 as usize]
    }
}

/// A path lopache may send as a request target of its own (a health
/// check's): origin-form, visible ASCII without a fragment, at most 1 KiB.
pub fn is_origin_path(path: &str) -> bool {
    path.starts_with('/') && crate::ascii::is_visible(path.as_bytes(), 1024) && !path.contains('#')
}
