//! A worker's lifecycle: one state, every transition in this file, and the few questions the
//! packet path asks of it.
//!
//! ```text
//!             pause (a takeover asks)                  stop (SIGTERM, shutdown)
//!   Serving ───────────────────────────▶ Pausing ─┐   Serving ─────────────────▶ Stopping
//!      ▲                                          │
//!      └──────── resume (no takeover) ◀───────────┤
//!                                                 └──▶ Stopping, handed over (the next
//!                                                      process serves the sessions)
//! ```
//!
//! *Serving*: receives armed, datagrams forwarded, sessions reaped. Whether new sessions are
//! admitted is the newcomer gate's question (draining is a process-wide setting it reads).
//! *Pausing* for a takeover: receives are cancelled and not armed again; what they had already
//! received is still forwarded; nothing is reaped. Once quiet, the worker exports its sessions
//! and then **blocks** on the takeover's decision (bounded: see `pause`), the one wait of a
//! worker outside the driver's. *Stopping*: every operation is cancelled and the worker waits,
//! at most [`DRAIN_TIMEOUT`], for the driver to drain; its sessions are closed, or, handed over,
//! left to the next process without a word.

use std::time::{Duration, Instant};

use crate::takeover::Pause;

/// How long a stopping worker waits for the kernel to finish its cancelled operations.
pub(super) const DRAIN_TIMEOUT: Duration = Duration::from_millis(500);
/// How often a stopping worker looks again whether the driver has drained.
const STOP_POLL: Duration = Duration::from_millis(50);

pub(super) enum Life {
    Serving,
    Pausing {
        since: Instant,
        pause: Pause,
    },
    /// Stopping, since then. Whether its sessions were closed or handed over is decided by
    /// whoever stops it (`closing`, `pause`): nothing after that differs.
    Stopping {
        since: Instant,
    },
}

/// How the worker waits for completions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Wait {
    /// Until something completes.
    Block,
    /// At most this long.
    AtMost(Duration),
}

impl Life {
    /// Datagrams already received are forwarded (serving or pausing), not dropped (stopping).
    #[inline]
    pub(super) fn forwards(&self) -> bool {
        !matches!(self, Life::Stopping { .. })
    }

    /// Receives may be armed, the reaper may close sessions, the tick re-arms: serving.
    #[inline]
    pub(super) fn serving(&self) -> bool {
        matches!(self, Life::Serving)
    }

    pub(super) fn stopping(&self) -> bool {
        matches!(self, Life::Stopping { .. })
    }

    /// How to wait for the next batch: a stopping worker polls its drain; a pausing one checks
    /// within `soon` whether it is quiet; with receives waiting for buffers (`rearms_waiting`)
    /// a batch must come within `soon` too.
    pub(super) fn wait(&self, rearms_waiting: bool, soon: Duration) -> Wait {
        match self {
            Life::Stopping { .. } => Wait::AtMost(STOP_POLL),
            Life::Pausing { .. } => Wait::AtMost(soon),
            Life::Serving if rearms_waiting => Wait::AtMost(soon),
            Life::Serving => Wait::Block,
        }
    }

    /// Serving → pausing for a takeover. A worker not serving refuses, and gets `pause` back
    /// to answer.
    pub(super) fn pause(&mut self, pause: Pause, now: Instant) -> Result<(), Pause> {
        if !self.serving() {
            return Err(pause);
        }
        *self = Life::Pausing { since: now, pause };
        Ok(())
    }

    /// Takes a pausing worker's takeover request out, to decide; the worker is serving meanwhile
    /// unless it is put back with [`Life::pause`] or moves on.
    pub(super) fn take_pause(&mut self) -> Option<(Instant, Pause)> {
        match std::mem::replace(self, Life::Serving) {
            Life::Pausing { since, pause } => Some((since, pause)),
            other => {
                *self = other;
                None
            }
        }
    }

    /// Pausing → pausing again, since `since` (still waiting to be quiet).
    pub(super) fn keep_pausing(&mut self, since: Instant, pause: Pause) {
        *self = Life::Pausing { since, pause };
    }

    /// Any state → stopping. False if it was stopping already.
    pub(super) fn stop(&mut self, now: Instant) -> bool {
        if self.stopping() {
            return false;
        }
        *self = Life::Stopping { since: now };
        true
    }

    /// Whether a stopping worker is done: drained, or out of patience (`Some(false)`: leave
    /// what is still in flight). `None` while it should go on.
    pub(super) fn done(&self, in_flight: u64) -> Option<bool> {
        let Life::Stopping { since, .. } = self else {
            return None;
        };
        if in_flight == 0 {
            Some(true)
        } else if since.elapsed() > DRAIN_TIMEOUT {
            Some(false)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use super::*;

    fn pause() -> Pause {
        let (export, _) = mpsc::sync_channel(1);
        let (_, decision) = mpsc::sync_channel(1);
        Pause { export, decision }
    }

    #[test]
    fn serving_forwards_arms_and_blocks_until_something_completes() {
        let life = Life::Serving;
        assert!(life.forwards() && life.serving() && !life.stopping());
        let soon = Duration::from_millis(1);
        assert_eq!(life.wait(false, soon), Wait::Block);
        assert_eq!(life.wait(true, soon), Wait::AtMost(soon));
    }

    #[test]
    fn a_pause_forwards_what_was_received_but_arms_nothing_and_can_resume() {
        let t0 = Instant::now();
        let mut life = Life::Serving;
        assert!(life.pause(pause(), t0).is_ok());
        assert!(life.forwards() && !life.serving() && !life.stopping());
        let soon = Duration::from_millis(1);
        assert_eq!(life.wait(false, soon), Wait::AtMost(soon));
        assert!(life.pause(pause(), t0).is_err(), "one takeover at a time");
        let (since, f) = life.take_pause().unwrap();
        assert_eq!(since, t0);
        assert!(life.serving(), "taken out: serving unless put back");
        life.keep_pausing(since, f);
        assert!(!life.serving());
        let _ = life.take_pause();
        assert!(life.take_pause().is_none());
    }

    #[test]
    fn stopping_is_final_and_done_when_drained_or_out_of_patience() {
        let mut life = Life::Serving;
        assert_eq!(life.done(0), None, "serving is never done");
        assert!(life.stop(Instant::now()));
        assert!(!life.stop(Instant::now()), "stopping already");
        assert!(matches!(life, Life::Stopping { .. }));
        assert!(!life.forwards() && !life.serving());
        assert!(life.pause(pause(), Instant::now()).is_err());
        assert!(life.take_pause().is_none() && life.stopping());
        assert_eq!(life.wait(true, Duration::ZERO), Wait::AtMost(STOP_POLL));
        assert_eq!(life.done(0), Some(true));
        assert_eq!(life.done(3), None);
        let long_ago = Instant::now() - DRAIN_TIMEOUT * 2;
        let late = Life::Stopping { since: long_ago };
        assert_eq!(late.done(3), Some(false));
    }
}
