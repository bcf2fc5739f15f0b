//! The host tuning scripts in `tuning/`, run for real on this machine.
//!
//! shellcheck over every script; `check.sh` in report mode and its exit status; `apply.sh
//! --dry-run` on the host, which must change nothing; and real apply/revert and nic/revert round
//! trips inside a network namespace each test creates, where only per-namespace values may change
//! and must come back exactly. The host's own values are read before and after every test that
//! runs a script, and put back by a guard if a script ever got that wrong.
//!
//! Needs root (CI runs the suite as root), shellcheck and iproute2. A missing prerequisite fails
//! the test with what to install; nothing is skipped.

mod util;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use util::process::Run;

/// How long one script may run before the test kills it and fails.
const PATIENCE: Duration = Duration::from_secs(60);

/// Keys every kernel with network namespaces keeps per namespace; apply.sh --only-netns must
/// change at least these inside the namespace.
const PER_NETNS: [&str; 3] = [
    "net.ipv4.udp_rmem_min",
    "net.ipv4.udp_wmem_min",
    "net.ipv4.ip_local_port_range",
];

fn tuning_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tuning")
}

fn script(name: &str) -> String {
    tuning_dir().join(name).to_str().unwrap().to_owned()
}

/// Run `program args` from the repository's root with no stdin, capturing its output; kill its
/// whole process group and fail the test if it takes longer than PATIENCE.
fn run(program: &str, args: &[&str]) -> Run {
    let mut command = Command::new(program);
    command.args(args).current_dir(env!("CARGO_MANIFEST_DIR"));
    Run::new(command, PATIENCE)
}

/// Fail unless `tool` can be started, saying which package provides it.
fn require_tool(tool: &str, package: &str) {
    let found = Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    assert!(
        found,
        "`{tool}` is not installed; the tuning tests need it: apt-get install {package}"
    );
}

/// Fail unless running as root: network namespaces and /proc/sys writes need it.
fn require_root() {
    let status = fs::read_to_string("/proc/self/status").unwrap();
    let euid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        .expect("no Uid: line in /proc/self/status");
    assert!(
        euid == "0",
        "the tuning tests must run as root (CI runs the test suite as root): they create \
         network namespaces with `ip netns add` and write sysctls inside them. \
         Run: sudo -E cargo test --test tuning"
    );
}

/// The keys of tuning/sysctl.conf, in file order, with their recommended values.
fn profile() -> Vec<(String, String)> {
    let text = fs::read_to_string(tuning_dir().join("sysctl.conf")).unwrap();
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with(';'))
        .map(|l| {
            let (key, value) = l.split_once('=').expect("profile line without '='");
            let key = key.trim().trim_start_matches('-').to_owned();
            (key, value.split_whitespace().collect::<Vec<_>>().join(" "))
        })
        .collect()
}

fn sysctl_path(key: &str) -> String {
    format!("/proc/sys/{}", key.replace('.', "/"))
}

fn sysctl_paths(keys: &[String]) -> Vec<String> {
    keys.iter().map(|k| sysctl_path(k)).collect()
}

/// Values of `paths` as a shell in `netns` (None: the host) reads them, byte for byte without
/// the trailing newline; None for a path that is absent or unreadable there.
fn read_values(netns: Option<&str>, paths: &[String]) -> BTreeMap<String, Option<String>> {
    const DUMP: &str = r#"for p; do if v=$(cat -- "$p" 2>/dev/null); then printf '%s=%s\n' "$p" "$v"; else printf '%s!\n' "$p"; fi; done"#;
    let mut args: Vec<&str> = Vec::new();
    if let Some(ns) = netns {
        args.extend(["netns", "exec", ns]);
    }
    args.extend(["bash", "-c", DUMP, "read_values"]);
    args.extend(paths.iter().map(String::as_str));
    let out = if netns.is_some() {
        run("ip", &args)
    } else {
        run(args[0], &args[1..])
    };
    out.assert_success();
    let values: BTreeMap<_, _> = out
        .stdout
        .lines()
        .map(|line| match line.split_once('=') {
            Some((path, value)) => (path.to_owned(), Some(value.to_owned())),
            None => (line.trim_end_matches('!').to_owned(), None),
        })
        .collect();
    assert_eq!(values.len(), paths.len(), "{}", out.transcript());
    values
}

