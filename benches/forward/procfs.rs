//! What the driver reads about its children from /proc: CPU time (utime + stime of all threads,
//! live and exited, from /proc/<pid>/stat), peak resident memory (VmHWM in /proc/<pid>/status),
//! and how many datagrams the kernel dropped because one of a process's UDP sockets had a full
//! receive buffer (the `drops` column of /proc/net/udp and udp6, for the sockets in
//! /proc/<pid>/fd). The last one says where a loss happened: at the forwarder's sockets (it did
//! not keep up) or at the generator's and backend's (the load did not).

use std::collections::HashSet;
use std::time::Duration;

/// User plus system CPU time of every thread of `pid`, in clock ticks.
pub fn cpu_ticks(pid: u32) -> Result<u64, String> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    parse_cpu_ticks(&stat).ok_or_else(|| format!("{path}: unexpected format"))
}

/// The `comm` field (2) may hold spaces and parentheses, so fields are counted from the last
/// `)`: after it come field 3 (state) onwards, which puts utime (14) and stime (15) at
/// positions 11 and 12.
fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let after_comm = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_comm.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// Converts a tick count to time with the kernel's tick rate.
pub fn ticks_to_duration(ticks: u64, ticks_per_second: u64) -> Duration {
    Duration::from_secs_f64(ticks as f64 / ticks_per_second as f64)
}

/// The peak resident set size of `pid` so far, in KiB.
pub fn peak_rss_kib(pid: u32) -> Result<u64, String> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    parse_peak_rss_kib(&status).ok_or_else(|| format!("{path}: no VmHWM line"))
}

