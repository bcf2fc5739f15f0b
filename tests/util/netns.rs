//! Network namespaces a test builds a small network from, with `ip` (iproute2): each named
//! uniquely per test process, deleted on drop (the links inside it go with it: a veth dies
//! with either end). Sockets are opened and code is run inside a namespace by a thread that
//! enters it (`setns`), so a test drives clients and servers there without starting a process;
//! a socket keeps the namespace it was opened in whatever thread uses it later.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::PATIENCE;
use super::process::Run;

/// Why namespaces cannot be made here (not root, no `ip`, `ip netns add` refused), for a
/// test to print when it skips; None when they can.
pub fn unavailable() -> Option<String> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Some("needs root to create network namespaces (CI runs as root)".into());
    }
    // Unique per call: tests of one process probe in parallel.
    let n = UNIQUE.fetch_add(1, Ordering::Relaxed);
    let probe = format!("ringgate-probe-{}-{n}", std::process::id());
    let added = Command::new("ip").args(["netns", "add", &probe]).output();
    match added {
        Err(e) => Some(format!(
            "`ip` cannot be run ({e}): apt-get install iproute2"
        )),
        Ok(out) if !out.status.success() => Some(format!(
            "`ip netns add` failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Ok(_) => {
            let _ = Command::new("ip").args(["netns", "del", &probe]).output();
            None
        }
    }
}

/// Whether a test that needs namespaces must skip here; if so it says why, named `test`.
pub fn skip(test: &str) -> bool {
    match unavailable() {
        Some(why) => {
            eprintln!("{test}: skipped: {why}");
            true
        }
        None => false,
    }
}

static UNIQUE: AtomicUsize = AtomicUsize::new(0);

/// A named network namespace with its loopback up; deleted on drop.
pub struct Netns {
    name: String,
}

impl Netns {
    /// A new namespace, named `ringgate-ROLE-PID-N` so parallel test processes never collide.
    pub fn new(role: &str) -> Netns {
        let n = UNIQUE.fetch_add(1, Ordering::Relaxed);
        let name = format!("ringgate-{role}-{}-{n}", std::process::id());
        ip(&["netns", "add", &name]);
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `ip -n NAME ARGS...`, which must succeed.
    pub fn ip(&self, args: &[&str]) -> Run {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        ip(&all)
    }

    /// `ip netns exec NAME ARGS...` (a program run inside the namespace), which must succeed.
    pub fn exec(&self, args: &[&str]) -> Run {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name]).args(args);
        let run = Run::new(cmd, PATIENCE);
        run.assert_success();
        run
    }

    /// The index of interface `dev` here.
    pub fn ifindex(&self, dev: &str) -> u32 {
        let out = self.ip(&["-o", "link", "show", "dev", dev]);
        let index = out.stdout.split(':').next().unwrap().trim();
        index.parse().unwrap()
    }

    /// A veth pair: `local` here, `remote` in `peer`, both up.
    pub fn veth(&self, local: &str, peer: &Netns, remote: &str) {
        self.ip(&["link", "add", local, "type", "veth", "peer", "name", remote]);
        self.ip(&["link", "set", remote, "netns", peer.name()]);
        self.ip(&["link", "set", local, "up"]);
        peer.ip(&["link", "set", remote, "up"]);
    }

    /// Writes sysctl `key` (`net.ipv4.ip_forward`) in this namespace, from a thread inside it
    /// (the `net.*` keys a process sees are those of its thread's namespace).
    pub fn sysctl(&self, key: &str, value: &str) {
        let path = format!("/proc/sys/{}", key.replace('.', "/"));
        self.enter(|| {
            std::fs::write(&path, value).unwrap_or_else(|e| panic!("write {path}: {e}"));
            let read = std::fs::read_to_string(&path).unwrap();
            assert_eq!(read.trim(), value, "{key} did not take {value}");
        });
    }

    /// Runs `f` on a thread inside this namespace and returns what it returns. Sockets it
    /// opens stay in this namespace.
    pub fn enter<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let handle = File::open(format!("/run/netns/{}", self.name))
            .unwrap_or_else(|e| panic!("open namespace {}: {e}", self.name));
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    // SAFETY: the descriptor is an open network namespace file for the whole
                    // call; setns moves only this thread, which ends when `f` returns.
                    let rc = unsafe { libc::setns(handle.as_raw_fd(), libc::CLONE_NEWNET) };
                    assert_eq!(
                        rc,
                        0,
                        "setns into {}: {}",
                        self.name,
                        std::io::Error::last_os_error()
                    );
                    f()
                })
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }
}

/// One end of a link: its namespace, interface name, MAC and address (CIDR).
pub type End<'a> = (&'a Netns, &'a str, &'a str, &'a str);

/// A veth between two ends, MACs and addresses set, each end a permanent neighbour of the other
/// (so that a route lookup from XDP never waits for ARP).
pub fn link(a: End, b: End) {
    a.0.veth(a.1, b.0, b.1);
    for ((ns, dev, mac, cidr), (_, _, their_mac, their_cidr)) in [(a, b), (b, a)] {
        ns.ip(&["link", "set", dev, "address", mac]);
        ns.ip(&["addr", "add", cidr, "dev", dev]);
        let ip = their_cidr.split('/').next().unwrap();
        let neigh = ["neigh", "replace", ip, "lladdr", their_mac, "dev", dev];
        ns.ip(&[&neigh[..], &["nud", "permanent"]].concat());
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let out = Run::new(command(&["netns", "del", &self.name]), PATIENCE);
        if !out.success() {
            eprintln!(
                "could not delete network namespace {}:\n{}",
                self.name,
                out.transcript()
            );
        }
    }
}

fn command(args: &[&str]) -> Command {
    let mut cmd = Command::new("ip");
    cmd.args(args);
    cmd
}

/// `ip ARGS...`, which must succeed.
fn ip(args: &[&str]) -> Run {
    let out = Run::new(command(args), PATIENCE);
    out.assert_success();
    out
}
