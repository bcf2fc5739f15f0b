//! Hostile traffic, as an attacker sends it: spoofed sources (a raw socket; root, skipped with
//! a message otherwise), floods of new sources, one address opening sessions as fast as it
//! can, a buffer ring run dry, a Redis value far too large, a metrics port full of idle
//! connections under a low open-files limit.

mod util;

use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use ringgate::Counter;
use ringgate::admission::rate::RateLimit;
use util::spoof::{Spoofer, can_spoof};
use util::*;

fn addr(text: &str) -> SocketAddr {
    text.parse().unwrap()
}

/// The packet counters, for "nothing circulates".
fn traffic(proxy: &ringgate::Proxy) -> (u64, u64) {
    (
        count(proxy, Counter::PacketsUpstream),
        count(proxy, Counter::PacketsDownstream),
    )
}

/// Waits for the packet counters to reach what the test's own traffic explains, then a second
/// more: a loop would keep datagrams moving past it.
fn assert_nothing_circulates(proxy: &ringgate::Proxy, expected: (u64, u64)) {
    wait_for("the test's own datagrams to be counted", || {
        traffic(proxy) >= expected
    });
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(traffic(proxy), expected, "datagrams are still circulating");
}

/// A raw socket and an answering backend, or `None` (the test says it skips) without root.
fn spoofing(test: &str) -> Option<(Spoofer, Backend)> {
    can_spoof(test).then(|| (Spoofer::new().unwrap(), Backend::start(LOCAL4, true)))
}

/// Every datagram the backend got, after a round trip has flushed what came before it.
fn drain(backend: &Backend) -> Vec<(SocketAddr, Vec<u8>)> {
    backend.received.try_iter().collect()
}

#[test]
fn one_spoofed_datagram_from_a_forbidden_source_starts_nothing() {
    let Some((spoof, backend)) =
        spoofing("one_spoofed_datagram_from_a_forbidden_source_starts_nothing")
    else {
        return;
    };
    let proxy = start(config(LOCAL4, &[backend.addr]));
    let listen = proxy.local_addr();
    let forbidden = [
        backend.addr,
        listen,
        SocketAddr::from(([0, 0, 0, 0], listen.port())),
        addr("127.0.0.1:0"),
        addr("255.255.255.255:5000"),
        addr("224.0.0.1:5000"),
    ];
    for source in forbidden {
        spoof.send(source, listen, b"spoofed");
    }
    // A real client's round trip: the listener has handled everything sent before it.
    let client = udp(LOCAL4);
    assert_eq!(round_trip(&client, &proxy, b"real"), b"real");
    let got = drain(&backend);
    assert_eq!(
        got.len(),
        1,
        "only the real client reaches the backend: {got:?}"
    );
    assert_eq!(
        count(&proxy, Counter::DropBadSource),
        forbidden.len() as u64
    );
    assert_eq!(count(&proxy, Counter::SessionsCreated), 1);
    assert_nothing_circulates(&proxy, (1, 1));
}

#[test]
fn a_wildcard_listener_knows_every_local_address_as_its_own() {
    let Some((spoof, backend)) =
        spoofing("a_wildcard_listener_knows_every_local_address_as_its_own")
    else {
        return;
    };
    let proxy = start(config("0.0.0.0:0", &[backend.addr]));
    let port = proxy.local_addr().port();
    let to = SocketAddr::from(([127, 0, 0, 1], port));
    for source in [to, SocketAddr::from(([127, 0, 0, 5], port))] {
        spoof.send(source, to, b"me, myself");
    }
    let client = udp(LOCAL4);
    client.send_to(b"real", to).unwrap();
    assert_eq!(recv(&client).0, b"real");
    assert_eq!(count(&proxy, Counter::DropBadSource), 2);
    assert_nothing_circulates(&proxy, (1, 1));
}

