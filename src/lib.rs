//! ringgate: a thread-per-core io_uring UDP forwarder.
//!
//! Start at [`proxy::Proxy::start`]; the packet's path is in [`worker`], where a new session's
//! route comes from [`route`], and everything that touches the kernel is behind [`sys`].
#![deny(unsafe_code)]

pub mod addr;
pub mod admission;
pub mod config;
pub mod datagram;
pub mod heartbeat;
pub mod host_check;
pub mod logtext;
pub mod metrics;
pub mod notify;
pub mod pp2;
pub mod proxy;
pub mod ratelimit;
pub mod relaunch;
pub mod route;
pub mod session;
pub mod stats;
pub mod summary;
pub mod sys;
pub mod takeover;
pub mod user_data;
pub mod worker;
pub mod xdp;

pub use config::Config;
pub use proxy::{Proxy, StartError};
pub use stats::Counter;
