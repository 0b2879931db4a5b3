//! Pacing for sources that can produce faster than asked (`rate` of generated and file
//! sources).

use std::time::Duration;

use tokio::time::Instant;

/// Under a rate limit, emit small chunks so a batch does not wait longer than its timeout.
pub fn chunk_size(rate: f64, batch: usize, timeout: Duration) -> usize {
    if rate > 0.0 {
        ((rate * timeout.as_secs_f64()) as usize).clamp(1, batch)
    } else {
        batch
    }
}

/// Paces records to `rate` per second (0: unpaced) against the start time, so short stalls
/// are caught up rather than accumulated.
pub struct Pacer {
    rate: f64,
    start: Option<Instant>,
    sent: u64,
}

impl Pacer {
    pub fn new(rate: f64) -> Self {
        Self {
            rate,
            start: None,
            sent: 0,
        }
    }

    pub async fn admit(&mut self, n: usize) {
        if self.rate <= 0.0 {
            return;
        }
        let start = *self.start.get_or_insert_with(Instant::now);
        let due = start + Duration::from_secs_f64(self.sent as f64 / self.rate);
        tokio::time::sleep_until(due).await;
        self.sent += n as u64;
    }
}

/// `rate` of a paced source: records per second, 0 for unpaced.
pub fn check_rate(rate: f64) -> Result<(), crate::util::Invalid> {
    if !rate.is_finite() || rate < 0.0 {
        return Err(crate::util::Invalid::new("rate", "must be a number >= 0"));
    }
    Ok(())
}
