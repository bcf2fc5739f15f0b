//! A worker's side of a takeover (`crate::takeover`).
//!
//! In the old process: a [`Pause`] pauses the worker at a batch boundary. Its receives are
//! cancelled and not re-armed; what they had already received is forwarded as usual, and once
//! no receive is armed and no send is in flight the worker is quiet: every datagram is either
//! delivered or still in a socket's receive queue. It then exports every session (its socket
//! stays open here) and waits, doing nothing, for the decision: resume (re-arm everything), or
//! commit (stop without closing a session: no session-closed line, note or count, since the
//! sessions live on in the next process).
//!
//! The new process's side is `adopt`.

use std::os::fd::AsRawFd;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use tracing::{debug, warn};

use super::Worker;
use crate::session::{Held, Leaving};
use crate::takeover::state::SessionLine;
use crate::takeover::{Decision, Export, Pause};
use crate::user_data::Op;

/// How long a worker may take to quiet down once asked to pause.
const SETTLE_TIMEOUT: Duration = Duration::from_millis(900);
/// How long a paused worker waits for the decision before resuming on its own (the control
/// thread decides well within its handover timeout; this only guards against it vanishing).
const DECISION_TIMEOUT: Duration = Duration::from_secs(660);

/// A worker's takeover state (its pause is its lifecycle's: `Life::Pausing`).
pub(super) struct State {
    control: Option<Receiver<Pause>>,
    /// The listener's multishot receive is armed.
    pub(super) listener_armed: bool,
    /// Replies (sends from the listener) in flight.
    pub(super) sends_down: u32,
}

impl State {
    pub(super) fn new(control: Option<Receiver<Pause>>) -> State {
        State {
            control,
            listener_armed: false,
            sends_down: 0,
        }
    }
}

impl Worker {
    /// The wake-up fired without a stop: a takeover may be asking this worker to pause. Only
    /// the newest request counts: an older one is from a takeover that has already given up
    /// (this worker was too slow for it), and is answered as such.
    pub(super) fn check_control(&mut self) {
        let Some(control) = &self.pause.control else {
            return;
        };
        let mut newest = None;
        while let Ok(pause) = control.try_recv() {
            if let Some(stale) = newest.replace(pause) {
                let _ = stale
                    .export
                    .send(Err("superseded by a newer takeover".into()));
            }
        }
        let Some(pause) = newest else {
            return;
        };
        if let Err(pause) = self.life.pause(pause, Instant::now()) {
            // One takeover at a time: the control thread never asks twice.
            let _ = pause.export.send(Err("already paused".into()));
            return;
        }
        debug!(worker = self.index, "pausing for a takeover");
        self.deferred.retain(|d| {
            !matches!(
                d,
                super::Deferred::ArmListener | super::Deferred::ArmSession(_)
            )
        });
        self.cancel_receives();
    }

    /// At the end of a paused worker's batch: once quiet, export, wait for the decision and
    /// carry it out. Gives up (resumes) if it does not quiet down in time.
    pub(super) fn settle(&mut self) {
        let Some((since, pause)) = self.life.take_pause() else {
            return;
        };
        let quiet =
            !self.pause.listener_armed && self.pause.sends_down == 0 && self.sessions.quiet();
        if !quiet {
            if since.elapsed() > SETTLE_TIMEOUT {
                let _ = pause
                    .export
                    .send(Err("its operations did not complete in time".into()));
                self.resume();
            } else {
                self.life.keep_pausing(since, pause);
            }
            return;
        }
        let export = self.export();
        let sessions = export.sessions.len();
        if pause.export.send(Ok(export)).is_err() {
            return self.resume();
        }
        match pause.decision.recv_timeout(DECISION_TIMEOUT) {
            Ok(Decision::Commit) => self.commit(sessions),
            Ok(Decision::Resume) | Err(RecvTimeoutError::Disconnected) => self.resume(),
            Err(RecvTimeoutError::Timeout) => {
                warn!(worker = self.index, "no takeover decision came; resuming");
                self.resume();
            }
        }
        self.now = Instant::now();
    }

    /// Every session as a line, each open one's socket beside it.
    fn export(&self) -> Export {
        let mut export = Export {
            listener: self.listener.as_raw_fd(),
            sessions: Vec::with_capacity(self.sessions.live()),
            fds: Vec::new(),
        };
        let payload = |h: Held| Some(self.driver.payload(h.bid, h.len as usize)?.to_vec());
        let (leaving, left) = self.sessions.export(self.tick, self.tick_len, payload);
        for session in leaving {
            export.sessions.push(match session {
                Leaving::Open(s, socket) => {
                    export.fds.push(socket.as_raw_fd());
                    SessionLine::Open(s)
                }
                Leaving::Pending(p) => SessionLine::Pending(p),
            });
        }
        // What cannot be described is left behind, and said so.
        if left.sessions + left.datagrams > 0 {
            warn!(
                worker = self.index,
                sessions = left.sessions,
                datagrams = left.datagrams,
                "cannot describe these for the next process (a session without its addresses, \
                 a buffer not leased); they stay behind and end with this process"
            );
        }
        export
    }

    /// Serves on after a takeover that did not happen.
    fn resume(&mut self) {
        debug!(worker = self.index, "resuming");
        self.arm_receives();
    }

    /// Arms the listener's receive and every open session's (at start, sessions adopted).
    pub(super) fn arm_receives(&mut self) {
        self.arm_listener();
        let mut all = std::mem::take(&mut self.scratch);
        self.sessions.collect_all(&mut all);
        for key in all.drain(..) {
            self.arm_session(key);
        }
        self.scratch = all;
    }

    /// Stops for good, leaving every socket to the next process: the router's own operations
    /// are cancelled, the sessions are not closed (dropping the table closes this process's
    /// descriptors only).
    fn commit(&mut self, sessions: usize) {
        debug!(worker = self.index, sessions, "handed over");
        self.cancel(Op::Wake.encode());
        self.taken_over();
    }

    /// Stops without closing a session, because another process serves them: receives and
    /// the router's operations are cancelled, nothing is said to anyone (no session-closed
    /// line, note or count), and dropping the table closes only this process's descriptors.
    pub(super) fn taken_over(&mut self) {
        self.life.stop(Instant::now());
        self.cancel(Op::Tick.encode());
        self.cancel_receives();
        self.route(|router, io| router.shutdown(io));
        self.deferred
            .retain(|d| matches!(d, super::Deferred::Cancel(_)));
    }

    /// Cancels the listener's receive and every session's armed receive.
    fn cancel_receives(&mut self) {
        if self.pause.listener_armed {
            self.cancel(Op::ListenRecv.encode());
        }
        let mut armed = std::mem::take(&mut self.scratch);
        self.sessions.collect_armed(&mut armed);
        for key in armed.drain(..) {
            self.cancel(Op::SessionRecv(key).encode());
        }
        self.scratch = armed;
    }
}
