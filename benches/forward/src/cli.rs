//! The driver's command line (clap) and the value types it parses: CPU lists and rates.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use clap::Parser;
use serde::{Serialize, Serializer};

/// ringgate against a tokio baseline and a recvmmsg/sendmmsg floor, under identical load.
#[derive(Parser, Debug)]
#[command(
    name = "forward",
    override_usage = "cargo bench -p ringgate-bench [-- OPTIONS]"
)]
pub struct Cli {
    /// Added by `cargo bench`, and ignored
    #[arg(long, hide = true)]
    pub bench: bool,
    /// Every step: 50k/100k/200k pps x 64/1024 flows, echo at 100k, max, the flood scenario
    /// (flood-quiet, flood-10k, -50k, -100k, -max) and the takeover scenario
    /// (takeover-1000f-150k) [default: a smoke run of 64 flows at 50k pps]
    #[arg(long, conflicts_with_all = ["flows", "rate", "payload", "echo", "flood", "takeover"])]
    pub full: bool,
    /// With --full: only the steps whose name contains TEXT (e.g. 1024f, echo, flood); a flood
    /// step brings its quiet reference run along
    #[arg(long, value_name = "TEXT", requires = "full")]
    pub only: Option<String>,
    /// One custom flood step: established echo load (--flows, --rate, --payload; default 64
    /// flows at 50k round trips/s) while new spoofed sources arrive at R per second (as 50k, or
    /// max), after a quiet run of the same load; needs root for a raw socket
    #[arg(long, value_name = "R")]
    pub flood: Option<Rate>,
    /// One custom takeover step: --flows (default 1000) at --rate (default 150k), a third of
    /// the flows echoed and the rest sunk, while a second ringgate takes over from the first
    /// (`--takeover`) in the middle of the window; ringgate contestants only
    #[arg(long, conflicts_with_all = ["flood", "echo"])]
    pub takeover: bool,
    /// The XDP testbed (root): client, forwarder and backend network namespaces joined by
    /// veths; the whole machine's CPU per forwarded datagram for direct (a veth pair of their
    /// own), routed (kernel forwarding), ringgate, ringgate+xdp-generic, ringgate+xdp-native,
    /// floor and baseline, at 100k/s and max (or --rate), --flows (default 32) of --payload
    /// bytes; --forwarders picks; results in target/bench/xdp.json
    #[arg(long, conflicts_with_all = ["full", "flood", "takeover", "echo", "ringgate_bin", "variant", "proxy_protocol", "ringgate_arg"])]
    pub xdp_testbed: bool,
    /// With --xdp-testbed: run every contestant at every rate this many times, the order of
    /// the contestants rotated each round; the table gives the median
    #[arg(long, value_name = "N", default_value_t = 3, value_parser = at_least(1), requires = "xdp_testbed")]
    pub rounds: usize,
    /// One custom step: this many flows, each its own client socket and loopback address
    /// [default: 64]
    #[arg(long, value_name = "N", value_parser = at_least(1))]
    pub flows: Option<usize>,
    /// One custom step: datagrams per second, as 50000, 50k or max [default: 50k]
    #[arg(long, value_name = "R")]
    pub rate: Option<Rate>,
    /// One custom step: payload bytes, at least the 20 of the generator's header [default: 64]
    #[arg(long, value_name = "B", value_parser = at_least(crate::wire::HEADER_LEN))]
    pub payload: Option<usize>,
    /// One custom step: the backend echoes and the generator measures round trips
    #[arg(long)]
    pub echo: bool,
    /// Worker counts to measure; every step and contestant runs at each
    #[arg(long, value_name = "LIST", value_delimiter = ',', default_value = "1", value_parser = at_least(1))]
    pub workers: Vec<usize>,
    /// Generator and backend threads, one socket each; the flows are spread over them
    #[arg(long, value_name = "M", default_value_t = 1, value_parser = at_least(1))]
    pub load_threads: usize,
    /// Contestants: ringgate, ringgate:LABEL (each --ringgate-bin), baseline, floor [default: all]
    /// (the XDP testbed's: direct, routed, ringgate, ringgate+xdp-generic, ringgate+xdp-native,
    /// floor, baseline)
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    pub forwarders: Vec<String>,
    /// CPUs for the forwarder; N workers get the first N [default: the first CPUs]
    #[arg(long, value_name = "LIST")]
    pub forwarder_cpus: Option<CpuList>,
    /// CPUs for the generator, backend, flood and driver [default: those the forwarder leaves,
    /// or the last CPU if it leaves none]
    #[arg(long, value_name = "LIST")]
    pub load_cpus: Option<CpuList>,
    /// Warm-up before each measured window [default: 1, smoke 0.3]
    #[arg(long, value_name = "S")]
    pub warmup_secs: Option<f64>,
    /// Length of each measured window [default: 3, smoke 1]
    #[arg(long, value_name = "S")]
    pub measure_secs: Option<f64>,
    /// The ringgate build measured as contestant ringgate and its variants [default:
    /// target/release/ringgate of this workspace, which must be current: cargo build --release]
    #[arg(long, value_name = "PATH")]
    pub ringgate: Option<PathBuf>,
    /// Another ringgate build, run beside the default one as contestant ringgate:LABEL (LABEL
    /// defaults to its position, 1, 2...); repeatable
    #[arg(long, value_name = "[LABEL=]PATH")]
    pub ringgate_bin: Vec<String>,
    /// Another contestant: the default ringgate with these arguments, as ringgate+LABEL, e.g.
    /// --variant pp=--proxy-protocol=v2; repeatable
    #[arg(long, value_name = "LABEL=ARG[,ARG...]")]
    pub variant: Vec<String>,
    /// Add the PROXY protocol variants: ringgate+pp (--proxy-protocol v2) and ringgate+pp-every
    /// (and --proxy-protocol-every); the backend strips the header
    #[arg(long)]
    pub proxy_protocol: bool,
    /// An extra argument for every ringgate contestant, e.g. --ringgate-arg=--task-run=default;
    /// repeatable
    #[arg(long, value_name = "ARG", allow_hyphen_values = true)]
    pub ringgate_arg: Vec<String>,
    /// Where ringgate's logs and forward.json go [default: target/bench]
    #[arg(long, value_name = "DIR")]
    pub output_dir: Option<PathBuf>,
}

