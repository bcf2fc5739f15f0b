//! The wall around the kernel: every `unsafe` in ringgate lives below this module.
//!
//! One module per kernel object: the ring and the memory its operations point at (`driver`),
//! the provided buffer ring (`buf_ring`), the `msghdr`s of receives and replies (`msghdr`),
//! sockets (`socket`), the wake-up `eventfd` and process limits (`limits`). Everything exported
//! from here is safe to call: the invariants that make the `unsafe` inside hold are kept by the
//! types, not by their callers.
#![allow(unsafe_code)]

pub mod buf_ring;
pub mod driver;
pub mod eventfd;
pub mod limits;
pub mod msghdr;
pub mod socket;

use std::io;

/// Turns a libc `-1 and errno` return into an `io::Result`.
fn cvt(res: libc::c_int) -> io::Result<libc::c_int> {
    if res == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(res)
    }
}
