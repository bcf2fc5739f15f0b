//! One worker: a pinned thread that owns a listening socket, a ring and a session table.
//!
//! The loop is phased: hand queued operations to the kernel and wait; copy every completion
//! into a batch; run one handler per completion (handlers push new operations, never wait);
//! then, once per batch, re-arm receives that ended, publish recycled buffers to the kernel and
//! publish counters. Nothing here blocks except the wait in `io_uring_enter`.
//!
//! The packet's path, top to bottom:
//! - client -> backend: [`Worker::on_listen_recv`] parses the buffer, the session table
//!   classifies the client ([`Sessions::classify`]), and [`Worker::forward_up`] sends the
//!   buffer itself on the session's connected socket; [`Worker::on_send_up`] recycles it.
//! - backend -> client: [`Worker::on_session_recv`] receives on the session socket and
//!   [`Worker::forward_down`] sends the buffer from the listening socket to the client's
//!   address; [`Worker::on_send_down`] recycles it.
//!
//! Per-datagram failures are counted, never propagated. A session's slot is freed only after
//! every operation naming it has completed.

use std::fs::File;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use io_uring::cqueue;
use socket2::Socket;
use tracing::{debug, error, info, warn};

use crate::config::Config;
use crate::datagram;
use crate::proxy::Shared;
use crate::ratelimit::RateLimited;
use crate::redis::disconnect::Target;
use crate::redis::link::{Outcome, RedisLink};
use crate::route::{Resolution, StaticRoutes};
use crate::session::{Held, Ingress, Phase, Sessions};
use crate::stats::{Counter, Counters};
use crate::sys::driver::{Driver, RingConfig};
use crate::sys::msghdr::PAYLOAD_OFFSET;
use crate::sys::{eventfd, socket};
use crate::user_data::Op;

/// How long a stopping worker waits for the kernel to finish its cancelled operations.
const DRAIN_TIMEOUT: Duration = Duration::from_millis(500);

/// What a worker hands back to the thread that started it once it is built.
pub struct Started {
    pub local: SocketAddr,
    pub waker: File,
}

/// Work deferred to the end of a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Deferred {
    ArmListener,
    ArmTick,
    ArmWake,
    ArmSession {
        slot: u32,
        generation: u32,
    },
    /// Cancel the operation issued with this `user_data`.
    Cancel(u64),
}

/// Where new sessions' routes come from.
enum Router {
    Static(StaticRoutes),
    Redis(Box<RedisLink>),
}

/// Warnings that may repeat per datagram, each logged at most once a second.
#[derive(Default)]
struct Warnings {
    socket: RateLimited,
    recv: RateLimited,
    send: RateLimited,
}

pub struct Worker {
    driver: Driver,
    listener: Socket,
    wake: OwnedFd,
    sessions: Sessions,
    router: Router,
    /// Read once per batch; Redis deadlines only. The packet path reads no clock.
    now: Instant,
    outcomes: Vec<Outcome>,
    counters: Counters,
    shared: Arc<Shared>,
    index: usize,
    deferred: Vec<Deferred>,
    scratch: Vec<(u32, u32)>,
    /// The reaper's tick count: the only clock the packet path reads.
    tick: u32,
    idle_ticks: u32,
    max_payload: usize,
    socket_size: socket::BufferSize,
    stopping: Option<Instant>,
    warnings: Warnings,
}

