//! The memory an io_uring lends to stream and timer operations (see `sys::lent` for what their
//! completions say), and those operations. Each buffer is busy from the push of the operation
//! that points at it until that operation's final completion, and nothing reads, rewrites or
//! frees it meanwhile.

use std::io;
use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::time::Duration;

use io_uring::types::{self, Timespec};
use io_uring::{opcode, squeue};

use super::{Ring, refused};
use crate::sys::lent::{Lent, LentOp};
use crate::sys::sockaddr::RawSockAddr;

/// The memory of one stream's operations. Each buffer is busy from the push of the operation
/// that points at it until that operation's final completion is reaped.
pub(super) struct Stream {
    pub addr: RawSockAddr,
    pub addr_busy: bool,
    pub tx: Vec<u8>,
    pub tx_busy: bool,
    pub rx: Box<[u8]>,
    pub rx_busy: bool,
}

impl Stream {
    pub fn new(rx_bytes: usize) -> Stream {
        Stream {
            addr: RawSockAddr::encode(SocketAddr::from(([0, 0, 0, 0], 0))),
            addr_busy: false,
            tx: Vec::new(),
            tx_busy: false,
            rx: vec![0; rx_bytes].into_boxed_slice(),
            rx_busy: false,
        }
    }
}

/// One timer's timespec, busy while its timeout is in flight.
pub(super) struct Timer {
    pub ts: Timespec,
    pub busy: bool,
    /// The `user_data` it was armed with, so it can be cancelled.
    pub armed: u64,
}

impl Timer {
    pub fn new() -> Timer {
        Timer {
            ts: Timespec::new(),
            busy: false,
            armed: 0,
        }
    }

    pub fn set(&mut self, after: Duration) {
        self.ts = Timespec::new()
            .sec(after.as_secs())
            .nsec(after.subsec_nanos());
    }
}

/// Every stream and timer of a ring. Boxed slices, allocated once and never resized, so the
/// addresses the kernel holds stay put.
pub(super) struct LentMemory {
    pub streams: Box<[Stream]>,
    pub timers: Box<[Timer]>,
}

impl LentMemory {
    pub fn new(streams: usize, rx_bytes: usize, timers: usize) -> LentMemory {
        LentMemory {
            streams: (0..streams).map(|_| Stream::new(rx_bytes)).collect(),
            timers: (0..timers).map(|_| Timer::new()).collect(),
        }
    }

    /// The flag that guards the memory `op` points at; `None` for an index out of range or
    /// an operation that points at nothing.
    pub fn busy(&mut self, op: LentOp) -> Option<&mut bool> {
        match op {
            LentOp::Connect { stream } => {
                Some(&mut self.streams.get_mut(usize::from(stream))?.addr_busy)
            }
            LentOp::Send { stream } => {
                Some(&mut self.streams.get_mut(usize::from(stream))?.tx_busy)
            }
            LentOp::Recv { stream } | LentOp::Read { stream } => {
                Some(&mut self.streams.get_mut(usize::from(stream))?.rx_busy)
            }
            LentOp::Timer { timer } => Some(&mut self.timers.get_mut(usize::from(timer))?.busy),
            LentOp::Cancel => None,
        }
    }

    /// Marks the memory a finished operation pointed at free again.
    pub fn release(&mut self, op: LentOp) {
        if let Some(busy) = self.busy(op) {
            *busy = false;
        }
    }
}

impl Ring {
    fn lent(op: LentOp, tag: u32) -> u64 {
        Lent { op, tag }.encode()
    }

    /// Pushes `entry`, an operation on lent memory, marking that memory busy until the
    /// operation's final completion is reaped (see [`Ring::reap`]).
    ///
    /// # Safety
    /// `entry` may point only into the lent memory `op` names, which must not be busy.
    unsafe fn push_lent(&mut self, op: LentOp, entry: squeue::Entry) -> io::Result<bool> {
        if let Some(busy) = self.lent.busy(op) {
            *busy = true;
        }
        // SAFETY: forwarded from this function's contract; the memory is boxed in `self`,
        // stays put, and nothing rewrites, reads or drops it while it is marked busy.
        let pushed = unsafe { self.push(entry) };
        if pushed.is_err() {
            self.lent.release(op);
        }
        pushed
    }

    /// Connects stream `stream`'s socket `fd` to `to`.
    pub fn stream_connect(
        &mut self,
        stream: u16,
        fd: RawFd,
        to: SocketAddr,
        tag: u32,
    ) -> io::Result<bool> {
        let s = self.free_stream(stream, |s| s.addr_busy)?;
        s.addr = RawSockAddr::encode(to);
        let len = s.addr.as_bytes().len() as libc::socklen_t;
        let entry = opcode::Connect::new(types::Fd(fd), std::ptr::from_ref(&s.addr).cast(), len)
            .build()
            .user_data(Self::lent(LentOp::Connect { stream }, tag));
        // SAFETY: the entry points only at this stream's address, checked free above.
        unsafe { self.push_lent(LentOp::Connect { stream }, entry) }
    }

