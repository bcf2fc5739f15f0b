//! The `ringgate` binary as a user runs it: arguments, environment, `.env`, signals.

mod util;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use util::binary::*;
use util::*;

#[test]
fn sigterm_stops_within_a_second_and_exits_zero() {
    let backend = Backend::start(LOCAL4, true);
    let dir = tempdir("sigterm");
    let mut cmd = ringgate(&dir);
    cmd.args([
        "--listen",
        LOCAL4,
        "--backend",
        &backend.addr.to_string(),
        "--workers",
        "2",
        "--no-pin",
    ]);
    let mut running = Running::spawn(cmd);
    let listen = running.listen();
    let client = udp(LOCAL4);
    client.send_to(b"alive?", listen).unwrap();
    assert_eq!(recv(&client).0, b"alive?");

    running.signal("TERM");
    let sent = Instant::now();
    let exit = loop {
        if let Some(exit) = running.child.try_wait().unwrap() {
            break exit;
        }
        assert!(
            sent.elapsed() < Duration::from_secs(1),
            "still running 1 s after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(5));
    };
    assert_eq!(exit.code(), Some(0), "SIGTERM must exit 0");
}

#[test]
fn udp_gate_listen_forms_reach_ringgate_over_ipv4_and_ipv6() {
    let backend6 = Backend::start(LOCAL6, true);
    let dir = tempdir("listen-forms");
    for form in [":{port}", "0.0.0.0:{port}", "[::]:{port}"] {
        let port = free_udp_port();
        let mut cmd = ringgate(&dir);
        cmd.env("PROXY_ADDR", form.replace("{port}", &port.to_string()))
            .args(["--backend", &backend6.addr.to_string()])
            .args(["--workers", "1", "--no-pin"]);
        let running = Running::spawn(cmd);
        running.ready_line();
        for (client, to) in [(LOCAL4, "127.0.0.1"), (LOCAL6, "[::1]")] {
            let c = udp(client);
            let to: SocketAddr = format!("{to}:{port}").parse().unwrap();
            c.send_to(b"dual", to).unwrap();
            let (reply, from) = recv(&c);
            assert_eq!(reply, b"dual", "{form} from {client}");
            assert_eq!(
                from, to,
                "{form}: the reply comes from the address the client used"
            );
        }
    }
}

#[test]
fn a_host_name_listen_address_is_resolved() {
    let backend = Backend::start(LOCAL4, true);
    let dir = tempdir("listen-name");
    let port = free_udp_port();
    let mut cmd = ringgate(&dir);
    cmd.env("PROXY_ADDR", format!("localhost:{port}"))
        .args(["--backend", &backend.addr.to_string()])
        .args(["--workers", "1", "--no-pin"]);
    let running = Running::spawn(cmd);
    assert_eq!(running.ready_field("listen"), format!("127.0.0.1:{port}"));
}

#[test]
fn host_names_work_where_udp_gate_takes_them() {
    let backend = Backend::start("[::]:0", true);
    let dir = tempdir("names");
    // BACKENDS=localhost:PORT
    let mut cmd = one_worker(&dir);
    cmd.env("BACKENDS", format!("localhost:{}", backend.addr.port()));
    let running = Running::spawn(cmd);
    let client = udp(LOCAL4);
    assert!(round_trip_within(&client, running.listen(), b"static", PATIENCE).is_some());
    drop(running);

    // REDIS_ADDR=localhost:PORT, and a backend value that is a name too.
    let redis = RedisServer::start();
    redis.set(BACKEND_KEY, &format!("localhost:{}", backend.addr.port()));
    let mut cmd = one_worker(&dir);
    cmd.env("REDIS_ADDR", format!("localhost:{}", redis.port));
    let running = Running::spawn(cmd);
    let client = udp(LOCAL4);
    assert!(round_trip_within(&client, running.listen(), b"redis", PATIENCE).is_some());
}

#[test]
fn a_bad_listen_address_names_the_variable_it_came_from_and_shows_an_example() {
    let dir = tempdir("listen-bad");
    for (flag, env) in [(None, Some("19132")), (Some("19132"), None)] {
        let mut cmd = ringgate(&dir);
        cmd.args(["--backend", "127.0.0.1:1"]);
        if let Some(value) = env {
            cmd.env("PROXY_ADDR", value);
        }
        if let Some(value) = flag {
            cmd.args(["--listen", value]);
        }
        let out = run_text(cmd);
        let stderr = out.stderr;
        assert_eq!(out.code, Some(2), "{stderr}");
        let named = if env.is_some() {
            "PROXY_ADDR"
        } else {
            "--listen"
        };
        assert!(stderr.contains(named), "{named}: {stderr}");
        assert!(stderr.contains(":19132"), "no example: {stderr}");
    }
}

#[test]
fn a_second_instance_on_the_same_port_exits_1() {
    let backend = Backend::start(LOCAL4, true);
    let dir = tempdir("second");
    let port = free_udp_port();
    let listen = format!("127.0.0.1:{port}");
    let start = || {
        let mut cmd = ringgate(&dir);
        cmd.args(["--listen", &listen, "--backend", &backend.addr.to_string()])
            .args(["--workers", "2", "--no-pin"]);
        cmd
    };
    let first = Running::spawn(start());
    first.ready_line();
    let out = run_text(start());
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    assert!(out.stderr.contains("in use"), "{}", out.stderr);
    // The first still has all the traffic.
    let c = udp(LOCAL4);
    c.send_to(b"mine", listen.parse::<SocketAddr>().unwrap())
        .unwrap();
    assert_eq!(recv(&c).0, b"mine");
}

#[test]
fn session_lines_map_players_to_backend_ports_at_the_default_level() {
    let backend = Backend::start(LOCAL4, true);
    let dir = tempdir("session-lines");
    let mut cmd = one_worker(&dir);
    cmd.env_remove("RUST_LOG")
        .args(["--backend", &backend.addr.to_string()])
        .args(["--idle-timeout", "1"]);
    let running = Running::spawn(cmd);
    let client = udp(LOCAL4);
    client.send_to(b"hi", running.listen()).unwrap();
    assert_eq!(recv(&client).0, b"hi");
    let (upstream, _) = backend.next();
    let me = client.local_addr().unwrap();
    let opened = running.line_with(&["new session: "]);
    assert!(
        opened.contains(&format!(
            "new session: {me} → {} (backend port {})",
            backend.addr,
            upstream.port()
        )),
        "{opened}"
    );
    let closed = running.line_with(&["session closed: "]);
    assert!(
        closed.contains(&format!("session closed: {me} (idle)")),
        "{closed}"
    );

    // --log-sessions off silences them.
    let mut cmd = one_worker(&dir);
    cmd.env_remove("RUST_LOG")
        .env("RINGGATE_LOG_SESSIONS", "off")
        .args(["--backend", &backend.addr.to_string()]);
    let quiet = Running::spawn(cmd);
    client.send_to(b"hush", quiet.listen()).unwrap();
    assert_eq!(recv(&client).0, b"hush");
    let log = quiet.log(Duration::from_millis(300));
    assert!(!log.iter().any(|l| l.contains("new session: ")), "{log:#?}");
}

#[test]
fn failures_that_used_to_be_silent_are_logged_at_the_default_level() {
    let dead = dead_addr();
    let redis = RedisServer::start();
    let dir = tempdir("silent");
    // A dead backend, an oversize datagram and drops, with a summary every second.
    let mut cmd = one_worker(&dir);
    cmd.env_remove("RUST_LOG")
        .args(["--backend", &dead.to_string(), "--buffer-size", "64"])
        .args(["--log-summary-secs", "1"]);
    let running = Running::spawn(cmd);
    let listen = running.listen();
    let client = udp(LOCAL4);
    client.send_to(b"anyone?", listen).unwrap();
    running.line_with(&["backend unreachable", &dead.to_string()]);
    client.send_to(&[0u8; 100], listen).unwrap();
    running.line_with(&["larger than --buffer-size"]);
    running.line_with(&["drops in the last 1 s:", "truncated=1"]);

    // Redis without the backend key.
    let mut cmd = one_worker(&dir);
    cmd.env_remove("RUST_LOG")
        .args(["--redis-addr", &redis.addr().to_string()]);
    let running = Running::spawn(cmd);
    client.send_to(b"where to?", running.listen()).unwrap();
    running.line_with(&["no backend key", "udp_gate:backend"]);
}

#[test]
fn the_affinity_mask_places_the_workers() {
    // What systemd's CPUAffinity= does, done with taskset: workers go on the allowed CPUs.
    let cpus: Vec<usize> = core_affinity::get_core_ids()
        .unwrap()
        .into_iter()
        .map(|c| c.id)
        .collect();
    let last = *cpus.last().unwrap();
    let backend = Backend::start(LOCAL4, true);
    let dir = tempdir("affinity");
    let mut cmd = wrapped(&dir, "taskset", &["-c", &last.to_string()]);
    cmd.args(["--listen", LOCAL4, "--backend", &backend.addr.to_string()]);
    let running = Running::spawn(cmd);
    assert_eq!(
        running.ready_field("workers"),
        "1",
        "one worker per allowed CPU"
    );
    let pid = running.child.id();
    let threads: Vec<(std::path::PathBuf, String)> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(|t| {
            let path = t.ok()?.path();
            let comm = std::fs::read_to_string(path.join("comm")).ok()?;
            Some((path, comm.trim().to_owned()))
        })
        .collect();
    let Some((worker, _)) = threads.iter().find(|(_, comm)| comm == "ringgate-w0") else {
        let names: Vec<&String> = threads.iter().map(|(_, c)| c).collect();
        panic!(
            "no worker thread among {names:?}; ringgate logged {:#?}",
            running.log(std::time::Duration::from_millis(200))
        );
    };
    let status = std::fs::read_to_string(worker.join("status")).unwrap();
    let allowed = status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .unwrap()
        .trim()
        .to_owned();
    assert_eq!(allowed, last.to_string());
}

#[test]
fn sighup_and_sigusr1_are_logged_and_do_not_stop_ringgate() {
    let backend = Backend::start(LOCAL4, true);
    let dir = tempdir("sighup");
    let mut cmd = one_worker(&dir);
    cmd.args(["--backend", &backend.addr.to_string()]);
    let running = Running::spawn(cmd);
    let listen = running.listen();
    let client = udp(LOCAL4);
    for signal in ["HUP", "USR1"] {
        running.signal(signal);
        running.line_with(&[&format!("SIG{signal} ignored")]);
        client.send_to(b"alive?", listen).unwrap();
        assert_eq!(recv(&client).0, b"alive?", "forwarding after SIG{signal}");
    }
}

#[test]
fn a_disconnect_message_cannot_forge_a_log_line() {
    let redis = RedisServer::start();
    let dir = tempdir("forge");
    let mut cmd = one_worker(&dir);
    cmd.args(["--redis-addr", &redis.addr().to_string()]);
    let running = Running::spawn(cmd);
    running.ready_line();
    // A valid message that matches nothing: it tells when the subscription is up.
    wait_for("the subscriber", || {
        redis.publish(DISCONNECT_CHANNEL, "40123") == 1
    });
    let message = "1x\n2026-01-01T00:00:00Z  INFO ringgate: FORGED\x1b[2J";
    redis.publish(DISCONNECT_CHANNEL, message);
    let line = running.wait_line("the invalid message", |line| {
        assert!(!line.starts_with("2026-01-01"), "a forged line: {line}");
        line.contains("invalid disconnect message")
    });
    let shown = r"1x\n2026-01-01T00:00:00Z  INFO ringgate: FORGED\u{1b}[2J";
    assert!(line.contains(shown), "{line}");
    assert!(!line.contains('\x1b'));
    // Nothing of it became a line of its own.
    let later = running.log(Duration::from_millis(200));
    assert!(
        !later.iter().any(|l| l.starts_with("2026-01-01")),
        "{later:?}"
    );
}

/// Arguments, environment, and the flag the error must name.
type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);

