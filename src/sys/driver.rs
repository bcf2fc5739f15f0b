//! The ring and every byte its operations point at.
//!
//! `Driver` owns the io_uring, the provided buffer ring, the receive header, the reply arena,
//! the reaper's timespec and the wake-up buffer. Each operation ringgate issues is a safe method
//! here that points the kernel only at memory this struct owns and keeps in place (boxed, never
//! resized), so no caller can hand the kernel a dangling pointer. Operations in flight are
//! counted from push to final completion (the first CQE without `IORING_CQE_F_MORE`); if the
//! driver is dropped with any still in flight, it leaks the memory they point at rather than
//! free it under the kernel. The ring is the first field, so it is closed before any of that
//! memory is released.

use std::io;
use std::os::fd::RawFd;
use std::time::Duration;

use io_uring::{IoUring, Probe, cqueue, opcode, squeue, types};

use super::buf_ring::BufRing;
use super::msghdr::{PAYLOAD_OFFSET, SendSlots, recv_header};
use crate::sockaddr::RawSockAddr;
use crate::user_data::Op;

/// Redis connections a worker drives (command, subscriber).
pub const REDIS_CONNS: usize = 2;
/// Bytes one Redis receive can take; replies larger than this arrive over several.
const REDIS_RX_LEN: usize = 16 * 1024;

/// The memory of one Redis connection's operations. Each buffer is busy from the push of the
/// operation that points at it until that operation's completion is reaped.
struct ConnIo {
    addr: RawSockAddr,
    connect_busy: bool,
    tx: Vec<u8>,
    tx_busy: bool,
    rx: Box<[u8]>,
    rx_busy: bool,
}

/// Which of a Redis connection's buffers an operation points at.
#[derive(Clone, Copy)]
enum ConnBuf {
    Addr,
    Tx,
    Rx,
}

impl ConnIo {
    fn new(rx_len: usize) -> ConnIo {
        ConnIo {
            addr: RawSockAddr::encode(std::net::SocketAddr::from(([0, 0, 0, 0], 0))),
            connect_busy: false,
            tx: Vec::new(),
            tx_busy: false,
            rx: vec![0; rx_len].into_boxed_slice(),
            rx_busy: false,
        }
    }

    fn busy(&mut self, which: ConnBuf) -> &mut bool {
        match which {
            ConnBuf::Addr => &mut self.connect_busy,
            ConnBuf::Tx => &mut self.tx_busy,
            ConnBuf::Rx => &mut self.rx_busy,
        }
    }
}

/// The buffer group id of the worker's one buffer ring.
const BGID: u16 = 0;

/// Sizes a worker's ring is built with.
#[derive(Clone, Copy, Debug)]
pub struct RingConfig {
    pub sq_entries: u32,
    pub cq_entries: u32,
    pub buffers: u32,
    /// Bytes of each provided buffer, headers included.
    pub buf_len: u32,
    pub tick: Duration,
    /// The task-running mode to try first; plainer ones follow if the kernel refuses it.
    pub task_run: TaskRun,
}

/// How the ring runs completion work (`--task-run`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum TaskRun {
    /// `SINGLE_ISSUER | DEFER_TASKRUN`: completions run only when the worker waits (6.1+).
    Deferred,
    /// `COOP_TASKRUN`: no inter-processor interrupts to run completions (5.19+).
    Cooperative,
    /// Neither flag was accepted.
    Default,
}

pub struct Driver {
    // Field order matters: the ring is dropped (closed) before the memory below it.
    ring: IoUring,
    bufs: BufRing,
    sends: SendSlots,
    recv_hdr: Box<libc::msghdr>,
    tick: Box<types::Timespec>,
    wake_buf: Box<u64>,
    conns: Box<[ConnIo; REDIS_CONNS]>,
    redis_timer: Box<types::Timespec>,
    redis_timer_busy: bool,
    in_flight: u64,
    pub task_run: TaskRun,
}

/// Opcodes the packet path needs, probed at start-up.
const REQUIRED_OPCODES: &[(u8, &str)] = &[
    (opcode::RecvMsgMulti::CODE, "RECVMSG"),
    (opcode::SendMsg::CODE, "SENDMSG"),
    (opcode::Send::CODE, "SEND"),
    (opcode::AsyncCancel::CODE, "ASYNC_CANCEL"),
    (opcode::Timeout::CODE, "TIMEOUT"),
    (opcode::Read::CODE, "READ"),
];

