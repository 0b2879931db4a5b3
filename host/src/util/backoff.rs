//! The one retry wait policy: every source and sink that retries a service asks a [`Backoff`]
//! how long to wait, so waits grow, cap and reset the same way everywhere.

use std::time::Duration;

/// Waits between attempts: `initial`, then growing (doubling, or by `initial` each time) up
/// to `max`. [`Backoff::reset`] after a success starts over.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    linear: bool,
    failures: u32,
}

impl Backoff {
    /// `initial`, `2 * initial`, `4 * initial`, ... capped at `max`.
    pub const fn doubling(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max,
            linear: false,
            failures: 0,
        }
    }

    /// `step`, `2 * step`, `3 * step`, ... capped at `max`.
    pub const fn linear(step: Duration, max: Duration) -> Self {
        Self {
            initial: step,
            max,
            linear: true,
            failures: 0,
        }
    }

    /// Counts a failure and returns how long to wait before the next attempt.
    pub fn next_wait(&mut self) -> Duration {
        self.failures = self.failures.saturating_add(1);
        let wait = if self.linear {
            self.initial.saturating_mul(self.failures)
        } else {
            let factor = 1u32.checked_shl(self.failures - 1).unwrap_or(u32::MAX);
            self.initial.saturating_mul(factor)
        };
        wait.min(self.max)
    }

    /// Failures counted since the last reset.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// After a success: the next failure waits `initial` again.
    pub fn reset(&mut self) {
        self.failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn doubling_caps_and_resets() {
        let mut b = Backoff::doubling(S, 5 * S);
        let waits: Vec<_> = (0..5).map(|_| b.next_wait()).collect();
        assert_eq!(waits, [S, 2 * S, 4 * S, 5 * S, 5 * S]);
        assert_eq!(b.failures(), 5);
        b.reset();
        assert_eq!(b.next_wait(), S);
    }

    #[test]
    fn linear_grows_by_its_step() {
        let mut b = Backoff::linear(S / 4, S);
        let waits: Vec<_> = (0..6).map(|_| b.next_wait()).collect();
        assert_eq!(waits, [S / 4, S / 2, S * 3 / 4, S, S, S]);
    }

    #[test]
    fn many_failures_saturate_instead_of_overflowing() {
        let mut b = Backoff::doubling(Duration::from_secs(60), Duration::MAX);
        for _ in 0..100 {
            b.next_wait();
        }
        assert!(b.next_wait() >= Duration::from_secs(60 << 20));
    }
}
