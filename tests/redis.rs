//! Redis routing and disconnects, against real `redis-server` processes each test starts.

mod util;

use std::net::SocketAddr;
use std::time::Duration;

use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use ringgate::Counter;
use ringgate::route::redis::conn::Secret;
use ringgate::route::redis::publish::Publish;
use util::*;

/// A `redis-server` whose backend key names an echo backend, and a ringgate routing through it
/// (adjusted by `configure`), ready.
fn routed(
    configure: impl FnOnce(&mut ringgate::Config),
) -> (RedisServer, Backend, ringgate::Proxy) {
    let redis = RedisServer::start();
    let backend = Backend::start(LOCAL4, true);
    redis.set(BACKEND_KEY, &backend.addr.to_string());
    let mut config = redis_config(redis.addr());
    configure(&mut config);
    (redis, backend, start_ready(config))
}

/// [`routed`], publishing the session map under `prefix` with a 2 s expiry, sessions idling out
/// after 1 s.
fn publishing(prefix: &str) -> (RedisServer, Backend, ringgate::Proxy) {
    routed(|c| {
        c.idle_timeout = Duration::from_secs(1);
        redis_settings(c).publish = Some(Publish {
            prefix: prefix.into(),
            ttl: Duration::from_secs(2),
        });
    })
}

/// A ringgate (adjusted by `configure`) routing through a Redis server not started yet, serving
/// metrics, with its workers armed; and the port the server is to take.
fn before_redis(
    configure: impl FnOnce(&mut ringgate::Config),
) -> (u16, ringgate::Proxy, SocketAddr) {
    let port = free_tcp_port();
    let mut config = redis_config(SocketAddr::from(([127, 0, 0, 1], port)));
    config.metrics = Some("127.0.0.1:0".parse().unwrap());
    configure(&mut config);
    let proxy = start(config);
    let metrics = proxy.metrics_addr().unwrap();
    wait_for("the workers to arm", || {
        proxy.shared().armed.load(Relaxed) == 1
    });
    (port, proxy, metrics)
}

/// Authenticates with `password` to database `db`.
fn log_in(config: &mut ringgate::Config, password: &str, db: i64) {
    let handshake = &mut redis_settings(config).handshake;
    handshake.password = Some(Secret(password.into()));
    handshake.db = db;
}

/// Why ringgate refuses to start with `config`.
fn refused(config: ringgate::Config) -> String {
    let error = ringgate::Proxy::start(config).err();
    error.expect("refused").to_string()
}

/// Waits until a worker has noticed its Redis connection is gone.
fn wait_redis_lost(proxy: &ringgate::Proxy) {
    let shared = proxy.shared();
    wait_for("the lost connection to be noticed", || {
        shared.links_up() < shared.links_total()
    });
}

/// The upstream address (source the backend sees) of `client`'s session: one datagram through.
fn upstream_of(
    client: &std::net::UdpSocket,
    proxy: &ringgate::Proxy,
    backend: &Backend,
) -> SocketAddr {
    round_trip(client, proxy, b"where");
    let (from, payload) = backend.next();
    assert_eq!(payload, b"where");
    from
}

#[test]
fn the_key_routes_new_sessions_and_changing_it_leaves_existing_ones_alone() {
    let redis = RedisServer::start();
    let (a, b) = (Backend::start(LOCAL4, true), Backend::start(LOCAL4, true));
    redis.set(BACKEND_KEY, &a.addr.to_string());
    let proxy = start_ready(redis_config(redis.addr()));

    let first = udp(LOCAL4);
    let upstream = upstream_of(&first, &proxy, &a);
    redis.set(BACKEND_KEY, &b.addr.to_string());
    assert_eq!(
        upstream_of(&first, &proxy, &a),
        upstream,
        "an existing session never moves"
    );
    let second = udp(LOCAL4);
    upstream_of(&second, &proxy, &b);
    assert_eq!(count(&proxy, Counter::RedisLookups), 2);
    proxy.shutdown().unwrap();
}

