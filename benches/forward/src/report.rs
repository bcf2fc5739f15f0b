//! What a reader sees: one aligned table (a row per worker count, step and contestant), the
//! ratio lines per worker count, the flood table when the plan has flood steps, and the same
//! results as JSON. A failure or a run that did not happen has its own row saying why: nothing
//! is left out silently.

use std::fmt::Write as _;

use serde_json::{Value, json};

use crate::cli::Rate;
use crate::measure::{Measurement, Missing};
use crate::plan::{Contestant, FLOOD_SETTLE, Layout, Plan, Step};

pub enum Outcome {
    Measured(Box<Measurement>),
    Missing(Missing, String),
}

pub struct Run {
    pub step: Step,
    pub layout: Layout,
    pub contestant: Contestant,
    pub outcome: Outcome,
}

impl Run {
    fn measured(&self) -> Option<&Measurement> {
        match &self.outcome {
            Outcome::Measured(measurement) => Some(measurement),
            _ => None,
        }
    }

    /// `64f-50k 1w ringgate`.
    pub fn label(&self) -> String {
        format!(
            "{} {}w {}",
            self.step.name(),
            self.layout.workers,
            self.contestant.name()
        )
    }

    fn missing_headline(&self) -> String {
        match &self.outcome {
            Outcome::Missing(missing, reason) => format!("{}: {reason}", missing.headline()),
            Outcome::Measured(_) => String::new(),
        }
    }

    /// A one-line summary for the progress log.
    pub fn progress(&self) -> String {
        match self.measured() {
            Some(m) => format!(
                "{:.0} pps delivered, {} us/pkt",
                m.delivered_pps,
                or_dash(m.cpu_us_per_packet.map(|us| format!("{us:.2}")))
            ),
            None => self.missing_headline(),
        }
    }
}

fn or_dash(value: Option<String>) -> String {
    value.unwrap_or_else(|| "-".into())
}

/// Reasons a reader should distrust a row as a measure of the forwarder.
fn notes(run: &Run, m: &Measurement) -> Vec<&'static str> {
    let forwarder_share = m.forwarder.core_pct / run.layout.workers as f64;
    let flags = [
        (
            matches!(run.step.rate, Rate::Pps(target) if m.offered_pps < 0.97 * target as f64),
            "generator below target",
        ),
        (m.load_cpus_busy_pct >= 90.0, "load CPU busy"),
        (
            matches!((run.step.flood(), &m.flood), (Some(Some(Rate::Pps(target))), Some(f))
                if f.sent_per_sec < 0.97 * target as f64),
            "flood below target",
        ),
        (
            m.flood.as_ref().is_some_and(|f| f.send_failed > 0),
            "flood sends failed",
        ),
        (run.layout.overlap(), "forwarder and load share CPUs"),
        (forwarder_share >= 90.0, "forwarder CPU-bound"),
        // Softirq work the forwarder causes is charged to it, so a large gap is another process
        // (or interrupt work it did not cause) competing for its cores.
        (
            !run.layout.overlap() && m.forwarder_cpus_busy_pct - forwarder_share >= 20.0,
            "other work on forwarder CPU",
        ),
    ];
    flags
        .into_iter()
        .filter_map(|(flag, note)| flag.then_some(note))
        .collect()
}

const HEADER: &str = "step|workers|forwarder|offered/s|delivered/s|loss%|drop@fwd%|drop@load%|CPU us/pkt|\
    fwd %core|fwd CPU busy%|fwd peak RSS|RTT p50 us|RTT p99 us|gen %core|backend %core|note";
/// Columns 0 and 2 (step and forwarder) and the last (a note) are text, left-aligned; the rest
/// are numbers. The same holds for the flood table.
const TEXT_COLUMNS: [usize; 2] = [0, 2];

