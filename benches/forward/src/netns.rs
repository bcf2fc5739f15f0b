//! The XDP testbed's network: three namespaces of this driver's own, built with `ip` and
//! `ethtool` and deleted when the `Testbed` drops, however the run ends (a half-built one too:
//! each namespace is deleted by its own guard, and a veth dies with its namespace).
//!
//! ```text
//!  client ns                 forwarder ns                      backend ns
//!  c0 10.1.0.2  ---veth---  x0 10.1.0.1 | y0 10.2.0.1  ---veth---  b0 10.2.0.2
//!  c1 10.3.0.2  ----------------- veth (direct) ---------------------  b1 10.3.0.1
//! ```
//!
//! The rules the kernel imposes on XDP here (docs/xdp.md, tests/xdp_live.rs), kept once for
//! every contestant so that they all run on the same network:
//! - `net.ipv4.ip_forward=1` in the forwarder before its veths exist, so each interface's
//!   `forwarding` is 1 too (`bpf_fib_lookup` answers FWD_DISABLED otherwise, and ringgate's
//!   `--xdp` refuses such an interface);
//! - TX checksum offload off on the senders' ends (c0, c1, b0, b1): the program updates a full
//!   UDP checksum incrementally, and a partial one would come out corrupt;
//! - GRO on on the same ends, which gives a veth NAPI: a native redirect into a veth is lost
//!   without it;
//! - fixed MACs and permanent neighbours everywhere, so `bpf_fib_lookup` never answers
//!   NO_NEIGH and no ARP runs during a window.
//!
//! The client reaches the backend through the forwarder (routes both ways, kernel forwarding:
//! the `routed` contestant) or straight over c1-b1 (the `direct` pair the issue subtracts).

use std::process::Command;

/// Where each contestant's datagrams go in the testbed.
pub const LISTEN: &str = "10.1.0.1";
pub const BACKEND: &str = "10.2.0.2";
pub const BACKEND_DIRECT: &str = "10.3.0.1";
/// The forwarder's interfaces, as ringgate's `--xdp` names them.
pub const XDP_INTERFACES: &str = "x0,y0";

/// One end of a veth: interface, MAC, address with prefix.
type End = (&'static str, &'static str, &'static str);

/// The testbed's links: (namespace index, end), (namespace index, end). 0 client, 1
/// forwarder, 2 backend.
const LINKS: [((usize, End), (usize, End)); 3] = [
    (
        (0, ("c0", "02:00:00:00:01:02", "10.1.0.2/24")),
        (1, ("x0", "02:00:00:00:01:01", "10.1.0.1/24")),
    ),
    (
        (1, ("y0", "02:00:00:00:02:01", "10.2.0.1/24")),
        (2, ("b0", "02:00:00:00:02:02", "10.2.0.2/24")),
    ),
    (
        (0, ("c1", "02:00:00:00:03:02", "10.3.0.2/24")),
        (2, ("b1", "02:00:00:00:03:01", "10.3.0.1/24")),
    ),
];

/// The senders' ends: TX checksum offload off, GRO on (see the module's comment).
const SENDERS: [(usize, &str); 4] = [(0, "c0"), (0, "c1"), (2, "b0"), (2, "b1")];

/// Routes through the forwarder: (namespace index, destination, gateway).
const ROUTES: [(usize, &str, &str); 2] = [
    (0, "10.2.0.0/24", "10.1.0.1"),
    (2, "10.1.0.0/24", "10.2.0.1"),
];

/// Runs `program args`, which must succeed; the error names the command and its stderr.
fn run(program: &str, args: &[&str]) -> Result<(), String> {
    let out = Command::new(program).args(args).output().map_err(|e| {
        format!("`{program}` cannot be run ({e}): apt-get install iproute2 ethtool")
    })?;
    match out.status.success() {
        true => Ok(()),
        false => Err(format!(
            "`{program} {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )),
    }
}

/// A network namespace this driver added; deleted on drop.
pub struct Netns {
    name: String,
}

impl Netns {
    fn add(name: String) -> Result<Netns, String> {
        run("ip", &["netns", "add", &name])?;
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `ip -n NAME ARGS...`.
    fn ip(&self, args: &[&str]) -> Result<(), String> {
        run("ip", &[&["-n", self.name.as_str()], args].concat())
    }

    /// `ip netns exec NAME PROGRAM ARGS...` (ethtool, sysctl: tools that know no `-n`).
    fn exec(&self, program: &str, args: &[&str]) -> Result<(), String> {
        run(
            "ip",
            &[&["netns", "exec", &self.name, program], args].concat(),
        )
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Err(e) = run("ip", &["netns", "del", &self.name]) {
            eprintln!(
                "forward: could not delete network namespace {}: {e}",
                self.name
            );
        }
    }
}

/// The three namespaces, wired; all deleted on drop.
pub struct Testbed {
    pub client: Netns,
    pub forwarder: Netns,
    pub backend: Netns,
}

impl Testbed {
    /// Builds the testbed, its namespaces named `rgbench-ROLE-PID` (one driver at a time per
    /// process, so no two runs collide).
    pub fn build() -> Result<Testbed, String> {
        let pid = std::process::id();
        let name = |role: &str| format!("rgbench-{role}-{pid}");
        let testbed = Testbed {
            client: Netns::add(name("client"))?,
            forwarder: Netns::add(name("fwd"))?,
            backend: Netns::add(name("backend"))?,
        };
        // Before the veths exist, so that their own `forwarding` starts at 1.
        testbed
            .forwarder
            .exec("sysctl", &["-qw", "net.ipv4.ip_forward=1"])?;
        let spaces = [&testbed.client, &testbed.forwarder, &testbed.backend];
        for ((a, end_a), (b, end_b)) in LINKS {
            let (local, remote) = (end_a.0, end_b.0);
            spaces[a].ip(&["link", "add", local, "type", "veth", "peer", "name", remote])?;
            spaces[a].ip(&["link", "set", remote, "netns", spaces[b].name()])?;
            for ((ns, (dev, mac, cidr)), (_, (_, their_mac, their_cidr))) in
                [((a, end_a), (b, end_b)), ((b, end_b), (a, end_a))]
            {
                let ns = spaces[ns];
                ns.ip(&["link", "set", dev, "address", mac])?;
                ns.ip(&["addr", "add", cidr, "dev", dev])?;
                ns.ip(&["link", "set", dev, "up"])?;
                let ip = their_cidr.split('/').next().unwrap_or(their_cidr);
                let neigh = ["neigh", "replace", ip, "lladdr", their_mac, "dev", dev];
                ns.ip(&[&neigh[..], &["nud", "permanent"]].concat())?;
            }
        }
        for (ns, dev) in SENDERS {
            spaces[ns].exec("ethtool", &["-K", dev, "tx", "off", "gro", "on"])?;
        }
        for (ns, destination, gateway) in ROUTES {
            spaces[ns].ip(&["route", "add", destination, "via", gateway])?;
        }
        Ok(testbed)
    }
}
