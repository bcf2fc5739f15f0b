//! The PROXY protocol, version 2, as a prefix to a datagram: how a backend behind ringgate
//! learns the player's real address.
//!
//! HAProxy's specification (`proxy-protocol.txt`, section 2.2): the 12-byte signature, one
//! byte for version 2 and the PROXY command (`0x21`), one for the family and transport (`0x12`
//! for IPv4 over UDP, `0x22` for IPv6 over UDP), the length of what follows (big-endian), then
//! source address, destination address, source port, destination port. Bedrock servers
//! (WaterdogPE, Geyser, CloudburstMC's RakNet transport) strip it from the first datagram of a
//! source and treat the rest as plain. An IPv4 client of a dual-stack listener is IPv4 here.

use std::net::{IpAddr, SocketAddr};

/// The signature every v2 header starts with.
pub const SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// The longest header ringgate writes (IPv6: 16 + 36).
pub const HEADER_MAX: usize = 52;

/// The header saying a datagram came from `client` to `server` (the address the client sent
/// to). IPv4-mapped addresses are written as IPv4; mixed families as IPv6.
pub fn header(client: SocketAddr, server: SocketAddr) -> Vec<u8> {
    let (src, dst) = (client.ip().to_canonical(), server.ip().to_canonical());
    let mut h = Vec::with_capacity(HEADER_MAX);
    h.extend_from_slice(&SIGNATURE);
    h.push(0x21);
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            h.push(0x12);
            h.extend_from_slice(&12u16.to_be_bytes());
            h.extend_from_slice(&s.octets());
            h.extend_from_slice(&d.octets());
        }
        (s, d) => {
            let v6 = |ip: IpAddr| match ip {
                IpAddr::V4(v4) => v4.to_ipv6_mapped(),
                IpAddr::V6(v6) => v6,
            };
            h.push(0x22);
            h.extend_from_slice(&36u16.to_be_bytes());
            h.extend_from_slice(&v6(s).octets());
            h.extend_from_slice(&v6(d).octets());
        }
    }
    h.extend_from_slice(&client.port().to_be_bytes());
    h.extend_from_slice(&server.port().to_be_bytes());
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ipv4_header_is_28_bytes_as_the_specification_lays_it_out() {
        let h = header(
            "192.0.2.1:50000".parse().unwrap(),
            "198.51.100.2:19132".parse().unwrap(),
        );
        assert_eq!(h.len(), 28);
        assert_eq!(&h[..12], &SIGNATURE);
        assert_eq!(h[12..16], [0x21, 0x12, 0, 12]);
        assert_eq!(h[16..20], [192, 0, 2, 1]);
        assert_eq!(h[20..24], [198, 51, 100, 2]);
        assert_eq!(h[24..28], [0xc3, 0x50, 0x4a, 0xbc]);
    }

    #[test]
    fn ipv6_is_52_bytes_and_mapped_clients_are_ipv4() {
        let h = header(
            "[2001:db8::1]:1".parse().unwrap(),
            "[2001:db8::2]:2".parse().unwrap(),
        );
        assert_eq!((h.len(), h[13], h[15]), (HEADER_MAX, 0x22, 36));
        let mapped = header(
            "[::ffff:192.0.2.1]:1".parse().unwrap(),
            "[::ffff:192.0.2.2]:2".parse().unwrap(),
        );
        assert_eq!((mapped.len(), mapped[13]), (28, 0x12));
    }
}