#[test]
fn bad_arguments_exit_non_zero_naming_the_flag() {
    let dir = tempdir("bad-args");
    let cases: &[Case] = &[
        (
            &["--backend", "127.0.0.1:1", "--buffers", "1000"],
            &[],
            "--buffers",
        ),
        (
            &["--backend", "127.0.0.1:1", "--workers", "0"],
            &[],
            "--workers",
        ),
        (
            &["--backend", "127.0.0.1:1", "--listen", "nope"],
            &[],
            "--listen",
        ),
        (&["--backend", "not-an-address"], &[], "--backend"),
        (
            &["--backend", "127.0.0.1:1", "--cpus", "4096"],
            &[],
            "--cpus",
        ),
        (
            &["--backend", "127.0.0.1:1", "--log-format", "xml"],
            &[],
            "--log-format",
        ),
        (
            &["--backend", "127.0.0.1:1"],
            &[("RINGGATE_BUFFER_SIZE", "abc")],
            "--buffer-size",
        ),
        (
            &["--backend", "127.0.0.1:1"],
            &[("LISTENER_COUNT", "many")],
            "LISTENER_COUNT",
        ),
        (&[], &[("REDIS_URL", "http://nope")], "--redis-url"),
        (
            &["--redis-addr", "no-such-host.invalid:6379"],
            &[],
            "--redis-addr",
        ),
        (&["--backend-allow", "10.0.0.0/33"], &[], "--backend-allow"),
        (&["--redis-timeout-ms", "0"], &[], "--redis-timeout-ms"),
    ];
    for (args, env, flag) in cases {
        let mut cmd = ringgate(&dir);
        cmd.args(*args).envs(env.iter().copied());
        let out = run_text(cmd);
        assert!(!out.success(), "{args:?} {env:?} was accepted");
        assert!(
            out.stderr.contains(flag),
            "{args:?} {env:?}: `{flag}` not named in: {}",
            out.stderr
        );
    }
}

