//! One worker: a pinned thread that owns a listening socket, a ring, a session table and a
//! router.
//!
//! The loop is phased: hand queued operations to the kernel and wait; copy every completion
//! into a batch; run one handler per completion (handlers push new operations, never wait);
//! then, once per batch, let the router start what is due, re-arm receives that ended, publish
//! recycled buffers to the kernel and publish counters. The worker speaks to the kernel only
//! through `sys::driver` (completions, received datagrams, sends), never to a ring directly.
//!
//! What blocks: the wait in the driver, and one other: a worker paused for a takeover, once
//! quiet, blocks on the takeover's decision (bounded; see [`lifecycle`] and [`handover`]). What
//! is shared: the worker writes only its own published counters; it reads the process's flags
//! (stop, let go, draining), which the owner writes after start, once per wake-up or new
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
//! - [`handover`] and [`adopt`]: a takeover, the old process's side and the new one's.
//! - [`events`]: once per batch, what the session table announced (opened, confirmed, closed)
//!   goes to the session log lines and the router's session map.
//! - [`batch`]: once per batch, the router's turn, re-arms within the buffer budget, publishing.
//!
//! Per-datagram failures are counted, never propagated. A session's slot is freed only after
//! every operation naming it has completed (the table sees to that).

mod adopt;
mod batch;
mod closing;
mod downstream;
mod events;
mod handover;
mod lifecycle;
mod recv;
mod upstream;
mod warnings;

use std::fs::File;
use std::io;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use socket2::Socket;
use tracing::{error, info, warn};

use crate::admission::Admission;
use crate::config::Config;
use crate::handover::{Freeze, Import};
use crate::route::resolve::Resolver;
use crate::route::{self, Io, Outcome, Router};
use crate::session::{Event, Key, Limits, Sessions};
use crate::stats::{Counter, Counters, Shared};
use crate::sys::driver::{Completion, Driver, DriverConfig};
use crate::sys::lent::Lent;
use crate::sys::uring::TaskRun;
use crate::sys::{eventfd, socket};
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
    /// A takeover's state in this worker: giving away (`handover`), taking in (`adopt`).
    handover: handover::State,
    adoption: adopt::State,
}

/// Where a worker's listening socket comes from.
pub enum Listen {
    /// Bind this address (a concrete port for every worker but the first, which may bind
    /// port 0).
    Bind(SocketAddr),
    /// Take it, and every session, from the process being taken over; it listens on `local`.
    Adopt {
        local: SocketAddr,
        import: Receiver<Import>,
    },
}

impl Worker {
    /// Builds worker `index`: its ring and router, then its listening socket. `built` hears
    /// of it as soon as it can serve; a worker that adopts its sockets hears of that first, and
    /// then waits for them. `control` brings a takeover's requests (`--control`).
    pub fn new(
        config: &Config,
        index: usize,
        listen: Listen,
        shared: Arc<Shared>,
        resolver: Option<Resolver>,
        control: Option<Receiver<Freeze>>,
        built: impl FnOnce(Started),
    ) -> io::Result<Worker> {
        let tick = config.tick();
        let router = route::build(&config.routes, index, Instant::now(), resolver);
        let lent = router.resources();
        let driver = Driver::new(&DriverConfig {
            sq_entries: config.ring_entries,
            // The kernel's limit on a completion queue (IORING_MAX_CQ_ENTRIES).
            cq_entries: (config.ring_entries * 8).min(65_536),
            buffer_count: config.buffer_count,
            payload_bytes: config.buffer_size_bytes,
            tick,
            task_run: config.task_run,
            streams: lent.streams,
            stream_rx_bytes: lent.stream_rx_bytes,
            timers: lent.timers,
        })?;
        let mut socket_size = socket::BufferSize {
            bytes: config.socket_buffer_bytes,
            force: true,
        };
        let wake = eventfd::eventfd()?;
        let waker = File::from(wake.try_clone()?);
        let task_run = driver.task_run();
        let (listener, forced, import) = match listen {
            Listen::Bind(addr) => {
                let (listener, forced) = socket::listener(addr, socket_size).map_err(|e| {
                    io::Error::new(e.kind(), format!("cannot bind --listen {addr}: {e}"))
                })?;
                let local = local_of(&listener)?;
                built(Started {
                    local,
                    waker,
                    task_run,
                });
                (listener, forced, None)
            }
            Listen::Adopt { local, import } => {
                built(Started {
                    local,
                    waker,
                    task_run,
                });
                let import = import.recv().map_err(|_| {
                    io::Error::other("the takeover ended before this worker's part")
                })?;
                let listener = Socket::from(import.listener);
                if local_of(&listener)? != local {
                    return Err(io::Error::other(
                        "the listening socket handed over is not the one asked for",
                    ));
                }
                // This process's socket buffer setting applies from now on.
                let forced = socket::set_buffers(&listener, socket_size)?;
                (
                    listener,
                    forced,
                    Some((import.sessions, import.adopted, import.commit)),
                )
            }
        };
        socket_size.force = forced;
        shared.buffers_forced.store(forced, Ordering::Relaxed);
        let local = local_of(&listener)?;
        if index == 0 {
            info!(
                driver = driver.name(),
                task_run = task_run.map_or("-", TaskRun::name),
                router = router.name(),
                socket_buffer = socket::recv_buffer(&listener).unwrap_or(0),
                forced,
                "worker ring built"
            );
        }
        let limits = Limits {
            sessions_max: config.sessions_max,
            fd_max: shared.fd_sessions_per_worker,
            pending_max: config.pending_max,
            held_max: config.held_max(),
        };
        let admission = Admission::new(
            local,
            shared.local_ips.clone(),
            config.new_sessions_per_ip,
            config.new_sessions_per_worker,
        );
        let mut worker = Worker {
            driver,
            listener,
            wake,
            sessions: Sessions::new(limits),
            router,
            admission,
            now: Instant::now(),
            started: Instant::now(),
            outcomes: Vec::new(),
            counters: Counters::default(),
            shared,
            index,
            deferred: Vec::new(),
            scratch: Vec::new(),
            events: Vec::new(),
            tick: adopt::TICK_ORIGIN,
            tick_len: tick,
            idle_ticks: closing::idle_ticks(config.idle_timeout, tick),
            unreplied_ticks: closing::idle_ticks(config.unreplied_timeout, tick),
            max_payload: config.buffer_size_bytes as usize,
            local,
            proxy_protocol: config.proxy_protocol,
            proxy_protocol_every: config.proxy_protocol_every,
            socket_size,
            life: Life::Serving,
            warnings: Warnings::new(config.log_sessions),
            handover: handover::State::new(control),
            adoption: adopt::State::default(),
        };
        if let Some((sessions, adopted, commit)) = import {
            worker.adopt(sessions, adopted, commit);
        }
        Ok(worker)
    }

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

fn local_of(socket: &Socket) -> io::Result<SocketAddr> {
    socket
        .local_addr()?
        .as_socket()
        .ok_or_else(|| io::Error::other("listener has no IP address"))
}
