//! The backend role: the static upstream every forwarder sends to. One socket, `recvmmsg`
//! batches, per-flow counters, loss by sequence number, and an optional echo of every datagram
//! back to the address it came from (the forwarder's upstream socket for that session).
//!
//! One thread receives and is the only writer of the counters; the control thread only reads
//! them, so plain load-then-store updates are exact and cost no locked instruction.

use std::net::UdpSocket;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use crate::args::Args;
use crate::control;
use crate::sys::{self, Dest, MmsgBatch};
use crate::wire::Header;

/// Buffer per datagram: above the largest payload the plan sends (1200 B), so a datagram that a
/// forwarder mangled into something longer shows up as truncated instead of being hidden.
const DATAGRAM_BUFFER_BYTES: usize = 2048;

/// Counters with a single writer, the receive thread.
#[derive(Default)]
struct Counter(AtomicU64);

impl Counter {
    fn add(&self, n: u64) {
        self.0.store(self.0.load(Relaxed) + n, Relaxed);
    }
    fn raise_to(&self, n: u64) {
        if n > self.0.load(Relaxed) {
            self.0.store(n, Relaxed);
        }
    }
    fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

#[derive(Default)]
struct Flow {
    received: Counter,
    /// Highest sequence number seen plus one: what the flow must have sent by now, so
    /// `expected - received` is its loss by sequence (late arrivals are not counted twice).
    expected: Counter,
}

struct Counters {
    flows: Box<[Flow]>,
    received: Counter,
    bytes: Counter,
    expected: Counter,
    /// Datagrams too short to carry a header, or naming a flow the run does not have.
    foreign: Counter,
    truncated: Counter,
    echo_failed: Counter,
    recv_errors: Counter,
}

impl Counters {
    fn new(flows: usize) -> Counters {
        Counters {
            flows: (0..flows).map(|_| Flow::default()).collect(),
            received: Counter::default(),
            bytes: Counter::default(),
            expected: Counter::default(),
            foreign: Counter::default(),
            truncated: Counter::default(),
            echo_failed: Counter::default(),
            recv_errors: Counter::default(),
        }
    }

    fn count(&self, datagram: &[u8]) {
        self.bytes.add(datagram.len() as u64);
        let known = Header::read(datagram)
            .and_then(|header| Some((self.flows.get(header.flow as usize)?, header.seq)));
        let Some((flow, seq)) = known else {
            self.foreign.add(1);
            return;
        };
        self.received.add(1);
        flow.received.add(1);
        let before = flow.expected.get();
        flow.expected.raise_to(seq + 1);
        self.expected.add(flow.expected.get() - before);
    }

    fn snapshot(&self) -> Vec<(&'static str, String)> {
        [
            ("received", self.received.get()),
            ("bytes", self.bytes.get()),
            ("expected", self.expected.get()),
            ("foreign", self.foreign.get()),
            ("truncated", self.truncated.get()),
            ("echo_failed", self.echo_failed.get()),
            ("recv_errors", self.recv_errors.get()),
        ]
        .into_iter()
        .map(|(key, value)| (key, value.to_string()))
        .collect()
    }

    fn report(&self) -> serde_json::Value {
        let per_flow =
            |field: fn(&Flow) -> u64| -> Vec<u64> { self.flows.iter().map(field).collect() };
        serde_json::json!({
            "received": per_flow(|flow| flow.received.get()),
            "expected": per_flow(|flow| flow.expected.get()),
        })
    }
}

pub fn run(raw: &[String]) -> Result<(), String> {
    let mut args = Args::parse(raw, &["echo"])?;
    let flows: usize = args.required("flows")?;
    let echo = args.flag("echo");
    let batch_size: usize = args.get("batch", 64)?;
    let lifetime = Duration::from_secs(args.get("max-secs", 600)?);
    args.finish()?;

    let socket = UdpSocket::bind("127.0.0.1:0").map_err(|e| format!("backend bind: {e}"))?;
    let buffers = sys::set_socket_buffers(socket.as_raw_fd(), sys::SOCKET_BUFFER_BYTES)
        .map_err(|e| format!("backend socket buffers: {e}"))?;
    let addr = socket.local_addr().map_err(|e| e.to_string())?;

    let counters = Arc::new(Counters::new(flows));
    let control_counters = Arc::clone(&counters);
    control::serve_commands(lifetime, move |command| match command {
        "snap" => control::announce("snap", &control_counters.snapshot()),
        "report" => control::write_line(&format!("report {}", control_counters.report())),
        other => eprintln!("backend: unknown command `{other}`"),
    });
    control::announce(
        "ready",
        &[
            ("addr", addr.to_string()),
            ("rcvbuf", buffers.recv_bytes.to_string()),
            ("sndbuf", buffers.send_bytes.to_string()),
        ],
    );

    // Runs until the control thread ends the process (stdin closed, or the lifetime is up).
    let fd = socket.as_raw_fd();
    let mut batch = MmsgBatch::new(batch_size, DATAGRAM_BUFFER_BYTES);
    loop {
        let received = match batch.recv(fd, libc::MSG_WAITFORONE) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => {
                counters.recv_errors.add(1);
                // An error that repeats must not turn into a busy loop on the load's CPU.
                std::thread::sleep(Duration::from_millis(1));
                continue;
            }
        };
        for i in 0..received {
            if batch.truncated(i) {
                counters.truncated.add(1);
            }
            counters.count(batch.received(i));
        }
        if echo {
            batch.resend_received(received);
            let (_, failed) = batch.send_all(fd, received, Dest::Sources);
            counters.echo_failed.add(failed as u64);
        }
    }
}
