//! Sessions leaving, and the worker stopping.
//!
//! A session closes for a reason (idle, a disconnect message, shutdown) or is abandoned before
//! it opened (no route, no socket). Either way it leaves the table's maps at once, its held
//! datagrams are dropped with a counted reason, its lease goes back to the router, and its
//! armed receive is cancelled; the table frees the slot when the last operation naming it
//! completes. The reaper runs on the ring's tick; stopping cancels the listener and every
//! session, then waits for the ring to drain.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tracing::debug;

use super::{Deferred, Worker};
use crate::route::{Lease, Note, Target};
use crate::session::{Key, Why};
use crate::stats::Counter;
use crate::user_data::Op;

impl Worker {
    /// Frees a session that never opened, dropping what it held with `reason`.
    pub(super) fn abandon_session(&mut self, key: Key, reason: Counter) {
        self.close_session(key, reason, Why::Abandoned);
    }

    /// Starts closing a session for `why`: held datagrams dropped with `drop_reason`, the close
    /// counted, its receive cancelled. The table announces it (`events`).
    pub(super) fn close_session(&mut self, key: Key, drop_reason: Counter, why: Why) {
        // Out of the XDP map first: the table may close the socket at once.
        self.unload(key);
        let Some(closed) = self.sessions.begin_close(key, why) else {
            return;
        };
        if let Some(counter) = why.counter() {
            self.counters.bump(counter);
        }
        for h in closed.held {
            self.drop_buffer(h.bid, drop_reason);
        }
        self.drop_carried(key, drop_reason);
        if let Some(slot) = closed.backend_slot {
            self.counters.backends.closed(slot);
        }
        self.release(closed.lease);
        if closed.recv_armed {
            self.cancel(Op::SessionRecv(key).encode());
        }
    }

    pub(super) fn release(&mut self, lease: Option<Lease>) {
        if let Some(lease) = lease {
            self.router.release(lease);
        }
    }

    /// Cancels the operation issued with `target`, retrying after the batch if the queue is full.
    pub(super) fn cancel(&mut self, target: u64) {
        let result = self.driver.cancel(target, Op::Cancel.encode());
        self.pushed(result, Deferred::Cancel(target));
    }

    /// Closes the sessions a disconnect message names.
    pub(super) fn on_disconnect(&mut self, target: Target) {
        let victims = self.sessions.matching(target);
        self.counters.bump(if victims.is_empty() {
            Counter::DisconnectUnmatched
        } else {
            Counter::DisconnectMatched
        });
        for key in victims {
            self.close_session(key, Counter::DropNoRoute, Why::Disconnect);
        }
    }

    /// The reaper: closes sessions unconfirmed for the unreplied timeout, and sessions idle
    /// for the idle timeout.
    pub(super) fn on_tick(&mut self) {
        self.tick = self.tick.wrapping_add(1);
        if self.life.stopping() {
            return;
        }
        self.arm_tick();
        // Pausing for a takeover: sessions are not closed under it.
        if !self.life.serving() {
            return;
        }
        // The session map's server changed: every live session is noted again, a slice per
        // tick (marked as noted at the request's next tick, so each is taken once).
        if self.router.take_republish() {
            // Ticks never wrap in practice (the reaper assumes so: 490 days at 10 ms).
            self.republish = Some(self.tick.saturating_add(1));
        }
        if let Some(cutoff) = self.republish {
            let mut alive = Vec::new();
            self.sessions
                .collect_unannounced(cutoff, cutoff, NOTES_PER_TICK, &mut alive);
            if alive.len() < NOTES_PER_TICK {
                self.republish = None;
            }
            for (upstream, client) in alive {
                self.note(Note::Alive { upstream, client });
            }
        }
        let mut keys = std::mem::take(&mut self.scratch);
        if let Some(cutoff) = idle_cutoff(self.tick, self.unreplied_ticks) {
            self.sessions.collect_unreplied(cutoff, &mut keys);
            for key in keys.drain(..) {
                self.close_session(key, Counter::DropNoRoute, Why::Unreplied);
            }
        }
        if let Some(cutoff) = idle_cutoff(self.tick, self.idle_ticks) {
            self.sessions.collect_idle(cutoff, &mut keys);
            for key in keys.drain(..) {
                // An offloaded session's datagrams went through the XDP program, unseen here.
                if !self.active_in_xdp(key, cutoff) {
                    self.close_session(key, Counter::DropNoRoute, Why::Idle);
                }
            }
            // Live sessions' entries in the session map are refreshed once per idle timeout
            // (they expire after two).
            if self.router.wants_notes() {
                let mut alive = Vec::new();
                self.sessions
                    .collect_unannounced(cutoff, self.tick, NOTES_PER_TICK, &mut alive);
                for (upstream, client) in alive {
                    self.note(Note::Alive { upstream, client });
                }
            }
        }
        self.scratch = keys;
    }

