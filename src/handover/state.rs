//! What a worker hands over, as text lines: one per session, each open session's with its
//! socket attached (`SCM_RIGHTS`), in order; a session still waiting for its route is followed
//! by one line per datagram it holds. Parsing is strict: a line that does not parse ends the
//! handover (the old process keeps serving).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// The most datagrams a pending session may announce (`--pending-max`'s own limit).
pub const HELD_MAX: usize = 1024;

/// An open session, as the next process adopts it (its socket travels beside the line).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenSession {
    /// The client, canonical, and as received (what replies go to).
    pub client: SocketAddr,
    pub reply_to: SocketAddr,
    pub backend: SocketAddr,
    /// The upstream socket's local address: the source the backend sees.
    pub upstream: SocketAddr,
    /// Time since its last datagram, and since it was created.
    pub idle: Duration,
    pub age: Duration,
    pub answered: bool,
    pub confirmed: bool,
    /// The address the client sent to (a wildcard listener's).
    pub local: Option<IpAddr>,
    /// The PROXY protocol header, whether it goes before every datagram, whether it was sent.
    pub prefix: Option<Vec<u8>>,
    pub prefix_every: bool,
    pub prefix_sent: bool,
}

/// A session still waiting for its route, with the datagrams it holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingSession {
    pub client: SocketAddr,
    pub reply_to: SocketAddr,
    pub age: Duration,
    pub local: Option<IpAddr>,
    pub held: Vec<Vec<u8>>,
}

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
