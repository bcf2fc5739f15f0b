//! Every socket the harness opens, made in one place so that every contestant and every role
//! gets the same: 8 MiB buffers on each UDP socket, all on loopback. A role's listening side
//! (the backend's, the baseline's and the floor's) is `listen`, a forwarder's connection to the
//! backend (the baseline's and the floor's) is `upstream`, the generator's flows are `flow`, the
//! flood's forged packets go out through `raw_loopback`, and ringgate gets its ports from
//! `free_port`. Safe wrappers only (socket2, nix).

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, TcpListener, UdpSocket};

use nix::sys::socket::{setsockopt, sockopt};
use socket2::{Domain, Protocol, Socket, Type};

use crate::loopback;

/// The issue fixes 8 MiB receive and send buffers for every forwarder and for the load, so no
/// contestant wins or loses on buffer sizing.
pub const SOCKET_BUFFER_BYTES: usize = 8 << 20;

/// Where every role listens by default: a port of its own on 127.0.0.1 (the XDP testbed names
/// another address of a namespace's with the roles' `--listen-ip`).
const LISTEN_ADDR: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0);

/// IPPROTO_RAW (255, from <netinet/in.h>): a raw socket that sends IPv4 packets whole and,
/// as no packet carries protocol 255, receives none, so the host's UDP traffic is not copied
/// into it as it would be into an IPPROTO_UDP raw socket.
const IPPROTO_RAW: i32 = 255;

/// A UDP socket of `addr`'s family with 8 MiB buffers: SO_RCVBUFFORCE/SO_SNDBUFFORCE where we
/// have CAP_NET_ADMIN, so net.core.rmem_max cannot silently cap them, else the plain options.
fn udp_socket(addr: SocketAddr) -> io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if setsockopt(&socket, sockopt::RcvBufForce, &SOCKET_BUFFER_BYTES).is_err() {
        socket.set_recv_buffer_size(SOCKET_BUFFER_BYTES)?;
    }
    force_send_buffer(&socket)?;
    Ok(socket)
}

/// SO_SNDBUFFORCE where we may, else SO_SNDBUF, to `SOCKET_BUFFER_BYTES`.
fn force_send_buffer(socket: &Socket) -> io::Result<()> {
    if setsockopt(socket, sockopt::SndBufForce, &SOCKET_BUFFER_BYTES).is_err() {
        socket.set_send_buffer_size(SOCKET_BUFFER_BYTES)?;
    }
    Ok(())
}

/// A role's listening side: `count` sockets (at least one) sharing a free port of `ip`
/// through SO_REUSEPORT (the kernel spreads flows over them by hash), and that address. The
/// first asks the kernel for the port and the others join it.
pub fn listen(ip: IpAddr, count: usize) -> io::Result<(Vec<UdpSocket>, SocketAddr)> {
    let mut addr = SocketAddr::new(ip, 0);
    let mut sockets = Vec::with_capacity(count.max(1));
    for _ in 0..count.max(1) {
        let socket = udp_socket(addr)?;
        socket.set_reuse_port(true)?;
        socket.bind(&addr.into())?;
        let socket = UdpSocket::from(socket);
        addr = socket.local_addr()?;
        sockets.push(socket);
    }
    Ok((sockets, addr))
}

/// A socket from an ephemeral port of `local` connected to `target`.
fn connected(local: IpAddr, target: SocketAddr) -> io::Result<UdpSocket> {
    let socket = udp_socket(target)?;
    socket.bind(&SocketAddr::new(local, 0).into())?;
    socket.connect(&target.into())?;
    Ok(socket.into())
}

/// A forwarder's socket to `backend`: from an ephemeral port of the loopback address of the
/// backend's family, connected to it; to a backend off loopback (the XDP testbed's), from the
/// address the kernel's route picks.
pub fn upstream(backend: SocketAddr) -> io::Result<UdpSocket> {
    let local: IpAddr = match backend {
        _ if !backend.ip().is_loopback() => Ipv4Addr::UNSPECIFIED.into(),
        SocketAddr::V4(_) => Ipv4Addr::LOCALHOST.into(),
        SocketAddr::V6(_) => Ipv6Addr::LOCALHOST.into(),
    };
    connected(local, backend)
}

/// Flow `flow` of the generator: from its own loopback address (`loopback::flow_source`),
/// connected to `target`, as one player's client socket.
pub fn flow(flow: usize, target: SocketAddr) -> Result<UdpSocket, String> {
    let local = loopback::flow_source(flow, target)?;
    connected(local, target).map_err(|e| format!("flow socket from {local} to {target}: {e}"))
}

/// Whether this process may open a raw socket (root, or CAP_NET_RAW).
pub fn raw_sockets_allowed() -> io::Result<()> {
    Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::from(IPPROTO_RAW))).map(drop)
}

/// A send-only raw IPv4 socket for forged packets to `target`: IP_HDRINCL (the caller writes
/// the IPv4 header, source included), SO_BINDTODEVICE `lo` (nothing it sends can leave through
/// another interface, whatever a header says) and connected to `target`, so `sendmmsg` needs
/// no addresses and the kernel routes every packet to it. The caller checks that `target` is
/// loopback and writes it as every packet's destination.
pub fn raw_loopback(target: SocketAddrV4) -> io::Result<Socket> {
    let socket = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::from(IPPROTO_RAW)))?;
    socket.set_header_included_v4(true)?;
    socket.bind_device(Some(b"lo"))?;
    force_send_buffer(&socket)?;
    socket.connect(&SocketAddr::V4(target).into())?;
    Ok(socket)
}

/// A free UDP (or TCP) port of 127.0.0.1 from the kernel, released for ringgate to take; nobody
/// else on loopback grabs it in between during a bench run.
pub fn free_port(udp: bool) -> Result<SocketAddr, String> {
    let local = if udp {
        UdpSocket::bind(LISTEN_ADDR).and_then(|socket| socket.local_addr())
    } else {
        TcpListener::bind(LISTEN_ADDR).and_then(|listener| listener.local_addr())
    };
    local.map_err(|e| format!("free port: {e}"))
}
