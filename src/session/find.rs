//! Finding sessions other than by the client of a datagram: idle ones for the reaper, all of
//! them at shutdown, and those a disconnect message names.

use std::net::SocketAddr;
use std::os::fd::AsRawFd;

use super::{Key, Phase, Sessions};
use crate::addr::canonical;
use crate::route::Target;

impl<U: AsRawFd> Sessions<U> {
    /// Appends to `out` the open or resolving sessions idle since before `cutoff_tick`.
    pub fn collect_idle(&self, cutoff_tick: u32, out: &mut Vec<Key>) {
        for (slot, entry) in self.slots.iter().enumerate() {
            if let Some(s) = &entry.session
                && s.phase != Phase::Closing
                && s.last_tick < cutoff_tick
            {
                out.push(Key {
                    slot: slot as u32,
                    generation: entry.generation,
                });
            }
        }
    }

    /// Appends to `out` every session not already closing.
    pub fn collect_all(&self, out: &mut Vec<Key>) {
        self.collect_idle(u32::MAX, out);
    }

    /// The sessions a disconnect message names: by upstream port, or by `ip:port` as the
    /// client's address or the upstream socket's local address.
    pub fn matching(&self, target: Target) -> Vec<Key> {
        let mut keys = Vec::with_capacity(2);
        match target {
            Target::Port(port) => keys.extend(self.by_upstream_port(port).map(|(k, _)| k)),
            Target::Addr(addr) => {
                keys.extend(self.by_client(&addr));
                if let Some((key, local)) = self.by_upstream_port(addr.port())
                    && local == addr
                    && !keys.contains(&key)
                {
                    keys.push(key);
                }
            }
        }
        keys
    }

    /// The session (not closing) of `client`.
    pub fn by_client(&self, client: &SocketAddr) -> Option<Key> {
        let slot = *self.by_client.get(&canonical(*client))?;
        Some(Key {
            slot,
            generation: self.slots[slot as usize].generation,
        })
    }

    /// The open session whose upstream socket has local port `port`, with that local address.
    pub fn by_upstream_port(&self, port: u16) -> Option<(Key, SocketAddr)> {
        let slot = *self.by_upstream_port.get(&port)?;
        let entry = &self.slots[slot as usize];
        let local = entry.session.as_ref()?.upstream_local?;
        let key = Key {
            slot,
            generation: entry.generation,
        };
        Some((key, local))
    }

    /// Appends to `out` at most `max` open sessions announced before `cutoff_tick`, as
    /// `(upstream local address, client)`, and marks them announced at `tick` (the session
    /// map's refresh); the others stay due for a later call.
    pub fn collect_unannounced(
        &mut self,
        cutoff_tick: u32,
        tick: u32,
        max: usize,
        out: &mut Vec<(SocketAddr, SocketAddr)>,
    ) {
        for entry in &mut self.slots {
            if out.len() >= max {
                return;
            }
            if let Some(s) = &mut entry.session
                && s.phase == Phase::Open
                && s.noted_tick < cutoff_tick
                && let Some(local) = s.upstream_local
            {
                s.noted_tick = tick;
                out.push((local, s.client));
            }
        }
    }
}
