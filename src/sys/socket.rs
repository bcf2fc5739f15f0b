//! UDP sockets: the worker's reuseport listener and each session's connected upstream socket.

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;

use socket2::{Domain, Protocol, Socket, Type};

use super::cvt;

/// How socket buffer sizes are applied, decided once per worker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BufferSize {
    pub bytes: usize,
    /// Whether `SO_RCVBUFFORCE`/`SO_SNDBUFFORCE` (CAP_NET_ADMIN) may be used to exceed
    /// `net.core.rmem_max`/`wmem_max`.
    pub force: bool,
}

fn udp(domain_of: SocketAddr) -> io::Result<Socket> {
    let socket = Socket::new(
        Domain::for_address(domain_of),
        Type::DGRAM.nonblocking().cloexec(),
        Some(Protocol::UDP),
    )?;
    Ok(socket)
}

fn set_force(socket: &Socket, option: libc::c_int, bytes: usize) -> io::Result<()> {
    let value = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    set_int(socket, libc::SOL_SOCKET, option, value)
}

/// Applies `size` to both directions. With `force` it tries the FORCE options first and
/// reports whether they were permitted, so the caller can stop trying.
pub fn set_buffers(socket: &Socket, size: BufferSize) -> io::Result<bool> {
    if size.force
        && set_force(socket, libc::SO_RCVBUFFORCE, size.bytes).is_ok()
        && set_force(socket, libc::SO_SNDBUFFORCE, size.bytes).is_ok()
    {
        return Ok(true);
    }
    socket.set_recv_buffer_size(size.bytes)?;
    socket.set_send_buffer_size(size.bytes)?;
    Ok(false)
}

/// A listening socket bound to `addr` in the reuseport group every worker joins. On the IPv6
/// wildcard it is dual-stack: IPv4 clients arrive as `::ffff:a.b.c.d`.
pub fn listener(addr: SocketAddr, size: BufferSize) -> io::Result<(Socket, bool)> {
    let socket = udp(addr)?;
    dual_stack(&socket, addr)?;
    if addr.ip().is_unspecified() {
        recv_pktinfo(&socket, addr.is_ipv6())?;
    }
    socket.set_reuse_port(true)?;
    let forced = set_buffers(&socket, size)?;
    socket.bind(&addr.into())?;
    Ok((socket, forced))
}

/// Asks for each datagram's destination address: `IP_PKTINFO` on an IPv4 socket,
/// `IPV6_RECVPKTINFO` on an IPv6 one (which reports an IPv4 client's destination of a
/// dual-stack socket as a mapped address; asking for both would deliver both, and overflow the
/// control field a receive reserves).
fn recv_pktinfo(socket: &Socket, v6: bool) -> io::Result<()> {
    if v6 {
        set_int(socket, libc::IPPROTO_IPV6, libc::IPV6_RECVPKTINFO, 1)
    } else {
        set_int(socket, libc::IPPROTO_IP, libc::IP_PKTINFO, 1)
    }
}

fn set_int(
    socket: &Socket,
    level: libc::c_int,
    option: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: the option value is a c_int that lives across the call, with its exact size.
    cvt(unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            option,
            std::ptr::from_ref(&value).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    })
    .map(drop)
}

fn dual_stack(socket: &Socket, addr: SocketAddr) -> io::Result<()> {
    if addr.is_ipv6() && addr.ip().is_unspecified() {
        socket.set_only_v6(false)?;
    }
    Ok(())
}

/// Binds `addr` without `SO_REUSEPORT` and lets go at once: fails with `EADDRINUSE` if any
/// other socket holds the address (another process, or another ringgate's reuseport group,
/// which a reuseport bind would silently join and split the traffic with).
pub fn probe_bind(addr: SocketAddr) -> io::Result<()> {
    let socket = udp(addr)?;
    dual_stack(&socket, addr)?;
    socket.bind(&addr.into())
}

/// A socket connected to `backend` from a fresh ephemeral port; returns it with that local
/// address (the source the backend sees).
pub fn upstream(backend: SocketAddr, size: BufferSize) -> io::Result<(Socket, SocketAddr)> {
    let socket = udp(backend)?;
    set_buffers(&socket, size)?;
    socket.connect(&backend.into())?;
    let local = socket
        .local_addr()?
        .as_socket()
        .ok_or_else(|| io::Error::other("upstream socket has no IP address"))?;
    Ok((socket, local))
}

/// The receive buffer the kernel actually granted (it doubles the request for bookkeeping).
pub fn recv_buffer(socket: &Socket) -> io::Result<usize> {
    socket.recv_buffer_size()
}

/// A non-blocking TCP socket for a connection to `to` (Redis), with keepalive probes and a user
/// timeout so a peer that vanished without a reset is noticed within about ten seconds.
pub fn tcp_client(to: SocketAddr) -> io::Result<Socket> {
    let socket = Socket::new(
        Domain::for_address(to),
        Type::STREAM.nonblocking().cloexec(),
        Some(Protocol::TCP),
    )?;
    socket.set_tcp_nodelay(true)?;
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(std::time::Duration::from_secs(5))
        .with_interval(std::time::Duration::from_secs(1))
        .with_retries(5);
    socket.set_tcp_keepalive(&keepalive)?;
    // Keepalive does not probe while sent data is unacknowledged (a blackholed peer); this
    // bounds that case to 10 s instead of tcp_retries2's many minutes.
    socket.set_tcp_user_timeout(Some(std::time::Duration::from_secs(10)))?;
    Ok(socket)
}
