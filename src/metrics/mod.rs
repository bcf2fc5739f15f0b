//! `/metrics`, `/healthz` and `/readyz` on a thread of their own, never a worker's.
//!
//! The exposition is Prometheus's text format ([`text`]) of what [`collect`] gathers; HTTP is
//! hyper's, on a current-thread tokio runtime that lives in the metrics thread and nowhere
//! else ([`http`]: connection cap and timeouts, so that the endpoint outlives the floods it is
//! there to report). The thread runs on CPUs no worker uses when there are any, and otherwise
//! at the lowest priority, so scrapes never take a worker's CPU from it.

mod collect;
mod http;
mod process;
mod text;
mod xdp;

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::thread::JoinHandle;

use tracing::{debug, warn};

use crate::stats::Shared;
use crate::sys::limits;

/// What the metrics server is built with.
#[derive(Clone, Debug)]
pub struct Settings {
    pub addr: SocketAddr,
    /// Connections held at once.
    pub connections_max: usize,
    /// The CPUs workers are pinned to (`None`: unpinned), kept free of the metrics thread.
    pub worker_cpus: Option<Vec<usize>>,
    /// The CPUs this process may use.
    pub allowed_cpus: Vec<usize>,
}

pub struct MetricsServer {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
    local: SocketAddr,
    /// The listening socket's descriptor, open until the server stops (a takeover passes it).
    fd: RawFd,
}

impl MetricsServer {
    /// Serves on `listener` (one handed over by a takeover), or binds `settings.addr`, from a
    /// thread of its own.
    pub fn start(
        settings: Settings,
        listener: Option<std::net::TcpListener>,
        shared: Arc<Shared>,
    ) -> io::Result<MetricsServer> {
        let listener = match listener {
            Some(listener) => {
                listener.set_nonblocking(true)?;
                listener
            }
            None => limits_listener(settings.addr)?,
        };
        let local = listener.local_addr()?;
        let fd = listener.as_raw_fd();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()?;
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let thread = std::thread::Builder::new()
            .name("ringgate-metrics".into())
            .spawn(move || {
                place_thread(&settings);
                runtime.block_on(http::serve(
                    listener,
                    shared,
                    settings.connections_max,
                    stopped,
                ));
            })?;
        Ok(MetricsServer {
            stop: Some(stop),
            thread: Some(thread),
            local,
            fd,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    pub fn listener_fd(&self) -> RawFd {
        self.fd
    }

    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// A listening socket with a deep accept queue: a burst of connections waits there for the
/// cap to make room, instead of having SYNs dropped (a client retries those only after a
/// second, which is what a health check would see).
fn limits_listener(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM.nonblocking().cloexec(),
        Some(socket2::Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(ACCEPT_BACKLOG)?;
    Ok(socket.into())
}

/// The accept queue's length (the kernel caps it at `net.core.somaxconn`, 4096 by default).
const ACCEPT_BACKLOG: i32 = 1024;

/// The CPUs the metrics thread should run on: those allowed that no worker is pinned to;
/// empty when every allowed CPU has a worker (or workers are unpinned).
fn spare_cpus(settings: &Settings) -> Vec<usize> {
    match &settings.worker_cpus {
        Some(workers) => settings
            .allowed_cpus
            .iter()
            .copied()
            .filter(|cpu| !workers.contains(cpu))
            .collect(),
        None => Vec::new(),
    }
}

fn place_thread(settings: &Settings) {
    let spare = spare_cpus(settings);
    let placed = if spare.is_empty() {
        limits::lower_current_thread().map(|()| "lowest priority".to_owned())
    } else {
        limits::pin_current_thread(&spare).map(|()| format!("CPUs {spare:?}"))
    };
    match placed {
        Ok(where_) => debug!(placement = %where_, "metrics thread placed"),
        Err(e) => warn!(error = %e, "cannot place the metrics thread away from the workers"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(workers: Option<Vec<usize>>, allowed: Vec<usize>) -> Settings {
        Settings {
            addr: "127.0.0.1:0".parse().unwrap(),
            connections_max: 64,
            worker_cpus: workers,
            allowed_cpus: allowed,
        }
    }

    #[test]
    fn the_metrics_thread_takes_cpus_no_worker_uses() {
        assert_eq!(
            spare_cpus(&settings(Some(vec![0, 1]), vec![0, 1, 2, 3])),
            [2, 3]
        );
        assert!(spare_cpus(&settings(Some(vec![0, 1]), vec![0, 1])).is_empty());
        assert!(spare_cpus(&settings(None, vec![0, 1, 2])).is_empty());
    }
}