/// A backend Redis names only after the spoofed datagram arrived is not yet known to be one:
/// the loop guard closes the session when the route comes back pointing at the client.
#[test]
fn a_route_back_to_the_client_is_closed_as_a_loop() {
    if !can_spoof("a_route_back_to_the_client_is_closed_as_a_loop") {
        return;
    }
    let spoof = Spoofer::new().unwrap();
    let redis = RedisServer::start();
    let backend = Backend::start(LOCAL4, true);
    redis.set(BACKEND_KEY, &backend.addr.to_string());
    let proxy = start(redis_config(redis.addr()));
    wait_ready(&proxy);
    spoof.send(backend.addr, proxy.local_addr(), b"spoofed");
    wait_for("the loop guard", || count(&proxy, Counter::ClosedLoop) == 1);
    // Now Redis has named it: the next one is refused before any session.
    spoof.send(backend.addr, proxy.local_addr(), b"again");
    let client = udp(LOCAL4);
    assert_eq!(round_trip(&client, &proxy, b"real"), b"real");
    assert_eq!(
        drain(&backend).len(),
        1,
        "only the real client reached the backend"
    );
    assert_eq!(count(&proxy, Counter::DropBadSource), 2);
    assert_nothing_circulates(&proxy, (1, 1));
}

#[test]
fn a_spoofed_flood_cannot_lock_players_out() {
    let Some((spoof, backend)) = spoofing("a_spoofed_flood_cannot_lock_players_out") else {
        return;
    };
    let mut cfg = config(LOCAL4, &[backend.addr]);
    cfg.sessions_max = 200;
    cfg.metrics = Some(addr("127.0.0.1:0"));
    let proxy = start(cfg);
    let listen = proxy.local_addr();
    // Ten players, each confirmed by a few exchanges; the backend sees one port per player.
    let players: Vec<_> = (0..10).map(|_| udp(LOCAL4)).collect();
    let mut ports = Vec::new();
    for p in &players {
        for _ in 0..3 {
            assert_eq!(round_trip(p, &proxy, b"play"), b"play");
        }
        ports.push(drain(&backend).last().unwrap().0.port());
    }
    // 3,000 new sources, as fast as a raw socket sends, while health is asked for.
    let metrics = proxy.metrics_addr().unwrap();
    let flood = std::thread::spawn(move || {
        for i in 0..3_000u32 {
            let source = SocketAddr::from(([127, 100, (i >> 8) as u8, i as u8], 10_000));
            spoof.send(source, listen, b"flood");
        }
    });
    let asked = Instant::now();
    assert_eq!(http_get(metrics, "/healthz").0, 200);
    let health = asked.elapsed();
    flood.join().unwrap();
    assert!(
        health < Duration::from_millis(500),
        "/healthz took {health:?}"
    );

    // A newcomer (resending every 100 ms, as game clients do) gets a round trip within 1 s.
    let newcomer = udp(LOCAL4);
    let took = round_trip_within(&newcomer, listen, b"let me in", Duration::from_secs(1));
    assert!(took.is_some(), "the newcomer got no answer within 1 s");
    // Every player still has its session and its upstream port.
    drain(&backend);
    for (p, port) in players.iter().zip(&ports) {
        assert_eq!(round_trip(p, &proxy, b"still"), b"still");
        let (from, _) = backend.next();
        assert_eq!(from.port(), *port, "a player's session was replaced");
    }
    assert!(
        count(&proxy, Counter::ClosedEvicted) > 0,
        "no eviction counted"
    );
    // The cap, plus the slack evicted sessions hold while they close.
    assert!(proxy.shared().sessions() <= 200 + 200 / 8 + 16);
}

