//! The epoll driver over real sockets on loopback: the completions io_uring would give.

use std::io::{Read, Write};
use std::net::{TcpListener, UdpSocket};
use std::os::fd::AsRawFd;

use super::*;
use crate::sys::driver::{Backend, RecvFault};
use crate::sys::eventfd;
use crate::sys::lent::{Lent, LentOp};
use crate::sys::uring::TaskRun;

fn config(buffers: u32) -> DriverConfig {
    DriverConfig {
        backend: Backend::Epoll,
        sq_entries: 8,
        cq_entries: 64,
        buffer_count: buffers,
        payload_bytes: 64,
        headroom: 0,
        recv_destination: false,
        tick: Duration::from_millis(5),
        task_run: TaskRun::Deferred,
        streams: 1,
        stream_rx_bytes: 64,
        timers: 1,
    }
}

fn udp() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s
}

/// Waits until at least `n` completions arrived (each wait bounded).
fn completions(driver: &mut Epoll, n: usize) -> Vec<Completion> {
    let mut batch = Vec::new();
    for _ in 0..100 {
        driver
            .submit_and_wait_for(Duration::from_millis(50))
            .unwrap();
        driver.reap(&mut batch);
        if batch.len() >= n {
            break;
        }
    }
    batch
}

#[test]
fn a_datagram_is_received_into_a_buffer_and_replied_from_it() {
    let mut d = Epoll::new(&config(4)).unwrap();
    let (listener, client) = (udp(), udp());
    d.recv_multishot(listener.as_raw_fd(), 7).unwrap();
    client
        .send_to(b"hello", listener.local_addr().unwrap())
        .unwrap();
    let got = completions(&mut d, 1);
    assert_eq!(got.len(), 1);
    let c = got[0];
    assert_eq!((c.token(), c.result(), c.more()), (7, 5, true));
    let bid = c.buffer().unwrap();
    assert_eq!(d.received(bid, 5), Err(RecvFault::NotLeased));
    assert!(d.lease(bid));
    let r = d.received(bid, 5).unwrap();
    assert_eq!((r.source, r.len), (client.local_addr().unwrap(), 5));
    assert_eq!(d.payload(bid, 5), Some(&b"hello"[..]));
    // The reply leaves from the listener, from the buffer itself, when the worker submits.
    let to = RawSockAddr::encode(client.local_addr().unwrap());
    d.send_to(listener.as_raw_fd(), bid, 5, &to, None, 9)
        .unwrap();
    let sent = completions(&mut d, 1);
    assert_eq!((sent[0].token(), sent[0].result()), (9, 5));
    let mut buf = [0u8; 16];
    let (n, from) = client.recv_from(&mut buf).unwrap();
    assert_eq!(
        (&buf[..n], from),
        (&b"hello"[..], listener.local_addr().unwrap())
    );
    assert!(d.recycle(bid));
    assert!(!d.recycle(bid), "once");
    assert_eq!(d.in_flight(), 1, "the receive stays armed");
}

#[test]
fn a_send_on_a_connected_socket_carries_its_prefix() {
    let mut d = Epoll::new(&DriverConfig {
        headroom: 8,
        ..config(2)
    })
    .unwrap();
    let (listener, client, backend) = (udp(), udp(), udp());
    let upstream = udp();
    upstream.connect(backend.local_addr().unwrap()).unwrap();
    d.recv_multishot(listener.as_raw_fd(), 1).unwrap();
    client
        .send_to(b"abc", listener.local_addr().unwrap())
        .unwrap();
    let bid = completions(&mut d, 1)[0].buffer().unwrap();
    assert!(d.lease(bid));
    d.send(upstream.as_raw_fd(), bid, b"PP", 3, 2).unwrap();
    assert!(
        d.send(upstream.as_raw_fd(), bid, &[0; 9], 3, 3).is_err(),
        "past the headroom"
    );
    let sent = completions(&mut d, 1);
    assert_eq!((sent[0].token(), sent[0].result()), (2, 5));
    let mut buf = [0u8; 16];
    let n = backend.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"PPabc");
}

#[test]
fn no_free_buffer_ends_the_receive_with_enobufs() {
    let mut d = Epoll::new(&config(2)).unwrap();
    let (listener, client) = (udp(), udp());
    for i in 0..3u8 {
        client
            .send_to(&[i], listener.local_addr().unwrap())
            .unwrap();
    }
    d.recv_multishot(listener.as_raw_fd(), 5).unwrap();
    let got = completions(&mut d, 3);
    let with_buffer: Vec<_> = got.iter().filter(|c| c.buffer().is_some()).collect();
    assert_eq!(with_buffer.len(), 2);
    let last = got.last().unwrap();
    assert_eq!((last.result(), last.more()), (-libc::ENOBUFS, false));
    assert_eq!(d.in_flight(), 0);
    assert_eq!(d.buffers_leased(), 2, "both named by completions, not free");
}

