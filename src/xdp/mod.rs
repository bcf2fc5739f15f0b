//! The XDP fast path as the process runs it: load the program (or take over the one a previous
//! process attached), attach it to the interfaces `--xdp` names, and hand out what the rest of
//! ringgate needs of it: a flow map handle per worker (`worker::offload` puts confirmed
//! sessions there), the counters for `/metrics`, and the descriptors a takeover passes on.
//!
//! All or nothing: if the program cannot be loaded, an interface cannot take it, or an
//! interface does not forward IPv4 (the program's route lookup would then pass every
//! datagram), nothing stays attached and ringgate forwards on the socket path, having said why
//! once; `--xdp-required` makes that fatal instead. The program is detached when the last
//! descriptor of its links closes: at exit, or when the successor of a takeover lets go.

mod handover;

use std::io;

use tracing::{info, warn};

use crate::sys::xdp::{
    Counter, Interface, XdpAttachment, XdpCounters, XdpFlows, XdpForward, XdpMode,
};

pub use handover::{Attached, Export, Inherited, PARTS_MAX};

/// `--xdp-mode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Native, else generic.
    Auto,
    Native,
    Generic,
}

/// `--xdp`, `--xdp-mode`, `--xdp-required`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// In the order given, without repeats.
    pub interfaces: Vec<String>,
    pub mode: Mode,
    pub required: bool,
}

/// What [`start`] started: the fast path if it runs, the state `/metrics` reports, and what
/// the workers and `/metrics` read of it.
pub struct Started {
    pub fast_path: Option<FastPath>,
    pub state: &'static str,
    pub status: Option<Status>,
}

/// Starts the fast path if `--xdp` asks for it (`settings`), from what a takeover inherited if
/// anything, a new flow map made for `flows_max` entries. Where it cannot start, ringgate says
/// why once and forwards on the socket path; the error (with `--xdp-required`) says why it may
/// not.
pub fn start(
    settings: Option<&Settings>,
    flows_max: u32,
    inherited: Option<Inherited>,
) -> Result<Started, String> {
    let off = |state| Started {
        fast_path: None,
        state,
        status: None,
    };
    let Some(settings) = settings else {
        if inherited.is_some() {
            info!("the previous process's XDP fast path detaches when it exits (no --xdp here)");
        }
        return Ok(off("off"));
    };
    let started = FastPath::start(settings, flows_max, inherited).and_then(|fast_path| {
        let status = fast_path
            .status()
            .map_err(|e| format!("cannot open the XDP maps: {e}"))?;
        Ok(Started {
            fast_path: Some(fast_path),
            state: "attached",
            status: Some(status),
        })
    });
    match started {
        Ok(started) => Ok(started),
        Err(why) if settings.required => Err(format!(
            "cannot start the XDP fast path (--xdp-required): {why}"
        )),
        Err(why) => {
            warn!(
                "cannot start the XDP fast path: {why}; forwarding every datagram on the socket \
                 path (--xdp-required makes this fatal)"
            );
            Ok(off("socket_path"))
        }
    }
}

/// Entries the flow map is made with at most: two per session; 2^20 entries take about 100 MiB
/// of kernel memory (the map is preallocated). Sessions beyond it stay on the socket path,
/// counted as `ringgate_xdp_offloads_total{result="map_full"}`.
pub const FLOWS_MAX: u32 = 1 << 20;

/// The fast path, loaded and attached.
pub struct FastPath {
    forward: XdpForward,
    attachments: Vec<XdpAttachment>,
}

