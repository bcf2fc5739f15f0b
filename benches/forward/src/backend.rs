//! The backend role: the static upstream every forwarder sends to. `--threads` sockets share
//! one port through SO_REUSEPORT, one receiving thread each (pinned to the role's CPUs), with
//! `recvmmsg` batches, per-flow counters, loss by sequence number, and optionally an echo of
//! every datagram back to where it came from (the forwarder's upstream socket for the session),
//! or only those of the first `--echo-flows` flows (the takeover scenario's mix of echo and
//! sink load), or each flow's first `--echo-first` datagrams (the XDP testbed's handshake). A PROXY protocol v2 header in front of a datagram is stripped before it is counted
//! or echoed, as a backend behind `--proxy-protocol v2` would. Each thread also keeps the
//! longest time it went without a datagram since the window opened: a forwarding pause.
//!
//! Each thread keeps its own counters and is their only writer; the control thread only reads
//! and sums them. The kernel hashes a forwarder's upstream socket to one backend socket, so a
//! flow's sequence numbers are all seen by one thread.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use crate::os::Batch;
use crate::proc::{self, RoleArgs};
use crate::sockets;
use crate::wire::{BackendReport, BackendSnap, Counter, Header, Ready, strip_proxy_v2};
use nix::sys::socket::{MsgFlags, SockaddrStorage};

/// Buffer per datagram: above the largest payload the plan sends (1200 B), so a datagram that a
/// forwarder mangled into something longer shows up as truncated.
const DATAGRAM_BUFFER_BYTES: usize = 2048;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    role: RoleArgs,
    #[arg(long)]
    flows: usize,
    #[arg(long)]
    echo: bool,
    /// With --echo, echo only the flows numbered below this
    #[arg(long)]
    echo_flows: Option<usize>,
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Echo each flow's datagrams numbered below N even without --echo: the XDP testbed's
    /// handshake (a reply, then the client's next datagram) that confirms every session
    #[arg(long, value_name = "N", default_value_t = 0)]
    echo_first: u64,
}

#[derive(Default)]
struct Flow {
    received: Counter,
    /// Highest sequence number seen plus one: what the flow must have sent by now, so
    /// `expected - received` is its loss by sequence (late arrivals are not counted twice).
    expected: Counter,
}

/// One thread's counters.
struct Counters {
    flows: Box<[Flow]>,
    received: Counter,
    expected: Counter,
    /// Truncated datagrams, those without a header or naming no flow of the run, and errors.
    odd: Counter,
    echo_failed: Counter,
    /// Datagrams that came with a PROXY protocol v2 header.
    proxied: Counter,
    /// Nanoseconds (since the role's epoch) of the last batch received, 0 before the first.
    last_ns: Counter,
    /// The longest gap between batches since the window opened; the control thread zeroes it.
    longest_gap_ns: AtomicU64,
}

impl Counters {
    /// A batch arrived at `now_ns`; the gap since the previous one counts if it ended after the
    /// window opened at `window_ns`, from then at the earliest.
    fn arrived(&self, now_ns: u64, window_ns: u64) {
        let last = self.last_ns.get();
        if last > 0 && now_ns > window_ns {
            let gap = now_ns - last.max(window_ns);
            self.longest_gap_ns.fetch_max(gap, Relaxed);
        }
        self.last_ns.raise_to(now_ns);
    }

    fn count(&self, datagram: &[u8]) {
        let header = Header::read(datagram);
        let Some((flow, seq)) =
            header.and_then(|h| Some((self.flows.get(h.flow as usize)?, h.seq)))
        else {
            return self.odd.add(1);
        };
        self.received.add(1);
        flow.received.add(1);
        let before = flow.expected.get();
        flow.expected.raise_to(seq + 1);
        self.expected.add(flow.expected.get() - before);
    }
}

fn snapshot(threads: &[Counters]) -> BackendSnap {
    let sum = |counter: fn(&Counters) -> &Counter| threads.iter().map(|t| counter(t).get()).sum();
    BackendSnap {
        received: sum(|t| &t.received),
        expected: sum(|t| &t.expected),
        odd: sum(|t| &t.odd),
        echo_failed: sum(|t| &t.echo_failed),
        proxied: sum(|t| &t.proxied),
        longest_gap_us: threads
            .iter()
            .map(|t| t.longest_gap_ns.load(Relaxed))
            .max()
            .unwrap_or(0) as f64
            / 1_000.0,
    }
}

