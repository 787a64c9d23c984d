//! Redis: the sans-io RESP codec (on redis-protocol), driver URLs, and the
//! per-shard pipelined client that batches every queued command into one write.

pub mod client;
pub mod codec;
pub mod url;

pub use client::{RedisClient, RedisError};
pub use codec::Reply;
