//! The fast path across a takeover: the old process hands its program, maps and links to the
//! new one as descriptors, each named by a label (`program`, `flows`, `tx_ports`, `counters`,
//! `link IFINDEX MODE NAME`), and the new one rebuilds them. Nothing is detached or emptied on
//! the way: a link stays attached while either process holds it, so the program keeps
//! forwarding through the takeover and the new process finds every entry in place.

use std::collections::HashMap;
use std::os::fd::{AsFd, OwnedFd};

use crate::sys::xdp::{XdpAttachment, XdpFds, XdpForward, XdpMode};

/// The most descriptors a fast path hands over: four for the program and maps, and one link
/// per interface (the program's device map holds 64).
pub const PARTS_MAX: usize = 4 + 64;

/// What the old process sends: copies of its descriptors, labelled.
pub struct Export {
    pub parts: Vec<(String, OwnedFd)>,
}

/// What the new process received, before it is rebuilt.
#[derive(Default)]
pub struct Inherited {
    parts: Vec<(String, OwnedFd)>,
}

/// An attachment as the old process described it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attached {
    pub ifindex: u32,
    pub mode: XdpMode,
    pub interface: String,
}

impl Attached {
    fn label(&self) -> String {
        format!(
            "link {} {} {}",
            self.ifindex,
            self.mode.name(),
            self.interface
        )
    }

    fn parse(label: &str) -> Option<Attached> {
        let mut words = label.strip_prefix("link ")?.splitn(3, ' ');
        let ifindex = words.next()?.parse().ok()?;
        let mode = XdpMode::from_name(words.next()?)?;
        let interface = words.next()?.to_owned();
        Some(Attached {
            ifindex,
            mode,
            interface,
        })
    }
}

impl Export {
    pub(super) fn of(
        forward: &XdpForward,
        attachments: &[XdpAttachment],
    ) -> std::io::Result<Export> {
        let fds = forward.fds()?;
        let mut parts = vec![
            ("program".to_owned(), fds.program),
            ("flows".to_owned(), fds.flows),
            ("tx_ports".to_owned(), fds.tx_ports),
            ("counters".to_owned(), fds.counters),
        ];
        for a in attachments {
            let label = Attached {
                ifindex: a.ifindex(),
                mode: a.mode(),
                interface: a.interface().to_owned(),
            }
            .label();
            parts.push((label, a.as_fd().try_clone_to_owned()?));
        }
        Ok(Export { parts })
    }
}

impl Inherited {
    /// Takes one labelled descriptor; a label with a space, or too many, is refused.
    pub fn push(&mut self, label: &str, fd: OwnedFd) -> Result<(), String> {
        if self.parts.len() >= PARTS_MAX {
            return Err("too many XDP descriptors".into());
        }
        self.parts.push((label.to_owned(), fd));
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.parts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.parts.is_empty()
    }

    /// The program, maps and attachments these descriptors are.
    pub(super) fn rebuild(self) -> Result<(XdpForward, Vec<XdpAttachment>), String> {
        let mut named: HashMap<&'static str, OwnedFd> = HashMap::new();
        let mut attachments = Vec::new();
        for (label, fd) in self.parts {
            let known = ["program", "flows", "tx_ports", "counters"]
                .into_iter()
                .find(|k| *k == label);
            match (known, Attached::parse(&label)) {
                (Some(k), _) => {
                    named.insert(k, fd);
                }
                (None, Some(a)) => {
                    attachments.push(XdpAttachment::from_fd(fd, a.interface, a.ifindex, a.mode));
                }
                (None, None) => return Err(format!("unknown XDP descriptor {label:?}")),
            }
        }
        let mut take = |k: &str| {
            named
                .remove(k)
                .ok_or_else(|| format!("the previous process's XDP {k} did not arrive"))
        };
        let fds = XdpFds {
            program: take("program")?,
            flows: take("flows")?,
            tx_ports: take("tx_ports")?,
            counters: take("counters")?,
        };
        let forward = XdpForward::from_fds(fds)
            .map_err(|e| format!("cannot use the previous process's XDP maps: {e}"))?;
        Ok((forward, attachments))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_label_reads_back() {
        let a = Attached {
            ifindex: 7,
            mode: XdpMode::Generic,
            interface: "eth0".into(),
        };
        assert_eq!(a.label(), "link 7 generic eth0");
        assert_eq!(Attached::parse(&a.label()), Some(a));
        assert_eq!(Attached::parse("link x generic eth0"), None);
        assert_eq!(Attached::parse("link 7 turbo eth0"), None);
        assert_eq!(Attached::parse("link 7 native"), None);
    }
}