fn cells(run: &Run) -> Vec<String> {
    let mut row = vec![
        run.step.name(),
        run.layout.workers.to_string(),
        run.contestant.name().to_string(),
    ];
    let Some(m) = run.measured() else {
        row.push(run.missing_headline());
        return row;
    };
    row.extend([
        format!("{:.0}", m.offered_pps),
        format!("{:.0}", m.delivered_pps),
        format!("{:.2}", m.loss_pct.max(0.0)),
        format!("{:.2}", m.socket_drop_pct_at_forwarder),
        format!("{:.2}", m.socket_drop_pct_at_load),
        or_dash(m.cpu_us_per_packet.map(|us| format!("{us:.2}"))),
        format!("{:.1}", m.forwarder.core_pct),
        format!("{:.1}", m.forwarder_cpus_busy_pct),
        or_dash(
            m.forwarder_peak_rss_kib
                .map(|kib| format!("{:.1} MiB", kib as f64 / 1024.0)),
        ),
        or_dash(m.rtt.map(|rtt| format!("{:.1}", rtt.p50_us))),
        or_dash(m.rtt.map(|rtt| format!("{:.1}", rtt.p99_us))),
        format!("{:.1}", m.generator.core_pct),
        format!("{:.1}", m.backend.core_pct),
        notes(run, m).join("; "),
    ]);
    row
}

pub fn table(runs: &[Run]) -> String {
    render(HEADER, runs.iter().map(cells), &TEXT_COLUMNS)
}