fn normalized(value: &str) -> String {
    value.split_whitespace().collect::<Vec<_>>().join(" ")
}

static UNIQUE: AtomicUsize = AtomicUsize::new(0);

fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        UNIQUE.fetch_add(1, Ordering::Relaxed)
    )
}

/// A network namespace, deleted on drop whatever happened.
struct Netns(String);

impl Netns {
    fn new() -> Self {
        require_root();
        require_tool("ip", "iproute2");
        let name = unique("ringgate-tuning");
        run("ip", &["netns", "add", &name]).assert_success();
        Netns(name)
    }

    /// Run `program args` inside the namespace.
    fn run(&self, program: &str, args: &[&str]) -> Run {
        let mut all = vec!["netns", "exec", &self.0, program];
        all.extend_from_slice(args);
        run("ip", &all)
    }

    /// Run the tuning script `name` inside the namespace.
    fn script(&self, name: &str, args: &[&str]) -> Run {
        self.run(&script(name), args)
    }

    /// Runs revert.sh with `state` inside the namespace: it must succeed, put every one of
    /// `paths` back to its value `before`, and remove its state file.
    fn assert_reverts(
        &self,
        state: &str,
        paths: &[String],
        before: &BTreeMap<String, Option<String>>,
    ) {
        self.script("revert.sh", &["--state", state])
            .assert_success();
        assert_eq!(
            &self.read(paths),
            before,
            "revert.sh did not restore every value exactly"
        );
        assert!(!Path::new(state).exists(), "revert.sh kept its state file");
    }

    fn read(&self, paths: &[String]) -> BTreeMap<String, Option<String>> {
        read_values(Some(&self.0), paths)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let out = run("ip", &["netns", "del", &self.0]);
        if !out.success() {
            eprintln!(
                "could not delete network namespace {}:\n{}",
                self.0,
                out.transcript()
            );
        }
    }
}

/// The host's values of the given sysctls, checked unchanged by `assert_unchanged` and written
/// back on drop if a script changed them anyway, so no test leaves the host altered.
struct HostGuard {
    before: BTreeMap<String, Option<String>>,
}

impl HostGuard {
    fn new(keys: &[String]) -> Self {
        HostGuard {
            before: read_values(None, &sysctl_paths(keys)),
        }
    }

    fn paths(&self) -> Vec<String> {
        self.before.keys().cloned().collect()
    }

    fn assert_unchanged(&self, when: &str) {
        let now = read_values(None, &self.paths());
        for (path, before) in &self.before {
            assert_eq!(&now[path], before, "{when}: the host's {path} changed");
        }
    }
}

impl Drop for HostGuard {
    fn drop(&mut self) {
        let now = read_values(None, &self.paths());
        for (path, before) in &self.before {
            if let Some(value) = before.as_ref().filter(|v| now[path].as_ref() != Some(*v)) {
                eprintln!("restoring the host's {path} to {value}");
                if let Err(e) = fs::write(path, format!("{value}\n")) {
                    eprintln!("could not restore {path}: {e}");
                }
            }
        }
    }
}

/// A scratch directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(unique("ringgate-tuning"));
        fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn file(&self, name: &str) -> String {
        self.0.join(name).to_str().unwrap().to_owned()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn profile_keys() -> Vec<String> {
    profile().into_iter().map(|(k, _)| k).collect()
}

#[test]
fn every_script_passes_shellcheck() {
    require_tool("shellcheck", "shellcheck");
    let mut scripts: Vec<String> = fs::read_dir(tuning_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "sh"))
        .map(|p| p.to_str().unwrap().to_owned())
        .collect();
    scripts.sort();
    assert!(
        scripts.len() >= 5,
        "expected the tuning scripts, found {scripts:?}"
    );
    let args: Vec<&str> = scripts.iter().map(String::as_str).collect();
    run("shellcheck", &args).assert_success();
}

