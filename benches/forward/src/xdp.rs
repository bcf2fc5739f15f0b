//! The XDP testbed scenario (`-- --xdp-testbed`): what ringgate's XDP fast path costs the
//! machine per forwarded datagram against its socket path, between three network namespaces
//! (`netns.rs`). It owns the contestants of that run and the measurement of one window each;
//! `xdp_report.rs` prints and stores the results.
//!
//! XDP's cost is not in ringgate's process (the program runs in the receiving CPU's softirq),
//! so the figure is system-wide: the time every CPU was not idle over the window (elapsed less
//! /proc/stat's idle and iowait, which a tickless kernel keeps exactly; its user, system, irq
//! and softirq split is sampled by the tick and given as a breakdown), divided by the
//! datagrams the backend received in it. Whatever else runs on the machine counts too. The same
//! figure for `direct` (client to backend over a veth pair of their own, no forwarder) is what
//! the generator, the backend and one veth crossing cost; the difference is the forwarding.
//!
//! Each contestant runs at each rate with a fresh backend (backend ns, listening on every
//! address), forwarder and generator (client ns, its flows from 10.1.0.2 or 10.3.0.2 on ports of
//! their own). The backend echoes each flow's first datagram, so every session is confirmed
//! (answered, then the client sent again) during the warm-up; the XDP contestants wait, at most
//! `CONFIRM_TIMEOUT`, until `ringgate_xdp_sessions` sums to the flows before the window opens.
//! Every role is bounded in time by `--max-secs`; every phase is at most 10 s.

use std::time::Duration;

use crate::cli::{Cli, Rate};
use crate::netns::Testbed;
use crate::xdp_run::{self, Setup};
use crate::{binary, os, xdp_report};

/// The rates: 100k datagrams/s, and as fast as the generator can send.
const RATES: [Rate; 2] = [Rate::Pps(100_000), Rate::Max];
/// "A few dozen flows".
const FLOWS_DEFAULT: usize = 32;
/// Longest warm-up or window the scenario accepts: each phase at most 10 s.
const PHASE_MAX: Duration = Duration::from_secs(10);
/// Who forwards in one run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Forwarder {
    /// No forwarder: client to backend over the c1-b1 veth pair.
    Direct,
    /// The forwarder ns's kernel forwarding (IP routing, no socket, no XDP).
    Routed,
    /// ringgate, on its socket path, or with `--xdp` in this mode (`generic`, `native`).
    Ringgate(Option<&'static str>),
    Floor,
    Baseline,
}

/// Every contestant, by the name `--forwarders` and the table give it.
pub const CONTESTANTS: [(&str, Forwarder); 7] = [
    ("direct", Forwarder::Direct),
    ("routed", Forwarder::Routed),
    ("ringgate", Forwarder::Ringgate(None)),
    ("ringgate+xdp-generic", Forwarder::Ringgate(Some("generic"))),
    ("ringgate+xdp-native", Forwarder::Ringgate(Some("native"))),
    ("floor", Forwarder::Floor),
    ("baseline", Forwarder::Baseline),
];

/// What one window measured: counts over `secs`.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Window {
    pub secs: f64,
    pub offered: u64,
    pub delivered: u64,
    /// CPU seconds the whole machine was busy (all CPUs' time less their idle time).
    pub busy_secs: f64,
    /// The same by kind, sampled by the tick: user (with nice), system, irq, softirq.
    pub cpu_secs: [f64; 4],
    /// What every other process on the machine spent in the window (a neighbour's build, say).
    pub others_secs: f64,
    /// Datagrams the XDP program forwarded (ringgate's counters), and those ringgate's sockets
    /// carried upstream; `None` for the other forwarders.
    pub xdp_forwarded: Option<f64>,
    pub socket_path: Option<f64>,
    /// Sessions offloaded to the program when the window opened.
    pub xdp_sessions: Option<f64>,
}

impl Window {
    /// System-wide CPU microseconds per datagram delivered.
    pub fn cpu_us_per_datagram(&self) -> Option<f64> {
        (self.delivered > 0).then(|| self.busy_secs * 1e6 / self.delivered as f64)
    }

    /// The same less what other processes spent: the benchmark's own cost on a shared machine.
    pub fn own_us_per_datagram(&self) -> Option<f64> {
        let own = (self.busy_secs - self.others_secs).max(0.0);
        (self.delivered > 0).then(|| own * 1e6 / self.delivered as f64)
    }

    /// The share of the sampled busy time spent in softirq (where XDP and veth delivery run).
    pub fn softirq_share(&self) -> Option<f64> {
        let total: f64 = self.cpu_secs.iter().sum();
        (total > 0.0).then(|| self.cpu_secs[3] / total)
    }
}

/// One contestant at one rate.
#[derive(serde::Serialize)]
pub struct XdpRun {
    pub contestant: &'static str,
    pub rate: Rate,
    pub round: usize,
    pub outcome: Result<Window, String>,
}

fn phase(value: Option<f64>, default: f64, name: &str) -> Result<Duration, String> {
    let secs = value.unwrap_or(default);
    let phase = Duration::try_from_secs_f64(secs).map_err(|e| format!("--{name}: {e}"))?;
    match phase <= PHASE_MAX {
        true => Ok(phase),
        false => Err(format!(
            "--{name}: at most {PHASE_MAX:?} in the XDP testbed"
        )),
    }
}

