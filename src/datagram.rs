//! What a multishot `recvmsg` buffer holds, decided without touching the ring.
//!
//! Every receive buffer is laid out by the kernel as `io_uring_recvmsg_out`, the source address
//! field, then the payload (see `sys::msghdr`). [`parse`] checks the kernel's truncation flags
//! and ringgate's own size limit, so a datagram is either whole or dropped with a counted reason.

use std::net::{IpAddr, SocketAddr};

use io_uring::types::RecvMsgOut;

use crate::stats::Counter;
use crate::sys::{cmsg, sockaddr};

/// A received datagram: its source, payload length (the payload starts at
/// `sys::msghdr::PAYLOAD_OFFSET`), and the address it was sent to when the socket reports it
/// (a wildcard listener, with pktinfo).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Datagram {
    pub source: SocketAddr,
    pub len: u32,
    pub dest: Option<IpAddr>,
}

/// Parses the first `filled` bytes of a receive buffer (the completion's result).
/// `max_payload` is `--buffer-size`. A datagram that did not fit, or whose source address is not
/// an IPv4/IPv6 one, is an `Err` naming the drop counter.
pub fn parse(
    buffer: &[u8],
    header: &libc::msghdr,
    max_payload: usize,
) -> Result<Datagram, Counter> {
    let out = RecvMsgOut::parse(buffer, header).map_err(|()| Counter::DropTruncated)?;
    if out.is_payload_truncated() || out.payload_data().len() > max_payload {
        return Err(Counter::DropTruncated);
    }
    if out.is_name_data_truncated() {
        return Err(Counter::DropBadAddress);
    }
    let source = sockaddr::decode(out.name_data()).ok_or(Counter::DropBadAddress)?;
    let dest = if out.is_control_data_truncated() {
        None
    } else {
        cmsg::destination(out.control_data())
    };
    Ok(Datagram {
        source,
        len: out.payload_data().len() as u32,
        dest,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::cmsg::{CONTROL_LEN, encode_source};
    use crate::sys::msghdr::{PAYLOAD_OFFSET, recv_header};
    use crate::sys::sockaddr::{RawSockAddr, SOCKADDR_MAX};

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
        assert_eq!(parse(&buf, &recv_header(), 2048).unwrap().dest, Some(dest));
        let truncated =
            kernel_buffer_with(from, &control[..used], b"hi", 2, libc::MSG_CTRUNC as u32);
        assert_eq!(parse(&truncated, &recv_header(), 2048).unwrap().dest, None);
    }

    #[test]
    fn whole_datagrams_parse() {
        let from: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let buf = kernel_buffer(from, b"hello", 5, 0);
        assert_eq!(
            parse(&buf, &recv_header(), 2048),
            Ok(Datagram {
                source: from,
                len: 5,
                dest: None,
            })
        );
        let from6: SocketAddr = "[::1]:6000".parse().unwrap();
        let empty = kernel_buffer(from6, b"", 0, 0);
        assert_eq!(
            parse(&empty, &recv_header(), 2048),
            Ok(Datagram {
                source: from6,
                len: 0,
                dest: None,
            })
        );
    }

    #[test]
    fn truncated_or_oversize_datagrams_are_dropped() {
        let from: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let trunc = kernel_buffer(from, b"abcd", 9000, libc::MSG_TRUNC as u32);
        assert_eq!(
            parse(&trunc, &recv_header(), 2048),
            Err(Counter::DropTruncated)
        );
        let big = kernel_buffer(from, &[7; 100], 100, 0);
        assert_eq!(parse(&big, &recv_header(), 99), Err(Counter::DropTruncated));
        assert_eq!(
            parse(&big[..10], &recv_header(), 2048),
            Err(Counter::DropTruncated)
        );
    }

    #[test]
    fn foreign_addresses_are_dropped() {
        let mut buf = kernel_buffer("127.0.0.1:1".parse().unwrap(), b"x", 1, 0);
        buf[16..18].copy_from_slice(&(libc::AF_UNIX as u16).to_ne_bytes());
        assert_eq!(
            parse(&buf, &recv_header(), 2048),
            Err(Counter::DropBadAddress)
        );
    }
}
