//! The flood role: the spoofed-source flood of the flood scenario. Every datagram comes from a
//! new random source (`loopback::spoofed_source`), as a flood with forged addresses looks to a
//! forwarder: each one is a new client whose session can never be confirmed, because the
//! forwarder's reply goes to an address where nobody listens (the kernel answers it with an
//! ICMP port unreachable, on loopback).
//!
//! Forging a source takes a raw socket with IP_HDRINCL, so root or CAP_NET_RAW; the driver
//! probes for that first and marks the scenario not run without it. What keeps every packet on
//! this host: the target must be in 127.0.0.0/8 (checked before the socket exists), every
//! packet is written with that target as its destination and a source in 127.200.0.0 -
//! 127.254.255.255, the socket is connected to the target and bound to the loopback device, so
//! nothing it sends can leave through another interface whatever a header says.
//!
//! Paced at `--rate` with the generator's pacer (up to 32 datagrams per `sendmmsg`), or as fast
//! as one thread can for `max`. Bounded like every load loop: it stops after `--max-datagrams`,
//! when its stdin closes, or after its lifetime. The payload is shorter than the generator's
//! header, so the backend counts flood datagrams as odd, never as a flow's; it echoes them like
//! any datagram, as a game server answers a newcomer's first packet, so each one also costs the
//! forwarder a reply towards its forged source.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use etherparse::PacketBuilder;
use serde_json::json;

use crate::cli::Rate;
use crate::loopback;
use crate::os::{self, Batch};
use crate::pacing::{BURST_MAX, Pacer};
use crate::proc::{self, RoleArgs};
use crate::sockets;
use crate::wire::{Counter, FloodSnap, HEADER_LEN};

/// IPv4 and UDP headers in front of every payload.
const HEADERS_LEN: usize = 20 + 8;
/// A paced flood wakes about this often, in bursts of rate / this: smooth enough that the
/// forwarder sees a stream, not a few large bursts a second.
const WAKES_PER_SECOND: u64 = 5_000;
/// What every forged datagram carries: `F`s, fewer than a generator header.
const PAYLOAD_BYTE: u8 = b'F';

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    role: RoleArgs,
    /// The forwarder's listening address; IPv4 loopback only
    #[arg(long)]
    target: SocketAddr,
    /// New sources per second, or max
    #[arg(long)]
    rate: Rate,
    /// Payload bytes, fewer than the generator's header
    #[arg(long, default_value_t = 16)]
    payload: usize,
    /// Stop after this many datagrams
    #[arg(long)]
    max_datagrams: u64,
    /// Seed of the source sequence [default: from the clock]
    #[arg(long)]
    seed: Option<u64>,
}

/// SplitMix64 (Steele, Lea and Flood, 2014): one add and two multiply-xorshifts per draw, all
/// 64 bits well mixed, plenty for picking addresses.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let z = (self.0 ^ (self.0 >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        let z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// Writes a whole IPv4/UDP packet from `source` to `target` carrying `payload` into `buf`
/// (exactly `HEADERS_LEN + payload.len()` bytes), UDP checksum included; the kernel fills in
/// the IPv4 checksum and identification of an IP_HDRINCL packet itself.
fn write_packet(
    buf: &mut [u8],
    source: std::net::SocketAddrV4,
    target: std::net::SocketAddrV4,
    payload: &[u8],
) {
    PacketBuilder::ipv4(source.ip().octets(), target.ip().octets(), 64)
        .udp(source.port(), target.port())
        .write_to_slice(buf, payload)
        .expect("the buffer is sized for the headers and the payload");
}