#[test]
fn missing_invalid_and_disallowed_values_drop_without_harm_and_recover() {
    let redis = RedisServer::start();
    let backend = Backend::start(LOCAL4, true);
    let mut config = redis_config(redis.addr());
    redis_settings(&mut config).allow = vec!["127.0.0.0/8".parse().unwrap()];
    let proxy = start_ready(config);
    let client = udp(LOCAL4);
    let cases: [(Option<&str>, Counter); 5] = [
        (None, Counter::RouteMissing),
        (Some("not an address"), Counter::RouteInvalid),
        (Some("127.0.0.1:0"), Counter::RouteInvalid),
        (Some("0.0.0.0:9"), Counter::RouteInvalid),
        (Some("[::1]:9"), Counter::RouteDisallowed),
    ];
    for (i, (value, counter)) in cases.into_iter().enumerate() {
        if let Some(value) = value {
            redis.set(BACKEND_KEY, value);
        }
        let expected = cases[..=i].iter().filter(|(_, c)| *c == counter).count() as u64;
        client.send_to(b"hello?", proxy.local_addr()).unwrap();
        wait_for("the failed lookup to be counted", || {
            count(&proxy, counter) == expected
                && count(&proxy, Counter::DropNoRoute) == i as u64 + 1
        });
    }
    assert_eq!(count(&proxy, Counter::SessionsCreated), 0);
    assert_eq!(proxy.shared().sessions(), 0);
    // Fixing the key fixes the next datagram from the same client.
    redis.set(BACKEND_KEY, &backend.addr.to_string());
    assert_eq!(round_trip(&client, &proxy, b"now?"), b"now?");
    proxy.shutdown().unwrap();
}

#[test]
fn disconnects_by_port_client_and_upstream_address_close_exactly_that_session() {
    let (redis, backend, proxy) = routed(|_| {});
    let clients: Vec<_> = (0..4).map(|_| udp(LOCAL4)).collect();
    let mut upstream: Vec<SocketAddr> = clients
        .iter()
        .map(|c| upstream_of(c, &proxy, &backend))
        .collect();

    let messages = [
        (0, upstream[0].port().to_string()), // udp-gate's form: the upstream port
        (1, clients[1].local_addr().unwrap().to_string()), // the client's ip:port
        (2, upstream[2].to_string()),        // the upstream socket's ip:port
    ];
    for (closed, (victim, message)) in messages.into_iter().enumerate() {
        assert_eq!(redis.publish(DISCONNECT_CHANNEL, &message), 1);
        wait_for("the disconnect", || {
            count(&proxy, Counter::ClosedDisconnect) == closed as u64 + 1
        });
        for (i, c) in clients.iter().enumerate() {
            let now = upstream_of(c, &proxy, &backend);
            if i == victim {
                assert_ne!(
                    now, upstream[i],
                    "client {i} must get a new session after `{message}`"
                );
                upstream[i] = now;
            } else {
                assert_eq!(
                    now, upstream[i],
                    "client {i} must keep its session after `{message}`"
                );
            }
        }
    }
    assert_eq!(count(&proxy, Counter::DisconnectMatched), 3);
    // One session (client 3) was never named.
    assert_eq!(count(&proxy, Counter::SessionsCreated), 7);
    proxy.shutdown().unwrap();
}

#[test]
fn garbage_on_the_disconnect_channel_is_counted_and_ignored() {
    let (redis, backend, proxy) = routed(|_| {});
    let client = udp(LOCAL4);
    let upstream = upstream_of(&client, &proxy, &backend);
    for garbage in ["", "hello", "0", "65536", "-5", "127.0.0.1", "1.2.3.4:0"] {
        redis.publish(DISCONNECT_CHANNEL, garbage);
    }
    // A port nobody has is valid but matches nothing.
    redis.publish(DISCONNECT_CHANNEL, "1");
    wait_for("every message to be judged", || {
        count(&proxy, Counter::DisconnectInvalid) == 7
            && count(&proxy, Counter::DisconnectUnmatched) == 1
    });
    // A message over the cap is skipped unread and counted; the subscriber stays connected.
    redis.publish(DISCONNECT_CHANNEL, &"9".repeat(100_000));
    wait_for("the oversize message", || {
        count(&proxy, Counter::DisconnectOversize) == 1
    });
    assert_eq!(count(&proxy, Counter::RedisOversizeReplies), 0);
    assert_eq!(count(&proxy, Counter::RedisSubscriberFailures), 0);
    assert_eq!(redis.publish(DISCONNECT_CHANNEL, "2"), 1);
    wait_for("the message after it", || {
        count(&proxy, Counter::DisconnectUnmatched) == 2
    });
    assert_eq!(upstream_of(&client, &proxy, &backend), upstream);
    assert_eq!(count(&proxy, Counter::ClosedDisconnect), 0);
    proxy.shutdown().unwrap();
}

