//! The XDP fast path's program (`bpf/xdp_forward.c`) run on crafted frames through
//! `BPF_PROG_TEST_RUN`: hits in both directions, redirected and sent back out (XDP_TX), misses,
//! and everything it must pass untouched (IPv6, IP options, fragments, an expiring TTL, a next
//! hop it cannot resolve, an egress interface it may not use). Every frame it rewrites is read
//! back by an independent decoder (etherparse), checksums recomputed from scratch.
//!
//! `bpf_fib_lookup` inside a test run looks in the calling thread's network namespace, from the
//! interface the context names, so each test builds one: two veth pairs with addresses, routes
//! and permanent neighbours, forwarding on. Needs root (CI runs as root); skipped, saying why,
//! otherwise.

mod util;

use std::net::SocketAddrV4;

use etherparse::{Ipv4Header, Ipv4HeaderSlice, PacketBuilder, SlicedPacket, TransportSlice};
use ringgate::sys::xdp::{Counter, Tuple, XdpAction, XdpForward, session_flows};
use util::netns::{self, Netns};

/// The MACs the test gives the forwarder's interfaces and the neighbours behind them.
const X0_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x01, 0x01];
const Y0_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x02, 0x01];
const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x01, 0x02];
const NEIGHBOUR_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x01, 0x03];
const BACKEND_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x02, 0x02];

fn addr(text: &str) -> SocketAddrV4 {
    text.parse().unwrap()
}

fn mac(bytes: [u8; 6]) -> String {
    bytes.map(|b| format!("{b:02x}")).join(":")
}

/// The forwarder's namespace: `x0` (10.1.0.1/24, the client side: a client at 10.1.0.2 and a
/// backend at 10.1.0.3) and `y0` (10.2.0.1/24, the backend side: a backend at 10.2.0.2), each a
/// veth whose peer stays in the namespace, neighbours permanent, forwarding on.
struct Net {
    ns: Netns,
    x0: u32,
    y0: u32,
}

impl Net {
    fn new() -> Net {
        let ns = Netns::new("xdp");
        ns.sysctl("net.ipv4.ip_forward", "1");
        for (dev, peer, address, cidr) in [
            ("x0", "x1", X0_MAC, "10.1.0.1/24"),
            ("y0", "y1", Y0_MAC, "10.2.0.1/24"),
        ] {
            ns.ip(&["link", "add", dev, "type", "veth", "peer", "name", peer]);
            ns.ip(&["link", "set", dev, "address", &mac(address)]);
            ns.ip(&["addr", "add", cidr, "dev", dev]);
            ns.ip(&["link", "set", dev, "up"]);
            ns.ip(&["link", "set", peer, "up"]);
        }
        for (ip, lladdr, dev) in [
            ("10.1.0.2", CLIENT_MAC, "x0"),
            ("10.1.0.3", NEIGHBOUR_MAC, "x0"),
            ("10.2.0.2", BACKEND_MAC, "y0"),
        ] {
            let lladdr = mac(lladdr);
            let args = [
                "neigh",
                "add",
                ip,
                "lladdr",
                &lladdr,
                "dev",
                dev,
                "nud",
                "permanent",
            ];
            ns.ip(&args);
        }
        let x0 = ns.ifindex("x0");
        let y0 = ns.ifindex("y0");
        Net { ns, x0, y0 }
    }

    /// Loads the program inside the namespace, lets it redirect to `y0` and `x0`, and runs `f`
    /// there (the device map and the test runs resolve interfaces in the caller's namespace).
    fn run<T: Send>(&self, f: impl FnOnce(&mut XdpForward) -> T + Send) -> T {
        let (x0, y0) = (self.x0, self.y0);
        self.ns.enter(move || {
            let mut xdp = XdpForward::load(1024).expect("load the XDP program");
            xdp.add_port(x0).unwrap();
            xdp.add_port(y0).unwrap();
            f(&mut xdp)
        })
    }
}