#[test]
fn an_address_in_use_is_a_clear_start_up_error() {
    let dir = tempdir("in-use");
    // A plain (non-reuseport) socket holds the port, so ringgate's bind fails.
    let holder = std::net::UdpSocket::bind(LOCAL4).unwrap();
    let taken = holder.local_addr().unwrap().to_string();
    let mut cmd = ringgate(&dir);
    cmd.args(["--listen", &taken, "--backend", "127.0.0.1:1", "--no-pin"]);
    let out = run_text(cmd);
    assert_eq!(out.code, Some(1));
    assert!(
        out.stderr.contains("--listen") && out.stderr.contains(&taken),
        "{}",
        out.stderr
    );
}

#[test]
fn help_lists_every_environment_variable() {
    let dir = tempdir("help");
    let mut cmd = ringgate(&dir);
    cmd.arg("--help");
    let out = run_text(cmd);
    assert!(out.success());
    let help = out.stdout;
    for var in VARS.iter().filter(|v| **v != "LISTENER_COUNT") {
        assert!(help.contains(var), "--help does not mention {var}:\n{help}");
    }
    assert!(help.contains("LISTENER_COUNT"));
    // Every variable the CLI reads is in this list (so the tests clear it) and in README.md.
    let cli = [
        include_str!("../src/config/cli.rs"),
        include_str!("../src/config/upgrade.rs"),
        include_str!("../src/config/redis_args.rs"),
    ]
    .concat();
    let readme = include_str!("../README.md");
    for declared in cli.split("env = \"").skip(1) {
        let var = &declared[..declared.find('"').unwrap()];
        assert!(VARS.contains(&var), "{var} is missing from VARS");
        assert!(readme.contains(var), "README.md does not document {var}");
    }
}