#[test]
fn redis_lost_mid_run_spares_established_sessions_and_everything_recovers() {
    let (mut redis, backend, proxy) = routed(|_| {});
    let established = udp(LOCAL4);
    let upstream = upstream_of(&established, &proxy, &backend);

    redis.kill();
    wait_redis_lost(&proxy);
    assert!(
        proxy.shared().is_ready(),
        "ready without Redis: established sessions need none"
    );
    for i in 0..200u32 {
        established
            .send_to(&i.to_be_bytes(), proxy.local_addr())
            .unwrap();
        assert_eq!(
            recv(&established).0,
            i.to_be_bytes(),
            "datagram {i} lost while Redis is down"
        );
    }
    for _ in 0..200 {
        assert_eq!(backend.next().0, upstream);
    }
    let newcomer = udp(LOCAL4);
    newcomer.send_to(b"anyone?", proxy.local_addr()).unwrap();
    wait_for("the newcomer to be dropped", || {
        count(&proxy, Counter::RouteUnavailable) == 1
    });

    // A fresh server on the same port (no persistence: the key must be set again).
    redis.restart();
    redis.set(BACKEND_KEY, &backend.addr.to_string());
    wait_ready(&proxy);
    assert_eq!(round_trip(&newcomer, &proxy, b"back"), b"back");
    assert_eq!(
        redis.publish(DISCONNECT_CHANNEL, &upstream.port().to_string()),
        1
    );
    wait_for("the re-subscribed channel to close the session", || {
        count(&proxy, Counter::ClosedDisconnect) == 1
    });
    assert!(count(&proxy, Counter::RedisCommandFailures) >= 1);
    proxy.shutdown().unwrap();
}

#[test]
fn redis_down_at_start_is_ready_and_new_clients_wait_for_it() {
    let backend = Backend::start(LOCAL4, true);
    let (port, proxy, metrics) = before_redis(|c| {
        redis_settings(c).timeout = Duration::from_secs(8);
    });
    // Ready whatever Redis does: established sessions never need it, and a not-ready pod
    // behind a Kubernetes Service would have its UDP flows flushed.
    let (status, body) = http_get(metrics, "/readyz");
    assert_eq!(status, 200);
    assert!(body.contains("redis: down"), "{body}");
    assert_eq!(http_get(metrics, "/healthz").0, 200);
    // A client arriving before the first connection is up waits for it, bounded.
    let client = udp(LOCAL4);
    client.send_to(b"early", proxy.local_addr()).unwrap();
    let redis = RedisServer::start_with(port, None);
    redis.set(BACKEND_KEY, &backend.addr.to_string());
    assert_eq!(
        recv(&client).0,
        b"early",
        "the early datagram waited for Redis"
    );
    wait_for("Redis to be up", || {
        http_get(metrics, "/readyz").1.contains("redis: up")
    });
    let (_, exposition) = http_get(metrics, "/metrics");
    assert_eq!(
        sample(
            &exposition,
            r#"ringgate_redis_up{worker="0",connection="command"}"#
        ),
        Some(1)
    );
    assert!(sample(&exposition, "ringgate_redis_lookup_duration_seconds_count") == Some(1));
    assert_eq!(count(&proxy, Counter::RouteUnavailable), 0);
    proxy.shutdown().unwrap();
}

#[test]
fn ready_requires_redis_brings_back_503_while_redis_is_down() {
    let (port, proxy, metrics) = before_redis(|c| c.ready_requires_redis = true);
    assert_eq!(http_get(metrics, "/readyz").0, 503);
    // A client waits out its lookup timeout (200 ms), then is dropped as unavailable.
    let client = udp(LOCAL4);
    client.send_to(b"early", proxy.local_addr()).unwrap();
    wait_for("the early client to be dropped", || {
        count(&proxy, Counter::RouteUnavailable) == 1
    });
    let _redis = RedisServer::start_with(port, None);
    wait_for("readiness once Redis is up", || {
        http_get(metrics, "/readyz").0 == 200
    });
    proxy.shutdown().unwrap();
}

