//! The threads that resolve host names, shared by every worker and never one of them.
//!
//! Resolution goes through the C library (`getaddrinfo`, via std), exactly as udp-gate's Go
//! resolver and every other program on the host would: `/etc/hosts`, `nsswitch.conf`, the
//! search domains a Kubernetes pod's `resolv.conf` lists (so `waterdog-1` means the service in
//! the pod's namespace). That call blocks, so it runs here. Requests are few (a name is asked
//! again only when its cache entry expires) and bounded: a full queue refuses at once.
//!
//! A worker asks with its own reply channel and eventfd; the answer goes on the channel and
//! the eventfd wakes the worker's ring, where a read is armed on it. Nothing here touches a
//! worker's memory.

use std::fs::File;
use std::io::Write;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// Names waiting to be resolved, for all workers together.
pub const QUEUE_MAX: usize = 1024;
/// Threads resolving at once (each blocks in the resolver for a lookup's duration).
pub const THREADS: usize = 2;

/// A name to resolve.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Name {
    pub host: String,
    pub port: u16,
}

impl std::fmt::Display for Name {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// The resolver's answer for one name.
#[derive(Debug)]
pub struct Answer {
    pub name: Name,
    pub addrs: Result<Vec<SocketAddr>, String>,
}

/// Where a worker wants its answers.
#[derive(Clone)]
pub struct ReplyTo {
    pub answers: mpsc::Sender<Answer>,
    pub wake: Arc<File>,
}

struct Request {
    name: Name,
    reply: ReplyTo,
}

/// A handle to the pool; cloned into every worker.
#[derive(Clone)]
pub struct Resolver {
    queue: SyncSender<Request>,
}

impl Resolver {
    /// Starts the pool's threads. They end when every handle is dropped.
    pub fn start() -> std::io::Result<(Resolver, Vec<JoinHandle<()>>)> {
        let (queue, requests) = mpsc::sync_channel::<Request>(QUEUE_MAX);
        let requests = Arc::new(Mutex::new(requests));
        let threads = (0..THREADS)
            .map(|i| {
                let requests = Arc::clone(&requests);
                std::thread::Builder::new()
                    .name(format!("ringgate-dns{i}"))
                    .spawn(move || serve(&requests))
            })
            .collect::<std::io::Result<Vec<_>>>()?;
        Ok((Resolver { queue }, threads))
    }

    /// Queues `name`; false if the queue is full (the caller treats that as a failure).
    pub fn ask(&self, name: Name, reply: ReplyTo) -> bool {
        match self.queue.try_send(Request { name, reply }) {
            Ok(()) => true,
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => false,
        }
    }
}

fn serve(requests: &Mutex<Receiver<Request>>) {
    loop {
        // Only the pool's own threads share this lock, and only to take the next request.
        let next = match requests.lock() {
            Ok(queue) => queue.recv(),
            Err(_) => return,
        };
        let Ok(Request { name, reply }) = next else {
            return;
        };
        let addrs = resolve(&name);
        if reply.answers.send(Answer { name, addrs }).is_ok() {
            let _ = (&*reply.wake).write(&1u64.to_ne_bytes());
        }
    }
}

/// Every address of `name`, IPv4 first (as Go's resolver orders them for a dual-stack dial).
pub fn resolve(name: &Name) -> Result<Vec<SocketAddr>, String> {
    let mut addrs: Vec<SocketAddr> = (name.host.as_str(), name.port)
        .to_socket_addrs()
        .map_err(|e| e.to_string())?
        .collect();
    addrs.sort_by_key(|a| a.is_ipv6());
    addrs.dedup();
    if addrs.is_empty() {
        return Err("no address".into());
    }
    Ok(addrs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn localhost_resolves_ipv4_first() {
        let addrs = resolve(&Name {
            host: "localhost".into(),
            port: 7,
        })
        .unwrap();
        assert_eq!(addrs[0], "127.0.0.1:7".parse().unwrap());
    }

    #[test]
    fn a_name_that_does_not_exist_fails() {
        // .invalid is reserved never to resolve (RFC 2606).
        assert!(
            resolve(&Name {
                host: "no-such-host.invalid".into(),
                port: 7,
            })
            .is_err()
        );
    }

    #[test]
    fn the_pool_answers_on_the_channel_and_wakes_the_eventfd() {
        let (resolver, _threads) = Resolver::start().unwrap();
        let (answers, got) = mpsc::channel();
        let wake = Arc::new(File::from(crate::sys::eventfd::eventfd().unwrap()));
        let name = Name {
            host: "localhost".into(),
            port: 9,
        };
        assert!(resolver.ask(
            name.clone(),
            ReplyTo {
                answers,
                wake: Arc::clone(&wake)
            }
        ));
        let answer = got.recv_timeout(std::time::Duration::from_secs(5)).unwrap();
        assert_eq!(answer.name, name);
        assert!(answer.addrs.is_ok());
        // The eventfd is written just after the answer is sent: wait for it, bounded.
        let mut counter = [0u8; 8];
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while std::io::Read::read_exact(&mut &*wake, &mut counter).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "the eventfd was never written"
            );
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        assert_eq!(u64::from_ne_bytes(counter), 1);
    }
}
