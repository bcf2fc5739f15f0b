//! Who may start a session: every decision a datagram from an unknown source can trigger
//! before a session exists, each bounded and counted where it is made.
//!
//! In order: the source must be a plausible unicast client that is not ringgate itself nor one
//! of its backends ([`source`], `bad_source`); it must be within its address's budget of new
//! sessions ([`rate`], `rate_limited`) and within the worker's ([`budget`], `session_budget`),
//! which bounds the CPU all newcomers together may take. Established sessions never pass through here: the cost
//! falls on newcomers only. What happens when the table is full (evicting the oldest
//! unconfirmed session) is the session table's decision.

pub mod budget;
pub mod rate;
pub mod source;

use std::net::{IpAddr, SocketAddr};

use self::budget::{Budget, Verdict};
use self::rate::{Limiter, RateLimit};
use self::source::Own;
use crate::stats::Counter;

pub struct Admission {
    own: Own,
    limiter: Option<Limiter>,
    budget: Option<Budget>,
}

impl Admission {
    /// `listen` and the host's `local` addresses; `per_ip` new sessions per source address
    /// and `per_worker` in all (`None`: unlimited).
    pub fn new(
        listen: SocketAddr,
        local: Vec<IpAddr>,
        per_ip: Option<RateLimit>,
        per_worker: Option<RateLimit>,
    ) -> Admission {
        Admission {
            own: Own::new(listen, local),
            limiter: per_ip.map(Limiter::new),
            budget: per_worker.map(Budget::new),
        }
    }

    /// Whether `source` is one no session may start from; `is_backend` says whether an
    /// address is one of the router's backends.
    pub fn bad_source(&self, source: SocketAddr, is_backend: impl Fn(SocketAddr) -> bool) -> bool {
        source::is_bogon(source)
            || self.own.contains(source)
            || is_backend(source::canonical(source))
    }

    /// Whether `addr` is ringgate's own listening address (a backend there would loop).
    pub fn is_own(&self, addr: SocketAddr) -> bool {
        self.own.contains(addr)
    }

    /// Admits a new session from `source` at `now_ms`, or says why not.
    pub fn admit(
        &mut self,
        source: SocketAddr,
        now_ms: u32,
        is_backend: impl Fn(SocketAddr) -> bool,
    ) -> Result<(), Counter> {
        if self.bad_source(source, is_backend) {
            return Err(Counter::DropBadSource);
        }
        if let Some(limiter) = &mut self.limiter
            && !limiter.admit(source.ip(), now_ms)
        {
            return Err(Counter::DropRateLimited);
        }
        // The address's budget first: one address sending from many ports cannot spend the
        // worker's. A newcomer the worker's budget refuses gets its address's token back, so
        // that retrying through a flood does not spend it (many players behind one NAT).
        match self.budget.as_mut().map(|b| b.admit(source, now_ms)) {
            Some(Verdict::Dropped) => {
                if let Some(limiter) = &mut self.limiter {
                    limiter.give_back(source.ip());
                }
                Err(Counter::DropSessionBudget)
            }
            Some(Verdict::Admitted) | None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    #[test]
    fn sources_are_checked_before_their_budget_is_spent() {
        let backend = a("127.0.0.1:7000");
        let is_backend = |addr: SocketAddr| addr == backend;
        let mut admission = Admission::new(
            a("127.0.0.1:19132"),
            vec![],
            Some(RateLimit {
                per_sec: 1.0,
                burst: 1.0,
            }),
            Some(RateLimit {
                per_sec: 1.0,
                burst: 2.0,
            }),
        );
        for bad in [
            "127.0.0.1:7000",
            "[::ffff:127.0.0.1]:7000",
            "127.0.0.1:19132",
            "1.2.3.4:0",
        ] {
            assert_eq!(
                admission.admit(a(bad), 1, is_backend),
                Err(Counter::DropBadSource),
                "{bad}"
            );
        }
        assert_eq!(admission.admit(a("1.2.3.4:5"), 1, is_backend), Ok(()));
        assert_eq!(
            admission.admit(a("1.2.3.4:6"), 1, is_backend),
            Err(Counter::DropRateLimited)
        );
        // Another address has its own budget, but the worker's is spent after two sessions.
        assert_eq!(admission.admit(a("5.6.7.8:5"), 1, is_backend), Ok(()));
        assert_eq!(
            admission.admit(a("9.9.9.9:5"), 1, is_backend),
            Err(Counter::DropSessionBudget)
        );
        // Refused by the worker's budget, 9.9.9.9 kept its own token: half a second later
        // (half a token refilled), from another port (not a retry), it is still within its own
        // budget, and only the worker's refuses it again.
        assert_eq!(
            admission.admit(a("9.9.9.9:6"), 501, is_backend),
            Err(Counter::DropSessionBudget)
        );
    }
}
