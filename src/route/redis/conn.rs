//! One Redis connection as a state machine, without I/O.
//!
//! The worker's ring does the connecting, sending and receiving; this decides what to send
//! and what each reply means. Commands are queued as RESP bytes ([`Conn::take_output`]) and
//! every command that expects a reply leaves an entry in a FIFO, so replies are matched to
//! commands in order (Redis answers a connection's commands in the order it sent them).
//!
//! A command connection authenticates, selects the database, then serves `GET`s. A subscriber
//! connection authenticates and subscribes to the disconnect channels (the shared one, and this
//! instance's own), then only receives messages. Behind Sentinel both first check that `ROLE`
//! says master. A sentinel connection asks for the master's address, then subscribes to
//! `+switch-master`. All start over after every reconnect; `-READONLY` or `-MASTERDOWN` in any
//! reply also makes them start over (the server is no longer the master it was).
//!
//! Why this file is long: the handshake each role queues and the meaning of each reply are one
//! state machine around one FIFO of expected replies; split, the FIFO would be pushed in one
//! file and popped in another.

use std::collections::VecDeque;
use std::fmt;
use std::time::Duration;

use redis::Value;

pub use super::handshake::{Handshake, Secret};
use super::reply::{ReadError, ReplyReader};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Command,
    Subscriber,
    /// A connection to a sentinel: the master's address, then `+switch-master` messages.
    Sentinel,
}

impl Role {
    pub const fn name(self) -> &'static str {
        match self {
            Role::Command => "command",
            Role::Subscriber => "subscriber",
            Role::Sentinel => "sentinel",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Down,
    Connecting,
    Handshaking,
    Ready,
}

/// A reply the FIFO expects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    Auth,
    Select,
    /// The command connection's last handshake step: a server that needs a password nobody
    /// gave answers `NOAUTH` here rather than to the first lookup.
    Ping,
    Subscribe,
    /// Behind Sentinel: the server must say it is the master.
    Role,
    /// A sentinel's `get-master-addr-by-name`.
    Master,
    Get,
    /// A write of the session map (`SET ... EX`, `DEL`).
    Write,
    /// Any other command ([`Conn::command`]): the reply is the caller's.
    Reply,
}

impl Expect {
    /// The setting a refusal of this command points at.
    const fn setting(self) -> &'static str {
        match self {
            Expect::Auth | Expect::Ping => {
                "REDIS_PASSWORD (--redis-password, or the password in REDIS_URL)"
            }
            Expect::Select => "REDIS_DB (--redis-db, or the database in REDIS_URL)",
            Expect::Subscribe => "REDIS_DISCONNECT_CHANNEL (--disconnect-channel)",
            Expect::Role => {
                "REDIS_SENTINEL_MASTER, or the data nodes' ACL (the user must be allowed ROLE)"
            }
            Expect::Master => "REDIS_SENTINEL_MASTER (--redis-sentinel-master)",
            Expect::Get => "REDIS_BACKEND_KEY (--backend-key)",
            Expect::Write => "RINGGATE_PUBLISH_SESSIONS_PREFIX (--publish-sessions-prefix)",
            Expect::Reply => "RINGGATE_INSTANCE_ID (--instance-id)",
        }
    }
}

/// What a connection's replies mean to the worker.
#[derive(Debug, PartialEq)]
pub enum Event {
    /// The handshake finished.
    Ready,
    /// The reply to the oldest outstanding `GET`.
    Got(Value),
    /// A message published on a subscribed channel; `None` for one over the size cap, skipped.
    Message {
        channel: Vec<u8>,
        payload: Option<Vec<u8>>,
    },
    /// A sentinel's answer: the master's host and port, or `None` if it knows no such master.
    Master(Option<(String, u16)>),
    /// The reply to a session map write: whether Redis took it.
    Wrote(bool),
    /// The reply to a [`Conn::command`].
    Reply(Value),
}

