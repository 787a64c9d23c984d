//! The per-connection proxy: the client session loop (keep-alive, pipelining),
//! forwarding one request with retries and dead marking, and the typed errors
//! that decide each error status.

mod attempt;
mod client;
pub mod error;
mod exchange;
mod failure;
mod forward;
mod reply;
mod request_body;
pub mod session;
pub mod stream;
pub mod tunnel;

pub use session::serve_client;
