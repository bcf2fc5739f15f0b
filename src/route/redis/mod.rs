//! Routes from Redis, as udp-gate takes them: each new client goes to the value of the backend
//! key, and messages on the disconnect channel close sessions.
//!
//! Each worker talks to Redis itself, through its own ring: a command connection (pipelined
//! `GET`s of the backend key, replies matched in order) and a subscriber connection (the
//! disconnect channels), each on a stream the driver lends; behind Sentinel a third connection
//! to a sentinel says where the master is ([`sentinel`]). The pieces: replies decoded as bytes
//! arrive ([`reply`]), a connection's state machine ([`conn`]), its socket and operations
//! ([`link`]), coalesced lookups with deadlines ([`lookups`]), backend value validation
//! ([`backend`]) and disconnect messages ([`disconnect`]). [`RedisRouter`] ties them to the
//! route seam. The fleet's heartbeat is not a worker's (`crate::heartbeat`).

pub mod backend;
pub mod blocking;
pub mod conn;
mod connect;
pub mod disconnect;
pub mod handshake;
pub mod link;
pub mod lookups;
pub mod preflight;
pub mod publish;
pub mod reply;
pub mod sentinel;
mod value;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ipnet::IpNet;
use tracing::{info, warn};

use self::conn::{Event, Handshake, Role};
use self::disconnect::Verdict;
use self::link::{Completed, Endpoint};
use self::lookups::{Join, Lookups};
use self::sentinel::{Heard, Sentinel, Sentinels};
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
    /// Where the master is, when Sentinel says (`--redis-sentinel`); `addr` is then unused.
    pub sentinel: Option<Sentinels>,
    /// Whether a bare port on the shared channel closes sessions (`--disconnect-bare-ports`);
    /// this instance's own channel always takes one.
    pub bare_ports: bool,
    /// This ringgate's name in the fleet (`--instance-id`): its heartbeat key and channel.
    pub instance: String,
}

/// The least time a handshake or a GET may go unanswered before the connection is dropped
/// (otherwise four lookup timeouts).
const STALL_MIN: Duration = Duration::from_secs(2);
/// Bytes one receive can take; replies larger than this arrive over several.
const RX_BYTES: usize = 16 * 1024;
/// The router's one timer (lookup deadlines, reconnects, stalls).
const TIMER: u16 = 0;
const COMMAND: usize = 0;
const SUBSCRIBER: usize = 1;
/// The lent stream of the sentinel connection, if any (after the command and subscriber's);
/// the names' eventfd is read on the next one.
const SENTINEL_STREAM: u16 = 2;
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
    /// Behind Sentinel: where the master is.
    sentinel: Option<Sentinel>,
    /// Each data connection's sentinel generation and address when it connected.
    used: [(u64, Option<SocketAddr>); 2],
    /// Live sessions' map entries are to be written again (a new master, or a reconnect).
    republish: bool,
    warn_conn: RateLimited,
    warn_value: RateLimited,
    warn_missing: RateLimited,
}

impl RedisRouter {
    pub fn new(settings: Settings, now: Instant, resolver: Option<Resolver>) -> RedisRouter {
        let publisher = settings.publish.as_ref().map(publish::Publisher::new);
        let timer_tick =
            (settings.timeout / 4).clamp(Duration::from_millis(5), Duration::from_millis(50));
        let sentinel = settings
            .sentinel
            .clone()
            .map(|s| Sentinel::new(s, SENTINEL_STREAM, now));
        let names_stream = SENTINEL_STREAM + u16::from(sentinel.is_some());
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
            names: resolver.and_then(|r| Names::new(r, names_stream).ok()),
            publisher,
            sentinel,
            used: [(0, None); 2],
            republish: false,
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
                    redis = %self.used[conn].1.unwrap_or(self.settings.addr),
                    "Redis connection ready"
                );
                // This server may not hold the entries (a promoted replica, a restart).
                self.republish |= conn == COMMAND && self.publisher.is_some();
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
            Event::Message { channel, payload } => self.on_message(&channel, payload, io),
            Event::Master(_) | Event::Reply(_) => io.counters.bump(Counter::Anomalies),
        }
    }

    /// A message on a disconnect channel: the shared one, or this instance's own.
    fn on_message(&mut self, channel: &[u8], payload: Option<Vec<u8>>, io: &mut Io<'_>) {
        let own = self.settings.handshake.instance_channel.as_deref()
            == Some(std::str::from_utf8(channel).unwrap_or_default());
        let shown = escaped(payload.as_deref().unwrap_or(channel), 64);
        let verdict = disconnect::judge(payload.as_deref(), own, self.settings.bare_ports);
        let Some((counter, why)) = verdict.counted() else {
            if let Verdict::Close(target) = verdict {
                io.out.push(Outcome::Disconnect(target));
            }
            return;
        };
        io.counters.bump(counter);
        if let Some(suppressed) = self.warn_value.check() {
            warn!(message = %shown, suppressed, "{why}");
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
}

impl Router for RedisRouter {
    fn name(&self) -> &'static str {
        "redis"
    }

    fn links(&self) -> &'static [&'static str] {
        if self.sentinel.is_some() {
            &["command", "subscriber", "sentinel"]
        } else {
            &["command", "subscriber"]
        }
    }

    fn links_up(&self, up: &mut [bool]) {
        for (up, end) in up.iter_mut().zip(&self.ends) {
            *up = end.up();
        }
        if let (Some(sentinel), Some(up)) = (&self.sentinel, up.get_mut(2)) {
            *up = sentinel.up();
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

    fn take_republish(&mut self) -> bool {
        std::mem::take(&mut self.republish)
    }

    fn resources(&self) -> Resources {
        Resources {
            streams: 2 + usize::from(self.sentinel.is_some()) + usize::from(self.names.is_some()),
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
        if conn == usize::from(SENTINEL_STREAM)
            && let Some(sentinel) = &mut self.sentinel
        {
            let mut events = std::mem::take(&mut self.events);
            let (completed, heard) =
                sentinel.complete(lent, res, &mut io.streams, io.now, &mut events);
            self.events = events;
            // What the replies said first (a new master), then what the completion says.
            let failed = matches!(heard, Heard::Fail(_));
            self.on_heard(heard, io);
            return match completed {
                Completed::Ok => {}
                Completed::Stale => io.counters.bump(Counter::Anomalies),
                Completed::Failed(why) | Completed::Oversize(why) if !failed => {
                    self.on_heard(Heard::Fail(why), io)
                }
                Completed::Failed(_) | Completed::Oversize(_) => {}
            };
        }
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
        if let Some(sentinel) = &mut self.sentinel {
            sentinel.drive(self.names.as_mut(), &mut io.streams, io.now, io.counters);
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
            || self.sentinel.as_ref().is_some_and(Sentinel::waiting)
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
        if let Some(sentinel) = &mut self.sentinel {
            sentinel.shutdown(&mut io.streams);
        }
        let _ = io.streams.cancel_timer(TIMER);
    }
}
