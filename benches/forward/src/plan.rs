//! What a run measures, from the command line: the modes (smoke run, `--full`, one custom
//! step), the steps, the contestants, and for each
//! worker count the CPUs of the forwarder and of the load. Pure data; nothing here touches a
//! socket.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use crate::cli::{Cli, CpuList, Rate};

/// What happens during a step besides its steady load. A new scenario (a takeover mid-run, a
/// spoofed-source flood beside established echo load, PROXY protocol on and off) is one
/// variant here and one function in `measure.rs`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Scenario {
    /// Established flows at a constant paced rate, nothing else.
    Steady,
    /// The step's flows echo at its rate while spoofed new sources arrive at
    /// `new_sources_per_sec` (`flood.rs`), which opens the window `FLOOD_SETTLE` into the
    /// flood; `None` is the quiet reference run: the same load and timeline with no flood.
    Flood { new_sources_per_sec: Option<Rate> },
    /// The step's flows at its rate, the first `echo_flows` of them echoed by the backend and
    /// the rest sunk, while a second ringgate takes every socket and session over from the
    /// first (`--takeover`) in the middle of the measured window. ringgate only.
    Takeover { echo_flows: usize },
}

/// The takeover scenario's load by default (the issue's): 1,000 sessions, a third of them
/// echoing, at 150k datagrams/s in all: 50k round trips/s and 100k/s sunk at the backend.
pub const TAKEOVER_FLOWS: usize = 1_000;
pub const TAKEOVER_RATE: Rate = Rate::Pps(150_000);

/// How long a flood runs before the measured window opens (the quiet run waits as long): the
/// flood reaches its rate, and where file descriptors cap the table it fills (a 20 000-fd limit
/// at 10k new sources/s: in 2 s), so the window sees newcomers evict. With a table of 65 536 a
/// 10k/s flood fills none and, with the 5 s unreplied timeout, expires none within the window.
pub const FLOOD_SETTLE: Duration = Duration::from_secs(2);

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Step {
    pub flows: usize,
    pub rate: Rate,
    pub payload_bytes: usize,
    /// The backend echoes every datagram and the generator measures round trips.
    pub echo: bool,
    pub scenario: Scenario,
}

const DEFAULT_FLOWS: usize = 64;
const DEFAULT_PAYLOAD_BYTES: usize = 64;
const DEFAULT_RATE: Rate = Rate::Pps(50_000);
/// The established load under a flood, left out of flood step names.
const DEFAULT_FLOOD_LOAD: &str = "64f-50k-echo";

impl Step {
    fn steady(flows: usize, rate: Rate, echo: bool) -> Step {
        let (payload_bytes, scenario) = (DEFAULT_PAYLOAD_BYTES, Scenario::Steady);
        Step {
            flows,
            rate,
            payload_bytes,
            echo,
            scenario,
        }
    }

    /// A flood step and its quiet reference first: echo load from `flows` at `rate`, under
    /// each of `floods` new sources per second.
    fn floods(flows: usize, rate: Rate, payload_bytes: usize, floods: &[Rate]) -> Vec<Step> {
        let quiet = std::iter::once(None);
        let floods = quiet.chain(floods.iter().copied().map(Some));
        let step = |new_sources_per_sec| Step {
            payload_bytes,
            scenario: Scenario::Flood {
                new_sources_per_sec,
            },
            ..Step::steady(flows, rate, true)
        };
        floods.map(step).collect()
    }

    /// A takeover step: `flows` at `rate`, a third of the flows echoing.
    pub fn takeover(flows: usize, rate: Rate) -> Step {
        let scenario = Scenario::Takeover {
            echo_flows: flows.div_ceil(3),
        };
        Step {
            scenario,
            ..Step::steady(flows, rate, true)
        }
    }

    /// How many flows the backend echoes, if not all (the takeover scenario).
    pub fn echo_flows(&self) -> Option<usize> {
        match self.scenario {
            Scenario::Takeover { echo_flows } => Some(echo_flows),
            _ => None,
        }
    }