/// Why a connection must be dropped and made again.
#[derive(Debug, PartialEq, Eq)]
pub enum Failure {
    /// Redis refused a handshake command (wrong password, no such database): the setting to
    /// fix, and Redis's message (which never contains the password).
    Refused {
        setting: &'static str,
        message: String,
    },
    /// The byte stream or a reply was not what the protocol allows.
    Protocol(String),
    /// A reply over the size caps, refused before it was read whole.
    Oversize(String),
    /// The server is not (or no longer) the master: `ROLE` said otherwise, or a reply was
    /// `-READONLY` or `-MASTERDOWN`. Ask where the master is again.
    NotMaster(String),
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Refused { setting, message } => {
                write!(
                    f,
                    "Redis refused the handshake ({message}); check {setting}"
                )
            }
            Failure::Protocol(why) => write!(f, "protocol error: {why}"),
            Failure::Oversize(why) => write!(f, "{why}"),
            Failure::NotMaster(why) => write!(f, "not the master: {why}"),
        }
    }
}

/// Reconnect delays: 50 ms doubling to 5 s, each jittered down by up to half, so that every
/// worker of every ringgate does not reconnect in step after an outage.
const BACKOFF_FIRST: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

pub struct Conn {
    role: Role,
    phase: Phase,
    out: Vec<u8>,
    expect: VecDeque<Expect>,
    reader: ReplyReader,
    values: Vec<Value>,
    failures: u32,
    /// xorshift state for the backoff's jitter.
    jitter: u64,
}

impl Conn {
    pub fn new(role: Role) -> Conn {
        use std::hash::{BuildHasher, RandomState};
        Conn {
            role,
            phase: Phase::Down,
            out: Vec::new(),
            expect: VecDeque::new(),
            reader: Self::reader(role),
            values: Vec::new(),
            failures: 0,
            jitter: RandomState::new().hash_one(0u8) | 1,
        }
    }

    pub fn role(&self) -> Role {
        self.role
    }

