//! One contestant through one step at one worker count. The driver is the clock: it starts the
//! backend, the forwarder and the generator, runs the step's scenario (which decides what else
//! happens and where the measured window lies), samples every counter at both edges of the
//! window, and turns the differences into one [`Measurement`].
//!
//! CPU per packet is the forwarder's utime+stime over the window divided by the datagrams the
//! backend received in the same window, so sessions made during warm-up and packets still
//! queued after the window do not count. The flood scenario adds what its window saw of the
//! flood and of the forwarder's sessions ([`FloodFigures`]); CPU per new session, which needs
//! the quiet run beside it, is the report's. The takeover scenario adds the datagrams lost
//! over the whole run, by kind of flow, the longest time the backend went without a datagram
//! and what the takeover took ([`TakeoverFigures`]). Every child is owned by a guard that stops
//! and reaps it however this returns.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;
use serde_json::{Value, json};

use crate::cli::Rate;
use crate::plan::{Contestant, Layout, Plan, Scenario, Step};
use crate::procfs;
use crate::rig::{ANSWER_TIMEOUT, Handover, Rig, Sample};
use crate::wire::{BackendReport, BackendSnap, GeneratorReport, Rtt};

/// Without echo, the wait before the backend's final count, so datagrams still queued in the
/// forwarder arrive (the generator drains echoes for as long itself).
const FORWARD_DRAIN: Duration = Duration::from_millis(300);

pub struct Context {
    pub log_dir: PathBuf,
    pub ticks_per_second: u64,
    /// Whether this process may open the flood's raw socket, or why not.
    pub raw_sockets: Result<(), String>,
}

/// Why a run has no measurement.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Missing {
    /// The contestant cannot run the step, or did not start earlier.
    NotRun,
    /// The forwarder did not start (a ringgate build may not): told apart, so that the driver
    /// stops retrying it.
    FailedToStart,
    /// Something failed once all had started.
    Failed,
}

impl Missing {
    /// A few words, for a ratio line.
    pub fn words(self) -> &'static str {
        match self {
            Missing::NotRun => "not run",
            Missing::FailedToStart => "failed to start",
            Missing::Failed => "failed during the run",
        }
    }

    /// What a table row says before the reason.
    pub fn headline(self) -> &'static str {
        match self {
            Missing::NotRun => "not run",
            Missing::FailedToStart => "FAILED TO START",
            Missing::Failed => "FAILED",
        }
    }
}

/// CPU use of one process over the window.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Usage {
    pub cpu_secs: f64,
    /// Percent of one core.
    pub core_pct: f64,
}

/// Loss per flow over the whole run (warm-up included), after draining: what the generator
/// sent against what reached the backend (or, with echo, came back).
#[derive(Debug, Serialize)]
pub struct FlowLoss {
    pub flows_with_loss: usize,
    pub worst_loss_pct: f64,
    pub sent: Vec<u64>,
    pub arrived: Vec<u64>,
}

impl FlowLoss {
    /// Lost in percent of sent, over all flows.
    pub fn total_pct(&self) -> f64 {
        let (sent, arrived): (u64, u64) = (self.sent.iter().sum(), self.arrived.iter().sum());
        sent.saturating_sub(arrived) as f64 * 100.0 / sent.max(1) as f64
    }

    fn new(sent: Vec<u64>, arrived: Vec<u64>) -> FlowLoss {
        let pct = |(&sent, &arrived): (&u64, &u64)| {
            sent.saturating_sub(arrived) as f64 * 100.0 / sent.max(1) as f64
        };
        let losses: Vec<f64> = sent.iter().zip(&arrived).map(pct).collect();
        let flows_with_loss = losses.iter().filter(|&&pct| pct > 0.0).count();
        let worst_loss_pct = losses.into_iter().fold(0.0, f64::max);
        FlowLoss {
            flows_with_loss,
            worst_loss_pct,
            sent,
            arrived,
        }
    }
}

/// What the flood scenario's window saw besides the established load (the quiet run too).
#[derive(Debug, Serialize)]
pub struct FloodFigures {
    /// Forged datagrams, each from a new source, sent per second (0 in the quiet run).
    pub sent_per_sec: f64,
    pub send_failed: u64,
    /// The flood process's CPU use (it shares the load's CPUs).
    pub flood: Usage,
    /// Round trips of the established flows sent and not echoed within the window, in percent
    /// of those sent: an estimate, as the round trips in flight at its edges count as lost
    /// (`FlowLoss::total_pct` is the exact figure, over the whole run).
    pub established_window_loss_pct: f64,
    /// Per second over the window: sessions created, closed as evicted or unreplied, new
    /// sources dropped by reason (see `ringgate::Sessions`), as far as the forwarder counts them.
    pub sessions_per_sec: BTreeMap<&'static str, f64>,
    /// Sessions the forwarder held at the window's end.
    pub sessions_at_end: Option<f64>,
    /// Why the session figures are missing, if they could not be read.
    pub sessions_error: Option<String>,
}

