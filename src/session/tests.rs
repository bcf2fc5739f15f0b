//! One test per transition, and the invariants between them.

use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};

use super::*;
use crate::route::Target;

/// An upstream that is not a socket: the table only stores it and reports its descriptor.
#[derive(Debug)]
pub(super) struct Fake(pub(super) RawFd);

impl AsRawFd for Fake {
    fn as_raw_fd(&self) -> RawFd {
        self.0
    }
}

pub(super) fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

pub(super) const FIRST: Held = Held { bid: 0, len: 1 };
pub(super) const BACKEND: SocketAddr = SocketAddr::new(
    std::net::IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 9)),
    19132,
);

pub(super) fn limits(max: usize, pending_max: usize, held_max: usize) -> Limits {
    Limits {
        sessions_max: max,
        fd_max: usize::MAX,
        pending_max,
        held_max,
    }
}

pub(super) fn table(max: usize, pending_max: usize, held_max: usize) -> Sessions<Fake> {
    Sessions::new(limits(max, pending_max, held_max))
}

/// An open session whose client has seen its backend's answer.
pub(super) fn confirmed(t: &mut Sessions<Fake>, port: u16) -> Key {
    let key = open(t, port);
    t.reply_to(key, 0).unwrap();
    t.upstream(key, 0).unwrap();
    assert!(t.confirmed(key));
    key
}

pub(super) fn open(t: &mut Sessions<Fake>, port: u16) -> Key {
    let key = t.insert(addr(port), 0, FIRST);
    t.open(
        key,
        Fake(100 + i32::from(port)),
        addr(40_000 + port),
        BACKEND,
        None,
        0,
    )
    .unwrap();
    key
}

#[test]
fn insert_starts_resolving_with_the_first_datagram_held() {
    let mut t = table(2, 8, 64);
    assert_eq!(t.classify(&addr(1)), Ingress::Create);
    let key = t.insert(addr(1), 0, FIRST);
    assert_eq!(t.phase(key), Some(Phase::Resolving));
    assert_eq!(t.held_total, 1);
    assert_eq!(t.classify(&addr(1)), Ingress::Hold(key));
    assert_eq!(t.live(), 1);
    assert_eq!(t.upstream(key, 0), None, "not open yet");
}

#[test]
fn an_ipv4_client_of_a_dual_stack_listener_is_one_client_however_it_arrived() {
    let mut t = table(4, 8, 64);
    let mapped: SocketAddr = "[::ffff:127.0.0.1]:7".parse().unwrap();
    let key = t.insert(mapped, 0, FIRST);
    assert_eq!(t.client(key), Some(addr(7)), "known by its IPv4 form");
    assert_eq!(t.classify(&addr(7)), Ingress::Hold(key));
    assert_eq!(t.by_client(&mapped), Some(key));
    t.open(key, Fake(1), addr(40_000), BACKEND, None, 0);
    assert_eq!(
        t.reply_to(key, 0),
        Some(Reply {
            to: RawSockAddr::encode(mapped),
            from: None,
            backend: 0
        }),
        "replies go to the address as received"
    );
}

#[test]
fn unknown_clients_are_created_until_the_cap() {
    let mut t = table(2, 8, 64);
    let a = confirmed(&mut t, 1);
    confirmed(&mut t, 2);
    assert_eq!(
        t.classify(&addr(3)),
        Ingress::Full(Counter::DropMaxSessions),
        "confirmed sessions are never evicted for a newcomer"
    );
    assert_eq!(t.classify(&addr(1)), Ingress::Forward(a));
}

#[test]
fn a_resolving_session_holds_up_to_pending_max() {
    let mut t = table(8, 2, 64);
    let key = t.insert(addr(1), 0, FIRST);
    assert!(t.hold(key, Held { bid: 1, len: 1 }));
    assert_eq!(
        t.classify(&addr(1)),
        Ingress::Drop(Counter::DropPendingFull)
    );
}

