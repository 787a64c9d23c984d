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

/// A coarse clock whose tick is outside this range is not trusted (a
/// kernel that reports 1 ns is not telling the truth about it), and [`now`]
/// reads the precise clock instead.
const TRUSTED_TICKS: std::ops::RangeInclusive<Duration> =
    Duration::from_millis(1)..=Duration::from_millis(10);

/// How close together the two precise reads around the calibrating
/// `Instant::now()` must be; farther apart (the thread was preempted
/// between them) and calibration tries again.
const CALIBRATION_WINDOW: Duration = Duration::from_micros(20);

/// Where `CLOCK_MONOTONIC` readings sit on `Instant`'s scale, and how far
/// ahead of a coarse reading to place it.
struct CoarseScale {
    base: Instant,
    /// A precise `CLOCK_MONOTONIC` reading taken just before `base`.
    monotonic_at_base: Duration,
    /// Two ticks: the coarse clock is the time of the last tick's
    /// accumulation, which lags the precise clock by less than two ticks.
    lead: Duration,
}

/// Now, for deadlines and ages: the kernel's coarse monotonic clock, which
/// is a memory read (3 ns on the development box against 20 ns for a
/// precise read, and a proxied request sets about ten deadlines), placed on
/// `Instant`'s scale two ticks ahead of itself.
///
/// While the kernel's timekeeping tick runs on time, that is never behind
/// `Instant::now()` and at most two ticks (8 ms at 250 Hz) ahead, so a
/// deadline handed to a timer fires up to that much late, never early. Two
/// readings of this clock can differ from the time between them by up to
/// two ticks either way (ages, leases, dead marks: a cache entry or a pooled
/// connection may go a few milliseconds early or late). If the tick itself
/// comes late (a VM's CPU descheduled by its host) readings fall behind by
/// the delay, and timeouts fire early by as much: the same looseness as
/// nginx's cached time. Durations that are reported (the access log,
/// latency metrics) are measured with `Instant::now()`.
pub fn now() -> Instant {
    static SCALE: OnceLock<Option<CoarseScale>> = OnceLock::new();
    match (
        SCALE.get_or_init(calibrate),
        read(libc::clock_gettime, libc::CLOCK_MONOTONIC_COARSE),
    ) {
        (Some(s), Some(coarse)) => s.base + coarse.saturating_sub(s.monotonic_at_base) + s.lead,
        _ => Instant::now(),
    }
}

/// `Instant` is `CLOCK_MONOTONIC` on Linux, the clock the coarse one is a
/// lagging copy of: a precise read on each side of an `Instant::now()` pins
/// where that scale sits on it. A preemption between the reads would shift
/// every later reading, so they must fall within [`CALIBRATION_WINDOW`].
fn calibrate() -> Option<CoarseScale> {
    let tick = read(libc::clock_getres, libc::CLOCK_MONOTONIC_COARSE)?;
    if !TRUSTED_TICKS.contains(&tick) {
        return None;
    }
    (0..100).find_map(|_| {
        let before = read(libc::clock_gettime, libc::CLOCK_MONOTONIC)?;
        let base = Instant::now();
        let after = read(libc::clock_gettime, libc::CLOCK_MONOTONIC)?;
        (after.saturating_sub(before) <= CALIBRATION_WINDOW).then_some(CoarseScale {
            base,
            monotonic_at_base: before,
            lead: 2 * tick,
        })
    })
}

/// `clock_gettime` or `clock_getres` of `clock`.
fn read(
    call: unsafe extern "C" fn(libc::clockid_t, *mut libc::timespec) -> libc::c_int,
    clock: libc::clockid_t,
) -> Option<Duration> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the call to fill.
    let ok = unsafe { call(clock, &mut ts) } == 0;
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
    fn the_coarse_clock_keeps_to_the_precise_one_and_moves_on() {
        // Never more than two of the coarsest trusted ticks ahead of a
        // precise read after it; behind one before it only if a tick came
        // late, which a loaded machine may see: the slack catches a clock
        // off its scale, not a few milliseconds.
        let most_ahead = 2 * *TRUSTED_TICKS.end() + Duration::from_millis(1);
        let slack = Duration::from_millis(50);
        let first = super::now();
        for _ in 0..1000 {
            let before = Instant::now();
            let coarse = super::now();
            let after = Instant::now();
            assert!(coarse + slack >= before, "behind by {:?}", before - coarse);
            assert!(
                coarse <= after + most_ahead,
                "ahead by {:?}",
                coarse - after
            );
        }
        let later = Instant::now() + Duration::from_millis(100);
        while Instant::now() < later {
            std::hint::spin_loop();
        }
        let moved = super::now() - first;
        assert!(moved >= Duration::from_millis(100) - slack, "{moved:?}");
    }
}
