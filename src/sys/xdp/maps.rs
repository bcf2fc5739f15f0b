//! Handles on the program's maps that a thread can own alone: `XdpFlows` (a worker's, to insert
//! and remove its sessions' flows and read when they were last used) and `XdpCounters` (the
//! metrics thread's). Each is its own descriptor of the same kernel map, so no handle is shared
//! between threads; the kernel serialises the updates.

use std::io;
use std::os::fd::{AsFd, OwnedFd};

use aya::maps::{HashMap, IterableMap, Map, MapData, MapError, PerCpuArray};

use super::layout::{FlowKey, FlowValue};
use super::{COUNTERS, Counter, FLOWS, Tuple, error, is_enoent, map_data, map_error};

/// One handle on the flow map.
pub struct XdpFlows {
    map: HashMap<MapData, FlowKey, FlowValue>,
}

impl XdpFlows {
    pub(super) fn new(map: Map) -> io::Result<XdpFlows> {
        let map = HashMap::try_from(map).map_err(map_error(FLOWS))?;
        Ok(XdpFlows { map })
    }

    pub(super) fn from_fd(fd: OwnedFd) -> io::Result<XdpFlows> {
        XdpFlows::new(Map::HashMap(map_data(fd)?))
    }

    pub(super) fn fd(&self) -> io::Result<OwnedFd> {
        self.map.map().fd().as_fd().try_clone_to_owned()
    }

    /// Another handle of its own on the same map (for another thread).
    pub fn try_clone(&self) -> io::Result<XdpFlows> {
        XdpFlows::from_fd(self.fd()?)
    }

    /// The most entries the map holds (two per session).
    pub fn capacity(&self) -> u32 {
        self.map.map().info().map_or(0, |i| i.max_entries())
    }

    /// Datagrams arriving as `from` leave as `to` (replacing any rewrite `from` had; its last
    /// seen time starts over at 0). A full map fails with the kernel's E2BIG: see [`is_full`].
    pub fn insert(&mut self, from: &Tuple, to: &Tuple) -> io::Result<()> {
        self.map
            .insert(FlowKey::new(from), FlowValue::new(to), 0)
            .map_err(|e| match e {
                MapError::SyscallError(s) if s.io_error.raw_os_error() == Some(libc::E2BIG) => {
                    io::Error::from_raw_os_error(libc::E2BIG)
                }
                e => error("insert an XDP flow", &e),
            })
    }

    /// Forgets `from`'s rewrite; false if it had none.
    pub fn remove(&mut self, from: &Tuple) -> io::Result<bool> {
        match self.map.remove(&FlowKey::new(from)) {
            Ok(()) => Ok(true),
            Err(MapError::KeyNotFound) => Ok(false),
            Err(e) if is_enoent(&e) => Ok(false),
            Err(e) => Err(error("remove an XDP flow", &e)),
        }
    }

    /// `from`'s rewrite and the CLOCK_MONOTONIC time in nanoseconds when the program last
    /// forwarded a datagram of it (0: never, since it was inserted); None if `from` has none.
    pub fn get(&self, from: &Tuple) -> io::Result<Option<(Tuple, u64)>> {
        match self.map.get(&FlowKey::new(from), 0) {
            Ok(value) => Ok(Some((value.tuple(), value.last_seen_ns))),
            Err(MapError::KeyNotFound) => Ok(None),
            Err(e) => Err(error("read an XDP flow", &e)),
        }
    }
}

/// Whether an insert failed because the map is full.
pub fn is_full(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::E2BIG)
}

/// One handle on the per-CPU counters.
pub struct XdpCounters {
    map: PerCpuArray<MapData, u64>,
}

impl XdpCounters {
    pub(super) fn new(map: Map) -> io::Result<XdpCounters> {
        let map = PerCpuArray::try_from(map).map_err(map_error(COUNTERS))?;
        if map.len() as usize != Counter::ALL.len() {
            return Err(io::Error::other(format!(
                "the XDP object counts {} reasons but ringgate knows {}: \
                 bpf/xdp_forward.h and src/sys/xdp/layout.rs disagree",
                map.len(),
                Counter::ALL.len()
            )));
        }
        Ok(XdpCounters { map })
    }

    pub(super) fn from_fd(fd: OwnedFd) -> io::Result<XdpCounters> {
        XdpCounters::new(Map::PerCpuArray(map_data(fd)?))
    }

    pub(super) fn fd(&self) -> io::Result<OwnedFd> {
        self.map.map().fd().as_fd().try_clone_to_owned()
    }

    /// One counter, summed over the CPUs.
    pub fn get(&self, counter: Counter) -> io::Result<u64> {
        let values = self
            .map
            .get(&counter.index(), 0)
            .map_err(|e| error("read an XDP counter", &e))?;
        Ok(values.iter().sum())
    }

    /// Every counter, summed over the CPUs, in `Counter::ALL`'s order.
    pub fn all(&self) -> io::Result<Vec<(Counter, u64)>> {
        Counter::ALL
            .iter()
            .map(|&c| Ok((c, self.get(c)?)))
            .collect()
    }
}

/// CLOCK_MONOTONIC now, in nanoseconds: the clock the program stamps flows with
/// (`bpf_ktime_get_ns`).
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call;
    // CLOCK_MONOTONIC always exists on Linux, so the call cannot fail.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec as u64)
}
