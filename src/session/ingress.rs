//! What a client's datagram does to the table, decided without changing it
//! ([`Sessions::classify`]), and the limits that decision enforces.

use std::net::SocketAddr;
use std::os::fd::AsRawFd;

use super::{Ingress, Key, Phase, Sessions};
use crate::addr::canonical;
use crate::stats::Counter;
use crate::user_data::SLOTS_MAX;

/// How big a table may grow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Sessions at once (`--max-sessions`).
    pub sessions_max: usize,
    /// Sessions the worker's share of file descriptors allows (what is left after the
    /// process's reserve); the drop reason is `fd_reserve` when this is the tighter limit.
    pub fd_max: usize,
    /// Datagrams held per resolving session.
    pub pending_max: usize,
    /// Datagrams held by all resolving sessions together.
    pub held_max: usize,
}

impl Limits {
    /// Sessions not closing at most, slots in all at most (closing sessions keep theirs until
    /// their last operation completes, about one batch), and the reason a newcomer past them
    /// is dropped. The slack between the two lets evictions proceed during a flood; when
    /// descriptors are the tighter limit, the slack comes out of them, never out of the
    /// process's reserve.
    pub(super) fn caps(&self) -> (usize, usize, Counter) {
        let sessions_max = self.sessions_max.min(SLOTS_MAX as usize);
        let slack = |max: usize| max / 8 + 16;
        if sessions_max + slack(sessions_max) <= self.fd_max {
            return (
                sessions_max,
                sessions_max + slack(sessions_max),
                Counter::DropMaxSessions,
            );
        }
        // The largest `max` with `max + slack(max)` within the descriptors.
        let max = (self.fd_max.saturating_sub(16) * 8 / 9).min(sessions_max);
        (max, self.fd_max, Counter::DropFdReserve)
    }
}

impl<U: AsRawFd> Sessions<U> {
    /// What a datagram from `client` (as received: a dual-stack listener's IPv4 clients are
    /// `::ffff:a.b.c.d`) does.
    pub fn classify(&self, client: &SocketAddr) -> Ingress {
        let Some(&slot) = self.by_client.get(&canonical(*client)) else {
            return self.classify_newcomer();
        };
        let entry = &self.slots[slot as usize];
        let key = Key {
            slot,
            generation: entry.generation,
        };
        match entry.session.as_ref().map(|s| (s.phase, s.held.len())) {
            Some((Phase::Open, _)) => Ingress::Forward(key),
            Some((Phase::Resolving, held))
                if held < self.pending_max && self.held_total < self.held_max =>
            {
                Ingress::Hold(key)
            }
            Some((Phase::Resolving, _)) => Ingress::Drop(Counter::DropPendingFull),
            // Closing sessions and empty slots are never in the map.
            Some((Phase::Closing, _)) | None => Ingress::Drop(Counter::DropSessionClosed),
        }
    }

    /// A client with no session: room for one, room after evicting the oldest unconfirmed
    /// session, or a drop.
    fn classify_newcomer(&self) -> Ingress {
        let room = self.live < self.hard;
        let full = self.live - self.closing >= self.max || !room;
        let victim = match self.oldest_unconfirmed() {
            Some(victim) if full && room => Some(victim),
            _ if full => return Ingress::Full(self.full),
            _ => None,
        };
        if self.held_total >= self.held_max {
            // A new session's first datagram is held too.
            return Ingress::Full(Counter::DropPendingFull);
        }
        victim.map_or(Ingress::Create, Ingress::Evict)
    }
}
