//! Per-worker counters: plain integers on the packet path, published once per batch.
//!
//! A worker increments its own `Counters` (no atomics, no sharing) while it handles a batch of
//! completions, then stores every value into its `SharedStats` with relaxed stores. The metrics
//! thread only ever loads. Each value has a single writer, so a relaxed store of a monotonic
//! value is all the synchronisation needed, and the packet path never executes a locked
//! instruction for accounting. What workers, the metrics thread and the process share is in
//! [`shared`].

pub mod backends;
mod shared;

use std::sync::atomic::Ordering;

pub use shared::{LINKS_MAX, Shared, SharedStats, total};

macro_rules! counters {
    ($($variant:ident => ($family:literal, $label:expr, $help:expr),)*) => {
        /// Everything a worker counts. The metric family and label of each are fixed here.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        #[repr(usize)]
        pub enum Counter { $($variant,)* }

        impl Counter {
            pub const ALL: &'static [Counter] = &[$(Counter::$variant,)*];

            /// The metric family (without the `_total` suffix the exposition adds to counters)
            /// and its label, if any, as `(key, value)`.
            pub const fn family(self) -> (&'static str, Option<(&'static str, &'static str)>) {
                match self { $(Counter::$variant => ($family, $label),)* }
            }

            /// The label's value (`idle` for `sessions_closed{reason="idle"}`), or "".
            pub const fn label(self) -> &'static str {
                match self.family().1 {
                    Some((_, value)) => value,
                    None => "",
                }
            }

            pub const fn help(self) -> &'static str {
                match self { $(Counter::$variant => $help,)* }
            }
        }
    };
}

