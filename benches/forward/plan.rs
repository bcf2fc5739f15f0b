//! What a run measures: the modes (short smoke run, `--full`, a custom single step, and the
//! quick plumbing check under `cargo test`), their steps, the forwarders, the CPU sets and the
//! phase lengths. Pure data built from the command line; nothing here touches a socket.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::args::{self, Args};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Forwarder {
    Ringgate,
    Baseline,
    Floor,
}

impl Forwarder {
    pub const ALL: [Forwarder; 3] = [Forwarder::Ringgate, Forwarder::Baseline, Forwarder::Floor];

    pub fn name(self) -> &'static str {
        match self {
            Forwarder::Ringgate => "ringgate",
            Forwarder::Baseline => "baseline",
            Forwarder::Floor => "floor",
        }
    }

    fn parse(name: &str) -> Result<Forwarder, String> {
        Forwarder::ALL
            .into_iter()
            .find(|forwarder| forwarder.name() == name)
            .ok_or_else(|| format!("unknown forwarder `{name}` (ringgate, baseline, floor)"))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rate {
    Pps(u64),
    /// As fast as the generator can send: the saturation step.
    Max,
}

impl Rate {
    fn parse(text: &str) -> Result<Rate, String> {
        if text == "max" {
            return Ok(Rate::Max);
        }
        let (digits, scale) = match text.strip_suffix('k') {
            Some(digits) => (digits, 1_000),
            None => (text, 1),
        };
        match digits.parse::<u64>() {
            Ok(pps) if pps > 0 => Ok(Rate::Pps(pps * scale)),
            _ => Err(format!(
                "bad rate `{text}` (a number of pps such as 50000 or 50k, or max)"
            )),
        }
    }

    /// The form the generator's `--rate` takes.
    pub fn arg(self) -> String {
        match self {
            Rate::Pps(pps) => pps.to_string(),
            Rate::Max => "max".to_string(),
        }
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Rate::Pps(pps) if pps % 1_000 == 0 => write!(f, "{}k", pps / 1_000),
            Rate::Pps(pps) => write!(f, "{pps}"),
            Rate::Max => f.write_str("max"),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    pub flows: usize,
    pub payload_bytes: usize,
    pub rate: Rate,
    /// The backend echoes every datagram and the generator measures round trips.
    pub echo: bool,
}

impl Step {
    fn new(flows: usize, rate: Rate, echo: bool) -> Step {
        Step {
            flows,
            payload_bytes: DEFAULT_PAYLOAD_BYTES,
            rate,
            echo,
        }
    }

    /// A short unique label such as `64f-50k`, `64f-100k-echo` or `1024f-max-1200B`.
    pub fn name(&self) -> String {
        let mut name = format!("{}f-{}", self.flows, self.rate);
        if self.echo {
            name.push_str("-echo");
        }
        if self.payload_bytes != DEFAULT_PAYLOAD_BYTES {
            name.push_str(&format!("-{}B", self.payload_bytes));
        }
        name
    }
}

const DEFAULT_FLOWS: usize = 64;
const DEFAULT_PAYLOAD_BYTES: usize = 64;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// `cargo bench --bench forward`: the CI smoke run, a few seconds.
    Short,
    /// `--full`: every step of the issue.
    Full,
    /// One step given by --flows/--rate/--payload/--echo.
    Custom,
    /// Run without `--bench`, i.e. by `cargo test --benches`: checks the plumbing end to end in
    /// well under a second per forwarder; numbers from a debug build mean nothing.
    Test,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Short => "short",
            Mode::Full => "full",
            Mode::Custom => "custom",
            Mode::Test => "test",
        }
    }
}

pub struct Plan {
    pub mode: Mode,
    pub steps: Vec<Step>,
    pub forwarders: Vec<Forwarder>,
    pub warmup: Duration,
    pub measure: Duration,
    pub forwarder_cpus: Vec<usize>,
    pub load_cpus: Vec<usize>,
    /// The ringgate binary to run: cargo's build of this package unless `--ringgate PATH`.
    pub ringgate_binary: PathBuf,
    pub write_json: bool,
}

