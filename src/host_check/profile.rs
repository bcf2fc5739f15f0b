//! What ringgate recommends, read from `tuning/sysctl.conf` (embedded at build time), so that
//! the start-up warnings, `tuning/check.sh` and `tuning/apply.sh` give one answer.

use super::parse_fields;

/// `tuning/sysctl.conf`, the profile `tuning/apply.sh` applies: the one source of the values
/// ringgate recommends, so the start-up warnings and `tuning/check.sh` cannot disagree.
const PROFILE: &str = include_str!("../../tuning/sysctl.conf");

/// The value `tuning/sysctl.conf` sets for `key`.
fn profile(key: &str) -> Option<&'static str> {
    PROFILE.lines().find_map(|line| {
        let (k, v) = line.split_once('=')?;
        (k.trim() == key).then(|| v.trim())
    })
}

/// `net.core.netdev_max_backlog` in the profile (the kernel's 1000 overflows in a 1 ms burst
/// at 1 Mpps).
pub(super) fn netdev_max_backlog_min() -> u64 {
    profile("net.core.netdev_max_backlog")
        .and_then(|v| v.parse().ok())
        .unwrap_or(16_384)
}

/// `net.ipv4.ip_local_port_range` in the profile.
pub(super) fn port_range() -> (u64, u64) {
    profile("net.ipv4.ip_local_port_range")
        .and_then(parse_fields)
        .and_then(|f| match f[..] {
            [lo, hi] => Some((lo, hi)),
            _ => None,
        })
        .unwrap_or((10_000, 65_535))
}
