//! The takeover's framing: newline-ended text lines over a Unix stream socket, some carrying a
//! descriptor. Descriptors travel in the same order as the lines that own them, at most
//! [`FDS_MAX`] to a message, and always with (or before) their line's bytes, so the reader
//! keeps them in a queue and gives each line that owns one the next in it.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use crate::sys::passfd::{self, FDS_MAX};

/// The longest line either side accepts (a held datagram of 64 KiB, in hex, fits).
pub const LINE_MAX: usize = 160 * 1024;

/// Bytes of lines one message carries at most, besides its descriptors.
const CHUNK_BYTES: usize = 64 * 1024;

/// The start of a peer's line, for an error message that must stay short.
pub fn truncated(line: &str) -> String {
    line.chars().take(80).collect()
}

pub struct Link {
    stream: UnixStream,
    /// Bytes received; those before `read` are lines already returned.
    inbox: Vec<u8>,
    read: usize,
    fds: VecDeque<OwnedFd>,
    /// Lines and descriptors waiting to be sent as one message.
    outbox: Vec<u8>,
    out_fds: Vec<RawFd>,
}

impl Link {
    pub fn new(stream: UnixStream) -> Link {
        Link {
            stream,
            inbox: Vec::new(),
            read: 0,
            fds: VecDeque::new(),
            outbox: Vec::new(),
            out_fds: Vec::new(),
        }
    }

    /// Sends one line (without descriptors) at once.
    pub fn send(&mut self, line: &str) -> io::Result<()> {
        self.queue(line, None)?;
        self.flush()
    }

    /// Queues `line`, with `fd` if it owns one; a full message goes out. The descriptor must
    /// stay open until [`Link::flush`] returns.
    pub fn queue(&mut self, line: &str, fd: Option<RawFd>) -> io::Result<()> {
        if line.len() >= LINE_MAX || line.contains('\n') {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "line too long"));
        }
        let full_fds = fd.is_some() && self.out_fds.len() == FDS_MAX;
        if full_fds || self.outbox.len() + line.len() >= CHUNK_BYTES {
            self.flush()?;
        }
        self.outbox.extend_from_slice(line.as_bytes());
        self.outbox.push(b'\n');
        self.out_fds.extend(fd);
        Ok(())
    }

    /// Sends what is queued as one message.
    pub fn flush(&mut self) -> io::Result<()> {
        if self.outbox.is_empty() {
            return Ok(());
        }
        passfd::send(&self.stream, &self.outbox, &self.out_fds)?;
        self.outbox.clear();
        self.out_fds.clear();
        Ok(())
    }

    /// The next line (without its newline), waiting at most until `deadline`. An end of
    /// stream, a line over [`LINE_MAX`] or one that is not UTF-8 is an error.
    pub fn line(&mut self, deadline: Instant) -> io::Result<String> {
        loop {
            let unread = &self.inbox[self.read..];
            if let Some(end) = unread.iter().position(|&b| b == b'\n') {
                let line = unread[..end].to_vec();
                self.read += end + 1;
                return String::from_utf8(line)
                    .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "not UTF-8"));
            }
            if unread.len() > LINE_MAX {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "line too long"));
            }
            // Lines already returned go before more is received (never a copy per line).
            self.inbox.drain(..self.read);
            self.read = 0;
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "timed out"));
            }
            self.stream
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))?;
            let filled = self.inbox.len();
            self.inbox.resize(filled + CHUNK_BYTES, 0);
            let mut fds = Vec::new();
            let received = passfd::recv(&self.stream, &mut self.inbox[filled..], &mut fds);
            self.fds.extend(fds);
            let n = match received {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.inbox.truncate(filled);
                    return Err(io::Error::new(io::ErrorKind::TimedOut, "timed out"));
                }
                Err(e) => {
                    self.inbox.truncate(filled);
                    return Err(e);
                }
            };
            self.inbox.truncate(filled + n);
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the other process closed the connection",
                ));
            }
        }
    }

    /// The descriptor of the line just read, for a line that owns one.
    pub fn fd(&mut self) -> io::Result<OwnedFd> {
        self.fds.pop_front().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                "a line came without its descriptor",
            )
        })
    }

    /// Descriptors received that no line has claimed yet.
    pub fn unclaimed_fds(&self) -> usize {
        self.fds.len()
    }

    /// The connection's descriptor, for settings of this process that need one.
    pub fn as_fd(&self) -> BorrowedFd<'_> {
        self.stream.as_fd()
    }

    /// Bounds writes: a reader that stops reading cannot hold the writer for longer.
    pub fn write_timeout(&self, timeout: Duration) -> io::Result<()> {
        self.stream.set_write_timeout(Some(timeout))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn lines_keep_their_descriptors_across_messages() {
        let (a, b) = UnixStream::pair().unwrap();
        let sockets: Vec<std::net::UdpSocket> = (0..400)
            .map(|_| std::net::UdpSocket::bind("127.0.0.1:0").unwrap())
            .collect();
        let writer = std::thread::spawn(move || {
            let mut link = Link::new(a);
            for (i, s) in sockets.iter().enumerate() {
                link.queue(&format!("S {i}"), Some(s.as_raw_fd())).unwrap();
                // Lines without descriptors in between, one of them long.
                if i % 100 == 0 {
                    link.queue(&"x".repeat(50_000), None).unwrap();
                }
            }
            link.send("END").unwrap();
            sockets
                .iter()
                .map(|s| s.local_addr().unwrap())
                .collect::<Vec<_>>()
        });
        let mut link = Link::new(b);
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut got = Vec::new();
        loop {
            let line = link.line(deadline).unwrap();
            if line == "END" {
                break;
            }
            if line.starts_with('S') {
                let fd = link.fd().unwrap();
                got.push(std::net::UdpSocket::from(fd).local_addr().unwrap());
            }
        }
        assert_eq!(got, writer.join().unwrap());
        assert!(link.line(deadline).is_err(), "the writer is gone");
    }
}
