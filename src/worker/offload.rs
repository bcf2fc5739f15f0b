//! The worker's part of the XDP fast path: which of its sessions the program forwards. A
//! confirmed IPv4 session's two flows (client → listener becomes upstream socket → backend, and
//! back) go into the program's map when the table announces it confirmed (`events`); they
//! leave the map before the session's socket can close (`closing::close_session` asks here
//! first); and the reaper asks here whether a session that looks idle by its own count was
//! forwarded by the program meanwhile (the program stamps each flow when it forwards).
//!
//! The map is one for all workers, in the kernel; each worker has its own handle on it and
//! touches only its own sessions' entries. Nothing here runs per datagram: one insert per
//! direction per confirmed session, one delete per direction when it closes, and two reads
//! per offloaded session per idle timeout.

use std::net::{IpAddr, SocketAddr, SocketAddrV4};

use hashbrown::HashMap;

use super::Worker;
use crate::session::Key;
use crate::stats::Counter;
use crate::sys::xdp::{self, Tuple, XdpFlows};

pub(super) struct Offload {
    flows: XdpFlows,
    /// Offloaded sessions, and the tuple each of their two entries is keyed by.
    offloaded: HashMap<Key, [Tuple; 2]>,
}

impl Offload {
    pub(super) fn new(flows: XdpFlows) -> Offload {
        Offload {
            flows,
            offloaded: HashMap::new(),
        }
    }

    pub(super) fn len(&self) -> usize {
        self.offloaded.len()
    }
}

/// A session's four endpoints as the wire carries them, if all are IPv4.
fn v4(addr: SocketAddr) -> Option<SocketAddrV4> {
    match addr.ip().to_canonical() {
        IpAddr::V4(ip) => Some(SocketAddrV4::new(ip, addr.port())),
        IpAddr::V6(_) => None,
    }
}

impl Worker {
    /// Hands a confirmed session to the program, if it can forward it: IPv4 at every end, and
    /// no PROXY header on every datagram (the program only rewrites). Counted either way.
    pub(super) fn offload(
        &mut self,
        key: Key,
        client: SocketAddr,
        local: Option<IpAddr>,
        upstream: SocketAddr,
        backend: SocketAddr,
    ) {
        let Some(offload) = self.offload.as_mut() else {
            return;
        };
        if self.proxy_protocol_every {
            return self.counters.bump(Counter::XdpProxyHeader);
        }
        let listen = SocketAddr::new(local.unwrap_or(self.local.ip()), self.local.port());
        let (Some(client), Some(listen), Some(upstream), Some(backend)) =
            (v4(client), v4(listen), v4(upstream), v4(backend))
        else {
            return self.counters.bump(Counter::XdpNotIpv4);
        };
        let flows = xdp::session_flows(client, listen, upstream, backend);
        let mut inserted = 0;
        let mut failure = None;
        for (from, to) in &flows {
            match offload.flows.insert(from, to) {
                Ok(()) => inserted += 1,
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        match failure {
            None => {
                offload.offloaded.insert(key, [flows[0].0, flows[1].0]);
                self.counters.bump(Counter::XdpOffloaded);
            }
            Some(e) => {
                // Half a session in the map would forward one way only: take it back out.
                for (from, _) in &flows[..inserted] {
                    let _ = offload.flows.remove(from);
                }
                self.counters.bump(if xdp::is_full(&e) {
                    Counter::XdpMapFull
                } else {
                    Counter::XdpFailed
                });
                self.warnings.xdp_offload(&e);
            }
        }
    }

    /// Takes a session's entries out of the map, if it had any: before its socket can close,
    /// so that the program never forwards to a port nobody holds.
    pub(super) fn unload(&mut self, key: Key) {
        let Some(offload) = self.offload.as_mut() else {
            return;
        };
        let Some(tuples) = offload.offloaded.remove(&key) else {
            return;
        };
        let mut failed = false;
        for from in &tuples {
            failed |= offload.flows.remove(from).is_err();
        }
        if failed {
            self.counters.bump(Counter::XdpRemoveFailed);
        }
    }

    /// For the reaper, of a session idle by its own count since before `cutoff`: whether the
    /// program forwarded for it since `cutoff` (and then the table learns when it last did).
    pub(super) fn active_in_xdp(&mut self, key: Key, cutoff: u32) -> bool {
        let Some(offload) = self.offload.as_ref() else {
            return false;
        };
        let Some(tuples) = offload.offloaded.get(&key) else {
            return false;
        };
        let last_ns = tuples
            .iter()
            .filter_map(|from| offload.flows.get(from).ok().flatten())
            .map(|(_, seen)| seen)
            .max()
            .unwrap_or(0);
        // 0: the program has not forwarded for it since it was inserted.
        if last_ns == 0 {
            self.counters.bump(Counter::XdpIdle);
            return false;
        }
        let age_ns = xdp::monotonic_ns().saturating_sub(last_ns);
        let tick_ns = self.tick_len.as_nanos().max(1);
        let ago = u32::try_from(u128::from(age_ns) / tick_ns).unwrap_or(u32::MAX);
        let seen = self.tick.saturating_sub(ago);
        if seen < cutoff {
            self.counters.bump(Counter::XdpIdle);
            return false;
        }
        self.counters.bump(Counter::XdpActive);
        self.sessions.seen_at(key, seen);
        true
    }

    /// Sessions whose flows are in the map now.
    pub(super) fn offloaded(&self) -> usize {
        self.offload.as_ref().map_or(0, Offload::len)
    }
}
