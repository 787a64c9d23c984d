//! Operator log lines on stderr: `lopache[shard 1]: warn: ...`. These are for
//! events (startup, Redis outages, dead backends), never one per request, so a
//! synchronous write to stderr is acceptable here.

use std::sync::atomic::{AtomicBool, Ordering};

static DEBUG: AtomicBool = AtomicBool::new(false);

thread_local! {
    static SHARD: std::cell::Cell<Option<usize>> = const { std::cell::Cell::new(None) };
}

/// Turns debug lines on or off (from `server.debug`).
pub fn set_debug(on: bool) {
    DEBUG.store(on, Ordering::Relaxed);
}

pub fn debug_enabled() -> bool {
    DEBUG.load(Ordering::Relaxed)
}

/// Tags this thread's log lines with its shard number.
pub fn set_shard(id: usize) {
    SHARD.with(|s| s.set(Some(id)));
}

#[doc(hidden)]
pub fn emit(level: &str, args: std::fmt::Arguments<'_>) {
    match SHARD.with(|s| s.get()) {
        Some(id) => eprintln!("lopache[shard {id}]: {level}: {args}"),
        None => eprintln!("lopache: {level}: {args}"),
    }
}

#[macro_export]
macro_rules! log_info {
    ($($t:tt)*) => { $crate::observe::log::emit("info", format_args!($($t)*)) };
}

#[macro_export]
macro_rules! log_warn {
    ($($t:tt)*) => { $crate::observe::log::emit("warn", format_args!($($t)*)) };
}

#[macro_export]
macro_rules! log_error {
    ($($t:tt)*) => { $crate::observe::log::emit("error", format_args!($($t)*)) };
}

#[macro_export]
macro_rules! log_debug {
    ($($t:tt)*) => {
        if $crate::observe::log::debug_enabled() {
            $crate::observe::log::emit("debug", format_args!($($t)*))
        }
    };
}
