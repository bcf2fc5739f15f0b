//! One run of the XDP testbed (`xdp.rs`): a contestant at a rate, from a fresh backend (in the
//! backend ns, on every address), forwarder and generator (in the client ns) to the counters at
//! both edges of its window: datagrams offered and delivered, the machine's CPU time (and the
//! other processes' share of it), and ringgate's counters, read from inside the forwarder ns.
//! The children stop when the run returns, the load first.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::cli::Rate;
use crate::netns::{self, Testbed};
use crate::proc::Child;
use crate::rig::ANSWER_TIMEOUT;
use crate::wire::{BackendSnap, GeneratorSnap, Ready};
use crate::xdp::{Forwarder, Window};
use crate::{os, procfs, ringgate};

/// How long the sessions may take to be offloaded once the warm-up is over.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(5);
const CONFIRM_POLL: Duration = Duration::from_millis(50);
/// How long a role may take to say `ready`.
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// ringgate's ports in the forwarder ns: where clients send, and its metrics (on loopback
/// there, read by a thread that enters the namespace).
const RINGGATE_PORT: u16 = 7000;
const METRICS: &str = "127.0.0.1:9100";

/// What every run of the scenario shares.
pub struct Setup<'a> {
    pub testbed: &'a Testbed,
    pub ringgate: PathBuf,
    pub flows: usize,
    pub payload: usize,
    pub warmup: Duration,
    pub measure: Duration,
    pub forwarder_cpus: Vec<usize>,
    pub load_cpus: Vec<usize>,
    pub log_dir: PathBuf,
    pub ticks_per_second: u64,
}

/// `--name value` pairs as arguments.
fn args(pairs: &[(&str, String)]) -> Vec<String> {
    let pair = |(name, value): &(&str, String)| [format!("--{name}"), value.clone()];
    pairs.iter().flat_map(pair).collect()
}

/// A role in `ns` on `cpus`, and the address its `ready` names (if it names one).
fn role(
    role: &str,
    ns: &str,
    cpus: &[usize],
    pairs: &[(&str, String)],
    life: u64,
) -> Result<(Child, Option<Ready>), String> {
    let common = [("netns", ns.to_string()), ("max-secs", life.to_string())];
    let mut child = Child::role(role, cpus, &args(&[&common[..], pairs].concat()))?;
    let ready: serde_json::Value = child.expect("ready", READY_TIMEOUT)?;
    Ok((child, serde_json::from_value(ready).ok()))
}

fn addr(ip: &str, port: u16) -> SocketAddr {
    SocketAddr::new(ip.parse().expect("the testbed's addresses parse"), port)
}

/// The forwarder of one run (none for direct and routed) and where the generator sends.
fn start_forwarder(
    setup: &Setup,
    name: &str,
    forwarder: Forwarder,
    backend_port: u16,
    life: u64,
) -> Result<(Option<Child>, SocketAddr), String> {
    let ns = setup.testbed.forwarder.name();
    let backend = addr(netns::BACKEND, backend_port);
    let role_pairs = [
        ("backend", backend.to_string()),
        ("workers", "1".to_string()),
        ("listen-ip", netns::LISTEN.to_string()),
    ];
    let role_name = match forwarder {
        Forwarder::Direct => return Ok((None, addr(netns::BACKEND_DIRECT, backend_port))),
        Forwarder::Routed => return Ok((None, backend)),
        Forwarder::Ringgate(mode) => {
            let log = setup.log_dir.join(format!("xdp-{name}.log"));
            let child = start_ringgate(setup, mode, backend, &log)?;
            return Ok((Some(child), addr(netns::LISTEN, RINGGATE_PORT)));
        }
        Forwarder::Floor => "floor",
        Forwarder::Baseline => "baseline",
    };
    let extra = match forwarder {
        Forwarder::Baseline => vec![
            ("idle-timeout", "60".to_string()),
            ("buffer-size", "2048".into()),
        ],
        _ => vec![],
    };
    let pairs = [&role_pairs[..], &extra].concat();
    let (child, ready) = role(role_name, ns, &setup.forwarder_cpus, &pairs, life)?;
    let listen = ready
        .ok_or_else(|| format!("{role_name} named no address"))?
        .listen;
    Ok((Some(child), listen))
}

