//! The system calls the epoll driver makes, each a safe function over owned or borrowed
//! memory: epoll itself, `recvmmsg`/`sendmmsg` in batches, timerfds, and the plain stream calls.
//! Every `unsafe` block of the driver is here, each argument justified where it is passed.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

use super::BATCH;
use crate::sys::cvt;
use crate::sys::sockaddr::RawSockAddr;

/// `-errno` of the last failed call, as a completion's result.
pub(super) fn neg_errno() -> i32 {
    -io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

/// A result of a `ssize_t` call as a completion's result: bytes, or `-errno`.
fn res(n: isize) -> i32 {
    if n < 0 {
        neg_errno()
    } else {
        i32::try_from(n).unwrap_or(i32::MAX)
    }
}

pub(super) fn epoll_create() -> io::Result<OwnedFd> {
    // SAFETY: takes no pointers; the returned descriptor is checked by `cvt`.
    let fd = cvt(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
    // SAFETY: `fd` was just created and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Adds, changes or removes (`events` 0 with `op` `EPOLL_CTL_DEL`) `fd`'s interest.
pub(super) fn epoll_ctl(epfd: &OwnedFd, op: i32, fd: RawFd, events: u32) -> io::Result<()> {
    let mut event = libc::epoll_event {
        events,
        u64: fd as u64,
    };
    // SAFETY: `event` lives on this stack frame for the call; the kernel copies it.
    cvt(unsafe { libc::epoll_ctl(epfd.as_raw_fd(), op, fd, &mut event) })?;
    Ok(())
}

/// Waits for readiness into `events` (its length is the most reported at once); `None` waits
/// indefinitely. Returns how many were filled; an interrupted wait fills none.
pub(super) fn epoll_wait(
    epfd: &OwnedFd,
    events: &mut [libc::epoll_event],
    timeout: Option<Duration>,
) -> io::Result<usize> {
    let ms = match timeout {
        None => -1,
        Some(t) => i32::try_from(t.as_micros().div_ceil(1000)).unwrap_or(i32::MAX),
    };
    let max = i32::try_from(events.len()).unwrap_or(i32::MAX);
    // SAFETY: `events` is a live, writable slice of `max` entries for the call's duration.
    let n = unsafe { libc::epoll_wait(epfd.as_raw_fd(), events.as_mut_ptr(), max, ms) };
    match cvt(n) {
        Ok(n) => Ok(n as usize),
        Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(0),
        Err(e) => Err(e),
    }
}

/// A one-shot timerfd, disarmed.
pub(super) fn timerfd() -> io::Result<OwnedFd> {
    // SAFETY: takes no pointers; the returned descriptor is checked by `cvt`.
    let fd = cvt(unsafe {
        libc::timerfd_create(
            libc::CLOCK_MONOTONIC,
            libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
        )
    })?;
    // SAFETY: `fd` was just created and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Arms a timerfd to expire once after `after` (rounded up to a nanosecond), or disarms it
/// (`None`).
pub(super) fn timerfd_set(fd: &OwnedFd, after: Option<Duration>) -> io::Result<()> {
    let after = after.map(|d| d.max(Duration::from_nanos(1)));
    let value = libc::timespec {
        tv_sec: after.map_or(0, |d| d.as_secs() as libc::time_t),
        tv_nsec: after.map_or(0, |d| d.subsec_nanos() as libc::c_long),
    };
    let spec = libc::itimerspec {
        it_interval: libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        },
        it_value: value,
    };
    // SAFETY: `spec` lives on this stack frame for the call; the old value is not asked for.
    cvt(unsafe { libc::timerfd_settime(fd.as_raw_fd(), 0, &spec, std::ptr::null_mut()) })?;
    Ok(())
}

/// `read(2)` into `buf`: bytes, or `-errno`.
pub(super) fn read(fd: RawFd, buf: &mut [u8]) -> i32 {
    // SAFETY: `buf` is a live, writable slice of `buf.len()` bytes for the call's duration.
    res(unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) })
}

/// `recv(2)` without waiting: bytes (0 at the end of a stream), or `-errno`.
pub(super) fn recv(fd: RawFd, buf: &mut [u8]) -> i32 {
    // SAFETY: `buf` is a live, writable slice of `buf.len()` bytes for the call's duration.
    res(unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) })
}

/// `send(2)` without waiting (and without SIGPIPE): bytes sent, or `-errno`.
pub(super) fn send(fd: RawFd, buf: &[u8]) -> i32 {
    let flags = libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL;
    // SAFETY: `buf` is a live slice of `buf.len()` bytes for the call's duration.
    res(unsafe { libc::send(fd, buf.as_ptr().cast(), buf.len(), flags) })
}

/// `connect(2)` on a non-blocking socket: 0, or `-errno` (`-EINPROGRESS`: wait for writable).
pub(super) fn connect(fd: RawFd, to: SocketAddr) -> i32 {
    let raw = RawSockAddr::encode(to);
    let len = raw.as_bytes().len() as libc::socklen_t;
    // SAFETY: `raw` is an encoded sockaddr of `len` bytes on this stack frame; the kernel copies
    // it during the call.
    let r = unsafe { libc::connect(fd, std::ptr::from_ref(&raw).cast(), len) };
    if r < 0 { neg_errno() } else { 0 }
}

/// A connecting socket's outcome (`SO_ERROR`): 0, or `-errno`.
pub(super) fn socket_error(fd: RawFd) -> i32 {
    let mut err: libc::c_int = 0;
    let mut len = size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `err` and `len` are on this stack frame and sized as the option requires.
    let r = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_ERROR,
            std::ptr::from_mut(&mut err).cast(),
            &mut len,
        )
    };
    if r < 0 { neg_errno() } else { -err }
}

