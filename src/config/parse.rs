//! Values the command line takes that clap cannot parse alone: CPU lists, powers of two,
//! rates, and the ring's task-run modes by name.

use clap::ValueEnum;
use clap::builder::PossibleValue;

use crate::admission::rate::{self, RateLimit};
use crate::sys::buf_ring::ENTRIES_MAX;
use crate::sys::setup::TaskRun;

/// A list of CPU ids, as written `0-3,6`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CpuList(pub Vec<usize>);

pub(super) fn parse_cpu_list(text: &str) -> Result<CpuList, String> {
    let mut cpus = Vec::new();
    for part in text.split(',').map(str::trim) {
        let (lo, hi) = part.split_once('-').unwrap_or((part, part));
        let parse = |s: &str| {
            s.trim()
                .parse::<usize>()
                .map_err(|_| format!("`{part}` is not a CPU number or range like 0-3"))
        };
        let (lo, hi) = (parse(lo)?, parse(hi)?);
        if lo > hi || hi >= 4096 {
            return Err(format!("`{part}` is not a valid CPU range"));
        }
        cpus.extend(lo..=hi);
    }
    Ok(CpuList(cpus))
}

fn parse_power_of_two(text: &str, min: u32, max: u32) -> Result<u32, String> {
    let n: u32 = text
        .parse()
        .map_err(|_| format!("`{text}` is not a number"))?;
    if !n.is_power_of_two() || n < min || n > max {
        return Err(format!("must be a power of two from {min} to {max}"));
    }
    Ok(n)
}

/// `RATE[/BURST]`; `0` is no limit. A value parser yields the field's inner type, so "no
/// limit" travels as a limit of zero and becomes `None` in [`Cli::into_config`].
pub(super) fn parse_rate(text: &str) -> Result<RateLimit, String> {
    Ok(rate::parse(text)?.unwrap_or(RateLimit {
        per_sec: 0.0,
        burst: 0.0,
    }))
}

pub(super) fn parse_buffers(text: &str) -> Result<u32, String> {
    parse_power_of_two(text, 2, ENTRIES_MAX)
}

pub(super) fn parse_ring_entries(text: &str) -> Result<u32, String> {
    parse_power_of_two(text, 8, 32_768)
}

/// `--task-run` names the ring's modes; the wall's type knows nothing of clap.
impl ValueEnum for TaskRun {
    fn value_variants<'a>() -> &'a [Self] {
        &TaskRun::ALL
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        Some(PossibleValue::new(self.name()))
    }
}
