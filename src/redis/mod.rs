//! Redis routing: where new clients go, and which sessions to close, decided by a control plane.
//!
//! Each worker talks to Redis itself, through its own ring: a command connection (pipelined
//! `GET`s of the backend key, replies matched in order) and a subscriber connection (the
//! disconnect channel). The pieces here are the protocol without I/O: replies decoded as bytes
//! arrive ([`reply`]), a connection's state machine ([`conn`]), backend value validation
//! ([`backend`]) and disconnect messages ([`disconnect`]). [`link`] drives them from the ring.

pub mod backend;
pub mod conn;
pub mod disconnect;
pub mod link;
pub mod reply;
