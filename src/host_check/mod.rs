//! Host settings that cost packets at the configured scale.
//!
//! ringgate calls [`check`] once at start-up and logs each [`Finding`] as a
//! warning; `tuning/check.sh` makes the same checks at length and says how to
//! fix them, and `tuning/apply.sh` applies the fixes. Reading the host
//! (`/proc/sys`, `/proc/self/limits`) is kept apart from the decision
//! (`evaluate`), which is plain code with unit tests. Nothing here fails or
//! blocks for long: a value that cannot be read skips its check, because the
//! forwarder runs either way and the warning is advice. The thresholds are
//! `tuning/sysctl.conf`'s, and a unit test keeps the two in step.

mod profile;

use std::fmt;
use std::fs;

use self::profile::{netdev_max_backlog_min, port_range};

/// File descriptors ringgate needs beyond one per session: listen sockets,
/// one ring per worker, metrics connections, logs, stdio. The same slack as
/// `FD_SLACK` in `tuning/check.sh`.
const FD_SLACK: u64 = 1024;

/// Ephemeral ports one source address has at most: 1024-65535.
const EPHEMERAL_PORTS_MAX: u64 = 65535 - 1024 + 1;

/// `net.ipv4.udp_mem` counts pages. 4 KiB is assumed because reading the page
/// size needs libc; on a host with larger pages the check asks for more
/// pages than needed (warns early), never fewer.
const UDP_MEM_PAGE_BYTES: u64 = 4096;

/// The kernel charges a socket twice the SO_RCVBUF/SO_SNDBUF it grants
/// (bookkeeping overhead; see socket(7)).
const KERNEL_BUFFER_FACTOR: u64 = 2;

/// ringgate's configured scale.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostLimits {
    /// Worker threads, one ring and one listen socket each.
    pub workers: usize,
    /// Sessions each worker may hold; each holds a socket and an ephemeral port.
    pub max_sessions_per_worker: usize,
    /// SO_RCVBUF and SO_SNDBUF each socket asks for, in bytes.
    pub socket_buffer_bytes: usize,
}

/// One host setting that would lose packets at the configured scale.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The sysctl (`net.core.rmem_max`) or limit (`RLIMIT_NOFILE`).
    pub key: String,
    /// Its value on this host.
    pub current: String,
    /// What ringgate needs.
    pub recommended: String,
    /// What goes wrong, in a sentence.
    pub why: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} is {}, recommended {}: {} (see tuning/check.sh)",
            self.key, self.current, self.recommended, self.why
        )
    }
}

/// Read this host's settings and return those that would lose packets at
/// `limits`' scale. Reads a dozen small files under /proc; call it once, at
/// start-up, off the workers.
pub fn check(limits: &HostLimits) -> Vec<Finding> {
    evaluate(limits, &HostValues::read())
}

/// A resource limit as /proc/self/limits shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rlimit {
    Finite(u64),
    Unlimited,
}

impl Rlimit {
    fn parse(s: &str) -> Option<Self> {
        match s {
            "unlimited" => Some(Rlimit::Unlimited),
            _ => s.parse().ok().map(Rlimit::Finite),
        }
    }

    fn covers(self, need: u64) -> bool {
        match self {
            Rlimit::Finite(n) => n >= need,
            Rlimit::Unlimited => true,
        }
    }
}

impl fmt::Display for Rlimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rlimit::Finite(n) => write!(f, "{n}"),
            Rlimit::Unlimited => f.write_str("unlimited"),
        }
    }
}

/// The open-files limit: soft (what applies) and hard (how far the soft one
/// may be raised without privilege).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct OpenFiles {
    soft: Rlimit,
    hard: Rlimit,
}

/// nf_conntrack's table, present when the module is loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Conntrack {
    max: u64,
    count: Option<u64>,
}

/// What [`check`] read from the host; `None` where a file is missing or
/// unreadable, which skips that check.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct HostValues {
    rmem_max: Option<u64>,
    wmem_max: Option<u64>,
    netdev_max_backlog: Option<u64>,
    /// The middle field of net.ipv4.udp_mem, in pages.
    udp_mem_pressure_pages: Option<u64>,
    ip_local_port_range: Option<(u64, u64)>,
    open_files: Option<OpenFiles>,
    nr_open: Option<u64>,
    io_uring_disabled: Option<u64>,
    conntrack: Option<Conntrack>,
}

