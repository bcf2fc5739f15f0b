//! The old process's side: the control socket, and handing everything to a process that
//! connects to it and asks.
//!
//! One takeover at a time, on the control socket's own thread. The workers are paused only
//! once the new process has built its rings (`GO`), and stay paused until it has adopted
//! everything (`READY`, arming nothing until `BYE`) or the handover timeout passes; until `BYE` is sent every failure resumes
//! them. Only a process of the same user (or root) may connect.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tracing::{info, warn};

use super::wire::{Link, truncated};
use super::{Decision, Export, Pause, VERSION, WorkerLink};
use crate::sys::{eventfd, passfd};

/// How long sending `BYE` may take.
const BYE_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a connecting process may take to say `HELLO`.
const HELLO_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the new process may take to confirm it serves, after `BYE`.
const SERVING_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a worker may take to pause (its in-flight sends to complete).
const FREEZE_TIMEOUT: Duration = Duration::from_secs(1);

/// What the control socket hands over.
pub struct Served {
    /// The listen address as configured (what a new process must ask for) and as bound.
    pub listen: SocketAddr,
    pub local: SocketAddr,
    pub workers: Vec<WorkerLink>,
    /// The metrics listener, if any; it stays open while the control socket runs.
    pub metrics: Option<RawFd>,
    /// The longest the workers stay paused.
    pub timeout: Duration,
    /// Told once another process serves everything (`BYE` sent).
    pub handed_over: Option<Box<dyn Fn(HandedOver) + Send>>,
    /// The XDP fast path's descriptors, for a new process that asks for them (`xdp=1`).
    pub xdp: Option<crate::xdp::Export>,
}

/// A finished takeover, as the old process reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HandedOver {
    pub sessions: usize,
    pub fds: usize,
    /// From pausing the workers to the new process's `READY`.
    pub pause: Duration,
}

/// The control socket, served on its own thread.
pub struct Control {
    listener: UnixListener,
    /// Ends `true` once it has handed over.
    thread: Option<JoinHandle<bool>>,
    path: PathBuf,
    inode: u64,
}

impl Control {
    /// Binds `path` (mode 0600; a stale socket there is replaced, a live one is an error
    /// unless `replace`: the process just taken over) and serves takeovers.
    pub fn start(path: &Path, served: Served, replace: bool) -> io::Result<Control> {
        let listener = bind(path, replace)?;
        let inode = std::fs::metadata(path)?.ino();
        let accepting = listener.try_clone()?;
        let thread = std::thread::Builder::new()
            .name("ringgate-control".into())
            .spawn(move || serve(&accepting, &served))?;
        Ok(Control {
            listener,
            thread: Some(thread),
            path: path.to_owned(),
            inode,
        })
    }

