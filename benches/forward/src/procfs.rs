//! What the driver reads about its children from /proc: CPU time (utime + stime of all threads,
//! from /proc/<pid>/stat), peak resident memory (VmHWM in /proc/<pid>/status), how busy a CPU
//! set was and what the whole machine did by kind of work (/proc/stat), and the datagrams the
//! kernel dropped at full receive buffers of a process's UDP sockets (the `drops` column of /proc/net/udp and udp6, for the sockets in
//! /proc/<pid>/fd) or at a CPU's input backlog (/proc/net/softnet_stat). The drops say where a
//! loss happened: at the forwarder (it fell behind) or at the generator and backend (the load
//! did).

use std::collections::{BTreeMap, HashSet};

fn read(path: &str) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))
}

/// User plus system CPU time of every thread of `pid`, in clock ticks.
pub fn cpu_ticks(pid: u32) -> Result<u64, String> {
    let path = format!("/proc/{pid}/stat");
    parse_cpu_ticks(&read(&path)?).ok_or_else(|| format!("{path}: unexpected format"))
}

/// `comm` (field 2) may hold spaces and parentheses, so fields are counted from the last `)`:
/// after it come field 3 (state) onwards, which puts utime (14) and stime (15) at 11 and 12.
fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let mut fields = stat[stat.rfind(')')? + 1..].split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    Some(utime + fields.next()?.parse::<u64>().ok()?)
}

/// User plus system CPU time of every process now, by pid, except `ours` and the kernel's
/// `ksoftirqd` threads (which run the network's deferred work, the benchmark's own): what the
/// rest of the machine spent, for the XDP testbed to tell its cost from a busy neighbour's.
/// A process that vanishes between two readings is missed (its time moves to its parent's
/// children's time, which is not counted): an undercount of the others.
pub fn other_processes_ticks(ours: &[u32]) -> BTreeMap<u32, u64> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return BTreeMap::new();
    };
    let pids = entries.filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok());
    let others = pids.filter(|pid| !ours.contains(pid));
    let ticks = |pid: u32| {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let comm = &stat[stat.find('(')? + 1..stat.rfind(')')?];
        (!comm.starts_with("ksoftirqd")).then(|| Some((pid, parse_cpu_ticks(&stat)?)))?
    };
    others.filter_map(ticks).collect()
}

/// The peak resident set size of `pid` so far, in KiB.
pub fn peak_rss_kib(pid: u32) -> Result<u64, String> {
    let path = format!("/proc/{pid}/status");
    parse_peak_rss_kib(&read(&path)?).ok_or_else(|| format!("{path}: no VmHWM"))
}

fn parse_peak_rss_kib(status: &str) -> Option<u64> {
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Receive-buffer drops summed over every UDP socket `pid` holds now.
pub fn udp_drops(pid: u32) -> Result<u64, String> {
    let dir = format!("/proc/{pid}/fd");
    let entries = std::fs::read_dir(&dir).map_err(|e| format!("{dir}: {e}"))?;
    let links = entries.filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok());
    let inodes: HashSet<u64> = links
        .filter_map(|link| socket_inode(link.to_str()?))
        .collect();
    // udp6 is absent when IPv6 is disabled; that is no error.
    let tables = ["/proc/net/udp", "/proc/net/udp6"]
        .into_iter()
        .filter_map(|table| read(table).ok());
    Ok(tables.map(|table| socket_drops(&table, &inodes)).sum())
}

/// The inode of a `socket:[12345]` fd link.
fn socket_inode(link: &str) -> Option<u64> {
    link.strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// Sums the `drops` column (13th) of the /proc/net/udp rows whose inode (10th) is in `inodes`.
fn socket_drops(table: &str, inodes: &HashSet<u64>) -> u64 {
    let row_drops = |row: &str| {
        let fields: Vec<&str> = row.split_whitespace().collect();
        let inode: u64 = fields.get(9)?.parse().ok()?;
        inodes
            .contains(&inode)
            .then(|| fields.get(12)?.parse::<u64>().ok())?
    };
    table.lines().skip(1).filter_map(row_drops).sum()
}

/// Datagrams dropped machine-wide because a CPU's input backlog exceeded
/// net.core.netdev_max_backlog (column 2 of softnet_stat, hex, a row per CPU). Loopback traffic
/// passes through that backlog, so this is the one loss no socket counts.
pub fn backlog_drops() -> Result<u64, String> {
    let text = read("/proc/net/softnet_stat")?;
    Ok(text
        .lines()
        .filter_map(|row| u64::from_str_radix(row.split_whitespace().nth(1)?, 16).ok())
        .sum())
}

/// Busy and total clock ticks of `cpus` since boot. Busy is all but idle and iowait, so it
/// includes interrupts, softirqs (where loopback delivers packets) and any other process: set
/// against the forwarder's own CPU time it shows whether something competed for its cores.
pub fn cpu_set_ticks(cpus: &[usize]) -> Result<(u64, u64), String> {
    parse_cpu_set_ticks(&read("/proc/stat")?, cpus)
        .ok_or_else(|| format!("/proc/stat: no row for CPUs {cpus:?}"))
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
        let sum: u64 = ticks.iter().sum();
        (total, busy, found) = (total + sum, busy + sum - ticks[3] - ticks[4], found + 1);
    }
    (found == cpus.len()).then_some((busy, total))
}