/// An Ethernet frame carrying an IPv4/UDP datagram from `src` to `dst`, checksummed.
fn frame(
    eth_dst: [u8; 6],
    src: SocketAddrV4,
    dst: SocketAddrV4,
    ttl: u8,
    payload: &[u8],
) -> Vec<u8> {
    let builder = PacketBuilder::ethernet2([0x02, 0, 0, 0, 0, 0x99], eth_dst)
        .ipv4(src.ip().octets(), dst.ip().octets(), ttl)
        .udp(src.port(), dst.port());
    let mut out = Vec::with_capacity(builder.size(payload.len()));
    builder.write(&mut out, payload).unwrap();
    out
}

const IP_AT: usize = 14;

/// Rewrites the IPv4 header of `frame` through `edit`, checksum recomputed.
fn edit_ip(frame: &mut Vec<u8>, edit: impl FnOnce(&mut Ipv4Header)) {
    let (mut header, _) = Ipv4Header::from_slice(&frame[IP_AT..]).unwrap();
    let old_len = header.header_len();
    edit(&mut header);
    header.header_checksum = header.calc_header_checksum();
    let mut bytes = Vec::new();
    header.write(&mut bytes).unwrap();
    frame.splice(IP_AT..IP_AT + old_len, bytes);
}

/// What a forwarded frame says, read by etherparse, after checking both checksums against ones
/// computed from scratch (a UDP checksum of 0 is "none" and is returned as is).
#[derive(Debug, PartialEq)]
struct Seen {
    eth_src: [u8; 6],
    eth_dst: [u8; 6],
    tuple: Tuple,
    ttl: u8,
    udp_checksum: u16,
    payload: Vec<u8>,
}

fn decode(frame: &[u8]) -> Seen {
    let packet = SlicedPacket::from_ethernet(frame).expect("a frame etherparse can read");
    let eth = match packet.link.unwrap() {
        etherparse::LinkSlice::Ethernet2(eth) => eth,
        other => panic!("not Ethernet II: {other:?}"),
    };
    let ip = Ipv4HeaderSlice::from_slice(&frame[IP_AT..])
        .unwrap()
        .to_header();
    assert_eq!(
        ip.header_checksum,
        ip.calc_header_checksum(),
        "IPv4 header checksum"
    );
    let Some(TransportSlice::Udp(udp)) = packet.transport else {
        panic!("not UDP");
    };
    let payload = udp.payload().to_vec();
    let udp = udp.to_header();
    if udp.checksum != 0 {
        let expected = udp.calc_checksum_ipv4(&ip, &payload).unwrap();
        assert_eq!(udp.checksum, expected, "UDP checksum");
    }
    let sock = |ip: [u8; 4], port| SocketAddrV4::new(ip.into(), port);
    Seen {
        eth_src: eth.source(),
        eth_dst: eth.destination(),
        tuple: Tuple {
            src: sock(ip.source, udp.source_port),
            dst: sock(ip.destination, udp.destination_port),
        },
        ttl: ip.time_to_live,
        udp_checksum: udp.checksum,
        payload,
    }
}

fn client() -> SocketAddrV4 {
    addr("10.1.0.2:5000")
}
fn listen() -> SocketAddrV4 {
    addr("10.1.0.1:7000")
}
fn upstream() -> SocketAddrV4 {
    addr("10.2.0.1:40000")
}
fn backend() -> SocketAddrV4 {
    addr("10.2.0.2:27015")
}

/// The session client -> listen, upstream -> backend in the flow map, both directions.
fn insert_session(xdp: &mut XdpForward) {
    for (from, to) in session_flows(client(), listen(), upstream(), backend()) {
        xdp.insert_flow(&from, &to).unwrap();
    }
}

/// CLOCK_MONOTONIC in nanoseconds, the clock bpf_ktime_get_ns reads.
fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid, writable timespec for the call.
    assert_eq!(
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) },
        0
    );
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

