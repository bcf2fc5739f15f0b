//! The load generator role: N flows, each its own connected UDP socket (so its own source
//! port), sending paced `sendmmsg` batches of stamped datagrams to the forwarder under test,
//! and, when the backend echoes, receiving the replies to measure round-trip time.
//!
//! The main thread sends; it visits the flows round-robin and sends one burst per visit, paced
//! by a token bucket on CLOCK_MONOTONIC. With echo on, a second thread waits on all flow
//! sockets with epoll and drains them with `recvmmsg`. Both are pinned, with the backend, to
//! the load CPU set by the driver. The driver opens and closes the measured window with
//! commands; round-trip times are recorded only while it is open.

use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

use crate::args::Args;
use crate::control;
use crate::histogram::Histogram;
use crate::pacer::TokenBucket;
use crate::sys::{self, Dest, Epoll, MmsgBatch};
use crate::wire::{HEADER_LEN, Header};

/// Most datagrams per `sendmmsg`: past ~32 the per-call saving is negligible next to the
/// per-datagram cost, and longer bursts make a single flow needlessly bursty.
const BURST_MAX: usize = 32;
/// A paced flow is visited at least this often per second (when the rate allows a burst of 1):
/// a game client sends 30-60 updates a second, so 50 keeps every flow, even among 10 000,
/// looking alive to an idle reaper while still batching at high rates.
const VISITS_PER_FLOW_PER_SECOND: u64 = 50;
/// The generator sleeps until at least this much sending is due, so at high rates it wakes
/// about 20 000 times a second rather than once per datagram.
const MIN_WAKE_NS: u64 = 50_000;
/// The bucket holds at most 2 ms of the rate, so a late wake-up is caught up in a short burst.
const CATCH_UP_NS: u64 = 2_000_000;
/// How long echoes are awaited after sending stops, before the per-flow counts are final.
const DRAIN: Duration = Duration::from_millis(300);

const WINDOW_BEFORE: u8 = 0;
const WINDOW_OPEN: u8 = 1;
const WINDOW_CLOSED: u8 = 2;

struct Shared {
    /// Set by the driver's `finish`: the sender stops.
    stop: AtomicBool,
    /// Set after the drain period: the echo receiver stops.
    stop_receiving: AtomicBool,
    window: AtomicU8,
    sent: AtomicU64,
    send_failed: AtomicU64,
    echoed: AtomicU64,
}

impl Shared {
    fn snapshot(&self) -> Vec<(&'static str, String)> {
        vec![
            ("sent", self.sent.load(Relaxed).to_string()),
            ("send_failed", self.send_failed.load(Relaxed).to_string()),
            ("echoed", self.echoed.load(Relaxed).to_string()),
        ]
    }
}

struct Config {
    target: SocketAddr,
    flows: usize,
    payload_bytes: usize,
    /// Datagrams per second, or `None` for as fast as the generator can send.
    rate_pps: Option<u64>,
    burst: usize,
    echo: bool,
    lifetime: Duration,
}

/// Datagrams per `sendmmsg`: as many as the rate allows while every flow is still visited
/// `VISITS_PER_FLOW_PER_SECOND` times, at least 1 and at most `BURST_MAX`.
fn default_burst(rate_pps: Option<u64>, flows: usize) -> usize {
    match rate_pps {
        None => BURST_MAX,
        Some(rate) => {
            let per_visit = rate / (flows as u64 * VISITS_PER_FLOW_PER_SECOND).max(1);
            (per_visit as usize).clamp(1, BURST_MAX)
        }
    }
}

fn parse(raw: &[String]) -> Result<Config, String> {
    let mut args = Args::parse(raw, &["echo"])?;
    let target = args.required("target")?;
    let flows: usize = args.required("flows")?;
    let payload_bytes: usize = args.get("payload", 64)?;
    let rate: String = args.get("rate", "max".to_string())?;
    let rate_pps = match rate.as_str() {
        "max" => None,
        text => Some(text.parse().map_err(|e| format!("--rate {text}: {e}"))?),
    };
    let burst = args.get("burst", default_burst(rate_pps, flows))?;
    let echo = args.flag("echo");
    let lifetime = Duration::from_secs(args.get("max-secs", 600)?);
    args.finish()?;
    if flows == 0 || payload_bytes < HEADER_LEN || burst == 0 || rate_pps == Some(0) {
        return Err(format!(
            "need flows >= 1, payload >= {HEADER_LEN} bytes, burst >= 1 and a rate above 0"
        ));
    }
    Ok(Config {
        target,
        flows,
        payload_bytes,
        rate_pps,
        burst,
        echo,
        lifetime,
    })
}

