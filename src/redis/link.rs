//! A worker's link to Redis, driven through the worker's own ring.
//!
//! Two TCP connections (command and subscriber), each a [`Conn`] state machine plus a socket
//! whose connect, send and receive are io_uring operations. The link never blocks and never
//! waits: it is told about completions, and at the end of every batch ([`RedisLink::poll`]) it
//! starts what is due (connects, sends, receives, its timer) and reports what the worker must
//! do ([`Outcome`]).
//!
//! Lookups are coalesced: while one `GET` of the backend key is in flight, new clients wait for
//! its answer instead of sending their own, so a worker has at most one lookup in flight. Each
//! waiter has its own deadline. A connection that fails is shut down, its operations cancelled,
//! and its socket closed only once all of them have completed; it reconnects after a capped
//! exponential backoff and repeats its handshake (AUTH, SELECT, SUBSCRIBE).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use ipnet::IpNet;
use redis::Value;
use socket2::Socket;
use tracing::{info, warn};

use super::backend::{self, Rejection};
use super::conn::{Conn, Event, Handshake, Phase, Role};
use super::disconnect::{self, Target};
use crate::ratelimit::RateLimited;
use crate::stats::{Counter, Counters};
use crate::sys::driver::Driver;
use crate::sys::socket;
use crate::user_data::{GENERATION_MASK, Op};

/// Where Redis is and what to ask it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    pub addr: SocketAddr,
    pub handshake: Handshake,
    pub key: String,
    /// How long a new client's first datagrams wait for the backend key.
    pub timeout: Duration,
    /// Networks a backend from Redis must be in; empty allows any usable address.
    pub allow: Vec<IpNet>,
}

/// Why a new session got no route from Redis.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RouteFailure {
    /// The backend key does not exist.
    Missing,
    /// The value is not a usable `ip:port`.
    Invalid,
    /// The value is outside `--backend-allow`.
    Disallowed,
    /// Redis answered with an error.
    Error,
    /// The command connection is not up.
    Unavailable,
    /// No answer within `--redis-timeout-ms`.
    Timeout,
}

impl RouteFailure {
    pub const fn counter(self) -> Counter {
        match self {
            RouteFailure::Missing => Counter::RouteMissing,
            RouteFailure::Invalid => Counter::RouteInvalid,
            RouteFailure::Disallowed => Counter::RouteDisallowed,
            RouteFailure::Error => Counter::RouteError,
            RouteFailure::Unavailable => Counter::RouteUnavailable,
            RouteFailure::Timeout => Counter::RouteTimeout,
        }
    }
}

/// What the worker must do after the link heard something.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// These resolving sessions have their answer.
    Route {
        waiters: Vec<(u32, u32)>,
        result: Result<SocketAddr, RouteFailure>,
    },
    /// Close the sessions this names.
    Disconnect(Target),
}

/// How long a TCP connect may take before it is abandoned and retried.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// The least time a handshake or a GET may go unanswered before the connection is dropped
/// (otherwise four lookup timeouts).
const STALL_MIN: Duration = Duration::from_secs(2);

struct Endpoint {
    conn: Conn,
    socket: Option<Socket>,
    /// Changes with every socket, so a completion names the socket it was for.
    epoch: u32,
    /// Operations in flight on `socket`.
    ops: u32,
    sending: bool,
    receiving: bool,
    /// Shut down; the socket closes once `ops` reaches 0.
    failing: bool,
    retry_at: Option<Instant>,
    connect_deadline: Option<Instant>,
    /// When the handshake began, while it is under way.
    handshake_since: Option<Instant>,
}

impl Endpoint {
    fn new(role: Role, now: Instant) -> Endpoint {
        Endpoint {
            conn: Conn::new(role),
            socket: None,
            epoch: 0,
            ops: 0,
            sending: false,
            receiving: false,
            failing: false,
            retry_at: Some(now),
            connect_deadline: None,
            handshake_since: None,
        }
    }

    fn fd(&self) -> Option<i32> {
        self.socket.as_ref().map(AsRawFd::as_raw_fd)
    }
}

struct Waiter {
    slot: u32,
    generation: u32,
    deadline: Instant,
}

pub struct RedisLink {
    settings: Settings,
    /// `[command, subscriber]`, indexed by the `conn` of their operations.
    ends: [Endpoint; 2],
    /// New sessions waiting for the backend key, oldest (earliest deadline) first.
    waiters: VecDeque<Waiter>,
    /// When the `GET` in flight was sent, if one is.
    get_sent_at: Option<Instant>,
    timer_armed: bool,
    timer_tick: Duration,
    stopping: bool,
    events: Vec<Event>,
    warn_conn: RateLimited,
    warn_value: RateLimited,
}

