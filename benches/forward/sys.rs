//! The harness's wall around the OS. Every raw Linux call that the load generator, the backend,
//! the floor forwarder and the driver make goes through this module, so each `unsafe` block sits
//! next to the invariant that makes it sound. Nothing here knows about the benchmark itself.
//!
//! The one type with internal pointers, [`MmsgBatch`], keeps every buffer the kernel is pointed
//! at in boxed slices that are allocated once and never resized, so moving the batch never
//! moves the memory the headers point into.

use std::io;
use std::mem::{size_of, zeroed};
use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::time::Duration;

/// The issue fixes 8 MiB receive and send buffers for every forwarder and for the load, so no
/// contestant wins or loses on buffer sizing.
pub const SOCKET_BUFFER_BYTES: usize = 8 << 20;

/// Largest CPU number `sched_setaffinity` accepts through a `cpu_set_t` (glibc's `CPU_SETSIZE`).
pub const CPU_SET_CAPACITY: usize = libc::CPU_SETSIZE as usize;

fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Nanoseconds on CLOCK_MONOTONIC: one clock shared by every process on the machine, so a
/// timestamp written by the generator means the same thing wherever it is read.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec and CLOCK_MONOTONIC exists on every Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Kernel clock ticks per second, the unit of utime/stime in /proc/<pid>/stat.
pub fn clock_ticks_per_second() -> u64 {
    // SAFETY: sysconf only reads a constant of the running system.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    // POSIX guarantees a positive value; 100 is what every Linux reports if it ever did not.
    if ticks > 0 { ticks as u64 } else { 100 }
}

/// Pins the calling thread, and every thread it creates or execs into afterwards, to `cpus`.
///
/// Allocation-free and async-signal-safe, so it may run in a `pre_exec` hook between fork and
/// exec. Callers validate that every CPU is below [`CPU_SET_CAPACITY`].
pub fn pin_to_cpus(cpus: &[usize]) -> io::Result<()> {
    // SAFETY: cpu_set_t is a plain bit array; all-zero is the valid empty set.
    let mut set: libc::cpu_set_t = unsafe { zeroed() };
    for &cpu in cpus {
        if cpu >= CPU_SET_CAPACITY {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        // SAFETY: `cpu` is below CPU_SETSIZE, so the bit index is inside `set`.
        unsafe { libc::CPU_SET(cpu, &mut set) };
    }
    // SAFETY: pid 0 names the calling thread; `set` is a live cpu_set_t of the size we pass.
    check(unsafe { libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set) })?;
    Ok(())
}

/// Asks the kernel to SIGKILL this process when the thread that forked it exits, so a child
/// never outlives a driver that was killed before its Drop guards could run.
/// Async-signal-safe: for use in a `pre_exec` hook.
pub fn die_with_parent() -> io::Result<()> {
    // SAFETY: PR_SET_PDEATHSIG takes a signal number and reads no memory.
    check(unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) })?;
    Ok(())
}

/// Sends `signal` to every process in the group that process `pgid` leads.
pub fn signal_group(pgid: u32, signal: libc::c_int) -> io::Result<()> {
    // SAFETY: kill reads no memory; a negative pid names the process group.
    check(unsafe { libc::kill(-(pgid as libc::pid_t), signal) })?;
    Ok(())
}

/// Cuts the calling thread's timer slack to 1 ns. The default 50 us slack would stretch every
/// pacing sleep of the generator (tens of microseconds at 100k pps) by up to 50 us.
pub fn tighten_timer_slack() -> io::Result<()> {
    // SAFETY: PR_SET_TIMERSLACK takes a duration in nanoseconds and reads no memory.
    check(unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong) })?;
    Ok(())
}

/// Sends `signal` to process `pid`.
pub fn send_signal(pid: u32, signal: libc::c_int) -> io::Result<()> {
    // SAFETY: kill reads no memory; a stale pid at worst yields ESRCH, which we return.
    check(unsafe { libc::kill(pid as libc::pid_t, signal) })?;
    Ok(())
}

