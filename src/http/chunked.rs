//! Incremental chunked transfer-coding decoder (RFC 9112 section 7.1). It is
//! strict on purpose: chunk lines and the CRLF after data must be exact, since
//! the proxy forwards the validated bytes verbatim and any leniency here would
//! let a client frame one message for us and another for the backend.

use super::headers::{is_hop_by_hop, is_protected, is_tchar};

/// Why a chunked body was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ChunkedError {
    #[error("invalid chunk size")]
    BadSize,
    #[error("chunk size line too long")]
    LineTooLong,
    #[error("invalid byte in chunk extension or trailer")]
    BadByte,
    #[error("missing CRLF after chunk data")]
    MissingCrlf,
    #[error("trailer section too large")]
    TrailersTooLarge,
    #[error("a framing, routing or hop-by-hop field in the trailers")]
    ForbiddenTrailer,
}

/// Where in the chunked grammar (RFC 9112 section 7.1) the decoder stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading hex digits of the chunk size.
    Size {
        digits: u32,
    },
    /// After `;`: an extension name.
    ExtNameStart,
    ExtName,
    /// After `=`: a token or a quoted string.
    ExtValueStart,
    ExtToken,
    ExtQuoted,
    /// After a backslash inside a quoted string.
    ExtQuotedPair,
    /// Right after the closing quote of a quoted value.
    ExtQuotedEnd,
    /// Saw CR ending the size line, need LF.
    SizeLf,
    /// Inside chunk data.
    Data,
    /// After chunk data: need CR then LF.
    DataCr,
    DataLf,
    /// Trailer section: at the start of a line (an empty line ends the body).
    TrailerLineStart,
    /// A trailer field's name, up to its colon.
    TrailerName,
    /// A trailer field's value, up to CR.
    TrailerValue,
    /// Saw CR inside or at the start of a trailer line.
    TrailerLf {
        empty: bool,
    },
    Done,
}

/// Hex digits of a chunk size, leading zeros included: 16 hold any u64,
/// and parsers that count digits (h11 takes at most 20, others 16) must
/// not part ways with us over a run of zeros.
const MAX_SIZE_DIGITS: u32 = 16;

/// Longest trailer name checked against the forbidden ones (all shorter).
const TRAILER_NAME_PREFIX: usize = 24;

/// What one call to [`ChunkedDecoder::step`] consumed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// This many bytes of framing (sizes, extensions, CRLFs, trailers).
    Framing(usize),
    /// This many bytes of chunk data, at the start of the input.
    Data(usize),
}

#[derive(Debug, Clone)]
pub struct ChunkedDecoder {
    state: State,
    /// Size of the chunk being read, then bytes of it still to come.
    remaining: u64,
    /// Bytes on the current size line, bounded by `max_line`.
    line_len: usize,
    trailer_len: usize,
    /// The start of the trailer name being read, lowercased.
    name: [u8; TRAILER_NAME_PREFIX],
    name_len: usize,
    max_line: usize,
    max_trailers: usize,
}

impl ChunkedDecoder {
    pub fn new(max_line: usize, max_trailers: usize) -> Self {
        ChunkedDecoder {
            state: State::Size { digits: 0 },
            remaining: 0,
            line_len: 0,
            trailer_len: 0,
            name: [0; TRAILER_NAME_PREFIX],
            name_len: 0,
            max_line,
            max_trailers,
        }
    }

    /// The final CRLF after the last chunk and trailers has been consumed.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Consumes as much of `input` as belongs to the body and returns how much,
    /// for pass-through forwarding. Stops early only when the body ends.
    pub fn advance(&mut self, input: &[u8]) -> Result<usize, ChunkedError> {
        let mut pos = 0;
        while pos < input.len() && !self.is_done() {
            pos += match self.step(&input[pos..])? {
                Step::Framing(n) | Step::Data(n) => n,
            };
        }
        Ok(pos)
    }

