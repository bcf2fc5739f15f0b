//! A Redis Sentinel group on loopback, started by the test and killed on drop: a master, one
//! replica and three sentinels (`redis-server --sentinel`, quorum 2), each on a free port, with
//! their configuration files and logs in a temporary directory of their own.
//!
//! What a test must know about Sentinel itself:
//! - A sentinel rewrites its configuration file (`CONFIG REWRITE`) as it learns: its `myid`,
//!   the replicas and the other sentinels it discovered, and after a failover the new master.
//!   That is why [`SentinelGroup::start_sentinels`] after [`SentinelGroup::stop_sentinels`]
//!   finds the group as it was left (a sentinel restarted on a fresh copy of the first file
//!   would name the dead master again). Each file must be a sentinel's own: two sentinels with
//!   the same `myid` do not count as two votes.
//! - Lines equal to their defaults are dropped by the rewrite (`parallel-syncs 1` is gone
//!   from the file after the first rewrite); that is not an error.
//! - Everything is on 127.0.0.1, so the addresses sentinels announce (their own, the
//!   replica's as the master sees it) are the loopback ones the test uses; no `announce-ip` is
//!   needed. A sentinel with `requirepass` needs `sentinel sentinel-pass` to talk to the others.
//! - Time to promote, measured on the 2-core development machine (Redis 7.0.15, down-after
//!   1000 ms, failover-timeout 2000 ms): about 2.3 s from the master's SIGKILL until every
//!   sentinel names the replica and its `ROLE` says `master` (1 s until subjective down, the
//!   vote, then `REPLICAOF NO ONE`). [`PROMOTION_PATIENCE`] leaves a wide margin for a slow CI.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::binary::tempdir;
use super::{command, free_tcp_port, wait_for};

/// The name the sentinels monitor the master under (ringgate's default).
pub const MASTER_NAME: &str = "mymaster";
/// How long [`SentinelGroup::wait_promotion`] waits for a failover.
pub const PROMOTION_PATIENCE: Duration = Duration::from_secs(15);
/// How long the group's servers may take to see each other at start (sentinels discover each
/// other through hello messages every 2 s on the master's `__sentinel__:hello` channel).
const GROUP_PATIENCE: Duration = Duration::from_secs(20);

/// Passwords of a group: `data` for the master and replica (`requirepass`, `masterauth`, and
/// the sentinels' `auth-pass`), `sentinel` for the sentinels themselves (`requirepass`).
#[derive(Clone, Debug, Default)]
pub struct Passwords {
    pub data: Option<String>,
    pub sentinel: Option<String>,
}

/// One process of the group: its port and, while it runs, its child.
struct Node {
    port: u16,
    child: Option<Child>,
    log: PathBuf,
}

impl Node {
    fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

pub struct SentinelGroup {
    dir: PathBuf,
    passwords: Passwords,
    /// The first master and the first replica (their roles change with a failover).
    servers: Vec<Node>,
    sentinels: Vec<Node>,
}

impl SentinelGroup {
    /// A master, a replica in sync with it, and three sentinels that all know both and each
    /// other. `name` names the temporary directory.
    pub fn start(name: &str) -> SentinelGroup {
        SentinelGroup::start_with(name, Passwords::default())
    }

    /// [`SentinelGroup::start`] with passwords.
    pub fn start_with(name: &str, passwords: Passwords) -> SentinelGroup {
        let mut group = SentinelGroup::without_sentinels(name, passwords);
        group.start_sentinels();
        group
    }

