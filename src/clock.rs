//! Deadlines from configured durations. Validation bounds every duration key
//! to a year (`config::MAX_DURATION_SECS`); the additions here clamp again,
//! so that no `Instant` arithmetic can overflow and panic, whatever a
//! duration's source.

use std::time::{Duration, Instant};

/// Longer than any configurable duration, short enough for any `Instant`.
pub const FOREVER: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// `at + d`, with `d` clamped to [`FOREVER`].
pub fn after(at: Instant, d: Duration) -> Instant {
    at.checked_add(d.min(FOREVER))
        .unwrap_or_else(|| at + Duration::from_secs(3600))
}

/// `d` from now (see [`after`]).
pub fn from_now(d: Duration) -> Instant {
    after(Instant::now(), d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_durations_do_not_overflow() {
        let now = Instant::now();
        assert!(after(now, Duration::MAX) > now);
        assert!(from_now(Duration::from_secs(u64::MAX)) > now);
        assert_eq!(
            after(now, Duration::from_secs(5)),
            now + Duration::from_secs(5)
        );
    }
}
