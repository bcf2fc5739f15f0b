//! The session table: one entry per client address, owned by one worker.
//!
//! Sessions live in a slab (`slots`) addressed by a 24-bit slot number and a generation; a
//! `hashbrown` map finds a client's slot. The generation changes every time a slot is freed, so a
//! late completion that names an old generation is recognised as stale. A session leaves the map
//! when it starts closing (a new datagram from that client starts a new session) but keeps its
//! slot until every operation that names it has completed (`in_flight == 0`): only then is its
//! upstream socket closed and the slot reused.
//!
//! [`Sessions::classify`] is the pure decision for a client datagram; the worker carries it out.

use std::net::SocketAddr;

use hashbrown::HashMap;
use socket2::Socket;

use crate::sockaddr::RawSockAddr;
use crate::stats::Counter;
use crate::user_data::{GENERATION_MASK, SLOTS_MAX};

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
    /// Out of the map, waiting for its operations to complete.
    Closing,
}

#[derive(Debug)]
pub struct Session {
    pub client: SocketAddr,
    /// The client's address pre-encoded for every reply's `sendmsg`.
    pub client_raw: RawSockAddr,
    pub phase: Phase,
    /// The connected upstream socket; `Some` once the session is open.
    pub upstream: Option<Socket>,
    /// The upstream socket's local address (the source the backend sees).
    pub upstream_local: Option<SocketAddr>,
    /// The static backend index, released when the session closes.
    pub backend: Option<usize>,
    pub held: Vec<Held>,
    /// The reaper tick of the last datagram in either direction.
    pub last_tick: u32,
    /// Operations the ring still holds that name this session.
    pub in_flight: u32,
    /// Whether the multishot receive on `upstream` is armed.
    pub recv_armed: bool,
}

#[derive(Debug)]
struct Slot {
    generation: u32,
    session: Option<Session>,
}

/// What to do with a datagram from a client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ingress {
    /// An open session: send it upstream.
    Forward { slot: u32, generation: u32 },
    /// A session still resolving its route with room to hold one more datagram.
    Hold { slot: u32, generation: u32 },
    /// An unknown client with room for a new session.
    Create,
    /// Drop it, counting the reason.
    Drop(Counter),
}

#[derive(Debug)]
pub struct Sessions {
    by_client: HashMap<SocketAddr, u32>,
    /// Open sessions by their upstream socket's local port (unique on a host), for disconnects.
    by_upstream_port: HashMap<u16, u32>,
    slots: Vec<Slot>,
    free: Vec<u32>,
    live: usize,
    max: usize,
    pending_max: usize,
    /// Datagrams held by all resolving sessions, and the most the worker may hold: held
    /// datagrams keep their receive buffers, and every socket of the worker draws on the same
    /// buffer ring, so without a worker-wide cap a burst of new clients waiting on a slow route
    /// could starve established sessions of buffers.
    held_total: usize,
    held_max: usize,
}

impl Sessions {
    /// `max` sessions at once (open, resolving or closing), each holding at most `pending_max`
    /// datagrams while it resolves, and all of them together at most `held_max`. `max` is
    /// capped at the slot field's width.
    pub fn new(max: usize, pending_max: usize, held_max: usize) -> Self {
        Sessions {
            by_client: HashMap::new(),
            by_upstream_port: HashMap::new(),
            slots: Vec::new(),
            free: Vec::new(),
            live: 0,
            max: max.min(SLOTS_MAX as usize),
            pending_max,
            held_total: 0,
            held_max,
        }
    }

    /// Sessions holding a slot, closing ones included.
    pub fn live(&self) -> usize {
        self.live
    }

