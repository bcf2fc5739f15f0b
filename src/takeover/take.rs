//! The new process's side: connect to the old process's control socket, ask, receive every
//! worker's sockets and sessions, and confirm once they are armed.
//!
//! Each worker's part goes to that worker as soon as it has arrived whole, so the first worker
//! arms its receives while the others' parts are still on the wire.

use std::io;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::mpsc::{self, SyncSender};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::state::SessionLine;
use super::wire::{Link, truncated};
use super::{Adopted, Armed, Import, VERSION};
use tracing::debug;

use crate::sys::limits;
use crate::user_data::SLOTS_MAX;

/// How long the old process may take to answer `HELLO` and `READY`.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);
/// The most sessions a worker's part reserves room for before they have arrived.
const CAPACITY_AHEAD: usize = 64 * 1024;
/// Descriptors this process holds besides the old one's (rings, eventfds, its own sockets).
const DESCRIPTOR_SLACK: u64 = 256;

/// A takeover the old process agreed to.
pub struct Taking {
    link: Link,
    /// Where the old process listens (its bound port, if it asked for port 0).
    pub local: SocketAddr,
    pub old_pid: u32,
    workers: usize,
    /// The old process's XDP fast path, if this one asked for it and it had one.
    pub xdp: Option<crate::xdp::Inherited>,
}

/// What arrived besides the workers' parts.
#[derive(Debug)]
pub struct Received {
    pub metrics: Option<OwnedFd>,
    pub sessions: usize,
    pub fds: usize,
    /// When the old process paused its workers (wall clock: both processes share it).
    pub frozen_at: SystemTime,
    /// Per worker that took its part in: where to tell it to start serving, once the old
    /// process has let go. Dropping them stops the workers without a word.
    pub commits: Vec<SyncSender<Armed>>,
}

impl Taking {
    /// Connects to `path` and asks to take over `listen` with `workers` workers, and the XDP
    /// fast path's descriptors if `xdp`.
    pub fn connect(
        path: &Path,
        listen: SocketAddr,
        workers: usize,
        xdp: bool,
    ) -> Result<Taking, String> {
        let stream = UnixStream::connect(path).map_err(|e| {
            format!(
                "cannot connect to {} (--takeover): {e}; is a ringgate with --control {0} running?",
                path.display()
            )
        })?;
        let mut link = Link::new(stream);
        let xdp_word = if xdp { " xdp=1" } else { "" };
        link.send(&format!(
            "HELLO {VERSION} listen={listen} workers={workers}{xdp_word}"
        ))
        .map_err(|e| format!("cannot ask for a takeover: {e}"))?;
        let answer = link
            .line(Instant::now() + ANSWER_TIMEOUT)
            .map_err(|e| format!("no answer to the takeover request: {e}"))?;
        if let Some(why) = answer.strip_prefix("REFUSE ") {
            return Err(format!("the running ringgate refused the takeover: {why}"));
        }
        let (local, old_pid) =
            parse_ok(&answer, workers).ok_or_else(|| format!("unexpected answer {answer:?}"))?;
        // Room for the old process's descriptors (and sessions it opens until it pauses) now,
        // rather than growth step by step while it is paused.
        if let Some(fds) = parse_fds(&answer) {
            let room = fds + fds / 4 + DESCRIPTOR_SLACK;
            if let Err(e) = limits::reserve_descriptors(link.as_fd(), room) {
                debug!(error = %e, "cannot make room for the descriptors in advance");
            }
        }
        let xdp = match parse_word(&answer, "xdp=") {
            Some(count) if count as usize <= crate::xdp::PARTS_MAX => {
                let mut inherited = crate::xdp::Inherited::default();
                let deadline = Instant::now() + ANSWER_TIMEOUT;
                for _ in 0..count {
                    let line = link
                        .line(deadline)
                        .map_err(|e| format!("the XDP descriptors did not arrive: {e}"))?;
                    let label = line
                        .strip_prefix("X ")
                        .ok_or_else(|| format!("unexpected line {:?}", truncated(&line)))?;
                    let fd = link.fd().map_err(|e| e.to_string())?;
                    inherited.push(label, fd)?;
                }
                Some(inherited)
            }
            Some(count) => return Err(format!("{count} XDP descriptors announced: too many")),
            None => None,
        };
        Ok(Taking {
            link,
            local,
            old_pid,
            workers,
            xdp,
        })
    }

