//! Attaching the loaded program to interfaces, as `bpf_link`s ringgate owns as plain
//! descriptors (`BPF_LINK_CREATE`, kernel 5.9+): closing the last descriptor of a link detaches
//! the program, from any thread and also when the process dies, and a link's descriptor can be
//! handed to another process (a takeover) like any other. aya's own attach would keep the link
//! inside its program object, with no way to hand it over; the one raw `bpf(2)` call here is
//! the price of that.
//!
//! Interfaces are resolved in the calling thread's network namespace, like the device map: a
//! caller that uses namespaces attaches from a thread inside the right one. Attaching does not
//! let the program redirect out of the interface; `XdpForward::add_port` does that.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use super::XdpForward;

/// `BPF_LINK_CREATE` in `enum bpf_cmd`, and `BPF_XDP` in `enum bpf_attach_type` (uapi
/// `linux/bpf.h`).
const BPF_LINK_CREATE: libc::c_long = 28;
const BPF_XDP: u32 = 37;
/// `XDP_FLAGS_SKB_MODE` and `XDP_FLAGS_DRV_MODE` (uapi `linux/if_link.h`).
const XDP_FLAGS_SKB_MODE: u32 = 2;
const XDP_FLAGS_DRV_MODE: u32 = 4;

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
    fn flags(self) -> u32 {
        match self {
            XdpMode::Native => XDP_FLAGS_DRV_MODE,
            XdpMode::Generic => XDP_FLAGS_SKB_MODE,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            XdpMode::Native => "native",
            XdpMode::Generic => "generic",
        }
    }

    /// The mode `name` names (as [`XdpMode::name`] writes it).
    pub fn from_name(name: &str) -> Option<XdpMode> {
        match name {
            "native" => Some(XdpMode::Native),
            "generic" => Some(XdpMode::Generic),
            _ => None,
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

impl Interface<'_> {
    /// The interface's index in the calling thread's network namespace.
    pub fn index(self) -> io::Result<u32> {
        match self {
            Interface::Index(index) => Ok(index),
            Interface::Name(name) => {
                let c = CString::new(name).map_err(|_| {
                    io::Error::new(io::ErrorKind::InvalidInput, "interface name with a NUL")
                })?;
                // SAFETY: `c` is a NUL-terminated string that outlives the call; the function
                // only reads it.
                let index = unsafe { libc::if_nametoindex(c.as_ptr()) };
                if index == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::NotFound,
                        format!("no interface named {name}: {}", io::Error::last_os_error()),
                    ));
                }
                Ok(index)
            }
        }
    }
}

/// The program attached to one interface; detached when its descriptor (and every copy of it,
/// such as one handed to a successor) is closed. It does not borrow the `XdpForward`: the
/// kernel keeps the program alive while it is attached.
#[must_use = "dropping the attachment detaches the program"]
pub struct XdpAttachment {
    link: OwnedFd,
    interface: String,
    ifindex: u32,
    mode: XdpMode,
}

impl XdpAttachment {
    /// An attachment whose link descriptor came from elsewhere (a takeover), as it was
    /// described there.
    pub fn from_fd(link: OwnedFd, interface: String, ifindex: u32, mode: XdpMode) -> Self {
        XdpAttachment {
            link,
            interface,
            ifindex,
            mode,
        }
    }

    pub fn mode(&self) -> XdpMode {
        self.mode
    }

    /// The interface as it was named to `attach`.
    pub fn interface(&self) -> &str {
        &self.interface
    }

    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// Detaches now (unless another process holds a copy of the link).
    pub fn detach(self) {
        drop(self.link);
    }
}

impl AsFd for XdpAttachment {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.link.as_fd()
    }
}

impl std::fmt::Debug for XdpAttachment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XdpAttachment")
            .field("interface", &self.interface)
            .field("ifindex", &self.ifindex)
            .field("mode", &self.mode)
            .finish()
    }
}

/// The `link_create` member of `union bpf_attr`, as far as an XDP link uses it; the kernel
/// takes a shorter attribute than its own and reads the rest as zero.
#[repr(C)]
#[derive(Default)]
struct LinkCreate {
    prog_fd: u32,
    target_ifindex: u32,
    attach_type: u32,
    flags: u32,
    /// The union that follows (`target_btf_id`, `iter_info`, ...): zero for XDP.
    rest: [u64; 4],
}

impl XdpForward {
    /// Attaches the program to `interface` in `mode`. Fails if the interface does not exist, if
    /// the mode is not supported there (native on a driver without XDP), or if a program is
    /// already attached there (by another process, or an earlier attach not yet dropped).
    pub fn attach<'a>(
        &mut self,
        interface: impl Into<Interface<'a>>,
        mode: XdpMode,
    ) -> io::Result<XdpAttachment> {
        let interface = interface.into();
        let what = || format!("attach XDP to {interface} in {} mode", mode.name());
        let ifindex = interface
            .index()
            .map_err(|e| io::Error::new(e.kind(), format!("could not {}: {e}", what())))?;
        let attr = LinkCreate {
            prog_fd: self.program.as_raw_fd() as u32,
            target_ifindex: ifindex,
            attach_type: BPF_XDP,
            flags: mode.flags(),
            ..LinkCreate::default()
        };
        // SAFETY: `attr` is a properly initialised `link_create` attribute that lives across
        // the call, and its size is passed with it; the kernel reads at most that many bytes
        // and writes nothing back. The result is a new descriptor (owned below) or -1.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_LINK_CREATE,
                &attr as *const LinkCreate,
                std::mem::size_of::<LinkCreate>() as libc::c_uint,
            )
        };
        if fd < 0 {
            let e = io::Error::last_os_error();
            let hint = match e.raw_os_error() {
                Some(libc::EPERM) => " (run as root, or grant CAP_BPF and CAP_NET_ADMIN)",
                Some(libc::EBUSY | libc::EEXIST) => {
                    " (another XDP program is attached there: `ip link show` names it)"
                }
                Some(libc::EOPNOTSUPP | libc::EINVAL) if mode == XdpMode::Native => {
                    " (the driver has no native XDP: use generic mode)"
                }
                _ => "",
            };
            return Err(io::Error::new(
                e.kind(),
                format!("could not {}: {e}{hint}", what()),
            ));
        }
        // SAFETY: the kernel returned a new descriptor that nothing else owns.
        let link = unsafe { OwnedFd::from_raw_fd(fd as libc::c_int) };
        Ok(XdpAttachment {
            link,
            interface: interface.to_string(),
            ifindex,
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
