//! The load generator role: N flows, each its own connected UDP socket from its own loopback
//! address (flow i from 127.1.0.1 + i, `loopback.rs`), as N players would be, sending paced
//! `sendmmsg` bursts of stamped datagrams to the forwarder under test and, when the backend
//! echoes, receiving the replies to measure round-trip times.
//!
//! The flows are split over `--threads` senders, each pinned to a CPU of the role's and given
//! its share of the rate (`pacing.rs`); a sender visits its flows round-robin, one burst per
//! visit. With echo, each sender has a receiver thread on the same CPU that waits on its flows
//! with epoll and drains them with `recvmmsg`. Round-trip times, measured against this
//! process's own clock, go into an HDR histogram only while the driver holds the measured
//! window open.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags};
use nix::sys::socket::MsgFlags;
use serde_json::json;

use crate::cli::Rate;
use crate::os::{self, Batch};
use crate::pacing::{Share, shares};
use crate::proc::{self, RoleArgs};
use crate::sockets;
use crate::wire::{GeneratorReport, GeneratorSnap, HEADER_LEN, Header, Rtt};

/// How long echoes are awaited after sending stops, before the per-flow counts are final.
const DRAIN: Duration = Duration::from_millis(300);
/// Round trips are recorded from 1 ns to 60 s with 3 significant digits.
const RTT_MAX_NS: u64 = 60_000_000_000;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    role: RoleArgs,
    #[arg(long)]
    target: SocketAddr,
    #[arg(long)]
    flows: usize,
    #[arg(long, default_value_t = 64)]
    payload: usize,
    #[arg(long, default_value = "max")]
    rate: Rate,
    #[arg(long)]
    echo: bool,
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

/// What a sender and its receiver share with the control thread and each other.
#[derive(Default)]
struct Shared {
    /// Set by the driver's `finish`: the senders stop.
    stop: AtomicBool,
    /// Set after the drain: the receivers stop.
    stop_receiving: AtomicBool,
    /// Round-trip times are recorded while the driver holds the window open.
    recording: AtomicBool,
    sent: AtomicU64,
    send_failed: AtomicU64,
    echoed: AtomicU64,
}

/// What every sending and receiving thread reads.
#[derive(Clone, Copy)]
struct Load<'a> {
    args: &'a Args,
    sockets: &'a [UdpSocket],
    shared: &'a Shared,
    epoch: Instant,
    deadline: Instant,
}

/// What one receiver saw of its share's flows.
struct Echoes {
    per_flow: Vec<u64>,
    /// Echoes whose header named another flow than the socket they came back on.
    mismatched: u64,
    rtt_ns: Histogram<u64>,
}

impl Echoes {
    fn new(flows: usize) -> Echoes {
        let rtt_ns = Histogram::new_with_bounds(1, RTT_MAX_NS, 3).expect("valid bounds");
        Echoes {
            per_flow: vec![0; flows],
            mismatched: 0,
            rtt_ns,
        }
    }
}

pub fn run(args: Args) -> Result<(), String> {
    args.role.enter()?;
    if args.flows == 0 || args.payload < HEADER_LEN {
        return Err(format!(
            "need at least 1 flow and {HEADER_LEN} payload bytes"
        ));
    }
    let sockets = (0..args.flows)
        .map(|flow| sockets::flow(flow, args.target))
        .collect::<Result<Vec<_>, _>>()?;
    let shared: &'static Shared = Box::leak(Box::default());
    proc::serve_commands(args.role.lifetime(), move |command| {
        match command {
            "window-start" => shared.recording.store(true, Relaxed),
            "window-end" => shared.recording.store(false, Relaxed),
            "snap" => {}
            // The main thread reports once sending and draining are done.
            "finish" => return shared.stop.store(true, Relaxed),
            other => return eprintln!("loadgen: unknown command `{other}`"),
        }
        let [sent, send_failed, echoed] =
            [&shared.sent, &shared.send_failed, &shared.echoed].map(|n| n.load(Relaxed));
        proc::say(
            "snap",
            &GeneratorSnap {
                sent,
                send_failed,
                echoed,
            },
        );
    });
    let epoch = Instant::now();
    let load = Load {
        args: &args,
        sockets: &sockets,
        shared,
        epoch,
        deadline: epoch + args.role.lifetime(),
    };
    let shares = shares(args.flows, args.threads, args.rate);
    let (sent, echoes) = std::thread::scope(|scope| {
        let start = |(index, share): (usize, &Share)| {
            let (role, share) = (&load.args.role, share.clone());
            let receiver = load.args.echo.then(|| {
                let share = share.clone();
                scope.spawn(move || (role.pin_thread(index), receive(load, &share)).1)
            });
            (
                scope.spawn(move || (role.pin_thread(index), send(load, &share)).1),
                receiver,
            )
        };
        let (senders, receivers): (Vec<_>, Vec<_>) = shares.iter().enumerate().map(start).unzip();
        let bursts: Vec<usize> = shares.iter().map(Share::burst).collect();
        proc::say("ready", &json!({ "bursts": bursts }));
        let mut sent = Vec::with_capacity(args.flows);
        for sender in senders {
            sent.extend(sender.join().map_err(|_| "a sender panicked")?);
        }
        if args.echo {
            std::thread::sleep(DRAIN);
        }
        shared.stop_receiving.store(true, Relaxed);
        let mut echoes = Echoes::new(0);
        for receiver in receivers.into_iter().flatten() {
            let part = receiver.join().map_err(|_| "a receiver panicked")??;
            echoes.per_flow.extend(part.per_flow);
            echoes.mismatched += part.mismatched;
            echoes
                .rtt_ns
                .add(&part.rtt_ns)
                .map_err(|e| format!("merging RTTs: {e:?}"))?;
        }
        Ok::<_, String>((sent, echoes))
    })?;
    let rtt = &echoes.rtt_ns;
    let micros = |q: f64| rtt.value_at_quantile(q) as f64 / 1_000.0;
    let report = GeneratorReport {
        sent,
        echoed: args.echo.then_some(echoes.per_flow),
        send_failed: shared.send_failed.load(Relaxed),
        mismatched: echoes.mismatched,
        rtt: (!rtt.is_empty()).then(|| Rtt {
            samples: rtt.len(),
            p50_us: micros(0.50),
            p99_us: micros(0.99),
            p999_us: micros(0.999),
            max_us: rtt.max() as f64 / 1_000.0,
        }),
    };
    proc::say("report", &report);
    Ok(())
}

