//! What a Redis connection says before it serves: the password (kept out of every log), the
//! database, the channels to subscribe to, and, behind Sentinel, the master's name.

use std::fmt;

/// A password that never appears in `Debug` output, logs or errors.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// What a connection authenticates and subscribes with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Handshake {
    pub username: Option<String>,
    pub password: Option<Secret>,
    pub db: i64,
    /// The shared disconnect channel (for a sentinel connection: `+switch-master`).
    pub channel: String,
    /// This instance's own disconnect channel, subscribed besides the shared one.
    pub instance_channel: Option<String>,
    /// Behind Sentinel, the master's name: a sentinel connection asks for its address, and
    /// data connections check that `ROLE` says master before they serve.
    pub master: Option<String>,
}

impl Handshake {
    /// A handshake with no password, database 0 and one channel.
    pub fn plain(channel: &str) -> Handshake {
        Handshake {
            username: None,
            password: None,
            db: 0,
            channel: channel.to_owned(),
            instance_channel: None,
            master: None,
        }
    }
}
