//! Where the master is, behind Redis Sentinel: one connection to one sentinel at a time, in the
//! worker's ring, following the Sentinel client guidelines (redis.io, "Sentinel client spec").
//!
//! The connection asks `SENTINEL get-master-addr-by-name` and then stays subscribed to
//! `+switch-master`, so a promotion is heard the moment the sentinels announce it. Sentinels
//! are asked in turn: one that does not answer, refuses, or does not know the master is
//! skipped for the next at once; after a whole round without an answer the connection backs
//! off. The sentinel that answered is kept (the guidelines' "move it to the head").
//!
//! Each answer is a new *generation*. A data connection (command, subscriber) that was lost,
//! or found a server that is not the master (`ROLE`, `-READONLY`, `-MASTERDOWN`), waits for a
//! generation newer than the one it connected with before it connects again ([`Sentinel::fresh`],
//! [`Sentinel::ask_again`]): the guidelines' "start over from the sentinels".

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use tracing::{info, warn};

use super::conn::{Event, Handshake, Role};
use super::link::{Completed, Due, Endpoint};
use crate::logtext::escaped;
use crate::ratelimit::RateLimited;
use crate::route::resolve::{Dest, Name, Names, parse_dest};
use crate::stats::{Counter, Counters};
use crate::sys::driver::Streams;
use crate::sys::lent::Lent;

/// The channel sentinels announce a promotion on.
pub const SWITCH_CHANNEL: &str = "+switch-master";

/// One sentinel as configured: its address at start-up, and its name if it was given one
/// (resolved again while ringgate runs, as `REDIS_ADDR` is).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Place {
    pub addr: SocketAddr,
    pub host: Option<Name>,
}

/// `--redis-sentinel`, `--redis-sentinel-master` and the sentinels' password.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sentinels {
    pub places: Vec<Place>,
    pub master: String,
    /// What a sentinel connection authenticates with (`SENTINEL` and `SUBSCRIBE` follow).
    pub handshake: Handshake,
}

/// What an event on the sentinel connection changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Heard {
    Nothing,
    /// The master moved (or was found): data connections elsewhere must move, at once.
    Master(Dest),
    /// The connection must be dropped and the next sentinel asked.
    Fail(String),
}

pub struct Sentinel {
    settings: Sentinels,
    end: Endpoint,
    /// The sentinel asked now, or next.
    at: usize,
    /// Sentinels that failed since the last answer.
    failed_in_round: usize,
    master: Option<Dest>,
    generation: u64,
    /// This connection named a master (its backoff is forgiven once its handshake is done).
    answered: bool,
    warn: RateLimited,
}

impl Sentinel {
    pub fn new(settings: Sentinels, stream: u16, now: Instant) -> Sentinel {
        Sentinel {
            settings,
            end: Endpoint::new(Role::Sentinel, stream, now),
            at: 0,
            failed_in_round: 0,
            master: None,
            generation: 0,
            answered: false,
            warn: RateLimited::default(),
        }
    }

    pub fn up(&self) -> bool {
        self.end.up()
    }

    pub fn waiting(&self) -> bool {
        self.end.waiting()
    }

    /// The sentinel asked now (its address at start-up).
    pub fn current(&self) -> SocketAddr {
        self.settings.places[self.at].addr
    }

    /// The master the latest answer named, and its generation.
    pub fn master(&self) -> Option<(&Dest, u64)> {
        self.master.as_ref().map(|m| (m, self.generation))
    }

    /// Whether an answer newer than generation `used` is in.
    pub fn fresh(&self, used: u64) -> bool {
        self.master.is_some() && self.generation > used
    }

    /// A data connection needs an answer newer than `used`: ask again, unless one is on its
    /// way (the connection is coming up, or waiting to).
    pub fn ask_again(&mut self, used: u64, streams: &mut Streams<'_>, now: Instant) {
        if self.fresh(used) || !self.end.up() {
            return;
        }
        // Subscribed, the connection can only listen: a new question takes a new connection,
        // to the same sentinel, at once (the data connection's own backoff paces this).
        self.end.fail(streams, now);
        self.end.retry_now(now);
    }

    /// Connects when due, keeps the connection's operations flowing.
    pub fn drive(
        &mut self,
        names: Option<&mut Names>,
        streams: &mut Streams<'_>,
        now: Instant,
        counters: &mut Counters,
    ) {
        match self.end.due(now, STALL) {
            Due::Nothing => {}
            Due::Fail(why) => return self.fail(why, streams, now, counters),
            Due::Connect => {
                let place = &self.settings.places[self.at];
                let addr = match (&place.host, names) {
                    (Some(host), Some(names)) => names.peek(host, now).unwrap_or(place.addr),
                    _ => place.addr,
                };
                if let Err(why) = self.end.connect(addr, streams, now) {
                    return self.fail(&why, streams, now, counters);
                }
            }
        }
        self.end.pump(streams);
    }