    /// The quiet reference of a flood step (itself for the quiet run); `None` for others.
    pub fn quiet(&self) -> Option<Step> {
        let Scenario::Flood { .. } = self.scenario else {
            return None;
        };
        let scenario = Scenario::Flood {
            new_sources_per_sec: None,
        };
        Some(Step {
            scenario,
            ..self.clone()
        })
    }

    /// New sources per second of a flood step (`Some(None)` for the quiet run).
    pub fn flood(&self) -> Option<Option<Rate>> {
        match self.scenario {
            Scenario::Steady | Scenario::Takeover { .. } => None,
            Scenario::Flood {
                new_sources_per_sec,
            } => Some(new_sources_per_sec),
        }
    }

    /// How long the scenario runs before its window opens, besides the warm-up.
    pub fn settle(&self) -> Duration {
        match self.scenario {
            Scenario::Steady | Scenario::Takeover { .. } => Duration::ZERO,
            Scenario::Flood { .. } => FLOOD_SETTLE,
        }
    }

    /// A short unique label such as `64f-50k`, `64f-100k-echo`, `1024f-max-1200B`, or for the
    /// flood scenario `flood-quiet`, `flood-50k` or `flood-max-128f-100k-echo`, and for the
    /// takeover scenario `takeover-1000f-150k`.
    pub fn name(&self) -> String {
        if let Scenario::Takeover { .. } = self.scenario {
            return format!("takeover-{}f-{}", self.flows, self.rate);
        }
        let echo = if self.echo { "-echo" } else { "" };
        let payload = match self.payload_bytes {
            DEFAULT_PAYLOAD_BYTES => String::new(),
            bytes => format!("-{bytes}B"),
        };
        let load = format!("{}f-{}{echo}{payload}", self.flows, self.rate);
        let Some(flood) = self.flood() else {
            return load;
        };
        let flood = flood.map_or("quiet".into(), |rate| rate.to_string());
        match load.as_str() {
            DEFAULT_FLOOD_LOAD => format!("flood-{flood}"),
            _ => format!("flood-{flood}-{load}"),
        }
    }
}

/// The steps of `--full`, in the order the issues list them.
fn full_steps() -> Vec<Step> {
    let paced = [64, 1024]
        .map(|flows| [50, 100, 200].map(|k| Step::steady(flows, Rate::Pps(k * 1_000), false)));
    let echo = Step::steady(DEFAULT_FLOWS, Rate::Pps(100_000), true);
    let floods = [10, 50, 100].map(|k| Rate::Pps(k * 1_000));
    let floods = Step::floods(
        DEFAULT_FLOWS,
        DEFAULT_RATE,
        DEFAULT_PAYLOAD_BYTES,
        &[&floods[..], &[Rate::Max]].concat(),
    );
    paced
        .into_iter()
        .flatten()
        .chain([echo, Step::steady(DEFAULT_FLOWS, Rate::Max, false)])
        .chain(floods)
        .chain([Step::takeover(TAKEOVER_FLOWS, TAKEOVER_RATE)])
        .collect()
}

/// The variants `--proxy-protocol` adds, as `--variant` would take them.
const PROXY_PROTOCOL_VARIANTS: [&str; 2] = [
    "pp=--proxy-protocol=v2",
    "pp-every=--proxy-protocol=v2,--proxy-protocol-every",
];

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Contestant {
    /// The real binary: the default build (`ringgate`, `--ringgate`), another build
    /// (`ringgate:LABEL`), or the default build with more arguments (`ringgate+LABEL`).
    Ringgate {
        name: String,
        bin: PathBuf,
        args: Vec<String>,
    },
    /// The tokio forwarder a competent developer would write (`baseline.rs`).
    Baseline,
    /// A bare recvmmsg/sendmmsg relay with no sessions (`floor.rs`).
    Floor,
}

impl Contestant {
    pub fn name(&self) -> &str {
        match self {
            Contestant::Ringgate { name, .. } => name,
            Contestant::Baseline => "baseline",
            Contestant::Floor => "floor",
        }
    }