impl Worker {
    /// Builds worker `index` listening on `listen` (a concrete port for every worker but the
    /// first, which may bind port 0).
    pub fn new(
        config: &Config,
        index: usize,
        listen: SocketAddr,
        shared: Arc<Shared>,
    ) -> io::Result<(Worker, Started)> {
        let tick = config.tick();
        let ring = RingConfig {
            sq_entries: config.ring_entries,
            // The kernel's limit on a completion queue (IORING_MAX_CQ_ENTRIES).
            cq_entries: (config.ring_entries * 8).min(65_536),
            buffers: config.buffers,
            buf_len: config.buffer_size + PAYLOAD_OFFSET as u32,
            tick,
            task_run: config.task_run,
        };
        let driver = Driver::new(&ring)?;
        let mut socket_size = socket::BufferSize {
            bytes: config.socket_buffer,
            force: true,
        };
        let (listener, forced) = socket::listener(listen, socket_size)
            .map_err(|e| io::Error::new(e.kind(), format!("cannot bind --listen {listen}: {e}")))?;
        socket_size.force = forced;
        shared.buffers_forced.store(forced, Ordering::Relaxed);
        let local = listener
            .local_addr()?
            .as_socket()
            .ok_or_else(|| io::Error::other("listener has no IP address"))?;
        let wake = eventfd::eventfd()?;
        let waker = File::from(wake.try_clone()?);
        if index == 0 {
            info!(
                task_run = ?driver.task_run,
                socket_buffer = socket::recv_buffer(&listener).unwrap_or(0),
                forced,
                "worker ring built"
            );
        }
        let idle_ticks = config
            .idle_timeout
            .as_nanos()
            .div_ceil(tick.as_nanos().max(1));
        let worker = Worker {
            driver,
            listener,
            wake,
            // A quarter of the buffer ring may wait for routes; the rest keeps traffic moving.
            sessions: Sessions::new(
                config.max_sessions,
                config.pending_max,
                (config.buffers as usize / 4).max(1),
            ),
            router: match &config.redis {
                Some(settings) if config.backends.is_empty() => {
                    Router::Redis(Box::new(RedisLink::new(settings.clone(), Instant::now())))
                }
                _ => Router::Static(StaticRoutes::new(config.backends.clone(), index)),
            },
            now: Instant::now(),
            outcomes: Vec::new(),
            counters: Counters::default(),
            shared,
            index,
            deferred: Vec::new(),
            scratch: Vec::new(),
            tick: 0,
            idle_ticks: u32::try_from(idle_ticks).unwrap_or(u32::MAX),
            max_payload: config.buffer_size as usize,
            socket_size,
            stopping: None,
            warnings: Warnings::default(),
        };
        Ok((worker, Started { local, waker }))
    }

