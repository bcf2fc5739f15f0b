//! One Redis connection's socket and its operations in the worker's ring.
//!
//! An [`Endpoint`] pairs a [`Conn`] (what to say and what replies mean) with a TCP socket whose
//! connect, send and receive are operations on one of the driver's lent streams. It
//! never blocks and never waits: it is told about completions ([`Endpoint::completed`]), and the
//! router asks it once per batch what is due ([`Endpoint::due`], a pure decision) and to keep
//! its receive armed and its output flowing ([`Endpoint::pump`]).
//!
//! A connection that fails is shut down and its operations cancelled; its socket closes only
//! once all of them have completed (the kernel may still point at the stream's memory), and the
//! epoch changes so that a late completion for the old socket is recognised.

use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use socket2::Socket;

use super::conn::{Conn, Event, Failure, Handshake, Phase, Role};
use crate::sys::driver::Streams;
use crate::sys::lent::{Lent, LentOp};
use crate::sys::socket;

/// How long a TCP connect to Redis may take before it is abandoned and retried.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// The same for a sentinel: short, as the Sentinel client guidelines ask, since the next
/// sentinel may answer.
pub const SENTINEL_CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// Epochs wrap within the 32-bit tag of a lent operation.
const EPOCH_MASK: u32 = u32::MAX;

/// What an endpoint needs done now, decided from its state and the clock alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Due {
    Nothing,
    /// Down, and its backoff has passed.
    Connect,
    /// Give up on the connection, for this reason.
    Fail(&'static str),
}

/// What a completion meant.
#[derive(Debug, PartialEq, Eq)]
pub enum Completed {
    /// For a socket this endpoint no longer has (an old epoch): ignore, count as an anomaly.
    Stale,
    /// Handled; any replies are in the events.
    Ok,
    /// The connection must be dropped.
    Failed(String),
    /// The connection must be dropped: a reply was over the size caps.
    Oversize(String),
}

pub struct Endpoint {
    pub conn: Conn,
    stream: u16,
    socket: Option<Socket>,
    /// Changes with every socket, so a completion names the socket it was for.
    epoch: u32,
    /// Operations in flight on `socket`.
    ops: u32,
    sending: bool,
    receiving: bool,
    /// Shut down; the socket closes once `ops` reaches 0.
    failing: bool,
    retry_at: Option<Instant>,
    connect_deadline: Option<Instant>,
    /// When the handshake began, while it is under way.
    handshake_since: Option<Instant>,
}

impl Endpoint {
    /// A connection on lent stream `stream`, due to connect at `now`.
    pub fn new(role: Role, stream: u16, now: Instant) -> Endpoint {
        Endpoint {
            conn: Conn::new(role),
            stream,
            socket: None,
            epoch: 0,
            ops: 0,
            sending: false,
            receiving: false,
            failing: false,
            retry_at: Some(now),
            connect_deadline: None,
            handshake_since: None,
        }
    }

    /// Whether a socket is open and not being shut down.
    pub fn connected(&self) -> bool {
        self.socket.is_some() && !self.failing
    }

    pub fn up(&self) -> bool {
        self.conn.phase() == Phase::Ready
    }

    /// Whether something waits on the clock: a reconnect, a connect or handshake deadline, or
    /// a socket still closing.
    pub fn waiting(&self) -> bool {
        self.retry_at.is_some()
            || self.connect_deadline.is_some()
            || self.handshake_since.is_some()
            || self.failing
    }

    /// What is due at `now`. A server that stopped answering (SIGSTOP, a lost route) keeps the
    /// TCP connection up, so a handshake unanswered for `stall` gives up on it.
    pub fn due(&self, now: Instant, stall: Duration) -> Due {
        if self.failing {
            return Due::Nothing;
        }
        if self.connect_deadline.is_some_and(|d| d <= now) {
            return Due::Fail("connect timed out");
        }
        if self
            .handshake_since
            .is_some_and(|t| now.saturating_duration_since(t) > stall)
        {
            return Due::Fail("no reply to the handshake");
        }
        if self.socket.is_none() && self.retry_at.is_some_and(|t| t <= now) {
            return Due::Connect;
        }
        Due::Nothing
    }

