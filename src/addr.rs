//! One client, one address: the form every map, log line and comparison knows an address by.
//!
//! A dual-stack socket sees an IPv4 peer as `::ffff:a.b.c.d`; [`canonical`] turns that into
//! plain IPv4, so that the same client is the same key however it arrived. Replies still go to
//! the address as received (the session keeps both).

use std::net::SocketAddr;

/// `addr` with an IPv4-mapped IPv6 address as plain IPv4.
pub fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

/// Whether `a` and `b` are the same endpoint, whichever form each arrived in.
pub fn same(a: SocketAddr, b: SocketAddr) -> bool {
    canonical(a) == canonical(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    #[test]
    fn mapped_addresses_are_one_client() {
        assert_eq!(canonical(a("[::ffff:1.2.3.4]:5")), a("1.2.3.4:5"));
        assert_eq!(canonical(a("[::1]:5")), a("[::1]:5"));
        assert!(same(a("[::ffff:1.2.3.4]:5"), a("1.2.3.4:5")));
        assert!(!same(a("1.2.3.4:5"), a("1.2.3.4:6")));
    }
}
