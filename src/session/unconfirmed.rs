//! The unconfirmed list: sessions whose client has not yet shown that it sees its backend's
//! answers, oldest first, threaded through the slab (`prev`/`next` slot numbers) so that
//! linking, unlinking and finding the oldest are O(1) and cost no allocation.

use std::os::fd::AsRawFd;

use super::{Key, NIL, Sessions};

impl<U: AsRawFd> Sessions<U> {
    /// Appends `slot` (a new session) at the newest end.
    pub(super) fn link_unconfirmed(&mut self, slot: u32) {
        let tail = self.tail;
        if let Some(s) = self.session_at(slot) {
            s.prev = tail;
            s.next = NIL;
        }
        match self.session_at(tail) {
            Some(t) => t.next = slot,
            None => self.head = slot,
        }
        self.tail = slot;
    }

    /// Takes `slot` off the list; nothing if it is not on it.
    pub(super) fn unlink_unconfirmed(&mut self, slot: u32) {
        let head = self.head;
        let Some(s) = self.session_at(slot) else {
            return;
        };
        let (prev, next) = (s.prev, s.next);
        if prev == NIL && next == NIL && head != slot {
            return;
        }
        s.prev = NIL;
        s.next = NIL;
        match self.session_at(prev) {
            Some(p) => p.next = next,
            None => self.head = next,
        }
        match self.session_at(next) {
            Some(n) => n.prev = prev,
            None => self.tail = prev,
        }
    }

    /// The oldest unconfirmed session, the one a newcomer evicts when the table is full.
    pub(super) fn oldest_unconfirmed(&self) -> Option<Key> {
        let entry = self.slots.get(self.head as usize)?;
        Some(Key {
            slot: self.head,
            generation: entry.generation,
        })
    }

    /// Appends to `out`, oldest first, the unconfirmed sessions created before
    /// `cutoff_tick`: their unreplied timeout has passed.
    pub fn collect_unreplied(&self, cutoff_tick: u32, out: &mut Vec<Key>) {
        let mut slot = self.head;
        while let Some(entry) = self.slots.get(slot as usize) {
            let Some(s) = &entry.session else { break };
            if s.created_tick >= cutoff_tick {
                break;
            }
            out.push(Key {
                slot,
                generation: entry.generation,
            });
            slot = s.next;
        }
    }

    fn session_at(&mut self, slot: u32) -> Option<&mut super::Session<U>> {
        self.slots.get_mut(slot as usize)?.session.as_mut()
    }
}
