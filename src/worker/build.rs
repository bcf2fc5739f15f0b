//! Building a worker: its driver and router, then its listening socket (bound here, or adopted
//! from the process being taken over), its session table and newcomer gate.

use std::fs::File;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::Receiver;
use std::time::Instant;

use socket2::Socket;
use tracing::info;

use super::lifecycle::Life;
use super::warnings::Warnings;
use super::{Started, Worker, adopt, closing, pause};
use crate::admission::Admission;
use crate::config::Config;
use crate::pp2;
use crate::route::{self, resolve::Resolver};
use crate::session::{Limits, Sessions};
use crate::stats::{Counters, Shared};
use crate::sys::driver::{Backend, Driver, DriverConfig};
use crate::sys::uring::TaskRun;
use crate::sys::{eventfd, socket};
use crate::takeover::{Import, Pause};

/// Where a worker's listening socket comes from.
pub enum Listen {
    /// Bind this address (a concrete port for every worker but the first, which may bind
    /// port 0).
    Bind(SocketAddr),
    /// Take it, and every session, from the process being taken over; it listens on `local`.
    Adopt {
        local: SocketAddr,
        import: Receiver<Import>,
    },
}

/// What a worker's driver is built with: `config`'s sizes and backend (io_uring until the
/// process has chosen), the router's streams and timers, and room for what the listener on
/// `listen_ip` and a PROXY header need (`adopting`: sessions taken over may carry one).
pub fn driver_config(
    config: &Config,
    lent: route::Resources,
    listen_ip: IpAddr,
    adopting: bool,
) -> DriverConfig {
    DriverConfig {
        backend: config.io_backend.unwrap_or(Backend::IoUring),
        sq_entries: config.ring_entries,
        // The kernel's limit on a completion queue (IORING_MAX_CQ_ENTRIES).
        cq_entries: (config.ring_entries * 8).min(65_536),
        buffer_count: config.buffer_count,
        payload_bytes: config.buffer_size_bytes,
        // Room for a PROXY header: this process's, or one an adopted session keeps from the
        // process it was taken over from (whose settings may have differed).
        headroom: if config.proxy_protocol || adopting {
            pp2::HEADER_MAX
        } else {
            0
        },
        // A wildcard listener asks for each datagram's destination (pktinfo).
        recv_destination: listen_ip.is_unspecified(),
        tick: config.tick(),
        task_run: config.task_run,
        streams: lent.streams,
        stream_rx_bytes: lent.stream_rx_bytes,
        timers: lent.timers,
    }
}

impl Worker {
    /// Builds worker `index`: its ring and router, then its listening socket. `built` hears
    /// of it as soon as it can serve; a worker that adopts its sockets hears of that first, and
    /// then waits for them. `control` brings a takeover's requests (`--control`).
    pub fn new(
        config: &Config,
        index: usize,
        listen: Listen,
        shared: Arc<Shared>,
        resolver: Option<Resolver>,
        control: Option<Receiver<Pause>>,
        built: impl FnOnce(Started),
    ) -> io::Result<Worker> {
        let tick = config.tick();
        let router = route::build(&config.routes, index, Instant::now(), resolver);
        let lent = router.resources();
        let (listen_ip, adopting) = match &listen {
            Listen::Bind(addr) => (addr.ip(), false),
            Listen::Adopt { local, .. } => (local.ip(), true),
        };
        let driver = Driver::new(&driver_config(config, lent, listen_ip, adopting))?;
        let mut socket_size = socket::BufferSize {
            bytes: config.socket_buffer_bytes,
            force: true,
        };
        let wake = eventfd::eventfd()?;
        let waker = File::from(wake.try_clone()?);
        let task_run = driver.task_run();
        let (listener, forced, import) = match listen {
            Listen::Bind(addr) => {
                let (listener, forced) = socket::listener(addr, socket_size).map_err(|e| {
                    io::Error::new(e.kind(), format!("cannot bind --listen {addr}: {e}"))
                })?;
                let local = local_of(&listener)?;
                built(Started {
                    local,
                    waker,
                    task_run,
                });
                (listener, forced, None)
            }
            Listen::Adopt { local, import } => {
                built(Started {
                    local,
                    waker,
                    task_run,
                });
                let import = import.recv().map_err(|_| {
                    io::Error::other("the takeover ended before this worker's part")
                })?;
                let listener = Socket::from(import.listener);
                if local_of(&listener)? != local {
                    return Err(io::Error::other(
                        "the listening socket handed over is not the one asked for",
                    ));
                }
                // This process's socket buffer setting applies from now on.
                let forced = socket::set_buffers(&listener, socket_size)?;
                (
                    listener,
                    forced,
                    Some((import.sessions, import.adopted, import.commit)),
                )
            }
        };
        socket_size.force = forced;
        shared.buffers_forced.store(forced, Ordering::Relaxed);
        let local = local_of(&listener)?;
        if index == 0 {
            info!(
                driver = driver.name(),
                task_run = task_run.map_or("-", TaskRun::name),
                router = router.name(),
                socket_buffer = socket::recv_buffer(&listener).unwrap_or(0),
                forced,
                "worker ring built"
            );
        }
        let limits = Limits {
            sessions_max: config.sessions_max,
            fd_max: shared.fd_sessions_per_worker,
            pending_max: config.pending_max,
            held_max: config.held_max(),
        };
        let admission = Admission::new(
            local,
            shared.local_ips.clone(),
            config.new_sessions_per_ip,
            config.new_sessions_per_worker,
        );
        let mut worker = Worker {
            driver,
            listener,
            wake,
            sessions: Sessions::new(limits),
            router,
            admission,
            now: Instant::now(),
            started: Instant::now(),
            outcomes: Vec::new(),
            counters: Counters::default(),
            shared,
            index,
            deferred: Vec::new(),
            scratch: Vec::new(),
            events: Vec::new(),
            tick: adopt::TICK_ORIGIN,
            republish: None,
            tick_len: tick,
            idle_ticks: closing::idle_ticks(config.idle_timeout, tick),
            unreplied_ticks: closing::idle_ticks(config.unreplied_timeout, tick),
            max_payload: config.buffer_size_bytes as usize,
            local,
            proxy_protocol: config.proxy_protocol,
            proxy_protocol_every: config.proxy_protocol_every,
            socket_size,
            life: Life::Serving,
            warnings: Warnings::new(config.log_sessions),
            pause: pause::State::new(control),
            adoption: adopt::State::default(),
            offload: None,
        };
        if let Some(status) = &worker.shared.xdp {
            worker.offload = Some(super::offload::Offload::new(status.flows.try_clone()?));
        }
        if let Some((sessions, adopted, commit)) = import {
            worker.adopt(sessions, adopted, commit);
        }
        Ok(worker)
    }
}

fn local_of(socket: &Socket) -> io::Result<SocketAddr> {
    socket
        .local_addr()?
        .as_socket()
        .ok_or_else(|| io::Error::other("listener has no IP address"))
}