    /// Subscribed connections skip a message over the cap; a command connection refuses it.
    fn reader(role: Role) -> ReplyReader {
        match role {
            Role::Command => ReplyReader::default(),
            Role::Subscriber | Role::Sentinel => ReplyReader::skipping(),
        }
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// A connection attempt started.
    pub fn connecting(&mut self) {
        self.phase = Phase::Connecting;
    }

    /// The TCP connection is up: queue the handshake. Returns [`Event::Ready`] at once when
    /// there is nothing to say first.
    pub fn connected(&mut self, handshake: &Handshake) -> Option<Event> {
        self.phase = Phase::Handshaking;
        if let Some(password) = &handshake.password {
            let mut auth = redis::cmd("AUTH");
            if let Some(user) = &handshake.username {
                auth.arg(user);
            }
            auth.arg(&password.0);
            self.queue(&auth, Expect::Auth);
        }
        if handshake.master.is_some() && self.role != Role::Sentinel {
            self.queue(&redis::cmd("ROLE"), Expect::Role);
        }
        match self.role {
            Role::Command => {
                if handshake.db != 0 {
                    self.queue(redis::cmd("SELECT").arg(handshake.db), Expect::Select);
                }
                self.queue(&redis::cmd("PING"), Expect::Ping);
            }
            Role::Subscriber => {
                let mut subscribe = redis::cmd("SUBSCRIBE");
                subscribe.arg(&handshake.channel);
                self.queue(
                    subscribe.arg(&handshake.instance_channel),
                    Expect::Subscribe,
                );
                if handshake.instance_channel.is_some() {
                    // One confirmation per channel.
                    self.expect.push_back(Expect::Subscribe);
                }
            }
            Role::Sentinel => {
                if let Some(master) = &handshake.master {
                    self.queue(
                        redis::cmd("SENTINEL")
                            .arg("get-master-addr-by-name")
                            .arg(master),
                        Expect::Master,
                    );
                }
                self.queue(
                    redis::cmd("SUBSCRIBE").arg(&handshake.channel),
                    Expect::Subscribe,
                );
            }
        }
        self.ready_if_done()
    }

    fn queue(&mut self, cmd: &redis::Cmd, expect: Expect) {
        cmd.write_packed_command(&mut self.out);
        self.expect.push_back(expect);
    }

    fn ready_if_done(&mut self) -> Option<Event> {
        if self.phase == Phase::Handshaking && self.expect.is_empty() {
            self.phase = Phase::Ready;
            // The whole handshake was accepted: the next failure starts the backoff over. Not
            // for a sentinel: one that accepts the handshake but knows no master is no
            // better than one that is down ([`Sentinel`](super::sentinel) forgives on an
            // answer).
            if self.role != Role::Sentinel {
                self.failures = 0;
            }
            return Some(Event::Ready);
        }
        None
    }

    /// Queues `GET key`; false (nothing queued) unless this is a ready command connection.
    pub fn get(&mut self, key: &str) -> bool {
        if self.role != Role::Command || self.phase != Phase::Ready {
            return false;
        }
        self.queue(redis::cmd("GET").arg(key), Expect::Get);
        true
    }

    /// Queues a session map write: `SET key value EX ttl` (`value` given) or `DEL key`; false
    /// (nothing queued) unless this is a ready command connection.
    pub fn write(&mut self, key: &str, value: Option<(&str, u64)>) -> bool {
        if self.role != Role::Command || self.phase != Phase::Ready {
            return false;
        }
        match value {
            Some((value, ttl)) => self.queue(
                redis::cmd("SET").arg(key).arg(value).arg("EX").arg(ttl),
                Expect::Write,
            ),
            None => self.queue(redis::cmd("DEL").arg(key), Expect::Write),
        }
        true
    }

    /// Queues any other command on a ready command connection; its reply comes back as
    /// [`Event::Reply`]. False (nothing queued) otherwise.
    pub fn command(&mut self, cmd: &redis::Cmd) -> bool {
        if self.role != Role::Command || self.phase != Phase::Ready {
            return false;
        }
        self.queue(cmd, Expect::Reply);
        true
    }

    /// `GET`s sent or queued whose replies have not arrived.
    pub fn gets_outstanding(&self) -> usize {
        self.expect.iter().filter(|e| **e == Expect::Get).count()
    }

    pub fn has_output(&self) -> bool {
        !self.out.is_empty()
    }

    /// The bytes to send next, leaving the queue empty.
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.out)
    }

    /// Puts back bytes a send did not take, ahead of anything queued since.
    pub fn unsent(&mut self, rest: &[u8]) {
        self.out.splice(0..0, rest.iter().copied());
    }

    /// Interprets received bytes, appending what they mean to `events`.
    pub fn received(&mut self, bytes: &[u8], events: &mut Vec<Event>) -> Result<(), Failure> {
        let mut values = std::mem::take(&mut self.values);
        let parsed = self.reader.feed(bytes, &mut values);
        let mut result = parsed.map_err(|e| match e {
            ReadError::Oversize(_) => Failure::Oversize(e.to_string()),
            ReadError::Protocol(why) => Failure::Protocol(why),
        });
        for value in values.drain(..) {
            if result.is_ok() {
                result = self.reply(value, events);
            }
        }
        self.values = values;
        result
    }

    fn reply(&mut self, value: Value, events: &mut Vec<Event>) -> Result<(), Failure> {
        // A subscribed connection also receives messages nobody asked for.
        if self.role != Role::Command
            && let Value::Array(items) | Value::Push { data: items, .. } = &value
            && let [Value::BulkString(kind), Value::BulkString(channel), payload] = &items[..]
            && kind == b"message"
        {
            let payload = match payload {
                Value::BulkString(payload) => Some(payload.clone()),
                // The reader's stand-in for a message over the cap.
                Value::Nil => None,
                other => return Err(Failure::Protocol(format!("a message of {other:?}"))),
            };
            events.push(Event::Message {
                channel: channel.clone(),
                payload,
            });
            return Ok(());
        }
        // Sent by a server that is no longer the master (RESP2 error codes).
        if let Value::ServerError(e) = &value
            && matches!(e.code(), "READONLY" | "MASTERDOWN")
        {
            return Err(Failure::NotMaster(e.to_string()));
        }
        let Some(expect) = self.expect.pop_front() else {
            return Err(Failure::Protocol(format!("unexpected reply {value:?}")));
        };
        match (expect, value) {
            (Expect::Role, Value::Array(items)) => match items.first() {
                Some(Value::BulkString(role)) if role == b"master" => {}
                Some(Value::BulkString(role)) => {
                    return Err(Failure::NotMaster(format!(
                        "ROLE says {}",
                        String::from_utf8_lossy(role)
                    )));
                }
                _ => return Err(Failure::Protocol(format!("ROLE answered {items:?}"))),
            },
            (Expect::Master, Value::Nil) => events.push(Event::Master(None)),
            (Expect::Master, Value::Array(items)) => match &items[..] {
                [Value::BulkString(host), Value::BulkString(port)] => {
                    let host = String::from_utf8_lossy(host).into_owned();
                    let port = std::str::from_utf8(port)
                        .ok()
                        .and_then(|p| p.parse::<u16>().ok())
                        .filter(|p| *p != 0)
                        .ok_or_else(|| {
                            Failure::Protocol(format!("a master port of {:?}", items[1]))
                        })?;
                    events.push(Event::Master(Some((host, port))));
                }
                _ => {
                    return Err(Failure::Protocol(format!(
                        "get-master-addr-by-name answered {items:?}"
                    )));
                }
            },
            (Expect::Reply, value) => events.push(Event::Reply(value)),
            (Expect::Get, value) => {
                // A server that answers lookups is healthy: the next failure starts the
                // backoff over.
                self.failures = 0;
                events.push(Event::Got(value));
            }
            (Expect::Write, value) => {
                events.push(Event::Wrote(!matches!(value, Value::ServerError(_))));
            }
            (Expect::Auth | Expect::Select, Value::Okay) => {}
            (Expect::Ping, Value::SimpleString(pong)) if pong == "PONG" => {}
            (Expect::Subscribe, Value::Array(items) | Value::Push { data: items, .. }) if matches!(items.first(), Some(Value::BulkString(k)) if k == b"subscribe") =>
                {}
            // A refusal is not health: one that accepts and then refuses must back off.
            (expect, Value::ServerError(e)) if expect != Expect::Get => {
                return Err(Failure::Refused {
                    setting: expect.setting(),
                    message: e.to_string(),
                });
            }
            (expect, value) => {
                return Err(Failure::Protocol(format!(
                    "{value:?} in reply to {expect:?}"
                )));
            }
        }
        if let Some(event) = self.ready_if_done() {
            events.push(event);
        }
        Ok(())
    }

    /// Starts the backoff over (the next failure waits the shortest delay).
    pub fn forgive(&mut self) {
        self.failures = 0;
    }

    /// `delay` less a random part of up to half of it.
    fn jittered(&mut self, delay: Duration) -> Duration {
        self.jitter ^= self.jitter << 13;
        self.jitter ^= self.jitter >> 7;
        self.jitter ^= self.jitter << 17;
        let half = delay / 2;
        let nanos = u64::try_from(half.as_nanos()).unwrap_or(u64::MAX).max(1);
        delay - Duration::from_nanos(self.jitter % nanos)
    }

    /// The connection is gone: forget everything in flight. Returns how many `GET`s were
    /// outstanding (their waiters will get no answer) and how long to wait before reconnecting.
    pub fn reset(&mut self) -> (usize, Duration) {
        let gets = self.gets_outstanding();
        self.phase = Phase::Down;
        self.out.clear();
        self.expect.clear();
        self.reader = Self::reader(self.role);
        let delay = BACKOFF_FIRST
            .saturating_mul(1 << self.failures.min(16))
            .min(BACKOFF_MAX);
        self.failures = self.failures.saturating_add(1);
        (gets, self.jittered(delay))
    }
}

#[cfg(test)]
#[path = "conn_tests.rs"]
mod tests;
