//! Message body length rules of RFC 9112 section 6, for requests (where every
//! ambiguity is a 400, because ambiguity is how requests are smuggled) and for
//! responses (where ambiguity means the upstream connection is not reused).

use super::headers::{is_token, list_contains, list_elements, parse_content_length};
use super::{BodyKind, Version};

/// Why a message's framing was refused. For a request each maps to a 4xx/5xx
/// and a closed connection; for a response, to 502.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FramingError {
    /// RFC 9112 section 6.1: a sender must not send both; we reject (6.3 item 3 allows it).
    #[error("both Transfer-Encoding and Content-Length")]
    TransferEncodingWithContentLength,
    /// RFC 9112 section 6.1: TE in a 1.0 message means the framing is faulty.
    #[error("Transfer-Encoding on HTTP/1.0")]
    TransferEncodingOnHttp10,
    /// RFC 9112 section 6.3 item 4: a request whose final coding is not chunked
    /// has no determinable length.
    #[error("final transfer coding is not chunked")]
    FinalCodingNotChunked,
    /// RFC 9112 section 6.1: chunked must not be applied more than once.
    #[error("chunked applied more than once")]
    ChunkedTwice,
    /// RFC 9112 section 6.3 item 5: invalid or differing Content-Length values.
    #[error("invalid Content-Length")]
    InvalidContentLength,
    /// A transfer coding that is not a bare token (RFC 9112 section 7: a
    /// coding is a token; chunked takes no parameters, 7.1). Parameters of
    /// other codings exist in the grammar but not in practice; lopache takes
    /// none, so no next hop can read a parameter as a different coding.
    #[error("invalid transfer coding")]
    InvalidTransferCoding,
    /// A request coding other than chunked (RFC 9112 section 6.1: a server
    /// that does not understand a coding answers 501; nginx does the same).
    #[error("unsupported transfer coding")]
    UnsupportedTransferCoding,
}

/// What the framing-relevant headers of one message said.
/// The header fields requests and responses share: body framing and what
/// `Connection` and `Upgrade` say. One scanner for both, so a request and a
/// response are read by the same rules; each parser reads the few fields of
/// its own kind itself.
#[derive(Debug, Default)]
pub struct MessageHeaders {
    pub framing: FramingHeaders,
    /// `Connection: close`.
    pub close: bool,
    /// `Connection: keep-alive`.
    pub keep_alive: bool,
    /// `Connection: upgrade`.
    pub connection_upgrade: bool,
    /// `Upgrade: websocket`.
    pub upgrade_websocket: bool,
}

impl MessageHeaders {
    /// Takes a shared field; false: not one of them (the caller's to read).
    pub fn take(&mut self, name: &[u8], value: &[u8]) -> bool {
        if name.eq_ignore_ascii_case(b"content-length") {
            self.framing.add_content_length(value);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            self.framing.add_transfer_encoding(value);
        } else if name.eq_ignore_ascii_case(b"connection") {
            self.close |= list_contains(value, b"close");
            self.keep_alive |= list_contains(value, b"keep-alive");
            self.connection_upgrade |= list_contains(value, b"upgrade");
        } else if name.eq_ignore_ascii_case(b"upgrade") {
            self.upgrade_websocket |= list_contains(value, b"websocket");
        } else {
            return false;
        }
        true
    }

    /// RFC 9112 section 9.3: HTTP/1.1 persists unless `close`; HTTP/1.0
    /// only with `keep-alive` (and no `close`).
    pub fn persistent(&self, version: Version) -> bool {
        match version {
            Version::Http11 => !self.close,
            Version::Http10 => self.keep_alive && !self.close,
        }
    }
}

/// What a message's Content-Length fields said, all of them together.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum ContentLength {
    /// None was sent.
    #[default]
    Absent,
    /// One valid length (repeated identically, at most).
    Valid(u64),
    /// A value was not a length, or two differed.
    Invalid,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FramingHeaders {
    /// Every Content-Length value seen, validated and de-duplicated.
    pub content_length: ContentLength,
    pub has_transfer_encoding: bool,
    /// How many times `chunked` was listed, over all Transfer-Encoding fields.
    chunked: u32,
    /// The last coding listed is `chunked`.
    last_is_chunked: bool,
    /// Some coding was not a bare token.
    invalid_coding: bool,
    /// Codings other than chunked, lowercased, in order (a response forwards
    /// them; a request with any is refused). Empty for the usual message.
    pub other_codings: Vec<Vec<u8>>,
}

/// How a response's body is delimited and what that allows afterwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseFraming {
    pub body: BodyKind,
    /// The framing was clean enough to reuse the upstream connection.
    pub clean: bool,
    /// Both Transfer-Encoding and Content-Length: framed by chunked (RFC 9112
    /// section 6.3 item 3), but both connections close afterwards.
    pub conflict: bool,
}

