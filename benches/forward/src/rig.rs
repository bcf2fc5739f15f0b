//! The processes of one run and the counters read from them. A rig starts the backend, the
//! forwarder under test and the generator, each pinned to its CPUs (and the flood, on the
//! load's CPUs, when a scenario asks), and samples every counter at an edge of the measured
//! window: the generator's, backend's and flood's counts over the control protocol, CPU time
//! and socket drops from /proc, and the forwarder's session figures (ringgate's counters, the
//! baseline's own). Its guards stop and reap every child however the run ends: the load first,
//! then the forwarder, then the backend it feeds. In the takeover scenario the rig starts the
//! successor ringgate and, once the first has handed over and exited, follows it instead.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::cli::Rate;
use crate::measure::Missing;
use crate::plan::{Contestant, Layout, Plan, Step};
use crate::proc::Child;
use crate::ringgate::Sessions;
use crate::wire::{BackendSnap, FloodSnap, GeneratorSnap, Ready};
use crate::{procfs, ringgate};

/// How long a role may take to say `ready` (10 000 sockets take a fraction of this).
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a role may take to answer; a busy load CPU delays it by milliseconds.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);
/// The count bound of a `max` flood per second of its lifetime: more than one thread can
/// forge, so it only stops a runaway.
const FLOOD_MAX_PPS_BOUND: u64 = 10_000_000;
/// How long a takeover may take, from starting the successor to the first ringgate's exit.
const TAKEOVER_TIMEOUT: Duration = Duration::from_secs(20);
/// How often the driver looks whether the first ringgate has exited during a takeover.
const TAKEOVER_POLL: Duration = Duration::from_millis(1);

/// What the driver saw of a takeover.
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct Handover {
    /// From starting the successor to the first ringgate's exit (0, as it must be).
    pub handover_ms: f64,
    /// The pause the successor logged (`pause_ms=`): from the first ringgate pausing its
    /// workers to the successor's last receive armed.
    pub logged_pause_ms: Option<f64>,
}
/// Counters at one edge of the measured window, by the names the JSON gives their deltas.
pub struct Sample {
    pub at: Instant,
    /// The backend's longest time without a datagram since the window opened.
    pub longest_gap_us: f64,
    pub counts: BTreeMap<&'static str, u64>,
    /// (busy, total) ticks of the forwarder's and the load's CPU sets.
    pub cpus: [(u64, u64); 2],
    /// ringgate's counters, or why they could not be read (`None` for the other contestants).
    pub metrics: Option<Result<ringgate::Counters, String>>,
    /// The forwarder's session figures (ringgate's, or the baseline's few), or why they could
    /// not be read (`None` for the floor).
    pub sessions: Option<Result<Sessions, String>>,
}

/// The processes of one run. Fields drop in order: the load (flood first) stops first, then the
/// forwarder, then the backend it feeds.
pub struct Rig<'a> {
    /// The spoofed-source flood, while a scenario runs one.
    flood: Option<Child>,
    pub loadgen: Child,
    pub forwarder: Child,
    /// CPU ticks of forwarders that have exited (a takeover's first ringgate), added to the
    /// current one's so that the window's CPU time spans both.
    exited_forwarder_ticks: u64,
    /// ringgate's command line, for a successor.
    ringgate: Option<ringgate::CommandLine>,
    /// The control socket a takeover goes through (the takeover scenario only).
    control: Option<PathBuf>,
    metrics: Option<SocketAddr>,
    /// The forwarder's listening address: the load's target, and the flood's.
    listen: SocketAddr,
    /// The forwarder is the baseline, which tells its session figures over the protocol.
    baseline: bool,
    pub backend: Child,
    pub step: &'a Step,
    layout: &'a Layout,
    pub plan: &'a Plan,
}

