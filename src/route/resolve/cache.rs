//! A worker's cache of resolved names, and the waiters for names being resolved.
//!
//! A name resolved is kept [`POSITIVE_TTL`] and its addresses taken in turn; once that has
//! passed, it is still used while the resolver is asked again in the background (a static
//! backend given by name is thus re-resolved periodically, and a resolver hiccup does not drop
//! players). A name that failed is remembered as failed for [`NEGATIVE_TTL`], so a flood of
//! clients routed to a bad name costs one resolution, not one each. Requests for a name being
//! resolved wait with it, each until its own deadline. At most [`ENTRIES_MAX`] names are kept.

use std::collections::HashMap;
use std::fs::File;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use super::pool::{Answer, Name, ReplyTo, Resolver};
use crate::route::Ticket;

/// How long a resolved name is used before it is asked again.
pub const POSITIVE_TTL: Duration = Duration::from_secs(30);
/// How long a name that failed is remembered as failed.
pub const NEGATIVE_TTL: Duration = Duration::from_secs(5);
/// Names a worker remembers.
pub const ENTRIES_MAX: usize = 4096;
/// Requests waiting for one name.
pub const WAITERS_MAX: usize = 4096;

#[derive(Debug)]
enum State {
    /// Asked, no answer yet (and none before).
    Asking,
    Resolved(Vec<SocketAddr>),
    Failed(String),
}

#[derive(Debug)]
struct Entry {
    state: State,
    /// When the answer goes stale (resolved) or is forgotten (failed).
    expires: Instant,
    /// A question for this name is with the resolver.
    asking: bool,
    waiters: Vec<(Ticket, Instant)>,
    /// The next address to give out.
    next: usize,
}

/// What a lookup found.
#[derive(Debug, PartialEq, Eq)]
pub enum Found {
    Addr(SocketAddr),
    Failed(String),
    /// The request waits; its answer comes from [`Cache::answers`] or [`Cache::expire`].
    Waiting,
}

pub struct Cache {
    resolver: Resolver,
    reply: ReplyTo,
    answers: Receiver<Answer>,
    entries: HashMap<Name, Entry>,
    /// How long a request waits for its name.
    timeout: Duration,
}

impl Cache {
    pub fn new(resolver: Resolver, timeout: Duration) -> std::io::Result<Cache> {
        let (answers_tx, answers) = mpsc::channel();
        let wake = Arc::new(File::from(crate::sys::eventfd::eventfd()?));
        Ok(Cache {
            resolver,
            reply: ReplyTo {
                answers: answers_tx,
                wake,
            },
            answers,
            entries: HashMap::new(),
            timeout,
        })
    }

    /// The eventfd the resolver writes when an answer is ready: keep a read armed on it.
    pub fn wake_fd(&self) -> RawFd {
        self.reply.wake.as_raw_fd()
    }

    /// An address for `name` now, a failure now, or a wait for `ticket` (at most the cache's
    /// timeout).
    pub fn lookup(&mut self, name: &Name, ticket: Ticket, now: Instant) -> Found {
        if !self.entries.contains_key(name) && !self.make_room(now) {
            return Found::Failed("too many names to resolve at once".into());
        }
        let timeout = self.timeout;
        let entry = self.entries.entry(name.clone()).or_insert_with(|| Entry {
            state: State::Asking,
            expires: now,
            asking: false,
            waiters: Vec::new(),
            next: 0,
        });
        let stale = entry.expires <= now;
        let found = match &entry.state {
            State::Resolved(addrs) => {
                let addr = addrs[entry.next % addrs.len()];
                entry.next = entry.next.wrapping_add(1);
                Found::Addr(addr)
            }
            State::Failed(why) if !stale => Found::Failed(why.clone()),
            State::Failed(_) | State::Asking => {
                if entry.waiters.len() >= WAITERS_MAX {
                    return Found::Failed("too many clients waiting for this name".into());
                }
                entry.waiters.push((ticket, now + timeout));
                Found::Waiting
            }
        };
        if stale && !entry.asking {
            entry.asking = true;
            if !self.resolver.ask(name.clone(), self.reply.clone()) {
                entry.asking = false;
                if matches!(found, Found::Waiting) {
                    entry.waiters.pop();
                    return Found::Failed("the resolver is busy".into());
                }
            }
        }
        found
    }

    /// An address for `name` if one is known (stale or not), asking again if it is stale;
    /// never waits. For addresses used outside a client's request (the Redis server's).
    pub fn peek(&mut self, name: &Name, now: Instant) -> Option<SocketAddr> {
        if !self.entries.contains_key(name) && !self.make_room(now) {
            return None;
        }
        let entry = self.entries.entry(name.clone()).or_insert_with(|| Entry {
            state: State::Asking,
            expires: now,
            asking: false,
            waiters: Vec::new(),
            next: 0,
        });
        if entry.expires <= now && !entry.asking {
            entry.asking = self.resolver.ask(name.clone(), self.reply.clone());
        }
        match &entry.state {
            State::Resolved(addrs) => Some(addrs[0]),
            State::Asking | State::Failed(_) => None,
        }
    }

    /// Whether `addr` is one of the addresses a name resolved to.
    pub fn knows(&self, addr: SocketAddr) -> bool {
        self.entries
            .values()
            .any(|e| matches!(&e.state, State::Resolved(addrs) if addrs.contains(&addr)))
    }