impl FramingHeaders {
    /// Records one Content-Length field value.
    pub fn add_content_length(&mut self, value: &[u8]) {
        let parsed = parse_content_length(value);
        self.content_length = match (self.content_length, parsed) {
            (ContentLength::Absent, Some(n)) => ContentLength::Valid(n),
            (ContentLength::Valid(a), Some(b)) if a == b => ContentLength::Valid(a),
            _ => ContentLength::Invalid,
        };
    }

    /// Records one Transfer-Encoding field value. Empty list elements are
    /// skipped (RFC 9110 section 5.6.1), so `,chunked` is `chunked`.
    pub fn add_transfer_encoding(&mut self, value: &[u8]) {
        self.has_transfer_encoding = true;
        for coding in list_elements(value) {
            if !is_token(coding) {
                self.invalid_coding = true;
                self.last_is_chunked = false;
            } else if coding.eq_ignore_ascii_case(b"chunked") {
                self.chunked += 1;
                self.last_is_chunked = true;
            } else {
                self.other_codings.push(coding.to_ascii_lowercase());
                self.last_is_chunked = false;
            }
        }
    }

    /// The valid Content-Length, if one was sent.
    pub fn valid_content_length(&self) -> Option<u64> {
        match self.content_length {
            ContentLength::Valid(n) => Some(n),
            ContentLength::Absent | ContentLength::Invalid => None,
        }
    }

    /// Body of a request (RFC 9112 section 6.3 items 3 to 7).
    pub fn request_body(&self, version: Version) -> Result<BodyKind, FramingError> {
        if self.has_transfer_encoding {
            if version == Version::Http10 {
                return Err(FramingError::TransferEncodingOnHttp10);
            }
            if self.content_length != ContentLength::Absent {
                return Err(FramingError::TransferEncodingWithContentLength);
            }
            if self.invalid_coding {
                return Err(FramingError::InvalidTransferCoding);
            }
            if self.chunked > 1 {
                return Err(FramingError::ChunkedTwice);
            }
            if !self.last_is_chunked {
                return Err(FramingError::FinalCodingNotChunked);
            }
            if !self.other_codings.is_empty() {
                return Err(FramingError::UnsupportedTransferCoding);
            }
            return Ok(BodyKind::Chunked);
        }
        match self.content_length {
            ContentLength::Absent => Ok(BodyKind::Empty),
            ContentLength::Invalid => Err(FramingError::InvalidContentLength),
            ContentLength::Valid(0) => Ok(BodyKind::Empty),
            ContentLength::Valid(n) => Ok(BodyKind::Length(n)),
        }
    }

