//! Log lines within bounds: at most one a second per kind of warning ([`RateLimited`]), or a
//! budget of lines a second for events that are normal but may come in floods
//! ([`LineBudget`]: new and closed sessions), each with a count of what was suppressed.

use std::time::{Duration, Instant};

#[derive(Debug, Default)]
pub struct RateLimited {
    last: Option<Instant>,
    suppressed: u64,
}

impl RateLimited {
    const INTERVAL: Duration = Duration::from_secs(1);

    /// `Some(suppressed since the last line)` if a line may be logged now. Reads the clock, so
    /// call it only on error paths.
    pub fn check(&mut self) -> Option<u64> {
        self.check_at(Instant::now())
    }

    fn check_at(&mut self, now: Instant) -> Option<u64> {
        if self
            .last
            .is_some_and(|last| now.duration_since(last) < Self::INTERVAL)
        {
            self.suppressed += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.suppressed))
    }
}

/// A token bucket of log lines: `per_sec` a second, `burst` at once.
#[derive(Debug)]
pub struct LineBudget {
    per_sec: f64,
    burst: f64,
    tokens: f64,
    last: Option<Instant>,
    suppressed: u64,
}

impl LineBudget {
    pub fn new(per_sec: f64, burst: f64) -> LineBudget {
        LineBudget {
            per_sec,
            burst,
            tokens: burst,
            last: None,
            suppressed: 0,
        }
    }

    /// `Some(suppressed since the last line)` if a line may be logged at `now`.
    pub fn check_at(&mut self, now: Instant) -> Option<u64> {
        if let Some(last) = self.last {
            let refill = now.saturating_duration_since(last).as_secs_f64() * self.per_sec;
            self.tokens = (self.tokens + refill).min(self.burst);
        }
        self.last = Some(now);
        if self.tokens < 1.0 {
            self.suppressed += 1;
            return None;
        }
        self.tokens -= 1.0;
        Some(std::mem::take(&mut self.suppressed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval() {
        let mut r = RateLimited::default();
        let t0 = Instant::now();
        assert_eq!(r.check_at(t0), Some(0));
        assert_eq!(r.check_at(t0 + Duration::from_millis(500)), None);
        assert_eq!(r.check_at(t0 + Duration::from_millis(900)), None);
        assert_eq!(r.check_at(t0 + Duration::from_secs(1)), Some(2));
        assert_eq!(r.check_at(t0 + Duration::from_millis(1500)), None);
    }

    #[test]
    fn a_budget_allows_bursts_then_a_rate() {
        let mut b = LineBudget::new(10.0, 3.0);
        let t0 = Instant::now();
        let allowed = (0..10).filter(|_| b.check_at(t0).is_some()).count();
        assert_eq!(allowed, 3);
        assert_eq!(b.check_at(t0 + Duration::from_millis(100)), Some(7));
        assert_eq!(b.check_at(t0 + Duration::from_millis(100)), None);
    }
}
