//! One forwarder through one step. The driver is the clock: it starts the backend, the
//! forwarder and the generator, lets the warm-up pass, then samples every counter at the start
//! and the end of the measured window and turns the differences into one [`Measurement`].
//!
//! CPU per packet is the forwarder's utime+stime over the window divided by the datagrams the
//! backend received in the same window, so sessions created during warm-up and packets still
//! queued after the window do not count. Every child is owned by a guard that stops and reaps
//! it however this function returns.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::child::ChildProcess;
use crate::control::{self, field_u64};
use crate::plan::{Forwarder, Plan, Step};
use crate::{procfs, ringgate};

/// How long a role may take to print its `ready` line (10 000 sockets take a fraction of this).
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a role may take to answer a command; a busy load CPU delays it by milliseconds.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);
/// The generator's own echo drain is 300 ms; without echo the driver waits this long before the
/// backend's final count, so datagrams still queued in the forwarder can arrive.
const FORWARD_DRAIN: Duration = Duration::from_millis(300);

pub struct Context {
    pub log_dir: PathBuf,
    pub ticks_per_second: u64,
}

/// Where a run failed: starting the forwarder (ringgate may not exist yet) or later.
#[derive(Debug, PartialEq, Eq)]
pub enum Stage {
    Start,
    Run,
}

pub struct Failure {
    pub stage: Stage,
    pub reason: String,
}

fn at_start(reason: String) -> Failure {
    Failure {
        stage: Stage::Start,
        reason,
    }
}

fn during_run(reason: String) -> Failure {
    Failure {
        stage: Stage::Run,
        reason,
    }
}

/// CPU use of one process over the window.
#[derive(Clone, Copy, Debug)]
pub struct Usage {
    pub cpu_secs: f64,
    /// Percent of one core.
    pub core_pct: f64,
}

#[derive(Clone, Copy, Debug)]
pub struct Rtt {
    pub samples: u64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
}

/// Loss per flow over the whole run (warm-up included), after draining: for each flow, what
/// the generator sent against what reached the backend (or, with echo, came back).
#[derive(Debug)]
pub struct FlowLoss {
    pub flows_with_loss: usize,
    pub worst_pct: f64,
    pub sent: Vec<u64>,
    pub arrived: Vec<u64>,
}

impl FlowLoss {
    fn new(sent: Vec<u64>, arrived: Vec<u64>) -> FlowLoss {
        let losses = sent.iter().zip(&arrived).map(|(&sent, &arrived)| {
            let lost = sent.saturating_sub(arrived);
            (
                lost,
                if sent == 0 {
                    0.0
                } else {
                    lost as f64 * 100.0 / sent as f64
                },
            )
        });
        let (flows_with_loss, worst_pct) = losses
            .fold((0, 0.0f64), |(count, worst), (lost, pct)| {
                (count + usize::from(lost > 0), worst.max(pct))
            });
        FlowLoss {
            flows_with_loss,
            worst_pct,
            sent,
            arrived,
        }
    }
}

pub struct Measurement {
    pub window_secs: f64,
    pub offered_pps: f64,
    pub delivered_pps: f64,
    /// Offered minus delivered over the window, in percent of offered.
    pub loss_pct: f64,
    /// Sequence gaps the backend saw over the window, in percent of offered.
    pub seq_loss_pct: f64,
    /// Kernel drops at full socket receive buffers over the window, in percent of offered: at
    /// the forwarder's sockets (it fell behind) and at the generator's and backend's (the load
    /// fell behind).
    pub forwarder_drop_pct: f64,
    pub load_drop_pct: f64,
    pub cpu_us_per_packet: Option<f64>,
    pub forwarder: Usage,
    /// How busy the forwarder's CPU set was over the window, by anyone (percent of the set).
    pub forwarder_cpus_busy_pct: f64,
    /// How busy the generator's and backend's CPU set was.
    pub load_cpus_busy_pct: f64,
    pub peak_rss_kib: Option<u64>,
    pub generator: Usage,
    pub backend: Usage,
    pub rtt: Option<Rtt>,
    pub flows: FlowLoss,
    /// Everything else worth keeping in the JSON: raw counts, the forwarder's own counters.
    pub details: Value,
}

/// Counters at one edge of the measured window.
struct Sample {
    at: Instant,
    sent: u64,
    echoed: u64,
    received: u64,
    expected: u64,
    forwarder_ticks: u64,
    generator_ticks: u64,
    backend_ticks: u64,
    /// Datagrams the kernel dropped at full receive buffers of the forwarder's sockets, and of
    /// the generator's and backend's.
    forwarder_drops: u64,
    load_drops: u64,
    backlog_drops: u64,
    /// (busy, total) ticks of the forwarder's and the load's CPU sets.
    forwarder_cpus: (u64, u64),
    load_cpus: (u64, u64),
}