pub fn run(args: Args) -> Result<(), String> {
    args.role.enter()?;
    // The one place the destination is decided: checked before the socket exists.
    let target = loopback::flood_target(args.target)?;
    if args.payload >= HEADER_LEN {
        return Err(format!(
            "--payload {}: a flood payload must be shorter than the generator's {HEADER_LEN}-byte header",
            args.payload
        ));
    }
    let socket = sockets::raw_loopback(target)
        .map_err(|e| format!("raw socket to {target} (needs root or CAP_NET_RAW): {e}"))?;
    let counters: &'static [Counter; 2] = Box::leak(Box::default());
    proc::serve_commands(args.role.lifetime(), move |command| match command {
        "snap" => proc::say(
            "snap",
            &FloodSnap {
                sent: counters[0].get(),
                send_failed: counters[1].get(),
            },
        ),
        other => eprintln!("flood: unknown command `{other}`"),
    });
    if let Err(e) = os::tighten_timer_slack() {
        eprintln!("flood: timer slack stays at its default ({e}); pacing is coarser");
    }
    args.role.pin_thread(0);
    let seed = args.seed.unwrap_or_else(|| {
        let clock = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
        clock.map_or(0, |d| d.as_nanos() as u64) ^ u64::from(std::process::id())
    });
    let mut sources = SplitMix64(seed);
    let (packet_len, payload) = (HEADERS_LEN + args.payload, vec![PAYLOAD_BYTE; args.payload]);
    let mut batch: Batch<()> = Batch::new(BURST_MAX, packet_len);
    let epoch = Instant::now();
    let deadline = epoch + args.role.lifetime();
    let nanos = || epoch.elapsed().as_nanos() as u64;
    let mut pacer = match args.rate {
        Rate::Pps(pps) => {
            let burst = ((pps / WAKES_PER_SECOND) as usize).clamp(1, BURST_MAX);
            Some((Pacer::new(pps, burst, nanos()), burst))
        }
        Rate::Max => None,
    };
    proc::say("ready", &json!({ "seed": seed }));
    let mut attempted = 0u64;
    while attempted < args.max_datagrams && Instant::now() < deadline {
        let count = match &mut pacer {
            None => BURST_MAX,
            Some(((pacer, wake), burst)) => match pacer.next(nanos(), *burst, *wake) {
                Ok(count) => count,
                Err(wait_ns) => {
                    std::thread::sleep(Duration::from_nanos(wait_ns.min(1_000_000)));
                    continue;
                }
            },
        };
        let count = count.min((args.max_datagrams - attempted) as usize);
        for i in 0..count {
            let source = loopback::spoofed_source(sources.next());
            write_packet(batch.fill(i, packet_len), source, target, &payload);
        }
        let (sent, failed) = batch.send_all(&socket, count);
        attempted += count as u64;
        counters[0].add(sent as u64);
        counters[1].add(failed as u64);
        if sent == 0 {
            // A send that keeps failing must not spin the load CPU; the count says so.
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    // Stays until the driver closes stdin, so its last `snap` still has an answer.
    loop {
        std::thread::park();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forged_packets_are_whole_and_stay_on_loopback() {
        use etherparse::{NetHeaders, PacketHeaders, TransportHeader};
        let target = loopback::flood_target("127.0.0.1:19132".parse().unwrap()).unwrap();
        let mut sources = SplitMix64(7);
        let payload = [PAYLOAD_BYTE; 16];
        let mut buf = [0u8; HEADERS_LEN + 16];
        for _ in 0..100 {
            let source = loopback::spoofed_source(sources.next());
            write_packet(&mut buf, source, target, &payload);
            let packet = PacketHeaders::from_ip_slice(&buf).unwrap();
            let (Some(NetHeaders::Ipv4(ip, _)), Some(TransportHeader::Udp(udp))) =
                (&packet.net, &packet.transport)
            else {
                panic!("not IPv4/UDP: {packet:?}");
            };
            assert_eq!(
                (ip.source, ip.destination),
                (source.ip().octets(), [127, 0, 0, 1])
            );
            assert_eq!(
                (udp.source_port, udp.destination_port),
                (source.port(), 19132)
            );
            assert_eq!(udp.checksum, udp.calc_checksum_ipv4(ip, &payload).unwrap());
            assert_eq!(packet.payload.slice(), &payload[..]);
        }
        let mut again = SplitMix64(7);
        assert_eq!(again.next(), SplitMix64(7).next());
        assert_ne!(again.next(), SplitMix64(7).next());
    }
}