/// One connected socket per flow, bound to an ephemeral loopback port of the target's family.
fn open_flow(target: SocketAddr) -> Result<UdpSocket, String> {
    let socket = Socket::new(
        Domain::for_address(target),
        Type::DGRAM,
        Some(Protocol::UDP),
    )
    .map_err(|e| format!("flow socket: {e}"))?;
    sys::set_socket_buffers(socket.as_raw_fd(), sys::SOCKET_BUFFER_BYTES)
        .map_err(|e| format!("flow socket buffers: {e}"))?;
    let local: SocketAddr = if target.is_ipv4() {
        "127.0.0.1:0".parse().expect("literal address")
    } else {
        "[::1]:0".parse().expect("literal address")
    };
    socket
        .bind(&local.into())
        .map_err(|e| format!("flow bind: {e}"))?;
    socket
        .connect(&target.into())
        .map_err(|e| format!("flow connect to {target}: {e}"))?;
    Ok(socket.into())
}

pub fn run(raw: &[String]) -> Result<(), String> {
    let config = parse(raw)?;
    let flows = (0..config.flows)
        .map(|_| open_flow(config.target))
        .collect::<Result<Vec<_>, _>>()?;
    let flows = Arc::new(flows);
    let shared = Arc::new(Shared {
        stop: AtomicBool::new(false),
        stop_receiving: AtomicBool::new(false),
        window: AtomicU8::new(WINDOW_BEFORE),
        sent: AtomicU64::new(0),
        send_failed: AtomicU64::new(0),
        echoed: AtomicU64::new(0),
    });

    let control_shared = Arc::clone(&shared);
    control::serve_commands(config.lifetime, move |command| {
        let shared = &control_shared;
        let window = match command {
            "window-start" => Some(WINDOW_OPEN),
            "window-end" => Some(WINDOW_CLOSED),
            "snap" => None,
            "finish" => {
                // The main thread answers with the report once sending and draining are done.
                shared.stop.store(true, Relaxed);
                return;
            }
            other => {
                eprintln!("loadgen: unknown command `{other}`");
                return;
            }
        };
        if let Some(window) = window {
            shared.window.store(window, Relaxed);
        }
        control::announce("snap", &shared.snapshot());
    });

    let receiver = config.echo.then(|| {
        let (flows, shared) = (Arc::clone(&flows), Arc::clone(&shared));
        let deadline = sys::monotonic_ns() + config.lifetime.as_nanos() as u64;
        std::thread::spawn(move || receive_echoes(&flows, &shared, deadline))
    });

    control::announce(
        "ready",
        &[
            ("flows", config.flows.to_string()),
            ("burst", config.burst.to_string()),
        ],
    );
    let sent = send(&config, &flows, &shared);

    let echoes = match receiver {
        Some(receiver) => {
            std::thread::sleep(DRAIN);
            shared.stop_receiving.store(true, Relaxed);
            Some(receiver.join().map_err(|_| "echo receiver panicked")??)
        }
        None => None,
    };
    let report = serde_json::json!({
        "sent": sent,
        "send_failed": shared.send_failed.load(Relaxed),
        "echoed": echoes.as_ref().map(|echoes| &echoes.per_flow),
        "mismatched": echoes.as_ref().map(|echoes| echoes.mismatched),
        "rtt_ns": echoes.as_ref().map(|echoes| serde_json::json!({
            "samples": echoes.rtt.count(),
            "p50": echoes.rtt.quantile(0.50),
            "p99": echoes.rtt.quantile(0.99),
            "p999": echoes.rtt.quantile(0.999),
        })),
    });
    control::write_line(&format!("report {report}"));
    Ok(())
}

