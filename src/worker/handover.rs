//! A worker's side of a takeover (`crate::handover`).
//!
//! In the old process: a [`Freeze`] pauses the worker at a batch boundary. Its receives are
//! cancelled and not re-armed; what they had already received is forwarded as usual, and once
//! no receive is armed and no send is in flight the worker is quiet: every datagram is either
//! delivered or still in a socket's receive queue. It then exports every session (its socket
//! stays open here) and waits, doing nothing, for the decision: resume (re-arm everything), or
//! commit (stop without closing a session: no session-closed line, note or count, since the
//! sessions live on in the next process).
//!
//! In the new process: the sessions arrive whole and are adopted, and the worker says so, but
//! it arms nothing and sends nothing until the old process has let go (`BYE`): until then the
//! old one may still resume, and the two must never both serve. Once told, it arms every
//! receive, and a session still waiting for its route asks this process's router again, its
//! held datagrams carried as bytes until it opens. If the takeover fails instead, the worker
//! stops without a word, having touched nothing.

use std::collections::HashMap;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender};
use std::time::{Duration, Instant};

use socket2::Socket;
use tracing::{debug, warn};

use super::Worker;
use crate::handover::state::{OpenSession, PendingSession, SessionLine};
use crate::handover::{Adopted, Armed, Decision, Export, Freeze};
use crate::session::{Arriving, Key};
use crate::stats::Counter;
use crate::sys::msghdr::PAYLOAD_OFFSET;
use crate::user_data::Op;

/// How long a worker may take to quiet down once asked to pause.
const SETTLE_TIMEOUT: Duration = Duration::from_millis(900);
/// How long a paused worker waits for the decision before resuming on its own (the control
/// thread decides well within its handover timeout; this only guards against it vanishing).
const DECISION_TIMEOUT: Duration = Duration::from_secs(660);

/// A worker's takeover state.
pub(super) struct State {
    control: Option<Receiver<Freeze>>,
    frozen: Option<(Instant, Freeze)>,
    /// The listener's multishot receive is armed.
    pub(super) listener_armed: bool,
    /// Replies (sends from the listener) in flight.
    pub(super) sends_down: u32,
    /// Datagrams adopted sessions held in the other process, waiting for their route here.
    carried: HashMap<Key, Vec<Box<[u8]>>>,
    /// Whom to tell what was adopted, and where the word to start serving comes from.
    adopted: Option<(SyncSender<Adopted>, Adopted)>,
    commit: Option<Receiver<Armed>>,
    /// Whom to tell once every receive is armed.
    armed: Option<Armed>,
    /// Adopted sessions still waiting for their route, asked for once serving.
    unrouted: Vec<Key>,
}

impl State {
    pub(super) fn new(control: Option<Receiver<Freeze>>) -> State {
        State {
            control,
            frozen: None,
            listener_armed: false,
            sends_down: 0,
            carried: HashMap::new(),
            adopted: None,
            commit: None,
            armed: None,
            unrouted: Vec::new(),
        }
    }

    /// Receives must not be armed: the worker is pausing for a takeover.
    pub(super) fn frozen(&self) -> bool {
        self.frozen.is_some()
    }
}

