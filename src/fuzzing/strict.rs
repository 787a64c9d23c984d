//! An independent, strict HTTP/1.1 message reader used only by the fuzz
//! properties. It is written from RFC 9112's grammar without httparse and
//! without lopache's own decoders, and it refuses everything a lenient reader
//! might take in another way: bare CR or LF, obs-fold, whitespace before a
//! colon, more than one framing field, a framing field in any but its one
//! canonical form. What lopache sends upstream (and to clients) must pass it.

/// One message read from the front of the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Request: method, target, version. Response: version, status, reason.
    pub start: [Vec<u8>; 3],
    /// Field lines as (name, value) with the value's OWS trimmed.
    pub headers: Vec<(Vec<u8>, Vec<u8>)>,
    /// The body, with any chunked coding removed.
    pub body: Vec<u8>,
    /// Bytes of the input that the message took.
    pub consumed: usize,
}

impl Message {
    fn headers_named(&self, name: &[u8]) -> Vec<&[u8]> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
            .collect()
    }
}

type Strict<T> = Result<T, String>;

/// Reads one request, which must be complete.
pub fn read_request(input: &[u8]) -> Strict<Message> {
    let (line, mut pos) = line_at(input, 0)?;
    let parts: Vec<&[u8]> = line.split(|&b| b == b' ').collect();
    let [method, target, version] = parts[..] else {
        return Err(format!("request line {:?}", String::from_utf8_lossy(line)));
    };
    if !is_token(method) {
        return Err("method is not a token".into());
    }
    if target.is_empty()
        || !target
            .iter()
            .all(|&b| (0x21..0x7f).contains(&b) || b >= 0x80)
    {
        return Err("request target".into());
    }
    if version != b"HTTP/1.1" {
        return Err("version".into());
    }
    let headers = fields(input, &mut pos)?;
    let mut msg = Message {
        start: [method.to_vec(), target.to_vec(), version.to_vec()],
        headers,
        body: Vec::new(),
        consumed: 0,
    };
    if msg.headers_named(b"host").len() != 1 {
        return Err("a request needs exactly one Host".into());
    }
    body(input, &mut pos, &mut msg, false)?;
    msg.consumed = pos;
    Ok(msg)
}

/// Reads one response to a request that was (`head`) or was not a HEAD. A
/// response without length ends with the input.
pub fn read_response(input: &[u8], head: bool) -> Strict<Message> {
    let (line, mut pos) = line_at(input, 0)?;
    let mut parts = line.splitn(3, |&b| b == b' ');
    let (Some(version), Some(status), reason) = (parts.next(), parts.next(), parts.next()) else {
        return Err("status line".into());
    };
    if version != b"HTTP/1.1" || status.len() != 3 || !status.iter().all(u8::is_ascii_digit) {
        return Err("status line".into());
    }
    let reason = reason.unwrap_or_default();
    if !reason.iter().all(|&b| is_field_value_byte(b)) {
        return Err("reason phrase".into());
    }
    let headers = fields(input, &mut pos)?;
    let mut msg = Message {
        start: [version.to_vec(), status.to_vec(), reason.to_vec()],
        headers,
        body: Vec::new(),
        consumed: 0,
    };
    let code: u16 = std::str::from_utf8(status)
        .unwrap_or("0")
        .parse()
        .unwrap_or(0);
    let bodyless = head || (100..200).contains(&code) || code == 204 || code == 304;
    if bodyless {
        if !msg.headers_named(b"transfer-encoding").is_empty() {
            return Err("Transfer-Encoding on a bodyless response".into());
        }
        if code == 204 || (100..200).contains(&code) {
            if !msg.headers_named(b"content-length").is_empty() {
                return Err("Content-Length on 1xx or 204".into());
            }
        } else {
            content_length(&msg)?;
        }
    } else {
        body(input, &mut pos, &mut msg, true)?;
    }
    msg.consumed = pos;
    Ok(msg)
}

/// The one line starting at `pos`, without its CRLF, and where the next begins.
fn line_at(input: &[u8], pos: usize) -> Strict<(&[u8], usize)> {
    let rest = &input[pos..];
    let end = rest
        .iter()
        .position(|&b| b == b'\n')
        .ok_or("unterminated line")?;
    if end == 0 || rest[end - 1] != b'\r' {
        return Err("a line not ended by CRLF".into());
    }
    let line = &rest[..end - 1];
    if line.contains(&b'\r') {
        return Err("bare CR".into());
    }
    Ok((line, pos + end + 1))
}

