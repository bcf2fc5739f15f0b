//! The XDP fast path's kernel side: the program `bpf/xdp_forward.c`, embedded as the object
//! `scripts/build-bpf` compiled (checked in, so building ringgate needs no clang), loaded with
//! aya, and its three maps: `flows` (a plain hash of one entry per direction of a confirmed
//! session: the 4-tuple a datagram arrives with -> the 4-tuple it leaves with, and when one last
//! went through), `tx_ports` (the interfaces a frame may be redirected to, by ifindex) and
//! `counters` (per-CPU, one per reason in `layout::Counter`).
//!
//! This module loads, fills and reads, and attaches (`attach.rs`: one `XdpAttachment` per
//! interface, detached on drop); it knows nothing of sessions. The
//! layout shared with the program is `bpf/xdp_forward.h`, mirrored in `layout.rs`; aya checks
//! the key and value sizes against the object's when the maps are opened here, and `load`
//! checks the counter count, so a drift fails at start-up.
//!
//! `test_run` runs the loaded program once on a frame through `BPF_PROG_TEST_RUN`, for tests:
//! it sends nothing, but the program's lookups (flows, routes, neighbours in the calling
//! thread's network namespace) are the real ones.

mod attach;
mod layout;
mod maps;

use std::io;
use std::net::SocketAddrV4;
use std::os::fd::{AsFd, OwnedFd};

use aya::maps::xdp::DevMapHash;
use aya::maps::{MapData, MapError};
use aya::programs::{TestRun, TestRunOptions, Xdp};
use aya::{Ebpf, EbpfLoader};

pub use attach::{Interface, XdpAttachment, XdpMode};
pub use layout::{Counter, Tuple, XdpAction};
pub use maps::{XdpCounters, XdpFlows, is_full, monotonic_ns};

/// The compiled program, as `scripts/build-bpf` left it in `bpf/`.
static OBJECT: &[u8] = include_bytes!("../../../bpf/xdp_forward.o");

const PROGRAM: &str = "xdp_forward";
const FLOWS: &str = "flows";
const TX_PORTS: &str = "tx_ports";
const COUNTERS: &str = "counters";

/// `struct xdp_md` as `BPF_PROG_TEST_RUN` takes it: data, data_end, data_meta, ingress_ifindex,
/// rx_queue_index, egress_ifindex (six `u32`s, `linux/bpf.h`).
const XDP_MD_LEN: usize = 6 * 4;

/// Room the program could grow a frame by in a test run (it never does; the kernel refuses a
/// run whose output does not fit, so a little slack turns a bug into a visible length change).
const TEST_RUN_SLACK: usize = 256;

/// The loaded program and its maps. Dropping it closes this process's handles: the program
/// stays while it is attached (or another process holds it), the maps while the program does.
pub struct XdpForward {
    /// The object as aya loaded it; `None` for one rebuilt from descriptors (a takeover).
    ebpf: Option<Ebpf>,
    program: OwnedFd,
    flows: XdpFlows,
    tx_ports: DevMapHash<MapData>,
    counters: XdpCounters,
}

/// The program's and maps' descriptors, to hand to another process (a takeover) and rebuild
/// there with [`XdpForward::from_fds`].
#[derive(Debug)]
pub struct XdpFds {
    pub program: OwnedFd,
    pub flows: OwnedFd,
    pub tx_ports: OwnedFd,
    pub counters: OwnedFd,
}

/// One run of the program on one frame: what it returned and the frame as it left it.
#[derive(Debug)]
pub struct TestRunOutcome {
    pub action: XdpAction,
    pub frame: Vec<u8>,
}

