//! Readiness turned into completions: what a readable or writable descriptor means for the
//! one operation waiting on it.

use std::os::fd::RawFd;

use super::{Epoll, Reader, Writer, syscall};

impl Epoll {
    pub(super) fn readable(&mut self, fd: RawFd) {
        let Some((reader, token)) = self.watches.get(&fd).and_then(|w| w.reader) else {
            return;
        };
        let mut eight = [0u8; 8];
        let result = match reader {
            Reader::Datagrams => return self.receive(fd, token),
            Reader::Wake | Reader::Tick | Reader::Timer(_) => syscall::read(fd, &mut eight),
            Reader::StreamRead(s) => match self.streams.get_mut(usize::from(s)) {
                Some(m) => syscall::read(fd, &mut m.rx),
                None => -libc::EINVAL,
            },
            Reader::StreamRecv(s) => match self.streams.get_mut(usize::from(s)) {
                Some(m) => syscall::recv(fd, &mut m.rx),
                None => -libc::EINVAL,
            },
        };
        if result == -libc::EAGAIN {
            return;
        }
        let result = match reader {
            Reader::Tick => -libc::ETIME,
            Reader::Timer(t) => {
                if let Some(slot) = self.timers.get_mut(usize::from(t)) {
                    slot.armed = None;
                }
                -libc::ETIME
            }
            _ => result,
        };
        self.end_read(fd, token, result);
    }

    pub(super) fn writable(&mut self, fd: RawFd) {
        let Some((writer, token)) = self.watches.get(&fd).and_then(|w| w.writer) else {
            return;
        };
        let result = match writer {
            Writer::Connect => syscall::socket_error(fd),
            Writer::StreamSend(s) => match self.streams.get(usize::from(s)) {
                Some(m) => syscall::send(fd, &m.tx),
                None => -libc::EINVAL,
            },
        };
        if result == -libc::EAGAIN {
            return;
        }
        self.end_write(fd, token, result);
    }
}
