//! Request IDs (`server.request_id_header`, nginx's `$request_id`, PlanB's
//! `--request-id-header`): a valid ID the client sent is kept, any other is
//! replaced by 128 random bits in hex. Each shard draws its bits from a
//! buffer the kernel's random source fills 4 KiB at a time, so an ID costs a
//! copy, not a system call.

use std::cell::RefCell;

/// The longest ID kept from a client; longer ones are replaced.
pub const MAX_LEN: usize = 128;
/// Random bytes in one generated ID.
const ID_BYTES: usize = 16;
/// Random bytes fetched at once (256 IDs).
const POOL_BYTES: usize = 4096;

/// A value worth keeping: 1 to [`MAX_LEN`] visible ASCII characters (no
/// space, no control byte), so it can be logged and passed on unquoted.
pub fn is_valid(value: &[u8]) -> bool {
    crate::ascii::is_visible(value, MAX_LEN)
}

/// One shard's source of generated IDs.
pub struct RandomIds {
    pool: RefCell<Pool>,
}

struct Pool {
    bytes: [u8; POOL_BYTES],
    /// Bytes of `bytes` already used.
    used: usize,
}

impl Default for RandomIds {
    fn default() -> Self {
        RandomIds {
            pool: RefCell::new(Pool {
                bytes: [0; POOL_BYTES],
                used: POOL_BYTES,
            }),
        }
    }
}

impl RandomIds {
    /// Appends a fresh ID: 32 lowercase hex digits.
    pub fn push_new(&self, out: &mut Vec<u8>) {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut pool = self.pool.borrow_mut();
        if pool.used + ID_BYTES > POOL_BYTES {
            fill(&mut pool.bytes);
            pool.used = 0;
        }
        let at = pool.used;
        pool.used += ID_BYTES;
        for &b in &pool.bytes[at..at + ID_BYTES] {
            out.push(HEX[usize::from(b >> 4)]);
            out.push(HEX[usize::from(b & 0x0f)]);
        }
    }
}

/// Fills `buf` from getrandom(2); should the kernel refuse (it does not
/// after boot), from a seeded generator instead: IDs need to be unique,
/// not secret.
fn fill(buf: &mut [u8]) {
    let mut filled = 0;
    while filled < buf.len() {
        let rest = &mut buf[filled..];
        // SAFETY: getrandom writes at most `rest.len()` bytes into `rest`.
        let n = unsafe { libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), 0) };
        if n > 0 {
            filled += n as usize;
        } else if std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            buf[filled..].fill_with(|| fastrand::u8(..));
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_are_hex_and_distinct() {
        let ids = RandomIds::default();
        let mut seen = std::collections::HashSet::new();
        // More than one pool's worth, so a refill is crossed.
        for _ in 0..1000 {
            let mut id = Vec::new();
            ids.push_new(&mut id);
            assert_eq!(id.len(), 32);
            assert!(id.iter().all(|b| b"0123456789abcdef".contains(b)));
            assert!(is_valid(&id));
            assert!(seen.insert(id), "an ID came twice");
        }
    }

    #[test]
    fn what_is_kept_from_a_client() {
        assert!(is_valid(b"abc-123"));
        assert!(is_valid(&[b'x'; MAX_LEN]));
        assert!(!is_valid(&[b'x'; MAX_LEN + 1]));
        assert!(!is_valid(b""));
        assert!(!is_valid(b"a b"));
        assert!(!is_valid(b"a\tb"));
        assert!(!is_valid("é".as_bytes()));
    }
}
