//! The PROXY protocol header (HAProxy's specification, versions 1 and 2)
//! that an L4 load balancer puts before a connection's first byte to say
//! whom it is relaying: parsed strictly, so that a header is either exactly
//! the one the specification describes or the connection is refused.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Version 2's 12-byte signature.
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// Version 1's longest line, CRLF included (the specification's bound).
pub const V1_MAX: usize = 107;
/// The longest version 2 header lopache takes: the 16 fixed bytes and up to
/// 4 KiB of addresses and TLVs (AWS, Azure and HAProxy send well under 1 KiB).
pub const V2_MAX: usize = 16 + 4096;
/// The most bytes a header can take before it is known whole.
pub const MAX_HEADER: usize = V2_MAX;

/// The addresses a header carries: the client's and the one it connected to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Relayed {
    pub source: SocketAddr,
    pub destination: SocketAddr,
}

/// What a buffer holding a connection's first bytes says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed {
    /// Every byte so far may begin a valid header: read more.
    Incomplete,
    /// A whole header of `len` bytes. `relayed` is `None` for `UNKNOWN`
    /// (v1), `LOCAL` (v2, the balancer's own health check) and address
    /// families other than TCP over IPv4 or IPv6: the connection's own peer
    /// stands.
    Header {
        len: usize,
        relayed: Option<Relayed>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error("not a PROXY protocol header")]
    NotAHeader,
    #[error("PROXY v1 line longer than 107 bytes")]
    V1TooLong,
    #[error("malformed PROXY v1 line")]
    V1Malformed,
    #[error("PROXY v2: unknown version or command")]
    V2Command,
    #[error("PROXY v2: unknown address family or protocol")]
    V2Family,
    #[error("PROXY v2: header of {0} bytes is over lopache's 4112")]
    V2TooLong(usize),
    #[error("PROXY v2: addresses longer than the header")]
    V2Truncated,
    #[error("PROXY v2: malformed TLV")]
    V2Tlv,
}

/// Reads a header from the start of `buf`.
pub fn parse(buf: &[u8]) -> Result<Parsed, HeaderError> {
    if starts_like(buf, &V2_SIGNATURE) {
        return if buf.len() < V2_SIGNATURE.len() {
            Ok(Parsed::Incomplete)
        } else {
            parse_v2(buf)
        };
    }
    if starts_like(buf, b"PROXY ") {
        return if buf.len() < 6 {
            Ok(Parsed::Incomplete)
        } else {
            parse_v1(buf)
        };
    }
    Err(HeaderError::NotAHeader)
}

/// `buf` and `prefix` agree over their common length.
fn starts_like(buf: &[u8], prefix: &[u8]) -> bool {
    let n = buf.len().min(prefix.len());
    buf[..n] == prefix[..n]
}

fn parse_v1(buf: &[u8]) -> Result<Parsed, HeaderError> {
    let window = &buf[..buf.len().min(V1_MAX)];
    let Some(cr) = window.windows(2).position(|w| w == b"\r\n") else {
        // Only a CR at the very end may still be followed by its LF; any
        // other control byte (a bare LF, a CR inside the line) is malformed.
        let last = window.len() - 1;
        let control = |(i, &b): (usize, &u8)| b.is_ascii_control() && !(b == b'\r' && i == last);
        if window.iter().enumerate().any(control) {
            return Err(HeaderError::V1Malformed);
        }
        return if buf.len() >= V1_MAX {
            Err(HeaderError::V1TooLong)
        } else {
            Ok(Parsed::Incomplete)
        };
    };
    let line = std::str::from_utf8(&buf[6..cr]).map_err(|_| HeaderError::V1Malformed)?;
    let len = cr + 2;
    if line == "UNKNOWN" || line.starts_with("UNKNOWN ") {
        // The rest of an UNKNOWN line is to be ignored (the specification).
        if line.bytes().any(|b| b.is_ascii_control()) {
            return Err(HeaderError::V1Malformed);
        }
        return Ok(Parsed::Header { len, relayed: None });
    }
    let fields: Vec<&str> = line.split(' ').collect();
    let [family, source, destination, source_port, destination_port] = fields[..] else {
        return Err(HeaderError::V1Malformed);
    };
    let ip = |text: &str| -> Result<IpAddr, HeaderError> {
        match family {
            "TCP4" => text.parse::<Ipv4Addr>().map(IpAddr::V4),
            "TCP6" => text.parse::<Ipv6Addr>().map(IpAddr::V6),
            _ => return Err(HeaderError::V1Malformed),
        }
        .map_err(|_| HeaderError::V1Malformed)
    };
    let relayed = Relayed {
        source: SocketAddr::new(ip(source)?, v1_port(source_port)?),
        destination: SocketAddr::new(ip(destination)?, v1_port(destination_port)?),
    };
    Ok(Parsed::Header {
        len,
        relayed: Some(relayed),
    })
}

