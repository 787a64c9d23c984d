//! The clock for deadlines and ages, and deadlines from configured
//! durations. Validation bounds every duration key to a year
//! (`config::MAX_DURATION_SECS`); the additions here clamp again, so that no
//! `Instant` arithmetic can overflow and panic, whatever a duration's source.

use std::future::Future;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Longer than any configurable duration, short enough for any `Instant`.
pub const FOREVER: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// `at + d`, with `d` clamped to [`FOREVER`].
pub fn after(at: Instant, d: Duration) -> Instant {
    at.checked_add(d.min(FOREVER))
        .unwrap_or_else(|| at + Duration::from_secs(3600))
}

/// `d` from now (see [`after`]), on the [`now`] clock.
pub fn from_now(d: Duration) -> Instant {
    after(now(), d)
}

/// `fut`, given `d` from [`now`] to finish: `monoio::time::timeout` without
/// its precise clock read.
pub fn timeout<F: Future>(d: Duration, fut: F) -> monoio::time::Timeout<F> {
    monoio::time::timeout_at(monoio::time::Instant::from_std(from_now(d)), fut)
}

/// Coarser than this, and [`now`] reads the precise clock instead.
const COARSEST_TICK: Duration = Duration::from_millis(10);

/// Where the coarse clock's readings sit on `Instant`'s scale.
struct CoarseScale {
    /// A precise reading taken just after `coarse_at_base`.
    base: Instant,
    coarse_at_base: Duration,
    /// The coarse clock's tick: how far it may lag the precise one.
    tick: Duration,
}

/// Now, for deadlines and ages: the kernel's coarse monotonic clock, which
/// is a memory read (3 ns on the development box against 20 ns for a
/// precise read, and a proxied request sets about ten deadlines), placed on
/// `Instant`'s scale. It is never behind the precise clock and at most two
/// ticks ahead (8 ms at the usual 250 Hz): a deadline may come that much
/// late, never early. Durations that are reported (the access log, latency
/// metrics) are measured with `Instant::now()`.
pub fn now() -> Instant {
    static SCALE: OnceLock<Option<CoarseScale>> = OnceLock::new();
    let scale = SCALE.get_or_init(|| {
        let tick = read(libc::clock_getres)?;
        let coarse_at_base = read(libc::clock_gettime)?;
        let base = Instant::now();
        (tick <= COARSEST_TICK).then_some(CoarseScale {
            base,
            coarse_at_base,
            tick,
        })
    });
    match (scale, read(libc::clock_gettime)) {
        // base + elapsed lags by up to a tick for the reading now and leads
        // by up to one for the base's: adding a tick keeps it never behind.
        (Some(s), Some(coarse)) => s.base + coarse.saturating_sub(s.coarse_at_base) + s.tick,
        _ => Instant::now(),
    }
}

/// `CLOCK_MONOTONIC_COARSE` through `clock_gettime` or `clock_getres`.
fn read(
    call: unsafe extern "C" fn(libc::clockid_t, *mut libc::timespec) -> libc::c_int,
) -> Option<Duration> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the call to fill.
    let ok = unsafe { call(libc::CLOCK_MONOTONIC_COARSE, &mut ts) } == 0;
    (ok && ts.tv_sec >= 0 && (0..1_000_000_000).contains(&ts.tv_nsec))
        .then(|| Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32))
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

    #[test]
    fn the_coarse_clock_is_never_behind_and_moves_on() {
        let first = super::now();
        for _ in 0..1000 {
            let precise = Instant::now();
            let coarse = super::now();
            assert!(coarse >= precise, "behind by {:?}", precise - coarse);
            assert!(
                coarse - precise <= 2 * COARSEST_TICK,
                "{:?}",
                coarse - precise
            );
        }
        let later = Instant::now() + Duration::from_millis(30);
        while Instant::now() < later {
            std::hint::spin_loop();
        }
        // It moved on by the 30 ms, less what `first` may have led by.
        let moved = super::now() - first;
        assert!(
            moved >= Duration::from_millis(30) - 2 * COARSEST_TICK,
            "{moved:?}"
        );
    }
}
