//! Steady echo load through ringgate: many players, each on an address of its own, sending a
//! numbered, timestamped datagram at a fixed rate; every echo is accounted for. Bounded in
//! count and time by the caller's `stop`.

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};

use super::player;

/// How long after the last send an echo may still arrive.
const GRACE: Duration = Duration::from_secs(3);
/// After the last send, this long without an echo means every echo is in.
const QUIET: Duration = Duration::from_millis(500);

pub struct Load {
    stop: Arc<AtomicBool>,
    sender: Option<JoinHandle<Vec<u64>>>,
    receiver: Option<JoinHandle<Received>>,
    /// Echoes received so far, over all players.
    pub echoes: Arc<AtomicU64>,
    pub players: usize,
}

/// What came back.
#[derive(Debug)]
pub struct Received {
    /// Per player: the sequence numbers echoed (each once).
    pub seqs: Vec<Vec<u32>>,
    /// The longest a datagram took to come back.
    pub max_rtt: Duration,
    pub rtts: Vec<Duration>,
}

/// What the load saw, once stopped.
#[derive(Debug)]
pub struct Report {
    pub sent: u64,
    pub lost: u64,
    pub duplicated: u64,
    pub max_rtt: Duration,
    pub p50_rtt: Duration,
    pub p99_rtt: Duration,
}

impl Load {
    /// `players` players, each sending `per_sec` datagrams a second to `to`, until stopped
    /// (and at most `limit`).
    pub fn start(to: SocketAddr, players: usize, per_sec: u32, limit: Duration) -> Load {
        let sockets: Vec<Arc<UdpSocket>> = (0..players).map(|i| Arc::new(player(i))).collect();
        for s in &sockets {
            s.set_nonblocking(true).unwrap();
        }
        let stop = Arc::new(AtomicBool::new(false));
        let echoes = Arc::new(AtomicU64::new(0));
        let origin = Instant::now();
        let interval = Duration::from_secs(1) / per_sec;
        let sender = std::thread::spawn({
            let (sockets, stop) = (sockets.clone(), Arc::clone(&stop));
            move || {
                let mut sent = vec![0u64; sockets.len()];
                let mut next = Instant::now();
                while !stop.load(Ordering::Relaxed) && origin.elapsed() < limit {
                    for (i, s) in sockets.iter().enumerate() {
                        let mut payload = [0u8; 24];
                        payload[..4].copy_from_slice(&(i as u32).to_be_bytes());
                        payload[4..8].copy_from_slice(&(sent[i] as u32).to_be_bytes());
                        let at = origin.elapsed().as_nanos() as u64;
                        payload[8..16].copy_from_slice(&at.to_be_bytes());
                        s.send_to(&payload, to).expect("send");
                        sent[i] += 1;
                    }
                    next += interval;
                    std::thread::sleep(next.saturating_duration_since(Instant::now()));
                }
                sent
            }
        });
        let receiver = std::thread::spawn({
            let (stop, echoes) = (Arc::clone(&stop), Arc::clone(&echoes));
            move || receive(&sockets, &stop, &echoes, origin)
        });
        Load {
            stop,
            sender: Some(sender),
            receiver: Some(receiver),
            echoes,
            players,
        }
    }

    /// Waits until `more` further echoes have come back (the load is flowing).
    pub fn wait_for_echoes(&self, more: u64) {
        let target = self.echoes.load(Ordering::Relaxed) + more;
        super::wait_for("echoes", || self.echoes.load(Ordering::Relaxed) >= target);
    }

    /// Stops sending, waits for the last echoes, and accounts for every datagram.
    pub fn stop(mut self) -> Report {
        self.stop.store(true, Ordering::Relaxed);
        let sent = self.sender.take().unwrap().join().unwrap();
        let received = self.receiver.take().unwrap().join().unwrap();
        let mut report = Report {
            sent: sent.iter().sum(),
            lost: 0,
            duplicated: 0,
            max_rtt: received.max_rtt,
            p50_rtt: Duration::ZERO,
            p99_rtt: Duration::ZERO,
        };
        for (i, seqs) in received.seqs.iter().enumerate() {
            let mut seen = vec![false; sent[i] as usize];
            for &s in seqs {
                match seen.get_mut(s as usize) {
                    Some(true) => report.duplicated += 1,
                    Some(slot) => *slot = true,
                    None => report.duplicated += 1,
                }
            }
            report.lost += seen.iter().filter(|s| !**s).count() as u64;
        }
        let mut rtts = received.rtts;
        rtts.sort();
        if !rtts.is_empty() {
            report.p50_rtt = rtts[rtts.len() / 2];
            report.p99_rtt = rtts[rtts.len() * 99 / 100];
        }
        report
    }
}

/// Every echo, until `GRACE` after the stop (or sooner, once nothing is outstanding for a
/// while).
fn receive(
    sockets: &[Arc<UdpSocket>],
    stop: &AtomicBool,
    echoes: &AtomicU64,
    origin: Instant,
) -> Received {
    let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).unwrap();
    let mut by_token = HashMap::new();
    for (i, s) in sockets.iter().enumerate() {
        epoll
            .add(s.as_fd(), EpollEvent::new(EpollFlags::EPOLLIN, i as u64))
            .unwrap();
        by_token.insert(i as u64, i);
    }
    let mut got = Received {
        seqs: vec![Vec::new(); sockets.len()],
        max_rtt: Duration::ZERO,
        rtts: Vec::new(),
    };
    let mut events = vec![EpollEvent::empty(); 128];
    let mut buf = [0u8; 2048];
    let mut stopped_at = None;
    let mut last = Instant::now();
    loop {
        if stopped_at.is_none() && stop.load(Ordering::Relaxed) {
            stopped_at = Some(Instant::now());
        }
        if let Some(at) = stopped_at
            && (at.elapsed() > GRACE || last.elapsed() > QUIET)
        {
            return got;
        }
        let n = epoll
            .wait(&mut events, EpollTimeout::from(50u16))
            .unwrap_or(0);
        for event in &events[..n] {
            let i = by_token[&event.data()];
            while let Ok((len, _)) = sockets[i].recv_from(&mut buf) {
                if len < 16 || u32::from_be_bytes(buf[..4].try_into().unwrap()) as usize != i {
                    continue;
                }
                let seq = u32::from_be_bytes(buf[4..8].try_into().unwrap());
                let at = u64::from_be_bytes(buf[8..16].try_into().unwrap());
                let rtt = origin.elapsed().saturating_sub(Duration::from_nanos(at));
                got.max_rtt = got.max_rtt.max(rtt);
                got.rtts.push(rtt);
                got.seqs[i].push(seq);
                last = Instant::now();
                echoes.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}
