//! The Rust mirror of `bpf/xdp_forward.h`: the flow map's key and value, the counter indices,
//! and the program's verdicts. The header is the definition; this file follows it. The sizes are
//! checked when the object loads (aya compares them with the maps' key and value sizes) and the
//! counter list against the counter array's length, so a drift fails at load, not in traffic.

use std::net::{Ipv4Addr, SocketAddrV4};

/// One direction of a flow as the wire carries it: source and destination address and port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Tuple {
    pub src: SocketAddrV4,
    pub dst: SocketAddrV4,
}

/// `struct flow_key`: addresses and ports in network byte order.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct FlowKey {
    saddr: u32,
    daddr: u32,
    sport: u16,
    dport: u16,
}

/// `struct flow_value`: the tuple a datagram is rewritten to, and when one last went through.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct FlowValue {
    saddr: u32,
    daddr: u32,
    sport: u16,
    dport: u16,
    pad: u32,
    pub(super) last_seen_ns: u64,
}

// SAFETY: both are repr(C) structs of integers laid out without padding (12 and 24 bytes, the
// value's 4 spare bytes being the named `pad` field), so every bit pattern is a valid value and
// copying their bytes to and from the kernel is sound, which is what aya's `Pod` asks.
unsafe impl aya::Pod for FlowKey {}
// SAFETY: as above.
unsafe impl aya::Pod for FlowValue {}

const _: () = assert!(std::mem::size_of::<FlowKey>() == 12);
const _: () = assert!(std::mem::size_of::<FlowValue>() == 24);

fn wire_addr(addr: &SocketAddrV4) -> (u32, u16) {
    (
        u32::from_ne_bytes(addr.ip().octets()),
        u16::from_ne_bytes(addr.port().to_be_bytes()),
    )
}

impl FlowKey {
    pub(super) fn new(tuple: &Tuple) -> FlowKey {
        let (saddr, sport) = wire_addr(&tuple.src);
        let (daddr, dport) = wire_addr(&tuple.dst);
        FlowKey {
            saddr,
            daddr,
            sport,
            dport,
        }
    }
}

impl FlowValue {
    /// A rewrite to `tuple`, never seen yet.
    pub(super) fn new(tuple: &Tuple) -> FlowValue {
        let (saddr, sport) = wire_addr(&tuple.src);
        let (daddr, dport) = wire_addr(&tuple.dst);
        FlowValue {
            saddr,
            daddr,
            sport,
            dport,
            pad: 0,
            last_seen_ns: 0,
        }
    }

    pub(super) fn tuple(&self) -> Tuple {
        let addr = |ip: u32, port: u16| {
            SocketAddrV4::new(
                Ipv4Addr::from(ip.to_ne_bytes()),
                u16::from_be_bytes(port.to_ne_bytes()),
            )
        };
        Tuple {
            src: addr(self.saddr, self.sport),
            dst: addr(self.daddr, self.dport),
        }
    }
}

/// `enum counter`: why the program did what it did to a frame, one per-CPU counter each.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Counter {
    ForwardedTx,
    ForwardedRedirect,
    PassNotIpv4,
    PassNotUdp,
    PassIpOptions,
    PassFragment,
    PassMalformed,
    PassMiss,
    PassTtl,
    PassFib,
    PassNoEgress,
    DropRedirect,
}

impl Counter {
    /// Every counter, in the header's order (its index is its position).
    pub const ALL: [Counter; 12] = [
        Counter::ForwardedTx,
        Counter::ForwardedRedirect,
        Counter::PassNotIpv4,
        Counter::PassNotUdp,
        Counter::PassIpOptions,
        Counter::PassFragment,
        Counter::PassMalformed,
        Counter::PassMiss,
        Counter::PassTtl,
        Counter::PassFib,
        Counter::PassNoEgress,
        Counter::DropRedirect,
    ];

    /// The index of this counter in the program's counter array.
    pub fn index(self) -> u32 {
        self as u32
    }

    /// A name for metrics and logs: `forwarded_tx`, `pass_fib`, ...
    pub fn name(self) -> &'static str {
        match self {
            Counter::ForwardedTx => "forwarded_tx",
            Counter::ForwardedRedirect => "forwarded_redirect",
            Counter::PassNotIpv4 => "pass_not_ipv4",
            Counter::PassNotUdp => "pass_not_udp",
            Counter::PassIpOptions => "pass_ip_options",
            Counter::PassFragment => "pass_fragment",
            Counter::PassMalformed => "pass_malformed",
            Counter::PassMiss => "pass_miss",
            Counter::PassTtl => "pass_ttl",
            Counter::PassFib => "pass_fib",
            Counter::PassNoEgress => "pass_no_egress",
            Counter::DropRedirect => "drop_redirect",
        }
    }
}

/// What an XDP program returned (`enum xdp_action`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XdpAction {
    Aborted,
    Drop,
    Pass,
    Tx,
    Redirect,
    /// A value the kernel does not define; the program never returns one.
    Other(u32),
}

impl From<u32> for XdpAction {
    fn from(value: u32) -> XdpAction {
        match value {
            0 => XdpAction::Aborted,
            1 => XdpAction::Drop,
            2 => XdpAction::Pass,
            3 => XdpAction::Tx,
            4 => XdpAction::Redirect,
            other => XdpAction::Other(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_indexed_in_the_order_listed() {
        for (i, counter) in Counter::ALL.iter().enumerate() {
            assert_eq!(counter.index() as usize, i, "{}", counter.name());
        }
    }

    #[test]
    fn a_rewrite_reads_back_as_the_tuple_it_was_made_from() {
        let tuple = Tuple {
            src: "10.0.0.1:4000".parse().unwrap(),
            dst: "192.168.1.2:27015".parse().unwrap(),
        };
        assert_eq!(FlowValue::new(&tuple).tuple(), tuple);
    }

    #[test]
    fn keys_hold_addresses_and_ports_as_the_wire_does() {
        let key = FlowKey::new(&Tuple {
            src: "1.2.3.4:258".parse().unwrap(),
            dst: "5.6.7.8:1".parse().unwrap(),
        });
        assert_eq!(key.saddr.to_ne_bytes(), [1, 2, 3, 4]);
        assert_eq!(key.daddr.to_ne_bytes(), [5, 6, 7, 8]);
        assert_eq!(key.sport.to_ne_bytes(), [1, 2]);
        assert_eq!(key.dport.to_ne_bytes(), [0, 1]);
    }
}
