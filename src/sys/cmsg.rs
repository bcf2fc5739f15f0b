//! Control messages (`cmsghdr`s) as the kernel lays them out: the destination address a
//! datagram was sent to (`IP_PKTINFO`, `IPV6_PKTINFO`), read from a receive, and the source
//! address a reply must leave from, written for a send.
//!
//! Plain byte shuffling at the offsets `libc` gives, in safe code, so it can be unit-tested
//! and fed arbitrary bytes. The length field is read and written as a native `usize` at offset
//! 0: glibc's `size_t cmsg_len`, and musl's `socklen_t` plus its zero padding on little-endian
//! targets.

use std::mem::{offset_of, size_of};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

const HDR: usize = size_of::<libc::cmsghdr>();
const LEVEL: usize = offset_of!(libc::cmsghdr, cmsg_level);
const TYPE: usize = offset_of!(libc::cmsghdr, cmsg_type);
const ALIGN: usize = size_of::<usize>();

const fn align(n: usize) -> usize {
    (n + ALIGN - 1) & !(ALIGN - 1)
}

/// `CMSG_SPACE(len)`.
const fn space(len: usize) -> usize {
    align(HDR) + align(len)
}

const IN_PKTINFO: usize = size_of::<libc::in_pktinfo>();
const IN6_PKTINFO: usize = size_of::<libc::in6_pktinfo>();

/// Control bytes every receive reserves and every reply may use: room for the larger
/// pktinfo.
pub const CONTROL_LEN: usize = space(IN6_PKTINFO);

/// The address a datagram was sent to, from a receive's control data; `None` if there is no
/// pktinfo in it (the socket did not ask for one) or it is malformed.
pub fn destination(control: &[u8]) -> Option<IpAddr> {
    let mut rest = control;
    while rest.len() >= HDR {
        let len = usize::from_ne_bytes(rest[..ALIGN].try_into().ok()?);
        if len < HDR || len > rest.len() {
            return None;
        }
        let level = i32::from_ne_bytes(rest[LEVEL..LEVEL + 4].try_into().ok()?);
        let kind = i32::from_ne_bytes(rest[TYPE..TYPE + 4].try_into().ok()?);
        let data = &rest[align(HDR)..len];
        match (level, kind) {
            (libc::IPPROTO_IP, libc::IP_PKTINFO) if data.len() >= IN_PKTINFO => {
                // ipi_ifindex, ipi_spec_dst, ipi_addr: the header's destination is ipi_addr.
                let at = offset_of!(libc::in_pktinfo, ipi_addr);
                let octets: [u8; 4] = data[at..at + 4].try_into().ok()?;
                return Some(IpAddr::V4(Ipv4Addr::from(octets)));
            }
            (libc::IPPROTO_IPV6, libc::IPV6_PKTINFO) if data.len() >= IN6_PKTINFO => {
                let at = offset_of!(libc::in6_pktinfo, ipi6_addr);
                let octets: [u8; 16] = data[at..at + 16].try_into().ok()?;
                return Some(IpAddr::V6(Ipv6Addr::from(octets)).to_canonical());
            }
            _ => {}
        }
        rest = rest.get(align(len)..)?;
    }
    None
}

