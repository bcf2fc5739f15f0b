//! The `msghdr`s ringgate's receives and replies point the kernel at.
//!
//! Receives: every multishot `recvmsg` of a ring (listener and sessions) uses one header that
//! reserves [`SOCKADDR_MAX`] bytes for the source address and, when the ring needs it,
//! [`CONTROL_LEN`] for control data (the destination a wildcard listener's datagram was sent
//! to), so every buffer a ring receives into has the same layout: a 16-byte
//! `io_uring_recvmsg_out`, the address field, the control field if any, then the payload at
//! [`payload_offset`]. Once parsed, the bytes before the payload are headroom a send may prefix
//! to it (a PROXY protocol header) without moving the payload. The control field is reserved
//! only where it is used: reserving it costs every receive about 3 % more CPU per forwarded
//! datagram (docs/PERFORMANCE.md), which a listener on a specific address never needs back.
//!
//! Replies: a `sendmsg` needs a header, an iovec, a destination address and perhaps a control
//! message (the source to leave from) that stay put until its completion. Every reply is sent
//! from exactly one leased receive buffer, so the arena has one [`SendSlot`] per buffer id and a
//! reply's slot is its buffer's: it cannot be reused before the buffer is recycled, which
//! happens on the reply's completion.

use std::net::IpAddr;

use io_uring::types::RecvMsgOut;

use crate::sys::cmsg::{self, CONTROL_LEN};
use crate::sys::driver::{Received, RecvFault};
use crate::sys::sockaddr::{self, RawSockAddr, SOCKADDR_MAX};

/// `sizeof(struct io_uring_recvmsg_out)`.
pub const RECVMSG_OUT_LEN: usize = 16;
/// Where the payload starts in a received buffer, with or without the control field.
pub const fn payload_offset(control: bool) -> usize {
    RECVMSG_OUT_LEN + SOCKADDR_MAX + if control { CONTROL_LEN } else { 0 }
}

/// Where the payload starts in a buffer laid out with the control field.
pub const PAYLOAD_OFFSET: usize = payload_offset(true);

fn zeroed_header() -> libc::msghdr {
    // SAFETY: msghdr is a plain C struct for which all-zero bytes (null pointers, zero lengths)
    // is a valid value; some libcs add private padding fields, which is why it is not built with
    // a struct literal.
    unsafe { std::mem::zeroed() }
}

/// The header every multishot `recvmsg` of a ring is armed with, with or without the control
/// field (only its lengths matter to the kernel: the buffers come from the buffer ring).
pub fn recv_header(control: bool) -> libc::msghdr {
    let mut hdr = zeroed_header();
    hdr.msg_namelen = SOCKADDR_MAX as libc::socklen_t;
    hdr.msg_controllen = if control { CONTROL_LEN as _ } else { 0 };
    hdr
}

