//! The forward load driver: ringgate against a tokio baseline, with a floor. Run it with
//! `cargo build --release && cargo bench -p ringgate-bench [-- OPTIONS]`.
//!
//! The driver runs every contestant under the same load, one after the other, at each worker
//! count of `--workers`, and prints one table: offered and delivered packets per second, loss,
//! where the kernel dropped (full receive buffers at the forwarder's sockets, or at the
//! generator's and backend's), the forwarder's CPU time per packet, its share of a core and how
//! busy its CPUs were by anyone, its peak RSS, round-trip times, and the CPU use of the
//! generator and backend, with a note when the load rather than the forwarder was the limit.
//! Then the ratios per worker count (ringgate/baseline, floor/baseline, and any other ringgate
//! build against the default one), and everything, per-flow loss included, as JSON in
//! `target/bench/forward.json`.
//!
//! Contestants: `ringgate` (the real binary: by default the release build in this workspace's
//! target directory, which must be current, see `binary.rs`; another with `--ringgate`; any
//! other build beside it with `--ringgate-bin`, and the same build with other arguments given
//! with `--variant`, such as the PROXY protocol pair `--proxy-protocol` adds), `baseline` (the
//! tokio forwarder a competent developer would write, `baseline.rs`) and `floor` (a bare
//! `recvmmsg`/`sendmmsg` relay with no sessions, the kernel's limit for a userspace
//! forwarder). With N workers each gets N SO_REUSEPORT sockets and N threads, pinned to the
//! first N `--forwarder-cpus`.
//!
//! Every role is the driver's executable re-executed with `--role NAME` (loadgen, backend,
//! baseline, floor, flood, and exec, which becomes ringgate), so each is its own process, pins
//! itself and is measured separately from /proc. All traffic stays in 127.0.0.0/8: the
//! forwarders and the backend on 127.0.0.1, each flow of the generator on an address of its
//! own, the flood's forged sources in a range of their own (`loopback.rs`); every socket the
//! roles open is made in `sockets.rs`.
//!
//! Scenarios: a step is steady load, or the flood scenario (`flood.rs`): established echo load
//! (64 flows, 50k round trips/s) while spoofed new sources arrive at 10k, 50k, 100k/s or as
//! fast as one load thread can forge them, against a quiet run of the same load. Its table
//! gives the established loss and RTT p99 (against the quiet run's), the flood's rate, the
//! forwarder's sessions created, evicted, expired unreplied and new sources dropped per second,
//! and its CPU per new session. Forging sources needs a raw socket, so root: without it the
//! flood steps are marked not run. Or the takeover scenario: 1,000 flows at 150k datagrams/s,
//! a third echoed (50k round trips/s) and the rest sunk (100k/s), while a second ringgate takes
//! over from the first with `--takeover` mid-window; its table gives the datagrams lost by kind
//! of flow, the longest time the backend went without a datagram, the longest round trip, and
//! the time the takeover took. ringgate only.
//!
//! Modes: with no options, the smoke run (64 flows at 50k pps, 1 s per contestant, about
//! 6 s); `-- --full` runs every step of the issues, flood included (about 3 minutes per worker
//! count; `--only flood` for the flood alone); `-- --flows N --rate R --payload B --echo` runs
//! one custom step, `-- --flood R` one custom flood step and its quiet run, `-- --takeover
//! [--rate R]` one takeover step; `-- --xdp-testbed` the XDP fast path against ringgate's socket
//! path between network namespaces of its own (root; `xdp.rs`, `netns.rs`, `xdp_report.rs`);
//! `-- --help` lists every option. The driver's checks are this
//! crate's tests (`cargo test --release -p ringgate-bench`): unit tests beside the logic, and
//! `tests/plumbing.rs`, a brief run of the baseline and the floor end to end.

#![forbid(unsafe_code)]

mod backend;
mod baseline;
mod binary;
mod cli;
mod flood;
mod floor;
mod loadgen;
mod loopback;
mod measure;
mod netns;
mod os;
mod pacing;
mod plan;
mod proc;
mod procfs;
mod report;
mod rig;
mod ringgate;
mod sockets;
mod wire;
mod xdp;
mod xdp_report;
mod xdp_run;

