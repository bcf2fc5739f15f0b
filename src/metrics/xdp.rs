//! What `/metrics` says of the XDP fast path: whether it runs, where, what its program did with
//! each frame (its per-CPU counters, read at each scrape), and the sessions each worker has
//! offloaded. The workers' own XDP counters (offloads, idle checks) are in the catalogue with
//! the others.

use super::text::{Kind, Text};
use crate::stats::Shared;

pub(super) fn xdp(t: &mut Text, shared: &Shared) {
    t.family(
        "ringgate_xdp_info",
        "The XDP fast path: off (no --xdp), attached, or socket_path (asked for but it could not start; the log says why)",
        Kind::Gauge,
    )
    .sample(&[("state", shared.xdp_state)], 1);
    let Some(status) = &shared.xdp else {
        return;
    };
    t.family(
        "ringgate_xdp_attached",
        "Interfaces the XDP program is attached to, and how (native or generic)",
        Kind::Gauge,
    );
    for (interface, mode) in &status.attached {
        t.sample(&[("interface", interface), ("mode", mode)], 1);
    }
    // A failed read leaves the family out of this scrape rather than reporting zeros.
    if let Ok(packets) = status.packets() {
        t.family(
            "ringgate_xdp_packets",
            "Frames the XDP program saw: forwarded (rewritten and sent from the driver), passed to the socket path, or dropped, by reason",
            Kind::Counter,
        );
        for (action, reason, n) in packets {
            t.sample(&[("action", action), ("reason", reason)], n);
        }
    }
    t.family(
        "ringgate_xdp_sessions",
        "Sessions whose datagrams the XDP program forwards, per worker",
        Kind::Gauge,
    );
    let mut total = 0;
    for (worker, stats) in shared.stats.iter().enumerate() {
        total += stats.offloaded();
        t.sample(&[("worker", &worker.to_string())], stats.offloaded());
    }
    t.family(
        "ringgate_xdp_flows",
        "Entries in the XDP flow map that this process inserted (two per offloaded session)",
        Kind::Gauge,
    )
    .sample(&[], total * 2);
    t.family(
        "ringgate_xdp_flows_capacity",
        "Entries the XDP flow map holds at most; sessions beyond it forward on the socket path",
        Kind::Gauge,
    )
    .sample(&[], status.capacity);
}
