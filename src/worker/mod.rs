//! One worker: a pinned thread that owns a listening socket, a ring, a session table and a
//! router.
//!
//! The loop is phased: hand queued operations to the kernel and wait; copy every completion
//! into a batch; run one handler per completion (handlers push new operations, never wait);
//! then, once per batch, let the router start what is due, re-arm receives that ended, publish
//! recycled buffers to the kernel and publish counters. The worker speaks to the kernel only
//! through `sys::driver` (completions, received datagrams, sends), never to a ring directly.
//!
//! What blocks: the wait in the driver, and the takeover's waits: a worker paused for a
//! takeover, once quiet, blocks on the takeover's decision (bounded; see [`lifecycle`] and
//! [`pause`]); a worker of the new process blocks, before it serves, until the sockets it is
//! handed arrive and until the old process lets go (both end when the takeover thread gives
//! up or finishes; see [`adopt`]). What
//! is shared: the worker writes only its own published counters; it reads the process's flags
//! (stop, taken over, draining), which the owner writes after start, once per wake-up or new
//! session.
//!
//! The packet's path, top to bottom, one module per stretch:
//! - [`recv`]: every receive completion, listener's and sessions', goes through one function
//!   that counts its result, leases its buffer, checks truncation and re-arms it.
//! - [`upstream`]: client → backend. The session table classifies the client; a new one asks
//!   the router and waits, held; an open one's datagram is sent from its receive buffer itself on
//!   the session's connected socket.
//! - [`downstream`]: backend → client, from the listening socket to the client's address.
//! - [`closing`]: sessions leaving (idle, unreplied, evicted, disconnected, abandoned,
//!   shutdown), the reaper tick and stopping.
//! - [`lifecycle`]: serving, pausing for a takeover, stopping: the one state the packet path
//!   asks whether to forward and whether to arm receives.
//! - [`pause`] and [`adopt`]: a takeover, the old process's side (pausing, exporting) and the new one's.
//! - [`events`]: once per batch, what the session table announced (opened, confirmed, closed)
//!   goes to the session log lines, the router's session map and the XDP fast path.
//! - [`offload`]: the sessions the XDP program forwards in the kernel (`--xdp`).
//! - [`batch`]: once per batch, the router's turn, re-arms within the buffer budget, publishing.
//!
//! Per-datagram failures are counted, never propagated. A session's slot is freed only after
//! every operation naming it has completed (the table sees to that).

mod adopt;
mod batch;
mod build;
pub use build::{Listen, driver_config};
mod closing;
mod downstream;
mod events;
mod lifecycle;
mod offload;
mod pause;
mod recv;
mod upstream;
mod warnings;

use std::fs::File;
use std::io;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use socket2::Socket;
use tracing::{error, warn};

use crate::admission::Admission;
use crate::route::{Io, Outcome, Router};
use crate::session::{Event, Key, Sessions};
use crate::stats::{Counter, Counters, Shared};
use crate::sys::driver::{Completion, Driver};
use crate::sys::lent::Lent;
use crate::sys::socket;
use crate::sys::uring::TaskRun;
use crate::user_data::Op;
use lifecycle::{Life, Wait};
use warnings::Warnings;

/// With receives waiting for buffers, the longest the worker waits before trying again: a
/// receive re-armed on a socket with nothing queued takes no buffer and completes nothing, so
/// the buffers it was counted against are free for the next ones at once.
const REARM_RETRY: Duration = Duration::from_millis(1);

/// What a worker hands back to the thread that started it once it is built.
pub struct Started {
    pub local: SocketAddr,
    pub waker: File,
    /// The task-running mode its io_uring was built with.
    pub task_run: Option<TaskRun>,
}

/// Work deferred to the end of a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Deferred {
    ArmListener,
    ArmTick,
    ArmWake,
    ArmSession(Key),
    /// Cancel the operation issued with this `user_data`.
    Cancel(u64),
}

pub struct Worker {
    driver: Driver,
    listener: Socket,
    wake: OwnedFd,
    sessions: Sessions,
    router: Box<dyn Router>,
    admission: Admission,
    /// Read once per batch, for the router's deadlines and the new-session budgets. The packet
    /// path reads no clock.
    now: Instant,
    started: Instant,
    outcomes: Vec<Outcome>,
    counters: Counters,
    shared: Arc<Shared>,
    index: usize,
    deferred: Vec<Deferred>,
    scratch: Vec<Key>,
    /// The session table's announcements, taken once per batch (`events`).
    events: Vec<Event>,
    /// The reaper's tick count: the only clock the packet path reads. It starts at
    /// [`adopt::TICK_ORIGIN`], so that sessions adopted from another process keep their past.
    tick: u32,
    /// Rewriting the session map (a new Redis master): sessions noted before this tick are
    /// still to be noted again.
    republish: Option<u32>,
    tick_len: Duration,
    idle_ticks: u32,
    unreplied_ticks: u32,
    max_payload: usize,
    /// The listening address (a concrete port), for PROXY headers and the reply's family.
    local: SocketAddr,
    /// `--proxy-protocol v2`, and `--proxy-protocol-every`.
    proxy_protocol: bool,
    proxy_protocol_every: bool,
    socket_size: socket::BufferSize,
    /// Serving, pausing for a takeover, or stopping (`lifecycle`).
    life: Life,
    warnings: Warnings,
    /// A takeover's state in this worker: giving away (`pause`), taking in (`adopt`).
    pause: pause::State,
    adoption: adopt::State,
    /// The XDP fast path's handle and the sessions it forwards (`--xdp`, when attached).
    offload: Option<offload::Offload>,
}