    /// Sends `bytes` on stream `stream`'s socket `fd`. The driver keeps the bytes until the
    /// completion; [`Ring::stream_sent`] gives them back.
    pub fn stream_send(
        &mut self,
        stream: u16,
        fd: RawFd,
        bytes: Vec<u8>,
        tag: u32,
    ) -> io::Result<bool> {
        let s = self.free_stream(stream, |s| s.tx_busy)?;
        s.tx = bytes;
        let entry = opcode::Send::new(types::Fd(fd), s.tx.as_ptr(), s.tx.len() as u32)
            .build()
            .user_data(Self::lent(LentOp::Send { stream }, tag));
        // SAFETY: the entry points only at this stream's send buffer (a heap allocation the
        // stream owns and does not touch while busy), checked free above.
        unsafe { self.push_lent(LentOp::Send { stream }, entry) }
    }

    /// The bytes of stream `stream`'s last send, once it completed (or was refused).
    pub fn stream_sent(&mut self, stream: u16) -> Vec<u8> {
        match self.lent.streams.get_mut(usize::from(stream)) {
            Some(s) if !s.tx_busy => std::mem::take(&mut s.tx),
            _ => Vec::new(),
        }
    }

    /// Receives on stream `stream`'s socket `fd` into the stream's buffer.
    pub fn stream_recv(&mut self, stream: u16, fd: RawFd, tag: u32) -> io::Result<bool> {
        let s = self.free_stream(stream, |s| s.rx_busy)?;
        let entry = opcode::Recv::new(types::Fd(fd), s.rx.as_mut_ptr(), s.rx.len() as u32)
            .build()
            .user_data(Self::lent(LentOp::Recv { stream }, tag));
        // SAFETY: the entry points only at this stream's receive buffer, checked free above.
        unsafe { self.push_lent(LentOp::Recv { stream }, entry) }
    }

    /// Reads from `fd` (an eventfd, a pipe: not a socket) into stream `stream`'s buffer.
    pub fn stream_read(&mut self, stream: u16, fd: RawFd, tag: u32) -> io::Result<bool> {
        let s = self.free_stream(stream, |s| s.rx_busy)?;
        let entry = opcode::Read::new(types::Fd(fd), s.rx.as_mut_ptr(), s.rx.len() as u32)
            .build()
            .user_data(Self::lent(LentOp::Read { stream }, tag));
        // SAFETY: the entry points only at this stream's receive buffer, checked free above.
        unsafe { self.push_lent(LentOp::Read { stream }, entry) }
    }

    /// The first `len` bytes stream `stream`'s last receive wrote, once it completed.
    pub fn stream_received(&self, stream: u16, len: usize) -> &[u8] {
        match self.lent.streams.get(usize::from(stream)) {
            Some(s) if !s.rx_busy => &s.rx[..len.min(s.rx.len())],
            _ => &[],
        }
    }

    fn free_stream(&mut self, stream: u16, busy: fn(&Stream) -> bool) -> io::Result<&mut Stream> {
        match self.lent.streams.get_mut(usize::from(stream)) {
            None => Err(refused("no such stream")),
            Some(s) if busy(s) => Err(refused("an operation on that buffer is in flight")),
            Some(s) => Ok(s),
        }
    }

    /// Arms timer `timer` to complete (with `-ETIME`) after `after`. One at a time per timer.
    pub fn timer(&mut self, timer: u16, after: Duration, tag: u32) -> io::Result<bool> {
        let t = match self.lent.timers.get_mut(usize::from(timer)) {
            None => return Err(refused("no such timer")),
            Some(t) if t.busy => return Err(refused("that timer is already armed")),
            Some(t) => t,
        };
        t.set(after);
        t.armed = Self::lent(LentOp::Timer { timer }, tag);
        let entry = opcode::Timeout::new(&t.ts).build().user_data(t.armed);
        // SAFETY: the timespec is in the boxed timer slice owned by `self`, rewritten only
        // while the timer is not busy.
        unsafe { self.push_lent(LentOp::Timer { timer }, entry) }
    }

    /// Cancels timer `timer` if it is armed.
    pub fn cancel_timer(&mut self, timer: u16) -> io::Result<bool> {
        match self.lent.timers.get(usize::from(timer)) {
            Some(t) if t.busy => {
                let entry = opcode::AsyncCancel::new(t.armed)
                    .build()
                    .user_data(Self::lent(LentOp::Cancel, 0));
                // SAFETY: a cancel carries no pointers.
                unsafe { self.push(entry) }
            }
            _ => Ok(false),
        }
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_frees_only_the_named_buffer() {
        let mut m = LentMemory::new(2, 8, 1);
        m.streams[1].rx_busy = true;
        m.streams[1].tx_busy = true;
        m.timers[0].busy = true;
        m.release(LentOp::Recv { stream: 1 });
        assert!(!m.streams[1].rx_busy && m.streams[1].tx_busy);
        m.release(LentOp::Timer { timer: 0 });
        assert!(!m.timers[0].busy);
        // Out of range: nothing to free, nothing panics.
        m.release(LentOp::Send { stream: 9 });
        m.release(LentOp::Timer { timer: 9 });
    }
}