/// One datagram of a `recvmmsg`/`sendmmsg` batch: where its payload, address and control bytes
/// are.
pub(super) struct Slot<'a> {
    pub payload: &'a mut [u8],
    pub name: &'a mut [u8],
    pub control: &'a mut [u8],
}

/// What the kernel said of one received datagram.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Got {
    pub len: u32,
    pub namelen: u32,
    pub controllen: u32,
    pub flags: i32,
}

/// Receives up to [`BATCH`] datagrams on `fd` without waiting, one into each of `slots`:
/// how many, or `-errno`. The headers live on this stack frame: no allocation per batch.
pub(super) fn recvmmsg<'a>(
    fd: RawFd,
    slots: impl Iterator<Item = Slot<'a>>,
    got: &mut Vec<Got>,
) -> i32 {
    let mut iovs = [libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    }; BATCH];
    let mut hdrs = [zeroed_mmsghdr(); BATCH];
    let mut n = 0;
    for s in slots.take(BATCH) {
        iovs[n] = libc::iovec {
            iov_base: s.payload.as_mut_ptr().cast(),
            iov_len: s.payload.len(),
        };
        let h = &mut hdrs[n].msg_hdr;
        h.msg_name = s.name.as_mut_ptr().cast();
        h.msg_namelen = s.name.len() as libc::socklen_t;
        if !s.control.is_empty() {
            h.msg_control = s.control.as_mut_ptr().cast();
            h.msg_controllen = s.control.len() as _;
        }
        n += 1;
    }
    for (h, iov) in hdrs[..n].iter_mut().zip(iovs.iter_mut()) {
        h.msg_hdr.msg_iov = iov;
        h.msg_hdr.msg_iovlen = 1;
    }
    // SAFETY: the first `n` headers point at iovecs in `iovs` (this frame, not moved after the
    // pointers were taken) and at name, control and payload bytes the slots borrowed mutably
    // for `'a`, which outlives this call; the kernel writes at most the lengths given.
    let r = unsafe {
        libc::recvmmsg(
            fd,
            hdrs.as_mut_ptr(),
            n as libc::c_uint,
            libc::MSG_DONTWAIT,
            std::ptr::null_mut(),
        )
    };
    if r < 0 {
        return neg_errno();
    }
    got.clear();
    got.extend(hdrs[..r as usize].iter().map(|h| Got {
        len: h.msg_len,
        namelen: h.msg_hdr.msg_namelen,
        controllen: h.msg_hdr.msg_controllen as u32,
        flags: h.msg_hdr.msg_flags,
    }));
    r
}

/// One datagram to send with `sendmmsg`.
pub(super) struct Out<'a> {
    pub payload: &'a [u8],
    pub to: &'a RawSockAddr,
    pub control: &'a [u8],
}

/// Sends up to [`BATCH`] datagrams of `out` on `fd` without waiting, every one in order: a
/// datagram that cannot leave gets its `-errno` and the rest are tried after it. Writes each
/// one's result (bytes sent, or `-errno`) to `results` and returns how many there were.
pub(super) fn sendmmsg<'a>(
    fd: RawFd,
    out: impl Iterator<Item = Out<'a>>,
    results: &mut [i32; BATCH],
) -> usize {
    let mut iovs = [libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    }; BATCH];
    let mut hdrs = [zeroed_mmsghdr(); BATCH];
    let mut n = 0;
    for o in out.take(BATCH) {
        iovs[n] = libc::iovec {
            iov_base: o.payload.as_ptr().cast_mut().cast(),
            iov_len: o.payload.len(),
        };
        let h = &mut hdrs[n].msg_hdr;
        h.msg_name = std::ptr::from_ref(o.to).cast_mut().cast();
        h.msg_namelen = o.to.as_bytes().len() as libc::socklen_t;
        if !o.control.is_empty() {
            h.msg_control = o.control.as_ptr().cast_mut().cast();
            h.msg_controllen = o.control.len() as _;
        }
        n += 1;
    }
    for (h, iov) in hdrs[..n].iter_mut().zip(iovs.iter_mut()) {
        h.msg_hdr.msg_iov = iov;
        h.msg_hdr.msg_iovlen = 1;
    }
    let flags = libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL;
    let mut i = 0;
    while i < n {
        // SAFETY: headers `i..n` point at iovecs in `iovs` (this frame, not moved after the
        // pointers were taken) and at payload, address and control bytes borrowed from `out`
        // for `'a`, which outlives this call; the kernel only reads them (the const-to-mut
        // casts are what msghdr's C type asks for).
        let r =
            unsafe { libc::sendmmsg(fd, hdrs[i..].as_mut_ptr(), (n - i) as libc::c_uint, flags) };
        if r > 0 {
            for k in i..i + r as usize {
                results[k] = i32::try_from(hdrs[k].msg_len).unwrap_or(i32::MAX);
            }
            i += r as usize;
        } else {
            // The first could not leave: say so, go on with the next.
            results[i] = if r < 0 { neg_errno() } else { -libc::EIO };
            i += 1;
        }
    }
    n
}

fn zeroed_mmsghdr() -> libc::mmsghdr {
    // SAFETY: mmsghdr is a plain C struct for which all-zero bytes (null pointers, zero
    // lengths) is a valid value.
    unsafe { std::mem::zeroed() }
}
