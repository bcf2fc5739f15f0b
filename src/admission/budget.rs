//! New sessions per worker: a budget that bounds the CPU newcomers can take from established
//! sessions.
//!
//! Each new session costs a socket, a connect and an armed receive (tens of microseconds), and
//! under a flood of spoofed sources every datagram is a newcomer: unbounded, they would starve
//! the players already connected. Past the budget a newcomer is dropped for a few comparisons.
//!
//! So that a flood cannot lock genuine newcomers out, a source dropped at the budget is
//! remembered for [`RETRY_WINDOW_MS`] in a fixed table; when it sends again within that time it
//! draws on a second budget of the same size. A genuine client retransmits from the same
//! address and port; a blind spoofer's random sources do not come back. Both budgets together
//! bound the cost at twice the rate.

use std::hash::{BuildHasher, RandomState};
use std::net::SocketAddr;

use super::rate::{Bucket, RateLimit};

/// How long a source dropped at the budget is remembered as one that may retry.
pub const RETRY_WINDOW_MS: u32 = 5_000;
/// Remembered sources per worker: 8 bytes each, 64 KiB in all. A flood overwrites entries,
/// which costs a genuine client its place only when another source hashes to its slot.
pub const REMEMBERED: usize = 8 * 1024;

#[derive(Clone, Copy, Default)]
struct Seen {
    /// The upper half of the source's hash (0: empty).
    tag: u32,
    at_ms: u32,
}

pub struct Budget {
    limit: RateLimit,
    first: Bucket,
    retry: Bucket,
    seen: Box<[Seen]>,
    hasher: RandomState,
}

/// Whether a newcomer may open a session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Admitted,
    /// Over the budget; remembered, so that it may retry.
    Dropped,
}

impl Budget {
    pub fn new(limit: RateLimit) -> Budget {
        Budget {
            limit,
            first: Bucket::default(),
            retry: Bucket::default(),
            seen: vec![Seen::default(); REMEMBERED].into_boxed_slice(),
            hasher: RandomState::new(),
        }
    }

    /// Admits a new session from `source` at `now_ms` (milliseconds since the worker started,
    /// wrapping) if a budget has room for it.
    pub fn admit(&mut self, source: SocketAddr, now_ms: u32) -> Verdict {
        if self.first.take(self.limit, now_ms) {
            return Verdict::Admitted;
        }
        let hash = self.hasher.hash_one(source);
        let slot = &mut self.seen[hash as usize % REMEMBERED];
        let tag = ((hash >> 32) as u32).max(1);
        let returning = slot.tag == tag && now_ms.wrapping_sub(slot.at_ms) <= RETRY_WINDOW_MS;
        if returning && self.retry.take(self.limit, now_ms) {
            *slot = Seen::default();
            return Verdict::Admitted;
        }
        *slot = Seen { tag, at_ms: now_ms };
        Verdict::Dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(n: u32) -> SocketAddr {
        SocketAddr::from(([10, (n >> 16) as u8, (n >> 8) as u8, n as u8], 40_000))
    }

    fn budget(per_sec: f32) -> Budget {
        Budget::new(RateLimit {
            per_sec,
            burst: per_sec,
        })
    }

    #[test]
    fn the_budget_admits_its_burst_then_its_rate() {
        let mut b = budget(100.0);
        let admitted = (0..1_000)
            .filter(|&n| b.admit(source(n), 1) == Verdict::Admitted)
            .count();
        assert_eq!(admitted, 100);
        // 100 a second: about 10 more after 100 ms, from sources never seen.
        let later = (1_000..2_000)
            .filter(|&n| b.admit(source(n), 101) == Verdict::Admitted)
            .count();
        assert!((9..=11).contains(&later), "{later}");
    }

    #[test]
    fn a_source_that_retries_gets_in_during_a_flood_of_new_ones() {
        let mut b = budget(100.0);
        let player = SocketAddr::from(([192, 0, 2, 7], 19_133));
        // The flood has spent the budget when the player's first datagram comes.
        for n in 0..100 {
            b.admit(source(n), 1);
        }
        assert_eq!(b.admit(player, 1), Verdict::Dropped);
        // More flood, every source new; then the player retransmits a second later.
        let flood: usize = (100..5_000)
            .filter(|&n| b.admit(source(n), 500) == Verdict::Admitted)
            .count();
        assert!(
            flood <= 50,
            "the flood gets only the refilled budget: {flood}"
        );
        assert_eq!(b.admit(player, 1_000), Verdict::Admitted);
        // Once admitted it is forgotten: another drop starts over.
        for n in 5_000..6_000 {
            b.admit(source(n), 1_000);
        }
        assert_eq!(b.admit(player, 1_000), Verdict::Dropped);
    }

    #[test]
    fn a_retry_is_recognised_across_the_millisecond_clock_wrapping() {
        let mut b = budget(1.0);
        let player = source(7);
        let before_wrap = u32::MAX - 100;
        assert_eq!(b.admit(source(1), before_wrap), Verdict::Admitted);
        assert_eq!(b.admit(player, before_wrap), Verdict::Dropped);
        assert_eq!(
            b.admit(player, before_wrap.wrapping_add(200)),
            Verdict::Admitted
        );
    }

    #[test]
    fn a_retry_after_the_window_counts_as_new() {
        let mut b = budget(1.0);
        let player = source(7);
        assert_eq!(b.admit(source(1), 1), Verdict::Admitted);
        assert_eq!(b.admit(player, 1), Verdict::Dropped);
        // The first budget has refilled by then, and a newcomer spends it.
        let late = 2 + RETRY_WINDOW_MS;
        assert_eq!(b.admit(source(2), late), Verdict::Admitted);
        assert_eq!(
            b.admit(player, late),
            Verdict::Dropped,
            "remembered too long ago"
        );
        assert_eq!(
            b.admit(player, late + 1),
            Verdict::Admitted,
            "a retry within the window draws on the second budget"
        );
    }
}
