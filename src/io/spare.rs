//! A shard's spare response-head buffers: each proxied response is read
//! into an 8 KiB buffer, and the one a finished response emptied goes to
//! the next instead of back to the allocator (allocating and freeing one
//! per request cost about 1.5 % of a request's CPU). At most `KEPT` wait,
//! so what this holds is bounded whatever the load was.

use std::cell::RefCell;

use bytes::BytesMut;

/// A backend's response head usually fits; reads grow it for larger ones.
pub const RESPONSE_HEAD_BUFFER: usize = 8 * 1024;

/// Spare buffers kept per shard: 64 of 8-16 KiB, 1 MiB at most.
const KEPT: usize = 64;

#[derive(Default)]
pub struct SpareBuffers {
    spare: RefCell<Vec<BytesMut>>,
}

impl SpareBuffers {
    /// An empty buffer of at least [`RESPONSE_HEAD_BUFFER`] bytes.
    pub fn take(&self) -> BytesMut {
        self.spare
            .borrow_mut()
            .pop()
            .unwrap_or_else(|| BytesMut::with_capacity(RESPONSE_HEAD_BUFFER))
    }

    /// Keeps `buf` for a later [`take`](Self::take), emptied, if it is the
    /// only view of its memory (a buffer split into pieces that are still
    /// queued somewhere would hold all of it) and not grown past twice the
    /// usual size.
    pub fn give(&self, mut buf: BytesMut) {
        buf.clear();
        // Reclaims the front that reads consumed, without allocating, or
        // fails when another view shares the memory.
        if !buf.try_reclaim(RESPONSE_HEAD_BUFFER) || buf.capacity() > 2 * RESPONSE_HEAD_BUFFER {
            return;
        }
        let mut spare = self.spare.borrow_mut();
        if spare.len() < KEPT {
            spare.push(buf);
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Buf;

    use super::*;

    #[test]
    fn an_emptied_buffer_is_handed_out_again_from_its_start() {
        let spares = SpareBuffers::default();
        let mut used = spares.take();
        used.extend_from_slice(&[b'x'; 300]);
        let start = used.as_ptr();
        used.advance(300);
        spares.give(used);
        let again = spares.take();
        assert_eq!(again.as_ptr(), start, "the same memory, from its start");
        assert!(again.is_empty() && again.capacity() >= RESPONSE_HEAD_BUFFER);
    }

    #[test]
    fn shared_grown_or_surplus_buffers_are_not_kept() {
        let spares = SpareBuffers::default();
        let mut split = BytesMut::with_capacity(RESPONSE_HEAD_BUFFER);
        split.extend_from_slice(&[b'x'; 100]);
        let piece = split.split_to(50);
        spares.give(split);
        spares.give(BytesMut::with_capacity(8 * RESPONSE_HEAD_BUFFER));
        assert_eq!(spares.spare.borrow().len(), 0);
        drop(piece);
        for _ in 0..KEPT + 10 {
            spares.give(BytesMut::with_capacity(RESPONSE_HEAD_BUFFER));
        }
        assert_eq!(spares.spare.borrow().len(), KEPT);
    }
}
