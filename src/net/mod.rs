//! Listening sockets (socket2, SO_REUSEPORT, one per shard per address) and
//! the accept loop with its connection cap and EMFILE back-off.

pub mod accept;
pub mod listener;
pub mod sockets;
pub mod stream;
