//! Sans-io RESP2 framing: replies are decoded by redis-protocol, with a
//! bound on how large a reply may grow before the connection is dropped;
//! commands are written directly (an array of bulk strings is all we send,
//! and redis-protocol's generic encoder cost 3 % of a shard's CPU: it
//! allocates a frame list per command and counts digits with `log10`). The
//! tests check the writer byte for byte against redis-protocol's encoder.

use redis_protocol::resp2::decode::decode;

use crate::ascii::push_decimal;
pub use redis_protocol::resp2::types::OwnedFrame as Reply;

/// Largest single reply accepted. Frontend lists are small; a reply this big
/// means a misconfigured key and is refused rather than buffered.
pub const MAX_REPLY_BYTES: usize = 4 * 1024 * 1024;

/// The error reply a reply over [`MAX_REPLY_BYTES`] is replaced by: the
/// connection lives on, and only the caller it was for sees this.
pub fn too_large() -> Reply {
    Reply::Error(TOO_LARGE.into())
}

const TOO_LARGE: &str = "LOPACHE-TOO-LARGE reply over the size limit, skipped";

/// The reply stands for one that was too large (see [`too_large`]).
pub fn is_too_large(reply: &Reply) -> bool {
    matches!(reply, Reply::Error(e) if e == TOO_LARGE)
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("reply larger than {MAX_REPLY_BYTES} bytes")]
    TooLarge,
    #[error("protocol error: {0}")]
    Protocol(String),
}

/// Appends one command (an array of bulk strings) to `out`.
pub fn encode_command(out: &mut Vec<u8>, args: &[&[u8]]) {
    push_length(out, b'*', args.len());
    for arg in args {
        push_bulk(out, std::slice::from_ref(arg));
    }
}

/// Like [`encode_command`], with each argument given as pieces that are sent
/// concatenated: a key such as `<prefix>frontend:<host>` goes straight into
/// the command without being assembled in a buffer of its own first.
pub fn encode_command_parts(out: &mut Vec<u8>, args: &[&[&[u8]]]) {
    push_length(out, b'*', args.len());
    for parts in args {
        push_bulk(out, parts);
    }
}

/// One bulk string made of `parts`: `$<len>\r\n<parts...>\r\n`.
fn push_bulk(out: &mut Vec<u8>, parts: &[&[u8]]) {
    push_length(out, b'$', parts.iter().map(|p| p.len()).sum());
    for part in parts {
        out.extend_from_slice(part);
    }
    out.extend_from_slice(b"\r\n");
}

/// `*<n>\r\n` or `$<n>\r\n`.
fn push_length(out: &mut Vec<u8>, kind: u8, n: usize) {
    out.push(kind);
    push_decimal(out, n as u64);
    out.extend_from_slice(b"\r\n");
}

/// Decodes one reply from the front of `buf`: `Ok(None)` when more bytes are needed.
pub fn decode_reply(buf: &[u8]) -> Result<Option<(Reply, usize)>, CodecError> {
    match decode(buf) {
        Ok(Some(found)) => Ok(Some(found)),
        Ok(None) if buf.len() > MAX_REPLY_BYTES => Err(CodecError::TooLarge),
        Ok(None) => Ok(None),
        Err(e) => Err(CodecError::Protocol(format!("{e:?}"))),
    }
}

/// The elements of an array reply of strings, borrowed; `None` if it is not one.
pub fn strings(reply: &Reply) -> Option<Vec<&[u8]>> {
    array_items(reply)?.iter().map(string_bytes).collect()
}

/// The elements of an array reply (a nil reply counts as empty), borrowed.
pub fn array_items(reply: &Reply) -> Option<&[Reply]> {
    match reply {
        Reply::Array(items) => Some(items),
        Reply::Null => Some(&[]),
        _ => None,
    }
}

