//! Which driver every worker uses (`--io-backend`), decided once for the process before any
//! socket is bound: io_uring when a probe with exactly what ringgate uses succeeds, epoll where
//! io_uring is refused (a container's seccomp profile, `kernel.io_uring_disabled`, a kernel
//! older than 6.1). The fallback is said once, as one warning that names the cause read from
//! the system, the cost, and the fix; `--io-backend io-uring` makes the refusal fatal instead.

use std::io;

use tracing::warn;

use super::StartError;
use crate::config::Config;
use crate::sys::driver::{self, Backend, DriverConfig};

/// Why io_uring is refused here, as far as the system says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cause {
    /// A seccomp filter is installed (`Seccomp: 2` in /proc/self/status): a container runtime's
    /// default profile.
    Seccomp,
    /// `kernel.io_uring_disabled` is 2 (for everyone) or 1 (for all but a group).
    Sysctl(u8),
    /// The kernel is older than ringgate's io_uring needs (6.1).
    Kernel,
    /// Refused, for a reason the system does not show.
    Refused,
}

impl Cause {
    /// The metric's `reason` label.
    pub const fn label(self) -> &'static str {
        match self {
            Cause::Seccomp => "seccomp",
            Cause::Sysctl(_) => "io_uring_disabled",
            Cause::Kernel => "kernel_too_old",
            Cause::Refused => "refused",
        }
    }

    /// What it is, and how to give ringgate io_uring back.
    pub fn explain(self) -> (&'static str, &'static str) {
        match self {
            Cause::Seccomp => (
                "a seccomp filter (a container's default profile) refuses io_uring_setup",
                "allow io_uring_setup, io_uring_enter and io_uring_register: run with the shipped \
                 profile, deploy/seccomp.json (docker/podman run --security-opt \
                 seccomp=deploy/seccomp.json; compose security_opt; Kubernetes seccompProfile \
                 type Localhost); see docs/containers.md",
            ),
            Cause::Sysctl(2) => (
                "the sysctl kernel.io_uring_disabled=2 disables io_uring for every process",
                "sysctl -w kernel.io_uring_disabled=0 (tuning/sysctl.conf)",
            ),
            Cause::Sysctl(_) => (
                "the sysctl kernel.io_uring_disabled=1 reserves io_uring for a group",
                "run ringgate in the group kernel.io_uring_group names, or sysctl -w \
                 kernel.io_uring_disabled=0",
            ),
            Cause::Kernel => (
                "the kernel is older than 6.1 (multishot receives, provided buffer rings)",
                "run on Linux 6.1 or newer",
            ),
            Cause::Refused => (
                "the kernel refused io_uring_setup",
                "allow io_uring_setup, io_uring_enter and io_uring_register for ringgate",
            ),
        }
    }
}

/// Reads the cause from what the system shows: the sysctl's value, the `Seccomp:` line of
/// /proc/self/status, the kernel's `(major, minor)`, and the refusal's kind. Pure, for tests.
pub fn diagnose(
    refusal: io::ErrorKind,
    io_uring_disabled: Option<&str>,
    seccomp: Option<u8>,
    kernel: Option<(u32, u32)>,
) -> Cause {
    if kernel.is_some_and(|v| v < (6, 1)) {
        return Cause::Kernel;
    }
    // The sysctl answers EPERM; a seccomp filter EPERM (Docker) or ENOSYS (Podman). An EINVAL
    // is neither's doing.
    let eperm = refusal == io::ErrorKind::PermissionDenied;
    let filtered = eperm || refusal == io::ErrorKind::Unsupported;
    let sysctl = io_uring_disabled.map(str::trim);
    if eperm && sysctl == Some("2") {
        return Cause::Sysctl(2);
    }
    if filtered && seccomp == Some(2) {
        return Cause::Seccomp;
    }
    if eperm && sysctl == Some("1") {
        return Cause::Sysctl(1);
    }
    Cause::Refused
}

/// Whether a probe's error means io_uring is refused here (rather than failing for a reason
/// that would fail epoll too, such as memory).
pub fn is_refusal(kind: io::ErrorKind) -> bool {
    matches!(
        kind,
        io::ErrorKind::PermissionDenied | io::ErrorKind::Unsupported | io::ErrorKind::InvalidInput
    )
}

/// The `Seccomp:` mode of /proc/self/status (0 none, 1 strict, 2 filter).
pub fn seccomp_mode(status: &str) -> Option<u8> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("Seccomp:"))
        .and_then(|v| v.trim().parse().ok())
}

