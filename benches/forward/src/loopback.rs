//! Who sends from which loopback address. Everything the bench sends stays in 127.0.0.0/8,
//! which Linux routes to `lo` with no configuration (the `local 127.0.0.0/8` route of the
//! local table), so any address in it can be bound, or forged as a source, without setup:
//!
//! * the roles and every forwarder listen on, and send from, 127.0.0.1;
//! * flow i of the generator binds 127.1.0.1 + i (127.1.0.1, ..., 127.1.1.0, ...), so each flow
//!   is its own client address, as real players are: ringgate budgets new sessions per source
//!   address (`--new-sessions-per-ip`), and a thousand flows from one address would be throttled;
//! * the flood's forged sources are drawn from 127.200.0.0 to 127.254.255.255 with ports of
//!   1024 and up, so they never collide with a flow or with 127.0.0.1.
//!
//! The ranges are disjoint by construction; the tests below hold them to it. Pure arithmetic.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4};

const FLOWS_FIRST: u32 = u32::from_be_bytes([127, 1, 0, 1]);
const FLOWS_LAST: u32 = u32::from_be_bytes([127, 199, 255, 255]);
const SPOOFED_FIRST: u32 = u32::from_be_bytes([127, 200, 0, 0]);
const SPOOFED_LAST: u32 = u32::from_be_bytes([127, 254, 255, 255]);
/// Forged source ports start above the privileged range, as a client's would.
const SPOOFED_PORT_MIN: u16 = 1024;

/// The most flows the generator can give an address of their own.
pub const FLOWS_MAX: usize = (FLOWS_LAST - FLOWS_FIRST + 1) as usize;

/// The address flow `flow` binds: 127.1.0.1 + flow towards an IPv4 loopback target; towards
/// IPv6, ::1, the only IPv6 loopback address (so every flow shares one source there); towards
/// an IPv4 target off loopback (the XDP testbed's namespaces), the address the route picks, so
/// the flows share the client's address and differ by port.
pub fn flow_source(flow: usize, target: SocketAddr) -> Result<IpAddr, String> {
    if target.is_ipv6() {
        return Ok(Ipv6Addr::LOCALHOST.into());
    }
    if !target.ip().is_loopback() {
        return Ok(Ipv4Addr::UNSPECIFIED.into());
    }
    let offset = u32::try_from(flow)
        .ok()
        .filter(|&n| (n as usize) < FLOWS_MAX);
    let offset = offset.ok_or_else(|| {
        format!("flow {flow}: at most {FLOWS_MAX} flows have a loopback address of their own")
    })?;
    Ok(Ipv4Addr::from(FLOWS_FIRST + offset).into())
}

/// A forged source from 64 random bits: the low half picks the address among the 55 x 65 536
/// of 127.200.0.0-127.254.255.255, the high half the port (multiply-shift, no modulo bias).
pub fn spoofed_source(random: u64) -> SocketAddrV4 {
    let pick = |bits: u64, span: u64| ((bits & 0xFFFF_FFFF) * span) >> 32;
    let addresses = u64::from(SPOOFED_LAST - SPOOFED_FIRST) + 1;
    let ports = u64::from(u16::MAX - SPOOFED_PORT_MIN) + 1;
    let ip = SPOOFED_FIRST + pick(random, addresses) as u32;
    let port = SPOOFED_PORT_MIN + pick(random >> 32, ports) as u16;
    SocketAddrV4::new(ip.into(), port)
}

/// Whether the flood may send to `target`: only an IPv4 loopback address (127.0.0.0/8).
pub fn flood_target(target: SocketAddr) -> Result<SocketAddrV4, String> {
    match target {
        SocketAddr::V4(v4) if v4.ip().is_loopback() => Ok(v4),
        _ => Err(format!(
            "refusing to flood {target}: the flood sends to IPv4 loopback (127.0.0.0/8) only"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flows_and_forged_sources_stay_apart_in_127_slash_8() {
        let target: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let flow = |n| flow_source(n, target).unwrap();
        assert_eq!(flow(0), IpAddr::from([127, 1, 0, 1]));
        assert_eq!(flow(255), IpAddr::from([127, 1, 1, 0]));
        assert_eq!(flow(FLOWS_MAX - 1), IpAddr::from([127, 199, 255, 255]));
        assert!(flow_source(FLOWS_MAX, target).is_err());
        let off_loopback = "10.1.0.1:9".parse().unwrap();
        assert_eq!(
            flow_source(7, off_loopback),
            Ok(Ipv4Addr::UNSPECIFIED.into())
        );
        assert_eq!(
            flow_source(3, "[::1]:9".parse().unwrap()),
            Ok(Ipv6Addr::LOCALHOST.into())
        );
        let mut state = 0x1234_5678_9abc_def0u64;
        let extremes = [0, u64::MAX, 0xFFFF_FFFF, 0xFFFF_FFFF_0000_0000];
        let randoms = (0..10_000).map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            state
        });
        for random in extremes.into_iter().chain(randoms) {
            let source = spoofed_source(random);
            let ip = u32::from(*source.ip());
            assert!((SPOOFED_FIRST..=SPOOFED_LAST).contains(&ip), "{source}");
            assert!(
                source.ip().is_loopback() && ip > FLOWS_LAST && source.port() >= SPOOFED_PORT_MIN
            );
        }
        assert_eq!(spoofed_source(0), "127.200.0.0:1024".parse().unwrap());
        assert_eq!(
            spoofed_source(u64::MAX),
            "127.254.255.255:65535".parse().unwrap()
        );
        assert!(flood_target("127.0.0.1:9".parse().unwrap()).is_ok());
        for outside in [
            "10.0.0.1:9",
            "128.0.0.1:9",
            "[::1]:9",
            "[::ffff:127.0.0.1]:9",
        ] {
            assert!(flood_target(outside.parse().unwrap()).is_err(), "{outside}");
        }
    }
}
