//! Real client addresses for backends: PROXY protocol v2 headers decoded by an independent
//! implementation (the `ppp` crate), a backend that handles them as CloudburstMC's RakNet
//! transport does, and replies from the address a client sent to.

mod util;

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use ppp::v2::{Addresses, Command, Header, Protocol};
use util::*;

/// `(source, destination)` of a v2 header at the start of `datagram`, and the payload after it.
fn decode(datagram: &[u8]) -> ((SocketAddr, SocketAddr), Vec<u8>) {
    let header = Header::try_from(datagram).expect("a PROXY v2 header");
    assert_eq!(header.command, Command::Proxy);
    assert_eq!(header.protocol, Protocol::Datagram);
    let addrs = match header.addresses {
        Addresses::IPv4(a) => (
            SocketAddr::from((a.source_address, a.source_port)),
            SocketAddr::from((a.destination_address, a.destination_port)),
        ),
        Addresses::IPv6(a) => (
            SocketAddr::from((a.source_address, a.source_port)),
            SocketAddr::from((a.destination_address, a.destination_port)),
        ),
        other => panic!("unexpected addresses {other:?}"),
    };
    (addrs, datagram[header.len()..].to_vec())
}

fn proxied(listen: &str, backend: SocketAddr, every: bool) -> ringgate::Proxy {
    let mut cfg = config(listen, &[backend]);
    cfg.proxy_protocol = true;
    cfg.proxy_protocol_every = every;
    start(cfg)
}

#[test]
fn the_first_datagram_of_each_session_carries_the_clients_address() {
    for (family, bind) in [("IPv4", LOCAL4), ("IPv6", LOCAL6)] {
        let backend = Backend::start(bind, false);
        let proxy = proxied(bind, backend.addr, false);
        let client = udp(bind);
        for payload in [&b"first"[..], b"second", b"third"] {
            client.send_to(payload, proxy.local_addr()).unwrap();
        }
        let (_, first) = backend.next();
        let ((source, destination), payload) = decode(&first);
        assert_eq!(source, client.local_addr().unwrap(), "{family}");
        assert_eq!(destination, proxy.local_addr(), "{family}");
        assert_eq!(payload, b"first", "{family}: the payload is intact");
        // Later datagrams are plain.
        assert_eq!(backend.next().1, b"second", "{family}");
        assert_eq!(backend.next().1, b"third", "{family}");
        proxy.shutdown().unwrap();
    }
}

#[test]
fn every_datagram_carries_it_with_the_flag_and_none_without_it() {
    let backend = Backend::start(LOCAL4, false);
    let proxy = proxied(LOCAL4, backend.addr, true);
    let client = udp(LOCAL4);
    for n in 0..3u8 {
        client.send_to(&[n; 10], proxy.local_addr()).unwrap();
        let ((source, _), payload) = decode(&backend.next().1);
        assert_eq!(source, client.local_addr().unwrap());
        assert_eq!(payload, [n; 10]);
    }
    proxy.shutdown().unwrap();

    let plain = start(config(LOCAL4, &[backend.addr]));
    client.send_to(b"plain", plain.local_addr()).unwrap();
    assert_eq!(
        backend.next().1,
        b"plain",
        "no header without --proxy-protocol"
    );
    plain.shutdown().unwrap();
}

#[test]
fn an_ipv4_client_of_a_dual_stack_listener_is_named_inet() {
    let backend = Backend::start(LOCAL4, false);
    let mut cfg = config("[::]:0", &[backend.addr]);
    cfg.proxy_protocol = true;
    let proxy = start(cfg);
    let client = udp(LOCAL4);
    let to = SocketAddr::from(([127, 0, 0, 1], proxy.local_addr().port()));
    client.send_to(b"v4", to).unwrap();
    let datagram = backend.next().1;
    let header = Header::try_from(&datagram[..]).unwrap();
    let Addresses::IPv4(a) = header.addresses else {
        panic!("a mapped IPv4 client must be INET: {:?}", header.addresses)
    };
    assert_eq!(
        SocketAddr::from((a.source_address, a.source_port)),
        client.local_addr().unwrap()
    );
    assert_eq!(
        SocketAddr::from((a.destination_address, a.destination_port)),
        to
    );
    proxy.shutdown().unwrap();
}

