//! Turning the runs into what a reader sees: one aligned table (one row per step and
//! forwarder), the ratio lines ringgate/baseline and floor/baseline, and the same results as
//! JSON. Failures and steps that did not run have their own rows saying why: nothing is left
//! out silently.

use std::fmt::Write as _;
use std::path::Path;

use serde_json::{Value, json};

use crate::plan::{Forwarder, Plan, Rate, Step};
use crate::run::{Measurement, Stage};

pub enum Outcome {
    Measured(Box<Measurement>),
    Failed { stage: Stage, reason: String },
    NotRun(String),
}

pub struct Run {
    pub step: Step,
    pub forwarder: Forwarder,
    pub outcome: Outcome,
}

impl Run {
    fn measured(&self) -> Option<&Measurement> {
        match &self.outcome {
            Outcome::Measured(measurement) => Some(measurement),
            _ => None,
        }
    }

    /// Why there is no measurement, in a few words for a ratio line.
    fn missing(&self) -> String {
        match &self.outcome {
            Outcome::Measured(_) => String::new(),
            Outcome::Failed {
                stage: Stage::Start,
                ..
            } => "failed to start".into(),
            Outcome::Failed { .. } => "failed during the run".into(),
            Outcome::NotRun(_) => "not run".into(),
        }
    }
}

/// Reasons a reader should distrust a row as a measure of the forwarder.
fn bottlenecks(step: &Step, measurement: &Measurement, plan: &Plan) -> Vec<&'static str> {
    let mut notes = Vec::new();
    if let Rate::Pps(target) = step.rate {
        if measurement.offered_pps < 0.97 * target as f64 {
            notes.push("generator below target");
        }
    }
    if measurement.load_cpus_busy_pct >= 90.0 {
        notes.push("load CPU busy");
    }
    // Both in percent of the forwarder's CPU set.
    let forwarder_share = measurement.forwarder.core_pct / plan.forwarder_cpus.len() as f64;
    if forwarder_share >= 90.0 {
        notes.push("forwarder CPU-bound");
    }
    // Softirq work the forwarder triggers is charged to it on this kernel, so a large gap is
    // another process (or interrupt work it did not cause) competing for its core.
    if measurement.forwarder_cpus_busy_pct - forwarder_share >= 20.0 {
        notes.push("other work on forwarder CPU");
    }
    notes
}

const HEADER: [&str; 16] = [
    "step",
    "forwarder",
    "offered/s",
    "delivered/s",
    "loss%",
    "drop@fwd%",
    "drop@load%",
    "CPU us/pkt",
    "fwd %core",
    "fwd CPU busy%",
    "fwd peak RSS",
    "RTT p50 us",
    "RTT p99 us",
    "gen %core",
    "backend %core",
    "note",
];

fn cells(run: &Run, plan: &Plan) -> Vec<String> {
    let mut row = vec![run.step.name(), run.forwarder.name().to_string()];
    let Some(m) = run.measured() else {
        row.push(match &run.outcome {
            Outcome::Failed {
                stage: Stage::Start,
                reason,
            } => format!("FAILED TO START: {reason}"),
            Outcome::Failed { reason, .. } => format!("FAILED: {reason}"),
            Outcome::NotRun(reason) => format!("not run: {reason}"),
            Outcome::Measured(_) => unreachable!("handled above"),
        });
        return row;
    };
    let or_dash = |value: Option<String>| value.unwrap_or_else(|| "-".to_string());
    row.extend([
        format!("{:.0}", m.offered_pps),
        format!("{:.0}", m.delivered_pps),
        format!("{:.2}", m.loss_pct.max(0.0)),
        format!("{:.2}", m.forwarder_drop_pct),
        format!("{:.2}", m.load_drop_pct),
        or_dash(m.cpu_us_per_packet.map(|us| format!("{us:.2}"))),
        format!("{:.1}", m.forwarder.core_pct),
        format!("{:.1}", m.forwarder_cpus_busy_pct),
        or_dash(
            m.peak_rss_kib
                .map(|kib| format!("{:.1} MiB", kib as f64 / 1024.0)),
        ),
        or_dash(m.rtt.map(|rtt| format!("{:.1}", rtt.p50_us))),
        or_dash(m.rtt.map(|rtt| format!("{:.1}", rtt.p99_us))),
        format!("{:.1}", m.generator.core_pct),
        format!("{:.1}", m.backend.core_pct),
        bottlenecks(&run.step, m, plan).join("; "),
    ]);
    row
}

