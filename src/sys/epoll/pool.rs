//! The epoll driver's receive buffers: one allocation cut into `count` buffers, each with room
//! for a prefix before its payload (a PROXY protocol header), and beside each the source
//! address and control bytes its last receive reported.
//!
//! A buffer is *free* (the driver may receive into it), *received* (named by a completion,
//! not yet leased), or *leased* (the worker's until it recycles it), and moves only in that
//! circle, so "back exactly once" is a checked property as with io_uring's buffer ring. The
//! kernel writes into a buffer only during a `recvmmsg` the driver makes with it free.

use std::net::{IpAddr, SocketAddr};

use super::syscall::{Got, Slot};
use crate::sys::cmsg::{self, CONTROL_LEN};
use crate::sys::driver::{Received, RecvFault};
use crate::sys::sockaddr::{self, SOCKADDR_MAX};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Free,
    Received,
    Leased,
}

#[repr(C, align(8))]
#[derive(Clone, Copy)]
struct Control([u8; CONTROL_LEN]);

#[derive(Clone, Copy)]
struct Meta {
    got: Got,
    name: [u8; SOCKADDR_MAX],
    control: Control,
}

pub(super) struct Pool {
    mem: Box<[u8]>,
    stride: usize,
    /// Where a payload starts in its buffer: the room for a prefix.
    offset: usize,
    payload: usize,
    /// Whether receives ask for control data (a wildcard listener's destinations).
    control: bool,
    state: Box<[State]>,
    meta: Box<[Meta]>,
    /// Free buffers, taken from the end.
    free: Vec<u16>,
}

impl Pool {
    /// `count` buffers of `payload` bytes after `headroom` bytes of room for a prefix.
    pub(super) fn new(count: u32, payload: usize, headroom: usize, control: bool) -> Pool {
        let count = count.clamp(1, u32::from(u16::MAX) + 1) as usize;
        let offset = headroom.next_multiple_of(8);
        let stride = (offset + payload).next_multiple_of(64);
        Pool {
            mem: vec![0; count * stride].into_boxed_slice(),
            stride,
            offset,
            payload,
            control,
            state: vec![State::Free; count].into_boxed_slice(),
            meta: vec![
                Meta {
                    got: Got::default(),
                    name: [0; SOCKADDR_MAX],
                    control: Control([0; CONTROL_LEN]),
                };
                count
            ]
            .into_boxed_slice(),
            // Lowest ids last, so they are used first.
            free: (0..count as u32).rev().map(|b| b as u16).collect(),
        }
    }

    pub(super) fn count(&self) -> u32 {
        self.state.len() as u32
    }

    /// Buffers not free for receiving (received or leased).
    pub(super) fn out(&self) -> u32 {
        (self.state.len() - self.free.len()) as u32
    }

    /// Takes up to `n` free buffers, in ascending order.
    pub(super) fn take_free(&mut self, n: usize, out: &mut Vec<u16>) {
        out.clear();
        let keep = self.free.len().saturating_sub(n);
        out.extend(self.free.drain(keep..));
        out.sort_unstable();
    }

    /// Gives back buffers taken but not received into.
    pub(super) fn untake(&mut self, bids: &[u16]) {
        self.free.extend(bids.iter().rev());
    }

    /// The receive slots of `bids` (ascending, each free and taken), one at a time: nothing
    /// is allocated per batch.
    pub(super) fn slots<'a>(&'a mut self, bids: &'a [u16]) -> impl Iterator<Item = Slot<'a>> {
        debug_assert!(bids.windows(2).all(|w| w[0] < w[1]), "ascending and unique");
        let (stride, offset, payload, control) =
            (self.stride, self.offset, self.payload, self.control);
        let (mut mem, mut meta) = (&mut self.mem[..], &mut self.meta[..]);
        let mut base = 0;
        bids.iter().map(move |&bid| {
            let bid = usize::from(bid);
            let (_, rest) = std::mem::take(&mut mem).split_at_mut((bid - base) * stride);
            let (chunk, rest) = rest.split_at_mut(stride);
            mem = rest;
            let (_, rest) = std::mem::take(&mut meta).split_at_mut(bid - base);
            let (m, rest) = rest.split_at_mut(1);
            meta = rest;
            base = bid + 1;
            let m = &mut m[0];
            Slot {
                payload: &mut chunk[offset..offset + payload],
                name: &mut m.name[..],
                control: if control {
                    &mut m.control.0[..]
                } else {
                    &mut []
                },
            }
        })
    }

    /// Records what a receive put in `bid`: it is now named by a completion.
    pub(super) fn received(&mut self, bid: u16, got: Got) {
        let i = usize::from(bid);
        self.meta[i].got = got;
        self.state[i] = State::Received;
    }

    /// Leases `bid`, which a completion named. False if it was not received (an anomaly).
    pub(super) fn lease(&mut self, bid: u16) -> bool {
        match self.state.get_mut(usize::from(bid)) {
            Some(s @ State::Received) => {
                *s = State::Leased;
                true
            }
            _ => false,
        }
    }

