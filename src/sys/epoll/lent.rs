//! The epoll driver's streams and timers (see `sys::lent`): a connect or send that cannot
//! finish at once waits for its socket to be writable, a receive or read for it to be
//! readable, a timer for its timerfd; each ends in one completion named by its `Lent` token.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::time::Duration;

use super::{Epoll, Reader, StreamMem, Writer, refused, syscall};
use crate::sys::lent::{Lent, LentOp};

impl Epoll {
    fn lent(op: LentOp, tag: u32) -> u64 {
        Lent { op, tag }.encode()
    }

    fn stream(&mut self, stream: u16) -> io::Result<&mut StreamMem> {
        self.streams
            .get_mut(usize::from(stream))
            .ok_or_else(|| refused("no such stream"))
    }

    pub fn stream_connect(
        &mut self,
        stream: u16,
        fd: RawFd,
        to: SocketAddr,
        tag: u32,
    ) -> io::Result<bool> {
        self.stream(stream)?;
        let token = Self::lent(LentOp::Connect { stream }, tag);
        match syscall::connect(fd, to) {
            r if r == -libc::EINPROGRESS => self.write_on(fd, Writer::Connect, token),
            r => {
                self.at_once(token, r);
                Ok(false)
            }
        }
    }

    pub fn stream_send(
        &mut self,
        stream: u16,
        fd: RawFd,
        bytes: Vec<u8>,
        tag: u32,
    ) -> io::Result<bool> {
        let token = Self::lent(LentOp::Send { stream }, tag);
        if self.watches.get(&fd).is_some_and(|w| w.writer.is_some()) {
            return Err(refused("a send on that stream is in flight"));
        }
        let m = self.stream(stream)?;
        m.tx = bytes;
        match syscall::send(fd, &m.tx) {
            r if r == -libc::EAGAIN => self.write_on(fd, Writer::StreamSend(stream), token),
            r => {
                self.at_once(token, r);
                Ok(false)
            }
        }
    }

    pub fn stream_sent(&mut self, stream: u16) -> Vec<u8> {
        match self.streams.get_mut(usize::from(stream)) {
            Some(m) => std::mem::take(&mut m.tx),
            None => Vec::new(),
        }
    }

    pub fn stream_recv(&mut self, stream: u16, fd: RawFd, tag: u32) -> io::Result<bool> {
        self.stream(stream)?;
        let token = Self::lent(LentOp::Recv { stream }, tag);
        self.read_on(fd, Reader::StreamRecv(stream), token)
    }

    pub fn stream_read(&mut self, stream: u16, fd: RawFd, tag: u32) -> io::Result<bool> {
        self.stream(stream)?;
        let token = Self::lent(LentOp::Read { stream }, tag);
        self.read_on(fd, Reader::StreamRead(stream), token)
    }

    pub fn stream_received(&self, stream: u16, len: usize) -> &[u8] {
        match self.streams.get(usize::from(stream)) {
            Some(m) => &m.rx[..len.min(m.rx.len())],
            None => &[],
        }
    }

    pub fn cancel_fd(&mut self, fd: RawFd) -> io::Result<bool> {
        self.cancel_on(fd, |_| true);
        self.at_once(Self::lent(LentOp::Cancel, 0), 0);
        Ok(false)
    }

    pub fn timer(&mut self, timer: u16, after: Duration, tag: u32) -> io::Result<bool> {
        let token = Self::lent(LentOp::Timer { timer }, tag);
        let slot = self
            .timers
            .get_mut(usize::from(timer))
            .ok_or_else(|| refused("no such timer"))?;
        if slot.armed.is_some() {
            return Err(refused("that timer is already armed"));
        }
        let fd = slot.fd.as_raw_fd();
        // Watched first: a timer armed with nothing waiting on it would stay "armed" for good.
        self.read_on(fd, Reader::Timer(timer), token)?;
        let slot = &mut self.timers[usize::from(timer)];
        if let Err(e) = syscall::timerfd_set(&slot.fd, Some(after)) {
            self.cancel_on(fd, |t| t == token);
            // The cancel's completion stands for the failed arm; the caller sees the error.
            return Err(e);
        }
        slot.armed = Some(token);
        Ok(false)
    }

    pub fn cancel_timer(&mut self, timer: u16) -> io::Result<bool> {
        match self.timers.get(usize::from(timer)).and_then(|t| t.armed) {
            Some(armed) => self.cancel(armed, Self::lent(LentOp::Cancel, 0)),
            None => Ok(false),
        }
    }
}
