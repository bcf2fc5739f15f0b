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

fn redis_of(config: Config) -> crate::route::redis::Settings {
    match config.routes {
        Routes::Redis(settings) => settings,
        Routes::Fixed(_) => panic!("not Redis routing"),
    }
}

#[test]
fn sentinels_instance_and_bare_ports() {
    let config = cli(&[
        "--redis-sentinel",
        "127.0.0.1:26379, localhost:26380",
        "--redis-sentinel-master",
        "game",
        "--redis-sentinel-password",
        "spw",
        "--instance-id",
        "edge-1",
        "--disconnect-bare-ports",
        "off",
    ])
    .unwrap()
    .into_config(None, &[0])
    .unwrap();
    let redis = redis_of(config);
    let sentinel = redis.sentinel.expect("sentinels");
    assert_eq!(sentinel.places.len(), 2);
    assert!(sentinel.places[0].host.is_none() && sentinel.places[1].host.is_some());
    assert_eq!(sentinel.master, "game");
    assert_eq!(
        sentinel.handshake.password,
        Some(crate::route::redis::conn::Secret("spw".into()))
    );
    assert_eq!(redis.handshake.master.as_deref(), Some("game"));
    assert_eq!(
        redis.handshake.instance_channel.as_deref(),
        Some("udp_gate:disconnect:edge-1")
    );
    assert_eq!(redis.instance, "edge-1");
    assert!(!redis.bare_ports);

    let plain = redis_of(cli(&[]).unwrap().into_config(None, &[0]).unwrap());
    assert!(plain.sentinel.is_none() && plain.bare_ports && plain.handshake.master.is_none());
    assert!(!plain.instance.is_empty(), "the host name by default");

    for (args, flag) in [
        (&["--instance-id", "a b"][..], "--instance-id"),
        (&["--instance-id", ""], "--instance-id"),
        (
            &[
                "--redis-sentinel",
                "127.0.0.1:1",
                "--redis-url",
                "redis://127.0.0.1:1",
            ],
            "--redis-url",
        ),
        (
            &["--redis-sentinel", "no-such-host.invalid:1"],
            "--redis-sentinel",
        ),
    ] {
        let err = cli(args).unwrap().into_config(None, &[0]).unwrap_err();
        assert!(err.contains(flag), "{args:?}: {err}");
    }
}

#[test]
fn passwords_come_from_files_less_their_line_end() {
    let dir = std::env::temp_dir().join(format!("ringgate-pw-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("redis-password");
    std::fs::write(&file, "s3cret\r\n").unwrap();
    let path = file.to_str().unwrap();
    let redis = redis_of(
        cli(&[
            "--redis-password-file",
            path,
            "--redis-sentinel",
            "127.0.0.1:1",
            "--redis-sentinel-password-file",
            path,
        ])
        .unwrap()
        .into_config(None, &[0])
        .unwrap(),
    );
    let secret = Some(crate::route::redis::conn::Secret("s3cret".into()));
    assert_eq!(redis.handshake.password, secret);
    assert_eq!(redis.sentinel.unwrap().handshake.password, secret);
    // Both forms of one password are refused by the parser; a missing or empty file, here.
    assert!(cli(&["--redis-password", "x", "--redis-password-file", path]).is_err());
    std::fs::write(&file, "\n").unwrap();
    let missing = dir.join("absent");
    for bad in [path, missing.to_str().unwrap()] {
        let err = cli(&["--redis-password-file", bad])
            .unwrap()
            .into_config(None, &[0])
            .unwrap_err();
        assert!(
            err.contains("--redis-password-file") && err.contains(bad),
            "{err}"
        );
    }
    std::fs::write(&file, "pw").unwrap();
    let url = cli(&[
        "--redis-url",
        "redis://:pw@127.0.0.1:1",
        "--redis-password-file",
        path,
    ])
    .unwrap()
    .into_config(None, &[0])
    .unwrap_err();
    assert!(url.contains("keep one"), "{url}");
    std::fs::remove_dir_all(&dir).unwrap();
}