#[test]
fn the_worker_wide_hold_cap_protects_the_buffer_ring() {
    let mut t = table(8, 8, 3);
    let a = t.insert(addr(1), 0, FIRST);
    let b = t.insert(addr(2), 0, Held { bid: 1, len: 1 });
    assert!(t.hold(a, Held { bid: 2, len: 1 }));
    assert_eq!(
        t.classify(&addr(2)),
        Ingress::Drop(Counter::DropPendingFull)
    );
    assert_eq!(
        t.classify(&addr(3)),
        Ingress::Full(Counter::DropPendingFull)
    );
    let closed = t.begin_close(b, Why::Idle).unwrap();
    assert_eq!(closed.held, [Held { bid: 1, len: 1 }]);
    assert_eq!(t.classify(&addr(3)), Ingress::Create);
}

#[test]
fn open_hands_back_what_was_held_in_order_and_registers_the_port() {
    let mut t = table(8, 8, 64);
    let key = t.insert(addr(1), 0, FIRST);
    t.hold(key, Held { bid: 5, len: 9 });
    let held = t.open(key, Fake(7), addr(4000), BACKEND, None, 3).unwrap();
    assert_eq!(held, [FIRST, Held { bid: 5, len: 9 }]);
    assert_eq!(t.held_total, 0);
    assert_eq!(t.phase(key), Some(Phase::Open));
    assert_eq!(t.by_upstream_port(4000), Some((key, addr(4000))));
    assert_eq!(
        t.upstream(key, 3),
        Some(Upstream {
            fd: 7,
            backend: 3,
            prefix: &[]
        }),
        "its socket and backend slot"
    );
    assert!(
        t.open(key, Fake(8), addr(4001), BACKEND, None, 0).is_none(),
        "opened twice"
    );
    assert!(!t.hold(key, FIRST), "an open session holds nothing");
}

#[test]
fn traffic_either_way_marks_the_session_active() {
    let mut t = table(8, 8, 64);
    let a = open(&mut t, 1);
    let b = open(&mut t, 2);
    let c = open(&mut t, 3);
    assert!(t.upstream(a, 10).is_some());
    assert_eq!(
        t.reply_to(b, 10).map(|r| r.to),
        Some(RawSockAddr::encode(addr(2)))
    );
    let mut idle = Vec::new();
    t.collect_idle(5, &mut idle);
    assert_eq!(idle, [c]);
}

#[test]
fn a_closing_session_leaves_the_maps_and_is_freed_by_its_last_operation() {
    let mut t = table(1, 8, 64);
    let key = open(&mut t, 1);
    t.op_started(key);
    let closed = t.begin_close(key, Why::Idle).unwrap();
    assert_eq!(closed.client, addr(1));
    assert_eq!(closed.upstream_local, Some(addr(40_001)));
    assert!(t.begin_close(key, Why::Idle).is_none(), "closed twice");
    assert_eq!(t.by_client(&addr(1)), None);
    assert_eq!(t.by_upstream_port(40_001), None);
    // The slot is held while an operation is in flight, within the slack closing sessions
    // may take beyond the cap.
    assert_eq!(t.live(), 1);
    assert_eq!(t.classify(&addr(1)), Ingress::Create);
    assert_eq!(t.upstream(key, 0), None, "nothing more goes up");
    assert!(t.op_finished(key), "freed by its last operation");
    assert_eq!(t.live(), 0);
    assert_eq!(t.phase(key), None);
    assert_eq!(t.classify(&addr(1)), Ingress::Create);
}

#[test]
fn a_session_with_nothing_in_flight_is_freed_as_it_closes() {
    let mut t = table(4, 8, 64);
    let key = open(&mut t, 1);
    assert!(t.begin_close(key, Why::Idle).is_some());
    assert_eq!(t.live(), 0);
    assert!(!t.op_finished(key), "a stale key changes nothing");
}

#[test]
fn an_armed_receive_keeps_a_closing_session_until_it_ends() {
    let mut t = table(4, 8, 64);
    let key = open(&mut t, 1);
    assert_eq!(t.arm_recv(key), Some(101));
    assert_eq!(t.arm_recv(key), None, "armed once");
    assert_eq!(t.recv_ended(key), RecvEnd::Rearm, "open: arm again");
    assert_eq!(t.arm_recv(key), Some(101));
    let closed = t.begin_close(key, Why::Idle).unwrap();
    assert!(closed.recv_armed, "the caller must cancel it");
    assert_eq!(t.live(), 1);
    assert_eq!(t.recv_ended(key), RecvEnd::Closing);
    assert_eq!(t.live(), 0);
    assert_eq!(t.recv_ended(key), RecvEnd::Gone);
}