#[test]
fn a_paused_redis_does_not_delay_established_sessions() {
    let (redis, backend, proxy) = routed(|c| {
        redis_settings(c).timeout = Duration::from_secs(10);
    });
    let established = udp(LOCAL4);
    upstream_of(&established, &proxy, &backend);

    redis.cmd::<()>(0, &["CLIENT", "PAUSE", "1500", "ALL"]);
    let newcomer = udp(LOCAL4);
    newcomer.send_to(b"first", proxy.local_addr()).unwrap();
    wait_for("the newcomer's lookup to be sent", || {
        count(&proxy, Counter::RedisLookups) == 2
    });
    // The same worker keeps forwarding for the established client while the lookup waits.
    for i in 0..50u8 {
        assert_eq!(round_trip(&established, &proxy, &[i]), [i]);
        assert_eq!(backend.next().1, [i]);
    }
    assert!(
        backend.received.try_recv().is_err(),
        "the newcomer's datagram must still be held"
    );
    // Once Redis answers, the held datagram is delivered.
    assert_eq!(recv(&newcomer).0, b"first");
    assert_eq!(backend.next().1, b"first");
    assert_eq!(count(&proxy, Counter::RouteTimeout), 0);
    proxy.shutdown().unwrap();
}

#[test]
fn a_lookup_that_times_out_drops_and_the_next_datagram_tries_again() {
    let (redis, _backend, proxy) = routed(|c| {
        redis_settings(c).timeout = Duration::from_millis(100);
    });
    redis.cmd::<()>(0, &["CLIENT", "PAUSE", "600", "ALL"]);
    let client = udp(LOCAL4);
    client.send_to(b"slow", proxy.local_addr()).unwrap();
    wait_for("the lookup to time out", || {
        count(&proxy, Counter::RouteTimeout) == 1
    });
    assert_eq!(count(&proxy, Counter::DropNoRoute), 1);
    // After the pause, the same client gets through.
    wait_for("the late reply to drain", || {
        client.send_to(b"again", proxy.local_addr()).unwrap();
        client
            .set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let mut buf = [0u8; 16];
        client.recv_from(&mut buf).is_ok()
    });
    proxy.shutdown().unwrap();
}

#[test]
fn password_and_database_selection() {
    let redis = RedisServer::with_password("s3cret");
    let backend = Backend::start(LOCAL4, true);
    redis.cmd::<()>(3, &["SET", BACKEND_KEY, &backend.addr.to_string()]);
    let mut config = redis_config(redis.addr());
    log_in(&mut config, "s3cret", 3);
    let proxy = start_ready(config);
    let client = udp(LOCAL4);
    assert_eq!(round_trip(&client, &proxy, b"authed"), b"authed");
    proxy.shutdown().unwrap();

    // A wrong password or database at start-up is a mistake in the settings: ringgate does
    // not start, and says which setting, never the password.
    for (password, db, setting) in [("wrong", 0, "REDIS_PASSWORD"), ("s3cret", 99, "REDIS_DB")] {
        let mut config = redis_config(redis.addr());
        log_in(&mut config, password, db);
        let err = refused(config);
        assert!(err.contains(setting) && !err.contains("wrong"), "{err}");
    }
    // No password at all where Redis wants one.
    let err = refused(redis_config(redis.addr()));
    assert!(
        err.contains("REDIS_PASSWORD") && err.contains("NOAUTH"),
        "{err}"
    );
}

#[test]
fn a_password_changed_after_start_is_an_outage_with_backoff() {
    let redis = RedisServer::with_password("old");
    let mut config = redis_config(redis.addr());
    log_in(&mut config, "old", 0);
    let proxy = start_ready(config);
    redis.cmd::<()>(0, &["CONFIG", "SET", "requirepass", "new"]);
    let before = redis.connections_with("new");
    redis.cmd_with("new", &["CLIENT", "KILL", "TYPE", "normal"]);
    redis.cmd_with("new", &["CLIENT", "KILL", "TYPE", "pubsub"]);
    std::thread::sleep(Duration::from_secs(5));
    let made = redis.connections_with("new") - before;
    // Two connections (command, subscriber) backing off from 50 ms to 5 s, and the test's own
    // two: about 18 at most in 5 s, where retrying every 50 ms would make 200.
    assert!(made <= 20, "{made} connections in 5 s");
    assert!(count(&proxy, Counter::RedisCommandFailures) >= 1);
    assert!(
        proxy.shared().is_ready(),
        "still serving established sessions"
    );
    proxy.shutdown().unwrap();
}

