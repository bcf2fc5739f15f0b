//! Socket addresses as the kernel lays them out, converted in safe code.
//!
//! The kernel hands ringgate a client's address as raw `sockaddr_in`/`sockaddr_in6` bytes inside
//! each multishot `recvmsg` buffer, and takes one back for every reply `sendmsg`. Both directions
//! are plain byte shuffling, kept here so they can be unit-tested and fuzzed apart from the ring.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

/// `sizeof(struct sockaddr_in6)`: the largest address ringgate receives or sends.
pub const SOCKADDR_MAX: usize = 28;
const SOCKADDR_IN_LEN: usize = 16;

/// An address encoded as `sockaddr_in` or `sockaddr_in6`, ready to point a `msghdr` at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C, align(4))]
pub struct RawSockAddr {
    bytes: [u8; SOCKADDR_MAX],
    len: u32,
}

impl RawSockAddr {
    pub fn encode(addr: SocketAddr) -> Self {
        let mut bytes = [0u8; SOCKADDR_MAX];
        let len = match addr {
            SocketAddr::V4(v4) => {
                bytes[0..2].copy_from_slice(&(libc::AF_INET as u16).to_ne_bytes());
                bytes[2..4].copy_from_slice(&v4.port().to_be_bytes());
                bytes[4..8].copy_from_slice(&v4.ip().octets());
                SOCKADDR_IN_LEN
            }
            SocketAddr::V6(v6) => {
                bytes[0..2].copy_from_slice(&(libc::AF_INET6 as u16).to_ne_bytes());
                bytes[2..4].copy_from_slice(&v6.port().to_be_bytes());
                bytes[4..8].copy_from_slice(&v6.flowinfo().to_be_bytes());
                bytes[8..24].copy_from_slice(&v6.ip().octets());
                bytes[24..28].copy_from_slice(&v6.scope_id().to_ne_bytes());
                SOCKADDR_MAX
            }
        };
        RawSockAddr {
            bytes,
            len: len as u32,
        }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }
}

/// Decodes a `sockaddr_in`/`sockaddr_in6` the kernel wrote; `None` for anything else (another
/// family, or fewer bytes than the family needs).
pub fn decode(bytes: &[u8]) -> Option<SocketAddr> {
    let family = u16::from_ne_bytes(bytes.get(0..2)?.try_into().ok()?);
    let port = u16::from_be_bytes(bytes.get(2..4)?.try_into().ok()?);
    match i32::from(family) {
        libc::AF_INET => {
            let octets: [u8; 4] = bytes.get(4..8)?.try_into().ok()?;
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(octets),
                port,
            )))
        }
        libc::AF_INET6 => {
            let flowinfo = u32::from_be_bytes(bytes.get(4..8)?.try_into().ok()?);
            let octets: [u8; 16] = bytes.get(8..24)?.try_into().ok()?;
            let scope_id = u32::from_ne_bytes(bytes.get(24..28)?.try_into().ok()?);
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(octets),
                port,
                flowinfo,
                scope_id,
            )))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v4_and_v6_round_trip() {
        for text in [
            "127.0.0.1:19132",
            "0.0.0.0:1",
            "[::1]:65535",
            "[fe80::1%3]:7",
        ] {
            let addr: SocketAddr = text.parse().unwrap();
            let raw = RawSockAddr::encode(addr);
            assert_eq!(decode(raw.as_bytes()), Some(addr), "{text}");
        }
    }

    #[test]
    fn v6_keeps_flowinfo() {
        let addr = SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::LOCALHOST, 9, 0xabcde, 0));
        assert_eq!(decode(RawSockAddr::encode(addr).as_bytes()), Some(addr));
    }

    #[test]
    fn short_or_foreign_input_is_rejected() {
        let v6 = RawSockAddr::encode("[::1]:1".parse().unwrap());
        for len in 0..SOCKADDR_MAX {
            assert_eq!(decode(&v6.as_bytes()[..len]), None, "len {len}");
        }
        let mut unix = [0u8; 28];
        unix[0..2].copy_from_slice(&(libc::AF_UNIX as u16).to_ne_bytes());
        assert_eq!(decode(&unix), None);
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        // A cheap stand-in for fuzzing: every length and a spread of byte patterns.
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..20_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let len = (state % 40) as usize;
            let mut bytes = [0u8; 40];
            for (i, b) in bytes.iter_mut().enumerate() {
                *b = (state >> (i % 8 * 8)) as u8;
            }
            let family = [libc::AF_INET, libc::AF_INET6][(state >> 3) as usize % 2] as u16;
            bytes[0..2].copy_from_slice(&family.to_ne_bytes());
            let _ = decode(&bytes[..len]);
        }
    }
}
