//! The 64-bit cookie each of the worker's own io_uring operations carries, encoded and decoded
//! in one place.
//!
//! Layout (high to low): `kind:4 | generation:20 | slot:24 | bid:16`. Kind 0 is never issued, so
//! a zeroed `user_data` can never be mistaken for a real operation, and kinds stay below 8, so
//! the top bit stays clear: values with it set belong to the driver (`sys::lent`). The
//! generation lets a late completion for a recycled session slot be recognised as stale instead
//! of misrouted.

use crate::route::Ticket;
use crate::sys::lent::LENT_BIT;

/// Sessions a worker can address (the width of the slot field).
pub const SLOTS_MAX: u32 = 1 << 24;
/// Generations wrap at this value; a slot must be reused this many times between a completion
/// being issued and being reaped for a stale completion to be misrouted.
pub const GENERATION_MASK: u32 = (1 << 20) - 1;

const KIND_SHIFT: u32 = 60;
const GEN_SHIFT: u32 = 40;
const SLOT_SHIFT: u32 = 16;

/// A session's slot and the generation it was issued in: what a cookie names a session by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Key {
    pub slot: u32,
    pub generation: u32,
}

impl Key {
    /// The key as a route request's ticket.
    pub const fn ticket(self) -> Ticket {
        Ticket(((self.generation as u64) << 32) | self.slot as u64)
    }

    pub const fn from_ticket(ticket: Ticket) -> Key {
        Key {
            slot: ticket.0 as u32,
            generation: (ticket.0 >> 32) as u32,
        }
    }
}

/// What an operation is, with the indices it needs to be routed back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// The multishot `recvmsg` on the worker's listening socket.
    ListenRecv,
    /// The multishot `recvmsg` on a session's connected upstream socket.
    SessionRecv(Key),
    /// A client datagram sent to the backend, from buffer `bid`.
    SendUp { key: Key, bid: u16 },
    /// A backend datagram sent to the client from the listening socket, from buffer `bid`.
    SendDown { bid: u16 },
    /// The reaper's periodic timeout.
    Tick,
    /// The read on the worker's wake-up eventfd.
    Wake,
    /// An `AsyncCancel`; its result is only counted.
    Cancel,
}

const KIND_LISTEN_RECV: u64 = 1;
const KIND_SESSION_RECV: u64 = 2;
const KIND_SEND_UP: u64 = 3;
const KIND_SEND_DOWN: u64 = 4;
const KIND_TICK: u64 = 5;
const KIND_WAKE: u64 = 6;
const KIND_CANCEL: u64 = 7;
const _: () = assert!((KIND_CANCEL << KIND_SHIFT) & LENT_BIT == 0);

impl Op {
    /// Packs the operation into a `user_data` value. Slots and generations are masked to their
    /// field widths; callers keep slots below [`SLOTS_MAX`].
    pub const fn encode(self) -> u64 {
        const fn pack(kind: u64, key: Key, bid: u16) -> u64 {
            (kind << KIND_SHIFT)
                | (((key.generation & GENERATION_MASK) as u64) << GEN_SHIFT)
                | (((key.slot & (SLOTS_MAX - 1)) as u64) << SLOT_SHIFT)
                | bid as u64
        }
        const NONE: Key = Key {
            slot: 0,
            generation: 0,
        };
        match self {
            Op::ListenRecv => pack(KIND_LISTEN_RECV, NONE, 0),
            Op::SessionRecv(key) => pack(KIND_SESSION_RECV, key, 0),
            Op::SendUp { key, bid } => pack(KIND_SEND_UP, key, bid),
            Op::SendDown { bid } => pack(KIND_SEND_DOWN, NONE, bid),
            Op::Tick => pack(KIND_TICK, NONE, 0),
            Op::Wake => pack(KIND_WAKE, NONE, 0),
            Op::Cancel => pack(KIND_CANCEL, NONE, 0),
        }
    }

    /// Unpacks a `user_data` value; `None` for a value ringgate's worker never issues (the
    /// driver's own included).
    pub const fn decode(user_data: u64) -> Option<Op> {
        let key = Key {
            generation: ((user_data >> GEN_SHIFT) as u32) & GENERATION_MASK,
            slot: ((user_data >> SLOT_SHIFT) as u32) & (SLOTS_MAX - 1),
        };
        let bid = user_data as u16;
        Some(match user_data >> KIND_SHIFT {
            KIND_LISTEN_RECV => Op::ListenRecv,
            KIND_SESSION_RECV => Op::SessionRecv(key),
            KIND_SEND_UP => Op::SendUp { key, bid },
            KIND_SEND_DOWN => Op::SendDown { bid },
            KIND_TICK => Op::Tick,
            KIND_WAKE => Op::Wake,
            KIND_CANCEL => Op::Cancel,
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(slot: u32, generation: u32) -> Key {
        Key { slot, generation }
    }

    #[test]
    fn every_op_round_trips_at_field_limits() {
        let ops = [
            Op::ListenRecv,
            Op::SessionRecv(key(SLOTS_MAX - 1, GENERATION_MASK)),
            Op::SendUp {
                key: key(7, 3),
                bid: u16::MAX,
            },
            Op::SendDown { bid: 0 },
            Op::SendDown { bid: 4095 },
            Op::Tick,
            Op::Wake,
            Op::Cancel,
        ];
        for op in ops {
            let ud = op.encode();
            assert_ne!(ud, 0, "{op:?} encoded to the reserved value 0");
            assert_eq!(ud & LENT_BIT, 0, "{op:?} took the driver's bit");
            assert_eq!(Op::decode(ud), Some(op));
        }
    }

    #[test]
    fn unknown_kinds_and_the_drivers_values_are_rejected() {
        assert_eq!(Op::decode(0), None);
        assert_eq!(Op::decode(u64::MAX), None);
        assert_eq!(Op::decode(LENT_BIT | 1), None);
        assert_eq!(Op::decode(8 << KIND_SHIFT), None);
    }

    #[test]
    fn generation_wraps_within_its_field() {
        let op = Op::SessionRecv(key(1, GENERATION_MASK + 2));
        assert_eq!(op.encode(), Op::SessionRecv(key(1, 1)).encode());
    }

    #[test]
    fn keys_round_trip_through_tickets() {
        let k = key(SLOTS_MAX - 1, GENERATION_MASK);
        assert_eq!(Key::from_ticket(k.ticket()), k);
    }
}
