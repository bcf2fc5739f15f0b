//! What happens to sessions, announced by the table as it happens: a session opened (connected
//! to its backend), was confirmed (its client sent again after the backend answered), or closed
//! (and why).
//!
//! The table appends an [`Event`] in the transition itself ([`super::Sessions::open`],
//! [`super::Sessions::upstream`], [`super::Sessions::begin_close`]) and the worker takes them
//! once per batch ([`super::Sessions::take_events`]) and fans them out: session log lines, the
//! Redis session map, and whatever else reacts to sessions. No consumer reaches into the table.
//! Only sessions that opened are announced: one that closes before it had a route produces no
//! event (its drop is counted where it happens). Sessions adopted from another process arrive
//! already open and are not announced again; those handed over leave without a word.
//!
//! The list is bounded by the batch: at most one Opened, one Confirmed and one Closed per
//! session per batch, and the worker empties it at the end of every batch.

use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;

use super::{Key, Sessions};
use crate::stats::Counter;

impl<U: AsRawFd> Sessions<U> {
    /// Moves the events announced since the last call into `out`.
    pub fn take_events(&mut self, out: &mut Vec<Event>) {
        if out.is_empty() {
            // Hand the list over whole: the table starts a new one, grown as needed.
            std::mem::swap(out, &mut self.events);
        } else {
            out.append(&mut self.events);
        }
    }
}

/// Why a session closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Why {
    /// No datagram either way for the idle timeout.
    Idle,
    /// Unconfirmed for the unreplied timeout.
    Unreplied,
    /// Evicted, unconfirmed, to make room for a newcomer.
    Evicted,
    /// A disconnect message named it.
    Disconnect,
    /// Its traffic came back around (a route to itself, or to this listener).
    Loop,
    /// The worker stopped.
    Shutdown,
    /// It never opened: no route, or no socket.
    Abandoned,
}

impl Why {
    /// The counter of sessions closed for this reason; `None` for one that never opened.
    pub const fn counter(self) -> Option<Counter> {
        Some(match self {
            Why::Idle => Counter::ClosedIdle,
            Why::Unreplied => Counter::ClosedUnreplied,
            Why::Evicted => Counter::ClosedEvicted,
            Why::Disconnect => Counter::ClosedDisconnect,
            Why::Loop => Counter::ClosedLoop,
            Why::Shutdown => Counter::ClosedShutdown,
            Why::Abandoned => return None,
        })
    }
}

/// A session's life, as its table announces it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// Connected upstream: the backend sees `client` as `upstream` (the session socket's local
    /// address).
    Opened {
        key: Key,
        client: SocketAddr,
        upstream: SocketAddr,
        backend: SocketAddr,
    },
    /// Its client sent again after the backend answered: a spoofer cannot have done that.
    Confirmed {
        key: Key,
        client: SocketAddr,
        /// The address the client sent to, when the listener is a wildcard.
        local: Option<IpAddr>,
        upstream: SocketAddr,
        backend: SocketAddr,
    },
    /// Out of the table's maps; its socket closes once its last operation completes.
    Closed {
        key: Key,
        client: SocketAddr,
        upstream: SocketAddr,
        backend: SocketAddr,
        why: Why,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_but_abandoned_has_its_counter() {
        let all = [
            Why::Idle,
            Why::Unreplied,
            Why::Evicted,
            Why::Disconnect,
            Why::Loop,
            Why::Shutdown,
        ];
        let counters: Vec<Counter> = all.iter().filter_map(|w| w.counter()).collect();
        assert_eq!(counters.len(), all.len());
        for (i, c) in counters.iter().enumerate() {
            assert!(!counters[i + 1..].contains(c), "one counter each: {c:?}");
        }
        assert_eq!(Why::Abandoned.counter(), None);
    }
}
