//! The generator's datagram format, shared by the generator (writer, and reader of echoes) and
//! the backend (reader): an 8-byte sequence number, an 8-byte send timestamp and a 4-byte flow
//! id, little-endian, padded with zeros to the payload size. Forwarders never look inside.

/// Bytes of header at the start of every payload; the smallest payload the generator sends.
pub const HEADER_LEN: usize = 20;

/// What the generator stamps into every datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Per-flow sequence number, from 0 with no gaps as sent: a gap at the receiver is a loss.
    pub seq: u64,
    /// CLOCK_MONOTONIC nanoseconds when the batch holding this datagram was handed to the kernel.
    pub sent_ns: u64,
    /// Index of the generator socket (source port) the datagram left from.
    pub flow: u32,
}

impl Header {
    /// Writes the header into the front of `payload`, which is at least `HEADER_LEN` long; the
    /// padding after it is left as it is (zeros, written once when the buffer was made).
    pub fn write(&self, payload: &mut [u8]) {
        payload[0..8].copy_from_slice(&self.seq.to_le_bytes());
        payload[8..16].copy_from_slice(&self.sent_ns.to_le_bytes());
        payload[16..20].copy_from_slice(&self.flow.to_le_bytes());
    }

    /// Reads the header of a received payload, or `None` if it is too short to hold one.
    pub fn read(payload: &[u8]) -> Option<Header> {
        let header = payload.get(..HEADER_LEN)?;
        let word = |range: std::ops::Range<usize>| {
            let mut bytes = [0u8; 8];
            bytes[..range.len()].copy_from_slice(&header[range]);
            u64::from_le_bytes(bytes)
        };
        Some(Header {
            seq: word(0..8),
            sent_ns: word(8..16),
            flow: word(16..20) as u32,
        })
    }
}

/// Self-checks of the pure logic above. Bench targets built with `harness = false` never run
/// `#[test]` functions, so the driver runs these under `cargo test --benches` instead.
pub mod checks {
    use super::*;

    pub fn header_round_trips_through_a_padded_payload() {
        let header = Header {
            seq: 0x0102_0304_0506_0708,
            sent_ns: u64::MAX - 7,
            flow: 9_999,
        };
        let mut payload = vec![0u8; 64];
        header.write(&mut payload);
        assert_eq!(Header::read(&payload), Some(header));
        assert!(payload[HEADER_LEN..].iter().all(|&b| b == 0));
    }

    pub fn short_payload_has_no_header() {
        assert_eq!(Header::read(&[0u8; HEADER_LEN - 1]), None);
    }

    pub const ALL: &[(&str, fn())] = &[
        (
            "wire::header_round_trips_through_a_padded_payload",
            header_round_trips_through_a_padded_payload,
        ),
        (
            "wire::short_payload_has_no_header",
            short_payload_has_no_header,
        ),
    ];
}