#[test]
fn five_hundred_new_clients_share_one_lookup_per_worker() {
    let (redis, _backend, proxy) = routed(|c| {
        redis_settings(c).timeout = Duration::from_secs(10);
        c.workers = 2;
    });
    // While Redis is paused, every new client arrives with a GET still in flight, so each
    // worker may send only one.
    // Sockets first: creating them is the slow part, and all 500 sends must fall in the pause.
    let clients: Vec<_> = (0..500).map(player).collect();
    redis.cmd::<()>(0, &["CLIENT", "PAUSE", "1000", "ALL"]);
    for (i, c) in clients.iter().enumerate() {
        c.send_to(format!("{i}").as_bytes(), proxy.local_addr())
            .unwrap();
    }
    for (i, c) in clients.iter().enumerate() {
        assert_eq!(recv(c).0, format!("{i}").as_bytes());
    }
    let lookups = count(&proxy, Counter::RedisLookups);
    assert!(lookups <= 2, "{lookups} GETs for 500 clients on 2 workers");
    assert_eq!(lookups + count(&proxy, Counter::RedisLookupsCoalesced), 500);
    let stats: String = redis.cmd(0, &["INFO", "commandstats"]);
    let gets = stats
        .lines()
        .find_map(|l| l.strip_prefix("cmdstat_get:calls="))
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or(0);
    // The test itself sent no GET; ringgate's are all Redis saw.
    assert_eq!(gets, lookups);
    proxy.shutdown().unwrap();
}

#[test]
fn a_redis_that_stops_answering_is_dropped_and_reconnected() {
    let (redis, _backend, proxy) = routed(|_| {});
    // A stopped process keeps its TCP connections up: only the missing replies tell.
    redis.signal("STOP");
    let client = udp(LOCAL4);
    client.send_to(b"hello?", proxy.local_addr()).unwrap();
    wait_for("the unanswered GET to fail the connection", || {
        count(&proxy, Counter::RedisCommandFailures) >= 1
    });
    assert_eq!(count(&proxy, Counter::RouteTimeout), 1);
    redis.signal("CONT");
    wait_ready(&proxy);
    assert_eq!(round_trip(&client, &proxy, b"again"), b"again");
    proxy.shutdown().unwrap();
}

#[test]
fn clients_waiting_for_a_route_cannot_starve_established_sessions() {
    // 64 buffers: at most 16 datagrams may wait for routes.
    let (redis, _backend, proxy) = routed(|c| {
        redis_settings(c).timeout = Duration::from_secs(10);
        c.buffer_count = 64;
    });
    let established = udp(LOCAL4);
    assert_eq!(round_trip(&established, &proxy, b"in"), b"in");

    let crowd: Vec<_> = (0..40).map(|_| udp(LOCAL4)).collect();
    redis.cmd::<()>(0, &["CLIENT", "PAUSE", "3000", "ALL"]);
    for c in &crowd {
        for _ in 0..4 {
            c.send_to(b"let me in", proxy.local_addr()).unwrap();
        }
    }
    wait_for("the hold cap to drop the excess", || {
        count(&proxy, Counter::DropPendingFull) == 160 - 16
    });
    // Buffers are left for the sessions that already have a route.
    for i in 0..100u8 {
        assert_eq!(round_trip(&established, &proxy, &[i]), [i]);
    }
    proxy.shutdown().unwrap();
}

#[test]
fn a_backend_value_may_be_a_host_name_as_udp_gate_dials_it() {
    // `localhost` may resolve to either family: the backend listens on both.
    let (redis, _unused, proxy) = routed(|_| {});
    let backend = Backend::start("[::]:0", true);
    let name = format!("localhost:{}", backend.addr.port());
    redis.set(BACKEND_KEY, &name);
    let client = udp(LOCAL4);
    assert_eq!(round_trip(&client, &proxy, b"by name"), b"by name");
    // A second client is served from the worker's cache.
    let other = player(1);
    assert_eq!(round_trip(&other, &proxy, b"cached"), b"cached");
    assert_eq!(count(&proxy, Counter::RouteResolve), 0);

    // A name that does not resolve is counted, and the next good value works again.
    redis.set(BACKEND_KEY, "no-such-host.invalid:19132");
    let lost = player(2);
    lost.send_to(b"where?", proxy.local_addr()).unwrap();
    wait_for("the failed name to be counted", || {
        count(&proxy, Counter::RouteResolve) == 1
    });
    redis.set(BACKEND_KEY, &name);
    assert_eq!(round_trip(&lost, &proxy, b"found"), b"found");
    proxy.shutdown().unwrap();
}

