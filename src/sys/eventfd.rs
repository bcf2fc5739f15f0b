//! The eventfd that wakes a worker blocked in `io_uring_enter` (shutdown).

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{FromRawFd, OwnedFd};

use super::cvt;

pub fn eventfd() -> io::Result<OwnedFd> {
    // SAFETY: eventfd takes no pointers; the returned descriptor is checked by `cvt`.
    let fd = cvt(unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) })?;
    // SAFETY: `fd` was just created, is valid, and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Adds one to an eventfd's counter, completing a pending read on it.
pub fn signal(fd: &File) -> io::Result<()> {
    match (&*fd).write(&1u64.to_ne_bytes()) {
        Ok(_) => Ok(()),
        // The counter is saturated: a wake-up is already pending.
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
        Err(e) => Err(e),
    }
}