impl XdpForward {
    /// Loads the program and creates its maps, the flow map sized for `flows_max` entries (two
    /// per session). Needs CAP_BPF and CAP_NET_ADMIN (root will do).
    pub fn load(flows_max: u32) -> io::Result<XdpForward> {
        let mut ebpf = EbpfLoader::new()
            .map_max_entries(FLOWS, flows_max)
            .load(OBJECT)
            .map_err(|e| error("load the XDP object's maps", &e))?;
        let program: &mut Xdp = ebpf
            .program_mut(PROGRAM)
            .ok_or_else(|| missing("program", PROGRAM))?
            .try_into()
            .map_err(|e| error("open the XDP program", &e))?;
        program
            .load()
            .map_err(|e| error("load the XDP program (the verifier said no?)", &e))?;
        let program = program
            .fd()
            .map_err(|e| error("open the XDP program", &e))?
            .as_fd()
            .try_clone_to_owned()?;
        let flows = XdpFlows::new(take(&mut ebpf, FLOWS)?)?;
        let tx_ports =
            DevMapHash::try_from(take(&mut ebpf, TX_PORTS)?).map_err(map_error(TX_PORTS))?;
        let counters = XdpCounters::new(take(&mut ebpf, COUNTERS)?)?;
        Ok(XdpForward {
            ebpf: Some(ebpf),
            program,
            flows,
            tx_ports,
            counters,
        })
    }

    /// The program and maps another process loaded, from their descriptors. The maps' layouts
    /// are checked as `load` checks them.
    pub fn from_fds(fds: XdpFds) -> io::Result<XdpForward> {
        Ok(XdpForward {
            ebpf: None,
            program: fds.program,
            flows: XdpFlows::from_fd(fds.flows)?,
            tx_ports: DevMapHash::try_from(aya::maps::Map::DevMapHash(map_data(fds.tx_ports)?))
                .map_err(map_error(TX_PORTS))?,
            counters: XdpCounters::from_fd(fds.counters)?,
        })
    }

    /// Copies of the program's and maps' descriptors.
    pub fn fds(&self) -> io::Result<XdpFds> {
        Ok(XdpFds {
            program: self.program.try_clone()?,
            flows: self.flows.fd()?,
            tx_ports: self.tx_ports_fd()?,
            counters: self.counters.fd()?,
        })
    }

    fn tx_ports_fd(&self) -> io::Result<OwnedFd> {
        use aya::maps::IterableMap as _;
        self.tx_ports.map().fd().as_fd().try_clone_to_owned()
    }

    /// A handle of its own on the flow map, for one worker.
    pub fn flows_handle(&self) -> io::Result<XdpFlows> {
        XdpFlows::from_fd(self.flows.fd()?)
    }

    /// A handle of its own on the counters, for the metrics thread.
    pub fn counters_handle(&self) -> io::Result<XdpCounters> {
        XdpCounters::from_fd(self.counters.fd()?)
    }

    /// Datagrams arriving as `from` leave as `to` (replacing any rewrite `from` had; its last
    /// seen time starts over at 0).
    pub fn insert_flow(&mut self, from: &Tuple, to: &Tuple) -> io::Result<()> {
        self.flows.insert(from, to)
    }

    /// Forgets `from`'s rewrite; false if it had none.
    pub fn remove_flow(&mut self, from: &Tuple) -> io::Result<bool> {
        self.flows.remove(from)
    }

    /// `from`'s rewrite and when it was last used (see [`XdpFlows::get`]).
    pub fn flow(&self, from: &Tuple) -> io::Result<Option<(Tuple, u64)>> {
        self.flows.get(from)
    }

    /// Lets the program redirect frames out of interface `ifindex`.
    pub fn add_port(&mut self, ifindex: u32) -> io::Result<()> {
        self.tx_ports
            .insert(ifindex, ifindex, None, 0)
            .map_err(|e| error("add an interface to the XDP device map", &e))
    }

    /// Stops redirects out of `ifindex`; false if it was not there.
    pub fn remove_port(&mut self, ifindex: u32) -> io::Result<bool> {
        match self.tx_ports.remove(ifindex) {
            Ok(()) => Ok(true),
            Err(MapError::KeyNotFound) => Ok(false),
            Err(e) if is_enoent(&e) => Ok(false),
            Err(e) => Err(error("remove an interface from the XDP device map", &e)),
        }
    }

    /// One counter, summed over the CPUs.
    pub fn counter(&self, counter: Counter) -> io::Result<u64> {
        self.counters.get(counter)
    }