impl Driver {
    pub fn new(cfg: &RingConfig) -> io::Result<Driver> {
        check_kernel_version()?;
        let (ring, task_run) = build_ring(cfg)?;
        let mut probe = Probe::new();
        ring.submitter().register_probe(&mut probe)?;
        for &(code, name) in REQUIRED_OPCODES {
            if !probe.is_supported(code) {
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    format!(
                        "the kernel's io_uring lacks IORING_OP_{name}; ringgate needs Linux 6.1 or newer"
                    ),
                ));
            }
        }
        let bufs = BufRing::new(cfg.buffers, cfg.buf_len)?;
        let (ring_addr, entries) = bufs.registration();
        // SAFETY: the descriptor ring is a page-aligned mapping of `entries` descriptors owned
        // by `bufs`, which the returned Driver keeps until after the ring itself is closed
        // (field order) and never moves (the mapping is not part of the struct's bytes).
        unsafe {
            ring.submitter()
                .register_buf_ring_with_flags(ring_addr, entries, BGID, 0)
        }
        .map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("registering the provided buffer ring failed ({e}); ringgate needs Linux 6.1 or newer"),
            )
        })?;
        bufs.publish();
        Ok(Driver {
            ring,
            sends: SendSlots::new(cfg.buffers),
            bufs,
            recv_hdr: Box::new(recv_header()),
            tick: Box::new(
                types::Timespec::new()
                    .sec(cfg.tick.as_secs())
                    .nsec(cfg.tick.subsec_nanos()),
            ),
            wake_buf: Box::new(0),
            conns: Box::new(std::array::from_fn(|_| ConnIo::new(REDIS_RX_LEN))),
            redis_timer: Box::new(types::Timespec::new()),
            redis_timer_busy: false,
            in_flight: 0,
            task_run,
        })
    }

    pub fn bufs(&self) -> &BufRing {
        &self.bufs
    }

    pub fn bufs_mut(&mut self) -> &mut BufRing {
        &mut self.bufs
    }

    /// The header every multishot receive was armed with, for parsing its buffers.
    pub fn recv_header(&self) -> &libc::msghdr {
        &self.recv_hdr
    }

    /// Operations pushed whose final completion has not been reaped.
    pub fn in_flight(&self) -> u64 {
        self.in_flight
    }

    /// Queues `entry`, flushing the submission queue to the kernel first if it is full.
    /// Returns whether a flush was needed. Errors only if the kernel refuses the flush.
    ///
    /// # Safety
    /// Every pointer in `entry` must stay valid until the operation's final completion.
    unsafe fn push(&mut self, entry: squeue::Entry) -> io::Result<bool> {
        let mut flushed = false;
        loop {
            // SAFETY: forwarded from this function's contract.
            if unsafe { self.ring.submission().push(&entry) }.is_ok() {
                self.in_flight += 1;
                return Ok(flushed);
            }
            if flushed {
                // A flush did not make room: the kernel took nothing. Do not spin.
                return Err(io::Error::from(io::ErrorKind::WouldBlock));
            }
            self.submit()?;
            flushed = true;
        }
    }

    /// Arms a multishot `recvmsg` on `fd`, selecting buffers from the buffer ring.
    pub fn recv_multishot(&mut self, fd: RawFd, user_data: u64) -> io::Result<bool> {
        let entry = opcode::RecvMsgMulti::new(types::Fd(fd), &*self.recv_hdr, BGID)
            .build()
            .user_data(user_data);
        // SAFETY: the header is boxed in `self` and lives until the ring is closed; buffers come
        // from the registered buffer ring, which does too.
        unsafe { self.push(entry) }
    }

    /// Sends `len` payload bytes of leased buffer `bid` on the connected socket `fd`.
    pub fn send(&mut self, fd: RawFd, bid: u16, len: usize, user_data: u64) -> io::Result<bool> {
        let payload = self
            .bufs
            .range(bid, PAYLOAD_OFFSET, len)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "buffer not leased"))?;
        let entry = opcode::Send::new(types::Fd(fd), payload, len as u32)
            .build()
            .user_data(user_data);
        // SAFETY: the payload lies inside leased buffer `bid` (checked above) in the buffer
        // mapping owned by `self`; the caller recycles the buffer only on this send's completion.
        unsafe { self.push(entry) }
    }

    /// Sends `len` payload bytes of leased buffer `bid` from socket `fd` to `to`.
    pub fn send_to(
        &mut self,
        fd: RawFd,
        bid: u16,
        len: usize,
        to: &RawSockAddr,
        user_data: u64,
    ) -> io::Result<bool> {
        let payload = self
            .bufs
            .range(bid, PAYLOAD_OFFSET, len)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "buffer not leased"))?;
        let hdr = self
            .sends
            .prepare(bid, payload, len, to)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no send slot"))?;
        let entry = opcode::SendMsg::new(types::Fd(fd), hdr)
            .build()
            .user_data(user_data);
        // SAFETY: the header, iovec and address are in buffer `bid`'s slot of the boxed arena
        // owned by `self`, and the payload in leased buffer `bid`; the slot is rewritten only
        // for another send from the same buffer, which cannot happen before this one completes
        // and the buffer is recycled and received into again.
        unsafe { self.push(entry) }
    }

    /// Asks the kernel to cancel the operation issued with `target`.
    pub fn cancel(&mut self, target: u64, user_data: u64) -> io::Result<bool> {
        let entry = opcode::AsyncCancel::new(target)
            .build()
            .user_data(user_data);
        // SAFETY: a cancel carries no pointers.
        unsafe { self.push(entry) }
    }

    /// Arms the reaper's timeout, which completes with `-ETIME` after the configured tick.
    pub fn tick(&mut self, user_data: u64) -> io::Result<bool> {
        let entry = opcode::Timeout::new(&*self.tick)
            .build()
            .user_data(user_data);
        // SAFETY: the timespec is boxed in `self` and never changes after construction.
        unsafe { self.push(entry) }
    }

    /// Reads the wake-up eventfd `fd` into the driver's own 8-byte buffer.
    pub fn read_wake(&mut self, fd: RawFd, user_data: u64) -> io::Result<bool> {
        let entry = opcode::Read::new(
            types::Fd(fd),
            std::ptr::from_mut(&mut *self.wake_buf).cast(),
            8,
        )
        .build()
        .user_data(user_data);
        // SAFETY: the 8-byte buffer is boxed in `self`; only this one read is ever armed on it
        // at a time (the worker re-arms it only after its completion).
        unsafe { self.push(entry) }
    }

    /// Connection `conn`'s memory, if its `which` buffer is not in use by an operation.
    fn conn_free(&mut self, conn: usize, which: ConnBuf) -> io::Result<&mut ConnIo> {
        let io = self
            .conns
            .get_mut(conn)
            .ok_or_else(|| io::Error::other("no such connection"))?;
        if *io.busy(which) {
            return Err(io::Error::other("an operation on that buffer is in flight"));
        }
        Ok(io)
    }

    /// Pushes `entry`, marking connection `conn`'s `which` buffer busy until the operation's
    /// completion is reaped (see [`Driver::reap`]).
    ///
    /// # Safety
    /// `entry` may point only into connection `conn`'s `which` buffer, which must be free.
    unsafe fn push_conn(
        &mut self,
        conn: usize,
        which: ConnBuf,
        entry: squeue::Entry,
    ) -> io::Result<bool> {
        *self.conns[conn].busy(which) = true;
        // SAFETY: forwarded from this function's contract; the buffer is boxed in `self`, stays
        // put, and nothing rewrites, reads or drops it while it is marked busy.
        let pushed = unsafe { self.push(entry) };
        if pushed.is_err() {
            *self.conns[conn].busy(which) = false;
        }
        pushed
    }

    /// Connects Redis connection `conn`'s socket `fd` to `to`.
    pub fn connect(
        &mut self,
        conn: usize,
        fd: RawFd,
        to: std::net::SocketAddr,
        user_data: u64,
    ) -> io::Result<bool> {
        let io = self.conn_free(conn, ConnBuf::Addr)?;
        io.addr = RawSockAddr::encode(to);
        let len = io.addr.as_bytes().len() as libc::socklen_t;
        let entry = opcode::Connect::new(types::Fd(fd), std::ptr::from_ref(&io.addr).cast(), len)
            .build()
            .user_data(user_data);
        // SAFETY: the entry points only at this connection's address buffer, checked free.
        unsafe { self.push_conn(conn, ConnBuf::Addr, entry) }
    }

    /// Sends `bytes` on Redis connection `conn`'s socket `fd`. The driver keeps the bytes
    /// until the completion; [`Driver::sent`] gives them back.
    pub fn send_bytes(
        &mut self,
        conn: usize,
        fd: RawFd,
        bytes: Vec<u8>,
        user_data: u64,
    ) -> io::Result<bool> {
        let io = self.conn_free(conn, ConnBuf::Tx)?;
        io.tx = bytes;
        let entry = opcode::Send::new(types::Fd(fd), io.tx.as_ptr(), io.tx.len() as u32)
            .build()
            .user_data(user_data);
        // SAFETY: the entry points only at this connection's send buffer (a heap allocation
        // the slot owns), checked free.
        unsafe { self.push_conn(conn, ConnBuf::Tx, entry) }
    }

    /// The bytes of connection `conn`'s last send, once it completed.
    pub fn sent(&mut self, conn: usize) -> Vec<u8> {
        match self.conns.get_mut(conn) {
            Some(io) if !io.tx_busy => std::mem::take(&mut io.tx),
            _ => Vec::new(),
        }
    }

    /// Receives on Redis connection `conn`'s socket `fd` into the connection's buffer.
    pub fn recv_bytes(&mut self, conn: usize, fd: RawFd, user_data: u64) -> io::Result<bool> {
        let io = self.conn_free(conn, ConnBuf::Rx)?;
        let entry = opcode::Recv::new(types::Fd(fd), io.rx.as_mut_ptr(), io.rx.len() as u32)
            .build()
            .user_data(user_data);
        // SAFETY: the entry points only at this connection's receive buffer, checked free.
        unsafe { self.push_conn(conn, ConnBuf::Rx, entry) }
    }

    /// The first `len` bytes connection `conn`'s last receive wrote, once it completed.
    pub fn received(&self, conn: usize, len: usize) -> &[u8] {
        match self.conns.get(conn) {
            Some(io) if !io.rx_busy => &io.rx[..len.min(io.rx.len())],
            _ => &[],
        }
    }

    /// Arms the Redis link's timer to complete after `after`. One at a time.
    pub fn redis_timer(&mut self, after: Duration, user_data: u64) -> io::Result<bool> {
        if self.redis_timer_busy {
            return Err(io::Error::other("the Redis timer is already armed"));
        }
        *self.redis_timer = types::Timespec::new()
            .sec(after.as_secs())
            .nsec(after.subsec_nanos());
        let entry = opcode::Timeout::new(&*self.redis_timer)
            .build()
            .user_data(user_data);
        self.redis_timer_busy = true;
        // SAFETY: the timespec is boxed in `self` and rewritten only while no timer is armed.
        let pushed = unsafe { self.push(entry) };
        if pushed.is_err() {
            self.redis_timer_busy = false;
        }
        pushed
    }

    /// Cancels every operation on `fd`.
    pub fn cancel_fd(&mut self, fd: RawFd, user_data: u64) -> io::Result<bool> {
        let entry = opcode::AsyncCancel2::new(types::CancelBuilder::fd(types::Fd(fd)).all())
            .build()
            .user_data(user_data);
        // SAFETY: a cancel carries no pointers into memory.
        unsafe { self.push(entry) }
    }

    /// Hands queued operations to the kernel without waiting.
    pub fn submit(&mut self) -> io::Result<usize> {
        retry_interrupted(|| self.ring.submit())
    }

    /// Hands queued operations to the kernel and waits for at least one completion.
    pub fn submit_and_wait(&mut self) -> io::Result<usize> {
        retry_interrupted(|| self.ring.submit_and_wait(1))
    }

    /// Like [`Driver::submit_and_wait`], giving up after `timeout`.
    pub fn submit_and_wait_for(&mut self, timeout: Duration) -> io::Result<usize> {
        let ts = types::Timespec::new()
            .sec(timeout.as_secs())
            .nsec(timeout.subsec_nanos());
        let args = types::SubmitArgs::new().timespec(&ts);
        match self.ring.submitter().submit_with_args(1, &args) {
            Err(e) if e.raw_os_error() == Some(libc::ETIME) => Ok(0),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(0),
            other => other,
        }
    }

    /// Moves every available completion into `batch`, so that handlers run after the
    /// completion queue is released and may push new operations freely.
    pub fn reap(&mut self, batch: &mut Vec<cqueue::Entry>) {
        let before = batch.len();
        batch.extend(self.ring.completion());
        for cqe in &batch[before..] {
            if cqueue::more(cqe.flags()) {
                continue;
            }
            self.in_flight -= 1;
            // The memory a finished Redis operation pointed at is free again.
            let io = |conn: u32| conn as usize % REDIS_CONNS;
            match Op::decode(cqe.user_data()) {
                Some(Op::RedisConnect { conn, .. }) => {
                    *self.conns[io(conn)].busy(ConnBuf::Addr) = false
                }
                Some(Op::RedisSend { conn, .. }) => *self.conns[io(conn)].busy(ConnBuf::Tx) = false,
                Some(Op::RedisRecv { conn, .. }) => *self.conns[io(conn)].busy(ConnBuf::Rx) = false,
                Some(Op::RedisTimer) => self.redis_timer_busy = false,
                _ => {}
            }
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        if self.in_flight != 0 {
            // The kernel may still write into these: never free them under it. This happens
            // only when a worker's shutdown drain timed out.
            let bufs = std::mem::replace(&mut self.bufs, leak_placeholder());
            std::mem::forget(bufs);
            std::mem::forget(std::mem::replace(&mut self.sends, SendSlots::new(0)));
            std::mem::forget(std::mem::replace(
                &mut self.recv_hdr,
                Box::new(recv_header()),
            ));
            std::mem::forget(std::mem::replace(&mut self.wake_buf, Box::new(0)));
            let conns = std::mem::replace(
                &mut self.conns,
                Box::new(std::array::from_fn(|_| ConnIo::new(0))),
            );
            std::mem::forget(conns);
            std::mem::forget(std::mem::replace(
                &mut self.redis_timer,
                Box::new(types::Timespec::new()),
            ));
        }
    }
}

