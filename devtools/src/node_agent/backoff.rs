//! Restart back-off for crashed containers, shaped like the kubelet's (doubling, capped, reset after
//! a long healthy run) but with test-friendly numbers.

use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RestartBackoff {
    pub initial: Duration,
    pub cap: Duration,
    /// A container that ran at least this long restarts with `initial` again.
    pub reset_after: Duration,
}

impl Default for RestartBackoff {
    fn default() -> Self {
        Self {
            initial: Duration::from_secs(1),
            cap: Duration::from_secs(30),
            reset_after: Duration::from_secs(60),
        }
    }
}

impl RestartBackoff {
    /// Delay before the next start, given how many back-to-back crashes preceded it (1 = first).
    pub fn delay(&self, consecutive_crashes: u32) -> Duration {
        let doublings = consecutive_crashes.saturating_sub(1).min(16);
        self.initial.saturating_mul(1 << doublings).min(self.cap)
    }

    /// The crash counter after a run of `ran_for`: reset by a long run, else one more.
    pub fn next_crash_count(&self, previous: u32, ran_for: Duration) -> u32 {
        if ran_for >= self.reset_after {
            1
        } else {
            previous.saturating_add(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_from_initial_up_to_cap() {
        let b = RestartBackoff::default();
        let secs: Vec<u64> = (1..=7).map(|n| b.delay(n).as_secs()).collect();
        assert_eq!(secs, vec![1, 2, 4, 8, 16, 30, 30]);
        assert_eq!(b.delay(u32::MAX), b.cap);
        assert_eq!(b.delay(0), b.initial);
    }

    #[test]
    fn long_runs_reset_the_count() {
        let b = RestartBackoff::default();
        assert_eq!(b.next_crash_count(5, Duration::from_secs(2)), 6);
        assert_eq!(b.next_crash_count(5, Duration::from_secs(61)), 1);
    }
}
