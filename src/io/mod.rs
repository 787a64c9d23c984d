//! Byte moving for the proxy: timed reads and writes on owned (rent-style)
//! buffers, and body relays that stream with a bounded buffer whatever the
//! body's size.

pub mod ahead;
pub mod budget;
pub mod pump;
pub mod relay;
pub mod spare;
pub mod timed;

/// Bytes read per call while streaming a body; also the relay buffer's size,
/// so a body in flight costs at most this much memory per direction.
pub const RELAY_CHUNK: usize = 32 * 1024;
