//! What a multishot `recvmsg` buffer holds, decided without touching the ring.
//!
//! Every receive buffer is laid out by the kernel as `io_uring_recvmsg_out`, the source address
//! field, then the payload (see `sys::msghdr`). [`parse`] checks the kernel's truncation flags
//! and ringgate's own size limit, so a datagram is either whole or dropped with a counted reason.

use std::net::SocketAddr;

use io_uring::types::RecvMsgOut;

use crate::stats::Counter;
use crate::sys::sockaddr;

/// A received datagram: its source and payload length (the payload starts at
/// `sys::msghdr::PAYLOAD_OFFSET`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Datagram {
    pub source: SocketAddr,
    pub len: u32,
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
    Ok(Datagram {
        source,
        len: out.payload_data().len() as u32,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::msghdr::{PAYLOAD_OFFSET, recv_header};
    use crate::sys::sockaddr::{RawSockAddr, SOCKADDR_MAX};

    /// Lays a buffer out the way the kernel does.
    fn kernel_buffer(from: SocketAddr, payload: &[u8], payload_len: u32, flags: u32) -> Vec<u8> {
        let raw = RawSockAddr::encode(from);
        let mut buf = Vec::new();
        buf.extend((raw.as_bytes().len() as u32).to_ne_bytes()); // namelen
        buf.extend(0u32.to_ne_bytes()); // controllen
        buf.extend(payload_len.to_ne_bytes()); // payloadlen
        buf.extend(flags.to_ne_bytes()); // flags
        let mut name = [0u8; SOCKADDR_MAX];
        name[..raw.as_bytes().len()].copy_from_slice(raw.as_bytes());
        buf.extend(name);
        assert_eq!(buf.len(), PAYLOAD_OFFSET);
        buf.extend(payload);
        buf
    }

    #[test]
    fn whole_datagrams_parse() {
        let from: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let buf = kernel_buffer(from, b"hello", 5, 0);
        assert_eq!(
            parse(&buf, &recv_header(), 2048),
            Ok(Datagram {
                source: from,
                len: 5
            })
        );
        let from6: SocketAddr = "[::1]:6000".parse().unwrap();
        let empty = kernel_buffer(from6, b"", 0, 0);
        assert_eq!(
            parse(&empty, &recv_header(), 2048),
            Ok(Datagram {
                source: from6,
                len: 0
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
