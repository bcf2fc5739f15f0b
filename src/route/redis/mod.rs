//! Routes from Redis, as udp-gate takes them: each new client goes to the value of the backend
//! key, and messages on the disconnect channel close sessions.
//!
//! Each worker talks to Redis itself, through its own ring: a command connection (pipelined
//! `GET`s of the backend key, replies matched in order) and a subscriber connection (the
//! disconnect channel), each on a stream the driver lends. The pieces: replies decoded as bytes
//! arrive ([`reply`]), a connection's state machine ([`conn`]), its socket and operations
//! ([`link`]), coalesced lookups with deadlines ([`lookups`]), backend value validation
//! ([`backend`]) and disconnect messages ([`disconnect`]). [`RedisRouter`] ties them to the
//! route seam.

pub mod backend;
pub mod conn;
pub mod disconnect;
pub mod link;
pub mod lookups;
pub mod preflight;
pub mod publish;
pub mod reply;
mod value;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ipnet::IpNet;
use tracing::{info, warn};

use self::conn::{Event, Handshake, Role};
use self::link::{Completed, Due, Endpoint};
use self::lookups::{Join, Lookups};
use super::resolve::{Dest, Name, Names, Resolver};
use super::{Io, Note, Outcome, Resources, RouteFailure, Router, Ticket};
use crate::logtext::escaped;
use crate::ratelimit::RateLimited;
use crate::stats::Counter;
use crate::sys::lent::{Lent, LentOp};

/// Where Redis is and what to ask it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// The address resolved at start-up.
    pub addr: SocketAddr,
    /// The name `addr` was resolved from, if it was one: resolved again while ringgate runs.
    pub host: Option<Name>,
    pub handshake: Handshake,
    pub key: String,
    /// How long a new client's first datagrams wait for the backend key.
    pub timeout: Duration,
    /// Networks a backend from Redis must be in; empty allows any usable address.
    pub allow: Vec<IpNet>,
    /// Publish the session map (`--publish-sessions`).
    pub publish: Option<publish::Publish>,
}

/// The least time a handshake or a GET may go unanswered before the connection is dropped
/// (otherwise four lookup timeouts).
const STALL_MIN: Duration = Duration::from_secs(2);
/// Bytes one receive can take; replies larger than this arrive over several.
const RX_BYTES: usize = 16 * 1024;
/// The router's one timer (lookup deadlines, reconnects, stalls).
const TIMER: u16 = 0;
/// The lent stream the names' eventfd is read on (after the command and subscriber's).
const NAMES_STREAM: u16 = 2;

const COMMAND: usize = 0;
const SUBSCRIBER: usize = 1;
/// Distinct backends remembered for [`Router::is_backend`]: the control plane's pool is small;
/// an older one forgotten is still caught by the worker's loop guard.
const RECENT_BACKENDS: usize = 64;

pub struct RedisRouter {
    settings: Settings,
    /// `[command, subscriber]`, on lent streams 0 and 1.
    ends: [Endpoint; 2],
    lookups: Lookups,
    timer_armed: bool,
    timer_tick: Duration,
    stopping: bool,
    events: Vec<Event>,
    /// Backends the key has named, newest last, at most [`RECENT_BACKENDS`].
    recent: Vec<SocketAddr>,
    /// Names in the key, and the Redis server's own name.
    names: Option<Names>,
    publisher: Option<publish::Publisher>,
    warn_conn: RateLimited,
    warn_value: RateLimited,
    warn_missing: RateLimited,
}

impl RedisRouter {
    pub fn new(settings: Settings, now: Instant, resolver: Option<Resolver>) -> RedisRouter {
        let publisher = settings.publish.as_ref().map(publish::Publisher::new);
        let timer_tick =
            (settings.timeout / 4).clamp(Duration::from_millis(5), Duration::from_millis(50));
        RedisRouter {
            settings,
            ends: [
                Endpoint::new(Role::Command, COMMAND as u16, now),
                Endpoint::new(Role::Subscriber, SUBSCRIBER as u16, now),
            ],
            lookups: Lookups::default(),
            timer_armed: false,
            timer_tick,
            stopping: false,
            events: Vec::new(),
            recent: Vec::new(),
            names: resolver.and_then(|r| Names::new(r, NAMES_STREAM).ok()),
            publisher,
            warn_conn: RateLimited::default(),
            warn_value: RateLimited::default(),
            warn_missing: RateLimited::default(),
        }
    }

