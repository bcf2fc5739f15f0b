//! The epoll driver: the same interface as io_uring's (`sys::driver`), for where io_uring is
//! refused (a container's seccomp profile, `kernel.io_uring_disabled`, a kernel older than 6.1).
//!
//! One epoll instance per worker, level-triggered, each watched descriptor with at most one
//! reading and one writing operation. Readiness is turned into the completions io_uring would
//! have given: a datagram receive stays armed and yields one completion per datagram, read in
//! batches with `recvmmsg` into the driver's own buffers (`pool`), with `-ENOBUFS` ending it
//! when no buffer is free; replies from the listening socket are queued and leave in batches
//! with `sendmmsg` when the worker next submits; a send on a session's connected socket, a
//! cancel, and a stream's connect or send that can finish at once complete at once (queued for
//! the next reap). Stream receives, eventfd reads, the reaper's tick and the routers' timers
//! (timerfds) complete when their descriptor is ready. Operations are counted from push to
//! final completion, as with io_uring.
//!
//! Differences a caller may notice: a send that finds its socket's buffer full fails with
//! `-EAGAIN` (io_uring would have waited for room; the worker counts it as a send error), and
//! the kernel holds no pointer into the driver's memory outside a system call, so nothing needs
//! draining before it is freed.

mod datagrams;
mod lent;
mod pool;
mod ready;
mod syscall;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::time::Duration;

use self::pool::Pool;
use self::syscall::Got;
use super::driver::{Completion, DriverConfig};
use super::sockaddr::RawSockAddr;

/// Datagrams read from one socket per readiness report, so one busy socket cannot starve the
/// others (the rest is reported again: level-triggered).
const RECV_BUDGET: usize = 64;
/// Datagrams one `recvmmsg` or `sendmmsg` moves at most.
pub(super) const BATCH: usize = 32;
/// Readiness reports taken per wait.
const EVENTS: usize = 256;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reader {
    Datagrams,
    Wake,
    StreamRecv(u16),
    StreamRead(u16),
    Tick,
    Timer(u16),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Writer {
    Connect,
    StreamSend(u16),
}

/// What is waiting on one descriptor, with each operation's token.
#[derive(Default)]
struct Watch {
    reader: Option<(Reader, u64)>,
    writer: Option<(Writer, u64)>,
    registered: bool,
}

/// A reply queued for the next `sendmmsg`.
struct QueuedSend {
    fd: RawFd,
    bid: u16,
    len: usize,
    to: RawSockAddr,
    from: Option<(IpAddr, bool)>,
    token: u64,
}

struct StreamMem {
    tx: Vec<u8>,
    rx: Box<[u8]>,
}

struct TimerSlot {
    fd: OwnedFd,
    armed: Option<u64>,
}

pub struct Epoll {
    epfd: OwnedFd,
    pool: Pool,
    watches: HashMap<RawFd, Watch>,
    /// The descriptor of every operation that waits for readiness, by token (for cancels).
    waiting: HashMap<u64, RawFd>,
    done: VecDeque<Completion>,
    events: Vec<libc::epoll_event>,
    sends: Vec<QueuedSend>,
    in_flight: u64,
    tick_fd: OwnedFd,
    tick: Duration,
    timers: Box<[TimerSlot]>,
    streams: Box<[StreamMem]>,
    bids: Vec<u16>,
    got: Vec<Got>,
}

fn refused(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, what.to_owned())
}