/// A port as v1 writes it: decimal digits, no sign, no leading zero.
fn v1_port(text: &str) -> Result<u16, HeaderError> {
    let digits = !text.is_empty() && text.len() <= 5 && text.bytes().all(|b| b.is_ascii_digit());
    if !digits || (text.len() > 1 && text.starts_with('0')) {
        return Err(HeaderError::V1Malformed);
    }
    text.parse().map_err(|_| HeaderError::V1Malformed)
}

fn parse_v2(buf: &[u8]) -> Result<Parsed, HeaderError> {
    let Some(fixed) = buf.get(..16) else {
        // Check what has arrived of the version and family bytes early.
        if let Some(&ver_cmd) = buf.get(12) {
            v2_command(ver_cmd)?;
        }
        if let Some(&family) = buf.get(13) {
            v2_address_len(family)?;
        }
        return Ok(Parsed::Incomplete);
    };
    let local = v2_command(fixed[12])?;
    let address_len = v2_address_len(fixed[13])?;
    let len = 16 + usize::from(u16::from_be_bytes([fixed[14], fixed[15]]));
    if len > V2_MAX {
        return Err(HeaderError::V2TooLong(len));
    }
    if len < 16 + address_len.unwrap_or(0) {
        return Err(HeaderError::V2Truncated);
    }
    let Some(header) = buf.get(..len) else {
        return Ok(Parsed::Incomplete);
    };
    let addresses = &header[16..];
    let tlvs_from = address_len.unwrap_or(addresses.len());
    check_tlvs(&addresses[tlvs_from..])?;
    let relayed = match (local, fixed[13] >> 4) {
        (true, _) => None,
        (false, 1) => {
            let a = addresses;
            let ip = |at: usize| IpAddr::V4(Ipv4Addr::new(a[at], a[at + 1], a[at + 2], a[at + 3]));
            Some(Relayed {
                source: SocketAddr::new(ip(0), u16::from_be_bytes([a[8], a[9]])),
                destination: SocketAddr::new(ip(4), u16::from_be_bytes([a[10], a[11]])),
            })
        }
        (false, 2) => {
            let a = addresses;
            let ip = |at: usize| {
                let octets: [u8; 16] = a[at..at + 16].try_into().expect("16 bytes");
                IpAddr::V6(Ipv6Addr::from(octets))
            };
            Some(Relayed {
                source: SocketAddr::new(ip(0), u16::from_be_bytes([a[32], a[33]])),
                destination: SocketAddr::new(ip(16), u16::from_be_bytes([a[34], a[35]])),
            })
        }
        _ => None,
    };
    Ok(Parsed::Header { len, relayed })
}

/// Version 2 and its command: `true` for LOCAL, `false` for PROXY.
fn v2_command(ver_cmd: u8) -> Result<bool, HeaderError> {
    match ver_cmd {
        0x20 => Ok(true),
        0x21 => Ok(false),
        _ => Err(HeaderError::V2Command),
    }
}

/// The address block's length for a family and protocol byte: `None` for
/// UNSPEC, whose addresses (if any) are skipped.
fn v2_address_len(family: u8) -> Result<Option<usize>, HeaderError> {
    let len = match family >> 4 {
        0 => None,
        1 => Some(12),
        2 => Some(36),
        3 => Some(216),
        _ => return Err(HeaderError::V2Family),
    };
    // Protocol: UNSPEC, STREAM or DGRAM; UNSPEC only with the UNSPEC family.
    match (family >> 4, family & 0x0f) {
        (0, 0) | (1..=3, 1 | 2) => Ok(len),
        _ => Err(HeaderError::V2Family),
    }
}

/// TLVs (type, 16-bit length, value) must fill what follows the addresses
/// exactly; their meaning is not lopache's business.
fn check_tlvs(mut rest: &[u8]) -> Result<(), HeaderError> {
    while !rest.is_empty() {
        let [_, hi, lo, ..] = *rest else {
            return Err(HeaderError::V2Tlv);
        };
        let end = 3 + usize::from(u16::from_be_bytes([hi, lo]));
        rest = rest.get(end..).ok_or(HeaderError::V2Tlv)?;
    }
    Ok(())
}

