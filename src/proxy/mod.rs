//! Starting, observing and stopping a set of workers.
//!
//! Each worker is built inside its own (optionally pinned) thread, so everything it owns is
//! created on the CPU that uses it and never crosses threads. Worker 0 starts first: when the
//! listen address has port 0 it picks the port, and the others join its reuseport group on that
//! concrete port. Workers share only [`Shared`]: each worker's published counters (each written
//! by its worker alone), `armed` (counted up and down by the workers), `buffers_forced` (written
//! by the workers at start), and the flags this module writes after start (`stop`, `taken_over`,
//! `draining`), which a worker reads on its wake-up or, for `draining`, per new session.
//!
//! With `--takeover`, the workers build their rings and then adopt the listening sockets and
//! sessions of the process being taken over instead of binding (`takeover`); with `--control`,
//! this process serves takeovers itself (`crate::takeover::give`).

pub mod backend;
mod preflight;
mod takeover;
mod thread;

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::time::Instant;

use tracing::{error, info, warn};

use crate::config::Config;
use crate::heartbeat::{Facts, Heartbeat};
use crate::metrics::{self, MetricsServer};
use crate::route::resolve::Resolver;
use crate::route::{self, Routes};
use crate::stats::Shared;
use crate::summary::Summary;
use crate::sys::uring::TaskRun;
use crate::sys::{eventfd, limits};
use crate::takeover::WorkerLink;
use crate::takeover::give::{Control, HandedOver, Served};
use crate::takeover::take::Taking;
use crate::worker::Listen;
use crate::xdp::FastPath;

use self::thread::WorkerThread;

/// Why ringgate could not start; the message names the cause and, where there is one, the fix.
#[derive(Debug)]
pub struct StartError(pub String);

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StartError {}

/// What the owner of a running ringgate hears of.
#[derive(Default)]
pub struct Hooks {
    /// Another process took over everything (through `--control`): time to exit.
    pub handed_over: Option<Box<dyn Fn(HandedOver) + Send>>,
}

/// A running ringgate.
pub struct Proxy {
    local: SocketAddr,
    shared: Arc<Shared>,
    workers: Vec<WorkerThread>,
    metrics: Option<MetricsServer>,
    summary: Option<Summary>,
    control: Option<Control>,
    heartbeat: Option<Heartbeat>,
    /// The XDP fast path's program and links (`--xdp`): detached when this is dropped, unless a
    /// successor holds them too.
    xdp: Option<FastPath>,
}

impl Proxy {
    pub fn start(config: Config) -> Result<Proxy, StartError> {
        Proxy::start_with(config, Hooks::default())
    }

