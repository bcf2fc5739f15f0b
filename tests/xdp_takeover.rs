//! A takeover under XDP traffic (`--control` / `--takeover`, both with `--xdp`) over the
//! namespace testbed of `util::xdpbed`: the old process hands its program, maps and links to
//! the new one, so the program stays attached (the same program, by id), no entry is lost, and
//! confirmed sessions' datagrams keep flowing through XDP before, during and after the
//! handover with none lost; the new process counts the adopted sessions as offloaded.
//!
//! Needs root; skipped, saying why, otherwise.

mod util;

use std::net::UdpSocket;
use std::process::Child;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use util::netns;
use util::xdpbed::{Bed, confirm, socket_forwarded, xdp_forwarded};
use util::{PATIENCE, wait_for};

const CLIENTS: u16 = 8;
/// The load's bounds, whatever happens.
const LOAD_MAX: u64 = 200_000;
const LOAD_LIMIT: Duration = Duration::from_secs(40);

/// Round trips, one client after another, until `stop`: (sent, answered, wrong answers).
fn load(clients: Vec<UdpSocket>, stop: Arc<AtomicBool>) -> (u64, u64, u64) {
    let started = Instant::now();
    let (mut sent, mut answered, mut wrong) = (0u64, 0u64, 0u64);
    let mut buf = [0u8; 64];
    while !stop.load(Ordering::Relaxed) && sent < LOAD_MAX && started.elapsed() < LOAD_LIMIT {
        let client = &clients[(sent % clients.len() as u64) as usize];
        let payload = sent.to_be_bytes();
        client.send(&payload).unwrap();
        sent += 1;
        match client.recv(&mut buf) {
            Ok(n) if buf[..n] == payload => answered += 1,
            Ok(_) => wrong += 1,
            Err(_) => {}
        }
    }
    (sent, answered, wrong)
}

/// The id of the XDP program attached to `dev` in the forwarder ns, if any.
fn program_id(bed: &Bed, dev: &str) -> Option<String> {
    let out = bed.forwarder.ip(&["-d", "link", "show", "dev", dev]).stdout;
    let at = out.find("prog/xdp id ")?;
    let id = out[at + "prog/xdp id ".len()..].split_whitespace().next()?;
    Some(id.to_owned())
}

fn wait_exit(child: &mut Child) -> std::process::ExitStatus {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "the old process did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_takeover_under_xdp_traffic_keeps_the_program_and_every_entry_and_loses_nothing() {
    if netns::skip("takeover") {
        return;
    }
    let bed = Bed::new("xdp-takeover");
    let control = bed.dir.join("control.sock");
    let control = control.to_str().unwrap();
    let xdp = ["--xdp", "x0,y0", "--xdp-mode", "native"];
    let mut old = bed.ringgate(&[&xdp[..], &["--control", control]].concat());
    old.ready_line();
    let before = [program_id(&bed, "x0"), program_id(&bed, "y0")];
    assert!(before.iter().all(Option::is_some), "attached: {before:?}");
    let clients: Vec<UdpSocket> = (0..CLIENTS).map(|i| bed.client(6000 + i)).collect();
    for c in &clients {
        confirm(c);
    }
    wait_for("every session offloaded", || {
        bed.metric(r#"ringgate_xdp_sessions{worker="0"}"#) == u64::from(CLIENTS)
    });
    let stop = Arc::new(AtomicBool::new(false));
    let load = std::thread::spawn({
        let stop = Arc::clone(&stop);
        move || load(clients, stop)
    });
    let flowing = xdp_forwarded(&bed);
    wait_for("traffic through XDP", || {
        xdp_forwarded(&bed) > flowing + 200
    });

    let takeover = [&xdp[..], &["--control", control, "--takeover", control]].concat();
    let new = bed.ringgate(&takeover);
    new.wait_line("the takeover", |l| {
        l.contains("took over from the running ringgate")
    });
    let status = wait_exit(&mut old.child);
    assert!(status.success(), "the old process exits cleanly: {status}");
    // The old process is gone; its copies of the links with it. Traffic still flows in XDP.
    let after_exit = xdp_forwarded(&bed);
    wait_for("traffic through XDP after the old process exited", || {
        xdp_forwarded(&bed) > after_exit + 200
    });
    stop.store(true, Ordering::Relaxed);
    let (sent, answered, wrong) = load.join().unwrap();
    eprintln!("round trips through the takeover: {sent} sent, {answered} answered");
    assert_eq!(wrong, 0, "no answer out of order or mangled");
    assert_eq!(
        answered, sent,
        "every round trip answered: {answered} of {sent}"
    );

    let after = [program_id(&bed, "x0"), program_id(&bed, "y0")];
    assert_eq!(after, before, "the same program stays attached");
    // Published at the new worker's next batch (its reaper tick: no datagram reaches it).
    wait_for(
        "the new process to count the adopted sessions as offloaded",
        || {
            bed.metric(r#"ringgate_xdp_offloads_total{result="offloaded"}"#) == u64::from(CLIENTS)
                && bed.metric(r#"ringgate_xdp_sessions{worker="0"}"#) == u64::from(CLIENTS)
        },
    );
    let m = bed.metrics();
    assert_eq!(
        util::sample(&m, r#"ringgate_xdp_info{state="attached"}"#),
        Some(1)
    );
    assert_eq!(
        socket_forwarded(&bed),
        0,
        "the new process's sockets forwarded none of it"
    );
    // And when the new process stops, the program goes with it.
    new.signal("TERM");
    let mut new = new;
    let status = wait_exit(&mut new.child);
    assert!(status.success(), "{status}");
    assert_eq!(program_id(&bed, "x0"), None, "detached at exit");
}
