//! The harness end to end: the driver runs its own contestants, the baseline and the floor,
//! through a brief smoke step (its numbers mean nothing), and every run must deliver. They are
//! what every ringgate figure is read against; ringgate itself is left out, so this needs no
//! build of it.

use std::process::Command;

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
