//! Fleet features through the binary: Redis Sentinel (finding the master, following a
//! failover), instance heartbeats and per-instance disconnect channels, and the disconnect
//! channel's limits. Every Redis and sentinel process is the test's own, on free loopback
//! ports (`util::sentinel::SentinelGroup`, `util::RedisServer`).

mod util;

use std::net::{SocketAddr, UdpSocket};
use std::process::Command;
use std::time::{Duration, Instant};

use util::binary::*;
use util::load::Load;
use util::sentinel::{Passwords, SentinelGroup, wait_within};
use util::*;

const CLOSED_DISCONNECT: &str = r#"ringgate_sessions_closed_total{reason="disconnect"}"#;
const REFUSED: &str = r#"ringgate_redis_disconnect_messages_total{result="refused"}"#;
const OVERSIZE: &str = r#"ringgate_redis_disconnect_messages_total{result="oversize"}"#;
const MATCHED: &str = r#"ringgate_redis_disconnect_messages_total{result="matched"}"#;
const UNMATCHED: &str = r#"ringgate_redis_disconnect_messages_total{result="unmatched"}"#;
const INVALID: &str = r#"ringgate_redis_disconnect_messages_total{result="invalid"}"#;
const SUBSCRIBER_FAILURES: &str =
    r#"ringgate_redis_connection_failures_total{connection="subscriber"}"#;
const OVERSIZE_REPLIES: &str = "ringgate_redis_oversize_replies_total";
/// New sessions refused for want of Redis: `unavailable`, or `timeout` where the lookup waited.
const NO_REDIS: [&str; 2] = [
    r#"ringgate_route_failures_total{reason="unavailable"}"#,
    r#"ringgate_route_failures_total{reason="timeout"}"#,
];
/// A valid disconnect message that matches no session: published to learn how many
/// subscribers a channel has.
const NOBODY: &str = "127.0.0.1:1";

/// How the session map (`--publish-sessions`) names a session: this prefix and its upstream
/// address (src/config/cli.rs's default).
const SESSION_PREFIX: &str = "udp_gate:session:";

/// A ringgate binary running with metrics on: its log, where it listens, its metrics.
struct Gate {
    running: Running,
    listen: SocketAddr,
    metrics: SocketAddr,
}

impl Gate {
    /// Runs `cmd` (which must serve metrics on `127.0.0.1:0`) and waits for its ready line.
    fn spawn(cmd: Command) -> Gate {
        let running = Running::spawn(cmd);
        let line = running.ready_line();
        Gate {
            listen: field(&line, "listen").parse().unwrap(),
            metrics: metrics_of(&line),
            running,
        }
    }

    /// One series of `/metrics` (0 while absent).
    fn metric(&self, series: &str) -> u64 {
        sample(&http_get(self.metrics, "/metrics").1, series).unwrap_or(0)
    }

    /// Waits until `series` reaches `value` exactly.
    fn wait_metric(&self, series: &str, value: u64) {
        wait_within(&format!("{series} to be {value}"), PATIENCE, || {
            self.metric(series) == value
        });
        assert_eq!(self.metric(series), value, "{series} went past {value}");
    }

    /// A line that `matches`, logged already (before the ready line, say) or within
    /// [`PATIENCE`].
    fn logged(&self, what: &str, mut matches: impl FnMut(&str) -> bool) -> String {
        let earlier = self.running.log(Duration::ZERO);
        match earlier.into_iter().find(|line| matches(line)) {
            Some(line) => line,
            None => self.running.wait_line(what, matches),
        }
    }

    /// [`Gate::logged`]: a line with `message` and each `key=value` of `fields`.
    fn logged_event(&self, message: &str, fields: &[(&str, SocketAddr)]) -> String {
        let what = format!("{message} with {fields:?}");
        self.logged(&what, |line| {
            line.contains(message) && fields.iter().all(|(k, v)| has_field(line, k, v))
        })
    }

