//! Operations on memory a driver lends: byte streams (connect, send and receive on a stream
//! socket, e.g. a TCP connection to a control plane) and one-shot timers, as their completions
//! name them.
//!
//! The wall does not know what a stream carries; it knows that an operation points at one of a
//! stream's buffers, that the buffer is busy from the push until the operation's final
//! completion, and that nothing may read, rewrite or free it meanwhile. To free a buffer on the
//! right completion without asking the caller, the driver owns the tokens of these operations:
//! every token with [`LENT_BIT`] set is the driver's (a [`Lent`]); every token the caller
//! issues for its own operations must leave that bit clear. A caller gets its completion back as
//! a [`Lent`] with the 32-bit `tag` it chose (an epoch, say), and reads what a receive wrote
//! with [`super::driver::Streams::received`]. This encoding is the same for every driver.

/// The `user_data` bit that marks an operation on lent memory.
pub const LENT_BIT: u64 = 1 << 63;
const KIND_SHIFT: u32 = 56;
const INDEX_SHIFT: u32 = 40;

/// An operation on lent memory, as its completion names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LentOp {
    Connect {
        stream: u16,
    },
    Send {
        stream: u16,
    },
    Recv {
        stream: u16,
    },
    /// A read (not a socket receive) into a stream's receive buffer: an eventfd's counter.
    Read {
        stream: u16,
    },
    Timer {
        timer: u16,
    },
    /// A cancel the driver issued itself (of a timer, or of every operation on a stream fd).
    Cancel,
}

/// A completion the driver recognises as one of its lent operations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lent {
    pub op: LentOp,
    /// The caller's tag, given when the operation was pushed.
    pub tag: u32,
}

impl Lent {
    pub const fn encode(self) -> u64 {
        let (kind, index) = match self.op {
            LentOp::Connect { stream } => (1, stream),
            LentOp::Send { stream } => (2, stream),
            LentOp::Recv { stream } => (3, stream),
            LentOp::Timer { timer } => (4, timer),
            LentOp::Cancel => (5, 0),
            LentOp::Read { stream } => (6, stream),
        };
        LENT_BIT | (kind << KIND_SHIFT) | ((index as u64) << INDEX_SHIFT) | self.tag as u64
    }

    /// `None` for a `user_data` without [`LENT_BIT`] (the caller's own) or one never issued.
    pub const fn decode(user_data: u64) -> Option<Lent> {
        if user_data & LENT_BIT == 0 {
            return None;
        }
        let index = (user_data >> INDEX_SHIFT) as u16;
        let op = match (user_data >> KIND_SHIFT) & 0x7f {
            1 => LentOp::Connect { stream: index },
            2 => LentOp::Send { stream: index },
            3 => LentOp::Recv { stream: index },
            4 => LentOp::Timer { timer: index },
            5 => LentOp::Cancel,
            6 => LentOp::Read { stream: index },
            _ => return None,
        };
        Some(Lent {
            op,
            tag: user_data as u32,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lent_ops_round_trip_and_own_the_top_bit() {
        for op in [
            LentOp::Connect { stream: 0 },
            LentOp::Send { stream: 1 },
            LentOp::Recv { stream: u16::MAX },
            LentOp::Read { stream: 2 },
            LentOp::Timer { timer: 3 },
            LentOp::Cancel,
        ] {
            for tag in [0, 1, u32::MAX] {
                let lent = Lent { op, tag };
                let ud = lent.encode();
                assert_ne!(ud & LENT_BIT, 0);
                assert_eq!(Lent::decode(ud), Some(lent));
            }
        }
        assert_eq!(Lent::decode(0), None);
        assert_eq!(Lent::decode(LENT_BIT - 1), None, "the caller's values");
        assert_eq!(Lent::decode(LENT_BIT), None, "kind 0 is never issued");
    }
}