/// What the whole machine did since boot, from /proc/stat's `cpu` row, in clock ticks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MachineTicks {
    /// Sampled by the tick, by kind: user (with nice), system, irq, softirq. The XDP
    /// testbed's breakdown: the program's work is softirq time that no process is charged.
    pub by_kind: [u64; 4],
    /// Idle and iowait: kept exactly by a tickless kernel (its idle sleep time, rounded to a
    /// tick only when printed), so elapsed time less this is the precise busy time.
    pub idle: u64,
    /// The CPUs the row sums over (`cpuN` rows).
    pub cpus: usize,
}

pub fn machine_ticks() -> Result<MachineTicks, String> {
    parse_machine_ticks(&read("/proc/stat")?).ok_or_else(|| "/proc/stat: no `cpu` row".into())
}

fn parse_machine_ticks(stat: &str) -> Option<MachineTicks> {
    let row = stat.lines().find(|row| row.starts_with("cpu "))?;
    let ticks: Vec<u64> = row
        .split_whitespace()
        .skip(1)
        .take(7)
        .map(|field| field.parse().ok())
        .collect::<Option<_>>()?;
    let cpus = stat
        .lines()
        .filter(|row| row.starts_with("cpu") && !row.starts_with("cpu "))
        .count();
    // user nice system idle iowait irq softirq
    (ticks.len() == 7 && cpus > 0).then(|| MachineTicks {
        by_kind: [ticks[0] + ticks[1], ticks[2], ticks[5], ticks[6]],
        idle: ticks[3] + ticks[4],
        cpus,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_ticks_and_rss_parse() {
        let stat = "4242 (a) b (c) S 1 4242 4242 0 -1 4194560 120 0 0 0 37 5 0 0 20 0 3 0";
        assert_eq!(parse_cpu_ticks(stat), Some(42));
        let status =
            "Name:\tringgate\nVmPeak:\t  10000 kB\nVmHWM:\t    4321 kB\nVmRSS:\t 4000 kB\n";
        assert_eq!(parse_peak_rss_kib(status), Some(4321));
        let pid = std::process::id();
        assert!(cpu_ticks(pid).is_ok() && peak_rss_kib(pid).unwrap() > 0);
    }

    #[test]
    fn udp_drops_of_our_sockets_only() {
        let row = |inode: u64, drops: u64| {
            format!(
                "  1: 0100007F:A0B1 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 {inode} 2 0000000000000000 {drops}\n"
            )
        };
        let header = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n";
        let table = format!("{header}{}{}{}", row(1001, 17), row(1002, 5), row(1003, 9));
        assert_eq!(socket_drops(&table, &[1001, 1003].into()), 26);
        assert_eq!(
            (socket_inode("socket:[1001]"), socket_inode("/dev/null")),
            (Some(1001), None)
        );
        assert!(udp_drops(std::process::id()).is_ok() && backlog_drops().is_ok());
    }

    #[test]
    fn cpu_set_ticks_sum_the_chosen_cpus() {
        let stat = "cpu  30 0 30 300 0 0 0 0 0 0\ncpu0 10 0 10 100 5 0 5 0 0 0\ncpu1 20 0 20 200 0 0 0 0 0 0\nintr 12345\n";
        assert_eq!(parse_cpu_set_ticks(stat, &[0]), Some((25, 130)));
        assert_eq!(parse_cpu_set_ticks(stat, &[0, 1]), Some((65, 370)));
        assert_eq!(parse_cpu_set_ticks(stat, &[2]), None);
        assert!(cpu_set_ticks(&[0]).is_ok());
    }

    #[test]
    fn machine_ticks_by_kind() {
        let stat = "cpu  30 1 20 300 7 2 9 5 0 0\ncpu0 30 1 20 300 7 2 9 5 0 0\n";
        let expected = MachineTicks {
            by_kind: [31, 20, 2, 9],
            idle: 307,
            cpus: 1,
        };
        assert_eq!(parse_machine_ticks(stat), Some(expected));
        assert_eq!(parse_machine_ticks("cpu0 1 2 3\n"), None);
        assert!(machine_ticks().is_ok());
        let others = other_processes_ticks(&[std::process::id()]);
        assert!(!others.is_empty() && !others.contains_key(&std::process::id()));
    }
}