#[test]
fn flags_beat_environment_which_beats_dotenv() {
    let dir = tempdir("dotenv");
    std::fs::write(
        dir.join(".env"),
        "PROXY_ADDR=127.0.0.1:0\nBACKENDS=127.0.0.1:7001,127.0.0.1:7002\nWORKERS=1\nRINGGATE_NO_PIN=true\n",
    )
    .unwrap();

    let from_dotenv = Running::spawn(ringgate(&dir));
    assert_eq!(
        from_dotenv.ready_field("backends"),
        "[127.0.0.1:7001, 127.0.0.1:7002]"
    );
    drop(from_dotenv);

    let mut env_wins = ringgate(&dir);
    env_wins.env("BACKENDS", "127.0.0.1:7003");
    let env_wins = Running::spawn(env_wins);
    assert_eq!(env_wins.ready_field("backends"), "[127.0.0.1:7003]");
    drop(env_wins);

    let mut flag_wins = ringgate(&dir);
    flag_wins
        .env("BACKENDS", "127.0.0.1:7003")
        .args(["--backend", "127.0.0.1:7004"]);
    let flag_wins = Running::spawn(flag_wins);
    assert_eq!(flag_wins.ready_field("backends"), "[127.0.0.1:7004]");
}

#[test]
fn a_dotenv_in_a_parent_directory_is_ignored() {
    // udp-gate reads ./.env only; a parent's .env (a home directory's, say) must not leak in.
    let parent = tempdir("dotenv-parent");
    let child = parent.join("child");
    std::fs::create_dir_all(&child).unwrap();
    std::fs::write(
        parent.join(".env"),
        "BACKENDS=127.0.0.1:7001
",
    )
    .unwrap();
    let mut cmd = one_worker(&child);
    cmd.args(["--redis-addr", &format!("127.0.0.1:{}", free_tcp_port())]);
    // Without the parent's BACKENDS there is no static backend: routes come from Redis.
    let running = Running::spawn(cmd);
    assert_eq!(running.ready_field("backends"), "[]");
    // A .env in the working directory is still read.
    std::fs::write(child.join(".env"), "BACKENDS=127.0.0.1:7002\n").unwrap();
    let running = Running::spawn(one_worker(&child));
    assert_eq!(running.ready_field("backends"), "[127.0.0.1:7002]");
}