    /// Opens a socket and starts connecting it to `addr`.
    pub fn connect(
        &mut self,
        addr: SocketAddr,
        streams: &mut Streams<'_>,
        now: Instant,
    ) -> Result<(), String> {
        self.retry_at = None;
        let socket = socket::tcp_client(addr).map_err(|e| e.to_string())?;
        let fd = socket.as_raw_fd();
        self.socket = Some(socket);
        streams
            .connect(self.stream, fd, addr, self.epoch)
            .map_err(|e| e.to_string())?;
        self.ops += 1;
        self.conn.connecting();
        self.connect_deadline = Some(
            now + match self.conn.role() {
                Role::Sentinel => SENTINEL_CONNECT_TIMEOUT,
                Role::Command | Role::Subscriber => CONNECT_TIMEOUT,
            },
        );
        Ok(())
    }

    /// Keeps a receive armed and queued output flowing while the connection talks.
    pub fn pump(&mut self, streams: &mut Streams<'_>) {
        let Some(fd) = self.socket.as_ref().map(AsRawFd::as_raw_fd) else {
            return;
        };
        if self.failing || !matches!(self.conn.phase(), Phase::Handshaking | Phase::Ready) {
            return;
        }
        if !self.receiving && streams.recv(self.stream, fd, self.epoch).is_ok() {
            self.receiving = true;
            self.ops += 1;
        }
        if !self.sending && self.conn.has_output() {
            let bytes = self.conn.take_output();
            match streams.send(self.stream, fd, bytes, self.epoch) {
                Ok(_) => {
                    self.sending = true;
                    self.ops += 1;
                }
                Err(_) => {
                    let bytes = streams.sent(self.stream);
                    self.conn.unsent(&bytes);
                }
            }
        }
    }

    /// Handles the completion of one of this endpoint's operations, appending what replies
    /// meant to `events`.
    pub fn completed(
        &mut self,
        lent: Lent,
        res: i32,
        streams: &mut Streams<'_>,
        now: Instant,
        handshake: &Handshake,
        events: &mut Vec<Event>,
    ) -> Completed {
        if lent.tag != self.epoch || self.ops == 0 {
            return Completed::Stale;
        }
        self.ops -= 1;
        if self.failing {
            self.close_if_drained();
            return Completed::Ok;
        }
        match lent.op {
            LentOp::Connect { .. } => {
                self.connect_deadline = None;
                if res < 0 {
                    return Completed::Failed(errno(res));
                }
                self.handshake_since = Some(now);
                if let Some(ready) = self.conn.connected(handshake) {
                    events.push(ready);
                }
            }
            LentOp::Send { .. } => {
                self.sending = false;
                let sent = streams.sent(self.stream);
                if res < 0 {
                    return Completed::Failed(errno(res));
                }
                if let Some(rest) = sent.get(res as usize..).filter(|r| !r.is_empty()) {
                    self.conn.unsent(rest);
                }
            }
            LentOp::Recv { .. } => {
                self.receiving = false;
                if res <= 0 {
                    return Completed::Failed(if res == 0 {
                        "Redis closed the connection".to_owned()
                    } else {
                        errno(res)
                    });
                }
                let bytes = streams.received(self.stream, res as usize);
                match self.conn.received(bytes, events) {
                    Ok(()) => {}
                    Err(Failure::Oversize(why)) => return Completed::Oversize(why),
                    Err(failure) => return Completed::Failed(failure.to_string()),
                }
            }
            LentOp::Timer { .. } | LentOp::Read { .. } | LentOp::Cancel => {}
        }
        if events.contains(&Event::Ready) {
            self.handshake_since = None;
        }
        Completed::Ok
    }

    /// Drops the connection: shuts its socket down and cancels its operations; the socket
    /// closes when they have all completed, and a reconnect is due after the backoff, which is
    /// returned.
    pub fn fail(&mut self, streams: &mut Streams<'_>, now: Instant) -> Duration {
        let (_, delay) = self.conn.reset();
        self.retry_at = Some(now + delay);
        self.connect_deadline = None;
        self.handshake_since = None;
        self.stop_socket(streams);
        delay
    }

    /// Reconnects as soon as the socket is closed, without waiting out the backoff (the
    /// master moved: the new one is worth trying now), and starts the backoff over.
    pub fn hurry(&mut self, now: Instant) {
        self.retry_now(now);
        self.conn.forgive();
    }

    /// Reconnects as soon as the socket is closed, keeping the backoff where it is (the next
    /// sentinel in a round).
    pub fn retry_now(&mut self, now: Instant) {
        if self.retry_at.is_some() {
            self.retry_at = Some(now);
        }
    }