    fn stall(&self) -> Duration {
        (self.settings.timeout * 4).max(STALL_MIN)
    }

    fn on_event(&mut self, conn: usize, event: Event, io: &mut Io<'_>) {
        match event {
            Event::Ready => {
                info!(
                    connection = self.ends[conn].role().name(),
                    redis = %self.settings.addr,
                    "Redis connection ready"
                );
                self.send_get(io);
            }
            Event::Got(value) => {
                let (tickets, took) = self.lookups.answered(io.now);
                if let Some(took) = took {
                    io.counters.observe_lookup(took);
                }
                match self.route_of(&value) {
                    Ok(Dest::Addr(addr)) => {
                        let result = self.accept(addr, &value);
                        io.out.push(Outcome::Route { tickets, result });
                    }
                    Ok(Dest::Name(name)) => self.resolve(&name, tickets, &value, io),
                    Err(failure) => io.out.push(Outcome::Route {
                        tickets,
                        result: Err(failure),
                    }),
                }
            }
            Event::Wrote(ok) => io.counters.bump(if ok {
                Counter::SessionMapWritten
            } else {
                Counter::SessionMapFailed
            }),
            Event::Message(payload) => match disconnect::parse(&payload) {
                Some(target) => io.out.push(Outcome::Disconnect(target)),
                None => {
                    io.counters.bump(Counter::DisconnectInvalid);
                    if let Some(suppressed) = self.warn_value.check() {
                        warn!(message = %escaped(&payload, 64), suppressed, "ignoring an invalid disconnect message");
                    }
                }
            },
        }
    }

    /// Where Redis is now: its name's latest address if `REDIS_ADDR` is a name, else the
    /// address resolved at start-up.
    fn redis_addr(&mut self, now: Instant) -> SocketAddr {
        match (&self.settings.host, &mut self.names) {
            (Some(host), Some(names)) => names.peek(host, now).unwrap_or(self.settings.addr),
            _ => self.settings.addr,
        }
    }

    /// Drops connection `conn` (see [`Endpoint::fail`]); on the command connection every
    /// waiting request fails as `unavailable`.
    fn fail(&mut self, conn: usize, why: &str, io: &mut Io<'_>) {
        let end = &mut self.ends[conn];
        let role = end.role();
        io.counters.bump(match role {
            Role::Command => Counter::RedisCommandFailures,
            Role::Subscriber => Counter::RedisSubscriberFailures,
        });
        let delay = end.fail(&mut io.streams, io.now);
        if let Some(suppressed) = self.warn_conn.check() {
            warn!(connection = role.name(), redis = %self.settings.addr, error = %escaped(why.as_bytes(), 200),
                  retry_ms = delay.as_millis() as u64, suppressed, "Redis connection lost");
        }
        if role == Role::Command {
            // Waiters keep waiting, within their deadlines, for the reconnect.
            self.lookups.get_lost();
        }
    }

    /// Sends the `GET` waiters need, if the command connection can take it.
    fn send_get(&mut self, io: &mut Io<'_>) {
        if self.lookups.needs_get()
            && self.ends[COMMAND].up()
            && self.ends[COMMAND].conn.get(&self.settings.key)
        {
            self.lookups.sent(io.now);
            io.counters.bump(Counter::RedisLookups);
        }
    }

    fn drive(&mut self, conn: usize, io: &mut Io<'_>) {
        let stall = self.stall();
        if conn == COMMAND && self.lookups.stalled(io.now, stall) {
            return self.fail(conn, "no reply to GET", io);
        }
        match self.ends[conn].due(io.now, stall) {
            Due::Nothing => {}
            Due::Fail(why) => return self.fail(conn, why, io),
            Due::Connect => {
                let addr = self.redis_addr(io.now);
                if let Err(why) = self.ends[conn].connect(addr, &mut io.streams, io.now) {
                    return self.fail(conn, &why, io);
                }
            }
        }
        self.ends[conn].pump(&mut io.streams);
    }
}

