//! Upstream connections: backend URLs, non-blocking name resolution, connect
//! with a timeout, and the per-shard pool of idle keep-alive connections.

pub mod backend;
pub mod dns;
pub mod pool;
pub mod stream;

pub use backend::{BackendUrl, Scheme};
pub use pool::UpstreamPool;
