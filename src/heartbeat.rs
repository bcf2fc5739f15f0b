//! This instance's entry in the fleet: a heartbeat key in Redis, `udp_gate:instance:<id>`,
//! holding what the control plane needs to know of this ringgate (JSON: id, listen address,
//! version and commit, `backend` (the backend most of its sessions are on) and `backends`
//! (sessions per backend), sessions, draining or not, started at in Unix seconds). Refreshed
//! every [`EVERY`] with an expiry of [`TTL`] (a host that dies drops out on its own), deleted on
//! a clean stop, and left for the successor after a takeover.
//!
//! Runs on a thread of its own with a blocking connection (it is not on the packet path, and a
//! slow Redis must not delay a worker), found as the workers find theirs: `REDIS_ADDR`, or the
//! sentinels.

use std::sync::Arc;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tracing::warn;

use crate::ratelimit::RateLimited;
use crate::route::redis::Settings;
use crate::route::redis::blocking::{Client, Refusal, command_client};
use crate::stats::{Shared, backends};

/// The heartbeat key is this followed by the instance id.
pub const KEY_PREFIX: &str = "udp_gate:instance:";
/// How often the key is written.
pub const EVERY: Duration = Duration::from_secs(5);
/// Its expiry: three beats missed and the instance is gone from the fleet (at most 30 s).
pub const TTL: Duration = Duration::from_secs(15);
/// The most one connection attempt or command may take.
const WAIT: Duration = Duration::from_secs(1);

/// What the heartbeat says that does not change while ringgate runs.
#[derive(Clone, Debug)]
pub struct Facts {
    pub id: String,
    pub listen: std::net::SocketAddr,
}

pub struct Heartbeat {
    /// Sends whether to delete the key on the way out.
    stop: Option<mpsc::Sender<bool>>,
    thread: Option<JoinHandle<()>>,
}

impl Heartbeat {
    pub fn start(
        settings: Settings,
        facts: Facts,
        shared: Arc<Shared>,
    ) -> std::io::Result<Heartbeat> {
        let (stop, stopped) = mpsc::channel::<bool>();
        let started_at = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let thread = std::thread::Builder::new()
            .name("ringgate-heartbeat".into())
            .spawn(move || {
                let mut beat = Beat {
                    key: format!("{KEY_PREFIX}{}", facts.id),
                    settings,
                    facts,
                    shared,
                    started_at,
                    client: None,
                    warn: RateLimited::default(),
                };
                loop {
                    // After a takeover the key is the successor's: leave it alone.
                    if beat
                        .shared
                        .handed_over
                        .load(std::sync::atomic::Ordering::Acquire)
                    {
                        return;
                    }
                    beat.write();
                    match stopped.recv_timeout(EVERY) {
                        Err(RecvTimeoutError::Timeout) => {}
                        Ok(true) => return beat.delete(),
                        Ok(false) | Err(RecvTimeoutError::Disconnected) => return,
                    }
                }
            })?;
        Ok(Heartbeat {
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Stops beating; `delete` removes the key (a clean stop), otherwise it expires on its own
    /// or the successor of a takeover keeps writing it.
    pub fn stop(mut self, delete: bool) {
        self.shutdown(delete);
    }

    fn shutdown(&mut self, delete: bool) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(delete);
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.shutdown(false);
    }
}

struct Beat {
    key: String,
    settings: Settings,
    facts: Facts,
    shared: Arc<Shared>,
    started_at: u64,
    client: Option<Client>,
    warn: RateLimited,
}

impl Beat {
    /// Runs `cmd` on the connection, making one first if there is none; a failure drops it.
    fn run(&mut self, cmd: &redis::Cmd) -> Result<redis::Value, Refusal> {
        let client = match &mut self.client {
            Some(client) => client,
            None => self.client.insert(command_client(&self.settings, WAIT)?),
        };
        let reply = client.command(cmd, WAIT);
        if reply.is_err() {
            self.client = None;
        }
        reply
    }

    fn write(&mut self) {
        // The backends this instance's sessions are on, busiest first (at most 32 by address,
        // as in /metrics).
        let mut backends: Vec<(String, u64)> =
            backends::merge(self.shared.stats.iter().map(|w| w.backends.read()))
                .into_iter()
                .filter(|(_, c)| c.sessions > 0)
                .map(|(label, c)| (label, c.sessions))
                .collect();
        backends.sort_by_key(|(label, sessions)| (std::cmp::Reverse(*sessions), label.clone()));
        let value = serde_json::json!({
            "id": self.facts.id,
            "listen": self.facts.listen.to_string(),
            "version": env!("CARGO_PKG_VERSION"),
            "commit": env!("RINGGATE_COMMIT"),
            "backend": backends.first().map(|(label, _)| label),
            "backends": backends.iter().map(|(label, n)| serde_json::json!({"addr": label, "sessions": n})).collect::<Vec<_>>(),
            "sessions": self.shared.sessions(),
            "draining": self.shared.draining.load(std::sync::atomic::Ordering::Relaxed),
            "started_at": self.started_at,
        })
        .to_string();
        // A beat under way while a successor took over must not overwrite its key.
        if self
            .shared
            .handed_over
            .load(std::sync::atomic::Ordering::Acquire)
        {
            return;
        }
        let set = redis::cmd("SET")
            .arg(&self.key)
            .arg(value)
            .arg("EX")
            .arg(TTL.as_secs())
            .clone();
        match self.run(&set) {
            Ok(redis::Value::Okay) => {}
            Ok(other) => self.failed(&Refusal::Refused(format!("SET answered {other:?}"))),
            Err(e) => self.failed(&e),
        }
    }

    fn delete(mut self) {
        if let Err(e) = self.run(redis::cmd("DEL").arg(&self.key)) {
            warn!(key = %self.key, error = %e, "cannot delete the heartbeat key; it expires on its own");
        }
    }

    fn failed(&mut self, e: &Refusal) {
        if let Some(suppressed) = self.warn.check() {
            warn!(key = %self.key, error = %crate::logtext::escaped(e.to_string().as_bytes(), 200),
                  suppressed, "cannot write the heartbeat key; trying again in 5 s");
        }
    }
}
