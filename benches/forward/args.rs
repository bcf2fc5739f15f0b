//! A small `--name value` / `--flag` parser for the driver and its roles. The bench binary takes
//! no clap dependency for a dozen options, and cargo adds `--bench` to whatever we are given.

use std::collections::HashMap;
use std::str::FromStr;

/// Parsed options: `--name value` pairs and bare `--flag`s. Every option must be claimed by a
/// getter before [`Args::finish`], so a typo fails loudly instead of being ignored.
pub struct Args {
    values: HashMap<String, Option<String>>,
    claimed: Vec<String>,
}

impl Args {
    /// Parses `raw`; `flags` lists the options that take no value.
    pub fn parse(raw: &[String], flags: &[&str]) -> Result<Args, String> {
        let mut values = HashMap::new();
        let mut rest = raw.iter();
        while let Some(arg) = rest.next() {
            let name = arg
                .strip_prefix("--")
                .ok_or_else(|| format!("unexpected argument `{arg}`"))?;
            let value = if flags.contains(&name) {
                None
            } else {
                let value = rest
                    .next()
                    .ok_or_else(|| format!("option --{name} needs a value"))?;
                Some(value.clone())
            };
            values.insert(name.to_string(), value);
        }
        Ok(Args {
            values,
            claimed: Vec::new(),
        })
    }

    pub fn flag(&mut self, name: &str) -> bool {
        self.claimed.push(name.to_string());
        self.values.contains_key(name)
    }

    pub fn opt<T: FromStr>(&mut self, name: &str) -> Result<Option<T>, String>
    where
        T::Err: std::fmt::Display,
    {
        self.claimed.push(name.to_string());
        match self.values.get(name) {
            None | Some(None) => Ok(None),
            Some(Some(text)) => text
                .parse()
                .map(Some)
                .map_err(|e| format!("--{name} {text}: {e}")),
        }
    }

    pub fn get<T: FromStr>(&mut self, name: &str, default: T) -> Result<T, String>
    where
        T::Err: std::fmt::Display,
    {
        Ok(self.opt(name)?.unwrap_or(default))
    }

    pub fn required<T: FromStr>(&mut self, name: &str) -> Result<T, String>
    where
        T::Err: std::fmt::Display,
    {
        self.opt(name)?
            .ok_or_else(|| format!("option --{name} is required"))
    }

    /// Fails on any option no getter asked for.
    pub fn finish(self) -> Result<(), String> {
        let mut unknown: Vec<_> = self
            .values
            .keys()
            .filter(|name| !self.claimed.contains(name))
            .map(|name| format!("--{name}"))
            .collect();
        unknown.sort();
        if unknown.is_empty() {
            Ok(())
        } else {
            Err(format!("unknown option(s): {}", unknown.join(", ")))
        }
    }
}

/// Parses a CPU list such as `0`, `1,3` or `2-5`.
pub fn parse_cpu_list(text: &str) -> Result<Vec<usize>, String> {
    let mut cpus = Vec::new();
    for part in text.split(',').filter(|part| !part.is_empty()) {
        let bad = |_| format!("bad CPU list `{text}`");
        match part.split_once('-') {
            Some((first, last)) => {
                let (first, last): (usize, usize) =
                    (first.parse().map_err(bad)?, last.parse().map_err(bad)?);
                cpus.extend(first..=last);
            }
            None => cpus.push(part.parse().map_err(bad)?),
        }
    }
    if cpus.is_empty() {
        return Err(format!("empty CPU list `{text}`"));
    }
    Ok(cpus)
}

/// Writes a CPU list back in the comma form ringgate's `--cpus` takes.
pub fn format_cpu_list(cpus: &[usize]) -> String {
    cpus.iter()
        .map(|cpu| cpu.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// Self-checks of the pure logic above. Bench targets built with `harness = false` never run
/// `#[test]` functions, so the driver runs these under `cargo test --benches` instead.
pub mod checks {
    use super::*;

    fn strings(raw: &[&str]) -> Vec<String> {
        raw.iter().map(|s| s.to_string()).collect()
    }

    pub fn values_flags_and_unknowns() {
        let mut args = Args::parse(
            &strings(&["--flows", "64", "--echo", "--typo", "1"]),
            &["echo"],
        )
        .unwrap();
        assert_eq!(args.get("flows", 1usize), Ok(64));
        assert!(args.flag("echo"));
        assert_eq!(args.get("payload", 64usize), Ok(64));
        assert_eq!(args.finish(), Err("unknown option(s): --typo".to_string()));
    }

    pub fn cpu_lists() {
        assert_eq!(parse_cpu_list("0"), Ok(vec![0]));
        assert_eq!(parse_cpu_list("1,3-4"), Ok(vec![1, 3, 4]));
        assert!(parse_cpu_list("x").is_err());
        assert_eq!(format_cpu_list(&[1, 3]), "1,3");
    }

    pub const ALL: &[(&str, fn())] = &[
        ("args::values_flags_and_unknowns", values_flags_and_unknowns),
        ("args::cpu_lists", cpu_lists),
    ];
}