impl Router for RedisRouter {
    fn name(&self) -> &'static str {
        "redis"
    }

    fn links(&self) -> &'static [&'static str] {
        &["command", "subscriber"]
    }

    fn links_up(&self, up: &mut [bool]) {
        for (up, end) in up.iter_mut().zip(&self.ends) {
            *up = end.up();
        }
    }

    fn is_backend(&self, addr: SocketAddr) -> bool {
        self.recent.contains(&addr)
    }

    fn wants_notes(&self) -> bool {
        self.publisher.is_some()
    }

    fn note(&mut self, note: Note, io: &mut Io<'_>) {
        if let Some(publisher) = &mut self.publisher {
            publisher.note(note, io.counters);
        }
    }

    fn resources(&self) -> Resources {
        Resources {
            streams: if self.names.is_some() { 3 } else { 2 },
            stream_rx_bytes: RX_BYTES,
            timers: 1,
        }
    }

    /// Joins the `GET` in flight, or sends one. While the command connection is coming up
    /// (at start, or reconnecting) the request waits for it, within its deadline.
    fn request(&mut self, ticket: Ticket, io: &mut Io<'_>) {
        if self.stopping {
            return io.out.push(Outcome::Route {
                tickets: vec![ticket],
                result: Err(RouteFailure::Unavailable),
            });
        }
        match self.lookups.join(ticket, io.now, self.settings.timeout) {
            Join::Coalesced => io.counters.bump(Counter::RedisLookupsCoalesced),
            Join::Send => self.send_get(io),
        }
    }

    fn complete(&mut self, lent: Lent, res: i32, io: &mut Io<'_>) {
        if let Some(names) = &mut self.names
            && names.complete(lent, io.now)
        {
            return self.take_resolved(io);
        }
        let conn = match lent.op {
            LentOp::Timer { .. } => {
                self.timer_armed = false;
                return;
            }
            LentOp::Cancel | LentOp::Read { .. } => return,
            LentOp::Connect { stream } | LentOp::Send { stream } | LentOp::Recv { stream } => {
                usize::from(stream)
            }
        };
        let Some(end) = self.ends.get_mut(conn) else {
            return io.counters.bump(Counter::Anomalies);
        };
        let mut events = std::mem::take(&mut self.events);
        let completed = end.completed(
            lent,
            res,
            &mut io.streams,
            io.now,
            &self.settings.handshake,
            &mut events,
        );
        for event in events.drain(..) {
            self.on_event(conn, event, io);
        }
        self.events = events;
        match completed {
            Completed::Ok => {}
            Completed::Stale => io.counters.bump(Counter::Anomalies),
            Completed::Failed(why) => self.fail(conn, &why, io),
            Completed::Oversize(why) => {
                io.counters.bump(Counter::RedisOversizeReplies);
                self.fail(conn, &why, io);
            }
        }
    }

    fn poll(&mut self, io: &mut Io<'_>) {
        if self.stopping {
            return;
        }
        let expired = self.lookups.expire(io.now);
        if !expired.is_empty() {
            // No answer in time: Redis was slow, or not there to ask.
            let why = if self.ends[COMMAND].up() {
                RouteFailure::Timeout
            } else {
                RouteFailure::Unavailable
            };
            io.out.push(Outcome::Route {
                tickets: expired,
                result: Err(why),
            });
        }
        for conn in [COMMAND, SUBSCRIBER] {
            self.drive(conn, io);
        }
        self.send_get(io);
        if let Some(publisher) = &mut self.publisher
            && !publisher.is_empty()
        {
            publisher.flush(&mut self.ends[COMMAND].conn, io.counters);
            self.ends[COMMAND].pump(&mut io.streams);
        }
        if let Some(names) = &mut self.names {
            names.poll(&mut io.streams, io.now);
        }
        self.take_resolved(io);
        let waiting = self.lookups.waiting()
            || self.ends.iter().any(Endpoint::waiting)
            || self.names.as_ref().is_some_and(Names::waiting);
        if waiting && !self.timer_armed && io.streams.timer(TIMER, self.timer_tick, 0).is_ok() {
            self.timer_armed = true;
        }
    }

    fn shutdown(&mut self, io: &mut Io<'_>) {
        self.stopping = true;
        let _ = self.lookups.lost();
        if let Some(names) = &mut self.names {
            names.shutdown(&mut io.streams);
        }
        for end in &mut self.ends {
            end.shutdown(&mut io.streams);
        }
        let _ = io.streams.cancel_timer(TIMER);
    }
}
