//! `cargo bench --bench hot_path`: criterion micro-benchmarks of the pure code every datagram
//! goes through in ringgate's worker, apart from any I/O, so a regression in one of them shows
//! up here before it is lost in the noise of the forward benchmark (`benches/forward`).
//!
//! * `session_table`: the client lookup that decides each client datagram's fate
//!   (`Sessions::classify`, hit and miss), the packet path's lookup by key (`upstream`: the
//!   session's socket for a datagram going up, marking it active) and by upstream port
//!   (`by_upstream_port`), and a session's whole life without a real socket (insert, open,
//!   close, freed).
//! * `recvmsg_out`: parsing a multishot `recvmsg` buffer as the kernel lays it out
//!   (`sys::uring::msghdr::parse` then `datagram::check`: header, truncation flags, source
//!   address, size limit), for IPv4 and IPv6 and two
//!   payload sizes, and the address codec on its own (`sockaddr::decode`, `RawSockAddr::encode`).
//! * `user_data`: packing and unpacking the 64-bit cookie of every ring operation.
//!
//! Runs are kept short (0.5 s warm-up, 1 s measured per benchmark, about 40 s in all); pass
//! criterion's own options after `--` for longer ones.

use std::hint::black_box;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use ringgate::datagram;
use ringgate::session::{Held, Ingress, Key, Limits, Sessions, Why};
use ringgate::sys::cmsg::CONTROL_LEN;
use ringgate::sys::sockaddr::{self, RawSockAddr, SOCKADDR_MAX};
use ringgate::sys::uring::msghdr::{self, PAYLOAD_OFFSET, recv_header};
use ringgate::user_data::Op;

/// Table sizes the issue names: 1k, 100k and 1M sessions on one worker.
const TABLE_SIZES: [usize; 3] = [1_000, 100_000, 1_000_000];
/// ringgate's `--buffer-size` in the forward bench.
const MAX_PAYLOAD: usize = 2048;

/// A distinct client for every `i` below 2^24: addresses spread over 127.0.0.0/8.
fn client(i: usize) -> SocketAddr {
    let ip = std::net::Ipv4Addr::from(0x7f00_0000 | (i as u32 & 0x00ff_ffff));
    SocketAddr::from((ip, 40_000))
}

fn upstream_local(i: usize) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 1_024 + (i % 60_000) as u16))
}

/// An upstream "socket" that is not one: a million real sockets would measure the kernel.
struct NoSocket;

impl AsRawFd for NoSocket {
    fn as_raw_fd(&self) -> RawFd {
        -1
    }
}

const FIRST: Held = Held { bid: 0, len: 64 };
const BACKEND: SocketAddr = SocketAddr::new(
    std::net::IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 9)),
    19132,
);

/// A table holding `size` open sessions, and their clients and keys.
fn open_table(size: usize) -> (Sessions<NoSocket>, Vec<SocketAddr>, Vec<Key>) {
    let mut sessions = Sessions::new(Limits {
        sessions_max: size * 2,
        fd_max: usize::MAX,
        pending_max: 8,
        held_max: size * 2,
    });
    let clients: Vec<SocketAddr> = (0..size).map(client).collect();
    let keys = clients
        .iter()
        .enumerate()
        .map(|(i, &addr)| {
            let key = sessions.insert(addr, 0, FIRST);
            sessions.open(key, NoSocket, upstream_local(i), BACKEND, None, 0);
            key
        })
        .collect();
    // The worker takes the table's announcements every batch; a million at once here.
    sessions.take_events(&mut Vec::new());
    (sessions, clients, keys)
}

fn session_table(c: &mut Criterion) {
    let mut group = c.benchmark_group("session_table");
    group.throughput(Throughput::Elements(1));
    for size in TABLE_SIZES {
        let (mut sessions, clients, keys) = open_table(size);
        // Cycle through every client, as datagrams from many flows interleave.
        let mut next = 0;
        group.bench_with_input(BenchmarkId::new("classify_hit", size), &size, |b, _| {
            b.iter(|| {
                next = (next + 1) % clients.len();
                let decision = sessions.classify(black_box(&clients[next]));
                debug_assert!(matches!(decision, Ingress::Forward(_)));
                decision
            })
        });
        let stranger = client(size + 1);
        group.bench_with_input(BenchmarkId::new("classify_miss", size), &size, |b, _| {
            b.iter(|| sessions.classify(black_box(&stranger)))
        });
        let mut next = 0;
        group.bench_with_input(BenchmarkId::new("upstream_by_key", size), &size, |b, _| {
            b.iter(|| {
                next = (next + 1) % keys.len();
                sessions
                    .upstream(black_box(keys[next]), black_box(1))
                    .map(|up| up.fd)
            })
        });
        let mut next = 0;
        group.bench_with_input(BenchmarkId::new("by_upstream_port", size), &size, |b, _| {
            b.iter(|| {
                next = (next + 1) % size;
                sessions.by_upstream_port(black_box(upstream_local(next).port()))
            })
        });
    }
    // A session's life without its socket, in a table that already holds 1 024: what a flow
    // that comes and goes costs the table.
    let (mut sessions, _, _) = open_table(1_024);
    let newcomer = client(2_000);
    let mut events = Vec::new();
    group.bench_function("insert_open_close_free", |b| {
        b.iter(|| {
            // What the worker does once per batch: take the table's announcements.
            sessions.take_events(&mut events);
            events.clear();
            let key = sessions.insert(black_box(newcomer), 0, FIRST);
            sessions.open(key, NoSocket, upstream_local(2_000), BACKEND, None, 0);
            sessions.begin_close(key, Why::Idle)
        })
    });
    group.finish();
}