/// What the takeover scenario saw. Losses are over the whole run (warm-up included), after
/// draining: a datagram of an echo flow is lost if its echo never came back.
#[derive(Debug, Serialize)]
pub struct TakeoverFigures {
    pub handover: Handover,
    pub sunk_sent: u64,
    pub sunk_lost: u64,
    pub echo_sent: u64,
    pub echo_lost: u64,
    /// The longest time no datagram reached the backend over the window.
    pub longest_gap_ms: f64,
    /// The longest round trip over the window.
    pub rtt_max_ms: Option<f64>,
}

#[derive(Serialize)]
pub struct Measurement {
    pub window_secs: f64,
    pub offered_pps: f64,
    pub delivered_pps: f64,
    /// Offered minus delivered over the window, in percent of offered.
    pub loss_pct: f64,
    /// Sequence gaps the backend saw over the window, in percent of offered.
    pub seq_loss_pct: f64,
    /// Kernel drops at full receive buffers over the window, in percent of offered: at the
    /// forwarder's sockets (it fell behind) and at the generator's and backend's (the load did).
    pub socket_drop_pct_at_forwarder: f64,
    pub socket_drop_pct_at_load: f64,
    pub cpu_us_per_packet: Option<f64>,
    pub forwarder: Usage,
    /// How busy the forwarder's CPUs were over the window, by anyone (percent of the set).
    pub forwarder_cpus_busy_pct: f64,
    pub load_cpus_busy_pct: f64,
    pub forwarder_peak_rss_kib: Option<u64>,
    pub generator: Usage,
    pub backend: Usage,
    pub rtt: Option<Rtt>,
    pub per_flow: FlowLoss,
    /// The flood scenario's figures (`None` in other scenarios).
    pub flood: Option<FloodFigures>,
    /// The takeover scenario's figures (`None` in other scenarios).
    pub takeover: Option<TakeoverFigures>,
    /// Raw counts and the forwarder's own counters, for the JSON.
    pub details: Value,
}

/// Runs `contestant` through `step` on `layout`.
pub fn run(
    step: &Step,
    contestant: &Contestant,
    layout: &Layout,
    plan: &Plan,
    context: &Context,
) -> Result<Measurement, (Missing, String)> {
    let log = context.log_dir.join(format!(
        "{}-{}w-{}.log",
        step.name(),
        layout.workers,
        contestant.name()
    ));
    let mut rig = Rig::start(step, contestant, layout, plan, &log)?;
    let none = |(before, after)| (before, after, None);
    let window = match step.scenario {
        Scenario::Steady => steady(&mut rig).map(none),
        Scenario::Flood {
            new_sources_per_sec,
        } => flood(&mut rig, new_sources_per_sec).map(none),
        Scenario::Takeover { .. } => takeover(&mut rig, &log.with_extension("successor.log")),
    };
    let measured = window.and_then(|(before, after, handover)| {
        finish(rig, contestant, [before, after], handover, context)
    });
    measured.map_err(|reason| (Missing::Failed, reason))
}

/// Warm-up, then the measured window with nothing else going on.
fn steady(rig: &mut Rig) -> Result<(Sample, Sample), String> {
    std::thread::sleep(rig.plan.warmup);
    rig.check_alive("warm-up")?;
    let before = rig.sample("window-start")?;
    std::thread::sleep(rig.plan.measure);
    let after = rig.sample("window-end")?;
    rig.check_alive("the measured window")?;
    Ok((before, after))
}

/// Warm-up of the established load, then the flood (none in the quiet run, which waits as
/// long) for the step's settling time before the window opens; the window spans the flood,
/// which stops before the final reports so echoes drain undisturbed.
fn flood(rig: &mut Rig, new_sources_per_sec: Option<Rate>) -> Result<(Sample, Sample), String> {
    std::thread::sleep(rig.plan.warmup);
    rig.check_alive("warm-up")?;
    if let Some(rate) = new_sources_per_sec {
        rig.start_flood(rate)
            .map_err(|e| format!("starting the flood: {e}"))?;
    }
    std::thread::sleep(rig.step.settle());
    rig.check_alive("the flood's first seconds")?;
    let before = rig.sample("window-start")?;
    std::thread::sleep(rig.plan.measure);
    let after = rig.sample("window-end")?;
    rig.check_alive("the measured window")?;
    rig.stop_flood();
    Ok((before, after))
}