counters! {
    PacketsUpstream => ("ringgate_packets", Some(("direction", "upstream")), "Datagrams forwarded"),
    PacketsDownstream => ("ringgate_packets", Some(("direction", "downstream")), "Datagrams forwarded"),
    BytesUpstream => ("ringgate_bytes", Some(("direction", "upstream")), "Payload bytes forwarded"),
    BytesDownstream => ("ringgate_bytes", Some(("direction", "downstream")), "Payload bytes forwarded"),
    DropTruncated => ("ringgate_drops", Some(("reason", "truncated")), DROPS),
    DropMaxSessions => ("ringgate_drops", Some(("reason", "max_sessions")), DROPS),
    DropFdReserve => ("ringgate_drops", Some(("reason", "fd_reserve")), DROPS),
    DropPendingFull => ("ringgate_drops", Some(("reason", "pending_full")), DROPS),
    DropNoRoute => ("ringgate_drops", Some(("reason", "no_route")), DROPS),
    DropSocketError => ("ringgate_drops", Some(("reason", "socket_error")), DROPS),
    DropSendError => ("ringgate_drops", Some(("reason", "send_error")), DROPS),
    DropSessionClosed => ("ringgate_drops", Some(("reason", "session_closed")), DROPS),
    DropBadAddress => ("ringgate_drops", Some(("reason", "bad_address")), DROPS),
    DropBadSource => ("ringgate_drops", Some(("reason", "bad_source")), DROPS),
    DropRateLimited => ("ringgate_drops", Some(("reason", "rate_limited")), DROPS),
    DropSessionBudget => ("ringgate_drops", Some(("reason", "session_budget")), DROPS),
    DropEvicted => ("ringgate_drops", Some(("reason", "evicted")), DROPS),
    DropShutdown => ("ringgate_drops", Some(("reason", "shutdown")), DROPS),
    DropDraining => ("ringgate_drops", Some(("reason", "draining")), DROPS),
    SessionsCreated => ("ringgate_sessions_created", None, "Sessions opened"),
    ClosedIdle => ("ringgate_sessions_closed", Some(("reason", "idle")), CLOSED),
    ClosedUnreplied => ("ringgate_sessions_closed", Some(("reason", "unreplied")), CLOSED),
    ClosedEvicted => ("ringgate_sessions_closed", Some(("reason", "evicted")), CLOSED),
    ClosedLoop => ("ringgate_sessions_closed", Some(("reason", "loop")), CLOSED),
    ClosedDisconnect => ("ringgate_sessions_closed", Some(("reason", "disconnect")), CLOSED),
    ClosedShutdown => ("ringgate_sessions_closed", Some(("reason", "shutdown")), CLOSED),
    RecvRearms => ("ringgate_recv_rearms", None, "Multishot receives re-armed after ending"),
    RecvNoBuffers => ("ringgate_recv_errors", Some(("kind", "no_buffers")), "Receive completions with an error, by kind"),
    RecvOther => ("ringgate_recv_errors", Some(("kind", "other")), "Receive completions with an error, by kind"),
    BackendUnreachable => ("ringgate_backend_unreachable", None, "ICMP unreachable reports (ECONNREFUSED) on session sockets"),
    Anomalies => ("ringgate_anomalies", None, "Completions that broke an invariant (unknown user_data, a buffer leased twice); stays 0"),
    RedisLookups => ("ringgate_redis_lookups", None, "GETs of the backend key sent to Redis"),
    RedisLookupsCoalesced => ("ringgate_redis_lookups_coalesced", None, "New sessions that waited for a GET already in flight instead of sending their own"),
    RouteMissing => ("ringgate_route_failures", Some(("reason", "missing")), ROUTE_FAILURES),
    RouteInvalid => ("ringgate_route_failures", Some(("reason", "invalid")), ROUTE_FAILURES),
    RouteDisallowed => ("ringgate_route_failures", Some(("reason", "disallowed")), ROUTE_FAILURES),
    RouteError => ("ringgate_route_failures", Some(("reason", "error")), ROUTE_FAILURES),
    RouteUnavailable => ("ringgate_route_failures", Some(("reason", "unavailable")), ROUTE_FAILURES),
    RouteTimeout => ("ringgate_route_failures", Some(("reason", "timeout")), ROUTE_FAILURES),
    RouteResolve => ("ringgate_route_failures", Some(("reason", "resolve")), ROUTE_FAILURES),
    RedisCommandFailures => ("ringgate_redis_connection_failures", Some(("connection", "command")), "Redis connections lost or refused, by connection"),
    RedisSubscriberFailures => ("ringgate_redis_connection_failures", Some(("connection", "subscriber")), "Redis connections lost or refused, by connection"),
    RedisSentinelFailures => ("ringgate_redis_connection_failures", Some(("connection", "sentinel")), "Redis connections lost or refused, by connection"),
    RedisOversizeReplies => ("ringgate_redis_oversize_replies", None, "Redis replies over the size cap, rejected before being read whole; each reset its connection"),
    SessionMapWritten => ("ringgate_session_map_writes", Some(("result", "written")), SESSION_MAP),
    SessionMapFailed => ("ringgate_session_map_writes", Some(("result", "failed")), SESSION_MAP),
    SessionMapDropped => ("ringgate_session_map_writes", Some(("result", "dropped")), SESSION_MAP),
    DisconnectMatched => ("ringgate_redis_disconnect_messages", Some(("result", "matched")), DISCONNECTS),
    DisconnectUnmatched => ("ringgate_redis_disconnect_messages", Some(("result", "unmatched")), DISCONNECTS),
    DisconnectInvalid => ("ringgate_redis_disconnect_messages", Some(("result", "invalid")), DISCONNECTS),
    DisconnectRefused => ("ringgate_redis_disconnect_messages", Some(("result", "refused")), DISCONNECTS),
    DisconnectOversize => ("ringgate_redis_disconnect_messages", Some(("result", "oversize")), DISCONNECTS),
    SubmitQueueFull => ("ringgate_submit_queue_full", None, "Times the submission queue was full and flushed early"),
    XdpOffloaded => ("ringgate_xdp_offloads", Some(("result", "offloaded")), XDP_OFFLOADS),
    XdpNotIpv4 => ("ringgate_xdp_offloads", Some(("result", "not_ipv4")), XDP_OFFLOADS),
    XdpProxyHeader => ("ringgate_xdp_offloads", Some(("result", "proxy_header")), XDP_OFFLOADS),
    XdpMapFull => ("ringgate_xdp_offloads", Some(("result", "map_full")), XDP_OFFLOADS),
    XdpFailed => ("ringgate_xdp_offloads", Some(("result", "failed")), XDP_OFFLOADS),
    XdpRemoveFailed => ("ringgate_xdp_remove_failures", None, "Offloaded sessions whose XDP entries could not be deleted when they closed (stays 0)"),
    XdpActive => ("ringgate_xdp_idle_checks", Some(("result", "active")), XDP_IDLE),
    XdpIdle => ("ringgate_xdp_idle_checks", Some(("result", "idle")), XDP_IDLE),
}

const DROPS: &str = "Datagrams dropped, by reason";
const XDP_OFFLOADS: &str =
    "Confirmed sessions handed to the XDP fast path, or kept on the socket path and why";
const XDP_IDLE: &str = "Offloaded sessions the reaper found idle by their own count, by whether the XDP program had forwarded for them since";
const CLOSED: &str = "Sessions closed, by reason";
const ROUTE_FAILURES: &str = "New sessions that got no usable route, by reason";
const SESSION_MAP: &str = "Session map writes (--publish-sessions): acknowledged by Redis, refused by it, or dropped while it was down or behind";
const DISCONNECTS: &str = "Disconnect messages as each worker saw them: matched a session here, matched none here, or invalid";