    /// When the next connection attempt is due, if one is.
    pub fn retry_at(&self) -> Option<Instant> {
        self.retry_at
    }

    /// Stops for good: the socket is shut down, nothing reconnects.
    pub fn shutdown(&mut self, streams: &mut Streams<'_>) {
        self.stop_socket(streams);
        self.retry_at = None;
        self.connect_deadline = None;
        self.handshake_since = None;
    }

    fn stop_socket(&mut self, streams: &mut Streams<'_>) {
        if let Some(socket) = &self.socket {
            // Shutting down completes a pending receive; the cancel also reaches a connect
            // still waiting for a SYN-ACK.
            let _ = socket.shutdown(std::net::Shutdown::Both);
            let _ = streams.cancel_fd(socket.as_raw_fd());
            self.failing = true;
        }
        self.close_if_drained();
    }

    fn close_if_drained(&mut self) {
        if self.failing && self.ops == 0 {
            self.socket = None;
            self.failing = false;
            self.sending = false;
            self.receiving = false;
            self.epoch = self.epoch.wrapping_add(1) & EPOCH_MASK;
        }
    }

    pub fn role(&self) -> Role {
        self.conn.role()
    }
}

fn errno(res: i32) -> String {
    std::io::Error::from_raw_os_error(-res).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const STALL: Duration = Duration::from_secs(2);

    #[test]
    fn a_new_endpoint_connects_at_once_and_then_waits_for_its_deadline() {
        let t0 = Instant::now();
        let mut e = Endpoint::new(Role::Command, 0, t0);
        assert_eq!(e.due(t0, STALL), Due::Connect);
        assert!(e.waiting());
        // As after `connect`: a socket, a deadline.
        e.retry_at = None;
        e.socket = Some(socket::tcp_client("127.0.0.1:1".parse().unwrap()).unwrap());
        e.connect_deadline = Some(t0 + CONNECT_TIMEOUT);
        assert_eq!(e.due(t0 + Duration::from_secs(1), STALL), Due::Nothing);
        assert_eq!(
            e.due(t0 + CONNECT_TIMEOUT, STALL),
            Due::Fail("connect timed out")
        );
    }

    #[test]
    fn a_handshake_unanswered_past_the_stall_limit_fails() {
        let t0 = Instant::now();
        let mut e = Endpoint::new(Role::Subscriber, 1, t0);
        e.retry_at = None;
        e.socket = Some(socket::tcp_client("127.0.0.1:1".parse().unwrap()).unwrap());
        e.handshake_since = Some(t0);
        assert_eq!(e.due(t0 + STALL, STALL), Due::Nothing);
        assert_eq!(
            e.due(t0 + STALL + Duration::from_millis(1), STALL),
            Due::Fail("no reply to the handshake")
        );
    }

    #[test]
    fn a_down_endpoint_waits_for_its_backoff_and_a_closing_one_does_nothing() {
        let t0 = Instant::now();
        let mut e = Endpoint::new(Role::Command, 0, t0);
        e.retry_at = Some(t0 + Duration::from_millis(50));
        assert_eq!(e.due(t0, STALL), Due::Nothing);
        assert_eq!(e.due(t0 + Duration::from_millis(50), STALL), Due::Connect);
        e.failing = true;
        assert_eq!(e.due(t0 + Duration::from_secs(9), STALL), Due::Nothing);
    }

    #[test]
    fn a_completion_for_an_old_socket_is_stale() {
        let t0 = Instant::now();
        let mut e = Endpoint::new(Role::Command, 0, t0);
        let mut driver = crate::sys::driver::Driver::new(&crate::sys::driver::DriverConfig {
            backend: crate::sys::driver::Backend::IoUring,
            sq_entries: 8,
            cq_entries: 64,
            buffer_count: 2,
            payload_bytes: 64,
            headroom: 0,
            recv_destination: false,
            tick: Duration::from_secs(1),
            task_run: crate::sys::uring::TaskRun::Deferred,
            streams: 1,
            stream_rx_bytes: 64,
            timers: 0,
        })
        .unwrap();
        let handshake = Handshake::plain("c");
        let mut events = Vec::new();
        let recv = Lent {
            op: LentOp::Recv { stream: 0 },
            tag: 7,
        };
        let stale = e.completed(recv, 5, &mut driver.streams(), t0, &handshake, &mut events);
        assert_eq!(stale, Completed::Stale);
        assert!(events.is_empty());
    }
}
