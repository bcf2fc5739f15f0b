//! What a reader sees of the XDP testbed (`xdp.rs`): a table per rate (a row per contestant:
//! datagrams offered and delivered, the machine's CPU per delivered datagram and its softirq
//! part, that cost minus `direct`'s, the share the XDP program forwarded, and the forwarding
//! cost against the socket path's), the verdict (XDP's forwarding cost at most one
//! fifth of the socket path's), and the same as JSON. A failed run has its row saying why.

use std::fmt::Write as _;

use serde_json::{Value, json};

use crate::cli::Rate;
use crate::xdp::{Window, XdpRun};

/// The goal: XDP's forwarding cost at most this share of the socket path's.
const GOAL_RATIO: f64 = 0.2;
/// The contestant whose cost every other's is reduced by, and the one XDP is compared with.
const DIRECT: &str = "direct";
const SOCKET_PATH: &str = "ringgate";

/// The measured windows of `name` at `rate`, one per round that succeeded.
fn windows<'a>(runs: &'a [XdpRun], rate: Rate, name: &str) -> Vec<&'a Window> {
    let of = |r: &&'a XdpRun| r.rate == rate && r.contestant == name;
    runs.iter()
        .filter(of)
        .filter_map(|r| r.outcome.as_ref().ok())
        .collect()
}

/// The median over the rounds of `figure` of `name` at `rate`.
fn median(
    runs: &[XdpRun],
    rate: Rate,
    name: &str,
    figure: impl Fn(&Window) -> Option<f64>,
) -> Option<f64> {
    let mut values: Vec<f64> = windows(runs, rate, name)
        .into_iter()
        .filter_map(figure)
        .collect();
    values.sort_by(f64::total_cmp);
    let n = values.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(values[n / 2]),
        _ => Some((values[n / 2 - 1] + values[n / 2]) / 2.0),
    }
}

/// The headline cost: the machine's CPU µs per datagram less other processes', median.
fn cost_us(runs: &[XdpRun], rate: Rate, name: &str) -> Option<f64> {
    median(runs, rate, name, Window::own_us_per_datagram)
}

/// The cost of `name` at `rate` minus direct's.
fn forwarding_us(runs: &[XdpRun], rate: Rate, name: &str) -> Option<f64> {
    Some(cost_us(runs, rate, name)? - cost_us(runs, rate, DIRECT)?)
}

/// Forwarding cost of `name` over the socket path's, at `rate`.
fn ratio(runs: &[XdpRun], rate: Rate, name: &str) -> Option<f64> {
    let socket_path = forwarding_us(runs, rate, SOCKET_PATH)?;
    (socket_path > 0.0).then(|| forwarding_us(runs, rate, name).map(|us| us / socket_path))?
}

fn rates(runs: &[XdpRun]) -> Vec<Rate> {
    let mut rates: Vec<Rate> = Vec::new();
    for run in runs {
        if !rates.contains(&run.rate) {
            rates.push(run.rate);
        }
    }
    rates
}

fn cell(value: Option<f64>, format: impl Fn(f64) -> String) -> String {
    value.map_or_else(|| "-".into(), format)
}

/// The tables and the verdict, as markdown (what docs/PERFORMANCE.md quotes).
pub fn table(runs: &[XdpRun]) -> String {
    let mut out = String::new();
    for rate in rates(runs) {
        let _ = writeln!(
            out,
            "XDP testbed at {rate} datagrams/s offered: medians over the rounds; CPU is the whole machine's busy time per datagram delivered, then less other processes' (the cost the ratios use)\n"
        );
        let _ = writeln!(
            out,
            "| contestant | delivered/s | lost | CPU us/datagram | less other processes | of it softirq | minus direct | forwarded by XDP | forwarding cost / socket path's | rounds |"
        );
        let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|---|");
        let mut failures = Vec::new();
        for name in names(runs) {
            let of = |figure: fn(&Window) -> Option<f64>| median(runs, rate, name, figure);
            let attempted = runs
                .iter()
                .filter(|r| r.rate == rate && r.contestant == name);
            for run in attempted.clone() {
                if let Err(e) = &run.outcome {
                    failures.push(format!("{name}, round {}: {e}", run.round + 1));
                }
            }
            let measured = windows(runs, rate, name).len();
            let us = |value: Option<f64>| cell(value, |us| format!("{us:.2}"));
            let pct = |value: Option<f64>| cell(value, |s| format!("{:.1} %", 100.0 * s));
            let not_direct = |value: Option<f64>| value.filter(|_| name != DIRECT);
            let _ = writeln!(
                out,
                "| {name} | {} | {} | {} | {} | {} | {} | {} | {} | {measured}/{} |",
                cell(of(|w| Some(w.delivered as f64 / w.secs)), |n| format!(
                    "{n:.0}"
                )),
                pct(of(|w| Some(
                    (1.0 - w.delivered as f64 / w.offered.max(1) as f64).max(0.0)
                ))),
                us(of(Window::cpu_us_per_datagram)),
                us(of(Window::own_us_per_datagram)),
                cell(of(Window::softirq_share), |s| format!("{:.0} %", 100.0 * s)),
                us(not_direct(forwarding_us(runs, rate, name))),
                pct(of(|w| Some(w.xdp_forwarded? / w.delivered.max(1) as f64))),
                cell(not_direct(ratio(runs, rate, name)), |r| format!("{r:.2}x")),
                attempted.count(),
            );
        }
        out.push('\n');
        for failure in failures {
            let _ = writeln!(out, "failed: {failure}");
        }
    }
    for line in verdicts(runs) {
        let _ = writeln!(out, "{line}");
    }
    out
}

