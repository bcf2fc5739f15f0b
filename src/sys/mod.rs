//! The wall around the kernel: every `unsafe` in ringgate lives below this module.
//!
//! The worker talks to the kernel through one interface in ringgate's own words (`driver`:
//! completions, received datagrams, sends, streams and timers); each way of talking to it is a
//! folder behind that interface: `uring/`, an io_uring with a provided buffer ring (building the
//! ring, its buffer ring, the `msghdr`s of receives and replies, the memory it lends to streams
//! and timers). Beside them, one module per kernel object any driver uses: the tokens of lent
//! operations (`lent`), control messages (`cmsg`), socket addresses as the kernel lays them out
//! (`sockaddr`), sockets (`socket`), the wake-up `eventfd`, process limits (`limits`) and
//! descriptors passed to another process (`passfd`). Nothing outside this folder names a type of
//! the `io_uring` crate (`tests/layout.rs` checks that). Everything exported from here is safe to
//! call: the invariants that make the `unsafe` inside hold are kept by the types, not by their
//! callers.
//!
//! The wall knows the kernel and nothing else: no module here names a policy module of ringgate
//! (routing, sessions, the worker, the configuration, the `user_data` codec). `tests/layout.rs`
//! checks that.
#![allow(unsafe_code)]

pub mod cmsg;
pub mod driver;
pub mod epoll;
pub mod eventfd;
pub mod lent;
pub mod limits;
pub mod passfd;
pub mod sockaddr;
pub mod socket;
pub mod uring;
pub mod xdp;

use std::io;

/// Turns a libc `-1 and errno` return into an `io::Result`.
fn cvt(res: libc::c_int) -> io::Result<libc::c_int> {
    if res == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(res)
    }
}
