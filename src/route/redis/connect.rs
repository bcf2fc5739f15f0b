//! Where the data connections (command, subscriber) connect, and when: `REDIS_ADDR` (its name
//! resolved again), or the master the sentinels name; dropping one (counted, logged, its
//! lookups kept waiting); and moving both when the sentinels announce a new master.

use std::net::SocketAddr;
use std::time::Instant;

use tracing::warn;

use super::conn::Role;
use super::link::Due;
use super::sentinel::Heard;
use super::{COMMAND, RedisRouter, SUBSCRIBER};
use crate::logtext::escaped;
use crate::route::Io;
use crate::route::resolve::Dest;
use crate::stats::Counter;

impl RedisRouter {
    /// Heard from the sentinel connection: a master (connections elsewhere move to it at
    /// once), or a reason to ask the next sentinel.
    pub(super) fn on_heard(&mut self, heard: Heard, io: &mut Io<'_>) {
        match heard {
            Heard::Nothing => {}
            Heard::Fail(why) => {
                if let Some(sentinel) = &mut self.sentinel {
                    sentinel.fail(&why, &mut io.streams, io.now, io.counters);
                }
            }
            Heard::Master(_) => {
                let here = self.master_addr(io.now);
                for conn in [COMMAND, SUBSCRIBER] {
                    if self.used[conn].1 != here && self.ends[conn].connected() {
                        self.fail(conn, "the master moved", io);
                    }
                    self.ends[conn].hurry(io.now);
                }
            }
        }
    }

    /// Behind Sentinel: the address of the master the latest answer named (`None` until one
    /// is in, or while its name resolves).
    fn master_addr(&mut self, now: Instant) -> Option<SocketAddr> {
        let (dest, _) = self.sentinel.as_ref()?.master()?;
        match dest {
            Dest::Addr(addr) => Some(*addr),
            Dest::Name(name) => self.names.as_mut()?.peek(name, now),
        }
    }

    /// Where Redis is now: its name's latest address if `REDIS_ADDR` is a name, else the
    /// address resolved at start-up.
    fn redis_addr(&mut self, now: Instant) -> SocketAddr {
        match (&self.settings.host, &mut self.names) {
            (Some(host), Some(names)) => names.peek(host, now).unwrap_or(self.settings.addr),
            _ => self.settings.addr,
        }
    }

    /// Drops data connection `conn` (see `Endpoint::fail`), counted and logged; requests
    /// waiting on the command connection keep waiting, within their deadlines, for the
    /// reconnect.
    pub(super) fn fail(&mut self, conn: usize, why: &str, io: &mut Io<'_>) {
        let end = &mut self.ends[conn];
        let role = end.role();
        io.counters.bump(match role {
            Role::Command => Counter::RedisCommandFailures,
            Role::Subscriber => Counter::RedisSubscriberFailures,
            Role::Sentinel => Counter::RedisSentinelFailures,
        });
        let delay = end.fail(&mut io.streams, io.now);
        if let Some(suppressed) = self.warn_conn.check() {
            warn!(connection = role.name(), redis = %self.used[conn].1.unwrap_or(self.settings.addr), error = %escaped(why.as_bytes(), 200),
                  retry_ms = delay.as_millis() as u64, suppressed, "Redis connection lost");
        }
        if role == Role::Command {
            // Waiters keep waiting, within their deadlines, for the reconnect.
            self.lookups.get_lost();
        }
    }

    pub(super) fn drive(&mut self, conn: usize, io: &mut Io<'_>) {
        let stall = self.stall();
        if conn == COMMAND && self.lookups.stalled(io.now, stall) {
            return self.fail(conn, "no reply to GET", io);
        }
        match self.ends[conn].due(io.now, stall) {
            Due::Nothing => {}
            Due::Fail(why) => return self.fail(conn, why, io),
            Due::Connect => {
                let addr = match &mut self.sentinel {
                    None => (0, self.redis_addr(io.now)),
                    // Start over from the sentinels: connect only with an answer newer than
                    // the one the last connection used.
                    Some(sentinel) => {
                        let used = self.used[conn].0;
                        if !sentinel.fresh(used) {
                            return sentinel.ask_again(used, &mut io.streams, io.now);
                        }
                        let generation = sentinel.master().map_or(0, |(_, g)| g);
                        match self.master_addr(io.now) {
                            Some(addr) => (generation, addr),
                            // A name still resolving: the timer comes back.
                            None => return,
                        }
                    }
                };
                self.used[conn] = (addr.0, Some(addr.1));
                if let Err(why) = self.ends[conn].connect(addr.1, &mut io.streams, io.now) {
                    return self.fail(conn, &why, io);
                }
            }
        }
        self.ends[conn].pump(&mut io.streams);
    }
}
