//! The `ringgate` binary: parse arguments, start the pinned workers, then wait: for a signal
//! (SIGTERM/SIGINT stop, draining first with `--drain-timeout`; SIGUSR2 starts the next
//! process to take over), or for a takeover to finish (exit 0).

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1, SIGUSR2};
use signal_hook::iterator::Signals;
use tracing::{error, info, warn};

use ringgate::config::{Cli, LogFormat};
use ringgate::notify::notify;
use ringgate::proxy::Hooks;
use ringgate::relaunch::Relaunch;
use ringgate::route::Routes;
use ringgate::{Proxy, host_check};

/// What the main thread waits for.
enum Event {
    Signal(i32),
    HandedOver,
}

fn main() -> ExitCode {
    // Recorded first: after a package upgrade replaces the file, this is the path to run.
    let relaunch = Relaunch::current();
    // RINGGATE_ENV_FILE: settings that override the environment, read again by the process a
    // reload (SIGUSR2) starts, so that edits to it take effect without dropping anyone.
    let from_file = match std::env::var_os(ENV_FILE) {
        Some(path) => match load_env_file(std::path::Path::new(&path)) {
            Ok(keys) => keys,
            Err(e) => {
                eprintln!(
                    "error: cannot read {ENV_FILE}={}: {e}",
                    path.to_string_lossy()
                );
                return ExitCode::from(2);
            }
        },
        None => Vec::new(),
    };
    let exposed = std::env::var_os(ENV_FILE).and_then(|path| exposed_secret(&path, &from_file));
    let relaunch = relaunch.map(|r| r.forgetting(from_file));
    // The real environment wins over .env: dotenvy never overrides a variable already set.
    // Like udp-gate, only ./.env is read, never one in a parent directory.
    let dotenv = dotenvy::from_path(".env");
    let cli = Cli::parse_args();
    // The CPUs this process may run on; workers default to one per CPU in this set.
    let allowed: Vec<usize> = core_affinity::get_core_ids()
        .map(|ids| ids.into_iter().map(|c| c.id).collect())
        .unwrap_or_default();
    let config = match cli.into_config(std::env::var("LISTENER_COUNT").ok(), &allowed) {
        Ok(config) => config,
        Err(why) => {
            eprintln!("error: {why}");
            return ExitCode::from(2);
        }
    };
    init_logging(config.log_format);
    if let Some((path, key)) = exposed {
        warn!(
            file = %path, key,
            "the settings file holds a password and other users can read it: keep it mode 0600 \
             (chmod 600), or give the password in a root-only file with REDIS_PASSWORD_FILE \
             (systemd: LoadCredential=, see tuning/ringgate.service)"
        );
    }
    match dotenv {
        Ok(()) => info!("loaded ./.env"),
        Err(e) if e.not_found() => {}
        Err(e) => warn!(error = %e, "cannot read ./.env; ignoring it"),
    }
    // udp-gate's batching and queueing knobs have no meaning in ringgate's design.
    for var in ["BATCH_SIZE", "WORKER_COUNT", "QUEUE_SIZE"] {
        if std::env::var_os(var).is_some() {
            warn!("{var} is a udp-gate setting ringgate does not need; ignoring it");
        }
    }
    // Registered before the workers start, so a signal during start-up is not lost. SIGHUP and
    // SIGUSR1 would kill the process by default: a stray `kill -HUP` must not drop every player.
    let mut signals = match Signals::new([SIGTERM, SIGINT, SIGHUP, SIGUSR1, SIGUSR2]) {
        Ok(signals) => signals,
        Err(e) => {
            error!(error = %e, "cannot install signal handlers");
            return ExitCode::FAILURE;
        }
    };
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    info!(
        kernel = kernel.trim(),
        version = env!("CARGO_PKG_VERSION"),
        "starting ringgate"
    );
    let (workers, sessions_max, socket_buffer_bytes) = (
        config.workers,
        config.sessions_max,
        config.socket_buffer_bytes,
    );
    let (backends, redis) = match &config.routes {
        Routes::Fixed(backends) => (backends.iter().map(ToString::to_string).collect(), None),
        Routes::Redis(settings) => (
            Vec::new(),
            Some(match &settings.sentinel {
                Some(s) => format!("sentinel master {:?}", s.master),
                None => settings.addr.to_string(),
            }),
        ),
    };
    let backends = format!("[{}]", backends.join(", "));
    let (control, drain_timeout, takeover) = (
        config.control.clone(),
        config.drain_timeout,
        config.takeover.is_some(),
    );
    let (events, waiting) = mpsc::channel();
    let handed_over = events.clone();
    let hooks = Hooks {
        handed_over: Some(Box::new(move |_| {
            let _ = handed_over.send(Event::HandedOver);
        })),
    };
    let proxy = match Proxy::start_with(config, hooks) {
        Ok(proxy) => proxy,
        Err(e) => {
            error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let limits = host_check::HostLimits {
        workers,
        max_sessions_per_worker: sessions_max,
        socket_buffer_bytes,
    };
    // Checked once the workers know whether they may exceed rmem_max/wmem_max.
    let forced = proxy.shared().buffers_forced.load(Ordering::Relaxed);
    let capped = ["net.core.rmem_max", "net.core.wmem_max"];
    for finding in host_check::check(&limits) {
        // When the io_uring sysctl made ringgate fall back, it was named once, as the cause.
        let on_epoll = proxy.shared().io_backend_reason == "io_uring_disabled";
        let said = (forced && capped.contains(&finding.key.as_str()))
            || (on_epoll && finding.key == "kernel.io_uring_disabled");
        if !said {
            warn!("{finding}");
        }
    }
    info!(
        listen = %proxy.local_addr(),
        workers,
        %backends,
        redis = redis.as_deref().unwrap_or("none"),
        metrics = ?proxy.metrics_addr(),
        io_backend = proxy.shared().io_backend,
        "ready"
    );
    // systemd: serving (after a takeover, the takeover said so, naming this process).
    if !takeover && let Err(e) = notify("READY=1") {
        warn!(error = %e, "cannot notify systemd (NOTIFY_SOCKET)");
    }
    std::thread::spawn(move || {
        for signal in signals.forever() {
            if events.send(Event::Signal(signal)).is_err() {
                return;
            }
        }
    });
    let relaunching = Arc::new(AtomicBool::new(false));
    let stop = loop {
        match waiting.recv() {
            Ok(Event::HandedOver) => break None,
            Ok(Event::Signal(SIGHUP)) => warn!(
                "SIGHUP ignored: ringgate reads its settings only at start; to change them \
                 without dropping anyone, start the new settings with SIGUSR2 (or --takeover)"
            ),
            Ok(Event::Signal(SIGUSR1)) => warn!("SIGUSR1 ignored: it has no meaning to ringgate"),
            Ok(Event::Signal(SIGUSR2)) => {
                relaunch_for_takeover(relaunch.as_ref().ok(), control.as_deref(), &relaunching)
            }
            Ok(Event::Signal(signal)) => break Some(signal),
            Err(_) => break None,
        }
    };
    if let Some(signal) = stop {
        info!(signal, "shutting down");
        if !drain_timeout.is_zero() {
            drain(&proxy, drain_timeout, &waiting);
        }
    }
    match proxy.shutdown() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!(error = %e, "worker failed during shutdown");
            ExitCode::FAILURE
        }
    }
}

