//! The generator's token bucket: tokens accrue at the offered rate against CLOCK_MONOTONIC and
//! each datagram spends one. Time is passed in, so the arithmetic is tested without a clock.

/// A token bucket that never holds more than `capacity` tokens, so after a stall (a late
/// wake-up, a busy CPU) the generator catches up with a bounded burst instead of a flood.
///
/// Tokens are counted in billionths (one token per second of rate accrues one unit per
/// nanosecond), so the arithmetic is exact integer arithmetic with no drift over a long run.
#[derive(Debug)]
pub struct TokenBucket {
    rate_pps: u128,
    capacity_units: u128,
    units: u128,
    last_ns: u64,
}

const UNITS_PER_TOKEN: u128 = 1_000_000_000;

impl TokenBucket {
    /// A bucket for `rate_pps` datagrams per second, empty at `now_ns`.
    pub fn new(rate_pps: u64, capacity: u64, now_ns: u64) -> TokenBucket {
        TokenBucket {
            rate_pps: u128::from(rate_pps.max(1)),
            capacity_units: u128::from(capacity.max(1)) * UNITS_PER_TOKEN,
            units: 0,
            last_ns: now_ns,
        }
    }

    fn refill(&mut self, now_ns: u64) {
        let elapsed = u128::from(now_ns.saturating_sub(self.last_ns));
        self.units = (self.units + elapsed * self.rate_pps).min(self.capacity_units);
        self.last_ns = self.last_ns.max(now_ns);
    }

    /// Spends up to `max` whole tokens available at `now_ns` and returns how many it spent.
    pub fn take(&mut self, max: usize, now_ns: u64) -> usize {
        self.refill(now_ns);
        let whole = (self.units / UNITS_PER_TOKEN).min(max as u128);
        self.units -= whole * UNITS_PER_TOKEN;
        whole as usize
    }

    /// Nanoseconds from `now_ns` until `want` tokens will be there (0 if they already are).
    pub fn wait_ns(&mut self, want: usize, now_ns: u64) -> u64 {
        self.refill(now_ns);
        let wanted = (want as u128 * UNITS_PER_TOKEN).min(self.capacity_units);
        let missing = wanted.saturating_sub(self.units);
        u64::try_from(missing.div_ceil(self.rate_pps)).unwrap_or(u64::MAX)
    }
}

/// Self-checks of the pure logic above. Bench targets built with `harness = false` never run
/// `#[test]` functions, so the driver runs these under `cargo test --benches` instead.
pub mod checks {
    use super::*;

    const SECOND_NS: u64 = 1_000_000_000;

    pub fn delivers_the_rate_over_a_second_in_small_steps() {
        let mut bucket = TokenBucket::new(50_000, 64, 0);
        let mut spent = 0;
        // 100 us steps: 5 tokens accrue per step, well under the capacity.
        for step in 1..=10_000 {
            spent += bucket.take(32, step * 100_000);
        }
        assert_eq!(spent, 50_000);
    }

    pub fn a_stall_yields_at_most_the_capacity() {
        let mut bucket = TokenBucket::new(1_000_000, 256, 0);
        assert_eq!(bucket.take(usize::MAX, SECOND_NS), 256);
        assert_eq!(bucket.take(usize::MAX, SECOND_NS), 0);
    }

    pub fn wait_is_the_time_to_the_missing_tokens() {
        let mut bucket = TokenBucket::new(100_000, 64, 0);
        // 10 us per token at 100k pps.
        assert_eq!(bucket.wait_ns(8, 0), 80_000);
        assert_eq!(bucket.take(8, 80_000), 8);
        assert_eq!(bucket.wait_ns(1, 80_000), 10_000);
    }

    pub const ALL: &[(&str, fn())] = &[
        (
            "pacer::delivers_the_rate_over_a_second_in_small_steps",
            delivers_the_rate_over_a_second_in_small_steps,
        ),
        (
            "pacer::a_stall_yields_at_most_the_capacity",
            a_stall_yields_at_most_the_capacity,
        ),
        (
            "pacer::wait_is_the_time_to_the_missing_tokens",
            wait_is_the_time_to_the_missing_tokens,
        ),
    ];
}