/// Field lines up to and including the empty line.
fn fields(input: &[u8], pos: &mut usize) -> Strict<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut out = Vec::new();
    loop {
        let (line, next) = line_at(input, *pos)?;
        *pos = next;
        if line.is_empty() {
            return Ok(out);
        }
        out.push(field_line(line)?);
    }
}

/// `field-name ":" OWS field-value OWS` (RFC 9112 section 5).
fn field_line(line: &[u8]) -> Strict<(Vec<u8>, Vec<u8>)> {
    let colon = line.iter().position(|&b| b == b':').ok_or("no colon")?;
    let (name, value) = (&line[..colon], &line[colon + 1..]);
    if !is_token(name) {
        return Err(format!("field name {:?}", String::from_utf8_lossy(name)));
    }
    if !value.iter().all(|&b| is_field_value_byte(b)) {
        return Err("control byte in a field value".into());
    }
    let start = value.iter().position(|&b| b != b' ' && b != b'\t');
    let end = value.iter().rposition(|&b| b != b' ' && b != b'\t');
    let value = match (start, end) {
        (Some(s), Some(e)) => &value[s..=e],
        _ => &[][..],
    };
    Ok((name.to_vec(), value.to_vec()))
}

/// The single Content-Length, which must be plain digits; `None` if absent.
fn content_length(msg: &Message) -> Strict<Option<u64>> {
    match msg.headers_named(b"content-length")[..] {
        [] => Ok(None),
        [v] if !v.is_empty() && v.iter().all(u8::is_ascii_digit) => std::str::from_utf8(v)
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
            .map(Some)
            .ok_or_else(|| "Content-Length over 2^64".into()),
        _ => Err("Content-Length not a single plain number".into()),
    }
}

/// Reads the body as the framing fields say (RFC 9112 section 6.3); for a
/// response with neither field, the rest of the input.
fn body(input: &[u8], pos: &mut usize, msg: &mut Message, response: bool) -> Strict<()> {
    let te = msg.headers_named(b"transfer-encoding");
    let cl = content_length(msg)?;
    if !te.is_empty() {
        if cl.is_some() {
            return Err("both Content-Length and Transfer-Encoding".into());
        }
        let [coding] = te[..] else {
            return Err("more than one Transfer-Encoding field".into());
        };
        let codings: Vec<&[u8]> = coding.split(|&b| b == b',').map(trim).collect();
        if codings.last() != Some(&&b"chunked"[..])
            || codings.iter().filter(|c| **c == b"chunked").count() != 1
            || !codings.iter().all(|c| is_token(c))
            || (!response && codings.len() != 1)
        {
            return Err(format!(
                "Transfer-Encoding {:?}",
                String::from_utf8_lossy(coding)
            ));
        }
        msg.body = dechunk(input, pos)?;
        return Ok(());
    }
    let len = match cl {
        Some(n) => n as usize,
        None if response => input.len() - *pos,
        None => 0,
    };
    let end = pos.checked_add(len).filter(|&e| e <= input.len());
    let end = end.ok_or("body shorter than its length")?;
    msg.body = input[*pos..end].to_vec();
    *pos = end;
    Ok(())
}

/// The chunked coding (RFC 9112 section 7.1), trailers included.
fn dechunk(input: &[u8], pos: &mut usize) -> Strict<Vec<u8>> {
    let mut data = Vec::new();
    loop {
        let (line, next) = line_at(input, *pos)?;
        *pos = next;
        let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
        if digits == 0 || digits > 16 {
            return Err("chunk size".into());
        }
        chunk_extensions(&line[digits..])?;
        let hex = std::str::from_utf8(&line[..digits]).map_err(|e| e.to_string())?;
        let size = usize::from_str_radix(hex, 16).map_err(|e| e.to_string())?;
        if size == 0 {
            // Trailer field lines, then the empty line.
            fields(input, pos)?;
            return Ok(data);
        }
        let end = pos
            .checked_add(size)
            .filter(|&e| e + 2 <= input.len())
            .ok_or("chunk data cut short")?;
        data.extend_from_slice(&input[*pos..end]);
        if &input[end..end + 2] != b"\r\n" {
            return Err("chunk data not followed by CRLF".into());
        }
        *pos = end + 2;
    }
}