    /// Tells the router about a session, if it wants to know (the session map).
    pub(super) fn note(&mut self, note: Note) {
        if self.router.wants_notes() {
            self.route(|router, io| router.note(note, io));
        }
    }

    /// The wake-up eventfd fired: a stop was requested, or a takeover asks the worker to
    /// pause (or a spurious wake, re-armed).
    pub(super) fn on_wake(&mut self) {
        if self.life.stopping() {
            return;
        }
        if !self.shared.stop.load(Ordering::Acquire) {
            self.check_control();
            return self.arm_wake();
        }
        // A takeover that failed after this process took the sockets: the old process serves
        // them again, so nothing may be closed.
        if self.shared.taken_over.load(Ordering::Acquire) {
            return self.taken_over();
        }
        self.life.stop(Instant::now());
        debug!(
            worker = self.index,
            sessions = self.sessions.live(),
            "worker stopping"
        );
        self.cancel(Op::ListenRecv.encode());
        self.cancel(Op::Tick.encode());
        self.route(|router, io| router.shutdown(io));
        let mut all = std::mem::take(&mut self.scratch);
        self.sessions.collect_all(&mut all);
        for key in all.drain(..) {
            self.close_session(key, Counter::DropShutdown, Why::Shutdown);
        }
        self.scratch = all;
        self.deferred.retain(|d| matches!(d, Deferred::Cancel(_)));
    }
}

/// Sessions noted per tick for each of the session map's refresh and rewrite: together well
/// under the notes a router keeps between flushes (`publish::PENDING_MAX`), so none is dropped.
const NOTES_PER_TICK: usize = 2048;

/// Reaper ticks in `idle` (rounded up, so a session is never reaped early).
pub(super) fn idle_ticks(idle: Duration, tick: Duration) -> u32 {
    let ticks = idle.as_nanos().div_ceil(tick.as_nanos().max(1));
    u32::try_from(ticks).unwrap_or(u32::MAX)
}

/// The reaper's cutoff at `tick`: sessions last active before it are idle. `None` until the
/// worker has run for a whole idle timeout.
fn idle_cutoff(tick: u32, idle_ticks: u32) -> Option<u32> {
    tick.checked_sub(idle_ticks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_idle_timeout_is_counted_in_whole_ticks_rounded_up() {
        let tick = Duration::from_millis(125);
        assert_eq!(idle_ticks(Duration::from_secs(1), tick), 8);
        assert_eq!(idle_ticks(Duration::from_millis(1001), tick), 9);
        assert_eq!(idle_ticks(Duration::MAX, Duration::from_nanos(1)), u32::MAX);
    }

    #[test]
    fn nothing_is_idle_before_a_whole_timeout_has_passed() {
        assert_eq!(idle_cutoff(7, 8), None);
        assert_eq!(idle_cutoff(8, 8), Some(0));
        assert_eq!(idle_cutoff(20, 8), Some(12));
    }
}
