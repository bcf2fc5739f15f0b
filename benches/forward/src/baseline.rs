//! The tokio baseline: the forwarder a competent Rust developer would write with tokio, with
//! ringgate's semantics, as a fair opponent. No deliberate handicaps:
//!
//! * a multi-threaded runtime with as many workers as ringgate gets (`--workers`), each worker
//!   thread pinned to one of the same CPUs;
//! * one `SO_REUSEPORT` listening socket per worker, each with its own `recv_from` loop task;
//! * a session per client address in a shared map: a connected upstream socket to the static
//!   backend and one task that relays the backend's replies through the listening socket that
//!   first heard the client (so the client sees replies from the address it sent to);
//! * idle sessions reaped by a periodic sweep, which also aborts their reply task;
//! * a session limit, as ringgate has, and the same 8 MiB buffers on every socket.

use std::collections::HashMap;
use std::io;
use std::net::{SocketAddr, UdpSocket as StdUdpSocket};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::task::AbortHandle;

use crate::proc::{self, RoleArgs};
use crate::sockets;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    role: RoleArgs,
    #[arg(long)]
    backend: SocketAddr,
    #[arg(long, default_value_t = 1)]
    workers: usize,
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    idle_timeout: u64,
    /// The same per-datagram buffer ringgate is given (`--buffer-size 2048`).
    #[arg(long, default_value_t = 2048)]
    buffer_size: usize,
    #[arg(long, default_value_t = 65_536)]
    sessions_max: usize,
}

/// Rare events only: nothing on the per-packet path touches these unless something failed.
#[derive(Default, serde::Serialize)]
struct Stats {
    created: AtomicU64,
    reaped: AtomicU64,
    /// Datagrams from new clients dropped at the session limit or for want of an upstream socket.
    dropped: AtomicU64,
    /// Failed receives and sends, in either direction.
    errors: AtomicU64,
}

struct Session {
    upstream: UdpSocket,
    /// Milliseconds since the forwarder started, at the last packet in either direction.
    last_seen_ms: AtomicU64,
    reply_task: OnceLock<AbortHandle>,
}

struct Forwarder {
    args: Args,
    started: Instant,
    sessions: Mutex<HashMap<SocketAddr, Arc<Session>>>,
    stats: Stats,
}

impl Forwarder {
    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// The client's session, made on its first datagram; `None` when the table is full or the
    /// upstream socket cannot be made (the datagram is then dropped and counted).
    fn session(
        self: &Arc<Self>,
        client: SocketAddr,
        listener: &Arc<UdpSocket>,
    ) -> Option<Arc<Session>> {
        let mut sessions = self.sessions.lock().expect("session map poisoned");
        if let Some(session) = sessions.get(&client) {
            return Some(Arc::clone(session));
        }
        let upstream =
            (sessions.len() < self.args.sessions_max).then(|| connect_upstream(self.args.backend));
        let upstream = match upstream {
            Some(Ok(upstream)) => upstream,
            failed => {
                if let (Some(Err(e)), 0) = (failed, self.stats.dropped.fetch_add(1, Relaxed)) {
                    eprintln!(
                        "baseline: upstream socket for {client}: {e} (no drop is logged again)"
                    );
                }
                return None;
            }
        };
        let last_seen_ms = AtomicU64::new(self.now_ms());
        let session = Arc::new(Session {
            upstream,
            last_seen_ms,
            reply_task: OnceLock::new(),
        });
        let reply = relay_replies(
            Arc::clone(self),
            Arc::clone(&session),
            Arc::clone(listener),
            client,
        );
        let _ = session.reply_task.set(tokio::spawn(reply).abort_handle());
        sessions.insert(client, Arc::clone(&session));
        self.stats.created.fetch_add(1, Relaxed);
        Some(session)
    }

    fn snapshot(&self) -> serde_json::Value {
        let sessions = self.sessions.lock().expect("session map poisoned").len();
        serde_json::json!({ "sessions": sessions, "stats": &self.stats })
    }
}

fn connect_upstream(backend: SocketAddr) -> io::Result<UdpSocket> {
    tokio_socket(sockets::upstream(backend)?)
}

