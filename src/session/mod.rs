//! The session table: one entry per client address, owned by one worker.
//!
//! Sessions live in a slab addressed by a 24-bit slot number and a generation (a [`Key`]); a
//! `hashbrown` map finds a client's slot. A session moves through one transition per method:
//! [`Sessions::insert`] (→ resolving: waiting for a route, its datagrams held),
//! [`Sessions::open`] (→ open: connected upstream), [`Sessions::begin_close`] (→ closing: out of
//! the maps, so the client's next datagram starts a new session) and, once the last operation
//! naming it has completed, free: its upstream socket is closed and its slot reused with a new
//! generation, so a late completion that names the old one is recognised as stale.
//!
//! The table keeps its own invariants: it counts the ring operations that name each session
//! (`in_flight`: sends, the armed receive) through [`Sessions::op_started`],
//! [`Sessions::op_finished`], [`Sessions::arm_recv`] and [`Sessions::recv_ended`], and frees a
//! closing session the moment that count reaches zero. The worker asks; it never reaches in.
//!
//! Hostile traffic is bounded here, as conntrack bounds unreplied UDP entries: a session is
//! *confirmed* once its backend has answered and its client has sent again after that answer
//! (a spoofer who never sees the answer cannot do that). Until then it is on the unconfirmed
//! list, oldest first (`unconfirmed`): it expires after the unreplied timeout, and when the
//! table is full a newcomer evicts the oldest of them. A confirmed session is never evicted.
//! [`Sessions::classify`] is the pure decision for a client datagram; finding sessions by
//! other keys (idle, a disconnect's target) is in `find`. The transitions others react to
//! (opened, confirmed, closed) are announced as [`Event`]s (`events`).
//!
//! The upstream socket type is a parameter (`U`) only so that the table can be tested and
//! benchmarked without a million sockets; ringgate uses `socket2::Socket`.

use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;

use hashbrown::HashMap;
use socket2::Socket;

use crate::addr::canonical;
use crate::route::Lease;
use crate::stats::Counter;
use crate::sys::sockaddr::RawSockAddr;
use crate::user_data::GENERATION_MASK;
pub use crate::user_data::Key;

mod events;
mod find;
mod ingress;
mod ops;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_events;
#[cfg(test)]
mod tests_hostile;
mod traffic;
mod transit;
mod unconfirmed;

pub use events::{Event, Why};
pub use ingress::Limits;
pub use ops::RecvEnd;
pub use traffic::{Reply, Upstream};
pub use transit::{Leaving, LeftBehind, OpenSession, PendingSession};

/// A client datagram held in its provided buffer while the session's route is looked up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Held {
    pub bid: u16,
    pub len: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Waiting for a route; datagrams are held.
    Resolving,
    /// Connected upstream; datagrams flow.
    Open,
    /// Out of the maps, waiting for its operations to complete.
    Closing,
}

#[derive(Debug)]
struct Session<U> {
    /// The client's address, canonical (plain IPv4 for an IPv4 client of a dual-stack
    /// listener): what the maps, logs and disconnect messages know it by.
    client: SocketAddr,
    /// The client's address as received, pre-encoded for every reply's `sendmsg`.
    client_raw: RawSockAddr,
    phase: Phase,
    /// The connected upstream socket; `Some` once the session is open.
    upstream: Option<U>,
    /// The upstream socket's local address (the source the backend sees).
    upstream_local: Option<SocketAddr>,
    /// The backend it is connected to; `Some` once the session is open.
    backend: Option<SocketAddr>,
    /// The router's note of where it placed the session, handed back when it closes.
    lease: Option<Lease>,
    /// Its backend's slot in the worker's per-backend counts (`stats::backends`).
    backend_slot: u8,
    held: Vec<Held>,
    /// The reaper tick of the last datagram in either direction.
    last_tick: u32,
    /// Operations the ring still holds that name this session.
    in_flight: u32,
    /// Whether the multishot receive on `upstream` is armed.
    recv_armed: bool,
    /// The reaper tick the session was created at.
    created_tick: u32,
    /// The backend has answered.
    answered: bool,
    /// The client sent again after the backend answered: off the unconfirmed list for good.
    confirmed: bool,
    /// Neighbours on the unconfirmed list (slots; [`NIL`] at its ends and when off it).
    prev: u32,
    next: u32,
    /// The address the client sent to, when the listener is a wildcard: replies leave from it.
    local: Option<IpAddr>,
    /// The tick the session was last announced at (opened, or refreshed: the session map).
    noted_tick: u32,
    /// A PROXY protocol header to put before the first datagram up (or every one).
    prefix: Option<Box<[u8]>>,
    prefix_every: bool,
    prefix_sent: bool,
}

