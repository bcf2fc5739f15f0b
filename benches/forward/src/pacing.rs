//! How the generator spreads its load: the flows and the rate split over the sending threads,
//! the burst each sends per visit to a flow, and the pacer that keeps each sender at its rate.
//! Pure arithmetic with time passed in, so it is checked without a clock.

use std::ops::Range;

use crate::cli::Rate;

/// Most datagrams per `sendmmsg`: past ~32 the per-call saving is negligible next to the
/// per-datagram cost, and longer bursts make a single flow needlessly bursty.
pub const BURST_MAX: usize = 32;
/// A flow is visited at least this often per second when the rate allows: a game client sends
/// 30-60 updates a second, so every flow, even among 10 000, looks alive to an idle reaper.
const VISITS_PER_FLOW_PER_SECOND: u64 = 50;
/// A sender sleeps until at least this much sending is due: about 20 000 wake-ups a second at
/// high rates rather than one per datagram.
const MIN_WAKE_NS: u64 = 50_000;
/// A sender falls at most 2 ms of its rate behind, so a late wake-up is caught up in a short burst.
const CATCH_UP_NS: u64 = 2_000_000;

/// One sender's flows and rate (`None`: as fast as it can).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Share {
    pub flows: Range<usize>,
    pub rate_pps: Option<u64>,
}

/// Splits `flows` into `threads` contiguous shares, each with the rate its flows are owed, so
/// every flow gets the same rate whichever sender it has.
pub fn shares(flows: usize, threads: usize, rate: Rate) -> Vec<Share> {
    let threads = threads.clamp(1, flows);
    let edge = |t: usize| t * flows / threads;
    let rate_to = |flow: usize| match rate {
        Rate::Pps(pps) => Some(pps * flow as u64 / flows as u64),
        Rate::Max => None,
    };
    let share = |t| Share {
        flows: edge(t)..edge(t + 1),
        rate_pps: rate_to(edge(t + 1))
            .zip(rate_to(edge(t)))
            .map(|(to, from)| (to - from).max(1)),
    };
    (0..threads).map(share).collect()
}

impl Share {
    /// Datagrams per `sendmmsg`: as many as the rate allows while every flow is still visited
    /// `VISITS_PER_FLOW_PER_SECOND` times, from 1 to `BURST_MAX`.
    pub fn burst(&self) -> usize {
        let visits = (self.flows.len() as u64 * VISITS_PER_FLOW_PER_SECOND).max(1);
        self.rate_pps.map_or(BURST_MAX, |rate| {
            ((rate / visits) as usize).clamp(1, BURST_MAX)
        })
    }

    /// The share's pacer from `now_ns` (`None`: as fast as it can), and how many datagrams it
    /// waits for when it sleeps: at least a burst, about `MIN_WAKE_NS` of its rate.
    pub fn pacer(&self, now_ns: u64) -> Option<(Pacer, usize)> {
        Some(Pacer::new(self.rate_pps?, self.burst(), now_ns))
    }
}

/// Paces one sender: `due` is what the rate owes since the start, computed from the elapsed
/// time (no drift over a long run); the sender is never more than `catch_up` datagrams behind,
/// so after a stall it catches up with a bounded burst, not a flood. Time is passed in, so the
/// arithmetic is checked without a clock.
pub struct Pacer {
    rate_pps: u64,
    start_ns: u64,
    sent: u64,
    catch_up: u64,
}

impl Pacer {
    /// A pacer at `rate_pps` from `now_ns` for a sender of `burst` datagrams per call, and how
    /// many it waits for when it sleeps: at least a burst, about `MIN_WAKE_NS` of its rate.
    pub fn new(rate_pps: u64, burst: usize, now_ns: u64) -> (Pacer, usize) {
        let of_rate = |ns: u64| (u128::from(rate_pps) * u128::from(ns) / 1_000_000_000) as u64;
        let catch_up = of_rate(CATCH_UP_NS).max(burst as u64);
        let wake = (of_rate(MIN_WAKE_NS) as usize).clamp(burst, BURST_MAX.max(burst));
        let pacer = Pacer {
            rate_pps,
            start_ns: now_ns,
            sent: 0,
            catch_up,
        };
        (pacer, wake)
    }

    fn due(&self, now_ns: u64) -> u64 {
        (u128::from(now_ns.saturating_sub(self.start_ns)) * u128::from(self.rate_pps)
            / 1_000_000_000) as u64
    }

    /// Up to `max` datagrams to send at `now_ns`, or else the nanoseconds until `want` are due.
    pub fn next(&mut self, now_ns: u64, max: usize, want: usize) -> Result<usize, u64> {
        let due = self.due(now_ns);
        self.sent = self.sent.max(due.saturating_sub(self.catch_up));
        match (due - self.sent).min(max as u64) {
            0 => {
                let at = u128::from(self.sent + want as u64) * 1_000_000_000
                    / u128::from(self.rate_pps.max(1));
                Err((self.start_ns + at as u64).saturating_sub(now_ns).max(1))
            }
            ready => {
                self.sent += ready;
                Ok(ready as usize)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_split_flows_and_rate() {
        let split = shares(10, 3, Rate::Pps(1_000));
        let flows: Vec<_> = split.iter().map(|s| s.flows.clone()).collect();
        assert_eq!(flows, [0..3, 3..6, 6..10]);
        assert_eq!(
            split.iter().map(|s| s.rate_pps.unwrap()).sum::<u64>(),
            1_000
        );
        assert_eq!(shares(2, 8, Rate::Max).len(), 2);
        assert_eq!(shares(2, 8, Rate::Max)[1].rate_pps, None);
    }

    #[test]
    fn bursts_keep_every_flow_visited() {
        let one = |flows: usize, rate: Rate| shares(flows, 1, rate)[0].burst();
        assert_eq!(one(64, Rate::Max), BURST_MAX);
        // 50k pps over 64 flows: 15.6 datagrams per flow per visit at 50 visits/s.
        assert_eq!(one(64, Rate::Pps(50_000)), 15);
        assert_eq!(one(1024, Rate::Pps(50_000)), 1);
        assert_eq!(one(1, Rate::Pps(10_000_000)), BURST_MAX);
    }

    #[test]
    fn pacer_keeps_the_rate_and_bounds_catching_up() {
        let mut pacer = Pacer {
            rate_pps: 50_000,
            start_ns: 0,
            sent: 0,
            catch_up: 64,
        };
        // 100 us steps: 5 datagrams fall due per step, well under the catch-up bound.
        let sent: usize = (1..=10_000)
            .map(|step| pacer.next(step * 100_000, 32, 1).unwrap_or(0))
            .sum();
        assert_eq!(sent, 50_000);
        let mut pacer = Pacer {
            rate_pps: 1_000_000,
            start_ns: 0,
            sent: 0,
            catch_up: 256,
        };
        assert_eq!(pacer.next(1_000_000_000, usize::MAX, 1), Ok(256));
        // Then 1 us per datagram at 1M pps: 8 more are due 8 us later.
        assert_eq!(pacer.next(1_000_000_000, usize::MAX, 8), Err(8_000));
    }
}
