//! Incremental chunked transfer-coding decoder (RFC 9112 section 7.1). It is
//! strict on purpose: chunk lines and the CRLF after data must be exact, since
//! the proxy forwards the validated bytes verbatim and any leniency here would
//! let a client frame one message for us and another for the backend.

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
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading hex digits of the chunk size.
    Size {
        digits: u32,
    },
    /// After the size: optional whitespace, then extensions, up to CR.
    Ext,
    /// Saw CR ending the size line, need LF.
    SizeLf,
    /// Inside chunk data.
    Data,
    /// After chunk data: need CR then LF.
    DataCr,
    DataLf,
    /// Trailer section: at the start of a line (an empty line ends the body).
    TrailerLineStart,
    /// Inside a trailer field line.
    TrailerLine,
    /// Saw CR inside or at the start of a trailer line.
    TrailerLf {
        empty: bool,
    },
    Done,
}

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
        match self.state {
            State::Size { .. } | State::Ext | State::SizeLf => {
                self.line_len += 1;
                if self.line_len > self.max_line {
                    return Err(ChunkedError::LineTooLong);
                }
            }
            _ => {}
        }
        self.state = match (self.state, b) {
            (State::Size { digits }, _) if b.is_ascii_hexdigit() => {
                // Leading zeros are fine; overflow of the value is not.
                let d = (b as char).to_digit(16).unwrap_or(0) as u64;
                self.remaining = self
                    .remaining
                    .checked_mul(16)
                    .ok_or(ChunkedError::BadSize)?
                    + d;
                State::Size { digits: digits + 1 }
            }
            (State::Size { .. } | State::Ext, b'\n') => return Err(ChunkedError::MissingCrlf),
            (State::Size { digits: 0 }, _) => return Err(ChunkedError::BadSize),
            (State::Size { .. }, b'\r') => State::SizeLf,
            (State::Size { .. }, b';' | b' ' | b'\t') => State::Ext,
            (State::Size { .. }, _) => return Err(ChunkedError::BadSize),
            (State::Ext, b'\r') => State::SizeLf,
            (State::Ext, _) if is_field_byte(b) => State::Ext,
            (State::Ext, _) => return Err(ChunkedError::BadByte),
            (State::SizeLf, b'\n') => {
                self.line_len = 0;
                if self.remaining == 0 {
                    State::TrailerLineStart
                } else {
                    State::Data
                }
            }
            (State::SizeLf, _) => return Err(ChunkedError::MissingCrlf),
            (State::DataCr, b'\r') => State::DataLf,
            (State::DataLf, b'\n') => State::Size { digits: 0 },
            (State::DataCr | State::DataLf, _) => return Err(ChunkedError::MissingCrlf),
            (State::TrailerLineStart, b'\r') => State::TrailerLf { empty: true },
            (State::TrailerLineStart | State::TrailerLine, _) if is_field_byte(b) => {
                self.trailer_len += 1;
                if self.trailer_len > self.max_trailers {
                    return Err(ChunkedError::TrailersTooLarge);
                }
                State::TrailerLine
            }
            (State::TrailerLine, b'\r') => State::TrailerLf { empty: false },
            (State::TrailerLineStart | State::TrailerLine, _) => return Err(ChunkedError::BadByte),
            (State::TrailerLf { empty: true }, b'\n') => State::Done,
            (State::TrailerLf { empty: false }, b'\n') => State::TrailerLineStart,
            (State::TrailerLf { .. }, _) => return Err(ChunkedError::MissingCrlf),
            (State::Data | State::Done, _) => self.state,
        };
        Ok(())
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
        let body = b"A\r\n0123456789\r\n1 ; ext\r\nx\r\n0\r\nT: v\r\n\r\n";
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
            (b"5;a\x00b\r\n", ChunkedError::BadByte),
            (b"0\r\nX\x01: y\r\n\r\n", ChunkedError::BadByte),
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
    fn leading_zeros_are_fine_within_the_line_limit() {
        let (data, _, done) = decode_all(b"00000000000000000003\r\nabc\r\n0\r\n\r\n").unwrap();
        assert_eq!((data.as_slice(), done), (&b"abc"[..], true));
    }
}
