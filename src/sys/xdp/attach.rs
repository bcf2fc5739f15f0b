//! Attaching the loaded program to interfaces. Each attach returns an `XdpAttachment` that
//! detaches on drop: a `bpf_link` (kernel 5.9+: closing its descriptor detaches, from any
//! thread), or on older kernels a netlink attach that aya undoes on drop with a netlink call in
//! the *dropping* thread's network namespace, so drop it where it was made.
//!
//! Interfaces are resolved in the calling thread's network namespace, like the device map: a
//! caller that uses namespaces attaches from a thread inside the right one. Attaching does not
//! let the program redirect out of the interface; `XdpForward::add_port` does that.

use std::io;

use aya::programs::{Xdp, XdpMode as AyaMode, xdp::XdpLink};

use super::{PROGRAM, XdpForward, error, missing};

/// Where the program runs on an interface.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum XdpMode {
    /// In the driver, before an skb exists (`XDP_FLAGS_DRV_MODE`). The fast one; the driver
    /// must support it, and a redirect *to* an interface needs its `ndo_xdp_xmit` (for a veth:
    /// NAPI on the peer, i.e. an XDP program or GRO there).
    Native,
    /// In the stack, on an skb (`XDP_FLAGS_SKB_MODE`). Works on any interface; slower.
    Generic,
}

impl XdpMode {
    fn aya(self) -> AyaMode {
        match self {
            XdpMode::Native => AyaMode::Driver,
            XdpMode::Generic => AyaMode::Skb,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            XdpMode::Native => "native",
            XdpMode::Generic => "generic",
        }
    }
}

/// An interface by name or by index, in the calling thread's network namespace.
#[derive(Clone, Copy, Debug)]
pub enum Interface<'a> {
    Name(&'a str),
    Index(u32),
}

impl<'a> From<&'a str> for Interface<'a> {
    fn from(name: &'a str) -> Self {
        Interface::Name(name)
    }
}

impl From<u32> for Interface<'_> {
    fn from(index: u32) -> Self {
        Interface::Index(index)
    }
}

impl std::fmt::Display for Interface<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Interface::Name(name) => f.write_str(name),
            Interface::Index(index) => write!(f, "ifindex {index}"),
        }
    }
}

/// The program attached to one interface; detached when dropped (see the module's note on
/// netlink attaches). It does not borrow the `XdpForward`: the kernel keeps the program alive
/// while it is attached, even after the `XdpForward` (and its maps' handles) are gone.
#[must_use = "dropping the attachment detaches the program"]
pub struct XdpAttachment {
    link: Option<XdpLink>,
    interface: String,
    mode: XdpMode,
}

impl XdpAttachment {
    pub fn mode(&self) -> XdpMode {
        self.mode
    }

    /// The interface as it was named to `attach`.
    pub fn interface(&self) -> &str {
        &self.interface
    }

    /// Detaches now, reporting a failure that drop would swallow.
    pub fn detach(mut self) -> io::Result<()> {
        use aya::programs::Link as _;
        match self.link.take() {
            Some(link) => link
                .detach()
                .map_err(|e| error(&format!("detach XDP from {}", self.interface), &e)),
            None => Ok(()),
        }
    }
}

impl std::fmt::Debug for XdpAttachment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XdpAttachment")
            .field("interface", &self.interface)
            .field("mode", &self.mode)
            .finish()
    }
}

impl XdpForward {
    /// Attaches the program to `interface` in `mode`. Fails if the interface does not exist, if
    /// the mode is not supported there (native on a driver without XDP), or if a program is
    /// already attached there in another mode or by someone else.
    pub fn attach<'a>(
        &mut self,
        interface: impl Into<Interface<'a>>,
        mode: XdpMode,
    ) -> io::Result<XdpAttachment> {
        let interface = interface.into();
        let program: &mut Xdp = self
            .ebpf
            .program_mut(PROGRAM)
            .ok_or_else(|| missing("program", PROGRAM))?
            .try_into()
            .map_err(|e| error("open the XDP program", &e))?;
        let what = || format!("attach XDP to {interface} in {} mode", mode.name());
        let id = match interface {
            Interface::Name(name) => program.attach(name, mode.aya()),
            Interface::Index(index) => program.attach_to_if_index(index, mode.aya()),
        }
        .map_err(|e| error(&what(), &e))?;
        let link = program.take_link(id).map_err(|e| error(&what(), &e))?;
        Ok(XdpAttachment {
            link: Some(link),
            interface: interface.to_string(),
            mode,
        })
    }

    /// Attaches natively if the interface allows it, else in generic mode; the attachment says
    /// which. The native failure is dropped: a caller that must know why attaches explicitly.
    pub fn attach_native_or_generic<'a>(
        &mut self,
        interface: impl Into<Interface<'a>>,
    ) -> io::Result<XdpAttachment> {
        let interface = interface.into();
        self.attach(interface, XdpMode::Native)
            .or_else(|_| self.attach(interface, XdpMode::Generic))
    }
}