/// A backend that handles PROXY v2 the way CloudburstMC's RakNet transport does: the first
/// datagram from a source must carry a header, which is stripped and the real address cached;
/// later datagrams from that source are plain. It echoes payloads, prefixed with the real
/// address it attributes them to.
struct ProxyAwareBackend {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    errors: mpsc::Receiver<String>,
}

impl ProxyAwareBackend {
    fn start() -> ProxyAwareBackend {
        let socket = udp(LOCAL4);
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let addr = socket.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, errors) = mpsc::channel();
        let thread = std::thread::spawn({
            let stop = Arc::clone(&stop);
            move || {
                let mut real: HashMap<SocketAddr, SocketAddr> = HashMap::new();
                let mut buf = [0u8; 2048];
                while !stop.load(Ordering::Relaxed) {
                    let Ok((n, from)) = socket.recv_from(&mut buf) else {
                        continue;
                    };
                    let payload = match real.get(&from) {
                        Some(_) => buf[..n].to_vec(),
                        None => match Header::try_from(&buf[..n]) {
                            Ok(h) => {
                                let Addresses::IPv4(a) = h.addresses else {
                                    continue;
                                };
                                real.insert(
                                    from,
                                    SocketAddr::from((a.source_address, a.source_port)),
                                );
                                buf[h.len()..n].to_vec()
                            }
                            Err(e) => {
                                let _ = tx.send(format!(
                                    "first datagram from {from} had no header: {e:?}"
                                ));
                                continue;
                            }
                        },
                    };
                    let mut reply = format!("{}|", real[&from]).into_bytes();
                    reply.extend(payload);
                    socket.send_to(&reply, from).unwrap();
                }
            }
        });
        ProxyAwareBackend {
            addr,
            stop,
            thread: Some(thread),
            errors,
        }
    }
}

impl Drop for ProxyAwareBackend {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[test]
fn a_full_exchange_with_a_backend_that_strips_the_header() {
    let backend = ProxyAwareBackend::start();
    let proxy = proxied(LOCAL4, backend.addr, false);
    let clients: Vec<UdpSocket> = (0..5).map(player).collect();
    for round in 0..4 {
        for c in &clients {
            let sent = format!("round {round}");
            c.send_to(sent.as_bytes(), proxy.local_addr()).unwrap();
            let (reply, _) = recv(c);
            let expected = format!("{}|{sent}", c.local_addr().unwrap());
            assert_eq!(String::from_utf8(reply).unwrap(), expected);
        }
    }
    assert!(
        backend.errors.try_recv().is_err(),
        "the backend saw a datagram it could not attribute"
    );
    proxy.shutdown().unwrap();
}

#[test]
fn a_wildcard_listener_answers_from_and_names_the_address_the_client_used() {
    // An IPv4 wildcard, and the dual-stack one (`:PORT`, `0.0.0.0:PORT` from the command line).
    for (listen, targets) in [
        ("0.0.0.0:0", &["127.0.0.2", "127.0.0.3"][..]),
        ("[::]:0", &["127.0.0.2", "[::1]"][..]),
    ] {
        wildcard_case(listen, targets);
    }
}

fn wildcard_case(listen: &str, targets: &[&str]) {
    let backend = Backend::start(LOCAL4, true);
    let mut cfg = config(listen, &[backend.addr]);
    cfg.proxy_protocol = true;
    let proxy = start(cfg);
    let port = proxy.local_addr().port();
    for secondary in targets {
        let to: SocketAddr = format!("{secondary}:{port}").parse().unwrap();
        let client = udp(if to.is_ipv4() { LOCAL4 } else { LOCAL6 });
        client.send_to(b"which one?", to).unwrap();
        let (reply, from) = recv(&client);
        assert_eq!(
            from, to,
            "the reply must come from the address the client sent to"
        );
        // The echo carries the header back: it names the same destination.
        let ((source, destination), payload) = decode(&reply);
        assert_eq!(source, client.local_addr().unwrap());
        assert_eq!(destination, to);
        assert_eq!(payload, b"which one?");
    }
    proxy.shutdown().unwrap();
}
