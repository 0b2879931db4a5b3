//! Failed requests: what kind of failure it was, how long to wait before the next attempt (the
//! waits Twitter documents), and what the server said. Shared by the rules and the stream.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::Response;
use reqwest::header::{HeaderMap, RETRY_AFTER};

use crate::util::{Backoff, excerpt};

/// What made a connect fail; each kind has its own backoff.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Failure {
    Network,
    Http,
    RateLimited { reset_at: Option<u64> },
}

/// Reconnect waits as Twitter documents them, scaled by `backoff_scale`, capped by `max_backoff`.
#[derive(Debug)]
pub(super) struct Backoffs {
    pub(super) network: Backoff,
    pub(super) http: Backoff,
    pub(super) rate: Backoff,
}

impl Default for Backoffs {
    fn default() -> Self {
        Self {
            network: Backoff::linear(Duration::from_millis(250), Duration::from_secs(16)),
            http: Backoff::doubling(Duration::from_secs(5), Duration::from_secs(320)),
            rate: Backoff::doubling(Duration::from_secs(60), Duration::MAX),
        }
    }
}

impl Backoffs {
    pub(super) fn next(&mut self, failure: Failure, scale: f64, max: Duration) -> Duration {
        let base = match failure {
            Failure::Network => self.network.next_wait(),
            Failure::Http => self.http.next_wait(),
            Failure::RateLimited { .. } => self.rate.next_wait(),
        };
        let mut wait = base.mul_f64(scale);
        if let Failure::RateLimited {
            reset_at: Some(reset),
        } = failure
        {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default();
            wait = wait.max(Duration::from_secs(reset).saturating_sub(now));
        }
        wait.min(max)
    }
}

/// `x-rate-limit-reset` (Unix seconds), or `Retry-After` in seconds from now.
pub(super) fn rate_limit_reset(headers: &HeaderMap) -> Option<u64> {
    let num = |name| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
    };
    num(reqwest::header::HeaderName::from_static(
        "x-rate-limit-reset",
    ))
    .or_else(|| {
        let after = num(RETRY_AFTER)?;
        let now = SystemTime::now().duration_since(UNIX_EPOCH).ok()?.as_secs();
        Some(now + after)
    })
}

/// The start of an error answer's body, for messages.
pub(super) async fn body_excerpt(response: Response) -> String {
    let text = tokio::time::timeout(Duration::from_secs(5), response.text())
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
    excerpt(&text, 500)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_follows_the_documented_schedule() {
        let max = Duration::from_secs(3600);
        let mut b = Backoffs::default();
        let net: Vec<u64> = (0..70)
            .map(|_| b.next(Failure::Network, 1.0, max).as_millis() as u64)
            .collect();
        assert_eq!(&net[..4], &[250, 500, 750, 1000]);
        assert_eq!(net[63], 16_000);
        assert_eq!(net[69], 16_000);
        let http: Vec<u64> = (0..9)
            .map(|_| b.next(Failure::Http, 1.0, max).as_secs())
            .collect();
        assert_eq!(http, [5, 10, 20, 40, 80, 160, 320, 320, 320]);
        let rate: Vec<u64> = (0..4)
            .map(|_| {
                b.next(Failure::RateLimited { reset_at: None }, 1.0, max)
                    .as_secs()
            })
            .collect();
        assert_eq!(rate, [60, 120, 240, 480]);
        let capped = b.next(
            Failure::RateLimited { reset_at: None },
            1.0,
            Duration::from_secs(900),
        );
        assert_eq!(capped, Duration::from_secs(900));
        let scaled = Backoffs::default().next(Failure::Http, 0.01, max);
        assert_eq!(scaled, Duration::from_millis(50));
    }

    #[test]
    fn rate_limit_reset_is_a_floor() {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let wait = Backoffs::default().next(
            Failure::RateLimited {
                reset_at: Some(now + 30),
            },
            0.001,
            Duration::from_secs(3600),
        );
        assert!(wait > Duration::from_secs(28) && wait <= Duration::from_secs(30));
    }
}
