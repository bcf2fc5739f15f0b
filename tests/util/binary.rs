//! The `ringgate` binary as a test runs it: a clean environment, its log lines on a channel,
//! killed on drop.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::process::{self, Run};
use super::{LOCAL4, PATIENCE};

pub const BIN: &str = env!("CARGO_BIN_EXE_ringgate");

/// Variables a test sets explicitly; cleared from every child so the caller's environment
/// (or a developer's shell) cannot leak into a test.
pub const VARS: &[&str] = &[
    "REDIS_ADDR",
    "REDIS_PASSWORD",
    "REDIS_DB",
    "REDIS_URL",
    "REDIS_BACKEND_KEY",
    "REDIS_DISCONNECT_CHANNEL",
    "RINGGATE_REDIS_TIMEOUT_MS",
    "RINGGATE_BACKEND_ALLOW",
    "PROXY_ADDR",
    "BACKENDS",
    "WORKERS",
    "LISTENER_COUNT",
    "METRICS_ADDR",
    "SESSION_IDLE_TIMEOUT_SECS",
    "RINGGATE_BUFFER_SIZE",
    "RINGGATE_BUFFERS",
    "RINGGATE_CPUS",
    "RINGGATE_NO_PIN",
    "RINGGATE_LOG_FORMAT",
    "RINGGATE_MAX_SESSIONS",
    "RINGGATE_PENDING_MAX",
    "RINGGATE_SOCKET_BUFFER",
    "RINGGATE_RING_ENTRIES",
    "RINGGATE_TASK_RUN",
    "RINGGATE_IO_BACKEND",
    "RINGGATE_UNREPLIED_TIMEOUT",
    "RINGGATE_NEW_SESSIONS_PER_IP",
    "RINGGATE_NEW_SESSIONS_PER_WORKER",
    "RINGGATE_METRICS_CONNECTIONS_MAX",
    "RINGGATE_READY_REQUIRES_REDIS",
    "RINGGATE_LOG_SESSIONS",
    "RINGGATE_LOG_SUMMARY_SECS",
    "RINGGATE_PROXY_PROTOCOL",
    "RINGGATE_PROXY_PROTOCOL_EVERY",
    "RINGGATE_PUBLISH_SESSIONS",
    "RINGGATE_PUBLISH_SESSIONS_PREFIX",
    "RINGGATE_CONTROL",
    "RINGGATE_TAKEOVER",
    "RINGGATE_HANDOVER_TIMEOUT",
    "RINGGATE_DRAIN_TIMEOUT",
    // Redis Sentinel and fleet settings (tests/fleet.rs).
    "REDIS_SENTINEL_ADDRS",
    "REDIS_SENTINEL_MASTER",
    "REDIS_SENTINEL_PASSWORD",
    "REDIS_PASSWORD_FILE",
    "REDIS_SENTINEL_PASSWORD_FILE",
    "RINGGATE_INSTANCE_ID",
    "RINGGATE_DISCONNECT_BARE_PORTS",
];

/// Gives a test's ringgate the backend the suite runs on (`RINGGATE_IO_BACKEND`, see
/// `util::io_backend`), the one variable of [`VARS`] a test's environment passes on.
pub fn keep_io_backend(cmd: &mut Command) {
    if let Ok(backend) = std::env::var("RINGGATE_IO_BACKEND") {
        cmd.env("RINGGATE_IO_BACKEND", backend);
    }
}

/// ringgate, in `dir`, logging at `info`, with none of [`VARS`] from the test's environment
/// but the backend the suite runs on.
pub fn ringgate(dir: &Path) -> Command {
    clean(Command::new(BIN), dir)
}

/// ringgate started by `program` (e.g. `taskset`, `sh -c`): `program args BIN`, with the
/// environment of [`ringgate`]; the test adds ringgate's own arguments.
pub fn wrapped(dir: &Path, program: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(program);
    cmd.args(args).arg(BIN);
    clean(cmd, dir)
}

fn clean(mut cmd: Command, dir: &Path) -> Command {
    cmd.current_dir(dir).env("RUST_LOG", "info");
    for var in VARS {
        cmd.env_remove(var);
    }
    keep_io_backend(&mut cmd);
    // Nor may a test's ringgate talk to a systemd the test runs under.
    cmd.env_remove("NOTIFY_SOCKET");
    cmd
}