#[test]
fn a_cancelled_receive_ends_once_and_a_missing_one_is_enoent() {
    let mut d = Epoll::new(&config(2)).unwrap();
    let listener = udp();
    d.recv_multishot(listener.as_raw_fd(), 5).unwrap();
    assert!(
        d.recv_multishot(listener.as_raw_fd(), 6).is_err(),
        "one at a time"
    );
    d.cancel(5, 100).unwrap();
    d.cancel(5, 101).unwrap();
    let got = completions(&mut d, 3);
    let results: Vec<(u64, i32, bool)> = got
        .iter()
        .map(|c| (c.token(), c.result(), c.more()))
        .collect();
    assert_eq!(
        results,
        [
            (5, -libc::ECANCELED, false),
            (100, 0, false),
            (101, -libc::ENOENT, false)
        ]
    );
    assert_eq!(d.in_flight(), 0);
}

#[test]
fn the_tick_and_a_lent_timer_fire_and_a_timer_can_be_cancelled() {
    let mut d = Epoll::new(&config(2)).unwrap();
    d.tick(3).unwrap();
    d.timer(0, Duration::from_millis(1), 7).unwrap();
    assert!(d.timer(0, Duration::from_millis(1), 8).is_err(), "armed");
    let got = completions(&mut d, 2);
    assert!(
        got.iter()
            .any(|c| c.token() == 3 && c.result() == -libc::ETIME)
    );
    let timer = got.iter().find(|c| c.token() != 3).unwrap();
    assert_eq!(
        Lent::decode(timer.token()),
        Some(Lent {
            op: LentOp::Timer { timer: 0 },
            tag: 7
        })
    );
    assert_eq!(timer.result(), -libc::ETIME);
    d.timer(0, Duration::from_secs(60), 9).unwrap();
    d.cancel_timer(0).unwrap();
    let got = completions(&mut d, 2);
    assert!(got.iter().any(|c| c.result() == -libc::ECANCELED));
    assert_eq!(d.in_flight(), 0);
}

#[test]
fn a_stream_connects_sends_and_receives_and_a_wake_is_read() {
    let mut d = Epoll::new(&config(2)).unwrap();
    let server = TcpListener::bind("127.0.0.1:0").unwrap();
    let socket = crate::sys::socket::tcp_client(server.local_addr().unwrap()).unwrap();
    let fd = socket.as_raw_fd();
    d.stream_connect(0, fd, server.local_addr().unwrap(), 1)
        .unwrap();
    let (mut peer, _) = server.accept().unwrap();
    let got = completions(&mut d, 1);
    assert_eq!(
        Lent::decode(got[0].token()).map(|l| l.op),
        Some(LentOp::Connect { stream: 0 })
    );
    assert_eq!(got[0].result(), 0);
    d.stream_send(0, fd, b"PING\r\n".to_vec(), 1).unwrap();
    d.stream_recv(0, fd, 1).unwrap();
    let mut line = [0u8; 6];
    peer.read_exact(&mut line).unwrap();
    assert_eq!(&line, b"PING\r\n");
    peer.write_all(b"+PONG\r\n").unwrap();
    let got = completions(&mut d, 2);
    let recv = got
        .iter()
        .find(|c| Lent::decode(c.token()).map(|l| l.op) == Some(LentOp::Recv { stream: 0 }))
        .unwrap();
    assert_eq!(d.stream_received(0, recv.result() as usize), b"+PONG\r\n");
    assert_eq!(d.stream_sent(0), b"PING\r\n");
    // A receive waiting on the stream is cancelled with every other operation on its socket.
    d.stream_recv(0, fd, 2).unwrap();
    d.cancel_fd(fd).unwrap();
    let got = completions(&mut d, 2);
    assert!(got.iter().any(|c| c.result() == -libc::ECANCELED));
    let wake = eventfd::eventfd().unwrap();
    d.read_wake(wake.as_raw_fd(), 4).unwrap();
    eventfd::signal(&std::fs::File::from(wake.try_clone().unwrap())).unwrap();
    let got = completions(&mut d, 1);
    assert_eq!((got[0].token(), got[0].result()), (4, 8));
    assert_eq!(d.in_flight(), 0);
}