/// ringgate in the forwarder ns (`ip netns exec` execs it, so the child is ringgate), ready.
fn start_ringgate(
    setup: &Setup,
    mode: Option<&str>,
    backend: SocketAddr,
    log: &Path,
) -> Result<Child, String> {
    let ns = setup.testbed.forwarder.name();
    let cpus: Vec<String> = setup.forwarder_cpus.iter().map(usize::to_string).collect();
    let mut line: Vec<String> = ["netns", "exec", ns].map(String::from).to_vec();
    line.push(setup.ringgate.display().to_string());
    let pairs = [
        ("listen", addr(netns::LISTEN, RINGGATE_PORT).to_string()),
        ("backend", backend.to_string()),
        ("workers", "1".to_string()),
        ("cpus", cpus.join(",")),
        ("idle-timeout", "60".into()),
        ("buffers", "4096".into()),
        ("buffer-size", "2048".into()),
        ("metrics", METRICS.into()),
    ];
    line.extend(args(&pairs));
    if let Some(mode) = mode {
        let xdp = [
            ("xdp", netns::XDP_INTERFACES.to_string()),
            ("xdp-mode", mode.into()),
        ];
        line.extend(args(&xdp));
        line.push("--xdp-required".into());
    }
    let mut child = Child::program(
        "ringgate",
        Path::new("ip"),
        &line,
        &setup.forwarder_cpus,
        log,
    )?;
    let metrics = METRICS.parse().expect("a socket address");
    os::in_netns(ns, || ringgate::wait_ready(&mut child, metrics, log))??;
    Ok(child)
}

/// ringgate's counters now, read from inside the forwarder ns.
fn scrape(setup: &Setup) -> Result<ringgate::Counters, String> {
    let metrics = METRICS.parse().expect("a socket address");
    os::in_netns(setup.testbed.forwarder.name(), || ringgate::scrape(metrics))?
}

/// The sum of every series of `family` among `counters` whose labels contain `labels`.
pub fn sum(counters: &ringgate::Counters, family: &str, labels: &str) -> f64 {
    let matches = |series: &&String| {
        series
            .strip_prefix(family)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('{'))
            && series.contains(labels)
    };
    counters
        .keys()
        .filter(matches)
        .map(|series| counters[series])
        .sum()
}

/// Waits until ringgate has offloaded `flows` sessions to the program.
fn wait_confirmed(setup: &Setup, forwarder: &mut Child) -> Result<f64, String> {
    let deadline = Instant::now() + CONFIRM_TIMEOUT;
    loop {
        let offloaded = sum(&scrape(setup)?, "ringgate_xdp_sessions", "");
        if offloaded >= setup.flows as f64 {
            return Ok(offloaded);
        }
        if let Some(status) = forwarder.exited() {
            return Err(format!(
                "ringgate exited ({status}) before its sessions were offloaded"
            ));
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "{offloaded} of {} sessions offloaded to XDP {CONFIRM_TIMEOUT:?} after the warm-up",
                setup.flows
            ));
        }
        std::thread::sleep(CONFIRM_POLL);
    }
}

/// One edge of the window.
struct Edge {
    at: Instant,
    offered: u64,
    delivered: u64,
    ticks: procfs::MachineTicks,
    /// Every other process's CPU ticks, by pid.
    others: BTreeMap<u32, u64>,
    counters: Option<ringgate::Counters>,
}

