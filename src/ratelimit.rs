//! At most one log line per second per kind of warning, with a count of what was suppressed.

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
}