    pub fn classify(&self, client: &SocketAddr) -> Ingress {
        let Some(&slot) = self.by_client.get(client) else {
            return if self.live >= self.max {
                Ingress::Drop(Counter::DropMaxSessions)
            } else if self.held_total >= self.held_max {
                // A new session's first datagram is held too.
                Ingress::Drop(Counter::DropPendingFull)
            } else {
                Ingress::Create
            };
        };
        let entry = &self.slots[slot as usize];
        let generation = entry.generation;
        match entry.session.as_ref().map(|s| (s.phase, s.held.len())) {
            Some((Phase::Open, _)) => Ingress::Forward { slot, generation },
            Some((Phase::Resolving, held))
                if held < self.pending_max && self.held_total < self.held_max =>
            {
                Ingress::Hold { slot, generation }
            }
            Some((Phase::Resolving, _)) => Ingress::Drop(Counter::DropPendingFull),
            // Closing sessions and empty slots are never in the map.
            Some((Phase::Closing, _)) | None => Ingress::Drop(Counter::DropSessionClosed),
        }
    }

    /// Starts a session for `client` in [`Phase::Resolving`]. The caller checked
    /// [`Sessions::classify`] said [`Ingress::Create`].
    pub fn insert(&mut self, client: SocketAddr, tick: u32) -> (u32, u32) {
        let session = Session {
            client,
            client_raw: RawSockAddr::encode(client),
            phase: Phase::Resolving,
            upstream: None,
            upstream_local: None,
            backend: None,
            held: Vec::new(),
            last_tick: tick,
            in_flight: 0,
            recv_armed: false,
        };
        let slot = match self.free.pop() {
            Some(slot) => {
                self.slots[slot as usize].session = Some(session);
                slot
            }
            None => {
                self.slots.push(Slot {
                    generation: 0,
                    session: Some(session),
                });
                (self.slots.len() - 1) as u32
            }
        };
        self.by_client.insert(client, slot);
        self.live += 1;
        (slot, self.slots[slot as usize].generation)
    }

    /// Holds a datagram for a resolving session. False (nothing held) if the session is gone.
    pub fn hold(&mut self, slot: u32, generation: u32, held: Held) -> bool {
        let Some(s) = self.get(slot, generation) else {
            return false;
        };
        s.held.push(held);
        self.held_total += 1;
        true
    }

    /// Takes every datagram a session holds (to flush or drop them).
    pub fn take_held(&mut self, slot: u32, generation: u32) -> Vec<Held> {
        let held = self
            .get(slot, generation)
            .map(|s| std::mem::take(&mut s.held))
            .unwrap_or_default();
        self.held_total -= held.len();
        held
    }

    /// The session in `slot` if it is still of `generation`.
    #[inline]
    pub fn get(&mut self, slot: u32, generation: u32) -> Option<&mut Session> {
        let entry = self.slots.get_mut(slot as usize)?;
        if entry.generation != generation {
            return None;
        }
        entry.session.as_mut()
    }

    /// Takes the session out of the map and marks it closing. Returns it so the caller can
    /// cancel its receive and release its backend; `None` if it was already closing or gone.
    pub fn begin_close(&mut self, slot: u32, generation: u32) -> Option<&mut Session> {
        let session = self.get(slot, generation)?;
        if session.phase == Phase::Closing {
            return None;
        }
        session.phase = Phase::Closing;
        let client = session.client;
        let upstream_port = session.upstream_local.map(|a| a.port());
        self.by_client.remove(&client);
        if let Some(port) = upstream_port {
            self.by_upstream_port.remove(&port);
        }
        self.get(slot, generation)
    }

    /// Frees a closing session whose operations have all completed, closing its socket. Returns
    /// whether it was freed.
    pub fn release_if_done(&mut self, slot: u32, generation: u32) -> bool {
        let Some(entry) = self.slots.get_mut(slot as usize) else {
            return false;
        };
        let done = entry.generation == generation
            && entry
                .session
                .as_ref()
                .is_some_and(|s| s.phase == Phase::Closing && s.in_flight == 0);
        if done {
            entry.session = None;
            entry.generation = (entry.generation + 1) & GENERATION_MASK;
            self.free.push(slot);
            self.live -= 1;
        }
        done
    }

