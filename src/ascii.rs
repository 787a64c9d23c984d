//! Numbers and addresses written as ASCII straight into a byte buffer (the
//! per-request paths, Redis commands, forwarded headers, status lines, used
//! `core::fmt`, whose machinery costs more than the few bytes it writes),
//! and the one test of "visible ASCII" that values lopache passes on as
//! they are (request IDs, syslog tags, paths of its own) must meet.

use std::net::IpAddr;

/// 1 to `max` visible ASCII characters: no space, no control byte, nothing
/// above 0x7e, so the value can be logged or sent on without quoting.
pub fn is_visible(bytes: &[u8], max: usize) -> bool {
    !bytes.is_empty() && bytes.len() <= max && bytes.iter().all(|b| (0x21..=0x7e).contains(b))
}

/// Appends `n` in decimal.
pub fn push_decimal(out: &mut Vec<u8>, n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut rest = n;
    loop {
        at -= 1;
        digits[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    // Byte by byte: a few pushes cost less than a call to `memcpy` for
    // one to five bytes, which is what `extend_from_slice` makes of a
    // length only known at run time (a proxied request writes about ten
    // numbers).
    out.reserve(digits.len() - at);
    for &digit in &digits[at..] {
        out.push(digit);
    }
}

/// Appends `ip` as its `Display` form would (IPv6 goes through `fmt`: its
/// zero-run compression is not worth redoing here).
pub fn push_ip(out: &mut Vec<u8>, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                push_decimal(out, octet.into());
            }
        }
        IpAddr::V6(v6) => {
            use std::io::Write;
            let _ = write!(out, "{v6}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_match_display() {
        for n in [0, 1, 9, 10, 99, 100, 65535, 1234567890, u64::MAX] {
            let mut out = b"x".to_vec();
            push_decimal(&mut out, n);
            assert_eq!(out, format!("x{n}").into_bytes());
        }
    }

    #[test]
    fn addresses_match_display() {
        for text in [
            "0.0.0.0",
            "10.0.0.9",
            "127.0.0.1",
            "255.255.255.255",
            "::1",
            "2001:db8::1",
            "::ffff:1.2.3.4",
        ] {
            let ip: IpAddr = text.parse().unwrap();
            let mut out = Vec::new();
            push_ip(&mut out, ip);
            assert_eq!(String::from_utf8(out).unwrap(), ip.to_string());
        }
    }
}