fn edge(
    setup: &Setup,
    loadgen: &mut Child,
    backend: &mut Child,
    command: &str,
    forwarder: Option<u32>,
    ringgate: bool,
) -> Result<Edge, String> {
    let generator: GeneratorSnap = loadgen.ask(command, "snap", ANSWER_TIMEOUT)?;
    let received: BackendSnap = backend.ask(command, "snap", ANSWER_TIMEOUT)?;
    let (at, ticks) = (Instant::now(), procfs::machine_ticks()?);
    let ours = [loadgen.pid(), backend.pid(), std::process::id()];
    let others = procfs::other_processes_ticks(&[&ours[..], forwarder.as_slice()].concat());
    let counters = ringgate.then(|| scrape(setup)).transpose()?;
    Ok(Edge {
        at,
        offered: generator.sent,
        delivered: received.received,
        ticks,
        others,
        counters,
    })
}

/// One contestant at one rate: backend, forwarder, generator, warm-up, confirmation, window.
/// The children stop in reverse order of their start when it returns (locals drop in reverse).
pub fn run(setup: &Setup, name: &str, forwarder: Forwarder, rate: Rate) -> Result<Window, String> {
    let life = (setup.warmup + setup.measure + CONFIRM_TIMEOUT).as_secs() + 20;
    let backend_pairs = [
        ("listen-ip", "0.0.0.0".to_string()),
        ("flows", setup.flows.to_string()),
        ("echo-first", "1".to_string()),
    ];
    let (tb, load) = (setup.testbed, &setup.load_cpus);
    let (mut backend, ready) = role("backend", tb.backend.name(), load, &backend_pairs, life)?;
    let backend_port = ready.ok_or("the backend named no address")?.listen.port();
    let (mut forwarder_child, target) =
        start_forwarder(setup, name, forwarder, backend_port, life)?;
    let load_pairs = [
        ("target", target.to_string()),
        ("flows", setup.flows.to_string()),
        ("payload", setup.payload.to_string()),
        ("rate", rate.to_string()),
    ];
    let (mut loadgen, _) = role("loadgen", tb.client.name(), load, &load_pairs, life)?;
    std::thread::sleep(setup.warmup);
    let xdp = matches!(forwarder, Forwarder::Ringgate(Some(_)));
    let sessions = match (&mut forwarder_child, xdp) {
        (Some(child), true) => Some(wait_confirmed(setup, child)?),
        _ => None,
    };
    let ringgate = matches!(forwarder, Forwarder::Ringgate(_));
    let pid = forwarder_child.as_ref().map(Child::pid);
    let start = edge(
        setup,
        &mut loadgen,
        &mut backend,
        "window-start",
        pid,
        ringgate,
    )?;
    std::thread::sleep(setup.measure);
    let end = edge(
        setup,
        &mut loadgen,
        &mut backend,
        "window-end",
        pid,
        ringgate,
    )?;
    if let Some(status) = forwarder_child.as_mut().and_then(Child::exited) {
        return Err(format!("{name} exited ({status}) during the window"));
    }
    let tps = setup.ticks_per_second.max(1) as f64;
    let secs = (end.at - start.at).as_secs_f64();
    let (a, b) = (start.ticks, end.ticks);
    let idle_secs = (b.idle - a.idle) as f64 / tps;
    let before = |pid: &u32| start.others.get(pid).copied().unwrap_or(0);
    let others = end
        .others
        .iter()
        .map(|(pid, &ticks)| ticks.saturating_sub(before(pid)));
    let delta = |of: fn(&ringgate::Counters) -> f64| match (&start.counters, &end.counters) {
        (Some(a), Some(b)) => Some(of(b) - of(a)),
        _ => None,
    };
    Ok(Window {
        secs,
        busy_secs: (secs * b.cpus as f64 - idle_secs).max(0.0),
        others_secs: others.sum::<u64>() as f64 / tps,
        offered: end.offered - start.offered,
        delivered: end.delivered - start.delivered,
        cpu_secs: std::array::from_fn(|i| (b.by_kind[i] - a.by_kind[i]) as f64 / tps),
        xdp_forwarded: delta(|c| sum(c, "ringgate_xdp_packets_total", "action=\"forwarded\"")),
        socket_path: delta(|c| sum(c, "ringgate_packets_total", "direction=\"upstream\"")),
        xdp_sessions: sessions,
    })
}