    /// Why this contestant cannot run `step`, if it cannot.
    pub fn cannot_run(&self, step: &Step) -> Option<&'static str> {
        if step.echo_flows().is_some() && !matches!(self, Contestant::Ringgate { .. }) {
            return Some("only ringgate hands its sockets and sessions over");
        }
        match (self, step.flood()) {
            (Contestant::Floor, Some(_)) => {
                Some("the floor keeps no sessions for a flood of new sources to fill")
            }
            (Contestant::Floor, None) if step.echo => {
                Some("the floor forwards one direction only, echo steps do not apply")
            }
            _ => None,
        }
    }
}

/// Every contestant the command line names (default: all), the default ringgate build first.
fn contestants(cli: &Cli, current: PathBuf) -> Result<Vec<Contestant>, String> {
    let mut all = vec![Contestant::Ringgate {
        name: "ringgate".into(),
        bin: current.clone(),
        args: Vec::new(),
    }];
    let proxy_protocol = cli
        .proxy_protocol
        .then(|| PROXY_PROTOCOL_VARIANTS.map(String::from));
    for spec in proxy_protocol
        .into_iter()
        .flatten()
        .chain(cli.variant.iter().cloned())
    {
        let Some((label, args)) = spec.split_once('=') else {
            return Err(format!("--variant {spec}: expected LABEL=ARG[,ARG...]"));
        };
        all.push(Contestant::Ringgate {
            name: format!("ringgate+{label}"),
            bin: current.clone(),
            args: args.split(',').map(String::from).collect(),
        });
    }
    for (position, spec) in cli.ringgate_bin.iter().enumerate() {
        let (label, path) = spec.split_once('=').unwrap_or(("", spec));
        let label = if label.is_empty() {
            (position + 1).to_string()
        } else {
            label.into()
        };
        all.push(Contestant::Ringgate {
            name: format!("ringgate:{label}"),
            bin: path.into(),
            args: Vec::new(),
        });
    }
    all.extend([Contestant::Baseline, Contestant::Floor]);
    if cli.forwarders.is_empty() {
        return Ok(all);
    }
    let names: Vec<&str> = all.iter().map(Contestant::name).collect();
    let find = |name: &String| all.iter().find(|c| c.name() == name).cloned();
    let unknown = |name: &String| format!("unknown forwarder `{name}` (have {})", names.join(", "));
    cli.forwarders
        .iter()
        .map(|name| find(name).ok_or_else(|| unknown(name)))
        .collect()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// No step named: the CI smoke run, a few seconds.
    Smoke,
    /// `--full`: every step of the issue.
    Full,
    /// One step given by --flows/--rate/--payload/--echo.
    Custom,
}

/// The CPUs of one worker count.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    pub workers: usize,
    pub forwarder: CpuList,
    pub load: CpuList,
}

impl Layout {
    pub fn overlap(&self) -> bool {
        self.forwarder.iter().any(|cpu| self.load.contains(cpu))
    }
}

impl fmt::Display for Layout {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "{}w: forwarder on CPUs {}, load on {}",
            self.workers, self.forwarder, self.load
        )
    }
}

/// Each worker count's CPUs: the forwarder's first N (default: the first CPUs), the load on
/// `--load-cpus` or else on what the forwarder leaves (or on the last CPU if it leaves none).
fn layouts(cli: &Cli, online: &[usize]) -> Result<Vec<Layout>, String> {
    let most = cli.workers.iter().copied().max().unwrap_or(1);
    let forwarder = cli
        .forwarder_cpus
        .clone()
        .unwrap_or_else(|| CpuList(online.iter().copied().take(most).collect()));
    let named = forwarder
        .iter()
        .chain(cli.load_cpus.iter().flat_map(|list| list.iter()));
    if let Some(cpu) = named.into_iter().find(|cpu| !online.contains(cpu)) {
        return Err(format!(
            "CPU {cpu} is not available to this process (it may use {})",
            CpuList(online.to_vec())
        ));
    }
    let layout = |workers: usize| {
        if workers > forwarder.len() {
            return Err(format!(
                "{workers} workers need as many forwarder CPUs; there are {forwarder}"
            ));
        }
        let mine = CpuList(forwarder[..workers].to_vec());
        let left: Vec<usize> = online
            .iter()
            .copied()
            .filter(|cpu| !mine.contains(cpu))
            .collect();
        let left = if left.is_empty() {
            vec![online[online.len() - 1]]
        } else {
            left
        };
        let load = cli.load_cpus.clone().unwrap_or(CpuList(left));
        Ok(Layout {
            workers,
            forwarder: mine,
            load,
        })
    };
    cli.workers.iter().map(|&workers| layout(workers)).collect()
}