    /// Consumes either a run of framing bytes or a run of data bytes from the
    /// front of `input` (non-empty, body not done). Always makes progress.
    pub fn step(&mut self, input: &[u8]) -> Result<Step, ChunkedError> {
        if self.state == State::Data {
            let n = (input.len() as u64).min(self.remaining) as usize;
            self.remaining -= n as u64;
            if self.remaining == 0 {
                self.state = State::DataCr;
            }
            return Ok(Step::Data(n));
        }
        let mut used = 0;
        for &b in input {
            if self.state == State::Data || self.state == State::Done {
                break;
            }
            used += 1;
            self.framing_byte(b)?;
        }
        Ok(Step::Framing(used))
    }

    fn framing_byte(&mut self, b: u8) -> Result<(), ChunkedError> {
        use State::*;
        let on_size_line = !matches!(
            self.state,
            Data | DataCr
                | DataLf
                | TrailerLineStart
                | TrailerName
                | TrailerValue
                | TrailerLf { .. }
                | Done
        );
        if on_size_line {
            self.line_len += 1;
            if self.line_len > self.max_line {
                return Err(ChunkedError::LineTooLong);
            }
        }
        self.state = match (self.state, b) {
            (Size { digits }, _) if b.is_ascii_hexdigit() => self.size_digit(digits, b)?,
            (Size { digits: 0 }, _) => return Err(ChunkedError::BadSize),
            // The line ends in CRLF only: a bare LF is where lenient and
            // strict parsers part ways.
            (_, b'\n') if on_size_line && self.state != SizeLf => {
                return Err(ChunkedError::MissingCrlf)
            }
            (Size { .. } | ExtName | ExtToken | ExtQuotedEnd, b'\r') => SizeLf,
            (Size { .. } | ExtName | ExtToken | ExtQuotedEnd, b';') => ExtNameStart,
            // RFC 9112 section 7.1.1: after the size only `;` and an
            // extension may follow, so `5 xyz` is refused rather than passed
            // on for the next hop to read in its own way. The grammar's BWS
            // around `;` and `=` is refused too: h11 and others do not take
            // it, and no client needs it.
            (Size { .. }, _) => return Err(ChunkedError::BadSize),
            (ExtNameStart | ExtName, _) if is_tchar(b) => ExtName,
            (ExtName, b'=') => ExtValueStart,
            (ExtValueStart, b'"') => ExtQuoted,
            (ExtValueStart | ExtToken, _) if is_tchar(b) => ExtToken,
            (ExtQuoted, b'"') => ExtQuotedEnd,
            (ExtQuoted, b'\\') => ExtQuotedPair,
            (ExtQuoted | ExtQuotedPair, _) if is_field_byte(b) => ExtQuoted,
            (
                ExtNameStart | ExtName | ExtValueStart | ExtToken | ExtQuoted | ExtQuotedPair
                | ExtQuotedEnd,
                _,
            ) => return Err(ChunkedError::BadByte),
            (SizeLf, b'\n') => {
                self.line_len = 0;
                if self.remaining == 0 {
                    TrailerLineStart
                } else {
                    Data
                }
            }
            (SizeLf, _) => return Err(ChunkedError::MissingCrlf),
            (DataCr, b'\r') => DataLf,
            (DataLf, b'\n') => Size { digits: 0 },
            (DataCr | DataLf, _) => return Err(ChunkedError::MissingCrlf),
            (TrailerLineStart, b'\r') => TrailerLf { empty: true },
            // A trailer is a field line: a token name, a colon, a value. A
            // leading space would be obs-fold (RFC 9112 section 5.2), which
            // a recipient may join to the previous line or not.
            (TrailerLineStart | TrailerName, _) if is_tchar(b) => self.trailer_name_byte(b)?,
            (TrailerName, b':') => self.trailer_name_end()?,
            (TrailerValue, b'\r') => TrailerLf { empty: false },
            (TrailerValue, _) if is_field_byte(b) => self.trailer_byte(TrailerValue)?,
            (TrailerLineStart | TrailerName | TrailerValue, _) => {
                return Err(ChunkedError::BadByte)
            }
            (TrailerLf { empty: true }, b'\n') => Done,
            (TrailerLf { empty: false }, b'\n') => TrailerLineStart,
            (TrailerLf { .. }, _) => return Err(ChunkedError::MissingCrlf),
            (Data | Done, _) => self.state,
        };
        Ok(())
    }

