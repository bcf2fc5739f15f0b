//! The host checks' decisions against values a host could have.
//!
//! Why this file is long: one test per host setting, each with values that trip it and values
//! that do not, and the checks that keep the thresholds in step with `tuning/`.

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
    // What tuning/sysctl.conf sets and tuning/check.sh recommends, not a range of its own.
    assert_eq!(
        f.recommended,
        "10000 65535 (55536 ports; tuning/apply.sh sets it)"
    );
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
    assert!(f.recommended.starts_with("at least 131072 ports"), "{f}");
    assert!(f.why.contains("more source addresses"), "{f}");
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
    let unlimited = "Max open files            unlimited            unlimited            files\n";
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

/// The values recommended here are tuning/sysctl.conf's (read from it) and tuning/check.sh's.
#[test]
fn thresholds_match_the_tuning_scripts() {
    assert_eq!(netdev_max_backlog_min(), 16_384);
    assert_eq!(port_range(), (10_000, 65_535));
    // check.sh falls back to the same range when it cannot read the profile.
    assert!(include_str!("../../tuning/check.sh").contains(":-10000 65535}"));

    let check_sh = include_str!("../../tuning/check.sh");
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
