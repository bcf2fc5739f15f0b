//! New sessions per source address: a token bucket per IPv4 address or IPv6 /64, in a fixed
//! table so that a flood of sources cannot grow it.
//!
//! The table has [`BUCKETS`] buckets; an address picks one by a hash keyed per worker at
//! random, so a spoofer cannot aim at a real client's bucket. Two addresses that share a bucket
//! share its budget, which with the generous defaults a carrier-grade NAT needs (many players
//! behind one address) costs a genuine client nothing until the table is crowded, and then errs
//! toward admitting less from everyone rather than growing.

use std::hash::{BuildHasher, RandomState};
use std::net::IpAddr;

/// Buckets per worker: 8 bytes each, 128 KiB in all.
pub const BUCKETS: usize = 16 * 1024;

/// `RATE/BURST`: new sessions a second, refilled continuously, and how many may come at once.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RateLimit {
    pub per_sec: f32,
    pub burst: f32,
}

/// A token bucket: `RateLimit::burst` tokens when new, refilled at `per_sec`.
#[derive(Clone, Copy, Default)]
pub struct Bucket {
    tokens: f32,
    /// Milliseconds since the limiter started when `tokens` was last brought up to date; 0 for
    /// a bucket never used (it starts full).
    at_ms: u32,
}

impl Bucket {
    /// Spends a token at `now_ms` (milliseconds since the limiter started, wrapping) if there
    /// is one. A bucket left alone for a whole wrap (49.7 days) refills by less than it should,
    /// once.
    pub fn take(&mut self, limit: RateLimit, now_ms: u32) -> bool {
        let now_ms = now_ms.max(1);
        let tokens = if self.at_ms == 0 {
            limit.burst
        } else {
            let elapsed = now_ms.wrapping_sub(self.at_ms) as f32 / 1000.0;
            (self.tokens + elapsed * limit.per_sec).min(limit.burst)
        };
        self.at_ms = now_ms;
        let admitted = tokens >= 1.0;
        self.tokens = if admitted { tokens - 1.0 } else { tokens };
        admitted
    }

    /// Gives back the token just taken, for a session that did not open after all.
    pub fn give_back(&mut self, limit: RateLimit) {
        self.tokens = (self.tokens + 1.0).min(limit.burst);
    }
}

pub struct Limiter {
    limit: RateLimit,
    buckets: Box<[Bucket]>,
    hasher: RandomState,
}

impl Limiter {
    pub fn new(limit: RateLimit) -> Limiter {
        Limiter {
            limit,
            buckets: vec![Bucket::default(); BUCKETS].into_boxed_slice(),
            hasher: RandomState::new(),
        }
    }

    /// Whether `source` may open a session at `now_ms` (milliseconds since the limiter
    /// started); if so, it has spent a token.
    pub fn admit(&mut self, source: IpAddr, now_ms: u32) -> bool {
        let index = self.hasher.hash_one(prefix(source)) as usize % BUCKETS;
        self.buckets[index].take(self.limit, now_ms)
    }

    /// Gives back the token `source` just spent: its session did not open after all (the
    /// worker's budget refused it), and the address's budget counts sessions opened.
    pub fn give_back(&mut self, source: IpAddr) {
        let index = self.hasher.hash_one(prefix(source)) as usize % BUCKETS;
        self.buckets[index].give_back(self.limit);
    }
}

/// What one "source" is: an IPv4 address, or an IPv6 /64 (one subscriber's allocation).
fn prefix(ip: IpAddr) -> u128 {
    match ip.to_canonical() {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => (u128::from(v6) >> 64) | (1 << 127),
    }
}

/// Parses `RATE[/BURST]` (`50/100`; `20` means `20/20`); `None` for `0` (no limit).
pub fn parse(text: &str) -> Result<Option<RateLimit>, String> {
    let (rate, burst) = text.split_once('/').unwrap_or((text, text));
    let number = |s: &str| {
        s.trim()
            .parse::<f32>()
            .ok()
            .filter(|n| n.is_finite() && *n >= 0.0 && *n <= 1e6)
            .ok_or_else(|| format!("`{text}` is not RATE[/BURST] such as 50/100 (0 disables)"))
    };
    let (per_sec, burst) = (number(rate)?, number(burst)?);
    if per_sec == 0.0 {
        return Ok(None);
    }
    if burst < 1.0 {
        return Err(format!("`{text}`: the burst must be at least 1"));
    }
    Ok(Some(RateLimit { per_sec, burst }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn a_burst_is_admitted_then_the_rate() {
        let mut l = Limiter::new(RateLimit {
            per_sec: 5.0,
            burst: 5.0,
        });
        let admitted = (0..30).filter(|_| l.admit(ip("10.0.0.1"), 1)).count();
        assert_eq!(admitted, 5);
        assert!(l.admit(ip("10.0.0.2"), 1), "another address is unaffected");
        assert!(!l.admit(ip("10.0.0.1"), 100));
        assert!(l.admit(ip("10.0.0.1"), 201), "one token back after 200 ms");
        assert!(!l.admit(ip("10.0.0.1"), 202));
    }

    #[test]
    fn buckets_refill_across_the_millisecond_clock_wrapping() {
        let limit = RateLimit {
            per_sec: 1.0,
            burst: 1.0,
        };
        let mut b = Bucket::default();
        let before_wrap = u32::MAX - 500;
        assert!(b.take(limit, before_wrap));
        assert!(!b.take(limit, before_wrap.wrapping_add(500)));
        assert!(
            b.take(limit, before_wrap.wrapping_add(1_000)),
            "a second later, past the wrap, there is a token again"
        );
    }

    #[test]
    fn an_ipv6_slash_64_is_one_source() {
        let mut l = Limiter::new(RateLimit {
            per_sec: 1.0,
            burst: 2.0,
        });
        assert!(l.admit(ip("2001:db8::1"), 1));
        assert!(l.admit(ip("2001:db8::2"), 1));
        assert!(!l.admit(ip("2001:db8::ffff"), 1), "same /64");
        assert!(l.admit(ip("2001:db8:0:1::1"), 1), "another /64");
        assert_ne!(prefix(ip("::ffff:1.2.3.4")), prefix(ip("::1:0:0:0")));
        assert_eq!(prefix(ip("::ffff:1.2.3.4")), prefix(ip("1.2.3.4")));
    }

    #[test]
    fn rates_parse() {
        assert_eq!(
            parse("50/100"),
            Ok(Some(RateLimit {
                per_sec: 50.0,
                burst: 100.0
            }))
        );
        assert_eq!(
            parse("20"),
            Ok(Some(RateLimit {
                per_sec: 20.0,
                burst: 20.0
            }))
        );
        assert_eq!(parse("0"), Ok(None));
        for bad in ["", "x", "-1", "5/0", "5/x", "nan", "inf"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
