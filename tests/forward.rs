//! The data path end to end: real sockets on loopback, an in-process ringgate, a backend thread.

mod util;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ringgate::Counter;
use util::*;

#[test]
fn round_trip_through_one_worker_replies_from_the_listen_address() {
    let backend = Backend::start(LOCAL4, true);
    let proxy = start(config(LOCAL4, &[backend.addr]));
    let client = udp(LOCAL4);
    client.send_to(b"ping", proxy.local_addr()).unwrap();
    let (reply, from) = recv(&client);
    assert_eq!(reply, b"ping");
    assert_eq!(
        from,
        proxy.local_addr(),
        "the reply must come from the address the client used"
    );
    let (upstream, payload) = backend.next();
    assert_eq!(payload, b"ping");
    assert_ne!(
        upstream,
        client.local_addr().unwrap(),
        "the backend sees ringgate's socket"
    );
    proxy.shutdown().unwrap();
}

#[test]
fn round_trip_through_two_workers() {
    let backend = Backend::start(LOCAL4, true);
    let mut cfg = config(LOCAL4, &[backend.addr]);
    cfg.workers = 2;
    let proxy = start(cfg);
    // Enough clients that the reuseport hash puts some on each worker (all 64 on one worker
    // has probability 2^-63).
    let clients: Vec<_> = (0..64).map(|_| udp(LOCAL4)).collect();
    for (i, c) in clients.iter().enumerate() {
        c.send_to(format!("client {i}").as_bytes(), proxy.local_addr())
            .unwrap();
    }
    for (i, c) in clients.iter().enumerate() {
        let (reply, from) = recv(c);
        assert_eq!(reply, format!("client {i}").as_bytes());
        assert_eq!(from, proxy.local_addr());
    }
    wait_for("both workers to publish", || {
        proxy
            .shared()
            .stats
            .iter()
            .all(|w| w.get(Counter::PacketsDownstream) > 0)
    });
    assert_eq!(count(&proxy, Counter::SessionsCreated), 64);
    proxy.shutdown().unwrap();
}

#[test]
fn five_hundred_clients_get_distinct_stable_upstream_ports_without_cross_talk() {
    let backend = Backend::start(LOCAL4, true);
    let proxy = start(config(LOCAL4, &[backend.addr]));
    // 500 players: 500 addresses (new sessions are budgeted per source address).
    let clients: Vec<_> = (0..500).map(player).collect();
    let rounds = 3;
    for round in 0..rounds {
        for (i, c) in clients.iter().enumerate() {
            c.send_to(format!("{i}/{round}").as_bytes(), proxy.local_addr())
                .unwrap();
        }
        for (i, c) in clients.iter().enumerate() {
            let (reply, _) = recv(c);
            assert_eq!(
                reply,
                format!("{i}/{round}").as_bytes(),
                "client {i} got another's reply"
            );
        }
    }
    let mut port_of: HashMap<usize, SocketAddr> = HashMap::new();
    for _ in 0..clients.len() * rounds {
        let (upstream, payload) = backend.next();
        let text = String::from_utf8(payload).unwrap();
        let client: usize = text.split('/').next().unwrap().parse().unwrap();
        let first = *port_of.entry(client).or_insert(upstream);
        assert_eq!(
            first, upstream,
            "client {client}'s upstream port changed mid-session"
        );
    }
    let distinct: HashSet<_> = port_of.values().collect();
    assert_eq!(
        distinct.len(),
        500,
        "every client session has its own upstream port"
    );
    proxy.shutdown().unwrap();
}

#[test]
fn a_burst_of_ten_thousand_arrives_complete_and_in_order() {
    let backend = Backend::start(LOCAL4, false);
    let proxy = start(config(LOCAL4, &[backend.addr]));
    let client = udp(LOCAL4);
    for seq in 0u32..10_000 {
        client
            .send_to(&seq.to_be_bytes(), proxy.local_addr())
            .unwrap();
    }
    for expected in 0u32..10_000 {
        let (_, payload) = backend.next();
        assert_eq!(
            payload,
            expected.to_be_bytes(),
            "datagram {expected} out of order or lost"
        );
    }
    wait_for("counters", || {
        count(&proxy, Counter::PacketsUpstream) == 10_000
    });
    proxy.shutdown().unwrap();
}

#[test]
fn zero_length_datagrams_are_forwarded_both_ways() {
    let backend = Backend::start(LOCAL4, true);
    let proxy = start(config(LOCAL4, &[backend.addr]));
    let client = udp(LOCAL4);
    client.send_to(b"", proxy.local_addr()).unwrap();
    assert_eq!(backend.next().1, b"");
    let (reply, from) = recv(&client);
    assert!(reply.is_empty());
    assert_eq!(from, proxy.local_addr());
    proxy.shutdown().unwrap();
}

