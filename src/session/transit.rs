//! Sessions crossing between processes (a takeover), in the one shape they travel in: the
//! table exports itself as [`OpenSession`]s and [`PendingSession`]s and imports them again
//! (`takeover::state` writes them as lines). [`Sessions::export`] names every field of a
//! session, so that a field added to the table fails to compile until it is carried (or said
//! not to be); the round trip through the lines is tested in `takeover::state`.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::time::Duration;

use socket2::Socket;

use super::{Held, Key, NIL, Phase, Session, Sessions, Slot};
use crate::addr::canonical;
use crate::route::Lease;
use crate::sys::sockaddr::RawSockAddr;

/// An open session in transit (its socket travels beside it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenSession {
    /// The client, canonical, and as received (what replies go to).
    pub client: SocketAddr,
    pub reply_to: SocketAddr,
    pub backend: SocketAddr,
    /// The upstream socket's local address: the source the backend sees.
    pub upstream: SocketAddr,
    /// Time since its last datagram, and since it was created.
    pub idle: Duration,
    pub age: Duration,
    pub answered: bool,
    pub confirmed: bool,
    /// The address the client sent to (a wildcard listener's).
    pub local: Option<IpAddr>,
    /// The PROXY protocol header, whether it goes before every datagram, whether it was sent.
    pub prefix: Option<Vec<u8>>,
    pub prefix_every: bool,
    pub prefix_sent: bool,
}

/// A session still waiting for its route in transit, with the datagrams it holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingSession {
    pub client: SocketAddr,
    pub reply_to: SocketAddr,
    pub age: Duration,
    pub local: Option<IpAddr>,
    pub held: Vec<Vec<u8>>,
}

/// A session leaving: open, with its socket, or pending.
#[derive(Debug)]
pub enum Leaving<'a, U> {
    Open(OpenSession, &'a U),
    Pending(PendingSession),
}

/// What an export could not describe: it stays behind and ends with this process.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LeftBehind {
    /// Open sessions without a backend or a reply address (none, by construction).
    pub sessions: usize,
    /// Held datagrams whose buffer could not be read.
    pub datagrams: usize,
}

/// Clock ticks of `tick_len` in `d`, rounded down.
fn ticks(d: Duration, tick_len: Duration) -> u32 {
    u32::try_from(d.as_nanos() / tick_len.as_nanos().max(1)).unwrap_or(u32::MAX)
}

impl<U: AsRawFd> Sessions<U> {
    /// Every session not closing, in transit shape, at reaper tick `now` (ticks of
    /// `tick_len`); `payload` reads a held datagram's bytes.
    pub fn export(
        &self,
        now: u32,
        tick_len: Duration,
        payload: impl Fn(Held) -> Option<Vec<u8>>,
    ) -> (Vec<Leaving<'_, U>>, LeftBehind) {
        let ago = |tick: u32| tick_len * now.saturating_sub(tick);
        let mut out = Vec::with_capacity(self.live);
        let mut left = LeftBehind::default();
        for entry in &self.slots {
            let Some(s) = &entry.session else { continue };
            // Every field, named: one added to `Session` must be carried or said not to be.
            let Session {
                client,
                client_raw,
                phase,
                upstream,
                upstream_local,
                backend,
                held,
                last_tick,
                created_tick,
                answered,
                confirmed,
                local,
                prefix,
                prefix_every,
                prefix_sent,
                // This process's own bookkeeping: the next one starts its own.
                lease: _,
                backend_slot: _,
                in_flight: _,
                recv_armed: _,
                prev: _,
                next: _,
                noted_tick: _,
            } = s;
            if *phase == Phase::Closing {
                continue;
            }
            let Some(reply_to) = crate::sys::sockaddr::decode(client_raw.as_bytes()) else {
                left.sessions += 1;
                continue;
            };
            match (upstream, upstream_local, backend) {
                (Some(socket), Some(upstream), Some(backend)) => out.push(Leaving::Open(
                    OpenSession {
                        client: *client,
                        reply_to,
                        backend: *backend,
                        upstream: *upstream,
                        idle: ago(*last_tick),
                        age: ago(*created_tick),
                        answered: *answered,
                        confirmed: *confirmed,
                        local: *local,
                        prefix: prefix.as_deref().map(<[u8]>::to_vec),
                        prefix_every: *prefix_every,
                        prefix_sent: *prefix_sent,
                    },
                    socket,
                )),
                (None, _, _) => {
                    let held: Vec<Vec<u8>> = held.iter().filter_map(|&h| payload(h)).collect();
                    left.datagrams += s.held.len() - held.len();
                    out.push(Leaving::Pending(PendingSession {
                        client: *client,
                        reply_to,
                        age: ago(*created_tick),
                        local: *local,
                        held,
                    }));
                }
                _ => left.sessions += 1,
            }
        }
        (out, left)
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

    /// Whether no session has an operation in the ring (a takeover may take their sockets).
    pub fn quiet(&self) -> bool {
        self.slots
            .iter()
            .filter_map(|e| e.session.as_ref())
            .all(|s| s.in_flight == 0)
    }

    /// Takes in an open session from another process at reaper tick `now` (ticks of
    /// `tick_len`), whatever the caps (it was within the other's), placed by this process's
    /// router with `lease`. `None` if its client already has a session here.
    pub fn adopt(
        &mut self,
        s: OpenSession,
        upstream: U,
        now: u32,
        tick_len: Duration,
        lease: Option<Lease>,
        backend_slot: u8,
    ) -> Option<Key> {
        let client = canonical(s.client);
        if self.by_client.contains_key(&client) {
            return None;
        }
        let last_tick = now.saturating_sub(ticks(s.idle, tick_len));
        let session = Session {
            client,
            client_raw: RawSockAddr::encode(s.reply_to),
            phase: Phase::Open,
            upstream: Some(upstream),
            upstream_local: Some(s.upstream),
            backend: Some(s.backend),
            lease,
            backend_slot,
            held: Vec::new(),
            last_tick,
            in_flight: 0,
            recv_armed: false,
            created_tick: now.saturating_sub(ticks(s.age, tick_len)),
            answered: s.answered,
            confirmed: s.confirmed,
            prev: NIL,
            next: NIL,
            local: s.local,
            noted_tick: last_tick,
            prefix: s.prefix.map(Vec::into_boxed_slice),
            prefix_every: s.prefix_every,
            prefix_sent: s.prefix_sent,
        };
        let slot = self.take_slot(session);
        self.by_client.insert(client, slot);
        self.by_upstream_port.insert(s.upstream.port(), slot);
        self.live += 1;
        if !s.confirmed {
            self.link_unconfirmed(slot);
        }
        Some(Key {
            slot,
            generation: self.slots[slot as usize].generation,
        })
    }

    /// Takes in a session that was still waiting for its route, `age` old at reaper tick
    /// `now` (its held datagrams travel apart: they were in the other process's buffers).
    /// `None` if its client has a session.
    pub fn adopt_pending(
        &mut self,
        client: SocketAddr,
        age: Duration,
        now: u32,
        tick_len: Duration,
    ) -> Option<Key> {
        if self.by_client.contains_key(&canonical(client)) {
            return None;
        }
        let tick = now.saturating_sub(ticks(age, tick_len));
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
