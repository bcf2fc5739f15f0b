//! The 64-bit cookie each io_uring operation carries, encoded and decoded in one place.
//!
//! Layout (high to low): `kind:4 | generation:20 | slot:24 | bid:16`. Kind 0 is never issued, so
//! a zeroed `user_data` can never be mistaken for a real operation. The generation lets a late
//! completion for a recycled session slot be recognised as stale instead of misrouted.

/// Sessions a worker can address (the width of the slot field).
pub const SLOTS_MAX: u32 = 1 << 24;
/// Generations wrap at this value; a slot must be reused this many times between a completion
/// being issued and being reaped for a stale completion to be misrouted.
pub const GENERATION_MASK: u32 = (1 << 20) - 1;

const KIND_SHIFT: u32 = 60;
const GEN_SHIFT: u32 = 40;
const SLOT_SHIFT: u32 = 16;

/// What an operation is, with the indices it needs to be routed back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// The multishot `recvmsg` on the worker's listening socket.
    ListenRecv,
    /// The multishot `recvmsg` on a session's connected upstream socket.
    SessionRecv { slot: u32, generation: u32 },
    /// A client datagram sent to the backend, from buffer `bid`.
    SendUp {
        slot: u32,
        generation: u32,
        bid: u16,
    },
    /// A backend datagram sent to the client from the listening socket, from buffer `bid`.
    SendDown { bid: u16 },
    /// The reaper's periodic timeout.
    Tick,
    /// The read on the worker's wake-up eventfd.
    Wake,
    /// An `AsyncCancel`; its result is only counted.
    Cancel,
    /// Connecting Redis connection `conn` (0 command, 1 subscriber) in its `epoch`.
    RedisConnect { conn: u32, epoch: u32 },
    /// Sending on Redis connection `conn`.
    RedisSend { conn: u32, epoch: u32 },
    /// Receiving on Redis connection `conn`.
    RedisRecv { conn: u32, epoch: u32 },
    /// The Redis link's timer (lookup deadlines, reconnects).
    RedisTimer,
}

const KIND_LISTEN_RECV: u64 = 1;
const KIND_SESSION_RECV: u64 = 2;
const KIND_SEND_UP: u64 = 3;
const KIND_SEND_DOWN: u64 = 4;
const KIND_TICK: u64 = 5;
const KIND_WAKE: u64 = 6;
const KIND_CANCEL: u64 = 7;
const KIND_REDIS_CONNECT: u64 = 8;
const KIND_REDIS_SEND: u64 = 9;
const KIND_REDIS_RECV: u64 = 10;
const KIND_REDIS_TIMER: u64 = 11;

impl Op {
    /// Packs the operation into a `user_data` value. Slots and generations are masked to their
    /// field widths; callers keep slots below [`SLOTS_MAX`].
    pub const fn encode(self) -> u64 {
        const fn pack(kind: u64, generation: u32, slot: u32, bid: u16) -> u64 {
            (kind << KIND_SHIFT)
                | (((generation & GENERATION_MASK) as u64) << GEN_SHIFT)
                | (((slot & (SLOTS_MAX - 1)) as u64) << SLOT_SHIFT)
                | bid as u64
        }
        match self {
            Op::ListenRecv => pack(KIND_LISTEN_RECV, 0, 0, 0),
            Op::SessionRecv { slot, generation } => pack(KIND_SESSION_RECV, generation, slot, 0),
            Op::SendUp {
                slot,
                generation,
                bid,
            } => pack(KIND_SEND_UP, generation, slot, bid),
            Op::SendDown { bid } => pack(KIND_SEND_DOWN, 0, 0, bid),
            Op::Tick => pack(KIND_TICK, 0, 0, 0),
            Op::Wake => pack(KIND_WAKE, 0, 0, 0),
            Op::Cancel => pack(KIND_CANCEL, 0, 0, 0),
            Op::RedisConnect { conn, epoch } => pack(KIND_REDIS_CONNECT, epoch, conn, 0),
            Op::RedisSend { conn, epoch } => pack(KIND_REDIS_SEND, epoch, conn, 0),
            Op::RedisRecv { conn, epoch } => pack(KIND_REDIS_RECV, epoch, conn, 0),
            Op::RedisTimer => pack(KIND_REDIS_TIMER, 0, 0, 0),
        }
    }

    /// Unpacks a `user_data` value; `None` for a value ringgate never issues.
    pub const fn decode(user_data: u64) -> Option<Op> {
        let generation = ((user_data >> GEN_SHIFT) as u32) & GENERATION_MASK;
        let slot = ((user_data >> SLOT_SHIFT) as u32) & (SLOTS_MAX - 1);
        let bid = user_data as u16;
        Some(match user_data >> KIND_SHIFT {
            KIND_LISTEN_RECV => Op::ListenRecv,
            KIND_SESSION_RECV => Op::SessionRecv { slot, generation },
            KIND_SEND_UP => Op::SendUp {
                slot,
                generation,
                bid,
            },
            KIND_SEND_DOWN => Op::SendDown { bid },
            KIND_TICK => Op::Tick,
            KIND_WAKE => Op::Wake,
            KIND_CANCEL => Op::Cancel,
            KIND_REDIS_CONNECT => Op::RedisConnect {
                conn: slot,
                epoch: generation,
            },
            KIND_REDIS_SEND => Op::RedisSend {
                conn: slot,
                epoch: generation,
            },
            KIND_REDIS_RECV => Op::RedisRecv {
                conn: slot,
                epoch: generation,
            },
            KIND_REDIS_TIMER => Op::RedisTimer,
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_op_round_trips_at_field_limits() {
        let ops = [
            Op::ListenRecv,
            Op::SessionRecv {
                slot: SLOTS_MAX - 1,
                generation: GENERATION_MASK,
            },
            Op::SendUp {
                slot: 7,
                generation: 3,
                bid: u16::MAX,
            },
            Op::SendDown { bid: 0 },
            Op::SendDown { bid: 4095 },
            Op::Tick,
            Op::Wake,
            Op::Cancel,
            Op::RedisConnect { conn: 1, epoch: 9 },
            Op::RedisSend { conn: 0, epoch: 2 },
            Op::RedisRecv {
                conn: 1,
                epoch: GENERATION_MASK,
            },
            Op::RedisTimer,
        ];
        for op in ops {
            let ud = op.encode();
            assert_ne!(ud, 0, "{op:?} encoded to the reserved value 0");
            assert_eq!(Op::decode(ud), Some(op));
        }
    }

    #[test]
    fn unknown_kinds_are_rejected() {
        assert_eq!(Op::decode(0), None);
        assert_eq!(Op::decode(u64::MAX), None);
        assert_eq!(Op::decode(12 << KIND_SHIFT), None);
    }

    #[test]
    fn generation_wraps_within_its_field() {
        let op = Op::SessionRecv {
            slot: 1,
            generation: GENERATION_MASK + 2,
        };
        assert_eq!(
            Op::decode(op.encode()),
            Some(Op::SessionRecv {
                slot: 1,
                generation: 1
            })
        );
    }
}
