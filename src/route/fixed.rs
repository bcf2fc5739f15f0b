//! Static backends (`--backend`): the router that answers at once, or, for a backend given by
//! name, as soon as the name resolves.
//!
//! New sessions are spread over the configured backends by *least sessions* on this worker,
//! ties broken round-robin (so a fresh worker cycles through the list instead of piling onto
//! the first entry). A session keeps its backend for life; the lease is the backend's index, and
//! its count drops when the session closes. A backend given by name is resolved off the worker
//! (`resolve`), cached, and resolved again every half minute while in use.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Instant;

use super::resolve::{Dest, Found, Names, Resolver};
use super::{Backend, Io, Lease, Outcome, Resources, RouteFailure, Router, Ticket};
use crate::sys::lent::Lent;

/// The lent stream the names' eventfd is read on.
const NAMES_STREAM: u16 = 0;

/// Least-sessions placement over a fixed backend list.
pub struct Fixed {
    backends: Vec<Dest>,
    sessions: Vec<u32>,
    next: usize,
    /// Present when some backend is a name.
    names: Option<Names>,
    /// Requests waiting for a name, with the backend they were placed on.
    waiting: HashMap<Ticket, usize>,
}

impl Fixed {
    /// `start` offsets the round-robin so that workers do not all favour the same backend.
    /// Names are resolved through `resolver`, and asked for at once.
    pub fn new(backends: Vec<Dest>, start: usize, resolver: Option<Resolver>) -> Self {
        let n = backends.len().max(1);
        let has_names = backends.iter().any(|b| matches!(b, Dest::Name(_)));
        let mut names = resolver
            .filter(|_| has_names)
            .and_then(|r| Names::new(r, NAMES_STREAM).ok());
        if let Some(names) = &mut names {
            for b in &backends {
                if let Dest::Name(name) = b {
                    names.peek(name, Instant::now());
                }
            }
        }
        Fixed {
            sessions: vec![0; backends.len()],
            backends,
            next: start % n,
            names,
            waiting: HashMap::new(),
        }
    }

    /// The least loaded backend's index, counted as taken.
    fn pick(&mut self) -> Option<usize> {
        let n = self.backends.len();
        let best = (0..n)
            .map(|i| (self.next + i) % n)
            .min_by_key(|&i| self.sessions[i])?;
        self.sessions[best] += 1;
        self.next = (best + 1) % n;
        Some(best)
    }

    fn answer(
        &mut self,
        ticket: Ticket,
        index: usize,
        found: Result<SocketAddr, RouteFailure>,
        io: &mut Io<'_>,
    ) {
        let result = found.map(|addr| Backend {
            addr,
            lease: Some(Lease(index as u32)),
        });
        if result.is_err() {
            self.release(Lease(index as u32));
        }
        io.out.push(Outcome::Route {
            tickets: vec![ticket],
            result,
        });
    }

    fn take_results(&mut self, io: &mut Io<'_>) {
        let Some(names) = &mut self.names else { return };
        for (ticket, result) in names.results() {
            if let Some(index) = self.waiting.remove(&ticket) {
                self.answer(ticket, index, result.map_err(|_| RouteFailure::Resolve), io);
            }
        }
    }
}

impl Router for Fixed {
    fn name(&self) -> &'static str {
        "fixed"
    }

    fn resources(&self) -> Resources {
        Resources {
            streams: usize::from(self.names.is_some()),
            stream_rx_bytes: 8,
            timers: 0,
        }
    }

    fn request(&mut self, ticket: Ticket, io: &mut Io<'_>) {
        let Some(index) = self.pick() else {
            return io.out.push(Outcome::Route {
                tickets: vec![ticket],
                result: Err(RouteFailure::Missing),
            });
        };
        let found = match (&self.backends[index], &mut self.names) {
            (Dest::Addr(addr), _) => Ok(*addr),
            (Dest::Name(name), Some(names)) => match names.lookup(name, ticket, io.now) {
                Found::Addr(addr) => Ok(addr),
                Found::Failed(_) => Err(RouteFailure::Resolve),
                Found::Waiting => {
                    self.waiting.insert(ticket, index);
                    return;
                }
            },
            (Dest::Name(_), None) => Err(RouteFailure::Resolve),
        };
        self.answer(ticket, index, found, io);
    }

    fn complete(&mut self, lent: Lent, _res: i32, io: &mut Io<'_>) {
        if let Some(names) = &mut self.names
            && names.complete(lent, io.now)
        {
            self.take_results(io);
        }
    }

    fn poll(&mut self, io: &mut Io<'_>) {
        if let Some(names) = &mut self.names {
            names.poll(&mut io.streams, io.now);
            self.take_results(io);
        }
    }

    fn shutdown(&mut self, io: &mut Io<'_>) {
        self.waiting.clear();
        if let Some(names) = &mut self.names {
            names.shutdown(&mut io.streams);
        }
    }

    fn is_backend(&self, addr: SocketAddr) -> bool {
        self.backends.contains(&Dest::Addr(addr))
            || self.names.as_ref().is_some_and(|n| n.knows(addr))
    }

    /// A session placed on `backend` by another process counts as placed here, on the first
    /// backend with that address (a backend given by name is matched by its address now).
    fn adopt(&mut self, backend: SocketAddr) -> Option<Lease> {
        let names = self.names.as_ref();
        let index = self.backends.iter().position(|b| match b {
            Dest::Addr(addr) => *addr == backend,
            Dest::Name(_) => names.is_some_and(|n| n.knows(backend)),
        })?;
        self.sessions[index] += 1;
        Some(Lease(index as u32))
    }

    /// Forgets one session placed on the backend `lease` names.
    fn release(&mut self, lease: Lease) {
        if let Some(count) = self.sessions.get_mut(lease.0 as usize) {
            *count = count.saturating_sub(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routes(n: usize, start: usize) -> Fixed {
        let backends = (0..n)
            .map(|i| Dest::Addr(SocketAddr::from(([127, 0, 0, 1], 9000 + i as u16))))
            .collect();
        Fixed::new(backends, start, None)
    }

    fn backend(picked: Option<usize>) -> usize {
        picked.expect("a route")
    }

    #[test]
    fn fresh_routes_cycle_round_robin() {
        let mut r = routes(3, 0);
        let picks: Vec<_> = (0..6).map(|_| backend(r.pick())).collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn start_offsets_the_cycle() {
        let mut r = routes(3, 4);
        assert_eq!(backend(r.pick()), 1);
    }

    #[test]
    fn released_backend_is_refilled_first() {
        let mut r = routes(3, 0);
        for _ in 0..6 {
            let _ = r.pick();
        }
        r.release(Lease(1));
        r.release(Lease(1));
        assert_eq!(backend(r.pick()), 1);
        assert_eq!(backend(r.pick()), 1);
        assert_eq!(backend(r.pick()), 2);
    }

    #[test]
    fn no_backends_means_no_route() {
        let mut r = Fixed::new(Vec::new(), 0, None);
        assert_eq!(r.pick(), None);
        r.release(Lease(0));
    }
}