#[test]
fn every_script_explains_itself() {
    for name in ["apply.sh", "revert.sh", "check.sh", "nic.sh"] {
        let out = run(&script(name), &["--help"]);
        out.assert_success();
        assert!(out.stdout.starts_with("Usage: "), "{}", out.transcript());
        let bad = run(&script(name), &["--no-such-option"]);
        assert_eq!(
            bad.code,
            Some(2),
            "a usage error exits 2:\n{}",
            bad.transcript()
        );
    }
}

#[test]
fn check_report_names_every_key_and_exits_zero() {
    let out = run(&script("check.sh"), &["--report", "--iface", "lo"]);
    assert_eq!(
        out.code,
        Some(0),
        "--report always exits 0:\n{}",
        out.transcript()
    );
    for key in profile_keys() {
        assert!(
            out.stdout.contains(&key),
            "check.sh does not mention {key}:\n{}",
            out.stdout
        );
    }
    for topic in [
        "open files (ulimit -n)",
        "ephemeral ports",
        "io_uring",
        "conntrack",
        "NIC lo",
        "RPS",
    ] {
        assert!(
            out.stdout.contains(topic),
            "check.sh does not cover {topic}:\n{}",
            out.stdout
        );
    }
}

#[test]
fn check_exit_status_says_whether_packets_would_be_lost() {
    let tmp = TempDir::new();
    // A profile this host already meets: each key at its current value.
    let keys = profile_keys();
    let paths = sysctl_paths(&keys);
    let host = read_values(None, &paths);
    let met: String = keys
        .iter()
        .zip(&paths)
        .filter_map(|(k, p)| {
            host[p]
                .as_ref()
                .map(|v| format!("{k} = {}\n", normalized(v)))
        })
        .collect();
    let conf = tmp.file("met.conf");
    fs::write(&conf, met).unwrap();
    // One worker with one session fits any host; raise the soft open-files limit to the hard one
    // so a 1024 default does not miss the 1 + 1024 needed.
    let check = |extra: &[&str]| {
        let mut args = vec![
            "-c",
            r#"ulimit -Sn "$(ulimit -Hn)" 2>/dev/null; exec "$@""#,
            "sh",
        ];
        let check_sh = script("check.sh");
        let mut tail = vec![
            check_sh.as_str(),
            "--conf",
            &conf,
            "--cpus",
            "0",
            "--socket-buffer",
            "4096",
        ];
        tail.extend_from_slice(extra);
        args.extend(tail);
        run("bash", &args)
    };

    let fits = check(&["--max-sessions", "1"]);
    assert_eq!(
        fits.code,
        Some(0),
        "nothing here loses packets:\n{}",
        fits.transcript()
    );
    assert!(fits.stdout.contains("0 FAIL"), "{}", fits.transcript());

    let too_many = check(&["--max-sessions", "2000000000"]);
    too_many.assert_exit(1);
    assert!(
        too_many.stdout.contains("FAIL  open files"),
        "{}",
        too_many.transcript()
    );

    let reported = check(&["--max-sessions", "2000000000", "--report"]);
    reported.assert_exit(0);
    assert!(
        reported.stdout.contains("FAIL  open files"),
        "{}",
        reported.transcript()
    );
}

#[test]
fn apply_dry_run_changes_nothing_on_the_host() {
    let guard = HostGuard::new(&profile_keys());
    let tmp = TempDir::new();
    let state = tmp.file("sysctl.state");
    let out = run(&script("apply.sh"), &["--dry-run", "--state", &state]);
    out.assert_success();
    assert!(
        out.stdout.contains("Dry run:") || out.stdout.contains("Nothing to change."),
        "{}",
        out.transcript()
    );
    assert!(!Path::new(&state).exists(), "a dry run wrote {state}");
    guard.assert_unchanged("after apply.sh --dry-run");

    let out = run(&script("revert.sh"), &["--dry-run", "--state", &state]);
    out.assert_success();
    assert!(
        out.stdout.contains("Nothing to revert"),
        "{}",
        out.transcript()
    );
    guard.assert_unchanged("after revert.sh --dry-run");
}

