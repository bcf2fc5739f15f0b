//! One handshake with Redis before ringgate starts, as udp-gate connects before it listens.
//!
//! Blocking, on the thread that starts ringgate (never a worker's), bounded by a timeout, and
//! speaking through the same [`Conn`] state machine as every worker's command connection. A
//! refusal (wrong password, a password Redis wants but nobody gave, no such database) is a
//! mistake in the settings: ringgate exits with a message naming the setting, never the
//! password. Redis not answering is an outage, not a mistake: ringgate starts, and new clients
//! wait (bounded) for the workers' connections.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use super::Settings;
use super::conn::{Conn, Event, Failure, Role};

/// Why the handshake did not complete.
#[derive(Debug, PartialEq, Eq)]
pub enum Preflight {
    /// Redis refused the settings: fatal at start-up. The message names the setting.
    Refused(String),
    /// Redis did not answer (not listening, too slow, not speaking RESP).
    Unreachable(String),
}

/// Connects to Redis, runs the command connection's handshake and waits for its end.
pub fn preflight(settings: &Settings, timeout: Duration) -> Result<(), Preflight> {
    let unreachable = |e: std::io::Error| Preflight::Unreachable(e.to_string());
    let deadline = Instant::now() + timeout;
    let mut stream = TcpStream::connect_timeout(&settings.addr, timeout).map_err(unreachable)?;
    let mut conn = Conn::new(Role::Command);
    conn.connecting();
    let mut events = Vec::new();
    if let Some(ready) = conn.connected(&settings.handshake) {
        events.push(ready);
    }
    stream.write_all(&conn.take_output()).map_err(unreachable)?;
    let mut buf = [0u8; 4096];
    while !events.contains(&Event::Ready) {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Preflight::Unreachable("no answer to the handshake".into()));
        }
        stream.set_read_timeout(Some(left)).map_err(unreachable)?;
        let n = stream.read(&mut buf).map_err(unreachable)?;
        if n == 0 {
            return Err(Preflight::Unreachable("Redis closed the connection".into()));
        }
        match conn.received(&buf[..n], &mut events) {
            Ok(()) => {}
            Err(failure @ Failure::Refused { .. }) => {
                return Err(Preflight::Refused(failure.to_string()));
            }
            Err(other) => return Err(Preflight::Unreachable(other.to_string())),
        }
    }
    Ok(())
}