/// Aligns `header` (columns split by `|`) and `rows`: the `text` columns and the last to the
/// left, the others (numbers) to the right.
fn render(header: &str, rows: impl Iterator<Item = Vec<String>>, text: &[usize]) -> String {
    let header: Vec<String> = header.split('|').map(String::from).collect();
    let columns = header.len();
    let rows: Vec<Vec<String>> = std::iter::once(header).chain(rows).collect();
    let mut widths = vec![0; columns];
    for row in &rows {
        // A row without a measurement ends in one long message, which widens no column.
        for (width, cell) in widths.iter_mut().zip(&row[..row.len() - 1]) {
            *width = (*width).max(cell.len());
        }
    }
    let mut out = String::new();
    for row in &rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            let width = widths[i];
            match i {
                _ if i + 1 == row.len() => line.push_str(cell),
                _ if text.contains(&i) => _ = write!(line, "{cell:<width$}  "),
                _ => _ = write!(line, "{cell:>width$}  "),
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// A value of two runs divided, or why not.
fn ratio(top: &Run, bottom: &Run, value: fn(&Measurement) -> Option<f64>) -> Result<f64, String> {
    let side = |run: &Run| {
        let name = run.contestant.name();
        match &run.outcome {
            Outcome::Measured(m) => value(m)
                .filter(|&v| v > 0.0)
                .ok_or(format!("{name}: nothing delivered")),
            Outcome::Missing(missing, _) => Err(format!("{name}: {}", missing.words())),
        }
    };
    Ok(side(top)? / side(bottom)?)
}

/// One comparison: a pair of contestants in one step at one worker count.
struct Ratio {
    workers: usize,
    /// The pair's place in the list, for grouping.
    order: usize,
    pair: String,
    step: String,
    cpu_per_packet: Result<f64, String>,
    /// Delivered pps, in the saturation (`max`) steps only.
    saturation: Option<Result<f64, String>>,
}

/// Every ringgate build and the floor against the baseline, and every other ringgate build
/// against the default one, in every step both ran at the same worker count.
fn ratios(runs: &[Run]) -> Vec<Ratio> {
    let mut contestants: Vec<&Contestant> = Vec::new();
    for run in runs {
        if !contestants.contains(&&run.contestant) {
            contestants.push(&run.contestant);
        }
    }
    let current = contestants.iter().copied().find(|c| c.name() == "ringgate");
    let mut pairs = Vec::new();
    for &top in &contestants {
        pairs.extend((*top != Contestant::Baseline).then_some((top, &Contestant::Baseline)));
        if let (Contestant::Ringgate { .. }, Some(current)) = (top, current) {
            pairs.extend((top != current).then_some((top, current)));
        }
    }
    let find = |workers: usize, contestant: &Contestant, step: &Step| {
        let same = |run: &&Run| {
            run.layout.workers == workers && run.contestant == *contestant && run.step == *step
        };
        runs.iter().find(same)
    };
    let mut ratios = Vec::new();
    // Under a flood, CPU per established packet is mostly the flood's: the flood table says more.
    for top in runs.iter().filter(|run| run.step.flood().is_none()) {
        for (order, (_, bottom)) in pairs
            .iter()
            .enumerate()
            .filter(|(_, (top_c, _))| **top_c == top.contestant)
        {
            let Some(bottom) = find(top.layout.workers, bottom, &top.step) else {
                continue;
            };
            ratios.push(Ratio {
                workers: top.layout.workers,
                order,
                pair: format!("{}/{}", top.contestant.name(), bottom.contestant.name()),
                step: top.step.name(),
                cpu_per_packet: ratio(top, bottom, |m| m.cpu_us_per_packet),
                saturation: (top.step.rate == Rate::Max)
                    .then(|| ratio(top, bottom, |m| Some(m.delivered_pps))),
            });
        }
    }
    // Grouped into one line per worker count and pair, steps in plan order.
    ratios.sort_by_key(|ratio| (ratio.workers, ratio.order));
    ratios
}

fn ratio_text(ratio: &Result<f64, String>) -> String {
    ratio
        .as_ref()
        .map_or_else(|why| format!("n/a ({why})"), |ratio| format!("{ratio:.2}x"))
}

fn ratio_json(ratio: &Result<f64, String>) -> Value {
    ratio
        .as_ref()
        .map_or_else(|why| json!({ "unavailable": why }), |ratio| json!(ratio))
}

/// One line per worker count and pair: CPU per packet in every step, saturation throughput in
/// the `max` steps.
pub fn ratio_lines(runs: &[Run]) -> String {
    let ratios = ratios(runs);
    let width = ratios
        .iter()
        .map(|ratio| ratio.pair.len())
        .max()
        .unwrap_or(0);
    let mut out = String::new();
    for group in ratios.chunk_by(|a, b| (a.workers, a.order) == (b.workers, b.order)) {
        let (first, steps) = (&group[0], |of: &dyn Fn(&Ratio) -> Option<String>| {
            group
                .iter()
                .filter_map(|r| Some(format!("{} {}", r.step, of(r)?)))
                .collect::<Vec<_>>()
                .join(", ")
        });
        let cpu = steps(&|r| Some(ratio_text(&r.cpu_per_packet)));
        let saturation = match steps(&|r| r.saturation.as_ref().map(ratio_text)) {
            none if none.is_empty() => {
                "n/a (no saturation step in this run; see --full)".to_string()
            }
            some => some,
        };
        let (workers, pair) = (first.workers, &first.pair);
        let _ = writeln!(
            out,
            "{workers}w {pair:<width$}  CPU per packet: {cpu} | saturation throughput: {saturation}"
        );
    }
    out
}

/// A flood step's run with its quiet reference (same worker count, contestant and load).
struct FloodRow<'a> {
    run: &'a Run,
    quiet: Option<&'a Measurement>,
}

impl FloodRow<'_> {
    fn is_quiet(&self) -> bool {
        self.run.step.flood() == Some(None)
    }

    /// RTT p99 against the quiet run's.
    fn p99_vs_quiet(&self) -> Option<f64> {
        let p99 = |m: &Measurement| m.rtt.map(|rtt| rtt.p99_us).filter(|&us| us > 0.0);
        let quiet = p99(self.quiet?)?;
        Some(p99(self.run.measured()?)? / quiet)
    }

    /// (Forwarder CPU in this run - in the quiet run, both per second) / sessions created per
    /// second, in microseconds.
    fn cpu_us_per_new_session(&self) -> Option<f64> {
        let (m, quiet) = (self.run.measured()?, self.quiet?);
        let created = *m.flood.as_ref()?.sessions_per_sec.get("created")?;
        let per_sec = |m: &Measurement| m.forwarder.cpu_secs / m.window_secs;
        (!self.is_quiet() && created > 0.0).then(|| (per_sec(m) - per_sec(quiet)) * 1e6 / created)
    }
}