/// The contestants `--forwarders` names, in the table's order [default: all].
fn contestants(cli: &Cli) -> Result<Vec<(&'static str, Forwarder)>, String> {
    if let Some(unknown) = cli
        .forwarders
        .iter()
        .find(|name| !CONTESTANTS.iter().any(|(known, _)| known == name))
    {
        let known: Vec<&str> = CONTESTANTS.iter().map(|(name, _)| *name).collect();
        return Err(format!(
            "--forwarders: no contestant `{unknown}` in the XDP testbed (it has {})",
            known.join(", ")
        ));
    }
    let chosen = |(name, _): &&(&str, Forwarder)| {
        cli.forwarders.is_empty() || cli.forwarders.iter().any(|n| n == name)
    };
    Ok(CONTESTANTS.iter().filter(chosen).copied().collect())
}

/// The scenario: builds the testbed, runs every contestant at every rate, prints the table
/// and writes `xdp.json`. Without root it says why and measures nothing.
pub fn drive(cli: &Cli) -> Result<(), String> {
    if !nix::unistd::geteuid().is_root() {
        eprintln!(
            "forward: --xdp-testbed skipped: it needs root (network namespaces, veths, XDP); run it as root"
        );
        return Ok(());
    }
    let contestants = contestants(cli)?;
    let rates = cli.rate.map_or(RATES.to_vec(), |rate| vec![rate]);
    let ringgate = match &cli.ringgate {
        Some(path) => path.clone(),
        None => binary::default_ringgate()?,
    };
    let ringgates = contestants
        .iter()
        .any(|(_, f)| matches!(f, Forwarder::Ringgate(_)));
    if cli.ringgate.is_none() && ringgates {
        binary::check_current(&ringgate)?;
    }
    let online = os::allowed_cpus().map_err(|e| format!("reading this process's CPUs: {e}"))?;
    let (first, last) = (online[0], online[online.len() - 1]);
    let forwarder_cpus = cli
        .forwarder_cpus
        .as_ref()
        .map_or(vec![first], |c| c.0.clone());
    let load_cpus = cli.load_cpus.as_ref().map_or(vec![last], |c| c.0.clone());
    os::pin(&load_cpus).map_err(|e| format!("pinning the driver to CPUs {load_cpus:?}: {e}"))?;
    let output_dir = match &cli.output_dir {
        Some(dir) => dir.clone(),
        None => binary::output_dir()?,
    };
    let log_dir = output_dir.join("logs");
    std::fs::create_dir_all(&log_dir).map_err(|e| format!("{}: {e}", log_dir.display()))?;
    let testbed = Testbed::build().map_err(|e| format!("building the XDP testbed: {e}"))?;
    let setup = Setup {
        testbed: &testbed,
        ringgate,
        flows: cli.flows.unwrap_or(FLOWS_DEFAULT),
        payload: cli.payload.unwrap_or(64),
        warmup: phase(cli.warmup_secs, 1.0, "warmup-secs")?,
        measure: phase(cli.measure_secs, 3.0, "measure-secs")?,
        forwarder_cpus,
        load_cpus,
        log_dir,
        ticks_per_second: os::clock_ticks_per_second(),
    };
    eprintln!(
        "forward: XDP testbed, {} round(s) of {} contestant(s) x {} rate(s), {} flows of {} B, {:.1} s warm-up + {:.1} s measured each; forwarder on CPUs {:?}, load on {:?}",
        cli.rounds,
        contestants.len(),
        rates.len(),
        setup.flows,
        setup.payload,
        setup.warmup.as_secs_f64(),
        setup.measure.as_secs_f64(),
        setup.forwarder_cpus,
        setup.load_cpus,
    );
    let total = cli.rounds * rates.len() * contestants.len();
    let mut runs = Vec::with_capacity(total);
    for round in 0..cli.rounds {
        // Rotated each round, so no contestant always follows the same one.
        let mut order = contestants.clone();
        order.rotate_left(round % contestants.len());
        for (&rate, &(name, forwarder)) in
            rates.iter().flat_map(|r| order.iter().map(move |c| (r, c)))
        {
            let outcome = xdp_run::run(&setup, name, forwarder, rate);
            let summary = match &outcome {
                Ok(w) => format!(
                    "{:.0}/s delivered, {:.2} us/datagram ({:.2} less other processes)",
                    w.delivered as f64 / w.secs,
                    w.cpu_us_per_datagram().unwrap_or(f64::NAN),
                    w.own_us_per_datagram().unwrap_or(f64::NAN),
                ),
                Err(e) => format!("failed: {e}"),
            };
            eprintln!(
                "[{}/{total}] round {} {name} at {rate}: {summary}",
                runs.len() + 1,
                round + 1
            );
            runs.push(XdpRun {
                contestant: name,
                rate,
                round,
                outcome,
            });
        }
    }
    // The namespaces go before the report: nothing more runs in them.
    let (flows, payload) = (setup.flows, setup.payload);
    drop(setup);
    drop(testbed);
    println!();
    print!("{}", xdp_report::table(&runs));
    let path = output_dir.join("xdp.json");
    let text = serde_json::to_string_pretty(&xdp_report::json(&runs, flows, payload, cli.rounds))
        .map_err(|e| e.to_string())?;
    std::fs::write(&path, text + "\n").map_err(|e| format!("{}: {e}", path.display()))?;
    println!("results: {}", path.display());
    Ok(())
}
