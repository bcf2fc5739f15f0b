//! Where a new session goes: one seam, one module per source of routes.
//!
//! A worker owns one [`Router`], chosen once from the configuration by [`build`]. It asks the
//! router for a new client's backend with a [`Ticket`] and gets the answer as an
//! [`Outcome::Route`] in its outcome list, now (static backends) or in a later batch of the same
//! ring (Redis). The new session's datagrams wait, held and bounded, meanwhile. A router may also
//! close sessions ([`Outcome::Disconnect`]) and drive operations of its own in the worker's ring
//! (streams and timers whose memory the driver lends, through `sys::driver::Streams`).
//!
//! A router never sees a session: a ticket is an opaque cookie, and a lease is the router's own
//! note of where it placed a session, handed back when the session closes.
//!
//! Adding a source is one module implementing [`Router`], a [`Routes`] variant and one line in
//! [`build`].

pub mod fixed;
pub mod redis;
pub mod resolve;

use std::net::SocketAddr;
use std::time::Instant;

use crate::stats::{Counter, Counters};
use crate::sys::driver::Streams;
use crate::sys::lent::Lent;

/// Where routes come from, as configured.
// Built once per process and read once per worker: the variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Routes {
    /// A fixed list of backends (`--backend`), addresses or names.
    Fixed(Vec<resolve::Dest>),
    /// The backend key in Redis, and its disconnect channel.
    Redis(redis::Settings),
}

impl Routes {
    /// Static backends, each an address.
    pub fn fixed(backends: &[SocketAddr]) -> Routes {
        Routes::Fixed(backends.iter().copied().map(resolve::Dest::Addr).collect())
    }
}

/// Builds worker `worker`'s router; names are resolved through `resolver`.
pub fn build(
    routes: &Routes,
    worker: usize,
    now: Instant,
    resolver: Option<resolve::Resolver>,
) -> Box<dyn Router> {
    match routes {
        Routes::Fixed(backends) => Box::new(fixed::Fixed::new(backends.clone(), worker, resolver)),
        Routes::Redis(settings) => {
            Box::new(redis::RedisRouter::new(settings.clone(), now, resolver))
        }
    }
}

/// Names one pending request; the router hands it back in the answer and never looks inside.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Ticket(pub u64);

/// A router's own note of where it placed a session, handed back by [`Router::release`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lease(pub u32);

/// Where a session goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backend {
    pub addr: SocketAddr,
    pub lease: Option<Lease>,
}

/// Why a new session got no route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RouteFailure {
    /// There is no route to give (no backend; the key does not exist).
    Missing,
    /// The route is not a usable `ip:port`.
    Invalid,
    /// The route is outside `--backend-allow`.
    Disallowed,
    /// The source answered with an error.
    Error,
    /// The source cannot be asked (not connected, stopping).
    Unavailable,
    /// No answer in time.
    Timeout,
    /// The route is a name that did not resolve.
    Resolve,
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
            RouteFailure::Resolve => Counter::RouteResolve,
        }
    }
}

/// Sessions a router asks to close.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// The session whose upstream socket has this local port (the source port the backend
    /// sees).
    Port(u16),
    /// The session of this client address, or the one whose upstream socket has this local
    /// address.
    Addr(SocketAddr),
}

/// What happened to a session, for a router that publishes the session map.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Note {
    /// Opened: the backend sees the client as `upstream` (the session socket's local address).
    Opened {
        upstream: SocketAddr,
        client: SocketAddr,
    },
    /// Still alive (its entry's expiry is due for a refresh).
    Alive {
        upstream: SocketAddr,
        client: SocketAddr,
    },
    Closed {
        upstream: SocketAddr,
    },
}

/// What the worker must do after a router heard something.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// These requests have their answer.
    Route {
        tickets: Vec<Ticket>,
        result: Result<Backend, RouteFailure>,
    },
    /// Close the sessions this names.
    Disconnect(Target),
}

/// Ring resources a router drives: streams and timers the driver lends memory to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Resources {
    pub streams: usize,
    pub stream_rx_bytes: usize,
    pub timers: usize,
}

/// What a router may touch while it handles something: the streams and timers of the worker's
/// driver, its counters, the batch's clock, and the outcome list the worker carries out after
/// the call.
pub struct Io<'a> {
    pub streams: Streams<'a>,
    pub counters: &'a mut Counters,
    pub now: Instant,
    pub out: &'a mut Vec<Outcome>,
}

/// A source of routes, owned by one worker and driven from its ring.
pub trait Router {
    /// `fixed`, `redis`: in logs and metrics.
    fn name(&self) -> &'static str;

    /// The router's connections, by name; readiness waits for every one to be up.
    fn links(&self) -> &'static [&'static str] {
        &[]
    }

    /// Writes whether each connection in [`Router::links`] is up.
    fn links_up(&self, _up: &mut [bool]) {}

    /// The streams and timers it needs the ring to lend it.
    fn resources(&self) -> Resources {
        Resources::default()
    }

    /// Asks where a new session goes; the answer is an [`Outcome::Route`] naming `ticket`,
    /// pushed to `io.out` now or in a later batch.
    fn request(&mut self, ticket: Ticket, io: &mut Io<'_>);

    /// A session another process placed on `backend` arrives (a takeover): count it as placed
    /// here, and return its lease.
    fn adopt(&mut self, _backend: SocketAddr) -> Option<Lease> {
        None
    }

    /// A session this router placed with `lease` has closed.
    fn release(&mut self, _lease: Lease) {}

    /// Whether every live session is to be noted again now ([`Note::Alive`]): the session
    /// map's server changed (a failover, a restart) and may not hold the entries.
    fn take_republish(&mut self) -> bool {
        false
    }

    /// Sessions' lives, for a router that publishes the session map; most ignore them.
    fn note(&mut self, _note: Note, _io: &mut Io<'_>) {}

    /// Whether it wants [`Note`]s.
    fn wants_notes(&self) -> bool {
        false
    }

    /// Whether `addr` is one of its backends (static, or recently given out). No session may
    /// start from a backend's address: that datagram would start a forwarding loop.
    fn is_backend(&self, _addr: SocketAddr) -> bool {
        false
    }

    /// One of the router's lent operations completed with `res`.
    fn complete(&mut self, _op: Lent, _res: i32, _io: &mut Io<'_>) {}

    /// Once per batch, after every completion: start what is due, give up on what is late.
    fn poll(&mut self, _io: &mut Io<'_>) {}

    /// Stops for good: every operation is cancelled, pending requests are forgotten (their
    /// sessions are being closed).
    fn shutdown(&mut self, _io: &mut Io<'_>) {}
}