/// The flood steps' runs, grouped by worker count and contestant, each group in plan order
/// (quiet run first).
fn flood_rows(runs: &[Run]) -> Vec<FloodRow<'_>> {
    let mut contestants: Vec<&Contestant> = Vec::new();
    for run in runs {
        if !contestants.contains(&&run.contestant) {
            contestants.push(&run.contestant);
        }
    }
    let position = |run: &Run| contestants.iter().position(|c| **c == run.contestant);
    let mut flood: Vec<&Run> = runs
        .iter()
        .filter(|run| run.step.flood().is_some())
        .collect();
    flood.sort_by_key(|run| (run.layout.workers, position(run)));
    let quiet_of = |run: &Run| {
        let quiet = run.step.quiet();
        let same = |other: &&Run| {
            Some(&other.step) == quiet.as_ref()
                && other.contestant == run.contestant
                && other.layout.workers == run.layout.workers
        };
        runs.iter().find(same).and_then(Run::measured)
    };
    let row = |run| FloodRow {
        run,
        quiet: quiet_of(run),
    };
    flood.into_iter().map(row).collect()
}

const FLOOD_HEADER: &str = "step|workers|forwarder|flood/s|rt/s|rt loss%|lossy flows|RTT p50 us|\
    RTT p99 us|p99 vs quiet|created/s|evicted/s|unreplied/s|bad_source/s|rate_limited/s|\
    session_budget/s|max_sessions/s|fd_reserve/s|sessions|fwd %core|CPU us/new session|\
    load CPU busy%|note";
/// The session figures of the flood table's columns, in order.
const FLOOD_SESSION_COLUMNS: [&str; 8] = [
    "created",
    "evicted",
    "unreplied",
    "bad_source",
    "rate_limited",
    "session_budget",
    "max_sessions",
    "fd_reserve",
];

fn flood_cells(row: &FloodRow) -> Vec<String> {
    let run = row.run;
    let mut cells = vec![
        run.step.name(),
        run.layout.workers.to_string(),
        run.contestant.name().to_string(),
    ];
    let (Some(m), Some(flood)) = (
        run.measured(),
        run.measured().and_then(|m| m.flood.as_ref()),
    ) else {
        cells.push(run.missing_headline());
        return cells;
    };
    let per_sec = |name: &str| {
        let value = flood.sessions_per_sec.get(name);
        or_dash(value.map(|n| format!("{:.0}", n.max(0.0))))
    };
    cells.extend([
        if row.is_quiet() {
            "-".into()
        } else {
            format!("{:.0}", flood.sent_per_sec)
        },
        format!("{:.0}", m.offered_pps),
        format!("{:.2}", m.per_flow.total_pct()),
        m.per_flow.flows_with_loss.to_string(),
        or_dash(m.rtt.map(|rtt| format!("{:.1}", rtt.p50_us))),
        or_dash(m.rtt.map(|rtt| format!("{:.1}", rtt.p99_us))),
        match row.is_quiet() {
            true => "-".into(),
            false => or_dash(row.p99_vs_quiet().map(|x| format!("{x:.2}x"))),
        },
    ]);
    cells.extend(FLOOD_SESSION_COLUMNS.map(per_sec));
    let mut notes = notes(run, m).join("; ");
    if let Some(e) = &flood.sessions_error {
        notes = format!("{notes}; session figures unreadable: {e}");
    }
    cells.extend([
        or_dash(flood.sessions_at_end.map(|n| format!("{n:.0}"))),
        format!("{:.1}", m.forwarder.core_pct),
        or_dash(row.cpu_us_per_new_session().map(|us| format!("{us:.2}"))),
        format!("{:.1}", m.load_cpus_busy_pct),
        notes.trim_start_matches("; ").to_string(),
    ]);
    cells
}

