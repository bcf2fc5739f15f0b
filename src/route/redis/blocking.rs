//! Blocking Redis connections for the threads that are not workers: the start-up check and the
//! fleet heartbeat. Each speaks through the same [`Conn`] state machine as the workers'
//! connections, over a `TcpStream` with a deadline on every wait; nothing here runs on a worker.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use redis::Value;

use super::Settings;
use super::conn::{Conn, Event, Failure, Handshake, Role};
use super::sentinel::Sentinels;
use crate::route::resolve::Dest;

/// Why a connection or a command did not complete.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The server refused the settings: a mistake to fix. The message names the setting.
    Refused(String),
    /// Nobody answered (not listening, too slow, not speaking RESP, not the master).
    Unreachable(String),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Refused(why) | Refusal::Unreachable(why) => f.write_str(why),
        }
    }
}

fn unreachable(e: std::io::Error) -> Refusal {
    Refusal::Unreachable(e.to_string())
}

/// One blocking connection whose handshake has completed.
pub struct Client {
    stream: TcpStream,
    conn: Conn,
    buf: Vec<u8>,
}

impl Client {
    /// Connects to `addr` and runs `role`'s handshake; returns the client and what the
    /// handshake said (a sentinel's answer), all within `timeout`.
    pub fn connect(
        addr: SocketAddr,
        role: Role,
        handshake: &Handshake,
        timeout: Duration,
    ) -> Result<(Client, Vec<Event>), Refusal> {
        let deadline = Instant::now() + timeout;
        let stream = TcpStream::connect_timeout(&addr, timeout).map_err(unreachable)?;
        let mut client = Client {
            stream,
            conn: Conn::new(role),
            buf: vec![0; 4096],
        };
        client.conn.connecting();
        let mut events = Vec::new();
        if let Some(ready) = client.conn.connected(handshake) {
            events.push(ready);
        }
        client.flush()?;
        while !events.contains(&Event::Ready) {
            client.read(deadline, &mut events)?;
        }
        Ok((client, events))
    }

    /// Runs one command on a command connection and returns its reply.
    pub fn command(&mut self, cmd: &redis::Cmd, timeout: Duration) -> Result<Value, Refusal> {
        let deadline = Instant::now() + timeout;
        if !self.conn.command(cmd) {
            return Err(Refusal::Unreachable("the connection is not ready".into()));
        }
        self.flush()?;
        let mut events = Vec::new();
        loop {
            if let Some(at) = events.iter().position(|e| matches!(e, Event::Reply(_))) {
                let Event::Reply(value) = events.swap_remove(at) else {
                    unreachable!("matched above")
                };
                return Ok(value);
            }
            self.read(deadline, &mut events)?;
        }
    }

    fn flush(&mut self) -> Result<(), Refusal> {
        let out = self.conn.take_output();
        self.stream.write_all(&out).map_err(unreachable)
    }

    fn read(&mut self, deadline: Instant, events: &mut Vec<Event>) -> Result<(), Refusal> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Refusal::Unreachable("no answer in time".into()));
        }
        self.stream
            .set_read_timeout(Some(left))
            .map_err(unreachable)?;
        let n = self.stream.read(&mut self.buf).map_err(unreachable)?;
        if n == 0 {
            return Err(Refusal::Unreachable(
                "the server closed the connection".into(),
            ));
        }
        match self.conn.received(&self.buf[..n], events) {
            Ok(()) => Ok(()),
            Err(failure @ Failure::Refused { .. }) => Err(Refusal::Refused(failure.to_string())),
            Err(other) => Err(Refusal::Unreachable(other.to_string())),
        }
    }
}

/// Asks each sentinel in turn where the master is, each within `timeout` and all within
/// 2 x `timeout`; returns the sentinel that answered and the master's address (a name in the
/// answer is resolved here: callers are not workers).
pub fn ask_sentinels(
    sentinels: &Sentinels,
    timeout: Duration,
) -> Result<(SocketAddr, SocketAddr), Refusal> {
    let deadline = Instant::now() + timeout * 2;
    let mut last = Refusal::Unreachable("no sentinel given".into());
    // A sentinel that answered "no such master" outweighs one that did not answer at all.
    let mut unknown = None;
    let count = sentinels.places.len();
    for (i, place) in sentinels.places.iter().enumerate() {
        // What is left shared among the sentinels still to ask, so that slow ones first do
        // not leave a live one last unasked.
        let left = deadline.saturating_duration_since(Instant::now());
        let timeout = timeout.min(left / u32::try_from(count - i).unwrap_or(u32::MAX));
        if timeout.is_zero() {
            break;
        }
        let addr = match &place.host {
            Some(name) => resolve(&name.host, name.port).unwrap_or(place.addr),
            None => place.addr,
        };
        let answer = Client::connect(addr, Role::Sentinel, &sentinels.handshake, timeout)
            .map(|(_, events)| events);
        let events = match answer {
            Ok(events) => events,
            Err(e) => {
                last = Refusal::Unreachable(format!("sentinel {addr}: {e}"));
                continue;
            }
        };
        let master = events.iter().find_map(|e| match e {
            Event::Master(master) => Some(master.clone()),
            _ => None,
        });
        match master.flatten() {
            Some((host, port)) => {
                let dest = super::sentinel::master_dest(&host, port);
                let found = match dest {
                    Some(Dest::Addr(a)) => Some(a),
                    Some(Dest::Name(n)) => resolve(&n.host, n.port),
                    None => None,
                };
                match found {
                    Some(master) => return Ok((addr, master)),
                    None => {
                        last = Refusal::Unreachable(format!(
                            "sentinel {addr} named master {host}:{port}, which does not resolve"
                        ));
                    }
                }
            }
            None => {
                unknown = Some(Refusal::Refused(format!(
                    "sentinel {addr} knows no master named {:?}; check REDIS_SENTINEL_MASTER \
                     (--redis-sentinel-master)",
                    sentinels.master
                )));
            }
        }
    }
    Err(unknown.unwrap_or(last))
}

fn resolve(host: &str, port: u16) -> Option<SocketAddr> {
    (host, port).to_socket_addrs().ok()?.next()
}

/// Where the master is now: asked of the sentinels, or `REDIS_ADDR` (its name resolved again).
pub fn master(settings: &Settings, timeout: Duration) -> Result<SocketAddr, Refusal> {
    match &settings.sentinel {
        Some(sentinels) => ask_sentinels(sentinels, timeout).map(|(_, master)| master),
        None => Ok(settings
            .host
            .as_ref()
            .and_then(|name| resolve(&name.host, name.port))
            .unwrap_or(settings.addr)),
    }
}

/// A command connection to the master, its handshake done.
pub fn command_client(settings: &Settings, timeout: Duration) -> Result<Client, Refusal> {
    let addr = master(settings, timeout)?;
    Client::connect(addr, Role::Command, &settings.handshake, timeout).map(|(client, _)| client)
}
