//! The newcomer gate: every "may this client start a session" decision, in one place, each
//! bounded and counted where it is made ([`Admission::decide`], then [`Admission::route_loops`]
//! once its route is known).
//!
//! In order: the session table must have room, or a session it may evict (its own
//! measurement, handed in as a [`Room`]: `max_sessions`, `fd_reserve`, `pending_full`); the
//! process must not be draining (`draining`); the source must be a plausible unicast client
//! that is not ringgate itself nor one of its backends ([`source`], `bad_source`); it must be
//! within its address's budget of new sessions ([`rate`], `rate_limited`) and within the
//! worker's ([`budget`], `session_budget`), which bounds the CPU all newcomers together may
//! take; and it must not be one of this worker's own session sockets, its traffic come back
//! around (the loop guard: that session is closed, `bad_source`). Once the router answers, a
//! route back to the client itself or to this listener would forward in a circle, and is
//! refused too. Established sessions never pass through here: the cost falls on newcomers
//! only.

pub mod budget;
pub mod rate;
pub mod source;

use std::net::{IpAddr, SocketAddr};

use self::budget::{Budget, Verdict};
use self::rate::{Limiter, RateLimit};
use self::source::Own;
use crate::addr;
use crate::stats::Counter;

/// What the session table has for a newcomer: room, room once `K` (the oldest unconfirmed
/// session) is evicted, or none (and the reason to count).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Room<K> {
    Free,
    Evict(K),
    Full(Counter),
}

/// The gate's answer for a newcomer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision<K> {
    /// Start its session, evicting this one first if named.
    Admit { evict: Option<K> },
    /// Drop its datagram, counting this reason.
    Refuse(Counter),
    /// It is this worker's own session `K`'s socket: close that session (a loop) and drop.
    Loop(K),
}

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
        source::is_bogon(source) || self.own.contains(source) || is_backend(addr::canonical(source))
    }

    /// Whether a newcomer from `source` at `now_ms` may start a session, given the table's
    /// `room` and whether the process is `draining`. `is_backend` says whether an address is
    /// one of the router's backends; `own_session` finds this worker's open session whose
    /// upstream socket is `source` (asked only of a source that passed everything else).
    pub fn decide<K>(
        &mut self,
        source: SocketAddr,
        now_ms: u32,
        room: Room<K>,
        draining: bool,
        is_backend: impl Fn(SocketAddr) -> bool,
        own_session: impl FnOnce() -> Option<K>,
    ) -> Decision<K> {
        let evict = match room {
            Room::Full(reason) => return Decision::Refuse(reason),
            Room::Evict(victim) => Some(victim),
            Room::Free => None,
        };
        if draining {
            return Decision::Refuse(Counter::DropDraining);
        }
        if let Err(reason) = self.admit(source, now_ms, is_backend) {
            return Decision::Refuse(reason);
        }
        match own_session() {
            Some(looped) => Decision::Loop(looped),
            None => Decision::Admit { evict },
        }
    }

    /// Whether a route to `backend` for `client` would forward in a circle: back to the client
    /// itself, or to this listener.
    pub fn route_loops(&self, backend: SocketAddr, client: SocketAddr) -> bool {
        addr::same(backend, client) || self.own.contains(backend)
    }

    /// Admits a new session from `source` at `now_ms`, or says why not: the source's checks
    /// and budgets alone (see [`Admission::decide`]).
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

    fn gate() -> Admission {
        Admission::new(
            a("127.0.0.1:19132"),
            vec![],
            Some(RateLimit {
                per_sec: 1.0,
                burst: 1.0,
            }),
            None,
        )
    }

    const NOT_A_BACKEND: fn(SocketAddr) -> bool = |_| false;

    #[test]
    fn the_gate_asks_in_order_and_stops_at_the_first_refusal() {
        let mut g = gate();
        let client = a("1.2.3.4:5");
        let never = || -> Option<u32> { panic!("the loop guard is asked last") };
        // A full table refuses before anything else is spent or asked.
        assert_eq!(
            g.decide(
                client,
                1,
                Room::Full(Counter::DropFdReserve),
                true,
                NOT_A_BACKEND,
                never
            ),
            Decision::Refuse(Counter::DropFdReserve)
        );
        // Draining refuses before the source's budget is spent.
        assert_eq!(
            g.decide(client, 1, Room::<u32>::Free, true, NOT_A_BACKEND, never),
            Decision::Refuse(Counter::DropDraining)
        );
        // A bad source, before its budget.
        assert_eq!(
            g.decide(
                a("224.0.0.1:5"),
                1,
                Room::<u32>::Free,
                false,
                NOT_A_BACKEND,
                never
            ),
            Decision::Refuse(Counter::DropBadSource)
        );
        assert_eq!(
            g.decide(
                a("10.0.0.1:5"),
                1,
                Room::<u32>::Free,
                false,
                |b| b == a("10.0.0.1:5"),
                never
            ),
            Decision::Refuse(Counter::DropBadSource),
            "a backend's address"
        );
        // Admitted, with its victim; then its address's budget is spent.
        assert_eq!(
            g.decide(client, 1, Room::Evict(7u32), false, NOT_A_BACKEND, || None),
            Decision::Admit { evict: Some(7) }
        );
        assert_eq!(
            g.decide(
                a("1.2.3.4:6"),
                2,
                Room::<u32>::Free,
                false,
                NOT_A_BACKEND,
                never
            ),
            Decision::Refuse(Counter::DropRateLimited)
        );
    }

    #[test]
    fn the_loop_guard_closes_the_session_whose_socket_sent() {
        let mut g = gate();
        assert_eq!(
            g.decide(
                a("127.0.0.1:40000"),
                1,
                Room::Free,
                false,
                NOT_A_BACKEND,
                || Some(3u32)
            ),
            Decision::Loop(3)
        );
    }

    #[test]
    fn a_route_back_to_the_client_or_this_listener_loops() {
        let g = gate();
        let client = a("1.2.3.4:5");
        assert!(g.route_loops(a("[::ffff:1.2.3.4]:5"), client));
        assert!(g.route_loops(a("127.0.0.1:19132"), client));
        assert!(!g.route_loops(a("127.0.0.1:19133"), client));
        assert!(!g.route_loops(a("1.2.3.4:6"), client));
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
