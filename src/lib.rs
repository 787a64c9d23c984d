//! lopache: a Hipache-compatible, Redis-routed HTTP/1.1 reverse proxy.
//!
//! The shape, in brief (see `docs/ARCHITECTURE.md`):
//!
//! ```text
//! accept (per-shard SO_REUSEPORT listener)             net
//!   -> read request head (httparse, bounded)           http (sans-io)
//!   -> Host -> candidates -> one pipelined Redis trip  routing, redis
//!   -> pooled or new upstream connection               upstream
//!   -> rewritten head, bodies streamed both ways       proxy, io
//!   -> keep-alive loop | close
//! ```
//!
//! `main` validates the config and runs the master (`master`): it owns the
//! listening sockets and supervises one worker process, replaced without
//! closing a socket on reload, upgrade, crash or memory bloat. The worker
//! (`runtime`) starts one pinned thread per shard; each shard owns a monoio
//! runtime (io_uring, or epoll as a fallback) and everything on its hot path,
//! so no locks are taken per request.

pub mod ascii;
pub mod clock;
pub mod config;
pub mod files;
#[doc(hidden)]
pub mod fuzzing;
pub mod health;
pub mod http;
pub mod io;
pub mod lru;
pub mod master;
pub mod net;
pub mod observe;
pub mod privileges;
pub mod proxy;
pub mod redis;
pub mod routing;
pub mod runtime;
pub mod shard;
pub mod tls;
pub mod upstream;