#[test]
fn a_hit_from_the_client_is_rewritten_and_redirected_to_the_backend() {
    if netns::skip("a_hit_from_the_client_is_rewritten_and_redirected_to_the_backend") {
        return;
    }
    let net = Net::new();
    let x0 = net.x0;
    net.run(|xdp| {
        insert_session(xdp);
        let from = Tuple {
            src: client(),
            dst: listen(),
        };
        assert_eq!(xdp.flow(&from).unwrap().unwrap().1, 0, "never seen yet");
        let before = monotonic_ns();
        let input = frame(X0_MAC, client(), listen(), 64, b"hello, backend");
        let out = xdp.test_run(&input, x0).unwrap();
        let after = monotonic_ns();
        assert_eq!(out.action, XdpAction::Redirect);
        assert_eq!(out.frame.len(), input.len());
        let seen = decode(&out.frame);
        assert_eq!(
            seen.tuple,
            Tuple {
                src: upstream(),
                dst: backend()
            }
        );
        assert_eq!((seen.eth_src, seen.eth_dst), (Y0_MAC, BACKEND_MAC));
        assert_eq!(seen.ttl, 63);
        assert_ne!(seen.udp_checksum, 0);
        assert_eq!(seen.payload, b"hello, backend");
        let (rewrite, last_seen) = xdp.flow(&from).unwrap().unwrap();
        assert_eq!(
            rewrite,
            Tuple {
                src: upstream(),
                dst: backend()
            }
        );
        assert!(
            (before..=after).contains(&last_seen),
            "{before} <= {last_seen} <= {after}"
        );
        assert_eq!(xdp.counter(Counter::ForwardedRedirect).unwrap(), 1);
    });
}

#[test]
fn a_hit_from_the_backend_is_rewritten_and_redirected_to_the_client() {
    if netns::skip("a_hit_from_the_backend_is_rewritten_and_redirected_to_the_client") {
        return;
    }
    let net = Net::new();
    let y0 = net.y0;
    net.run(|xdp| {
        insert_session(xdp);
        let input = frame(Y0_MAC, backend(), upstream(), 17, b"hello, client");
        let out = xdp.test_run(&input, y0).unwrap();
        assert_eq!(out.action, XdpAction::Redirect);
        let seen = decode(&out.frame);
        assert_eq!(
            seen.tuple,
            Tuple {
                src: listen(),
                dst: client()
            }
        );
        assert_eq!((seen.eth_src, seen.eth_dst), (X0_MAC, CLIENT_MAC));
        assert_eq!(seen.ttl, 16);
        assert_eq!(seen.payload, b"hello, client");
        let back = Tuple {
            src: backend(),
            dst: upstream(),
        };
        assert!(xdp.flow(&back).unwrap().unwrap().1 > 0);
    });
}

#[test]
fn a_next_hop_out_of_the_same_interface_is_sent_back_with_xdp_tx() {
    if netns::skip("a_next_hop_out_of_the_same_interface_is_sent_back_with_xdp_tx") {
        return;
    }
    let net = Net::new();
    let x0 = net.x0;
    net.run(|xdp| {
        let near = addr("10.1.0.3:27015");
        let from = Tuple {
            src: client(),
            dst: listen(),
        };
        let to = Tuple {
            src: addr("10.1.0.1:40001"),
            dst: near,
        };
        xdp.insert_flow(&from, &to).unwrap();
        let out = xdp
            .test_run(&frame(X0_MAC, client(), listen(), 64, b"x"), x0)
            .unwrap();
        assert_eq!(out.action, XdpAction::Tx);
        let seen = decode(&out.frame);
        assert_eq!(seen.tuple, to);
        assert_eq!((seen.eth_src, seen.eth_dst), (X0_MAC, NEIGHBOUR_MAC));
        assert_eq!(xdp.counter(Counter::ForwardedTx).unwrap(), 1);
    });
}

