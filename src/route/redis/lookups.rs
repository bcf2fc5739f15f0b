//! New sessions waiting for the backend key: coalescing and deadlines, without I/O.
//!
//! While one `GET` is in flight, new requests join it instead of sending their own, so a worker
//! has at most one lookup in flight however many clients arrive. Each waiter has its own
//! deadline (`--redis-timeout-ms` from its request); deadlines are in request order, so the
//! oldest waiter is always the first to expire. A `GET` unanswered for longer than the stall
//! limit means the server stopped answering and the connection must be dropped.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::route::Ticket;

struct Waiter {
    ticket: Ticket,
    deadline: Instant,
}

/// What a new request needs the caller to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Join {
    /// Send a `GET`: none is in flight.
    Send,
    /// A `GET` is in flight; the request waits for its answer.
    Coalesced,
}

#[derive(Default)]
pub struct Lookups {
    /// Oldest (earliest deadline) first.
    waiters: VecDeque<Waiter>,
    /// When the `GET` in flight was sent, if one is.
    sent_at: Option<Instant>,
}

impl Lookups {
    /// Adds a waiter that gives up at `deadline`.
    pub fn join(&mut self, ticket: Ticket, now: Instant, timeout: Duration) -> Join {
        self.waiters.push_back(Waiter {
            ticket,
            deadline: now + timeout,
        });
        if self.sent_at.is_some() {
            Join::Coalesced
        } else {
            Join::Send
        }
    }

    /// The caller sent the `GET` it was told to.
    pub fn sent(&mut self, now: Instant) {
        self.sent_at = Some(now);
    }

    /// The `GET` was answered: every waiter has its answer, and the lookup took what it took.
    pub fn answered(&mut self, now: Instant) -> (Vec<Ticket>, Option<Duration>) {
        let took = self
            .sent_at
            .take()
            .map(|sent| now.saturating_duration_since(sent));
        (self.drain(), took)
    }

    /// Waiters whose deadline has passed. The `GET`, if still in flight, stays in flight and
    /// later requests join it.
    pub fn expire(&mut self, now: Instant) -> Vec<Ticket> {
        let mut expired = Vec::new();
        while let Some(w) = self.waiters.front()
            && w.deadline <= now
        {
            expired.push(w.ticket);
            self.waiters.pop_front();
        }
        expired
    }

    /// Whether waiters need a `GET` sent: there are some and none is in flight.
    pub fn needs_get(&self) -> bool {
        !self.waiters.is_empty() && self.sent_at.is_none()
    }

    /// The connection is gone: the `GET` in flight will never be answered. The waiters keep
    /// waiting, within their deadlines, for a reconnect to ask again.
    pub fn get_lost(&mut self) {
        self.sent_at = None;
    }

    /// Stopping: every waiter, to be told there is no answer.
    pub fn lost(&mut self) -> Vec<Ticket> {
        self.sent_at = None;
        self.drain()
    }

    /// Whether the `GET` in flight has gone unanswered for longer than `stall`.
    pub fn stalled(&self, now: Instant, stall: Duration) -> bool {
        self.sent_at
            .is_some_and(|t| now.saturating_duration_since(t) > stall)
    }

    /// Whether anything waits on the clock (a waiter's deadline, a `GET`'s stall limit).
    pub fn waiting(&self) -> bool {
        !self.waiters.is_empty() || self.sent_at.is_some()
    }

    fn drain(&mut self) -> Vec<Ticket> {
        self.waiters.drain(..).map(|w| w.ticket).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMEOUT: Duration = Duration::from_millis(200);

    #[test]
    fn the_first_request_sends_and_later_ones_join_it() {
        let (mut l, t0) = (Lookups::default(), Instant::now());
        assert_eq!(l.join(Ticket(1), t0, TIMEOUT), Join::Send);
        l.sent(t0);
        assert_eq!(l.join(Ticket(2), t0, TIMEOUT), Join::Coalesced);
        let (tickets, took) = l.answered(t0 + Duration::from_millis(3));
        assert_eq!(tickets, [Ticket(1), Ticket(2)]);
        assert_eq!(took, Some(Duration::from_millis(3)));
        assert!(!l.waiting());
        assert_eq!(l.join(Ticket(3), t0, TIMEOUT), Join::Send, "next round");
    }

    #[test]
    fn waiters_expire_oldest_first_and_the_get_stays_in_flight() {
        let (mut l, t0) = (Lookups::default(), Instant::now());
        l.join(Ticket(1), t0, TIMEOUT);
        l.sent(t0);
        l.join(Ticket(2), t0 + Duration::from_millis(100), TIMEOUT);
        assert_eq!(l.expire(t0 + Duration::from_millis(199)), []);
        assert_eq!(l.expire(t0 + Duration::from_millis(250)), [Ticket(1)]);
        assert!(l.waiting(), "the GET is still in flight");
        assert_eq!(l.join(Ticket(3), t0, TIMEOUT), Join::Coalesced);
        assert_eq!(
            l.expire(t0 + Duration::from_millis(300)),
            [Ticket(2), Ticket(3)]
        );
    }

    #[test]
    fn waiters_outlive_a_lost_get_and_need_another() {
        let (mut l, t0) = (Lookups::default(), Instant::now());
        assert!(!l.needs_get());
        l.join(Ticket(1), t0, TIMEOUT);
        assert!(
            l.needs_get(),
            "nothing sent yet (the connection may still be coming up)"
        );
        l.sent(t0);
        assert!(!l.needs_get());
        l.get_lost();
        assert!(l.needs_get(), "the reconnect must ask again");
        assert!(l.waiting());
        assert_eq!(
            l.expire(t0 + TIMEOUT),
            [Ticket(1)],
            "still within their deadlines"
        );
    }

    #[test]
    fn a_lost_connection_fails_everyone_and_clears_the_get() {
        let (mut l, t0) = (Lookups::default(), Instant::now());
        l.join(Ticket(1), t0, TIMEOUT);
        l.sent(t0);
        assert!(l.stalled(t0 + Duration::from_secs(3), Duration::from_secs(2)));
        assert!(!l.stalled(t0 + Duration::from_secs(1), Duration::from_secs(2)));
        assert_eq!(l.lost(), [Ticket(1)]);
        assert!(!l.waiting());
        assert!(!l.stalled(t0 + Duration::from_secs(3), Duration::from_secs(2)));
    }
}
