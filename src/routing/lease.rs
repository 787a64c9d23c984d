//! How long a cached entry may be served, and the second chance it gets
//! when its store is full: both the route cache's hosts and its
//! `path_matches` sets drop, at their bound, the entries nobody used since
//! the bound was last reached, so a flood of entries asked once cannot push
//! out the ones in use.

use std::cell::Cell;
use std::time::Instant;

pub struct Lease {
    until: Instant,
    /// Served since it was made or since the bound was last reached.
    used: Cell<bool>,
}

impl Lease {
    pub fn until(until: Instant) -> Lease {
        Lease {
            until,
            used: Cell::new(false),
        }
    }

    /// Whether the entry may be served at `now`; if so it counts as used.
    pub fn serve(&self, now: Instant) -> bool {
        let fresh = self.is_fresh(now);
        if fresh {
            self.used.set(true);
        }
        fresh
    }

    pub fn is_fresh(&self, now: Instant) -> bool {
        now < self.until
    }

    /// Whether the entry stays when its store reaches its bound: fresh and
    /// used since the last time. Its use starts over.
    pub fn survives_bound(&self, now: Instant) -> bool {
        self.is_fresh(now) && self.used.replace(false)
    }

    #[cfg(test)]
    pub fn expires(&self) -> Instant {
        self.until
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn served_until_it_expires_and_kept_at_the_bound_once_per_use() {
        let now = Instant::now();
        let lease = Lease::until(now + Duration::from_secs(1));
        assert!(!lease.survives_bound(now), "never served");
        assert!(lease.serve(now));
        assert!(lease.survives_bound(now));
        assert!(!lease.survives_bound(now), "not served since");
        assert!(!lease.serve(now + Duration::from_secs(1)));
        assert!(!lease.survives_bound(now + Duration::from_secs(1)));
    }
}