pub const USAGE: &str = "\
usage: cargo bench --bench forward [-- OPTIONS]
  (no option)          short smoke run: 64 flows at 50k pps, 1 s per forwarder
  --full               every step: 50k/100k/200k pps x 64/1024 flows, echo at 100k, max
  --only TEXT          with --full: only steps whose name contains TEXT (e.g. 1024f, echo)
  --flows N --rate R --payload B --echo
                       one custom step instead (R: pps, 50k, or max)
  --forwarders LIST    subset of ringgate,baseline,floor (default: all three)
  --warmup-secs S      warm-up before the measured window
  --measure-secs S     length of the measured window
  --forwarder-cpus L   CPUs for the forwarder under test (default 0)
  --load-cpus L        CPUs for the generator, backend and driver (default 1)
  --ringgate PATH      another ringgate binary (default: the one cargo just built)";

/// The steps of `--full`, in the order the issue lists them.
fn full_steps() -> Vec<Step> {
    let mut steps = Vec::new();
    for flows in [64, 1024] {
        for pps in [50_000, 100_000, 200_000] {
            steps.push(Step::new(flows, Rate::Pps(pps), false));
        }
    }
    steps.push(Step::new(DEFAULT_FLOWS, Rate::Pps(100_000), true));
    steps.push(Step::new(DEFAULT_FLOWS, Rate::Max, false));
    steps
}

fn seconds(value: f64, name: &str) -> Result<Duration, String> {
    Duration::try_from_secs_f64(value).map_err(|e| format!("--{name} {value}: {e}"))
}

impl Plan {
    pub fn from_args(raw: &[String]) -> Result<Plan, String> {
        let mut args = Args::parse(raw, &["full", "bench", "echo"])?;
        // cargo passes --bench to harness = false targets under `cargo bench` only.
        let benching = args.flag("bench");
        let full = args.flag("full");
        let only: Option<String> = args.opt("only")?;
        let flows: Option<usize> = args.opt("flows")?;
        let rate: Option<String> = args.opt("rate")?;
        let payload_bytes: Option<usize> = args.opt("payload")?;
        let echo = args.flag("echo");
        let custom = flows.is_some() || rate.is_some() || payload_bytes.is_some() || echo;

        let mode = match (full, custom, benching) {
            (true, true, _) => {
                return Err(
                    "--full runs fixed steps; drop --flows/--rate/--payload/--echo, or --full"
                        .into(),
                );
            }
            (true, false, _) => Mode::Full,
            (false, true, _) => Mode::Custom,
            (false, false, true) => Mode::Short,
            (false, false, false) => Mode::Test,
        };
        if only.is_some() && mode != Mode::Full {
            return Err("--only filters the steps of --full".into());
        }
        let (default_warmup, default_measure) = match mode {
            Mode::Full | Mode::Custom => (1.0, 3.0),
            Mode::Short => (0.3, 1.0),
            Mode::Test => (0.1, 0.3),
        };
        let warmup = seconds(args.get("warmup-secs", default_warmup)?, "warmup-secs")?;
        let measure = seconds(args.get("measure-secs", default_measure)?, "measure-secs")?;
        if measure < Duration::from_millis(100) {
            return Err("--measure-secs below 0.1 s measures nothing but clock ticks".into());
        }

        let mut steps = match mode {
            Mode::Full => full_steps(),
            Mode::Custom => vec![Step {
                flows: flows.unwrap_or(DEFAULT_FLOWS),
                payload_bytes: payload_bytes.unwrap_or(DEFAULT_PAYLOAD_BYTES),
                rate: Rate::parse(rate.as_deref().unwrap_or("50k"))?,
                echo,
            }],
            Mode::Short | Mode::Test => vec![Step::new(DEFAULT_FLOWS, Rate::Pps(50_000), false)],
        };
        if let Some(only) = &only {
            steps.retain(|step| step.name().contains(only.as_str()));
            if steps.is_empty() {
                return Err(format!("--only {only} matches no step of --full"));
            }
        }
        if let Some(step) = steps
            .iter()
            .find(|step| step.flows == 0 || step.payload_bytes < crate::wire::HEADER_LEN)
        {
            return Err(format!(
                "step {} needs at least 1 flow and {} payload bytes",
                step.name(),
                crate::wire::HEADER_LEN
            ));
        }

        let forwarders = match args.opt::<String>("forwarders")? {
            None => Forwarder::ALL.to_vec(),
            Some(list) => list
                .split(',')
                .map(Forwarder::parse)
                .collect::<Result<_, _>>()?,
        };
        let forwarder_cpus = args::parse_cpu_list(&args.get("forwarder-cpus", "0".to_string())?)?;
        let load_cpus = args::parse_cpu_list(&args.get("load-cpus", "1".to_string())?)?;
        let ringgate_binary =
            args.get("ringgate", PathBuf::from(env!("CARGO_BIN_EXE_ringgate")))?;
        args.finish()?;
        Ok(Plan {
            mode,
            steps,
            forwarders,
            warmup,
            measure,
            forwarder_cpus,
            load_cpus,
            ringgate_binary,
            write_json: mode != Mode::Test,
        })
    }

