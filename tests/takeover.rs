//! Upgrades without downtime, with real processes over real sockets: a takeover under echo
//! load (by `--takeover`, then by SIGUSR2) loses nothing and moves no session's upstream port;
//! takeovers that fail (refused, the new process gone mid-way, never ready) leave the old
//! process serving everything; a drain keeps established sessions and refuses newcomers.

mod util;

use std::collections::{BTreeSet, HashMap};
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use util::binary::{Running, metrics_of, ringgate, tempdir};
use util::load::{Load, Report};
use util::{BACKEND_KEY, Backend, LOCAL4, PATIENCE, RedisServer, http_get, player, wait_for};

/// The load of the issue: 100 players × 50 datagrams a second.
const PLAYERS: usize = 100;
const RATE: u32 = 50;
/// No load runs longer than this, whatever happens.
const LOAD_LIMIT: Duration = Duration::from_secs(60);

/// systemd's notification socket, as the test plays systemd.
struct Notify {
    socket: UnixDatagram,
    path: PathBuf,
}

impl Notify {
    fn new(dir: &Path) -> Notify {
        let path = dir.join("notify.sock");
        let _ = std::fs::remove_file(&path);
        let socket = UnixDatagram::bind(&path).unwrap();
        socket.set_read_timeout(Some(PATIENCE)).unwrap();
        Notify { socket, path }
    }

    fn next(&self) -> String {
        let mut buf = [0u8; 512];
        let n = self.socket.recv(&mut buf).expect("no sd_notify message");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    /// A message already sent: the one the new process must send before the old one exits
    /// (systemd must learn the new main process before the old one's exit).
    fn already_sent(&self) -> String {
        self.socket.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 512];
        let got = self.socket.recv(&mut buf);
        self.socket.set_nonblocking(false).unwrap();
        let n = got.expect("no sd_notify message before the old process exited");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }
}

struct Setup {
    dir: PathBuf,
    backend: Backend,
    notify: Notify,
    workers: usize,
}

impl Setup {
    fn new(name: &str, workers: usize) -> Setup {
        let dir = tempdir(name);
        Setup {
            notify: Notify::new(&dir),
            backend: Backend::start(LOCAL4, true),
            dir,
            workers,
        }
    }

    fn control(&self) -> PathBuf {
        self.dir.join("control.sock")
    }

    /// ringgate as every process of a test runs it (the same settings each time).
    fn command(&self, extra: &[&str]) -> Command {
        self.command_with(self.workers, extra)
    }

    fn command_with(&self, workers: usize, extra: &[&str]) -> Command {
        let mut cmd = ringgate(&self.dir);
        cmd.args([
            "--listen",
            "127.0.0.1:0",
            "--no-pin",
            "--log-sessions",
            "off",
        ])
        .args(["--backend", &self.backend.addr.to_string()])
        .args(["--workers", &workers.to_string()])
        .args(["--metrics", "127.0.0.1:0"])
        .arg("--control")
        .arg(self.control())
        .args(extra)
        .env("NOTIFY_SOCKET", &self.notify.path);
        cmd
    }

    /// Starts the first process; returns it with its listen and metrics addresses.
    fn first(&self, extra: &[&str]) -> (Running, SocketAddr, SocketAddr) {
        let old = Running::spawn(self.command(extra));
        let ready = old.ready_line();
        assert_eq!(self.notify.next(), "READY=1");
        let listen = util::binary::field(&ready, "listen").parse().unwrap();
        (old, listen, metrics_of(&ready))
    }

    /// Every player's upstream source ports as the backend saw them.
    fn ports_by_player(&self) -> HashMap<u32, BTreeSet<u16>> {
        let mut ports: HashMap<u32, BTreeSet<u16>> = HashMap::new();
        while let Ok((from, payload)) = self.backend.received.try_recv() {
            let player = u32::from_be_bytes(payload[..4].try_into().unwrap());
            ports.entry(player).or_default().insert(from.port());
        }
        ports
    }
}

fn exit_of(running: &mut Running) -> ExitStatus {
    let mut status = None;
    wait_for("the process to exit", || {
        status = running.child.try_wait().unwrap();
        status.is_some()
    });
    status.unwrap()
}