/// Warm-up, then the measured window with a takeover in its middle: a successor started with
/// `--takeover` and logging to `log`, followed once the first ringgate has exited.
fn takeover(rig: &mut Rig, log: &Path) -> Result<(Sample, Sample, Option<Handover>), String> {
    std::thread::sleep(rig.plan.warmup);
    rig.check_alive("warm-up")?;
    let before = rig.sample("window-start")?;
    std::thread::sleep(rig.plan.measure / 2);
    let handover = rig.take_over(log)?;
    std::thread::sleep(rig.plan.measure.saturating_sub(before.at.elapsed()));
    let after = rig.sample("window-end")?;
    rig.check_alive("the measured window after the takeover")?;
    Ok((before, after, Some(handover)))
}

/// The takeover figures: `sent` and `arrived` per flow, the first `echo_flows` of them echoed.
fn takeover_figures(
    handover: Handover,
    (sent, arrived): (&[u64], &[u64]),
    echo_flows: usize,
    after: &Sample,
    rtt: Option<Rtt>,
) -> TakeoverFigures {
    let split = echo_flows.min(sent.len());
    let lost = |range: std::ops::Range<usize>| -> (u64, u64) {
        let pairs = sent[range.clone()].iter().zip(&arrived[range]);
        pairs.fold((0, 0), |(s, l), (&sent, &arrived)| {
            (s + sent, l + sent.saturating_sub(arrived))
        })
    };
    let ((echo_sent, echo_lost), (sunk_sent, sunk_lost)) =
        (lost(0..split), lost(split..sent.len()));
    TakeoverFigures {
        handover,
        sunk_sent,
        sunk_lost,
        echo_sent,
        echo_lost,
        longest_gap_ms: after.longest_gap_us / 1e3,
        rtt_max_ms: rtt.map(|rtt| rtt.max_us / 1e3),
    }
}

/// The flood figures of a window whose counts changed by `delta`.
fn flood_figures(
    delta: &BTreeMap<&str, u64>,
    before: &Sample,
    after: &Sample,
    flood: Usage,
) -> FloodFigures {
    let window_secs = (after.at - before.at).as_secs_f64();
    let (offered, echoed) = (delta["offered"], delta["echoed"]);
    let (mut sessions_per_sec, mut sessions_at_end, mut sessions_error) =
        (BTreeMap::new(), None, None);
    match (&before.sessions, &after.sessions) {
        (Some(Ok(first)), Some(Ok(last))) => {
            let counters = last.iter().filter(|(name, _)| **name != "open");
            let rate = |(&name, &n): (&&'static str, &f64)| {
                (name, (n - first.get(name).unwrap_or(&0.0)) / window_secs)
            };
            sessions_per_sec = counters.map(rate).collect();
            sessions_at_end = last.get("open").copied();
        }
        (Some(Err(e)), _) | (_, Some(Err(e))) => sessions_error = Some(e.clone()),
        _ => {}
    }
    FloodFigures {
        sent_per_sec: delta["flood_sent"] as f64 / window_secs,
        send_failed: delta["flood_send_failed"],
        flood,
        established_window_loss_pct: offered.saturating_sub(echoed) as f64 * 100.0
            / offered.max(1) as f64,
        sessions_per_sec,
        sessions_at_end,
        sessions_error,
    }
}

/// Percent of the ticks between two (busy, total) readings that were busy.
fn busy_pct(before: (u64, u64), after: (u64, u64)) -> f64 {
    after.0.saturating_sub(before.0) as f64 * 100.0 / after.1.saturating_sub(before.1).max(1) as f64
}

