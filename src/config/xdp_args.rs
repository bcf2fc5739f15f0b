//! The settings of the XDP fast path (`--xdp`, `--xdp-mode`, `--xdp-required`), validated into
//! `xdp::Settings`.

use clap::Args;

use super::origins::Origins;
use crate::xdp::{Mode, Settings};

const HEADING: &str = "XDP fast path (Linux, root or CAP_BPF + CAP_NET_ADMIN)";

/// Linux interface names are at most 15 bytes (`IFNAMSIZ` less its NUL).
const IFNAME_MAX: usize = 15;

#[derive(Debug, Args)]
pub struct XdpArgs {
    /// Forward confirmed IPv4 sessions in the kernel's driver path: attach an XDP program to
    /// these interfaces (the ones client and backend traffic arrive on; comma-separated). Off
    /// by default. Without the privileges, or where it cannot attach, ringgate says why and
    /// forwards on the socket path
    #[arg(
        long = "xdp",
        env = "RINGGATE_XDP",
        value_delimiter = ',',
        value_name = "IFACE",
        help_heading = HEADING
    )]
    pub xdp: Vec<String>,

    /// Where the program runs: native (in the driver), generic (in the stack, any interface),
    /// or auto (native, else generic; the log says which)
    #[arg(long, env = "RINGGATE_XDP_MODE", value_name = "auto|native|generic",
          default_value = "auto", value_parser = ["auto", "native", "generic"],
          help_heading = HEADING)]
    pub xdp_mode: String,

    /// Refuse to start (exit status 1) when the XDP program cannot be loaded or attached,
    /// instead of forwarding on the socket path
    #[arg(long, env = "RINGGATE_XDP_REQUIRED",
          value_parser = clap::builder::BoolishValueParser::new(), help_heading = HEADING)]
    pub xdp_required: bool,
}

impl XdpArgs {
    pub fn settings(&self, origins: &Origins) -> Result<Option<Settings>, String> {
        let mut interfaces: Vec<String> = Vec::new();
        for name in self.xdp.iter().map(|n| n.trim()).filter(|n| !n.is_empty()) {
            let valid = name.len() <= IFNAME_MAX
                && name != "."
                && name != ".."
                && !name.contains(['/', ':'])
                && !name.chars().any(|c| c.is_whitespace() || c.is_control());
            if !valid {
                return Err(format!(
                    "invalid value `{name}` for {}: not an interface name (at most \
                     {IFNAME_MAX} bytes, no '/', ':' or spaces; `ip link` lists them)",
                    origins.name("xdp")
                ));
            }
            if !interfaces.iter().any(|n| n == name) {
                interfaces.push(name.to_owned());
            }
        }
        if interfaces.is_empty() {
            if self.xdp_required {
                return Err(format!(
                    "{} needs {} IFACE: name the interfaces to attach to",
                    origins.name("xdp_required"),
                    origins.name("xdp")
                ));
            }
            return Ok(None);
        }
        let mode = match self.xdp_mode.as_str() {
            "native" => Mode::Native,
            "generic" => Mode::Generic,
            _ => Mode::Auto,
        };
        Ok(Some(Settings {
            interfaces,
            mode,
            required: self.xdp_required,
        }))
    }
}