/// The number of counters, for sizing arrays.
pub const COUNTERS: usize = Counter::ALL.len();

/// Upper bounds of the Redis lookup latency histogram's buckets, in microseconds (`+Inf`
/// follows).
pub const LATENCY_BUCKETS_US: [u64; 11] = [
    250, 500, 1_000, 2_000, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 1_000_000,
];
pub(crate) const BUCKETS: usize = LATENCY_BUCKETS_US.len() + 1;

/// A worker's private counters. Not `Sync`: only the owning worker touches them.
#[derive(Debug)]
pub struct Counters {
    values: [u64; COUNTERS],
    sessions: u64,
    offloaded: u64,
    /// Redis lookup latency: per-bucket counts (not cumulative) and the sum in microseconds.
    latency: [u64; BUCKETS],
    latency_sum_us: u64,
    /// Whether each of the router's connections is up (see `route::Router::links`).
    links_up: [bool; LINKS_MAX],
    pub backends: backends::Backends,
}

impl Default for Counters {
    fn default() -> Self {
        Counters {
            values: [0; COUNTERS],
            sessions: 0,
            offloaded: 0,
            latency: [0; BUCKETS],
            latency_sum_us: 0,
            links_up: [false; LINKS_MAX],
            backends: backends::Backends::default(),
        }
    }
}

impl Counters {
    #[inline]
    pub fn add(&mut self, counter: Counter, n: u64) {
        self.values[counter as usize] += n;
    }

    #[inline]
    pub fn bump(&mut self, counter: Counter) {
        self.add(counter, 1);
    }

    pub fn get(&self, counter: Counter) -> u64 {
        self.values[counter as usize]
    }

    pub fn set_sessions(&mut self, live: usize) {
        self.sessions = live as u64;
    }

    /// Records whether each of the router's connections is up.
    /// Sessions whose flows are in the XDP map now.
    pub fn set_offloaded(&mut self, offloaded: usize) {
        self.offloaded = offloaded as u64;
    }

    pub fn links_up_mut(&mut self) -> &mut [bool; LINKS_MAX] {
        &mut self.links_up
    }

    pub fn observe_lookup(&mut self, latency: std::time::Duration) {
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        let bucket = LATENCY_BUCKETS_US
            .iter()
            .position(|&bound| us <= bound)
            .unwrap_or(LATENCY_BUCKETS_US.len());
        self.latency[bucket] += 1;
        self.latency_sum_us = self.latency_sum_us.saturating_add(us);
    }

    /// Copies every value into `shared` for the metrics thread.
    pub fn publish(&mut self, shared: &SharedStats) {
        self.backends.publish(&shared.backends);
        for (slot, value) in shared.values.iter().zip(self.values) {
            slot.store(value, Ordering::Relaxed);
        }
        for (slot, value) in shared.latency.iter().zip(self.latency) {
            slot.store(value, Ordering::Relaxed);
        }
        shared
            .latency_sum_us
            .store(self.latency_sum_us, Ordering::Relaxed);
        shared.sessions.store(self.sessions, Ordering::Relaxed);
        shared.offloaded.store(self.offloaded, Ordering::Relaxed);
        for (slot, up) in shared.links_up.iter().zip(self.links_up) {
            slot.store(up, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_indexed_by_declaration_order() {
        for (i, c) in Counter::ALL.iter().enumerate() {
            assert_eq!(*c as usize, i);
        }
    }

    /// The exposition writes one HELP/TYPE per run of a family: a family split in two runs
    /// would be declared twice, which Prometheus rejects.
    #[test]
    fn each_family_is_declared_in_one_run() {
        let runs: Vec<&str> = Counter::ALL
            .chunk_by(|a, b| a.family().0 == b.family().0)
            .map(|run| run[0].family().0)
            .collect();
        let mut unique = runs.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(runs.len(), unique.len(), "{runs:?}");
    }

    #[test]
    fn publish_copies_values() {
        let mut local = Counters::default();
        let shared = SharedStats::default();
        local.add(Counter::BytesUpstream, 64);
        local.bump(Counter::DropTruncated);
        local.set_sessions(3);
        local.publish(&shared);
        assert_eq!(shared.get(Counter::BytesUpstream), 64);
        assert_eq!(shared.get(Counter::DropTruncated), 1);
        assert_eq!(shared.get(Counter::PacketsUpstream), 0);
        assert_eq!(shared.sessions(), 3);
    }
}