/// Why a connection's header could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("{0}")]
    Header(#[from] HeaderError),
    #[error("closed before a whole PROXY header")]
    Closed,
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Takes the PROXY header off the front of a fresh connection, and not one
/// byte more: what follows (a TLS ClientHello, a request) stays in the socket
/// for whoever reads next. Each wait peeks at what has arrived; bytes that
/// can only be header are taken, and the header's end is taken exactly. The
/// caller bounds the whole read with a deadline.
pub async fn read(stream: &monoio::net::TcpStream) -> Result<Option<Relayed>, ReadError> {
    use std::os::fd::AsRawFd;
    let fd = stream.as_raw_fd();
    let mut header = Vec::new();
    let mut peeked = vec![0u8; MAX_HEADER];
    loop {
        stream.readable(false).await?;
        let room = MAX_HEADER - header.len();
        let n = match super::recv_now(fd, &mut peeked[..room], libc::MSG_PEEK) {
            Ok(0) => return Err(ReadError::Closed),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e.into()),
        };
        let before = header.len();
        header.extend_from_slice(&peeked[..n]);
        let take = match parse(&header)? {
            Parsed::Incomplete => n,
            Parsed::Header { len, .. } => len - before,
        };
        // The bytes were just peeked, so this takes them without waiting.
        let taken = super::recv_now(fd, &mut peeked[..take], 0)?;
        if taken != take {
            return Err(ReadError::Closed);
        }
        if let Parsed::Header { relayed, .. } = parse(&header)? {
            return Ok(relayed);
        }
    }
}

/// A version 2 header (PROXY command, TCP) for the given addresses followed
/// by `tlvs` verbatim: what the tests and the fuzz seeds send.
pub fn v2_header(relayed: &Relayed, tlvs: &[u8]) -> Vec<u8> {
    let mut out = V2_SIGNATURE.to_vec();
    out.push(0x21);
    let mut addresses = Vec::new();
    match (relayed.source.ip(), relayed.destination.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            out.push(0x11);
            addresses.extend_from_slice(&s.octets());
            addresses.extend_from_slice(&d.octets());
        }
        (s, d) => {
            out.push(0x21);
            addresses.extend_from_slice(&to_v6(s).octets());
            addresses.extend_from_slice(&to_v6(d).octets());
        }
    }
    addresses.extend_from_slice(&relayed.source.port().to_be_bytes());
    addresses.extend_from_slice(&relayed.destination.port().to_be_bytes());
    addresses.extend_from_slice(tlvs);
    out.extend_from_slice(&(addresses.len() as u16).to_be_bytes());
    out.extend_from_slice(&addresses);
    out
}

