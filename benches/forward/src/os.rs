//! Every OS call the harness makes beyond std, each through a safe wrapper (socket2, nix):
//! sockets with the fixed buffer size, the flood's raw loopback socket, CPU pinning, dying with the driver, the open-file limit,
//! the clock tick, timer slack, and batched datagram I/O with `recvmmsg`/`sendmmsg`. Nothing
//! here knows about the benchmark. This is where `sys.rs` and its raw calls used to be; the
//! crate root now forbids them, so the wrappers' own invariants are all the harness relies on.

use std::io::{self, IoSlice, IoSliceMut};
use std::net::{IpAddr, SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;

use nix::sched::{CpuSet, sched_getaffinity, sched_setaffinity};
use nix::sys::socket::{
    MsgFlags, MultiHeaders, SockaddrLike, recvmmsg, sendmmsg, setsockopt, sockopt,
};
use nix::unistd::Pid;
use socket2::{Domain, Protocol, Socket, Type};

/// The issue fixes 8 MiB receive and send buffers for every forwarder and for the load, so no
/// contestant wins or loses on buffer sizing.
pub const SOCKET_BUFFER_BYTES: usize = 8 << 20;

/// A UDP socket of `addr`'s family with 8 MiB buffers: SO_RCVBUFFORCE/SO_SNDBUFFORCE where we
/// have CAP_NET_ADMIN, so net.core.rmem_max cannot silently cap them, else the plain options.
pub fn udp_socket(addr: SocketAddr) -> io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if setsockopt(&socket, sockopt::RcvBufForce, &SOCKET_BUFFER_BYTES).is_err() {
        socket.set_recv_buffer_size(SOCKET_BUFFER_BYTES)?;
    }
    if setsockopt(&socket, sockopt::SndBufForce, &SOCKET_BUFFER_BYTES).is_err() {
        socket.set_send_buffer_size(SOCKET_BUFFER_BYTES)?;
    }
    Ok(socket)
}

/// `count` sockets sharing `addr` through SO_REUSEPORT (the kernel spreads flows over them by
/// hash); with port 0 the first asks for a free port and the others join it.
pub fn bind_reuseport(mut addr: SocketAddr, count: usize) -> io::Result<Vec<UdpSocket>> {
    let mut sockets = Vec::with_capacity(count);
    for _ in 0..count {
        let socket = udp_socket(addr)?;
        socket.set_reuse_port(true)?;
        socket.bind(&addr.into())?;
        let socket = UdpSocket::from(socket);
        addr = socket.local_addr()?;
        sockets.push(socket);
    }
    Ok(sockets)
}

/// A socket from an ephemeral port of `local` connected to `target`: one flow of the
/// generator (each from its own loopback address), or the floor's upstream socket.
pub fn connected_socket(local: IpAddr, target: SocketAddr) -> io::Result<UdpSocket> {
    let socket = udp_socket(target)?;
    socket.bind(&SocketAddr::new(local, 0).into())?;
    socket.connect(&target.into())?;
    Ok(socket.into())
}

/// IPPROTO_RAW (255, from <netinet/in.h>): a raw socket that sends IPv4 packets whole and,
/// as no packet carries protocol 255, receives none, so the host's UDP traffic is not copied
/// into it as it would be into an IPPROTO_UDP raw socket.
const IPPROTO_RAW: i32 = 255;

/// Whether this process may open a raw socket (root, or CAP_NET_RAW).
pub fn raw_sockets_allowed() -> io::Result<()> {
    Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::from(IPPROTO_RAW))).map(drop)
}

/// A send-only raw IPv4 socket for forged packets to `target`: IP_HDRINCL (the caller writes
/// the IPv4 header, source included), SO_BINDTODEVICE `lo` (nothing it sends can leave through
/// another interface, whatever a header says) and connected to `target`, so `sendmmsg` needs
/// no addresses and the kernel routes every packet to it. The caller checks that `target` is
/// loopback and writes it as every packet's destination.
pub fn raw_loopback_socket(target: SocketAddrV4) -> io::Result<Socket> {
    let socket = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::from(IPPROTO_RAW)))?;
    socket.set_header_included_v4(true)?;
    socket.bind_device(Some(b"lo"))?;
    if setsockopt(&socket, sockopt::SndBufForce, &SOCKET_BUFFER_BYTES).is_err() {
        socket.set_send_buffer_size(SOCKET_BUFFER_BYTES)?;
    }
    socket.connect(&SocketAddr::V4(target).into())?;
    Ok(socket)
}

/// Pins the calling thread, and the threads and programs it starts afterwards, to `cpus`.
pub fn pin(cpus: &[usize]) -> io::Result<()> {
    let mut set = CpuSet::new();
    for &cpu in cpus {
        set.set(cpu)?;
    }
    Ok(sched_setaffinity(Pid::from_raw(0), &set)?)
}

/// The CPUs this process may run on.
pub fn allowed_cpus() -> io::Result<Vec<usize>> {
    let set = sched_getaffinity(Pid::from_raw(0))?;
    Ok((0..CpuSet::count())
        .filter(|&cpu| set.is_set(cpu).unwrap_or(false))
        .collect())
}

/// Has the kernel SIGKILL this process when the driver thread that started it exits, so no
/// child outlives a driver killed before its Drop guards ran. Survives `exec`.
pub fn die_with_parent() -> io::Result<()> {
    Ok(nix::sys::prctl::set_pdeathsig(
        nix::sys::signal::Signal::SIGKILL,
    )?)
}

