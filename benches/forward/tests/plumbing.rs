//! The harness end to end: the driver runs its own contestants, the baseline and the floor,
//! through a brief smoke step (its numbers mean nothing), and every run must deliver. They are
//! what every ringgate figure is read against; ringgate itself is left out, so this needs no
//! build of it. Then the XDP testbed (root only; skipped, saying why, otherwise): its
//! namespaces, the direct pair, kernel routing and the floor, and ringgate's XDP fast path in
//! both modes where a release build of ringgate lies beside the driver.

use std::path::Path;
use std::process::{Command, Stdio};

#[test]
fn the_baseline_and_the_floor_forward_under_the_driver() {
    let output_dir =
        std::env::temp_dir().join(format!("ringgate-bench-plumbing-{}", std::process::id()));
    let run = Command::new(env!("CARGO_BIN_EXE_ringgate-bench"))
        .args(["--forwarders", "baseline,floor"])
        .args(["--warmup-secs", "0.1", "--measure-secs", "0.3"])
        .arg("--output-dir")
        .arg(&output_dir)
        .output()
        .expect("the driver starts");
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "the driver failed:\n{stderr}");
    let json = std::fs::read_to_string(output_dir.join("forward.json")).unwrap();
    let results: serde_json::Value = serde_json::from_str(&json).unwrap();
    let runs = results["runs"].as_array().unwrap();
    let forwarders: Vec<&str> = runs
        .iter()
        .map(|r| r["forwarder"].as_str().unwrap())
        .collect();
    assert_eq!(forwarders, ["baseline", "floor"]);
    for run in runs {
        let (forwarder, delivered) = (&run["forwarder"], run["delivered_pps"].as_f64());
        assert_eq!(run["status"], "ok", "{forwarder}: {run}\n{stderr}");
        assert!(
            delivered.is_some_and(|pps| pps > 0.0),
            "{forwarder} delivered nothing: {run}"
        );
    }
    std::fs::remove_dir_all(&output_dir).unwrap();
}

#[test]
fn the_xdp_testbed_forwards_and_cleans_up() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!(
            "the_xdp_testbed_forwards_and_cleans_up: skipped: needs root (network namespaces)"
        );
        return;
    }
    let output_dir = std::env::temp_dir().join(format!(
        "ringgate-bench-xdp-plumbing-{}",
        std::process::id()
    ));
    let driver = Path::new(env!("CARGO_BIN_EXE_ringgate-bench"));
    let ringgate = driver.with_file_name("ringgate");
    let mut forwarders = vec!["direct", "routed", "floor"];
    let mut run = Command::new(driver);
    if ringgate.exists() {
        forwarders.extend(["ringgate+xdp-generic", "ringgate+xdp-native"]);
        run.arg("--ringgate").arg(&ringgate);
    } else {
        eprintln!(
            "no ringgate build at {}: XDP contestants left out",
            ringgate.display()
        );
    }
    let run = run
        .args([
            "--xdp-testbed",
            "--rounds",
            "1",
            "--rate",
            "20k",
            "--flows",
            "8",
        ])
        .args(["--warmup-secs", "0.2", "--measure-secs", "0.3"])
        .args(["--forwarders", &forwarders.join(",")])
        .arg("--output-dir")
        .arg(&output_dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the driver starts");
    let pid = run.id();
    let run = run.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "the driver failed:\n{stderr}");
    let json = std::fs::read_to_string(output_dir.join("xdp.json")).unwrap();
    let results: serde_json::Value = serde_json::from_str(&json).unwrap();
    let runs = results["runs"].as_array().unwrap();
    assert_eq!(runs.len(), forwarders.len(), "{json}");
    for run in runs {
        let forwarder = run["forwarder"].as_str().unwrap();
        assert_eq!(run["status"], "ok", "{forwarder}: {run}\n{stderr}");
        let window = &run["window"];
        assert!(window["delivered"].as_u64() > Some(0), "{forwarder}: {run}");
        if forwarder.contains("xdp") {
            assert!(
                window["xdp_forwarded"].as_f64() > Some(0.0),
                "{forwarder}: {run}"
            );
        }
    }
    let namespaces = Command::new("ip").args(["netns", "list"]).output().unwrap();
    let left = String::from_utf8_lossy(&namespaces.stdout);
    let ours = format!("rgbench-client-{pid}");
    assert!(!left.contains(&ours), "namespaces left behind:\n{left}");
    std::fs::remove_dir_all(&output_dir).unwrap();
}
