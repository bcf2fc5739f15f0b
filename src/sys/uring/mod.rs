//! The io_uring driver: the ring and every byte its operations point at.
//!
//! `Ring` owns the io_uring, the provided buffer ring, the receive header, the reply arena,
//! the reaper's timespec, the wake-up buffer and the memory it lends to stream and timer
//! operations (`sys::lent`). Each operation is a safe method here that points the kernel only
//! at memory this struct owns and keeps in place (boxed, never resized), so no caller can hand
//! the kernel a dangling pointer. Operations in flight are counted from push to final
//! completion (the first CQE without `IORING_CQE_F_MORE`); if the driver is dropped with any
//! still in flight, it leaks the memory they point at rather than free it under the kernel.
//! The ring is the first field, so it is closed before any of that memory is released.
//!
//! `user_data` is the caller's token, except values with [`LENT_BIT`] set, which the driver
//! issues for operations on lent memory (their methods are in `lent`) and decodes itself
//! when they complete. Completions leave as `sys::driver::Completion`s: nothing of the
//! io_uring crate crosses the wall.

use std::io;
use std::net::IpAddr;
use std::os::fd::RawFd;
use std::time::Duration;

use io_uring::{IoUring, cqueue, opcode, squeue, types};

mod buf_ring;
mod lent;
pub mod msghdr;
mod setup;
#[cfg(test)]
mod tests;

use self::buf_ring::BufRing;
use self::lent::LentMemory;
use self::msghdr::{SendSlots, payload_offset, recv_header};
pub use self::setup::{TaskRun, explain_setup_error};
use super::driver::{Completion, DriverConfig, Received, RecvFault};
use super::lent::{LENT_BIT, Lent, LentOp};
use super::sockaddr::RawSockAddr;

/// The largest provided buffer ring the kernel registers (`io_uring_register_pbuf_ring`).
pub const BUFFERS_MAX: u32 = buf_ring::ENTRIES_MAX;

/// The buffer group id of the worker's one buffer ring.
const BGID: u16 = 0;

pub struct Ring {
    // Field order matters: the ring is dropped (closed) before the memory below it.
    ring: IoUring,
    bufs: BufRing,
    sends: SendSlots,
    recv_hdr: Box<libc::msghdr>,
    /// Where the payload starts in every receive buffer (after the headers `recv_hdr` asks for).
    payload_offset: usize,
    tick: Box<types::Timespec>,
    wake_buf: Box<u64>,
    /// Stream and timer memory; its operations are in `sys::lent`.
    lent: LentMemory,
    in_flight: u64,
    task_run: TaskRun,
}

pub(super) fn refused(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, what.to_owned())
}

impl Ring {
    pub fn new(cfg: &DriverConfig) -> io::Result<Ring> {
        let (ring, task_run) = setup::build(cfg)?;
        // The control field only where it is used: the destination of a wildcard listener's
        // datagrams, or headroom for a prefix that would not fit without it.
        let control = cfg.recv_destination || cfg.headroom > payload_offset(false);
        let offset = payload_offset(control);
        let bufs = BufRing::new(cfg.buffer_count, cfg.payload_bytes + offset as u32)?;
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
        Ok(Ring {
            ring,
            sends: SendSlots::new(cfg.buffer_count),
            bufs,
            recv_hdr: Box::new(recv_header(control)),
            payload_offset: offset,
            tick: Box::new(
                types::Timespec::new()
                    .sec(cfg.tick.as_secs())
                    .nsec(cfg.tick.subsec_nanos()),
            ),
            wake_buf: Box::new(0),
            lent: LentMemory::new(cfg.streams, cfg.stream_rx_bytes, cfg.timers),
            in_flight: 0,
            task_run,
        })
    }

    /// The task-running mode the kernel accepted for this ring.
    pub fn task_run(&self) -> TaskRun {
        self.task_run
    }

    pub fn bufs(&self) -> &BufRing {
        &self.bufs
    }

