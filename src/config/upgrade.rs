//! The settings of upgrades without downtime: the control socket a takeover goes through, the
//! takeover itself, how long it may take, and draining on SIGTERM.

use std::path::PathBuf;

use clap::Args;

const HEADING: &str = "Upgrades without downtime";

#[derive(Debug, Args)]
pub struct UpgradeArgs {
    /// Listen for takeovers on this Unix socket (created mode 0600); SIGUSR2 needs it
    #[arg(long, env = "RINGGATE_CONTROL", value_name = "PATH", help_heading = HEADING)]
    pub control: Option<PathBuf>,

    /// Take over every socket and session of the ringgate whose --control socket is PATH
    /// (what SIGUSR2 runs); listen address and worker count must match
    #[arg(long, env = "RINGGATE_TAKEOVER", value_name = "PATH", help_heading = HEADING)]
    pub takeover: Option<PathBuf>,

    /// The longest a takeover may keep the old process paused before it gives up and resumes
    #[arg(long, env = "RINGGATE_HANDOVER_TIMEOUT", value_name = "SECS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=600), help_heading = HEADING)]
    pub handover_timeout: u64,

    /// On SIGTERM, stop taking new clients but keep forwarding for established sessions until
    /// they go idle or this many seconds pass (/readyz answers 503 meanwhile); 0 exits at once
    #[arg(long, env = "RINGGATE_DRAIN_TIMEOUT", value_name = "SECS", default_value_t = 0,
          value_parser = clap::value_parser!(u64).range(0..=86_400), help_heading = HEADING)]
    pub drain_timeout: u64,
}
