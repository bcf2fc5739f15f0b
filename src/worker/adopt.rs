//! A worker's side of a takeover in the new process: adopting what the old one handed over.
//!
//! The sessions arrive whole and are adopted, and the worker says so, but it arms nothing and
//! sends nothing until the old process has let go (`BYE`): until then the old one may still
//! resume, and the two must never both serve. Once told, it arms every receive, and a session
//! still waiting for its route asks this process's router again, its held datagrams carried as
//! bytes until it opens. If the takeover fails instead, the worker stops without a word, having
//! touched nothing. The old process's side is `pause`.

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::sync::mpsc::{Receiver, SyncSender};

use socket2::Socket;
use tracing::{debug, warn};

use super::Worker;
use crate::session::{Event, Key};
use crate::stats::Counter;
use crate::takeover::state::SessionLine;
use crate::takeover::{Adopted, Armed};

/// The tick a worker's reaper starts counting from: a session adopted from another process may
/// have been idle, or alive, for up to this many ticks.
pub(super) const TICK_ORIGIN: u32 = 1 << 24;

/// What a worker adopted and has not yet finished taking in.
#[derive(Default)]
pub(super) struct State {
    /// Datagrams adopted sessions held in the other process, waiting for their route here.
    carried: HashMap<Key, Vec<Box<[u8]>>>,
    /// Whom to tell what was adopted, and where the word to start serving comes from.
    adopted: Option<(SyncSender<Adopted>, Adopted)>,
    commit: Option<Receiver<Armed>>,
    /// Whom to tell once every receive is armed.
    armed: Option<Armed>,
    /// Adopted sessions still waiting for their route, asked for once serving.
    unrouted: Vec<Key>,
    /// Adopted confirmed sessions, offered to the XDP fast path once serving (their entries
    /// are usually in the map already, the old process's: inserting again is harmless).
    confirmed: Vec<Event>,
}

impl Worker {
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
        for (line, fd) in sessions {
            match (line, fd) {
                (SessionLine::Open(s), Some(fd)) => {
                    let lease = self.router.adopt(s.backend);
                    let slot = self.counters.backends.slot(s.backend);
                    let (tick, tick_len) = (self.tick, self.tick_len);
                    let socket = Socket::from(fd);
                    let confirmed = s
                        .confirmed
                        .then_some((s.client, s.local, s.upstream, s.backend));
                    let adopted_key = self.sessions.adopt(s, socket, tick, tick_len, lease, slot);
                    if let (Some(key), Some((client, local, upstream, backend))) =
                        (adopted_key, confirmed)
                    {
                        self.adoption.confirmed.push(Event::Confirmed {
                            key,
                            client,
                            local,
                            upstream,
                            backend,
                        });
                    }
                    if adopted_key.is_some() {
                        self.counters.backends.opened(slot);
                        adopted.sessions += 1;
                    } else {
                        self.release(lease);
                        adopted.refused += 1;
                    }
                }
                (SessionLine::Pending(p), None) => {
                    let adopted_key =
                        self.sessions
                            .adopt_pending(p.reply_to, p.age, self.tick, self.tick_len);
                    let Some(key) = adopted_key else {
                        // What it held goes as a session closed before it resolved does.
                        self.counters.add(Counter::DropNoRoute, p.held.len() as u64);
                        adopted.refused += 1;
                        continue;
                    };
                    let prefix = self.prefix_for(p.reply_to, p.local);
                    self.sessions
                        .arrived_at(key, p.local, prefix, self.proxy_protocol_every);
                    let held = p.held.into_iter().map(Vec::into_boxed_slice).collect();
                    self.adoption.carried.insert(key, held);
                    self.adoption.unrouted.push(key);
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
        self.adoption.adopted = Some((report, adopted));
        self.adoption.commit = Some(commit);
    }

    /// After adopting: says what was adopted and waits for the old process to let go. `false`
    /// when the takeover failed: the worker must stop without arming or sending anything.
    pub(super) fn await_commit(&mut self) -> bool {
        let Some(commit) = self.adoption.commit.take() else {
            return true;
        };
        if let Some((report, adopted)) = self.adoption.adopted.take() {
            let _ = report.send(adopted);
        }
        match commit.recv() {
            Ok(armed) => {
                self.adoption.armed = Some(armed);
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
        for key in std::mem::take(&mut self.adoption.unrouted) {
            self.route(|router, io| router.request(key.ticket(), io));
        }
        for event in std::mem::take(&mut self.adoption.confirmed) {
            if let Event::Confirmed {
                key,
                client,
                local,
                upstream,
                backend,
            } = event
            {
                self.offload(key, client, local, upstream, backend);
            }
        }
        if let Some(armed) = self.adoption.armed.take() {
            let _ = armed.send(());
        }
    }

    /// Sends what an adopted session held in the other process, now that it is open: directly
    /// on its new socket, in order, once.
    pub(super) fn send_carried(&mut self, key: Key) {
        let Some(held) = self.adoption.carried.remove(&key) else {
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
        if let Some(held) = self.adoption.carried.remove(&key) {
            for _ in held {
                self.counters.bump(reason);
            }
        }
    }
}
