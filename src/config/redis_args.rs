//! The settings of Redis routing: where Redis is (an address, a URL, or the sentinels), how to
//! log in, the key and channels, the lookup timeout, the allow-list, and this instance's name
//! in a fleet. `config::redis` turns them into the routers' settings.

use clap::Args;

const HEADING: &str = "Redis routing (used when no --backend is given)";

#[derive(Debug, Args)]
pub struct RedisArgs {
    /// Redis server, host:port (resolved once at start-up)
    #[arg(
        long,
        env = "REDIS_ADDR",
        value_name = "HOST:PORT",
        default_value = "127.0.0.1:6379",
        help_heading = HEADING
    )]
    pub redis_addr: String,

    /// Redis password (AUTH); never logged
    #[arg(
        long,
        env = "REDIS_PASSWORD",
        value_name = "PASSWORD",
        hide_env_values = true,
        help_heading = HEADING
    )]
    pub redis_password: Option<String>,

    /// A file holding the Redis password (read at start, and again by a successor on reload);
    /// a relative path is taken in $CREDENTIALS_DIRECTORY when systemd sets it
    #[arg(
        long,
        env = "REDIS_PASSWORD_FILE",
        value_name = "PATH",
        conflicts_with = "redis_password",
        help_heading = HEADING
    )]
    pub redis_password_file: Option<std::path::PathBuf>,

    /// Sentinels to ask where the master is (host:port, comma-separated); REDIS_ADDR is then
    /// not used
    #[arg(
        long = "redis-sentinel",
        env = "REDIS_SENTINEL_ADDRS",
        value_name = "HOST:PORT,...",
        value_delimiter = ',',
        help_heading = HEADING
    )]
    pub redis_sentinel: Vec<String>,

    /// The master's name the sentinels monitor
    #[arg(
        long,
        env = "REDIS_SENTINEL_MASTER",
        value_name = "NAME",
        default_value = "mymaster",
        help_heading = HEADING
    )]
    pub redis_sentinel_master: String,

    /// The sentinels' password (their requirepass), if they have one; never logged
    #[arg(
        long,
        env = "REDIS_SENTINEL_PASSWORD",
        value_name = "PASSWORD",
        hide_env_values = true,
        help_heading = HEADING
    )]
    pub redis_sentinel_password: Option<String>,

    /// A file holding the sentinels' password (as --redis-password-file)
    #[arg(
        long,
        env = "REDIS_SENTINEL_PASSWORD_FILE",
        value_name = "PATH",
        conflicts_with = "redis_sentinel_password",
        help_heading = HEADING
    )]
    pub redis_sentinel_password_file: Option<std::path::PathBuf>,

    /// This ringgate's name in a fleet: its heartbeat key udp_gate:instance:ID and its own
    /// disconnect channel CHANNEL:ID (letters, digits, '.', '_', '-'; default the host name)
    #[arg(
        long,
        env = "RINGGATE_INSTANCE_ID",
        value_name = "ID",
        help_heading = HEADING
    )]
    pub instance_id: Option<String>,

    /// Whether a bare port on the shared disconnect channel closes sessions (udp-gate's form;
    /// ambiguous when several hosts share the channel). This instance's channel always takes one
    #[arg(long, env = "RINGGATE_DISCONNECT_BARE_PORTS", value_name = "on|off", default_value = "on",
          value_parser = clap::builder::BoolishValueParser::new(), action = clap::ArgAction::Set,
          help_heading = HEADING)]
    pub disconnect_bare_ports: bool,

    /// Redis database number (SELECT)
    #[arg(long, env = "REDIS_DB", value_name = "N", default_value_t = 0,
          value_parser = clap::value_parser!(i64).range(0..),
          help_heading = HEADING)]
    pub redis_db: i64,

    /// redis://[user:pass@]host:port/db; overrides --redis-addr, --redis-password, --redis-db
    #[arg(
        long,
        env = "REDIS_URL",
        value_name = "URL",
        hide_env_values = true,
        help_heading = HEADING
    )]
    pub redis_url: Option<String>,

    /// Key whose value (ip:port) routes each new client
    #[arg(
        long,
        env = "REDIS_BACKEND_KEY",
        value_name = "KEY",
        default_value = "udp_gate:backend",
        help_heading = HEADING
    )]
    pub backend_key: String,

    /// Channel whose messages (a port, or ip:port) close sessions
    #[arg(
        long,
        env = "REDIS_DISCONNECT_CHANNEL",
        value_name = "CHANNEL",
        default_value = "udp_gate:disconnect",
        help_heading = HEADING
    )]
    pub disconnect_channel: String,

    /// How long a new client's first datagrams wait for the backend key
    #[arg(long, env = "RINGGATE_REDIS_TIMEOUT_MS", value_name = "MS", default_value_t = 200,
          value_parser = clap::value_parser!(u64).range(1..=60_000),
          help_heading = HEADING)]
    pub redis_timeout_ms: u64,

    /// Networks a backend from Redis must be in (repeat, or comma-separate); default any
    #[arg(
        long = "backend-allow",
        env = "RINGGATE_BACKEND_ALLOW",
        value_name = "CIDR",
        value_delimiter = ',',
        help_heading = HEADING
    )]
    pub backend_allow: Vec<ipnet::IpNet>,
}
