//! Message body length rules of RFC 9112 section 6, for requests (where every
//! ambiguity is a 400, because ambiguity is how requests are smuggled) and for
//! responses (where ambiguity means the upstream connection is not reused).

use super::headers::{list_elements, parse_content_length};
use super::{BodyKind, Version};

/// Why a request's framing was refused; each maps to 400 and a closed connection.
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
}

/// What the framing-relevant headers of one message said.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FramingHeaders {
    /// Every Content-Length value seen, already validated and de-duplicated;
    /// `None` if any was invalid or two differed.
    pub content_length: Option<Option<u64>>,
    /// Transfer codings in order, lowercased, across all Transfer-Encoding fields.
    pub codings: Vec<Vec<u8>>,
    pub has_transfer_encoding: bool,
}

impl FramingHeaders {
    /// Records one Content-Length field value.
    pub fn add_content_length(&mut self, value: &[u8]) {
        let parsed = parse_content_length(value);
        self.content_length = match (self.content_length, parsed) {
            (None, Some(n)) => Some(Some(n)),
            (Some(Some(a)), Some(b)) if a == b => Some(Some(a)),
            _ => Some(None),
        };
    }

    /// Records one Transfer-Encoding field value.
    pub fn add_transfer_encoding(&mut self, value: &[u8]) {
        self.has_transfer_encoding = true;
        for coding in list_elements(value) {
            // Parameters (`;q=...`) are not part of the coding name.
            let name = coding.split(|&b| b == b';').next().unwrap_or(coding);
            self.codings
                .push(super::headers::trim_ows(name).to_ascii_lowercase());
        }
    }

    fn chunked_final(&self) -> Result<bool, FramingError> {
        let chunked = self
            .codings
            .iter()
            .filter(|c| c.as_slice() == b"chunked")
            .count();
        let last_is_chunked = self
            .codings
            .last()
            .is_some_and(|c| c.as_slice() == b"chunked");
        if chunked > 1 {
            return Err(FramingError::ChunkedTwice);
        }
        Ok(last_is_chunked)
    }

    /// Body of a request (RFC 9112 section 6.3 items 3 to 7).
    pub fn request_body(&self, version: Version) -> Result<BodyKind, FramingError> {
        if self.has_transfer_encoding {
            if version == Version::Http10 {
                return Err(FramingError::TransferEncodingOnHttp10);
            }
            if self.content_length.is_some() {
                return Err(FramingError::TransferEncodingWithContentLength);
            }
            return match self.chunked_final()? {
                true => Ok(BodyKind::Chunked),
                false => Err(FramingError::FinalCodingNotChunked),
            };
        }
        match self.content_length {
            None => Ok(BodyKind::Empty),
            Some(None) => Err(FramingError::InvalidContentLength),
            Some(Some(0)) => Ok(BodyKind::Empty),
            Some(Some(n)) => Ok(BodyKind::Length(n)),
        }
    }

    /// Body of a response, given what was asked (RFC 9112 section 6.3 items 1 to 8).
    /// Returns the kind and whether the framing was clean enough to reuse the
    /// connection afterwards; `Err` when the length cannot be trusted at all.
    pub fn response_body(
        &self,
        status: u16,
        request_was_head: bool,
        version: Version,
    ) -> Result<(BodyKind, bool), FramingError> {
        // Item 1: HEAD responses and 1xx/204/304 never have a body.
        if request_was_head || (100..200).contains(&status) || status == 204 || status == 304 {
            return Ok((BodyKind::Empty, true));
        }
        if self.has_transfer_encoding {
            if version == Version::Http10 {
                // Section 6.1: faulty framing; read to close, never reuse.
                return Ok((BodyKind::UntilClose, false));
            }
            return match self.chunked_final() {
                // Item 3: TE overrides CL, but such a message is suspect: do not reuse.
                Ok(true) => Ok((BodyKind::Chunked, self.content_length.is_none())),
                // Item 4: a response whose final coding is not chunked ends at close.
                Ok(false) | Err(_) => Ok((BodyKind::UntilClose, false)),
            };
        }
        match self.content_length {
            None => Ok((BodyKind::UntilClose, false)),
            Some(None) => Err(FramingError::InvalidContentLength),
            Some(Some(0)) => Ok((BodyKind::Empty, true)),
            Some(Some(n)) => Ok((BodyKind::Length(n), true)),
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
            (&[], &["gzip, chunked"], Http11, Ok(Chunked)),
            (&[], &["gzip", "chunked"], Http11, Ok(Chunked)),
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
        assert_eq!(
            mk(&["5"], &[]).response_body(200, true, Http11),
            Ok((Empty, true))
        );
        assert_eq!(
            mk(&["5"], &[]).response_body(204, false, Http11),
            Ok((Empty, true))
        );
        assert_eq!(
            mk(&["5"], &[]).response_body(304, false, Http11),
            Ok((Empty, true))
        );
        assert_eq!(
            mk(&[], &[]).response_body(103, false, Http11),
            Ok((Empty, true))
        );
        assert_eq!(
            mk(&["5"], &[]).response_body(200, false, Http11),
            Ok((Length(5), true))
        );
        assert_eq!(
            mk(&[], &[]).response_body(200, false, Http11),
            Ok((UntilClose, false))
        );
        assert_eq!(
            mk(&[], &["chunked"]).response_body(200, false, Http11),
            Ok((Chunked, true))
        );
        assert_eq!(
            mk(&["5"], &["chunked"]).response_body(200, false, Http11),
            Ok((Chunked, false))
        );
        assert_eq!(
            mk(&[], &["gzip"]).response_body(200, false, Http11),
            Ok((UntilClose, false))
        );
        assert_eq!(
            mk(&[], &["chunked"]).response_body(200, false, Http10),
            Ok((UntilClose, false))
        );
        assert_eq!(
            mk(&["5", "6"], &[]).response_body(200, false, Http11),
            Err(FramingError::InvalidContentLength)
        );
    }
}