impl Epoll {
    pub fn new(cfg: &DriverConfig) -> io::Result<Epoll> {
        let timers = (0..cfg.timers)
            .map(|_| {
                Ok(TimerSlot {
                    fd: syscall::timerfd()?,
                    armed: None,
                })
            })
            .collect::<io::Result<Vec<_>>>()?;
        Ok(Epoll {
            epfd: syscall::epoll_create()?,
            pool: Pool::new(
                cfg.buffer_count,
                cfg.payload_bytes as usize,
                cfg.headroom,
                cfg.recv_destination,
            ),
            watches: HashMap::new(),
            waiting: HashMap::new(),
            done: VecDeque::new(),
            events: vec![libc::epoll_event { events: 0, u64: 0 }; EVENTS],
            sends: Vec::new(),
            in_flight: 0,
            tick_fd: syscall::timerfd()?,
            tick: cfg.tick,
            timers: timers.into_boxed_slice(),
            streams: (0..cfg.streams)
                .map(|_| StreamMem {
                    tx: Vec::new(),
                    rx: vec![0; cfg.stream_rx_bytes].into_boxed_slice(),
                })
                .collect(),
            bids: Vec::with_capacity(BATCH),
            got: Vec::with_capacity(BATCH),
        })
    }

    pub fn in_flight(&self) -> u64 {
        self.in_flight
    }

    /// Queues a completion (of an operation that never waited for readiness, or not its last).
    fn complete(&mut self, token: u64, result: i32, buffer: Option<u16>, more: bool) {
        self.done
            .push_back(Completion::new(token, result, buffer, more));
    }

    /// Queues the last completion of an operation that waited for readiness.
    fn finish(&mut self, token: u64, result: i32) {
        self.waiting.remove(&token);
        self.complete(token, result, None, false);
    }

    /// An operation that completes at once.
    fn at_once(&mut self, token: u64, result: i32) {
        self.in_flight += 1;
        self.complete(token, result, None, false);
    }

    /// Brings `fd`'s registration in line with what waits on it.
    fn sync(&mut self, fd: RawFd) -> io::Result<()> {
        let Some(w) = self.watches.get_mut(&fd) else {
            return Ok(());
        };
        let mut mask = 0;
        if w.reader.is_some() {
            mask |= libc::EPOLLIN as u32;
        }
        if w.writer.is_some() {
            mask |= libc::EPOLLOUT as u32;
        }
        if mask == 0 {
            if w.registered {
                // The descriptor may be closed already (removed by the kernel): nothing to do.
                let _ = syscall::epoll_ctl(&self.epfd, libc::EPOLL_CTL_DEL, fd, 0);
            }
            self.watches.remove(&fd);
            return Ok(());
        }
        let op = if w.registered {
            libc::EPOLL_CTL_MOD
        } else {
            libc::EPOLL_CTL_ADD
        };
        if let Err(e) = syscall::epoll_ctl(&self.epfd, op, fd, mask) {
            // Never leave the kernel watching a direction nothing waits on (a level-triggered
            // spin): take the descriptor out; the next operation on it adds it again.
            if w.registered {
                let _ = syscall::epoll_ctl(&self.epfd, libc::EPOLL_CTL_DEL, fd, 0);
                w.registered = false;
            }
            return Err(e);
        }
        w.registered = true;
        Ok(())
    }

    /// Starts a reading operation on `fd`, one at a time.
    fn read_on(&mut self, fd: RawFd, reader: Reader, token: u64) -> io::Result<bool> {
        let w = self.watches.entry(fd).or_default();
        if w.reader.is_some() {
            return Err(refused("a read on that descriptor is in flight"));
        }
        w.reader = Some((reader, token));
        if let Err(e) = self.sync(fd) {
            if let Some(w) = self.watches.get_mut(&fd) {
                w.reader = None;
            }
            let _ = self.sync(fd);
            return Err(e);
        }
        self.in_flight += 1;
        self.waiting.insert(token, fd);
        Ok(false)
    }

    /// Starts a writing operation on `fd` that must wait for it to be writable.
    fn write_on(&mut self, fd: RawFd, writer: Writer, token: u64) -> io::Result<bool> {
        let w = self.watches.entry(fd).or_default();
        if w.writer.is_some() {
            return Err(refused("a write on that descriptor is in flight"));
        }
        w.writer = Some((writer, token));
        if let Err(e) = self.sync(fd) {
            if let Some(w) = self.watches.get_mut(&fd) {
                w.writer = None;
            }
            let _ = self.sync(fd);
            return Err(e);
        }
        self.in_flight += 1;
        self.waiting.insert(token, fd);
        Ok(false)
    }