#[test]
fn oversize_datagrams_are_dropped_and_counted_in_both_directions() {
    let backend = Backend::start(LOCAL4, false);
    let mut cfg = config(LOCAL4, &[backend.addr]);
    cfg.buffer_size_bytes = 100;
    let proxy = start(cfg);
    let client = udp(LOCAL4);
    client.send_to(&[1; 100], proxy.local_addr()).unwrap();
    let (upstream, payload) = backend.next();
    assert_eq!(
        payload.len(),
        100,
        "a datagram of exactly --buffer-size passes"
    );
    client.send_to(&[2; 101], proxy.local_addr()).unwrap();
    client.send_to(&[3; 5000], proxy.local_addr()).unwrap();
    client.send_to(b"after", proxy.local_addr()).unwrap();
    // Datagrams from one client are handled in order: once "after" arrived, both oversize ones
    // were seen, and neither reached the backend truncated.
    assert_eq!(backend.next().1, b"after");
    wait_for("upstream truncation count", || {
        count(&proxy, Counter::DropTruncated) == 2
    });

    backend.socket.send_to(&[4; 101], upstream).unwrap();
    backend.socket.send_to(b"reply", upstream).unwrap();
    let (reply, _) = recv(&client);
    assert_eq!(
        reply, b"reply",
        "the oversize reply must not arrive, truncated or whole"
    );
    wait_for("downstream truncation count", || {
        count(&proxy, Counter::DropTruncated) == 3
    });
    proxy.shutdown().unwrap();
}

#[test]
fn ipv6_round_trip() {
    let backend = Backend::start(LOCAL6, true);
    let proxy = start(config(LOCAL6, &[backend.addr]));
    assert!(proxy.local_addr().is_ipv6());
    let client = udp(LOCAL6);
    client.send_to(b"six", proxy.local_addr()).unwrap();
    let (reply, from) = recv(&client);
    assert_eq!(reply, b"six");
    assert_eq!(from, proxy.local_addr());
    let (upstream, _) = backend.next();
    assert!(upstream.is_ipv6());
    proxy.shutdown().unwrap();
}

#[test]
fn idle_sessions_are_reaped_and_the_client_gets_a_new_one() {
    let backend = Backend::start(LOCAL4, true);
    let mut cfg = config(LOCAL4, &[backend.addr]);
    cfg.idle_timeout = Duration::from_millis(300);
    let proxy = start(cfg);
    let client = udp(LOCAL4);
    client.send_to(b"one", proxy.local_addr()).unwrap();
    recv(&client);
    let (first, _) = backend.next();
    wait_for("the idle session to be reaped", || {
        count(&proxy, Counter::ClosedIdle) == 1
    });
    assert_eq!(proxy.shared().sessions(), 0);
    client.send_to(b"two", proxy.local_addr()).unwrap();
    recv(&client);
    let (second, _) = backend.next();
    assert_ne!(
        first, second,
        "a reaped session's socket is closed; the next one is new"
    );
    assert_eq!(count(&proxy, Counter::SessionsCreated), 2);
    proxy.shutdown().unwrap();
}

#[test]
fn traffic_in_either_direction_keeps_a_session_alive() {
    let backend = Backend::start(LOCAL4, false);
    let mut cfg = config(LOCAL4, &[backend.addr]);
    let idle = Duration::from_millis(300);
    cfg.idle_timeout = idle;
    let proxy = start(cfg);
    let client = udp(LOCAL4);
    client.send_to(b"hello", proxy.local_addr()).unwrap();
    let (upstream, _) = backend.next();
    // Only the backend talks for 3x the idle timeout, then only the client does.
    let pace = idle / 4;
    let until = Instant::now() + idle * 3;
    while Instant::now() < until {
        backend.socket.send_to(b"tick", upstream).unwrap();
        assert_eq!(recv(&client).0, b"tick");
        std::thread::sleep(pace);
    }
    let until = Instant::now() + idle * 3;
    while Instant::now() < until {
        client.send_to(b"tock", proxy.local_addr()).unwrap();
        let (from, payload) = backend.next();
        assert_eq!((from, payload.as_slice()), (upstream, &b"tock"[..]));
        std::thread::sleep(pace);
    }
    assert_eq!(count(&proxy, Counter::ClosedIdle), 0);
    assert_eq!(count(&proxy, Counter::SessionsCreated), 1);
    proxy.shutdown().unwrap();
}

