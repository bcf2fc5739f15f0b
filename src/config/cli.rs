//! Command line and environment, validated into a [`Config`].
//!
//! Every flag reads an environment variable (udp-gate's names where udp-gate has the setting,
//! `RINGGATE_*` otherwise). Precedence: flags, then the real environment, then a `.env` file in
//! the working directory (loaded by the binary without overriding what is already set).

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Parser, ValueEnum};

use super::Config;
pub use super::origins::Origins;
use super::parse::{
    CpuList, parse_backend, parse_buffers, parse_cpu_list, parse_listen, parse_rate,
    parse_ring_entries,
};
pub use super::redis_args::RedisArgs;
pub use super::upgrade::UpgradeArgs;
pub use super::xdp_args::XdpArgs;
use crate::admission::rate::RateLimit;
use crate::route::Routes;
use crate::route::resolve::Dest;
use crate::sys::driver::Backend;
use crate::sys::uring::TaskRun;
use crate::user_data::SLOTS_MAX;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// A thread-per-core io_uring UDP forwarder: each client session gets its own connected
/// upstream socket to a backend.
#[derive(Debug, Parser)]
#[command(name = "ringgate", version, about, max_term_width = 100)]
pub struct Cli {
    /// Address clients send to, as udp-gate takes it: `:PORT` or `0.0.0.0:PORT` (all
    /// interfaces, IPv4 and IPv6), `[::]:PORT`, `127.0.0.1:PORT`, `[::1]:PORT`, `HOST:PORT`
    #[arg(
        long,
        env = "PROXY_ADDR",
        default_value = "0.0.0.0:19132",
        value_name = "ADDR"
    )]
    pub listen: String,

    /// Static backend, IP:PORT or HOST:PORT (repeat, or comma-separate in the variable); new
    /// sessions go to the one with the fewest sessions on the worker, ties round-robin. A name
    /// is resolved off the workers and again every 30 s. Without one, routes come from Redis
    #[arg(
        long = "backend",
        env = "BACKENDS",
        value_delimiter = ',',
        value_name = "ADDR",
        value_parser = parse_backend
    )]
    pub backends: Vec<Dest>,

    /// Worker threads [default: one per online CPU, or one per --cpus entry; udp-gate's
    /// LISTENER_COUNT is honoured when WORKERS is unset]
    #[arg(long, env = "WORKERS", value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub workers: Option<u16>,

    /// CPUs to pin workers to, e.g. 0-3,6 (worker i gets the i-th, cycling) [default: all]
    #[arg(long, env = "RINGGATE_CPUS", value_name = "LIST", value_parser = parse_cpu_list)]
    pub cpus: Option<CpuList>,

    /// Do not pin workers to CPUs (the variable takes 1/0, true/false, yes/no, on/off)
    #[arg(long, env = "RINGGATE_NO_PIN", value_parser = clap::builder::BoolishValueParser::new())]
    pub no_pin: bool,

    /// Close a session after this long without a datagram in either direction
    #[arg(long, env = "SESSION_IDLE_TIMEOUT_SECS", value_name = "SECS", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub idle_timeout: u64,

    /// Close a session whose client has not sent again after its backend's first answer
    /// within this long (a spoofed source never can)
    #[arg(long, env = "RINGGATE_UNREPLIED_TIMEOUT", value_name = "SECS", default_value_t = 5,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub unreplied_timeout: u64,

    /// New sessions per source address (an IPv6 /64 is one source), RATE per second with a
    /// BURST; 0 disables
    #[arg(long, env = "RINGGATE_NEW_SESSIONS_PER_IP", value_name = "RATE[/BURST]",
          default_value = "50/100", value_parser = parse_rate)]
    pub new_sessions_per_ip: Option<RateLimit>,

    /// New sessions per worker, RATE per second with a BURST: bounds the CPU newcomers (a
    /// spoofed flood) can take from established sessions; a source dropped at the budget that
    /// sends again within 5 s draws on a second budget of the same size; 0 disables
    #[arg(long, env = "RINGGATE_NEW_SESSIONS_PER_WORKER", value_name = "RATE[/BURST]",
          default_value = "5000", value_parser = parse_rate)]
    pub new_sessions_per_worker: Option<RateLimit>,

    /// Sessions per worker; when full, a new client evicts the oldest unconfirmed session, or
    /// is dropped and counted
    #[arg(long, env = "RINGGATE_MAX_SESSIONS", value_name = "N", default_value_t = 65_536,
          value_parser = clap::value_parser!(u32).range(1..(SLOTS_MAX as i64)))]
    pub max_sessions: u32,

    /// Datagrams held per session while its route is looked up
    #[arg(long, env = "RINGGATE_PENDING_MAX", value_name = "N", default_value_t = 8,
          value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub pending_max: u32,

    /// Largest datagram forwarded, in bytes; larger ones are dropped and counted
    #[arg(long, env = "RINGGATE_BUFFER_SIZE", value_name = "BYTES", default_value_t = 2048,
          value_parser = clap::value_parser!(u32).range(1..=65_535))]
    pub buffer_size: u32,

    /// Receive buffers per worker (a power of two up to 32768), shared by all its sockets
    #[arg(long, env = "RINGGATE_BUFFERS", value_name = "N", default_value_t = 4096,
          value_parser = parse_buffers)]
    pub buffers: u32,

    /// SO_RCVBUF/SO_SNDBUF of every socket, in bytes (SO_*BUFFORCE when permitted)
    #[arg(long, env = "RINGGATE_SOCKET_BUFFER", value_name = "BYTES", default_value_t = 8 << 20,
          value_parser = clap::value_parser!(u32).range(4096..=(1 << 30)))]
    pub socket_buffer: u32,

    /// Submission queue entries per worker (a power of two); the completion queue gets 8x
    #[arg(long, env = "RINGGATE_RING_ENTRIES", value_name = "N", default_value_t = 2048,
          value_parser = parse_ring_entries)]
    pub ring_entries: u32,

    /// How each ring runs completion work: deferred (SINGLE_ISSUER|DEFER_TASKRUN, 6.1+),
    /// cooperative (COOP_TASKRUN) or default; a mode the kernel refuses falls back to the next
    #[arg(
        long,
        env = "RINGGATE_TASK_RUN",
        value_enum,
        default_value = "deferred"
    )]
    pub task_run: TaskRun,

    /// How workers talk to the kernel: io-uring, epoll (recvmmsg/sendmmsg, where io_uring is
    /// refused: container seccomp profiles, kernel.io_uring_disabled, kernels before 6.1), or
    /// auto (io_uring if a probe at start succeeds, else epoll with one warning saying why)
    #[arg(
        long,
        env = "RINGGATE_IO_BACKEND",
        value_name = "BACKEND",
        value_parser = ["auto", "io-uring", "epoll"],
        default_value = "auto"
    )]
    pub io_backend: String,

    /// Serve /metrics, /healthz and /readyz on this address [default: off]
    #[arg(long, env = "METRICS_ADDR", value_name = "ADDR")]
    pub metrics: Option<SocketAddr>,

    /// Make /readyz answer 503 while any worker's Redis connections are down (by default it
    /// does not: established sessions keep forwarding without Redis, and a not-ready pod behind a
    /// Kubernetes Service has its UDP flows flushed) (the variable takes 1/0, true/false...)
    #[arg(long, env = "RINGGATE_READY_REQUIRES_REDIS",
          value_parser = clap::builder::BoolishValueParser::new())]
    pub ready_requires_redis: bool,

    /// Connections the metrics server holds at once; past it, the oldest that has not sent a
    /// whole request is closed
    #[arg(long, env = "RINGGATE_METRICS_CONNECTIONS_MAX", value_name = "N", default_value_t = 64,
          value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub metrics_connections_max: u32,

    /// Tell backends each player's real address: a PROXY protocol v2 header (source = the
    /// client, destination = the address it sent to) before each session's first datagram
    #[arg(long, env = "RINGGATE_PROXY_PROTOCOL", value_name = "off|v2", default_value = "off",
          value_parser = ["off", "v2"])]
    pub proxy_protocol: String,

    /// With --proxy-protocol v2: the header before every datagram, for receivers that want that
    #[arg(long, env = "RINGGATE_PROXY_PROTOCOL_EVERY",
          value_parser = clap::builder::BoolishValueParser::new())]
    pub proxy_protocol_every: bool,

    /// Publish the session map in Redis: PREFIX<upstream ip:port> (the address the backend
    /// sees) = the client's ip:port, expiring after twice the idle timeout, refreshed while the
    /// session lives and deleted when it closes (needs Redis routing)
    #[arg(long, env = "RINGGATE_PUBLISH_SESSIONS",
          value_parser = clap::builder::BoolishValueParser::new())]
    pub publish_sessions: bool,

    /// The session map's key prefix
    #[arg(
        long,
        env = "RINGGATE_PUBLISH_SESSIONS_PREFIX",
        value_name = "PREFIX",
        default_value = "udp_gate:session:"
    )]
    pub publish_sessions_prefix: String,

    /// Log `new session: CLIENT → BACKEND (backend port N)` and `session closed: CLIENT
    /// (REASON)` at info, as udp-gate does (at most 100 lines a second per worker)
    #[arg(long, env = "RINGGATE_LOG_SESSIONS", value_name = "on|off", default_value = "on",
          value_parser = clap::builder::BoolishValueParser::new(), action = clap::ArgAction::Set)]
    pub log_sessions: bool,

    /// Every this many seconds, log one line with the drops of the period by reason (none when
    /// nothing was dropped); 0 turns it off
    #[arg(long, env = "RINGGATE_LOG_SUMMARY_SECS", value_name = "SECS", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(0..=86_400))]
    pub log_summary_secs: u64,

    /// Log line format (the level comes from RUST_LOG, default info)
    #[arg(long, env = "RINGGATE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    #[command(flatten)]
    pub redis: RedisArgs,

    #[command(flatten)]
    pub upgrade: UpgradeArgs,

    #[command(flatten)]
    pub xdp: XdpArgs,

    /// How each setting was given, so that an error names what the user wrote.
    #[arg(skip)]
    pub origins: Origins,
}