    /// Waits for the process to exit (after a signal) and returns whether it exited 0.
    fn wait_exit(&mut self) -> bool {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.running.child.try_wait().unwrap() {
                return status.success();
            }
            assert!(Instant::now() < deadline, "ringgate did not stop");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// One worker on loopback, metrics on, in a fresh directory named `name`.
fn one_worker_with_metrics(name: &str) -> Command {
    let mut cmd = one_worker(&tempdir(name));
    cmd.args(["--metrics", "127.0.0.1:0"]);
    cmd
}

/// The upstream address (the source the backend sees) of `client`'s session: one datagram
/// through `listen` to the echo `backend`, which must have received nothing else since.
fn upstream_of(client: &UdpSocket, listen: SocketAddr, backend: &Backend) -> SocketAddr {
    let payload = b"who am i";
    let took = round_trip_within(client, listen, payload, PATIENCE);
    assert!(took.is_some(), "no echo for {:?}", client.local_addr());
    // Resends that crossed the echo leave copies behind: the last one is as good as the first.
    let (upstream, got) = backend.next();
    assert_eq!(got, payload);
    while let Ok((from, _)) = backend.received.try_recv() {
        assert_eq!(from, upstream, "one client, one upstream");
    }
    upstream
}

/// Whether `line` has the field `key=value`, the value bare (`%` and `?` of an address) or
/// quoted (tracing's text format quotes a `&str` value: `connection="command"`).
fn has_field(line: &str, key: &str, value: impl std::fmt::Display) -> bool {
    line.contains(&format!(" {key}={value}")) || line.contains(&format!(" {key}=\"{value}\""))
}

/// The value of field `key` in `line`, unquoted.
fn field_value(line: &str, key: &str) -> String {
    field(line, key).trim_matches('"').to_owned()
}

fn addr_text(socket: &UdpSocket) -> String {
    socket.local_addr().unwrap().to_string()
}

// ---------------------------------------------------------------------------------------
// The fixture itself (needs no ringgate change).

/// The fixture's promise: kill the master and a sentinel-promoted replica takes over, with the
/// data written before. Here it took about 2.3 s (see util/sentinel.rs).
#[test]
fn the_sentinel_fixture_promotes_the_replica_when_the_master_dies() {
    let mut group = SentinelGroup::start("fixture");
    let first = group.master();
    assert_eq!(first, group.server_addrs()[0]);
    assert_eq!(group.sentinel_addrs().len(), 3);
    group.set("k", "before");
    group.wait_replicated();

    let killed_at = Instant::now();
    let old = group.kill_master();
    assert_eq!(old, first);
    let (new, promoted) = group.wait_promotion(old);
    let took = promoted - killed_at;
    eprintln!("promotion took {took:?}");
    assert_eq!(new, group.server_addrs()[1]);
    assert!(took < Duration::from_secs(10), "promotion took {took:?}");
    assert_eq!(group.master(), new);
    assert_eq!(group.cmd::<String>(&["GET", "k"]), "before");
    group.set("k", "after");
}

/// Passwords on the data servers and on the sentinels; the sentinels restart from the files
/// they rewrote and still name the master after a failover.
#[test]
fn the_sentinel_fixture_takes_passwords_and_restarts_sentinels() {
    let mut group = SentinelGroup::start_with(
        "fixture-auth",
        Passwords {
            data: Some("data-secret".into()),
            sentinel: Some("sentinel-secret".into()),
        },
    );
    let sentinel = group.sentinel_addrs()[0];
    let client = redis::Client::open(format!("redis://{sentinel}/")).unwrap();
    let mut unauthenticated = client
        .get_connection_with_timeout(Duration::from_secs(1))
        .unwrap();
    let refused = redis::cmd("SENTINEL")
        .arg("masters")
        .query::<redis::Value>(&mut unauthenticated);
    assert!(
        refused.is_err(),
        "a sentinel with requirepass answered: {refused:?}"
    );

    let old = group.kill_master();
    let (new, _) = group.wait_promotion(old);
    group.stop_sentinels();
    group.start_sentinels();
    assert_eq!(
        group.master(),
        new,
        "the restarted sentinels forgot the failover"
    );
    group.set("k", "v");
}

// ---------------------------------------------------------------------------------------
// Redis Sentinel in ringgate.

#[test]
fn a_failover_loses_no_established_player_and_serves_new_ones_within_3s_of_promotion() {
    let mut group = SentinelGroup::start("failover");
    let backend = Backend::start(LOCAL4, true);
    group.set(BACKEND_KEY, &backend.addr.to_string());
    group.wait_replicated();
    let old = group.master();

    let workers = 2;
    let mut cmd = ringgate(&tempdir("fleet-failover"));
    cmd.args(["--listen", LOCAL4, "--workers", "2", "--no-pin"])
        .args(["--metrics", "127.0.0.1:0", "--publish-sessions"])
        .args(["--redis-sentinel", &group.sentinel_list()]);
    let gate = Gate::spawn(cmd);
    let found = gate.logged_event("Redis master found", &[("master", old)]);
    let sentinel: SocketAddr = field_value(&found, "sentinel").parse().unwrap();
    assert!(group.sentinel_addrs().contains(&sentinel), "{found}");
    // Each worker has its own Redis connections (`ringgate_redis_up` is per worker).
    wait_within("every worker's subscriber", PATIENCE, || {
        group.publish(DISCONNECT_CHANNEL, NOBODY) == workers
    });

    let players = 16;
    let load = Load::start(gate.listen, players, 50, Duration::from_secs(60));
    load.wait_for_echoes(players as u64 * 20);
    let written = r#"ringgate_session_map_writes_total{result="written"}"#;
    gate.wait_metric(written, players as u64);

    let killed_at = Instant::now();
    let killed = group.kill_master();
    let (new, promoted) = group.wait_promotion(killed);
    // A player who arrives now (a source port ringgate has never seen) is served within 3 s
    // of the promotion, resending every 100 ms as a game client does.
    let newcomer = udp(LOCAL4);
    let left = Duration::from_secs(3).saturating_sub(promoted.elapsed());
    let took = round_trip_within(&newcomer, gate.listen, b"new player", left);
    assert!(
        took.is_some(),
        "a new player got no echo within 3 s of the promotion of {new}: {:#?}",
        gate.running.log(Duration::from_millis(100))
    );
    println!(
        "failover: the master died {:?} before its replica's promotion; a new player was \
         served {:?} after the promotion",
        promoted.duration_since(killed_at),
        promoted.elapsed()
    );
    gate.logged_event("Redis master switched", &[("from", old), ("to", new)]);

    // The established players, throughout: nothing lost, nothing twice.
    load.wait_for_echoes(players as u64 * 20);
    let report = load.stop();
    assert_eq!(report.lost, 0, "{report:?}");
    assert_eq!(report.duplicated, 0, "{report:?}");

    // The session map follows the master: the newcomer's entry is on the new one.
    let me = addr_text(&newcomer);
    let mut entry = None;
    wait_within(
        "the newcomer's session map entry on the new master",
        PATIENCE,
        || {
            let keys: Vec<String> = group.cmd(&["KEYS", &format!("{SESSION_PREFIX}*")]);
            entry = keys.into_iter().find(|key| {
                group
                    .cmd::<Option<String>>(&["GET", key])
                    .is_some_and(|client| client == me)
            });
            entry.is_some()
        },
    );
    let upstream: SocketAddr = entry.unwrap()[SESSION_PREFIX.len()..].parse().unwrap();
    assert_eq!(upstream.ip(), backend.addr.ip());
    // Every live session's entry is written again on the new master (replication is
    // asynchronous): the players' once more, the newcomer's once (the refresh is 30 s away).
    wait_within("the session map written again", PATIENCE, || {
        gate.metric(written) > 2 * players as u64
    });

    // So do the subscribers: a disconnect published on the new master closes the session.
    wait_within(
        "every worker's subscriber on the new master",
        PATIENCE,
        || group.publish(DISCONNECT_CHANNEL, NOBODY) == workers,
    );
    group.publish(DISCONNECT_CHANNEL, &me);
    gate.wait_metric(CLOSED_DISCONNECT, 1);
}

#[test]
fn sentinels_down_at_start_then_up() {
    let mut group = SentinelGroup::without_sentinels("late", Passwords::default());
    let backend = Backend::start(LOCAL4, true);
    let master = group.server_addrs()[0];
    group
        .server_cmd::<()>(master, &["SET", BACKEND_KEY, &backend.addr.to_string()])
        .unwrap();

    let mut cmd = one_worker_with_metrics("fleet-late");
    // REDIS_ADDR names the live master, but with --redis-sentinel it is not used: the early
    // player below must be refused all the same.
    cmd.args(["--redis-sentinel", &group.sentinel_list()])
        .env("REDIS_ADDR", master.to_string());
    let gate = Gate::spawn(cmd);
    // Ready without Redis (established sessions need none), saying why Redis is missing.
    let why = gate.logged("a warning that no sentinel answers", |line| {
        line.contains("WARN") && line.to_lowercase().contains("sentinel")
    });
    assert!(
        group
            .sentinel_addrs()
            .iter()
            .any(|s| why.contains(&s.to_string())),
        "the warning names no sentinel: {why}"
    );
    let player = udp(LOCAL4);
    player.send_to(b"too early", gate.listen).unwrap();
    wait_within(
        "the early player to be refused for want of Redis",
        PATIENCE,
        || NO_REDIS.iter().map(|s| gate.metric(s)).sum::<u64>() >= 1,
    );

    // Nobody answers, and ringgate does not hammer: each round of the three sentinels waits
    // longer than the last (3 s of rounds at a fixed 50 ms would be some 180 attempts).
    let sentinel_failures = r#"ringgate_redis_connection_failures_total{connection="sentinel"}"#;
    let early = gate.metric(sentinel_failures);
    assert!(early >= 3, "every sentinel asked at least once: {early}");
    std::thread::sleep(Duration::from_secs(3)); // a window to count in, not a wait for an event
    let later = gate.metric(sentinel_failures);
    // No 3 s holds more than three rounds of three, four with the ends of rounds under way
    // (a fixed 50 ms would be some 180).
    assert!(
        later - early <= 12,
        "{} sentinel connections failed in 3 s",
        later - early
    );

    group.start_sentinels();
    let took = round_trip_within(&player, gate.listen, b"now", PATIENCE);
    assert!(
        took.is_some(),
        "no echo within {PATIENCE:?} of the sentinels' start: {:#?}",
        gate.running.log(Duration::from_millis(100))
    );
    gate.logged_event("Redis master found", &[("master", master)]);
}

/// Passwords from files, for the data servers and the sentinels; neither is ever logged.
#[test]
fn sentinel_and_master_passwords_come_from_files() {
    let (data, sentinel) = ("data-pa55", "sentinel-pa55");
    let group = SentinelGroup::start_with(
        "fleet-auth",
        Passwords {
            data: Some(data.into()),
            sentinel: Some(sentinel.into()),
        },
    );
    let backend = Backend::start(LOCAL4, true);
    group.set(BACKEND_KEY, &backend.addr.to_string());
    let dir = tempdir("fleet-auth-files");
    let (data_file, sentinel_file) = (dir.join("redis-password"), dir.join("sentinel-password"));
    // A trailing newline, as `echo` and most secret stores leave.
    std::fs::write(&data_file, format!("{data}\n")).unwrap();
    std::fs::write(&sentinel_file, format!("{sentinel}\n")).unwrap();

    let mut cmd = one_worker(&dir);
    cmd.args(["--metrics", "127.0.0.1:0"])
        .args(["--redis-sentinel", &group.sentinel_list()])
        .args(["--redis-sentinel-master", util::sentinel::MASTER_NAME])
        .env("REDIS_PASSWORD_FILE", &data_file)
        .env("REDIS_SENTINEL_PASSWORD_FILE", &sentinel_file);
    let gate = Gate::spawn(cmd);
    gate.logged_event("Redis master found", &[("master", group.master())]);
    let player = udp(LOCAL4);
    assert!(round_trip_within(&player, gate.listen, b"hi", PATIENCE).is_some());
    let log = gate.running.log(Duration::from_millis(100));
    assert!(
        log.iter()
            .all(|l| !l.contains(data) && !l.contains(sentinel)),
        "a password was logged: {log:#?}"
    );
}

#[test]
fn a_credential_file_is_read_from_the_credentials_directory_and_an_exposed_env_file_warned_of() {
    use std::os::unix::fs::PermissionsExt;
    let password = "cred-pa55";
    let redis = RedisServer::with_password(password);
    let backend = Backend::start(LOCAL4, true);
    redis.set(BACKEND_KEY, &backend.addr.to_string());
    let dir = tempdir("fleet-credentials");
    // As systemd's LoadCredential= leaves it: a directory of files named by the credential.
    let credentials = dir.join("credentials");
    std::fs::create_dir_all(&credentials).unwrap();
    std::fs::write(credentials.join("redis-password"), password).unwrap();
    let settings = dir.join("ringgate.env");
    std::fs::write(&settings, format!("REDIS_ADDR={}\n", redis.addr())).unwrap();
    std::fs::set_permissions(&settings, std::fs::Permissions::from_mode(0o644)).unwrap();
    let start = |settings: &std::path::Path| {
        let mut cmd = one_worker_with_metrics("fleet-credentials-run");
        cmd.env("CREDENTIALS_DIRECTORY", &credentials)
            .env("REDIS_PASSWORD_FILE", "redis-password")
            .env("RINGGATE_ENV_FILE", settings);
        Gate::spawn(cmd)
    };
    // The relative path is taken in $CREDENTIALS_DIRECTORY: the password works.
    let gate = start(&settings);
    let player = udp(LOCAL4);
    assert!(round_trip_within(&player, gate.listen, b"hi", PATIENCE).is_some());
    let warned = |gate: &Gate| {
        gate.running
            .log(Duration::from_millis(100))
            .iter()
            .any(|l| l.contains("other users can read it"))
    };
    assert!(
        !warned(&gate),
        "no password in the settings file, no warning"
    );
    drop(gate);
    // A password in a settings file others can read is warned of, naming the variable and
    // never the password; the same file at 0600 is not.
    std::fs::write(
        &settings,
        format!("REDIS_ADDR={}\nREDIS_PASSWORD={password}\n", redis.addr()),
    )
    .unwrap();
    let mut cmd = one_worker_with_metrics("fleet-credentials-exposed");
    cmd.env("RINGGATE_ENV_FILE", &settings);
    let exposed = Gate::spawn(cmd);
    let line = exposed.logged("the exposed-password warning", |l| {
        l.contains("other users can read it")
    });
    assert!(
        line.contains("REDIS_PASSWORD") && !line.contains(password),
        "{line}"
    );
    drop(exposed);
    std::fs::set_permissions(&settings, std::fs::Permissions::from_mode(0o600)).unwrap();
    let mut cmd = one_worker_with_metrics("fleet-credentials-private");
    cmd.env("RINGGATE_ENV_FILE", &settings);
    let private = Gate::spawn(cmd);
    assert!(round_trip_within(&udp(LOCAL4), private.listen, b"hi", PATIENCE).is_some());
    assert!(!warned(&private), "a 0600 settings file is not warned of");
}

/// `calls` of `command` in the server's `INFO commandstats`.
fn calls(redis: &RedisServer, password: &str, command: &str) -> u64 {
    let stats: String = redis.query_with(password, &["INFO", "commandstats"]);
    stats
        .lines()
        .find_map(|l| l.strip_prefix(&format!("cmdstat_{command}:calls=")))
        .and_then(|rest| rest.split(',').next())
        .map_or(0, |n| n.parse().unwrap())
}

#[test]
fn a_takeover_reads_the_password_file_again_and_leaves_the_heartbeat_to_the_successor() {
    let (old_pw, new_pw) = ("before-rotation", "after-rotation");
    let redis = RedisServer::with_password(old_pw);
    let backend = Backend::start(LOCAL4, true);
    redis.set(BACKEND_KEY, &backend.addr.to_string());
    let dir = tempdir("fleet-takeover");
    let (file, control) = (dir.join("redis-password"), dir.join("control.sock"));
    std::fs::write(&file, old_pw).unwrap();
    let command = |extra: &[&str]| {
        let mut cmd = one_worker(&dir);
        cmd.args(["--metrics", "127.0.0.1:0", "--instance-id", "rolling"])
            .arg("--control")
            .arg(&control)
            .args(extra)
            .env("REDIS_ADDR", redis.addr().to_string())
            .env("REDIS_PASSWORD_FILE", &file);
        cmd
    };
    let key = "udp_gate:instance:rolling";
    let mut old = Gate::spawn(command(&[]));
    wait_within("the first heartbeat", PATIENCE, || {
        redis.query_with::<bool>(old_pw, &["EXISTS", key])
    });
    let player = udp(LOCAL4);
    assert!(round_trip_within(&player, old.listen, b"before", PATIENCE).is_some());

    // The password is rotated: Redis wants the new one from now on (connections already
    // authenticated stay), and the file says so.
    redis.cmd_with(old_pw, &["CONFIG", "SET", "requirepass", new_pw]);
    std::fs::write(&file, new_pw).unwrap();
    let next = Gate::spawn(command(&["--takeover", control.to_str().unwrap()]));
    wait_within("the old process to exit", PATIENCE, || {
        old.running.child.try_wait().unwrap().is_some()
    });
    assert!(old.running.child.wait().unwrap().success());
    // The old process left the fleet's key alone: no DEL reached Redis.
    assert_eq!(
        calls(&redis, new_pw, "del"),
        0,
        "the old process deleted the heartbeat"
    );
    assert!(redis.query_with::<bool>(new_pw, &["EXISTS", key]));
    // The successor logged in with the file's new password: a new player gets a route.
    let newcomer = udp(LOCAL4);
    assert!(
        round_trip_within(&newcomer, next.listen, b"after", PATIENCE).is_some(),
        "{:#?}",
        next.running.log(Duration::from_millis(100))
    );
    assert!(round_trip_within(&player, next.listen, b"still", PATIENCE).is_some());
    // A clean stop of the successor leaves the fleet.
    next.running.signal("TERM");
    wait_within("the heartbeat to be deleted", PATIENCE, || {
        !redis.query_with::<bool>(new_pw, &["EXISTS", key])
    });
    assert_eq!(calls(&redis, new_pw, "del"), 1);
}

// ---------------------------------------------------------------------------------------
// Instances: heartbeats and their own disconnect channels.

/// The heartbeat of instance `id`, parsed, if its key exists.
fn heartbeat(redis: &RedisServer, id: &str) -> Option<serde_json::Value> {
    let text: Option<String> = redis.cmd(0, &["GET", &format!("udp_gate:instance:{id}")]);
    text.map(|t| serde_json::from_str(&t).unwrap_or_else(|e| panic!("heartbeat {id}: {e}: {t}")))
}

#[test]
fn two_instances_on_one_redis() {
    let redis = RedisServer::start();
    let backend = Backend::start(LOCAL4, true);
    redis.set(BACKEND_KEY, &backend.addr.to_string());
    let instance = |id: &str, bare_ports: &str| {
        let mut cmd = one_worker_with_metrics(&format!("fleet-instance-{id}"));
        cmd.env("REDIS_ADDR", redis.addr().to_string())
            .args(["--instance-id", id])
            .args(["--disconnect-bare-ports", bare_ports])
            .args(["--drain-timeout", "30"]);
        Gate::spawn(cmd)
    };
    // a refuses bare ports on the shared channel; b takes them (the default, as udp-gate).
    let mut a = instance("a", "off");
    let mut b = instance("b", "on");

    // Heartbeats: JSON naming the listen address, expiring within 30 s unless refreshed.
    for (id, gate) in [("a", &a), ("b", &b)] {
        wait_within(&format!("instance {id}'s heartbeat"), PATIENCE, || {
            heartbeat(&redis, id).is_some()
        });
        let beat = heartbeat(&redis, id).unwrap();
        assert_eq!(beat["listen"], gate.listen.to_string(), "{beat}");
        assert!(
            beat["version"].as_str().is_some_and(|v| !v.is_empty()),
            "{beat}"
        );
        assert_eq!(beat["sessions"], 0, "{beat}");
        assert_eq!(beat["draining"], false, "{beat}");
        for key in ["backend", "started_at"] {
            assert!(beat.get(key).is_some(), "no {key}: {beat}");
        }
        let ttl: i64 = redis.cmd(0, &["TTL", &format!("udp_gate:instance:{id}")]);
        assert!((1..=30).contains(&ttl), "heartbeat {id} TTL {ttl}");
    }

    // Each instance subscribes to its own channel, and only to its own.
    for id in ["a", "b"] {
        let channel = format!("{DISCONNECT_CHANNEL}:{id}");
        wait_within(&format!("{id}'s own channel"), PATIENCE, || {
            redis.publish(&channel, NOBODY) >= 1
        });
        assert_eq!(redis.publish(&channel, NOBODY), 1, "{channel}");
    }
    wait_within("both on the shared channel", PATIENCE, || {
        redis.publish(DISCONNECT_CHANNEL, NOBODY) == 2
    });

    let (ca, cb) = (udp(LOCAL4), udp(LOCAL4));
    let ua = upstream_of(&ca, a.listen, &backend);
    let ub = upstream_of(&cb, b.listen, &backend);
    // The heartbeat is refreshed: it comes to count the session.
    wait_within(
        "a's heartbeat to count its session",
        Duration::from_secs(15),
        || heartbeat(&redis, "a").is_some_and(|beat| beat["sessions"] == 1),
    );

    // a's channel: b's upstream port matches nothing on a and closes nothing on b; a's client
    // address closes a's session.
    let channel_a = format!("{DISCONNECT_CHANNEL}:a");
    assert_eq!(redis.publish(&channel_a, &ub.port().to_string()), 1);
    assert_eq!(redis.publish(&channel_a, &addr_text(&ca)), 1);
    a.wait_metric(CLOSED_DISCONNECT, 1);
    assert_eq!(b.metric(CLOSED_DISCONNECT), 0);
    assert!(a.metric(UNMATCHED) >= 1);
    // b heard none of it (only the NOBODY messages on the shared channel and its own).
    assert_eq!(b.metric(MATCHED), 0);

    // The instance channel takes a bare port even where the shared one refuses them.
    let ca2 = udp(LOCAL4);
    let ua2 = upstream_of(&ca2, a.listen, &backend);
    assert_ne!(ua2, ua);
    assert_eq!(redis.publish(&channel_a, &ua2.port().to_string()), 1);
    a.wait_metric(CLOSED_DISCONNECT, 2);

    // The shared channel: a bare port is refused (and counted) by a, obeyed by b.
    let ca3 = udp(LOCAL4);
    let ua3 = upstream_of(&ca3, a.listen, &backend);
    assert_eq!(
        redis.publish(DISCONNECT_CHANNEL, &ua3.port().to_string()),
        2
    );
    assert_eq!(redis.publish(DISCONNECT_CHANNEL, &ub.port().to_string()), 2);
    a.wait_metric(REFUSED, 2);
    b.wait_metric(CLOSED_DISCONNECT, 1);
    assert_eq!(b.metric(REFUSED), 0);
    assert_eq!(a.metric(CLOSED_DISCONNECT), 2, "a obeyed a bare port");
    // ... while an ip:port on the shared channel still works on a.
    assert_eq!(redis.publish(DISCONNECT_CHANNEL, &addr_text(&ca3)), 2);
    a.wait_metric(CLOSED_DISCONNECT, 3);
    assert_eq!(a.metric(INVALID) + b.metric(INVALID), 0);

    // A clean stop deletes the heartbeat: SIGTERM for a, SIGINT for b.
    a.running.signal("TERM");
    assert!(a.wait_exit(), "a exited non-zero after SIGTERM");
    assert!(
        heartbeat(&redis, "a").is_none(),
        "a's heartbeat outlived it"
    );
    assert!(heartbeat(&redis, "b").is_some());
    // b drains a live session: its heartbeat says so (at the next beat), until a second
    // signal stops the drain.
    let cb2 = udp(LOCAL4);
    upstream_of(&cb2, b.listen, &backend);
    b.running.signal("INT");
    wait_within("b's heartbeat to say it drains", PATIENCE, || {
        heartbeat(&redis, "b").is_some_and(|h| h["draining"] == true && h["sessions"] == 1)
    });
    b.running.signal("INT");
    assert!(b.wait_exit(), "b exited non-zero after SIGINT");
    assert!(
        heartbeat(&redis, "b").is_none(),
        "b's heartbeat outlived it"
    );
}

#[test]
fn an_oversize_channel_message_is_skipped_not_fatal() {
    let redis = RedisServer::start();
    let backend = Backend::start(LOCAL4, true);
    redis.set(BACKEND_KEY, &backend.addr.to_string());
    let mut cmd = one_worker_with_metrics("fleet-oversize");
    cmd.env("REDIS_ADDR", redis.addr().to_string())
        .args(["--instance-id", "d"]);
    let gate = Gate::spawn(cmd);
    let own = format!("{DISCONNECT_CHANNEL}:d");
    wait_within("the subscriptions", PATIENCE, || {
        redis.publish(DISCONNECT_CHANNEL, NOBODY) == 1 && redis.publish(&own, NOBODY) == 1
    });
    let (first, second) = (udp(LOCAL4), udp(LOCAL4));
    upstream_of(&first, gate.listen, &backend);
    upstream_of(&second, gate.listen, &backend);

    // Just over 1 KiB, then a valid message right behind it on the same connection.
    let huge = format!("{}{}", addr_text(&first), " ".repeat(1025));
    assert_eq!(redis.publish(DISCONNECT_CHANNEL, &huge), 1);
    assert_eq!(redis.publish(DISCONNECT_CHANNEL, &addr_text(&first)), 1);
    gate.wait_metric(OVERSIZE, 1);
    gate.wait_metric(CLOSED_DISCONNECT, 1);
    // The same on the instance's own channel, with a bigger one.
    assert_eq!(redis.publish(&own, &"7".repeat(4096)), 1);
    assert_eq!(redis.publish(&own, &addr_text(&second)), 1);
    gate.wait_metric(OVERSIZE, 2);
    gate.wait_metric(CLOSED_DISCONNECT, 2);

    // Skipped, not fatal: the subscriber was never dropped, nothing else was counted.
    assert_eq!(gate.metric(SUBSCRIBER_FAILURES), 0);
    assert_eq!(gate.metric(OVERSIZE_REPLIES), 0);
    assert_eq!(gate.metric(INVALID), 0);
    assert_eq!(gate.metric(MATCHED), 2);
    let log = gate.running.log(Duration::from_millis(100));
    assert!(
        !log.iter().any(|l| l.contains("Redis connection lost")),
        "a connection was dropped: {log:#?}"
    );
}