/// Raises the soft open-file limit to the hard limit: 10 000 flows need 10 000 sockets in the
/// generator and as many upstream sockets in each forwarder. Children inherit the raised limit.
pub fn raise_open_file_limit() -> io::Result<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid, writable rlimit.
    check(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) })?;
    limit.rlim_cur = limit.rlim_max;
    // SAFETY: `limit` is a valid rlimit whose soft value does not exceed its hard value.
    check(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) })?;
    Ok(limit.rlim_cur)
}

fn set_int_option(fd: RawFd, name: libc::c_int, value: libc::c_int) -> io::Result<()> {
    // SAFETY: the option value is a live c_int and we pass its exact size.
    check(unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            name,
            (&value as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    })?;
    Ok(())
}

fn get_int_option(fd: RawFd, name: libc::c_int) -> io::Result<usize> {
    let mut value: libc::c_int = 0;
    let mut len = size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `value` and `len` are live and writable, and `len` holds the size of `value`.
    check(unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            name,
            (&mut value as *mut libc::c_int).cast(),
            &mut len,
        )
    })?;
    Ok(value as usize)
}

/// Receive and send buffer sizes as the kernel reports them (it doubles the requested value to
/// account for its bookkeeping).
#[derive(Clone, Copy, Debug)]
pub struct BufferSizes {
    pub recv_bytes: usize,
    pub send_bytes: usize,
}

/// Sets SO_RCVBUF and SO_SNDBUF to `bytes`, using the FORCE variants so net.core.rmem_max and
/// wmem_max do not silently cap them, and the plain options when we lack CAP_NET_ADMIN.
pub fn set_socket_buffers(fd: RawFd, bytes: usize) -> io::Result<BufferSizes> {
    let value = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    for (force, plain) in [
        (libc::SO_RCVBUFFORCE, libc::SO_RCVBUF),
        (libc::SO_SNDBUFFORCE, libc::SO_SNDBUF),
    ] {
        if set_int_option(fd, force, value).is_err() {
            set_int_option(fd, plain, value)?;
        }
    }
    Ok(BufferSizes {
        recv_bytes: get_int_option(fd, libc::SO_RCVBUF)?,
        send_bytes: get_int_option(fd, libc::SO_SNDBUF)?,
    })
}

/// A socket address in the kernel's own layout, ready to hang off a `msghdr`.
pub struct RawAddr {
    storage: libc::sockaddr_storage,
    len: libc::socklen_t,
}

impl RawAddr {
    pub fn new(addr: SocketAddr) -> RawAddr {
        let converted = socket2::SockAddr::from(addr);
        // SAFETY: sockaddr_storage is plain old data; all-zero is a valid (AF_UNSPEC) value.
        let mut storage: libc::sockaddr_storage = unsafe { zeroed() };
        let len = converted.len() as usize;
        // SAFETY: `converted` holds `len` initialised bytes, `len` never exceeds the size of a
        // sockaddr_storage, and the two values do not overlap.
        unsafe {
            std::ptr::copy_nonoverlapping(
                converted.as_ptr().cast::<u8>(),
                (&mut storage as *mut libc::sockaddr_storage).cast::<u8>(),
                len.min(size_of::<libc::sockaddr_storage>()),
            )
        };
        RawAddr {
            storage,
            len: converted.len(),
        }
    }
}

/// Where `MmsgBatch::send` addresses its datagrams.
#[derive(Clone, Copy)]
pub enum Dest<'a> {
    /// The socket is connected: no address per message.
    Connected,
    /// Back to whoever sent each message, as `recv` recorded it (an echo).
    Sources,
    /// Every message to one address (an unconnected upstream socket).
    To(&'a RawAddr),
}

/// Up to `capacity` datagrams for one `recvmmsg` or `sendmmsg` call.
pub struct MmsgBatch {
    buf_size: usize,
    // `capacity` slots of `buf_size` bytes; iovec `i` points at slot `i`.
    bufs: Box<[u8]>,
    iovecs: Box<[libc::iovec]>,
    names: Box<[libc::sockaddr_storage]>,
    headers: Box<[libc::mmsghdr]>,
}

