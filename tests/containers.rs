//! ringgate in a real container runtime (podman with runc), where io_uring is refused as it is
//! for most udp-gate users: under podman's default seccomp profile (`ENOSYS`) and under a
//! profile that answers `EPERM` (Docker 25+'s way) it starts on epoll, says why once and
//! forwards; with the shipped `deploy/seccomp.json` it gets io_uring; `--io-backend io-uring`
//! under the default profile exits 1 naming the fix. The image is built `FROM scratch` from
//! the release binary and the libraries `ldd` names (no registry is reachable here).
//!
//! Needs root and `podman` with `runc` (`apt-get install podman runc`; crun refuses this VM's
//! cgroup layout): each test skips with a message without them.

mod util;

use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use util::binary::{Running, field};
use util::{Backend, LOCAL4, recv, udp};

const BIN: &str = env!("CARGO_BIN_EXE_ringgate");
const IMAGE: &str = "localhost/ringgate-test:latest";

/// Why these tests cannot run here, if they cannot.
fn missing() -> Option<String> {
    // Root: the uid in /proc/self/status's `Uid:` line (real, effective, ...).
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let euid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|v| v.split_whitespace().nth(1).map(str::to_owned));
    if euid.as_deref() != Some("0") {
        return Some("not root (podman's rootful mode is what these tests run)".into());
    }
    for tool in ["podman", "runc", "ldd"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            return Some(format!("no {tool} (apt-get install podman runc)"));
        }
    }
    None
}

fn skip(test: &str) -> bool {
    match missing() {
        Some(why) => {
            eprintln!("skipping {test}: {why}");
            true
        }
        None => false,
    }
}

fn podman() -> Command {
    let mut cmd = Command::new("podman");
    cmd.args(["--runtime", "runc"]);
    cmd
}

/// The image, built once per test process: the binary and the libraries it links.
fn image() -> &'static str {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let dir = util::binary::tempdir("image");
        let root = dir.join("root");
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("tmp")).unwrap();
        std::fs::copy(BIN, root.join("ringgate")).unwrap();
        let ldd = Command::new("ldd").arg(BIN).output().unwrap();
        for lib in String::from_utf8_lossy(&ldd.stdout)
            .split_whitespace()
            .filter(|w| w.starts_with('/'))
        {
            let to = root.join(lib.trim_start_matches('/'));
            std::fs::create_dir_all(to.parent().unwrap()).unwrap();
            std::fs::copy(lib, &to).unwrap();
        }
        std::fs::write(
            dir.join("Containerfile"),
            "FROM scratch\nCOPY root/ /\nENTRYPOINT [\"/ringgate\"]\n",
        )
        .unwrap();
        let status = podman()
            .args(["build", "-q", "-t", IMAGE, "-f"])
            .arg(dir.join("Containerfile"))
            .arg(&dir)
            .status()
            .unwrap();
        assert!(status.success(), "podman build");
    });
    IMAGE
}

/// A container, removed when dropped (killing the podman client alone may leave it running).
struct Container {
    name: String,
    running: Running,
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = podman().args(["rm", "-f", "-t", "0", &self.name]).output();
    }
}

/// Runs ringgate in a container on the host's network, with `security` (podman's own options,
/// e.g. a seccomp profile) and ringgate's `args`. The limits are set below this VM's hard ones:
/// runc may lower a limit, not raise it.
fn container(name: &str, security: &[&str], args: &[&str]) -> Container {
    let name = format!("ringgate-test-{}-{name}", std::process::id());
    let _ = podman().args(["rm", "-f", "-t", "0", &name]).output();
    let mut cmd = podman();
    cmd.args(["run", "--rm", "--name", &name, "--network", "host"])
        .args([
            "--ulimit",
            "nofile=4096:4096",
            "--ulimit",
            "nproc=4096:4096",
        ])
        .args(security)
        .arg(image())
        .args(["--listen", "127.0.0.1:0", "--workers", "1", "--no-pin"])
        .args(args);
    Container {
        name,
        running: Running::spawn(cmd),
    }
}

