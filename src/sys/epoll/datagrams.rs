//! The epoll driver's datagrams: receives that stay armed and read in `recvmmsg` batches into
//! the pool, one completion per datagram; sends on a session's connected socket at once;
//! replies queued and sent in `sendmmsg` batches; and the buffers' lease and recycling.

use std::io;
use std::net::IpAddr;
use std::os::fd::RawFd;

use super::{BATCH, Epoll, QueuedSend, RECV_BUDGET, Reader, refused, syscall};
use crate::sys::cmsg::{self, CONTROL_LEN};
use crate::sys::driver::{Received, RecvFault};
use crate::sys::sockaddr::RawSockAddr;

impl Epoll {
    pub fn recv_multishot(&mut self, fd: RawFd, token: u64) -> io::Result<bool> {
        self.read_on(fd, Reader::Datagrams, token)
    }

    pub fn send(
        &mut self,
        fd: RawFd,
        bid: u16,
        prefix: &[u8],
        len: usize,
        token: u64,
    ) -> io::Result<bool> {
        let start = if prefix.is_empty() {
            self.pool.offset()
        } else {
            self.pool
                .prefix(bid, prefix)
                .ok_or_else(|| refused("prefix larger than the headroom, or buffer not leased"))?
        };
        let bytes = self
            .pool
            .range(bid, start, prefix.len() + len)
            .ok_or_else(|| refused("buffer not leased"))?;
        let result = syscall::send(fd, bytes);
        self.at_once(token, result);
        Ok(false)
    }

    pub fn send_to(
        &mut self,
        fd: RawFd,
        bid: u16,
        len: usize,
        to: &RawSockAddr,
        from: Option<(IpAddr, bool)>,
        token: u64,
    ) -> io::Result<bool> {
        if self.pool.range(bid, self.pool.offset(), len).is_none() {
            return Err(refused("buffer not leased"));
        }
        self.sends.push(QueuedSend {
            fd,
            bid,
            len,
            to: *to,
            from,
            token,
        });
        self.in_flight += 1;
        Ok(false)
    }

    /// Sends the queued replies, consecutive ones on the same socket in one `sendmmsg`.
    pub(super) fn flush(&mut self) {
        if self.sends.is_empty() {
            return;
        }
        let mut sends = std::mem::take(&mut self.sends);
        let offset = self.pool.offset();
        for group in sends.chunk_by(|a, b| a.fd == b.fd) {
            for batch in group.chunks(BATCH) {
                let mut controls = [[0u8; CONTROL_LEN]; BATCH];
                let mut used = [0usize; BATCH];
                for ((s, c), u) in batch.iter().zip(&mut controls).zip(&mut used) {
                    *u = s.from.map_or(0, |(ip, v6)| cmsg::encode_source(c, ip, v6));
                }
                let pool = &self.pool;
                let out = batch
                    .iter()
                    .zip(controls.iter().zip(used))
                    .map(|(s, (c, u))| syscall::Out {
                        // Checked when queued, and the buffer is recycled only on this send's
                        // completion; were it missing, the result says 0 bytes left.
                        payload: pool.range(s.bid, offset, s.len).unwrap_or(&[]),
                        to: &s.to,
                        control: &c[..u],
                    });
                let mut results = [0i32; BATCH];
                let n = syscall::sendmmsg(batch[0].fd, out, &mut results);
                for (s, &result) in batch.iter().zip(&results[..n]) {
                    self.complete(s.token, result, None, false);
                }
            }
        }
        // Keep the allocation.
        sends.clear();
        self.sends = sends;
    }

    /// Reads what a socket has, in batches, one completion per datagram.
    pub(super) fn receive(&mut self, fd: RawFd, token: u64) {
        let mut budget = RECV_BUDGET;
        while budget > 0 {
            let want = budget.min(BATCH);
            let mut bids = std::mem::take(&mut self.bids);
            self.pool.take_free(want, &mut bids);
            if bids.is_empty() {
                self.bids = bids;
                return self.end_read(fd, token, -libc::ENOBUFS);
            }
            let mut got = std::mem::take(&mut self.got);
            let n = syscall::recvmmsg(fd, self.pool.slots(&bids), &mut got);
            if n < 0 {
                self.pool.untake(&bids);
                (self.bids, self.got) = (bids, got);
                if n != -libc::EAGAIN {
                    self.end_read(fd, token, n);
                }
                return;
            }
            let n = n as usize;
            for (&bid, &g) in bids.iter().zip(&got) {
                self.pool.received(bid, g);
                self.complete(token, g.len as i32, Some(bid), true);
            }
            self.pool.untake(&bids[n..]);
            (self.bids, self.got) = (bids, got);
            budget -= n.max(1);
            if n < want {
                return;
            }
        }
    }

    pub fn lease(&mut self, bid: u16) -> bool {
        self.pool.lease(bid)
    }

    pub fn recycle(&mut self, bid: u16) -> bool {
        self.pool.recycle(bid)
    }

    /// Recycled buffers are free for the next receive at once: nothing to publish.
    pub fn publish(&self) {}

    pub fn buffers_leased(&self) -> u32 {
        self.pool.out()
    }

    pub fn buffers(&self) -> u32 {
        self.pool.count()
    }

    pub fn received(&self, bid: u16, _filled: i32) -> Result<Received, RecvFault> {
        self.pool.datagram(bid)
    }

    pub fn payload(&self, bid: u16, len: usize) -> Option<&[u8]> {
        self.pool.range(bid, self.pool.offset(), len)
    }
}
