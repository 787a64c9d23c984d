//! Operator log lines on stderr: `lopache[shard 1]: warn: ...`,
//! `lopache[master]: info: ...`. These are for
//! events (startup, Redis outages, dead backends), never one per request, so a
//! synchronous write to stderr is acceptable here.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

static DEBUG: AtomicBool = AtomicBool::new(false);

/// What a thread's log lines are tagged with.
#[derive(Clone, Copy)]
enum Tag {
    Process,
    Master,
    Shard(usize),
}

thread_local! {
    static TAG: std::cell::Cell<Tag> = const { std::cell::Cell::new(Tag::Process) };
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
    TAG.with(|t| t.set(Tag::Shard(id)));
}

/// Tags this thread's log lines as the master process's.
pub fn set_master() {
    TAG.with(|t| t.set(Tag::Master));
}

#[doc(hidden)]
pub fn emit(level: &str, args: std::fmt::Arguments<'_>) {
    let line = match TAG.with(|t| t.get()) {
        Tag::Shard(id) => format!("lopache[shard {id}]: {level}: {args}\n"),
        Tag::Master => format!("lopache[master]: {level}: {args}\n"),
        Tag::Process => format!("lopache: {level}: {args}\n"),
    };
    write_line(&line);
}

/// Writes one whole line to stderr in a single write: the master and its
/// workers share the descriptor, and `eprintln!` may split a line into
/// several writes that another process's line can land between.
pub fn write_line(line: &str) {
    use std::io::Write;
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

/// One line per `interval` at most for a recurring event on one shard (an
/// attacker or an overload must not turn stderr into the bottleneck).
#[derive(Debug, Default)]
pub struct RateLimit {
    last: Cell<Option<Instant>>,
    /// Events not logged since the last line.
    suppressed: Cell<u64>,
}

impl RateLimit {
    /// `Some(n)` when a line may be written now, `n` being how many events
    /// went unlogged since the previous line; `None` to stay quiet.
    pub fn allow(&self, interval: Duration) -> Option<u64> {
        let now = Instant::now();
        match self.last.get() {
            Some(t) if now.duration_since(t) < interval => {
                self.suppressed.set(self.suppressed.get() + 1);
                None
            }
            _ => {
                self.last.set(Some(now));
                Some(self.suppressed.replace(0))
            }
        }
    }
}

/// At most `max` bytes of `text` (cut on a character boundary, and marked):
/// log lines quote what Redis or a peer sent, which may be of any size.
pub fn truncated(text: &str, max: usize) -> std::borrow::Cow<'_, str> {
    if text.len() <= max {
        return text.into();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}... ({} bytes)", &text[..end], text.len()).into()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_keeps_short_text_and_cuts_on_a_boundary() {
        assert_eq!(truncated("short", 10), "short");
        assert_eq!(truncated("abcdefgh", 3), "abc... (8 bytes)");
        assert_eq!(truncated("\u{e9}\u{e9}", 3), "\u{e9}... (4 bytes)");
    }

    #[test]
    fn rate_limit_counts_what_it_suppresses() {
        let limit = RateLimit::default();
        assert_eq!(limit.allow(Duration::from_secs(3600)), Some(0));
        assert_eq!(limit.allow(Duration::from_secs(3600)), None);
        assert_eq!(limit.allow(Duration::from_secs(3600)), None);
        assert_eq!(limit.allow(Duration::ZERO), Some(2));
    }
}