struct RunningForwarder {
    child: ChildProcess,
    listen: SocketAddr,
    metrics: Option<SocketAddr>,
}

fn start_forwarder(
    forwarder: Forwarder,
    backend: SocketAddr,
    plan: &Plan,
    context: &Context,
    log_name: &str,
) -> Result<RunningForwarder, String> {
    let lifetime = plan.run_bound().as_secs().to_string();
    let backend_arg = backend.to_string();
    let role_args: Vec<String> = match forwarder {
        Forwarder::Ringgate => {
            let log = context.log_dir.join(format!("{log_name}.log"));
            let started =
                ringgate::start(&plan.ringgate_binary, backend, &plan.forwarder_cpus, &log)?;
            return Ok(RunningForwarder {
                child: started.child,
                listen: started.listen,
                metrics: Some(started.metrics),
            });
        }
        // One tokio worker and one SO_REUSEPORT listener per forwarder CPU, as ringgate gets
        // one worker per CPU; idle timeout and buffer size as on ringgate's command line.
        Forwarder::Baseline => [
            "--backend",
            &backend_arg,
            "--workers",
            &plan.forwarder_cpus.len().to_string(),
            "--idle-timeout",
            "60",
            "--buffer-size",
            "2048",
            "--max-secs",
            &lifetime,
        ]
        .map(String::from)
        .to_vec(),
        Forwarder::Floor => [
            "--backend",
            &backend_arg,
            "--batch",
            "64",
            "--max-secs",
            &lifetime,
        ]
        .map(String::from)
        .to_vec(),
    };
    let mut child = ChildProcess::role(forwarder.name(), &role_args, &plan.forwarder_cpus)?;
    let ready = child.expect("ready", READY_TIMEOUT)?;
    let listen = control::fields(&ready)
        .get("listen")
        .ok_or("ready line without listen=")?
        .parse()
        .map_err(|e| format!("ready listen=: {e}"))?;
    Ok(RunningForwarder {
        child,
        listen,
        metrics: None,
    })
}

fn sample(
    window_command: &str,
    loadgen: &mut ChildProcess,
    backend: &mut ChildProcess,
    forwarder_pid: u32,
    plan: &Plan,
) -> Result<Sample, String> {
    let generator = loadgen.ask(window_command, "snap", ANSWER_TIMEOUT)?;
    let generator = control::fields(&generator);
    // The backend count and the forwarder's CPU time are read back to back: they are the
    // numerator and denominator of CPU per packet.
    let received = backend.ask("snap", "snap", ANSWER_TIMEOUT)?;
    let received = control::fields(&received);
    let forwarder_ticks = procfs::cpu_ticks(forwarder_pid)?;
    let at = Instant::now();
    // The rest of the CPU clocks next, while they still describe the same instant; the socket
    // tables last, as reading them takes milliseconds with 10 000 flows.
    let forwarder_cpus = procfs::cpu_set_ticks(&plan.forwarder_cpus)?;
    let load_cpus = procfs::cpu_set_ticks(&plan.load_cpus)?;
    let generator_ticks = procfs::cpu_ticks(loadgen.pid())?;
    let backend_ticks = procfs::cpu_ticks(backend.pid())?;
    Ok(Sample {
        at,
        sent: field_u64(&generator, "sent")?,
        echoed: field_u64(&generator, "echoed")?,
        received: field_u64(&received, "received")?,
        expected: field_u64(&received, "expected")?,
        forwarder_ticks,
        generator_ticks,
        backend_ticks,
        forwarder_cpus,
        load_cpus,
        forwarder_drops: procfs::udp_drops(forwarder_pid)?,
        load_drops: procfs::udp_drops(loadgen.pid())? + procfs::udp_drops(backend.pid())?,
        backlog_drops: procfs::backlog_drops()?,
    })
}

/// The ringgate counters now, or why not: a scrape failure is recorded, not fatal.
fn scrape(metrics: Option<SocketAddr>) -> Option<Result<ringgate::Counters, String>> {
    metrics.map(ringgate::scrape)
}

fn counter_deltas(
    before: Option<Result<ringgate::Counters, String>>,
    after: Option<Result<ringgate::Counters, String>>,
) -> Value {
    match (before, after) {
        (Some(Ok(before)), Some(Ok(after))) => after
            .iter()
            .map(|(series, value)| {
                (
                    series.clone(),
                    json!(value - before.get(series).unwrap_or(&0.0)),
                )
            })
            .collect::<serde_json::Map<_, _>>()
            .into(),
        (Some(Err(e)), _) | (_, Some(Err(e))) => json!({ "error": e }),
        _ => Value::Null,
    }
}