fn report(threads: &[Counters], flows: usize) -> BackendReport {
    let flow = |i: usize| threads.iter().map(move |t| &t.flows[i]);
    BackendReport {
        received: (0..flows)
            .map(|i| flow(i).map(|f| f.received.get()).sum())
            .collect(),
        expected: (0..flows)
            .map(|i| flow(i).map(|f| f.expected.get()).max().unwrap_or(0))
            .collect(),
    }
}

pub fn run(args: Args) -> Result<(), String> {
    args.role.enter()?;
    let threads = args.threads.max(1);
    let (sockets, listen) =
        sockets::listen(args.role.listen_ip, threads).map_err(|e| format!("backend bind: {e}"))?;
    let new = |_| Counters {
        flows: (0..args.flows).map(|_| Flow::default()).collect(),
        received: Counter::default(),
        expected: Counter::default(),
        odd: Counter::default(),
        echo_failed: Counter::default(),
        proxied: Counter::default(),
        last_ns: Counter::default(),
        longest_gap_ns: AtomicU64::new(0),
    };
    let counters: &'static [Counters] = Vec::leak((0..threads).map(new).collect());
    let flows = args.flows;
    let epoch = Instant::now();
    // Until the window opens, gaps are not counted (the load's start is not a pause).
    let window: &'static AtomicU64 = Box::leak(Box::new(AtomicU64::new(u64::MAX)));
    proc::serve_commands(args.role.lifetime(), move |command| match command {
        "window-start" => {
            window.store(epoch.elapsed().as_nanos() as u64, Relaxed);
            counters
                .iter()
                .for_each(|t| t.longest_gap_ns.store(0, Relaxed));
            proc::say("snap", &snapshot(counters))
        }
        "snap" | "window-end" => proc::say("snap", &snapshot(counters)),
        "report" => proc::say("report", &report(counters, flows)),
        other => eprintln!("backend: unknown command `{other}`"),
    });
    let echo_flows = match (args.echo, args.echo_flows) {
        (false, _) => 0,
        (true, flows) => flows.unwrap_or(usize::MAX),
    };
    for (index, socket) in sockets.into_iter().enumerate() {
        let role = args.role.clone();
        std::thread::spawn(move || {
            role.pin_thread(index);
            let clock = Clock { epoch, window };
            let echo = Echo {
                flows: echo_flows,
                first: args.echo_first,
            };
            serve(&socket, &counters[index], echo, clock)
        });
    }
    proc::say("ready", &Ready { listen });
    // The threads serve until the control thread ends the process (stdin closed, or lifetime).
    loop {
        std::thread::park();
    }
}

/// The role's epoch, and when the window opened (nanoseconds since it).
#[derive(Clone, Copy)]
struct Clock {
    epoch: Instant,
    window: &'static AtomicU64,
}

/// Which datagrams are echoed: every one of the flows numbered below `flows`, and each flow's
/// datagrams numbered below `first`.
#[derive(Clone, Copy)]
struct Echo {
    flows: usize,
    first: u64,
}

fn serve(socket: &UdpSocket, counters: &Counters, echo: Echo, clock: Clock) {
    let mut batch: Batch<SockaddrStorage> = Batch::new(64, DATAGRAM_BUFFER_BYTES);
    loop {
        let received = match batch.recv(socket, MsgFlags::MSG_WAITFORONE) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => {
                counters.odd.add(1);
                // An error that repeats must not turn into a busy loop on the load's CPU.
                std::thread::sleep(Duration::from_millis(1));
                continue;
            }
        };
        let now_ns = clock.epoch.elapsed().as_nanos() as u64;
        counters.arrived(now_ns, clock.window.load(Relaxed));
        for i in 0..received {
            let payload = strip_proxy_v2(batch.received(i));
            if payload.len() < batch.received(i).len() {
                counters.proxied.add(1);
            }
            counters.count(payload);
            if batch.truncated(i) {
                counters.odd.add(1);
            }
            let echoed = Header::read(payload)
                .is_some_and(|h| (h.flow as usize) < echo.flows || h.seq < echo.first);
            if !echoed {
                continue;
            }
            // A `send_to` per echo: nix's sendmmsg to many addresses cannot report how many
            // went out without reading memory it never initialised.
            let to = batch.source(i).and_then(socket_addr);
            if to.is_none_or(|to| socket.send_to(payload, to).is_err()) {
                counters.echo_failed.add(1);
            }
        }
    }
}

fn socket_addr(storage: SockaddrStorage) -> Option<SocketAddr> {
    let v4 = storage
        .as_sockaddr_in()
        .map(|addr| std::net::SocketAddrV4::from(*addr).into());
    v4.or_else(|| {
        storage
            .as_sockaddr_in6()
            .map(|addr| std::net::SocketAddrV6::from(*addr).into())
    })
}
