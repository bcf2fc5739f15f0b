//! Parsing and validating the command line.

use super::*;

fn cli(args: &[&str]) -> Result<Cli, clap::Error> {
    Cli::try_parse_from(std::iter::once("ringgate").chain(args.iter().copied()))
}

#[test]
fn cpu_lists() {
    assert_eq!(parse_cpu_list("0-3,6"), Ok(CpuList(vec![0, 1, 2, 3, 6])));
    assert_eq!(parse_cpu_list("1"), Ok(CpuList(vec![1])));
    assert!(parse_cpu_list("3-1").is_err());
    assert!(parse_cpu_list("a").is_err());
    assert!(parse_cpu_list("").is_err());
}

#[test]
fn bad_values_name_their_flag() {
    for (args, flag) in [
        (
            &["--backend", "127.0.0.1:1", "--buffers", "1000"][..],
            "--buffers",
        ),
        (&["--backend", "127.0.0.1:1", "--workers", "0"], "--workers"),
        (&["--backend", "nope"], "--backend"),
        (
            &["--backend", "127.0.0.1:1", "--listen", "19132"],
            "--listen",
        ),
        (
            &["--backend", "127.0.0.1:1", "--idle-timeout", "0"],
            "--idle-timeout",
        ),
    ] {
        // Some values are refused by the parser, others (the listen address) when the
        // configuration is built; either way the message names the flag.
        let err = match cli(args) {
            Err(e) => e.to_string(),
            Ok(parsed) => parsed.into_config(None, &[0]).unwrap_err(),
        };
        assert!(err.contains(flag), "{args:?}: {err}");
    }
}

#[test]
fn workers_follow_flag_then_listener_count_then_cpus() {
    let parsed = |args: &[&str], lc: Option<&str>| {
        cli(args)
            .unwrap()
            .into_config(lc.map(String::from), &[0, 1, 2, 3])
            .map(|c| c.workers)
    };
    let base = ["--backend", "127.0.0.1:1"];
    assert_eq!(parsed(&base, None), Ok(4));
    assert_eq!(parsed(&base, Some("2")), Ok(2));
    assert_eq!(
        parsed(&[&base[..], &["--workers", "3"]].concat(), Some("2")),
        Ok(3)
    );
    assert_eq!(
        parsed(&[&base[..], &["--cpus", "1-2"]].concat(), None),
        Ok(2)
    );
    assert!(
        parsed(&base, Some("x"))
            .unwrap_err()
            .contains("LISTENER_COUNT")
    );
    assert!(
        parsed(&[&base[..], &["--cpus", "9"]].concat(), None)
            .unwrap_err()
            .contains("--cpus")
    );
}

#[test]
fn default_pinning_follows_the_affinity_mask() {
    let args = cli(&["--backend", "127.0.0.1:1"]).unwrap();
    let config = args.into_config(None, &[2, 5]).unwrap();
    assert_eq!((config.workers, config.cpus), (2, Some(vec![2, 5])));
    let args = cli(&["--backend", "127.0.0.1:1", "--cpus", "1"]).unwrap();
    assert!(args.into_config(None, &[2, 5]).is_err());
}

#[test]
fn backends_or_redis_is_decided_once() {
    let fixed = cli(&["--backend", "127.0.0.1:1"]).unwrap();
    let fixed = fixed.into_config(None, &[0]).unwrap();
    assert!(matches!(fixed.routes, Routes::Fixed(ref b) if b.len() == 1));
    let redis = cli(&["--redis-addr", "127.0.0.1:6390"]).unwrap();
    let redis = redis.into_config(None, &[0]).unwrap();
    assert!(matches!(redis.routes, Routes::Redis(ref s) if s.addr.port() == 6390));
}

#[test]
fn task_run_modes_parse_by_name() {
    for mode in TaskRun::ALL {
        let args = cli(&["--backend", "127.0.0.1:1", "--task-run", mode.name()]).unwrap();
        assert_eq!(args.task_run, mode);
    }
    assert!(cli(&["--backend", "127.0.0.1:1", "--task-run", "eager"]).is_err());
}
