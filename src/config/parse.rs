//! Values the command line takes that clap cannot parse alone: CPU lists, powers of two,
//! rates, and the ring's task-run modes by name.

use std::net::{Ipv6Addr, SocketAddr, ToSocketAddrs};

use clap::ValueEnum;
use clap::builder::PossibleValue;

use crate::admission::rate::{self, RateLimit};
use crate::route::resolve::{Dest, parse_dest};
use crate::sys::uring::BUFFERS_MAX;
use crate::sys::uring::TaskRun;

/// The listen address in any form udp-gate (Go's `net.ListenUDP`) takes. All interfaces
/// (`:PORT`, `0.0.0.0:PORT`, `[::]:PORT`) is `[::]:PORT`, which ringgate binds dual-stack, as
/// Go does, so IPv6 players are not silently left out; a host name is resolved now, once, to
/// its first address (IPv4 first, as Go prefers).
pub fn parse_listen(text: &str) -> Result<SocketAddr, String> {
    const FORMS: &str = "expected HOST:PORT, e.g. `:19132` (all interfaces, IPv4 and IPv6), \
                         `0.0.0.0:19132`, `127.0.0.1:19132`, `[::1]:19132` or `localhost:19132`";
    let text = text.trim();
    let all = |port: &str| -> Result<SocketAddr, String> {
        let port = port.parse::<u16>().map_err(|_| FORMS.to_owned())?;
        Ok(SocketAddr::from((Ipv6Addr::UNSPECIFIED, port)))
    };
    if let Some(port) = text.strip_prefix(':') {
        return all(port);
    }
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return if addr.ip().is_unspecified() {
            all(&addr.port().to_string())
        } else {
            Ok(addr)
        };
    }
    let (host, port) = text.rsplit_once(':').ok_or_else(|| FORMS.to_owned())?;
    if host.is_empty() || port.parse::<u16>().is_err() || host.contains(':') {
        return Err(FORMS.to_owned());
    }
    let addrs: Vec<SocketAddr> = text
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve `{host}`: {e}"))?
        .collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .copied()
        .ok_or_else(|| format!("`{host}` has no address"))
}

/// A static backend: `IP:PORT`, or `HOST:PORT` resolved while ringgate runs.
pub fn parse_backend(text: &str) -> Result<Dest, String> {
    parse_dest(text).ok_or_else(|| {
        format!(
            "`{text}` is not IP:PORT or HOST:PORT, e.g. `10.0.0.5:19132`, `[fd00::5]:19132` or \
             `waterdog-1:19132`"
        )
    })
}

/// A list of CPU ids, as written `0-3,6`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CpuList(pub Vec<usize>);

pub(super) fn parse_cpu_list(text: &str) -> Result<CpuList, String> {
    let mut cpus = Vec::new();
    for part in text.split(',').map(str::trim) {
        let (lo, hi) = part.split_once('-').unwrap_or((part, part));
        let parse = |s: &str| {
            s.trim()
                .parse::<usize>()
                .map_err(|_| format!("`{part}` is not a CPU number or range like 0-3"))
        };
        let (lo, hi) = (parse(lo)?, parse(hi)?);
        if lo > hi || hi >= 4096 {
            return Err(format!("`{part}` is not a valid CPU range"));
        }
        cpus.extend(lo..=hi);
    }
    Ok(CpuList(cpus))
}

fn parse_power_of_two(text: &str, min: u32, max: u32) -> Result<u32, String> {
    let n: u32 = text
        .parse()
        .map_err(|_| format!("`{text}` is not a number"))?;
    if !n.is_power_of_two() || n < min || n > max {
        return Err(format!("must be a power of two from {min} to {max}"));
    }
    Ok(n)
}

/// `RATE[/BURST]`; `0` is no limit. A value parser yields the field's inner type, so "no
/// limit" travels as a limit of zero and becomes `None` in [`Cli::into_config`].
pub(super) fn parse_rate(text: &str) -> Result<RateLimit, String> {
    Ok(rate::parse(text)?.unwrap_or(RateLimit {
        per_sec: 0.0,
        burst: 0.0,
    }))
}

pub(super) fn parse_buffers(text: &str) -> Result<u32, String> {
    parse_power_of_two(text, 2, BUFFERS_MAX)
}

pub(super) fn parse_ring_entries(text: &str) -> Result<u32, String> {
    parse_power_of_two(text, 8, 32_768)
}

/// `--task-run` names the ring's modes; the wall's type knows nothing of clap.
impl ValueEnum for TaskRun {
    fn value_variants<'a>() -> &'a [Self] {
        &TaskRun::ALL
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        Some(PossibleValue::new(self.name()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_forms_are_go_s() {
        let all = |port: u16| SocketAddr::from((Ipv6Addr::UNSPECIFIED, port));
        assert_eq!(parse_listen(":19132"), Ok(all(19132)));
        assert_eq!(parse_listen("0.0.0.0:19132"), Ok(all(19132)));
        assert_eq!(parse_listen("[::]:19132"), Ok(all(19132)));
        assert_eq!(
            parse_listen("127.0.0.1:5"),
            Ok("127.0.0.1:5".parse().unwrap())
        );
        assert_eq!(parse_listen("[::1]:5"), Ok("[::1]:5".parse().unwrap()));
        assert_eq!(
            parse_listen("localhost:5"),
            Ok("127.0.0.1:5".parse().unwrap()),
            "IPv4 first, as Go"
        );
        for bad in ["19132", ":", ":99999", "host:", "a:b:c", "", "[::1]"] {
            let err = parse_listen(bad).unwrap_err();
            assert!(err.contains(":19132"), "{bad}: {err}");
        }
    }
}
