//! Building a ring: the task-running mode with its fallbacks, the opcode probe, the kernel
//! version check, and start-up errors that name the cause and the fix.

use std::io;

use io_uring::{IoUring, Probe, opcode};

use std::time::Duration;

use crate::sys::driver::DriverConfig;

/// How the ring runs completion work.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TaskRun {
    /// `SINGLE_ISSUER | DEFER_TASKRUN`: completions run only when the worker waits (6.1+).
    Deferred,
    /// `COOP_TASKRUN`: no inter-processor interrupts to run completions (5.19+).
    Cooperative,
    /// Neither flag.
    Default,
}

impl TaskRun {
    /// The modes tried, best first.
    pub const ALL: [TaskRun; 3] = [TaskRun::Deferred, TaskRun::Cooperative, TaskRun::Default];

    pub const fn name(self) -> &'static str {
        match self {
            TaskRun::Deferred => "deferred",
            TaskRun::Cooperative => "cooperative",
            TaskRun::Default => "default",
        }
    }

    /// `requested` and the plainer modes after it, in the order they are tried.
    pub fn fallbacks(requested: TaskRun) -> &'static [TaskRun] {
        let first = TaskRun::ALL
            .iter()
            .position(|&m| m == requested)
            .unwrap_or(0);
        &TaskRun::ALL[first..]
    }
}

impl super::Ring {
    /// Whether this kernel, in this process, gives ringgate the io_uring it uses: a ring built
    /// as `cfg` asks (set-up flags, the provided buffer ring, the opcodes probed), and one
    /// operation submitted and completed. The error is the one the first refusal gave:
    /// `PermissionDenied` (EPERM: a seccomp filter, `kernel.io_uring_disabled`),
    /// `Unsupported` (ENOSYS, a kernel too old, an opcode missing) or `InvalidInput` (EINVAL)
    /// mean io_uring is refused here; anything else is a real failure (memory, limits).
    pub fn probe(cfg: &DriverConfig) -> io::Result<()> {
        let mut ring = super::Ring::new(cfg)?;
        let entry = opcode::Nop::new().build().user_data(1);
        // SAFETY: a no-op carries no pointers.
        unsafe { ring.push(entry) }?;
        if let Err(e) = ring.submit_and_wait_for(Duration::from_secs(1)) {
            // io_uring_enter refused: the kernel never took the no-op, so nothing is in flight
            // and the ring's memory may be freed (rather than leaked) on the way out.
            ring.in_flight = 0;
            return Err(e);
        }
        let mut batch = Vec::new();
        ring.reap(&mut batch);
        match batch.first() {
            Some(c) if c.result() < 0 => Err(io::Error::from_raw_os_error(-c.result())),
            Some(_) => Ok(()),
            None => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "io_uring accepted an operation but did not complete it within 1 s",
            )),
        }
    }
}

/// Opcodes the packet path needs, probed at start-up.
const REQUIRED_OPCODES: &[(u8, &str)] = &[
    (opcode::RecvMsgMulti::CODE, "RECVMSG"),
    (opcode::SendMsg::CODE, "SENDMSG"),
    (opcode::Send::CODE, "SEND"),
    (opcode::Recv::CODE, "RECV"),
    (opcode::Connect::CODE, "CONNECT"),
    (opcode::AsyncCancel::CODE, "ASYNC_CANCEL"),
    (opcode::Timeout::CODE, "TIMEOUT"),
    (opcode::Read::CODE, "READ"),
];

/// Builds the ring with the best task-running mode the kernel accepts, and probes it.
pub(super) fn build(cfg: &DriverConfig) -> io::Result<(IoUring, TaskRun)> {
    check_kernel_version()?;
    let mut last = None;
    for &mode in TaskRun::fallbacks(cfg.task_run) {
        let mut builder = IoUring::builder();
        builder.setup_cqsize(cfg.cq_entries).setup_submit_all();
        match mode {
            TaskRun::Deferred => {
                builder.setup_single_issuer().setup_defer_taskrun();
            }
            TaskRun::Cooperative => {
                builder.setup_coop_taskrun();
            }
            TaskRun::Default => {}
        }
        match builder.build(cfg.sq_entries) {
            Ok(ring) => {
                probe(&ring)?;
                return Ok((ring, mode));
            }
            // EINVAL: this kernel does not know a flag; try the next, plainer mode.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => last = Some(e),
            Err(e) => return Err(explain_setup_error(e)),
        }
    }
    Err(explain_setup_error(last.unwrap_or_else(|| {
        io::Error::from_raw_os_error(libc::EINVAL)
    })))
}

