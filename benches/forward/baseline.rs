//! The tokio baseline: the forwarder a competent Rust developer would write with tokio, with
//! ringgate's semantics, as a fair opponent. No deliberate handicaps:
//!
//! * a multi-threaded runtime with as many workers as ringgate gets (`--workers`), pinned by the
//!   driver to the same CPU set;
//! * one `SO_REUSEPORT` listening socket per worker, each with its own `recv_from` loop task;
//! * a session per client address in a shared map: a connected upstream socket to the static
//!   backend and one task that relays the backend's replies through the listening socket that
//!   first heard the client (so the client sees replies from the address it sent to);
//! * idle sessions reaped by a periodic sweep, which also aborts their reply task;
//! * a session limit, as ringgate has, and the same 8 MiB socket buffers on every socket.

use std::collections::HashMap;
use std::io;
use std::net::{SocketAddr, UdpSocket as StdUdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;
use tokio::task::AbortHandle;

use crate::args::Args;
use crate::control;
use crate::sys;

struct Config {
    listen: SocketAddr,
    backend: SocketAddr,
    workers: usize,
    idle_timeout: Duration,
    buffer_bytes: usize,
    sessions_max: usize,
    lifetime: Duration,
}

fn parse(raw: &[String]) -> Result<Config, String> {
    let mut args = Args::parse(raw, &[])?;
    let config = Config {
        listen: args.get("listen", "127.0.0.1:0".parse().expect("literal address"))?,
        backend: args.required("backend")?,
        workers: args.get("workers", 1)?,
        idle_timeout: Duration::from_secs(args.get("idle-timeout", 60)?),
        // The same per-datagram buffer ringgate is given (`--buffer-size 2048`).
        buffer_bytes: args.get("buffer-size", 2048)?,
        sessions_max: args.get("sessions-max", 65_536)?,
        lifetime: Duration::from_secs(args.get("max-secs", 600)?),
    };
    args.finish()?;
    if config.workers == 0 {
        return Err("--workers must be at least 1".into());
    }
    Ok(config)
}

/// Rare events only: nothing on the per-packet path touches these unless something failed.
#[derive(Default)]
struct Stats {
    sessions_created: AtomicU64,
    sessions_reaped: AtomicU64,
    dropped_session_limit: AtomicU64,
    dropped_session_error: AtomicU64,
    upstream_send_errors: AtomicU64,
    reply_send_errors: AtomicU64,
    recv_errors: AtomicU64,
}

struct Session {
    upstream: UdpSocket,
    /// Milliseconds since the forwarder started, at the last packet in either direction.
    last_seen_ms: AtomicU64,
    reply_task: OnceLock<AbortHandle>,
}

struct Forwarder {
    config: Config,
    started: Instant,
    sessions: Mutex<HashMap<SocketAddr, Arc<Session>>>,
    stats: Stats,
}

impl Forwarder {
    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// The client's session, created on its first datagram; `None` when the table is full or
    /// the upstream socket cannot be made (the datagram is then dropped and counted).
    fn session(
        self: &Arc<Self>,
        client: SocketAddr,
        listener: &Arc<UdpSocket>,
    ) -> Option<Arc<Session>> {
        let mut sessions = self.sessions.lock().expect("session map poisoned");
        if let Some(session) = sessions.get(&client) {
            return Some(Arc::clone(session));
        }
        if sessions.len() >= self.config.sessions_max {
            self.stats.dropped_session_limit.fetch_add(1, Relaxed);
            return None;
        }
        let upstream = match connect_upstream(self.config.backend) {
            Ok(upstream) => upstream,
            Err(e) => {
                if self.stats.dropped_session_error.fetch_add(1, Relaxed) == 0 {
                    eprintln!("baseline: upstream socket for {client}: {e} (not logged again)");
                }
                return None;
            }
        };
        let session = Arc::new(Session {
            upstream,
            last_seen_ms: AtomicU64::new(self.now_ms()),
            reply_task: OnceLock::new(),
        });
        let reply = tokio::spawn(relay_replies(
            Arc::clone(self),
            Arc::clone(&session),
            Arc::clone(listener),
            client,
        ));
        let _ = session.reply_task.set(reply.abort_handle());
        sessions.insert(client, Arc::clone(&session));
        self.stats.sessions_created.fetch_add(1, Relaxed);
        Some(session)
    }

    fn snapshot(&self) -> Vec<(&'static str, String)> {
        let sessions = self.sessions.lock().expect("session map poisoned").len();
        let stats = &self.stats;
        vec![
            ("sessions", sessions.to_string()),
            ("created", stats.sessions_created.load(Relaxed).to_string()),
            ("reaped", stats.sessions_reaped.load(Relaxed).to_string()),
            (
                "drop_limit",
                stats.dropped_session_limit.load(Relaxed).to_string(),
            ),
            (
                "drop_error",
                stats.dropped_session_error.load(Relaxed).to_string(),
            ),
            (
                "upstream_errors",
                stats.upstream_send_errors.load(Relaxed).to_string(),
            ),
            (
                "reply_errors",
                stats.reply_send_errors.load(Relaxed).to_string(),
            ),
            ("recv_errors", stats.recv_errors.load(Relaxed).to_string()),
        ]
    }
}

/// A socket with the buffers every contestant gets, non-blocking for tokio.
fn udp_socket(family: SocketAddr) -> io::Result<Socket> {
    let socket = Socket::new(
        Domain::for_address(family),
        Type::DGRAM,
        Some(Protocol::UDP),
    )?;
    sys::set_socket_buffers(socket.as_raw_fd(), sys::SOCKET_BUFFER_BYTES)?;
    socket.set_nonblocking(true)?;
    Ok(socket)
}

fn connect_upstream(backend: SocketAddr) -> io::Result<UdpSocket> {
    let socket = udp_socket(backend)?;
    socket.connect(&backend.into())?;
    UdpSocket::from_std(StdUdpSocket::from(socket))
}

/// `workers` listening sockets sharing one port through SO_REUSEPORT; the kernel spreads
/// clients across them by flow hash.
fn bind_listeners(config: &Config) -> io::Result<Vec<Arc<UdpSocket>>> {
    let mut addr = config.listen;
    let mut listeners = Vec::with_capacity(config.workers);
    for _ in 0..config.workers {
        let socket = udp_socket(addr)?;
        socket.set_reuse_port(true)?;
        socket.bind(&addr.into())?;
        let socket = UdpSocket::from_std(StdUdpSocket::from(socket))?;
        // Port 0 asks for a free port once; the other listeners join that one.
        addr = socket.local_addr()?;
        listeners.push(Arc::new(socket));
    }
    Ok(listeners)
}

/// Client -> backend: one task per listening socket.
async fn forward_requests(forwarder: Arc<Forwarder>, listener: Arc<UdpSocket>) {
    let mut buf = vec![0u8; forwarder.config.buffer_bytes];
    loop {
        let (len, client) = match listener.recv_from(&mut buf).await {
            Ok(received) => received,
            Err(_) => {
                forwarder.stats.recv_errors.fetch_add(1, Relaxed);
                continue;
            }
        };
        let Some(session) = forwarder.session(client, &listener) else {
            continue;
        };
        session.last_seen_ms.store(forwarder.now_ms(), Relaxed);
        if session.upstream.send(&buf[..len]).await.is_err() {
            forwarder.stats.upstream_send_errors.fetch_add(1, Relaxed);
        }
    }
}

/// Backend -> client for one session, from the listening socket the client talks to. Ends when
/// the reaper aborts it.
async fn relay_replies(
    forwarder: Arc<Forwarder>,
    session: Arc<Session>,
    listener: Arc<UdpSocket>,
    client: SocketAddr,
) {
    let mut buf = vec![0u8; forwarder.config.buffer_bytes];
    loop {
        // An error here is per datagram (e.g. ECONNREFUSED after an ICMP from a restarting
        // backend): count it and keep the session.
        let Ok(len) = session.upstream.recv(&mut buf).await else {
            forwarder.stats.recv_errors.fetch_add(1, Relaxed);
            continue;
        };
        session.last_seen_ms.store(forwarder.now_ms(), Relaxed);
        if listener.send_to(&buf[..len], client).await.is_err() {
            forwarder.stats.reply_send_errors.fetch_add(1, Relaxed);
        }
    }
}

/// Drops sessions idle for longer than the timeout, sweeping four times per timeout so a
/// session lives at most 1.25 timeouts.
async fn reap_idle(forwarder: Arc<Forwarder>) {
    let timeout_ms = forwarder.config.idle_timeout.as_millis() as u64;
    let mut sweep = tokio::time::interval(forwarder.config.idle_timeout / 4);
    loop {
        sweep.tick().await;
        let now = forwarder.now_ms();
        let mut reaped = 0;
        forwarder
            .sessions
            .lock()
            .expect("session map poisoned")
            .retain(|_, session| {
                let idle = now.saturating_sub(session.last_seen_ms.load(Relaxed)) > timeout_ms;
                if idle {
                    if let Some(task) = session.reply_task.get() {
                        task.abort();
                    }
                    reaped += 1;
                }
                !idle
            });
        forwarder.stats.sessions_reaped.fetch_add(reaped, Relaxed);
    }
}

pub fn run(raw: &[String]) -> Result<(), String> {
    let config = parse(raw)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.workers)
        .enable_all()
        .build()
        .map_err(|e| format!("baseline runtime: {e}"))?;
    runtime.block_on(async move {
        let listeners = bind_listeners(&config).map_err(|e| format!("baseline listen: {e}"))?;
        let listen_addr = listeners[0].local_addr().map_err(|e| e.to_string())?;
        let lifetime = config.lifetime;
        let forwarder = Arc::new(Forwarder {
            config,
            started: Instant::now(),
            sessions: Mutex::new(HashMap::new()),
            stats: Stats::default(),
        });
        let control_forwarder = Arc::clone(&forwarder);
        control::serve_commands(lifetime, move |command| match command {
            "snap" => control::announce("snap", &control_forwarder.snapshot()),
            other => eprintln!("baseline: unknown command `{other}`"),
        });
        for listener in listeners {
            tokio::spawn(forward_requests(Arc::clone(&forwarder), listener));
        }
        tokio::spawn(reap_idle(Arc::clone(&forwarder)));
        control::announce("ready", &[("listen", listen_addr.to_string())]);
        // Serves until the control thread ends the process.
        std::future::pending::<Result<(), String>>().await
    })
}
