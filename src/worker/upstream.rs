//! Client → backend: what a client's datagram does, and how a new session gets its route.
//!
//! The session table classifies the client ([`crate::session::Sessions::classify`]). An open
//! session's datagram is sent from its receive buffer itself on the session's connected socket,
//! and the buffer is recycled when the send completes. A new client's session starts resolving
//! with its first datagram held, and asks the router; more datagrams are held (bounded) until
//! the answer ([`Worker::on_route`]) opens the session and flushes them in order, or drops them.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;

use tracing::warn;

use super::Worker;
use crate::addr;
use crate::admission::{Decision, Room};
use crate::datagram::Datagram;
use crate::pp2;
use crate::route::{Backend, RouteFailure};
use crate::session::{Held, Ingress, Key, Phase, Why};
use crate::stats::Counter;
use crate::sys::socket;
use crate::user_data::Op;

impl Worker {
    pub(super) fn on_client_datagram(&mut self, dgram: Datagram, bid: u16) {
        let (client, len) = (dgram.source, dgram.len);
        if !self.life.forwards() {
            return self.drop_buffer(bid, Counter::DropShutdown);
        }
        match self.sessions.classify(&client) {
            Ingress::Forward(key) => self.forward_up(key, bid, len),
            Ingress::Hold(key) => {
                if !self.sessions.hold(key, Held { bid, len }) {
                    self.drop_buffer(bid, Counter::DropSessionClosed);
                }
            }
            Ingress::Create => self.create_session(dgram, Held { bid, len }, Room::Free),
            Ingress::Evict(victim) => {
                self.create_session(dgram, Held { bid, len }, Room::Evict(victim))
            }
            Ingress::Full(reason) => {
                self.create_session(dgram, Held { bid, len }, Room::Full(reason))
            }
            Ingress::Drop(reason) => self.drop_buffer(bid, reason),
        }
    }

    /// Asks the newcomer gate whether a new client may start a session (the table's `room`,
    /// draining, its source, its budgets, the loop guard); if so, evicts the victim the table
    /// named and asks the router where the session goes; its first datagram waits, held.
    fn create_session(&mut self, dgram: Datagram, first: Held, room: Room<Key>) {
        let client = dgram.source;
        // Milliseconds since the worker started, wrapping every 49.7 days: the budgets compare
        // two such times with wrapping arithmetic, so they keep refilling however long it runs.
        let now_ms = self.now.duration_since(self.started).as_millis() as u32;
        let draining = self.shared.draining.load(Ordering::Relaxed);
        let (router, sessions) = (&self.router, &self.sessions);
        // Our own traffic come back around: a session's upstream socket is the source (its
        // backend is this listener).
        let own_session = || {
            sessions
                .by_upstream_port(client.port())
                .filter(|&(_, local)| addr::same(local, client))
                .map(|(key, _)| key)
        };
        let decision = self.admission.decide(
            client,
            now_ms,
            room,
            draining,
            |a| router.is_backend(a),
            own_session,
        );
        let evict = match decision {
            Decision::Admit { evict } => evict,
            Decision::Refuse(reason) => {
                self.warn_refused(client, reason);
                return self.drop_buffer(first.bid, reason);
            }
            Decision::Loop(looped) => {
                self.close_session(looped, Counter::DropBadSource, Why::Loop);
                return self.drop_buffer(first.bid, Counter::DropBadSource);
            }
        };
        if let Some(victim) = evict {
            self.close_session(victim, Counter::DropEvicted, Why::Evicted);
        }
        let key = self.sessions.insert(client, self.tick, first);
        // The address the client sent to: the listener's own, or (a wildcard listener's) what
        // the datagram's pktinfo says.
        let wildcard = self.local.ip().is_unspecified();
        let local = if wildcard { dgram.dest } else { None };
        let prefix = self.prefix_for(client, local);
        self.sessions
            .arrived_at(key, local, prefix, self.proxy_protocol_every);
        self.route(|router, io| router.request(key.ticket(), io));
    }

    /// Says why a newcomer was refused, where that is worth a line (at most one a second each).
    fn warn_refused(&mut self, client: SocketAddr, reason: Counter) {
        match reason {
            Counter::DropMaxSessions | Counter::DropFdReserve => {
                if let Some(suppressed) = self.warnings.full.check() {
                    warn!(
                        sessions = self.sessions.live(),
                        reason = reason.label(),
                        suppressed,
                        "session table full of confirmed sessions; dropping a new client"
                    );
                }
            }
            Counter::DropBadSource => {
                if let Some(suppressed) = self.warnings.source.check() {
                    warn!(source = %client, suppressed,
                          "dropping a datagram from a source no session may start from");
                }
            }
            _ => {}
        }
    }

    /// The PROXY protocol header of a new session of `client` that sent to `local` (a
    /// wildcard listener's address), with `--proxy-protocol v2`.
    pub(super) fn prefix_for(
        &self,
        client: SocketAddr,
        local: Option<std::net::IpAddr>,
    ) -> Option<Box<[u8]>> {
        self.proxy_protocol.then(|| {
            let server = SocketAddr::new(local.unwrap_or(self.local.ip()), self.local.port());
            pp2::header(client, server).into_boxed_slice()
        })
    }