/// Percent of the ticks between two (busy, total) readings that were busy.
fn busy_pct(before: (u64, u64), after: (u64, u64)) -> f64 {
    let total = after.1.saturating_sub(before.1);
    if total == 0 {
        return 0.0;
    }
    after.0.saturating_sub(before.0) as f64 * 100.0 / total as f64
}

fn report_of(line: &str) -> Result<Value, String> {
    let json = line.strip_prefix("report").unwrap_or(line).trim();
    serde_json::from_str(json).map_err(|e| format!("malformed report: {e}"))
}

fn u64_list(report: &Value, key: &str) -> Result<Vec<u64>, String> {
    report[key]
        .as_array()
        .ok_or_else(|| format!("report lacks `{key}`"))?
        .iter()
        .map(|value| {
            value
                .as_u64()
                .ok_or_else(|| format!("`{key}` holds a non-integer"))
        })
        .collect()
}

/// Runs `forwarder` through `step`. A failure to start the forwarder is told apart from any
/// other, so the driver can stop retrying a ringgate that does not start.
pub fn run_step(
    step: &Step,
    forwarder: Forwarder,
    plan: &Plan,
    context: &Context,
) -> Result<Measurement, Failure> {
    let (backend, backend_addr) = start_backend(step, plan).map_err(during_run)?;
    let log_name = format!("{}-{}", step.name(), forwarder.name());
    let running =
        start_forwarder(forwarder, backend_addr, plan, context, &log_name).map_err(at_start)?;
    // Parameters drop in reverse order: the forwarder stops before the backend it feeds.
    measure(step, forwarder, plan, context, backend, running).map_err(during_run)
}

fn start_backend(step: &Step, plan: &Plan) -> Result<(ChildProcess, SocketAddr), String> {
    let mut args = vec![
        "--flows".to_string(),
        step.flows.to_string(),
        "--max-secs".into(),
        plan.run_bound().as_secs().to_string(),
    ];
    if step.echo {
        args.push("--echo".into());
    }
    let mut backend = ChildProcess::role("backend", &args, &plan.load_cpus)?;
    let ready = backend.expect("ready", READY_TIMEOUT)?;
    let addr = control::fields(&ready)
        .get("addr")
        .and_then(|addr| addr.parse().ok())
        .ok_or_else(|| format!("backend ready line without addr=: `{ready}`"))?;
    Ok((backend, addr))
}

fn start_loadgen(
    step: &Step,
    plan: &Plan,
    target: SocketAddr,
) -> Result<(ChildProcess, String), String> {
    let mut args = vec![
        "--target".to_string(),
        target.to_string(),
        "--flows".into(),
        step.flows.to_string(),
        "--payload".into(),
        step.payload_bytes.to_string(),
        "--rate".into(),
        step.rate.arg(),
        "--max-secs".into(),
        plan.run_bound().as_secs().to_string(),
    ];
    if step.echo {
        args.push("--echo".into());
    }
    let mut loadgen = ChildProcess::role("loadgen", &args, &plan.load_cpus)?;
    let ready = loadgen.expect("ready", READY_TIMEOUT)?;
    Ok((loadgen, ready))
}

/// The baseline's own counters (sessions, drops by reason), for the JSON.
fn baseline_stats(forwarder: Forwarder, running: &mut RunningForwarder) -> Value {
    if forwarder != Forwarder::Baseline {
        return Value::Null;
    }
    match running.child.ask("snap", "snap", ANSWER_TIMEOUT) {
        Ok(line) => {
            let fields = control::fields(&line);
            json!(
                fields
                    .into_iter()
                    .collect::<std::collections::BTreeMap<_, _>>()
            )
        }
        Err(e) => json!({ "error": e }),
    }
}

