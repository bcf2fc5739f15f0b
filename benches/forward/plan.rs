//! What a run measures, from the command line: the modes (smoke run, `--full`, one custom
//! step, and the plumbing check under `cargo test`), the steps, the contestants, and for each
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
}

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

    /// A short unique label such as `64f-50k`, `64f-100k-echo` or `1024f-max-1200B`.
    pub fn name(&self) -> String {
        let echo = if self.echo { "-echo" } else { "" };
        let payload = match self.payload_bytes {
            DEFAULT_PAYLOAD_BYTES => String::new(),
            bytes => format!("-{bytes}B"),
        };
        let scenario = match self.scenario {
            Scenario::Steady => "",
        };
        format!("{}f-{}{echo}{payload}{scenario}", self.flows, self.rate)
    }
}

/// The steps of `--full`, in the order the issue lists them.
fn full_steps() -> Vec<Step> {
    let paced = [64, 1024]
        .map(|flows| [50, 100, 200].map(|k| Step::steady(flows, Rate::Pps(k * 1_000), false)));
    let echo = Step::steady(DEFAULT_FLOWS, Rate::Pps(100_000), true);
    paced
        .into_iter()
        .flatten()
        .chain([echo, Step::steady(DEFAULT_FLOWS, Rate::Max, false)])
        .collect()
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Contestant {
    /// The real binary: cargo's build (`ringgate`) or another (`ringgate:LABEL`).
    Ringgate { name: String, bin: PathBuf },
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
        let one_way = *self == Contestant::Floor && step.echo;
        one_way.then_some("the floor forwards one direction only, echo steps do not apply")
    }
}

/// Every contestant the command line names (default: all), cargo's ringgate build first.
fn contestants(cli: &Cli, current: PathBuf) -> Result<Vec<Contestant>, String> {
    let mut all = vec![Contestant::Ringgate {
        name: "ringgate".into(),
        bin: current,
    }];
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
    /// `cargo bench --bench forward`: the CI smoke run, a few seconds.
    Smoke,
    /// `--full`: every step of the issue.
    Full,
    /// One step given by --flows/--rate/--payload/--echo.
    Custom,
    /// No `--bench` flag, i.e. `cargo test --benches`: self-checks and a brief run that checks
    /// the plumbing end to end; its numbers mean nothing.
    Plumbing,
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
        let custom = cli.flows.is_some() || cli.rate.is_some() || cli.payload.is_some() || cli.echo;
        let (mode, (warmup, measure)) = match (cli.full, custom, cli.bench) {
            (true, ..) => (Mode::Full, (1.0, 3.0)),
            (_, true, _) => (Mode::Custom, (1.0, 3.0)),
            (.., true) => (Mode::Smoke, (0.3, 1.0)),
            _ => (Mode::Plumbing, (0.1, 0.3)),
        };
        let mut steps = match mode {
            Mode::Full => full_steps(),
            Mode::Custom => {
                let step = Step::steady(
                    cli.flows.unwrap_or(DEFAULT_FLOWS),
                    cli.rate.unwrap_or(DEFAULT_RATE),
                    cli.echo,
                );
                vec![Step {
                    payload_bytes: cli.payload.unwrap_or(DEFAULT_PAYLOAD_BYTES),
                    ..step
                }]
            }
            Mode::Smoke | Mode::Plumbing => vec![Step::steady(DEFAULT_FLOWS, DEFAULT_RATE, false)],
        };
        if let Some(only) = &cli.only {
            steps.retain(|step| step.name().contains(only.as_str()));
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
        self.warmup + self.measure + Duration::from_secs(30)
    }

    /// Roughly how long the plan takes: both phases plus about 0.8 s per run to start and drain.
    pub fn estimate(&self) -> Duration {
        let runnable = |step| {
            self.contestants
                .iter()
                .filter(move |c| c.cannot_run(step).is_none())
        };
        let runs = self.steps.iter().flat_map(runnable).count() * self.layouts.len();
        (self.warmup + self.measure + Duration::from_millis(800)) * runs as u32
    }
}

checks! {
    modes_steps_and_names {
        let plan = |raw: &[&str]| Plan::new(&Cli::from_args(raw)?, &[0, 1], "ringgate".into());
        assert_eq!(plan(&["--bench"]).unwrap().mode, Mode::Smoke);
        assert_eq!(plan(&[]).unwrap().mode, Mode::Plumbing);
        let full = plan(&["--full", "--bench"]).unwrap();
        let names: Vec<String> = full.steps.iter().map(Step::name).collect();
        assert_eq!(names[2..], ["64f-200k", "1024f-50k", "1024f-100k", "1024f-200k", "64f-100k-echo", "64f-max"]);
        let custom = plan(&["--flows", "10000", "--rate", "max", "--payload", "1200", "--bench"]).unwrap();
        assert_eq!(custom.steps[0].name(), "10000f-max-1200B");
        assert_eq!(plan(&["--full", "--only", "1024f", "--bench"]).unwrap().steps.len(), 3);
        for bad in [&["--only", "1024f"][..], &["--full", "--only", "none"], &["--full", "--echo"], &["--workers", "3"],
            &["--workers", "0"], &["--forwarder-cpus", "7"], &["--payload", "19"], &["--load-threads", "0"]] {
            assert!(plan(bad).is_err(), "{bad:?}");
        }
    }

    contestants_and_their_selection {
        let cli = Cli::from_args(&["--ringgate-bin", "old=/tmp/rg", "--ringgate-bin", "/x",
            "--ringgate-arg", "--task-run=default", "--forwarders", "ringgate:old,baseline"]).unwrap();
        let plan = Plan::new(&cli, &[0, 1], "rg".into()).unwrap();
        let names: Vec<&str> = plan.contestants.iter().map(Contestant::name).collect();
        assert_eq!(names, ["ringgate:old", "baseline"]);
        assert_eq!(plan.ringgate_args, ["--task-run=default"]);
        let cli = Cli::from_args(&["--ringgate-bin", "/x", "--forwarders", "ringgate:2"]).unwrap();
        assert!(Plan::new(&cli, &[0], "rg".into()).is_err());
    }

    layouts_share_out_the_cpus {
        let layouts = |raw: &[&str], online: &[usize]| -> Vec<(Vec<usize>, Vec<usize>, bool)> {
            let layouts = layouts(&Cli::from_args(raw).unwrap(), online).unwrap();
            layouts.into_iter().map(|l| (l.forwarder.0.clone(), l.load.0.clone(), l.overlap())).collect()
        };
        assert_eq!(layouts(&["--workers", "1,2"], &[0, 1]), [(vec![0], vec![1], false), (vec![0, 1], vec![1], true)]);
        let sixteen: Vec<usize> = (0..16).collect();
        assert_eq!(layouts(&["--workers", "4", "--load-cpus", "8-9"], &sixteen), [(vec![0, 1, 2, 3], vec![8, 9], false)]);
        assert_eq!(layouts(&["--forwarder-cpus", "2,4"], &[0, 1, 2, 3, 4]), [(vec![2], vec![0, 1, 3, 4], false)]);
    }
}
