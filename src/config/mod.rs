//! What a running ringgate is built from: [`Config`], validated.
//!
//! The binary builds it from the command line and environment ([`cli`]); tests and benches
//! build one directly. Field names carry their unit last (`buffer_size_bytes`,
//! `socket_buffer_bytes`) and limits read `<thing>_max`; durations are `Duration`s, whose type
//! carries the unit.

pub mod cli;
mod origins;
mod parse;
mod redis;
mod redis_args;
mod upgrade;
mod xdp_args;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

pub use cli::{Cli, LogFormat};
pub use parse::CpuList;

use crate::admission::rate::RateLimit;
use crate::route::Routes;
use crate::sys::driver::Backend;
use crate::sys::uring::TaskRun;

/// Everything a running ringgate is built from.
#[derive(Clone, Debug)]
pub struct Config {
    pub listen: SocketAddr,
    /// Where new sessions go: chosen here, once.
    pub routes: Routes,
    pub workers: usize,
    /// CPU for each worker (cycled); `None` leaves threads unpinned.
    pub cpus: Option<Vec<usize>>,
    pub idle_timeout: Duration,
    /// How long a session may stay unconfirmed (no answer seen by its client).
    pub unreplied_timeout: Duration,
    /// New sessions per source address (`None`: unlimited).
    pub new_sessions_per_ip: Option<RateLimit>,
    /// New sessions per worker, all sources together (`None`: unlimited).
    pub new_sessions_per_worker: Option<RateLimit>,
    /// Sessions per worker.
    pub sessions_max: usize,
    /// Datagrams held per session while its route is looked up.
    pub pending_max: usize,
    /// The largest datagram forwarded.
    pub buffer_size_bytes: u32,
    /// Provided receive buffers per worker (a power of two).
    pub buffer_count: u32,
    pub socket_buffer_bytes: usize,
    pub ring_entries: u32,
    pub task_run: TaskRun,
    /// `--io-backend`: the driver every worker uses; `None` (auto) until the process has
    /// probed io_uring (`proxy`), which then names the one chosen.
    pub io_backend: Option<Backend>,
    pub metrics: Option<SocketAddr>,
    /// Connections the metrics server holds at once.
    pub metrics_connections_max: usize,
    /// `/readyz` is 503 while the router's connections (Redis) are down.
    pub ready_requires_redis: bool,
    pub log_format: LogFormat,
    /// Log each session's start and end at info.
    pub log_sessions: bool,
    /// Put a PROXY protocol v2 header before each session's first datagram up.
    pub proxy_protocol: bool,
    /// ... before every datagram up.
    pub proxy_protocol_every: bool,
    /// How often to log a summary of drops (zero: never).
    pub log_summary: Duration,
    /// The control socket takeovers connect to (`--control`).
    pub control: Option<PathBuf>,
    /// Take over from the ringgate whose control socket this is (`--takeover`).
    pub takeover: Option<PathBuf>,
    /// How long a takeover may keep this process paused before it resumes.
    pub handover_timeout: Duration,
    /// How long SIGTERM lets established sessions drain (zero: exit at once).
    pub drain_timeout: Duration,
    /// `--xdp`: the XDP fast path for confirmed sessions (`None`: off).
    pub xdp: Option<crate::xdp::Settings>,
}

impl Config {
    /// The defaults, forwarding `listen` to `backends`, one unpinned worker.
    pub fn new(listen: SocketAddr, backends: Vec<SocketAddr>) -> Config {
        Config {
            listen,
            routes: Routes::fixed(&backends),
            workers: 1,
            cpus: None,
            idle_timeout: Duration::from_secs(60),
            unreplied_timeout: Duration::from_secs(5),
            new_sessions_per_ip: Some(RateLimit {
                per_sec: 50.0,
                burst: 100.0,
            }),
            new_sessions_per_worker: Some(RateLimit {
                per_sec: 5_000.0,
                burst: 5_000.0,
            }),
            sessions_max: 65_536,
            pending_max: 8,
            buffer_size_bytes: 2048,
            buffer_count: 4096,
            socket_buffer_bytes: 8 << 20,
            ring_entries: 2048,
            task_run: TaskRun::Deferred,
            io_backend: None,
            metrics: None,
            metrics_connections_max: 64,
            ready_requires_redis: false,
            log_format: LogFormat::Text,
            log_sessions: true,
            proxy_protocol: false,
            proxy_protocol_every: false,
            log_summary: Duration::from_secs(60),
            control: None,
            takeover: None,
            handover_timeout: Duration::from_secs(10),
            drain_timeout: Duration::ZERO,
            xdp: None,
        }
    }

    /// Entries the XDP flow map is made for: two per session the workers may hold together
    /// (`xdp` caps it).
    pub fn xdp_flows(&self) -> u32 {
        let flows = self
            .sessions_max
            .saturating_mul(self.workers)
            .saturating_mul(2);
        u32::try_from(flows).unwrap_or(u32::MAX)
    }

    /// How often the reaper runs: an eighth of the shorter of the idle and unreplied
    /// timeouts, between 10 ms and 1 s, so a session is closed between 1x and 1.25x its
    /// timeout.
    pub fn tick(&self) -> Duration {
        (self.idle_timeout.min(self.unreplied_timeout) / 8)
            .clamp(Duration::from_millis(10), Duration::from_secs(1))
    }

    /// File descriptors kept from sessions: listeners, rings, eventfds and Redis connections
    /// (8 a worker is ample), metrics connections, logs and stdio.
    pub fn fd_reserve(&self) -> u64 {
        64 + self.metrics_connections_max as u64 + 8 * self.workers as u64
    }

    /// Datagrams all of a worker's resolving sessions may hold together: a quarter of its
    /// buffer ring (held datagrams keep their buffers; the rest keeps traffic moving).
    pub fn held_max(&self) -> usize {
        (self.buffer_count as usize / 4).max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tick_is_bounded() {
        let mut c = Config::new("127.0.0.1:1".parse().unwrap(), vec![]);
        assert_eq!(
            c.tick(),
            Duration::from_millis(625),
            "an eighth of the unreplied 5 s"
        );
        c.unreplied_timeout = Duration::from_secs(3600);
        assert_eq!(c.tick(), Duration::from_secs(1));
        c.idle_timeout = Duration::from_millis(40);
        assert_eq!(c.tick(), Duration::from_millis(10));
        c.idle_timeout = Duration::from_secs(60);
        c.unreplied_timeout = Duration::from_secs(1);
        assert_eq!(c.tick(), Duration::from_millis(125));
    }

    #[test]
    fn a_quarter_of_the_buffers_may_wait_for_routes() {
        let mut c = Config::new("127.0.0.1:1".parse().unwrap(), vec![]);
        assert_eq!(c.held_max(), 1024);
        c.buffer_count = 2;
        assert_eq!(c.held_max(), 1);
    }
}