#[test]
fn backend_allow_applies_to_the_address_a_name_resolves_to() {
    let (redis, _unused, proxy) = routed(|c| {
        redis_settings(c).allow = vec!["10.0.0.0/8".parse().unwrap()];
    });
    let backend = Backend::start("[::]:0", true);
    redis.set(BACKEND_KEY, &format!("localhost:{}", backend.addr.port()));
    let client = udp(LOCAL4);
    client.send_to(b"loopback?", proxy.local_addr()).unwrap();
    wait_for("the resolved address to be refused", || {
        count(&proxy, Counter::RouteDisallowed) == 1
    });
    assert!(
        backend.received.try_recv().is_err(),
        "nothing reached the backend"
    );
    proxy.shutdown().unwrap();
}

/// A `GET` of `key` on the test's own connection (`None` for a missing key).
fn get(redis: &RedisServer, key: &str) -> Option<String> {
    redis.cmd(0, &["GET", key])
}

#[test]
fn the_session_map_names_each_players_address_by_backend_port() {
    let (redis, backend, proxy) = publishing("udp_gate:session:");
    // Present within 100 ms of the first datagram, with an expiry.
    let client = udp(LOCAL4);
    client.send_to(b"hello", proxy.local_addr()).unwrap();
    let (upstream, _) = backend.next();
    let key = format!("udp_gate:session:{upstream}");
    let asked = Instant::now();
    wait_for("the session map entry", || get(&redis, &key).is_some());
    assert!(
        asked.elapsed() < Duration::from_millis(100),
        "{:?}",
        asked.elapsed()
    );
    assert_eq!(
        get(&redis, &key),
        Some(client.local_addr().unwrap().to_string())
    );
    let ttl: i64 = redis.cmd(0, &["PTTL", &key]);
    assert!(ttl > 0 && ttl <= 2_000, "expiry {ttl} ms");
    recv(&client);

    // Refreshed while the session lives (past its 2 s expiry), gone when it closes.
    let until = Instant::now() + Duration::from_millis(2_500);
    while Instant::now() < until {
        assert_eq!(round_trip(&client, &proxy, b"alive"), b"alive");
        assert!(
            get(&redis, &key).is_some(),
            "the entry of a live session expired"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        redis.publish(DISCONNECT_CHANNEL, &upstream.port().to_string()),
        1
    );
    wait_for("the entry to go with the disconnect", || {
        get(&redis, &key).is_none()
    });

    // An idle session's entry goes when it is reaped.
    let idle = player(1);
    assert_eq!(round_trip(&idle, &proxy, b"once"), b"once");
    let (upstream, _) = backend.received.try_iter().last().unwrap();
    let key = format!("udp_gate:session:{upstream}");
    assert!(get(&redis, &key).is_some());
    wait_for("the idle session to be reaped", || {
        count(&proxy, Counter::ClosedIdle) >= 1
    });
    wait_for("its entry to go", || get(&redis, &key).is_none());
    assert!(count(&proxy, Counter::SessionMapWritten) >= 4);
    proxy.shutdown().unwrap();
}

#[test]
fn forwarding_is_unaffected_while_the_session_map_cannot_be_written() {
    let (mut redis, _backend, proxy) = publishing("s:");
    let established = udp(LOCAL4);
    assert_eq!(round_trip(&established, &proxy, b"in"), b"in");
    redis.kill();
    wait_redis_lost(&proxy);
    for i in 0..100u32 {
        assert_eq!(
            round_trip(&established, &proxy, &i.to_be_bytes()),
            i.to_be_bytes()
        );
    }
    // The session idles out while Redis is down: its delete cannot be written, and is counted
    // as dropped (the entry expires on its own).
    wait_for("the idle session to close", || {
        count(&proxy, Counter::ClosedIdle) == 1
    });
    wait_for("the dropped write to be counted", || {
        count(&proxy, Counter::SessionMapDropped) >= 1
    });
    proxy.shutdown().unwrap();
}