fn nanos_since(epoch: Instant) -> u64 {
    epoch.elapsed().as_nanos() as u64
}

/// Sends until told to stop or the deadline; returns the datagrams sent per flow of the share.
fn send(load: Load, share: &Share) -> Vec<u64> {
    if let Err(e) = os::tighten_timer_slack() {
        eprintln!("loadgen: timer slack stays at its default ({e}); pacing is coarser");
    }
    let (burst, sockets) = (share.burst(), &load.sockets[share.flows.clone()]);
    let mut pacer = share.pacer(nanos_since(load.epoch));
    let mut batch: Batch<()> = Batch::new(burst, load.args.payload);
    let mut next_seq = vec![0u64; sockets.len()];
    let mut flow = 0;
    while !load.shared.stop.load(Relaxed) {
        if Instant::now() >= load.deadline {
            eprintln!("loadgen: lifetime over before the driver said finish");
            break;
        }
        let now = nanos_since(load.epoch);
        let count = match pacer
            .as_mut()
            .map(|(pacer, wake)| pacer.next(now, burst, *wake))
        {
            None => burst,
            Some(Ok(count)) => count,
            Some(Err(wait_ns)) => {
                std::thread::sleep(Duration::from_nanos(wait_ns.min(1_000_000)));
                continue;
            }
        };
        let id = (share.flows.start + flow) as u32;
        for i in 0..count {
            let header = Header {
                seq: next_seq[flow] + i as u64,
                sent_ns: now,
                flow: id,
            };
            header.write(batch.fill(i, load.args.payload));
        }
        let (sent, failed) = batch.send_all(&sockets[flow], count);
        // Unsent datagrams never left: their sequence numbers are reused, not lost.
        next_seq[flow] += sent as u64;
        load.shared.sent.fetch_add(sent as u64, Relaxed);
        load.shared.send_failed.fetch_add(failed as u64, Relaxed);
        flow = (flow + 1) % sockets.len();
    }
    next_seq
}

/// Drains echoes from the share's flows until `stop_receiving` or the deadline.
fn receive(load: Load, share: &Share) -> Result<Echoes, String> {
    /// Bounded, so one busy flow cannot starve the others.
    const PASSES_PER_WAKE: usize = 16;
    let sockets = &load.sockets[share.flows.clone()];
    let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).map_err(|e| format!("epoll: {e}"))?;
    for (index, socket) in sockets.iter().enumerate() {
        let event = EpollEvent::new(EpollFlags::EPOLLIN, index as u64);
        epoll
            .add(socket, event)
            .map_err(|e| format!("epoll add: {e}"))?;
    }
    let mut events = vec![EpollEvent::empty(); 256];
    let mut batch: Batch<()> = Batch::new(64, 2048);
    let mut echoes = Echoes::new(sockets.len());
    while !load.shared.stop_receiving.load(Relaxed) && Instant::now() < load.deadline {
        let ready = match epoll.wait(&mut events, 10u16) {
            Ok(ready) => ready,
            Err(nix::errno::Errno::EINTR) => 0,
            Err(e) => return Err(format!("epoll wait: {e}")),
        };
        for index in events[..ready].iter().map(|event| event.data() as usize) {
            for _ in 0..PASSES_PER_WAKE {
                // EAGAIN (drained) or a per-socket error: either way, the next socket.
                let Ok(received) = batch.recv(&sockets[index], MsgFlags::MSG_DONTWAIT) else {
                    break;
                };
                let (now, record) = (nanos_since(load.epoch), load.shared.recording.load(Relaxed));
                let mut valid = 0;
                for header in (0..received).map(|i| Header::read(batch.received(i))) {
                    match header {
                        Some(header) if header.flow as usize == share.flows.start + index => {
                            valid += 1;
                            if record {
                                echoes
                                    .rtt_ns
                                    .saturating_record(now.saturating_sub(header.sent_ns));
                            }
                        }
                        _ => echoes.mismatched += 1,
                    }
                }
                echoes.per_flow[index] += valid;
                load.shared.echoed.fetch_add(valid, Relaxed);
                if received < batch.capacity() {
                    break;
                }
            }
        }
    }
    Ok(echoes)
}