    pub fn start_with(mut config: Config, hooks: Hooks) -> Result<Proxy, StartError> {
        if matches!(&config.routes, Routes::Fixed(backends) if backends.is_empty()) {
            return Err(StartError(
                "no route source: give --backend ADDR, or Redis settings".into(),
            ));
        }
        if config.takeover.is_none() {
            config.listen = preflight::check_listen(config.listen)?;
        }
        if let Routes::Redis(settings) = &config.routes {
            preflight::check_redis(settings)?;
        }
        // Once for the process, before any socket is bound: io_uring, or epoll where it is
        // refused. Every worker builds the driver chosen here.
        let probe = crate::worker::driver_config(
            &config,
            route::Resources::default(),
            config.listen.ip(),
            false,
        );
        let (io_backend, io_backend_reason) = backend::choose(&config, &probe)?;
        config.io_backend = Some(io_backend);
        // First, so that a takeover can make room for every descriptor it will receive.
        let nofile = match limits::raise_nofile() {
            Ok(nofile) => nofile,
            Err(e) => {
                warn!(error = %e, "cannot raise the open files limit");
                1024
            }
        };
        // Asked before anything is built: a refusal (worker count, listen address) costs the
        // running process nothing.
        let (listen, workers, xdp) = (config.listen, config.workers, config.xdp.is_some());
        let mut taking = match &config.takeover {
            Some(path) => Some(Taking::connect(path, listen, workers, xdp).map_err(StartError)?),
            None => None,
        };
        // Before the workers: each takes a handle on the flow map as it is built.
        let inherited = taking.as_mut().and_then(|t| t.xdp.take());
        let started = crate::xdp::start(config.xdp.as_ref(), config.xdp_flows(), inherited)
            .map_err(StartError)?;
        // Sessions never take the last descriptors: the reserve keeps health checks, metrics
        // and Redis reachable when a flood of new sources meets a low limit.
        let reserve = config.fd_reserve();
        let per_worker = nofile.saturating_sub(reserve) / config.workers.max(1) as u64;
        info!(
            nofile,
            reserve,
            sessions_per_worker = per_worker,
            "open files limit"
        );
        // What the router reports on is the same for every worker; ask one built for that.
        let probe = route::build(&config.routes, 0, Instant::now(), None);
        let mut shared = Shared::new(config.workers, probe.name(), probe.links());
        drop(probe);
        shared.fd_sessions_per_worker = usize::try_from(per_worker).unwrap_or(usize::MAX);
        shared.ready_requires_links = config.ready_requires_redis;
        shared.io_backend = io_backend.name();
        shared.io_backend_reason = io_backend_reason;
        shared.xdp_state = started.state;
        shared.xdp = started.status;
        shared.local_ips = limits::local_addresses().unwrap_or_else(|e| {
            warn!(error = %e, "cannot list the host's addresses; only loopback counts as ringgate's own");
            Vec::new()
        });
        let shared = Arc::new(shared);
        // Host names (static backends, Redis values, Redis's own) resolve on these threads,
        // never a worker's. They end when the last worker's handle is dropped.
        let resolver = match Resolver::start() {
            Ok((resolver, _threads)) => Some(resolver),
            Err(e) => {
                warn!(error = %e, "cannot start the name resolver; host names will not resolve");
                None
            }
        };
        let config = Arc::new(config);
        let mut proxy = Proxy {
            local: taking.as_ref().map_or(config.listen, |t| t.local),
            shared: Arc::clone(&shared),
            workers: Vec::with_capacity(config.workers),
            metrics: None,
            summary: None,
            control: None,
            heartbeat: None,
            xdp: started.fast_path,
        };
        let mut imports = Vec::new();
        for index in 0..config.workers {
            let listen = match &taking {
                Some(t) => {
                    let (give, import) = mpsc::sync_channel(1);
                    imports.push(give);
                    Listen::Adopt {
                        local: t.local,
                        import,
                    }
                }
                None => Listen::Bind(proxy.local),
            };
            let (pause, control) = match &config.control {
                Some(_) => {
                    let (give, take) = mpsc::channel();
                    (Some(give), Some(take))
                }
                None => (None, None),
            };
            match thread::spawn_worker(&config, index, listen, &shared, resolver.clone(), control) {
                Ok((mut thread, local)) => {
                    thread.pause = pause;
                    proxy.local = local;
                    proxy.workers.push(thread);
                }
                Err(e) => {
                    let _ = proxy.stop();
                    return Err(e);
                }
            }
        }
        let mut inherited = None;
        let taking_over = taking.is_some();
        if let Some(taking) = taking.take() {
            match takeover::finish(taking, std::mem::take(&mut imports), &config) {
                Ok(metrics) => inherited = metrics,
                Err(why) => {
                    // The old process serves everything again; close nothing it holds.
                    proxy.shared.taken_over.store(true, Ordering::Release);
                    let _ = proxy.stop();
                    return Err(StartError(format!(
                        "takeover failed: {why}; the running ringgate keeps serving"
                    )));
                }
            }
        }
        if let Some(addr) = config.metrics {
            let settings = metrics::Settings {
                addr,
                connections_max: config.metrics_connections_max,
                worker_cpus: config
                    .cpus
                    .as_ref()
                    .map(|cpus| cpus.iter().copied().cycle().take(config.workers).collect()),
                allowed_cpus: core_affinity::get_core_ids()
                    .map(|ids| ids.into_iter().map(|c| c.id).collect())
                    .unwrap_or_default(),
            };
            let listener =
                inherited.filter(|l| l.local_addr().is_ok_and(|a| a == addr || addr.port() == 0));
            match MetricsServer::start(settings, listener, Arc::clone(&shared)) {
                Ok(server) => proxy.metrics = Some(server),
                // After a takeover this process serves every session: stopping would drop them.
                Err(e) if taking_over => error!(
                    "cannot serve --metrics on {addr}: {e}; forwarding on without metrics or \
                     health checks (fix the setting and take over again)"
                ),
                Err(e) => {
                    let _ = proxy.stop();
                    return Err(StartError(format!("cannot serve --metrics on {addr}: {e}")));
                }
            }
        }
        if !config.log_summary.is_zero() {
            match Summary::start(config.log_summary, Arc::clone(&shared)) {
                Ok(summary) => proxy.summary = Some(summary),
                Err(e) => {
                    warn!(error = %e, "cannot start the drop summary; carrying on without it")
                }
            }
        }
        if let Routes::Redis(settings) = &config.routes {
            let facts = Facts {
                id: settings.instance.clone(),
                listen: proxy.local,
            };
            match Heartbeat::start(settings.clone(), facts, Arc::clone(&shared)) {
                Ok(heartbeat) => proxy.heartbeat = Some(heartbeat),
                Err(e) => {
                    warn!(error = %e, "cannot start the fleet heartbeat; carrying on without it")
                }
            }
        }
        if let Some(path) = &config.control {
            let handed_over = hooks.handed_over;
            let flag = Arc::clone(&shared);
            let handed_over: Box<dyn Fn(HandedOver) + Send> = Box::new(move |h| {
                flag.handed_over.store(true, Ordering::Release);
                if let Some(hook) = &handed_over {
                    hook(h);
                }
            });
            let served = Served {
                listen: config.listen,
                local: proxy.local,
                workers: proxy.worker_links(),
                metrics: proxy.metrics.as_ref().map(MetricsServer::listener_fd),
                xdp: proxy.xdp.as_ref().and_then(FastPath::export),
                timeout: config.handover_timeout,
                handed_over: Some(handed_over),
            };
            // After a takeover the old process still listens on the path: replace it.
            let replace = config.takeover.is_some();
            match Control::start(path, served, replace) {
                Ok(control) => proxy.control = Some(control),
                Err(e) if taking_over => error!(
                    "cannot listen on --control {}: {e}; forwarding on, but no further takeover \
                     can reach this process (a restart would drop every session)",
                    path.display()
                ),
                Err(e) => {
                    let _ = proxy.stop();
                    return Err(StartError(format!(
                        "cannot listen on --control {}: {e}",
                        path.display()
                    )));
                }
            }
        }
        Ok(proxy)
    }

