//! The floor role: the least work a userspace UDP forwarder can do on this kernel, so the table
//! shows how far ringgate and the baseline are from the limit, not only from each other.
//!
//! One direction, no sessions: `--workers` threads, each pinned to one CPU with its own
//! SO_REUSEPORT listening socket and its own upstream socket connected to the backend;
//! `recvmmsg` up to 64 datagrams, then `sendmmsg` them all upstream. Replies are never read, so
//! the floor runs no echo steps (the driver says so in the table).

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use nix::sys::socket::MsgFlags;

use crate::os::Batch;
use crate::proc::{self, RoleArgs};
use crate::sockets;

/// Same per-datagram buffer as ringgate's `--buffer-size 2048`.
const DATAGRAM_BUFFER_BYTES: usize = 2048;
const BATCH: usize = 64;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    role: RoleArgs,
    #[arg(long)]
    backend: SocketAddr,
    #[arg(long, default_value_t = 1)]
    workers: usize,
}

pub fn run(args: Args) -> Result<(), String> {
    args.role.enter()?;
    let (listeners, listen) = sockets::listen(args.role.listen_ip, args.workers)
        .map_err(|e| format!("floor listen: {e}"))?;
    proc::serve_commands(args.role.lifetime(), |command| {
        eprintln!("floor: unknown command `{command}`")
    });
    for (index, listener) in listeners.into_iter().enumerate() {
        let upstream =
            sockets::upstream(args.backend).map_err(|e| format!("floor upstream: {e}"))?;
        let role = args.role.clone();
        std::thread::spawn(move || {
            role.pin_thread(index);
            relay(&listener, &upstream)
        });
    }
    proc::say("ready", &crate::wire::Ready { listen });
    // The threads relay until the control thread ends the process (stdin closed, or lifetime).
    loop {
        std::thread::park();
    }
}

fn relay(listener: &UdpSocket, upstream: &UdpSocket) {
    let mut batch: Batch<()> = Batch::new(BATCH, DATAGRAM_BUFFER_BYTES);
    let mut recv_errors = 0u64;
    loop {
        match batch.recv(listener, MsgFlags::MSG_WAITFORONE) {
            // A failed send is a drop, which the backend's count shows; the floor goes on.
            Ok(received) => _ = batch.send_all(upstream, received),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                // Logged once: a line per error would cost more than the forwarding.
                if recv_errors == 0 {
                    eprintln!("floor: recvmmsg: {e} (further errors not logged)");
                }
                recv_errors += 1;
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }
}