    /// A generous upper bound on one forwarder's run in one step, for child lifetimes.
    pub fn run_bound(&self) -> Duration {
        self.warmup + self.measure + Duration::from_secs(30)
    }

    /// Roughly how long the whole plan takes: both phases, plus about 0.8 s per run for start-up
    /// and draining.
    pub fn estimate(&self) -> Duration {
        let runs = self
            .steps
            .iter()
            .map(|step| {
                self.forwarders
                    .iter()
                    .filter(|&&forwarder| !(step.echo && forwarder == Forwarder::Floor))
                    .count()
            })
            .sum::<usize>() as u32;
        (self.warmup + self.measure + Duration::from_millis(800)) * runs
    }
}

/// Self-checks of the pure logic above. Bench targets built with `harness = false` never run
/// `#[test]` functions, so the driver runs these under `cargo test --benches` instead.
pub mod checks {
    use super::*;

    fn plan(raw: &[&str]) -> Result<Plan, String> {
        Plan::from_args(&raw.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    pub fn modes_follow_the_flags() {
        assert_eq!(plan(&["--bench"]).unwrap().mode, Mode::Short);
        assert_eq!(plan(&[]).unwrap().mode, Mode::Test);
        let full = plan(&["--full", "--bench"]).unwrap();
        assert_eq!(full.steps.len(), 8);
        assert_eq!(full.steps[7].name(), "64f-max");
        assert_eq!(full.steps[6].name(), "64f-100k-echo");
        let custom = plan(&[
            "--flows",
            "10000",
            "--rate",
            "max",
            "--payload",
            "1200",
            "--bench",
        ])
        .unwrap();
        assert_eq!(custom.steps[0].name(), "10000f-max-1200B");
    }

    pub fn only_filters_full_steps() {
        let only = plan(&["--full", "--only", "1024f", "--bench"]).unwrap();
        assert_eq!(only.steps.len(), 3);
        assert!(plan(&["--only", "1024f", "--bench"]).is_err());
        assert!(plan(&["--full", "--only", "nothing", "--bench"]).is_err());
    }

    pub fn rates() {
        assert_eq!(Rate::parse("50k"), Ok(Rate::Pps(50_000)));
        assert_eq!(Rate::parse("1234"), Ok(Rate::Pps(1_234)));
        assert_eq!(Rate::parse("max"), Ok(Rate::Max));
        assert!(Rate::parse("0").is_err());
        assert_eq!(Rate::Pps(200_000).to_string(), "200k");
    }

    pub const ALL: &[(&str, fn())] = &[
        ("plan::modes_follow_the_flags", modes_follow_the_flags),
        ("plan::only_filters_full_steps", only_filters_full_steps),
        ("plan::rates", rates),
    ];
}