    /// How the control socket reaches each worker.
    fn worker_links(&self) -> Vec<WorkerLink> {
        self.workers
            .iter()
            .filter_map(|w| {
                Some(WorkerLink {
                    pause: w.pause.clone()?,
                    waker: w.waker.try_clone().ok()?,
                })
            })
            .collect()
    }

    /// Stops taking new clients (SIGTERM with `--drain-timeout`): established sessions
    /// forward on, and `/readyz` answers 503.
    pub fn drain(&self) {
        self.shared.draining.store(true, Ordering::Release);
    }

    /// The address clients send to (with the port the kernel chose, if port 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().map(MetricsServer::local_addr)
    }

    pub fn shared(&self) -> &Shared {
        &self.shared
    }

    /// The task-running mode each worker's ring was built with.
    pub fn task_runs(&self) -> Vec<Option<TaskRun>> {
        self.workers.iter().map(|w| w.task_run).collect()
    }

    /// Stops every worker (cancelling and draining their operations) and the metrics server.
    /// Returns the first worker error, if any.
    pub fn shutdown(mut self) -> io::Result<()> {
        self.stop()
    }

    fn stop(&mut self) -> io::Result<()> {
        if let Some(control) = self.control.take() {
            control.stop();
        }
        self.shared.stop.store(true, Ordering::Release);
        for w in &self.workers {
            if let Err(e) = eventfd::signal(&w.waker) {
                error!(error = %e, "cannot wake a worker");
            }
        }
        let mut result = Ok(());
        for w in self.workers.drain(..) {
            let outcome = w
                .handle
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("worker thread panicked")));
            if let Err(e) = outcome {
                error!(error = %e, "worker failed");
                if result.is_ok() {
                    result = Err(e);
                }
            }
        }
        if let Some(metrics) = self.metrics.take() {
            metrics.stop();
        }
        if let Some(summary) = self.summary.take() {
            summary.stop();
        }
        if let Some(heartbeat) = self.heartbeat.take() {
            // Leaving the fleet, unless a successor took over (the key is its now).
            let delete = !self.shared.handed_over.load(Ordering::Acquire)
                && !self.shared.taken_over.load(Ordering::Acquire);
            heartbeat.stop(delete);
        }
        result
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if !self.workers.is_empty()
            || self.metrics.is_some()
            || self.summary.is_some()
            || self.control.is_some()
            || self.heartbeat.is_some()
        {
            let _ = self.stop();
        }
    }
}
