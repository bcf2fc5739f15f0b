//! Every receive completion, the listener's and every session's, in one function: the
//! multishot discipline, and the provided buffers' lease and recycling.
//!
//! For each completion, in this order: if `more` is absent the receive has ended
//! (on any error, `-ENOBUFS` included) and is re-armed at the end of the batch; the result is
//! counted by errno; a buffer the kernel selected is leased, and given straight back on an
//! error; the datagram is checked for truncation, size and source; only then is it handed to
//! its direction. A socket that silently stops receiving is the classic failure of this
//! design, so no path out of [`Worker::on_recv`] skips the re-arm.
//!
//! Buffers are leased here and recycled only through [`Worker::recycle`] and
//! [`Worker::drop_buffer`], so "back to the kernel exactly once" is checked in one place (the
//! buffer ring's lease bitmap; a violation counts as an anomaly).

use std::io;

use tracing::warn;

use super::{Deferred, Worker};
use crate::datagram;
use crate::session::{Key, RecvEnd};
use crate::stats::Counter;
use crate::sys::driver::Completion;

/// The socket a receive completion is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum On {
    Listener,
    Session(Key),
}

impl Worker {
    pub(super) fn on_recv(&mut self, on: On, done: &Completion) {
        if !done.more() {
            self.recv_ended(on);
        }
        let res = done.result();
        let Some(bid) = self.lease(res, done.buffer(), on) else {
            return;
        };
        let dgram = match datagram::check(self.driver.received(bid, res), self.max_payload) {
            Ok(dgram) => dgram,
            Err(reason) => {
                if reason == Counter::DropTruncated
                    && let Some(suppressed) = self.warnings.oversize.check()
                {
                    warn!(
                        buffer_size = self.max_payload,
                        suppressed, "dropping a datagram larger than --buffer-size"
                    );
                }
                return self.drop_buffer(bid, reason);
            }
        };
        match on {
            On::Listener => self.on_client_datagram(dgram, bid),
            On::Session(key) => self.on_backend_datagram(key, bid, dgram.len),
        }
    }

    /// A multishot receive ended: arm it again after the batch, unless the worker is stopping
    /// or pausing, or the session is closing (which its end may just have freed).
    fn recv_ended(&mut self, on: On) {
        let rearm = match on {
            On::Listener => {
                self.pause.listener_armed = false;
                Deferred::ArmListener
            }
            On::Session(key) => match self.sessions.recv_ended(key) {
                RecvEnd::Rearm => Deferred::ArmSession(key),
                RecvEnd::Closing | RecvEnd::Gone => return,
            },
        };
        // Pausing for a takeover: the receive stays ended until the decision.
        if self.life.serving() {
            self.counters.bump(Counter::RecvRearms);
            self.deferred.push(rearm);
        }
    }

    /// Counts a receive completion's error, and leases its buffer if it carries one.
    fn lease(&mut self, res: i32, bid: Option<u16>, on: On) -> Option<u16> {
        if res < 0 {
            // Some kernels commit a buffer before the receive fails: give it straight back.
            if let Some(bid) = bid
                && self.driver.lease(bid)
            {
                self.recycle(bid);
            }
            match -res {
                libc::ENOBUFS => self.counters.bump(Counter::RecvNoBuffers),
                libc::ECONNREFUSED => self.backend_unreachable(match on {
                    On::Session(key) => Some(key),
                    On::Listener => None,
                }),
                libc::ECANCELED => {}
                errno => {
                    self.counters.bump(Counter::RecvOther);
                    if let Some(suppressed) = self.warnings.recv.check() {
                        warn!(error = %io::Error::from_raw_os_error(errno), suppressed, "receive failed");
                    }
                }
            }
            return None;
        }
        match bid {
            Some(bid) if self.driver.lease(bid) => Some(bid),
            _ => {
                self.counters.bump(Counter::Anomalies);
                None
            }
        }
    }

    /// Gives leased buffer `bid` back to the kernel (published at the end of the batch).
    pub(super) fn recycle(&mut self, bid: u16) {
        if !self.driver.recycle(bid) {
            self.counters.bump(Counter::Anomalies);
        }
    }

    /// Drops the datagram in leased buffer `bid`, counting `reason`.
    pub(super) fn drop_buffer(&mut self, bid: u16, reason: Counter) {
        self.counters.bump(reason);
        self.recycle(bid);
    }
}