/// A value above both `current` and the profile's `recommended` (ip_local_port_range: a range
/// wider than both), so apply.sh changes it and the shipped profile, applied after it, does not.
/// kernel.io_uring_disabled keeps its value: "more" is not better there.
fn raised(key: &str, current: &str, recommended: &str) -> String {
    let numbers =
        |s: &str| -> Vec<u64> { s.split_whitespace().map(|f| f.parse().unwrap()).collect() };
    let (cur, rec) = (numbers(current), numbers(recommended));
    match key {
        "kernel.io_uring_disabled" => normalized(current),
        "net.ipv4.ip_local_port_range" => format!("{} 65535", cur[0].min(rec[0]) - 2),
        _ => cur
            .iter()
            .zip(&rec)
            .map(|(c, r)| c.max(r).saturating_mul(2).to_string())
            .collect::<Vec<_>>()
            .join(" "),
    }
}

#[test]
fn apply_and_revert_round_trip_in_a_netns() {
    let profile = profile();
    let keys = profile_keys();
    let host = HostGuard::new(&keys);
    let ns = Netns::new();
    let tmp = TempDir::new();
    let state = tmp.file("sysctl.state");
    let paths = sysctl_paths(&keys);
    let before = ns.read(&paths);

    // Every key of the profile, raised past both the current value and the profile's. apply.sh
    // must skip the host-wide ones: if it wrote fs.* or kernel.* here, the host would change.
    let mut wanted = BTreeMap::new();
    let mut conf = String::new();
    for ((key, recommended), path) in profile.iter().zip(&paths) {
        if let Some(current) = &before[path] {
            let value = raised(key, current, recommended);
            conf.push_str(&format!("{key} = {value}\n"));
            wanted.insert(path.clone(), value);
        }
    }
    let raised_conf = tmp.file("raised.conf");
    fs::write(&raised_conf, &conf).unwrap();

    // Without --only-netns, apply.sh refuses to run in a namespace: it would change the host.
    let refused = ns.script("apply.sh", &["--conf", &raised_conf, "--state", &state]);
    refused.assert_exit(1);
    assert!(
        refused.stderr.contains("--only-netns"),
        "{}",
        refused.transcript()
    );
    assert!(!Path::new(&state).exists());
    assert_eq!(
        ns.read(&paths),
        before,
        "a refused apply.sh changed the namespace"
    );
    host.assert_unchanged("after the refused apply.sh");

    let applied = ns.script(
        "apply.sh",
        &["--only-netns", "--conf", &raised_conf, "--state", &state],
    );
    applied.assert_success();
    host.assert_unchanged("after apply.sh --only-netns in a namespace");
    let after = ns.read(&paths);
    let mut changed = Vec::new();
    for (path, value) in &after {
        if value != &before[path] {
            let now = normalized(value.as_deref().unwrap_or(""));
            assert_eq!(
                Some(&now),
                wanted.get(path),
                "{path} changed to something else"
            );
            changed.push(path.clone());
        }
    }
    for key in PER_NETNS {
        assert!(
            changed.contains(&sysctl_path(key)),
            "{key} did not change in the namespace:\n{}",
            applied.transcript()
        );
    }
    let saved = fs::read_to_string(&state).unwrap();
    assert!(saved.contains("\n# netns net:["), "{saved}");

    // The shipped profile never lowers a value: on top of the raised one it changes nothing.
    let shipped = ns.script("apply.sh", &["--only-netns", "--state", &state]);
    shipped.assert_success();
    assert_eq!(
        ns.read(&paths),
        after,
        "the shipped profile lowered a raised value"
    );

    // Raising again keeps the values saved the first time, so revert.sh still gets back to the
    // untouched namespace.
    let again: String = PER_NETNS
        .iter()
        .map(|key| {
            let current = after[&sysctl_path(key)].as_deref().unwrap();
            format!("{key} = {}\n", raised(key, current, current))
        })
        .collect();
    let again_conf = tmp.file("again.conf");
    fs::write(&again_conf, again).unwrap();
    ns.script(
        "apply.sh",
        &["--only-netns", "--conf", &again_conf, "--state", &state],
    )
    .assert_success();
    let saved = fs::read_to_string(&state).unwrap();
    for key in PER_NETNS {
        let path = sysctl_path(key);
        assert_ne!(
            ns.read(std::slice::from_ref(&path))[&path],
            after[&path],
            "{key} not raised again"
        );
        let line = format!("{path}\t{}\n", before[&path].as_deref().unwrap());
        assert!(
            saved.contains(&line),
            "the state lost {key}'s original:\n{saved}"
        );
    }

    // The state belongs to the namespace: revert.sh refuses it on the host.
    let copy = tmp.file("copy.state");
    fs::copy(&state, &copy).unwrap();
    let elsewhere = run(&script("revert.sh"), &["--state", &copy]);
    elsewhere.assert_exit(1);
    assert!(
        elsewhere.stderr.contains("network namespace"),
        "{}",
        elsewhere.transcript()
    );
    host.assert_unchanged("after revert.sh refused a namespace's state");

    ns.assert_reverts(&state, &paths, &before);
    host.assert_unchanged("after revert.sh in a namespace");
}