    /// One more hex digit of a chunk size.
    fn size_digit(&mut self, digits: u32, b: u8) -> Result<State, ChunkedError> {
        if digits == MAX_SIZE_DIGITS {
            return Err(ChunkedError::BadSize);
        }
        let d = (b as char).to_digit(16).unwrap_or(0) as u64;
        self.remaining = (self.remaining << 4) | d;
        Ok(State::Size { digits: digits + 1 })
    }

    /// One byte of a trailer field's name (the first starts a new name).
    fn trailer_name_byte(&mut self, b: u8) -> Result<State, ChunkedError> {
        if self.state == State::TrailerLineStart {
            self.name_len = 0;
        }
        // Kept as a CGI-style backend reads it (`_` as `-`), so that
        // `Content_Length` is refused like `Content-Length`.
        if let Some(slot) = self.name.get_mut(self.name_len) {
            *slot = if b == b'_' {
                b'-'
            } else {
                b.to_ascii_lowercase()
            };
        }
        self.name_len += 1;
        self.trailer_byte(State::TrailerName)
    }

    /// The colon after a trailer's name. RFC 9110 section 6.5.1: fields that
    /// frame, route or control the connection have no meaning in trailers,
    /// and parsers that merge trailers (or refuse them) disagree.
    fn trailer_name_end(&mut self) -> Result<State, ChunkedError> {
        let name = &self.name[..self.name_len.min(TRAILER_NAME_PREFIX)];
        if self.name_len <= TRAILER_NAME_PREFIX && (is_protected(name) || is_hop_by_hop(name)) {
            return Err(ChunkedError::ForbiddenTrailer);
        }
        self.trailer_byte(State::TrailerValue)
    }

    /// Counts one trailer byte against the limit, then moves to `next`.
    fn trailer_byte(&mut self, next: State) -> Result<State, ChunkedError> {
        self.trailer_len += 1;
        if self.trailer_len > self.max_trailers {
            return Err(ChunkedError::TrailersTooLarge);
        }
        Ok(next)
    }
}