/// No slot: the end of the unconfirmed list.
const NIL: u32 = u32::MAX;

#[derive(Debug)]
struct Slot<U> {
    generation: u32,
    session: Option<Session<U>>,
}

/// What to do with a datagram from a client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ingress {
    /// An open session: send it upstream.
    Forward(Key),
    /// A session still resolving its route with room to hold one more datagram.
    Hold(Key),
    /// An unknown client with room for a new session.
    Create,
    /// An unknown client, the table full: close this (the oldest unconfirmed) session as
    /// evicted, then create.
    Evict(Key),
    /// An unknown client and no room for it (the reason to count). Whether a newcomer may start
    /// a session at all is the newcomer gate's decision (`admission`); this is the table's part.
    Full(Counter),
    /// Drop it, counting the reason.
    Drop(Counter),
}

/// What a session held when it began closing, for the caller to dispose of.
#[derive(Debug, PartialEq, Eq)]
pub struct Closed {
    pub client: SocketAddr,
    pub upstream_local: Option<SocketAddr>,
    /// Datagrams still held (a session closed while resolving): drop them.
    pub held: Vec<Held>,
    /// Hand back to the router.
    pub lease: Option<Lease>,
    /// The backend's slot in the per-backend counts, if the session had opened.
    pub backend_slot: Option<u8>,
    /// The receive is still armed: cancel it (the session is freed on its final completion).
    pub recv_armed: bool,
}

#[derive(Debug)]
pub struct Sessions<U = Socket> {
    by_client: HashMap<SocketAddr, u32>,
    /// Open sessions by their upstream socket's local port (unique on a host), for disconnects.
    by_upstream_port: HashMap<u16, u32>,
    slots: Vec<Slot<U>>,
    free: Vec<u32>,
    /// Sessions holding a slot, closing ones included, and of those the closing ones.
    live: usize,
    closing: usize,
    /// At most `max` sessions not closing, and `hard` slots in all (see [`Limits::caps`]).
    max: usize,
    hard: usize,
    full: Counter,
    pending_max: usize,
    /// The unconfirmed list: oldest (head) to newest (tail).
    head: u32,
    tail: u32,
    /// Datagrams held by all resolving sessions, and the most the worker may hold: held
    /// datagrams keep their receive buffers, and every socket of the worker draws on the same
    /// buffer ring, so without a worker-wide cap a burst of new clients waiting on a slow route
    /// could starve established sessions of buffers.
    held_total: usize,
    held_max: usize,
    /// Announced since the worker last took them (`events`).
    events: Vec<Event>,
}

impl<U: AsRawFd> Sessions<U> {
    pub fn new(limits: Limits) -> Self {
        let (max, hard, full) = limits.caps();
        Sessions {
            by_client: HashMap::new(),
            by_upstream_port: HashMap::new(),
            slots: Vec::new(),
            free: Vec::new(),
            live: 0,
            closing: 0,
            max,
            hard,
            full,
            pending_max: limits.pending_max,
            head: NIL,
            tail: NIL,
            held_total: 0,
            held_max: limits.held_max,
            events: Vec::new(),
        }
    }

    /// Sessions holding a slot, closing ones included.
    pub fn live(&self) -> usize {
        self.live
    }

    /// Starts a session for `client`, resolving, unconfirmed, holding its first datagram. The
    /// caller checked that [`Sessions::classify`] said [`Ingress::Create`] (or evicted first).
    ///
    /// `client` is as received; the session knows it by its canonical form (IPv4 for a
    /// dual-stack listener's `::ffff:a.b.c.d`) and replies to it as received.
    pub fn insert(&mut self, client: SocketAddr, tick: u32, first: Held) -> Key {
        let reply_to = RawSockAddr::encode(client);
        let client = canonical(client);
        let session = Session {
            client,
            client_raw: reply_to,
            phase: Phase::Resolving,
            upstream: None,
            upstream_local: None,
            backend: None,
            lease: None,
            backend_slot: 0,
            held: vec![first],
            last_tick: tick,
            in_flight: 0,
            recv_armed: false,
            created_tick: tick,
            answered: false,
            confirmed: false,
            prev: NIL,
            next: NIL,
            local: None,
            noted_tick: tick,
            prefix: None,
            prefix_every: false,
            prefix_sent: false,
        };
        let slot = self.take_slot(session);
        self.by_client.insert(client, slot);
        self.live += 1;
        self.held_total += 1;
        self.link_unconfirmed(slot);
        Key {
            slot,
            generation: self.slots[slot as usize].generation,
        }
    }

