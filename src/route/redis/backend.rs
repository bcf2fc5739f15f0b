//! Validating a backend address read from Redis.
//!
//! The value of the backend key decides where new clients' traffic goes, so a wrong or hostile
//! value must not turn ringgate into a reflector: it must be an `ip:port` (IPv6 as
//! `[addr]:port`) or a `host:port` udp-gate would dial, and the address (given, or resolved
//! from the name) must not be port 0, an unspecified, multicast or broadcast address, and,
//! when `--backend-allow` is given, must be inside one of those networks.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;

use crate::route::resolve::{Dest, parse_dest};

/// Why a value was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rejection {
    /// Not an `ip:port`.
    Malformed,
    /// Port 0, or an unspecified, multicast or broadcast address.
    Unusable,
    /// Outside every `--backend-allow` network.
    Disallowed,
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Rejection::Malformed => "not an ip:port or host:port",
            Rejection::Unusable => "port 0, or an unspecified, multicast or broadcast address",
            Rejection::Disallowed => "outside --backend-allow",
        })
    }
}

/// Parses a backend value: an `ip:port`, or a `host:port` to resolve (as udp-gate dials it).
pub fn parse(value: &[u8]) -> Result<Dest, Rejection> {
    let text = std::str::from_utf8(value).map_err(|_| Rejection::Malformed)?;
    parse_dest(text).ok_or(Rejection::Malformed)
}

/// Parses and checks a literal backend value. `allow` empty means any usable address.
pub fn validate(value: &[u8], allow: &[IpNet]) -> Result<SocketAddr, Rejection> {
    match parse(value)? {
        Dest::Addr(addr) => check(addr, allow),
        Dest::Name(_) => Err(Rejection::Malformed),
    }
}

/// Checks an address, given or resolved: usable, and inside `allow` unless it is empty.
pub fn check(addr: SocketAddr, allow: &[IpNet]) -> Result<SocketAddr, Rejection> {
    let unusable = match addr.ip() {
        IpAddr::V4(ip) => ip.is_unspecified() || ip.is_multicast() || ip.is_broadcast(),
        IpAddr::V6(ip) => {
            ip.is_unspecified()
                || ip.is_multicast()
                || ip
                    .to_ipv4_mapped()
                    .is_some_and(|v4| v4.is_unspecified() || v4.is_multicast() || v4.is_broadcast())
        }
    };
    if addr.port() == 0 || unusable {
        return Err(Rejection::Unusable);
    }
    if !allow.is_empty() && !allow.iter().any(|net| net.contains(&addr.ip())) {
        return Err(Rejection::Disallowed);
    }
    Ok(addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_addresses_pass() {
        assert_eq!(
            validate(b"10.0.0.5:7777", &[]),
            Ok("10.0.0.5:7777".parse().unwrap())
        );
        assert_eq!(validate(b"[::1]:9", &[]), Ok("[::1]:9".parse().unwrap()));
        assert_eq!(
            validate(b" 127.0.0.1:1\n", &[]),
            Ok("127.0.0.1:1".parse().unwrap())
        );
    }

    #[test]
    fn malformed_values_are_rejected() {
        for bad in [
            &b""[..],
            b"10.0.0.5",
            b"10.0.0.5:70000",
            b"::1:80",
            b"\xff\xfe",
            b"10.0.0.5:80 extra",
        ] {
            assert_eq!(validate(bad, &[]), Err(Rejection::Malformed), "{bad:?}");
        }
    }

    #[test]
    fn unusable_addresses_are_rejected() {
        for bad in [
            "10.0.0.5:0",
            "0.0.0.0:80",
            "[::]:80",
            "224.0.0.1:80",
            "[ff02::1]:80",
            "255.255.255.255:80",
            "[::ffff:255.255.255.255]:80",
        ] {
            assert_eq!(
                validate(bad.as_bytes(), &[]),
                Err(Rejection::Unusable),
                "{bad}"
            );
        }
    }

    #[test]
    fn the_allow_list_is_enforced() {
        let allow: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap(), "fd00::/8".parse().unwrap()];
        assert!(validate(b"10.1.2.3:80", &allow).is_ok());
        assert!(validate(b"[fd00::7]:80", &allow).is_ok());
        assert_eq!(
            validate(b"192.168.1.1:80", &allow),
            Err(Rejection::Disallowed)
        );
        assert_eq!(validate(b"[::1]:80", &allow), Err(Rejection::Disallowed));
    }
}