pub fn table(runs: &[Run], plan: &Plan) -> String {
    let rows: Vec<Vec<String>> = runs.iter().map(|run| cells(run, plan)).collect();
    let mut widths: Vec<usize> = HEADER.iter().map(|title| title.len()).collect();
    // Rows without a measurement end in one long message, which must not widen a column.
    for row in &rows {
        let aligned = if row.len() == HEADER.len() {
            row.len()
        } else {
            row.len() - 1
        };
        for (width, cell) in widths.iter_mut().zip(&row[..aligned]) {
            *width = (*width).max(cell.len());
        }
    }
    let mut out = String::new();
    let header: Vec<String> = HEADER.iter().map(|title| title.to_string()).collect();
    for row in std::iter::once(&header).chain(&rows) {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            // Text columns left-aligned, numbers right-aligned; the last cell is not padded.
            let text_column = i < 2 || i == HEADER.len() - 1 || row.len() < HEADER.len();
            if i + 1 == row.len() {
                line.push_str(cell);
            } else if text_column {
                let _ = write!(line, "{cell:<width$}  ", width = widths[i]);
            } else {
                let _ = write!(line, "{cell:>width$}  ", width = widths[i]);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// `numerator` over `denominator` for one value of each run, with the reason when either run
/// has none.
fn ratio(
    numerator: &Run,
    denominator: &Run,
    value: fn(&Measurement) -> Option<f64>,
) -> Result<f64, String> {
    let side = |run: &Run| match run.measured() {
        Some(m) => value(m).ok_or_else(|| format!("{}: nothing delivered", run.forwarder.name())),
        None => Err(format!("{}: {}", run.forwarder.name(), run.missing())),
    };
    let (top, bottom) = (side(numerator)?, side(denominator)?);
    if bottom == 0.0 {
        return Err(format!("{}: zero", denominator.forwarder.name()));
    }
    Ok(top / bottom)
}

/// Per-step ratios of one pair: CPU per packet in every step both ran, and delivered pps in
/// the saturation steps.
struct Ratios {
    cpu_per_packet: Vec<(String, Result<f64, String>)>,
    saturation: Vec<(String, Result<f64, String>)>,
}

fn ratios(runs: &[Run], numerator: Forwarder, denominator: Forwarder) -> Option<Ratios> {
    let mut result = Ratios {
        cpu_per_packet: Vec::new(),
        saturation: Vec::new(),
    };
    for top in runs.iter().filter(|run| run.forwarder == numerator) {
        let Some(bottom) = runs
            .iter()
            .find(|run| run.forwarder == denominator && run.step == top.step)
        else {
            continue;
        };
        let name = top.step.name();
        result
            .cpu_per_packet
            .push((name.clone(), ratio(top, bottom, |m| m.cpu_us_per_packet)));
        if top.step.rate == Rate::Max {
            result
                .saturation
                .push((name, ratio(top, bottom, |m| Some(m.delivered_pps))));
        }
    }
    (!result.cpu_per_packet.is_empty()).then_some(result)
}

const PAIRS: [(Forwarder, Forwarder); 2] = [
    (Forwarder::Ringgate, Forwarder::Baseline),
    (Forwarder::Floor, Forwarder::Baseline),
];

fn format_ratios(list: &[(String, Result<f64, String>)]) -> String {
    list.iter()
        .map(|(step, ratio)| match ratio {
            Ok(ratio) => format!("{step} {ratio:.2}x"),
            Err(why) => format!("{step} n/a ({why})"),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

pub fn ratio_lines(runs: &[Run]) -> String {
    let mut out = String::new();
    for (numerator, denominator) in PAIRS {
        let label = format!("{}/{}", numerator.name(), denominator.name());
        let Some(ratios) = ratios(runs, numerator, denominator) else {
            let _ = writeln!(out, "{label:<18} n/a (not both in this run)");
            continue;
        };
        let saturation = if ratios.saturation.is_empty() {
            "n/a (no saturation step in this run; see --full)".to_string()
        } else {
            format_ratios(&ratios.saturation)
        };
        let _ = writeln!(
            out,
            "{label:<18} CPU per packet: {} | saturation throughput: {saturation}",
            format_ratios(&ratios.cpu_per_packet)
        );
    }
    out
}

fn measurement_json(m: &Measurement, step: &Step, plan: &Plan) -> Value {
    json!({
        "window_secs": m.window_secs,
        "offered_pps": m.offered_pps,
        "delivered_pps": m.delivered_pps,
        "loss_pct": m.loss_pct,
        "seq_loss_pct": m.seq_loss_pct,
        "socket_drop_pct_at_forwarder": m.forwarder_drop_pct,
        "socket_drop_pct_at_load": m.load_drop_pct,
        "cpu_us_per_packet": m.cpu_us_per_packet,
        "forwarder_cpu_secs": m.forwarder.cpu_secs,
        "forwarder_core_pct": m.forwarder.core_pct,
        "forwarder_peak_rss_kib": m.peak_rss_kib,
        "forwarder_cpus_busy_pct": m.forwarder_cpus_busy_pct,
        "load_cpus_busy_pct": m.load_cpus_busy_pct,
        "generator_cpu_secs": m.generator.cpu_secs,
        "generator_core_pct": m.generator.core_pct,
        "backend_cpu_secs": m.backend.cpu_secs,
        "backend_core_pct": m.backend.core_pct,
        "rtt_us": m.rtt.map(|rtt| json!({
            "samples": rtt.samples, "p50": rtt.p50_us, "p99": rtt.p99_us, "p999": rtt.p999_us,
        })),
        "notes": bottlenecks(step, m, plan),
        "per_flow": {
            "measured_as": if step.echo { "sent vs echoed, whole run" } else { "sent vs delivered to backend, whole run" },
            "flows_with_loss": m.flows.flows_with_loss,
            "worst_loss_pct": m.flows.worst_pct,
            "sent": m.flows.sent,
            "arrived": m.flows.arrived,
        },
        "details": m.details,
    })
}

fn run_json(run: &Run, plan: &Plan) -> Value {
    let mut value = json!({ "forwarder": run.forwarder.name() });
    let extra = match &run.outcome {
        Outcome::Measured(m) => {
            let mut measured = measurement_json(m, &run.step, plan);
            measured["status"] = json!("ok");
            measured
        }
        Outcome::Failed { stage, reason } => json!({
            "status": "failed",
            "stage": if *stage == Stage::Start { "start" } else { "run" },
            "reason": reason,
        }),
        Outcome::NotRun(reason) => json!({ "status": "not_run", "reason": reason }),
    };
    if let (Value::Object(target), Value::Object(extra)) = (&mut value, extra) {
        target.extend(extra);
    }
    value
}

fn ratios_json(runs: &[Run]) -> Value {
    let list = |list: &[(String, Result<f64, String>)]| -> Value {
        list.iter()
            .map(|(step, ratio)| {
                let value = match ratio {
                    Ok(ratio) => json!(ratio),
                    Err(why) => json!({ "unavailable": why }),
                };
                (step.clone(), value)
            })
            .collect::<serde_json::Map<_, _>>()
            .into()
    };
    PAIRS
        .iter()
        .filter_map(|&(numerator, denominator)| {
            let ratios = ratios(runs, numerator, denominator)?;
            Some((
                format!("{}/{}", numerator.name(), denominator.name()),
                json!({
                    "cpu_per_packet": list(&ratios.cpu_per_packet),
                    "saturation_throughput": list(&ratios.saturation),
                }),
            ))
        })
        .collect::<serde_json::Map<_, _>>()
        .into()
}

pub fn json(runs: &[Run], plan: &Plan, host: Value) -> Value {
    let steps: Vec<Value> = plan
        .steps
        .iter()
        .map(|step| {
            json!({
                "name": step.name(),
                "flows": step.flows,
                "payload_bytes": step.payload_bytes,
                "rate_pps": match step.rate { Rate::Pps(pps) => json!(pps), Rate::Max => json!("max") },
                "echo": step.echo,
                "results": runs.iter().filter(|run| &run.step == step).map(|run| run_json(run, plan)).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({
        "mode": plan.mode.name(),
        "host": host,
        "config": {
            "warmup_secs": plan.warmup.as_secs_f64(),
            "measure_secs": plan.measure.as_secs_f64(),
            "forwarder_cpus": plan.forwarder_cpus,
            "load_cpus": plan.load_cpus,
            "socket_buffer_bytes": crate::sys::SOCKET_BUFFER_BYTES,
            "cpu_per_packet": "forwarder utime+stime over the window / datagrams the backend received in the window",
        },
        "steps": steps,
        "ratios": ratios_json(runs),
    })
}

pub fn write_json(path: &Path, value: &Value) -> Result<(), String> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let text = serde_json::to_string_pretty(value).map_err(|e| e.to_string())?;
    std::fs::write(path, text + "\n").map_err(|e| format!("{}: {e}", path.display()))
}
