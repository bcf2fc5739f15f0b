//! The wall around the kernel: every `unsafe` in ringgate lives below this module.
//!
//! One module per kernel object: building a ring (`setup`), the ring and the memory its
//! operations point at (`driver`), the memory it lends to stream and timer operations
//! (`lent`), the provided buffer ring (`buf_ring`), the `msghdr`s of receives and replies
//! (`msghdr`) and their control messages (`cmsg`), socket addresses as the kernel lays them out (`sockaddr`), sockets (`socket`),
//! the wake-up `eventfd`, process limits (`limits`) and descriptors passed to another process
//! (`passfd`). Everything exported from here is safe to
//! call: the invariants that make the `unsafe` inside hold are kept by the types, not by their
//! callers.
//!
//! The wall knows the kernel and nothing else: no module here names a policy module of ringgate
//! (routing, sessions, the worker, the configuration, the `user_data` codec). `tests/layout.rs`
//! checks that.
#![allow(unsafe_code)]

pub mod buf_ring;
pub mod cmsg;
pub mod driver;
pub mod eventfd;
pub mod lent;
pub mod limits;
pub mod msghdr;
pub mod passfd;
pub mod setup;
pub mod sockaddr;
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
