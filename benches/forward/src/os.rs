//! Every OS call the harness makes beyond std and its sockets (`sockets.rs`), each through a
//! safe wrapper (nix): CPU pinning, network namespaces (setns), dying with the driver, the open-file limit, the clock tick,
//! timer slack, and batched datagram I/O with `recvmmsg`/`sendmmsg`. Nothing here knows about
//! the benchmark. This is where `sys.rs` and its raw calls used to be; the
//! crate root now forbids them, so the wrappers' own invariants are all the harness relies on.

use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::AsRawFd;

use nix::sched::{CpuSet, sched_getaffinity, sched_setaffinity};
use nix::sys::socket::{MsgFlags, MultiHeaders, SockaddrLike, recvmmsg, sendmmsg};
use nix::unistd::Pid;

/// Pins the calling thread, and the threads and programs it starts afterwards, to `cpus`.
pub fn pin(cpus: &[usize]) -> io::Result<()> {
    let mut set = CpuSet::new();
    for &cpu in cpus {
        set.set(cpu)?;
    }
    Ok(sched_setaffinity(Pid::from_raw(0), &set)?)
}

/// Moves the calling thread into the named network namespace (`ip netns add NAME` made
/// `/run/netns/NAME`); sockets it opens from then on, and threads it starts, are there.
pub fn enter_netns(name: &str) -> io::Result<()> {
    let handle = std::fs::File::open(format!("/run/netns/{name}"))?;
    Ok(nix::sched::setns(
        handle,
        nix::sched::CloneFlags::CLONE_NEWNET,
    )?)
}

/// Runs `f` on a thread of its own inside the named network namespace, and returns what it
/// returns: the driver's way to reach an address there (ringgate's metrics) without moving.
pub fn in_netns<T: Send>(name: &str, f: impl FnOnce() -> T + Send) -> Result<T, String> {
    std::thread::scope(|scope| {
        let thread = scope.spawn(|| {
            enter_netns(name).map_err(|e| format!("entering network namespace {name}: {e}"))?;
            Ok(f())
        });
        thread
            .join()
            .map_err(|_| format!("a thread in {name} panicked"))?
    })
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