    /// Appends to `out` the slots of open or resolving sessions idle since before `cutoff_tick`.
    pub fn collect_idle(&self, cutoff_tick: u32, out: &mut Vec<(u32, u32)>) {
        for (slot, entry) in self.slots.iter().enumerate() {
            if let Some(s) = &entry.session
                && s.phase != Phase::Closing
                && s.last_tick < cutoff_tick
            {
                out.push((slot as u32, entry.generation));
            }
        }
    }

    /// Appends to `out` every session not already closing.
    pub fn collect_all(&self, out: &mut Vec<(u32, u32)>) {
        self.collect_idle(u32::MAX, out);
    }

    /// Marks a resolving session open on an upstream socket whose local address is `local`.
    pub fn opened(&mut self, slot: u32, generation: u32, local: SocketAddr) {
        if let Some(s) = self.get(slot, generation) {
            s.phase = Phase::Open;
            s.upstream_local = Some(local);
            self.by_upstream_port.insert(local.port(), slot);
        }
    }

    /// The session (not closing) of `client`, as `(slot, generation)`.
    pub fn by_client(&self, client: &SocketAddr) -> Option<(u32, u32)> {
        let slot = *self.by_client.get(client)?;
        Some((slot, self.slots[slot as usize].generation))
    }

    /// The open session whose upstream socket has local port `port`, with that local address.
    pub fn by_upstream_port(&self, port: u16) -> Option<(u32, u32, SocketAddr)> {
        let slot = *self.by_upstream_port.get(&port)?;
        let entry = &self.slots[slot as usize];
        let local = entry.session.as_ref()?.upstream_local?;
        Some((slot, entry.generation, local))
    }

