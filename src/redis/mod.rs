//! Redis: the sans-io RESP codec (on redis-protocol), driver URLs, and the
//! per-shard pipelined client that batches every queued command into one write,
//! a pub/sub subscriber for the `dead` channel, client tracking for the
//! route cache, and Sentinel, which says
//! where `redis-sentinel://` URLs point.

pub mod client;
pub mod codec;
pub mod scan;
pub mod sentinel;
pub mod subscriber;
pub mod tracking;
pub mod url;

pub use client::{RedisClient, RedisError, SharedReplies};
pub use codec::Reply;
