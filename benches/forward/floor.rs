//! The floor role: the least work a userspace UDP forwarder can do on this kernel, so the table
//! shows how far ringgate and the baseline are from the limit rather than only from each other.
//!
//! One direction, no sessions: `recvmmsg` up to 64 datagrams from the listening socket, then
//! `sendmmsg` them all from one unconnected upstream socket to the backend. Replies are never
//! read, so the floor cannot run echo steps (the driver says so in the table).

use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::Duration;

use crate::args::Args;
use crate::control;
use crate::sys::{self, Dest, MmsgBatch, RawAddr};

/// Same per-datagram buffer as ringgate's `--buffer-size 2048`.
const DATAGRAM_BUFFER_BYTES: usize = 2048;

pub fn run(raw: &[String]) -> Result<(), String> {
    let mut args = Args::parse(raw, &[])?;
    let backend: SocketAddr = args.required("backend")?;
    let batch_size: usize = args.get("batch", 64)?;
    let lifetime = Duration::from_secs(args.get("max-secs", 600)?);
    args.finish()?;

    let loopback = if backend.is_ipv4() {
        "127.0.0.1:0"
    } else {
        "[::1]:0"
    };
    let listen = UdpSocket::bind(loopback).map_err(|e| format!("floor listen bind: {e}"))?;
    let upstream = UdpSocket::bind(loopback).map_err(|e| format!("floor upstream bind: {e}"))?;
    for socket in [&listen, &upstream] {
        sys::set_socket_buffers(socket.as_raw_fd(), sys::SOCKET_BUFFER_BYTES)
            .map_err(|e| format!("floor socket buffers: {e}"))?;
    }
    let listen_addr = listen.local_addr().map_err(|e| e.to_string())?;

    control::serve_commands(lifetime, |command| {
        eprintln!("floor: unknown command `{command}`");
    });
    control::announce("ready", &[("listen", listen_addr.to_string())]);

    // Runs until the control thread ends the process (stdin closed, or the lifetime is up).
    let backend = RawAddr::new(backend);
    let mut batch = MmsgBatch::new(batch_size, DATAGRAM_BUFFER_BYTES);
    let mut recv_errors = 0u64;
    loop {
        let received = match batch.recv(listen.as_raw_fd(), libc::MSG_WAITFORONE) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                // Logged once: a line per error would cost more than the forwarding.
                if recv_errors == 0 {
                    eprintln!("floor: recvmmsg: {e} (further errors not logged)");
                }
                recv_errors += 1;
                std::thread::sleep(Duration::from_millis(1));
                continue;
            }
        };
        batch.resend_received(received);
        // A failed send is a drop, which the backend's count shows; the floor does not stop.
        batch.send_all(upstream.as_raw_fd(), received, Dest::To(&backend));
    }
}
