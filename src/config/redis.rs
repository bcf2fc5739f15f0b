//! The Redis settings the command line gives: `REDIS_URL`, or `REDIS_ADDR`, `REDIS_PASSWORD`
//! and `REDIS_DB`, with the key, channel, timeout and allow-list.

use std::time::Duration;

use super::cli::Cli;
use crate::route::redis::Settings as RedisSettings;
use crate::route::redis::conn::{Handshake, Secret};
use crate::route::redis::publish::Publish;
use crate::route::resolve::{Dest, Name, parse_dest};

impl Cli {
    /// The Redis settings these arguments give. Resolves a host name once (start-up only).
    pub(super) fn redis_settings(&self) -> Result<RedisSettings, String> {
        use redis::IntoConnectionInfo;
        use std::net::ToSocketAddrs;
        let (flag, resolved, shown, username, password, db) = match &self.redis_url {
            Some(url) => {
                // The parser's own message is not shown: it could quote the password.
                let bad = || {
                    "invalid value for '--redis-url' (REDIS_URL): not a \
                     redis://[user:pass@]host:port/db URL (TLS and unix sockets are not supported)"
                        .to_owned()
                };
                let info = url.as_str().into_connection_info().map_err(|_| bad())?;
                let redis::ConnectionAddr::Tcp(host, port) = info.addr() else {
                    return Err(bad());
                };
                let settings = info.redis_settings();
                (
                    "--redis-url",
                    (host.as_str(), *port).to_socket_addrs(),
                    format!("{host}:{port}"),
                    settings.username().map(str::to_owned),
                    settings.password().map(str::to_owned),
                    settings.db(),
                )
            }
            None => (
                "--redis-addr",
                self.redis_addr.to_socket_addrs(),
                self.redis_addr.clone(),
                None,
                self.redis_password.clone(),
                self.redis_db,
            ),
        };
        let addr = resolved
            .ok()
            .and_then(|mut addrs| addrs.next())
            .ok_or_else(|| {
                format!("invalid value for '{flag}': cannot resolve `{shown}` to an address")
            })?;
        // A name is resolved again while ringgate runs (a Redis that moves keeps its name).
        let host = match parse_dest(&shown) {
            Some(Dest::Name(name)) => Some(name),
            _ => None::<Name>,
        };
        if self.backend_key.is_empty() || self.disconnect_channel.is_empty() {
            return Err("--backend-key and --disconnect-channel must not be empty".into());
        }
        Ok(RedisSettings {
            addr,
            host,
            handshake: Handshake {
                username,
                password: password.filter(|p| !p.is_empty()).map(Secret),
                db,
                channel: self.disconnect_channel.clone(),
            },
            key: self.backend_key.clone(),
            timeout: Duration::from_millis(self.redis_timeout_ms),
            allow: self.backend_allow.clone(),
            publish: self.publish_sessions.then(|| Publish {
                prefix: self.publish_sessions_prefix.clone(),
                // Twice the idle timeout: a live session's entry is refreshed every timeout.
                ttl: Duration::from_secs(self.idle_timeout.saturating_mul(2)),
            }),
        })
    }
}
