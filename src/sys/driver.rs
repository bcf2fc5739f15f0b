//! The one interface a worker talks to the kernel through, in ringgate's own words.
//!
//! A [`Driver`] receives datagrams into receive buffers it owns, sends them from those buffers,
//! cancels, ticks, wakes, and lends memory to byte streams and timers (see `sys::lent`); every
//! operation carries a caller's token (a `u64` with [`LENT_BIT`] clear) and ends in one or more
//! [`Completion`]s that [`Driver::reap`] copies into the caller's batch. A receive completion
//! names the buffer it filled, and [`Driver::received`] reads the datagram in it as a
//! [`Received`]: source, payload length, and destination when the socket reports it.
//!
//! Each way of talking to the kernel is a folder below `sys/` and one variant here, chosen
//! once when the driver is built (monoio's `driver/uring/` beside `driver/legacy/`): `uring/`,
//! io_uring with a provided buffer ring and multishot receives, and `epoll/`, epoll with
//! `recvmmsg`/`sendmmsg` where io_uring is refused. The variants are dispatched with a `match`
//! on a value that never changes for a worker, one predictable branch per operation; no type
//! of a backend's crate crosses this wall.
//!
//! Routers get [`Streams`], a narrow handle on the same driver: streams and timers only.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::RawFd;
use std::time::Duration;

use super::epoll::Epoll;
pub use super::lent::LENT_BIT;
use super::sockaddr::RawSockAddr;
use super::uring::{Ring, TaskRun};

/// The ways of talking to the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    IoUring,
    Epoll,
}

impl Backend {
    /// `io_uring`, `epoll`: in logs and metrics.
    pub const fn name(self) -> &'static str {
        match self {
            Backend::IoUring => "io_uring",
            Backend::Epoll => "epoll",
        }
    }
}

/// What a worker's driver is built with.
#[derive(Clone, Copy, Debug)]
pub struct DriverConfig {
    /// Which driver to build.
    pub backend: Backend,
    /// Operations queued at once (the io_uring submission queue's size).
    pub sq_entries: u32,
    /// Completions held at once (the io_uring completion queue's size).
    pub cq_entries: u32,
    /// Receive buffers (a power of two).
    pub buffer_count: u32,
    /// The largest payload a receive buffer takes (`--buffer-size`); the driver adds the room
    /// its own headers and `headroom` need.
    pub payload_bytes: u32,
    /// The longest prefix a send writes before a received payload (a PROXY protocol header);
    /// the driver leaves at least this much room before every payload.
    pub headroom: usize,
    /// Receives report each datagram's destination address (a wildcard listener, which asks for
    /// pktinfo); otherwise the driver reserves no room for it.
    pub recv_destination: bool,
    /// The period of the reaper's tick.
    pub tick: Duration,
    /// io_uring's task-running mode to try first; plainer ones follow if the kernel refuses it.
    pub task_run: TaskRun,
    /// Byte streams the driver lends memory to (see `sys::lent`).
    pub streams: usize,
    /// Bytes one stream receive can take.
    pub stream_rx_bytes: usize,
    /// One-shot timers the driver lends a timespec to.
    pub timers: usize,
}

/// One completion, in ringgate's words: the token the operation was issued with, its result
/// (bytes, or a negative errno), the receive buffer it filled if any, and whether more
/// completions of the same operation follow (a receive stays armed while they do).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Completion {
    token: u64,
    result: i32,
    /// Bit 0: more follow; bit 1: a buffer is named; bits 16-31: the buffer.
    flags: u32,
}

const MORE: u32 = 1;
const HAS_BUFFER: u32 = 2;

impl Completion {
    pub const fn new(token: u64, result: i32, buffer: Option<u16>, more: bool) -> Completion {
        let mut flags = if more { MORE } else { 0 };
        if let Some(bid) = buffer {
            flags |= HAS_BUFFER | ((bid as u32) << 16);
        }
        Completion {
            token,
            result,
            flags,
        }
    }

    pub const fn token(&self) -> u64 {
        self.token
    }

    pub const fn result(&self) -> i32 {
        self.result
    }

    /// The receive buffer the kernel filled (or committed before failing).
    pub const fn buffer(&self) -> Option<u16> {
        if self.flags & HAS_BUFFER != 0 {
            Some((self.flags >> 16) as u16)
        } else {
            None
        }
    }

    /// More completions of this operation follow; without it, a receive has ended.
    pub const fn more(&self) -> bool {
        self.flags & MORE != 0
    }
}