use clap::Parser;

use cli::Cli;
use measure::{Context, Missing};
use plan::{Contestant, Layout, Plan};
use report::{Outcome, Run};

/// The roles the driver's executable plays when the driver re-executes it as `forward --role
/// NAME ...`.
#[derive(Parser)]
#[command(name = "forward --role")]
enum Role {
    Loadgen(loadgen::Args),
    Backend(backend::Args),
    Baseline(baseline::Args),
    Floor(floor::Args),
    Flood(flood::Args),
    Exec(proc::ExecArgs),
}

/// The driver, or the role its arguments name: the `main` of the bench target and the binary.
pub fn main() {
    let raw: Vec<String> = std::env::args().collect();
    let result = if raw.get(1).is_some_and(|arg| arg == "--role") {
        let argv = raw.iter().take(1).chain(&raw[2..]);
        match Role::try_parse_from(argv) {
            Ok(Role::Loadgen(args)) => loadgen::run(args),
            Ok(Role::Backend(args)) => backend::run(args),
            Ok(Role::Baseline(args)) => baseline::run(args),
            Ok(Role::Floor(args)) => floor::run(args),
            Ok(Role::Flood(args)) => flood::run(args),
            Ok(Role::Exec(args)) => proc::exec(args),
            Err(e) => e.exit(),
        }
    } else {
        drive(&Cli::parse())
    };
    if let Err(e) = result {
        eprintln!("forward: {e}");
        std::process::exit(1);
    }
}

fn host_json(ticks_per_second: u64) -> serde_json::Value {
    let read = |path: &str| {
        std::fs::read_to_string(path)
            .map(|text| text.trim().to_string())
            .ok()
    };
    serde_json::json!({
        "kernel": read("/proc/sys/kernel/osrelease"),
        "cpus_online": read("/sys/devices/system/cpu/online"),
        "net_core_rmem_max": read("/proc/sys/net/core/rmem_max"),
        "net_core_wmem_max": read("/proc/sys/net/core/wmem_max"),
        "clock_ticks_per_second": ticks_per_second,
    })
}

fn drive(cli: &Cli) -> Result<(), String> {
    if cli.xdp_testbed {
        return xdp::drive(cli);
    }
    let online = os::allowed_cpus().map_err(|e| format!("reading this process's CPUs: {e}"))?;
    let ringgate = match &cli.ringgate {
        Some(path) => path.clone(),
        None => binary::default_ringgate()?,
    };
    let plan = Plan::new(cli, &online, ringgate.clone())?;
    let measured =
        |c: &Contestant| matches!(c, Contestant::Ringgate { bin, .. } if *bin == ringgate);
    if cli.ringgate.is_none() && plan.contestants.iter().any(measured) {
        binary::check_current(&ringgate)?;
    }
    os::raise_open_file_limit().map_err(|e| format!("raising the open-file limit: {e}"))?;
    let output_dir = match &cli.output_dir {
        Some(dir) => dir.clone(),
        None => binary::output_dir()?,
    };
    let (log_dir, ticks_per_second) = (output_dir.join("logs"), os::clock_ticks_per_second());
    std::fs::create_dir_all(&log_dir).map_err(|e| format!("{}: {e}", log_dir.display()))?;
    let layouts: Vec<String> = plan.layouts.iter().map(Layout::to_string).collect();
    eprintln!(
        "forward: {:?} mode, {} step(s) x {} contestant(s), {:.1} s warm-up + {:.1} s measured each, about {:.0} s; {}; {} load thread(s); ringgate logs in {}",
        plan.mode,
        plan.steps.len(),
        plan.contestants.len(),
        plan.warmup.as_secs_f64(),
        plan.measure.as_secs_f64(),
        plan.estimate().as_secs_f64(),
        layouts.join("; "),
        plan.load_threads,
        log_dir.display(),
    );
    let raw_sockets = sockets::raw_sockets_allowed().map_err(|e| e.to_string());
    if let (Err(e), true) = (&raw_sockets, plan.steps.iter().any(|s| s.flood().is_some())) {
        eprintln!(
            "forward: flood scenario skipped: needs root for a raw socket ({e}); its runs are marked not run"
        );
    }
    let context = Context {
        log_dir,
        ticks_per_second,
        raw_sockets,
    };
    let runs = run_all(&plan, &context)?;

    println!();
    print!("{}", report::table(&runs));
    println!();
    print!("{}", report::ratio_lines(&runs));
    if let Some(flood) = report::flood_table(&runs) {
        println!();
        print!("{flood}");
    }
    if let Some(takeover) = report::takeover_table(&runs) {
        println!();
        print!("{takeover}");
    }
    println!(
        "CPU us/pkt = forwarder utime+stime over the window / datagrams delivered to the backend (echo steps: per round trip, two forwards); clock tick {} ms",
        1000 / ticks_per_second.max(1)
    );
    if plan.layouts.iter().any(Layout::overlap) {
        println!(
            "note: where the forwarder and the load share CPUs (see the note column), the forwarder's numbers include the load's interference"
        );
    }
    let path = output_dir.join("forward.json");
    let json = report::json(&runs, &plan, host_json(ticks_per_second));
    let text = serde_json::to_string_pretty(&json).map_err(|e| e.to_string())?;
    std::fs::write(&path, text + "\n").map_err(|e| format!("{}: {e}", path.display()))?;
    println!("results: {}", path.display());
    Ok(())
}