/// Parses a receive buffer's first bytes (as many as the completion's result says) the way the
/// kernel laid them out for [`recv_header`]: a datagram that did not fit, or whose source address
/// is not an IPv4/IPv6 one, is a [`RecvFault`].
pub fn parse(buffer: &[u8], header: &libc::msghdr) -> Result<Received, RecvFault> {
    let out = RecvMsgOut::parse(buffer, header).map_err(|()| RecvFault::Truncated)?;
    if out.is_payload_truncated() {
        return Err(RecvFault::Truncated);
    }
    if out.is_name_data_truncated() {
        return Err(RecvFault::BadAddress);
    }
    let source = sockaddr::decode(out.name_data()).ok_or(RecvFault::BadAddress)?;
    let dest = if out.is_control_data_truncated() {
        None
    } else {
        cmsg::destination(out.control_data())
    };
    Ok(Received {
        source,
        len: out.payload_data().len() as u32,
        dest,
    })
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

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::*;
    use crate::sys::cmsg::encode_source;

    /// Lays a buffer out the way the kernel does, with control data `control`.
    fn kernel_buffer_with(
        from: SocketAddr,
        control: &[u8],
        payload: &[u8],
        payload_len: u32,
        flags: u32,
    ) -> Vec<u8> {
        let raw = RawSockAddr::encode(from);
        let mut buf = Vec::new();
        buf.extend((raw.as_bytes().len() as u32).to_ne_bytes()); // namelen
        buf.extend((control.len() as u32).to_ne_bytes()); // controllen
        buf.extend(payload_len.to_ne_bytes()); // payloadlen
        buf.extend(flags.to_ne_bytes()); // flags
        let mut name = [0u8; SOCKADDR_MAX];
        name[..raw.as_bytes().len()].copy_from_slice(raw.as_bytes());
        buf.extend(name);
        let mut field = [0u8; CONTROL_LEN];
        field[..control.len()].copy_from_slice(control);
        buf.extend(field);
        assert_eq!(buf.len(), PAYLOAD_OFFSET);
        buf.extend(payload);
        buf
    }

    fn kernel_buffer(from: SocketAddr, payload: &[u8], payload_len: u32, flags: u32) -> Vec<u8> {
        kernel_buffer_with(from, &[], payload, payload_len, flags)
    }

    #[test]
    fn the_destination_comes_from_the_control_data() {
        let from: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let dest: IpAddr = "127.0.0.2".parse().unwrap();
        let mut control = [0u8; CONTROL_LEN];
        let used = encode_source(&mut control, dest, true);
        let buf = kernel_buffer_with(from, &control[..used], b"hi", 2, 0);
        assert_eq!(parse(&buf, &recv_header(true)).unwrap().dest, Some(dest));
        let truncated =
            kernel_buffer_with(from, &control[..used], b"hi", 2, libc::MSG_CTRUNC as u32);
        assert_eq!(parse(&truncated, &recv_header(true)).unwrap().dest, None);
    }

    #[test]
    fn whole_datagrams_parse() {
        let from: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let buf = kernel_buffer(from, b"hello", 5, 0);
        assert_eq!(
            parse(&buf, &recv_header(true)),
            Ok(Received {
                source: from,
                len: 5,
                dest: None,
            })
        );
        let from6: SocketAddr = "[::1]:6000".parse().unwrap();
        let empty = kernel_buffer(from6, b"", 0, 0);
        assert_eq!(
            parse(&empty, &recv_header(true)),
            Ok(Received {
                source: from6,
                len: 0,
                dest: None,
            })
        );
    }

    #[test]
    fn truncated_datagrams_are_faults() {
        let from: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let trunc = kernel_buffer(from, b"abcd", 9000, libc::MSG_TRUNC as u32);
        assert_eq!(parse(&trunc, &recv_header(true)), Err(RecvFault::Truncated));
        let whole = kernel_buffer(from, &[7; 100], 100, 0);
        assert_eq!(
            parse(&whole[..10], &recv_header(true)),
            Err(RecvFault::Truncated)
        );
    }

    #[test]
    fn without_the_control_field_the_payload_starts_right_after_the_address() {
        let from: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let raw = RawSockAddr::encode(from);
        let mut buf = Vec::new();
        buf.extend((raw.as_bytes().len() as u32).to_ne_bytes());
        buf.extend(0u32.to_ne_bytes());
        buf.extend(3u32.to_ne_bytes());
        buf.extend(0u32.to_ne_bytes());
        let mut name = [0u8; SOCKADDR_MAX];
        name[..raw.as_bytes().len()].copy_from_slice(raw.as_bytes());
        buf.extend(name);
        assert_eq!(buf.len(), payload_offset(false));
        buf.extend(b"abc");
        let got = parse(&buf, &recv_header(false)).unwrap();
        assert_eq!((got.source, got.len, got.dest), (from, 3, None));
        assert_eq!(payload_offset(true) - payload_offset(false), CONTROL_LEN);
    }

    #[test]
    fn foreign_addresses_are_faults() {
        let mut buf = kernel_buffer("127.0.0.1:1".parse().unwrap(), b"x", 1, 0);
        buf[16..18].copy_from_slice(&(libc::AF_UNIX as u16).to_ne_bytes());
        assert_eq!(parse(&buf, &recv_header(true)), Err(RecvFault::BadAddress));
    }
}
