//! Helpers shared by the integration tests: real sockets on loopback, free ports, a backend
//! thread, real `redis-server` processes, and bounded waits. Nothing here mocks the kernel.
#![allow(dead_code)]

pub mod binary;
pub mod load;
pub mod netns;
pub mod process;
pub mod sentinel;
pub mod spoof;
pub mod xdpbed;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ringgate::{Config, Counter, Proxy};
use socket2::{Domain, Protocol, Socket, Type};

pub const LOCAL4: &str = "127.0.0.1:0";
pub const LOCAL6: &str = "[::1]:0";
/// How long any single wait in a test may take before it fails.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// A UDP socket on `addr` with large buffers (forced when permitted, as in CI which runs as
/// root) so bursts are not lost in the test's own sockets, and a read timeout so no test hangs.
pub fn udp(addr: &str) -> UdpSocket {
    let addr: SocketAddr = addr.parse().unwrap();
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP)).unwrap();
    let bytes = 32 << 20;
    let _ = socket.set_recv_buffer_size(bytes);
    let _ = socket.set_send_buffer_size(bytes);
    force_buffers(&socket, bytes);
    socket.bind(&addr.into()).unwrap();
    let socket = UdpSocket::from(socket);
    socket.set_read_timeout(Some(PATIENCE)).unwrap();
    socket
}

/// socket2 has no SO_RCVBUFFORCE; without CAP_NET_ADMIN the plain sizes already set stand.
fn force_buffers(socket: &Socket, bytes: usize) {
    use std::os::fd::AsRawFd;
    let value = bytes as libc::c_int;
    for option in [libc::SO_RCVBUFFORCE, libc::SO_SNDBUFFORCE] {
        // SAFETY: `value` is a c_int that outlives the call, passed with its exact size.
        unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::SOL_SOCKET,
                option,
                std::ptr::from_ref(&value).cast(),
                size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
    }
}

/// Player `i`'s socket, on an address of its own in 127.0.0.0/8 (distinct players have
/// distinct addresses, and ringgate budgets new sessions per address).
pub fn player(i: usize) -> UdpSocket {
    assert!(i < 250 * 250, "player {i}: too many");
    udp(&format!("127.0.{}.{}:0", 2 + i / 250, 1 + i % 250))
}

/// A free UDP port on loopback nobody listens on (for a dead backend).
pub fn dead_addr() -> SocketAddr {
    let s = UdpSocket::bind(LOCAL4).unwrap();
    s.local_addr().unwrap()
}

/// A UDP port free on both IPv4 and IPv6 wildcards right now.
pub fn free_udp_port() -> u16 {
    let probe = UdpSocket::bind("[::]:0").unwrap();
    probe.local_addr().unwrap().port()
}

/// A TCP port free on loopback right now, with no server on it (yet).
pub fn free_tcp_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// Sends `signal` (e.g. `TERM`, `STOP`, `CONT`) to process `pid`, as `kill -SIGNAL` does.
pub fn signal(pid: u32, signal: &str) {
    let status = std::process::Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill -{signal} {pid}");
}

pub fn recv(socket: &UdpSocket) -> (Vec<u8>, SocketAddr) {
    let mut buf = vec![0u8; 65_536];
    let (n, from) = loop {
        match socket.recv_from(&mut buf) {
            // A receive with a timeout is not restarted after a stop and continue of the
            // process (a debugger, a frozen cgroup): try again.
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            other => {
                break other
                    .unwrap_or_else(|e| panic!("no datagram on {:?}: {e}", socket.local_addr()));
            }
        }
    };
    buf.truncate(n);
    (buf, from)
}

/// A backend on loopback: records every datagram with the address it came from, and echoes
/// it back unchanged when `echo` is set.
pub struct Backend {
    pub addr: SocketAddr,
    pub received: mpsc::Receiver<(SocketAddr, Vec<u8>)>,
    pub socket: Arc<UdpSocket>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Backend {
    pub fn start(bind: &str, echo: bool) -> Backend {
        let socket = Arc::new(udp(bind));
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let addr = socket.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, received) = mpsc::channel();
        let thread = std::thread::spawn({
            let (socket, stop) = (Arc::clone(&socket), Arc::clone(&stop));
            move || {
                let mut buf = vec![0u8; 65_536];
                while !stop.load(Ordering::Relaxed) {
                    let Ok((n, from)) = socket.recv_from(&mut buf) else {
                        continue;
                    };
                    // Recorded before the echo leaves, so a test that got the echo finds it.
                    if tx.send((from, buf[..n].to_vec())).is_err() {
                        return;
                    }
                    if echo {
                        socket.send_to(&buf[..n], from).unwrap();
                    }
                }
            }
        });
        Backend {
            addr,
            received,
            socket,
            stop,
            thread: Some(thread),
        }
    }

