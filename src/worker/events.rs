//! The one place a worker reacts to what its session table announced (`session::Event`): the
//! session log lines (`--log-sessions`), the router's session notes (the Redis session map) and
//! the XDP fast path (a confirmed session is offloaded). Once per batch, before the router's
//! turn, so what a batch opened or closed reaches Redis in the same batch. (A closing session
//! leaves the XDP map earlier, in `closing::close_session`, before its socket can close.)

use tracing::info;

use super::Worker;
use crate::route::Note;
use crate::session::Event;

/// Events' room kept between batches.
const EVENTS_KEPT: usize = 1024;

impl Worker {
    /// Takes the table's events and fans them out.
    pub(super) fn announce(&mut self) {
        let mut events = std::mem::take(&mut self.events);
        self.sessions.take_events(&mut events);
        for event in events.drain(..) {
            match event {
                Event::Opened {
                    client,
                    upstream,
                    backend,
                    ..
                } => {
                    self.note(Note::Opened { upstream, client });
                    if let Some(suppressed) = self.session_line() {
                        info!(
                            suppressed,
                            "new session: {client} → {backend} (backend port {})",
                            upstream.port()
                        );
                    }
                }
                Event::Confirmed {
                    key,
                    client,
                    local,
                    upstream,
                    backend,
                } => self.offload(key, client, local, upstream, backend),
                Event::Closed {
                    client,
                    upstream,
                    why,
                    ..
                } => {
                    self.note(Note::Closed { upstream });
                    if let (Some(counter), Some(suppressed)) = (why.counter(), self.session_line())
                    {
                        info!(suppressed, "session closed: {client} ({})", counter.label());
                    }
                }
            }
        }
        // Keep the allocation for the next batch, but not a mass close's (a shutdown, an idle
        // sweep): events are about 112 bytes each.
        events.shrink_to(EVENTS_KEPT);
        self.events = events;
    }
}
