//! Sessions crossing between processes (a takeover): what the table lets out of a session,
//! and how a session that arrives whole is taken in.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;

use socket2::Socket;

use super::{Held, Key, NIL, Phase, Session, Sessions, Slot};
use crate::addr::canonical;
use crate::route::Lease;
use crate::sys::sockaddr::RawSockAddr;

/// A session as the table shows it for a handover.
#[derive(Debug)]
pub struct Leaving<'a, U> {
    pub key: Key,
    pub client: SocketAddr,
    /// What replies go to (the client as received).
    pub reply_to: SocketAddr,
    /// Open sessions: the socket and its local address.
    pub upstream: Option<(&'a U, SocketAddr)>,
    pub last_tick: u32,
    pub created_tick: u32,
    pub answered: bool,
    pub confirmed: bool,
    pub local: Option<IpAddr>,
    pub prefix: Option<&'a [u8]>,
    pub prefix_every: bool,
    pub prefix_sent: bool,
    /// Resolving sessions: the datagrams they hold.
    pub held: &'a [Held],
}

/// An open session arriving from another process.
#[derive(Debug)]
pub struct Arriving {
    pub client: SocketAddr,
    pub reply_to: SocketAddr,
    pub upstream_local: SocketAddr,
    pub backend: SocketAddr,
    pub lease: Option<Lease>,
    pub backend_slot: u8,
    pub last_tick: u32,
    pub created_tick: u32,
    pub answered: bool,
    pub confirmed: bool,
    pub local: Option<IpAddr>,
    pub prefix: Option<Box<[u8]>>,
    pub prefix_every: bool,
    pub prefix_sent: bool,
}

impl<U: AsRawFd> Sessions<U> {
    /// Every session not closing, for a handover.
    pub fn leaving(&self) -> impl Iterator<Item = Leaving<'_, U>> {
        self.slots.iter().enumerate().filter_map(|(slot, entry)| {
            let s = entry.session.as_ref()?;
            if s.phase == Phase::Closing {
                return None;
            }
            let reply_to = crate::sys::sockaddr::decode(s.client_raw.as_bytes())?;
            let upstream = match (&s.upstream, s.upstream_local) {
                (Some(u), Some(local)) => Some((u, local)),
                _ => None,
            };
            Some(Leaving {
                key: Key {
                    slot: slot as u32,
                    generation: entry.generation,
                },
                client: s.client,
                reply_to,
                upstream,
                last_tick: s.last_tick,
                created_tick: s.created_tick,
                answered: s.answered,
                confirmed: s.confirmed,
                local: s.local,
                prefix: s.prefix.as_deref(),
                prefix_every: s.prefix_every,
                prefix_sent: s.prefix_sent,
                held: &s.held,
            })
        })
    }

    /// Appends to `out` the sessions whose receive is armed.
    pub fn collect_armed(&self, out: &mut Vec<Key>) {
        for (slot, entry) in self.slots.iter().enumerate() {
            if entry.session.as_ref().is_some_and(|s| s.recv_armed) {
                out.push(Key {
                    slot: slot as u32,
                    generation: entry.generation,
                });
            }
        }
    }

    /// Whether no session has an operation in the ring (a handover may take their sockets).
    pub fn quiet(&self) -> bool {
        self.slots
            .iter()
            .filter_map(|e| e.session.as_ref())
            .all(|s| s.in_flight == 0)
    }

    /// Takes in an open session from another process, whatever the caps (it was within the
    /// other's). `None` if its client already has a session here.
    pub fn adopt(&mut self, a: Arriving, upstream: U) -> Option<Key> {
        let client = canonical(a.client);
        if self.by_client.contains_key(&client) {
            return None;
        }
        let session = Session {
            client,
            client_raw: RawSockAddr::encode(a.reply_to),
            phase: Phase::Open,
            upstream: Some(upstream),
            upstream_local: Some(a.upstream_local),
            backend: Some(a.backend),
            lease: a.lease,
            backend_slot: a.backend_slot,
            held: Vec::new(),
            last_tick: a.last_tick,
            in_flight: 0,
            recv_armed: false,
            created_tick: a.created_tick,
            answered: a.answered,
            confirmed: a.confirmed,
            prev: NIL,
            next: NIL,
            local: a.local,
            noted_tick: a.last_tick,
            prefix: a.prefix,
            prefix_every: a.prefix_every,
            prefix_sent: a.prefix_sent,
        };
        let slot = self.take_slot(session);
        self.by_client.insert(client, slot);
        self.by_upstream_port.insert(a.upstream_local.port(), slot);
        self.live += 1;
        if !a.confirmed {
            self.link_unconfirmed(slot);
        }
        Some(Key {
            slot,
            generation: self.slots[slot as usize].generation,
        })
    }

    /// Takes in a session that was still waiting for its route (its held datagrams travel
    /// apart: they were in the other process's buffers). `None` if its client has a session.
    pub fn adopt_pending(&mut self, client: SocketAddr, tick: u32) -> Option<Key> {
        if self.by_client.contains_key(&canonical(client)) {
            return None;
        }
        let key = self.insert(client, tick, Held { bid: 0, len: 0 });
        // The placeholder holds no buffer: take it back out.
        if let Some(s) = self.get(key) {
            s.held.clear();
        }
        self.held_total -= 1;
        Some(key)
    }

    /// Puts `session` in a free slot (or a new one) and returns the slot.
    pub(super) fn take_slot(&mut self, session: Session<U>) -> u32 {
        match self.free.pop() {
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
        }
    }
}

impl Sessions<Socket> {
    /// Sends `payload` up on the open session of `key` now, outside the ring (with its PROXY
    /// header if one is due): for the few datagrams an adopted session carried over.
    pub fn send_now(&mut self, key: Key, payload: &[u8]) -> io::Result<usize> {
        let s = self
            .in_phase(key, Phase::Open)
            .ok_or_else(|| io::Error::other("session not open"))?;
        let socket = s
            .upstream
            .as_ref()
            .ok_or_else(|| io::Error::other("no socket"))?;
        let prefix = match &s.prefix {
            Some(p) if !s.prefix_sent || s.prefix_every => &p[..],
            _ => &[],
        };
        let slices = [io::IoSlice::new(prefix), io::IoSlice::new(payload)];
        let sent = socket.send_vectored(&slices)?;
        s.prefix_sent = true;
        Ok(sent.saturating_sub(prefix.len()))
    }
}