    /// The master and its replica, in sync, and the sentinels' configuration files written
    /// with their ports chosen, but no sentinel running: [`SentinelGroup::start_sentinels`]
    /// starts them.
    pub fn without_sentinels(name: &str, passwords: Passwords) -> SentinelGroup {
        let dir = tempdir(&format!("sentinel-{name}"));
        let node = |role: &str| {
            let port = free_tcp_port();
            Node {
                port,
                child: None,
                log: dir.join(format!("{role}-{port}.log")),
            }
        };
        let mut group = SentinelGroup {
            servers: vec![node("master"), node("replica")],
            sentinels: vec![node("sentinel"), node("sentinel"), node("sentinel")],
            dir,
            passwords,
        };
        let master = group.servers[0].port;
        group.spawn_server(0, None);
        group.spawn_server(1, Some(master));
        for i in 0..group.sentinels.len() {
            group.write_sentinel_config(i, master);
        }
        let replica = group.servers[1].addr();
        wait_within("the replica's link to the master", GROUP_PATIENCE, || {
            group
                .server_cmd::<String>(replica, &["INFO", "replication"])
                .is_ok_and(|info| info.contains("master_link_status:up"))
        });
        group
    }

    /// Where clients find the sentinels (running or not).
    pub fn sentinel_addrs(&self) -> Vec<SocketAddr> {
        self.sentinels.iter().map(Node::addr).collect()
    }

    /// The sentinels' addresses as `--redis-sentinel` takes them: `HOST:PORT,HOST:PORT,...`.
    pub fn sentinel_list(&self) -> String {
        let addrs: Vec<String> = self
            .sentinel_addrs()
            .iter()
            .map(ToString::to_string)
            .collect();
        addrs.join(",")
    }

    /// The addresses of the master and the replica as first started (one of them may be dead).
    pub fn server_addrs(&self) -> Vec<SocketAddr> {
        self.servers.iter().map(Node::addr).collect()
    }

    /// The master, as the first sentinel that answers names it.
    pub fn master(&self) -> SocketAddr {
        self.sentinels
            .iter()
            .find_map(|s| self.master_per(s.addr()))
            .unwrap_or_else(|| panic!("no sentinel names a master ({})", self.logs()))
    }

    /// Kills the current master with SIGKILL, as a crash would; returns its address.
    pub fn kill_master(&mut self) -> SocketAddr {
        let master = self.master();
        let node = self
            .servers
            .iter_mut()
            .find(|n| n.addr() == master)
            .expect("the master is one of the group's servers");
        assert!(node.child.is_some(), "the master {master} is already dead");
        node.kill();
        master
    }

