//! Warnings that may repeat per datagram, each logged at most once a second, and the budget
//! of session lines.

use crate::ratelimit::{LineBudget, RateLimited};

/// Warnings that may repeat per datagram, each logged at most once a second.
pub(super) struct Warnings {
    pub(super) socket: RateLimited,
    pub(super) recv: RateLimited,
    pub(super) send: RateLimited,
    pub(super) source: RateLimited,
    pub(super) full: RateLimited,
    pub(super) oversize: RateLimited,
    pub(super) xdp: RateLimited,
    /// One per backend slot (`stats::backends`).
    pub(super) unreachable: Vec<RateLimited>,
    /// `new session` and `session closed` lines (`None`: `--log-sessions off`).
    pub(super) sessions: Option<LineBudget>,
}

impl Warnings {
    /// A confirmed session could not be offloaded to XDP (it forwards on the socket path).
    pub(super) fn xdp_offload(&mut self, e: &std::io::Error) {
        if let Some(suppressed) = self.xdp.check() {
            if crate::sys::xdp::is_full(e) {
                tracing::warn!(
                    suppressed,
                    "the XDP flow map is full; new sessions forward on the socket path"
                );
            } else {
                tracing::warn!(suppressed, error = %e, "cannot offload a session to XDP");
            }
        }
    }

    pub(super) fn new(log_sessions: bool) -> Warnings {
        Warnings {
            socket: RateLimited::default(),
            recv: RateLimited::default(),
            send: RateLimited::default(),
            source: RateLimited::default(),
            full: RateLimited::default(),
            oversize: RateLimited::default(),
            xdp: RateLimited::default(),
            unreachable: (0..=usize::from(crate::stats::backends::OTHER))
                .map(|_| RateLimited::default())
                .collect(),
            sessions: log_sessions
                .then(|| LineBudget::new(SESSION_LINES_PER_SEC, SESSION_LINES_BURST)),
        }
    }
}

/// Session lines a worker logs at most, a second and at once: udp-gate's moderators read them
/// to map a player to a backend port, but a flood of spoofed sources must not flood the log.
const SESSION_LINES_PER_SEC: f64 = 100.0;
const SESSION_LINES_BURST: f64 = 200.0;