/// A minimal buffer ring swapped in for one being leaked.
fn leak_placeholder() -> BufRing {
    // One 64-byte buffer: two small mappings, freed normally.
    BufRing::new(1, 64).unwrap_or_else(|_| std::process::abort())
}

fn retry_interrupted(mut f: impl FnMut() -> io::Result<usize>) -> io::Result<usize> {
    loop {
        match f() {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

/// Builds the ring with the best task-running mode the kernel accepts.
fn build_ring(cfg: &RingConfig) -> io::Result<(IoUring, TaskRun)> {
    let attempts = [TaskRun::Deferred, TaskRun::Cooperative, TaskRun::Default];
    let first = attempts
        .iter()
        .position(|&m| m == cfg.task_run)
        .unwrap_or(0);
    let mut last = None;
    for &mode in &attempts[first..] {
        let mut builder = IoUring::builder();
        builder.setup_cqsize(cfg.cq_entries).setup_submit_all();
        match mode {
            TaskRun::Deferred => {
                builder.setup_single_issuer().setup_defer_taskrun();
            }
            TaskRun::Cooperative => {
                builder.setup_coop_taskrun();
            }
            TaskRun::Default => {}
        }
        match builder.build(cfg.sq_entries) {
            Ok(ring) => return Ok((ring, mode)),
            // EINVAL: this kernel does not know a flag; try the next, plainer mode.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => last = Some(e),
            Err(e) => return Err(explain_setup_error(e)),
        }
    }
    Err(explain_setup_error(last.unwrap_or_else(|| {
        io::Error::from_raw_os_error(libc::EINVAL)
    })))
}

/// ringgate needs Linux 6.1: multishot `recvmsg` (6.0) exists as an opcode on older kernels
/// that reject the multishot flag, which the opcode probe cannot tell apart.
fn check_kernel_version() -> io::Result<()> {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    match parse_version(&release) {
        Some(version) if version < (6, 1) => Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!(
                "Linux {} is too old: ringgate needs 6.1 or newer (multishot recvmsg, \
                 provided buffer rings, DEFER_TASKRUN)",
                release.trim()
            ),
        )),
        // Unknown layout: let the probe and the first operations decide.
        _ => Ok(()),
    }
}

/// `(major, minor)` of a kernel release such as `6.18.44-fc-v657`.
fn parse_version(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.trim().split(['.', '-']);
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

/// Turns `io_uring_setup`'s refusal into a message that names the cause and the fix.
pub fn explain_setup_error(e: io::Error) -> io::Error {
    let disabled = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled")
        .ok()
        .map(|s| s.trim().to_owned());
    let why = match (e.raw_os_error(), disabled.as_deref()) {
        (Some(libc::ENOSYS), _) => "io_uring_setup is not available (ENOSYS): the kernel is older than 5.1 \
             or built without CONFIG_IO_URING, or a container's seccomp profile blocks it. ringgate needs \
             Linux 6.1+; in a container, allow io_uring_setup, io_uring_enter and io_uring_register in the \
             seccomp profile (Docker: --security-opt seccomp=<profile allowing them>)"
            .to_owned(),
        (Some(libc::EPERM), Some("2")) => "io_uring is disabled by the sysctl kernel.io_uring_disabled=2; \
             enable it with `sysctl -w kernel.io_uring_disabled=0` (see tuning/sysctl.conf)"
            .to_owned(),
        (Some(libc::EPERM), Some("1")) => "io_uring is restricted by kernel.io_uring_disabled=1 to root and \
             the group in kernel.io_uring_group; run ringgate in that group or set \
             `sysctl -w kernel.io_uring_disabled=0`"
            .to_owned(),
        (Some(libc::EPERM), _) => "io_uring_setup was denied (EPERM) by a seccomp profile or security \
             module; allow io_uring_setup, io_uring_enter and io_uring_register for ringgate"
            .to_owned(),
        (Some(libc::ENOMEM), _) => "io_uring_setup ran out of memory (ENOMEM); lower --ring-entries or \
             raise the memory cgroup limit"
            .to_owned(),
        (Some(libc::EINVAL), _) => "io_uring_setup rejected the ring's parameters (EINVAL); try a \
             smaller --ring-entries"
            .to_owned(),
        _ => format!("io_uring_setup failed: {e}"),
    };
    io::Error::new(e.kind(), why)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setup_errors_name_the_cause_and_the_fix() {
        let enosys = explain_setup_error(io::Error::from_raw_os_error(libc::ENOSYS)).to_string();
        assert!(
            enosys.contains("seccomp") && enosys.contains("6.1"),
            "{enosys}"
        );
        let eperm = explain_setup_error(io::Error::from_raw_os_error(libc::EPERM)).to_string();
        assert!(eperm.contains("io_uring"), "{eperm}");
        let enomem = explain_setup_error(io::Error::from_raw_os_error(libc::ENOMEM)).to_string();
        assert!(enomem.contains("--ring-entries"), "{enomem}");
    }

    #[test]
    fn kernel_versions_parse() {
        assert_eq!(parse_version("6.18.44-fc-v657"), Some((6, 18)));
        assert_eq!(parse_version("5.19.0\n"), Some((5, 19)));
        assert_eq!(parse_version("6.1"), Some((6, 1)));
        assert_eq!(parse_version("garbage"), None);
        assert!(parse_version("5.19.0").unwrap() < (6, 1));
    }

    #[test]
    fn a_ring_builds_and_probes_on_this_kernel() {
        let driver = Driver::new(&RingConfig {
            sq_entries: 8,
            cq_entries: 64,
            buffers: 8,
            buf_len: 128,
            tick: Duration::from_millis(10),
            task_run: TaskRun::Deferred,
        })
        .expect("ringgate's tests need io_uring (Linux 6.1+)");
        assert_eq!(driver.in_flight(), 0);
        assert_eq!(driver.bufs().leased(), 0);
    }
}