impl Worker {
    /// The wake-up fired without a stop: a takeover may be asking this worker to pause. Only
    /// the newest request counts: an older one is from a takeover that has already given up
    /// (this worker was too slow for it), and is answered as such.
    pub(super) fn check_control(&mut self) {
        let Some(control) = &self.handover.control else {
            return;
        };
        let mut newest = None;
        while let Ok(freeze) = control.try_recv() {
            if let Some(stale) = newest.replace(freeze) {
                let _ = stale
                    .export
                    .send(Err("superseded by a newer takeover".into()));
            }
        }
        let Some(freeze) = newest else {
            return;
        };
        if self.handover.frozen.is_some() {
            // One takeover at a time: the control thread never asks twice.
            let _ = freeze.export.send(Err("already paused".into()));
            return;
        }
        debug!(worker = self.index, "pausing for a takeover");
        self.handover.frozen = Some((Instant::now(), freeze));
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
        let Some((since, freeze)) = self.handover.frozen.take() else {
            return;
        };
        let quiet =
            !self.handover.listener_armed && self.handover.sends_down == 0 && self.sessions.quiet();
        if !quiet {
            if since.elapsed() > SETTLE_TIMEOUT {
                let _ = freeze
                    .export
                    .send(Err("its operations did not complete in time".into()));
                self.resume();
            } else {
                self.handover.frozen = Some((since, freeze));
            }
            return;
        }
        let export = self.export();
        let sessions = export.sessions.len();
        if freeze.export.send(Ok(export)).is_err() {
            return self.resume();
        }
        match freeze.decision.recv_timeout(DECISION_TIMEOUT) {
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
        let ms = |ticks: u32| self.tick_len * ticks;
        let mut export = Export {
            listener: self.listener.as_raw_fd(),
            sessions: Vec::with_capacity(self.sessions.live()),
            fds: Vec::new(),
        };
        // What cannot be described is left behind, and said so.
        let (mut sessions_left, mut datagrams_left) = (0, 0);
        for s in self.sessions.leaving() {
            let idle = ms(self.tick.saturating_sub(s.last_tick));
            let age = ms(self.tick.saturating_sub(s.created_tick));
            let line = match s.upstream {
                Some((socket, upstream)) => {
                    let Some(backend) = socket.peer_addr().ok().and_then(|a| a.as_socket()) else {
                        sessions_left += 1;
                        continue;
                    };
                    export.fds.push(socket.as_raw_fd());
                    SessionLine::Open(OpenSession {
                        client: s.client,
                        reply_to: s.reply_to,
                        backend,
                        upstream,
                        idle,
                        age,
                        answered: s.answered,
                        confirmed: s.confirmed,
                        local: s.local,
                        prefix: s.prefix.map(<[u8]>::to_vec),
                        prefix_every: s.prefix_every,
                        prefix_sent: s.prefix_sent,
                    })
                }
                None => SessionLine::Pending(PendingSession {
                    client: s.client,
                    reply_to: s.reply_to,
                    age,
                    local: s.local,
                    held: s
                        .held
                        .iter()
                        .filter_map(|h| {
                            let end = PAYLOAD_OFFSET + h.len as usize;
                            let buffer = self.driver.bufs().get(h.bid, end);
                            datagrams_left += usize::from(buffer.is_none());
                            Some(buffer?[PAYLOAD_OFFSET..].to_vec())
                        })
                        .collect(),
                }),
            };
            export.sessions.push(line);
        }
        if sessions_left + datagrams_left > 0 {
            warn!(
                worker = self.index,
                sessions = sessions_left,
                datagrams = datagrams_left,
                "cannot describe these for the next process (a socket with no peer, a buffer \
                 not leased); they stay behind and end with this process"
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
        self.let_go();
    }

    /// Stops without closing a session, because another process serves them: receives and
    /// the router's operations are cancelled, nothing is said to anyone (no session-closed
    /// line, note or count), and dropping the table closes only this process's descriptors.
    pub(super) fn let_go(&mut self) {
        self.stopping = Some(Instant::now());
        self.cancel(Op::Tick.encode());
        self.cancel_receives();
        self.route(|router, io| router.shutdown(io));
        self.deferred
            .retain(|d| matches!(d, super::Deferred::Cancel(_)));
    }

    /// Cancels the listener's receive and every session's armed receive.
    fn cancel_receives(&mut self) {
        if self.handover.listener_armed {
            self.cancel(Op::ListenRecv.encode());
        }
        let mut armed = std::mem::take(&mut self.scratch);
        self.sessions.collect_armed(&mut armed);
        for key in armed.drain(..) {
            self.cancel(Op::SessionRecv(key).encode());
        }
        self.scratch = armed;
    }

    /// Takes in the sessions another process handed over (before the first batch), touching
    /// nothing outside this process until [`Worker::await_commit`] says to.
    pub(super) fn adopt(
        &mut self,
        sessions: Vec<(SessionLine, Option<OwnedFd>)>,
        report: SyncSender<Adopted>,
        commit: Receiver<Armed>,
    ) {
        let mut adopted = Adopted {
            worker: self.index,
            ..Adopted::default()
        };
        let tick_len = self.tick_len.as_nanos().max(1);
        let ticks = move |d: Duration| u32::try_from(d.as_nanos() / tick_len).unwrap_or(u32::MAX);
        for (line, fd) in sessions {
            match (line, fd) {
                (SessionLine::Open(s), Some(fd)) => {
                    let lease = self.router.adopt(s.backend);
                    let slot = self.counters.backends.slot(s.backend);
                    let arriving = Arriving {
                        client: s.client,
                        reply_to: s.reply_to,
                        upstream_local: s.upstream,
                        lease,
                        backend_slot: slot,
                        last_tick: self.tick.saturating_sub(ticks(s.idle)),
                        created_tick: self.tick.saturating_sub(ticks(s.age)),
                        answered: s.answered,
                        confirmed: s.confirmed,
                        local: s.local,
                        prefix: s.prefix.map(Vec::into_boxed_slice),
                        prefix_every: s.prefix_every,
                        prefix_sent: s.prefix_sent,
                    };
                    if self.sessions.adopt(arriving, Socket::from(fd)).is_some() {
                        self.counters.backends.opened(slot);
                        adopted.sessions += 1;
                    } else {
                        self.release(lease);
                        adopted.refused += 1;
                    }
                }
                (SessionLine::Pending(p), None) => {
                    let tick = self.tick.saturating_sub(ticks(p.age));
                    let Some(key) = self.sessions.adopt_pending(p.reply_to, tick) else {
                        // What it held goes as a session closed before it resolved does.
                        self.counters.add(Counter::DropNoRoute, p.held.len() as u64);
                        adopted.refused += 1;
                        continue;
                    };
                    let prefix = self.prefix_for(p.reply_to, p.local);
                    self.sessions
                        .arrived_at(key, p.local, prefix, self.proxy_protocol_every);
                    let held = p.held.into_iter().map(Vec::into_boxed_slice).collect();
                    self.handover.carried.insert(key, held);
                    self.handover.unrouted.push(key);
                    adopted.pending += 1;
                }
                (line, _) => {
                    if let SessionLine::Pending(p) = line {
                        self.counters.add(Counter::DropNoRoute, p.held.len() as u64);
                    }
                    adopted.refused += 1;
                }
            }
        }
        if adopted.refused > 0 {
            warn!(
                worker = self.index,
                refused = adopted.refused,
                "some sessions handed over could not be taken in (a client twice)"
            );
        }
        self.handover.adopted = Some((report, adopted));
        self.handover.commit = Some(commit);
    }

    /// After adopting: says what was adopted and waits for the old process to let go. `false`
    /// when the takeover failed: the worker must stop without arming or sending anything.
    pub(super) fn await_commit(&mut self) -> bool {
        let Some(commit) = self.handover.commit.take() else {
            return true;
        };
        if let Some((report, adopted)) = self.handover.adopted.take() {
            let _ = report.send(adopted);
        }
        match commit.recv() {
            Ok(armed) => {
                self.handover.armed = Some(armed);
                true
            }
            Err(_) => {
                debug!(worker = self.index, "the takeover did not happen; stopping");
                false
            }
        }
    }

    /// Once serving: routes the adopted sessions that were waiting, and says every receive is
    /// armed.
    pub(super) fn start_adopted(&mut self) {
        for key in std::mem::take(&mut self.handover.unrouted) {
            self.route(|router, io| router.request(key.ticket(), io));
        }
        if let Some(armed) = self.handover.armed.take() {
            let _ = armed.send(());
        }
    }

    /// Sends what an adopted session held in the other process, now that it is open: directly
    /// on its new socket, in order, once.
    pub(super) fn send_carried(&mut self, key: Key) {
        let Some(held) = self.handover.carried.remove(&key) else {
            return;
        };
        for payload in held {
            match self.sessions.send_now(key, &payload) {
                Ok(n) => {
                    self.counters.bump(Counter::PacketsUpstream);
                    self.counters.add(Counter::BytesUpstream, n as u64);
                }
                Err(_) => self.counters.bump(Counter::DropSendError),
            }
        }
    }

    /// Drops what an adopted session carried, if it closes before it opened.
    pub(super) fn drop_carried(&mut self, key: Key, reason: Counter) {
        if let Some(held) = self.handover.carried.remove(&key) {
            for _ in held {
                self.counters.bump(reason);
            }
        }
    }
}