/// [`ringgate`] listening on a free loopback port with one unpinned worker: what most tests
/// add their own arguments to.
pub fn one_worker(dir: &Path) -> Command {
    let mut cmd = ringgate(dir);
    cmd.args(["--listen", LOCAL4, "--workers", "1", "--no-pin"]);
    cmd
}

pub fn tempdir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("ringgate-cli-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A running binary whose stderr lines arrive on a channel; killed on drop.
pub struct Running {
    pub child: Child,
    pub lines: mpsc::Receiver<String>,
    /// Every line taken from `lines` so far.
    seen: std::cell::RefCell<Vec<String>>,
}

impl Running {
    pub fn spawn(mut cmd: Command) -> Running {
        let mut child = cmd
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Running {
            child,
            lines,
            seen: Default::default(),
        }
    }

    /// Every line logged so far (waiting `settle` for stragglers).
    pub fn log(&self, settle: Duration) -> Vec<String> {
        while let Ok(line) = self.lines.recv_timeout(settle) {
            self.seen.borrow_mut().push(line);
        }
        self.seen.borrow().clone()
    }

    /// Waits up to [`PATIENCE`] for a log line that `matches` and returns it; the lines before
    /// it are passed over (and kept for [`Running::log`]).
    pub fn wait_line(&self, what: &str, mut matches: impl FnMut(&str) -> bool) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = match self.lines.recv_timeout(left) {
                Ok(line) => line,
                // Say why: a process that exited (a refused flag), or the lines it did log.
                Err(e) => {
                    let why = match e {
                        mpsc::RecvTimeoutError::Timeout => "in time",
                        mpsc::RecvTimeoutError::Disconnected => "before its stderr closed",
                    };
                    let seen = self.seen.borrow();
                    let tail = &seen[seen.len().saturating_sub(20)..];
                    panic!(
                        "ringgate never logged {what} {why}; its last lines:\n{}",
                        tail.join("\n")
                    );
                }
            };
            self.seen.borrow_mut().push(line.clone());
            if matches(&line) {
                return line;
            }
        }
    }

    /// Waits for a log line containing every one of `needles`, and returns it.
    pub fn line_with(&self, needles: &[&str]) -> String {
        let what = format!("a line with {needles:?}");
        self.wait_line(&what, |line| needles.iter().all(|n| line.contains(n)))
    }

    /// Waits for the `ready` log line and returns it.
    pub fn ready_line(&self) -> String {
        self.wait_line("`ready`", |line| {
            line.contains(": ready ") || line.contains(r#""message":"ready""#)
        })
    }

    /// The `key=value` field of the ready line.
    pub fn ready_field(&self, key: &str) -> String {
        field(&self.ready_line(), key)
    }

    /// The address the ready line says ringgate listens on.
    pub fn listen(&self) -> SocketAddr {
        self.ready_field("listen").parse().unwrap()
    }

    /// Sends `signal` (e.g. `TERM`, `HUP`) to the process.
    pub fn signal(&self, signal: &str) {
        super::signal(self.child.id(), signal);
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn field(line: &str, key: &str) -> String {
    let start = line
        .find(&format!("{key}="))
        .unwrap_or_else(|| panic!("no {key}= in {line}"))
        + key.len()
        + 1;
    let rest = &line[start..];
    if rest.starts_with('[') {
        rest[..=rest.find(']').unwrap()].to_owned()
    } else {
        rest.split_whitespace().next().unwrap().to_owned()
    }
}

/// Runs `cmd` to its exit, for at most [`PATIENCE`], and returns its output.
pub fn run(cmd: Command) -> Output {
    process::output(cmd, PATIENCE)
}

/// [`run`], its exit code and output as text.
pub fn run_text(cmd: Command) -> Run {
    Run::new(cmd, PATIENCE)
}

/// The metrics address in a ready line (`metrics=Some(ADDR)`).
pub fn metrics_of(line: &str) -> SocketAddr {
    field(line, "metrics")
        .trim_start_matches("Some(")
        .trim_end_matches(')')
        .parse()
        .unwrap()
}

/// The resident set of process `pid`, in KiB (`VmRSS`).
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmRSS in /proc/PID/status")
}

/// Descriptors process `pid` holds.
pub fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}