/// What the rest of the process reads of the fast path: its counters and where it is attached
/// (`/metrics`), and the flow map each worker takes a handle of its own on.
pub struct Status {
    pub counters: XdpCounters,
    pub flows: XdpFlows,
    /// Interface and mode, one per attachment.
    pub attached: Vec<(String, &'static str)>,
    /// Entries the flow map holds at most.
    pub capacity: u32,
}

impl std::fmt::Debug for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Status")
            .field("attached", &self.attached)
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

impl Status {
    /// The program's counters as `/metrics` labels them: (action, reason, value).
    pub fn packets(&self) -> io::Result<Vec<(&'static str, &'static str, u64)>> {
        Ok(self
            .counters
            .all()?
            .into_iter()
            .map(|(c, n)| {
                let (action, reason) = labels(c);
                (action, reason, n)
            })
            .collect())
    }
}

/// `ringgate_xdp_packets_total`'s labels for one of the program's counters.
pub fn labels(counter: Counter) -> (&'static str, &'static str) {
    match counter {
        Counter::ForwardedTx => ("forwarded", "tx"),
        Counter::ForwardedRedirect => ("forwarded", "redirect"),
        Counter::PassNotIpv4 => ("passed", "not_ipv4"),
        Counter::PassNotUdp => ("passed", "not_udp"),
        Counter::PassIpOptions => ("passed", "ip_options"),
        Counter::PassFragment => ("passed", "fragment"),
        Counter::PassMalformed => ("passed", "malformed"),
        Counter::PassMiss => ("passed", "miss"),
        Counter::PassTtl => ("passed", "ttl"),
        Counter::PassFib => ("passed", "no_route"),
        Counter::PassNoEgress => ("passed", "no_egress"),
        Counter::DropRedirect => ("dropped", "redirect"),
    }
}

impl FastPath {
    /// Loads the program (or rebuilds the one `inherited` carries) and attaches it as
    /// `settings` say. `flows_max` sizes a newly made flow map. The error says why, naming the
    /// interface and the fix where there is one.
    pub fn start(
        settings: &Settings,
        flows_max: u32,
        inherited: Option<Inherited>,
    ) -> Result<FastPath, String> {
        for name in &settings.interfaces {
            check_forwarding(name)?;
        }
        let (mut forward, mut kept) = match inherited {
            Some(inherited) => {
                let (forward, attached) = inherited.rebuild()?;
                (forward, attached)
            }
            None => (
                XdpForward::load(flows_max.clamp(2, FLOWS_MAX)).map_err(|e| e.to_string())?,
                Vec::new(),
            ),
        };
        let mut attachments = Vec::with_capacity(settings.interfaces.len());
        for name in &settings.interfaces {
            let index = Interface::Name(name).index().map_err(|e| e.to_string())?;
            // The previous process's attachment, if it is still the same interface.
            if let Some(at) = kept
                .iter()
                .position(|a| a.interface() == name && a.ifindex() == index)
            {
                let attachment = kept.swap_remove(at);
                info!(
                    interface = %name,
                    mode = attachment.mode().name(),
                    "XDP fast path taken over"
                );
                attachments.push(attachment);
                continue;
            }
            let attachment = match settings.mode {
                Mode::Native => forward.attach(name.as_str(), XdpMode::Native),
                Mode::Generic => forward.attach(name.as_str(), XdpMode::Generic),
                Mode::Auto => forward
                    .attach(name.as_str(), XdpMode::Native)
                    .or_else(|_| forward.attach(name.as_str(), XdpMode::Generic)),
            }
            .map_err(|e| e.to_string())?;
            info!(interface = %name, mode = attachment.mode().name(), "XDP fast path attached");
            attachments.push(attachment);
        }
        for a in &attachments {
            forward
                .add_port(a.ifindex())
                .map_err(|e| format!("{e} ({})", a.interface()))?;
        }
        // Attachments of the previous process this one does not keep: they detach when it
        // exits.
        drop(kept);
        Ok(FastPath {
            forward,
            attachments,
        })
    }

    /// What `/metrics` reads.
    pub fn status(&self) -> io::Result<Status> {
        let counters = self.forward.counters_handle()?;
        let flows = self.forward.flows_handle()?;
        let capacity = flows.capacity();
        Ok(Status {
            counters,
            flows,
            attached: self
                .attachments
                .iter()
                .map(|a| (a.interface().to_owned(), a.mode().name()))
                .collect(),
            capacity,
        })
    }

    /// Copies of every descriptor a successor needs, with what each attachment is; `None`
    /// (said once) if they cannot be copied, and a takeover then leaves the fast path behind.
    pub fn export(&self) -> Option<Export> {
        Export::of(&self.forward, &self.attachments)
            .map_err(|e| warn!(error = %e, "a takeover will not carry the XDP fast path over"))
            .ok()
    }

    pub fn attachments(&self) -> &[XdpAttachment] {
        &self.attachments
    }
}

/// Refuses an interface that does not forward IPv4: the program asks the kernel's forwarding
/// table where a rewritten datagram goes, and that lookup fails on such an interface.
fn check_forwarding(name: &str) -> Result<(), String> {
    let path = format!("/proc/sys/net/ipv4/conf/{name}/forwarding");
    match std::fs::read_to_string(&path) {
        Ok(v) if v.trim() == "1" => Ok(()),
        Ok(_) => Err(format!(
            "net.ipv4.conf.{name}.forwarding is 0: the XDP program's route lookup would pass every \
             datagram; turn it on (`sysctl -w net.ipv4.conf.{name}.forwarding=1`, and \
             net.ipv4.conf.all.forwarding for the replies' interface) or leave {name} out of --xdp"
        )),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(format!(
            "no interface named {name} (--xdp): `ip link` lists them"
        )),
        Err(e) => Err(format!("cannot read {path}: {e}")),
    }
}
