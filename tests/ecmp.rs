//! Two ringgate hosts behind an ECMP route, as a fleet runs them, in five network namespaces:
//!
//! ```text
//!   client 10.98.1.2 ── gw ──┬── host A 10.98.2.2 (VIP 10.99.0.1 on lo, ringgate) ──┐
//!                            ├── host B 10.98.3.2 (VIP 10.99.0.1 on lo, ringgate) ──┤
//!                            └── backend 10.98.4.2 (UDP echo) ◄─────── via gw ───────┘
//! ```
//!
//! gw routes the VIP over both hosts (`nexthop via A nexthop via B`) with the L4 multipath hash
//! (`fib_multipath_hash_policy=1`), so each client port is a flow pinned to one host. Each host's
//! ringgate listens on VIP:19132 and forwards to the backend from its own address; the echo
//! puts the source it saw (the host's address and the session's upstream port) before each
//! reply, so a client sees which host and which session carried every datagram.
//!
//! Checked: the flows spread over both hosts; every datagram is echoed (exactly, no loss
//! tolerated) through the same upstream for the whole test; draining host A (SIGTERM with
//! `--drain-timeout`) keeps its established flows on it and disturbs none of B's, while A
//! drops the new flows the route still hashes to it; once A has drained and exited, and the
//! operator has taken it out of the route, new flows all go to B.
//!
//! Needs root and iproute2; skips with a message without them.

mod util;

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use util::binary::{Running, metrics_of, tempdir, wrapped};
use util::netns::{self, Netns};
use util::{PATIENCE, http_get, sample, wait_for};

const VIP: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 1);
const PORT: u16 = 19132;
const HOST_A: Ipv4Addr = Ipv4Addr::new(10, 98, 2, 2);
const HOST_B: Ipv4Addr = Ipv4Addr::new(10, 98, 3, 2);
const CLIENT: &str = "10.98.1.2:0";
const BACKEND: &str = "10.98.4.2:7000";
/// Established clients: enough that both hosts get some (all on one host: odds of 2^-63).
const CLIENTS: usize = 64;
/// New clients that arrive while A drains, and again once A is out of the route.
const NEWCOMERS: usize = 16;
/// Sessions close after this long without a datagram; the clients send every ~50 ms, and A's
/// drain ends this long after its clients stop.
const IDLE_TIMEOUT_SECS: &str = "3";
/// Most rounds one phase may run, whatever its duration.
const ROUNDS_MAX: usize = 400;

/// The five namespaces and their links; every one is deleted on drop.
struct Fleet {
    client: Netns,
    gw: Netns,
    host_a: Netns,
    host_b: Netns,
    backend: Netns,
}

impl Fleet {
    fn build() -> Fleet {
        let fleet = Fleet {
            client: Netns::new("ecmp-client"),
            gw: Netns::new("ecmp-gw"),
            host_a: Netns::new("ecmp-a"),
            host_b: Netns::new("ecmp-b"),
            backend: Netns::new("ecmp-backend"),
        };
        let gw = &fleet.gw;
        // (namespace, its end, gw's end, subnet): the namespace is .2, gw .1.
        let links = [
            (&fleet.client, "c0", "gw-client", "10.98.1"),
            (&fleet.host_a, "a0", "gw-a", "10.98.2"),
            (&fleet.host_b, "b0", "gw-b", "10.98.3"),
            (&fleet.backend, "be0", "gw-backend", "10.98.4"),
        ];
        for (ns, dev, gw_dev, net) in links {
            gw.veth(gw_dev, ns, dev);
            gw.ip(&["addr", "add", &format!("{net}.1/24"), "dev", gw_dev]);
            ns.ip(&["addr", "add", &format!("{net}.2/24"), "dev", dev]);
            ns.ip(&["route", "add", "default", "via", &format!("{net}.1")]);
        }
        for host in [&fleet.host_a, &fleet.host_b] {
            host.ip(&["addr", "add", &format!("{VIP}/32"), "dev", "lo"]);
        }
        gw.sysctl("net.ipv4.ip_forward", "1");
        gw.sysctl("net.ipv4.fib_multipath_hash_policy", "1");
        fleet.route_vip(&[HOST_A, HOST_B]);
        fleet
    }

