//! Backend → client: a datagram a session's socket received goes to the client from the
//! worker's listening socket, sent from its receive buffer itself; the buffer is recycled when
//! the send completes. With a wildcard listener it leaves from the address the client sent to
//! (`IP_PKTINFO`), so a client of a secondary address gets its answers from that address.

use std::os::fd::AsRawFd;

use super::Worker;
use crate::session::Key;
use crate::stats::Counter;
use crate::user_data::Op;

impl Worker {
    pub(super) fn on_backend_datagram(&mut self, key: Key, bid: u16, len: u32) {
        let to = if self.life.forwards() {
            self.sessions.reply_to(key, self.tick)
        } else {
            None
        };
        let Some(reply) = to else {
            return self.drop_buffer(bid, Counter::DropSessionClosed);
        };
        let fd = self.listener.as_raw_fd();
        // From the address the client sent to, for a wildcard listener on a multi-homed host.
        let from = reply.from.map(|ip| (ip, self.local.is_ipv6()));
        let user_data = Op::SendDown { bid }.encode();
        match self
            .driver
            .send_to(fd, bid, len as usize, &reply.to, from, user_data)
        {
            Ok(flushed) => {
                self.pause.sends_down += 1;
                self.counters.backends.packet_down(reply.backend);
                self.count_flush(flushed);
            }
            Err(e) => {
                self.warn_send(&e);
                self.drop_buffer(bid, Counter::DropSendError);
            }
        }
    }

    pub(super) fn on_send_down(&mut self, bid: u16, res: i32) {
        self.pause.sends_down = self.pause.sends_down.saturating_sub(1);
        self.recycle(bid);
        if res >= 0 {
            self.counters.bump(Counter::PacketsDownstream);
            self.counters.add(Counter::BytesDownstream, res as u64);
        } else {
            self.count_send_error(res, None);
        }
    }
}