/// A datagram a receive put in a buffer: its source, its payload's length, and the address it
/// was sent to when the socket reports it (a wildcard listener, with pktinfo). The payload lies
/// after headroom a send may prefix to it ([`Driver::send`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Received {
    pub source: SocketAddr,
    pub len: u32,
    pub dest: Option<IpAddr>,
}

/// Why a received buffer holds no usable datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecvFault {
    /// The datagram did not fit its buffer, or the buffer is malformed.
    Truncated,
    /// Its source is not an IPv4 or IPv6 address, or was cut short.
    BadAddress,
    /// The buffer is not leased to the caller.
    NotLeased,
}

/// Whether io_uring, as ringgate uses it, works in this process (see `uring::Ring::probe`).
pub fn probe_io_uring(cfg: &DriverConfig) -> io::Result<()> {
    Ring::probe(cfg)
}

/// A worker's driver: one variant per way of talking to the kernel.
pub enum Driver {
    Uring(Ring),
    Epoll(Epoll),
}

/// Calls the same method on whichever driver this is.
macro_rules! each {
    ($self:expr, $d:ident => $body:expr) => {
        match $self {
            Driver::Uring($d) => $body,
            Driver::Epoll($d) => $body,
        }
    };
}

impl Driver {
    /// Builds the driver `cfg.backend` names.
    pub fn new(cfg: &DriverConfig) -> io::Result<Driver> {
        match cfg.backend {
            Backend::IoUring => Ring::new(cfg).map(Driver::Uring),
            Backend::Epoll => Epoll::new(cfg).map(Driver::Epoll),
        }
    }

    pub fn backend(&self) -> Backend {
        match self {
            Driver::Uring(_) => Backend::IoUring,
            Driver::Epoll(_) => Backend::Epoll,
        }
    }

    /// `io_uring`, `epoll`: in logs and metrics.
    pub fn name(&self) -> &'static str {
        self.backend().name()
    }

    /// The task-running mode an io_uring was built with.
    pub fn task_run(&self) -> Option<TaskRun> {
        match self {
            Driver::Uring(d) => Some(d.task_run()),
            Driver::Epoll(_) => None,
        }
    }

    /// Operations pushed whose final completion has not been reaped.
    pub fn in_flight(&self) -> u64 {
        each!(self, d => d.in_flight())
    }

    /// Receives datagrams on `fd` until the receive ends (a completion without `more`); each
    /// completion names the buffer it filled. Returns whether queueing it needed a flush; errs
    /// only when nothing could be queued (retry after the batch).
    #[inline]
    pub fn recv_multishot(&mut self, fd: RawFd, token: u64) -> io::Result<bool> {
        each!(self, d => d.recv_multishot(fd, token))
    }

    /// Sends `len` payload bytes of leased buffer `bid` on the connected socket `fd`, after
    /// `prefix` (written into the buffer's headroom, so the payload is not moved).
    #[inline]
    pub fn send(
        &mut self,
        fd: RawFd,
        bid: u16,
        prefix: &[u8],
        len: usize,
        token: u64,
    ) -> io::Result<bool> {
        each!(self, d => d.send(fd, bid, prefix, len, token))
    }

    /// Sends `len` payload bytes of leased buffer `bid` from socket `fd` to `to`, leaving from
    /// address `from` if given (`(address, whether fd is an IPv6 socket)`).
    #[inline]
    pub fn send_to(
        &mut self,
        fd: RawFd,
        bid: u16,
        len: usize,
        to: &RawSockAddr,
        from: Option<(IpAddr, bool)>,
        token: u64,
    ) -> io::Result<bool> {
        each!(self, d => d.send_to(fd, bid, len, to, from, token))
    }

    /// Cancels the operation issued with `target`.
    pub fn cancel(&mut self, target: u64, token: u64) -> io::Result<bool> {
        each!(self, d => d.cancel(target, token))
    }

    /// Arms the reaper's tick, which completes (with `-ETIME`) after the configured period.
    pub fn tick(&mut self, token: u64) -> io::Result<bool> {
        each!(self, d => d.tick(token))
    }

    /// Reads the wake-up eventfd `fd`.
    pub fn read_wake(&mut self, fd: RawFd, token: u64) -> io::Result<bool> {
        each!(self, d => d.read_wake(fd, token))
    }

    /// Hands queued operations to the kernel without waiting.
    pub fn submit(&mut self) -> io::Result<usize> {
        each!(self, d => d.submit())
    }

    /// Hands queued operations to the kernel and waits for at least one completion.
    pub fn submit_and_wait(&mut self) -> io::Result<usize> {
        each!(self, d => d.submit_and_wait())
    }

    /// Like [`Driver::submit_and_wait`], giving up after `timeout`.
    pub fn submit_and_wait_for(&mut self, timeout: Duration) -> io::Result<usize> {
        each!(self, d => d.submit_and_wait_for(timeout))
    }

    /// Moves every available completion into `batch`, so that handlers run after the driver
    /// is released and may queue new operations freely.
    #[inline]
    pub fn reap(&mut self, batch: &mut Vec<Completion>) {
        each!(self, d => d.reap(batch))
    }

    /// Takes the lease of buffer `bid`, which a completion named. False if it was not the
    /// kernel's to give (an anomaly).
    #[inline]
    pub fn lease(&mut self, bid: u16) -> bool {
        each!(self, d => d.lease(bid))
    }

    /// Gives leased buffer `bid` back for receiving (published by [`Driver::publish`]). False
    /// if it was not leased (a second recycle: an anomaly).
    #[inline]
    pub fn recycle(&mut self, bid: u16) -> bool {
        each!(self, d => d.recycle(bid))
    }

    /// Makes recycled buffers available to receives: once per batch.
    #[inline]
    pub fn publish(&self) {
        each!(self, d => d.publish())
    }

    /// Receive buffers leased out, and in all.
    pub fn buffers_leased(&self) -> u32 {
        each!(self, d => d.buffers_leased())
    }

    pub fn buffers(&self) -> u32 {
        each!(self, d => d.buffers())
    }

    /// The datagram a receive completion with result `filled` put in leased buffer `bid`.
    #[inline]
    pub fn received(&self, bid: u16, filled: i32) -> Result<Received, RecvFault> {
        each!(self, d => d.received(bid, filled))
    }

    /// The first `len` payload bytes of leased buffer `bid`.
    pub fn payload(&self, bid: u16, len: usize) -> Option<&[u8]> {
        each!(self, d => d.payload(bid, len))
    }

    /// The narrow handle routers drive their streams and timers through.
    pub fn streams(&mut self) -> Streams<'_> {
        Streams { driver: self }
    }
}