fn mainpid(message: &str) -> u32 {
    let pid = message
        .lines()
        .find_map(|l| l.strip_prefix("MAINPID="))
        .unwrap_or_else(|| panic!("no MAINPID in {message:?}"));
    assert!(message.lines().any(|l| l == "READY=1"), "{message:?}");
    pid.parse().unwrap()
}

fn assert_nothing_lost(report: &Report, what: &str) {
    println!(
        "{what}: {} sent, {} lost, max RTT {:?} (p50 {:?}, p99 {:?})",
        report.sent, report.lost, report.max_rtt, report.p50_rtt, report.p99_rtt
    );
    assert!(report.sent > 0);
    assert_eq!(report.lost, 0, "{what}: datagrams lost");
    assert_eq!(report.duplicated, 0, "{what}: datagrams duplicated");
}

fn takeover_under_load(workers: usize) {
    let setup = Setup::new(&format!("takeover-{workers}"), workers);
    let (mut old, listen, metrics) = setup.first(&[]);
    let load = Load::start(listen, PLAYERS, RATE, LOAD_LIMIT);
    load.wait_for_echoes(PLAYERS as u64 * 20);

    // 1. `--takeover`, as an operator (or a deploy script) runs it.
    let control = setup.control();
    let mut next = Running::spawn(setup.command(&["--takeover", control.to_str().unwrap()]));
    assert!(exit_of(&mut old).success(), "the old process exits 0");
    assert_eq!(mainpid(&setup.notify.already_sent()), next.child.id());
    let ready = next.ready_line();
    assert_eq!(util::binary::field(&ready, "listen"), listen.to_string());
    assert_eq!(
        metrics_of(&ready),
        metrics,
        "the metrics listener was handed over"
    );
    let took = next
        .log(Duration::ZERO)
        .into_iter()
        .find(|l| l.contains("took over"))
        .expect("the new process logs the takeover");
    assert!(took.contains(&format!("sessions={PLAYERS}")), "{took}");
    load.wait_for_echoes(PLAYERS as u64 * 20);
    assert_eq!(http_get(metrics, "/readyz").0, 200);

    // 2. SIGUSR2: the running binary starts itself again with --takeover.
    kill(Pid::from_raw(next.child.id() as i32), Signal::SIGUSR2).unwrap();
    assert!(exit_of(&mut next).success(), "the second process exits 0");
    let third = mainpid(&setup.notify.already_sent());
    assert_ne!(third, next.child.id());
    load.wait_for_echoes(PLAYERS as u64 * 20);
    let report = load.stop();
    assert_nothing_lost(&report, &format!("{workers} worker(s), two takeovers"));

    let ports = setup.ports_by_player();
    assert_eq!(ports.len(), PLAYERS, "every player reached the backend");
    for (player, ports) in &ports {
        assert_eq!(
            ports.len(),
            1,
            "player {player} kept its upstream port: {ports:?}"
        );
    }
    stop_orphan(third);
}

/// Stops the process SIGUSR2 started (not this test's child), waiting until it has exited.
fn stop_orphan(pid: u32) {
    kill(Pid::from_raw(pid as i32), Signal::SIGTERM).unwrap();
    wait_for("the last process to exit", || {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map_or(true, |stat| stat.contains(") Z "))
    });
}

#[test]
fn a_takeover_under_load_loses_nothing_with_one_worker() {
    takeover_under_load(1);
}

#[test]
fn a_takeover_under_load_loses_nothing_with_two_workers() {
    takeover_under_load(2);
}

#[test]
fn a_refused_takeover_leaves_the_old_process_serving() {
    let setup = Setup::new("refused", 2);
    let (mut old, listen, _) = setup.first(&[]);
    let load = Load::start(listen, PLAYERS, RATE, LOAD_LIMIT);
    load.wait_for_echoes(PLAYERS as u64 * 10);
    let control = setup.control();
    let wrong = setup.command_with(1, &["--takeover", control.to_str().unwrap()]);
    let out = util::binary::run(wrong);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("worker count differs") && stderr.contains("--workers"),
        "{stderr}"
    );
    load.wait_for_echoes(PLAYERS as u64 * 10);
    assert_nothing_lost(&load.stop(), "refused takeover");
    assert!(
        old.child.try_wait().unwrap().is_none(),
        "the old process serves on"
    );
}

