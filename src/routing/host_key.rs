//! A host name as the route cache's key, held in the map's own entry when it
//! is short (as nearly every host is), so that finding a host compares bytes
//! already in the cache line the hash led to instead of following a pointer
//! to a separate allocation: with a thousand hosts in turn, that second
//! cache miss per request was a third of a lookup's cost.

use std::borrow::Borrow;
use std::hash::{Hash, Hasher};

/// The longest host kept inline: the key and its length then fill 32 bytes,
/// and an entry (key, result, lease) one 64-byte line.
const INLINE: usize = 30;

#[derive(Clone)]
pub enum HostKey {
    Inline { len: u8, bytes: [u8; INLINE] },
    Spilled(Box<[u8]>),
}

impl HostKey {
    pub fn new(host: &str) -> HostKey {
        let host = host.as_bytes();
        match u8::try_from(host.len()) {
            Ok(len) if host.len() <= INLINE => {
                let mut bytes = [0; INLINE];
                bytes[..host.len()].copy_from_slice(host);
                HostKey::Inline { len, bytes }
            }
            _ => HostKey::Spilled(host.into()),
        }
    }

    pub fn as_bytes(&self) -> &[u8] {
        match self {
            HostKey::Inline { len, bytes } => &bytes[..usize::from(*len)],
            HostKey::Spilled(bytes) => bytes,
        }
    }
}

// Equality and hashing are those of the bytes, as `Borrow<[u8]>` requires:
// a map of `HostKey`s is searched with a plain `&[u8]`.
impl PartialEq for HostKey {
    fn eq(&self, other: &HostKey) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for HostKey {}

impl Hash for HostKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_bytes().hash(state);
    }
}

impl Borrow<[u8]> for HostKey {
    fn borrow(&self) -> &[u8] {
        self.as_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn short_and_long_hosts_are_found_by_their_bytes() {
        let short = "a.example";
        let edge = "x".repeat(INLINE);
        let long = "y".repeat(INLINE + 1);
        assert!(matches!(HostKey::new(short), HostKey::Inline { .. }));
        assert!(matches!(HostKey::new(&edge), HostKey::Inline { .. }));
        assert!(matches!(HostKey::new(&long), HostKey::Spilled(_)));
        let mut map = HashMap::new();
        for (i, host) in [short, edge.as_str(), long.as_str(), ""].iter().enumerate() {
            map.insert(HostKey::new(host), i);
        }
        for (i, host) in [short, edge.as_str(), long.as_str(), ""].iter().enumerate() {
            assert_eq!(map.get(host.as_bytes()), Some(&i), "{host:?}");
            assert_eq!(HostKey::new(host).as_bytes(), host.as_bytes());
        }
        // A prefix of a kept host is another host.
        assert_eq!(map.get(&b"a.exampl"[..]), None);
        assert_eq!(map.get(&long.as_bytes()[..INLINE]), None);
    }

    #[test]
    fn an_entry_fits_one_cache_line() {
        assert_eq!(std::mem::size_of::<HostKey>(), 32);
    }
}