impl MmsgBatch {
    pub fn new(capacity: usize, buf_size: usize) -> MmsgBatch {
        assert!(
            capacity > 0 && buf_size > 0,
            "an empty batch cannot carry a datagram"
        );
        let empty_iovec = libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: buf_size,
        };
        // SAFETY: sockaddr_storage is plain old data; all-zero is a valid AF_UNSPEC address.
        let empty_name: libc::sockaddr_storage = unsafe { zeroed() };
        // SAFETY: mmsghdr is plain old data; all-zero is a valid empty header (null pointers,
        // zero lengths). `link` fills in the pointers before any syscall sees it.
        let empty_header: libc::mmsghdr = unsafe { zeroed() };
        MmsgBatch {
            buf_size,
            bufs: vec![0u8; capacity * buf_size].into_boxed_slice(),
            iovecs: vec![empty_iovec; capacity].into_boxed_slice(),
            names: vec![empty_name; capacity].into_boxed_slice(),
            headers: vec![empty_header; capacity].into_boxed_slice(),
        }
    }

    /// Points headers `first..end` at their own iovec, buffer slot and address storage.
    /// Runs right before each syscall, after every other write to the iovecs, from pointers
    /// taken afresh: no pointer the kernel follows is older than the last Rust borrow of the
    /// memory behind it.
    fn link(&mut self, first: usize, end: usize) {
        // `wrapping_add` keeps this free of unsafe; `i < capacity`, so every pointer stays
        // inside its own allocation.
        let bufs = self.bufs.as_mut_ptr();
        for (i, iovec) in self.iovecs.iter_mut().enumerate().take(end).skip(first) {
            iovec.iov_base = bufs.wrapping_add(i * self.buf_size).cast();
        }
        let iovecs = self.iovecs.as_mut_ptr();
        let names = self.names.as_mut_ptr();
        for (i, header) in self.headers.iter_mut().enumerate().take(end).skip(first) {
            header.msg_hdr.msg_iov = iovecs.wrapping_add(i);
            header.msg_hdr.msg_iovlen = 1;
            header.msg_hdr.msg_name = names.wrapping_add(i).cast();
        }
    }

    pub fn capacity(&self) -> usize {
        self.headers.len()
    }

    /// Receives up to `capacity` datagrams. With `MSG_WAITFORONE` it blocks for the first one
    /// only; with `MSG_DONTWAIT` it never blocks.
    pub fn recv(&mut self, fd: RawFd, flags: libc::c_int) -> io::Result<usize> {
        for (header, iovec) in self.headers.iter_mut().zip(self.iovecs.iter_mut()) {
            iovec.iov_len = self.buf_size;
            header.msg_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            header.msg_hdr.msg_flags = 0;
            header.msg_len = 0;
        }
        self.link(0, self.headers.len());
        // SAFETY: `link` just pointed every header at its own iovec and sockaddr_storage, and
        // every iovec at its own `buf_size` bytes of `bufs`; all of them live in `self`, which
        // is borrowed mutably for the whole call. `vlen` is the header count. A null timeout means "no timeout".
        let received = check(unsafe {
            libc::recvmmsg(
                fd,
                self.headers.as_mut_ptr(),
                self.headers.len() as libc::c_uint,
                flags,
                std::ptr::null_mut(),
            )
        })?;
        Ok(received as usize)
    }

    /// The bytes of received datagram `i` (cut to the buffer if it was truncated).
    pub fn received(&self, i: usize) -> &[u8] {
        let len = (self.headers[i].msg_len as usize).min(self.buf_size);
        &self.bufs[i * self.buf_size..i * self.buf_size + len]
    }

    /// Whether received datagram `i` was larger than its buffer.
    pub fn truncated(&self, i: usize) -> bool {
        self.headers[i].msg_hdr.msg_flags & libc::MSG_TRUNC != 0
    }

    /// Makes the first `count` messages resend exactly what was received into them.
    pub fn resend_received(&mut self, count: usize) {
        for i in 0..count {
            self.iovecs[i].iov_len = (self.headers[i].msg_len as usize).min(self.buf_size);
        }
    }

    /// Buffer `i` for the caller to write a datagram of `len` bytes into before `send`.
    pub fn fill(&mut self, i: usize, len: usize) -> &mut [u8] {
        let len = len.min(self.buf_size);
        self.iovecs[i].iov_len = len;
        &mut self.bufs[i * self.buf_size..i * self.buf_size + len]
    }

    /// Sends messages `first..end` in one `sendmmsg`; returns how many the kernel took, which
    /// may be fewer than asked when a later message failed (the next call reports that error).
    pub fn send(&mut self, fd: RawFd, first: usize, end: usize, dest: Dest) -> io::Result<usize> {
        assert!(
            first < end && end <= self.headers.len(),
            "send range out of batch"
        );
        self.link(first, end);
        for header in &mut self.headers[first..end] {
            let header = &mut header.msg_hdr;
            match dest {
                Dest::Connected => {
                    header.msg_name = std::ptr::null_mut();
                    header.msg_namelen = 0;
                }
                // `recv` left each sender's address, and its length, in the message's own slot.
                Dest::Sources => {}
                Dest::To(addr) => {
                    header.msg_name = (&addr.storage as *const libc::sockaddr_storage)
                        .cast_mut()
                        .cast();
                    header.msg_namelen = addr.len;
                }
            }
        }
        // SAFETY: `link` just pointed headers `first..end` at live iovecs of `self`, which point
        // into `bufs` with lengths set by `fill` or `resend_received` (never past `buf_size`),
        // and at a live address: their own slot, or `dest`'s, which outlives this call and which
        // sendmmsg only reads. `self` is borrowed mutably for the whole call.
        let sent = check(unsafe {
            libc::sendmmsg(
                fd,
                self.headers[first..end].as_mut_ptr(),
                (end - first) as libc::c_uint,
                0,
            )
        })?;
        Ok(sent as usize)
    }

    /// Sends messages `0..count`, retrying after partial sends. Returns (sent, failed): a
    /// per-datagram error drops the rest of the batch instead of stopping the caller, because a
    /// benchmark counts losses, it does not die of them.
    pub fn send_all(&mut self, fd: RawFd, count: usize, dest: Dest) -> (usize, usize) {
        let mut sent = 0;
        // Each pass sends at least one message or gives up, so `count` passes are enough.
        for _ in 0..count {
            if sent == count {
                break;
            }
            match self.send(fd, sent, count, dest) {
                Ok(0) | Err(_) => break,
                Ok(n) => sent += n,
            }
        }
        (sent, count - sent)
    }
}

