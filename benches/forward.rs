//! `cargo bench --bench forward`: ringgate against a tokio baseline, with a floor.
//!
//! The driver runs every contestant under the same load, one after the other, and prints one
//! table: offered and delivered packets per second, loss, where the kernel dropped (full
//! receive buffers at the forwarder's sockets, or at the generator's and backend's), the
//! forwarder's CPU time per packet, its share of a core and how busy its core was by anyone,
//! its peak RSS, round-trip times, and the CPU use of the generator and backend (so a reader
//! sees when the load, not the forwarder, was the limit). Then the ratios ringgate/baseline and
//! floor/baseline, and everything, per-flow loss included, as JSON in
//! `target/bench/forward.json`.
//!
//! Contestants: `ringgate` (the real binary, `CARGO_BIN_EXE_ringgate`), `baseline` (the tokio
//! forwarder a competent developer would write, `forward/baseline.rs`) and `floor` (a bare
//! `recvmmsg`/`sendmmsg` relay with no sessions, the kernel's limit for a userspace forwarder).
//!
//! Every role is this binary re-executed with `--role NAME` (loadgen, backend, baseline,
//! floor), so each is its own process: pinned between fork and exec (forwarder on
//! `--forwarder-cpus`, default CPU 0; generator, backend and the driver itself on
//! `--load-cpus`, default CPU 1) and measured separately from /proc. All traffic stays on
//! 127.0.0.1.
//!
//! Modes: `cargo bench --bench forward` is the short smoke run (64 flows at 50k pps, 1 s per
//! forwarder, about 6 s); `-- --full` runs every step of the issue (about 2 minutes);
//! `-- --flows N --rate R --payload B --echo` runs one custom step. Under `cargo test --benches`
//! (no `--bench` flag) it only checks the plumbing, briefly, and writes no JSON.

#[path = "forward/args.rs"]
mod args;
#[path = "forward/backend.rs"]
mod backend;
#[path = "forward/baseline.rs"]
mod baseline;
#[path = "forward/child.rs"]
mod child;
#[path = "forward/control.rs"]
mod control;
#[path = "forward/floor.rs"]
mod floor;
#[path = "forward/histogram.rs"]
mod histogram;
#[path = "forward/loadgen.rs"]
mod loadgen;
#[path = "forward/pacer.rs"]
mod pacer;
#[path = "forward/plan.rs"]
mod plan;
#[path = "forward/procfs.rs"]
mod procfs;
#[path = "forward/report.rs"]
mod report;
#[path = "forward/ringgate.rs"]
mod ringgate;
#[path = "forward/run.rs"]
mod run;
#[path = "forward/sys.rs"]
mod sys;
#[path = "forward/wire.rs"]
mod wire;

use std::path::PathBuf;

use plan::{Forwarder, Mode, Plan};
use report::{Outcome, Run};
use run::{Context, Stage};

fn main() {
    let raw: Vec<String> = std::env::args().skip(1).collect();
    let result = match raw.split_first() {
        Some((first, rest)) if first == "--role" => run_role(rest),
        _ => drive(&raw),
    };
    if let Err(e) = result {
        eprintln!("forward: {e}");
        std::process::exit(1);
    }
}

fn run_role(raw: &[String]) -> Result<(), String> {
    let (role, rest) = raw.split_first().ok_or("--role needs a name")?;
    let result = match role.as_str() {
        "loadgen" => loadgen::run(rest),
        "backend" => backend::run(rest),
        "baseline" => baseline::run(rest),
        "floor" => floor::run(rest),
        other => Err(format!("unknown role `{other}`")),
    };
    result.map_err(|e| format!("role {role}: {e}"))
}