/// Streams and timers on a worker's driver, and nothing else: what a router may touch.
pub struct Streams<'a> {
    driver: &'a mut Driver,
}

impl Streams<'_> {
    /// Connects stream `stream`'s socket `fd` to `to`.
    pub fn connect(
        &mut self,
        stream: u16,
        fd: RawFd,
        to: SocketAddr,
        tag: u32,
    ) -> io::Result<bool> {
        each!(self.driver, d => d.stream_connect(stream, fd, to, tag))
    }

    /// Sends `bytes` on stream `stream`'s socket `fd`; [`Streams::sent`] gives them back once
    /// the send completed.
    pub fn send(&mut self, stream: u16, fd: RawFd, bytes: Vec<u8>, tag: u32) -> io::Result<bool> {
        each!(self.driver, d => d.stream_send(stream, fd, bytes, tag))
    }

    /// The bytes of stream `stream`'s last send, once it completed (or was refused).
    pub fn sent(&mut self, stream: u16) -> Vec<u8> {
        each!(self.driver, d => d.stream_sent(stream))
    }

    /// Receives on stream `stream`'s socket `fd` into the stream's buffer.
    pub fn recv(&mut self, stream: u16, fd: RawFd, tag: u32) -> io::Result<bool> {
        each!(self.driver, d => d.stream_recv(stream, fd, tag))
    }

    /// Reads from `fd` (an eventfd, a pipe: not a socket) into stream `stream`'s buffer.
    pub fn read(&mut self, stream: u16, fd: RawFd, tag: u32) -> io::Result<bool> {
        each!(self.driver, d => d.stream_read(stream, fd, tag))
    }

    /// The first `len` bytes stream `stream`'s last receive wrote, once it completed.
    pub fn received(&self, stream: u16, len: usize) -> &[u8] {
        each!(&*self.driver, d => d.stream_received(stream, len))
    }

    /// Cancels every operation on stream socket `fd`.
    pub fn cancel_fd(&mut self, fd: RawFd) -> io::Result<bool> {
        each!(self.driver, d => d.cancel_fd(fd))
    }

    /// Arms timer `timer` to complete (with `-ETIME`) after `after`. One at a time per timer.
    pub fn timer(&mut self, timer: u16, after: Duration, tag: u32) -> io::Result<bool> {
        each!(self.driver, d => d.timer(timer, after, tag))
    }

    /// Cancels timer `timer` if it is armed.
    pub fn cancel_timer(&mut self, timer: u16) -> io::Result<bool> {
        each!(self.driver, d => d.cancel_timer(timer))
    }
}
