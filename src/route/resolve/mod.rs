//! Host names as routes: `--backend waterdog-1:19132`, a Redis value `localhost:19133`.
//!
//! Names are resolved off the workers by a small shared pool ([`pool`]) through the C library,
//! so they mean what they mean to every other program on the host; each worker keeps its own
//! bounded cache ([`cache`]) and learns of answers through an eventfd read in its own ring, so
//! a new client's datagrams wait for a name exactly as they wait for Redis.

pub mod cache;
pub mod pool;

pub use cache::{Cache, Found};
pub use pool::{Name, Resolver};

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tracing::warn;

use super::Ticket;
use crate::logtext::escaped;
use crate::ratelimit::RateLimited;
use crate::sys::driver::Streams;
use crate::sys::lent::{Lent, LentOp};

/// How long a new client's datagrams wait for a name to resolve.
pub const WAIT: Duration = Duration::from_secs(1);

/// A router's names: the cache, and the read kept armed on its eventfd in the worker's ring
/// (on lent stream `stream`).
pub struct Names {
    cache: Cache,
    stream: u16,
    armed: bool,
    stopping: bool,
    results: Vec<(Ticket, Result<SocketAddr, String>)>,
    warn: RateLimited,
}

impl Names {
    pub fn new(resolver: Resolver, stream: u16) -> std::io::Result<Names> {
        Ok(Names {
            cache: Cache::new(resolver, WAIT)?,
            stream,
            armed: false,
            stopping: false,
            results: Vec::new(),
            warn: RateLimited::default(),
        })
    }

    pub fn lookup(&mut self, name: &Name, ticket: Ticket, now: Instant) -> Found {
        let found = self.cache.lookup(name, ticket, now);
        if let Found::Failed(why) = &found {
            self.log_failure(name, why);
        }
        found
    }

    pub fn peek(&mut self, name: &Name, now: Instant) -> Option<SocketAddr> {
        self.cache.peek(name, now)
    }

    pub fn knows(&self, addr: SocketAddr) -> bool {
        self.cache.knows(addr)
    }

    /// Whether `lent` is this cache's eventfd read; if it is, the resolver's answers are taken
    /// (see [`Names::results`]).
    pub fn complete(&mut self, lent: Lent, now: Instant) -> bool {
        if lent.op
            != (LentOp::Read {
                stream: self.stream,
            })
        {
            return false;
        }
        self.armed = false;
        self.cache.answers(now, &mut self.results);
        true
    }

    /// Once per batch: late waiters give up, and the read stays armed.
    pub fn poll(&mut self, streams: &mut Streams<'_>, now: Instant) {
        if self.stopping {
            return;
        }
        self.cache.answers(now, &mut self.results);
        self.cache.expire(now, &mut self.results);
        if !self.armed && streams.read(self.stream, self.cache.wake_fd(), 0).is_ok() {
            self.armed = true;
        }
    }

    /// The waiters that have their answer since the last call; failures are logged here, at
    /// most once a second.
    pub fn results(&mut self) -> Vec<(Ticket, Result<SocketAddr, String>)> {
        let results = std::mem::take(&mut self.results);
        if let Some((_, Err(why))) = results.iter().find(|(_, r)| r.is_err())
            && let Some(suppressed) = self.warn.check()
        {
            warn!(error = %escaped(why.as_bytes(), 200), suppressed, "cannot resolve a backend's name");
        }
        results
    }

    pub fn waiting(&self) -> bool {
        self.cache.waiting()
    }

    /// Stops for good: the eventfd read is cancelled (the ring must drain it), waiters are
    /// forgotten.
    pub fn shutdown(&mut self, streams: &mut Streams<'_>) {
        self.stopping = true;
        self.cache.clear_waiters();
        if self.armed {
            let _ = streams.cancel_fd(self.cache.wake_fd());
        }
    }

    fn log_failure(&mut self, name: &Name, why: &str) {
        if let Some(suppressed) = self.warn.check() {
            warn!(name = %escaped(name.to_string().as_bytes(), 260), error = %escaped(why.as_bytes(), 200),
                  suppressed, "cannot resolve a backend's name");
        }
    }
}

/// A route as written: an address, or a name to resolve with its port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Dest {
    Addr(SocketAddr),
    Name(Name),
}

impl std::fmt::Display for Dest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Dest::Addr(a) => a.fmt(f),
            Dest::Name(n) => n.fmt(f),
        }
    }
}

/// Parses `HOST:PORT`: a literal address (IPv6 as `[addr]:port`), or a host name made of DNS
/// labels (letters, digits, `-`, `_`, dots; at most 253 bytes) and a port other than 0.
pub fn parse_dest(text: &str) -> Option<Dest> {
    let text = text.trim();
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Some(Dest::Addr(addr));
    }
    let (host, port) = text.rsplit_once(':')?;
    let port: u16 = port.parse().ok().filter(|&p| p != 0)?;
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && l.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.len() > 253 || !host.split('.').all(label_ok) {
        return None;
    }
    // All digits and dots is an IPv4 address that did not parse, not a name.
    if host.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return None;
    }
    Some(Dest::Name(Name {
        host: host.to_ascii_lowercase(),
        port,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations_parse() {
        assert_eq!(
            parse_dest("10.0.0.1:7"),
            Some(Dest::Addr("10.0.0.1:7".parse().unwrap()))
        );
        assert_eq!(
            parse_dest(" Waterdog-1.default.svc:19132\n"),
            Some(Dest::Name(Name {
                host: "waterdog-1.default.svc".into(),
                port: 19132
            }))
        );
        assert!(matches!(parse_dest("localhost:19133"), Some(Dest::Name(_))));
        for bad in [
            "",
            "host",
            "host:0",
            "host:70000",
            ":80",
            "-bad:80",
            "a..b:80",
            "10.0.0:80",
            "ho st:80",
            "h\nx:80",
            "[::1:80",
            "::1:80",
        ] {
            assert_eq!(parse_dest(bad), None, "{bad:?}");
        }
        assert_eq!(parse_dest(&format!("{}:80", "a".repeat(254))), None);
    }
}
