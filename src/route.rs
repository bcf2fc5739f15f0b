//! Where a new session goes.
//!
//! Static routing spreads new sessions over the configured backends by *least sessions* on this
//! worker, ties broken round-robin (so a fresh worker cycles through the list instead of piling
//! onto the first entry). A session keeps its backend for life; its count is released when it
//! closes. Route resolution is shaped as a lookup that may complete later ([`Resolution`]), so an
//! asynchronous source (Redis) plugs into the same session-creation path.

use std::net::SocketAddr;

/// The answer to "where does this new client go?".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resolution {
    /// Known now: open the session towards `addr`. `backend` indexes the static list, so the
    /// session can be released from its count when it closes.
    Ready { addr: SocketAddr, backend: usize },
    /// No backend can take the session.
    NoRoute,
}

/// Least-sessions placement over a fixed backend list.
#[derive(Debug)]
pub struct StaticRoutes {
    backends: Vec<SocketAddr>,
    sessions: Vec<u32>,
    next: usize,
}

impl StaticRoutes {
    /// `start` offsets the round-robin so that workers do not all favour the same backend.
    pub fn new(backends: Vec<SocketAddr>, start: usize) -> Self {
        let n = backends.len().max(1);
        StaticRoutes {
            sessions: vec![0; backends.len()],
            backends,
            next: start % n,
        }
    }

    pub fn resolve(&mut self) -> Resolution {
        let n = self.backends.len();
        let Some(best) = (0..n)
            .map(|i| (self.next + i) % n)
            .min_by_key(|&i| self.sessions[i])
        else {
            return Resolution::NoRoute;
        };
        self.sessions[best] += 1;
        self.next = (best + 1) % n;
        Resolution::Ready {
            addr: self.backends[best],
            backend: best,
        }
    }

    /// Forgets one session placed on `backend`.
    pub fn release(&mut self, backend: usize) {
        if let Some(count) = self.sessions.get_mut(backend) {
            *count = count.saturating_sub(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routes(n: usize, start: usize) -> StaticRoutes {
        let backends = (0..n)
            .map(|i| SocketAddr::from(([127, 0, 0, 1], 9000 + i as u16)))
            .collect();
        StaticRoutes::new(backends, start)
    }

    fn backend(r: Resolution) -> usize {
        match r {
            Resolution::Ready { backend, .. } => backend,
            Resolution::NoRoute => panic!("no route"),
        }
    }

    #[test]
    fn fresh_routes_cycle_round_robin() {
        let mut r = routes(3, 0);
        let picks: Vec<_> = (0..6).map(|_| backend(r.resolve())).collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn start_offsets_the_cycle() {
        let mut r = routes(3, 4);
        assert_eq!(backend(r.resolve()), 1);
    }

    #[test]
    fn released_backend_is_refilled_first() {
        let mut r = routes(3, 0);
        for _ in 0..6 {
            r.resolve();
        }
        r.release(1);
        r.release(1);
        assert_eq!(backend(r.resolve()), 1);
        assert_eq!(backend(r.resolve()), 1);
        assert_eq!(backend(r.resolve()), 2);
    }

    #[test]
    fn no_backends_means_no_route() {
        let mut r = StaticRoutes::new(Vec::new(), 0);
        assert_eq!(r.resolve(), Resolution::NoRoute);
        r.release(0);
    }
}