fn to_v6(ip: IpAddr) -> Ipv6Addr {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn relayed(source: &str, destination: &str) -> Option<Relayed> {
        Some(Relayed {
            source: source.parse().unwrap(),
            destination: destination.parse().unwrap(),
        })
    }

    #[test]
    fn version_1_lines() {
        let line = b"PROXY TCP4 192.0.2.7 10.0.0.1 56324 443\r\nGET /";
        assert_eq!(
            parse(line),
            Ok(Parsed::Header {
                len: 41,
                relayed: relayed("192.0.2.7:56324", "10.0.0.1:443")
            })
        );
        let line = b"PROXY TCP6 2001:db8::7 ::1 65535 80\r\n";
        assert_eq!(
            parse(line),
            Ok(Parsed::Header {
                len: line.len(),
                relayed: relayed("[2001:db8::7]:65535", "[::1]:80")
            })
        );
        for unknown in [
            &b"PROXY UNKNOWN\r\n"[..],
            b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n",
        ] {
            assert_eq!(
                parse(unknown),
                Ok(Parsed::Header {
                    len: unknown.len(),
                    relayed: None
                })
            );
        }
    }

    #[test]
    fn version_1_is_strict() {
        for bad in [
            &b"PROXY TCP4 192.0.2.7 10.0.0.1 56324 443 \r\n"[..],
            b"PROXY TCP4  192.0.2.7 10.0.0.1 56324 443\r\n",
            b"PROXY TCP4 192.0.2.7 10.0.0.1 056324 443\r\n",
            b"PROXY TCP4 192.0.2.7 10.0.0.1 65536 443\r\n",
            b"PROXY TCP4 192.0.2.7 10.0.0.1 +1 443\r\n",
            b"PROXY TCP4 ::1 10.0.0.1 1 443\r\n",
            b"PROXY TCP6 192.0.2.7 ::1 1 443\r\n",
            b"PROXY TCP4 192.0.2.07 10.0.0.1 1 443\r\n",
            b"PROXY UDP4 192.0.2.7 10.0.0.1 1 443\r\n",
            b"PROXY TCP4 192.0.2.7 10.0.0.1 1 443\n",
            b"PROXY TCP4 192.0.2.7\r10.0.0.1 1 443\r\n",
            b"proxy TCP4 192.0.2.7 10.0.0.1 1 443\r\n",
            b"GET / HTTP/1.1\r\n",
        ] {
            assert!(parse(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
        let long = [&b"PROXY UNKNOWN "[..], &[b'x'; 100]].concat();
        assert_eq!(parse(&long), Err(HeaderError::V1TooLong));
    }

    #[test]
    fn every_prefix_of_a_header_is_incomplete() {
        let v1 = b"PROXY TCP4 192.0.2.7 10.0.0.1 56324 443\r\n".to_vec();
        let v2 = v2_header(
            &relayed("[2001:db8::7]:1", "[::1]:2").unwrap(),
            &[0x04, 0x00, 0x02, b'i', b'd'],
        );
        for header in [v1, v2] {
            for n in 1..header.len() {
                assert_eq!(parse(&header[..n]), Ok(Parsed::Incomplete), "{n}");
            }
            assert!(
                matches!(parse(&header), Ok(Parsed::Header { len, .. }) if len == header.len())
            );
        }
    }

    #[test]
    fn version_2_headers() {
        let v4 = relayed("192.0.2.7:56324", "10.0.0.1:443").unwrap();
        let mut header = v2_header(&v4, &[0x01, 0x00, 0x02, b'h', b'2']);
        let len = header.len();
        header.extend_from_slice(b"GET /");
        assert_eq!(
            parse(&header),
            Ok(Parsed::Header {
                len,
                relayed: Some(v4)
            })
        );
        let v6 = relayed("[2001:db8::7]:1", "[::1]:2").unwrap();
        let header = v2_header(&v6, &[]);
        assert_eq!(
            parse(&header),
            Ok(Parsed::Header {
                len: 52,
                relayed: Some(v6)
            })
        );
        // LOCAL: the balancer's own connection, addresses ignored.
        let mut local = v2_header(&v4, &[]);
        local[12] = 0x20;
        assert_eq!(
            parse(&local),
            Ok(Parsed::Header {
                len: 28,
                relayed: None
            })
        );
        // UNSPEC with no addresses.
        let unspec = [&V2_SIGNATURE[..], &[0x21, 0x00, 0x00, 0x00]].concat();
        assert_eq!(
            parse(&unspec),
            Ok(Parsed::Header {
                len: 16,
                relayed: None
            })
        );
    }

    #[test]
    fn version_2_is_strict() {
        let v4 = relayed("192.0.2.7:56324", "10.0.0.1:443").unwrap();
        let good = v2_header(&v4, &[]);
        let with = |at: usize, byte: u8| {
            let mut h = good.clone();
            h[at] = byte;
            h
        };
        assert_eq!(parse(&with(12, 0x11)), Err(HeaderError::V2Command));
        assert_eq!(parse(&with(12, 0x22)), Err(HeaderError::V2Command));
        assert_eq!(parse(&with(13, 0x41)), Err(HeaderError::V2Family));
        assert_eq!(parse(&with(13, 0x13)), Err(HeaderError::V2Family));
        assert_eq!(parse(&with(13, 0x01)), Err(HeaderError::V2Family));
        // Says 4 address bytes for TCP over IPv4's 12.
        assert_eq!(
            parse(&[&good[..14], &[0, 4]].concat()),
            Err(HeaderError::V2Truncated)
        );
        // A TLV that runs past the header.
        let bad_tlv = v2_header(&v4, &[0x04, 0x00, 0x09, b'x']);
        assert_eq!(parse(&bad_tlv), Err(HeaderError::V2Tlv));
        let oversized = [&good[..14], &[0x10, 0x0d]].concat();
        assert_eq!(parse(&oversized), Err(HeaderError::V2TooLong(16 + 4109)));
        // The largest allowed length is taken.
        let tlv = [&[0x04, 0x0f, 0xf1][..], &[b'x'; 0x0ff1]].concat();
        let largest = v2_header(&v4, &tlv);
        assert_eq!(largest.len(), V2_MAX);
        assert!(matches!(parse(&largest), Ok(Parsed::Header { .. })));
    }
}