impl<'a> Rig<'a> {
    /// Starts the backend, `contestant` (logging to `log` if it is ringgate) and the load. A
    /// failure to start the forwarder is told apart, so the driver stops retrying a ringgate
    /// that does not start.
    pub fn start(
        step: &'a Step,
        contestant: &Contestant,
        layout: &'a Layout,
        plan: &'a Plan,
        log: &Path,
    ) -> Result<Rig<'a>, (Missing, String)> {
        let (backend, backend_addr) =
            start_backend(step, layout, plan).map_err(|e| (Missing::Failed, e))?;
        let control = step.echo_flows().map(|_| {
            std::env::temp_dir().join(format!("ringgate-bench-{}.sock", std::process::id()))
        });
        let started = start_forwarder(contestant, backend_addr, layout, plan, log, &control);
        let (forwarder, ringgate, listen, metrics) =
            started.map_err(|e| (Missing::FailedToStart, e))?;
        let loadgen =
            start_loadgen(step, layout, plan, listen).map_err(|e| (Missing::Failed, e))?;
        Ok(Rig {
            flood: None,
            loadgen,
            forwarder,
            exited_forwarder_ticks: 0,
            ringgate,
            control,
            metrics,
            listen,
            baseline: *contestant == Contestant::Baseline,
            backend,
            step,
            layout,
            plan,
        })
    }

    pub fn check_alive(&mut self, phase: &str) -> Result<(), String> {
        match self.forwarder.exited() {
            Some(status) => Err(format!("forwarder exited ({status}) during {phase}")),
            None => Ok(()),
        }
    }

    /// Starts the flood of forged new sources at `rate` against the forwarder, on the load's
    /// CPUs, bounded in time like every role and in count by its rate over that time.
    pub fn start_flood(&mut self, rate: Rate) -> Result<(), String> {
        let per_sec = match rate {
            Rate::Pps(pps) => pps,
            Rate::Max => FLOOD_MAX_PPS_BOUND,
        };
        let max_datagrams = per_sec.saturating_mul(self.plan.run_bound().as_secs());
        let pairs = [
            ("target", self.listen.to_string()),
            ("rate", rate.to_string()),
            ("max-datagrams", max_datagrams.to_string()),
            lifetime(self.plan),
        ];
        let mut flood = Child::role("flood", &self.layout.load, &args(&pairs, false))?;
        flood.expect::<Value>("ready", READY_TIMEOUT)?;
        self.flood = Some(flood);
        Ok(())
    }

    /// Starts a second ringgate with the first's command line plus `--takeover`, logging to
    /// `log`; waits until the first has handed everything over and exited 0, and until the
    /// successor is ready; from then on the rig measures the successor.
    pub fn take_over(&mut self, log: &Path) -> Result<Handover, String> {
        let (Some(line), Some(control)) = (&self.ringgate, &self.control) else {
            return Err("only ringgate takes over".into());
        };
        let more = ["--takeover".to_string(), control.display().to_string()];
        let args = [&line.args[..], &more[..]].concat();
        let cpus = &self.layout.forwarder;
        let started = Instant::now();
        let mut next = Child::program("ringgate (successor)", &line.binary, &args, cpus, log)?;
        let mut old_ticks = procfs::cpu_ticks(self.forwarder.pid())?;
        loop {
            if let Some(status) = self.forwarder.exited() {
                if !status.success() {
                    return Err(format!(
                        "the first ringgate exited ({status}) in the takeover"
                    ));
                }
                break;
            }
            if let Some(status) = next.exited() {
                return Err(format!(
                    "the successor exited ({status}) before taking over{}",
                    ringgate::last_log_line(log)
                ));
            }
            if started.elapsed() > TAKEOVER_TIMEOUT {
                return Err(format!(
                    "the first ringgate still runs {TAKEOVER_TIMEOUT:?} into the takeover{}",
                    ringgate::last_log_line(log)
                ));
            }
            // Its CPU time up to its exit (the last reading before it is reaped).
            if let Ok(ticks) = procfs::cpu_ticks(self.forwarder.pid()) {
                old_ticks = ticks;
            }
            std::thread::sleep(TAKEOVER_POLL);
        }
        let handover_ms = started.elapsed().as_secs_f64() * 1e3;
        ringgate::wait_ready(&mut next, line.metrics, log)?;
        self.exited_forwarder_ticks += old_ticks;
        self.forwarder = next;
        Ok(Handover {
            handover_ms,
            logged_pause_ms: ringgate::logged_pause_ms(log),
        })
    }

    /// Stops the flood, if one runs, and waits for it to exit.
    pub fn stop_flood(&mut self) {
        self.flood = None;
    }

    /// The forwarder's session figures now: ringgate's from `metrics`, the baseline's asked.
    fn sessions(
        &mut self,
        metrics: &Option<Result<ringgate::Counters, String>>,
    ) -> Option<Result<Sessions, String>> {
        if let Some(metrics) = metrics {
            return Some(
                metrics
                    .as_ref()
                    .map(ringgate::sessions)
                    .map_err(Clone::clone),
            );
        }
        self.baseline.then(|| {
            let snap: Value = self.forwarder.ask("snap", "snap", ANSWER_TIMEOUT)?;
            Ok(baseline_sessions(&snap))
        })
    }

    pub fn sample(&mut self, window_command: &str) -> Result<Sample, String> {
        let metrics = self.metrics.map(ringgate::scrape);
        let sessions = self.sessions(&metrics);
        let generator: GeneratorSnap = self.loadgen.ask(window_command, "snap", ANSWER_TIMEOUT)?;
        let (flood, flood_ticks) = match &mut self.flood {
            Some(child) => (
                child.ask::<FloodSnap>("snap", "snap", ANSWER_TIMEOUT)?,
                procfs::cpu_ticks(child.pid())?,
            ),
            None => (FloodSnap::default(), 0),
        };
        // The backend's count and the forwarder's CPU time are read back to back: they are the
        // numerator and denominator of CPU per packet.
        let backend: BackendSnap = self.backend.ask(window_command, "snap", ANSWER_TIMEOUT)?;
        let forwarder_ticks =
            procfs::cpu_ticks(self.forwarder.pid())? + self.exited_forwarder_ticks;
        let at = Instant::now();
        // The other clocks next, while they describe the same instant; the socket tables last,
        // as reading them takes milliseconds with 10 000 flows.
        let cpus = [
            procfs::cpu_set_ticks(&self.layout.forwarder)?,
            procfs::cpu_set_ticks(&self.layout.load)?,
        ];
        let (loadgen, backend_pid, forwarder) =
            (self.loadgen.pid(), self.backend.pid(), self.forwarder.pid());
        let counts = [
            ("offered", generator.sent),
            ("echoed", generator.echoed),
            ("delivered", backend.received),
            ("expected", backend.expected),
            ("forwarder_cpu_ticks", forwarder_ticks),
            ("generator_cpu_ticks", procfs::cpu_ticks(loadgen)?),
            ("backend_cpu_ticks", procfs::cpu_ticks(backend_pid)?),
            ("socket_drops_at_forwarder", procfs::udp_drops(forwarder)?),
            (
                "socket_drops_at_load",
                procfs::udp_drops(loadgen)? + procfs::udp_drops(backend_pid)?,
            ),
            ("backlog_drops_machine_wide", procfs::backlog_drops()?),
            ("flood_sent", flood.sent),
            ("flood_send_failed", flood.send_failed),
            ("flood_cpu_ticks", flood_ticks),
        ];
        Ok(Sample {
            at,
            longest_gap_us: backend.longest_gap_us,
            counts: counts.into(),
            cpus,
            metrics,
            sessions,
        })
    }
}