pub struct Plan {
    pub mode: Mode,
    pub steps: Vec<Step>,
    pub contestants: Vec<Contestant>,
    pub layouts: Vec<Layout>,
    pub load_threads: usize,
    pub warmup: Duration,
    pub measure: Duration,
    pub ringgate_args: Vec<String>,
}

impl Plan {
    /// The plan for `cli` on a machine where this process may use the `online` CPUs.
    pub fn new(cli: &Cli, online: &[usize], current_ringgate: PathBuf) -> Result<Plan, String> {
        let custom = cli.flows.is_some()
            || cli.rate.is_some()
            || cli.payload.is_some()
            || cli.echo
            || cli.flood.is_some()
            || cli.takeover;
        let (mode, (warmup, measure)) = match (cli.full, custom) {
            (true, _) => (Mode::Full, (1.0, 3.0)),
            (_, true) => (Mode::Custom, (1.0, 3.0)),
            _ => (Mode::Smoke, (0.3, 1.0)),
        };
        let mut steps = match mode {
            Mode::Full => full_steps(),
            Mode::Custom => {
                let flows = cli.flows.unwrap_or(DEFAULT_FLOWS);
                let rate = cli.rate.unwrap_or(DEFAULT_RATE);
                let payload_bytes = cli.payload.unwrap_or(DEFAULT_PAYLOAD_BYTES);
                match cli.flood {
                    _ if cli.takeover => vec![Step {
                        payload_bytes,
                        ..Step::takeover(
                            cli.flows.unwrap_or(TAKEOVER_FLOWS),
                            cli.rate.unwrap_or(TAKEOVER_RATE),
                        )
                    }],
                    Some(flood) => Step::floods(flows, rate, payload_bytes, &[flood]),
                    None => vec![Step {
                        payload_bytes,
                        ..Step::steady(flows, rate, cli.echo)
                    }],
                }
            }
            Mode::Smoke => vec![Step::steady(DEFAULT_FLOWS, DEFAULT_RATE, false)],
        };
        if let Some(only) = &cli.only {
            let selected = |step: &Step| step.name().contains(only.as_str());
            // A flood step's figures are read against its quiet run, which comes along.
            let quiet: Vec<Step> = steps
                .iter()
                .filter(|step| selected(step))
                .filter_map(Step::quiet)
                .collect();
            steps.retain(|step| selected(step) || quiet.contains(step));
            if steps.is_empty() {
                return Err(format!("--only {only} matches no step of --full"));
            }
        }
        let seconds = |value: Option<f64>, default: f64, name: &str| {
            let value = value.unwrap_or(default);
            Duration::try_from_secs_f64(value).map_err(|e| format!("--{name} {value}: {e}"))
        };
        let measure = seconds(cli.measure_secs, measure, "measure-secs")?;
        if measure < Duration::from_millis(100) {
            return Err("--measure-secs below 0.1 s measures nothing but clock ticks".into());
        }
        Ok(Plan {
            mode,
            steps,
            contestants: contestants(cli, current_ringgate)?,
            layouts: layouts(cli, online)?,
            load_threads: cli.load_threads,
            warmup: seconds(cli.warmup_secs, warmup, "warmup-secs")?,
            measure,
            ringgate_args: cli.ringgate_arg.clone(),
        })
    }