#[test]
fn the_session_cap_drops_new_clients_and_counts_them() {
    let backend = Backend::start(LOCAL4, true);
    let mut cfg = config(LOCAL4, &[backend.addr]);
    cfg.sessions_max = 2;
    let proxy = start(cfg);
    let clients: Vec<_> = (0..3).map(|_| udp(LOCAL4)).collect();
    // Both confirmed (they sent again after the answer), so neither may be evicted.
    for c in &clients[..2] {
        for payload in [&b"in"[..], b"again"] {
            c.send_to(payload, proxy.local_addr()).unwrap();
            recv(c);
        }
    }
    clients[2].send_to(b"over", proxy.local_addr()).unwrap();
    wait_for("the cap to drop the third client", || {
        count(&proxy, Counter::DropMaxSessions) == 1
    });
    for c in &clients[..2] {
        c.send_to(b"still", proxy.local_addr()).unwrap();
        assert_eq!(recv(c).0, b"still");
    }
    assert_eq!(count(&proxy, Counter::SessionsCreated), 2);
    proxy.shutdown().unwrap();
}

#[test]
fn a_dead_backend_does_not_hurt_other_sessions() {
    let alive = Backend::start(LOCAL4, true);
    let dead = dead_addr();
    // Least-sessions placement on one worker: the first client goes to the first backend.
    let proxy = start(config(LOCAL4, &[dead, alive.addr]));
    let doomed = udp(LOCAL4);
    let healthy = udp(LOCAL4);
    doomed.send_to(b"anyone?", proxy.local_addr()).unwrap();
    wait_for("the ICMP unreachable to be counted", || {
        count(&proxy, Counter::BackendUnreachable) >= 1
    });
    for i in 0..20u8 {
        doomed.send_to(&[i], proxy.local_addr()).unwrap();
        healthy.send_to(&[i], proxy.local_addr()).unwrap();
        assert_eq!(recv(&healthy).0, [i]);
    }
    // The dead backend's session survives its errors: one ICMP can be spoofed.
    assert_eq!(count(&proxy, Counter::SessionsCreated), 2);
    assert_eq!(proxy.shared().sessions(), 2);
    assert_eq!(count(&proxy, Counter::ClosedIdle), 0);
    proxy.shutdown().unwrap();
}

#[test]
fn metrics_health_and_readiness_are_served_and_counters_move() {
    let backend = Backend::start(LOCAL4, true);
    let mut cfg = config(LOCAL4, &[backend.addr]);
    cfg.metrics = Some("127.0.0.1:0".parse().unwrap());
    cfg.buffer_size_bytes = 64;
    let proxy = start(cfg);
    let metrics = proxy.metrics_addr().unwrap();
    assert_eq!(http_get(metrics, "/healthz").0, 200);
    wait_for("readiness", || http_get(metrics, "/readyz").0 == 200);
    let (status, before) = http_get(metrics, "/metrics");
    assert_eq!(status, 200);
    let up = r#"ringgate_packets_total{direction="upstream"}"#;
    let down = r#"ringgate_packets_total{direction="downstream"}"#;
    let trunc = r#"ringgate_drops_total{reason="truncated"}"#;
    assert_eq!(sample(&before, up), Some(0));
    for name in [
        "ringgate_sessions",
        "ringgate_sessions_created_total",
        "ringgate_recv_rearms_total",
        r#"ringgate_bytes_total{direction="upstream"}"#,
        r#"ringgate_sessions_closed_total{reason="idle"}"#,
        r#"ringgate_drops_total{reason="max_sessions"}"#,
        r#"ringgate_drops_total{reason="pending_full"}"#,
        r#"ringgate_drops_total{reason="no_route"}"#,
        r#"ringgate_drops_total{reason="socket_error"}"#,
        r#"ringgate_drops_total{reason="send_error"}"#,
    ] {
        assert!(
            sample(&before, name).is_some(),
            "{name} missing from:\n{before}"
        );
    }
    let client = udp(LOCAL4);
    for _ in 0..5 {
        client.send_to(b"m", proxy.local_addr()).unwrap();
        recv(&client);
    }
    client.send_to(&[0; 65], proxy.local_addr()).unwrap();
    wait_for("the counters to move", || {
        let (_, after) = http_get(metrics, "/metrics");
        sample(&after, up) == Some(5)
            && sample(&after, down) == Some(5)
            && sample(&after, trunc) == Some(1)
            && sample(&after, "ringgate_sessions") == Some(1)
    });
    assert_eq!(http_get(metrics, "/nope").0, 404);
    proxy.shutdown().unwrap();
}

#[test]
fn the_largest_rings_start() {
    let backend = Backend::start(LOCAL4, true);
    let mut cfg = config(LOCAL4, &[backend.addr]);
    // 32768 x 8 exceeds the kernel's completion queue limit; it is capped, not refused.
    cfg.ring_entries = 32_768;
    let proxy = start(cfg);
    let client = udp(LOCAL4);
    client.send_to(b"big", proxy.local_addr()).unwrap();
    assert_eq!(recv(&client).0, b"big");
    proxy.shutdown().unwrap();
}