    /// Stops serving; the socket file is removed unless this process has handed over (the
    /// next one binds the path again, and a check of whose file it is would race with that)
    /// or another process has bound the path since.
    pub fn stop(mut self) {
        let _ = socket2::SockRef::from(&self.listener.as_fd()).shutdown(std::net::Shutdown::Both);
        let handed_over = self
            .thread
            .take()
            .is_some_and(|thread| thread.join().unwrap_or(false));
        if !handed_over && std::fs::metadata(&self.path).is_ok_and(|m| m.ino() == self.inode) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

fn bind(path: &Path, replace: bool) -> io::Result<UnixListener> {
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "the path exists and is not a socket",
            ));
        }
        if !replace && UnixStream::connect(path).is_ok() {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                "another process listens there (another ringgate?)",
            ));
        }
        // A socket nobody listens on: left by a process that died.
        std::fs::remove_file(path)?;
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// Serves takeovers until stopped (`false`) or one succeeds (`true`).
fn serve(listener: &UnixListener, served: &Served) -> bool {
    for stream in listener.incoming() {
        let stream = match stream {
            Ok(stream) => stream,
            // Shut down (stop), or out of descriptors: either way, not a takeover.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => return false,
            Err(e) => {
                warn!(error = %e, "control socket: cannot accept");
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        match passfd::peer_uid(&stream) {
            Ok(uid) if uid == 0 || uid == passfd::own_uid() => {}
            _ => {
                warn!("control socket: refused a connection from another user");
                continue;
            }
        }
        match hand_over(Link::new(stream), served) {
            Ok(done) => {
                info!(
                    sessions = done.sessions,
                    fds = done.fds,
                    pause_ms = done.pause.as_secs_f64() * 1e3,
                    "handed over to the next process; exiting"
                );
                if let Some(tell) = &served.handed_over {
                    tell(done);
                }
                return true;
            }
            Err(why) => warn!("takeover failed: {why}; still serving everything"),
        }
    }
    false
}

/// One takeover, from `HELLO` to `BYE`. An error means the workers are serving (again).
fn hand_over(mut link: Link, served: &Served) -> Result<HandedOver, String> {
    let hello = link
        .line(Instant::now() + HELLO_TIMEOUT)
        .map_err(|e| format!("no HELLO: {e}"))?;
    let wants_xdp = hello.split(' ').any(|w| w == "xdp=1");
    let (listen, workers) = parse_hello(&hello).ok_or_else(|| {
        let _ = link.send("REFUSE not a takeover request");
        format!("not a takeover request: {:?}", truncated(&hello))
    })?;
    if let Some(why) = mismatch(served, listen, workers) {
        let _ = link.send(&format!("REFUSE {why}"));
        return Err(format!("refused: {why}"));
    }
    // How many descriptors this process holds: the new one makes room for them before GO.
    let fds = std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count());
    // The XDP program, maps and links go now, before anything pauses: sharing them changes
    // nothing until the new process inserts or removes an entry, which it does only once it
    // serves.
    let xdp = served.xdp.as_ref().filter(|_| wants_xdp);
    let xdp_word = xdp.map_or(String::new(), |x| format!(" xdp={}", x.parts.len()));
    let failed = |e: io::Error| e.to_string();
    link.queue(
        &format!(
            "OK listen={} workers={} pid={} fds={fds}{xdp_word}",
            served.local,
            served.workers.len(),
            std::process::id()
        ),
        None,
    )
    .map_err(failed)?;
    for (label, fd) in xdp.map_or(&[][..], |x| &x.parts[..]) {
        link.queue(&format!("X {label}"), Some(fd.as_raw_fd()))
            .map_err(failed)?;
    }
    link.flush().map_err(failed)?;
    info!("a new process is taking over; waiting for it to build its rings");
    // Building rings takes the new process a moment; nothing is paused yet.
    let go = link
        .line(Instant::now() + served.timeout)
        .map_err(|e| format!("no GO: {e}"))?;
    if go != "GO" {
        return Err(format!("expected GO, got {:?}", truncated(&go)));
    }
    let frozen_at = Instant::now();
    let frozen_unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let (exports, decisions) = pause(&served.workers);
    let outcome = exports.and_then(|exports| {
        let deadline = frozen_at + served.timeout;
        let counts = send_state(&mut link, &exports, served.metrics, frozen_unix, deadline)?;
        let ready = link.line(deadline).map_err(|e| format!("no READY: {e}"))?;
        if ready != "READY" {
            return Err(format!("expected READY, got {:?}", truncated(&ready)));
        }
        // The point of no return: once BYE is out, the new process serves. Four bytes on a
        // connection that has just answered: a peer that cannot take them has failed.
        link.write_timeout(BYE_TIMEOUT)
            .map_err(|e| format!("cannot send BYE: {e}"))?;
        link.send("BYE")
            .map_err(|e| format!("cannot send BYE: {e}"))?;
        Ok(counts)
    });
    let decision = match outcome {
        Ok(_) => Decision::Commit,
        Err(_) => Decision::Resume,
    };
    for d in &decisions {
        let _ = d.send(decision);
    }
    let (sessions, fds) = outcome?;
    // The new process tells systemd it is the main process now, then says so; exiting before
    // that would look like the service's end. (A new process that says nothing more is
    // waited for a few seconds, no longer: it serves either way.)
    let _ = link.line(Instant::now() + SERVING_TIMEOUT);
    Ok(HandedOver {
        sessions,
        fds,
        pause: frozen_at.elapsed(),
    })
}

/// Pauses every worker and collects their exports, with one decision channel per worker. A
/// worker that cannot pause fails the lot.
#[allow(clippy::type_complexity)]
fn pause(workers: &[WorkerLink]) -> (Result<Vec<Export>, String>, Vec<mpsc::Sender<Decision>>) {
    let mut waiting = Vec::with_capacity(workers.len());
    let mut decisions = Vec::with_capacity(workers.len());
    for (i, w) in workers.iter().enumerate() {
        let (export, exported) = mpsc::sync_channel(1);
        let (decide, decision) = mpsc::channel();
        decisions.push(decide);
        let asked = w.pause.send(Pause { export, decision });
        if asked.is_err() || eventfd::signal(&w.waker).is_err() {
            return (Err(format!("worker {i} is not running")), decisions);
        }
        waiting.push(exported);
    }
    let deadline = Instant::now() + FREEZE_TIMEOUT;
    let mut exports = Vec::with_capacity(workers.len());
    for (i, exported) in waiting.into_iter().enumerate() {
        let left = deadline.saturating_duration_since(Instant::now());
        match exported.recv_timeout(left) {
            Ok(Ok(export)) => exports.push(export),
            Ok(Err(why)) => return (Err(format!("worker {i}: {why}")), decisions),
            Err(_) => {
                return (
                    Err(format!(
                        "worker {i} did not pause within {FREEZE_TIMEOUT:?}"
                    )),
                    decisions,
                );
            }
        }
    }
    (Ok(exports), decisions)
}

/// Sends every worker's state, then the metrics listener and `END`. Returns the sessions and
/// descriptors sent.
fn send_state(
    link: &mut Link,
    exports: &[Export],
    metrics: Option<RawFd>,
    frozen_unix: Duration,
    deadline: Instant,
) -> Result<(usize, usize), String> {
    let left = deadline.saturating_duration_since(Instant::now());
    link.write_timeout(left.max(Duration::from_millis(1)))
        .map_err(|e| e.to_string())?;
    let failed = |e: io::Error| format!("cannot send the state: {e}");
    let (mut sessions, mut fds) = (0, 0);
    for (i, export) in exports.iter().enumerate() {
        let head = format!("W {i} sessions={}", export.sessions.len());
        link.queue(&head, Some(export.listener)).map_err(failed)?;
        let mut sockets = export.fds.iter();
        for session in &export.sessions {
            let fd = if session.has_socket() {
                Some(*sockets.next().ok_or("a session without its socket")?)
            } else {
                None
            };
            for (n, line) in session.encode_all().iter().enumerate() {
                link.queue(line, fd.filter(|_| n == 0)).map_err(failed)?;
            }
        }
        sessions += export.sessions.len();
        fds += 1 + export.fds.len();
    }
    if let Some(fd) = metrics {
        link.queue("M", Some(fd)).map_err(failed)?;
        fds += 1;
    }
    link.queue(&format!("END frozen_us={}", frozen_unix.as_micros()), None)
        .map_err(failed)?;
    link.flush().map_err(failed)?;
    Ok((sessions, fds))
}

fn parse_hello(line: &str) -> Option<(SocketAddr, usize)> {
    let rest = line.strip_prefix(&format!("HELLO {VERSION} "))?;
    let mut listen = None;
    let mut workers = None;
    for word in rest.split(' ') {
        match word.split_once('=')? {
            ("listen", v) => listen = v.parse().ok(),
            ("workers", v) => workers = v.parse().ok(),
            _ => {}
        }
    }
    Some((listen?, workers?))
}

/// Why a process asking with `listen` and `workers` may not take over, if it may not.
fn mismatch(served: &Served, listen: SocketAddr, workers: usize) -> Option<String> {
    if workers != served.workers.len() {
        return Some(format!(
            "worker count differs: this process runs {} workers, the new one asks for {workers} \
             (--workers/WORKERS must match: the kernel's reuseport hash decides which worker a \
             client lands on)",
            served.workers.len()
        ));
    }
    // Port 0 asks for whatever this process bound.
    let same_port = listen.port() == 0 || listen.port() == served.local.port();
    // The wildcards are one address: `[::]` falls back to `0.0.0.0` on a host without IPv6.
    let same_ip = listen.ip() == served.listen.ip()
        || (listen.ip().is_unspecified() && served.listen.ip().is_unspecified());
    if !same_ip || !same_port {
        return Some(format!(
            "listen address differs: this process listens on {}, the new one asks for {listen} \
             (--listen/PROXY_ADDR must match)",
            served.local
        ));
    }
    None
}
