//! ringgate with `--xdp`, over the namespace testbed of `util::xdpbed` (client, ringgate,
//! backend): a confirmed session's datagrams of every size go through the XDP program byte for
//! byte while ringgate's socket path forwards none of them; an offloaded session that keeps
//! sending through XDP outlives the idle timeout, and one that stops is closed as idle, its
//! entries gone (its next datagram opens a new session on the socket path); a disconnect
//! message removes them too; and where the program cannot be attached ringgate says why and
//! forwards on the socket path, or refuses to start with `--xdp-required`.
//!
//! The testbed needs root (skipped, saying why, otherwise); the fallback tests run anywhere.

mod util;

use std::net::SocketAddr;
use std::time::Duration;

use util::binary::{Running, one_worker, tempdir};
use util::netns;
use util::xdpbed::{BACKEND, Bed, confirm, echo, socket_forwarded, xdp_forwarded};
use util::{Backend, DISCONNECT_CHANNEL, RedisServer, http_get, sample, udp, wait_for};

/// The largest UDP payload a 1500-byte MTU carries in one IPv4 frame without options.
const PAYLOAD_MAX: usize = 1472;

fn payload(size: usize) -> Vec<u8> {
    (0..size).map(|i| (i * 7 + size) as u8).collect()
}

/// Waits until ringgate reports `n` sessions offloaded to XDP.
fn wait_offloaded(bed: &Bed, n: u64) {
    wait_for(&format!("{n} sessions offloaded to XDP"), || {
        bed.metric(r#"ringgate_xdp_sessions{worker="0"}"#) == n
    });
}

fn every_size_goes_through_xdp(mode: &str) {
    let bed = Bed::new(&format!("xdp-echo-{mode}"));
    let rg = bed.ringgate(&["--xdp", "x0,y0", "--xdp-mode", mode]);
    rg.ready_line();
    let m = bed.metrics();
    assert_eq!(
        sample(&m, r#"ringgate_xdp_info{state="attached"}"#),
        Some(1),
        "{m}"
    );
    for dev in ["x0", "y0"] {
        let series = format!(r#"ringgate_xdp_attached{{interface="{dev}",mode="{mode}"}}"#);
        assert_eq!(sample(&m, &series), Some(1), "{series} in\n{m}");
    }
    let client = bed.client(5000);
    confirm(&client);
    wait_offloaded(&bed, 1);
    let (socket_before, xdp_before) = (socket_forwarded(&bed), xdp_forwarded(&bed));
    for size in 1..=PAYLOAD_MAX {
        echo(&client, &payload(size));
    }
    assert_eq!(
        socket_forwarded(&bed),
        socket_before,
        "ringgate's sockets forwarded none of them"
    );
    let through_xdp = xdp_forwarded(&bed) - xdp_before;
    assert_eq!(
        through_xdp,
        2 * PAYLOAD_MAX as u64,
        "both ways, every one, in XDP"
    );
    // Every XDP family, as Prometheus's own linter reads it.
    util::promtool_check(&bed.metrics());
    // x0 in, y0 out and back: through the device map, never XDP_TX.
    let series = r#"ringgate_xdp_packets_total{action="forwarded",reason="redirect"}"#;
    assert!(bed.metric(series) >= 2 * PAYLOAD_MAX as u64);
}

#[test]
fn every_size_goes_through_native_xdp_byte_for_byte() {
    if !netns::skip("native") {
        every_size_goes_through_xdp("native");
    }
}

#[test]
fn every_size_goes_through_generic_xdp_byte_for_byte() {
    if !netns::skip("generic") {
        every_size_goes_through_xdp("generic");
    }
}

#[test]
fn an_offloaded_session_lives_while_xdp_forwards_and_closes_when_idle() {
    if netns::skip("idle") {
        return;
    }
    let bed = Bed::new("xdp-idle");
    // A 2 s idle timeout: the reaper looks every 250 ms.
    let rg = bed.ringgate(&["--xdp", "x0,y0", "--idle-timeout", "2"]);
    rg.ready_line();
    let client = bed.client(5001);
    confirm(&client);
    wait_offloaded(&bed, 1);
    // Twice the idle timeout of traffic that only XDP sees, a datagram every 100 ms.
    for i in 0..40u32 {
        echo(&client, &i.to_be_bytes());
        std::thread::sleep(Duration::from_millis(100));
    }
    let m = bed.metrics();
    assert_eq!(
        sample(&m, r#"ringgate_sessions_closed_total{reason="idle"}"#),
        Some(0),
        "{m}"
    );
    assert_eq!(
        sample(&m, r#"ringgate_xdp_sessions{worker="0"}"#),
        Some(1),
        "{m}"
    );
    assert!(
        sample(&m, r#"ringgate_xdp_idle_checks_total{result="active"}"#).unwrap_or(0) >= 1,
        "the reaper asked XDP and found the session active:\n{m}"
    );
    // Silence: closed as idle, out of the map.
    wait_for("the idle session closed", || {
        bed.metric(r#"ringgate_sessions_closed_total{reason="idle"}"#) == 1
    });
    assert_eq!(bed.metric(r#"ringgate_xdp_sessions{worker="0"}"#), 0);
    assert_eq!(bed.metric("ringgate_xdp_flows"), 0);
    after_removal_a_new_session_starts(&bed, &client);
}

/// The client's next datagram misses the XDP map, reaches ringgate and opens a new session.
fn after_removal_a_new_session_starts(bed: &Bed, client: &std::net::UdpSocket) {
    let created = bed.metric("ringgate_sessions_created_total");
    let misses = bed.metric(r#"ringgate_xdp_packets_total{action="passed",reason="miss"}"#);
    let socket = socket_forwarded(bed);
    echo(client, b"back again");
    assert_eq!(bed.metric("ringgate_sessions_created_total"), created + 1);
    assert!(bed.metric(r#"ringgate_xdp_packets_total{action="passed",reason="miss"}"#) > misses);
    assert_eq!(
        socket_forwarded(bed),
        socket + 2,
        "up and down on the socket path"
    );
}

#[test]
fn a_disconnect_removes_an_offloaded_sessions_entries() {
    if netns::skip("disconnect") {
        return;
    }
    let bed = Bed::new("xdp-disconnect");
    // Redis inside the forwarder ns, where ringgate reaches it on loopback.
    let redis = bed.forwarder.enter(RedisServer::start);
    bed.forwarder
        .enter(|| redis.set(util::BACKEND_KEY, BACKEND));
    let mut cmd_args = vec!["--xdp", "x0,y0"];
    let redis_addr = redis.addr().to_string();
    cmd_args.extend(["--redis-addr", &redis_addr]);
    // No static backend: routes come from Redis.
    let rg = {
        let mut cmd =
            util::binary::wrapped(&bed.dir, "ip", &["netns", "exec", bed.forwarder.name()]);
        cmd.args([
            "--listen",
            util::xdpbed::LISTEN,
            "--metrics",
            util::xdpbed::METRICS,
        ])
        .args(["--workers", "1", "--no-pin"])
        .args(&cmd_args);
        Running::spawn(cmd)
    };
    rg.ready_line();
    wait_for("ringgate subscribed", || {
        bed.forwarder
            .enter(|| redis.cmd::<Vec<redis::Value>>(0, &["PUBSUB", "NUMSUB", DISCONNECT_CHANNEL]))
            .get(1)
            .is_some_and(|v| matches!(v, redis::Value::Int(n) if *n >= 1))
    });
    let client = bed.client(5002);
    confirm(&client);
    wait_offloaded(&bed, 1);
    echo(&client, b"through xdp");
    let published = bed
        .forwarder
        .enter(|| redis.publish(DISCONNECT_CHANNEL, "10.1.0.2:5002"));
    assert_eq!(published, 1);
    wait_for("the session disconnected", || {
        bed.metric(r#"ringgate_sessions_closed_total{reason="disconnect"}"#) == 1
    });
    assert_eq!(bed.metric(r#"ringgate_xdp_sessions{worker="0"}"#), 0);
    after_removal_a_new_session_starts(&bed, &client);
}

#[test]
fn where_xdp_cannot_attach_ringgate_says_why_and_forwards_on_the_socket_path() {
    let dir = tempdir("xdp-fallback");
    let backend = Backend::start(util::LOCAL4, true);
    let metrics = util::free_tcp_port();
    let mut cmd = one_worker(&dir);
    cmd.args(["--backend", &backend.addr.to_string()])
        .args(["--metrics", &format!("127.0.0.1:{metrics}")])
        .args(["--xdp", "nosuchif0"]);
    let rg = Running::spawn(cmd);
    let why = rg.wait_line("the XDP fallback", |l| {
        l.contains("cannot start the XDP fast path")
    });
    assert!(why.contains("socket path"), "{why}");
    let listen = rg.listen();
    let client = udp(util::LOCAL4);
    client.connect(listen).unwrap();
    confirm(&client);
    let addr: SocketAddr = format!("127.0.0.1:{metrics}").parse().unwrap();
    let m = http_get(addr, "/metrics").1;
    assert_eq!(
        sample(&m, r#"ringgate_xdp_info{state="socket_path"}"#),
        Some(1),
        "{m}"
    );
    assert_eq!(
        sample(&m, r#"ringgate_packets_total{direction="upstream"}"#),
        Some(2)
    );
}

#[test]
fn with_xdp_required_ringgate_refuses_to_start_where_xdp_cannot_attach() {
    let dir = tempdir("xdp-required");
    let mut cmd = one_worker(&dir);
    cmd.args([
        "--backend",
        "127.0.0.1:9",
        "--xdp",
        "nosuchif0",
        "--xdp-required",
    ]);
    let run = util::binary::run_text(cmd);
    run.assert_exit(1);
    assert!(
        run.stderr.contains("--xdp-required") && run.stderr.contains("nosuchif0"),
        "{}",
        run.transcript()
    );
}

#[test]
fn an_interface_that_does_not_forward_is_refused_with_the_sysctl_to_set() {
    if netns::skip("forwarding") {
        return;
    }
    let ns = netns::Netns::new("xpnofwd");
    let peer = netns::Netns::new("xpnofwd-peer");
    ns.veth("n0", &peer, "p0");
    ns.ip(&["addr", "add", "10.3.0.1/24", "dev", "n0"]);
    let dir = tempdir("xdp-nofwd");
    let mut cmd = util::binary::wrapped(&dir, "ip", &["netns", "exec", ns.name()]);
    cmd.args(["--listen", "10.3.0.1:7000", "--backend", "10.3.0.2:9000"])
        .args([
            "--workers",
            "1",
            "--no-pin",
            "--xdp",
            "n0",
            "--xdp-required",
        ]);
    let run = util::binary::run_text(cmd);
    run.assert_exit(1);
    assert!(
        run.stderr.contains("net.ipv4.conf.n0.forwarding"),
        "{}",
        run.transcript()
    );
}