    /// Runs until shutdown is requested and every operation has drained. A worker that fails
    /// says so at once and stops counting as ready.
    pub fn run(mut self) -> io::Result<()> {
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
        self.arm_listener();
        self.arm_tick();
        self.arm_wake();
        self.driver.submit()?;
        self.shared.armed.fetch_add(1, Ordering::Release);
        *armed = true;

        let mut batch = Vec::with_capacity(1024);
        loop {
            let waited = match self.stopping {
                None => self.driver.submit_and_wait(),
                Some(_) => self.driver.submit_and_wait_for(Duration::from_millis(50)),
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
            for cqe in batch.drain(..) {
                self.dispatch(&cqe);
            }
            self.end_batch();
            if let Some(since) = self.stopping {
                if self.driver.in_flight() == 0 {
                    break;
                }
                if since.elapsed() > DRAIN_TIMEOUT {
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

    fn dispatch(&mut self, cqe: &cqueue::Entry) {
        let (res, flags) = (cqe.result(), cqe.flags());
        match Op::decode(cqe.user_data()) {
            Some(Op::ListenRecv) => self.on_listen_recv(res, flags),
            Some(Op::SessionRecv { slot, generation }) => {
                self.on_session_recv(slot, generation, res, flags)
            }
            Some(Op::SendUp {
                slot,
                generation,
                bid,
            }) => self.on_send_up(slot, generation, bid, res),
            Some(Op::SendDown { bid }) => self.on_send_down(bid, res),
            Some(Op::Tick) => self.on_tick(),
            Some(Op::Wake) => self.on_wake(),
            // A cancel's own result says nothing the target's final completion does not.
            Some(Op::Cancel) => {}
            Some(
                op @ (Op::RedisConnect { .. }
                | Op::RedisSend { .. }
                | Op::RedisRecv { .. }
                | Op::RedisTimer),
            ) => {
                if let Router::Redis(link) = &mut self.router {
                    let mut outcomes = std::mem::take(&mut self.outcomes);
                    link.complete(
                        op,
                        res,
                        &mut self.driver,
                        self.now,
                        &mut self.counters,
                        &mut outcomes,
                    );
                    self.apply(&mut outcomes);
                    self.outcomes = outcomes;
                }
            }
            None => self.counters.bump(Counter::Anomalies),
        }
    }

    // ----- client -> backend -------------------------------------------------------------

    fn on_listen_recv(&mut self, res: i32, flags: u32) {
        if !cqueue::more(flags) && self.stopping.is_none() {
            self.counters.bump(Counter::RecvRearms);
            self.deferred.push(Deferred::ArmListener);
        }
        let Some(bid) = self.take_buffer(res, flags) else {
            return;
        };
        if self.stopping.is_some() {
            return self.drop_buffer(bid, Counter::DropShutdown);
        }
        match self.parse(bid, res) {
            Ok(dgram) => self.on_client_datagram(dgram.source, bid, dgram.len),
            Err(reason) => self.drop_buffer(bid, reason),
        }
    }

    fn on_client_datagram(&mut self, client: SocketAddr, bid: u16, len: u32) {
        match self.sessions.classify(&client) {
            Ingress::Forward { slot, generation } => self.forward_up(slot, generation, bid, len),
            Ingress::Hold { slot, generation } => {
                if !self.sessions.hold(slot, generation, Held { bid, len }) {
                    self.drop_buffer(bid, Counter::DropSessionClosed);
                }
            }
            Ingress::Create => self.create_session(client, bid, len),
            Ingress::Drop(reason) => self.drop_buffer(bid, reason),
        }
    }

    fn forward_up(&mut self, slot: u32, generation: u32, bid: u16, len: u32) {
        let Some(s) = self.sessions.get(slot, generation) else {
            return self.drop_buffer(bid, Counter::DropSessionClosed);
        };
        let Some(fd) = s.upstream.as_ref().map(AsRawFd::as_raw_fd) else {
            return self.drop_buffer(bid, Counter::DropSessionClosed);
        };
        s.last_tick = self.tick;
        s.in_flight += 1;
        let user_data = Op::SendUp {
            slot,
            generation,
            bid,
        }
        .encode();
        match self.driver.send(fd, bid, len as usize, user_data) {
            Ok(flushed) => self.count_flush(flushed),
            Err(e) => {
                if let Some(s) = self.sessions.get(slot, generation) {
                    s.in_flight -= 1;
                }
                self.warn_send(&e);
                self.drop_buffer(bid, Counter::DropSendError);
            }
        }
    }

    fn on_send_up(&mut self, slot: u32, generation: u32, bid: u16, res: i32) {
        self.recycle(bid);
        if res >= 0 {
            self.counters.bump(Counter::PacketsUpstream);
            self.counters.add(Counter::BytesUpstream, res as u64);
        } else {
            self.count_send_error(res);
        }
        if let Some(s) = self.sessions.get(slot, generation) {
            s.in_flight -= 1;
            if s.phase == Phase::Closing {
                self.sessions.release_if_done(slot, generation);
            }
        }
    }

    // ----- sessions ----------------------------------------------------------------------

    fn create_session(&mut self, client: SocketAddr, bid: u16, len: u32) {
        let (slot, generation) = self.sessions.insert(client, self.tick);
        self.sessions.hold(slot, generation, Held { bid, len });
        match &mut self.router {
            Router::Static(routes) => match routes.resolve() {
                Resolution::Ready { addr, backend } => {
                    self.open_session(slot, generation, addr, Some(backend))
                }
                Resolution::NoRoute => self.abandon_session(slot, generation, Counter::DropNoRoute),
            },
            // The answer arrives as an `Outcome::Route`; the datagram waits, held.
            Router::Redis(link) => {
                if let Err(failure) = link.request(slot, generation, self.now, &mut self.counters) {
                    self.counters.bump(failure.counter());
                    self.abandon_session(slot, generation, Counter::DropNoRoute);
                }
            }
        }
    }

    /// Carries out what the Redis link decided.
    fn apply(&mut self, outcomes: &mut Vec<Outcome>) {
        for outcome in outcomes.drain(..) {
            match outcome {
                Outcome::Route { waiters, result } => {
                    for (slot, generation) in waiters {
                        match result {
                            Ok(addr) => self.open_session(slot, generation, addr, None),
                            Err(failure) => {
                                // A session already gone (reaped, shut down) needs nothing.
                                if self.sessions.get(slot, generation).is_some() {
                                    self.counters.bump(failure.counter());
                                }
                                self.abandon_session(slot, generation, Counter::DropNoRoute);
                            }
                        }
                    }
                }
                Outcome::Disconnect(target) => self.disconnect(target),
            }
        }
    }

    /// Closes the sessions a disconnect message names: by upstream port, or by `ip:port` as
    /// either the client's address or the upstream socket's local address.
    fn disconnect(&mut self, target: Target) {
        let mut victims = Vec::with_capacity(2);
        match target {
            Target::Port(port) => {
                if let Some((slot, generation, _)) = self.sessions.by_upstream_port(port) {
                    victims.push((slot, generation));
                }
            }
            Target::Addr(addr) => {
                victims.extend(self.sessions.by_client(&addr));
                if let Some((slot, generation, local)) = self.sessions.by_upstream_port(addr.port())
                    && local == addr
                    && !victims.contains(&(slot, generation))
                {
                    victims.push((slot, generation));
                }
            }
        }
        self.counters.bump(if victims.is_empty() {
            Counter::DisconnectUnmatched
        } else {
            Counter::DisconnectMatched
        });
        for (slot, generation) in victims {
            self.close_session(
                slot,
                generation,
                Counter::DropNoRoute,
                Some(Counter::ClosedDisconnect),
            );
        }
    }

    /// Connects a resolving session to `backend_addr`, arms its receive and flushes what it
    /// held, in order.
    fn open_session(
        &mut self,
        slot: u32,
        generation: u32,
        backend_addr: SocketAddr,
        backend: Option<usize>,
    ) {
        match self.sessions.get(slot, generation) {
            Some(s) if s.phase == Phase::Resolving => {}
            // Closed while its route was looked up: nothing to open.
            _ => return,
        }
        let (upstream, local) = match socket::upstream(backend_addr, self.socket_size) {
            Ok(pair) => pair,
            Err(e) => {
                self.release_backend(backend);
                if let Some(suppressed) = self.warnings.socket.check() {
                    warn!(error = %e, backend = %backend_addr, suppressed,
                          "cannot open an upstream socket; dropping the new session");
                }
                return self.abandon_session(slot, generation, Counter::DropSocketError);
            }
        };
        self.sessions.opened(slot, generation, local);
        let held = self.sessions.take_held(slot, generation);
        let Some(s) = self.sessions.get(slot, generation) else {
            return;
        };
        s.backend = backend;
        s.upstream = Some(upstream);
        debug!(client = %s.client, backend = %backend_addr, upstream = %local, "session opened");
        self.counters.bump(Counter::SessionsCreated);
        self.arm_session(slot, generation);
        for h in held {
            self.forward_up(slot, generation, h.bid, h.len);
        }
    }

    /// Frees a session that never opened, dropping what it held with `reason`.
    fn abandon_session(&mut self, slot: u32, generation: u32, reason: Counter) {
        self.close_session(slot, generation, reason, None);
    }

    /// Starts closing a session: out of the table at once, its held datagrams dropped with
    /// `drop_reason`, its receive cancelled; the slot is freed when its last operation ends.
    fn close_session(
        &mut self,
        slot: u32,
        generation: u32,
        drop_reason: Counter,
        closed_reason: Option<Counter>,
    ) {
        let held = self.sessions.take_held(slot, generation);
        let Some(s) = self.sessions.begin_close(slot, generation) else {
            return;
        };
        let backend = s.backend.take();
        let recv_armed = s.recv_armed;
        if let Some(reason) = closed_reason {
            debug!(client = %s.client, upstream = ?s.upstream_local, reason = reason.family().1.map_or("", |l| l.1), "session closed");
        }
        for h in held {
            self.drop_buffer(h.bid, drop_reason);
        }
        self.release_backend(backend);
        if let Some(reason) = closed_reason {
            self.counters.bump(reason);
        }
        if recv_armed {
            self.cancel_session_recv(slot, generation);
        }
        self.sessions.release_if_done(slot, generation);
    }

    /// Cancels the operation issued with `target`, retrying after the batch if the queue is full.
    fn cancel(&mut self, target: u64) {
        let result = self.driver.cancel(target, Op::Cancel.encode());
        self.pushed(result, Deferred::Cancel(target));
    }

    fn release_backend(&mut self, backend: Option<usize>) {
        if let (Router::Static(routes), Some(b)) = (&mut self.router, backend) {
            routes.release(b);
        }
    }

    fn cancel_session_recv(&mut self, slot: u32, generation: u32) {
        let target = Op::SessionRecv { slot, generation }.encode();
        self.cancel(target);
    }

    fn arm_session(&mut self, slot: u32, generation: u32) {
        let Some(s) = self.sessions.get(slot, generation) else {
            return;
        };
        if s.phase != Phase::Open || s.recv_armed {
            return;
        }
        let Some(fd) = s.upstream.as_ref().map(AsRawFd::as_raw_fd) else {
            return;
        };
        s.recv_armed = true;
        s.in_flight += 1;
        let user_data = Op::SessionRecv { slot, generation }.encode();
        let result = self.driver.recv_multishot(fd, user_data);
        if result.is_err()
            && let Some(s) = self.sessions.get(slot, generation)
        {
            s.recv_armed = false;
            s.in_flight -= 1;
        }
        self.pushed(result, Deferred::ArmSession { slot, generation });
    }

    // ----- backend -> client -------------------------------------------------------------

    fn on_session_recv(&mut self, slot: u32, generation: u32, res: i32, flags: u32) {
        let ended = !cqueue::more(flags);
        let mut closing = false;
        if let Some(s) = self.sessions.get(slot, generation)
            && ended
        {
            s.recv_armed = false;
            s.in_flight -= 1;
            closing = s.phase == Phase::Closing;
        }
        if let Some(bid) = self.take_buffer(res, flags) {
            match self.parse(bid, res) {
                Ok(dgram) => self.forward_down(slot, generation, bid, dgram.len),
                Err(reason) => self.drop_buffer(bid, reason),
            }
        }
        if ended {
            if closing {
                self.sessions.release_if_done(slot, generation);
            } else if self.stopping.is_none() {
                self.counters.bump(Counter::RecvRearms);
                self.deferred
                    .push(Deferred::ArmSession { slot, generation });
            }
        }
    }

    fn forward_down(&mut self, slot: u32, generation: u32, bid: u16, len: u32) {
        let to = match self.sessions.get(slot, generation) {
            Some(s) if s.phase == Phase::Open && self.stopping.is_none() => {
                s.last_tick = self.tick;
                s.client_raw
            }
            _ => return self.drop_buffer(bid, Counter::DropSessionClosed),
        };
        let fd = self.listener.as_raw_fd();
        match self
            .driver
            .send_to(fd, bid, len as usize, &to, Op::SendDown { bid }.encode())
        {
            Ok(flushed) => self.count_flush(flushed),
            Err(e) => {
                self.warn_send(&e);
                self.drop_buffer(bid, Counter::DropSendError);
            }
        }
    }

    fn on_send_down(&mut self, bid: u16, res: i32) {
        self.recycle(bid);
        if res >= 0 {
            self.counters.bump(Counter::PacketsDownstream);
            self.counters.add(Counter::BytesDownstream, res as u64);
        } else {
            self.count_send_error(res);
        }
    }

    // ----- timer, shutdown, batch end ----------------------------------------------------

    fn on_tick(&mut self) {
        self.tick = self.tick.wrapping_add(1);
        if self.stopping.is_some() {
            return;
        }
        self.arm_tick();
        let Some(cutoff) = self.tick.checked_sub(self.idle_ticks) else {
            return;
        };
        let mut idle = std::mem::take(&mut self.scratch);
        self.sessions.collect_idle(cutoff, &mut idle);
        for (slot, generation) in idle.drain(..) {
            self.close_session(
                slot,
                generation,
                Counter::DropNoRoute,
                Some(Counter::ClosedIdle),
            );
        }
        self.scratch = idle;
    }

    fn on_wake(&mut self) {
        if !self.shared.stop.load(Ordering::Acquire) {
            return self.arm_wake();
        }
        if self.stopping.is_some() {
            return;
        }
        self.stopping = Some(Instant::now());
        debug!(
            worker = self.index,
            sessions = self.sessions.live(),
            "worker stopping"
        );
        self.cancel(Op::ListenRecv.encode());
        self.cancel(Op::Tick.encode());
        if let Router::Redis(link) = &mut self.router {
            link.shutdown(&mut self.driver);
        }
        let mut all = std::mem::take(&mut self.scratch);
        self.sessions.collect_all(&mut all);
        for (slot, generation) in all.drain(..) {
            self.close_session(
                slot,
                generation,
                Counter::DropShutdown,
                Some(Counter::ClosedShutdown),
            );
        }
        self.scratch = all;
        self.deferred.retain(|d| matches!(d, Deferred::Cancel(_)));
    }

    fn end_batch(&mut self) {
        // First, so that buffers freed by expired lookups count as free below.
        if let Router::Redis(link) = &mut self.router {
            let mut outcomes = std::mem::take(&mut self.outcomes);
            link.poll(
                &mut self.driver,
                self.now,
                &mut self.counters,
                &mut outcomes,
            );
            self.counters.set_redis_up(link.up());
            self.apply(&mut outcomes);
            self.outcomes = outcomes;
        }
        if !self.deferred.is_empty() {
            // Re-arming a receive while the kernel has no buffer to give it would end it again
            // at once with ENOBUFS: leave it until a completed send has recycled one.
            let buffers_free = self.driver.bufs().leased() < self.driver.bufs().entries();
            let mut work = std::mem::take(&mut self.deferred);
            for d in work.drain(..) {
                match d {
                    Deferred::ArmListener | Deferred::ArmSession { .. } if !buffers_free => {
                        self.deferred.push(d)
                    }
                    Deferred::ArmListener => self.arm_listener(),
                    Deferred::ArmSession { slot, generation } => self.arm_session(slot, generation),
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
        self.driver.bufs().publish();
        self.counters.set_sessions(self.sessions.live());
        self.counters.publish(&self.shared.stats[self.index]);
    }

    fn arm_listener(&mut self) {
        if self.stopping.is_some() {
            return;
        }
        let fd = self.listener.as_raw_fd();
        let result = self.driver.recv_multishot(fd, Op::ListenRecv.encode());
        self.pushed(result, Deferred::ArmListener);
    }

    fn arm_tick(&mut self) {
        let result = self.driver.tick(Op::Tick.encode());
        self.pushed(result, Deferred::ArmTick);
    }

    fn arm_wake(&mut self) {
        let fd = self.wake.as_raw_fd();
        let result = self.driver.read_wake(fd, Op::Wake.encode());
        self.pushed(result, Deferred::ArmWake);
    }

    /// Accounts for a push: a flush it needed is counted, a refusal retried after the batch.
    fn pushed(&mut self, result: io::Result<bool>, retry: Deferred) {
        match result {
            Ok(flushed) => self.count_flush(flushed),
            Err(_) => self.deferred.push(retry),
        }
    }

    // ----- buffers and accounting --------------------------------------------------------

    /// Counts a receive completion's error, and leases its buffer if it carries one.
    fn take_buffer(&mut self, res: i32, flags: u32) -> Option<u16> {
        let bid = cqueue::buffer_select(flags);
        if res < 0
            && let Some(bid) = bid
        {
            // Some kernels commit a buffer before the receive fails: give it straight back.
            if self.driver.bufs_mut().take(bid) {
                self.recycle(bid);
            }
        }
        if res < 0 {
            match -res {
                libc::ENOBUFS => self.counters.bump(Counter::RecvNoBuffers),
                libc::ECONNREFUSED => self.counters.bump(Counter::BackendUnreachable),
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
        let Some(bid) = bid else {
            self.counters.bump(Counter::Anomalies);
            return None;
        };
        if self.driver.bufs_mut().take(bid) {
            Some(bid)
        } else {
            self.counters.bump(Counter::Anomalies);
            None
        }
    }

    fn parse(&self, bid: u16, res: i32) -> Result<datagram::Datagram, Counter> {
        let buffer = self
            .driver
            .bufs()
            .get(bid, res as usize)
            .ok_or(Counter::Anomalies)?;
        datagram::parse(buffer, self.driver.recv_header(), self.max_payload)
    }

    fn recycle(&mut self, bid: u16) {
        if !self.driver.bufs_mut().recycle(bid) {
            self.counters.bump(Counter::Anomalies);
        }
    }

    fn drop_buffer(&mut self, bid: u16, reason: Counter) {
        self.counters.bump(reason);
        self.recycle(bid);
    }

    fn count_send_error(&mut self, res: i32) {
        self.counters.bump(Counter::DropSendError);
        if -res == libc::ECONNREFUSED {
            self.counters.bump(Counter::BackendUnreachable);
        } else if let Some(suppressed) = self.warnings.send.check() {
            warn!(error = %io::Error::from_raw_os_error(-res), suppressed, "send failed");
        }
    }

    fn warn_send(&mut self, e: &io::Error) {
        if let Some(suppressed) = self.warnings.send.check() {
            warn!(error = %e, suppressed, "cannot queue a send");
        }
    }

    fn count_flush(&mut self, flushed: bool) {
        if flushed {
            self.counters.bump(Counter::SubmitQueueFull);
        }
    }
}
