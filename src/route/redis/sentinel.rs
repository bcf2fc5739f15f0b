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
mod tests {
    use super::*;
    use crate::sys::driver::{Backend, Driver, DriverConfig};

    fn driver() -> Driver {
        Driver::new(&DriverConfig {
            backend: Backend::Epoll,
            sq_entries: 8,
            cq_entries: 64,
            buffer_count: 2,
            payload_bytes: 64,
            headroom: 0,
            recv_destination: false,
            tick: std::time::Duration::from_secs(1),
            task_run: crate::sys::uring::TaskRun::Deferred,
            streams: 1,
            stream_rx_bytes: 64,
            timers: 0,
        })
        .unwrap()
    }

    fn three() -> Sentinels {
        let place = |port| Place {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            host: None,
        };
        Sentinels {
            places: vec![place(1), place(2), place(3)],
            master: "mymaster".into(),
            handshake: Handshake::plain(SWITCH_CHANNEL),
        }
    }

    #[test]
    fn sentinels_are_asked_in_turn_and_the_backoff_grows_from_round_to_round() {
        let mut driver = driver();
        let mut counters = Counters::default();
        let t0 = Instant::now();
        let mut s = Sentinel::new(three(), 0, t0);
        let mut waits = Vec::new();
        for round in 0..3 {
            for i in 0..3 {
                assert_eq!(s.current().port(), i + 1, "round {round}");
                s.fail("refused", &mut driver.streams(), t0, &mut counters);
                let wait = s.end.retry_at().unwrap() - t0;
                if i < 2 {
                    assert!(wait.is_zero(), "the next sentinel at once");
                } else {
                    waits.push(wait);
                }
            }
        }
        assert_eq!(counters.get(Counter::RedisSentinelFailures), 9);
        // 50 ms doubling per failure, jittered down by up to half: after 3, 6, 9 failures.
        assert!(
            waits[0] >= std::time::Duration::from_millis(100),
            "{waits:?}"
        );
        assert!(
            waits[1] >= std::time::Duration::from_millis(800),
            "{waits:?}"
        );
        assert!(
            waits[2] >= std::time::Duration::from_millis(2500),
            "{waits:?}"
        );
    }

    #[test]
    fn an_answer_on_a_connection_that_then_fails_does_not_restart_the_backoff() {
        let mut driver = driver();
        let mut counters = Counters::default();
        let t0 = Instant::now();
        let mut s = Sentinel::new(three(), 0, t0);
        let mut last = std::time::Duration::ZERO;
        for _ in 0..6 {
            // Each sentinel names the master, then refuses the SUBSCRIBE (-NOPERM).
            s.on_event(Event::Master(Some(("127.0.0.1".into(), 6379))));
            s.fail("NOPERM", &mut driver.streams(), t0, &mut counters);
            last = s.end.retry_at().unwrap() - t0;
        }
        assert!(last >= std::time::Duration::from_millis(800), "{last:?}");
    }

    #[test]
    fn an_answer_is_a_generation_and_news_only_when_the_master_moved() {
        let mut s = Sentinel::new(three(), 0, Instant::now());
        assert!(!s.fresh(0));
        let a = || Event::Master(Some(("127.0.0.1".into(), 6379)));
        assert!(matches!(s.on_event(a()), Heard::Master(_)));
        assert!(s.fresh(0) && !s.fresh(1));
        assert_eq!(s.on_event(a()), Heard::Nothing, "the same master again");
        assert!(s.fresh(1), "but a newer answer all the same");
        let switch = Event::Message {
            channel: SWITCH_CHANNEL.into(),
            payload: Some(b"mymaster 127.0.0.1 6379 127.0.0.1 6380".to_vec()),
        };
        assert_eq!(
            s.on_event(switch),
            Heard::Master(Dest::Addr("127.0.0.1:6380".parse().unwrap()))
        );
        assert!(
            matches!(s.on_event(Event::Master(None)), Heard::Fail(why) if why.contains("REDIS_SENTINEL_MASTER"))
        );
    }

    #[test]
    fn a_switch_message_names_the_new_master_of_our_master_only() {
        assert_eq!(
            switch(b"mymaster 127.0.0.1 6379 127.0.0.1 6380", "mymaster"),
            Some(Dest::Addr("127.0.0.1:6380".parse().unwrap()))
        );
        assert_eq!(
            switch(b"mymaster ::1 6379 ::1 6380", "mymaster"),
            Some(Dest::Addr("[::1]:6380".parse().unwrap()))
        );
        assert!(matches!(
            switch(b"mymaster a 1 redis-2.local 6379", "mymaster"),
            Some(Dest::Name(_))
        ));
        for bad in [
            &b"other 127.0.0.1 6379 127.0.0.1 6380"[..],
            b"mymaster 127.0.0.1 6379 127.0.0.1",
            b"mymaster 127.0.0.1 6379 127.0.0.1 0",
            b"mymaster 127.0.0.1 6379 127.0.0.1 70000",
            b"mymaster 1 2 bad/host 6379",
            b"\xff\xfe",
        ] {
            assert_eq!(switch(bad, "mymaster"), None, "{bad:?}");
        }
    }
}
