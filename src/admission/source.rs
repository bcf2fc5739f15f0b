//! Sources no session may start from: bogons, ringgate's own listening addresses, and its
//! backends. A few comparisons; no syscall.
//!
//! A datagram "from" a backend would be forwarded to that backend, whose answer ringgate sends
//! to the "client" (the backend), which answers that: a forwarding loop started by one spoofed
//! datagram. The same with ringgate's own listening address as the source. Broadcast,
//! multicast, unspecified and reserved sources are never a real client, and a reply to them is
//! abuse.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use crate::addr::canonical;

/// Port 0, or an address no unicast client can have.
pub fn is_bogon(addr: SocketAddr) -> bool {
    if addr.port() == 0 {
        return true;
    }
    match addr.ip().to_canonical() {
        IpAddr::V4(ip) => bogon_v4(ip),
        IpAddr::V6(ip) => ip.is_unspecified() || ip.is_multicast(),
    }
}

fn bogon_v4(ip: Ipv4Addr) -> bool {
    let first = ip.octets()[0];
    // 0.0.0.0/8 is "this network" (a source only while booting), 240.0.0.0/4 is reserved
    // (255.255.255.255 included).
    first == 0 || ip.is_multicast() || ip.is_broadcast() || first >= 240
}

/// ringgate's own listening addresses: a datagram from one is ringgate talking to itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Own {
    listen: SocketAddr,
    /// The host's addresses when `listen` is a wildcard (what the kernel delivers to it).
    local: Vec<IpAddr>,
}

impl Own {
    /// `local`: the host's interface addresses, read at start-up.
    pub fn new(listen: SocketAddr, local: Vec<IpAddr>) -> Own {
        let local = local.into_iter().map(|ip| ip.to_canonical()).collect();
        Own {
            listen: canonical(listen),
            local,
        }
    }

    pub fn contains(&self, addr: SocketAddr) -> bool {
        let addr = canonical(addr);
        if addr.port() != self.listen.port() {
            return false;
        }
        if !self.listen.ip().is_unspecified() {
            return addr.ip() == self.listen.ip();
        }
        // A wildcard listener receives whatever is sent to any local address: all of
        // 127.0.0.0/8 and ::1, and the interfaces' addresses.
        addr.ip().is_loopback() || self.local.contains(&addr.ip())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    #[test]
    fn bogons_are_recognised() {
        for bad in [
            "1.2.3.4:0",
            "0.0.0.0:5000",
            "0.1.2.3:5000",
            "255.255.255.255:5000",
            "224.0.0.1:5000",
            "239.255.255.250:1900",
            "240.0.0.1:5000",
            "[::]:5000",
            "[ff02::1]:5000",
            "[::ffff:224.0.0.1]:5000",
            "[::ffff:0.0.0.0]:5000",
        ] {
            assert!(is_bogon(a(bad)), "{bad}");
        }
        for good in [
            "1.2.3.4:5000",
            "127.0.0.1:1",
            "[2001:db8::1]:9",
            "[::1]:1",
            "10.0.0.1:1",
        ] {
            assert!(!is_bogon(a(good)), "{good}");
        }
    }

    #[test]
    fn a_specific_listen_address_is_its_own_only() {
        let own = Own::new(a("127.0.0.1:19132"), vec![]);
        assert!(own.contains(a("127.0.0.1:19132")));
        assert!(own.contains(a("[::ffff:127.0.0.1]:19132")));
        assert!(!own.contains(a("127.0.0.2:19132")));
        assert!(!own.contains(a("127.0.0.1:19133")));
    }

    #[test]
    fn a_wildcard_listen_covers_every_local_address_on_its_port() {
        let own = Own::new(a("0.0.0.0:19132"), vec!["10.1.2.3".parse().unwrap()]);
        assert!(own.contains(a("127.0.0.1:19132")));
        assert!(own.contains(a("127.9.9.9:19132")));
        assert!(own.contains(a("10.1.2.3:19132")));
        assert!(own.contains(a("[::1]:19132")));
        assert!(!own.contains(a("10.1.2.4:19132")));
        assert!(!own.contains(a("10.1.2.3:19133")));
    }
}