/// The contestants of `runs`, in the order of their first run.
fn names(runs: &[XdpRun]) -> Vec<&'static str> {
    let mut names: Vec<&'static str> = Vec::new();
    for run in runs {
        if !names.contains(&run.contestant) {
            names.push(run.contestant);
        }
    }
    names
}

/// The goal, per rate and XDP mode measured.
fn verdicts(runs: &[XdpRun]) -> Vec<String> {
    let mut lines = Vec::new();
    for rate in rates(runs) {
        for mode in ["ringgate+xdp-generic", "ringgate+xdp-native"] {
            if windows(runs, rate, mode).is_empty() {
                continue;
            }
            let line = match ratio(runs, rate, mode) {
                Some(r) => format!(
                    "goal at {rate}: {mode} forwarding cost {r:.2}x the socket path's (at most {GOAL_RATIO:.2}x asked): {}",
                    if r <= GOAL_RATIO { "met" } else { "NOT met" }
                ),
                None => format!(
                    "goal at {rate}: {mode}: no verdict (direct or the socket path was not measured)"
                ),
            };
            lines.push(line);
        }
    }
    lines
}

/// Everything, with the derived figures, for `xdp.json`.
pub fn json(runs: &[XdpRun], flows: usize, payload: usize, rounds: usize) -> Value {
    let rows: Vec<Value> = runs
        .iter()
        .map(|run| {
            let mut row =
                json!({ "forwarder": run.contestant, "rate": run.rate, "round": run.round });
            match &run.outcome {
                Ok(w) => {
                    row["status"] = "ok".into();
                    row["window"] = json!(w);
                    row["cpu_us_per_datagram"] = json!(w.cpu_us_per_datagram());
                    row["own_us_per_datagram"] = json!(w.own_us_per_datagram());
                }
                Err(e) => {
                    row["status"] = "failed".into();
                    row["reason"] = e.as_str().into();
                }
            }
            row
        })
        .collect();
    let medians: Vec<Value> = rates(runs)
        .into_iter()
        .flat_map(|rate| names(runs).into_iter().map(move |name| (rate, name)))
        .map(|(rate, name)| {
            json!({
                "forwarder": name,
                "rate": rate,
                "own_us_per_datagram": cost_us(runs, rate, name),
                "minus_direct_us": forwarding_us(runs, rate, name),
                "over_socket_path": ratio(runs, rate, name),
            })
        })
        .collect();
    json!({ "flows": flows, "payload_bytes": payload, "rounds": rounds, "goal_ratio": GOAL_RATIO, "medians": medians, "runs": rows, "verdicts": verdicts(runs) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(name: &'static str, delivered: u64, cpu_secs: f64, round: usize) -> XdpRun {
        let window = Window {
            secs: 1.0,
            offered: delivered,
            delivered,
            busy_secs: cpu_secs + 0.5,
            others_secs: 0.5,
            cpu_secs: [0.0, cpu_secs / 2.0, 0.0, cpu_secs / 2.0],
            ..Window::default()
        };
        XdpRun {
            contestant: name,
            rate: Rate::Max,
            round,
            outcome: Ok(window),
        }
    }

    #[test]
    fn forwarding_cost_is_reduced_by_direct_and_compared_with_the_socket_path() {
        // direct 1 us, socket path 6 us (5 of forwarding), native 1.5 us (0.5: a tenth), each
        // with 0.5 s of a neighbour's CPU taken off; a slower round of native is outvoted.
        let runs = [
            run(DIRECT, 1_000_000, 1.0, 0),
            run(SOCKET_PATH, 500_000, 3.0, 0),
            run("ringgate+xdp-native", 1_000_000, 1.5, 0),
            run("ringgate+xdp-native", 1_000_000, 1.4, 1),
            run("ringgate+xdp-native", 1_000_000, 9.0, 2),
        ];
        assert!((forwarding_us(&runs, Rate::Max, SOCKET_PATH).unwrap() - 5.0).abs() < 1e-9);
        assert!((ratio(&runs, Rate::Max, "ringgate+xdp-native").unwrap() - 0.1).abs() < 1e-9);
        let verdicts = verdicts(&runs);
        assert_eq!(verdicts.len(), 1);
        assert!(verdicts[0].ends_with(": met"), "{verdicts:?}");
        let table = table(&runs);
        let row = "| ringgate+xdp-native | 1000000 | 0.0 % | 2.00 | 1.50 | 50 % | 0.50 | - | 0.10x | 3/3 |";
        assert!(table.contains(row), "{table}");
    }
}
