//! What `/metrics` says: each counter summed across the workers' published values (relaxed
//! loads: a scrape may see one worker's batch a moment before another's, never a torn value),
//! the gauges, the router's connection states, the lookup latency histogram, per-backend
//! figures, the build and the process.

use super::process;
use super::text::{Kind, Text};
use crate::stats::{Counter, LATENCY_BUCKETS_US, Shared, backends};

/// The whole exposition.
pub fn exposition(shared: &Shared) -> String {
    let mut t = Text::default();
    counters(&mut t, shared);
    t.family(
        "ringgate_sessions",
        "Sessions holding a slot, on all workers",
        Kind::Gauge,
    )
    .sample(&[], shared.sessions());
    t.family(
        "ringgate_workers_ready",
        "Workers whose receive is armed",
        Kind::Gauge,
    )
    .sample(&[], shared.armed.load(std::sync::atomic::Ordering::Relaxed));
    if !shared.links.is_empty() {
        links(&mut t, shared);
    }
    if shared.router == "redis" {
        lookup_latency(&mut t, shared);
    }
    per_backend(&mut t, shared);
    super::xdp::xdp(&mut t, shared);
    t.family(
        "ringgate_build_info",
        "The running build: its version and the commit it was built from",
        Kind::Gauge,
    )
    .sample(
        &[
            ("version", env!("CARGO_PKG_VERSION")),
            ("commit", env!("RINGGATE_COMMIT")),
        ],
        1,
    );
    t.family(
        "ringgate_io_backend_info",
        "How the workers talk to the kernel (io_uring, or epoll where io_uring is refused), and why",
        Kind::Gauge,
    )
    .sample(
        &[
            ("backend", shared.io_backend),
            ("reason", shared.io_backend_reason),
        ],
        1,
    );
    process_metrics(&mut t, &process::read());
    t.finish()
}

/// Every counter of `stats`: one family per run of the catalogue (declared together there).
fn counters(t: &mut Text, shared: &Shared) {
    for family in Counter::ALL.chunk_by(|a, b| a.family().0 == b.family().0) {
        let (name, _) = family[0].family();
        t.family(name, family[0].help(), Kind::Counter);
        for &counter in family {
            match counter.family().1 {
                Some(label) => t.sample(&[label], shared.total(counter)),
                None => t.sample(&[], shared.total(counter)),
            };
        }
    }
}

/// Per-worker state of the router's connections (`ringgate_redis_up` for Redis).
fn links(t: &mut Text, shared: &Shared) {
    let name = format!("ringgate_{}_up", shared.router);
    t.family(
        &name,
        "Whether a worker's connection to its route source has finished its handshake",
        Kind::Gauge,
    );
    for (worker, stats) in shared.stats.iter().enumerate() {
        let worker = worker.to_string();
        for (link, connection) in shared.links.iter().enumerate() {
            let labels = [("worker", worker.as_str()), ("connection", *connection)];
            t.sample(&labels, u8::from(stats.link_up(link)));
        }
    }
}

/// The Redis lookup latency histogram.
fn lookup_latency(t: &mut Text, shared: &Shared) {
    let mut counts = [0u64; LATENCY_BUCKETS_US.len() + 1];
    let mut sum_us = 0u64;
    for stats in shared.stats.iter() {
        let (worker, sum) = stats.latency();
        for (total, n) in counts.iter_mut().zip(worker) {
            *total += n;
        }
        sum_us += sum;
    }
    let bounds: Vec<f64> = LATENCY_BUCKETS_US
        .iter()
        .map(|&us| us as f64 / 1e6)
        .collect();
    t.family(
        "ringgate_redis_lookup_duration_seconds",
        "Time from sending a GET of the backend key to its reply",
        Kind::Histogram,
    )
    .histogram(&bounds, &counts, sum_us as f64 / 1e6);
}

/// Sessions and packets per backend, at most `BACKENDS_MAX` by address and the rest `other`.
fn per_backend(t: &mut Text, shared: &Shared) {
    let merged = backends::merge(shared.stats.iter().map(|w| w.backends.read()));
    t.family(
        "ringgate_backend_sessions",
        "Sessions per backend (at most 32 backends by address, the rest as other)",
        Kind::Gauge,
    );
    for (backend, c) in &merged {
        t.sample(&[("backend", backend)], c.sessions);
    }
    t.family(
        "ringgate_backend_packets",
        "Datagrams queued to (upstream) and from (downstream) each backend",
        Kind::Counter,
    );
    for (backend, c) in &merged {
        for (direction, n) in [("upstream", c.packets_up), ("downstream", c.packets_down)] {
            t.sample(&[("backend", backend), ("direction", direction)], n);
        }
    }
}

/// The conventional `process_*` metrics.
fn process_metrics(t: &mut Text, p: &process::Process) {
    t.family("process_open_fds", "Open file descriptors", Kind::Gauge)
        .sample(&[], p.open_fds)
        .family(
            "process_max_fds",
            "The open-files limit (soft)",
            Kind::Gauge,
        )
        .sample(&[], p.max_fds)
        .family(
            "process_resident_memory_bytes",
            "Resident memory in bytes",
            Kind::Gauge,
        )
        .sample(&[], p.resident_bytes)
        .family(
            "process_cpu_seconds",
            "User and system CPU time spent, in seconds",
            Kind::Counter,
        )
        .sample(&[], p.cpu_seconds)
        .family(
            "process_start_time_seconds",
            "Start time of the process since the Unix epoch, in seconds",
            Kind::Gauge,
        )
        .sample(&[], p.start_time_seconds);
}