/// `*( BWS ";" BWS name [ BWS "=" BWS ( token / quoted-string ) ] )`,
/// read by splitting rather than by a state machine, so it does not share
/// a mistake with `http::chunked`.
fn chunk_extensions(mut rest: &[u8]) -> Strict<()> {
    let bws = |s: &[u8]| -> usize { s.iter().take_while(|&&b| b == b' ' || b == b'\t').count() };
    while !rest.is_empty() {
        rest = &rest[bws(rest)..];
        rest = rest
            .strip_prefix(b";")
            .ok_or("chunk extension without ';'")?;
        rest = &rest[bws(rest)..];
        let name = rest.iter().take_while(|&&b| is_tchar(b)).count();
        if name == 0 {
            return Err("chunk extension name".into());
        }
        rest = &rest[name..];
        let after = bws(rest);
        if rest[after..].first() != Some(&b'=') {
            if after > 0 && rest[after..].first() != Some(&b';') {
                return Err("stray bytes after a chunk extension name".into());
            }
            continue;
        }
        rest = &rest[after + 1..];
        rest = &rest[bws(rest)..];
        if rest.first() == Some(&b'"') {
            let mut i = 1;
            loop {
                match rest.get(i) {
                    None => return Err("unterminated quoted string".into()),
                    Some(b'"') => break,
                    Some(b'\\') if rest.get(i + 1).is_some_and(|&b| is_field_value_byte(b)) => {
                        i += 2
                    }
                    Some(&b) if is_field_value_byte(b) => i += 1,
                    Some(_) => return Err("control byte in a quoted string".into()),
                }
            }
            rest = &rest[i + 1..];
        } else {
            let value = rest.iter().take_while(|&&b| is_tchar(b)).count();
            if value == 0 {
                return Err("chunk extension value".into());
            }
            rest = &rest[value..];
        }
        let after = bws(rest);
        if after > 0 && rest[after..].first() != Some(&b';') {
            return Err("stray bytes after a chunk extension".into());
        }
    }
    Ok(())
}

fn trim(s: &[u8]) -> &[u8] {
    let start = s
        .iter()
        .position(|&b| b != b' ' && b != b'\t')
        .unwrap_or(s.len());
    let end = s
        .iter()
        .rposition(|&b| b != b' ' && b != b'\t')
        .map_or(start, |e| e + 1);
    &s[start..end.max(start)]
}

fn is_tchar(b: u8) -> bool {
    matches!(b, b'0'..=b'9' | b'a'..=b'z' | b'A'..=b'Z')
        || matches!(
            b,
            b'!' | b'#'
                | b'$'
                | b'%'
                | b'&'
                | b'\''
                | b'*'
                | b'+'
                | b'-'
                | b'.'
                | b'^'
                | b'_'
                | b'`'
                | b'|'
                | b'~'
        )
}

fn is_token(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|&b| is_tchar(b))
}

/// VCHAR, SP, HTAB and obs-text.
fn is_field_value_byte(b: u8) -> bool {
    b == b' ' || b == b'\t' || (0x21..0x7f).contains(&b) || b >= 0x80
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_canonical_messages() {
        let m = read_request(
            b"POST /x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3;a=\"b;c\"\r\nabc\r\n0\r\nT: v\r\n\r\n",
        )
        .unwrap();
        assert_eq!(
            (m.body.as_slice(), m.start[0].as_slice()),
            (&b"abc"[..], &b"POST"[..])
        );
        let m = read_response(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhiX", false).unwrap();
        assert_eq!((m.body.as_slice(), m.consumed), (&b"hi"[..], 40));
        let m = read_response(b"HTTP/1.1 200 OK\r\n\r\nrest", false).unwrap();
        assert_eq!(m.body, b"rest");
    }

    #[test]
    fn refuses_what_a_lenient_reader_might_read_differently() {
        for raw in [
            &b"GET / HTTP/1.1\nHost: h\r\n\r\n"[..],
            b"GET / HTTP/1.1\r\nHost: h\r\n x\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost : h\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 1, 1\r\n\r\nx",
            b"GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx",
            b"GET / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 1\r\n\r\n0\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n1 x\r\na\r\n0\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n1;a b\r\na\r\n0\r\n\r\n",
            b"GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            b"GET / HTTP/1.0\r\nHost: h\r\n\r\n",
        ] {
            assert!(read_request(raw).is_err(), "{:?}", String::from_utf8_lossy(raw));
        }
    }
}
