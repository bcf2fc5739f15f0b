//! The `msghdr`s ringgate's receives and replies point the kernel at.
//!
//! Receives: every multishot `recvmsg` (listener and sessions) uses one header that reserves
//! [`SOCKADDR_MAX`] bytes for the source address and [`CONTROL_LEN`] for control data (the
//! destination a wildcard listener's datagram was sent to), so every received buffer has the
//! same layout: a 16-byte `io_uring_recvmsg_out`, the address field, the control field, then
//! the payload at [`PAYLOAD_OFFSET`]. Once parsed, the bytes before the payload are headroom a
//! send may prefix to it (a PROXY protocol header) without moving the payload.
//!
//! Replies: a `sendmsg` needs a header, an iovec, a destination address and perhaps a control
//! message (the source to leave from) that stay put until its completion. Every reply is sent
//! from exactly one leased receive buffer, so the arena has one [`SendSlot`] per buffer id and a
//! reply's slot is its buffer's: it cannot be reused before the buffer is recycled, which
//! happens on the reply's completion.

use std::net::IpAddr;

use super::cmsg::{self, CONTROL_LEN};
use super::sockaddr::{RawSockAddr, SOCKADDR_MAX};

/// `sizeof(struct io_uring_recvmsg_out)`.
pub const RECVMSG_OUT_LEN: usize = 16;
/// Where the payload starts in every received buffer.
pub const PAYLOAD_OFFSET: usize = RECVMSG_OUT_LEN + SOCKADDR_MAX + CONTROL_LEN;

fn zeroed_header() -> libc::msghdr {
    // SAFETY: msghdr is a plain C struct for which all-zero bytes (null pointers, zero lengths)
    // is a valid value; some libcs add private padding fields, which is why it is not built with
    // a struct literal.
    unsafe { std::mem::zeroed() }
}

/// The header every multishot `recvmsg` is armed with (only its lengths matter to the kernel:
/// the buffers come from the buffer ring).
pub fn recv_header() -> libc::msghdr {
    let mut hdr = zeroed_header();
    hdr.msg_namelen = SOCKADDR_MAX as libc::socklen_t;
    hdr.msg_controllen = CONTROL_LEN as _;
    hdr
}

/// One reply's `sendmsg` state.
struct SendSlot {
    hdr: libc::msghdr,
    iov: libc::iovec,
    to: RawSockAddr,
    control: [u8; CONTROL_LEN],
}

/// The reply arena, indexed by buffer id. Boxed once and never resized, so the pointers a
/// `SendMsg` carries stay valid for the arena's life.
pub struct SendSlots {
    slots: Box<[SendSlot]>,
}

impl SendSlots {
    pub fn new(buffers: u32) -> SendSlots {
        let slots = (0..buffers)
            .map(|_| SendSlot {
                hdr: zeroed_header(),
                iov: libc::iovec {
                    iov_base: std::ptr::null_mut(),
                    iov_len: 0,
                },
                to: RawSockAddr::encode(std::net::SocketAddr::from(([0, 0, 0, 0], 0))),
                control: [0; CONTROL_LEN],
            })
            .collect();
        SendSlots { slots }
    }

    /// Fills buffer `bid`'s slot for a reply of `len` bytes at `payload` to `to`, leaving from
    /// `from` if given (on a socket of the family `v6_socket` says), and returns the header to
    /// hand to `SendMsg`. `None` if `bid` has no slot.
    pub(super) fn prepare(
        &mut self,
        bid: u16,
        payload: *const u8,
        len: usize,
        to: &RawSockAddr,
        from: Option<(IpAddr, bool)>,
    ) -> Option<*const libc::msghdr> {
        let slot = self.slots.get_mut(bid as usize)?;
        slot.to = *to;
        slot.iov.iov_base = payload.cast_mut().cast();
        slot.iov.iov_len = len;
        slot.hdr.msg_name = std::ptr::from_mut(&mut slot.to).cast();
        slot.hdr.msg_namelen = slot.to.as_bytes().len() as libc::socklen_t;
        slot.hdr.msg_iov = &mut slot.iov;
        slot.hdr.msg_iovlen = 1;
        let used = from.map_or(0, |(ip, v6)| cmsg::encode_source(&mut slot.control, ip, v6));
        slot.hdr.msg_control = if used == 0 {
            std::ptr::null_mut()
        } else {
            slot.control.as_mut_ptr().cast()
        };
        slot.hdr.msg_controllen = used as _;
        Some(&slot.hdr)
    }
}