/// The baseline's `snap` as session figures: it counts sessions created and new clients
/// dropped (at its session limit or for want of a socket, told here as `max_sessions`), and
/// holds `sessions`; it has no unconfirmed sessions to evict and no per-source budget.
fn baseline_sessions(snap: &Value) -> Sessions {
    let figure = |value: &Value| value.as_f64();
    let figures = [
        ("created", figure(&snap["stats"]["created"])),
        ("max_sessions", figure(&snap["stats"]["dropped"])),
        ("open", figure(&snap["sessions"])),
    ];
    figures
        .into_iter()
        .filter_map(|(name, value)| Some((name, value?)))
        .collect()
}

/// `--name value` pairs (and `--echo`) for a role.
fn args(pairs: &[(&str, String)], echo: bool) -> Vec<String> {
    let flag = echo.then(|| "--echo".to_string());
    pairs
        .iter()
        .flat_map(|(name, value)| [format!("--{name}"), value.clone()])
        .chain(flag)
        .collect()
}

fn lifetime(plan: &Plan) -> (&'static str, String) {
    ("max-secs", plan.run_bound().as_secs().to_string())
}

/// Starts `role` and returns it with the address its `ready` line names.
fn start_role(role: &str, cpus: &[usize], args: &[String]) -> Result<(Child, SocketAddr), String> {
    let mut child = Child::role(role, cpus, args)?;
    let ready: Ready = child.expect("ready", READY_TIMEOUT)?;
    Ok((child, ready.listen))
}

