//! One handshake with Redis before ringgate starts, as udp-gate connects before it listens.
//!
//! Blocking, on the thread that starts ringgate (never a worker's), bounded by a timeout, and
//! speaking through the same state machine as every worker's command connection
//! ([`blocking`](super::blocking)). Behind Sentinel the sentinels are asked first, and the
//! master's `ROLE` checked. A refusal (wrong password, a password Redis wants but nobody gave,
//! no such database, a master name no sentinel knows) is a mistake in the settings: ringgate
//! exits with a message naming the setting, never the password. Redis or the sentinels not
//! answering is an outage, not a mistake: ringgate starts, and new clients wait (bounded) for
//! the workers' connections.

use std::net::SocketAddr;
use std::time::Duration;

use super::Settings;
pub use super::blocking::Refusal as Preflight;
use super::blocking::{Client, master};
use super::conn::Role;

/// Finds the master (asking the sentinels, if any), connects, runs the command connection's
/// handshake and waits for its end. Returns the master's address.
pub fn preflight(settings: &Settings, timeout: Duration) -> Result<SocketAddr, Preflight> {
    let addr = master(settings, timeout)?;
    Client::connect(addr, Role::Command, &settings.handshake, timeout)?;
    Ok(addr)
}
