//! What the backend key's value means: an address, a name to resolve (as udp-gate would dial
//! it), or a rejection, logged at most once a second with the value escaped. An address,
//! given or resolved, must be usable and inside `--backend-allow`; those given out are
//! remembered so that no session may start from one.

use std::net::SocketAddr;

use redis::Value;
use tracing::warn;

use super::backend::{self, Rejection};
use super::{RECENT_BACKENDS, RedisRouter};
use crate::logtext::escaped;
use crate::route::resolve::{Dest, Found, Name};
use crate::route::{Backend, Io, Outcome, RouteFailure, Ticket};

impl RedisRouter {
    /// What the backend key's value says: an address, a name to resolve, or a failure.
    pub(super) fn route_of(&mut self, value: &Value) -> Result<Dest, RouteFailure> {
        let bytes = match value {
            Value::Nil => {
                if let Some(suppressed) = self.warn_missing.check() {
                    warn!(key = %escaped(self.settings.key.as_bytes(), 200), suppressed,
                          "no backend key in Redis: new clients are dropped until it is set");
                }
                return Err(RouteFailure::Missing);
            }
            Value::BulkString(bytes) => bytes.as_slice(),
            Value::SimpleString(text) => text.as_bytes(),
            Value::ServerError(e) => {
                if let Some(suppressed) = self.warn_value.check() {
                    warn!(error = %escaped(e.to_string().as_bytes(), 200), suppressed,
                          "Redis answered the backend lookup with an error");
                }
                return Err(RouteFailure::Error);
            }
            _ => b"",
        };
        backend::parse(bytes).map_err(|rejection| self.rejected(bytes, rejection))
    }

    /// An address from the key (given, or resolved from its name), checked against the
    /// bogons and `--backend-allow`.
    pub(super) fn accept(
        &mut self,
        addr: SocketAddr,
        value: &Value,
    ) -> Result<Backend, RouteFailure> {
        match backend::check(addr, &self.settings.allow) {
            Ok(addr) => {
                self.remember(addr);
                Ok(Backend { addr, lease: None })
            }
            Err(rejection) => {
                let shown = match value {
                    Value::BulkString(bytes) => bytes.clone(),
                    _ => addr.to_string().into_bytes(),
                };
                Err(self.rejected(&shown, rejection))
            }
        }
    }

    fn rejected(&mut self, value: &[u8], rejection: Rejection) -> RouteFailure {
        if let Some(suppressed) = self.warn_value.check() {
            warn!(key = %escaped(self.settings.key.as_bytes(), 200), value = %escaped(value, 64),
                  why = %rejection, suppressed,
                  "rejecting the backend value from Redis");
        }
        match rejection {
            Rejection::Disallowed => RouteFailure::Disallowed,
            Rejection::Malformed | Rejection::Unusable => RouteFailure::Invalid,
        }
    }

    /// The key names a host: each waiter gets the name's address now, a failure now, or its
    /// answer once the name resolves.
    pub(super) fn resolve(
        &mut self,
        name: &Name,
        tickets: Vec<Ticket>,
        value: &Value,
        io: &mut Io<'_>,
    ) {
        let Some(names) = &mut self.names else {
            return io.out.push(Outcome::Route {
                tickets,
                result: Err(RouteFailure::Resolve),
            });
        };
        let mut found = Vec::with_capacity(tickets.len());
        for ticket in tickets {
            match names.lookup(name, ticket, io.now) {
                Found::Waiting => {}
                Found::Addr(addr) => found.push((ticket, Ok(addr))),
                Found::Failed(why) => found.push((ticket, Err(why))),
            }
        }
        for (ticket, result) in found {
            let result = match result {
                Ok(addr) => self.accept(addr, value),
                Err(_) => Err(RouteFailure::Resolve),
            };
            io.out.push(Outcome::Route {
                tickets: vec![ticket],
                result,
            });
        }
    }

    /// Answers for waiters whose name has resolved (or failed to).
    pub(super) fn take_resolved(&mut self, io: &mut Io<'_>) {
        let Some(names) = &mut self.names else { return };
        for (ticket, result) in names.results() {
            let result = match result {
                Ok(addr) => self.accept(addr, &Value::Nil),
                Err(_) => Err(RouteFailure::Resolve),
            };
            io.out.push(Outcome::Route {
                tickets: vec![ticket],
                result,
            });
        }
    }

    fn remember(&mut self, addr: SocketAddr) {
        if self.recent.last() == Some(&addr) {
            return;
        }
        self.recent.retain(|a| *a != addr);
        if self.recent.len() == RECENT_BACKENDS {
            self.recent.remove(0);
        }
        self.recent.push(addr);
    }
}