    /// The next datagram the backend got, or a test failure after [`PATIENCE`].
    pub fn next(&self) -> (SocketAddr, Vec<u8>) {
        self.received
            .recv_timeout(PATIENCE)
            .expect("the backend received nothing")
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A test configuration: one unpinned worker on loopback forwarding to `backends`.
pub fn config(listen: &str, backends: &[SocketAddr]) -> Config {
    with_io_backend(Config::new(listen.parse().unwrap(), backends.to_vec()))
}

/// The backend every test's ringgate runs on: `RINGGATE_IO_BACKEND` (`io-uring`, `epoll`, or
/// `auto` and unset), as the binary reads it; tests that start the binary inherit the variable.
/// CI runs the whole suite once with each.
pub fn io_backend() -> Option<ringgate::sys::driver::Backend> {
    use ringgate::sys::driver::Backend;
    match std::env::var("RINGGATE_IO_BACKEND").as_deref() {
        Ok("epoll") => Some(Backend::Epoll),
        Ok("io-uring") => Some(Backend::IoUring),
        _ => None,
    }
}

fn with_io_backend(mut config: Config) -> Config {
    config.io_backend = io_backend();
    config
}

pub fn start(config: Config) -> Proxy {
    Proxy::start(config).expect("ringgate starts")
}

pub fn count(proxy: &Proxy, counter: Counter) -> u64 {
    proxy.shared().total(counter)
}

/// Polls `condition` until it holds, failing the test after [`PATIENCE`]. For state that has
/// no event to wait on (counters published by a worker at the end of its batch).
pub fn wait_for(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// A minimal HTTP/1.0 GET returning (status, body).
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    try_http_get(addr, path).unwrap_or_else(|e| panic!("GET {path} from {addr}: {e}"))
}

/// [`http_get`] that reports a failed connection instead of failing the test.
pub fn try_http_get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, PATIENCE)?;
    stream.set_read_timeout(Some(PATIENCE))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: test\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

/// The value of one sample line of a Prometheus exposition (`name{labels}` exactly).
pub fn sample(exposition: &str, series: &str) -> Option<u64> {
    exposition.lines().find_map(|line| {
        let (name, value) = line.rsplit_once(' ')?;
        (name == series).then(|| value.parse().ok())?
    })
}

/// A real `redis-server` on a free loopback port, started by the test and killed on drop.
pub struct RedisServer {
    pub port: u16,
    password: Option<String>,
    child: Option<std::process::Child>,
}

impl RedisServer {
    pub fn start() -> RedisServer {
        RedisServer::start_with(free_tcp_port(), None)
    }

    /// A server on a free port that wants `password`.
    pub fn with_password(password: &str) -> RedisServer {
        RedisServer::start_with(free_tcp_port(), Some(password))
    }

