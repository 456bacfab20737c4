//! The one token bucket: what the audit trail's noise budget and the
//! console's login limits both pay from.

use std::time::{Duration, Instant};

/// `rate` tokens a second, at most `burst` saved up; starts full.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    at: Option<Instant>,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(rate: f64, burst: f64) -> Self {
        Self {
            rate,
            burst,
            tokens: burst,
            at: None,
        }
    }

    /// The tokens there would be at `now`.
    pub fn level(&self, now: Instant) -> f64 {
        let elapsed = self
            .at
            .map_or(Duration::ZERO, |at| now.saturating_duration_since(at));
        (self.tokens + elapsed.as_secs_f64() * self.rate).min(self.burst)
    }

    /// Whether it is full at `now` (nothing taken that has not grown back).
    pub fn is_full(&self, now: Instant) -> bool {
        self.level(now) >= self.burst
    }

    /// Takes one token at `now`, or says how long until there is one.
    pub fn take(&mut self, now: Instant) -> Result<(), Duration> {
        let level = self.level(now);
        self.at = Some(now);
        if level >= 1.0 {
            self.tokens = level - 1.0;
            Ok(())
        } else {
            self.tokens = level;
            Err(Duration::from_secs_f64((1.0 - level) / self.rate))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_the_rate_and_how_long_to_wait() {
        let t = Instant::now();
        let mut b = TokenBucket::new(2.0, 3.0);
        assert!(b.is_full(t));
        for _ in 0..3 {
            assert_eq!(b.take(t), Ok(()));
        }
        let wait = b.take(t).unwrap_err();
        assert_eq!(wait, Duration::from_millis(500));
        let later = t + Duration::from_millis(500);
        assert_eq!(b.take(later), Ok(()), "one token a half second");
        assert!(b.take(later).is_err());
        assert!(
            b.is_full(later + Duration::from_secs(10)),
            "never above the burst"
        );
        assert!((b.level(later + Duration::from_secs(10)) - 3.0).abs() < 1e-9);
    }
}