/// A receive buffer laid out the way the kernel fills it for ringgate's `recv_header(true)`:
/// `io_uring_recvmsg_out`, the address field, the control field (no control message: the
/// listener's destination address is absent here), then the payload.
fn kernel_buffer(from: SocketAddr, payload_len: usize) -> Vec<u8> {
    let raw = RawSockAddr::encode(from);
    let mut buffer = Vec::with_capacity(PAYLOAD_OFFSET + payload_len);
    buffer.extend((raw.as_bytes().len() as u32).to_ne_bytes()); // namelen
    buffer.extend(0u32.to_ne_bytes()); // controllen
    buffer.extend((payload_len as u32).to_ne_bytes()); // payloadlen
    buffer.extend(0u32.to_ne_bytes()); // flags
    let mut name = [0u8; SOCKADDR_MAX];
    name[..raw.as_bytes().len()].copy_from_slice(raw.as_bytes());
    buffer.extend(name);
    buffer.extend([0u8; CONTROL_LEN]);
    assert_eq!(
        buffer.len(),
        PAYLOAD_OFFSET,
        "layout drifted from sys::uring::msghdr"
    );
    buffer.resize(PAYLOAD_OFFSET + payload_len, 0xa5);
    buffer
}

fn recvmsg_out(c: &mut Criterion) {
    let mut group = c.benchmark_group("recvmsg_out");
    group.throughput(Throughput::Elements(1));
    let header = recv_header(true);
    let v4: SocketAddr = "127.0.0.1:40000".parse().expect("literal address");
    let v6: SocketAddr = "[::1]:40000".parse().expect("literal address");
    for (name, from, payload_len) in [
        ("parse_v4_64B", v4, 64),
        ("parse_v4_1200B", v4, 1200),
        ("parse_v6_64B", v6, 64),
    ] {
        let buffer = kernel_buffer(from, payload_len);
        assert!(datagram::check(msghdr::parse(&buffer, &header), MAX_PAYLOAD).is_ok());
        group.bench_function(name, |b| {
            b.iter(|| datagram::check(msghdr::parse(black_box(&buffer), &header), MAX_PAYLOAD))
        });
    }
    let raw_v4 = RawSockAddr::encode(v4);
    group.bench_function("sockaddr_decode_v4", |b| {
        b.iter(|| sockaddr::decode(black_box(raw_v4.as_bytes())))
    });
    group.bench_function("sockaddr_encode_v4", |b| {
        b.iter(|| RawSockAddr::encode(black_box(v4)))
    });
    group.finish();
}

fn user_data(c: &mut Criterion) {
    let mut group = c.benchmark_group("user_data");
    let op = Op::SendUp {
        key: Key {
            slot: 1_234,
            generation: 56,
        },
        bid: 789,
    };
    group.throughput(Throughput::Elements(1));
    group.bench_function("encode_decode_send_up", |b| {
        b.iter(|| Op::decode(black_box(black_box(op).encode())))
    });
    // A completion batch as the worker sees it: mostly sends and receives of many sessions.
    let batch: Vec<u64> = (0..64u32)
        .map(|i| match i % 4 {
            0 => Op::SessionRecv(Key {
                slot: i,
                generation: 1,
            }),
            1 => Op::SendUp {
                key: Key {
                    slot: i,
                    generation: 1,
                },
                bid: i as u16,
            },
            2 => Op::SendDown { bid: i as u16 },
            _ => Op::ListenRecv,
        })
        .map(Op::encode)
        .collect();
    group.throughput(Throughput::Elements(batch.len() as u64));
    group.bench_function("decode_batch_of_64", |b| {
        b.iter(|| {
            black_box(&batch)
                .iter()
                .filter_map(|&user_data| Op::decode(user_data))
                .filter(|op| matches!(op, Op::SendUp { .. } | Op::SendDown { .. }))
                .count()
        })
    });
    group.finish();
}

criterion_group! {
    name = hot_path;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(1));
    targets = session_table, recvmsg_out, user_data
}
criterion_main!(hot_path);
