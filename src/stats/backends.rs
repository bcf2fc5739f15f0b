//! Sessions and packets per backend, with the labels' cardinality bounded.
//!
//! A worker gives each backend it meets one of [`BACKENDS_MAX`] slots, for good (a slot's
//! label is written once and never changes, so the metrics thread can read it without a lock);
//! backends past that share the last slot, labelled `other`. Sessions remember their slot, so
//! counting a packet is an array increment. Each worker publishes its own slots; the metrics
//! thread sums them by label and folds all but [`BACKENDS_MAX`] labels into `other`.

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// Backends shown by name; the rest are `other`.
pub const BACKENDS_MAX: usize = 32;
/// The slot every backend past [`BACKENDS_MAX`] shares.
pub const OTHER: u8 = BACKENDS_MAX as u8;
const SLOTS: usize = BACKENDS_MAX + 1;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BackendCounts {
    pub sessions: u64,
    pub packets_up: u64,
    pub packets_down: u64,
}

/// A worker's own per-backend counts.
#[derive(Debug)]
pub struct Backends {
    addrs: Vec<SocketAddr>,
    counts: [BackendCounts; SLOTS],
    /// Slots whose label still has to be published.
    unpublished: usize,
}

impl Default for Backends {
    fn default() -> Self {
        Backends {
            addrs: Vec::new(),
            counts: [BackendCounts::default(); SLOTS],
            unpublished: 0,
        }
    }
}

impl Backends {
    /// The slot of `backend`, given one if it is new and one is left.
    pub fn slot(&mut self, backend: SocketAddr) -> u8 {
        if let Some(i) = self.addrs.iter().position(|a| *a == backend) {
            return i as u8;
        }
        if self.addrs.len() == BACKENDS_MAX {
            return OTHER;
        }
        self.addrs.push(backend);
        (self.addrs.len() - 1) as u8
    }

    /// The backend of `slot`; `None` for `other`.
    pub fn addr(&self, slot: u8) -> Option<SocketAddr> {
        self.addrs.get(usize::from(slot)).copied()
    }

    pub fn opened(&mut self, slot: u8) {
        if let Some(c) = self.counts.get_mut(usize::from(slot)) {
            c.sessions += 1;
        }
    }

    pub fn closed(&mut self, slot: u8) {
        if let Some(c) = self.counts.get_mut(usize::from(slot)) {
            c.sessions = c.sessions.saturating_sub(1);
        }
    }

    #[inline]
    pub fn packet_up(&mut self, slot: u8) {
        if let Some(c) = self.counts.get_mut(usize::from(slot)) {
            c.packets_up += 1;
        }
    }

    #[inline]
    pub fn packet_down(&mut self, slot: u8) {
        if let Some(c) = self.counts.get_mut(usize::from(slot)) {
            c.packets_down += 1;
        }
    }

    pub fn publish(&mut self, shared: &SharedBackends) {
        while self.unpublished < self.addrs.len() {
            let label = self.addrs[self.unpublished].to_string();
            let _ = shared.labels[self.unpublished].set(label);
            self.unpublished += 1;
        }
        // Only the slots given out (and `other` once they all are): this runs once per batch,
        // and stores for 33 slots per batch were a measurable share of the packet path's
        // userspace time at a few datagrams per batch (docs/PERFORMANCE.md).
        let used = if self.addrs.len() == BACKENDS_MAX {
            SLOTS
        } else {
            self.addrs.len()
        };
        for (slot, c) in shared.counts.iter().zip(&self.counts).take(used) {
            slot[0].store(c.sessions, Ordering::Relaxed);
            slot[1].store(c.packets_up, Ordering::Relaxed);
            slot[2].store(c.packets_down, Ordering::Relaxed);
        }
    }
}

/// A worker's published per-backend counts.
#[derive(Debug)]
pub struct SharedBackends {
    labels: [OnceLock<String>; BACKENDS_MAX],
    /// Per slot: sessions, packets up, packets down.
    counts: [[AtomicU64; 3]; SLOTS],
}

impl Default for SharedBackends {
    fn default() -> Self {
        SharedBackends {
            labels: std::array::from_fn(|_| OnceLock::new()),
            counts: std::array::from_fn(|_| std::array::from_fn(|_| AtomicU64::new(0))),
        }
    }
}