#[test]
fn checksums_stay_right_across_many_tuples_and_a_zero_udp_checksum_stays_zero() {
    if netns::skip("checksums_stay_right_across_many_tuples_and_a_zero_udp_checksum_stays_zero") {
        return;
    }
    let net = Net::new();
    let x0 = net.x0;
    net.run(|xdp| {
        // Ports and payloads chosen to walk the checksums through many values, 0xffff-bound
        // sums included; every one is checked against a checksum computed from scratch.
        for i in 0..200u16 {
            let src = SocketAddrV4::new([10, 1, 0, 2].into(), i.wrapping_mul(331).wrapping_add(1));
            let to = Tuple {
                src: SocketAddrV4::new([10, 2, 0, 1].into(), 0xffff - i),
                dst: SocketAddrV4::new([10, 2, 0, 2].into(), i.wrapping_mul(7919)),
            };
            let from = Tuple { src, dst: listen() };
            xdp.insert_flow(&from, &to).unwrap();
            let payload: Vec<u8> = (0..(i % 37))
                .map(|b| (b as u8).wrapping_mul(i as u8))
                .collect();
            let mut input = frame(X0_MAC, src, listen(), 2 + (i % 250) as u8, &payload);
            let zero = i % 5 == 0;
            if zero {
                let at = input.len() - payload.len() - 2;
                input[at..at + 2].fill(0);
            }
            let out = xdp.test_run(&input, x0).unwrap();
            assert_eq!(out.action, XdpAction::Redirect, "tuple {i}");
            let seen = decode(&out.frame);
            assert_eq!(seen.tuple, to, "tuple {i}");
            assert_eq!(seen.payload, payload, "tuple {i}");
            assert_eq!(
                seen.udp_checksum == 0,
                zero,
                "tuple {i}: zero stays zero, only zero"
            );
        }
    });
}

/// Runs `input` and asserts the program passed it to the stack untouched, counted as `why`.
fn assert_passed(xdp: &XdpForward, input: &[u8], ifindex: u32, why: Counter) {
    let before = xdp.counter(why).unwrap();
    let out = xdp.test_run(input, ifindex).unwrap();
    assert_eq!(out.action, XdpAction::Pass, "{}", why.name());
    assert_eq!(
        out.frame,
        input,
        "{}: a passed frame is untouched",
        why.name()
    );
    assert_eq!(xdp.counter(why).unwrap(), before + 1, "{}", why.name());
}

#[test]
fn what_the_program_does_not_forward_passes_untouched_and_counted() {
    if netns::skip("what_the_program_does_not_forward_passes_untouched_and_counted") {
        return;
    }
    let net = Net::new();
    let x0 = net.x0;
    net.run(|xdp| {
        insert_session(xdp);
        let hit = frame(X0_MAC, client(), listen(), 64, b"payload");

        let miss = frame(X0_MAC, addr("10.1.0.2:5001"), listen(), 64, b"payload");
        assert_passed(xdp, &miss, x0, Counter::PassMiss);

        let mut fragment = hit.clone();
        edit_ip(&mut fragment, |ip| ip.more_fragments = true);
        assert_passed(xdp, &fragment, x0, Counter::PassFragment);
        let mut later = hit.clone();
        edit_ip(&mut later, |ip| {
            ip.fragment_offset = 8u16.try_into().unwrap()
        });
        assert_passed(xdp, &later, x0, Counter::PassFragment);

        let mut options = hit.clone();
        edit_ip(&mut options, |ip| {
            ip.options = [1u8, 1, 1, 0][..].try_into().unwrap();
            ip.total_len += 4;
        });
        assert_eq!(
            options[IP_AT] & 0x0f,
            6,
            "the header grew a word of options"
        );
        assert_passed(xdp, &options, x0, Counter::PassIpOptions);

        let v6 = {
            let builder = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 0x99], X0_MAC)
                .ipv6([0xfd; 16], [0xfe; 16], 64)
                .udp(5000, 7000);
            let mut out = Vec::new();
            builder.write(&mut out, b"payload").unwrap();
            out
        };
        assert_passed(xdp, &v6, x0, Counter::PassNotIpv4);

        let tcp = {
            let builder = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 0x99], X0_MAC)
                .ipv4([10, 1, 0, 2], [10, 1, 0, 1], 64)
                .tcp(5000, 7000, 1, 1024);
            let mut out = Vec::new();
            builder.write(&mut out, b"payload").unwrap();
            out
        };
        assert_passed(xdp, &tcp, x0, Counter::PassNotUdp);

        let expiring = frame(X0_MAC, client(), listen(), 1, b"payload");
        assert_passed(xdp, &expiring, x0, Counter::PassTtl);

        assert_passed(xdp, &hit[..IP_AT + 24], x0, Counter::PassMalformed);
        let mut too_long = hit.clone();
        edit_ip(&mut too_long, |ip| ip.total_len += 1);
        assert_passed(xdp, &too_long, x0, Counter::PassMalformed);

        // And the same session still forwards: nothing above touched the flow.
        assert_eq!(xdp.test_run(&hit, x0).unwrap().action, XdpAction::Redirect);
    });
}

