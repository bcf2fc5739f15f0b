//! Messages on the disconnect channel.
//!
//! udp-gate publishes a bare decimal port: the local port of a session's upstream socket, the
//! source port the backend sees. ringgate also takes `ip:port`, matched against both the
//! client's address (udp-gate's documented form) and the session's upstream local address
//! (unambiguous when several ringgate hosts share a channel). Anything else is invalid.

use std::net::SocketAddr;

use crate::route::Target;

/// Parses one message; `None` for anything that is not a port or an `ip:port`.
pub fn parse(message: &[u8]) -> Option<Target> {
    // Ports and addresses are short; a huge message is garbage whatever it holds.
    if message.len() > 64 {
        return None;
    }
    let text = std::str::from_utf8(message).ok()?.trim();
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return match text.parse::<u16>() {
            Ok(0) | Err(_) => None,
            Ok(port) => Some(Target::Port(port)),
        };
    }
    text.parse::<SocketAddr>()
        .ok()
        .filter(|a| a.port() != 0)
        .map(Target::Addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_and_addresses_parse() {
        assert_eq!(parse(b"40123"), Some(Target::Port(40123)));
        assert_eq!(parse(b" 7\n"), Some(Target::Port(7)));
        assert_eq!(
            parse(b"127.0.0.1:5000"),
            Some(Target::Addr("127.0.0.1:5000".parse().unwrap()))
        );
        assert_eq!(
            parse(b"[::1]:9"),
            Some(Target::Addr("[::1]:9".parse().unwrap()))
        );
    }

    #[test]
    fn garbage_is_rejected() {
        let huge = vec![b'1'; 100_000];
        for bad in [
            &b""[..],
            b"0",
            b"65536",
            b"-1",
            b"+80",
            b"99999999999999999999",
            b"hello",
            b"127.0.0.1",
            b"127.0.0.1:0",
            b"\xff",
            &huge,
        ] {
            assert_eq!(
                parse(bad),
                None,
                "{:?}",
                String::from_utf8_lossy(&bad[..bad.len().min(20)])
            );
        }
    }
}