fn kernel_version() -> Option<(u32, u32)> {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").ok()?;
    let mut parts = release.trim().split(['.', '-']);
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

/// The backend every worker uses, and the metric's reason for it.
pub(super) fn choose(
    config: &Config,
    probe: &DriverConfig,
) -> Result<(Backend, &'static str), StartError> {
    match config.io_backend {
        Some(Backend::Epoll) => return Ok((Backend::Epoll, "configured")),
        Some(Backend::IoUring) | None => {}
    }
    let Err(e) = driver::probe_io_uring(probe) else {
        let reason = if config.io_backend.is_some() {
            "configured"
        } else {
            "available"
        };
        return Ok((Backend::IoUring, reason));
    };
    if !is_refusal(e.kind()) {
        return Err(StartError(format!(
            "io_uring failed: {e}; --io-backend epoll (RINGGATE_IO_BACKEND=epoll) runs without it"
        )));
    }
    let disabled = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled").ok();
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let cause = diagnose(
        e.kind(),
        disabled.as_deref(),
        seccomp_mode(&status),
        kernel_version(),
    );
    let (what, fix) = cause.explain();
    if config.io_backend == Some(Backend::IoUring) {
        return Err(StartError(format!(
            "--io-backend io-uring (RINGGATE_IO_BACKEND): io_uring is not available: {what} \
             ({e}). To fix: {fix}; or use --io-backend auto or epoll"
        )));
    }
    warn!(
        cause = cause.label(),
        error = %e,
        "io_uring is not available: {what}. Running on epoll (recvmmsg/sendmmsg): the same \
         behaviour, at some more CPU per datagram at high rates (docs/PERFORMANCE.md). For \
         io_uring: {fix}. To silence this: --io-backend epoll (RINGGATE_IO_BACKEND=epoll)"
    );
    Ok((Backend::Epoll, cause.label()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use io::ErrorKind::{InvalidInput, OutOfMemory, PermissionDenied, Unsupported};

    #[test]
    fn the_cause_is_read_from_the_system() {
        // Docker 25+: EPERM under a filter.
        assert_eq!(
            diagnose(PermissionDenied, Some("0\n"), Some(2), Some((6, 8))),
            Cause::Seccomp
        );
        // Podman: ENOSYS under a filter.
        assert_eq!(
            diagnose(Unsupported, Some("0"), Some(2), Some((6, 8))),
            Cause::Seccomp
        );
        assert_eq!(
            diagnose(PermissionDenied, Some("2\n"), Some(0), Some((6, 8))),
            Cause::Sysctl(2)
        );
        assert_eq!(
            diagnose(PermissionDenied, Some("1"), Some(0), Some((6, 8))),
            Cause::Sysctl(1)
        );
        assert_eq!(
            diagnose(Unsupported, Some("2"), Some(2), Some((6, 8))),
            Cause::Seccomp,
            "ENOSYS is the filter's, whatever the sysctl says"
        );
        // EINVAL under a filter (a systemd SystemCallFilter=): not the filter's doing.
        assert_eq!(
            diagnose(InvalidInput, Some("0"), Some(2), Some((6, 8))),
            Cause::Refused
        );
        // The sysctl says 1 but the refusal was not EPERM: not the sysctl's doing.
        assert_eq!(
            diagnose(Unsupported, Some("1"), Some(2), Some((6, 8))),
            Cause::Seccomp
        );
        assert_eq!(
            diagnose(Unsupported, None, None, Some((5, 15))),
            Cause::Kernel
        );
        assert_eq!(
            diagnose(InvalidInput, None, Some(0), Some((6, 1))),
            Cause::Refused
        );
        assert_eq!(diagnose(InvalidInput, None, None, None), Cause::Refused);
    }

    #[test]
    fn only_refusals_fall_back() {
        for kind in [PermissionDenied, Unsupported, InvalidInput] {
            assert!(is_refusal(kind), "{kind:?}");
        }
        assert!(!is_refusal(OutOfMemory));
        assert!(!is_refusal(io::ErrorKind::TimedOut));
    }

    #[test]
    fn the_seccomp_line_is_read_from_proc_status() {
        let status = "Name:\tringgate\nSeccomp:\t2\nSeccomp_filters:\t1\n";
        assert_eq!(seccomp_mode(status), Some(2));
        assert_eq!(seccomp_mode("Seccomp:\t0\n"), Some(0));
        assert_eq!(seccomp_mode("Name:\tx\n"), None);
    }

    #[test]
    fn every_cause_names_a_fix_and_a_label() {
        for cause in [
            Cause::Seccomp,
            Cause::Sysctl(1),
            Cause::Sysctl(2),
            Cause::Kernel,
            Cause::Refused,
        ] {
            let (what, fix) = cause.explain();
            assert!(!what.is_empty() && !fix.is_empty() && !cause.label().is_empty());
        }
    }
}