fn probe(ring: &IoUring) -> io::Result<()> {
    let mut probe = Probe::new();
    ring.submitter().register_probe(&mut probe)?;
    match REQUIRED_OPCODES
        .iter()
        .find(|(code, _)| !probe.is_supported(*code))
    {
        Some((_, name)) => Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!(
                "the kernel's io_uring lacks IORING_OP_{name}; ringgate needs Linux 6.1 or newer"
            ),
        )),
        None => Ok(()),
    }
}

/// ringgate needs Linux 6.1: multishot `recvmsg` (6.0) exists as an opcode on older kernels
/// that reject the multishot flag, which the opcode probe cannot tell apart.
fn check_kernel_version() -> io::Result<()> {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    match parse_version(&release) {
        Some(version) if version < (6, 1) => Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!(
                "Linux {} is too old: ringgate needs 6.1 or newer (multishot recvmsg, \
                 provided buffer rings, DEFER_TASKRUN)",
                release.trim()
            ),
        )),
        // Unknown layout: let the probe and the first operations decide.
        _ => Ok(()),
    }
}

/// `(major, minor)` of a kernel release such as `6.18.44-fc-v657`.
fn parse_version(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.trim().split(['.', '-']);
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

/// Turns `io_uring_setup`'s refusal into a message that names the cause and the fix.
pub fn explain_setup_error(e: io::Error) -> io::Error {
    let disabled = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled")
        .ok()
        .map(|s| s.trim().to_owned());
    let why = match (e.raw_os_error(), disabled.as_deref()) {
        (Some(libc::ENOSYS), _) => "io_uring_setup is not available (ENOSYS): the kernel is older than 5.1 \
             or built without CONFIG_IO_URING, or a container's seccomp profile blocks it. ringgate needs \
             Linux 6.1+; in a container, allow io_uring_setup, io_uring_enter and io_uring_register in the \
             seccomp profile (Docker: --security-opt seccomp=<profile allowing them>)"
            .to_owned(),
        (Some(libc::EPERM), Some("2")) => "io_uring is disabled by the sysctl kernel.io_uring_disabled=2; \
             enable it with `sysctl -w kernel.io_uring_disabled=0` (see tuning/sysctl.conf)"
            .to_owned(),
        (Some(libc::EPERM), Some("1")) => "io_uring is restricted by kernel.io_uring_disabled=1 to root and \
             the group in kernel.io_uring_group; run ringgate in that group or set \
             `sysctl -w kernel.io_uring_disabled=0`"
            .to_owned(),
        (Some(libc::EPERM), _) => "io_uring_setup was denied (EPERM) by a seccomp profile or security \
             module; allow io_uring_setup, io_uring_enter and io_uring_register for ringgate"
            .to_owned(),
        (Some(libc::ENOMEM), _) => "io_uring_setup ran out of memory (ENOMEM); lower --ring-entries or \
             raise the memory cgroup limit"
            .to_owned(),
        (Some(libc::EINVAL), _) => "io_uring_setup rejected the ring's parameters (EINVAL); try a \
             smaller --ring-entries"
            .to_owned(),
        _ => format!("io_uring_setup failed: {e}"),
    };
    io::Error::new(e.kind(), why)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setup_errors_name_the_cause_and_the_fix() {
        let enosys = explain_setup_error(io::Error::from_raw_os_error(libc::ENOSYS)).to_string();
        assert!(
            enosys.contains("seccomp") && enosys.contains("6.1"),
            "{enosys}"
        );
        let eperm = explain_setup_error(io::Error::from_raw_os_error(libc::EPERM)).to_string();
        assert!(eperm.contains("io_uring"), "{eperm}");
        let enomem = explain_setup_error(io::Error::from_raw_os_error(libc::ENOMEM)).to_string();
        assert!(enomem.contains("--ring-entries"), "{enomem}");
    }

    #[test]
    fn kernel_versions_parse() {
        assert_eq!(parse_version("6.18.44-fc-v657"), Some((6, 18)));
        assert_eq!(parse_version("5.19.0\n"), Some((5, 19)));
        assert_eq!(parse_version("6.1"), Some((6, 1)));
        assert_eq!(parse_version("garbage"), None);
        assert!(parse_version("5.19.0").unwrap() < (6, 1));
    }

    #[test]
    fn a_refused_mode_falls_back_to_plainer_ones_only() {
        assert_eq!(TaskRun::fallbacks(TaskRun::Deferred), TaskRun::ALL);
        assert_eq!(
            TaskRun::fallbacks(TaskRun::Cooperative),
            [TaskRun::Cooperative, TaskRun::Default]
        );
        assert_eq!(TaskRun::fallbacks(TaskRun::Default), [TaskRun::Default]);
    }
}
