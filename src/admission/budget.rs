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
/// Remembered sources per worker: 8 bytes each, 512 KiB in all, in sets of two. A new source
/// takes the older entry of its set, so an entry lasts until two newer sources land in its
/// set: under a flood of R new sources a second, most entries last longer than
/// `REMEMBERED / R` seconds (a second at 65,000 a second), time enough for a client's
/// retransmission.
pub const REMEMBERED: usize = 64 * 1024;

#[derive(Clone, Copy, Default)]
struct Seen {
    /// The upper half of the source's hash (0: empty).
    tag: u32,
    at_ms: u32,
}

pub struct Budget<S = RandomState> {
    limit: RateLimit,
    first: Bucket,
    retry: Bucket,
    seen: Box<[[Seen; 2]]>,
    hasher: S,
}

/// Whether a newcomer may open a session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Admitted,
    /// Over the budget; remembered, so that it may retry.
    Dropped,
}

impl Budget {
    /// A budget whose memory of sources is keyed at random, so that a spoofer cannot aim
    /// at a client's entry.
    pub fn new(limit: RateLimit) -> Budget {
        Budget::with_hasher(limit, RandomState::new())
    }
}

impl<S: BuildHasher> Budget<S> {
    pub fn with_hasher(limit: RateLimit, hasher: S) -> Budget<S> {
        Budget {
            limit,
            first: Bucket::default(),
            retry: Bucket::default(),
            seen: vec![[Seen::default(); 2]; REMEMBERED / 2].into_boxed_slice(),
            hasher,
        }
    }

    /// Admits a new session from `source` at `now_ms` (milliseconds since the worker started,
    /// wrapping) if a budget has room for it.
    pub fn admit(&mut self, source: SocketAddr, now_ms: u32) -> Verdict {
        if self.first.take(self.limit, now_ms) {
            return Verdict::Admitted;
        }
        let hash = self.hasher.hash_one(source);
        let set = &mut self.seen[hash as usize % (REMEMBERED / 2)];
        let tag = ((hash >> 32) as u32).max(1);
        let age = |seen: &Seen| now_ms.wrapping_sub(seen.at_ms);
        let same = set.iter().position(|seen| seen.tag == tag);
        if let Some(at) = same
            && age(&set[at]) <= RETRY_WINDOW_MS
            && self.retry.take(self.limit, now_ms)
        {
            set[at] = Seen::default();
            return Verdict::Admitted;
        }
        // Remembered (again) from now: in its own entry, else an empty one, else the one
        // remembered longest ago.
        let at = same.unwrap_or(match (set[0].tag, set[1].tag) {
            (0, _) => 0,
            (_, 0) => 1,
            _ => usize::from(age(&set[1]) > age(&set[0])),
        });
        set[at] = Seen { tag, at_ms: now_ms };
        Verdict::Dropped
    }
}

#[cfg(test)]
mod tests {
    use std::hash::{BuildHasherDefault, DefaultHasher};

    use super::*;

    fn source(n: u32) -> SocketAddr {
        SocketAddr::from(([10, (n >> 16) as u8, (n >> 8) as u8, n as u8], 40_000))
    }

    /// With a fixed key, so that which sources share a set is the same in every run.
    fn budget(per_sec: f32) -> Budget<BuildHasherDefault<DefaultHasher>> {
        let limit = RateLimit {
            per_sec,
            burst: per_sec,
        };
        Budget::with_hasher(limit, BuildHasherDefault::default())
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
        // More flood, every source new, spending the budget as it refills; the player
        // retransmits a second later, just after the flood has taken the refill again.
        let flood = |b: &mut Budget<_>, sources: std::ops::Range<u32>, at: u32| {
            let admitted = sources.filter(|&n| b.admit(source(n), at) == Verdict::Admitted);
            admitted.count()
        };
        let refilled = flood(&mut b, 100..5_000, 500) + flood(&mut b, 5_000..6_000, 1_000);
        assert!(
            refilled <= 100,
            "the flood gets only the refilled budget: {refilled}"
        );
        assert_eq!(b.admit(player, 1_000), Verdict::Admitted);
        // Once admitted it is forgotten: another drop starts over.
        flood(&mut b, 6_000..7_000, 1_000);
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