/// Client -> backend: one task per listening socket.
async fn forward_requests(forwarder: Arc<Forwarder>, listener: Arc<UdpSocket>) {
    let mut buf = vec![0u8; forwarder.args.buffer_size];
    loop {
        let Ok((len, client)) = listener.recv_from(&mut buf).await else {
            forwarder.stats.errors.fetch_add(1, Relaxed);
            continue;
        };
        let Some(session) = forwarder.session(client, &listener) else {
            continue;
        };
        session.last_seen_ms.store(forwarder.now_ms(), Relaxed);
        if session.upstream.send(&buf[..len]).await.is_err() {
            forwarder.stats.errors.fetch_add(1, Relaxed);
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
    let mut buf = vec![0u8; forwarder.args.buffer_size];
    loop {
        // An error here is per datagram (e.g. ECONNREFUSED after an ICMP from a restarting
        // backend): count it and keep the session.
        let Ok(len) = session.upstream.recv(&mut buf).await else {
            forwarder.stats.errors.fetch_add(1, Relaxed);
            continue;
        };
        session.last_seen_ms.store(forwarder.now_ms(), Relaxed);
        if listener.send_to(&buf[..len], client).await.is_err() {
            forwarder.stats.errors.fetch_add(1, Relaxed);
        }
    }
}

/// Drops sessions idle for longer than the timeout, sweeping four times per timeout so a
/// session lives at most 1.25 timeouts.
async fn reap_idle(forwarder: Arc<Forwarder>) {
    let timeout = Duration::from_secs(forwarder.args.idle_timeout.max(1));
    let mut sweep = tokio::time::interval(timeout / 4);
    loop {
        sweep.tick().await;
        let now = forwarder.now_ms();
        let mut reaped = 0;
        forwarder
            .sessions
            .lock()
            .expect("session map poisoned")
            .retain(|_, session| {
                let idle = now.saturating_sub(session.last_seen_ms.load(Relaxed))
                    > timeout.as_millis() as u64;
                if idle {
                    session.reply_task.get().inspect(|task| task.abort());
                    reaped += 1;
                }
                !idle
            });
        forwarder.stats.reaped.fetch_add(reaped, Relaxed);
    }
}

pub fn run(args: Args) -> Result<(), String> {
    args.role.enter()?;
    let (role, next_worker) = (args.role.clone(), AtomicUsize::new(0));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.workers.max(1))
        // Each worker on its own CPU, as ringgate's workers are.
        .on_thread_start(move || role.pin_thread(next_worker.fetch_add(1, Relaxed)))
        .enable_all()
        .build()
        .map_err(|e| format!("baseline runtime: {e}"))?;
    runtime.block_on(async move {
        let listen_error = |e| format!("baseline listen: {e}");
        let (listeners, listen) =
            sockets::listen(args.role.listen_ip, args.workers).map_err(listen_error)?;
        let listeners = listeners.into_iter().map(tokio_socket);
        let listeners = listeners
            .collect::<io::Result<Vec<_>>>()
            .map_err(listen_error)?;
        let lifetime = args.role.lifetime();
        let stats = Stats::default();
        let forwarder = Arc::new(Forwarder {
            args,
            started: Instant::now(),
            sessions: Mutex::default(),
            stats,
        });
        let control = Arc::clone(&forwarder);
        proc::serve_commands(lifetime, move |command| match command {
            "snap" => proc::say("snap", &control.snapshot()),
            other => eprintln!("baseline: unknown command `{other}`"),
        });
        for listener in listeners {
            tokio::spawn(forward_requests(Arc::clone(&forwarder), Arc::new(listener)));
        }
        tokio::spawn(reap_idle(Arc::clone(&forwarder)));
        proc::say("ready", &crate::wire::Ready { listen });
        // Serves until the control thread ends the process.
        std::future::pending::<Result<(), String>>().await
    })
}

fn tokio_socket(socket: StdUdpSocket) -> io::Result<UdpSocket> {
    socket.set_nonblocking(true)?;
    UdpSocket::from_std(socket)
}