    /// Every counter, summed over the CPUs, in `Counter::ALL`'s order.
    pub fn counters(&self) -> io::Result<Vec<(Counter, u64)>> {
        self.counters.all()
    }

    /// Runs the program once on `frame` as if it had arrived on `ingress_ifindex` (an interface
    /// in the calling thread's network namespace, queue 0), through `BPF_PROG_TEST_RUN`.
    /// Nothing is sent whatever the verdict; maps and counters change as they would. Only for
    /// a program this process loaded.
    pub fn test_run(&self, frame: &[u8], ingress_ifindex: u32) -> io::Result<TestRunOutcome> {
        let program: &Xdp = self
            .ebpf
            .as_ref()
            .ok_or_else(|| io::Error::other("a test run needs the program loaded here"))?
            .program(PROGRAM)
            .ok_or_else(|| missing("program", PROGRAM))?
            .try_into()
            .map_err(|e| error("open the XDP program", &e))?;
        let len = u32::try_from(frame.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "frame too long"))?;
        // data = 0 (no metadata), data_end = the frame's length, data_meta = 0, the ingress
        // interface, rx queue 0, egress_ifindex = 0 (the kernel refuses any other).
        let mut ctx = [0u8; XDP_MD_LEN];
        ctx[4..8].copy_from_slice(&len.to_ne_bytes());
        ctx[12..16].copy_from_slice(&ingress_ifindex.to_ne_bytes());
        let mut out = vec![0u8; frame.len() + TEST_RUN_SLACK];
        let result = program
            .test_run(TestRunOptions {
                data_in: Some(frame),
                data_out: Some(&mut out),
                ctx_in: Some(&ctx),
                ..TestRunOptions::default()
            })
            .map_err(|e| error("run the XDP program on a test frame", &e))?;
        out.truncate(result.data_size_out as usize);
        Ok(TestRunOutcome {
            action: XdpAction::from(result.return_value),
            frame: out,
        })
    }
}

/// `from` <-> `to` as the two flows of a session seen from the forwarder: datagrams from
/// `client` to `listen` leave from `upstream` to `backend`, and the replies the other way.
pub fn session_flows(
    client: SocketAddrV4,
    listen: SocketAddrV4,
    upstream: SocketAddrV4,
    backend: SocketAddrV4,
) -> [(Tuple, Tuple); 2] {
    [
        (
            Tuple {
                src: client,
                dst: listen,
            },
            Tuple {
                src: upstream,
                dst: backend,
            },
        ),
        (
            Tuple {
                src: backend,
                dst: upstream,
            },
            Tuple {
                src: listen,
                dst: client,
            },
        ),
    ]
}

fn take(ebpf: &mut Ebpf, name: &str) -> io::Result<aya::maps::Map> {
    ebpf.take_map(name).ok_or_else(|| missing("map", name))
}

fn map_data(fd: OwnedFd) -> io::Result<MapData> {
    MapData::from_fd(fd).map_err(|e| error("open an XDP map from its descriptor", &e))
}

fn missing(kind: &str, name: &str) -> io::Error {
    io::Error::other(format!(
        "the embedded XDP object has no {kind} `{name}`: rebuild it with scripts/build-bpf"
    ))
}

fn map_error(name: &'static str) -> impl Fn(MapError) -> io::Error {
    move |e| {
        error(
            &format!("open the XDP map `{name}` (layout.rs out of date?)"),
            &e,
        )
    }
}

fn is_enoent(e: &MapError) -> bool {
    matches!(e, MapError::SyscallError(s) if s.io_error.raw_os_error() == Some(libc::ENOENT))
}

/// An io::Error that says what failed, every cause aya gives, and the fix for the usual one.
fn error(what: &str, e: &(dyn std::error::Error + 'static)) -> io::Error {
    let mut text = format!("could not {what}: {e}");
    let mut source = e.source();
    let mut denied = false;
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        if let Some(io) = cause.downcast_ref::<io::Error>() {
            denied |= io.raw_os_error() == Some(libc::EPERM);
        }
        source = cause.source();
    }
    if denied {
        text.push_str(" (run as root, or grant CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON)");
    }
    io::Error::other(text)
}
