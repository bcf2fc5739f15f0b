//! The XDP testbed with ringgate itself as the forwarder, three network namespaces:
//!
//! ```text
//!  client ns                 forwarder ns (ringgate)            backend ns
//!  c0 10.1.0.2  ---veth---  x0 10.1.0.1 | y0 10.2.0.1  ---veth---  b0 10.2.0.2 (echo :9000)
//! ```
//!
//! ringgate listens on 10.1.0.1:7000, forwards to 10.2.0.2:9000, and serves /metrics on
//! 127.0.0.1:9100 inside the forwarder ns (read by a thread that enters it). The kernel's rules
//! for XDP on veth are followed as in tests/xdp_live.rs: forwarding on in the forwarder
//! (before the links exist, so every interface inherits it), permanent neighbours, TX checksum
//! offload off on the senders (c0, b0), GRO on there (a native redirect into a veth needs NAPI
//! on its peer).

use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use super::binary::{Running, tempdir, wrapped};
use super::netns::{Netns, link};
use super::{http_get, sample, udp};

pub const LISTEN: &str = "10.1.0.1:7000";
pub const BACKEND: &str = "10.2.0.2:9000";
pub const METRICS: &str = "127.0.0.1:9100";

/// Client, forwarder and backend namespaces linked as drawn above: forwarding on in the
/// forwarder, permanent neighbours, TX checksum offload off on the senders (c0, b0). Nothing
/// gives the peers NAPI: each testbed chooses how.
pub fn three_namespaces() -> [Netns; 3] {
    let client = Netns::new("xdpc");
    let forwarder = Netns::new("xdpf");
    let backend = Netns::new("xdpb");
    forwarder.sysctl("net.ipv4.ip_forward", "1");
    link(
        (&client, "c0", "02:00:00:00:01:02", "10.1.0.2/24"),
        (&forwarder, "x0", "02:00:00:00:01:01", "10.1.0.1/24"),
    );
    link(
        (&forwarder, "y0", "02:00:00:00:02:01", "10.2.0.1/24"),
        (&backend, "b0", "02:00:00:00:02:02", "10.2.0.2/24"),
    );
    // The senders compute their UDP checksums in full (a veth otherwise hands on a partial one,
    // which the program's incremental update would corrupt).
    client.exec(&["ethtool", "-K", "c0", "tx", "off"]);
    backend.exec(&["ethtool", "-K", "b0", "tx", "off"]);
    [client, forwarder, backend]
}

pub struct Bed {
    echo: Option<(Arc<AtomicBool>, JoinHandle<()>)>,
    pub dir: PathBuf,
    pub client: Netns,
    pub forwarder: Netns,
    pub backend: Netns,
}

impl Bed {
    pub fn new(name: &str) -> Bed {
        let [client, forwarder, backend] = three_namespaces();
        for (ns, dev) in [(&client, "c0"), (&backend, "b0")] {
            ns.exec(&["ethtool", "-K", dev, "gro", "on"]);
        }
        let mut bed = Bed {
            echo: None,
            dir: tempdir(name),
            client,
            forwarder,
            backend,
        };
        bed.start_echo();
        bed
    }

    /// The backend: echoes every datagram, byte for byte, to where it came from.
    fn start_echo(&mut self) {
        let socket = self.backend.enter(|| udp(BACKEND));
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::spawn({
            let stop = Arc::clone(&stop);
            move || {
                let mut buf = [0u8; 2048];
                while !stop.load(Ordering::Relaxed) {
                    if let Ok((n, from)) = socket.recv_from(&mut buf) {
                        let _ = socket.send_to(&buf[..n], from);
                    }
                }
            }
        });
        self.echo = Some((stop, thread));
    }

    /// ringgate in the forwarder ns, one unpinned worker, with `extra` arguments.
    pub fn ringgate(&self, extra: &[&str]) -> Running {
        let mut cmd = wrapped(&self.dir, "ip", &["netns", "exec", self.forwarder.name()]);
        cmd.args([
            "--listen",
            LISTEN,
            "--backend",
            BACKEND,
            "--metrics",
            METRICS,
        ])
        .args(["--workers", "1", "--no-pin"])
        .args(extra);
        Running::spawn(cmd)
    }

    /// A client socket in the client ns, connected to ringgate.
    pub fn client(&self, port: u16) -> UdpSocket {
        let socket = self.client.enter(|| udp(&format!("10.1.0.2:{port}")));
        socket.connect(LISTEN).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        socket
    }

    /// ringgate's /metrics, fetched from inside the forwarder ns.
    pub fn metrics(&self) -> String {
        let addr: SocketAddr = METRICS.parse().unwrap();
        self.forwarder.enter(|| http_get(addr, "/metrics").1)
    }

    /// One series of [`Bed::metrics`] (0 if absent).
    pub fn metric(&self, series: &str) -> u64 {
        sample(&self.metrics(), series).unwrap_or(0)
    }
}

impl Drop for Bed {
    fn drop(&mut self) {
        if let Some((stop, thread)) = self.echo.take() {
            stop.store(true, Ordering::Relaxed);
            let _ = thread.join();
        }
    }
}

/// Sends `payload` and expects it back, byte for byte, within the socket's timeout.
pub fn echo(socket: &UdpSocket, payload: &[u8]) {
    socket.send(payload).unwrap();
    let mut buf = [0u8; 2048];
    let n = socket
        .recv(&mut buf)
        .unwrap_or_else(|e| panic!("no echo of {} bytes: {e}", payload.len()));
    assert_eq!(&buf[..n], payload, "echo of {} bytes", payload.len());
}

/// Confirms a session: a datagram answered, then another (the client sent after the answer).
pub fn confirm(socket: &UdpSocket) {
    echo(socket, b"hello");
    echo(socket, b"again");
}

/// Datagrams the XDP program forwarded, both ways.
pub fn xdp_forwarded(bed: &Bed) -> u64 {
    let m = bed.metrics();
    ["tx", "redirect"]
        .iter()
        .map(|r| {
            let series =
                format!(r#"ringgate_xdp_packets_total{{action="forwarded",reason="{r}"}}"#);
            sample(&m, &series).unwrap_or(0)
        })
        .sum()
}

/// Datagrams ringgate's socket path forwarded, both ways.
pub fn socket_forwarded(bed: &Bed) -> u64 {
    let m = bed.metrics();
    ["upstream", "downstream"]
        .iter()
        .map(|d| sample(&m, &format!(r#"ringgate_packets_total{{direction="{d}"}}"#)).unwrap_or(0))
        .sum()
}
