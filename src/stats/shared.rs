//! What workers, the metrics thread and the owner of a running ringgate share: each worker's
//! published counters ([`SharedStats`]) and a few flags ([`Shared`]).
//!
//! Workers write their own `SharedStats` only, once per batch, and `armed` and `buffers_forced`;
//! the owner of the workers writes the flags (`stop`, `taken_over`, `draining`) after start; the
//! metrics thread only reads.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use super::backends::SharedBackends;
use super::{BUCKETS, COUNTERS, Counter};

/// The most connections a router reports on (Redis has two: command and subscriber).
pub const LINKS_MAX: usize = 4;

/// A worker's published counters, read by the metrics thread.
#[derive(Debug)]
pub struct SharedStats {
    pub(super) values: [AtomicU64; COUNTERS],
    pub(super) sessions: AtomicU64,
    pub(super) offloaded: AtomicU64,
    pub(super) latency: [AtomicU64; BUCKETS],
    pub(super) latency_sum_us: AtomicU64,
    pub(super) links_up: [AtomicBool; LINKS_MAX],
    pub backends: SharedBackends,
}

impl Default for SharedStats {
    fn default() -> Self {
        SharedStats {
            values: std::array::from_fn(|_| AtomicU64::new(0)),
            sessions: AtomicU64::new(0),
            offloaded: AtomicU64::new(0),
            latency: std::array::from_fn(|_| AtomicU64::new(0)),
            latency_sum_us: AtomicU64::new(0),
            links_up: std::array::from_fn(|_| AtomicBool::new(false)),
            backends: SharedBackends::default(),
        }
    }
}

impl SharedStats {
    pub fn get(&self, counter: Counter) -> u64 {
        self.values[counter as usize].load(Ordering::Relaxed)
    }

    pub fn sessions(&self) -> u64 {
        self.sessions.load(Ordering::Relaxed)
    }

    /// Sessions whose flows are in the XDP map.
    pub fn offloaded(&self) -> u64 {
        self.offloaded.load(Ordering::Relaxed)
    }

    /// Whether this worker's router connection `link` is up.
    pub fn link_up(&self, link: usize) -> bool {
        self.links_up
            .get(link)
            .is_some_and(|up| up.load(Ordering::Relaxed))
    }

    /// Lookup latency: per-bucket counts (not cumulative) and the sum in microseconds.
    pub fn latency(&self) -> ([u64; BUCKETS], u64) {
        (
            std::array::from_fn(|i| self.latency[i].load(Ordering::Relaxed)),
            self.latency_sum_us.load(Ordering::Relaxed),
        )
    }
}

/// The sum over workers of one counter.
pub fn total(workers: &[SharedStats], counter: Counter) -> u64 {
    workers.iter().map(|w| w.get(counter)).sum()
}

/// What workers, the metrics thread and the owner of a running ringgate share.
#[derive(Debug)]
pub struct Shared {
    pub stats: Box<[SharedStats]>,
    /// Workers whose listener receive is armed.
    pub armed: AtomicUsize,
    pub workers: usize,
    /// The router's name (`fixed`, `redis`) and its connections' names.
    pub router: &'static str,
    pub links: &'static [&'static str],
    /// Readiness also needs every worker's router connections up (`--ready-requires-redis`).
    pub ready_requires_links: bool,
    pub stop: AtomicBool,
    /// With `stop`: stop without closing sessions (another process serves them).
    pub taken_over: AtomicBool,
    /// Draining (SIGTERM with `--drain-timeout`): no new sessions, not ready.
    pub draining: AtomicBool,
    /// A successor took everything over (this process is on its way out, cleanly but not
    /// leaving the fleet: its heartbeat key is the successor's now).
    pub handed_over: AtomicBool,
    /// Whether SO_RCVBUFFORCE/SO_SNDBUFFORCE were permitted, so `net.core.rmem_max` and
    /// `wmem_max` do not cap ringgate's socket buffers.
    pub buffers_forced: AtomicBool,
    /// The host's addresses at start-up (what a wildcard listener answers on).
    pub local_ips: Vec<IpAddr>,
    /// Sessions each worker may hold within the open-files limit, after the reserve.
    pub fd_sessions_per_worker: usize,
    /// The driver every worker uses (`io_uring`, `epoll`), and why (`--io-backend`).
    pub io_backend: &'static str,
    pub io_backend_reason: &'static str,
    /// The XDP fast path: `off` (no `--xdp`), `attached`, or `socket_path` (asked for, but it
    /// could not be loaded or attached), and what `/metrics` reads of it when attached.
    pub xdp_state: &'static str,
    pub xdp: Option<crate::xdp::Status>,
}

impl Shared {
    pub fn new(workers: usize, router: &'static str, links: &'static [&'static str]) -> Shared {
        Shared {
            local_ips: Vec::new(),
            ready_requires_links: false,
            fd_sessions_per_worker: usize::MAX,
            io_backend: "io_uring",
            io_backend_reason: "configured",
            xdp_state: "off",
            xdp: None,
            stats: (0..workers).map(|_| SharedStats::default()).collect(),
            armed: AtomicUsize::new(0),
            workers,
            router,
            links,
            stop: AtomicBool::new(false),
            draining: AtomicBool::new(false),
            taken_over: AtomicBool::new(false),
            handed_over: AtomicBool::new(false),
            buffers_forced: AtomicBool::new(false),
        }
    }

    /// Every worker has armed its receive and neither a stop nor a drain was requested; with
    /// `ready_requires_links`, every worker's router connections are up too.
    pub fn is_ready(&self) -> bool {
        !self.stop.load(Ordering::Acquire)
            && !self.draining.load(Ordering::Acquire)
            && self.armed.load(Ordering::Acquire) == self.workers
            && (!self.ready_requires_links || self.links_up() == self.links_total())
    }

    /// Router connections up, over all workers.
    pub fn links_up(&self) -> usize {
        self.stats
            .iter()
            .map(|w| (0..self.links.len()).filter(|&l| w.link_up(l)).count())
            .sum()
    }

    pub fn links_total(&self) -> usize {
        self.links.len() * self.workers
    }

    pub fn total(&self, counter: Counter) -> u64 {
        total(&self.stats, counter)
    }

    pub fn sessions(&self) -> u64 {
        self.stats.iter().map(SharedStats::sessions).sum()
    }
}