/// Every contestant through every step at every worker count, one after the other.
fn run_all(plan: &Plan, context: &Context) -> Result<Vec<Run>, String> {
    let total = plan.layouts.len() * plan.steps.len() * plan.contestants.len();
    let mut runs: Vec<Run> = Vec::with_capacity(total);
    // After a ringgate build fails to start once, later runs say so instead of waiting again.
    let mut failed_to_start: Vec<(&str, String)> = Vec::new();
    for layout in &plan.layouts {
        if layout.overlap() {
            eprintln!(
                "warning: {layout}: the forwarder and the load share a CPU, so its rows include the load's interference"
            );
        }
        // The driver wakes a few times per run; keep even that off the forwarder's CPUs.
        os::pin(&layout.load)
            .map_err(|e| format!("pinning the driver to CPUs {}: {e}", layout.load))?;
        for (step, contestant) in plan
            .steps
            .iter()
            .flat_map(|step| plan.contestants.iter().map(move |c| (step, c)))
        {
            let name = contestant.name();
            let earlier = failed_to_start.iter().find(|(failed, _)| *failed == name);
            let no_flood = match (step.flood(), &context.raw_sockets) {
                (Some(_), Err(e)) => Some(format!(
                    "flood scenario skipped: needs root for a raw socket ({e})"
                )),
                _ => None,
            };
            let cannot = contestant.cannot_run(step).map(String::from).or(no_flood);
            let outcome = match (cannot, earlier) {
                (Some(reason), _) => Outcome::Missing(Missing::NotRun, reason),
                (_, Some((_, first))) => Outcome::Missing(
                    Missing::NotRun,
                    format!("{name} failed to start in {first}"),
                ),
                _ => match measure::run(step, contestant, layout, plan, context) {
                    Ok(measurement) => Outcome::Measured(Box::new(measurement)),
                    Err((missing, reason)) => {
                        if missing == Missing::FailedToStart {
                            failed_to_start
                                .push((name, format!("{} at {}w", step.name(), layout.workers)));
                        }
                        Outcome::Missing(missing, reason)
                    }
                },
            };
            let run = Run {
                step: step.clone(),
                layout: layout.clone(),
                contestant: contestant.clone(),
                outcome,
            };
            eprintln!(
                "[{}/{total}] {}: {}",
                runs.len() + 1,
                run.label(),
                run.progress()
            );
            runs.push(run);
        }
    }
    Ok(runs)
}