#[test]
fn udp_gate_listener_count_sets_the_worker_count() {
    let dir = tempdir("listener-count");
    let mut cmd = ringgate(&dir);
    cmd.env("LISTENER_COUNT", "2").args([
        "--listen",
        LOCAL4,
        "--backend",
        "127.0.0.1:1",
        "--no-pin",
    ]);
    let running = Running::spawn(cmd);
    assert_eq!(running.ready_field("workers"), "2");
}

#[test]
fn json_logs_are_json() {
    let dir = tempdir("json");
    let mut cmd = ringgate(&dir);
    cmd.args([
        "--listen",
        LOCAL4,
        "--backend",
        "127.0.0.1:1",
        "--no-pin",
        "--log-format",
        "json",
    ]);
    let running = Running::spawn(cmd);
    let line = running.ready_line();
    let parsed: serde_json::Value = serde_json::from_str(&line).expect("a JSON log line");
    assert_eq!(parsed["fields"]["message"], "ready");
}

#[test]
fn a_low_open_files_limit_keeps_a_reserve_that_sessions_never_take() {
    let backend = Backend::start(LOCAL4, true);
    let dir = tempdir("nofile");
    // 256 descriptors: the reserve (64, 64 metrics connections, 8 for the worker) leaves 120,
    // of which evictions' slack takes a part. Past that, new clients are dropped before any
    // descriptor is spent.
    let mut cmd = wrapped(&dir, "sh", &["-c", r#"ulimit -n 256 && exec "$0" "$@""#]);
    cmd.args(["--listen", LOCAL4, "--backend", &backend.addr.to_string()])
        .args(["--no-pin", "--workers", "1", "--new-sessions-per-ip", "0"])
        .args(["--metrics", "127.0.0.1:0"]);
    let running = Running::spawn(cmd);
    let line = running.ready_line();
    assert!(line.contains("ready"));
    let listen: SocketAddr = field(&line, "listen").parse().unwrap();
    let metrics = metrics_of(&line);
    // Players, each confirmed (it sends again after the answer) so none is ever evicted,
    // until one is refused: sessions stop before the reserve, with the reason counted.
    let mut players = Vec::new();
    let refused = loop {
        assert!(players.len() < 200, "sessions never stopped");
        let p = udp(LOCAL4);
        if round_trip_within(&p, listen, b"hello", Duration::from_millis(300)).is_none() {
            break p;
        }
        assert!(round_trip_within(&p, listen, b"again", PATIENCE).is_some());
        players.push(p);
    };
    drop(refused);
    let reserve = r#"ringgate_drops_total{reason="fd_reserve"}"#;
    wait_for("the refusal to be counted", || {
        try_http_get(metrics, "/metrics").is_ok_and(|(_, m)| sample(&m, reserve) > Some(0))
    });
    let (_, m) = http_get(metrics, "/metrics");
    let created = sample(&m, "ringgate_sessions_created_total").unwrap();
    assert_eq!(created, players.len() as u64);
    assert!(
        created >= 80,
        "only {created} sessions under a limit of 256"
    );
    assert_eq!(
        sample(&m, r#"ringgate_drops_total{reason="socket_error"}"#),
        Some(0)
    );
    // The reserve is intact: well under the limit, whatever sessions could not have.
    let fds = open_fds(running.child.id());
    assert!(fds <= 256 - 128, "ringgate holds {fds} of 256 descriptors");
    // Health and the established players are untouched.
    assert_eq!(http_get(metrics, "/healthz").0, 200);
    players[0].send_to(b"still here", listen).unwrap();
    assert_eq!(recv(&players[0]).0, b"still here");
    // The refusal was logged, once.
    let warnings = running
        .log(Duration::from_millis(200))
        .into_iter()
        .filter(|l| l.contains("session table full"))
        .count();
    assert_eq!(warnings, 1);
}

#[test]
fn udp_gate_environment_and_dotenv_work_unchanged() {
    let redis = RedisServer::with_password("pa55word");
    let backend = Backend::start(LOCAL4, true);
    redis.cmd::<()>(2, &["SET", "custom:key", &backend.addr.to_string()]);
    let dir = tempdir("udp-gate-env");
    std::fs::write(
        dir.join(".env"),
        format!(
            "PROXY_ADDR=127.0.0.1:0\nREDIS_ADDR=127.0.0.1:{}\nREDIS_PASSWORD=pa55word\nREDIS_DB=2\n\
             REDIS_BACKEND_KEY=custom:key\nREDIS_DISCONNECT_CHANNEL=custom:chan\nLISTENER_COUNT=1\n\
             BATCH_SIZE=64\nWORKER_COUNT=8\nQUEUE_SIZE=1024\nRINGGATE_NO_PIN=1\n",
            redis.port
        ),
    )
    .unwrap();
    let mut cmd = ringgate(&dir);
    cmd.args(["--metrics", "127.0.0.1:0"]);
    let running = Running::spawn(cmd);
    let line = running.ready_line();
    let listen: SocketAddr = field(&line, "listen").parse().unwrap();
    let metrics = metrics_of(&line);
    wait_for("readiness", || http_get(metrics, "/readyz").0 == 200);

    let client = udp(LOCAL4);
    client.send_to(b"via redis", listen).unwrap();
    assert_eq!(recv(&client).0, b"via redis");
    let (upstream, _) = backend.next();
    assert_eq!(
        redis.publish("custom:chan", &upstream.port().to_string()),
        1
    );
    let closed = r#"ringgate_sessions_closed_total{reason="disconnect"}"#;
    wait_for("the disconnect", || {
        sample(&http_get(metrics, "/metrics").1, closed) == Some(1)
    });

    let log = running.log(Duration::from_millis(100));
    for var in ["BATCH_SIZE", "WORKER_COUNT", "QUEUE_SIZE"] {
        let warnings = log
            .iter()
            .filter(|l| l.contains(&format!("{var} is a udp-gate setting")))
            .count();
        assert_eq!(warnings, 1, "{var}: {log:#?}");
    }
    assert!(
        log.iter().all(|l| !l.contains("pa55word")),
        "the password was logged"
    );
}

#[test]
fn redis_url_overrides_the_parts_and_a_wrong_password_never_leaks() {
    let redis = RedisServer::with_password("right");
    let dir = tempdir("redis-url");
    let mut cmd = one_worker(&dir);
    cmd.env("REDIS_ADDR", "127.0.0.1:1").env(
        "REDIS_URL",
        format!("redis://:wrong-horse@127.0.0.1:{}/0", redis.port),
    );
    // A refused password at start-up is a mistake in the settings: exit, as udp-gate does,
    // naming the setting and the URL's address (not REDIS_ADDR's), never the password.
    let out = run_text(cmd);
    let stderr = out.stderr;
    assert_eq!(out.code, Some(1), "{stderr}");
    assert!(stderr.contains("REDIS_PASSWORD"), "{stderr}");
    assert!(stderr.contains(&redis.port.to_string()), "{stderr}");
    assert!(
        !stderr.contains("wrong-horse"),
        "the password was printed: {stderr}"
    );
    assert!(!stderr.contains(": ready "), "{stderr}");
}
