//! Messages on the disconnect channel.
//!
//! udp-gate publishes a bare decimal port: the local port of a session's upstream socket, the
//! source port the backend sees. ringgate also takes `ip:port`, matched against both the
//! client's address (udp-gate's documented form) and the session's upstream local address
//! (unambiguous when several ringgate hosts share a channel). Anything else is invalid.
//!
//! A fleet shares one channel: there a bare port may name a session on every host, so
//! `--disconnect-bare-ports off` refuses it; each instance's own channel always takes one.

use std::net::SocketAddr;

use crate::route::Target;
use crate::stats::Counter;

/// What to do with one message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Close(Target),
    /// Not a port or an address.
    Invalid,
    /// A bare port on the shared channel, which this instance was told to refuse.
    Refused,
    /// Over the size cap: skipped unread.
    Oversize,
}

impl Verdict {
    /// The counter and the log line of a message that closes nothing (`None` for one that
    /// does: the worker counts whether it matched).
    pub const fn counted(self) -> Option<(Counter, &'static str)> {
        Some(match self {
            Verdict::Close(_) => return None,
            Verdict::Invalid => (
                Counter::DisconnectInvalid,
                "ignoring an invalid disconnect message",
            ),
            Verdict::Oversize => (
                Counter::DisconnectOversize,
                "skipping a disconnect message over 1024 bytes (shown: its channel)",
            ),
            Verdict::Refused => (
                Counter::DisconnectRefused,
                "refusing a bare port on the shared disconnect channel \
                 (RINGGATE_DISCONNECT_BARE_PORTS=off): send ip:port, or use this instance's \
                 own channel",
            ),
        })
    }
}

/// Judges a message on `channel`: `own` is this instance's channel; `payload` is `None` for
/// one over the cap.
pub fn judge(payload: Option<&[u8]>, own: bool, bare_ports: bool) -> Verdict {
    let Some(payload) = payload else {
        return Verdict::Oversize;
    };
    match parse(payload) {
        Some(Target::Port(_)) if !own && !bare_ports => Verdict::Refused,
        Some(target) => Verdict::Close(target),
        None => Verdict::Invalid,
    }
}

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
    fn bare_ports_are_refused_only_on_the_shared_channel_when_asked() {
        let port = Some(&b"4000"[..]);
        let addr = Some(&b"10.0.0.1:4000"[..]);
        assert_eq!(judge(port, false, true), Verdict::Close(Target::Port(4000)));
        assert_eq!(judge(port, false, false), Verdict::Refused);
        assert_eq!(judge(port, true, false), Verdict::Close(Target::Port(4000)));
        assert!(matches!(
            judge(addr, false, false),
            Verdict::Close(Target::Addr(_))
        ));
        assert_eq!(judge(Some(b"x"), true, true), Verdict::Invalid);
        assert_eq!(judge(None, true, true), Verdict::Oversize);
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