const COMMAND: usize = 0;
const SUBSCRIBER: usize = 1;

impl RedisLink {
    pub fn new(settings: Settings, now: Instant) -> RedisLink {
        let timer_tick =
            (settings.timeout / 4).clamp(Duration::from_millis(5), Duration::from_millis(50));
        RedisLink {
            settings,
            ends: [
                Endpoint::new(Role::Command, now),
                Endpoint::new(Role::Subscriber, now),
            ],
            waiters: VecDeque::new(),
            get_sent_at: None,
            timer_armed: false,
            timer_tick,
            stopping: false,
            events: Vec::new(),
            warn_conn: RateLimited::default(),
            warn_value: RateLimited::default(),
        }
    }

    /// Whether each connection (command, subscriber) has finished its handshake.
    pub fn up(&self) -> (bool, bool) {
        (
            self.ends[COMMAND].conn.phase() == Phase::Ready,
            self.ends[SUBSCRIBER].conn.phase() == Phase::Ready,
        )
    }

    /// Asks for a new session's route. The answer comes later as an [`Outcome::Route`]; an
    /// `Err` now means there is no way to ask.
    pub fn request(
        &mut self,
        slot: u32,
        generation: u32,
        now: Instant,
        counters: &mut Counters,
    ) -> Result<(), RouteFailure> {
        let end = &mut self.ends[COMMAND];
        if self.stopping || end.conn.phase() != Phase::Ready {
            return Err(RouteFailure::Unavailable);
        }
        self.waiters.push_back(Waiter {
            slot,
            generation,
            deadline: now + self.settings.timeout,
        });
        if self.get_sent_at.is_some() {
            counters.bump(Counter::RedisLookupsCoalesced);
        } else if end.conn.get(&self.settings.key) {
            self.get_sent_at = Some(now);
            counters.bump(Counter::RedisLookups);
        }
        Ok(())
    }

    /// Handles the completion of one of the link's operations.
    pub fn complete(
        &mut self,
        op: Op,
        res: i32,
        driver: &mut Driver,
        now: Instant,
        counters: &mut Counters,
        out: &mut Vec<Outcome>,
    ) {
        let (conn, epoch) = match op {
            Op::RedisConnect { conn, epoch }
            | Op::RedisSend { conn, epoch }
            | Op::RedisRecv { conn, epoch } => (conn as usize, epoch),
            Op::RedisTimer => {
                self.timer_armed = false;
                return;
            }
            _ => return,
        };
        let Some(end) = self.ends.get_mut(conn) else {
            return counters.bump(Counter::Anomalies);
        };
        if epoch != end.epoch {
            return counters.bump(Counter::Anomalies);
        }
        end.ops -= 1;
        if end.failing {
            return self.close_if_drained(conn);
        }
        match op {
            Op::RedisConnect { .. } => {
                end.connect_deadline = None;
                if res < 0 {
                    return self.fail(conn, &errno(res), driver, now, counters, out);
                }
                end.handshake_since = Some(now);
                let ready = end.conn.connected(&self.settings.handshake);
                if ready.is_some() {
                    self.on_ready(conn);
                }
            }
            Op::RedisSend { .. } => {
                end.sending = false;
                let sent = driver.sent(conn);
                if res < 0 {
                    return self.fail(conn, &errno(res), driver, now, counters, out);
                }
                if let Some(rest) = sent.get(res as usize..).filter(|r| !r.is_empty()) {
                    end.conn.unsent(rest);
                }
            }
            Op::RedisRecv { .. } => {
                end.receiving = false;
                if res <= 0 {
                    let why = if res == 0 {
                        "Redis closed the connection".to_owned()
                    } else {
                        errno(res)
                    };
                    return self.fail(conn, &why, driver, now, counters, out);
                }
                let mut events = std::mem::take(&mut self.events);
                let bytes = driver.received(conn, res as usize);
                let parsed = self.ends[conn].conn.received(bytes, &mut events);
                for event in events.drain(..) {
                    self.on_event(conn, event, now, counters, out);
                }
                self.events = events;
                if let Err(failure) = parsed {
                    self.fail(conn, &failure.to_string(), driver, now, counters, out);
                }
            }
            _ => {}
        }
    }

    fn on_ready(&mut self, conn: usize) {
        self.ends[conn].handshake_since = None;
        info!(
            connection = self.ends[conn].conn.role().name(),
            redis = %self.settings.addr,
            "Redis connection ready"
        );
    }