/// Load, warm-up, the measured window, the final reports, and the figures made from them.
fn measure(
    step: &Step,
    forwarder: Forwarder,
    plan: &Plan,
    context: &Context,
    mut backend: ChildProcess,
    mut running: RunningForwarder,
) -> Result<Measurement, String> {
    let (mut loadgen, loadgen_ready) = start_loadgen(step, plan, running.listen)?;
    std::thread::sleep(plan.warmup);
    if let Some(status) = running.child.exited() {
        return Err(format!("forwarder exited ({status}) during warm-up"));
    }
    let forwarder_pid = running.child.pid();
    let counters_before = scrape(running.metrics);
    let before = sample(
        "window-start",
        &mut loadgen,
        &mut backend,
        forwarder_pid,
        plan,
    )?;
    std::thread::sleep(plan.measure);
    let after = sample(
        "window-end",
        &mut loadgen,
        &mut backend,
        forwarder_pid,
        plan,
    )?;
    let counters_after = scrape(running.metrics);
    let peak_rss_kib = procfs::peak_rss_kib(forwarder_pid).ok();
    if let Some(status) = running.child.exited() {
        return Err(format!(
            "forwarder exited ({status}) during the measured window"
        ));
    }
    let forwarder_stats = baseline_stats(forwarder, &mut running);

    let generator_report = report_of(&loadgen.ask("finish", "report", ANSWER_TIMEOUT)?)?;
    if !step.echo {
        std::thread::sleep(FORWARD_DRAIN);
    }
    let backend_report = report_of(&backend.ask("report", "report", ANSWER_TIMEOUT)?)?;

    let window_secs = (after.at - before.at).as_secs_f64();
    let offered = after.sent - before.sent;
    let delivered = after.received - before.received;
    let usage = |before_ticks: u64, after_ticks: u64| {
        let cpu_secs =
            procfs::ticks_to_duration(after_ticks - before_ticks, context.ticks_per_second)
                .as_secs_f64();
        Usage {
            cpu_secs,
            core_pct: cpu_secs * 100.0 / window_secs,
        }
    };
    let forwarder_usage = usage(before.forwarder_ticks, after.forwarder_ticks);
    let percent_of_offered = |count: f64| {
        if offered == 0 {
            0.0
        } else {
            count * 100.0 / offered as f64
        }
    };

    let sent = u64_list(&generator_report, "sent")?;
    let arrived = if step.echo {
        u64_list(&generator_report, "echoed")
    } else {
        u64_list(&backend_report, "received")
    }?;
    let rtt = generator_report["rtt_ns"].as_object().and_then(|rtt| {
        let micros = |key: &str| rtt.get(key)?.as_u64().map(|ns| ns as f64 / 1_000.0);
        Some(Rtt {
            samples: rtt.get("samples")?.as_u64()?,
            p50_us: micros("p50")?,
            p99_us: micros("p99")?,
            p999_us: micros("p999")?,
        })
    });

    Ok(Measurement {
        window_secs,
        offered_pps: offered as f64 / window_secs,
        delivered_pps: delivered as f64 / window_secs,
        loss_pct: percent_of_offered(offered as f64 - delivered as f64),
        seq_loss_pct: percent_of_offered(
            (after.expected - before.expected) as f64 - delivered as f64,
        ),
        forwarder_drop_pct: percent_of_offered(
            (after.forwarder_drops - before.forwarder_drops) as f64,
        ),
        load_drop_pct: percent_of_offered((after.load_drops - before.load_drops) as f64),
        cpu_us_per_packet: (delivered > 0)
            .then(|| forwarder_usage.cpu_secs * 1e6 / delivered as f64),
        forwarder: forwarder_usage,
        forwarder_cpus_busy_pct: busy_pct(before.forwarder_cpus, after.forwarder_cpus),
        load_cpus_busy_pct: busy_pct(before.load_cpus, after.load_cpus),
        peak_rss_kib,
        generator: usage(before.generator_ticks, after.generator_ticks),
        backend: usage(before.backend_ticks, after.backend_ticks),
        rtt,
        flows: FlowLoss::new(sent, arrived),
        details: json!({
            "window_counts": {
                "offered": offered,
                "delivered": delivered,
                "echoed": after.echoed - before.echoed,
                "forwarder_cpu_ticks": after.forwarder_ticks - before.forwarder_ticks,
                "socket_drops_at_forwarder": after.forwarder_drops - before.forwarder_drops,
                "socket_drops_at_load": after.load_drops - before.load_drops,
                "backlog_drops_machine_wide": after.backlog_drops - before.backlog_drops,
            },
            "generator_ready": control::fields(&loadgen_ready),
            "generator_send_failed": generator_report["send_failed"],
            "generator_echo_mismatched": generator_report["mismatched"],
            "forwarder_counters_over_window": counter_deltas(counters_before, counters_after),
            "forwarder_stats": forwarder_stats,
        }),
    })
}

/// Self-checks of the pure logic above. Bench targets built with `harness = false` never run
/// `#[test]` functions, so the driver runs these under `cargo test --benches` instead.
pub mod checks {
    use super::*;

    pub fn flow_loss_counts_lossy_flows_and_the_worst() {
        let loss = FlowLoss::new(vec![100, 200, 0, 50], vec![100, 150, 0, 60]);
        assert_eq!(loss.flows_with_loss, 1);
        assert_eq!(loss.worst_pct, 25.0);
    }

    pub const ALL: &[(&str, fn())] = &[(
        "run::flow_loss_counts_lossy_flows_and_the_worst",
        flow_loss_counts_lossy_flows_and_the_worst,
    )];
}
