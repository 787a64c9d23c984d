//! Address ranges as operators write them (`10.0.0.0/8`, `2001:db8::/32`,
//! or one address), for lists of trusted peers.

use std::fmt;
use std::net::IpAddr;

/// One range: the addresses whose first `prefix` bits equal `network`'s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// An IPv4 peer on a dual-stack socket (`::ffff:10.0.0.1`) is matched as
    /// the IPv4 address it is.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.network, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                masked(n.to_bits().into(), a.to_bits().into(), 32, self.prefix)
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => masked(n.to_bits(), a.to_bits(), 128, self.prefix),
            _ => false,
        }
    }
}

/// The first `prefix` of `width` bits agree.
fn masked(network: u128, addr: u128, width: u32, prefix: u8) -> bool {
    let shift = width - u32::from(prefix);
    shift >= width || network >> shift == addr >> shift
}

impl std::str::FromStr for Cidr {
    type Err = String;
    fn from_str(text: &str) -> Result<Cidr, String> {
        let bad = || format!("{text:?} is not an address or range like \"10.0.0.0/8\"");
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let network: IpAddr = addr.parse().map_err(|_| bad())?;
        let width = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => width,
            Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) && p.len() <= 3 => {
                p.parse().map_err(|_| bad())?
            }
            Some(_) => return Err(bad()),
        };
        if prefix > width {
            return Err(bad());
        }
        Ok(Cidr { network, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::Cidr;

    fn contains(range: &str, ip: &str) -> bool {
        range.parse::<Cidr>().unwrap().contains(ip.parse().unwrap())
    }

    #[test]
    fn ranges() {
        assert!(contains("10.0.0.0/8", "10.255.1.2"));
        assert!(!contains("10.0.0.0/8", "11.0.0.1"));
        assert!(contains("10.0.0.0/8", "::ffff:10.1.2.3"));
        assert!(contains("0.0.0.0/0", "192.0.2.1"));
        assert!(!contains("0.0.0.0/0", "2001:db8::1"));
        assert!(contains("127.0.0.1", "127.0.0.1"));
        assert!(!contains("127.0.0.1", "127.0.0.2"));
        assert!(contains("2001:db8::/32", "2001:db8:ffff::1"));
        assert!(!contains("2001:db8::/32", "2001:db9::1"));
        assert!(contains("::/0", "::1"));
        for bad in [
            "10.0.0.0/33",
            "10.0.0.0/",
            "10.0.0.0/-1",
            "host/8",
            "::/129",
            "10.0.0.0/+8",
        ] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
        assert_eq!(
            "10.0.0.0/8".parse::<Cidr>().unwrap().to_string(),
            "10.0.0.0/8"
        );
    }
}
