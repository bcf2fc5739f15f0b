//! Running a real ringgate binary under the driver: free ports, the command line the issue
//! fixes (plus any `--ringgate-arg`), readiness by polling `GET /readyz` with a deadline, and
//! its Prometheus counters (`ringgate_packets_total`, `ringgate_drops_total`, the sessions
//! created and closed, the `ringgate_sessions` gauge, and the XDP fast path's packets, sessions
//! and state) scraped around the measured window, and the pause a successor logs after a
//! takeover. Every failure comes back as text for the table, naming ringgate's log.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::plan::Layout;
use crate::proc::Child;
use crate::sockets::free_port;

/// How long ringgate may take to answer 200 on /readyz.
const READY_TIMEOUT: Duration = Duration::from_secs(10);
const POLL_INTERVAL: Duration = Duration::from_millis(20);
const HTTP_TIMEOUT: Duration = Duration::from_secs(2);
/// The metric families the driver records (`ringgate_sessions` and `ringgate_xdp_sessions` are
/// gauges, whose delta is their net change; `ringgate_xdp_info` says the fast path's state).
const RECORDED_METRICS: [&str; 8] = [
    "ringgate_packets_total",
    "ringgate_drops_total",
    "ringgate_sessions_created_total",
    "ringgate_sessions_closed_total",
    "ringgate_sessions",
    "ringgate_xdp_packets_total",
    "ringgate_xdp_sessions",
    "ringgate_xdp_info",
];

/// Recorded counters, by series (name with labels).
pub type Counters = BTreeMap<String, f64>;

/// A forwarder's session figures by short name: `open` (sessions held now) and counters of
/// sessions `created`, closed as `evicted` or `unreplied`, and new sources dropped as
/// `bad_source`, `rate_limited`, `session_budget`, `max_sessions` or `fd_reserve`. A forwarder
/// (or an older ringgate build) that does not count one leaves it out.
pub type Sessions = BTreeMap<&'static str, f64>;

/// Where ringgate exposes each session figure.
const SESSION_SERIES: [(&str, &str); 9] = [
    ("open", "ringgate_sessions"),
    ("created", "ringgate_sessions_created_total"),
    (
        "evicted",
        "ringgate_sessions_closed_total{reason=\"evicted\"}",
    ),
    (
        "unreplied",
        "ringgate_sessions_closed_total{reason=\"unreplied\"}",
    ),
    ("bad_source", "ringgate_drops_total{reason=\"bad_source\"}"),
    (
        "rate_limited",
        "ringgate_drops_total{reason=\"rate_limited\"}",
    ),
    (
        "max_sessions",
        "ringgate_drops_total{reason=\"max_sessions\"}",
    ),
    ("fd_reserve", "ringgate_drops_total{reason=\"fd_reserve\"}"),
    (
        "session_budget",
        "ringgate_drops_total{reason=\"session_budget\"}",
    ),
];

