//! The new process's side of a takeover, once its workers' rings are built: receive the old
//! process's state, hand each worker its part, wait until every worker has adopted it (arming
//! nothing), and only once the old process has let go tell the workers to serve.

use std::net::TcpListener;
use std::sync::mpsc::{self, SyncSender};
use std::time::{Duration, Instant, SystemTime};

use tracing::{error, info, warn};

use crate::config::Config;
use crate::notify::notify;
use crate::takeover::take::Taking;
use crate::takeover::{Adopted, Import};

/// How long the workers may take to arm their receives once told to serve.
const ARM_TIMEOUT: Duration = Duration::from_secs(5);

/// Takes over through `taking`, worker `i`'s part going to `imports[i]`. Returns the metrics
/// listener if the old process had one. An error means the old process serves on.
pub(super) fn finish(
    mut taking: Taking,
    imports: Vec<SyncSender<Import>>,
    config: &Config,
) -> Result<Option<TcpListener>, String> {
    let workers = imports.len();
    let (adopted, reports) = mpsc::sync_channel(workers);
    let received = taking.receive(&imports, &adopted, config.handover_timeout)?;
    drop((imports, adopted));
    let deadline = Instant::now() + config.handover_timeout;
    let mut total = Adopted::default();
    for _ in 0..workers {
        let left = deadline.saturating_duration_since(Instant::now());
        let report = reports
            .recv_timeout(left)
            .map_err(|_| "a worker could not take its part in (see its error above)")?;
        total.sessions += report.sessions;
        total.pending += report.pending;
        total.refused += report.refused;
    }
    let old_pid = taking.old_pid;
    let commits = received.commits;
    let mut pause = Duration::ZERO;
    taking.finish(|| {
        // The old process has let go: from here this one serves, whatever happens.
        let (armed, acks) = mpsc::sync_channel(commits.len());
        for commit in &commits {
            let _ = commit.send(armed.clone());
        }
        drop(armed);
        let deadline = Instant::now() + ARM_TIMEOUT;
        for _ in 0..commits.len() {
            let left = deadline.saturating_duration_since(Instant::now());
            if acks.recv_timeout(left).is_err() {
                error!("a worker did not start serving what it took over (see its error above)");
                break;
            }
        }
        // From the old process's pause to this one's last receive armed: the longest any
        // datagram waited in a socket because of the takeover.
        pause = SystemTime::now()
            .duration_since(received.frozen_at)
            .unwrap_or_default();
        let state = format!("MAINPID={}\nREADY=1", std::process::id());
        if let Err(e) = notify(&state) {
            warn!(error = %e, "cannot notify systemd (NOTIFY_SOCKET)");
        }
    })?;
    info!(
        sessions = total.sessions,
        pending = total.pending,
        refused = total.refused,
        fds = received.fds,
        old_pid,
        pause_ms = pause.as_secs_f64() * 1e3,
        "took over from the running ringgate"
    );
    Ok(received.metrics.map(TcpListener::from))
}