impl Cli {
    /// Validates the parsed arguments into a [`Config`]. `listener_count` is udp-gate's
    /// `LISTENER_COUNT`, used when neither `--workers` nor `WORKERS` is given. `allowed_cpus`
    /// are the CPUs this process may run on (its affinity mask, e.g. systemd's `CPUAffinity=`):
    /// the default worker count and pinning use them, and `--cpus` must pick from them.
    pub fn into_config(
        self,
        listener_count: Option<String>,
        allowed_cpus: &[usize],
    ) -> Result<Config, String> {
        let workers = match (self.workers, listener_count) {
            (Some(n), _) => usize::from(n),
            (None, Some(text)) => match text.trim().parse::<usize>() {
                Ok(n) if (1..=1024).contains(&n) => n,
                _ => {
                    return Err(format!(
                        "invalid value '{text}' for LISTENER_COUNT (--workers): a number from 1 to 1024"
                    ));
                }
            },
            (None, None) => self
                .cpus
                .as_ref()
                .map_or(allowed_cpus.len().max(1), |c| c.0.len()),
        };
        if let Some(cpus) = &self.cpus
            && let Some(bad) = cpus.0.iter().find(|c| !allowed_cpus.contains(c))
        {
            return Err(format!(
                "invalid value for '--cpus': CPU {bad} is not available to this process \
                 (its affinity mask allows {allowed_cpus:?})"
            ));
        }
        // Static backends if any are given, else Redis: decided here and nowhere else.
        let routes = if self.backends.is_empty() {
            Routes::Redis(self.redis_settings()?)
        } else {
            Routes::Fixed(self.backends.clone())
        };
        let cpus = match (self.no_pin, self.cpus) {
            (true, _) => None,
            (false, Some(list)) => Some(list.0),
            (false, None) if allowed_cpus.is_empty() => None,
            (false, None) => Some(allowed_cpus.to_vec()),
        };
        if self.publish_sessions && !self.backends.is_empty() {
            return Err(format!(
                "{} needs Redis routing: the map is written to the Redis the routes come from \
                 (remove --backend/BACKENDS, or the flag)",
                self.origins.name("publish_sessions")
            ));
        }
        if self.proxy_protocol_every && self.proxy_protocol != "v2" {
            return Err(format!(
                "{} needs {} v2",
                self.origins.name("proxy_protocol_every"),
                self.origins.name("proxy_protocol")
            ));
        }
        let listen = parse_listen(&self.listen).map_err(|why| {
            format!(
                "invalid value `{}` for {}: {why}",
                self.listen,
                self.origins.name("listen")
            )
        })?;
        Ok(Config {
            listen,
            routes,
            workers,
            cpus,
            idle_timeout: Duration::from_secs(self.idle_timeout),
            unreplied_timeout: Duration::from_secs(self.unreplied_timeout),
            new_sessions_per_ip: self.new_sessions_per_ip.filter(|r| r.per_sec > 0.0),
            new_sessions_per_worker: self.new_sessions_per_worker.filter(|r| r.per_sec > 0.0),
            sessions_max: self.max_sessions as usize,
            pending_max: self.pending_max as usize,
            buffer_size_bytes: self.buffer_size,
            buffer_count: self.buffers,
            socket_buffer_bytes: self.socket_buffer as usize,
            ring_entries: self.ring_entries,
            task_run: self.task_run,
            io_backend: match self.io_backend.as_str() {
                "io-uring" => Some(Backend::IoUring),
                "epoll" => Some(Backend::Epoll),
                _ => None,
            },
            metrics: self.metrics,
            metrics_connections_max: self.metrics_connections_max as usize,
            ready_requires_redis: self.ready_requires_redis,
            log_sessions: self.log_sessions,
            proxy_protocol: self.proxy_protocol == "v2",
            proxy_protocol_every: self.proxy_protocol_every,
            log_summary: Duration::from_secs(self.log_summary_secs),
            log_format: self.log_format,
            control: self.upgrade.control,
            takeover: self.upgrade.takeover,
            handover_timeout: Duration::from_secs(self.upgrade.handover_timeout),
            drain_timeout: Duration::from_secs(self.upgrade.drain_timeout),
            xdp: self.xdp.settings(&self.origins)?,
        })
    }
}

#[cfg(test)]
#[path = "cli_tests.rs"]
mod tests;