    /// Routes the VIP over `hosts` on gw, replacing the route there was.
    fn route_vip(&self, hosts: &[Ipv4Addr]) {
        let vip = format!("{VIP}/32");
        let hops: Vec<String> = hosts.iter().map(Ipv4Addr::to_string).collect();
        let mut args = vec!["route", "replace", vip.as_str()];
        for hop in &hops {
            if hosts.len() > 1 {
                args.push("nexthop");
            }
            args.extend(["via", hop.as_str()]);
        }
        self.gw.ip(&args);
    }
}

/// The backend: echoes every datagram with `SOURCE|` before it, SOURCE the address it came
/// from (a host's address and its session's upstream port).
struct Echo {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Echo {
    fn start(ns: &Netns) -> Echo {
        let socket = ns.enter(|| util::udp(BACKEND));
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::spawn({
            let stop = Arc::clone(&stop);
            move || {
                let mut buf = [0u8; 2048];
                while !stop.load(Ordering::Relaxed) {
                    let Ok((n, from)) = socket.recv_from(&mut buf) else {
                        continue;
                    };
                    let mut reply = format!("{from}|").into_bytes();
                    reply.extend_from_slice(&buf[..n]);
                    socket.send_to(&reply, from).unwrap();
                }
            }
        });
        Echo {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// One host's ringgate, started in its namespace; killed on drop.
struct Host {
    name: &'static str,
    running: Running,
    /// Its metrics address, inside its namespace.
    metrics: SocketAddr,
}

impl Host {
    fn start(name: &'static str, ns: &Netns) -> Host {
        let dir = tempdir(&format!("ecmp-{name}"));
        let mut cmd = wrapped(&dir, "ip", &["netns", "exec", ns.name()]);
        cmd.args(["--listen", &SocketAddr::from((VIP, PORT)).to_string()])
            .args(["--backend", BACKEND, "--workers", "1", "--no-pin"])
            .args(["--metrics", "127.0.0.1:0", "--drain-timeout", "30"])
            .args(["--idle-timeout", IDLE_TIMEOUT_SECS])
            // Every client of the test comes from one address.
            .args(["--new-sessions-per-ip", "0"]);
        let running = Running::spawn(cmd);
        let metrics = metrics_of(&running.ready_line());
        Host {
            name,
            running,
            metrics,
        }
    }

    /// GET `path` from this host's metrics server, from inside its namespace.
    fn get(&self, ns: &Netns, path: &str) -> (u16, String) {
        let metrics = self.metrics;
        ns.enter(move || http_get(metrics, path))
    }

    fn metric(&self, ns: &Netns, series: &str) -> u64 {
        let (_, body) = self.get(ns, "/metrics");
        sample(&body, series).unwrap_or_else(|| panic!("{}: no {series} in\n{body}", self.name))
    }

    /// Datagrams dropped for any reason.
    fn drops(&self, ns: &Netns) -> u64 {
        let (_, body) = self.get(ns, "/metrics");
        body.lines()
            .filter(|l| l.starts_with("ringgate_drops_total{"))
            .filter_map(|l| l.rsplit_once(' ')?.1.parse::<u64>().ok())
            .sum()
    }
}

/// A client: its socket in the client namespace, and the upstream (host address and port)
/// its first echo came through.
struct Client {
    socket: UdpSocket,
    upstream: Option<SocketAddr>,
}

fn clients(ns: &Netns, n: usize) -> Vec<Client> {
    ns.enter(|| {
        (0..n)
            .map(|_| Client {
                socket: util::udp(CLIENT),
                upstream: None,
            })
            .collect()
    })
}

/// The host a client's flow is on, by the address its echoes came from.
fn host_of(client: &Client) -> Ipv4Addr {
    match client.upstream.expect("no echo yet").ip() {
        IpAddr::V4(ip) => ip,
        other => panic!("upstream {other} is not IPv4"),
    }
}

fn on(clients: &[Client], host: Ipv4Addr) -> usize {
    clients.iter().filter(|c| host_of(c) == host).count()
}

/// Splits an echo into the upstream the backend saw and the payload.
fn parse(reply: &[u8]) -> (SocketAddr, &[u8]) {
    let bar = reply
        .iter()
        .position(|&b| b == b'|')
        .unwrap_or_else(|| panic!("not an echo: {:?}", String::from_utf8_lossy(reply)));
    let from = std::str::from_utf8(&reply[..bar]).unwrap().parse().unwrap();
    (from, &reply[bar + 1..])
}

/// Every client in `group` sends one datagram to the VIP and must get exactly its echo back,
/// from the VIP, through the same upstream (host and session) as every echo before.
fn round(group: &mut [Client], tag: &str, n: usize) {
    let vip = SocketAddr::from((VIP, PORT));
    for (i, client) in group.iter().enumerate() {
        let payload = format!("{tag} {i} {n}");
        client.socket.send_to(payload.as_bytes(), vip).unwrap();
    }
    for (i, client) in group.iter_mut().enumerate() {
        let expected = format!("{tag} {i} {n}");
        let mut buf = [0u8; 2048];
        let (len, sender) = match client.socket.recv_from(&mut buf) {
            Ok(got) => got,
            Err(e) => panic!(
                "{tag} client {i} (upstream {:?}): no echo of round {n}: {e}",
                client.upstream
            ),
        };
        assert_eq!(sender, vip, "{tag} client {i}: a reply not from the VIP");
        let (from, payload) = parse(&buf[..len]);
        assert_eq!(
            String::from_utf8_lossy(payload),
            expected,
            "{tag} client {i}: wrong echo"
        );
        let first = *client.upstream.get_or_insert(from);
        assert_eq!(
            from, first,
            "{tag} client {i}: round {n} went through another upstream"
        );
    }
}

/// Rounds of `group` every ~50 ms for `duration`; returns how many ran.
fn rounds(group: &mut [Client], tag: &str, duration: Duration) -> usize {
    let start = Instant::now();
    let mut n = 0;
    while start.elapsed() < duration && n < ROUNDS_MAX {
        round(group, tag, n);
        n += 1;
        std::thread::sleep(Duration::from_millis(50));
    }
    n
}

#[test]
fn flows_stay_on_their_host_and_a_drain_moves_no_session() {
    if let Some(why) = netns::unavailable() {
        eprintln!("skipped: {why}");
        return;
    }
    let fleet = Fleet::build();
    let _echo = Echo::start(&fleet.backend);
    let mut a = Host::start("A", &fleet.host_a);
    let b = Host::start("B", &fleet.host_b);

    // 1. The hash spreads the flows, and each stays on its host, in one session.
    let mut established = clients(&fleet.client, CLIENTS);
    rounds(&mut established, "established", Duration::from_secs(2));
    let (on_a, on_b) = (on(&established, HOST_A), on(&established, HOST_B));
    assert_eq!(on_a + on_b, CLIENTS, "an upstream that is neither host");
    assert!(on_a > 0 && on_b > 0, "no spread: {on_a} on A, {on_b} on B");
    for (host, ns, count) in [(&a, &fleet.host_a, on_a), (&b, &fleet.host_b, on_b)] {
        let created = host.metric(ns, "ringgate_sessions_created_total");
        assert_eq!(
            created, count as u64,
            "host {}: sessions created",
            host.name
        );
        assert_eq!(host.metric(ns, "ringgate_sessions"), count as u64);
        assert_eq!(host.drops(ns), 0, "host {} dropped datagrams", host.name);
    }

    // 2. Drain A. Until /readyz says 503 the clients keep sending, so no session idles out.
    a.running.signal("TERM");
    let asked = Instant::now();
    let mut n = 0;
    while a.get(&fleet.host_a, "/readyz").0 != 503 {
        assert!(asked.elapsed() < PATIENCE, "A's /readyz never answered 503");
        round(&mut established, "established", 10_000 + n);
        n += 1;
    }
    assert_eq!(b.get(&fleet.host_b, "/readyz").0, 200);
    // A's flows stay on A, in their sessions; B's are undisturbed (checked in every round).
    rounds(&mut established, "draining", Duration::from_secs(2));
    assert_eq!(
        a.metric(&fleet.host_a, "ringgate_sessions_created_total"),
        on_a as u64
    );
    assert_eq!(a.metric(&fleet.host_a, "ringgate_sessions"), on_a as u64);

    // New flows still hash to A while it is in the route: A drops them (`draining`), B serves
    // its share.
    let newcomers = clients(&fleet.client, NEWCOMERS);
    let vip = SocketAddr::from((VIP, PORT));
    for (i, c) in newcomers.iter().enumerate() {
        c.socket
            .send_to(format!("new {i}").as_bytes(), vip)
            .unwrap();
        c.socket.set_nonblocking(true).unwrap();
    }
    let mut answered = vec![None; NEWCOMERS];
    let refused = r#"ringgate_drops_total{reason="draining"}"#;
    wait_for("every newcomer to be answered by B or dropped by A", || {
        for (i, c) in newcomers.iter().enumerate() {
            let mut buf = [0u8; 2048];
            if let Ok(len) = c.socket.recv(&mut buf) {
                let (from, payload) = parse(&buf[..len]);
                assert_eq!(payload, format!("new {i}").as_bytes());
                answered[i] = Some(from);
            }
        }
        let got = answered.iter().flatten().count() as u64;
        got + a.metric(&fleet.host_a, refused) == NEWCOMERS as u64
    });
    for from in answered.iter().flatten() {
        assert_eq!(
            from.ip(),
            IpAddr::V4(HOST_B),
            "a new flow got a session on A"
        );
    }
    let newcomers_on_b = answered.iter().flatten().count();
    rounds(&mut established, "draining", Duration::from_secs(1));

    // 3. A's players leave; A drains (no session left) and exits 0 while B's keep playing.
    let (on_host_a, mut on_host_b): (Vec<Client>, Vec<Client>) =
        established.into_iter().partition(|c| host_of(c) == HOST_A);
    drop(on_host_a);
    let mut n = 0;
    let exit = loop {
        if let Some(status) = a.running.child.try_wait().unwrap() {
            break status;
        }
        assert!(asked.elapsed() < Duration::from_secs(25), "A never exited");
        round(&mut on_host_b, "after A's players left", n);
        n += 1;
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(exit.success(), "A exited with {exit}");
    let log = a.running.log(Duration::from_millis(100));
    assert!(
        log.iter().any(|l| l.contains("drained: no session left")),
        "{log:#?}"
    );

    // 4. The operator takes A out of the route: new flows all go to B, and B's established
    //    flows keep their sessions.
    fleet.route_vip(&[HOST_B]);
    let mut late = clients(&fleet.client, NEWCOMERS);
    round(&mut late, "late", 0);
    assert!(late.iter().all(|c| host_of(c) == HOST_B));
    rounds(
        &mut on_host_b,
        "after A left the route",
        Duration::from_secs(1),
    );
    let created = b.metric(&fleet.host_b, "ringgate_sessions_created_total");
    assert_eq!(created, (on_b + newcomers_on_b + NEWCOMERS) as u64);
    assert_eq!(b.drops(&fleet.host_b), 0, "B dropped datagrams");
    eprintln!(
        "{on_a} flows on A, {on_b} on B; {newcomers_on_b} of {NEWCOMERS} newcomers served by B \
         while A drained"
    );
}
