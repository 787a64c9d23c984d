//! Finding where one RESP2 reply ends before decoding it, sans-io. The
//! scanner reads type bytes and declared lengths as bytes arrive, keeping its
//! place between reads, so a large reply is walked once (not re-decoded on
//! every read) and its size is known from what it declares. A reply larger
//! than the limit is then skipped as it streams in, its bytes dropped, and
//! stands in the batch as one error reply: the connection, and every other
//! caller's reply on it, stay good.

/// What the scanner found at the front of the buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scan {
    /// A whole reply of this many bytes, within the limit: decode it.
    Complete(usize),
    /// An oversized reply ended; its last `usize` bytes are at the front of
    /// the buffer and are dropped with it.
    Skipped(usize),
    /// More bytes are needed. While skipping, the first `usize` bytes of the
    /// buffer belong to the oversized reply and may be dropped now.
    NeedMore(usize),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScanError {
    #[error("invalid RESP: {0}")]
    Invalid(&'static str),
}

/// Nested arrays deeper than this are refused (lopache's replies nest two deep).
const MAX_DEPTH: usize = 8;
/// A header or simple-string line longer than this is refused.
const MAX_LINE: usize = 64 * 1024;

#[derive(Debug, Clone)]
pub struct ReplyScanner {
    limit: usize,
    /// Bytes of the current reply scanned so far that are still in the buffer.
    pos: usize,
    /// Bytes of the current reply seen in all, dropped ones included.
    total: usize,
    /// Elements still to come, per open array.
    open: Vec<u64>,
    /// Bytes still to come of the bulk string being read, CRLF included.
    bulk_left: u64,
    /// The reply is over the limit: its bytes are dropped as they come.
    skipping: bool,
}

impl ReplyScanner {
    /// A scanner for replies of at most `limit` bytes.
    pub fn new(limit: usize) -> ReplyScanner {
        ReplyScanner {
            limit,
            pos: 0,
            total: 0,
            open: Vec::new(),
            bulk_left: 0,
            skipping: false,
        }
    }

    /// Continues where the last call stopped; `buf` starts where the current
    /// reply starts (less whatever [`Scan::NeedMore`] let the caller drop)
    /// and has only grown at its end since.
    pub fn scan(&mut self, buf: &[u8]) -> Result<Scan, ScanError> {
        loop {
            if self.bulk_left > 0 {
                let take = (buf.len() - self.pos).min(self.bulk_left as usize);
                self.advance(take);
                self.bulk_left -= take as u64;
                if self.bulk_left > 0 {
                    return Ok(self.need_more());
                }
                // (A skipped bulk's bytes may already have been dropped.)
                if !self.skipping && !buf[..self.pos].ends_with(b"\r\n") {
                    return Err(ScanError::Invalid("bulk string not followed by CRLF"));
                }
                if self.element_done() {
                    return Ok(self.finish());
                }
                continue;
            }
            let rest = &buf[self.pos..];
            let Some(nl) = rest.iter().position(|&b| b == b'\n') else {
                if rest.len() > MAX_LINE {
                    return Err(ScanError::Invalid("line too long"));
                }
                return Ok(self.need_more());
            };
            if nl == 0 || rest[nl - 1] != b'\r' {
                return Err(ScanError::Invalid("line not ended by CRLF"));
            }
            let (kind, line) = (rest[0], &rest[1..nl - 1]);
            self.advance(nl + 1);
            let done = match kind {
                b'+' | b'-' | b':' => self.element_done(),
                b'$' => match number(line)? {
                    -1 => self.element_done(),
                    n if n >= 0 => {
                        self.bulk_left = n as u64 + 2;
                        if self.total as u64 + self.bulk_left > self.limit as u64 {
                            self.skipping = true;
                        }
                        false
                    }
                    _ => return Err(ScanError::Invalid("negative bulk length")),
                },
                b'*' => match number(line)? {
                    -1 | 0 => self.element_done(),
                    n if n > 0 => {
                        if self.open.len() == MAX_DEPTH {
                            return Err(ScanError::Invalid("arrays nested too deep"));
                        }
                        // Each element takes at least 3 bytes (`:0\r\n` is 4).
                        if self.total as u64 + 3 * n as u64 > self.limit as u64 {
                            self.skipping = true;
                        }
                        self.open.push(n as u64);
                        false
                    }
                    _ => return Err(ScanError::Invalid("negative array length")),
                },
                _ => return Err(ScanError::Invalid("unknown reply type")),
            };
            if done {
                return Ok(self.finish());
            }
        }
    }

    fn advance(&mut self, n: usize) {
        self.pos += n;
        self.total += n;
        if self.total > self.limit {
            self.skipping = true;
        }
    }

    /// While skipping, what has been scanned may go (`pos` never sits
    /// inside a line: a line is consumed whole or rescanned).
    fn need_more(&mut self) -> Scan {
        if self.skipping {
            let droppable = std::mem::take(&mut self.pos);
            Scan::NeedMore(droppable)
        } else {
            Scan::NeedMore(0)
        }
    }

    /// One element ended: closes the arrays it completes. True when the
    /// whole reply is complete.
    fn element_done(&mut self) -> bool {
        while let Some(left) = self.open.last_mut() {
            *left -= 1;
            if *left > 0 {
                return false;
            }
            self.open.pop();
        }
        true
    }

    /// The reply ended: report it and get ready for the next one.
    fn finish(&mut self) -> Scan {
        let (pos, skipped) = (self.pos, self.skipping);
        *self = ReplyScanner::new(self.limit);
        if skipped {
            Scan::Skipped(pos)
        } else {
            Scan::Complete(pos)
        }
    }
}

/// A RESP length: an optional `-` and decimal digits.
fn number(line: &[u8]) -> Result<i64, ScanError> {
    let (neg, digits) = match line.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, line),
    };
    if digits.is_empty() || digits.len() > 18 || !digits.iter().all(u8::is_ascii_digit) {
        return Err(ScanError::Invalid("bad length"));
    }
    let n = digits
        .iter()
        .fold(0i64, |acc, &d| acc * 10 + i64::from(d - b'0'));
    Ok(if neg { -n } else { n })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Scans `wire` fed in pieces of `step` bytes, dropping what the scanner
    /// allows; returns what it reported for each reply.
    fn scan_all(wire: &[u8], limit: usize, step: usize) -> Result<Vec<Scan>, ScanError> {
        let mut scanner = ReplyScanner::new(limit);
        let (mut buf, mut fed, mut out) = (Vec::new(), 0, Vec::new());
        let mut most_held = 0;
        loop {
            match scanner.scan(&buf)? {
                found @ (Scan::Complete(n) | Scan::Skipped(n)) => {
                    if let Scan::Complete(_) = found {
                        // The decoder agrees on where the reply ends.
                        let decoded = crate::redis::codec::decode_reply(&buf[..n]);
                        assert!(matches!(decoded, Ok(Some((_, used))) if used == n));
                    }
                    out.push(found);
                    buf.drain(..n);
                    continue;
                }
                Scan::NeedMore(drop) => {
                    buf.drain(..drop);
                }
            }
            most_held = most_held.max(buf.len());
            if fed == wire.len() {
                assert!(buf.is_empty(), "bytes left over: {buf:?}");
                assert!(most_held <= limit + step + 64, "held {most_held} bytes");
                return Ok(out);
            }
            let end = (fed + step).min(wire.len());
            buf.extend_from_slice(&wire[fed..end]);
            fed = end;
        }
    }

    #[test]
    fn finds_each_reply_whatever_the_reads() {
        let wire = b"*2\r\n$3\r\nfoo\r\n$-1\r\n:7\r\n-ERR no\r\n+OK\r\n*0\r\n*-1\r\n*2\r\n*1\r\n:1\r\n$0\r\n\r\n";
        for step in [1, 2, 3, 7, 100] {
            let found = scan_all(wire, 1 << 20, step).unwrap();
            assert_eq!(
                found,
                [18, 4, 9, 5, 4, 5, 18].map(Scan::Complete),
                "step {step}"
            );
        }
    }

    #[test]
    fn an_oversized_reply_is_skipped_and_the_next_one_found() {
        // By declared length (one big bulk), by size (many small items), and
        // by an element count that cannot fit.
        let big_bulk = format!("${}\r\n{}\r\n", 5000, "x".repeat(5000));
        let many: String = format!("*600\r\n{}", "$4\r\nabcd\r\n".repeat(600));
        let count = "*100000\r\n".to_string() + &":1\r\n".repeat(100_000);
        for (name, big) in [("bulk", big_bulk), ("items", many), ("count", count)] {
            let wire = format!("{big}:42\r\n");
            for step in [1, 13, 4096] {
                let found = scan_all(wire.as_bytes(), 1024, step).unwrap();
                assert_eq!(found.len(), 2, "{name} step {step}");
                assert!(
                    matches!(found[0], Scan::Skipped(_)),
                    "{name} step {step}: {found:?}"
                );
                assert_eq!(found[1], Scan::Complete(5), "{name} step {step}");
            }
        }
    }

    #[test]
    fn refuses_what_is_not_resp() {
        for wire in [
            &b"?x\r\n"[..],
            b"$x\r\n",
            b"*-2\r\n",
            b"$3\r\nabcde\r\n",
            b"+OK\n",
        ] {
            assert!(
                scan_all(wire, 1024, 1).is_err(),
                "{:?}",
                String::from_utf8_lossy(wire)
            );
        }
        let deep = "*1\r\n".repeat(MAX_DEPTH + 1) + ":1\r\n";
        assert!(scan_all(deep.as_bytes(), 1024, 4).is_err());
    }
}