fn parse_peak_rss_kib(status: &str) -> Option<u64> {
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Receive-buffer drops summed over every UDP socket `pid` holds right now.
pub fn udp_drops(pid: u32) -> Result<u64, String> {
    let dir = format!("/proc/{pid}/fd");
    let inodes: HashSet<u64> = std::fs::read_dir(&dir)
        .map_err(|e| format!("{dir}: {e}"))?
        .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
        .filter_map(|target| socket_inode(target.to_str()?))
        .collect();
    let mut drops = 0;
    for table in ["/proc/net/udp", "/proc/net/udp6"] {
        // udp6 is absent when IPv6 is disabled; that is no error.
        if let Ok(text) = std::fs::read_to_string(table) {
            drops += socket_drops(&text, &inodes);
        }
    }
    Ok(drops)
}

/// The inode of a `socket:[12345]` fd link.
fn socket_inode(link: &str) -> Option<u64> {
    link.strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// Sums the `drops` column (13th) of the /proc/net/udp rows whose `inode` (10th) is in `inodes`.
fn socket_drops(table: &str, inodes: &HashSet<u64>) -> u64 {
    table
        .lines()
        .skip(1)
        .filter_map(|row| {
            let fields: Vec<&str> = row.split_whitespace().collect();
            let inode: u64 = fields.get(9)?.parse().ok()?;
            if !inodes.contains(&inode) {
                return None;
            }
            fields.get(12)?.parse::<u64>().ok()
        })
        .sum()
}

/// Datagrams the kernel dropped machine-wide because a CPU's input backlog was longer than
/// net.core.netdev_max_backlog (second column of /proc/net/softnet_stat, hex, one row per CPU).
/// Loopback traffic passes through that backlog, so this is the one loss no socket counts.
pub fn backlog_drops() -> Result<u64, String> {
    let path = "/proc/net/softnet_stat";
    let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    Ok(text
        .lines()
        .filter_map(|row| u64::from_str_radix(row.split_whitespace().nth(1)?, 16).ok())
        .sum())
}

/// Busy and total clock ticks of `cpus` since boot, from the `cpuN` rows of /proc/stat. Busy is
/// everything but idle and iowait, so it includes interrupts, softirqs (where loopback delivers
/// packets) and any other process that ran there: compared with the forwarder's own CPU time it
/// shows whether something else was competing for the forwarder's core.
pub fn cpu_set_ticks(cpus: &[usize]) -> Result<(u64, u64), String> {
    let path = "/proc/stat";
    let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    parse_cpu_set_ticks(&text, cpus).ok_or_else(|| format!("{path}: no row for CPUs {cpus:?}"))
}

fn parse_cpu_set_ticks(stat: &str, cpus: &[usize]) -> Option<(u64, u64)> {
    let (mut busy, mut total, mut found) = (0, 0, 0);
    for row in stat.lines() {
        let mut fields = row.split_whitespace();
        let Some(cpu) = fields.next()?.strip_prefix("cpu") else {
            continue;
        };
        if !cpu.parse().is_ok_and(|cpu: usize| cpus.contains(&cpu)) {
            continue;
        }
        // user nice system idle iowait irq softirq steal; guest time is already in user.
        let ticks: Vec<u64> = fields
            .take(8)
            .filter_map(|field| field.parse().ok())
            .collect();
        if ticks.len() < 8 {
            return None;
        }
        let idle = ticks[3] + ticks[4];
        total += ticks.iter().sum::<u64>();
        busy += ticks.iter().sum::<u64>() - idle;
        found += 1;
    }
    (found == cpus.len()).then_some((busy, total))
}

/// Self-checks of the pure logic above. Bench targets built with `harness = false` never run
/// `#[test]` functions, so the driver runs these under `cargo test --benches` instead.
pub mod checks {
    use super::*;

    pub fn cpu_ticks_survive_a_hostile_comm() {
        let stat = "4242 (a) b (c) S 1 4242 4242 0 -1 4194560 120 0 0 0 37 5 0 0 20 0 3 0";
        assert_eq!(parse_cpu_ticks(stat), Some(42));
    }

    pub fn peak_rss_from_status() {
        let status =
            "Name:\tringgate\nVmPeak:\t  10000 kB\nVmHWM:\t    4321 kB\nVmRSS:\t 4000 kB\n";
        assert_eq!(parse_peak_rss_kib(status), Some(4321));
    }

    pub fn our_own_process_is_readable() {
        let pid = std::process::id();
        assert!(cpu_ticks(pid).is_ok());
        assert!(peak_rss_kib(pid).unwrap() > 0);
    }

    pub fn udp_drops_of_our_sockets_only() {
        let row = |inode: u64, drops: u64| {
            format!(
                "  1: 0100007F:A0B1 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 {inode} 2 0000000000000000 {drops}\n"
            )
        };
        let table = format!(
            "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n{}{}{}",
            row(1001, 17),
            row(1002, 5),
            row(1003, 9)
        );
        let ours: HashSet<u64> = [1001, 1003].into();
        assert_eq!(socket_drops(&table, &ours), 26);
        assert_eq!(socket_inode("socket:[1001]"), Some(1001));
        assert_eq!(socket_inode("/dev/null"), None);
        assert!(udp_drops(std::process::id()).is_ok());
        assert!(backlog_drops().is_ok());
    }

    pub fn cpu_set_ticks_sum_the_chosen_cpus() {
        let stat = "cpu  30 0 30 300 0 0 0 0 0 0\n\
                    cpu0 10 0 10 100 5 0 5 0 0 0\n\
                    cpu1 20 0 20 200 0 0 0 0 0 0\n\
                    intr 12345\n";
        assert_eq!(parse_cpu_set_ticks(stat, &[0]), Some((25, 130)));
        assert_eq!(parse_cpu_set_ticks(stat, &[0, 1]), Some((65, 370)));
        assert_eq!(parse_cpu_set_ticks(stat, &[2]), None);
        assert!(cpu_set_ticks(&[0]).is_ok());
    }

    pub const ALL: &[(&str, fn())] = &[
        (
            "procfs::cpu_ticks_survive_a_hostile_comm",
            cpu_ticks_survive_a_hostile_comm,
        ),
        ("procfs::peak_rss_from_status", peak_rss_from_status),
        (
            "procfs::our_own_process_is_readable",
            our_own_process_is_readable,
        ),
        (
            "procfs::udp_drops_of_our_sockets_only",
            udp_drops_of_our_sockets_only,
        ),
        (
            "procfs::cpu_set_ticks_sum_the_chosen_cpus",
            cpu_set_ticks_sum_the_chosen_cpus,
        ),
    ];
}