/// A level-triggered epoll set, for the generator to wait on thousands of flow sockets at once.
pub struct Epoll {
    fd: RawFd,
    events: Vec<libc::epoll_event>,
}

impl Epoll {
    pub fn new(max_events: usize) -> io::Result<Epoll> {
        // SAFETY: epoll_create1 takes flags only.
        let fd = check(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
        Ok(Epoll {
            fd,
            events: vec![libc::epoll_event { events: 0, u64: 0 }; max_events.max(1)],
        })
    }

    /// Watches `fd` for readability; `token` comes back with each of its events.
    pub fn add(&self, fd: RawFd, token: u64) -> io::Result<()> {
        let mut event = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: token,
        };
        // SAFETY: `event` is a live epoll_event; the kernel copies it before returning.
        check(unsafe { libc::epoll_ctl(self.fd, libc::EPOLL_CTL_ADD, fd, &mut event) })?;
        Ok(())
    }

    /// Waits up to `timeout` and returns the tokens of the ready sockets.
    pub fn wait(&mut self, timeout: Duration) -> io::Result<impl Iterator<Item = u64> + '_> {
        let timeout_ms = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
        // SAFETY: `events` is a live, writable array of exactly the length we pass.
        let ready = unsafe {
            libc::epoll_wait(
                self.fd,
                self.events.as_mut_ptr(),
                self.events.len() as libc::c_int,
                timeout_ms,
            )
        };
        let ready = match check(ready) {
            Ok(n) => n as usize,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => 0,
            Err(e) => return Err(e),
        };
        Ok(self.events[..ready].iter().map(|event| event.u64))
    }
}

impl Drop for Epoll {
    fn drop(&mut self) {
        // SAFETY: we own `fd` and nothing uses it after this point.
        unsafe { libc::close(self.fd) };
    }
}