    /// A generous bound on one contestant's run in one step, for the children's lifetimes.
    pub fn run_bound(&self) -> Duration {
        let settle = self
            .steps
            .iter()
            .map(Step::settle)
            .max()
            .unwrap_or_default();
        self.warmup + settle + self.measure + Duration::from_secs(30)
    }

    /// Roughly how long the plan takes: every phase plus about 0.8 s per run to start and drain.
    pub fn estimate(&self) -> Duration {
        let runnable = |step: &Step| {
            let contestants = self.contestants.iter();
            contestants.filter(|c| c.cannot_run(step).is_none()).count() as u32
        };
        let step = |step: &Step| {
            let run = self.warmup + step.settle() + self.measure + Duration::from_millis(800);
            run * runnable(step)
        };
        self.steps.iter().map(step).sum::<Duration>() * self.layouts.len() as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_steps_and_names() {
        let plan = |raw: &[&str]| Plan::new(&Cli::from_args(raw)?, &[0, 1], "ringgate".into());
        assert_eq!(plan(&[]).unwrap().mode, Mode::Smoke);
        // `cargo bench` adds --bench, which changes nothing.
        assert_eq!(plan(&["--bench"]).unwrap().mode, Mode::Smoke);
        let names = |plan: Plan| -> Vec<String> { plan.steps.iter().map(Step::name).collect() };
        let full = names(plan(&["--full"]).unwrap());
        assert_eq!(
            full[2..],
            [
                "64f-200k",
                "1024f-50k",
                "1024f-100k",
                "1024f-200k",
                "64f-100k-echo",
                "64f-max",
                "flood-quiet",
                "flood-10k",
                "flood-50k",
                "flood-100k",
                "flood-max",
                "takeover-1000f-150k"
            ]
        );
        let custom = plan(&["--flows", "10000", "--rate", "max", "--payload", "1200"]).unwrap();
        assert_eq!(custom.steps[0].name(), "10000f-max-1200B");
        assert_eq!(plan(&["--full", "--only", "1024f"]).unwrap().steps.len(), 3);
        assert_eq!(
            names(plan(&["--full", "--only", "flood"]).unwrap()),
            full[8..13]
        );
        let takeover = plan(&["--takeover", "--rate", "30k"]).unwrap();
        assert_eq!(names(takeover), ["takeover-1000f-30k"]);
        let step = &plan(&["--full", "--only", "takeover"]).unwrap().steps[0];
        assert_eq!(
            (step.echo, step.echo_flows(), step.flood()),
            (true, Some(334), None)
        );
        assert!(
            Contestant::Baseline.cannot_run(step).is_some()
                && Contestant::Floor.cannot_run(step).is_some()
        );
        assert_eq!(
            names(plan(&["--full", "--only", "flood-50k"]).unwrap()),
            ["flood-quiet", "flood-50k"]
        );
        assert_eq!(
            names(plan(&["--full", "--only", "echo"]).unwrap()),
            ["64f-100k-echo"]
        );
        let flood = plan(&["--flood", "20k"]).unwrap();
        assert_eq!(
            (flood.mode, flood.steps[1].flood()),
            (Mode::Custom, Some(Some(Rate::Pps(20_000))))
        );
        assert!(
            flood
                .steps
                .iter()
                .all(|step| step.echo && step.settle() == FLOOD_SETTLE)
        );
        assert_eq!(names(flood), ["flood-quiet", "flood-20k"]);
        let heavier = plan(&["--flood", "max", "--flows", "128", "--rate", "100k"]).unwrap();
        assert_eq!(
            names(heavier),
            ["flood-quiet-128f-100k-echo", "flood-max-128f-100k-echo"]
        );
        let smoke = plan(&[]).unwrap();
        assert_eq!((smoke.steps.len(), smoke.steps[0].flood()), (1, None));
        assert_eq!(
            smoke.run_bound(),
            smoke.warmup + smoke.measure + Duration::from_secs(30)
        );
        assert!(
            Contestant::Floor
                .cannot_run(&Step::floods(64, DEFAULT_RATE, 64, &[])[0])
                .is_some()
        );
        assert!(
            Contestant::Baseline
                .cannot_run(&Step::floods(64, DEFAULT_RATE, 64, &[])[0])
                .is_none()
        );
        for bad in [
            &["--only", "1024f"][..],
            &["--full", "--only", "none"],
            &["--full", "--echo"],
            &["--workers", "3"],
            &["--full", "--flood", "10k"],
            &["--flood", "0"],
            &["--takeover", "--flood", "10k"],
            &["--takeover", "--echo"],
            &["--workers", "0"],
            &["--forwarder-cpus", "7"],
            &["--payload", "19"],
            &["--load-threads", "0"],
        ] {
            assert!(plan(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn contestants_and_their_selection() {
        let cli = Cli::from_args(&[
            "--ringgate-bin",
            "old=/tmp/rg",
            "--ringgate-bin",
            "/x",
            "--ringgate-arg",
            "--task-run=default",
            "--forwarders",
            "ringgate:old,baseline",
        ])
        .unwrap();
        let plan = Plan::new(&cli, &[0, 1], "rg".into()).unwrap();
        let names: Vec<&str> = plan.contestants.iter().map(Contestant::name).collect();
        assert_eq!(names, ["ringgate:old", "baseline"]);
        assert_eq!(plan.ringgate_args, ["--task-run=default"]);
        let cli = Cli::from_args(&[
            "--proxy-protocol",
            "--variant",
            "fast=--task-run=default,--buffers=8192",
        ])
        .unwrap();
        let plan = Plan::new(&cli, &[0, 1], "rg".into()).unwrap();
        let variants: Vec<(&str, Vec<String>)> = plan
            .contestants
            .iter()
            .filter_map(|c| match c {
                Contestant::Ringgate { name, args, .. } if !args.is_empty() => {
                    Some((name.as_str(), args.clone()))
                }
                _ => None,
            })
            .collect();
        let strings =
            |args: &[&str]| -> Vec<String> { args.iter().map(|a| a.to_string()).collect() };
        assert_eq!(
            variants,
            [
                ("ringgate+pp", strings(&["--proxy-protocol=v2"])),
                (
                    "ringgate+pp-every",
                    strings(&["--proxy-protocol=v2", "--proxy-protocol-every"])
                ),
                (
                    "ringgate+fast",
                    strings(&["--task-run=default", "--buffers=8192"])
                ),
            ]
        );
        assert!(
            Plan::new(
                &Cli::from_args(&["--variant", "nolabel"]).unwrap(),
                &[0],
                "rg".into()
            )
            .is_err()
        );
        let cli = Cli::from_args(&["--ringgate-bin", "/x", "--forwarders", "ringgate:2"]).unwrap();
        assert!(Plan::new(&cli, &[0], "rg".into()).is_err());
    }

    #[test]
    fn layouts_share_out_the_cpus() {
        let layouts = |raw: &[&str], online: &[usize]| -> Vec<(Vec<usize>, Vec<usize>, bool)> {
            let layouts = layouts(&Cli::from_args(raw).unwrap(), online).unwrap();
            layouts
                .into_iter()
                .map(|l| (l.forwarder.0.clone(), l.load.0.clone(), l.overlap()))
                .collect()
        };
        assert_eq!(
            layouts(&["--workers", "1,2"], &[0, 1]),
            [(vec![0], vec![1], false), (vec![0, 1], vec![1], true)]
        );
        let sixteen: Vec<usize> = (0..16).collect();
        assert_eq!(
            layouts(&["--workers", "4", "--load-cpus", "8-9"], &sixteen),
            [(vec![0, 1, 2, 3], vec![8, 9], false)]
        );
        assert_eq!(
            layouts(&["--forwarder-cpus", "2,4"], &[0, 1, 2, 3, 4]),
            [(vec![2], vec![0, 1, 3, 4], false)]
        );
    }
}
