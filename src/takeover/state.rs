//! What a worker hands over, as text lines: one per session (in the table's own transit shape,
//! `session::OpenSession` and `session::PendingSession`), each open session's with its
//! socket attached (`SCM_RIGHTS`), in order; a session still waiting for its route is followed
//! by one line per datagram it holds. Parsing is strict: a line that does not parse ends the
//! takeover (the old process keeps serving).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

pub use crate::session::{OpenSession, PendingSession};

/// The most datagrams a pending session may announce (`--pending-max`'s own limit).
pub const HELD_MAX: usize = 1024;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SessionLine {
    Open(OpenSession),
    Pending(PendingSession),
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

fn bit(b: bool) -> u8 {
    u8::from(b)
}

fn opt_ip(ip: Option<IpAddr>) -> String {
    ip.map_or("-".into(), |ip| ip.to_string())
}

impl SessionLine {
    /// The line, without its newline.
    pub fn encode(&self) -> String {
        match self {
            SessionLine::Open(s) => format!(
                "S client={} reply={} backend={} upstream={} idle_ms={} age_ms={} answered={} \
                 confirmed={} local={} prefix={} every={} sent={}",
                s.client,
                s.reply_to,
                s.backend,
                s.upstream,
                s.idle.as_millis(),
                s.age.as_millis(),
                bit(s.answered),
                bit(s.confirmed),
                opt_ip(s.local),
                s.prefix.as_deref().map_or("-".into(), hex),
                bit(s.prefix_every),
                bit(s.prefix_sent),
            ),
            SessionLine::Pending(p) => format!(
                "P client={} reply={} age_ms={} local={} held={}",
                p.client,
                p.reply_to,
                p.age.as_millis(),
                opt_ip(p.local),
                p.held.len(),
            ),
        }
    }

    /// Every line of the session: its own, then (a pending session) one per held datagram.
    pub fn encode_all(&self) -> Vec<String> {
        let mut lines = vec![self.encode()];
        if let SessionLine::Pending(p) = self {
            lines.extend(p.held.iter().map(|h| format!("H {}", hex(h))));
        }
        lines
    }

    /// Whether the session's socket travels with its line.
    pub fn has_socket(&self) -> bool {
        matches!(self, SessionLine::Open(_))
    }

    /// Parses the lines `encode_all` wrote, the first given, the rest read with `more`;
    /// `None` for anything else.
    pub fn decode_all(
        first: &str,
        mut more: impl FnMut() -> Option<String>,
    ) -> Option<SessionLine> {
        let mut line = Self::decode(first)?;
        if let SessionLine::Pending(p) = &mut line {
            for held in &mut p.held {
                *held = unhex(more()?.strip_prefix("H ")?)?;
            }
        }
        Some(line)
    }

    /// Parses a session's own line; a pending session's held datagrams come back empty, as
    /// many as it announces (at most [`HELD_MAX`]).
    pub fn decode(line: &str) -> Option<SessionLine> {
        let mut words = line.split(' ');
        let kind = words.next()?;
        let fields: Vec<(&str, &str)> = words.map(|w| w.split_once('=')).collect::<Option<_>>()?;
        let get = |key: &str| fields.iter().find(|(k, _)| *k == key).map(|(_, v)| *v);
        let addr = |key: &str| get(key)?.parse::<SocketAddr>().ok();
        let ms = |key: &str| Some(Duration::from_millis(get(key)?.parse().ok()?));
        let flag = |key: &str| match get(key)? {
            "0" => Some(false),
            "1" => Some(true),
            _ => None,
        };
        let ip = |key: &str| match get(key)? {
            "-" => Some(None),
            text => text.parse().ok().map(Some),
        };
        match kind {
            "S" => Some(SessionLine::Open(OpenSession {
                client: addr("client")?,
                reply_to: addr("reply")?,
                backend: addr("backend")?,
                upstream: addr("upstream")?,
                idle: ms("idle_ms")?,
                age: ms("age_ms")?,
                answered: flag("answered")?,
                confirmed: flag("confirmed")?,
                local: ip("local")?,
                prefix: match get("prefix")? {
                    "-" => None,
                    text => Some(unhex(text)?).filter(|p| p.len() <= crate::pp2::HEADER_MAX),
                },
                prefix_every: flag("every")?,
                prefix_sent: flag("sent")?,
            })),
            "P" => Some(SessionLine::Pending(PendingSession {
                client: addr("client")?,
                reply_to: addr("reply")?,
                age: ms("age_ms")?,
                local: ip("local")?,
                held: vec![
                    Vec::new();
                    get("held")?
                        .parse::<usize>()
                        .ok()
                        .filter(|&n| n <= HELD_MAX)?
                ],
            })),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_round_trip_through_their_lines() {
        let open = SessionLine::Open(OpenSession {
            client: "1.2.3.4:5".parse().unwrap(),
            reply_to: "[::ffff:1.2.3.4]:5".parse().unwrap(),
            backend: "[fd00::1]:19132".parse().unwrap(),
            upstream: "[fd00::2]:40001".parse().unwrap(),
            idle: Duration::from_millis(1500),
            age: Duration::from_secs(60),
            answered: true,
            confirmed: false,
            local: Some("10.0.0.2".parse().unwrap()),
            prefix: Some(vec![0x0d, 0x0a, 0xff]),
            prefix_every: false,
            prefix_sent: true,
        });
        assert_eq!(SessionLine::decode(&open.encode()), Some(open));
        let pending = SessionLine::Pending(PendingSession {
            client: "1.2.3.4:6".parse().unwrap(),
            reply_to: "1.2.3.4:6".parse().unwrap(),
            age: Duration::from_millis(20),
            local: None,
            held: vec![b"hello".to_vec(), vec![], vec![0, 1, 2]],
        });
        let lines = pending.encode_all();
        assert_eq!(lines.len(), 4, "its own line and one per held datagram");
        assert!(lines.iter().all(|l| !l.contains('\n')));
        let mut rest = lines[1..].iter().cloned();
        assert_eq!(
            SessionLine::decode_all(&lines[0], || rest.next()),
            Some(pending)
        );
        let mut short = lines[1..3].iter().cloned();
        assert_eq!(SessionLine::decode_all(&lines[0], || short.next()), None);
    }

    /// Every field of a session survives a takeover: the old table exports itself, the lines
    /// carry it, the new table imports it, and exporting that gives the same sessions back.
    #[test]
    fn every_field_of_a_session_survives_the_table_the_lines_and_the_next_table() {
        use std::net::UdpSocket;

        use crate::session::{Held, Leaving, Limits, Sessions};

        let tick_len = Duration::from_millis(125);
        let limits = Limits {
            sessions_max: 8,
            fd_max: usize::MAX,
            pending_max: 8,
            held_max: 64,
        };
        let mut old: Sessions<UdpSocket> = Sessions::new(limits);
        // An IPv4 client of a dual-stack listener: known canonically, answered as received.
        let client: SocketAddr = "[::ffff:1.2.3.4]:5".parse().unwrap();
        let key = old.insert(client, 100, Held { bid: 0, len: 1 });
        old.arrived_at(
            key,
            Some("10.0.0.2".parse().unwrap()),
            Some(vec![0x0d, 0x0a].into()),
            true,
        );
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        let upstream = socket.local_addr().unwrap();
        let backend: SocketAddr = "127.0.0.9:19132".parse().unwrap();
        old.open(key, socket, upstream, backend, None, 3).unwrap();
        old.reply_to(key, 120).unwrap();
        old.upstream(key, 140).unwrap();
        let pending_client: SocketAddr = "5.6.7.8:9".parse().unwrap();
        let pending = old.insert(pending_client, 130, Held { bid: 4, len: 2 });
        old.hold(pending, Held { bid: 5, len: 3 });
        let payload = |h: Held| Some(vec![h.bid as u8; h.len as usize]);

        let (leaving, left) = old.export(150, tick_len, payload);
        assert_eq!(left, Default::default());
        let lines: Vec<SessionLine> = leaving
            .into_iter()
            .map(|l| match l {
                Leaving::Open(s, _) => SessionLine::Open(s),
                Leaving::Pending(p) => SessionLine::Pending(p),
            })
            .collect();
        let [SessionLine::Open(open), SessionLine::Pending(held)] = &lines[..] else {
            panic!("{lines:?}");
        };
        // Not one field at its default, so that one lost on the way shows.
        assert_eq!(
            open,
            &OpenSession {
                client: "1.2.3.4:5".parse().unwrap(),
                reply_to: client,
                backend,
                upstream,
                idle: tick_len * 10,
                age: tick_len * 50,
                answered: true,
                confirmed: true,
                local: Some("10.0.0.2".parse().unwrap()),
                prefix: Some(vec![0x0d, 0x0a]),
                prefix_every: true,
                prefix_sent: true,
            }
        );
        assert_eq!(held.held, [vec![4u8; 2], vec![5u8; 3]]);

        let mut new: Sessions<UdpSocket> = Sessions::new(limits);
        for line in &lines {
            let mut rest = line.encode_all().into_iter();
            let first = rest.next().unwrap();
            match SessionLine::decode_all(&first, || rest.next()).unwrap() {
                SessionLine::Open(s) => {
                    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
                    new.adopt(s, socket, 1_000, tick_len, None, 0).unwrap();
                }
                SessionLine::Pending(p) => {
                    assert_eq!(&p, held);
                    let key = new
                        .adopt_pending(p.reply_to, p.age, 1_000, tick_len)
                        .unwrap();
                    new.arrived_at(key, p.local, None, false);
                }
            }
        }
        let (again, _) = new.export(1_000, tick_len, payload);
        let mut found = 0;
        for l in again {
            match l {
                Leaving::Open(s, _) => {
                    assert_eq!(&s, open);
                    found += 1;
                }
                Leaving::Pending(p) => {
                    // Its datagrams travel apart (the worker carries them as bytes).
                    assert_eq!(
                        p,
                        PendingSession {
                            held: vec![],
                            ..held.clone()
                        }
                    );
                    found += 1;
                }
            }
        }
        assert_eq!(found, 2);
    }

    #[test]
    fn anything_else_is_refused() {
        for bad in [
            "",
            "X a=b",
            "S client=1.2.3.4:5",
            "P client=x reply=1.2.3.4:5 age_ms=1 local=- held=0",
            "P client=1.2.3.4:5 reply=1.2.3.4:5 age_ms=1 local=- held=zz",
            "P client=1.2.3.4:5 reply=1.2.3.4:5 age_ms=1 local=- held=1025",
        ] {
            assert_eq!(SessionLine::decode(bad), None, "{bad}");
        }
    }
}
