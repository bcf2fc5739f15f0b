//! Checks made before any worker starts: that the Redis settings are accepted, and that the
//! listen address is free (a reuseport group would otherwise silently share it).

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tracing::{info, warn};

use super::StartError;
use crate::route;
use crate::sys::socket;

/// One handshake with Redis before listening: wrong settings stop ringgate here, with a message
/// naming them; an unreachable Redis does not (new clients wait for it, bounded).
pub(super) fn check_redis(settings: &route::redis::Settings) -> Result<(), StartError> {
    use route::redis::preflight::{Preflight, preflight};
    if settings
        .sentinel
        .as_ref()
        .is_some_and(|s| s.places.is_empty())
    {
        return Err(StartError(
            "Redis Sentinel needs at least one sentinel (--redis-sentinel)".into(),
        ));
    }
    let (redis, sentinels) = match &settings.sentinel {
        Some(s) => (
            format!("master {:?}", s.master),
            s.places
                .iter()
                .map(|p| p.addr.to_string())
                .collect::<Vec<_>>()
                .join(","),
        ),
        None => (settings.addr.to_string(), String::new()),
    };
    match preflight(settings, REDIS_PREFLIGHT_TIMEOUT) {
        Ok(addr) => {
            info!(redis = %addr, "Redis answered");
            Ok(())
        }
        Err(Preflight::Refused(why)) => Err(StartError(format!(
            "Redis at {redis} refused ringgate: {why}"
        ))),
        Err(Preflight::Unreachable(why)) if settings.sentinel.is_some() => {
            warn!(%sentinels, error = %crate::logtext::escaped(why.as_bytes(), 200),
                  "no sentinel named a master that answers (REDIS_SENTINEL_ADDRS); starting \
                   anyway: new clients wait for one, and established sessions never need it");
            Ok(())
        }
        Err(Preflight::Unreachable(why)) => {
            warn!(%redis, error = %crate::logtext::escaped(why.as_bytes(), 200),
                  "Redis is not answering; starting anyway: new clients wait for it, and \
                   established sessions never need it");
            Ok(())
        }
    }
}

/// How long the start-up handshake with Redis may take.
const REDIS_PREFLIGHT_TIMEOUT: Duration = Duration::from_secs(2);

/// Makes sure nobody else holds the listen address (a reuseport group would silently share
/// it), and falls back from the dual-stack wildcard to IPv4 on a host without IPv6.
pub(super) fn check_listen(listen: SocketAddr) -> Result<SocketAddr, StartError> {
    if listen.port() == 0 {
        return Ok(listen);
    }
    match socket::probe_bind(listen) {
        Ok(()) => Ok(listen),
        Err(e) if e.raw_os_error() == Some(libc::EAFNOSUPPORT) && listen.ip().is_unspecified() => {
            warn!("IPv6 is not available on this host; listening on IPv4 only");
            let v4 = SocketAddr::from(([0, 0, 0, 0], listen.port()));
            socket::probe_bind(v4)
                .map(|()| v4)
                .map_err(|e| in_use(v4, &e))
        }
        Err(e) => Err(in_use(listen, &e)),
    }
}

fn in_use(listen: SocketAddr, e: &io::Error) -> StartError {
    if e.kind() == io::ErrorKind::AddrInUse {
        StartError(format!(
            "cannot listen on {listen} (--listen/PROXY_ADDR): the address is in use by another \
             process (another ringgate or udp-gate?); stop it, or choose another port"
        ))
    } else {
        StartError(format!(
            "cannot listen on {listen} (--listen/PROXY_ADDR): {e}"
        ))
    }
}
