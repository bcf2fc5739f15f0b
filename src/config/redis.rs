//! The Redis settings the command line gives: `REDIS_URL`, or `REDIS_ADDR`, `REDIS_PASSWORD`
//! (or `REDIS_PASSWORD_FILE`) and `REDIS_DB`, or the sentinels to ask; with the key, channels,
//! timeout, allow-list and this instance's name in the fleet.

use std::time::Duration;

use super::cli::Cli;
use crate::route::redis::Settings as RedisSettings;
use crate::route::redis::conn::{Handshake, Secret};
use crate::route::redis::publish::Publish;
use crate::route::redis::sentinel::{Place, SWITCH_CHANNEL, Sentinels};
use crate::route::resolve::{Dest, Name, parse_dest};

impl Cli {
    /// The Redis settings these arguments give. Resolves a host name once (start-up only).
    pub(super) fn redis_settings(&self) -> Result<RedisSettings, String> {
        use redis::IntoConnectionInfo;
        use std::net::ToSocketAddrs;
        let (flag, resolved, shown, username, password, db) = match &self.redis.redis_url {
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
                self.redis.redis_addr.to_socket_addrs(),
                self.redis.redis_addr.clone(),
                None,
                self.redis.redis_password.clone(),
                self.redis.redis_db,
            ),
        };
        let password = match (password, self.password_file("redis_password_file")?) {
            (Some(_), Some(_)) => {
                return Err(format!(
                    "{} and a password in REDIS_URL both give the password: keep one",
                    self.origins.name("redis_password_file")
                ));
            }
            (given, from_file) => given.or(from_file),
        };
        let sentinel = self.sentinels()?;
        // Behind Sentinel, REDIS_ADDR is not used: it need not resolve.
        let addr = match resolved.ok().and_then(|mut addrs| addrs.next()) {
            Some(addr) => addr,
            None if sentinel.is_some() => std::net::SocketAddr::from(([127, 0, 0, 1], 6379)),
            None => {
                return Err(format!(
                    "invalid value for '{flag}': cannot resolve `{shown}` to an address"
                ));
            }
        };
        let instance = match &self.redis.instance_id {
            Some(id) => id.clone(),
            None => host_name(),
        };
        if instance.is_empty()
            || instance.len() > 64
            || !instance
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        {
            return Err(format!(
                "invalid value `{}` for {}: 1 to 64 letters, digits, '.', '_' or '-' \
                 (the default is the host name; set it when the host name does not fit)",
                crate::logtext::escaped(instance.as_bytes(), 80),
                self.origins.name("instance_id")
            ));
        }
        // A name is resolved again while ringgate runs (a Redis that moves keeps its name).
        let host = match parse_dest(&shown) {
            Some(Dest::Name(name)) => Some(name),
            _ => None::<Name>,
        };
        if self.redis.backend_key.is_empty() || self.redis.disconnect_channel.is_empty() {
            return Err("--backend-key and --disconnect-channel must not be empty".into());
        }
        Ok(RedisSettings {
            addr,
            host,
            handshake: Handshake {
                username,
                password: password.filter(|p| !p.is_empty()).map(Secret),
                db,
                channel: self.redis.disconnect_channel.clone(),
                instance_channel: Some(format!("{}:{instance}", self.redis.disconnect_channel)),
                master: sentinel.as_ref().map(|s| s.master.clone()),
            },
            key: self.redis.backend_key.clone(),
            timeout: Duration::from_millis(self.redis.redis_timeout_ms),
            allow: self.redis.backend_allow.clone(),
            publish: self.publish_sessions.then(|| Publish {
                prefix: self.publish_sessions_prefix.clone(),
                // Twice the idle timeout: a live session's entry is refreshed every timeout.
                ttl: Duration::from_secs(self.idle_timeout.saturating_mul(2)),
            }),
            sentinel,
            bare_ports: self.redis.disconnect_bare_ports,
            instance,
        })
    }

    /// The sentinels, if `--redis-sentinel` names any; each resolved once here.
    fn sentinels(&self) -> Result<Option<Sentinels>, String> {
        use std::net::ToSocketAddrs;
        if self
            .redis
            .redis_sentinel
            .iter()
            .all(|s| s.trim().is_empty())
        {
            return Ok(None);
        }
        if self.redis.redis_url.is_some() {
            return Err(format!(
                "{} and {} both say where Redis is: with sentinels, give the password with \
                 REDIS_PASSWORD and the database with REDIS_DB",
                self.origins.name("redis_sentinel"),
                self.origins.name("redis_url")
            ));
        }
        let flag = self.origins.name("redis_sentinel");
        let mut places = Vec::new();
        for text in self
            .redis
            .redis_sentinel
            .iter()
            .map(|s| s.trim())
            .filter(|s| !s.is_empty())
        {
            let addr = text
                .to_socket_addrs()
                .ok()
                .and_then(|mut a| a.next())
                .ok_or_else(|| {
                    format!("invalid value `{text}` for {flag}: cannot resolve it to an address")
                })?;
            let host = match parse_dest(text) {
                Some(Dest::Name(name)) => Some(name),
                _ => None,
            };
            places.push(Place { addr, host });
        }
        if places.len() > 16 {
            return Err(format!("{flag}: at most 16 sentinels"));
        }
        let password = match &self.redis.redis_sentinel_password {
            Some(p) => Some(p.clone()),
            None => self.password_file("redis_sentinel_password_file")?,
        };
        Ok(Some(Sentinels {
            places,
            master: self.redis.redis_sentinel_master.clone(),
            handshake: Handshake {
                username: None,
                password: password.filter(|p| !p.is_empty()).map(Secret),
                db: 0,
                channel: SWITCH_CHANNEL.to_owned(),
                instance_channel: None,
                master: Some(self.redis.redis_sentinel_master.clone()),
            },
        }))
    }

    /// The password in the file `field` names, if it names one: the whole file less one line
    /// end. A relative path is taken in `$CREDENTIALS_DIRECTORY` when systemd sets it
    /// (`LoadCredential=`).
    fn password_file(&self, field: &str) -> Result<Option<String>, String> {
        let path = match field {
            "redis_password_file" => &self.redis.redis_password_file,
            _ => &self.redis.redis_sentinel_password_file,
        };
        let Some(path) = path else {
            return Ok(None);
        };
        let path = match std::env::var_os("CREDENTIALS_DIRECTORY") {
            Some(dir) if path.is_relative() => std::path::Path::new(&dir).join(path),
            _ => path.clone(),
        };
        let flag = self.origins.name(field);
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("cannot read {flag} {}: {e}", path.display()))?;
        let password = text
            .strip_suffix('\n')
            .map(|t| t.strip_suffix('\r').unwrap_or(t))
            .unwrap_or(&text);
        if password.is_empty() {
            return Err(format!("{flag} {} is empty", path.display()));
        }
        Ok(Some(password.to_owned()))
    }
}

/// The host name, the default instance id.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_default()
}