    /// Gives leased `bid` back for receiving. False if it was not leased.
    pub(super) fn recycle(&mut self, bid: u16) -> bool {
        match self.state.get_mut(usize::from(bid)) {
            Some(s @ State::Leased) => {
                *s = State::Free;
                self.free.push(bid);
                true
            }
            _ => false,
        }
    }

    fn leased(&self, bid: u16) -> bool {
        self.state.get(usize::from(bid)) == Some(&State::Leased)
    }

    /// The datagram in leased `bid`.
    pub(super) fn datagram(&self, bid: u16) -> Result<Received, RecvFault> {
        if !self.leased(bid) {
            return Err(RecvFault::NotLeased);
        }
        let m = &self.meta[usize::from(bid)];
        if m.got.flags & libc::MSG_TRUNC != 0 || m.got.len as usize > self.payload {
            return Err(RecvFault::Truncated);
        }
        let name = m
            .name
            .get(..m.got.namelen as usize)
            .ok_or(RecvFault::BadAddress)?;
        let source: SocketAddr = sockaddr::decode(name).ok_or(RecvFault::BadAddress)?;
        let dest: Option<IpAddr> = if self.control && m.got.flags & libc::MSG_CTRUNC == 0 {
            let len = (m.got.controllen as usize).min(CONTROL_LEN);
            cmsg::destination(&m.control.0[..len])
        } else {
            None
        };
        Ok(Received {
            source,
            len: m.got.len,
            dest,
        })
    }

    /// `len` bytes of leased `bid` from `start` (the payload is at the pool's offset).
    pub(super) fn range(&self, bid: u16, start: usize, len: usize) -> Option<&[u8]> {
        if !self.leased(bid) {
            return None;
        }
        let at = usize::from(bid) * self.stride + start;
        let end = at.checked_add(len)?;
        (start.checked_add(len)? <= self.stride).then(|| &self.mem[at..end])
    }

    /// Writes `prefix` just before leased `bid`'s payload; the start of the prefix, or `None`
    /// if it does not fit the headroom.
    pub(super) fn prefix(&mut self, bid: u16, prefix: &[u8]) -> Option<usize> {
        let start = self.offset.checked_sub(prefix.len())?;
        if !self.leased(bid) {
            return None;
        }
        let at = usize::from(bid) * self.stride + start;
        self.mem[at..at + prefix.len()].copy_from_slice(prefix);
        Some(start)
    }

    pub(super) fn offset(&self) -> usize {
        self.offset
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_go_round_once_and_slots_do_not_overlap() {
        let mut pool = Pool::new(4, 100, 52, false);
        assert_eq!((pool.count(), pool.out()), (4, 0));
        let mut bids = Vec::new();
        pool.take_free(3, &mut bids);
        assert_eq!(bids, [0, 1, 2]);
        let slots: Vec<Slot<'_>> = pool.slots(&[0, 2]).collect();
        assert_eq!(slots.len(), 2);
        assert!(
            slots
                .iter()
                .all(|s| s.payload.len() == 100 && s.control.is_empty())
        );
        drop(slots);
        pool.untake(&[1]);
        assert_eq!(pool.out(), 2);
        assert!(!pool.lease(0), "not received yet");
        pool.received(0, Got::default());
        assert!(pool.lease(0));
        assert!(!pool.lease(0), "leased once");
        assert_eq!(pool.prefix(0, &[7; 52]), Some(pool.offset() - 52));
        assert_eq!(pool.prefix(0, &[7; 60]), None, "larger than the headroom");
        assert!(pool.recycle(0));
        assert!(!pool.recycle(0), "recycled once");
        assert_eq!(pool.range(0, 0, 1), None, "free again");
    }

    #[test]
    fn a_received_datagram_reads_back_with_its_faults() {
        let mut pool = Pool::new(2, 8, 0, false);
        let from: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let raw = crate::sys::sockaddr::RawSockAddr::encode(from);
        pool.meta[0].name[..raw.as_bytes().len()].copy_from_slice(raw.as_bytes());
        let got = Got {
            len: 5,
            namelen: raw.as_bytes().len() as u32,
            controllen: 0,
            flags: 0,
        };
        pool.received(0, got);
        assert_eq!(pool.datagram(0), Err(RecvFault::NotLeased));
        pool.lease(0);
        assert_eq!(
            pool.datagram(0),
            Ok(Received {
                source: from,
                len: 5,
                dest: None
            })
        );
        pool.meta[0].got.flags = libc::MSG_TRUNC;
        assert_eq!(pool.datagram(0), Err(RecvFault::Truncated));
        pool.meta[0].got = Got {
            namelen: 200,
            ..got
        };
        assert_eq!(pool.datagram(0), Err(RecvFault::BadAddress));
    }
}