/// ringgate's session figures among its recorded counters.
pub fn sessions(counters: &Counters) -> Sessions {
    let figure = |&(name, series): &(&'static str, &str)| Some((name, *counters.get(series)?));
    SESSION_SERIES.iter().filter_map(figure).collect()
}

/// The last non-empty line of ringgate's log, to say in the table why it failed.
pub fn last_log_line(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    match text.lines().rev().find(|line| !line.trim().is_empty()) {
        Some(line) => format!("; last line of {}: {}", log.display(), line.trim()),
        None => format!("; {} is empty", log.display()),
    }
}

/// A ringgate command line for one run, and the addresses it names.
#[derive(Clone, Debug)]
pub struct CommandLine {
    pub binary: PathBuf,
    pub args: Vec<String>,
    pub listen: SocketAddr,
    pub metrics: SocketAddr,
}

/// The command line of `binary` with one worker per forwarder CPU, forwarding to `backend`,
/// on free ports, plus `extra`.
pub fn command_line(
    binary: &Path,
    extra: &[String],
    backend: SocketAddr,
    layout: &Layout,
) -> Result<CommandLine, String> {
    if !binary.exists() {
        return Err(format!("no binary at {}", binary.display()));
    }
    let (listen, metrics) = (free_port(true)?, free_port(false)?);
    let args = [
        ("--listen", listen.to_string()),
        ("--backend", backend.to_string()),
        ("--workers", layout.workers.to_string()),
        ("--cpus", layout.forwarder.to_string()),
        ("--idle-timeout", "60".into()),
        ("--buffers", "4096".into()),
        ("--buffer-size", "2048".into()),
        ("--metrics", metrics.to_string()),
    ];
    let args = args
        .into_iter()
        .flat_map(|(name, value)| [name.to_string(), value])
        .chain(extra.iter().cloned())
        .collect();
    Ok(CommandLine {
        binary: binary.into(),
        args,
        listen,
        metrics,
    })
}

/// Starts `line` logging to `log`, and returns it once /readyz on its metrics address answers
/// 200.
pub fn start(line: &CommandLine, layout: &Layout, log: &Path) -> Result<Child, String> {
    let mut child = Child::program("ringgate", &line.binary, &line.args, &layout.forwarder, log)?;
    wait_ready(&mut child, line.metrics, log)?;
    Ok(child)
}

/// Polls `GET /readyz` on `metrics` until 200, while `child` runs, for at most
/// `READY_TIMEOUT`.
pub fn wait_ready(child: &mut Child, metrics: SocketAddr, log: &Path) -> Result<(), String> {
    let deadline = Instant::now() + READY_TIMEOUT;
    let mut last_answer = "no answer".to_string();
    while Instant::now() < deadline {
        if let Some(status) = child.exited() {
            return Err(format!(
                "exited ({status}) before /readyz answered 200{}",
                last_log_line(log)
            ));
        }
        match http_get(metrics, "/readyz") {
            Ok((200, _)) => return Ok(()),
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

/// The pause a successor logged in its `took over from the running ringgate` line
/// (`pause_ms=`), if `log` has it yet.
pub fn logged_pause_ms(log: &Path) -> Option<f64> {
    let text = std::fs::read_to_string(log).ok()?;
    let line = text.lines().find(|line| line.contains("took over"))?;
    parse_pause_ms(line)
}

fn parse_pause_ms(line: &str) -> Option<f64> {
    let value = line.split_once("pause_ms=")?.1;
    let value = value
        .split(|c: char| c.is_whitespace() || c == ',')
        .next()?;
    value.trim_matches('"').parse().ok()
}

/// A minimal HTTP/1.0 GET on loopback; returns the status code and the body.
fn http_get(addr: SocketAddr, path: &str) -> Result<(u16, String), String> {
    let mut stream =
        TcpStream::connect_timeout(&addr, HTTP_TIMEOUT).map_err(|e| format!("connect: {e}"))?;
    stream
        .set_read_timeout(Some(HTTP_TIMEOUT))
        .map_err(|e| e.to_string())?;
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| format!("request: {e}"))?;
    // The body ends when the server closes; bounded by the read timeout and a size cap.
    let mut response = Vec::new();
    stream
        .take(16 << 20)
        .read_to_end(&mut response)
        .map_err(|e| format!("response: {e}"))?;
    let response = String::from_utf8_lossy(&response);
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok());
    let status = status.ok_or_else(|| {
        format!(
            "malformed HTTP response `{}`",
            head.lines().next().unwrap_or("")
        )
    })?;
    Ok((status, body.to_string()))
}

/// The recorded counters now.
pub fn scrape(metrics: SocketAddr) -> Result<Counters, String> {
    match http_get(metrics, "/metrics")? {
        (200, body) => Ok(parse_counters(&body)),
        (status, _) => Err(format!("/metrics answered HTTP {status}")),
    }
}

fn parse_counters(text: &str) -> Counters {
    let family = |line: &str| line.split(['{', ' ']).next().unwrap_or("").to_string();
    let recorded = |line: &&str| RECORDED_METRICS.contains(&family(line).as_str());
    let series = |line: &str| {
        let (series, value) = line.rsplit_once(' ')?;
        Some((series.trim().to_string(), value.trim().parse().ok()?))
    };
    text.lines().filter(recorded).filter_map(series).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_from_prometheus_text() {
        let text = "# HELP ringgate_packets_total Packets.\n\
                    # TYPE ringgate_packets_total counter\n\
                    ringgate_packets_total{direction=\"upstream\"} 1234\n\
                    ringgate_drops_total{reason=\"rate_limited\"} 5\n\
                    ringgate_sessions 64\n\
                    ringgate_sessions_created_total 70\n\
                    ringgate_sessions_closed_total{reason=\"evicted\"} 6\n\
                    ringgate_sessions_other 1\n\
                    ringgate_workers_ready 1\n\
                    # EOF\n";
        let counters = parse_counters(text);
        assert_eq!(counters.len(), 5);
        assert_eq!(
            counters["ringgate_packets_total{direction=\"upstream\"}"],
            1234.0
        );
        assert_eq!(
            counters["ringgate_drops_total{reason=\"rate_limited\"}"],
            5.0
        );
        let sessions = sessions(&counters);
        let expected = [
            ("created", 70.0),
            ("evicted", 6.0),
            ("open", 64.0),
            ("rate_limited", 5.0),
        ];
        assert_eq!(sessions, expected.into());
    }

    #[test]
    fn a_successors_pause_is_read_from_its_log_line() {
        let line = "2026-11-27T15:00:00Z  INFO ringgate::proxy::takeover: took over from the running ringgate sessions=1000 pending=0 refused=0 fds=1001 old_pid=7 pause_ms=3.25";
        assert_eq!(parse_pause_ms(line), Some(3.25));
        assert_eq!(parse_pause_ms("\"pause_ms\":3.25"), None);
        assert_eq!(parse_pause_ms("sessions=1"), None);
    }
}