/// `target/bench`: under CARGO_TARGET_DIR if set, else found from this executable, which cargo
/// puts at `<target>/<profile>/deps/forward-<hash>`.
fn bench_output_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(dir).join("bench");
    }
    let exe = std::env::current_exe().unwrap_or_default();
    let in_deps = exe
        .parent()
        .and_then(|dir| dir.file_name())
        .is_some_and(|name| name == "deps");
    match exe.ancestors().nth(3) {
        Some(target) if in_deps => target.join("bench"),
        _ => PathBuf::from("target").join("bench"),
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

fn drive(raw: &[String]) -> Result<(), String> {
    let plan = Plan::from_args(raw).map_err(|e| format!("{e}\n{}", plan::USAGE))?;
    if plan
        .forwarder_cpus
        .iter()
        .any(|cpu| plan.load_cpus.contains(cpu))
    {
        eprintln!(
            "warning: forwarder and load share a CPU; the forwarder's numbers include the load's interference"
        );
    }
    sys::raise_open_file_limit().map_err(|e| format!("raising the open-file limit: {e}"))?;
    // The driver wakes up a few times per step; keep even that off the forwarder's CPU.
    sys::pin_to_cpus(&plan.load_cpus).map_err(|e| {
        format!(
            "pinning the driver to CPUs {:?}: {e} (choose CPUs this machine has with --load-cpus)",
            plan.load_cpus
        )
    })?;

    let output_dir = bench_output_dir();
    let context = Context {
        log_dir: output_dir.join("logs"),
        ticks_per_second: sys::clock_ticks_per_second(),
    };
    std::fs::create_dir_all(&context.log_dir)
        .map_err(|e| format!("{}: {e}", context.log_dir.display()))?;
    if plan.mode == Mode::Test {
        eprintln!(
            "forward: test mode (no --bench flag): self-checks, then a brief plumbing run whose numbers mean nothing"
        );
        self_checks()?;
    }
    eprintln!(
        "forward: {} mode, {} step(s) x {} forwarder(s), {:.1} s warm-up + {:.1} s measured each, about {:.0} s; forwarder on CPUs {:?}, load on CPUs {:?}; ringgate logs in {}",
        plan.mode.name(),
        plan.steps.len(),
        plan.forwarders.len(),
        plan.warmup.as_secs_f64(),
        plan.measure.as_secs_f64(),
        plan.estimate().as_secs_f64(),
        plan.forwarder_cpus,
        plan.load_cpus,
        context.log_dir.display(),
    );

    let total = plan.steps.len() * plan.forwarders.len();
    let mut runs = Vec::with_capacity(total);
    // After ringgate fails to start once, later steps say so instead of waiting for it again.
    let mut ringgate_start_failure: Option<String> = None;
    for step in &plan.steps {
        for &forwarder in &plan.forwarders {
            let outcome = if step.echo && forwarder == Forwarder::Floor {
                Outcome::NotRun(
                    "the floor forwards one direction only, echo steps do not apply".into(),
                )
            } else if let (Forwarder::Ringgate, Some(first)) = (forwarder, &ringgate_start_failure)
            {
                Outcome::NotRun(format!("ringgate failed to start in step {first}"))
            } else {
                match run::run_step(step, forwarder, &plan, &context) {
                    Ok(measurement) => Outcome::Measured(Box::new(measurement)),
                    Err(failure) => {
                        if forwarder == Forwarder::Ringgate && failure.stage == Stage::Start {
                            ringgate_start_failure = Some(step.name());
                        }
                        Outcome::Failed {
                            stage: failure.stage,
                            reason: failure.reason,
                        }
                    }
                }
            };
            eprintln!(
                "[{}/{total}] {} {}: {}",
                runs.len() + 1,
                step.name(),
                forwarder.name(),
                progress(&outcome)
            );
            runs.push(Run {
                step: step.clone(),
                forwarder,
                outcome,
            });
        }
    }

    println!();
    print!("{}", report::table(&runs, &plan));
    println!();
    print!("{}", report::ratio_lines(&runs));
    println!(
        "CPU us/pkt = forwarder utime+stime over the window / datagrams delivered to the backend (echo steps: per round trip, two forwards); clock tick {} ms",
        1000 / context.ticks_per_second.max(1)
    );
    if plan.mode == Mode::Test {
        check_plumbing(&runs)?;
    }
    if plan.write_json {
        let path = output_dir.join("forward.json");
        report::write_json(
            &path,
            &report::json(&runs, &plan, host_json(context.ticks_per_second)),
        )?;
        println!("results: {}", path.display());
    }
    Ok(())
}

/// Runs every module's self-checks (see `checks` in each module) with one line each and a
/// closing count.
fn self_checks() -> Result<(), String> {
    let suites = [
        args::checks::ALL,
        control::checks::ALL,
        histogram::checks::ALL,
        loadgen::checks::ALL,
        pacer::checks::ALL,
        plan::checks::ALL,
        procfs::checks::ALL,
        ringgate::checks::ALL,
        run::checks::ALL,
        wire::checks::ALL,
    ];
    let (mut passed, mut failed) = (0, 0);
    for &(name, check) in suites.iter().flat_map(|suite| suite.iter()) {
        // The panic message of a failed check goes to stderr through the default hook.
        if std::panic::catch_unwind(check).is_ok() {
            passed += 1;
            println!("check {name} ... ok");
        } else {
            failed += 1;
            println!("check {name} ... FAILED");
        }
    }
    println!("self-checks: {passed} passed, {failed} failed");
    if failed == 0 {
        Ok(())
    } else {
        Err(format!("{failed} self-check(s) failed"))
    }
}

/// In test mode the harness's own contestants must work end to end: they are what the bench
/// relies on. ringgate is still being written, so its failures are reported, not fatal.
fn check_plumbing(runs: &[Run]) -> Result<(), String> {
    let broken: Vec<String> = runs
        .iter()
        .filter(|run| run.forwarder != Forwarder::Ringgate)
        .filter(|run| match &run.outcome {
            Outcome::Measured(m) => m.delivered_pps <= 0.0,
            Outcome::Failed { .. } => true,
            Outcome::NotRun(_) => false,
        })
        .map(|run| format!("{} {}", run.step.name(), run.forwarder.name()))
        .collect();
    if broken.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "harness plumbing broken for: {}",
            broken.join(", ")
        ))
    }
}

fn progress(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Measured(m) => format!(
            "{:.0} pps delivered, {} us/pkt",
            m.delivered_pps,
            m.cpu_us_per_packet
                .map_or("-".to_string(), |us| format!("{us:.2}"))
        ),
        Outcome::Failed { reason, .. } => format!("FAILED: {reason}"),
        Outcome::NotRun(reason) => format!("not run: {reason}"),
    }
}