impl Worker {
    /// Runs until shutdown is requested and every operation has drained. A worker that fails
    /// says so at once and stops counting as ready.
    pub fn run(mut self) -> io::Result<()> {
        if !self.await_commit() {
            return Ok(());
        }
        let mut armed = false;
        let result = self.serve(&mut armed);
        if armed {
            self.shared.armed.fetch_sub(1, Ordering::Release);
        }
        if let Err(e) = &result {
            error!(worker = self.index, error = %e, "worker stopped");
        }
        result
    }

    fn serve(&mut self, armed: &mut bool) -> io::Result<()> {
        self.arm_receives();
        self.arm_tick();
        self.arm_wake();
        // The router starts at once (Redis connects now, not at the first completion).
        self.now = Instant::now();
        self.end_batch();
        self.driver.submit()?;
        self.shared.armed.fetch_add(1, Ordering::Release);
        *armed = true;
        self.start_adopted();

        let mut batch = Vec::with_capacity(1024);
        loop {
            // Receives waiting for buffers are retried at the end of every batch; with some
            // waiting, a batch must come soon even if nothing else completes.
            let rearms_waiting = self
                .deferred
                .iter()
                .any(|d| matches!(d, Deferred::ArmListener | Deferred::ArmSession(_)));
            let waited = match self.life.wait(rearms_waiting, REARM_RETRY) {
                Wait::Block => self.driver.submit_and_wait(),
                Wait::AtMost(timeout) => self.driver.submit_and_wait_for(timeout),
            };
            match waited {
                Ok(_) => {}
                // The completion queue overflowed into the kernel's backlog, or the kernel is
                // short of memory for a moment: drain what is there first, then try again.
                Err(e) if matches!(e.raw_os_error(), Some(libc::EBUSY | libc::EAGAIN)) => {}
                Err(e) => return Err(e),
            }
            self.driver.reap(&mut batch);
            self.now = Instant::now();
            for done in batch.drain(..) {
                self.dispatch(&done);
            }
            self.end_batch();
            self.settle();
            match self.life.done(self.driver.in_flight()) {
                None => {}
                Some(true) => break,
                Some(false) => {
                    warn!(
                        worker = self.index,
                        in_flight = self.driver.in_flight(),
                        "operations still in flight after the drain timeout; leaking their memory"
                    );
                    break;
                }
            }
        }
        Ok(())
    }

    /// One `match` routes every completion to its handler.
    fn dispatch(&mut self, done: &Completion) {
        let res = done.result();
        if let Some(lent) = Lent::decode(done.token()) {
            return self.route(|router, io| router.complete(lent, res, io));
        }
        match Op::decode(done.token()) {
            Some(Op::ListenRecv) => self.on_recv(recv::On::Listener, done),
            Some(Op::SessionRecv(key)) => self.on_recv(recv::On::Session(key), done),
            Some(Op::SendUp { key, bid }) => self.on_send_up(key, bid, res),
            Some(Op::SendDown { bid }) => self.on_send_down(bid, res),
            Some(Op::Tick) => self.on_tick(),
            Some(Op::Wake) => self.on_wake(),
            // A cancel's own result says nothing the target's final completion does not.
            Some(Op::Cancel) => {}
            None => self.counters.bump(Counter::Anomalies),
        }
    }

    /// Lets the router act with the worker's ring, counters and clock, then carries out what
    /// it decided.
    fn route(&mut self, act: impl FnOnce(&mut dyn Router, &mut Io<'_>)) {
        let mut out = std::mem::take(&mut self.outcomes);
        let mut io = Io {
            streams: self.driver.streams(),
            counters: &mut self.counters,
            now: self.now,
            out: &mut out,
        };
        act(self.router.as_mut(), &mut io);
        for outcome in out.drain(..) {
            match outcome {
                Outcome::Route { tickets, result } => {
                    for ticket in tickets {
                        self.on_route(Key::from_ticket(ticket), result);
                    }
                }
                Outcome::Disconnect(target) => self.on_disconnect(target),
            }
        }
        self.outcomes = out;
    }

    fn count_flush(&mut self, flushed: bool) {
        if flushed {
            self.counters.bump(Counter::SubmitQueueFull);
        }
    }
}
