//! Starting, observing and stopping a set of workers.
//!
//! Each worker is built inside its own (optionally pinned) thread, so everything it owns is
//! created on the CPU that uses it and never crosses threads. Worker 0 starts first: when the
//! listen address has port 0 it picks the port, and the others join its reuseport group on that
//! concrete port. Workers share only [`Shared`]: read-only-after-start flags and each worker's
//! published counters.

use std::fmt;
use std::fs::File;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tracing::{error, info, warn};

use crate::config::Config;
use crate::metrics::{self, MetricsServer};
use crate::route::resolve::Resolver;
use crate::route::{self, Routes};
use crate::stats::Shared;
use crate::summary::Summary;
use crate::sys::setup::TaskRun;
use crate::sys::{eventfd, limits, socket};
use crate::worker::{Started, Worker};

/// Why ringgate could not start; the message names the cause and, where there is one, the fix.
#[derive(Debug)]
pub struct StartError(pub String);

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StartError {}

struct WorkerThread {
    handle: JoinHandle<io::Result<()>>,
    waker: File,
    task_run: TaskRun,
}

/// A running ringgate.
pub struct Proxy {
    local: SocketAddr,
    shared: Arc<Shared>,
    workers: Vec<WorkerThread>,
    metrics: Option<MetricsServer>,
    summary: Option<Summary>,
}

impl Proxy {
    pub fn start(mut config: Config) -> Result<Proxy, StartError> {
        if matches!(&config.routes, Routes::Fixed(backends) if backends.is_empty()) {
            return Err(StartError(
                "no route source: give --backend ADDR, or Redis settings".into(),
            ));
        }
        config.listen = check_listen(config.listen)?;
        if let Routes::Redis(settings) = &config.routes {
            check_redis(settings)?;
        }
        let nofile = match limits::raise_nofile() {
            Ok(nofile) => nofile,
            Err(e) => {
                warn!(error = %e, "cannot raise the open files limit");
                1024
            }
        };
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
            local: config.listen,
            shared: Arc::clone(&shared),
            workers: Vec::with_capacity(config.workers),
            metrics: None,
            summary: None,
        };
        for index in 0..config.workers {
            let listen = proxy.local;
            match spawn_worker(&config, index, listen, &shared, resolver.clone()) {
                Ok((thread, local)) => {
                    proxy.local = local;
                    proxy.workers.push(thread);
                }
                Err(e) => {
                    let _ = proxy.stop();
                    return Err(e);
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
            match MetricsServer::start(settings, Arc::clone(&shared)) {
                Ok(server) => proxy.metrics = Some(server),
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
        Ok(proxy)
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
    pub fn task_runs(&self) -> Vec<TaskRun> {
        self.workers.iter().map(|w| w.task_run).collect()
    }

    /// Stops every worker (cancelling and draining their operations) and the metrics server.
    /// Returns the first worker error, if any.
    pub fn shutdown(mut self) -> io::Result<()> {
        self.stop()
    }

    fn stop(&mut self) -> io::Result<()> {
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
        result
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if !self.workers.is_empty() || self.metrics.is_some() || self.summary.is_some() {
            let _ = self.stop();
        }
    }
}

/// One handshake with Redis before listening: wrong settings stop ringgate here, with a message
/// naming them; an unreachable Redis does not (new clients wait for it, bounded).
fn check_redis(settings: &route::redis::Settings) -> Result<(), StartError> {
    use route::redis::preflight::{Preflight, preflight};
    match preflight(settings, REDIS_PREFLIGHT_TIMEOUT) {
        Ok(()) => {
            info!(redis = %settings.addr, "Redis answered");
            Ok(())
        }
        Err(Preflight::Refused(why)) => Err(StartError(format!(
            "Redis at {} refused ringgate: {why}",
            settings.addr
        ))),
        Err(Preflight::Unreachable(why)) => {
            warn!(redis = %settings.addr, error = %crate::logtext::escaped(why.as_bytes(), 200),
                  "Redis is not answering; starting anyway: new clients wait for it, and \
                   established sessions never need it");
            Ok(())
        }
    }
}

/// How long the start-up handshake with Redis may take.
const REDIS_PREFLIGHT_TIMEOUT: Duration = Duration::from_secs(2);

/// Makes sure nobody else holds the listen address (a reuseport group would silently share
/// it), and falls back from the dual-stack wildcard to IPv4 on a host without IPv6.
fn check_listen(listen: SocketAddr) -> Result<SocketAddr, StartError> {
    if listen.port() == 0 {
        return Ok(listen);
    }
    match socket::probe_bind(listen) {
        Ok(()) => Ok(listen),
        Err(e) if e.raw_os_error() == Some(libc::EAFNOSUPPORT) && listen.ip().is_unspecified() => {
            warn!("IPv6 is not available on this host; listening on IPv4 only");
            let v4 = SocketAddr::from(([0, 0, 0, 0], listen.port()));
            socket::probe_bind(v4)
                .map(|()| v4)
                .map_err(|e| in_use(v4, &e))
        }
        Err(e) => Err(in_use(listen, &e)),
    }
}

fn in_use(listen: SocketAddr, e: &io::Error) -> StartError {
    if e.kind() == io::ErrorKind::AddrInUse {
        StartError(format!(
            "cannot listen on {listen} (--listen/PROXY_ADDR): the address is in use by another \
             process (another ringgate or udp-gate?); stop it, or choose another port"
        ))
    } else {
        StartError(format!(
            "cannot listen on {listen} (--listen/PROXY_ADDR): {e}"
        ))
    }
}

/// Starts worker `index` on its own thread and waits until it is built (or failed to be).
fn spawn_worker(
    config: &Arc<Config>,
    index: usize,
    listen: SocketAddr,
    shared: &Arc<Shared>,
    resolver: Option<Resolver>,
) -> Result<(WorkerThread, SocketAddr), StartError> {
    let (tx, rx) = mpsc::sync_channel::<Result<Started, String>>(1);
    let cpu = config
        .cpus
        .as_ref()
        .and_then(|c| c.get(index % c.len().max(1)).copied());
    let (config, shared) = (Arc::clone(config), Arc::clone(shared));
    let handle = std::thread::Builder::new()
        .name(format!("ringgate-w{index}"))
        .spawn(move || {
            if let Some(cpu) = cpu
                && !core_affinity::set_for_current(core_affinity::CoreId { id: cpu })
            {
                let _ = tx.send(Err(format!(
                    "cannot pin worker {index} to CPU {cpu} (is it in this process's cpuset?); \
                     choose others with --cpus or pass --no-pin"
                )));
                return Ok(());
            }
            match Worker::new(&config, index, listen, shared, resolver) {
                Ok((worker, started)) => {
                    let _ = tx.send(Ok(started));
                    worker.run()
                }
                Err(e) => {
                    let _ = tx.send(Err(e.to_string()));
                    Ok(())
                }
            }
        })
        .map_err(|e| StartError(format!("cannot spawn worker thread {index}: {e}")))?;
    match rx.recv() {
        Ok(Ok(started)) => Ok((
            WorkerThread {
                handle,
                waker: started.waker,
                task_run: started.task_run,
            },
            started.local,
        )),
        Ok(Err(why)) => {
            let _ = handle.join();
            Err(StartError(format!("worker {index}: {why}")))
        }
        Err(_) => {
            let _ = handle.join();
            Err(StartError(format!("worker {index} exited while starting")))
        }
    }
}
