//! The `ringgate` binary: parse arguments, start the pinned workers, wait for a signal.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::atomic::Ordering;

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1};
use signal_hook::iterator::Signals;
use tracing::{error, info, warn};

use ringgate::config::{Cli, LogFormat};
use ringgate::route::Routes;
use ringgate::{Proxy, host_check};

fn main() -> ExitCode {
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
    let mut signals = match Signals::new([SIGTERM, SIGINT, SIGHUP, SIGUSR1]) {
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
        Routes::Redis(settings) => (Vec::new(), Some(settings.addr)),
    };
    let backends = format!("[{}]", backends.join(", "));
    let proxy = match Proxy::start(config) {
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
        if !(forced && capped.contains(&finding.key.as_str())) {
            warn!("{finding}");
        }
    }
    info!(
        listen = %proxy.local_addr(),
        workers,
        %backends,
        ?redis,
        metrics = ?proxy.metrics_addr(),
        "ready"
    );
    let signal = signals.forever().find(|&signal| match signal {
        SIGHUP => {
            warn!("SIGHUP ignored: ringgate reads its settings only at start; restart it to change them");
            false
        }
        SIGUSR1 => {
            warn!("SIGUSR1 ignored: it has no meaning to ringgate");
            false
        }
        _ => true,
    });
    info!(?signal, "shutting down");
    match proxy.shutdown() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!(error = %e, "worker failed during shutdown");
            ExitCode::FAILURE
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