#[cfg(test)]
impl Cli {
    /// Parses the driver's options as given after `cargo bench -p ringgate-bench --`.
    pub fn from_args(args: &[&str]) -> Result<Cli, String> {
        Cli::try_parse_from(std::iter::once("forward").chain(args.iter().copied()))
            .map_err(|e| e.to_string())
    }
}

/// A count of at least `min`.
fn at_least(min: usize) -> clap::builder::RangedU64ValueParser<usize> {
    clap::builder::RangedU64ValueParser::new().range(min as u64..)
}

/// A CPU list such as `0`, `1,3` or `2-5`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CpuList(pub Vec<usize>);

impl FromStr for CpuList {
    type Err = String;
    fn from_str(text: &str) -> Result<CpuList, String> {
        let bad = || format!("bad CPU list `{text}` (e.g. 0, 1,3 or 2-5)");
        let mut cpus = Vec::new();
        for part in text.split(',') {
            let (first, last) = part.split_once('-').unwrap_or((part, part));
            let (first, last): (usize, usize) = (
                first.parse().map_err(|_| bad())?,
                last.parse().map_err(|_| bad())?,
            );
            cpus.extend(first..=last);
        }
        Ok(CpuList(cpus))
    }
}

impl std::ops::Deref for CpuList {
    type Target = [usize];
    fn deref(&self) -> &[usize] {
        &self.0
    }
}

impl fmt::Display for CpuList {
    /// The comma form that ringgate's and the roles' `--cpus` take.
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let cpus: Vec<String> = self.0.iter().map(usize::to_string).collect();
        f.write_str(&cpus.join(","))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rate {
    Pps(u64),
    /// As fast as the generator can send: the saturation step.
    Max,
}

impl FromStr for Rate {
    type Err = String;
    fn from_str(text: &str) -> Result<Rate, String> {
        let (digits, scale) = text
            .strip_suffix('k')
            .map_or((text, 1), |digits| (digits, 1_000));
        match digits.parse::<u64>() {
            _ if text == "max" => Ok(Rate::Max),
            Ok(pps) if pps > 0 => Ok(Rate::Pps(pps * scale)),
            _ => Err(format!(
                "bad rate `{text}` (pps such as 50000 or 50k, or max)"
            )),
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

impl Serialize for Rate {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_and_cpu_lists() {
        assert_eq!("50k".parse(), Ok(Rate::Pps(50_000)));
        assert_eq!("1234".parse(), Ok(Rate::Pps(1_234)));
        assert_eq!("max".parse(), Ok(Rate::Max));
        assert!("0".parse::<Rate>().is_err());
        assert_eq!(Rate::Pps(200_000).to_string(), "200k");
        assert_eq!("1,3-4".parse(), Ok(CpuList(vec![1, 3, 4])));
        assert!("x".parse::<CpuList>().is_err() && "".parse::<CpuList>().is_err());
        assert_eq!(CpuList(vec![1, 3]).to_string(), "1,3");
    }

    #[test]
    fn the_xdp_testbed_is_a_mode_of_its_own() {
        let cli = Cli::from_args(&["--xdp-testbed", "--rate", "100k", "--flows", "8"]).unwrap();
        assert!(cli.xdp_testbed && cli.rate == Some(Rate::Pps(100_000)));
        assert!(Cli::from_args(&["--xdp-testbed", "--full"]).is_err());
        assert!(Cli::from_args(&["--xdp-testbed", "--echo"]).is_err());
    }
}
