//! Observability: operator-facing log lines (the access log and metrics
//! arrive with the operations issue).

pub mod access_log;
pub mod log;