    fn forward_up(&mut self, key: Key, bid: u16, len: u32) {
        let Some(up) = self.sessions.upstream(key, self.tick) else {
            return self.drop_buffer(bid, Counter::DropSessionClosed);
        };
        let backend = up.backend;
        let user_data = Op::SendUp { key, bid }.encode();
        match self
            .driver
            .send(up.fd, bid, up.prefix, len as usize, user_data)
        {
            Ok(flushed) => {
                self.sessions.op_started(key);
                self.counters.backends.packet_up(backend);
                self.count_flush(flushed);
            }
            Err(e) => {
                self.warn_send(&e);
                self.drop_buffer(bid, Counter::DropSendError);
            }
        }
    }

    pub(super) fn on_send_up(&mut self, key: Key, bid: u16, res: i32) {
        self.recycle(bid);
        if res >= 0 {
            self.counters.bump(Counter::PacketsUpstream);
            self.counters.add(Counter::BytesUpstream, res as u64);
        } else {
            self.count_send_error(res, Some(key));
        }
        self.sessions.op_finished(key);
    }

    /// The router answered for the session of `key`.
    pub(super) fn on_route(&mut self, key: Key, result: Result<Backend, RouteFailure>) {
        match result {
            Ok(backend) => self.open_session(key, backend),
            Err(failure) => {
                // A session already gone (reaped, shut down) needs nothing.
                if self.sessions.phase(key).is_some() {
                    self.counters.bump(failure.counter());
                }
                self.abandon_session(key, Counter::DropNoRoute);
            }
        }
    }

    /// Connects a resolving session to its backend, arms its receive and flushes what it
    /// held, in order.
    fn open_session(&mut self, key: Key, backend: Backend) {
        let Some(client) = self
            .sessions
            .client(key)
            .filter(|_| self.sessions.phase(key) == Some(Phase::Resolving))
        else {
            // Closed while its route was looked up: nothing to open.
            return self.release(backend.lease);
        };
        // A route back to the client itself, or to this listener, would forward in a circle.
        if self.admission.route_loops(backend.addr, client) {
            self.release(backend.lease);
            return self.close_session(key, Counter::DropBadSource, Why::Loop);
        }
        let (upstream, local) = match socket::upstream(backend.addr, self.socket_size) {
            Ok(pair) => pair,
            Err(e) => {
                self.release(backend.lease);
                if let Some(suppressed) = self.warnings.socket.check() {
                    warn!(error = %e, backend = %backend.addr, suppressed,
                          "cannot open an upstream socket; dropping the new session");
                }
                return self.abandon_session(key, Counter::DropSocketError);
            }
        };
        let slot = self.counters.backends.slot(backend.addr);
        let Some(held) =
            self.sessions
                .open(key, upstream, local, backend.addr, backend.lease, slot)
        else {
            return self.release(backend.lease);
        };
        self.counters.backends.opened(slot);
        self.counters.bump(Counter::SessionsCreated);
        self.arm_session(key);
        // An adopted session's datagrams from before the takeover go first.
        self.send_carried(key);
        for h in held {
            self.forward_up(key, h.bid, h.len);
        }
    }

    /// Counts a failed send; `key` names the session whose socket failed, if it was one.
    pub(super) fn count_send_error(&mut self, res: i32, key: Option<Key>) {
        self.counters.bump(Counter::DropSendError);
        if -res == libc::ECONNREFUSED {
            self.backend_unreachable(key);
        } else if let Some(suppressed) = self.warnings.send.check() {
            warn!(error = %io::Error::from_raw_os_error(-res), suppressed, "send failed");
        }
    }

    /// An ICMP unreachable came back on a session's socket: counted, and logged at most once
    /// a second per backend.
    pub(super) fn backend_unreachable(&mut self, key: Option<Key>) {
        self.counters.bump(Counter::BackendUnreachable);
        let Some(slot) = key.and_then(|k| self.sessions.backend_slot(k)) else {
            return;
        };
        let backend = self.counters.backends.addr(slot);
        let Some(limit) = self.warnings.unreachable.get_mut(usize::from(slot)) else {
            return;
        };
        if let Some(suppressed) = limit.check() {
            match backend {
                Some(addr) => warn!(%addr, suppressed,
                    "backend unreachable: ICMP port unreachable (is its server running?)"),
                None => warn!(
                    suppressed,
                    "a backend is unreachable (one of many; see ringgate_backend_unreachable_total)"
                ),
            }
        }
    }

    /// Whether a session line may be logged now (`--log-sessions`, within its budget), and
    /// how many were suppressed before it.
    pub(super) fn session_line(&mut self) -> Option<u64> {
        let now = self.now;
        self.warnings.sessions.as_mut()?.check_at(now)
    }

    pub(super) fn warn_send(&mut self, e: &io::Error) {
        if let Some(suppressed) = self.warnings.send.check() {
            warn!(error = %e, suppressed, "cannot queue a send");
        }
    }
}