impl HostValues {
    fn read() -> Self {
        let fields = |key: &str| read_sysctl(key).and_then(|s| parse_fields(&s));
        let one = |key: &str| fields(key).and_then(|f| (f.len() == 1).then(|| f[0]));
        HostValues {
            rmem_max: one("net.core.rmem_max"),
            wmem_max: one("net.core.wmem_max"),
            netdev_max_backlog: one("net.core.netdev_max_backlog"),
            udp_mem_pressure_pages: fields("net.ipv4.udp_mem").and_then(|f| f.get(1).copied()),
            ip_local_port_range: fields("net.ipv4.ip_local_port_range").and_then(|f| match f[..] {
                [lo, hi] => Some((lo, hi)),
                _ => None,
            }),
            open_files: fs::read_to_string("/proc/self/limits")
                .ok()
                .and_then(|s| parse_open_files(&s)),
            nr_open: one("fs.nr_open"),
            io_uring_disabled: one("kernel.io_uring_disabled"),
            conntrack: one("net.netfilter.nf_conntrack_max").map(|max| Conntrack {
                max,
                count: one("net.netfilter.nf_conntrack_count"),
            }),
        }
    }
}

/// The content of /proc/sys/KEY with dots for slashes, or None.
fn read_sysctl(key: &str) -> Option<String> {
    fs::read_to_string(format!("/proc/sys/{}", key.replace('.', "/"))).ok()
}

/// "575802\t767736\t1151604\n" -> [575802, 767736, 1151604]; None unless every
/// field is a non-negative integer.
fn parse_fields(s: &str) -> Option<Vec<u64>> {
    let fields: Option<Vec<u64>> = s.split_whitespace().map(|f| f.parse().ok()).collect();
    fields.filter(|f| !f.is_empty())
}

/// The "Max open files" line of /proc/self/limits:
/// `Max open files            1024                 524288               files`.
fn parse_open_files(limits: &str) -> Option<OpenFiles> {
    let rest = limits
        .lines()
        .find_map(|line| line.strip_prefix("Max open files"))?;
    let mut fields = rest.split_whitespace();
    let soft = Rlimit::parse(fields.next()?)?;
    let hard = Rlimit::parse(fields.next()?)?;
    Some(OpenFiles { soft, hard })
}