/// Writes into `buf` the control message that makes a reply leave from `source`, for a socket
/// of the family `v6_socket` says (a dual-stack socket names an IPv4 source as a mapped IPv6
/// one). Returns the bytes used.
pub fn encode_source(buf: &mut [u8; CONTROL_LEN], source: IpAddr, v6_socket: bool) -> usize {
    buf.fill(0);
    let (level, kind, len) = if v6_socket {
        let addr = match source {
            IpAddr::V4(v4) => v4.to_ipv6_mapped(),
            IpAddr::V6(v6) => v6,
        };
        let at = align(HDR) + offset_of!(libc::in6_pktinfo, ipi6_addr);
        buf[at..at + 16].copy_from_slice(&addr.octets());
        (libc::IPPROTO_IPV6, libc::IPV6_PKTINFO, IN6_PKTINFO)
    } else {
        let IpAddr::V4(v4) = source.to_canonical() else {
            return 0;
        };
        // ipi_spec_dst is the source a reply uses; ipi_ifindex 0 lets routing pick the way.
        let at = align(HDR) + offset_of!(libc::in_pktinfo, ipi_spec_dst);
        buf[at..at + 4].copy_from_slice(&v4.octets());
        (libc::IPPROTO_IP, libc::IP_PKTINFO, IN_PKTINFO)
    };
    buf[..ALIGN].copy_from_slice(&(align(HDR) + len).to_ne_bytes());
    buf[LEVEL..LEVEL + 4].copy_from_slice(&level.to_ne_bytes());
    buf[TYPE..TYPE + 4].copy_from_slice(&kind.to_ne_bytes());
    space(len)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A received IP_PKTINFO as the kernel writes it (destination in ipi_addr).
    fn received_v4(dest: Ipv4Addr) -> Vec<u8> {
        let mut buf = vec![0u8; space(IN_PKTINFO)];
        buf[..ALIGN].copy_from_slice(&(align(HDR) + IN_PKTINFO).to_ne_bytes());
        buf[LEVEL..LEVEL + 4].copy_from_slice(&libc::IPPROTO_IP.to_ne_bytes());
        buf[TYPE..TYPE + 4].copy_from_slice(&libc::IP_PKTINFO.to_ne_bytes());
        let at = align(HDR) + offset_of!(libc::in_pktinfo, ipi_addr);
        buf[at..at + 4].copy_from_slice(&dest.octets());
        buf
    }

    #[test]
    fn a_destination_is_read_from_either_pktinfo() {
        let dest = Ipv4Addr::new(127, 0, 0, 2);
        assert_eq!(destination(&received_v4(dest)), Some(IpAddr::V4(dest)));
        // What we encode for IPv6 is laid out as a received IPV6_PKTINFO.
        let mut buf = [0u8; CONTROL_LEN];
        let v6: IpAddr = "fd00::7".parse().unwrap();
        let used = encode_source(&mut buf, v6, true);
        assert_eq!(destination(&buf[..used]), Some(v6));
        // A mapped IPv4 destination reads as plain IPv4.
        let used = encode_source(&mut buf, IpAddr::V4(dest), true);
        assert_eq!(destination(&buf[..used]), Some(IpAddr::V4(dest)));
    }

    #[test]
    fn no_or_broken_control_data_is_no_destination() {
        assert_eq!(destination(&[]), None);
        let mut bad = received_v4(Ipv4Addr::LOCALHOST);
        bad[..ALIGN].copy_from_slice(&10_000usize.to_ne_bytes());
        assert_eq!(destination(&bad), None, "a length past the end");
        let mut bad = received_v4(Ipv4Addr::LOCALHOST);
        bad[..ALIGN].copy_from_slice(&3usize.to_ne_bytes());
        assert_eq!(destination(&bad), None, "a length inside the header");
        // Arbitrary bytes never panic.
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..10_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let len = (state % 64) as usize;
            let bytes: Vec<u8> = (0..len).map(|i| (state >> (i % 8 * 8)) as u8).collect();
            let _ = destination(&bytes);
        }
    }

    #[test]
    fn an_ipv4_source_for_an_ipv4_socket_goes_in_spec_dst() {
        let mut buf = [0u8; CONTROL_LEN];
        let used = encode_source(&mut buf, "10.0.0.9".parse().unwrap(), false);
        assert_eq!(used, space(IN_PKTINFO));
        let at = align(HDR) + offset_of!(libc::in_pktinfo, ipi_spec_dst);
        assert_eq!(buf[at..at + 4], [10, 0, 0, 9]);
        assert_eq!(
            encode_source(&mut buf, "fd00::1".parse().unwrap(), false),
            0,
            "no IPv6 source on an IPv4 socket"
        );
    }
}
