//! A session's traffic: where its datagrams go up (the socket, and a PROXY protocol header
//! before the first or every one) and down (the client as received, from the address it sent
//! to), and the exchange that confirms it.

use std::net::IpAddr;
use std::os::fd::{AsRawFd, RawFd};

use super::{Event, Key, Phase, Sessions};
use crate::sys::sockaddr::RawSockAddr;

/// Where a session's datagram goes up: the upstream socket, its backend's slot, and what to
/// put before it (empty, or a PROXY protocol header).
#[derive(Debug, PartialEq, Eq)]
pub struct Upstream<'a> {
    pub fd: RawFd,
    pub backend: u8,
    pub prefix: &'a [u8],
}

/// Where a session's reply goes: the client as received, the address to leave from (if the
/// listener is a wildcard), and the backend's slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reply {
    pub to: RawSockAddr,
    pub from: Option<IpAddr>,
    pub backend: u8,
}

impl<U: AsRawFd> Sessions<U> {
    /// Records where a new session's client sent to (`local`, for a wildcard listener) and the
    /// PROXY protocol header its datagrams carry up (before the first, or before `every` one).
    pub fn arrived_at(
        &mut self,
        key: Key,
        local: Option<IpAddr>,
        prefix: Option<Box<[u8]>>,
        every: bool,
    ) {
        if let Some(s) = self.get(key) {
            s.local = local;
            s.prefix = prefix;
            s.prefix_every = every;
        }
    }

    /// Where a datagram from an open session's client at `tick` goes up. A client that sends
    /// after its backend answered confirms the session ([`Event::Confirmed`]).
    pub fn upstream(&mut self, key: Key, tick: u32) -> Option<Upstream<'_>> {
        let s = self.in_phase(key, Phase::Open)?;
        s.last_tick = tick;
        if s.answered && !s.confirmed {
            s.confirmed = true;
            let (client, local) = (s.client, s.local);
            if let (Some(upstream), Some(backend)) = (s.upstream_local, s.backend) {
                self.events.push(Event::Confirmed {
                    key,
                    client,
                    local,
                    upstream,
                    backend,
                });
            }
            self.unlink_unconfirmed(key.slot);
        }
        let s = self.in_phase(key, Phase::Open)?;
        let fd = s.upstream.as_ref()?.as_raw_fd();
        let send_prefix = !s.prefix_sent || s.prefix_every;
        s.prefix_sent = true;
        let prefix = match &s.prefix {
            Some(p) if send_prefix => &p[..],
            _ => &[],
        };
        Some(Upstream {
            fd,
            backend: s.backend_slot,
            prefix,
        })
    }

    /// Where a datagram from an open session's backend at `tick` goes.
    pub fn reply_to(&mut self, key: Key, tick: u32) -> Option<Reply> {
        let s = self.in_phase(key, Phase::Open)?;
        s.last_tick = tick;
        s.answered = true;
        Some(Reply {
            to: s.client_raw,
            from: s.local,
            backend: s.backend_slot,
        })
    }

    /// Traffic of an open session went through elsewhere (the XDP fast path) as late as
    /// `tick`: it is not idle before then.
    pub fn seen_at(&mut self, key: Key, tick: u32) {
        if let Some(s) = self.in_phase(key, Phase::Open) {
            s.last_tick = s.last_tick.max(tick);
        }
    }

    /// Whether the session is confirmed (see the module's comment).
    pub fn confirmed(&self, key: Key) -> bool {
        self.slots
            .get(key.slot as usize)
            .filter(|e| e.generation == key.generation)
            .and_then(|e| e.session.as_ref())
            .is_some_and(|s| s.confirmed)
    }
}
