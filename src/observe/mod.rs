//! Observability: operator log lines, the access log, per-shard metrics and
//! the admin endpoint that serves them.

pub mod access_log;
pub mod admin;
pub mod log;
pub mod metrics;
pub mod request_id;
pub mod syslog;
