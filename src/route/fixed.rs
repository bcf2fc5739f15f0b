//! Static backends (`--backend`): the router that answers at once.
//!
//! New sessions are spread over the configured backends by *least sessions* on this worker,
//! ties broken round-robin (so a fresh worker cycles through the list instead of piling onto
//! the first entry). A session keeps its backend for life; the lease is the backend's index, and
//! its count drops when the session closes.

use std::net::SocketAddr;

use super::{Backend, Io, Lease, Outcome, RouteFailure, Router, Ticket};

/// Least-sessions placement over a fixed backend list.
#[derive(Debug)]
pub struct Fixed {
    backends: Vec<SocketAddr>,
    sessions: Vec<u32>,
    next: usize,
}

impl Fixed {
    /// `start` offsets the round-robin so that workers do not all favour the same backend.
    pub fn new(backends: Vec<SocketAddr>, start: usize) -> Self {
        let n = backends.len().max(1);
        Fixed {
            sessions: vec![0; backends.len()],
            backends,
            next: start % n,
        }
    }

    /// The least loaded backend, counted as taken.
    pub fn pick(&mut self) -> Result<Backend, RouteFailure> {
        let n = self.backends.len();
        let best = (0..n)
            .map(|i| (self.next + i) % n)
            .min_by_key(|&i| self.sessions[i])
            .ok_or(RouteFailure::Missing)?;
        self.sessions[best] += 1;
        self.next = (best + 1) % n;
        Ok(Backend {
            addr: self.backends[best],
            lease: Some(Lease(best as u32)),
        })
    }
}

impl Router for Fixed {
    fn name(&self) -> &'static str {
        "fixed"
    }

    fn request(&mut self, ticket: Ticket, io: &mut Io<'_>) {
        let result = self.pick();
        io.out.push(Outcome::Route {
            tickets: vec![ticket],
            result,
        });
    }

    fn is_backend(&self, addr: SocketAddr) -> bool {
        self.backends.contains(&addr)
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
            .map(|i| SocketAddr::from(([127, 0, 0, 1], 9000 + i as u16)))
            .collect();
        Fixed::new(backends, start)
    }

    fn backend(r: Result<Backend, RouteFailure>) -> usize {
        let b = r.expect("a route");
        assert_eq!(b.addr.port(), 9000 + b.lease.unwrap().0 as u16);
        b.lease.unwrap().0 as usize
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
        let mut r = Fixed::new(Vec::new(), 0);
        assert_eq!(r.pick(), Err(RouteFailure::Missing));
        r.release(Lease(0));
    }
}
