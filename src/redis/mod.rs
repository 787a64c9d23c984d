//! Redis: the sans-io RESP codec (on redis-protocol), driver URLs, and the
//! per-shard pipelined client that batches every queued command into one write,
//! and a pub/sub subscriber for the `dead` channel.

pub mod client;
pub mod codec;
pub mod scan;
pub mod subscriber;
pub mod url;

pub use client::{RedisClient, RedisError, SharedReplies};
pub use codec::Reply;