    /// Says the rings are built and receives the state: worker `i`'s part goes to
    /// `workers[i]`, each told to report to `adopted` once armed.
    pub fn receive(
        &mut self,
        workers: &[SyncSender<Import>],
        adopted: &SyncSender<Adopted>,
        timeout: Duration,
    ) -> Result<Received, String> {
        let deadline = Instant::now() + timeout;
        self.link.send("GO").map_err(|e| e.to_string())?;
        let mut got = Received {
            metrics: None,
            sessions: 0,
            fds: 0,
            frozen_at: UNIX_EPOCH,
            commits: Vec::with_capacity(self.workers),
        };
        let mut next_worker = 0;
        loop {
            let line = self.line(deadline)?;
            let mut words = line.split(' ');
            match words.next() {
                Some("W") => {
                    let index: usize = words
                        .next()
                        .and_then(|w| w.parse().ok())
                        .unwrap_or(usize::MAX);
                    let count = words
                        .next()
                        .and_then(|w| w.strip_prefix("sessions="))
                        .and_then(|w| w.parse::<usize>().ok())
                        .filter(|&n| n < SLOTS_MAX as usize)
                        .ok_or_else(|| format!("bad worker line {line:?}"))?;
                    if index != next_worker || index >= self.workers {
                        return Err(format!("worker {index} out of order"));
                    }
                    next_worker += 1;
                    let listener = self.fd()?;
                    let sessions = self.sessions(count, deadline)?;
                    got.fds += 1 + sessions.iter().filter(|(_, fd)| fd.is_some()).count();
                    got.sessions += count;
                    let (commit_to, commit) = mpsc::sync_channel(1);
                    got.commits.push(commit_to);
                    let import = Import {
                        listener,
                        sessions,
                        adopted: adopted.clone(),
                        commit,
                    };
                    workers[index]
                        .send(import)
                        .map_err(|_| format!("worker {index} is gone"))?;
                }
                Some("M") => {
                    got.metrics = Some(self.fd()?);
                    got.fds += 1;
                }
                Some("END") => {
                    let us = words
                        .next()
                        .and_then(|w| w.strip_prefix("frozen_us="))
                        .and_then(|w| w.parse::<u64>().ok())
                        .ok_or_else(|| format!("bad end line {line:?}"))?;
                    got.frozen_at = UNIX_EPOCH + Duration::from_micros(us);
                    if next_worker != self.workers {
                        return Err(format!("{next_worker} of {} workers sent", self.workers));
                    }
                    if self.link.unclaimed_fds() > 0 {
                        return Err("descriptors came that no line claimed".into());
                    }
                    return Ok(got);
                }
                _ => return Err(format!("unexpected line {:?}", truncated(&line))),
            }
        }
    }

    /// Says everything is adopted, and waits for the old process to let go (`BYE`). An error
    /// means the old process serves on, and this one must stop without having served. Once it
    /// has let go, `serving` runs (starting the workers, and telling systemd which process
    /// serves now) before the old process is told it may exit (`SERVING`), so that systemd
    /// never sees the service's main process exit without a successor.
    pub fn finish(mut self, serving: impl FnOnce()) -> Result<(), String> {
        self.link
            .send("READY")
            .map_err(|e| format!("cannot send READY: {e}"))?;
        let bye = self.line(Instant::now() + ANSWER_TIMEOUT)?;
        if bye != "BYE" {
            return Err(format!("expected BYE, got {:?}", truncated(&bye)));
        }
        serving();
        // The old process exits on this, or on its own a little later if it never comes.
        let _ = self.link.send("SERVING");
        Ok(())
    }

    fn sessions(
        &mut self,
        count: usize,
        deadline: Instant,
    ) -> Result<Vec<(SessionLine, Option<OwnedFd>)>, String> {
        // The count comes from the other process: what it says is not memory yet.
        let mut sessions = Vec::with_capacity(count.min(CAPACITY_AHEAD));
        for _ in 0..count {
            let first = self.line(deadline)?;
            let mut failure = None;
            let line = SessionLine::decode_all(&first, || {
                self.line(deadline).map_err(|e| failure = Some(e)).ok()
            });
            let line = match (line, failure) {
                (_, Some(e)) => return Err(e),
                (Some(line), None) => line,
                (None, None) => return Err(format!("bad session line {:?}", truncated(&first))),
            };
            let fd = if line.has_socket() {
                Some(self.fd()?)
            } else {
                None
            };
            sessions.push((line, fd));
        }
        Ok(sessions)
    }

    fn line(&mut self, deadline: Instant) -> Result<String, String> {
        self.link.line(deadline).map_err(|e| match e.kind() {
            io::ErrorKind::TimedOut => "the old process stopped answering".to_owned(),
            _ => e.to_string(),
        })
    }

    fn fd(&mut self) -> Result<OwnedFd, String> {
        self.link.fd().map_err(|e| e.to_string())
    }
}

/// The `fds=` an `OK` line may end with: how many descriptors the old process holds.
fn parse_fds(line: &str) -> Option<u64> {
    parse_word(line, "fds=")
}

/// The number after `prefix` in one of `line`'s words.
fn parse_word(line: &str, prefix: &str) -> Option<u64> {
    line.split(' ')
        .find_map(|w| w.strip_prefix(prefix)?.parse().ok())
}

fn parse_ok(line: &str, workers: usize) -> Option<(SocketAddr, u32)> {
    let mut words = line.strip_prefix("OK ")?.split(' ');
    let local = words.next()?.strip_prefix("listen=")?.parse().ok()?;
    let n: usize = words.next()?.strip_prefix("workers=")?.parse().ok()?;
    let pid = words.next()?.strip_prefix("pid=")?.parse().ok()?;
    (n == workers).then_some((local, pid))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ok_line_is_read_with_or_without_its_descriptor_count() {
        let ok = "OK listen=127.0.0.1:19132 workers=2 pid=7 fds=1003";
        let local: SocketAddr = "127.0.0.1:19132".parse().unwrap();
        assert_eq!(parse_ok(ok, 2), Some((local, 7)));
        assert_eq!(parse_fds(ok), Some(1003));
        // An older process says no count; the takeover goes on without making room first.
        let older = "OK listen=127.0.0.1:19132 workers=2 pid=7";
        assert_eq!(
            (parse_ok(older, 2), parse_fds(older)),
            (Some((local, 7)), None)
        );
        assert_eq!(parse_ok(ok, 3), None, "another worker count");
    }
}