    fn on_event(
        &mut self,
        conn: usize,
        event: Event,
        now: Instant,
        counters: &mut Counters,
        out: &mut Vec<Outcome>,
    ) {
        match event {
            Event::Ready => self.on_ready(conn),
            Event::Got(value) => {
                if let Some(sent) = self.get_sent_at.take() {
                    counters.observe_lookup(now.saturating_duration_since(sent));
                }
                let result = self.route_of(&value);
                let waiters = self
                    .waiters
                    .drain(..)
                    .map(|w| (w.slot, w.generation))
                    .collect();
                out.push(Outcome::Route { waiters, result });
            }
            Event::Message(payload) => match disconnect::parse(&payload) {
                Some(target) => out.push(Outcome::Disconnect(target)),
                None => {
                    counters.bump(Counter::DisconnectInvalid);
                    if let Some(suppressed) = self.warn_value.check() {
                        warn!(message = %preview(&payload), suppressed, "ignoring an invalid disconnect message");
                    }
                }
            },
        }
    }

    fn route_of(&mut self, value: &Value) -> Result<SocketAddr, RouteFailure> {
        let bytes = match value {
            Value::Nil => return Err(RouteFailure::Missing),
            Value::BulkString(bytes) => bytes.as_slice(),
            Value::SimpleString(text) => text.as_bytes(),
            Value::ServerError(e) => {
                if let Some(suppressed) = self.warn_value.check() {
                    warn!(error = %e, suppressed, "Redis answered the backend lookup with an error");
                }
                return Err(RouteFailure::Error);
            }
            _ => b"",
        };
        backend::validate(bytes, &self.settings.allow).map_err(|rejection| {
            if let Some(suppressed) = self.warn_value.check() {
                warn!(key = %self.settings.key, value = %preview(bytes), why = %rejection, suppressed,
                      "rejecting the backend value from Redis");
            }
            match rejection {
                Rejection::Disallowed => RouteFailure::Disallowed,
                Rejection::Malformed | Rejection::Unusable => RouteFailure::Invalid,
            }
        })
    }

    /// Drops connection `conn`: shuts its socket down and cancels its operations; the socket
    /// closes when they have all completed, and a reconnect follows the backoff.
    fn fail(
        &mut self,
        conn: usize,
        why: &str,
        driver: &mut Driver,
        now: Instant,
        counters: &mut Counters,
        out: &mut Vec<Outcome>,
    ) {
        let end = &mut self.ends[conn];
        let role = end.conn.role();
        counters.bump(match role {
            Role::Command => Counter::RedisCommandFailures,
            Role::Subscriber => Counter::RedisSubscriberFailures,
        });
        let (_, delay) = end.conn.reset();
        end.retry_at = Some(now + delay);
        end.connect_deadline = None;
        end.handshake_since = None;
        end.failing = true;
        if let Some(socket) = &end.socket {
            // Shutting down completes a pending receive; the cancel also reaches a connect
            // still waiting for a SYN-ACK.
            let _ = socket.shutdown(std::net::Shutdown::Both);
            let _ = driver.cancel_fd(socket.as_raw_fd(), Op::Cancel.encode());
        }
        if let Some(suppressed) = self.warn_conn.check() {
            warn!(connection = role.name(), redis = %self.settings.addr, error = why,
                  retry_ms = delay.as_millis() as u64, suppressed, "Redis connection lost");
        }
        if role == Role::Command {
            self.get_sent_at = None;
            if !self.waiters.is_empty() {
                let waiters = self
                    .waiters
                    .drain(..)
                    .map(|w| (w.slot, w.generation))
                    .collect();
                out.push(Outcome::Route {
                    waiters,
                    result: Err(RouteFailure::Unavailable),
                });
            }
        }
        self.close_if_drained(conn);
    }

    fn close_if_drained(&mut self, conn: usize) {
        let end = &mut self.ends[conn];
        if end.failing && end.ops == 0 {
            end.socket = None;
            end.failing = false;
            end.sending = false;
            end.receiving = false;
            end.epoch = (end.epoch + 1) & GENERATION_MASK;
        }
    }

    /// Starts what is due and reports what the worker must do. Called once per batch.
    pub fn poll(
        &mut self,
        driver: &mut Driver,
        now: Instant,
        counters: &mut Counters,
        out: &mut Vec<Outcome>,
    ) {
        if self.stopping {
            return;
        }
        // Waiters whose deadline passed give up; the GET, if still in flight, stays in flight
        // and later waiters join it.
        let mut expired = Vec::new();
        while self.waiters.front().is_some_and(|w| w.deadline <= now) {
            if let Some(w) = self.waiters.pop_front() {
                expired.push((w.slot, w.generation));
            }
        }
        if !expired.is_empty() {
            out.push(Outcome::Route {
                waiters: expired,
                result: Err(RouteFailure::Timeout),
            });
        }
        for conn in [COMMAND, SUBSCRIBER] {
            self.drive(conn, driver, now, counters, out);
        }
        let waiting = !self.waiters.is_empty()
            || self.get_sent_at.is_some()
            || self.ends.iter().any(|e| {
                e.retry_at.is_some()
                    || e.connect_deadline.is_some()
                    || e.handshake_since.is_some()
                    || e.failing
            });
        if waiting
            && !self.timer_armed
            && driver
                .redis_timer(self.timer_tick, Op::RedisTimer.encode())
                .is_ok()
        {
            self.timer_armed = true;
        }
    }