/// A peer that speaks the takeover's first steps and then stops, as a new process that dies
/// (or hangs) mid-handover would: the kernel closes its end the same way.
fn broken_peer(control: &Path, workers: usize, lines_to_read: Option<usize>) -> UnixStream {
    let mut stream = UnixStream::connect(control).unwrap();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    writeln!(stream, "HELLO 1 listen=127.0.0.1:0 workers={workers}").unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert!(line.starts_with("OK "), "{line}");
    writeln!(stream, "GO").unwrap();
    let mut read = 0;
    loop {
        line.clear();
        if reader.read_line(&mut line).unwrap() == 0 || line.starts_with("END") {
            break;
        }
        read += 1;
        if lines_to_read == Some(read) {
            break;
        }
    }
    stream
}

#[test]
fn a_new_process_gone_mid_handover_leaves_the_old_one_serving() {
    let setup = Setup::new("gone", 2);
    let (mut old, listen, _) = setup.first(&["--handover-timeout", "1"]);
    let load = Load::start(listen, PLAYERS, RATE, LOAD_LIMIT);
    load.wait_for_echoes(PLAYERS as u64 * 10);

    // Gone after the first worker's listener and a session: the old process resumes.
    drop(broken_peer(&setup.control(), 2, Some(2)));
    let failed = |old: &Running| {
        old.log(Duration::from_millis(0))
            .iter()
            .filter(|l| l.contains("takeover failed"))
            .count()
    };
    wait_for("the old process to give up", || failed(&old) == 1);
    load.wait_for_echoes(PLAYERS as u64 * 10);

    // Took everything but never said READY: the old process resumes after its timeout.
    let hung = broken_peer(&setup.control(), 2, None);
    wait_for("the old process to time out", || failed(&old) == 2);
    drop(hung);
    load.wait_for_echoes(PLAYERS as u64 * 10);

    // And a real takeover still works afterwards.
    let mut next =
        Running::spawn(setup.command(&["--takeover", setup.control().to_str().unwrap()]));
    next.ready_line();
    assert!(exit_of(&mut old).success());
    load.wait_for_echoes(PLAYERS as u64 * 10);
    let report = load.stop();
    assert_nothing_lost(&report, "two failed takeovers, then one that worked");
    let ports = setup.ports_by_player();
    assert!(ports.values().all(|p| p.len() == 1), "{ports:?}");
    kill(Pid::from_raw(next.child.id() as i32), Signal::SIGTERM).unwrap();
    assert!(exit_of(&mut next).success());
}