/// The variable naming a settings file that overrides the environment.
const ENV_FILE: &str = "RINGGATE_ENV_FILE";

/// Loads `path` over the environment; returns the variables it set.
fn load_env_file(path: &std::path::Path) -> Result<Vec<String>, dotenvy::Error> {
    let keys = dotenvy::from_path_iter(path)?
        .map(|item| item.map(|(key, _)| key))
        .collect::<Result<Vec<_>, _>>()?;
    dotenvy::from_path_override(path)?;
    Ok(keys)
}

/// The settings file and the password it holds, if other users may read it.
fn exposed_secret(path: &std::ffi::OsStr, keys: &[String]) -> Option<(String, String)> {
    use std::os::unix::fs::PermissionsExt;
    let key = keys.iter().find(|k| match k.as_str() {
        "REDIS_PASSWORD" | "REDIS_SENTINEL_PASSWORD" => {
            std::env::var_os(k.as_str()).is_some_and(|v| !v.is_empty())
        }
        // redis://user:password@host: a password only with an `@`.
        "REDIS_URL" => std::env::var("REDIS_URL").is_ok_and(|url| url.contains('@')),
        _ => false,
    })?;
    let mode = std::fs::metadata(path).ok()?.permissions().mode();
    (mode & 0o004 != 0).then(|| (path.to_string_lossy().into_owned(), key.clone()))
}

/// SIGTERM with `--drain-timeout`: no new sessions, not ready, until every session has gone
/// idle or the timeout passes (or another SIGTERM/SIGINT comes, or a takeover finishes).
fn drain(proxy: &Proxy, timeout: Duration, events: &mpsc::Receiver<Event>) {
    proxy.drain();
    let deadline = Instant::now() + timeout;
    info!(
        sessions = proxy.shared().sessions(),
        timeout_secs = timeout.as_secs(),
        "draining: no new sessions; established ones forward until idle"
    );
    loop {
        let sessions = proxy.shared().sessions();
        if sessions == 0 {
            return info!("drained: no session left");
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return warn!(sessions, "drain timeout passed; closing the sessions left");
        }
        match events.recv_timeout(left.min(DRAIN_POLL)) {
            Ok(Event::Signal(SIGTERM | SIGINT)) => {
                return warn!("stopping without draining further");
            }
            Ok(Event::HandedOver) => return,
            Ok(Event::Signal(_)) | Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        }
    }
}

/// How often a drain looks at the session count.
const DRAIN_POLL: Duration = Duration::from_millis(100);

/// SIGUSR2: starts this binary again to take over (one at a time); this process exits once it
/// has, and serves on if it fails.
fn relaunch_for_takeover(
    relaunch: Option<&Relaunch>,
    control: Option<&std::path::Path>,
    running: &Arc<AtomicBool>,
) {
    let Some(control) = control else {
        return error!(
            "SIGUSR2 needs --control (RINGGATE_CONTROL): the new process takes over through it"
        );
    };
    let Some(relaunch) = relaunch else {
        return error!("SIGUSR2: cannot tell which binary this process was started from");
    };
    if running.swap(true, Ordering::AcqRel) {
        return warn!("SIGUSR2 ignored: a takeover is already under way");
    }
    match relaunch.spawn(control) {
        Ok(mut child) => {
            info!(exe = %relaunch.exe().display(), pid = child.id(), "started the next process to take over");
            let running = Arc::clone(running);
            std::thread::spawn(move || {
                // This process normally exits first; if the child exits, the takeover failed.
                let status = child.wait();
                running.store(false, Ordering::Release);
                match status {
                    Ok(status) => {
                        warn!(%status, "the next process exited before taking over; still serving")
                    }
                    Err(e) => warn!(error = %e, "cannot wait for the next process"),
                }
            });
        }
        Err(e) => {
            running.store(false, Ordering::Release);
            error!(exe = %relaunch.exe().display(), error = %e, "SIGUSR2: cannot start the next process");
        }
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