#[test]
fn a_next_hop_the_kernel_cannot_resolve_or_may_not_use_passes_the_original() {
    if netns::skip("a_next_hop_the_kernel_cannot_resolve_or_may_not_use_passes_the_original") {
        return;
    }
    let net = Net::new();
    let (x0, y0) = (net.x0, net.y0);
    net.run(|xdp| {
        let hit = frame(X0_MAC, client(), listen(), 64, b"payload");
        let from = Tuple {
            src: client(),
            dst: listen(),
        };
        let rewrite = |dst: &str| Tuple {
            src: upstream(),
            dst: addr(dst),
        };

        // No route to 10.9.0.0/16.
        xdp.insert_flow(&from, &rewrite("10.9.9.9:27015")).unwrap();
        assert_passed(xdp, &hit, x0, Counter::PassFib);
        // A route, but no neighbour for the next hop.
        xdp.insert_flow(&from, &rewrite("10.2.0.77:27015")).unwrap();
        assert_passed(xdp, &hit, x0, Counter::PassFib);
        // A resolved next hop out of an interface not in the device map.
        xdp.insert_flow(&from, &rewrite("10.2.0.2:27015")).unwrap();
        assert!(xdp.remove_port(y0).unwrap());
        assert!(!xdp.remove_port(y0).unwrap(), "already gone");
        assert_passed(xdp, &hit, x0, Counter::PassNoEgress);
        let last_seen = xdp.flow(&from).unwrap().unwrap().1;
        assert_eq!(last_seen, 0, "a pass is not a forward");

        xdp.add_port(y0).unwrap();
        assert_eq!(xdp.test_run(&hit, x0).unwrap().action, XdpAction::Redirect);
        assert!(xdp.remove_flow(&from).unwrap());
        assert!(!xdp.remove_flow(&from).unwrap(), "already gone");
        assert!(xdp.flow(&from).unwrap().is_none());
        assert_passed(xdp, &hit, x0, Counter::PassMiss);
    });
}

#[test]
fn with_forwarding_off_the_lookup_fails_and_frames_pass() {
    if netns::skip("with_forwarding_off_the_lookup_fails_and_frames_pass") {
        return;
    }
    let net = Net::new();
    net.ns.sysctl("net.ipv4.conf.all.forwarding", "0");
    net.ns.sysctl("net.ipv4.conf.x0.forwarding", "0");
    let x0 = net.x0;
    net.run(|xdp| {
        insert_session(xdp);
        let hit = frame(X0_MAC, client(), listen(), 64, b"payload");
        assert_passed(xdp, &hit, x0, Counter::PassFib);
    });
}

#[test]
fn a_udp_checksum_that_computes_to_zero_leaves_as_all_ones() {
    if netns::skip("a_udp_checksum_that_computes_to_zero_leaves_as_all_ones") {
        return;
    }
    // A two-byte payload for which the rewritten datagram's checksum computes to 0, which
    // RFC 768 sends as 0xffff (0 would mean "no checksum"); etherparse reports it as 0xffff.
    let to = Tuple {
        src: upstream(),
        dst: backend(),
    };
    let payload = (0..=u16::MAX)
        .map(u16::to_be_bytes)
        .find(|payload| {
            let rewritten = frame(BACKEND_MAC, to.src, to.dst, 63, payload);
            let packet = SlicedPacket::from_ethernet(&rewritten).unwrap();
            let Some(TransportSlice::Udp(udp)) = packet.transport else {
                unreachable!()
            };
            udp.checksum() == 0xffff
        })
        .expect("some two-byte payload sums to zero");
    let net = Net::new();
    let x0 = net.x0;
    net.run(|xdp| {
        insert_session(xdp);
        let out = xdp
            .test_run(&frame(X0_MAC, client(), listen(), 64, &payload), x0)
            .unwrap();
        assert_eq!(out.action, XdpAction::Redirect);
        let seen = decode(&out.frame);
        assert_eq!(seen.tuple, to);
        assert_eq!(seen.udp_checksum, 0xffff);
    });
}
