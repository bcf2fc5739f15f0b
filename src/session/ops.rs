//! The ring operations that name each session: sends in flight and the armed receive. The
//! count decides when a closing session may be freed (when it reaches zero, here, at once), so
//! it changes only through these methods.

use std::os::fd::{AsRawFd, RawFd};

use super::{Key, Phase, Sessions};

/// How a session's multishot receive ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecvEnd {
    /// The session is open: arm the receive again.
    Rearm,
    /// The session is closing (and was freed if that was its last operation).
    Closing,
    /// No such session (a stale key).
    Gone,
}

impl<U: AsRawFd> Sessions<U> {
    /// An operation naming the session was pushed to the ring.
    pub fn op_started(&mut self, key: Key) {
        if let Some(s) = self.get(key) {
            s.in_flight += 1;
        }
    }

    /// An operation naming the session completed. A closing session whose last operation this
    /// was is freed; returns whether that happened.
    pub fn op_finished(&mut self, key: Key) -> bool {
        let Some(s) = self.get(key) else {
            return false;
        };
        s.in_flight = s.in_flight.saturating_sub(1);
        self.free_if_done(key)
    }

    /// Marks an open session's receive armed (an operation in flight) and returns the socket
    /// to arm it on; `None` if the session is not open or its receive is already armed.
    pub fn arm_recv(&mut self, key: Key) -> Option<RawFd> {
        let s = self.in_phase(key, Phase::Open)?;
        if s.recv_armed {
            return None;
        }
        let fd = s.upstream.as_ref()?.as_raw_fd();
        s.recv_armed = true;
        s.in_flight += 1;
        Some(fd)
    }

    /// The ring refused the receive [`Sessions::arm_recv`] prepared.
    pub fn recv_not_armed(&mut self, key: Key) {
        if let Some(s) = self.get(key)
            && s.recv_armed
        {
            s.recv_armed = false;
            s.in_flight -= 1;
        }
    }

    /// The session's multishot receive ended (its final completion).
    pub fn recv_ended(&mut self, key: Key) -> RecvEnd {
        let Some(s) = self.get(key) else {
            return RecvEnd::Gone;
        };
        if s.recv_armed {
            s.recv_armed = false;
            s.in_flight -= 1;
        }
        match s.phase {
            Phase::Open => RecvEnd::Rearm,
            Phase::Resolving | Phase::Closing => {
                self.free_if_done(key);
                RecvEnd::Closing
            }
        }
    }
}