    /// The session of `key`, whatever its phase.
    fn get(&mut self, key: Key) -> Option<&mut Session<U>> {
        let entry = self.slots.get_mut(key.slot as usize)?;
        if entry.generation != key.generation {
            return None;
        }
        entry.session.as_mut()
    }

    /// The session of `key` if it is in `phase`.
    fn in_phase(&mut self, key: Key, phase: Phase) -> Option<&mut Session<U>> {
        self.get(key).filter(|s| s.phase == phase)
    }

    /// The client of the session of `key`.
    pub fn client(&self, key: Key) -> Option<SocketAddr> {
        let entry = self.slots.get(key.slot as usize)?;
        (entry.generation == key.generation).then_some(entry.session.as_ref()?.client)
    }

    /// The backend slot of an open (or closing) session of `key`.
    pub fn backend_slot(&self, key: Key) -> Option<u8> {
        let entry = self.slots.get(key.slot as usize)?;
        let s = entry.session.as_ref()?;
        (entry.generation == key.generation && s.upstream.is_some()).then_some(s.backend_slot)
    }

    pub fn phase(&self, key: Key) -> Option<Phase> {
        let entry = self.slots.get(key.slot as usize)?;
        (entry.generation == key.generation).then_some(entry.session.as_ref()?.phase)
    }

    /// Holds a datagram for a resolving session. False (nothing held) if it is not resolving.
    pub fn hold(&mut self, key: Key, held: Held) -> bool {
        let Some(s) = self.in_phase(key, Phase::Resolving) else {
            return false;
        };
        s.held.push(held);
        self.held_total += 1;
        true
    }

    /// Resolving → open on `upstream`, whose local address is `local`, connected to `backend`
    /// and placed with `lease`; announced as [`Event::Opened`]. Returns the datagrams it held,
    /// to flush in order; `None` (and `upstream` closed) if the session is not resolving.
    pub fn open(
        &mut self,
        key: Key,
        upstream: U,
        local: SocketAddr,
        backend: SocketAddr,
        lease: Option<Lease>,
        backend_slot: u8,
    ) -> Option<Vec<Held>> {
        let s = self.in_phase(key, Phase::Resolving)?;
        s.phase = Phase::Open;
        s.upstream = Some(upstream);
        s.upstream_local = Some(local);
        s.backend = Some(backend);
        s.lease = lease;
        s.backend_slot = backend_slot;
        let client = s.client;
        let held = std::mem::take(&mut s.held);
        self.events.push(Event::Opened {
            key,
            client,
            upstream: local,
            backend,
        });
        self.held_total -= held.len();
        self.by_upstream_port.insert(local.port(), key.slot);
        Some(held)
    }

    /// Resolving or open → closing, for `why`: out of the maps at once, and announced as
    /// [`Event::Closed`] if it had opened. Returns what the session held for the caller to
    /// dispose of; `None` if it was already closing or is gone. A session with no operation in
    /// flight is freed at once.
    pub fn begin_close(&mut self, key: Key, why: Why) -> Option<Closed> {
        let s = self.get(key)?;
        if s.phase == Phase::Closing {
            return None;
        }
        s.phase = Phase::Closing;
        let closed = Closed {
            client: s.client,
            upstream_local: s.upstream_local,
            held: std::mem::take(&mut s.held),
            lease: s.lease.take(),
            backend_slot: s.upstream.is_some().then_some(s.backend_slot),
            recv_armed: s.recv_armed,
        };
        if let (Some(upstream), Some(backend)) = (closed.upstream_local, s.backend) {
            self.events.push(Event::Closed {
                key,
                client: closed.client,
                upstream,
                backend,
                why,
            });
        }
        self.held_total -= closed.held.len();
        self.closing += 1;
        self.by_client.remove(&closed.client);
        if let Some(local) = closed.upstream_local {
            self.by_upstream_port.remove(&local.port());
        }
        self.unlink_unconfirmed(key.slot);
        self.free_if_done(key);
        Some(closed)
    }

    /// Frees a closing session whose operations have all completed, closing its socket.
    fn free_if_done(&mut self, key: Key) -> bool {
        let Some(entry) = self.slots.get_mut(key.slot as usize) else {
            return false;
        };
        let done = entry.generation == key.generation
            && entry
                .session
                .as_ref()
                .is_some_and(|s| s.phase == Phase::Closing && s.in_flight == 0);
        if done {
            entry.session = None;
            entry.generation = (entry.generation + 1) & GENERATION_MASK;
            self.free.push(key.slot);
            self.live -= 1;
            self.closing -= 1;
        }
        done
    }
}