    pub fn bufs_mut(&mut self) -> &mut BufRing {
        &mut self.bufs
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
    pub(super) unsafe fn push(&mut self, entry: squeue::Entry) -> io::Result<bool> {
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

    /// Refuses a caller's `user_data` that would be mistaken for the driver's own.
    fn check_caller(user_data: u64) -> io::Result<()> {
        if user_data & LENT_BIT != 0 {
            return Err(refused("user_data with the driver's bit set"));
        }
        Ok(())
    }

    /// Arms a multishot `recvmsg` on `fd`, selecting buffers from the buffer ring.
    pub fn recv_multishot(&mut self, fd: RawFd, user_data: u64) -> io::Result<bool> {
        Self::check_caller(user_data)?;
        let entry = opcode::RecvMsgMulti::new(types::Fd(fd), &*self.recv_hdr, BGID)
            .build()
            .user_data(user_data);
        // SAFETY: the header is boxed in `self` and lives until the ring is closed; buffers come
        // from the registered buffer ring, which does too.
        unsafe { self.push(entry) }
    }

    /// Sends `len` payload bytes of leased buffer `bid` on the connected socket `fd`, after
    /// `prefix` (written into the buffer's headroom, so the payload is not moved).
    pub fn send(
        &mut self,
        fd: RawFd,
        bid: u16,
        prefix: &[u8],
        len: usize,
        user_data: u64,
    ) -> io::Result<bool> {
        Self::check_caller(user_data)?;
        let start = self
            .payload_offset
            .checked_sub(prefix.len())
            .ok_or_else(|| refused("prefix larger than the headroom"))?;
        if !prefix.is_empty() && !self.bufs.write(bid, start, prefix) {
            return Err(refused("buffer not leased"));
        }
        let total = prefix.len() + len;
        let payload = self
            .bufs
            .range(bid, start, total)
            .ok_or_else(|| refused("buffer not leased"))?;
        let entry = opcode::Send::new(types::Fd(fd), payload, total as u32)
            .build()
            .user_data(user_data);
        // SAFETY: the payload lies inside leased buffer `bid` (checked above) in the buffer
        // mapping owned by `self`; the caller recycles the buffer only on this send's completion.
        unsafe { self.push(entry) }
    }

    /// Sends `len` payload bytes of leased buffer `bid` from socket `fd` to `to`, leaving from
    /// address `from` if given (`(address, whether fd is an IPv6 socket)`).
    pub fn send_to(
        &mut self,
        fd: RawFd,
        bid: u16,
        len: usize,
        to: &RawSockAddr,
        from: Option<(IpAddr, bool)>,
        user_data: u64,
    ) -> io::Result<bool> {
        Self::check_caller(user_data)?;
        let payload = self
            .bufs
            .range(bid, self.payload_offset, len)
            .ok_or_else(|| refused("buffer not leased"))?;
        let hdr = self
            .sends
            .prepare(bid, payload, len, to, from)
            .ok_or_else(|| refused("no send slot"))?;
        let entry = opcode::SendMsg::new(types::Fd(fd), hdr)
            .build()
            .user_data(user_data);
        // SAFETY: the header, iovec, address and control bytes are in buffer `bid`'s slot of the
        // boxed arena
        // owned by `self`, and the payload in leased buffer `bid`; the slot is rewritten only
        // for another send from the same buffer, which cannot happen before this one completes
        // and the buffer is recycled and received into again.
        unsafe { self.push(entry) }
    }

    /// Asks the kernel to cancel the operation issued with `target`.
    pub fn cancel(&mut self, target: u64, user_data: u64) -> io::Result<bool> {
        Self::check_caller(user_data)?;
        let entry = opcode::AsyncCancel::new(target)
            .build()
            .user_data(user_data);
        // SAFETY: a cancel carries no pointers.
        unsafe { self.push(entry) }
    }

    /// Cancels every operation on `fd` (a stream's connect, send and receive).
    pub fn cancel_fd(&mut self, fd: RawFd) -> io::Result<bool> {
        let entry = opcode::AsyncCancel2::new(types::CancelBuilder::fd(types::Fd(fd)).all())
            .build()
            .user_data(Lent::encode(Lent {
                op: LentOp::Cancel,
                tag: 0,
            }));
        // SAFETY: a cancel carries no pointers into memory.
        unsafe { self.push(entry) }
    }

    /// Arms the reaper's timeout, which completes with `-ETIME` after the configured tick.
    pub fn tick(&mut self, user_data: u64) -> io::Result<bool> {
        Self::check_caller(user_data)?;
        let entry = opcode::Timeout::new(&*self.tick)
            .build()
            .user_data(user_data);
        // SAFETY: the timespec is boxed in `self` and never changes after construction.
        unsafe { self.push(entry) }
    }

    /// Reads the wake-up eventfd `fd` into the driver's own 8-byte buffer.
    pub fn read_wake(&mut self, fd: RawFd, user_data: u64) -> io::Result<bool> {
        Self::check_caller(user_data)?;
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

    /// Hands queued operations to the kernel without waiting.
    pub fn submit(&mut self) -> io::Result<usize> {
        retry_interrupted(|| self.ring.submit())
    }

    /// Hands queued operations to the kernel and waits for at least one completion.
    pub fn submit_and_wait(&mut self) -> io::Result<usize> {
        retry_interrupted(|| self.ring.submit_and_wait(1))
    }

    /// Like [`Ring::submit_and_wait`], giving up after `timeout`.
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
    /// completion queue is released and may push new operations freely. The memory a finished
    /// lent operation pointed at is free again when this returns.
    pub fn reap(&mut self, batch: &mut Vec<Completion>) {
        for cqe in self.ring.completion() {
            let (token, flags) = (cqe.user_data(), cqe.flags());
            let more = cqueue::more(flags);
            if !more {
                self.in_flight -= 1;
                if let Some(lent) = Lent::decode(token) {
                    self.lent.release(lent.op);
                }
            }
            batch.push(Completion::new(
                token,
                cqe.result(),
                cqueue::buffer_select(flags),
                more,
            ));
        }
    }

    /// Takes the lease of buffer `bid`, which a completion named.
    pub fn lease(&mut self, bid: u16) -> bool {
        self.bufs.take(bid)
    }

    /// Gives leased buffer `bid` back to the kernel (published by [`Ring::publish`]).
    pub fn recycle(&mut self, bid: u16) -> bool {
        self.bufs.recycle(bid)
    }

    /// Publishes recycled buffers to the kernel, with one store.
    pub fn publish(&self) {
        self.bufs.publish();
    }

    pub fn buffers_leased(&self) -> u32 {
        self.bufs.leased()
    }

    pub fn buffers(&self) -> u32 {
        self.bufs.entries()
    }

    /// The datagram a receive completion with result `filled` put in leased buffer `bid`.
    pub fn received(&self, bid: u16, filled: i32) -> Result<Received, RecvFault> {
        let len = usize::try_from(filled).map_err(|_| RecvFault::Truncated)?;
        let buffer = self.bufs.get(bid, len).ok_or(RecvFault::NotLeased)?;
        msghdr::parse(buffer, &self.recv_hdr)
    }

    /// The first `len` payload bytes of leased buffer `bid`.
    pub fn payload(&self, bid: u16, len: usize) -> Option<&[u8]> {
        let buffer = self.bufs.get(bid, self.payload_offset + len)?;
        Some(&buffer[self.payload_offset..])
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        if self.in_flight != 0 {
            // The kernel may still write into these: never free them under it. This happens
            // only when a worker's shutdown drain timed out.
            let bufs = std::mem::replace(&mut self.bufs, leak_placeholder());
            std::mem::forget(bufs);
            std::mem::forget(std::mem::replace(&mut self.sends, SendSlots::new(0)));
            std::mem::forget(std::mem::replace(
                &mut self.recv_hdr,
                Box::new(recv_header(true)),
            ));
            std::mem::forget(std::mem::replace(&mut self.wake_buf, Box::new(0)));
            std::mem::forget(std::mem::replace(
                &mut self.tick,
                Box::new(types::Timespec::new()),
            ));
            std::mem::forget(std::mem::replace(&mut self.lent, LentMemory::new(0, 0, 0)));
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