    /// The client's open session, for tests and diagnostics.
    pub fn find(&self, client: &SocketAddr) -> Option<&Session> {
        let slot = *self.by_client.get(client)?;
        self.slots[slot as usize].session.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn open(t: &mut Sessions, port: u16) -> (u32, u32) {
        let (slot, generation) = t.insert(addr(port), 0);
        t.get(slot, generation).unwrap().phase = Phase::Open;
        (slot, generation)
    }

    #[test]
    fn unknown_client_is_created_until_the_cap() {
        let mut t = Sessions::new(2, 8, 64);
        assert_eq!(t.classify(&addr(1)), Ingress::Create);
        open(&mut t, 1);
        open(&mut t, 2);
        assert_eq!(
            t.classify(&addr(3)),
            Ingress::Drop(Counter::DropMaxSessions)
        );
        assert!(matches!(t.classify(&addr(1)), Ingress::Forward { .. }));
    }

    #[test]
    fn resolving_session_holds_up_to_pending_max() {
        let mut t = Sessions::new(8, 2, 64);
        let (slot, generation) = t.insert(addr(1), 0);
        assert_eq!(t.classify(&addr(1)), Ingress::Hold { slot, generation });
        assert!(t.hold(slot, generation, Held { bid: 0, len: 1 }));
        assert!(t.hold(slot, generation, Held { bid: 1, len: 1 }));
        assert_eq!(
            t.classify(&addr(1)),
            Ingress::Drop(Counter::DropPendingFull)
        );
        assert_eq!(t.take_held(slot, generation).len(), 2);
        assert_eq!(t.classify(&addr(1)), Ingress::Hold { slot, generation });
    }

    #[test]
    fn the_worker_wide_hold_cap_protects_the_buffer_ring() {
        let mut t = Sessions::new(8, 8, 3);
        let (a, ga) = t.insert(addr(1), 0);
        let (b, gb) = t.insert(addr(2), 0);
        assert!(t.hold(a, ga, Held { bid: 0, len: 1 }));
        assert!(t.hold(a, ga, Held { bid: 1, len: 1 }));
        assert!(t.hold(b, gb, Held { bid: 2, len: 1 }));
        assert_eq!(
            t.classify(&addr(2)),
            Ingress::Drop(Counter::DropPendingFull)
        );
        assert_eq!(
            t.classify(&addr(3)),
            Ingress::Drop(Counter::DropPendingFull)
        );
        t.take_held(a, ga);
        assert_eq!(t.classify(&addr(3)), Ingress::Create);
    }

    #[test]
    fn closing_session_leaves_the_map_but_keeps_its_slot_until_done() {
        let mut t = Sessions::new(1, 8, 64);
        let (slot, generation) = open(&mut t, 1);
        t.get(slot, generation).unwrap().in_flight = 1;
        assert!(t.begin_close(slot, generation).is_some());
        assert!(t.begin_close(slot, generation).is_none(), "closed twice");
        // The slot still counts against the cap while operations are in flight.
        assert_eq!(
            t.classify(&addr(1)),
            Ingress::Drop(Counter::DropMaxSessions)
        );
        assert!(!t.release_if_done(slot, generation));
        t.get(slot, generation).unwrap().in_flight = 0;
        assert!(t.release_if_done(slot, generation));
        assert_eq!(t.live(), 0);
        assert_eq!(t.classify(&addr(1)), Ingress::Create);
    }

    #[test]
    fn reused_slot_rejects_the_old_generation() {
        let mut t = Sessions::new(4, 8, 64);
        let (slot, old) = open(&mut t, 1);
        t.begin_close(slot, old);
        assert!(t.release_if_done(slot, old));
        let (again, new) = t.insert(addr(2), 0);
        assert_eq!(again, slot);
        assert_ne!(new, old);
        assert!(t.get(slot, old).is_none());
        assert_eq!(t.get(slot, new).unwrap().client, addr(2));
    }

    #[test]
    fn sessions_are_found_by_upstream_port_until_they_close() {
        let mut t = Sessions::new(8, 8, 64);
        let (slot, generation) = t.insert(addr(1), 0);
        assert_eq!(t.by_upstream_port(4000), None, "not open yet");
        let local = addr(4000);
        t.opened(slot, generation, local);
        assert_eq!(t.by_upstream_port(4000), Some((slot, generation, local)));
        assert_eq!(t.by_client(&addr(1)), Some((slot, generation)));
        t.begin_close(slot, generation);
        assert_eq!(t.by_upstream_port(4000), None);
        assert_eq!(t.by_client(&addr(1)), None);
    }

    #[test]
    fn idle_collection_skips_active_and_closing_sessions() {
        let mut t = Sessions::new(8, 8, 64);
        let (a, ga) = open(&mut t, 1);
        let (b, gb) = open(&mut t, 2);
        let (c, gc) = open(&mut t, 3);
        t.get(b, gb).unwrap().last_tick = 10;
        t.begin_close(c, gc);
        let mut idle = Vec::new();
        t.collect_idle(5, &mut idle);
        assert_eq!(idle, [(a, ga)]);
    }
}

#[cfg(test)]
mod footprint {
    use super::*;

    /// Memory per session, excluding kernel socket buffers: the slab entry, its two map entries
    /// (hashbrown stores the pair plus one control byte, at a load factor of at most 7/8) and
    /// the free-list slot. The budget is 1 KiB; README quotes this figure.
    #[test]
    fn a_session_costs_well_under_a_kilobyte() {
        let slab = size_of::<Slot>();
        let by_client = (size_of::<(SocketAddr, u32)>() + 1) * 8 / 7;
        let by_port = (size_of::<(u16, u32)>() + 1) * 8 / 7;
        let free = size_of::<u32>();
        let total = slab + by_client + by_port + free;
        println!(
            "per session: slab {slab} + maps {by_client} + {by_port} + free list {free} = {total} bytes"
        );
        assert!(total < 1024, "{total} bytes per session");
    }
}
