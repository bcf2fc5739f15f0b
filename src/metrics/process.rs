//! The process metrics Prometheus clients conventionally export (`process_*`), read from
//! `/proc/self` at scrape time.

use crate::sys::limits;

#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Process {
    pub open_fds: u64,
    pub max_fds: u64,
    pub resident_bytes: u64,
    pub cpu_seconds: f64,
    pub start_time_seconds: f64,
}

/// Reads this process's figures; a figure that cannot be read is 0.
pub fn read() -> Process {
    let ticks = limits::clock_ticks_per_second() as f64;
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let (cpu_ticks, start_ticks) = parse_stat(&stat).unwrap_or((0, 0));
    let boot = std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|s| parse_btime(&s))
        .unwrap_or(0);
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    Process {
        open_fds: std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as u64),
        max_fds: limits::nofile().unwrap_or(0),
        resident_bytes: parse_statm_resident(&statm).unwrap_or(0) * limits::page_size(),
        cpu_seconds: cpu_ticks as f64 / ticks,
        start_time_seconds: boot as f64 + start_ticks as f64 / ticks,
    }
}

/// `(utime + stime, starttime)` in clock ticks from `/proc/PID/stat`. The command name (field
/// 2) may hold spaces and parentheses, so fields are counted from its last `)`.
fn parse_stat(stat: &str) -> Option<(u64, u64)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state is field 3, so field N is at index N - 3.
    let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
    Some((field(14)? + field(15)?, field(22)?))
}

/// The boot time, in seconds since the epoch, from `/proc/stat`.
fn parse_btime(stat: &str) -> Option<u64> {
    stat.lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()
}

/// Resident pages from `/proc/PID/statm`.
fn parse_statm_resident(statm: &str) -> Option<u64> {
    statm.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_past_a_hostile_name() {
        let stat = "42 (a) b) c) S 1 42 42 0 -1 4194560 100 0 0 0 7 3 0 0 20 0 5 0 12345 1000 50 \
                    18446744073709551615";
        assert_eq!(parse_stat(stat), Some((10, 12345)));
        assert_eq!(parse_stat("garbage"), None);
        assert_eq!(
            parse_btime("cpu 1 2\nbtime 1700000000\n"),
            Some(1_700_000_000)
        );
        assert_eq!(parse_statm_resident("100 25 3 1 0 20 0"), Some(25));
    }

    #[test]
    fn this_process_reads_sensibly() {
        let p = read();
        assert!(p.open_fds > 2 && p.max_fds >= p.open_fds, "{p:?}");
        assert!(p.resident_bytes > 1 << 20, "{p:?}");
        assert!(p.start_time_seconds > 1.5e9, "{p:?}");
    }
}
