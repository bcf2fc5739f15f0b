/* The layout shared between bpf/xdp_forward.c and its loader, src/sys/xdp/: the flow map's key
 * and value, and the counter indices. Defined once here; the Rust mirror in
 * src/sys/xdp/layout.rs is checked against the loaded maps' key and value sizes when the object
 * is loaded, and its counter list against the counter array's length.
 *
 * Every address and port is in network byte order, as on the wire. */
#ifndef RINGGATE_XDP_FORWARD_H
#define RINGGATE_XDP_FORWARD_H

#include <linux/types.h>

/* One direction of one confirmed session, as its datagrams arrive: client -> listen address, or
 * backend -> upstream address. 12 bytes, no padding. */
struct flow_key {
	__be32 saddr;
	__be32 daddr;
	__be16 sport;
	__be16 dport;
};

/* What a datagram of that direction becomes: upstream -> backend, or listen -> client.
 * last_seen_ns is CLOCK_MONOTONIC (bpf_ktime_get_ns), written by the program when it forwards
 * (at most once per LAST_SEEN_GRANULARITY_NS per entry); the loader inserts 0. 24 bytes, the
 * padding named so that both sides write it as zero. */
struct flow_value {
	__be32 saddr;
	__be32 daddr;
	__be16 sport;
	__be16 dport;
	__u32 _pad;
	__u64 last_seen_ns;
};

/* Indices into the per-CPU counter array. Append only: the loader names them in this order. */
enum counter {
	/* Forwarded out of the interface it came in on (XDP_TX). */
	COUNTER_FORWARDED_TX = 0,
	/* Forwarded to another interface through the device map (XDP_REDIRECT). */
	COUNTER_FORWARDED_REDIRECT,
	/* Passed: not IPv4 over Ethernet (IPv6, ARP, VLAN tags...). */
	COUNTER_PASS_NOT_IPV4,
	/* Passed: IPv4 but not UDP. */
	COUNTER_PASS_NOT_UDP,
	/* Passed: IPv4 header with options (IHL > 5). */
	COUNTER_PASS_IP_OPTIONS,
	/* Passed: a fragment (MF set or a non-zero offset). */
	COUNTER_PASS_FRAGMENT,
	/* Passed: headers shorter than they claim, or lengths that disagree. */
	COUNTER_PASS_MALFORMED,
	/* Passed: no flow for this 4-tuple (the normal path handles it). */
	COUNTER_PASS_MISS,
	/* Passed: TTL would expire here; the stack answers. */
	COUNTER_PASS_TTL,
	/* Passed: bpf_fib_lookup returned anything but success (no route, no neighbour, MTU...). */
	COUNTER_PASS_FIB,
	/* Passed: the next hop is on an interface that is not in the device map. */
	COUNTER_PASS_NO_EGRESS,
	/* Dropped: bpf_redirect_map refused after the rewrite (the device left the map between
	 * the lookup and the redirect). The frame was already rewritten, so it cannot be passed. */
	COUNTER_DROP_REDIRECT,
	COUNTER_MAX,
};

#endif