#[test]
fn every_task_run_mode_is_built_as_asked_and_forwards() {
    use ringgate::sys::uring::TaskRun;
    let backend = Backend::start(LOCAL4, true);
    for mode in TaskRun::ALL {
        let mut cfg = config(LOCAL4, &[backend.addr]);
        // Task-run modes are io_uring's.
        cfg.io_backend = Some(ringgate::sys::driver::Backend::IoUring);
        cfg.task_run = mode;
        cfg.workers = 2;
        let proxy = start(cfg);
        // Linux 6.1+ accepts every mode, so no ring may have fallen back.
        assert_eq!(proxy.task_runs(), [Some(mode), Some(mode)]);
        let client = udp(LOCAL4);
        client.send_to(b"mode", proxy.local_addr()).unwrap();
        assert_eq!(recv(&client).0, b"mode", "{mode:?}");
        proxy.shutdown().unwrap();
    }
}

/// The classic failure of a provided-buffer-ring design: the ring runs dry (`-ENOBUFS` ends
/// every multishot receive) and a socket never receives again. With two buffers, bursts in
/// both directions empty the ring over and over; every socket must keep receiving, and with
/// socket buffers large enough to hold the burst (forced, as root) nothing may be lost.
#[test]
fn an_empty_buffer_ring_stops_no_socket_from_receiving() {
    const BURST: u32 = 3_000;
    let backend = Backend::start(LOCAL4, false);
    let mut cfg = config(LOCAL4, &[backend.addr]);
    cfg.buffer_count = 2;
    let proxy = start(cfg);
    let forced = proxy
        .shared()
        .buffers_forced
        .load(std::sync::atomic::Ordering::Relaxed);
    let client = udp(LOCAL4);
    client.send_to(b"open", proxy.local_addr()).unwrap();
    let (upstream, _) = backend.next();

    // Client -> listener, faster than a two-buffer ring can take it.
    for seq in 0..BURST {
        client
            .send_to(&seq.to_be_bytes(), proxy.local_addr())
            .unwrap();
    }
    client.send_to(b"after", proxy.local_addr()).unwrap();
    if forced {
        for seq in 0..BURST {
            assert_eq!(backend.next().1, seq.to_be_bytes(), "upstream {seq}");
        }
    }
    while backend.next().1 != b"after" {}
    let dry_listener = count(&proxy, Counter::RecvNoBuffers);
    assert!(
        dry_listener > 0,
        "the listener never ran dry: the test proved nothing"
    );

    // Backend -> the session's socket.
    for seq in 0..BURST {
        backend
            .socket
            .send_to(&seq.to_be_bytes(), upstream)
            .unwrap();
    }
    backend.socket.send_to(b"after", upstream).unwrap();
    if forced {
        for seq in 0..BURST {
            assert_eq!(recv(&client).0, seq.to_be_bytes(), "downstream {seq}");
        }
    }
    while recv(&client).0 != b"after" {}

    let dry = count(&proxy, Counter::RecvNoBuffers);
    let rearms = count(&proxy, Counter::RecvRearms);
    assert!(
        dry > dry_listener,
        "the session socket never ran dry: the test proved nothing"
    );
    assert!(rearms >= dry, "{rearms} re-arms for {dry} dry receives");
    eprintln!(
        "buffers forced: {forced}; dry receives: {dry_listener} listener, {} session; re-arms {rearms}",
        dry - dry_listener
    );
    // Both sockets still receive after the bursts.
    client.send_to(b"again", proxy.local_addr()).unwrap();
    assert_eq!(backend.next().1, b"again");
    backend.socket.send_to(b"back", upstream).unwrap();
    assert_eq!(recv(&client).0, b"back");
    assert_eq!(count(&proxy, Counter::Anomalies), 0);
    proxy.shutdown().unwrap();
}

#[test]
fn a_static_backend_may_be_a_host_name() {
    use ringgate::route::Routes;
    use ringgate::route::resolve::{Dest, Name};
    let backend = Backend::start("[::]:0", true);
    let mut cfg = config(LOCAL4, &[]);
    cfg.routes = Routes::Fixed(vec![Dest::Name(Name {
        host: "localhost".into(),
        port: backend.addr.port(),
    })]);
    cfg.workers = 2;
    let proxy = start(cfg);
    for i in 0..4 {
        let client = player(i);
        assert_eq!(round_trip(&client, &proxy, b"named"), b"named");
    }
    assert_eq!(count(&proxy, Counter::RouteResolve), 0);
    proxy.shutdown().unwrap();
}
