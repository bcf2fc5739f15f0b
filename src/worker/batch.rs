//! The end of every batch, and arming operations: the router starts what is due, receives
//! that ended are armed again within the buffers there are to give them, operations the
//! submission queue refused are pushed again, recycled buffers are published to the kernel
//! with one store, and counters are published for the metrics thread.

use std::io;
use std::os::fd::AsRawFd;

use super::{Deferred, Worker};
use crate::session::Key;
use crate::user_data::Op;

impl Worker {
    pub(super) fn end_batch(&mut self) {
        self.announce();
        // Then the router, so that buffers freed by expired lookups count as free below.
        self.route(|router, io| router.poll(io));
        self.router.links_up(self.counters.links_up_mut());
        if !self.deferred.is_empty() {
            let mut rearms = rearm_budget(self.driver.buffers_leased(), self.driver.buffers());
            let mut work = std::mem::take(&mut self.deferred);
            // The listener first: new work waits behind it, established sessions' replies too.
            work.sort_by_key(|d| !matches!(d, Deferred::ArmListener));
            for d in work.drain(..) {
                let rearm = matches!(d, Deferred::ArmListener | Deferred::ArmSession(_));
                if rearm && rearms == 0 {
                    self.deferred.push(d);
                    continue;
                }
                rearms -= u32::from(rearm);
                match d {
                    Deferred::ArmListener => self.arm_listener(),
                    Deferred::ArmSession(key) => self.arm_session(key),
                    Deferred::Cancel(target) => self.cancel(target),
                    Deferred::ArmTick => self.arm_tick(),
                    Deferred::ArmWake => self.arm_wake(),
                }
            }
            if self.deferred.is_empty() {
                // Keep the allocation for the next batch.
                self.deferred = work;
            }
        }
        self.driver.publish();
        self.counters.set_sessions(self.sessions.live());
        self.counters.set_offloaded(self.offloaded());
        self.counters.publish(&self.shared.stats[self.index]);
    }

    pub(super) fn arm_listener(&mut self) {
        if !self.life.serving() {
            return;
        }
        let fd = self.listener.as_raw_fd();
        let result = self.driver.recv_multishot(fd, Op::ListenRecv.encode());
        if result.is_ok() {
            self.pause.listener_armed = true;
        }
        self.pushed(result, Deferred::ArmListener);
    }

    pub(super) fn arm_session(&mut self, key: Key) {
        if !self.life.serving() {
            return;
        }
        let Some(fd) = self.sessions.arm_recv(key) else {
            return;
        };
        let result = self
            .driver
            .recv_multishot(fd, Op::SessionRecv(key).encode());
        if result.is_err() {
            self.sessions.recv_not_armed(key);
        }
        self.pushed(result, Deferred::ArmSession(key));
    }

    pub(super) fn arm_tick(&mut self) {
        let result = self.driver.tick(Op::Tick.encode());
        self.pushed(result, Deferred::ArmTick);
    }

    pub(super) fn arm_wake(&mut self) {
        let fd = self.wake.as_raw_fd();
        let result = self.driver.read_wake(fd, Op::Wake.encode());
        self.pushed(result, Deferred::ArmWake);
    }

    /// Accounts for a push: a flush it needed is counted, a refusal retried after the batch.
    pub(super) fn pushed(&mut self, result: io::Result<bool>, retry: Deferred) {
        match result {
            Ok(flushed) => self.count_flush(flushed),
            Err(_) => self.deferred.push(retry),
        }
    }
}

/// How many receives that ended may be armed again now: one per buffer the kernel has to
/// give. A receive armed with no buffer for it ends again at once with `ENOBUFS`; arming many
/// sockets on one free buffer would spin through re-arms without receiving. The rest wait for
/// the next batch (at most [`super::REARM_RETRY`] away).
fn rearm_budget(leased: u32, entries: u32) -> u32 {
    entries.saturating_sub(leased)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receives_are_rearmed_one_per_free_buffer() {
        assert_eq!(rearm_budget(0, 2), 2);
        assert_eq!(rearm_budget(1, 2), 1);
        assert_eq!(rearm_budget(2, 2), 0);
    }
}
