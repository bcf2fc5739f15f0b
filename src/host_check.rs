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

use std::fmt;
use std::fs;

/// File descriptors ringgate needs beyond one per session: listen sockets,
/// one ring per worker, metrics connections, logs, stdio. The same slack as
/// `FD_SLACK` in `tuning/check.sh`.
const FD_SLACK: u64 = 1024;

/// `net.core.netdev_max_backlog` in `tuning/sysctl.conf`: the kernel's 1000
/// overflows in a 1 ms burst at 1 Mpps.
const NETDEV_MAX_BACKLOG_MIN: u64 = 16384;

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
        .filter(|&b| b < NETDEV_MAX_BACKLOG_MIN)
    {
        add(
            "net.core.netdev_max_backlog",
            backlog.to_string(),
            format!("at least {NETDEV_MAX_BACKLOG_MIN}"),
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
        if ports < sessions {
            let (recommended, remedy) = if sessions <= EPHEMERAL_PORTS_MAX {
                (
                    format!("at least {sessions} ports, e.g. {} 65535", 65536 - sessions),
                    "new sessions past that fail to open".to_owned(),
                )
            } else {
                (
                    format!("1024 65535 ({EPHEMERAL_PORTS_MAX} ports, all one address has)"),
                    "new sessions past that fail to open; lower max sessions or add source addresses"
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
mod tests {
    use super::*;

    /// ringgate's defaults on a 2-CPU host.
    const DEFAULTS: HostLimits = HostLimits {
        workers: 2,
        max_sessions_per_worker: 65536,
        socket_buffer_bytes: 8 << 20,
    };

    /// A small deployment every tuned host can carry.
    const SMALL: HostLimits = HostLimits {
        workers: 2,
        max_sessions_per_worker: 10_000,
        socket_buffer_bytes: 8 << 20,
    };

    /// A host after tuning/apply.sh, with ringgate.service's limits.
    fn tuned() -> HostValues {
        HostValues {
            rmem_max: Some(16 << 20),
            wmem_max: Some(16 << 20),
            netdev_max_backlog: Some(16384),
            udp_mem_pressure_pages: Some(131072),
            ip_local_port_range: Some((10000, 65535)),
            open_files: Some(OpenFiles {
                soft: Rlimit::Finite(1 << 20),
                hard: Rlimit::Finite(1 << 20),
            }),
            nr_open: Some(1 << 20),
            io_uring_disabled: Some(0),
            conntrack: None,
        }
    }

    /// A stock Debian host: 208 KiB buffers, backlog 1000, 1024 files.
    fn stock() -> HostValues {
        HostValues {
            rmem_max: Some(212992),
            wmem_max: Some(212992),
            netdev_max_backlog: Some(1000),
            udp_mem_pressure_pages: Some(767736),
            ip_local_port_range: Some((32768, 60999)),
            open_files: Some(OpenFiles {
                soft: Rlimit::Finite(1024),
                hard: Rlimit::Finite(524288),
            }),
            nr_open: Some(1048576),
            io_uring_disabled: Some(0),
            conntrack: Some(Conntrack {
                max: 262144,
                count: Some(12),
            }),
        }
    }

    fn keys(findings: &[Finding]) -> Vec<&str> {
        findings.iter().map(|f| f.key.as_str()).collect()
    }

    fn only<'a>(findings: &'a [Finding], key: &str) -> &'a Finding {
        match findings {
            [f] if f.key == key => f,
            _ => panic!("expected exactly {key}, got {:?}", keys(findings)),
        }
    }

    #[test]
    fn a_tuned_host_has_no_findings() {
        assert_eq!(evaluate(&SMALL, &tuned()), vec![]);
    }

    #[test]
    fn nothing_read_means_nothing_reported() {
        assert_eq!(evaluate(&DEFAULTS, &HostValues::default()), vec![]);
    }

    #[test]
    fn a_stock_host_reports_each_setting_that_loses_packets() {
        assert_eq!(
            keys(&evaluate(&DEFAULTS, &stock())),
            [
                "net.core.rmem_max",
                "net.core.wmem_max",
                "net.core.netdev_max_backlog",
                "net.ipv4.ip_local_port_range",
                "RLIMIT_NOFILE",
                "net.netfilter.nf_conntrack_max",
            ]
        );
    }

    #[test]
    fn buffer_caps_compare_with_the_requested_size() {
        let at_cap = HostValues {
            rmem_max: Some(8 << 20),
            wmem_max: Some(8 << 20),
            ..tuned()
        };
        assert_eq!(evaluate(&SMALL, &at_cap), vec![]);

        let short = HostValues {
            rmem_max: Some(4 << 20),
            ..tuned()
        };
        let findings = evaluate(&SMALL, &short);
        let f = only(&findings, "net.core.rmem_max");
        assert_eq!(f.current, "4194304");
        assert_eq!(f.recommended, "at least 8388608");
        assert!(f.why.contains("SO_RCVBUF"), "{f}");
        assert!(f.why.contains("CAP_NET_ADMIN"), "{f}");

        let short_send = HostValues {
            wmem_max: Some(212992),
            ..tuned()
        };
        only(&evaluate(&SMALL, &short_send), "net.core.wmem_max");
    }

    #[test]
    fn a_small_backlog_is_reported() {
        let host = HostValues {
            netdev_max_backlog: Some(1000),
            ..tuned()
        };
        let findings = evaluate(&SMALL, &host);
        let f = only(&findings, "net.core.netdev_max_backlog");
        assert_eq!(f.current, "1000");
        assert_eq!(f.recommended, "at least 16384");
    }

    #[test]
    fn udp_mem_must_hold_every_workers_buffers() {
        // 2 workers x 8 MiB x (rx + tx) x 2 = 64 MiB = 16384 pages.
        let host = HostValues {
            udp_mem_pressure_pages: Some(16384),
            ..tuned()
        };
        assert_eq!(evaluate(&SMALL, &host), vec![]);
        let host = HostValues {
            udp_mem_pressure_pages: Some(16383),
            ..tuned()
        };
        let findings = evaluate(&SMALL, &host);
        assert!(
            only(&findings, "net.ipv4.udp_mem")
                .recommended
                .contains("16384 pages")
        );
    }

    #[test]
    fn the_port_range_must_cover_every_session() {
        // 2 x 10000 sessions: the stock 28232 ports suffice.
        let host = HostValues {
            ip_local_port_range: Some((32768, 60999)),
            ..tuned()
        };
        assert_eq!(evaluate(&SMALL, &host), vec![]);

        let busier = HostLimits {
            max_sessions_per_worker: 20_000,
            ..SMALL
        };
        let findings = evaluate(&busier, &host);
        let f = only(&findings, "net.ipv4.ip_local_port_range");
        assert_eq!(f.current, "32768 60999 (28232 ports)");
        assert_eq!(f.recommended, "at least 40000 ports, e.g. 25536 65535");
        assert!(
            f.why.contains("2 workers x 20000 sessions need 40000"),
            "{f}"
        );
    }

    #[test]
    fn more_sessions_than_one_address_has_ports_says_so() {
        // ringgate's defaults: 131072 sessions, more than 64512 ports.
        let host = HostValues {
            ip_local_port_range: Some((1024, 65535)),
            open_files: None,
            ..tuned()
        };
        let findings = evaluate(&DEFAULTS, &host);
        let f = only(&findings, "net.ipv4.ip_local_port_range");
        assert!(f.recommended.starts_with("1024 65535"), "{f}");
        assert!(f.why.contains("add source addresses"), "{f}");
    }

    #[test]
    fn an_inverted_port_range_counts_as_empty() {
        let host = HostValues {
            ip_local_port_range: Some((60000, 50000)),
            ..tuned()
        };
        let findings = evaluate(&SMALL, &host);
        assert!(
            only(&findings, "net.ipv4.ip_local_port_range")
                .current
                .contains("(0 ports)")
        );
    }

    #[test]
    fn open_files_must_cover_sessions_and_slack() {
        let need = 2 * 10_000 + FD_SLACK;
        let exactly = HostValues {
            open_files: Some(OpenFiles {
                soft: Rlimit::Finite(need),
                hard: Rlimit::Finite(need),
            }),
            ..tuned()
        };
        assert_eq!(evaluate(&SMALL, &exactly), vec![]);

        let soft_only = HostValues {
            open_files: Some(OpenFiles {
                soft: Rlimit::Finite(need - 1),
                hard: Rlimit::Unlimited,
            }),
            ..tuned()
        };
        let findings = evaluate(&SMALL, &soft_only);
        let f = only(&findings, "RLIMIT_NOFILE");
        assert_eq!(f.recommended, format!("at least {need}"));
        assert!(f.why.contains("raise the soft limit"), "{f}");

        let both = HostValues {
            open_files: Some(OpenFiles {
                soft: Rlimit::Finite(1024),
                hard: Rlimit::Finite(4096),
            }),
            ..tuned()
        };
        let findings = evaluate(&SMALL, &both);
        assert!(
            only(&findings, "RLIMIT_NOFILE")
                .why
                .contains("raise LimitNOFILE (hard limit 4096)")
        );

        let unlimited = HostValues {
            open_files: Some(OpenFiles {
                soft: Rlimit::Unlimited,
                hard: Rlimit::Unlimited,
            }),
            ..tuned()
        };
        assert_eq!(evaluate(&SMALL, &unlimited), vec![]);
    }

    #[test]
    fn nr_open_caps_any_limit() {
        let host = HostValues {
            nr_open: Some(1024),
            open_files: None,
            ..tuned()
        };
        only(&evaluate(&SMALL, &host), "fs.nr_open");
    }

    #[test]
    fn io_uring_must_be_enabled() {
        for (value, recommended) in [
            (1, "0, or ringgate's user in kernel.io_uring_group"),
            (2, "0"),
        ] {
            let host = HostValues {
                io_uring_disabled: Some(value),
                ..tuned()
            };
            let findings = evaluate(&SMALL, &host);
            let f = only(&findings, "kernel.io_uring_disabled");
            assert_eq!(f.current, value.to_string());
            assert_eq!(f.recommended, recommended);
        }
        // Kernels before 6.6 have no switch.
        let old_kernel = HostValues {
            io_uring_disabled: None,
            ..tuned()
        };
        assert_eq!(evaluate(&SMALL, &old_kernel), vec![]);
    }

    #[test]
    fn loaded_conntrack_is_reported_and_a_small_table_explained() {
        let host = HostValues {
            conntrack: Some(Conntrack {
                max: 262144,
                count: Some(0),
            }),
            ..tuned()
        };
        let findings = evaluate(&SMALL, &host);
        let f = only(&findings, "net.netfilter.nf_conntrack_max");
        assert_eq!(f.current, "262144 (nf_conntrack loaded, tracking 0 flows)");
        assert!(f.recommended.contains("notrack"), "{f}");
        assert!(!f.why.contains("table is full"), "{f}");

        let small = HostValues {
            conntrack: Some(Conntrack {
                max: 32768,
                count: None,
            }),
            ..tuned()
        };
        let findings = evaluate(&SMALL, &small);
        let f = only(&findings, "net.netfilter.nf_conntrack_max");
        assert_eq!(f.current, "32768 (nf_conntrack loaded)");
        assert!(f.why.contains("at 40000 entries"), "{f}");
    }

    #[test]
    fn absurd_scales_saturate_instead_of_overflowing() {
        let huge = HostLimits {
            workers: usize::MAX,
            max_sessions_per_worker: usize::MAX,
            socket_buffer_bytes: usize::MAX,
        };
        let findings = evaluate(&huge, &tuned());
        assert!(findings.iter().any(|f| f.key == "RLIMIT_NOFILE"));
    }

    #[test]
    fn a_finding_is_one_line_naming_the_key_and_check_sh() {
        for f in evaluate(&DEFAULTS, &stock()) {
            let line = f.to_string();
            assert!(!line.contains('\n'), "{line}");
            assert!(line.starts_with(&f.key), "{line}");
            assert!(line.ends_with("(see tuning/check.sh)"), "{line}");
        }
    }

    #[test]
    fn parses_proc_self_limits() {
        let limits = "\
Limit                     Soft Limit           Hard Limit           Units
Max cpu time              unlimited            unlimited            seconds
Max open files            1024                 524288               files
Max locked memory         8388608              8388608              bytes
";
        assert_eq!(
            parse_open_files(limits),
            Some(OpenFiles {
                soft: Rlimit::Finite(1024),
                hard: Rlimit::Finite(524288),
            })
        );
        let unlimited =
            "Max open files            unlimited            unlimited            files\n";
        assert_eq!(
            parse_open_files(unlimited),
            Some(OpenFiles {
                soft: Rlimit::Unlimited,
                hard: Rlimit::Unlimited,
            })
        );
        assert_eq!(
            parse_open_files("Max cpu time unlimited unlimited seconds\n"),
            None
        );
        assert_eq!(
            parse_open_files("Max open files  lots  more  files\n"),
            None
        );
    }

    #[test]
    fn parses_sysctl_fields() {
        assert_eq!(
            parse_fields("575802\t767736\t1151604\n"),
            Some(vec![575802, 767736, 1151604])
        );
        assert_eq!(parse_fields("32768\t60999\n"), Some(vec![32768, 60999]));
        assert_eq!(parse_fields("-1\n"), None);
        assert_eq!(parse_fields("\n"), None);
        assert_eq!(parse_fields("cubic\n"), None);
    }

    /// The thresholds here are tuning/sysctl.conf's and tuning/check.sh's.
    #[test]
    fn thresholds_match_the_tuning_scripts() {
        let profile = include_str!("../tuning/sysctl.conf");
        let backlog = profile
            .lines()
            .find_map(|l| l.strip_prefix("net.core.netdev_max_backlog"))
            .and_then(|rest| rest.trim().strip_prefix('='))
            .map(|v| v.trim().parse::<u64>());
        assert_eq!(backlog, Some(Ok(NETDEV_MAX_BACKLOG_MIN)));

        let check_sh = include_str!("../tuning/check.sh");
        assert!(
            check_sh
                .lines()
                .any(|l| l == format!("FD_SLACK={FD_SLACK}")),
            "tuning/check.sh's FD_SLACK differs from host_check's {FD_SLACK}"
        );
    }

    /// Reading this machine works and every finding renders as a log line.
    #[test]
    fn checks_this_host() {
        for f in check(&DEFAULTS) {
            assert!(f.to_string().ends_with("(see tuning/check.sh)"), "{f}");
        }
        let values = HostValues::read();
        assert!(
            values.open_files.is_some(),
            "/proc/self/limits unreadable: {values:?}"
        );
    }
}