/// The final reports, and the figures made from them and the window.
fn finish(
    mut rig: Rig,
    contestant: &Contestant,
    [before, after]: [Sample; 2],
    handover: Option<Handover>,
    context: &Context,
) -> Result<Measurement, String> {
    let peak_rss_kib = procfs::peak_rss_kib(rig.forwarder.pid()).ok();
    let forwarder_stats: Value = match contestant {
        Contestant::Baseline => rig
            .forwarder
            .ask("snap", "snap", ANSWER_TIMEOUT)
            .unwrap_or_else(|e| json!({ "error": e })),
        _ => Value::Null,
    };
    let generator: GeneratorReport = rig.loadgen.ask("finish", "report", ANSWER_TIMEOUT)?;
    if !rig.step.echo {
        std::thread::sleep(FORWARD_DRAIN);
    }
    let backend: BackendReport = rig.backend.ask("report", "report", ANSWER_TIMEOUT)?;
    let backend_final: BackendSnap = rig.backend.ask("snap", "snap", ANSWER_TIMEOUT)?;

    let delta: BTreeMap<&str, u64> = after
        .counts
        .iter()
        .map(|(&key, &n)| (key, n.saturating_sub(before.counts[key])))
        .collect();
    let window_secs = (after.at - before.at).as_secs_f64();
    let (offered, delivered) = (delta["offered"], delta["delivered"]);
    let usage = |key: &str| {
        let cpu_secs = delta[key] as f64 / context.ticks_per_second as f64;
        Usage {
            cpu_secs,
            core_pct: cpu_secs * 100.0 / window_secs,
        }
    };
    let forwarder = usage("forwarder_cpu_ticks");
    let pct_of_offered = |count: f64| count * 100.0 / offered.max(1) as f64;
    let flood = rig
        .step
        .flood()
        .map(|_| flood_figures(&delta, &before, &after, usage("flood_cpu_ticks")));
    let echoed = generator.echoed.clone().unwrap_or_default();
    let arrived = match rig.step.echo_flows() {
        // The echo flows' arrivals are their echoes, the others' what reached the backend.
        Some(split) => (0..generator.sent.len())
            .map(|flow| match flow < split {
                true => echoed.get(flow).copied().unwrap_or(0),
                false => backend.received.get(flow).copied().unwrap_or(0),
            })
            .collect(),
        None if rig.step.echo => echoed,
        None => backend.received,
    };
    let takeover = handover
        .zip(rig.step.echo_flows())
        .map(|(handover, split)| {
            let flows = (&generator.sent[..], &arrived[..]);
            takeover_figures(handover, flows, split, &after, generator.rtt)
        });
    let metrics_deltas = match (before.metrics, after.metrics) {
        (Some(Ok(before)), Some(Ok(after))) => {
            let delta = |(series, value): (&String, &f64)| {
                (series.clone(), value - before.get(series).unwrap_or(&0.0))
            };
            json!(after.iter().map(delta).collect::<BTreeMap<_, _>>())
        }
        (Some(Err(e)), _) | (_, Some(Err(e))) => json!({ "error": e }),
        _ => Value::Null,
    };
    Ok(Measurement {
        window_secs,
        offered_pps: offered as f64 / window_secs,
        delivered_pps: delivered as f64 / window_secs,
        loss_pct: pct_of_offered(offered as f64 - delivered as f64),
        seq_loss_pct: pct_of_offered(delta["expected"] as f64 - delivered as f64),
        socket_drop_pct_at_forwarder: pct_of_offered(delta["socket_drops_at_forwarder"] as f64),
        socket_drop_pct_at_load: pct_of_offered(delta["socket_drops_at_load"] as f64),
        cpu_us_per_packet: (delivered > 0).then(|| forwarder.cpu_secs * 1e6 / delivered as f64),
        forwarder,
        forwarder_cpus_busy_pct: busy_pct(before.cpus[0], after.cpus[0]),
        load_cpus_busy_pct: busy_pct(before.cpus[1], after.cpus[1]),
        forwarder_peak_rss_kib: peak_rss_kib,
        generator: usage("generator_cpu_ticks"),
        backend: usage("backend_cpu_ticks"),
        rtt: generator.rtt,
        per_flow: FlowLoss::new(generator.sent, arrived),
        flood,
        takeover,
        details: json!({
            "window_counts": delta,
            "generator_send_failed": generator.send_failed,
            "generator_echo_mismatched": generator.mismatched,
            "backend_at_end": backend_final,
            "forwarder_counters_over_window": metrics_deltas,
            "forwarder_stats": forwarder_stats,
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flow_loss_counts_lossy_flows_and_the_worst() {
        let loss = FlowLoss::new(vec![100, 200, 0, 50], vec![100, 150, 0, 60]);
        assert_eq!((loss.flows_with_loss, loss.worst_loss_pct), (1, 25.0));
        assert_eq!(loss.total_pct(), 40.0 * 100.0 / 350.0);
        assert_eq!(busy_pct((10, 100), (60, 200)), 50.0);
    }
}
