//! Handing every socket and session to the next process: a takeover, and the control socket it
//! goes through.
//!
//! The old process listens on its control socket ([`give`]); the new one connects ([`take`]).
//! They exchange text lines ([`wire`]), a socket attached to some:
//!
//! 1. new → old `HELLO 1 listen=ADDR workers=N`; old → new `OK listen=ADDR workers=N pid=P`,
//!    or `REFUSE WHY` when the listen address or the worker count differ (the reuseport hash
//!    decides which worker a client lands on, so each worker's sessions must go to the worker
//!    with the same index).
//! 2. The new process builds its rings, then new → old `GO`.
//! 3. The old process pauses every worker at a batch boundary: its receives are cancelled and
//!    its sends complete, so a datagram that arrives from then on waits in a socket's receive
//!    queue. Then, per worker, `W I sessions=K` with the listening socket attached and K
//!    sessions ([`state`]), each open one with its socket attached; `M` with the metrics
//!    listener if there is one; `END frozen_us=T`.
//! 4. The new process adopts everything, arming nothing and sending nothing, and new → old
//!    `READY`; old → new `BYE`, and the old process closes its copies of the descriptors
//!    without a word to anyone (no shutdown, no session-closed note). The new process arms
//!    every receive (the datagrams queued meanwhile are read at once), routes the sessions
//!    that were waiting, and new → old `SERVING`; the old process exits 0.
//!
//! Anything else (a refusal, a timeout, a closed connection, a line that does not parse) before
//! `BYE` is sent, and the old process resumes every worker with everything it held, while the
//! new one stops without having read or sent a datagram: nothing is lost or sent twice,
//! because until `BYE` only the old process ever touches the sockets' traffic. The workers'
//! side is `worker::pause`.

pub mod give;
pub mod state;
pub mod take;
mod wire;

use std::fs::File;
use std::os::fd::{OwnedFd, RawFd};
use std::sync::mpsc::{Receiver, Sender, SyncSender};

use state::SessionLine;

/// The exchange's version, in `HELLO`.
pub const VERSION: u32 = 1;

/// A worker's part of a takeover, as it hands it over. The descriptors stay the worker's: it
/// stays paused, holding them, until the [`Decision`].
#[derive(Debug)]
pub struct Export {
    pub listener: RawFd,
    pub sessions: Vec<SessionLine>,
    /// One per session whose socket travels ([`SessionLine::has_socket`]), in order.
    pub fds: Vec<RawFd>,
}

/// A worker's part of a takeover, as the next process receives it.
#[derive(Debug)]
pub struct Import {
    pub listener: OwnedFd,
    pub sessions: Vec<(SessionLine, Option<OwnedFd>)>,
    /// Told what the worker adopted; it arms nothing yet.
    pub adopted: SyncSender<Adopted>,
    /// Once the old process has let go: where to say that every receive is armed. Closed
    /// without a word if the takeover failed.
    pub commit: Receiver<Armed>,
}

/// Told once a worker of the new process has armed every receive.
pub type Armed = SyncSender<()>;

/// What a worker took in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Adopted {
    pub worker: usize,
    /// Open sessions, and sessions still waiting for their route.
    pub sessions: usize,
    pub pending: usize,
    /// Sessions it could not take in (a client twice).
    pub refused: usize,
}

/// How a paused worker ends its pause.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// The takeover failed: serve on.
    Resume,
    /// The next process serves: stop, touching nothing the sockets carry.
    Commit,
}

/// What the control thread asks of a worker: pause, export, and wait for the decision.
#[derive(Debug)]
pub struct Pause {
    pub export: SyncSender<Result<Export, String>>,
    pub decision: Receiver<Decision>,
}

/// How the control thread reaches one worker: its pause requests, and its wake-up eventfd.
#[derive(Debug)]
pub struct WorkerLink {
    pub pause: Sender<Pause>,
    pub waker: File,
}