impl SharedBackends {
    /// Every slot in use, as `(label, counts)`; `other` last.
    pub fn read(&self) -> Vec<(&str, BackendCounts)> {
        let load = |slot: usize| {
            let c = &self.counts[slot];
            BackendCounts {
                sessions: c[0].load(Ordering::Relaxed),
                packets_up: c[1].load(Ordering::Relaxed),
                packets_down: c[2].load(Ordering::Relaxed),
            }
        };
        let mut out: Vec<(&str, BackendCounts)> = self
            .labels
            .iter()
            .enumerate()
            .map_while(|(i, l)| Some((l.get()?.as_str(), load(i))))
            .collect();
        let other = load(usize::from(OTHER));
        if other != BackendCounts::default() {
            out.push(("other", other));
        }
        out
    }
}

/// Sums `workers`' counts by label, keeping the [`BACKENDS_MAX`] busiest labels by name and
/// folding the rest into `other`.
pub fn merge<'a>(
    workers: impl Iterator<Item = Vec<(&'a str, BackendCounts)>>,
) -> Vec<(String, BackendCounts)> {
    let mut by_label: Vec<(String, BackendCounts)> = Vec::new();
    for (label, c) in workers.flatten() {
        match by_label.iter_mut().find(|(l, _)| l == label) {
            Some((_, sum)) => add(sum, c),
            None => by_label.push((label.to_owned(), c)),
        }
    }
    let other_at = by_label.iter().position(|(l, _)| l == "other");
    let mut other = other_at.map(|i| by_label.remove(i).1);
    by_label.sort_by_key(|(l, c)| (std::cmp::Reverse(c.sessions + c.packets_up), l.clone()));
    for (_, c) in by_label.drain(BACKENDS_MAX.min(by_label.len())..) {
        add(other.get_or_insert_with(BackendCounts::default), c);
    }
    by_label.sort_by(|a, b| a.0.cmp(&b.0));
    by_label.extend(other.map(|c| ("other".to_owned(), c)));
    by_label
}

fn add(sum: &mut BackendCounts, c: BackendCounts) {
    sum.sessions += c.sessions;
    sum.packets_up += c.packets_up;
    sum.packets_down += c.packets_down;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backend(i: usize) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, 1], 1000 + i as u16))
    }

    #[test]
    fn backends_past_the_cap_share_other() {
        let mut b = Backends::default();
        let first = b.slot(backend(0));
        assert_eq!(b.slot(backend(0)), first, "a backend keeps its slot");
        for i in 1..BACKENDS_MAX {
            assert_eq!(b.slot(backend(i)), i as u8);
        }
        assert_eq!(b.slot(backend(BACKENDS_MAX)), OTHER);
        assert_eq!(b.slot(backend(BACKENDS_MAX + 1)), OTHER);
        b.opened(OTHER);
        b.packet_up(first);
        let shared = SharedBackends::default();
        b.publish(&shared);
        let read = shared.read();
        assert_eq!(read.len(), BACKENDS_MAX + 1);
        assert_eq!(read[0].0, "10.0.0.1:1000");
        assert_eq!(read[0].1.packets_up, 1);
        assert_eq!(read.last().unwrap().0, "other");
        assert_eq!(
            read.last().unwrap().1.sessions,
            1,
            "other is published once in use"
        );
    }

    #[test]
    fn workers_are_summed_by_label_and_bounded() {
        let one = BackendCounts {
            sessions: 1,
            packets_up: 2,
            packets_down: 3,
        };
        let a: Vec<(&str, BackendCounts)> = vec![("x:1", one), ("y:1", one)];
        let b: Vec<(&str, BackendCounts)> = vec![("y:1", one), ("other", one)];
        let merged = merge([a, b].into_iter());
        assert_eq!(merged[0].0, "x:1");
        assert_eq!(
            merged[1],
            (
                "y:1".to_owned(),
                BackendCounts {
                    sessions: 2,
                    packets_up: 4,
                    packets_down: 6
                }
            )
        );
        assert_eq!(merged[2], ("other".to_owned(), one));
        let many: Vec<String> = (0..BACKENDS_MAX + 5).map(|i| format!("b:{i}")).collect();
        let w: Vec<(&str, BackendCounts)> = many.iter().map(|l| (l.as_str(), one)).collect();
        let merged = merge([w].into_iter());
        assert_eq!(merged.len(), BACKENDS_MAX + 1);
        assert_eq!(merged.last().unwrap().1.sessions, 5);
    }
}