/// The flood table and its legend, or `None` when the plan has no flood step.
pub fn flood_table(runs: &[Run]) -> Option<String> {
    let rows = flood_rows(runs);
    if rows.is_empty() {
        return None;
    }
    let mut out = render(FLOOD_HEADER, rows.iter().map(flood_cells), &TEXT_COLUMNS);
    let settle = FLOOD_SETTLE.as_secs_f64();
    let _ = write!(
        out,
        "flood: each datagram from a new random source in 127.200.0.0-127.254.255.255 (raw socket, on the load \
         CPUs), beside the established echo load; it starts after the warm-up, the window opens {settle:.0} s into \
         it, and the quiet run waits as long.\n\
         rt/s = established round trips sent per second over the window; rt loss% and lossy flows = round trips lost \
         over the whole run, warm-up included, and the flows that lost any, counted after draining; p99 vs quiet = \
         RTT p99 over the window / the quiet run's.\n\
         created/s ... fd_reserve/s = sessions created, closed as evicted or unreplied, and new sources dropped by \
         reason, per second over the window (ringgate's /metrics); sessions = held at the window's end.\n\
         CPU us/new session = (forwarder CPU/s in the flood run - in the quiet run) / sessions created per second; \
         it says little once established load is lost (a forwarder that drops it spends less on it).\n"
    );
    if rows
        .iter()
        .any(|row| row.run.contestant == Contestant::Baseline)
    {
        out.push_str(
            "baseline: counts only sessions created and new clients dropped (under max_sessions, whether its \
             table or its file descriptors ran out); with no unconfirmed eviction and no per-source budget, once \
             its descriptors are spent every new source is dropped.\n",
        );
    }
    Some(out)
}

const TAKEOVER_HEADER: &str = "step|workers|forwarder|sunk sent|sunk lost|echo sent|echo lost|\
    longest gap ms|RTT max ms|RTT p99 us|handover ms|logged pause ms|note";

fn takeover_cells(run: &Run) -> Vec<String> {
    let mut row = vec![
        run.step.name(),
        run.layout.workers.to_string(),
        run.contestant.name().to_string(),
    ];
    let Some((m, t)) = run.measured().and_then(|m| Some((m, m.takeover.as_ref()?))) else {
        row.push(run.missing_headline());
        return row;
    };
    row.extend([
        t.sunk_sent.to_string(),
        t.sunk_lost.to_string(),
        t.echo_sent.to_string(),
        t.echo_lost.to_string(),
        format!("{:.1}", t.longest_gap_ms),
        or_dash(t.rtt_max_ms.map(|ms| format!("{ms:.1}"))),
        or_dash(m.rtt.map(|rtt| format!("{:.1}", rtt.p99_us))),
        format!("{:.1}", t.handover.handover_ms),
        or_dash(t.handover.logged_pause_ms.map(|ms| format!("{ms:.1}"))),
        notes(run, m).join("; "),
    ]);
    row
}

/// The takeover table and its legend, or `None` when the plan has no takeover step.
pub fn takeover_table(runs: &[Run]) -> Option<String> {
    let runs = runs.iter().filter(|run| run.step.echo_flows().is_some());
    let ringgate = runs.filter(|run| matches!(run.contestant, Contestant::Ringgate { .. }));
    let rows: Vec<Vec<String>> = ringgate.map(takeover_cells).collect();
    if rows.is_empty() {
        return None;
    }
    let mut out = render(TAKEOVER_HEADER, rows.into_iter(), &TEXT_COLUMNS);
    out.push_str(
        "takeover: a second ringgate started with --takeover in the middle of the window takes every socket and \
         session over from the first, which must exit 0.\n\
         sent/lost = datagrams over the whole run, warm-up included, after draining: sunk flows as counted by the \
         backend, echo flows (the first third) by their echoes; a lost echo is a lost round trip.\n\
         longest gap = the longest time no datagram reached the backend over the window (the forwarding pause, \
         as the backend saw it); handover = from starting the successor to the first ringgate's exit; logged pause \
         = the successor's pause_ms, from the first ringgate pausing to the last receive armed.\n",
    );
    Some(out)
}