/// The bytes of a string reply.
pub fn string_bytes(reply: &Reply) -> Option<&[u8]> {
    match reply {
        Reply::BulkString(b) | Reply::SimpleString(b) => Some(b),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reference: redis-protocol's own encoder.
    fn reference(args: &[&[u8]]) -> Vec<u8> {
        use redis_protocol::resp2::encode::encode_borrowed;
        use redis_protocol::resp2::types::BorrowedFrame;
        let frames: Vec<BorrowedFrame<'_>> =
            args.iter().map(|a| BorrowedFrame::BulkString(a)).collect();
        let frame = BorrowedFrame::Array(&frames);
        let mut out = vec![0; frame.encode_len(false)];
        encode_borrowed(&mut out, &frame, false).unwrap();
        out
    }

    #[test]
    fn commands_match_redis_protocol_byte_for_byte() {
        let long = vec![b'x'; 12345];
        let many: Vec<&[u8]> = (0..123).map(|_| &b"k"[..]).collect();
        let cases: Vec<Vec<&[u8]>> = vec![
            vec![b"PING"],
            vec![b"LRANGE", b"frontend:a", b"0", b"-1"],
            vec![b"SET", b"", b"\r\n\0binary"],
            vec![b"SET", b"k", &long],
            many,
            vec![],
        ];
        for args in cases {
            let mut ours = b"prefix".to_vec();
            encode_command(&mut ours, &args);
            assert_eq!(&ours[6..], &reference(&args)[..], "{} args", args.len());
            // The same arguments given in pieces (split at every third byte,
            // with an empty piece at the end) encode to the same bytes.
            let pieces: Vec<Vec<&[u8]>> = args
                .iter()
                .map(|a| a.chunks(3).chain([&b""[..]]).collect())
                .collect();
            let parts: Vec<&[&[u8]]> = pieces.iter().map(Vec::as_slice).collect();
            let mut joined = Vec::new();
            encode_command_parts(&mut joined, &parts);
            assert_eq!(joined, reference(&args), "{} args in pieces", args.len());
        }
    }

    #[test]
    fn encodes_commands_as_bulk_arrays() {
        let mut out = Vec::new();
        encode_command(&mut out, &[b"LRANGE", b"frontend:a", b"0", b"-1"]);
        encode_command(&mut out, &[b"PING"]);
        assert_eq!(out, b"*4\r\n$6\r\nLRANGE\r\n$10\r\nfrontend:a\r\n$1\r\n0\r\n$2\r\n-1\r\n*1\r\n$4\r\nPING\r\n");
    }

    #[test]
    fn decodes_at_every_split() {
        let wire = b"*2\r\n$3\r\nfoo\r\n$-1\r\n:7\r\n-ERR no\r\n";
        for cut in 0..14 {
            assert_eq!(decode_reply(&wire[..cut]).unwrap(), None, "{cut}");
        }
        let (first, used) = decode_reply(wire).unwrap().unwrap();
        assert_eq!(used, 18);
        assert_eq!(
            first,
            Reply::Array(vec![Reply::BulkString(b"foo".to_vec()), Reply::Null])
        );
        let (second, used2) = decode_reply(&wire[used..]).unwrap().unwrap();
        assert_eq!(second, Reply::Integer(7));
        let (third, _) = decode_reply(&wire[used + used2..]).unwrap().unwrap();
        assert!(matches!(third, Reply::Error(e) if e == "ERR no"));
    }

    #[test]
    fn refuses_garbage_and_oversized_replies() {
        assert!(decode_reply(b"?what\r\n").is_err());
        let mut big = format!("${}\r\n", MAX_REPLY_BYTES + 10).into_bytes();
        big.resize(MAX_REPLY_BYTES + 1, b'x');
        assert_eq!(decode_reply(&big), Err(CodecError::TooLarge));
    }

    #[test]
    fn strings_from_arrays() {
        let r = Reply::Array(vec![
            Reply::BulkString(b"a".to_vec()),
            Reply::BulkString(b"b".to_vec()),
        ]);
        assert_eq!(strings(&r), Some(vec![&b"a"[..], &b"b"[..]]));
        assert_eq!(strings(&Reply::Integer(1)), None);
        assert_eq!(strings(&Reply::Null), Some(vec![]));
        let r = Reply::Array(vec![Reply::BulkString(b"a".to_vec()), Reply::Integer(2)]);
        let items = array_items(&r).unwrap();
        assert_eq!(string_bytes(&items[0]), Some(&b"a"[..]));
        assert_eq!(string_bytes(&items[1]), None);
        assert_eq!(array_items(&Reply::Null), Some(&[][..]));
        assert_eq!(array_items(&Reply::Integer(1)), None);
    }
}
