//! A fixed-size log-linear histogram of round-trip times in nanoseconds, so the generator can
//! record every echo without allocating and report p50/p99/p99.9 at the end.
//!
//! Layout (the HdrHistogram idea, cut down): values below 2^SUB_BITS get one bucket each; above
//! that, every power of two is split into 2^SUB_BITS equal buckets. With 5 bits a quantile is
//! off by at most 1/32 (about 3 %) of its value, which is far below run-to-run noise here.

const SUB_BITS: u32 = 5;
const SUB_BUCKETS: usize = 1 << SUB_BITS;
/// Enough buckets for any u64: one group below 2^SUB_BITS and one per higher power of two.
const BUCKETS: usize = (64 - SUB_BITS as usize + 1) * SUB_BUCKETS;

#[derive(Clone)]
pub struct Histogram {
    counts: Box<[u64]>,
    total: u64,
    max: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: vec![0; BUCKETS].into_boxed_slice(),
            total: 0,
            max: 0,
        }
    }
}

fn bucket_of(value: u64) -> usize {
    if value < SUB_BUCKETS as u64 {
        return value as usize;
    }
    let exponent = 63 - value.leading_zeros(); // >= SUB_BITS here
    let shift = exponent - SUB_BITS;
    let mantissa = ((value >> shift) as usize) & (SUB_BUCKETS - 1);
    ((shift as usize + 1) << SUB_BITS) + mantissa
}

/// The smallest value that falls into `bucket`, and the bucket's width.
fn bucket_bounds(bucket: usize) -> (u64, u64) {
    if bucket < SUB_BUCKETS {
        return (bucket as u64, 1);
    }
    let shift = (bucket >> SUB_BITS) - 1;
    let mantissa = (bucket & (SUB_BUCKETS - 1)) as u64;
    ((SUB_BUCKETS as u64 + mantissa) << shift, 1 << shift)
}

impl Histogram {
    pub fn record(&mut self, value: u64) {
        self.counts[bucket_of(value)] += 1;
        self.total += 1;
        self.max = self.max.max(value);
    }

    pub fn count(&self) -> u64 {
        self.total
    }

    /// The value at quantile `q` (0..=1): the midpoint of the bucket holding that rank, capped
    /// at the largest value recorded. `None` when nothing was recorded.
    pub fn quantile(&self, q: f64) -> Option<u64> {
        if self.total == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (bucket, &count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                let (low, width) = bucket_bounds(bucket);
                return Some((low + width / 2).min(self.max));
            }
        }
        Some(self.max)
    }
}

/// Self-checks of the pure logic above. Bench targets built with `harness = false` never run
/// `#[test]` functions, so the driver runs these under `cargo test --benches` instead.
pub mod checks {
    use super::*;

    pub fn buckets_are_contiguous_and_cover_u64() {
        for bucket in 0..BUCKETS - 1 {
            let (low, width) = bucket_bounds(bucket);
            assert_eq!(bucket_of(low), bucket);
            assert_eq!(bucket_of(low + width - 1), bucket);
            assert_eq!(bucket_bounds(bucket + 1).0, low + width);
        }
        assert_eq!(bucket_of(u64::MAX), BUCKETS - 1);
    }

    pub fn quantiles_are_within_the_bucket_precision() {
        let mut histogram = Histogram::default();
        for value in 1..=100_000u64 {
            histogram.record(value * 10);
        }
        for (q, exact) in [(0.5, 500_000.0), (0.99, 990_000.0), (0.999, 999_000.0)] {
            let got = histogram.quantile(q).unwrap() as f64;
            assert!(
                (got - exact).abs() / exact < 1.0 / 32.0,
                "q{q}: {got} vs {exact}"
            );
        }
        assert_eq!(histogram.quantile(1.0), Some(1_000_000));
    }

    pub fn empty_histogram_has_no_quantiles() {
        assert_eq!(Histogram::default().quantile(0.5), None);
    }

    pub const ALL: &[(&str, fn())] = &[
        (
            "histogram::buckets_are_contiguous_and_cover_u64",
            buckets_are_contiguous_and_cover_u64,
        ),
        (
            "histogram::quantiles_are_within_the_bucket_precision",
            quantiles_are_within_the_bucket_precision,
        ),
        (
            "histogram::empty_histogram_has_no_quantiles",
            empty_histogram_has_no_quantiles,
        ),
    ];
}