#[test]
fn a_flood_past_the_workers_budget_is_dropped_and_a_retrying_newcomer_gets_in() {
    let Some((spoof, backend)) =
        spoofing("a_flood_past_the_workers_budget_is_dropped_and_a_retrying_newcomer_gets_in")
    else {
        return;
    };
    let mut cfg = config(LOCAL4, &[backend.addr]);
    cfg.new_sessions_per_worker = Some(RateLimit {
        per_sec: 100.0,
        burst: 100.0,
    });
    let proxy = start(cfg);
    let listen = proxy.local_addr();
    let players: Vec<_> = (0..10).map(|_| udp(LOCAL4)).collect();
    let mut ports = Vec::new();
    for p in &players {
        assert_eq!(round_trip(p, &proxy, b"play"), b"play");
        ports.push(drain(&backend).last().unwrap().0.port());
    }
    let created_before = count(&proxy, Counter::SessionsCreated);
    // New sources far past the budget (about 50,000 a second), for at most 3 s, while a
    // newcomer asks to be let in and the players play on.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flooding = std::sync::Arc::clone(&stop);
    let flood = std::thread::spawn(move || {
        let started = Instant::now();
        let mut sent = 0u32;
        while !flooding.load(std::sync::atomic::Ordering::Relaxed)
            && started.elapsed() < Duration::from_secs(3)
            && sent < 150_000
        {
            for _ in 0..50 {
                let [_, b, c, d] = sent.to_be_bytes();
                let source = SocketAddr::from(([127, 100 + b, c, d], 10_000));
                spoof.send(source, listen, b"flood");
                sent += 1;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        (sent, started.elapsed())
    });
    wait_for("the flood to spend the budget", || {
        count(&proxy, Counter::DropSessionBudget) > 1_000
    });
    // Its first datagram finds the budget spent; resent 100 ms later, it is let in.
    let newcomer = udp(LOCAL4);
    let took = round_trip_within(&newcomer, listen, b"let me in", Duration::from_secs(1));
    drain(&backend);
    for (p, port) in players.iter().zip(&ports) {
        assert_eq!(round_trip(p, &proxy, b"still"), b"still");
        assert_eq!(
            backend.next().0.port(),
            *port,
            "a player's session was replaced"
        );
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (sent, lasted) = flood.join().unwrap();
    assert!(took.is_some(), "the newcomer got no answer within 1 s");
    // The first budget's burst and its refill while the flood lasted, and the newcomer.
    let created = count(&proxy, Counter::SessionsCreated) - created_before;
    let bound = 100 + (100.0 * lasted.as_secs_f64()).ceil() as u64 + 1;
    assert!(
        created <= bound,
        "{created} sessions created from {sent} new sources in {lasted:?} (bound {bound})"
    );
    assert!(count(&proxy, Counter::DropSessionBudget) >= u64::from(sent) / 2);
}

#[test]
fn an_unanswered_session_is_gone_after_the_unreplied_timeout() {
    let silent = Backend::start(LOCAL4, false);
    let mut cfg = config(LOCAL4, &[silent.addr]);
    cfg.unreplied_timeout = Duration::from_secs(1);
    let proxy = start(cfg);
    let client = udp(LOCAL4);
    client.send_to(b"anyone?", proxy.local_addr()).unwrap();
    silent.next();
    let sent = Instant::now();
    wait_for("the unreplied session to close", || {
        count(&proxy, Counter::ClosedUnreplied) == 1
    });
    let lived = sent.elapsed();
    assert!(
        lived >= Duration::from_millis(900) && lived < Duration::from_millis(2_500),
        "closed after {lived:?}"
    );
    assert_eq!(proxy.shared().sessions(), 0);
}

#[test]
fn one_address_opens_sessions_at_its_rate_and_others_are_unaffected() {
    let backend = Backend::start(LOCAL4, true);
    let mut cfg = config("0.0.0.0:0", &[backend.addr]);
    cfg.new_sessions_per_ip = Some(RateLimit {
        per_sec: 5.0,
        burst: 5.0,
    });
    let proxy = start(cfg);
    let to = SocketAddr::from(([127, 0, 0, 1], proxy.local_addr().port()));
    let greedy: Vec<_> = (0..30).map(|_| udp("127.0.0.2:0")).collect();
    for g in &greedy {
        g.send_to(b"one more", to).unwrap();
    }
    let other = udp("127.0.0.3:0");
    other.send_to(b"hello", to).unwrap();
    assert_eq!(recv(&other).0, b"hello");
    let created = count(&proxy, Counter::SessionsCreated) - 1;
    let limited = count(&proxy, Counter::DropRateLimited);
    // The burst of 5, and perhaps one more token refilled while the 30 were sent.
    assert!(
        (5..=6).contains(&created),
        "{created} sessions from one address"
    );
    assert_eq!(created + limited, 30);
}

#[test]
fn a_dry_buffer_ring_rearms_about_once_per_datagram() {
    // Thirty sessions answering bursts at once over a two-buffer ring: every receive competes
    // for the same two buffers. Re-arming each ended receive on one free buffer would spin.
    const ROUNDS: u32 = 100;
    let backend = Backend::start(LOCAL4, false);
    let mut cfg = config(LOCAL4, &[backend.addr]);
    cfg.buffer_count = 2;
    // The clients never answer; that is not what this test is about.
    cfg.unreplied_timeout = Duration::from_secs(3600);
    let proxy = start(cfg);
    let forced = proxy
        .shared()
        .buffers_forced
        .load(std::sync::atomic::Ordering::Relaxed);
    let clients: Vec<_> = (0..30).map(|_| udp(LOCAL4)).collect();
    let mut upstreams = Vec::new();
    for c in &clients {
        c.send_to(b"open", proxy.local_addr()).unwrap();
        upstreams.push(backend.next().0);
    }
    let rearms_before = count(&proxy, Counter::RecvRearms);
    for round in 0..ROUNDS {
        for up in &upstreams {
            backend.socket.send_to(&round.to_be_bytes(), up).unwrap();
        }
    }
    let mut delivered = 0;
    for c in &clients {
        while recv_quick(c).is_ok() {
            delivered += 1;
        }
    }
    if forced {
        assert_eq!(
            delivered,
            30 * ROUNDS,
            "socket buffers hold the burst as root"
        );
    }
    let rearms = count(&proxy, Counter::RecvRearms) - rearms_before;
    let per_datagram = rearms as f64 / f64::from(delivered.max(1));
    eprintln!("{rearms} re-arms for {delivered} datagrams ({per_datagram:.2} each)");
    assert!(
        per_datagram <= 1.2,
        "{per_datagram:.2} re-arms per datagram"
    );
    // Receiving resumes on every session and on the listener.
    for (c, up) in clients.iter().zip(&upstreams) {
        backend.socket.send_to(b"after", up).unwrap();
        assert_eq!(recv(c).0, b"after");
        c.send_to(b"up", proxy.local_addr()).unwrap();
        assert_eq!(backend.next().1, b"up");
    }
}

fn recv_quick(c: &std::net::UdpSocket) -> std::io::Result<usize> {
    c.set_read_timeout(Some(Duration::from_millis(300)))?;
    let mut buf = [0u8; 64];
    let got = loop {
        match c.recv(&mut buf) {
            // Not the end of the burst: a timed receive interrupted by a stop and continue.
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            other => break other,
        }
    };
    c.set_read_timeout(Some(PATIENCE))?;
    got
}

#[test]
fn a_huge_redis_value_is_refused_without_being_read() {
    use util::binary::*;
    let redis = RedisServer::start();
    let backend = Backend::start(LOCAL4, true);
    redis.set(BACKEND_KEY, &backend.addr.to_string());
    let dir = tempdir("hostile-huge");
    let mut cmd = ringgate(&dir);
    cmd.args(["--listen", LOCAL4, "--no-pin", "--workers", "1"])
        .args(["--redis-addr", &redis.addr().to_string()])
        .args(["--metrics", "127.0.0.1:0"]);
    let running = Running::spawn(cmd);
    let line = running.ready_line();
    let listen: SocketAddr = field(&line, "listen").parse().unwrap();
    let metrics = metrics_of(&line);
    let pid = running.child.id();
    wait_for("Redis", || http_get(metrics, "/readyz").0 == 200);
    let player = udp(LOCAL4);
    player.send_to(b"hi", listen).unwrap();
    assert_eq!(recv(&player).0, b"hi");
    let rss_before = rss_kib(pid);

    // 32 MB of value: the reply is refused from its length prefix.
    redis.set(BACKEND_KEY, &"x".repeat(32 << 20));
    let oversize = "ringgate_redis_oversize_replies_total";
    for i in 0..5 {
        // A newcomer resends until its lookup met the value (the connection may be between a
        // reset and its reconnect).
        let newcomer = udp(LOCAL4);
        wait_for("the oversize reply", || {
            newcomer.send_to(b"route me", listen).unwrap();
            sample(&http_get(metrics, "/metrics").1, oversize) > Some(i)
        });
        // The established player is unaffected throughout.
        player.send_to(b"still", listen).unwrap();
        assert_eq!(recv(&player).0, b"still");
    }
    let grown = rss_kib(pid).saturating_sub(rss_before);
    assert!(grown < 8 * 1024, "RSS grew {grown} KiB");

    // Fixed: new clients get routes again.
    redis.set(BACKEND_KEY, &backend.addr.to_string());
    let newcomer = udp(LOCAL4);
    wait_for("recovery", || {
        newcomer.send_to(b"now?", listen).unwrap();
        recv_quick(&newcomer).is_ok()
    });
}

#[test]
fn idle_connections_cannot_blind_health_under_a_low_open_files_limit() {
    use util::binary::*;
    raise_own_nofile();
    let backend = Backend::start(LOCAL4, true);
    let dir = tempdir("hostile-idle");
    let mut cmd = std::process::Command::new("sh");
    cmd.current_dir(&dir)
        .env("RUST_LOG", "info")
        .args(["-c", r#"ulimit -n 512 && exec "$0" "$@""#, BIN])
        .args(["--listen", LOCAL4, "--backend", &backend.addr.to_string()])
        .args(["--no-pin", "--workers", "1", "--metrics", "127.0.0.1:0"]);
    for var in VARS {
        cmd.env_remove(var);
    }
    util::binary::keep_io_backend(&mut cmd);
    let running = Running::spawn(cmd);
    let line = running.ready_line();
    let listen: SocketAddr = field(&line, "listen").parse().unwrap();
    let metrics = metrics_of(&line);
    let pid = running.child.id();
    // What ringgate holds at rest (its sockets, ring, pipes, and whatever the caller leaked to
    // it); the metrics endpoint may add at most its cap (64) and the one being accepted.
    let at_rest = open_fds(pid);
    let most = at_rest + 64 + 1;
    // 600 connections that never send a byte.
    let idle: Vec<TcpStream> = (0..600)
        .filter_map(|_| TcpStream::connect_timeout(&metrics, Duration::from_secs(1)).ok())
        .collect();
    assert!(idle.len() >= 100, "only {} connections opened", idle.len());
    let fds = open_fds(pid);
    assert!(
        fds <= most,
        "ringgate holds {fds} descriptors ({at_rest} at rest)"
    );
    let asked = Instant::now();
    assert_eq!(http_get(metrics, "/healthz").0, 200);
    assert!(
        asked.elapsed() < Duration::from_secs(1),
        "{:?}",
        asked.elapsed()
    );
    // The health check was accepted after every idle connection (one accept queue, in order),
    // so by now each was taken in and the cap has been enforced on all of them.
    let fds = open_fds(pid);
    assert!(
        fds <= most,
        "ringgate holds {fds} descriptors ({at_rest} at rest)"
    );
    // And sessions still open: 150 new clients (150 players, 150 addresses), each answered.
    let clients: Vec<_> = (0..150)
        .map(|i| udp(&format!("127.0.1.{}:0", i + 1)))
        .collect();
    for c in &clients {
        c.send_to(b"hello", listen).unwrap();
        assert_eq!(recv(c).0, b"hello");
    }
    drop(idle);
}

/// Lets this test process hold hundreds of sockets (its own soft limit up to the hard one).
fn raise_own_nofile() {
    ringgate::sys::limits::raise_nofile().unwrap();
}

#[test]
fn routes_to_ringgate_itself_are_refused_as_loops() {
    // A Redis value naming ringgate's own listener would forward every datagram back in.
    let redis = RedisServer::start();
    let proxy = start(redis_config(redis.addr()));
    wait_ready(&proxy);
    redis.set(BACKEND_KEY, &proxy.local_addr().to_string());
    let client = udp(LOCAL4);
    client.send_to(b"loop?", proxy.local_addr()).unwrap();
    wait_for("the loop guard", || count(&proxy, Counter::ClosedLoop) == 1);
    assert_nothing_circulates(&proxy, (0, 0));
}
