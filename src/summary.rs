//! A periodic line in the log with what was dropped and why, for operators who read logs
//! rather than dashboards: `drops in the last 60 s: no_route=12 bad_source=3000`. Nothing is
//! logged for a period without drops. Runs on a thread of its own, reading the workers'
//! published counters.

use std::sync::Arc;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::Duration;

use tracing::info;

use crate::stats::{Counter, Shared};

pub struct Summary {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Summary {
    /// Logs every `every` until stopped.
    pub fn start(every: Duration, shared: Arc<Shared>) -> std::io::Result<Summary> {
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("ringgate-summary".into())
            .spawn(move || {
                let mut last = drops(&shared);
                // A message or a hang-up both end the loop; only the timeout goes round.
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(every) {
                    let now = drops(&shared);
                    if let Some(line) = line(&last, &now) {
                        info!("drops in the last {} s: {line}", every.as_secs());
                    }
                    last = now;
                }
            })?;
        Ok(Summary {
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Summary {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Every drop counter's total, in catalogue order.
fn drops(shared: &Shared) -> Vec<(Counter, u64)> {
    Counter::ALL
        .iter()
        .filter(|c| c.family().0 == "ringgate_drops")
        .map(|&c| (c, shared.total(c)))
        .collect()
}

/// `reason=n` for each reason that grew, or `None` if none did.
fn line(before: &[(Counter, u64)], after: &[(Counter, u64)]) -> Option<String> {
    let parts: Vec<String> = before
        .iter()
        .zip(after)
        .filter(|((_, b), (_, a))| a > b)
        .map(|((c, b), (_, a))| format!("{}={}", c.label(), a - b))
        .collect();
    (!parts.is_empty()).then(|| parts.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_reasons_that_grew_are_listed() {
        let before = [(Counter::DropNoRoute, 5), (Counter::DropBadSource, 0)];
        let after = [(Counter::DropNoRoute, 5), (Counter::DropBadSource, 7)];
        assert_eq!(line(&before, &after).as_deref(), Some("bad_source=7"));
        assert_eq!(line(&before, &before), None);
    }
}
