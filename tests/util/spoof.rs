//! Datagrams from sources the test does not own, sent through a raw IPv4 socket with a header
//! the test writes (`IP_HDRINCL`). Needs root (CAP_NET_RAW); on loopback the kernel delivers
//! whatever source the header names, which is what an attacker's spoofed datagram looks like
//! to ringgate. Packets are built by `etherparse`, not by hand.

use std::net::{SocketAddr, SocketAddrV4};

use socket2::{Domain, Protocol, Socket, Type};

pub struct Spoofer {
    socket: Socket,
}

/// Whether this process may open raw sockets; tests that need one skip, saying why, if not.
pub fn can_spoof(test: &str) -> bool {
    match Spoofer::new() {
        Some(_) => true,
        None => {
            eprintln!("{test}: skipped: spoofed sources need a raw socket (run as root; CI does)");
            false
        }
    }
}

impl Spoofer {
    pub fn new() -> Option<Spoofer> {
        let socket = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::UDP)).ok()?;
        socket.set_header_included_v4(true).ok()?;
        Some(Spoofer { socket })
    }

    /// Sends `payload` to `to` as if from `from` (both IPv4).
    pub fn send(&self, from: SocketAddr, to: SocketAddr, payload: &[u8]) {
        let (SocketAddr::V4(from), SocketAddr::V4(to)) = (from, to) else {
            panic!("raw spoofing is IPv4 only: {from} -> {to}");
        };
        let packet = packet(from, to, payload);
        self.socket
            .send_to(&packet, &SocketAddr::V4(to).into())
            .unwrap_or_else(|e| panic!("raw send from {from}: {e}"));
    }
}

/// An IPv4 packet with a UDP datagram whose checksum is 0 ("none", legal over IPv4): the
/// kernel fills in a source of 0.0.0.0 with the local address, which would invalidate a
/// checksum computed over the 0.0.0.0 the test wrote.
fn packet(from: SocketAddrV4, to: SocketAddrV4, payload: &[u8]) -> Vec<u8> {
    let builder = etherparse::PacketBuilder::ipv4(from.ip().octets(), to.ip().octets(), 64)
        .udp(from.port(), to.port());
    let mut packet = Vec::with_capacity(builder.size(payload.len()));
    builder.write(&mut packet, payload).unwrap();
    let ip = etherparse::Ipv4HeaderSlice::from_slice(&packet).unwrap();
    let checksum = ip.slice().len() + 6;
    packet[checksum..checksum + 2].fill(0);
    packet
}
