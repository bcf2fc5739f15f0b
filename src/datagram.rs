//! Whether a received datagram may go on, decided without touching the driver.
//!
//! The driver reads a filled receive buffer as a [`Received`] (source, payload length,
//! destination) or a [`RecvFault`]; [`check`] turns a fault into its drop counter and applies
//! ringgate's own size limit (`--buffer-size`), so a datagram is either whole or dropped with a
//! counted reason.

use crate::stats::Counter;
use crate::sys::driver::{Received, RecvFault};

/// A received datagram: its source, payload length, and the address it was sent to when the
/// socket reports it (a wildcard listener, with pktinfo).
pub type Datagram = Received;

/// A receive buffer's datagram, if it is whole, no larger than `max_payload` (`--buffer-size`)
/// and from an IPv4/IPv6 source; otherwise the drop counter that says why not.
#[inline]
pub fn check(
    received: Result<Received, RecvFault>,
    max_payload: usize,
) -> Result<Datagram, Counter> {
    match received {
        Ok(d) if d.len as usize <= max_payload => Ok(d),
        Ok(_) | Err(RecvFault::Truncated) => Err(Counter::DropTruncated),
        Err(RecvFault::BadAddress) => Err(Counter::DropBadAddress),
        Err(RecvFault::NotLeased) => Err(Counter::Anomalies),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_and_oversize_datagrams_name_their_counter() {
        let d = Received {
            source: "127.0.0.1:5000".parse().unwrap(),
            len: 100,
            dest: None,
        };
        assert_eq!(check(Ok(d), 100), Ok(d));
        assert_eq!(check(Ok(d), 99), Err(Counter::DropTruncated));
        assert_eq!(
            check(Err(RecvFault::Truncated), 2048),
            Err(Counter::DropTruncated)
        );
        assert_eq!(
            check(Err(RecvFault::BadAddress), 2048),
            Err(Counter::DropBadAddress)
        );
        assert_eq!(
            check(Err(RecvFault::NotLeased), 2048),
            Err(Counter::Anomalies)
        );
    }
}
