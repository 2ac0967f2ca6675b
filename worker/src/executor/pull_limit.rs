//! [`PullLimiter`]: how many image pulls one worker starts per minute (`governor`), so a
//! burst of tasks with missing images does not hammer a registry or saturate the host's
//! network. A pull over the limit waits for its turn (on the tokio clock, so a cancel
//! during the wait abandons it); it never fails for it.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::Clock;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

/// Default pulls a worker starts per minute (and at once, after a quiet minute): 10.
pub const DEFAULT_PULLS_PER_MINUTE: u32 = 10;

/// A per-worker limit on image pulls.
#[derive(Debug)]
pub struct PullLimiter {
    limiter: DefaultDirectRateLimiter,
}

impl Default for PullLimiter {
    fn default() -> Self {
        PullLimiter::per_minute(NonZeroU32::new(DEFAULT_PULLS_PER_MINUTE).expect("non-zero"))
    }
}

impl PullLimiter {
    /// At most `n` pulls per minute, with a burst of `n`.
    pub fn per_minute(n: NonZeroU32) -> Self {
        PullLimiter::new(Quota::per_minute(n))
    }

    /// A limiter with any quota (tests use short periods).
    pub fn new(quota: Quota) -> Self {
        PullLimiter {
            limiter: RateLimiter::direct(quota),
        }
    }

    /// How long the next pull would have to wait, taking its turn if it need not wait.
    pub fn try_acquire(&self) -> Result<(), Duration> {
        self.limiter
            .check()
            .map_err(|not_until| not_until.wait_time_from(self.limiter.clock().now()))
    }

    /// Waits until a pull may start; `waiting` is called once with the wait when there is
    /// one (to report it as pull progress).
    pub async fn acquire(&self, mut waiting: impl FnMut(Duration)) {
        let mut told = false;
        while let Err(wait) = self.try_acquire() {
            if !told {
                waiting(wait);
                told = true;
            }
            tokio::time::sleep(wait.max(Duration::from_millis(1))).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn a_burst_passes_then_pulls_wait_their_turn() {
        let l = PullLimiter::per_minute(NonZeroU32::new(3).unwrap());
        for _ in 0..3 {
            assert!(l.try_acquire().is_ok());
        }
        let wait = l.try_acquire().unwrap_err();
        assert!(
            wait > Duration::from_secs(15) && wait <= Duration::from_secs(20),
            "{wait:?}"
        );
    }

    #[tokio::test]
    async fn acquire_waits_and_reports_the_wait_once() {
        let quota = Quota::with_period(Duration::from_millis(100))
            .unwrap()
            .allow_burst(NonZeroU32::new(1).unwrap());
        let l = PullLimiter::new(quota);
        let start = Instant::now();
        let mut reports = Vec::new();
        for _ in 0..3 {
            l.acquire(|d| reports.push(d)).await;
        }
        assert!(
            start.elapsed() >= Duration::from_millis(180),
            "{:?}",
            start.elapsed()
        );
        assert_eq!(
            reports.len(),
            2,
            "the first pull did not wait, the next two did"
        );
    }
}