/// The backend's threads start on the load CPUs after the generator's, so with several load
/// CPUs they do not share one.
fn start_backend(step: &Step, layout: &Layout, plan: &Plan) -> Result<(Child, SocketAddr), String> {
    let mut cpus = layout.load.0.clone();
    let shift = plan.load_threads % cpus.len();
    cpus.rotate_left(shift);
    let pairs = [
        ("flows", step.flows.to_string()),
        ("threads", plan.load_threads.to_string()),
        lifetime(plan),
    ];
    let echo_flows = step.echo_flows().map(|n| ("echo-flows", n.to_string()));
    let pairs = [&pairs[..], echo_flows.as_slice()].concat();
    start_role("backend", &cpus, &args(&pairs, step.echo))
}

fn start_loadgen(
    step: &Step,
    layout: &Layout,
    plan: &Plan,
    target: SocketAddr,
) -> Result<Child, String> {
    let pairs = [
        ("target", target.to_string()),
        ("flows", step.flows.to_string()),
        ("payload", step.payload_bytes.to_string()),
        ("rate", step.rate.to_string()),
        ("threads", plan.load_threads.to_string()),
        lifetime(plan),
    ];
    let mut loadgen = Child::role("loadgen", &layout.load, &args(&pairs, step.echo))?;
    loadgen.expect::<serde_json::Value>("ready", READY_TIMEOUT)?;
    Ok(loadgen)
}

type Started = (
    Child,
    Option<ringgate::CommandLine>,
    SocketAddr,
    Option<SocketAddr>,
);

fn start_forwarder(
    contestant: &Contestant,
    backend: SocketAddr,
    layout: &Layout,
    plan: &Plan,
    log: &Path,
    control: &Option<PathBuf>,
) -> Result<Started, String> {
    let common = [
        ("backend", backend.to_string()),
        ("workers", layout.workers.to_string()),
        lifetime(plan),
    ];
    let (role, pairs) = match contestant {
        Contestant::Ringgate { bin, args, .. } => {
            let mut extra = [&plan.ringgate_args[..], args].concat();
            if let Some(control) = control {
                extra.extend(["--control".into(), control.display().to_string()]);
            }
            let line = ringgate::command_line(bin, &extra, backend, layout)?;
            let child = ringgate::start(&line, layout, log)?;
            let (listen, metrics) = (line.listen, line.metrics);
            return Ok((child, Some(line), listen, Some(metrics)));
        }
        // Idle timeout and buffer size as on ringgate's command line.
        Contestant::Baseline => (
            "baseline",
            vec![
                ("idle-timeout", "60".into()),
                ("buffer-size", "2048".into()),
            ],
        ),
        Contestant::Floor => ("floor", vec![]),
    };
    let (child, listen) = start_role(
        role,
        &layout.forwarder,
        &args(&[&common[..], &pairs].concat(), false),
    )?;
    Ok((child, None, listen, None))
}