#[test]
fn a_refused_arm_is_undone() {
    let mut t = table(4, 8, 64);
    let key = open(&mut t, 1);
    t.arm_recv(key);
    t.recv_not_armed(key);
    t.begin_close(key, Why::Idle);
    assert_eq!(t.live(), 0, "nothing was left in flight");
}

#[test]
fn a_proxy_header_goes_up_before_the_first_datagram_or_every_one() {
    let mut t = table(4, 8, 64);
    for (every, expected) in [(false, [true, false, false]), (true, [true, true, true])] {
        let key = t.insert(addr(1), 0, FIRST);
        let local = Some("127.0.0.2".parse().unwrap());
        t.arrived_at(key, local, Some(vec![7u8; 28].into_boxed_slice()), every);
        t.open(key, Fake(5), addr(40_001), BACKEND, None, 0);
        for (n, with) in expected.into_iter().enumerate() {
            let up = t.upstream(key, 0).unwrap();
            assert_eq!(
                up.prefix.len(),
                if with { 28 } else { 0 },
                "datagram {n}, every={every}"
            );
        }
        assert_eq!(
            t.reply_to(key, 0).unwrap().from,
            local,
            "replies leave from it"
        );
        t.begin_close(key, Why::Idle);
    }
}

#[test]
fn a_reused_slot_rejects_the_old_generation() {
    let mut t = table(4, 8, 64);
    let old = open(&mut t, 1);
    t.begin_close(old, Why::Idle);
    let new = t.insert(addr(2), 0, FIRST);
    assert_eq!(new.slot, old.slot);
    assert_ne!(new.generation, old.generation);
    assert_eq!(t.phase(old), None);
    assert!(!t.hold(old, FIRST));
    assert_eq!(t.recv_ended(old), RecvEnd::Gone);
    assert_eq!(t.phase(new), Some(Phase::Resolving));
}

#[test]
fn disconnects_match_by_port_client_or_upstream_address() {
    let mut t = table(8, 8, 64);
    let a = open(&mut t, 1);
    let b = open(&mut t, 2);
    assert_eq!(t.matching(Target::Port(40_001)), [a]);
    assert_eq!(t.matching(Target::Port(9)), []);
    assert_eq!(t.matching(Target::Addr(addr(2))), [b]);
    assert_eq!(t.matching(Target::Addr(addr(40_002))), [b]);
    // The right port on another address is not that session.
    let elsewhere = SocketAddr::from(([10, 0, 0, 1], 40_002));
    assert_eq!(t.matching(Target::Addr(elsewhere)), []);
}

#[test]
fn collect_all_skips_closing_sessions() {
    let mut t = table(8, 8, 64);
    let a = open(&mut t, 1);
    let b = open(&mut t, 2);
    t.op_started(b);
    t.begin_close(b, Why::Idle);
    let mut all = Vec::new();
    t.collect_all(&mut all);
    assert_eq!(all, [a]);
}

#[test]
fn a_real_socket_is_closed_when_its_session_is_freed() {
    let mut t: Sessions<UdpSocket> = Sessions::new(limits(4, 8, 64));
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let local = socket.local_addr().unwrap();
    let key = t.insert(addr(1), 0, FIRST);
    t.open(key, socket, local, BACKEND, None, 0).unwrap();
    t.begin_close(key, Why::Idle);
    // The port is free again only if the socket was closed.
    UdpSocket::bind(local).expect("the session's socket was closed");
}

/// Memory per session, excluding kernel socket buffers: the slab entry, its two map entries
/// (hashbrown stores the pair plus one control byte, at a load factor of at most 7/8) and the
/// free-list slot. The budget is 1 KiB; README quotes this figure.
#[test]
fn a_session_costs_well_under_a_kilobyte() {
    let slab = size_of::<Slot<Socket>>();
    let by_client = (size_of::<(SocketAddr, u32)>() + 1) * 8 / 7;
    let by_port = (size_of::<(u16, u32)>() + 1) * 8 / 7;
    let free = size_of::<u32>();
    let total = slab + by_client + by_port + free;
    println!(
        "per session: slab {slab} + maps {by_client} + {by_port} + free list {free} = {total} bytes"
    );
    assert!(total < 1024, "{total} bytes per session");
}