/// The decision: which of `host`'s values would lose packets at `limits`'
/// scale. Pure, so every branch is unit-tested below.
fn evaluate(limits: &HostLimits, host: &HostValues) -> Vec<Finding> {
    let as_u64 = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
    let workers = as_u64(limits.workers);
    let max_sessions = as_u64(limits.max_sessions_per_worker);
    let sessions = workers.saturating_mul(max_sessions);
    let buffer_bytes = as_u64(limits.socket_buffer_bytes);
    let mut findings = Vec::new();
    let mut add = |key: &str, current: String, recommended: String, why: String| {
        findings.push(Finding {
            key: key.to_owned(),
            current,
            recommended,
            why,
        });
    };

    let buffer_caps = [
        (
            "net.core.rmem_max",
            host.rmem_max,
            "SO_RCVBUF",
            "receive queues overflow in bursts",
        ),
        (
            "net.core.wmem_max",
            host.wmem_max,
            "SO_SNDBUF",
            "sends fail when the send buffer fills",
        ),
    ];
    for (key, value, option, loss) in buffer_caps {
        if let Some(cap) = value.filter(|&cap| cap < buffer_bytes) {
            add(
                key,
                cap.to_string(),
                format!("at least {buffer_bytes}"),
                format!(
                    "the kernel caps each socket's {option} request of {buffer_bytes} bytes at {cap}, \
                     so {loss} (only CAP_NET_ADMIN's {option}FORCE gets past the cap)"
                ),
            );
        }
    }

    if let Some(backlog) = host
        .netdev_max_backlog
        .filter(|&b| b < netdev_max_backlog_min())
    {
        add(
            "net.core.netdev_max_backlog",
            backlog.to_string(),
            format!("at least {}", netdev_max_backlog_min()),
            "the per-CPU queue between the NIC and the sockets drops what does not fit \
             (column 2 of /proc/net/softnet_stat)"
                .to_owned(),
        );
    }

    // Every worker's receive and send buffers full at once, as the kernel counts them.
    let udp_pages_needed = workers
        .saturating_mul(buffer_bytes)
        .saturating_mul(2 * KERNEL_BUFFER_FACTOR)
        / UDP_MEM_PAGE_BYTES;
    if let Some(pressure) = host
        .udp_mem_pressure_pages
        .filter(|&p| p < udp_pages_needed)
    {
        add(
            "net.ipv4.udp_mem",
            format!("{pressure} pages (pressure)"),
            format!("a pressure threshold of at least {udp_pages_needed} pages"),
            format!(
                "UDP memory is under pressure before {workers} workers' {buffer_bytes}-byte buffers \
                 are full, and sockets under pressure drop"
            ),
        );
    }

    if let Some((lo, hi)) = host.ip_local_port_range {
        let ports = if hi >= lo { hi - lo + 1 } else { 0 };
        let (plo, phi) = port_range();
        let profile_ports = phi.saturating_sub(plo) + 1;
        if ports < sessions {
            // As tuning/check.sh: the profile's range if it is wider (apply.sh sets it), else
            // only fewer sessions or more source addresses help.
            let (recommended, remedy) = if ports < profile_ports {
                (
                    format!("{plo} {phi} ({profile_ports} ports; tuning/apply.sh sets it)"),
                    "new sessions past that fail to open".to_owned(),
                )
            } else {
                (
                    format!(
                        "at least {sessions} ports (one address has at most \
                         {EPHEMERAL_PORTS_MAX}, 1024-65535)"
                    ),
                    "new sessions past that fail to open; lower --max-sessions or give ringgate \
                     more source addresses"
                        .to_owned(),
                )
            };
            add(
                "net.ipv4.ip_local_port_range",
                format!("{lo} {hi} ({ports} ports)"),
                recommended,
                format!(
                    "each session holds an ephemeral port and {workers} workers x {max_sessions} \
                     sessions need {sessions}; {remedy}"
                ),
            );
        }
    }

    let fds_needed = sessions.saturating_add(FD_SLACK);
    if let Some(OpenFiles { soft, hard }) = host.open_files.filter(|o| !o.soft.covers(fds_needed)) {
        let raise = if hard.covers(fds_needed) {
            format!("the hard limit ({hard}) allows it: raise the soft limit")
        } else {
            format!("raise LimitNOFILE (hard limit {hard})")
        };
        add(
            "RLIMIT_NOFILE",
            soft.to_string(),
            format!("at least {fds_needed}"),
            format!(
                "each session holds a socket, so sessions past the limit fail to open; {raise} \
                 (tuning/ringgate.service sets LimitNOFILE)"
            ),
        );
    }
    if let Some(nr_open) = host.nr_open.filter(|&n| n < fds_needed) {
        add(
            "fs.nr_open",
            nr_open.to_string(),
            format!("at least {fds_needed}"),
            "no process may raise its open-files limit past this, whatever LimitNOFILE says"
                .to_owned(),
        );
    }

    match host.io_uring_disabled {
        None | Some(0) => {}
        Some(1) => add(
            "kernel.io_uring_disabled",
            "1".to_owned(),
            "0, or ringgate's user in kernel.io_uring_group".to_owned(),
            "io_uring is reserved for CAP_SYS_ADMIN and members of kernel.io_uring_group; \
             anyone else fails to set up a ring"
                .to_owned(),
        ),
        Some(n) => add(
            "kernel.io_uring_disabled",
            n.to_string(),
            "0".to_owned(),
            "io_uring is disabled for every process".to_owned(),
        ),
    }

    if let Some(Conntrack { max, count }) = host.conntrack {
        let entries_needed = sessions.saturating_mul(2);
        let tracking = count.map_or_else(String::new, |c| format!(", tracking {c} flows"));
        let overflow = if max < entries_needed {
            format!(
                "; at {entries_needed} entries (2 per session) the table is full and the kernel \
                 drops new flows"
            )
        } else {
            String::new()
        };
        add(
            "net.netfilter.nf_conntrack_max",
            format!("{max} (nf_conntrack loaded{tracking})"),
            format!("a notrack rule for ringgate's UDP ports, or at least {entries_needed}"),
            format!(
                "when conntrack tracks UDP, every packet costs a table lookup and every session \
                 2 entries{overflow}"
            ),
        );
    }

    findings
}

#[cfg(test)]
mod tests;
