//! The session map (`--publish-sessions`): for each session, `PREFIX<upstream ip:port>` (the
//! address the backend sees) set to the client's `ip:port`, expiring after twice the idle
//! timeout unless refreshed while the session lives, and deleted when it closes. The control
//! plane and moderators can then map a backend-side port to a player.
//!
//! Writes never wait: a worker's notes of a batch are coalesced (the last for a key wins) and
//! pipelined on its command connection at the batch's end; their replies are matched in order
//! like lookups'. While Redis is down, or past [`PENDING_MAX`] notes, writes are dropped and
//! counted (the entries expire on their own).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use super::conn::Conn;
use crate::route::Note;
use crate::stats::{Counter, Counters};

/// Notes a worker keeps between flushes.
pub const PENDING_MAX: usize = 8192;

/// What `--publish-sessions` asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Publish {
    pub prefix: String,
    pub ttl: Duration,
}

pub struct Publisher {
    prefix: String,
    ttl_secs: u64,
    /// The write due for each upstream address: the client to set, or `None` to delete.
    pending: HashMap<SocketAddr, Option<SocketAddr>>,
}

impl Publisher {
    pub fn new(publish: &Publish) -> Publisher {
        Publisher {
            prefix: publish.prefix.clone(),
            ttl_secs: publish.ttl.as_secs().max(1),
            pending: HashMap::new(),
        }
    }

    pub fn note(&mut self, note: Note, counters: &mut Counters) {
        let (upstream, client) = match note {
            Note::Opened { upstream, client } | Note::Alive { upstream, client } => {
                (upstream, Some(client))
            }
            Note::Closed { upstream } => (upstream, None),
        };
        if self.pending.len() >= PENDING_MAX && !self.pending.contains_key(&upstream) {
            return counters.bump(Counter::SessionMapDropped);
        }
        self.pending.insert(upstream, client);
    }

    /// Queues every pending write on `conn`, or drops them (counted) if it cannot take them.
    pub fn flush(&mut self, conn: &mut Conn, counters: &mut Counters) {
        for (upstream, client) in self.pending.drain() {
            let key = format!("{}{upstream}", self.prefix);
            let value = client.map(|c| c.to_string());
            let queued = conn.write(&key, value.as_deref().map(|v| (v, self.ttl_secs)));
            if !queued {
                counters.bump(Counter::SessionMapDropped);
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::redis::conn::{Event, Handshake, Role};

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, 1], port))
    }

    fn ready() -> Conn {
        let mut c = Conn::new(Role::Command);
        let handshake = Handshake::plain("c");
        c.connected(&handshake);
        c.take_output();
        let mut events = Vec::new();
        c.received(b"+PONG\r\n", &mut events).unwrap();
        assert_eq!(events, [Event::Ready]);
        c
    }

    #[test]
    fn notes_of_a_batch_are_coalesced_and_pipelined() {
        let mut p = Publisher::new(&Publish {
            prefix: "udp_gate:session:".into(),
            ttl: Duration::from_secs(120),
        });
        let mut counters = Counters::default();
        p.note(
            Note::Opened {
                upstream: addr(1),
                client: addr(9),
            },
            &mut counters,
        );
        p.note(Note::Closed { upstream: addr(1) }, &mut counters);
        p.note(
            Note::Opened {
                upstream: addr(2),
                client: addr(8),
            },
            &mut counters,
        );
        let mut conn = ready();
        p.flush(&mut conn, &mut counters);
        let out = String::from_utf8(conn.take_output()).unwrap();
        assert!(
            out.contains("DEL") && out.contains("udp_gate:session:10.0.0.1:1"),
            "{out}"
        );
        assert!(
            out.contains("SET") && out.contains("10.0.0.1:8") && out.contains("120"),
            "{out}"
        );
        assert_eq!(
            out.matches("udp_gate:session:10.0.0.1:1").count(),
            1,
            "coalesced: {out}"
        );
        assert!(p.is_empty());
    }

    #[test]
    fn writes_are_dropped_and_counted_while_redis_is_down() {
        let mut p = Publisher::new(&Publish {
            prefix: "s:".into(),
            ttl: Duration::from_secs(2),
        });
        let mut counters = Counters::default();
        p.note(
            Note::Opened {
                upstream: addr(1),
                client: addr(9),
            },
            &mut counters,
        );
        p.flush(&mut Conn::new(Role::Command), &mut counters);
        assert_eq!(counters.get(Counter::SessionMapDropped), 1);
    }
}