/// Sends until told to stop or the lifetime is up; returns the datagrams sent per flow.
fn send(config: &Config, flows: &[UdpSocket], shared: &Shared) -> Vec<u64> {
    if let Err(e) = sys::tighten_timer_slack() {
        eprintln!("loadgen: timer slack stays at its default ({e}); pacing is coarser");
    }
    let start = sys::monotonic_ns();
    let deadline = start + config.lifetime.as_nanos() as u64;
    let mut bucket = config.rate_pps.map(|rate| {
        let catch_up = rate.saturating_mul(CATCH_UP_NS) / 1_000_000_000;
        TokenBucket::new(rate, catch_up.max(config.burst as u64), start)
    });
    let wake_tokens = config.rate_pps.map_or(config.burst, |rate| {
        let due = (rate.saturating_mul(MIN_WAKE_NS) / 1_000_000_000) as usize;
        due.clamp(config.burst, BURST_MAX.max(config.burst))
    });
    let mut batch = MmsgBatch::new(config.burst, config.payload_bytes);
    let mut next_seq = vec![0u64; flows.len()];
    let mut flow = 0;

    while !shared.stop.load(Relaxed) {
        let now = sys::monotonic_ns();
        if now >= deadline {
            eprintln!("loadgen: lifetime over before the driver said finish");
            break;
        }
        let count = match bucket.as_mut() {
            None => config.burst,
            Some(bucket) => match bucket.take(config.burst, now) {
                0 => {
                    let wait = bucket.wait_ns(wake_tokens, now).min(1_000_000);
                    std::thread::sleep(Duration::from_nanos(wait));
                    continue;
                }
                n => n,
            },
        };
        for i in 0..count {
            let header = Header {
                seq: next_seq[flow] + i as u64,
                sent_ns: now,
                flow: flow as u32,
            };
            header.write(batch.fill(i, config.payload_bytes));
        }
        let (sent, failed) = batch.send_all(flows[flow].as_raw_fd(), count, Dest::Connected);
        // Unsent datagrams never left: their sequence numbers are reused, not lost.
        next_seq[flow] += sent as u64;
        shared.sent.fetch_add(sent as u64, Relaxed);
        if failed > 0 {
            shared.send_failed.fetch_add(failed as u64, Relaxed);
        }
        flow = (flow + 1) % flows.len();
    }
    next_seq
}

struct Echoes {
    per_flow: Vec<u64>,
    /// Echoes whose header named another flow than the socket they came back on.
    mismatched: u64,
    rtt: Histogram,
}

/// Drains echoes from every flow socket until `stop_receiving` (set after the drain) or the
/// deadline, recording round-trip times while the measured window is open.
fn receive_echoes(flows: &[UdpSocket], shared: &Shared, deadline: u64) -> Result<Echoes, String> {
    const PASSES_PER_WAKE: usize = 16;
    let mut epoll = Epoll::new(256).map_err(|e| format!("epoll: {e}"))?;
    for (index, flow) in flows.iter().enumerate() {
        epoll
            .add(flow.as_raw_fd(), index as u64)
            .map_err(|e| format!("epoll add: {e}"))?;
    }
    let mut batch = MmsgBatch::new(64, 2048);
    let mut echoes = Echoes {
        per_flow: vec![0; flows.len()],
        mismatched: 0,
        rtt: Histogram::default(),
    };
    while !shared.stop_receiving.load(Relaxed) && sys::monotonic_ns() < deadline {
        let ready = epoll
            .wait(Duration::from_millis(10))
            .map_err(|e| format!("epoll wait: {e}"))?;
        for token in ready {
            let index = token as usize;
            // Bounded, so one busy flow cannot starve the others.
            for _ in 0..PASSES_PER_WAKE {
                let Ok(received) = batch.recv(flows[index].as_raw_fd(), libc::MSG_DONTWAIT) else {
                    // EAGAIN (drained) or a per-socket error: either way, next socket.
                    break;
                };
                let now = sys::monotonic_ns();
                let record = shared.window.load(Relaxed) == WINDOW_OPEN;
                let mut valid = 0;
                for i in 0..received {
                    let Some(header) = Header::read(batch.received(i)) else {
                        echoes.mismatched += 1;
                        continue;
                    };
                    if header.flow as usize != index {
                        echoes.mismatched += 1;
                        continue;
                    }
                    valid += 1;
                    if record {
                        echoes.rtt.record(now.saturating_sub(header.sent_ns));
                    }
                }
                echoes.per_flow[index] += valid;
                shared.echoed.fetch_add(valid, Relaxed);
                if received < batch.capacity() {
                    break;
                }
            }
        }
    }
    Ok(echoes)
}

/// Self-checks of the pure logic above. Bench targets built with `harness = false` never run
/// `#[test]` functions, so the driver runs these under `cargo test --benches` instead.
pub mod checks {
    use super::*;

    pub fn bursts_keep_every_flow_visited() {
        assert_eq!(default_burst(None, 64), BURST_MAX);
        // 50k pps over 64 flows: 15.6 datagrams per flow per visit at 50 visits/s.
        assert_eq!(default_burst(Some(50_000), 64), 15);
        assert_eq!(default_burst(Some(50_000), 1024), 1);
        assert_eq!(default_burst(Some(10_000_000), 1), BURST_MAX);
    }

    pub const ALL: &[(&str, fn())] = &[(
        "loadgen::bursts_keep_every_flow_visited",
        bursts_keep_every_flow_visited,
    )];
}