    /// Frees a place for a new name: expired entries nobody waits for go first.
    fn make_room(&mut self, now: Instant) -> bool {
        if self.entries.len() < ENTRIES_MAX {
            return true;
        }
        self.entries
            .retain(|_, e| e.expires > now || e.asking || !e.waiters.is_empty());
        self.entries.len() < ENTRIES_MAX
    }

    /// Takes the resolver's answers, appending each released waiter's result to `out`.
    pub fn answers(&mut self, now: Instant, out: &mut Vec<(Ticket, Result<SocketAddr, String>)>) {
        while let Ok(answer) = self.answers.try_recv() {
            let Some(entry) = self.entries.get_mut(&answer.name) else {
                continue;
            };
            entry.asking = false;
            match answer.addrs {
                Ok(addrs) => {
                    entry.expires = now + POSITIVE_TTL;
                    for (ticket, _) in entry.waiters.drain(..) {
                        out.push((ticket, Ok(addrs[entry.next % addrs.len()])));
                        entry.next = entry.next.wrapping_add(1);
                    }
                    entry.state = State::Resolved(addrs);
                }
                // A refresh that fails keeps the addresses that worked, until the next try.
                Err(_) if matches!(entry.state, State::Resolved(_)) => {
                    entry.expires = now + NEGATIVE_TTL;
                }
                Err(why) => {
                    entry.expires = now + NEGATIVE_TTL;
                    for (ticket, _) in entry.waiters.drain(..) {
                        out.push((ticket, Err(why.clone())));
                    }
                    entry.state = State::Failed(why);
                }
            }
        }
    }

    /// Waiters whose deadline has passed, appended to `out` as timed out.
    pub fn expire(&mut self, now: Instant, out: &mut Vec<(Ticket, Result<SocketAddr, String>)>) {
        for entry in self.entries.values_mut() {
            entry.waiters.retain(|&(ticket, deadline)| {
                let late = deadline <= now;
                if late {
                    out.push((ticket, Err("no answer from the resolver in time".into())));
                }
                !late
            });
        }
    }

    /// Whether any request waits (so the clock matters).
    pub fn waiting(&self) -> bool {
        self.entries.values().any(|e| !e.waiters.is_empty())
    }

    /// Forgets every waiter (stopping).
    pub fn clear_waiters(&mut self) {
        for entry in self.entries.values_mut() {
            entry.waiters.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache() -> Cache {
        let (resolver, _threads) = Resolver::start().unwrap();
        Cache::new(resolver, Duration::from_secs(5)).unwrap()
    }

    fn name(host: &str) -> Name {
        Name {
            host: host.into(),
            port: 19_132,
        }
    }

    /// Waits (bounded) for the resolver's answers.
    fn settle(c: &mut Cache, out: &mut Vec<(Ticket, Result<SocketAddr, String>)>, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while out.len() < n {
            assert!(Instant::now() < deadline, "no answer");
            std::thread::sleep(Duration::from_millis(5));
            c.answers(Instant::now(), out);
        }
    }

    #[test]
    fn a_name_is_asked_once_and_then_served_from_the_cache() {
        let mut c = cache();
        let t0 = Instant::now();
        assert_eq!(c.lookup(&name("localhost"), Ticket(1), t0), Found::Waiting);
        assert_eq!(c.lookup(&name("localhost"), Ticket(2), t0), Found::Waiting);
        let mut out = Vec::new();
        settle(&mut c, &mut out, 2);
        let local: SocketAddr = "127.0.0.1:19132".parse().unwrap();
        assert_eq!(out[0], (Ticket(1), Ok(local)));
        assert_eq!(out[1].0, Ticket(2));
        assert!(matches!(
            c.lookup(&name("localhost"), Ticket(3), Instant::now()),
            Found::Addr(_)
        ));
    }

    #[test]
    fn a_failed_name_is_remembered_and_then_asked_again() {
        let mut c = cache();
        let t0 = Instant::now();
        let bad = name("no-such-host.invalid");
        assert_eq!(c.lookup(&bad, Ticket(1), t0), Found::Waiting);
        let mut out = Vec::new();
        settle(&mut c, &mut out, 1);
        assert!(out[0].1.is_err());
        let now = Instant::now();
        assert!(matches!(c.lookup(&bad, Ticket(2), now), Found::Failed(_)));
        assert_eq!(
            c.lookup(&bad, Ticket(3), now + NEGATIVE_TTL),
            Found::Waiting,
            "forgotten after the negative TTL"
        );
    }

    #[test]
    fn a_stale_name_is_served_while_it_is_asked_again() {
        let mut c = cache();
        let t0 = Instant::now();
        c.lookup(&name("localhost"), Ticket(1), t0);
        let mut out = Vec::new();
        settle(&mut c, &mut out, 1);
        let later = Instant::now() + POSITIVE_TTL + Duration::from_secs(1);
        assert!(matches!(
            c.lookup(&name("localhost"), Ticket(2), later),
            Found::Addr(_)
        ));
        assert!(
            c.entries[&name("localhost")].asking,
            "refreshing in the background"
        );
    }

    #[test]
    fn waiters_give_up_at_their_deadline() {
        let mut c = cache();
        let t0 = Instant::now();
        // Asked but not yet answered (the test does not read the answer).
        c.lookup(&name("localhost"), Ticket(1), t0);
        let mut out = Vec::new();
        c.expire(t0 + Duration::from_secs(6), &mut out);
        assert_eq!(out.len(), 1);
        assert!(out[0].1.is_err());
        assert!(!c.waiting());
    }
}