fn profile(name: &str, json: &str) -> PathBuf {
    let path = util::binary::tempdir("profiles").join(name);
    std::fs::write(&path, json).unwrap();
    path
}

fn shipped_profile() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/seccomp.json")
}

/// Starts ringgate under `security`, checks the backend it chose (and the warning's cause on
/// epoll), and a round trip through it.
fn starts_and_forwards(name: &str, security: &[&str], backend: &str, cause: Option<&str>) {
    let echo = Backend::start(LOCAL4, true);
    let c = container(name, security, &["--backend", &echo.addr.to_string()]);
    let ready = c.running.ready_line();
    assert!(
        ready.contains(&format!(r#"io_backend="{backend}""#)),
        "{ready}"
    );
    let log = c.running.log(std::time::Duration::ZERO);
    let warned: Vec<&String> = log
        .iter()
        .filter(|l| l.contains("io_uring is not available"))
        .collect();
    match cause {
        Some(cause) => {
            assert_eq!(warned.len(), 1, "said once: {log:#?}");
            assert!(
                warned[0].contains(&format!(r#"cause="{cause}""#)),
                "{}",
                warned[0]
            );
            assert!(warned[0].contains("deploy/seccomp.json"), "names the fix");
        }
        None => assert!(warned.is_empty(), "{log:#?}"),
    }
    let listen = field(&ready, "listen");
    let client: UdpSocket = udp(LOCAL4);
    client.send_to(b"in a container", listen.as_str()).unwrap();
    assert_eq!(recv(&client).0, b"in a container");
}

#[test]
fn podmans_default_profile_falls_back_to_epoll_says_why_and_forwards() {
    if skip("podmans_default_profile_falls_back_to_epoll_says_why_and_forwards") {
        return;
    }
    starts_and_forwards("default", &[], "epoll", Some("seccomp"));
}

#[test]
fn a_profile_answering_eperm_falls_back_to_epoll_too() {
    if skip("a_profile_answering_eperm_falls_back_to_epoll_too") {
        return;
    }
    // Docker 25+'s behaviour: io_uring's calls refused with EPERM, everything else allowed.
    let eperm = profile(
        "eperm.json",
        r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["io_uring_setup","io_uring_enter","io_uring_register"],"action":"SCMP_ACT_ERRNO","errnoRet":1}]}"#,
    );
    let opt = format!("seccomp={}", eperm.display());
    starts_and_forwards("eperm", &["--security-opt", &opt], "epoll", Some("seccomp"));
}

#[test]
fn the_shipped_profile_gives_ringgate_io_uring() {
    if skip("the_shipped_profile_gives_ringgate_io_uring") {
        return;
    }
    let opt = format!("seccomp={}", shipped_profile().display());
    starts_and_forwards("shipped", &["--security-opt", &opt], "io_uring", None);
}

#[test]
fn io_uring_required_under_the_default_profile_exits_1_naming_the_fix() {
    if skip("io_uring_required_under_the_default_profile_exits_1_naming_the_fix") {
        return;
    }
    let mut c = container(
        "required",
        &[],
        &["--backend", "127.0.0.1:9", "--io-backend", "io-uring"],
    );
    let status = c.running.child.wait().unwrap();
    assert_eq!(
        status.code(),
        Some(1),
        "podman passes ringgate's exit status on"
    );
    let log = c.running.log(std::time::Duration::from_millis(200));
    let error = log
        .iter()
        .find(|l| l.contains("--io-backend io-uring"))
        .unwrap_or_else(|| panic!("{log:#?}"));
    assert!(
        error.contains("deploy/seccomp.json") && error.contains("--io-backend auto"),
        "{error}"
    );
}

#[test]
fn the_shipped_profile_is_dockers_default_plus_the_three_io_uring_calls() {
    let has_python = Command::new("sh")
        .args(["-c", "command -v python3"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_python {
        eprintln!("skipping the seccomp profile check: no python3");
        return;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/check-seccomp.py");
    let out = Command::new("python3").arg(script).output().unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