    pub fn start_with(port: u16, password: Option<&str>) -> RedisServer {
        let mut server = RedisServer {
            port,
            password: password.map(str::to_owned),
            child: None,
        };
        server.restart();
        server
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Starts (again) on the same port, and waits until it answers PING.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "already running");
        let mut cmd = std::process::Command::new("redis-server");
        cmd.args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        if let Some(password) = &self.password {
            cmd.args(["--requirepass", password]);
        }
        let child = cmd
            .spawn()
            .expect("redis-server must be installed (scripts/test installs it)");
        self.child = Some(child);
        wait_for("redis-server to answer PING", || {
            self.connection()
                .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c))
                .is_ok()
        });
    }

    /// Sends `signal` (e.g. `STOP`, `CONT`) to the server process.
    pub fn signal(&self, signal: &str) {
        self::signal(self.child.as_ref().expect("running").id(), signal);
    }

    /// Kills the server abruptly (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn connection(&self) -> redis::RedisResult<redis::Connection> {
        self.connection_as(self.password.as_deref())
    }

    /// A fresh connection authenticated with `password` (none: no AUTH).
    fn connection_as(&self, password: Option<&str>) -> redis::RedisResult<redis::Connection> {
        let auth = password.map(|p| format!(":{p}@")).unwrap_or_default();
        let client = redis::Client::open(format!("redis://{auth}127.0.0.1:{}/", self.port))?;
        // A connect interrupted by a signal (this sandbox stops processes between steps) is
        // tried again, a few times.
        let mut tries = 0;
        loop {
            match client.get_connection_with_timeout(Duration::from_secs(1)) {
                Err(e)
                    if e.kind() == redis::ErrorKind::Io
                        && e.to_string().contains("os error 4")
                        && tries < 5 =>
                {
                    tries += 1;
                }
                other => return other,
            }
        }
    }

    /// Runs a command on a fresh connection (in database `db`) and returns its reply.
    pub fn cmd<T: redis::FromRedisValue>(&self, db: i64, args: &[&str]) -> T {
        let mut c = self
            .connection()
            .expect("connect to the test's redis-server");
        if db != 0 {
            redis::cmd("SELECT").arg(db).query::<()>(&mut c).unwrap();
        }
        command(args).query(&mut c).unwrap()
    }

    /// Runs a command authenticated with `password` (after the server's password changed).
    pub fn cmd_with(&self, password: &str, args: &[&str]) {
        let _: redis::Value = self.query_with(password, args);
    }

    /// As [`RedisServer::cmd_with`], returning the reply.
    pub fn query_with<T: redis::FromRedisValue>(&self, password: &str, args: &[&str]) -> T {
        let mut c = self.connection_as(Some(password)).unwrap();
        command(args).query(&mut c).unwrap()
    }

    /// `total_connections_received`, asked with `password`.
    pub fn connections_with(&self, password: &str) -> u64 {
        let mut c = self.connection_as(Some(password)).unwrap();
        let info: String = redis::cmd("INFO").arg("stats").query(&mut c).unwrap();
        info.lines()
            .find_map(|l| l.strip_prefix("total_connections_received:"))
            .and_then(|n| n.trim().parse().ok())
            .unwrap()
    }

    pub fn set(&self, key: &str, value: &str) {
        self.cmd::<()>(0, &["SET", key, value]);
    }

    /// Publishes `message` on `channel`; returns how many subscribers got it.
    pub fn publish(&self, channel: &str, message: &str) -> usize {
        self.cmd(0, &["PUBLISH", channel, message])
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A Redis command from its words, `args[0]` the command's name.
fn command(args: &[&str]) -> redis::Cmd {
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd
}

pub const BACKEND_KEY: &str = "udp_gate:backend";
pub const DISCONNECT_CHANNEL: &str = "udp_gate:disconnect";

/// A test configuration routing through the Redis server at `redis` (no static backends).
pub fn redis_config(redis: SocketAddr) -> Config {
    let mut config = with_io_backend(Config::new(LOCAL4.parse().unwrap(), Vec::new()));
    config.routes = ringgate::route::Routes::Redis(ringgate::route::redis::Settings {
        addr: redis,
        host: None,
        handshake: ringgate::route::redis::conn::Handshake {
            instance_channel: Some(format!("{DISCONNECT_CHANNEL}:{INSTANCE}")),
            ..ringgate::route::redis::conn::Handshake::plain(DISCONNECT_CHANNEL)
        },
        key: BACKEND_KEY.into(),
        timeout: Duration::from_millis(200),
        allow: Vec::new(),
        publish: None,
        sentinel: None,
        bare_ports: true,
        instance: INSTANCE.into(),
    });
    config
}

/// The instance id of a configuration made by [`redis_config`].
pub const INSTANCE: &str = "test-instance";

/// The Redis settings of a configuration made by [`redis_config`].
pub fn redis_settings(config: &mut Config) -> &mut ringgate::route::redis::Settings {
    match &mut config.routes {
        ringgate::route::Routes::Redis(settings) => settings,
        _ => panic!("not a Redis configuration"),
    }
}

/// Waits until ringgate is ready and every worker's Redis connections are up.
pub fn wait_ready(proxy: &Proxy) {
    let shared = proxy.shared();
    wait_for("ringgate to be ready with Redis up", || {
        shared.is_ready() && shared.links_up() == shared.links_total()
    });
}

/// Starts ringgate and waits as [`wait_ready`] does.
pub fn start_ready(config: Config) -> Proxy {
    let proxy = start(config);
    wait_ready(&proxy);
    proxy
}

/// Sends `payload` and returns the echo (the backend must echo).
pub fn round_trip(client: &UdpSocket, proxy: &Proxy, payload: &[u8]) -> Vec<u8> {
    client.send_to(payload, proxy.local_addr()).unwrap();
    recv(client).0
}

/// A round trip as a game client makes it: the datagram is sent again every 100 ms until the
/// echo arrives, for at most `within`. Returns how long it took.
pub fn round_trip_within(
    client: &UdpSocket,
    to: SocketAddr,
    payload: &[u8],
    within: Duration,
) -> Option<Duration> {
    let start = Instant::now();
    client
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut buf = [0u8; 2048];
    let answered = loop {
        if start.elapsed() >= within {
            break None;
        }
        client.send_to(payload, to).unwrap();
        if let Ok(n) = client.recv(&mut buf)
            && &buf[..n] == payload
        {
            break Some(start.elapsed());
        }
    };
    client.set_read_timeout(Some(PATIENCE)).unwrap();
    answered
}

/// Fails unless `promtool check metrics` (Prometheus's own linter) accepts `body` silently.
pub fn promtool_check(body: &str) {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect(
            "promtool must be installed (Debian: apt-get install prometheus; scripts/test does)",
        );
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let out = promtool.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool: {said}\n{body}"
    );
}