/// Visible characters, space, tab and obs-text; no other control bytes.
fn is_field_byte(b: u8) -> bool {
    b == b'\t' || (b' '..=b'~').contains(&b) || b >= 0x80
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(input: &[u8]) -> Result<(Vec<u8>, usize, bool), ChunkedError> {
        let mut d = ChunkedDecoder::new(64, 64);
        let mut data = Vec::new();
        let mut pos = 0;
        while pos < input.len() && !d.is_done() {
            match d.step(&input[pos..])? {
                Step::Framing(n) => pos += n,
                Step::Data(n) => {
                    data.extend_from_slice(&input[pos..pos + n]);
                    pos += n
                }
            }
        }
        Ok((data, pos, d.is_done()))
    }

    #[test]
    fn decodes_chunks_extensions_and_trailers() {
        let body = b"5\r\nhello\r\n6;name=\"v\"\r\n world\r\n0\r\nX-T: 1\r\n\r\nNEXT";
        let (data, used, done) = decode_all(body).unwrap();
        assert_eq!(data, b"hello world");
        assert!(done);
        assert_eq!(&body[used..], b"NEXT");
    }

    #[test]
    fn split_at_every_byte_gives_same_result() {
        let body = b"A\r\n0123456789\r\n1;ext\r\nx\r\n0\r\nT: v\r\n\r\n";
        for cut in 0..body.len() {
            let mut d = ChunkedDecoder::new(64, 64);
            let a = d.advance(&body[..cut]).unwrap();
            assert_eq!(a, cut);
            assert!(!d.is_done(), "done early at {cut}");
            let b = d.advance(&body[cut..]).unwrap();
            assert_eq!(a + b, body.len());
            assert!(d.is_done());
        }
    }

    #[test]
    fn refusals() {
        let table: &[(&[u8], ChunkedError)] = &[
            (b"\r\n", ChunkedError::BadSize),
            (b"g\r\n", ChunkedError::BadSize),
            (b"-1\r\n", ChunkedError::BadSize),
            (b"0x5\r\n", ChunkedError::BadSize),
            (b"5\nhello\r\n", ChunkedError::MissingCrlf),
            (b"5\r\nhelloX\r\n", ChunkedError::MissingCrlf),
            (b"5\r\nhello\n0\r\n\r\n", ChunkedError::MissingCrlf),
            (b"10000000000000000\r\n", ChunkedError::BadSize),
            (b"00000000000000005\r\n", ChunkedError::BadSize),
            (b"5 ;a\r\n", ChunkedError::BadSize),
            (b"5\t;a\r\n", ChunkedError::BadSize),
            (b"5; a\r\n", ChunkedError::BadByte),
            (b"5;a =b\r\n", ChunkedError::BadByte),
            (b"5;a= b\r\n", ChunkedError::BadByte),
            (b"5;a=b ;c\r\n", ChunkedError::BadByte),
            (
                b"0\r\nContent-Length: 5\r\n\r\n",
                ChunkedError::ForbiddenTrailer,
            ),
            (
                b"0\r\nTRANSFER-ENCODING: chunked\r\n\r\n",
                ChunkedError::ForbiddenTrailer,
            ),
            (b"0\r\nHost: x\r\n\r\n", ChunkedError::ForbiddenTrailer),
            (
                b"0\r\nConnection: close\r\n\r\n",
                ChunkedError::ForbiddenTrailer,
            ),
            (b"5;a\x00b\r\n", ChunkedError::BadByte),
            (b"0\r\nX\x01: y\r\n\r\n", ChunkedError::BadByte),
            // RFC 9112 section 7.1.1: only BWS ";" may follow the size.
            (b"5 xyz\r\nhello\r\n", ChunkedError::BadSize),
            (b"5 \r\nhello\r\n", ChunkedError::BadSize),
            (b"5\txyz\r\n", ChunkedError::BadSize),
            (b"5;\r\nhello\r\n", ChunkedError::BadByte),
            (b"5;a b\r\n", ChunkedError::BadByte),
            (b"5;a=\r\n", ChunkedError::BadByte),
            (b"5;a=b c\r\n", ChunkedError::BadByte),
            (b"5;a=\"b\"c\r\n", ChunkedError::BadByte),
            (b"5;a=\"b\r\n", ChunkedError::BadByte),
            (b"5;a=b\n", ChunkedError::MissingCrlf),
            (b"5;a=\"b\" c\r\n", ChunkedError::BadByte),
            (b"5;a=\"b\nc\"\r\n", ChunkedError::MissingCrlf),
            // Trailers are field lines: no obs-fold, no space before the colon.
            (b"0\r\nX: y\r\n z\r\n\r\n", ChunkedError::BadByte),
            (b"0\r\nX : y\r\n\r\n", ChunkedError::BadByte),
            (b"0\r\nNoColon\r\n\r\n", ChunkedError::BadByte),
            (b"0\r\n: y\r\n\r\n", ChunkedError::BadByte),
            (b"0\r\nX: y\ny\r\n\r\n", ChunkedError::BadByte),
        ];
        for (input, want) in table {
            assert_eq!(
                decode_all(input).unwrap_err(),
                *want,
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
        let long = format!("5;{}\r\n", "e".repeat(100));
        assert_eq!(
            decode_all(long.as_bytes()).unwrap_err(),
            ChunkedError::LineTooLong
        );
        let trailers = format!("0\r\nX: {}\r\n\r\n", "t".repeat(100));
        assert_eq!(
            decode_all(trailers.as_bytes()).unwrap_err(),
            ChunkedError::TrailersTooLarge
        );
    }

    #[test]
    fn extensions_without_whitespace_are_taken() {
        for line in [
            "5;a",
            "5;a=b",
            "5;a;b=c",
            "5;a=\"quoted; \\\" value\"",
            "5;a=\"\";b=c;d",
            "000000000000005;x",
        ] {
            let body = format!("{line}\r\nhello\r\n0\r\n\r\n");
            let (data, _, done) =
                decode_all(body.as_bytes()).unwrap_or_else(|e| panic!("{line}: {e}"));
            assert_eq!((data.as_slice(), done), (&b"hello"[..], true), "{line}");
        }
    }

    #[test]
    fn leading_zeros_are_fine_within_sixteen_digits() {
        let (data, _, done) = decode_all(b"0000000000000003\r\nabc\r\n0\r\n\r\nX").unwrap();
        assert_eq!((data.as_slice(), done), (&b"abc"[..], true));
    }
}
