//! Descriptors passed between processes over a Unix stream socket (`SCM_RIGHTS`): how a
//! running ringgate hands its sockets to the next one.
//!
//! Each message carries some bytes and at most [`FDS_MAX`] descriptors (the kernel's
//! `SCM_MAX_FD` is 253). The receiver owns what it gets: descriptors come back as `OwnedFd`s,
//! opened close-on-exec.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;

use super::cvt;

/// Descriptors one message may carry (`SCM_MAX_FD`).
pub const FDS_MAX: usize = 253;

/// Bytes of control data a message with `n` descriptors needs.
fn space(n: usize) -> usize {
    // SAFETY: CMSG_SPACE is arithmetic on its argument; it touches no memory.
    unsafe { libc::CMSG_SPACE((n * size_of::<RawFd>()) as u32) as usize }
}

/// A zeroed control buffer of at least `bytes`, aligned for `cmsghdr` (whose `cmsg_len` is a
/// `size_t`): its words are `u64`s.
fn control_buffer(bytes: usize) -> Vec<u64> {
    vec![0u64; bytes.div_ceil(size_of::<u64>())]
}

/// Sends `bytes` (at least one) with `fds` (at most [`FDS_MAX`]) attached, as one message.
pub fn send(socket: &UnixStream, bytes: &[u8], fds: &[RawFd]) -> io::Result<()> {
    if bytes.is_empty() || fds.len() > FDS_MAX {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "1+ bytes, at most 253 fds",
        ));
    }
    let mut control = control_buffer(space(fds.len()));
    let mut iov = libc::iovec {
        iov_base: bytes.as_ptr().cast_mut().cast(),
        iov_len: bytes.len(),
    };
    // SAFETY: all-zero is a valid msghdr (null pointers, zero lengths).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if !fds.is_empty() {
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = space(fds.len()) as _;
        // SAFETY: the control buffer is CMSG_SPACE(fds) bytes (or a few more), 8-aligned as a
        // cmsghdr must be: room for one header and the descriptors; CMSG_FIRSTHDR of a msghdr
        // with that buffer points at its start, and CMSG_DATA after the header, leaving exactly
        // `fds.len()` descriptors of room, written unaligned.
        unsafe {
            let hdr = libc::CMSG_FIRSTHDR(&msg);
            (*hdr).cmsg_level = libc::SOL_SOCKET;
            (*hdr).cmsg_type = libc::SCM_RIGHTS;
            (*hdr).cmsg_len = libc::CMSG_LEN(size_of_val(fds) as u32) as _;
            let data = libc::CMSG_DATA(hdr).cast::<RawFd>();
            for (i, fd) in fds.iter().enumerate() {
                data.add(i).write_unaligned(*fd);
            }
        }
    }
    let mut sent = 0;
    while sent == 0 {
        // SAFETY: `msg` points at `iov` (the caller's bytes) and `control`, both alive across
        // the call; the kernel only reads them.
        let n = unsafe { libc::sendmsg(socket.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) };
        match cvt(n as libc::c_int) {
            Ok(n) => sent = n as usize,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    if sent < bytes.len() {
        // The descriptors went with the first byte; the rest follows as plain bytes.
        use std::io::Write;
        (&*socket).write_all(&bytes[sent..])?;
    }
    Ok(())
}

/// Receives into `buf` and appends any descriptors that came with the bytes to `fds`.
/// Returns the bytes received (0: the peer closed).
pub fn recv(socket: &UnixStream, buf: &mut [u8], fds: &mut Vec<OwnedFd>) -> io::Result<usize> {
    let mut control = control_buffer(space(FDS_MAX));
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: all-zero is a valid msghdr (null pointers, zero lengths).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = space(FDS_MAX) as _;
    let n = loop {
        // SAFETY: `msg` points at `buf` and `control`, both writable and alive across the
        // call, with their true lengths.
        let n = unsafe { libc::recvmsg(socket.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
        match cvt(n as libc::c_int) {
            Ok(n) => break n as usize,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    };
    // Taken into ownership before anything else: even a truncated message (this process out
    // of descriptors: MSG_CTRUNC) lists the ones the kernel did install, which must be closed.
    let mut received = Vec::new();
    // SAFETY: the kernel wrote `msg_controllen` bytes of well-formed control messages into
    // `control` (8-aligned, as cmsghdr needs); CMSG_FIRSTHDR/CMSG_NXTHDR walk only within
    // them, and each SCM_RIGHTS message's data holds (cmsg_len - CMSG_LEN(0)) /
    // size_of::<RawFd>() descriptors the kernel just installed in this process (a truncated
    // one's cmsg_len counts only those), which nothing else owns yet; they are read
    // unaligned.
    unsafe {
        let mut hdr = libc::CMSG_FIRSTHDR(&msg);
        while !hdr.is_null() {
            if (*hdr).cmsg_level == libc::SOL_SOCKET && (*hdr).cmsg_type == libc::SCM_RIGHTS {
                let bytes = (*hdr).cmsg_len as usize - libc::CMSG_LEN(0) as usize;
                let data = libc::CMSG_DATA(hdr).cast::<RawFd>();
                for i in 0..bytes / size_of::<RawFd>() {
                    received.push(OwnedFd::from_raw_fd(data.add(i).read_unaligned()));
                }
            }
            hdr = libc::CMSG_NXTHDR(&msg, hdr);
        }
    }
    if msg.msg_flags & libc::MSG_CTRUNC != 0 {
        // Dropping `received` closes what did arrive.
        return Err(io::Error::other("descriptors were truncated"));
    }
    fds.extend(received);
    Ok(n)
}

/// The user id of the process at the other end of `socket` (`SO_PEERCRED`).
pub fn peer_uid(socket: &UnixStream) -> io::Result<u32> {
    // SAFETY: all-zero is a valid ucred.
    let mut cred: libc::ucred = unsafe { std::mem::zeroed() };
    let mut len = size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: `cred` and `len` live across the call and `len` is `cred`'s exact size; the
    // kernel writes at most that many bytes.
    cvt(unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            std::ptr::from_mut(&mut cred).cast(),
            &mut len,
        )
    })?;
    Ok(cred.uid)
}

/// This process's effective user id.
pub fn own_uid() -> u32 {
    // SAFETY: geteuid takes nothing and cannot fail.
    unsafe { libc::geteuid() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::fd::AsFd;

    #[test]
    fn descriptors_cross_and_still_work() {
        let (a, b) = UnixStream::pair().unwrap();
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = udp.local_addr().unwrap().port();
        let fds: Vec<RawFd> = (0..FDS_MAX).map(|_| udp.as_raw_fd()).collect();
        send(&a, b"sockets", &fds).unwrap();
        let mut buf = [0u8; 64];
        let mut got = Vec::new();
        let n = recv(&b, &mut buf, &mut got).unwrap();
        assert_eq!(&buf[..n], b"sockets");
        assert_eq!(got.len(), FDS_MAX);
        // The received descriptor is the same socket: it has the same port.
        let same = std::net::UdpSocket::from(got.pop().unwrap());
        assert_eq!(same.local_addr().unwrap().port(), port);
        assert!(send(&a, b"x", &vec![udp.as_raw_fd(); FDS_MAX + 1]).is_err());
        // Plain bytes too.
        (&a).write_all(b"plain").unwrap();
        let mut plain = [0u8; 5];
        (&b).read_exact(&mut plain).unwrap();
        assert_eq!(&plain, b"plain");
        assert_eq!(peer_uid(&b).unwrap(), own_uid());
        let _ = a.as_fd();
    }
}