    /// Waits (at most [`PROMOTION_PATIENCE`]) until every running sentinel names a master
    /// other than `old` and that server's `ROLE` says `master`; returns the new master and the
    /// instant that was first seen (at most one poll, 20 ms, after it became true).
    pub fn wait_promotion(&self, old: SocketAddr) -> (SocketAddr, Instant) {
        let deadline = Instant::now() + PROMOTION_PATIENCE;
        // The promotion is the moment a replica's ROLE says master (before the sentinels
        // announce it and agree on it), so that a "within N s of the promotion" is not lenient.
        let mut promoted_at = None;
        loop {
            if promoted_at.is_none()
                && self
                    .server_addrs()
                    .into_iter()
                    .any(|s| s != old && self.is_master(s))
            {
                promoted_at = Some(Instant::now());
            }
            if let Some(at) = promoted_at
                && let Some(new) = self.agreed_master()
                && new != old
                && self.is_master(new)
            {
                return (new, at);
            }
            assert!(
                Instant::now() < deadline,
                "no promotion after {old} within {PROMOTION_PATIENCE:?} ({})",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the three sentinels (SIGKILL); their configuration files stay.
    pub fn stop_sentinels(&mut self) {
        for s in &mut self.sentinels {
            s.kill();
        }
    }

    /// Starts the three sentinels on their ports from their configuration files (as they
    /// rewrote them, if they ran before), and waits until each names the same master, whose
    /// `ROLE` says master, knows the two other sentinels and every live replica.
    pub fn start_sentinels(&mut self) {
        for i in 0..self.sentinels.len() {
            assert!(self.sentinels[i].child.is_none(), "sentinel {i} is running");
            self.spawn_sentinel(i);
        }
        wait_within(
            "the sentinels to agree on the master and know each other and the replica",
            GROUP_PATIENCE,
            || self.settled(),
        );
    }

    /// Runs a command on the current master (authenticated) and returns its reply.
    pub fn cmd<T: redis::FromRedisValue>(&self, args: &[&str]) -> T {
        let master = self.master();
        self.server_cmd(master, args)
            .unwrap_or_else(|e| panic!("{args:?} on the master {master}: {e}"))
    }

    /// Runs a command on the data server at `addr` (authenticated).
    pub fn server_cmd<T: redis::FromRedisValue>(
        &self,
        addr: SocketAddr,
        args: &[&str],
    ) -> redis::RedisResult<T> {
        let mut c = connect(addr, self.passwords.data.as_deref())?;
        command(args).query(&mut c)
    }

    /// Runs a command on the sentinel at `addr` (authenticated).
    pub fn sentinel_cmd<T: redis::FromRedisValue>(
        &self,
        addr: SocketAddr,
        args: &[&str],
    ) -> redis::RedisResult<T> {
        let mut c = connect(addr, self.passwords.sentinel.as_deref())?;
        command(args).query(&mut c)
    }

    /// `SET key value` on the master.
    pub fn set(&self, key: &str, value: &str) {
        self.cmd::<()>(&["SET", key, value]);
    }

    /// Publishes on the master; returns how many subscribers got the message.
    pub fn publish(&self, channel: &str, message: &str) -> usize {
        self.cmd(&["PUBLISH", channel, message])
    }

    /// Waits until every live replica has acknowledged the master's writes so far (`WAIT`), so
    /// that what was written survives a failover.
    pub fn wait_replicated(&self) {
        let replicas = self.live_servers().len() - 1;
        let acked: usize = self.cmd(&["WAIT", &replicas.to_string(), "5000"]);
        assert_eq!(acked, replicas, "replicas that acknowledged the writes");
    }

    /// Where each process logs, for failure messages.
    pub fn logs(&self) -> String {
        format!("logs in {}", self.dir.display())
    }

    fn spawn_server(&mut self, i: usize, replica_of: Option<u16>) {
        let node = &self.servers[i];
        let mut cmd = Command::new("redis-server");
        cmd.args(["--port", &node.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .args(["--logfile", &node.log.display().to_string()])
            .current_dir(&self.dir);
        if let Some(master) = replica_of {
            cmd.args(["--replicaof", "127.0.0.1", &master.to_string()]);
        }
        if let Some(password) = &self.passwords.data {
            // masterauth on both: the first master may come back as a replica.
            cmd.args(["--requirepass", password, "--masterauth", password]);
        }
        let child = spawn(cmd);
        self.servers[i].child = Some(child);
        let addr = self.servers[i].addr();
        wait_for("redis-server to answer PING", || {
            self.server_cmd::<String>(addr, &["PING"]).is_ok()
        });
    }

    fn config_path(&self, i: usize) -> PathBuf {
        self.dir
            .join(format!("sentinel-{}.conf", self.sentinels[i].port))
    }

    fn write_sentinel_config(&self, i: usize, master: u16) {
        let node = &self.sentinels[i];
        let mut text = format!(
            "port {port}\nbind 127.0.0.1\ndaemonize no\nlogfile \"{log}\"\ndir \"{dir}\"\n\
             sentinel monitor {MASTER_NAME} 127.0.0.1 {master} 2\n\
             sentinel down-after-milliseconds {MASTER_NAME} 1000\n\
             sentinel failover-timeout {MASTER_NAME} 2000\n\
             sentinel parallel-syncs {MASTER_NAME} 1\n",
            port = node.port,
            log = node.log.display(),
            dir = self.dir.display(),
        );
        if let Some(password) = &self.passwords.data {
            text += &format!("sentinel auth-pass {MASTER_NAME} {password}\n");
        }
        if let Some(password) = &self.passwords.sentinel {
            text += &format!("requirepass {password}\nsentinel sentinel-pass {password}\n");
        }
        std::fs::write(self.config_path(i), text).unwrap();
    }

    fn spawn_sentinel(&mut self, i: usize) {
        let mut cmd = Command::new("redis-server");
        cmd.arg(self.config_path(i))
            .arg("--sentinel")
            .current_dir(&self.dir);
        let child = spawn(cmd);
        self.sentinels[i].child = Some(child);
    }

    /// The master sentinel `addr` names, if it answers.
    fn master_per(&self, addr: SocketAddr) -> Option<SocketAddr> {
        let reply: Option<Vec<String>> = self
            .sentinel_cmd(addr, &["SENTINEL", "get-master-addr-by-name", MASTER_NAME])
            .ok()?;
        let reply = reply?;
        format!("{}:{}", reply.first()?, reply.get(1)?).parse().ok()
    }

    /// The master every running sentinel names, if they all answer and agree.
    fn agreed_master(&self) -> Option<SocketAddr> {
        let mut named = self
            .sentinels
            .iter()
            .filter(|s| s.child.is_some())
            .map(|s| self.master_per(s.addr()));
        let first = named.next()??;
        named.all(|m| m == Some(first)).then_some(first)
    }

    fn is_master(&self, addr: SocketAddr) -> bool {
        self.server_cmd::<redis::Value>(addr, &["ROLE"])
            .ok()
            .and_then(|role| match role {
                redis::Value::Array(items) => items.into_iter().next(),
                _ => None,
            })
            .and_then(|first| redis::from_redis_value::<String>(first).ok())
            .is_some_and(|role| role == "master")
    }

    fn live_servers(&self) -> Vec<SocketAddr> {
        self.servers
            .iter()
            .filter(|n| n.child.is_some())
            .map(Node::addr)
            .collect()
    }

    /// Every sentinel names the same master, a live one whose `ROLE` says master, lists the
    /// two other sentinels and every other live server as a replica; and those replicas' links
    /// to it are up.
    fn settled(&self) -> bool {
        let Some(master) = self.agreed_master() else {
            return false;
        };
        if !self.is_master(master) {
            return false;
        }
        let replicas: Vec<SocketAddr> = self
            .live_servers()
            .into_iter()
            .filter(|&a| a != master)
            .collect();
        let others = self.sentinels.len() - 1;
        self.sentinels.iter().all(|s| {
            let known_sentinels = self
                .sentinel_cmd::<Vec<Vec<String>>>(s.addr(), &["SENTINEL", "sentinels", MASTER_NAME])
                .map_or(0, |list| list.len());
            let known_replicas: Vec<SocketAddr> = self
                .sentinel_cmd::<Vec<Vec<String>>>(s.addr(), &["SENTINEL", "replicas", MASTER_NAME])
                .map(|list| list.iter().filter_map(|fields| addr_of(fields)).collect())
                .unwrap_or_default();
            known_sentinels == others && replicas.iter().all(|r| known_replicas.contains(r))
        }) && replicas.iter().all(|&r| {
            self.server_cmd::<String>(r, &["INFO", "replication"])
                .is_ok_and(|info| info.contains("master_link_status:up"))
        })
    }
}

impl Drop for SentinelGroup {
    fn drop(&mut self) {
        for node in self.sentinels.iter_mut().chain(&mut self.servers) {
            node.kill();
        }
        // Keep the logs and configuration files of a failed test.
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// A fresh connection to `addr`, authenticated with `password` if any.
fn connect(addr: SocketAddr, password: Option<&str>) -> redis::RedisResult<redis::Connection> {
    let auth = password.map(|p| format!(":{p}@")).unwrap_or_default();
    let client = redis::Client::open(format!("redis://{auth}{addr}/"))?;
    client.get_connection_with_timeout(Duration::from_secs(1))
}

fn spawn(mut cmd: Command) -> Child {
    cmd.stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server must be installed (scripts/test installs it)")
}

/// The `ip:port` in a `SENTINEL replicas` entry (a flat list of field names and values).
fn addr_of(fields: &[String]) -> Option<SocketAddr> {
    let value = |name: &str| {
        fields
            .chunks(2)
            .find(|pair| pair[0] == name)
            .and_then(|pair| pair.get(1))
    };
    format!("{}:{}", value("ip")?, value("port")?).parse().ok()
}

/// Polls `condition` every 20 ms until it holds, failing the test after `within` (for
/// conditions that take seconds and cost a connection per poll).
pub fn wait_within(what: &str, within: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}