fn flood_json(row: &FloodRow) -> Value {
    let run = row.run;
    let mut value = match (&run.outcome, run.measured().and_then(|m| m.flood.as_ref())) {
        (Outcome::Measured(m), Some(flood)) => json!({
            "status": "ok",
            "flood_sent_per_sec": (!row.is_quiet()).then_some(flood.sent_per_sec),
            "established_rt_per_sec": m.offered_pps,
            "established_rt_loss_pct": m.per_flow.total_pct(),
            "established_rt_window_loss_pct": flood.established_window_loss_pct,
            "established_flows_with_loss": m.per_flow.flows_with_loss,
            "rtt": m.rtt,
            "rtt_p99_vs_quiet": row.p99_vs_quiet(),
            "sessions_per_sec": flood.sessions_per_sec,
            "sessions_at_end": flood.sessions_at_end,
            "forwarder_core_pct": m.forwarder.core_pct,
            "cpu_us_per_new_session": row.cpu_us_per_new_session(),
            "load_cpus_busy_pct": m.load_cpus_busy_pct,
            "flood_core_pct": flood.flood.core_pct,
            "notes": notes(run, m),
        }),
        (Outcome::Missing(missing, reason), _) => json!({ "status": missing, "reason": reason }),
        (Outcome::Measured(_), None) => json!({ "status": "failed", "reason": "no flood figures" }),
    };
    value["step"] = json!(run.step.name());
    value["workers"] = json!(run.layout.workers);
    value["forwarder"] = json!(run.contestant.name());
    value
}

fn run_json(run: &Run, plan: &Plan) -> Value {
    let mut value = match &run.outcome {
        Outcome::Measured(m) => {
            let mut value =
                serde_json::to_value(m).unwrap_or_else(|e| json!({ "error": e.to_string() }));
            // `forwarder` names the contestant below; its CPU use moves aside, not away.
            value["forwarder_usage"] = value["forwarder"].take();
            value["notes"] = json!(notes(run, m));
            value["status"] = json!("ok");
            value
        }
        Outcome::Missing(missing, reason) => json!({ "status": missing, "reason": reason }),
    };
    value["step"] = json!(run.step.name());
    value["step_spec"] = json!(run.step);
    value["workers"] = json!(run.layout.workers);
    value["forwarder"] = json!(run.contestant.name());
    if let Contestant::Ringgate { bin, args, .. } = &run.contestant {
        let extra: Vec<&String> = plan.ringgate_args.iter().chain(args).collect();
        value["ringgate"] = json!({ "bin": bin, "extra_args": extra });
    }
    value
}

pub fn json(runs: &[Run], plan: &Plan, host: Value) -> Value {
    let layout = |l: &Layout| {
        let (forwarder, load) = (l.forwarder.to_string(), l.load.to_string());
        json!({ "workers": l.workers, "forwarder_cpus": forwarder, "load_cpus": load, "overlap": l.overlap() })
    };
    let ratio = |r: Ratio| {
        let saturation = r.saturation.as_ref().map(ratio_json);
        json!({ "workers": r.workers, "pair": r.pair, "step": r.step, "cpu_per_packet": ratio_json(&r.cpu_per_packet), "saturation_throughput": saturation })
    };
    json!({
        "mode": format!("{:?}", plan.mode).to_lowercase(),
        "host": host,
        "config": {
            "warmup_secs": plan.warmup.as_secs_f64(),
            "measure_secs": plan.measure.as_secs_f64(),
            "load_threads": plan.load_threads,
            "layouts": plan.layouts.iter().map(layout).collect::<Vec<_>>(),
            "socket_buffer_bytes": crate::sockets::SOCKET_BUFFER_BYTES,
            "cpu_per_packet": "forwarder utime+stime over the window / datagrams the backend received in the window",
        },
        "runs": runs.iter().map(|run| run_json(run, plan)).collect::<Vec<_>>(),
        "ratios": ratios(runs).into_iter().map(ratio).collect::<Vec<_>>(),
        "flood": flood_rows(runs).iter().map(flood_json).collect::<Vec<_>>(),
    })
}