    /// Body of a response, given what was asked (RFC 9112 section 6.3 items 1
    /// to 8). `Err` when the length cannot be trusted at all (502).
    pub fn response_body(
        &self,
        status: u16,
        request_was_head: bool,
        version: Version,
    ) -> Result<ResponseFraming, FramingError> {
        let framing = |body, clean| ResponseFraming {
            body,
            clean,
            conflict: false,
        };
        // Item 1: HEAD responses and 1xx/204/304 never have a body.
        if request_was_head || (100..200).contains(&status) || status == 204 || status == 304 {
            return Ok(framing(BodyKind::Empty, true));
        }
        if self.has_transfer_encoding {
            if version == Version::Http10 {
                // Section 6.1: faulty framing; read to close, never reuse.
                return Ok(framing(BodyKind::UntilClose, false));
            }
            if self.invalid_coding {
                return Err(FramingError::InvalidTransferCoding);
            }
            if self.chunked > 1 {
                return Err(FramingError::ChunkedTwice);
            }
            if !self.last_is_chunked {
                // Item 4: a response whose final coding is not chunked ends at close.
                return Ok(framing(BodyKind::UntilClose, false));
            }
            // Item 3: TE overrides CL; such a message may be an attempt at
            // response splitting, so neither connection is reused after it.
            let conflict = self.content_length != ContentLength::Absent;
            return Ok(ResponseFraming {
                body: BodyKind::Chunked,
                clean: !conflict,
                conflict,
            });
        }
        match self.content_length {
            ContentLength::Absent => Ok(framing(BodyKind::UntilClose, false)),
            ContentLength::Invalid => Err(FramingError::InvalidContentLength),
            ContentLength::Valid(0) => Ok(framing(BodyKind::Empty, true)),
            ContentLength::Valid(n) => Ok(framing(BodyKind::Length(n), true)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(cl: &[&str], te: &[&str], v: Version) -> Result<BodyKind, FramingError> {
        let mut f = FramingHeaders::default();
        cl.iter().for_each(|c| f.add_content_length(c.as_bytes()));
        te.iter()
            .for_each(|t| f.add_transfer_encoding(t.as_bytes()));
        f.request_body(v)
    }

    #[test]
    fn request_framing_table() {
        use BodyKind::*;
        use FramingError::*;
        use Version::*;
        type Case = (
            &'static [&'static str],
            &'static [&'static str],
            Version,
            Result<BodyKind, FramingError>,
        );
        let table: &[Case] = &[
            (&[], &[], Http11, Ok(Empty)),
            (&["0"], &[], Http11, Ok(Empty)),
            (&["10"], &[], Http11, Ok(Length(10))),
            (&["10", "10"], &[], Http11, Ok(Length(10))),
            (&["10, 10"], &[], Http11, Ok(Length(10))),
            (&["10", "11"], &[], Http11, Err(InvalidContentLength)),
            (&["+10"], &[], Http11, Err(InvalidContentLength)),
            (&["ten"], &[], Http11, Err(InvalidContentLength)),
            (&["-1"], &[], Http11, Err(InvalidContentLength)),
            (&[], &["chunked"], Http11, Ok(Chunked)),
            (&[], &["Chunked"], Http11, Ok(Chunked)),
            (&[], &[",chunked"], Http11, Ok(Chunked)),
            (&[], &["chunked, "], Http11, Ok(Chunked)),
            (
                &[],
                &["gzip, chunked"],
                Http11,
                Err(UnsupportedTransferCoding),
            ),
            (
                &[],
                &["gzip", "chunked"],
                Http11,
                Err(UnsupportedTransferCoding),
            ),
            (&[], &["chunked;x=1"], Http11, Err(InvalidTransferCoding)),
            (&[], &["chunked ;x=1"], Http11, Err(InvalidTransferCoding)),
            (&[], &["\"chunked\""], Http11, Err(InvalidTransferCoding)),
            (&[], &["chunked x"], Http11, Err(InvalidTransferCoding)),
            (
                &[],
                &["chunked", "chunked;q=1"],
                Http11,
                Err(InvalidTransferCoding),
            ),
            (&[], &["chunked, gzip"], Http11, Err(FinalCodingNotChunked)),
            (&[], &["gzip"], Http11, Err(FinalCodingNotChunked)),
            (&[], &["identity"], Http11, Err(FinalCodingNotChunked)),
            (&[], &[""], Http11, Err(FinalCodingNotChunked)),
            (&[], &["chunked", "chunked"], Http11, Err(ChunkedTwice)),
            (
                &["5"],
                &["chunked"],
                Http11,
                Err(TransferEncodingWithContentLength),
            ),
            (&[], &["chunked"], Http10, Err(TransferEncodingOnHttp10)),
            (&["5"], &[], Http10, Ok(Length(5))),
        ];
        for (cl, te, v, want) in table {
            assert_eq!(req(cl, te, *v), *want, "CL {cl:?} TE {te:?} {v:?}");
        }
    }

    #[test]
    fn response_framing_table() {
        use BodyKind::*;
        use Version::*;
        let mk = |cl: &[&str], te: &[&str]| {
            let mut f = FramingHeaders::default();
            cl.iter().for_each(|c| f.add_content_length(c.as_bytes()));
            te.iter()
                .for_each(|t| f.add_transfer_encoding(t.as_bytes()));
            f
        };
        let ok = |body, clean, conflict| {
            Ok(ResponseFraming {
                body,
                clean,
                conflict,
            })
        };
        type Case = (
            &'static [&'static str],
            &'static [&'static str],
            u16,
            bool,
            Version,
            Result<ResponseFraming, FramingError>,
        );
        let table: &[Case] = &[
            (&["5"], &[], 200, true, Http11, ok(Empty, true, false)),
            (&["5"], &[], 204, false, Http11, ok(Empty, true, false)),
            (&["5"], &[], 304, false, Http11, ok(Empty, true, false)),
            (&[], &[], 103, false, Http11, ok(Empty, true, false)),
            (&["5"], &[], 200, false, Http11, ok(Length(5), true, false)),
            (
                &["5, 5"],
                &[],
                200,
                false,
                Http11,
                ok(Length(5), true, false),
            ),
            (&[], &[], 200, false, Http11, ok(UntilClose, false, false)),
            (
                &[],
                &["chunked"],
                200,
                false,
                Http11,
                ok(Chunked, true, false),
            ),
            (
                &[],
                &["gzip, chunked"],
                200,
                false,
                Http11,
                ok(Chunked, true, false),
            ),
            (
                &["5"],
                &["chunked"],
                200,
                false,
                Http11,
                ok(Chunked, false, true),
            ),
            (
                &[],
                &["gzip"],
                200,
                false,
                Http11,
                ok(UntilClose, false, false),
            ),
            (
                &[],
                &["chunked"],
                200,
                false,
                Http10,
                ok(UntilClose, false, false),
            ),
            (
                &[],
                &["chunked;x=1"],
                200,
                false,
                Http11,
                Err(FramingError::InvalidTransferCoding),
            ),
            (
                &[],
                &["chunked, chunked"],
                200,
                false,
                Http11,
                Err(FramingError::ChunkedTwice),
            ),
            (
                &["5", "6"],
                &[],
                200,
                false,
                Http11,
                Err(FramingError::InvalidContentLength),
            ),
        ];
        for (cl, te, status, head, version, want) in table {
            assert_eq!(
                mk(cl, te).response_body(*status, *head, *version),
                *want,
                "CL {cl:?} TE {te:?} {status} head={head} {version:?}"
            );
        }
        assert_eq!(
            mk(&[], &["GZip, chunked"]).other_codings,
            vec![b"gzip".to_vec()]
        );
    }
}