    fn drive(
        &mut self,
        conn: usize,
        driver: &mut Driver,
        now: Instant,
        counters: &mut Counters,
        out: &mut Vec<Outcome>,
    ) {
        let end = &mut self.ends[conn];
        if end.failing {
            return;
        }
        if end.connect_deadline.is_some_and(|d| d <= now) {
            return self.fail(conn, "connect timed out", driver, now, counters, out);
        }
        // A server that stopped answering (SIGSTOP, a lost route) keeps the TCP connection up:
        // give up on it when a handshake or a GET goes unanswered for several lookup timeouts.
        let stall = (self.settings.timeout * 4).max(STALL_MIN);
        if end
            .handshake_since
            .is_some_and(|t| now.saturating_duration_since(t) > stall)
        {
            return self.fail(
                conn,
                "no reply to the handshake",
                driver,
                now,
                counters,
                out,
            );
        }
        if conn == COMMAND
            && self
                .get_sent_at
                .is_some_and(|t| now.saturating_duration_since(t) > stall)
        {
            return self.fail(conn, "no reply to GET", driver, now, counters, out);
        }
        if end.socket.is_none() {
            if end.retry_at.is_some_and(|t| t <= now) {
                self.connect(conn, driver, now, counters, out);
            }
            return;
        }
        let epoch = end.epoch;
        let Some(fd) = end.fd() else { return };
        let talking = matches!(end.conn.phase(), Phase::Handshaking | Phase::Ready);
        if talking && !end.receiving {
            let ud = Op::RedisRecv {
                conn: conn as u32,
                epoch,
            }
            .encode();
            if driver.recv_bytes(conn, fd, ud).is_ok() {
                end.receiving = true;
                end.ops += 1;
            }
        }
        if talking && !end.sending && end.conn.has_output() {
            let bytes = end.conn.take_output();
            let ud = Op::RedisSend {
                conn: conn as u32,
                epoch,
            }
            .encode();
            match driver.send_bytes(conn, fd, bytes, ud) {
                Ok(_) => {
                    end.sending = true;
                    end.ops += 1;
                }
                Err(_) => {
                    let bytes = driver.sent(conn);
                    end.conn.unsent(&bytes);
                }
            }
        }
    }

    fn connect(
        &mut self,
        conn: usize,
        driver: &mut Driver,
        now: Instant,
        counters: &mut Counters,
        out: &mut Vec<Outcome>,
    ) {
        let addr = self.settings.addr;
        let end = &mut self.ends[conn];
        end.retry_at = None;
        let socket = match socket::tcp_client(addr) {
            Ok(socket) => socket,
            Err(e) => return self.fail(conn, &e.to_string(), driver, now, counters, out),
        };
        let fd = socket.as_raw_fd();
        end.socket = Some(socket);
        let ud = Op::RedisConnect {
            conn: conn as u32,
            epoch: end.epoch,
        }
        .encode();
        match driver.connect(conn, fd, addr, ud) {
            Ok(_) => {
                end.ops += 1;
                end.conn.connecting();
                end.connect_deadline = Some(now + CONNECT_TIMEOUT);
            }
            Err(e) => self.fail(conn, &e.to_string(), driver, now, counters, out),
        }
    }

    /// Stops for good: every connection is shut down and its operations cancelled; waiters are
    /// dropped (their sessions are being closed anyway).
    pub fn shutdown(&mut self, driver: &mut Driver) {
        self.stopping = true;
        self.waiters.clear();
        for end in &mut self.ends {
            if let Some(socket) = &end.socket {
                let _ = socket.shutdown(std::net::Shutdown::Both);
                let _ = driver.cancel_fd(socket.as_raw_fd(), Op::Cancel.encode());
                end.failing = true;
            }
            end.retry_at = None;
            end.connect_deadline = None;
        }
        for conn in [COMMAND, SUBSCRIBER] {
            self.close_if_drained(conn);
        }
        if self.timer_armed {
            let _ = driver.cancel(Op::RedisTimer.encode(), Op::Cancel.encode());
        }
    }
}

fn errno(res: i32) -> String {
    std::io::Error::from_raw_os_error(-res).to_string()
}

/// At most 64 characters of a value from Redis, for a log line.
fn preview(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(64)]);
    if bytes.len() > 64 {
        format!("{text}... ({} bytes)", bytes.len())
    } else {
        text.into_owned()
    }
}
