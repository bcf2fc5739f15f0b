//! Running the real ringgate binary under the driver: free ports, the command line the issue
//! fixes, readiness by polling `GET /readyz` with a deadline, and its Prometheus counters
//! (`ringgate_packets_total`, `ringgate_drops_total`) scraped around the measured window.
//!
//! ringgate is still being written; every failure here is returned as text for the table,
//! never a panic, and its log file is named so a reader can see why.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::child::ChildProcess;

/// How long ringgate may take to answer 200 on /readyz.
pub const READY_TIMEOUT: Duration = Duration::from_secs(10);
const POLL_INTERVAL: Duration = Duration::from_millis(20);
const HTTP_TIMEOUT: Duration = Duration::from_millis(500);
/// The metric families the driver records, by name prefix.
const RECORDED_METRICS: [&str; 2] = ["ringgate_packets_total", "ringgate_drops_total"];

/// ringgate's recorded counters, by series (name with labels) to value.
pub type Counters = BTreeMap<String, f64>;

pub struct Ringgate {
    pub child: ChildProcess,
    pub listen: SocketAddr,
    pub metrics: SocketAddr,
}

/// Asks the kernel for a free port by binding port 0, then releases it for ringgate to take.
/// Another process could grab it in between; on loopback during a bench run nobody does.
fn free_udp_port() -> Result<SocketAddr, String> {
    let socket = UdpSocket::bind("127.0.0.1:0").map_err(|e| format!("free UDP port: {e}"))?;
    socket.local_addr().map_err(|e| e.to_string())
}

fn free_tcp_port() -> Result<SocketAddr, String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("free TCP port: {e}"))?;
    listener.local_addr().map_err(|e| e.to_string())
}

/// The last non-empty line of ringgate's log, to say in the table why it failed.
fn last_log_line(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    match text.lines().rev().find(|line| !line.trim().is_empty()) {
        Some(line) => format!("; last log line: {}", line.trim()),
        None => "; its log is empty".to_string(),
    }
}

/// Starts ringgate with one worker per CPU in `cpus`, forwarding to `backend`, and waits until
/// /readyz answers 200.
pub fn start(
    binary: &Path,
    backend: SocketAddr,
    cpus: &[usize],
    log: &Path,
) -> Result<Ringgate, String> {
    if !binary.exists() {
        return Err(format!("no binary at {}", binary.display()));
    }
    let listen = free_udp_port()?;
    let metrics = free_tcp_port()?;
    let args: Vec<String> = [
        "--listen".to_string(),
        listen.to_string(),
        "--backend".to_string(),
        backend.to_string(),
        "--workers".to_string(),
        cpus.len().to_string(),
        "--cpus".to_string(),
        crate::args::format_cpu_list(cpus),
        "--idle-timeout".to_string(),
        "60".to_string(),
        "--buffers".to_string(),
        "4096".to_string(),
        "--buffer-size".to_string(),
        "2048".to_string(),
        "--metrics".to_string(),
        metrics.to_string(),
    ]
    .into();
    let mut child = ChildProcess::external("ringgate", binary, &args, cpus, log)?;
    let started = Instant::now();
    let deadline = started + READY_TIMEOUT;
    let mut last_answer = "no answer".to_string();
    while Instant::now() < deadline {
        if let Some(status) = child.exited() {
            return Err(format!(
                "exited ({status}) before /readyz answered 200{}",
                last_log_line(log)
            ));
        }
        match http_get(metrics, "/readyz") {
            Ok((200, _)) => {
                return Ok(Ringgate {
                    child,
                    listen,
                    metrics,
                });
            }
            Ok((status, _)) => last_answer = format!("HTTP {status}"),
            Err(e) => last_answer = e,
        }
        std::thread::sleep(POLL_INTERVAL);
    }
    Err(format!(
        "/readyz not 200 within {READY_TIMEOUT:?} (last: {last_answer}){}",
        last_log_line(log)
    ))
}

/// A minimal HTTP/1.0 GET, enough for /readyz and /metrics on loopback; returns the status code
/// and the body.
pub fn http_get(addr: SocketAddr, path: &str) -> Result<(u16, String), String> {
    let mut stream =
        TcpStream::connect_timeout(&addr, HTTP_TIMEOUT).map_err(|e| format!("connect: {e}"))?;
    stream
        .set_read_timeout(Some(HTTP_TIMEOUT))
        .and_then(|()| stream.set_write_timeout(Some(HTTP_TIMEOUT)))
        .map_err(|e| e.to_string())?;
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| format!("send request: {e}"))?;
    let mut response = Vec::new();
    // HTTP/1.0 with Connection: close: the body ends when the server closes. Bounded by the
    // read timeout and by the size cap.
    stream
        .take(16 << 20)
        .read_to_end(&mut response)
        .map_err(|e| format!("read response: {e}"))?;
    let response = String::from_utf8_lossy(&response);
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| {
            format!(
                "malformed HTTP response `{}`",
                head.lines().next().unwrap_or("")
            )
        })?;
    Ok((status, body.to_string()))
}

/// The recorded ringgate counters now.
pub fn scrape(metrics: SocketAddr) -> Result<Counters, String> {
    let (status, body) = http_get(metrics, "/metrics")?;
    if status != 200 {
        return Err(format!("/metrics answered HTTP {status}"));
    }
    Ok(parse_counters(&body))
}

fn parse_counters(text: &str) -> Counters {
    text.lines()
        .filter(|line| RECORDED_METRICS.iter().any(|name| line.starts_with(name)))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            Some((series.trim().to_string(), value.trim().parse().ok()?))
        })
        .collect()
}

/// Self-checks of the pure logic above. Bench targets built with `harness = false` never run
/// `#[test]` functions, so the driver runs these under `cargo test --benches` instead.
pub mod checks {
    use super::*;

    pub fn counters_from_prometheus_text() {
        let text = "# HELP ringgate_packets_total Packets.\n\
                    # TYPE ringgate_packets_total counter\n\
                    ringgate_packets_total{direction=\"upstream\"} 1234\n\
                    ringgate_drops_total{reason=\"session_limit\"} 5\n\
                    ringgate_sessions 64\n\
                    # EOF\n";
        let counters = parse_counters(text);
        assert_eq!(counters.len(), 2);
        assert_eq!(
            counters["ringgate_packets_total{direction=\"upstream\"}"],
            1234.0
        );
        assert_eq!(
            counters["ringgate_drops_total{reason=\"session_limit\"}"],
            5.0
        );
    }

    pub const ALL: &[(&str, fn())] = &[(
        "ringgate::counters_from_prometheus_text",
        counters_from_prometheus_text,
    )];
}