/// Cuts the calling thread's timer slack to 1 ns: the default 50 us would stretch every pacing
/// sleep of the generator (tens of microseconds at 100k pps) by up to 50 us.
pub fn tighten_timer_slack() -> io::Result<()> {
    Ok(nix::sys::prctl::set_timerslack(1)?)
}

/// Raises the soft open-file limit to the hard one: 10 000 flows need 10 000 sockets in the
/// generator and as many upstream sockets in each forwarder. Children inherit it.
pub fn raise_open_file_limit() -> io::Result<u64> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard)?;
    Ok(hard)
}

/// Kernel clock ticks per second, the unit of utime/stime in /proc/<pid>/stat.
pub fn clock_ticks_per_second() -> u64 {
    use nix::unistd::{SysconfVar, sysconf};
    // POSIX guarantees a positive value; 100 is what every Linux reports.
    match sysconf(SysconfVar::CLK_TCK) {
        Ok(Some(ticks)) if ticks > 0 => ticks as u64,
        _ => 100,
    }
}

/// Up to `capacity` datagrams for one `recvmmsg` or one `sendmmsg` on a connected socket.
/// `S` is what a receive records about each sender: `()` for nothing, `SockaddrStorage` for
/// its address. Three things about nix's wrappers shape this:
/// * receives and sends have separate headers, because `recvmmsg` reuses the address pointers
///   that `preallocate` set up, which a send would have overwritten;
/// * `recvmmsg` leaves each address length at what the last receive wrote, so a socket must
///   hear from one address family (ours hear only IPv4 loopback);
/// * sends go to connected sockets only (the flood's raw socket is connected too): `sendmmsg`
///   reports how many went out through an iterator that reads every message's address slot,
///   which a send never fills, and only a zero-sized `()` slot is sound to read unfilled.
pub struct Batch<S: SockaddrLike + Copy> {
    buf_bytes: usize,
    bufs: Vec<u8>,
    lens: Vec<usize>,
    truncated: Vec<bool>,
    sources: Vec<Option<S>>,
    recv_headers: MultiHeaders<S>,
    send_headers: MultiHeaders<()>,
    no_addresses: Vec<Option<()>>,
}

impl<S: SockaddrLike + Copy> Batch<S> {
    pub fn new(capacity: usize, buf_bytes: usize) -> Batch<S> {
        assert!(
            capacity > 0 && buf_bytes > 0,
            "an empty batch carries nothing"
        );
        Batch {
            buf_bytes,
            bufs: vec![0; capacity * buf_bytes],
            lens: vec![0; capacity],
            truncated: vec![false; capacity],
            sources: vec![None; capacity],
            recv_headers: MultiHeaders::preallocate(capacity, None),
            send_headers: MultiHeaders::preallocate(capacity, None),
            no_addresses: vec![None; capacity],
        }
    }

    pub fn capacity(&self) -> usize {
        self.lens.len()
    }

    /// Receives up to `capacity` datagrams: with MSG_WAITFORONE it blocks for the first one
    /// only, with MSG_DONTWAIT never.
    pub fn recv(&mut self, socket: &impl AsRawFd, flags: MsgFlags) -> io::Result<usize> {
        let mut iovs: Vec<[IoSliceMut; 1]> = self
            .bufs
            .chunks_mut(self.buf_bytes)
            .map(|buf| [IoSliceMut::new(buf)])
            .collect();
        let results = recvmmsg(
            socket.as_raw_fd(),
            &mut self.recv_headers,
            iovs.iter_mut(),
            flags,
            None,
        )?;
        let mut count = 0;
        for (i, message) in results.enumerate() {
            self.lens[i] = message.bytes.min(self.buf_bytes);
            self.truncated[i] = message.flags.contains(MsgFlags::MSG_TRUNC);
            self.sources[i] = message.address;
            count = i + 1;
        }
        Ok(count)
    }

    /// Received datagram `i` (cut to its buffer if it was truncated).
    pub fn received(&self, i: usize) -> &[u8] {
        &self.bufs[i * self.buf_bytes..][..self.lens[i]]
    }

    pub fn truncated(&self, i: usize) -> bool {
        self.truncated[i]
    }

    pub fn source(&self, i: usize) -> Option<S> {
        self.sources[i]
    }

    /// Buffer `i`, `len` bytes long, for a datagram to send; received ones resend as they are.
    pub fn fill(&mut self, i: usize, len: usize) -> &mut [u8] {
        self.lens[i] = len.min(self.buf_bytes);
        &mut self.bufs[i * self.buf_bytes..][..self.lens[i]]
    }

    /// Sends datagrams `0..count` on a connected socket, retrying after a partial send. Returns
    /// (sent, failed): a per-datagram error drops the rest of the batch, because a benchmark
    /// counts its losses, it does not die of them.
    pub fn send_all(&mut self, socket: &impl AsRawFd, count: usize) -> (usize, usize) {
        let mut sent = 0;
        // Each pass sends at least one datagram or gives up, so `count` passes are enough.
        for _ in 0..count {
            if sent == count {
                break;
            }
            let iovs: Vec<[IoSlice; 1]> = (sent..count)
                .map(|i| {
                    [IoSlice::new(
                        &self.bufs[i * self.buf_bytes..][..self.lens[i]],
                    )]
                })
                .collect();
            let addresses = &self.no_addresses[sent..count];
            match sendmmsg(
                socket.as_raw_fd(),
                &mut self.send_headers,
                &iovs,
                addresses,
                [],
                MsgFlags::empty(),
            ) {
                Ok(results) => match results.count() {
                    0 => break,
                    n => sent += n,
                },
                Err(_) => break,
            }
        }
        (sent, count - sent)
    }
}