/// The CPUs in a kernel hex mask such as "3" or "00000000,00000003".
fn mask_cpus(mask: &str) -> Vec<u32> {
    let hex: String = mask.chars().filter(|c| *c != ',').collect();
    let bits = u128::from_str_radix(hex.trim_start_matches('0').trim(), 16).unwrap_or(0);
    (0..128).filter(|cpu| bits & (1 << cpu) != 0).collect()
}

fn online_cpus() -> Vec<u32> {
    let list = fs::read_to_string("/sys/devices/system/cpu/online").unwrap();
    list.trim()
        .split(',')
        .flat_map(|part| {
            let (lo, hi) = part.split_once('-').unwrap_or((part, part));
            lo.parse::<u32>().unwrap()..=hi.parse::<u32>().unwrap()
        })
        .collect()
}

#[test]
fn nic_and_revert_round_trip_on_a_veth_in_a_netns() {
    let ns = Netns::new();
    let tmp = TempDir::new();
    let state = tmp.file("nic.state");
    // One RX queue and two TX queues: RPS spreads the one queue when there are more worker CPUs,
    // XPS gives each worker CPU its own TX queue.
    ns.run(
        "ip",
        &[
            "link",
            "add",
            "rgv0",
            "numtxqueues",
            "2",
            "numrxqueues",
            "1",
            "type",
            "veth",
            "peer",
            "name",
            "rgv1",
        ],
    )
    .assert_success();
    let cpus: Vec<u32> = online_cpus().into_iter().take(2).collect();
    let cpu_list = cpus
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let queue = |q: &str| format!("/sys/class/net/rgv0/queues/{q}");
    let paths = vec![
        queue("rx-0/rps_cpus"),
        queue("tx-0/xps_cpus"),
        queue("tx-1/xps_cpus"),
    ];
    let before = ns.read(&paths);
    assert!(
        before.values().all(Option::is_some),
        "veth queues without RPS/XPS: {before:?}"
    );

    let dry = ns.script(
        "nic.sh",
        &["--dry-run", "--cpus", &cpu_list, "--state", &state, "rgv0"],
    );
    dry.assert_success();
    assert_eq!(
        ns.read(&paths),
        before,
        "nic.sh --dry-run changed something"
    );
    assert!(!Path::new(&state).exists(), "a dry run wrote {state}");

    let applied = ns.script("nic.sh", &["--cpus", &cpu_list, "--state", &state, "rgv0"]);
    applied.assert_success();
    let after = ns.read(&paths);
    let cpus_of = |path: &String| mask_cpus(after[path].as_deref().unwrap());
    let rps_expected = if cpus.len() > 1 { cpus.clone() } else { vec![] };
    assert_eq!(cpus_of(&paths[0]), rps_expected, "{}", applied.transcript());
    assert_eq!(
        cpus_of(&paths[1]),
        vec![cpus[0]],
        "{}",
        applied.transcript()
    );
    assert_eq!(
        cpus_of(&paths[2]),
        cpus.get(1).copied().into_iter().collect::<Vec<_>>()
    );

    let report = ns.script(
        "check.sh",
        &["--report", "--iface", "rgv0", "--cpus", &cpu_list],
    );
    report.assert_exit(0);
    assert!(
        report.stdout.contains("ok    XPS"),
        "{}",
        report.transcript()
    );

    ns.assert_reverts(&state, &paths, &before);
}
