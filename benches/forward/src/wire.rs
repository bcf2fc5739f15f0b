//! The generator's datagram format, shared by the generator (writer, and reader of echoes) and
//! the backend (reader): an 8-byte sequence number, an 8-byte send time and a 4-byte flow id,
//! little-endian, padded with zeros to the payload size. Forwarders never look inside. Also
//! what the roles tell the driver (the JSON of the control protocol, typed on both sides) and
//! the single-writer counter the load roles keep per thread.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use serde::{Deserialize, Serialize};

/// Bytes of header at the start of every payload; the smallest payload the generator sends.
pub const HEADER_LEN: usize = 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Per-flow sequence number, from 0 with no gaps as sent: a gap at the receiver is a loss.
    pub seq: u64,
    /// Nanoseconds since the generator started when the batch holding this datagram was sent;
    /// only the generator reads it back (from the echo), so its own `Instant` is the clock.
    pub sent_ns: u64,
    /// The generator's flow (socket, source port) the datagram left from.
    pub flow: u32,
}

impl Header {
    /// Writes the header into the front of `payload`, at least `HEADER_LEN` long; the padding
    /// after it stays as it is (zeros, written once when the buffer was made).
    pub fn write(&self, payload: &mut [u8]) {
        payload[0..8].copy_from_slice(&self.seq.to_le_bytes());
        payload[8..16].copy_from_slice(&self.sent_ns.to_le_bytes());
        payload[16..20].copy_from_slice(&self.flow.to_le_bytes());
    }

    /// The header of a received payload, or `None` if it is too short to hold one.
    pub fn read(payload: &[u8]) -> Option<Header> {
        let u64_at = |at: usize| u64::from_le_bytes(payload[at..at + 8].try_into().expect("8"));
        (payload.len() >= HEADER_LEN).then(|| Header {
            seq: u64_at(0),
            sent_ns: u64_at(8),
            flow: u32::from_le_bytes(payload[16..20].try_into().expect("4")),
        })
    }
}

/// A role's `ready`: where it listens (the backend for forwarders, a forwarder for the load).
#[derive(Debug, Serialize, Deserialize)]
pub struct Ready {
    pub listen: SocketAddr,
}

/// The generator's counts so far, its answer to `snap` and to the window commands.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct GeneratorSnap {
    pub sent: u64,
    pub send_failed: u64,
    pub echoed: u64,
}

/// Round-trip times over the measured window.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub struct Rtt {
    pub samples: u64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
}

/// The generator's answer to `finish`, once sending stopped and echoes drained: per flow.
#[derive(Debug, Serialize, Deserialize)]
pub struct GeneratorReport {
    pub sent: Vec<u64>,
    pub echoed: Option<Vec<u64>>,
    pub send_failed: u64,
    /// Echoes whose header named another flow than the socket they came back on.
    pub mismatched: u64,
    pub rtt: Option<Rtt>,
}

/// The flood's counts so far, its answer to `snap`.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct FloodSnap {
    /// Forged datagrams handed to the kernel.
    pub sent: u64,
    /// Datagrams a send refused; they are not retried.
    pub send_failed: u64,
}

/// The backend's counts so far, its answer to `snap`.
#[derive(Debug, Serialize, Deserialize)]
pub struct BackendSnap {
    pub received: u64,
    /// What the flows must have sent, from the highest sequence number seen of each.
    pub expected: u64,
    /// Truncated datagrams, those without a header or naming no flow of the run, and errors.
    pub odd: u64,
    pub echo_failed: u64,
    /// Datagrams that came with a PROXY protocol v2 header (stripped before counting).
    pub proxied: u64,
    /// The longest time no datagram arrived, over the measured window (from `window-start`),
    /// in microseconds: a forwarding pause shows here.
    pub longest_gap_us: f64,
}

/// The backend's answer to `report`: per flow.
#[derive(Debug, Serialize, Deserialize)]
pub struct BackendReport {
    pub received: Vec<u64>,
    pub expected: Vec<u64>,
}

/// The PROXY protocol v2 signature (its specification, section 2.2).
const PROXY_V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

/// What follows a PROXY protocol v2 header at the front of `datagram` (a forwarder's
/// `--proxy-protocol v2`), or all of it when there is none: the backend counts and echoes the
/// generator's payload as a real backend behind such a forwarder would, without the header. A
/// header whose length runs past the datagram leaves it whole (counted odd, as garbage).
pub fn strip_proxy_v2(datagram: &[u8]) -> &[u8] {
    let Some(length) = datagram
        .strip_prefix(&PROXY_V2_SIGNATURE[..])
        .and_then(|rest| rest.get(2..4))
    else {
        return datagram;
    };
    let total = 16 + usize::from(u16::from_be_bytes([length[0], length[1]]));
    datagram.get(total..).unwrap_or(datagram)
}

/// A counter with one writer thread and any number of readers: the writer's load-then-store is
/// exact without a locked instruction on the per-datagram path.
#[derive(Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn add(&self, n: u64) {
        self.0.store(self.0.load(Relaxed) + n, Relaxed);
    }

    pub fn raise_to(&self, n: u64) {
        if n > self.get() {
            self.0.store(n, Relaxed);
        }
    }

    pub fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips_through_a_padded_payload() {
        let header = Header {
            seq: 0x0102_0304_0506_0708,
            sent_ns: u64::MAX - 7,
            flow: 9_999,
        };
        let mut payload = vec![0u8; 64];
        header.write(&mut payload);
        assert_eq!(Header::read(&payload), Some(header));
        assert!(payload[HEADER_LEN..].iter().all(|&b| b == 0));
        assert_eq!(Header::read(&payload[..HEADER_LEN - 1]), None);
    }

    #[test]
    fn proxy_v2_headers_are_stripped_and_nothing_else_is() {
        // A PROXY v2 PROXY command over UDP/IPv4 (family 0x12): 12 bytes of addresses.
        let mut datagram = PROXY_V2_SIGNATURE.to_vec();
        datagram.extend([0x21, 0x12, 0, 12]);
        datagram.extend([127, 1, 0, 1, 127, 0, 0, 1, 0x30, 0x39, 0x4a, 0x38]);
        datagram.extend(b"payload");
        assert_eq!(strip_proxy_v2(&datagram), b"payload");
        assert_eq!(strip_proxy_v2(b"payload"), b"payload");
        let cut = &datagram[..20];
        assert_eq!(strip_proxy_v2(cut), cut);
    }
}
