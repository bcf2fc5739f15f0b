//! The new process's side of a takeover, once its workers' rings are built: receive the old
//! process's state, hand each worker its part, wait until every worker has armed its receives,
//! and let the old process go.

use std::net::TcpListener;
use std::sync::mpsc::{self, SyncSender};
use std::time::{Instant, SystemTime};

use tracing::{info, warn};

use crate::config::Config;
use crate::handover::take::Taking;
use crate::handover::{Adopted, Import};
use crate::notify::notify;

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
    // From the old process's pause to this one's last receive armed: the longest any datagram
    // waited in a socket because of the takeover.
    let pause = SystemTime::now()
        .duration_since(received.frozen_at)
        .unwrap_or_default();
    let old_pid = taking.old_pid;
    taking.finish(|| {
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