    /// One of the connection's operations completed.
    pub fn complete(
        &mut self,
        lent: Lent,
        res: i32,
        streams: &mut Streams<'_>,
        now: Instant,
        events: &mut Vec<Event>,
    ) -> (Completed, Heard) {
        let completed =
            self.end
                .completed(lent, res, streams, now, &self.settings.handshake, events);
        let mut heard = Heard::Nothing;
        let mut ready = false;
        for event in events.drain(..) {
            ready |= event == Event::Ready;
            match self.on_event(event) {
                Heard::Nothing => {}
                other => heard = other,
            }
        }
        // A whole handshake with an answer: the sentinel works, the backoff starts over. An
        // answer on a connection that then fails (a refused SUBSCRIBE) does not count.
        if ready && self.answered && completed == Completed::Ok && !matches!(heard, Heard::Fail(_))
        {
            self.failed_in_round = 0;
            self.end.conn.forgive();
        }
        (completed, heard)
    }

    fn on_event(&mut self, event: Event) -> Heard {
        match event {
            Event::Master(None) => Heard::Fail(format!(
                "the sentinel knows no master named {:?}; check REDIS_SENTINEL_MASTER \
                 (--redis-sentinel-master)",
                self.settings.master
            )),
            Event::Master(Some((host, port))) => match master_dest(&host, port) {
                Some(dest) => {
                    self.answered = true;
                    if self.master.as_ref() != Some(&dest) {
                        info!(sentinel = %self.current(), master = %dest, name = %self.settings.master,
                              "Redis master found");
                    }
                    self.learn(dest)
                }
                None => Heard::Fail(format!(
                    "the sentinel named the master `{}:{port}`, neither an address nor a host name",
                    escaped(host.as_bytes(), 100)
                )),
            },
            Event::Message {
                payload: Some(payload),
                ..
            } => match switch(&payload, &self.settings.master) {
                Some(dest) => {
                    info!(sentinel = %self.current(), from = %self.master.as_ref().map_or("none".into(), ToString::to_string),
                          to = %dest, name = %self.settings.master, "Redis master switched");
                    self.learn(dest)
                }
                None => Heard::Nothing,
            },
            Event::Message { payload: None, .. }
            | Event::Ready
            | Event::Got(_)
            | Event::Wrote(_)
            | Event::Reply(_) => Heard::Nothing,
        }
    }

    /// A new answer: a new generation, and news only if the master moved (connections to
    /// the same master keep their backoff, so a dead master is not hammered).
    fn learn(&mut self, dest: Dest) -> Heard {
        self.generation += 1;
        if self.master.as_ref() == Some(&dest) {
            return Heard::Nothing;
        }
        self.master = Some(dest.clone());
        Heard::Master(dest)
    }

    /// Drops the connection (counted) and moves on to the next sentinel: at once while some
    /// in this round are still to be asked, after the backoff once all have failed. The
    /// backoff grows from round to round; only an answer starts it over.
    pub fn fail(
        &mut self,
        why: &str,
        streams: &mut Streams<'_>,
        now: Instant,
        counters: &mut Counters,
    ) {
        counters.bump(Counter::RedisSentinelFailures);
        self.answered = false;
        let asked = self.current();
        self.end.fail(streams, now);
        self.at = (self.at + 1) % self.settings.places.len();
        self.failed_in_round += 1;
        if self.failed_in_round < self.settings.places.len() {
            self.end.retry_now(now);
        } else {
            self.failed_in_round = 0;
        }
        if let Some(suppressed) = self.warn.check() {
            warn!(sentinel = %asked, next = %self.current(), error = %escaped(why.as_bytes(), 200),
                  suppressed, "Redis sentinel connection lost");
        }
    }

    pub fn shutdown(&mut self, streams: &mut Streams<'_>) {
        self.end.shutdown(streams);
    }
}

/// A handshake or an answer unanswered this long gives the sentinel up (the guidelines ask
/// for a short timeout: the next sentinel may answer).
const STALL: std::time::Duration = std::time::Duration::from_millis(1000);

/// The master's address from a sentinel's `host`, `port`.
pub fn master_dest(host: &str, port: u16) -> Option<Dest> {
    match host.parse::<IpAddr>() {
        Ok(ip) => Some(Dest::Addr(SocketAddr::new(ip, port))),
        Err(_) => parse_dest(&format!("{host}:{port}")).filter(|d| matches!(d, Dest::Name(_))),
    }
}

/// The new master in a `+switch-master` message (`<name> <old ip> <old port> <new ip> <new
/// port>`), if it is about master `name`.
pub fn switch(payload: &[u8], name: &str) -> Option<Dest> {
    let text = std::str::from_utf8(payload).ok()?;
    let words: Vec<&str> = text.split_ascii_whitespace().collect();
    let [master, _, _, host, port] = words[..] else {
        return None;
    };
    if master != name {
        return None;
    }
    master_dest(host, port.parse().ok().filter(|p| *p != 0)?)
}

#[cfg(test)]
#[path = "sentinel_tests.rs"]
mod tests;