    /// Ends the reading operation on `fd` with `result`.
    fn end_read(&mut self, fd: RawFd, token: u64, result: i32) {
        if let Some(w) = self.watches.get_mut(&fd) {
            w.reader = None;
        }
        let _ = self.sync(fd);
        self.finish(token, result);
    }

    fn end_write(&mut self, fd: RawFd, token: u64, result: i32) {
        if let Some(w) = self.watches.get_mut(&fd) {
            w.writer = None;
        }
        let _ = self.sync(fd);
        self.finish(token, result);
    }

    pub fn cancel(&mut self, target: u64, token: u64) -> io::Result<bool> {
        self.flush();
        let Some(fd) = self.waiting.get(&target).copied() else {
            self.at_once(token, -libc::ENOENT);
            return Ok(false);
        };
        self.cancel_on(fd, |t| t == target);
        self.at_once(token, 0);
        Ok(false)
    }

    /// Ends with `-ECANCELED` the operations on `fd` whose token `which` picks.
    fn cancel_on(&mut self, fd: RawFd, which: impl Fn(u64) -> bool) {
        let Some(w) = self.watches.get_mut(&fd) else {
            return;
        };
        let mut ended = Vec::new();
        if let Some((reader, token)) = w.reader
            && which(token)
        {
            w.reader = None;
            ended.push((token, Some(reader)));
        }
        if let Some((_, token)) = w.writer
            && which(token)
        {
            w.writer = None;
            ended.push((token, None));
        }
        let _ = self.sync(fd);
        for (token, reader) in ended {
            match reader {
                Some(Reader::Tick) => {
                    let _ = syscall::timerfd_set(&self.tick_fd, None);
                }
                Some(Reader::Timer(t)) => {
                    if let Some(slot) = self.timers.get_mut(usize::from(t)) {
                        let _ = syscall::timerfd_set(&slot.fd, None);
                        slot.armed = None;
                    }
                }
                _ => {}
            }
            self.finish(token, -libc::ECANCELED);
        }
    }

    pub fn tick(&mut self, token: u64) -> io::Result<bool> {
        let fd = self.tick_fd.as_raw_fd();
        self.read_on(fd, Reader::Tick, token)?;
        if let Err(e) = syscall::timerfd_set(&self.tick_fd, Some(self.tick)) {
            self.cancel_on(fd, |t| t == token);
            return Err(e);
        }
        Ok(false)
    }

    pub fn read_wake(&mut self, fd: RawFd, token: u64) -> io::Result<bool> {
        self.read_on(fd, Reader::Wake, token)
    }

    pub fn submit(&mut self) -> io::Result<usize> {
        self.flush();
        Ok(0)
    }

    pub fn submit_and_wait(&mut self) -> io::Result<usize> {
        self.wait(None)
    }

    pub fn submit_and_wait_for(&mut self, timeout: Duration) -> io::Result<usize> {
        self.wait(Some(timeout))
    }

    /// Sends what is queued, then waits for readiness (not at all if completions are already
    /// waiting to be reaped) and turns it into completions.
    fn wait(&mut self, timeout: Option<Duration>) -> io::Result<usize> {
        self.flush();
        let timeout = if self.done.is_empty() {
            timeout
        } else {
            Some(Duration::ZERO)
        };
        let n = syscall::epoll_wait(&self.epfd, &mut self.events, timeout)?;
        for i in 0..n {
            let event = self.events[i];
            let (fd, mask) = (event.u64 as RawFd, event.events);
            let failed = (libc::EPOLLERR | libc::EPOLLHUP) as u32;
            if mask & (libc::EPOLLIN as u32 | failed) != 0 {
                self.readable(fd);
            }
            if mask & (libc::EPOLLOUT as u32 | failed) != 0 {
                self.writable(fd);
            }
        }
        Ok(n)
    }

    pub fn reap(&mut self, batch: &mut Vec<Completion>) {
        for done in self.done.drain(..) {
            if !done.more() {
                self.in_flight -= 1;
            }
            batch.push(done);
        }
    }
}
