//! One worker's thread: started (optionally pinned) so that everything the worker owns is
//! created on the CPU that uses it, and what the proxy keeps of it.

use std::fs::File;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver};
use std::thread::JoinHandle;

use super::StartError;
use crate::config::Config;
use crate::route::resolve::Resolver;
use crate::stats::Shared;
use crate::sys::uring::TaskRun;
use crate::takeover::Pause;
use crate::worker::{Listen, Started, Worker};

pub(super) struct WorkerThread {
    pub(super) handle: JoinHandle<io::Result<()>>,
    pub(super) waker: File,
    pub(super) task_run: Option<TaskRun>,
    /// Where a takeover's pause requests go (`--control`).
    pub(super) pause: Option<mpsc::Sender<Pause>>,
}

/// Starts worker `index` on its own thread and waits until it is built (or failed to be).
pub(super) fn spawn_worker(
    config: &Arc<Config>,
    index: usize,
    listen: Listen,
    shared: &Arc<Shared>,
    resolver: Option<Resolver>,
    control: Option<Receiver<Pause>>,
) -> Result<(WorkerThread, SocketAddr), StartError> {
    let (tx, rx) = mpsc::sync_channel::<Result<Started, String>>(2);
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
            let built = tx.clone();
            let built = move |started| {
                let _ = built.send(Ok(started));
            };
            match Worker::new(&config, index, listen, shared, resolver, control, built) {
                Ok(worker) => worker.run(),
                Err(e) => {
                    // Before it was built, the starting thread hears why; after (a takeover's
                    // part that did not arrive or fit), the takeover fails on its own.
                    let _ = tx.send(Err(e.to_string()));
                    Err(e)
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
                pause: None,
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