#[test]
fn a_drain_keeps_established_sessions_and_refuses_newcomers() {
    let setup = Setup::new("drain", 1);
    let (mut old, listen, metrics) = setup.first(&["--drain-timeout", "20", "--idle-timeout", "1"]);
    let established = player(0);
    let round_trip = |socket: &std::net::UdpSocket, payload: &[u8]| {
        socket.send_to(payload, listen).unwrap();
        util::recv(socket).0
    };
    assert_eq!(round_trip(&established, b"before"), b"before");

    let asked = Instant::now();
    kill(Pid::from_raw(old.child.id() as i32), Signal::SIGTERM).unwrap();
    wait_for("/readyz to answer 503", || {
        http_get(metrics, "/readyz").0 == 503
    });
    assert_eq!(round_trip(&established, b"during"), b"during");

    let newcomer = player(1);
    newcomer.send_to(b"new", listen).unwrap();
    wait_for("the newcomer's datagram to be dropped", || {
        let (_, body) = http_get(metrics, "/metrics");
        util::sample(&body, r#"ringgate_drops_total{reason="draining"}"#) == Some(1)
    });
    assert_eq!(round_trip(&established, b"still"), b"still");

    // Once the established session goes idle (1 s), the process exits 0, well within 20 s.
    assert!(exit_of(&mut old).success());
    let took = asked.elapsed();
    assert!(took < Duration::from_secs(20), "drained in {took:?}");
    let log = old.log(Duration::from_millis(100));
    assert!(
        log.iter().any(|l| l.contains("drained: no session left")),
        "{log:#?}"
    );
}

#[test]
fn with_redis_sessions_keep_their_backends_and_a_waiting_datagram_is_carried_over() {
    let redis = RedisServer::start();
    let (first, second) = (Backend::start(LOCAL4, true), Backend::start(LOCAL4, true));
    redis.set(BACKEND_KEY, &first.addr.to_string());
    let dir = tempdir("takeover-redis");
    let control = dir.join("control.sock");
    let command = || {
        let mut cmd = ringgate(&dir);
        cmd.args(["--listen", "127.0.0.1:0", "--no-pin", "--workers", "1"])
            .args(["--redis-addr", &redis.addr().to_string()])
            .args(["--redis-timeout-ms", "8000", "--metrics", "127.0.0.1:0"])
            .arg("--control")
            .arg(&control);
        cmd
    };
    let mut old = Running::spawn(command());
    let ready = old.ready_line();
    let listen: SocketAddr = util::binary::field(&ready, "listen").parse().unwrap();
    let metrics = metrics_of(&ready);
    let settled = player(0);
    settled.send_to(b"one", listen).unwrap();
    assert_eq!(util::recv(&settled).0, b"one");
    let (upstream, _) = first.next();

    // New clients now go to the second backend, but Redis stops answering: the next client's
    // datagram waits in the old process, held, when the takeover comes.
    redis.set(BACKEND_KEY, &second.addr.to_string());
    redis.signal("STOP");
    let waiting = player(1);
    waiting.send_to(b"carried", listen).unwrap();
    wait_for("the old process to ask Redis", || {
        let (_, body) = http_get(metrics, "/metrics");
        util::sample(&body, "ringgate_redis_lookups_total") == Some(2)
    });
    let mut taking = command();
    taking.arg("--takeover").arg(&control);
    let mut next = Running::spawn(taking);
    let took = loop {
        let line = next.lines.recv_timeout(PATIENCE).expect("no takeover line");
        if line.contains("took over") {
            break line;
        }
    };
    assert!(
        took.contains("sessions=1") && took.contains("pending=1"),
        "{took}"
    );
    assert!(exit_of(&mut old).success());

    // The new process's own Redis connection answers once Redis is back.
    redis.signal("CONT");
    assert_eq!(util::recv(&waiting).0, b"carried");
    let (_, payload) = second.next();
    assert_eq!(payload, b"carried", "the waiting client got the new route");
    settled.send_to(b"two", listen).unwrap();
    assert_eq!(util::recv(&settled).0, b"two");
    let (from, payload) = first.next();
    assert_eq!(
        (from, payload.as_slice()),
        (upstream, &b"two"[..]),
        "the settled session kept its backend and its upstream port"
    );
    kill(Pid::from_raw(next.child.id() as i32), Signal::SIGTERM).unwrap();
    assert!(exit_of(&mut next).success());
}

#[test]
fn sigusr2_applies_an_edited_settings_file_and_sessions_keep_their_backends() {
    let setup = Setup::new("envfile", 1);
    let other = Backend::start(LOCAL4, true);
    let file = setup.dir.join("ringgate.env");
    std::fs::write(&file, format!("BACKENDS={}\n", setup.backend.addr)).unwrap();
    let mut cmd = ringgate(&setup.dir);
    cmd.args(["--listen", "127.0.0.1:0", "--no-pin", "--workers", "1"])
        .arg("--control")
        .arg(setup.control())
        .env("RINGGATE_ENV_FILE", &file)
        .env("NOTIFY_SOCKET", &setup.notify.path);
    let mut old = Running::spawn(cmd);
    let ready = old.ready_line();
    assert_eq!(setup.notify.next(), "READY=1");
    assert!(ready.contains(&setup.backend.addr.to_string()), "{ready}");
    let listen: SocketAddr = util::binary::field(&ready, "listen").parse().unwrap();
    let settled = player(0);
    settled.send_to(b"one", listen).unwrap();
    assert_eq!(util::recv(&settled).0, b"one");
    let (upstream, _) = setup.backend.next();

    std::fs::write(&file, format!("BACKENDS={}\n", other.addr)).unwrap();
    kill(Pid::from_raw(old.child.id() as i32), Signal::SIGUSR2).unwrap();
    assert!(exit_of(&mut old).success());
    let third = mainpid(&setup.notify.already_sent());
    // The new process logs to the same stderr.
    let ready = old.ready_line();
    assert!(
        ready.contains(&other.addr.to_string()),
        "the edit applies: {ready}"
    );

    settled.send_to(b"two", listen).unwrap();
    assert_eq!(util::recv(&settled).0, b"two");
    assert_eq!(
        setup.backend.next(),
        (upstream, b"two".to_vec()),
        "same backend, same port"
    );
    let newcomer = player(1);
    newcomer.send_to(b"new", listen).unwrap();
    assert_eq!(util::recv(&newcomer).0, b"new");
    assert_eq!(
        other.next().1,
        b"new",
        "a new session goes where the file now says"
    );
    stop_orphan(third);
}

/// Plays the old process up to `READY`, handing over `listener` with no session; returns the
/// connection, which the caller closes instead of saying `BYE`.
fn old_that_never_lets_go(
    control: &std::os::unix::net::UnixListener,
    listener: &std::net::UdpSocket,
) -> UnixStream {
    use nix::sys::socket::{ControlMessage, MsgFlags, sendmsg};
    use std::os::fd::AsRawFd;
    let (stream, _) = control.accept().unwrap();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    let listen = listener.local_addr().unwrap();
    assert!(
        line.starts_with(&format!("HELLO 1 listen={listen} workers=1")),
        "{line}"
    );
    let ok = format!("OK listen={listen} workers=1 pid=1 fds=4\n");
    (&stream).write_all(ok.as_bytes()).unwrap();
    line.clear();
    reader.read_line(&mut line).unwrap();
    assert_eq!(line, "GO\n");
    let part = b"W 0 sessions=0\n";
    let fds = [listener.as_raw_fd()];
    let sent = sendmsg::<()>(
        stream.as_raw_fd(),
        &[std::io::IoSlice::new(part)],
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        None,
    )
    .unwrap();
    assert_eq!(sent, part.len());
    (&stream).write_all(b"END frozen_us=0\n").unwrap();
    line.clear();
    reader.read_line(&mut line).unwrap();
    assert_eq!(line, "READY\n");
    stream
}

#[test]
fn a_new_process_reads_and_sends_nothing_until_the_old_one_lets_go() {
    let dir = tempdir("no-bye");
    let control_path = dir.join("control.sock");
    let control = std::os::unix::net::UnixListener::bind(&control_path).unwrap();
    let listener = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let backend = Backend::start(LOCAL4, true);
    let mut cmd = ringgate(&dir);
    cmd.args(["--no-pin", "--workers", "1", "--listen"])
        .arg(listener.local_addr().unwrap().to_string())
        .args(["--backend", &backend.addr.to_string()])
        .arg("--takeover")
        .arg(&control_path);
    let mut next = Running::spawn(cmd);
    let link = old_that_never_lets_go(&control, &listener);

    // The new process has adopted the listener and said READY; a datagram for it now must wait
    // in the socket, because the old process may still resume. Absence cannot be awaited: a
    // bounded wait, long past the few milliseconds a forwarded datagram takes here.
    let client = player(0);
    client
        .send_to(b"wait for me", listener.local_addr().unwrap())
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    // No BYE: the old process "resumed". The new one stops, having taken nothing.
    drop(link);
    let status = exit_of(&mut next);
    assert!(!status.success(), "the new process must fail: {status}");
    assert!(
        next.log(Duration::from_millis(0))
            .iter()
            .any(|l| l.contains("takeover failed")),
        "it says why"
    );
    listener
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut buf = [0u8; 64];
    let (n, from) = listener
        .recv_from(&mut buf)
        .expect("the datagram is still in the old process's socket");
    assert_eq!(
        (&buf[..n], from),
        (&b"wait for me"[..], client.local_addr().unwrap())
    );
    assert!(
        backend.received.try_recv().is_err(),
        "nothing reached the backend"
    );
}

/// A session keeps the PROXY header it was given across a takeover into a process started
/// without `--proxy-protocol`, even the 52-byte IPv6 one on a listener of a specific address,
/// whose receive buffers would otherwise leave no room for it before the payload.
#[test]
fn a_session_keeps_its_ipv6_proxy_header_across_a_takeover_that_turns_it_off() {
    use ppp::v2::{Addresses, Header};

    let dir = tempdir("pp-takeover");
    let notify = Notify::new(&dir);
    let backend = Backend::start(util::LOCAL6, false);
    let control = dir.join("control.sock");
    let command = |extra: &[&str]| {
        let mut cmd = ringgate(&dir);
        cmd.args(["--listen", "[::1]:0", "--no-pin", "--workers", "1"])
            .args(["--log-sessions", "off"])
            .args(["--backend", &backend.addr.to_string()])
            .arg("--control")
            .arg(&control)
            .args(extra)
            .env("NOTIFY_SOCKET", &notify.path);
        cmd
    };
    let mut old = Running::spawn(command(&[
        "--proxy-protocol",
        "v2",
        "--proxy-protocol-every",
    ]));
    let ready = old.ready_line();
    assert_eq!(notify.next(), "READY=1");
    // `listen=[::1]:PORT`, up to the next space.
    let listen: SocketAddr = ready
        .split("listen=")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let client = util::udp(util::LOCAL6);
    let header_then = |payload: &[u8]| {
        client.send_to(payload, listen).unwrap();
        let (_, datagram) = backend.next();
        let header = Header::try_from(&datagram[..]).expect("a PROXY v2 header");
        let Addresses::IPv6(a) = header.addresses else {
            panic!("an IPv6 client's header: {:?}", header.addresses)
        };
        assert_eq!(
            SocketAddr::from((a.source_address, a.source_port)),
            client.local_addr().unwrap()
        );
        assert_eq!(header.len(), 52, "the IPv6 header");
        datagram[header.len()..].to_vec()
    };
    assert_eq!(header_then(b"before"), b"before");

    let next = Running::spawn(command(&["--takeover", control.to_str().unwrap()]));
    assert!(exit_of(&mut old).success(), "the old process exits 0");
    next.ready_line();
    // The session was opened with `--proxy-protocol-every`: every datagram keeps its header.
    assert_eq!(header_then(b"after"), b"after");
    assert_eq!(header_then(b"again"), b"again");
    drop(next);
}

/// A process on either backend takes over from one on either: io_uring to epoll and back,
/// under load, nothing lost and every player on its upstream port.
#[test]
fn a_takeover_crosses_between_io_uring_and_epoll() {
    let setup = Setup::new("cross-backend", 1);
    let (mut old, listen, metrics) = setup.first(&["--io-backend", "io-uring"]);
    let backend_is = |name: &str| {
        let (_, body) = http_get(metrics, "/metrics");
        let sample =
            format!(r#"ringgate_io_backend_info{{backend="{name}",reason="configured"}} 1"#);
        body.contains(&sample)
    };
    assert!(backend_is("io_uring"));
    let load = Load::start(listen, PLAYERS, RATE, LOAD_LIMIT);
    load.wait_for_echoes(PLAYERS as u64 * 10);
    let control = setup.control();
    let takeover = ["--takeover", control.to_str().unwrap()];
    for (backend, name) in [("epoll", "epoll"), ("io-uring", "io_uring")] {
        let mut args = takeover.to_vec();
        args.extend(["--io-backend", backend]);
        let next = Running::spawn(setup.command(&args));
        assert!(exit_of(&mut old).success(), "the old process exits 0");
        let ready = next.ready_line();
        assert!(
            ready.contains(&format!(r#"io_backend="{name}""#)),
            "{ready}"
        );
        assert!(backend_is(name), "the metric follows the new process");
        load.wait_for_echoes(PLAYERS as u64 * 10);
        old = next;
    }
    let report = load.stop();
    assert_nothing_lost(&report, "io_uring → epoll → io_uring");
    for (player, ports) in setup.ports_by_player() {
        assert_eq!(
            ports.len(),
            1,
            "player {player} kept its upstream port: {ports:?}"
        );
    }
    drop(old);
}
