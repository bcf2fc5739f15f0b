// SPDX-License-Identifier: MIT OR Apache-2.0
/* ringgate's XDP fast path for confirmed sessions.
 *
 * A datagram whose 4-tuple is in `flows` is rewritten to the 4-tuple the entry names (client ->
 * listen becomes upstream -> backend, and back), its IPv4 and UDP checksums updated
 * incrementally, its TTL decremented, its MACs set from bpf_fib_lookup, and sent: XDP_TX when
 * the next hop is out of the interface it came in on, else a redirect through `tx_ports`.
 * Everything else passes to the stack untouched: non-IPv4, non-UDP, IP options, fragments,
 * malformed headers, misses, a TTL about to expire, any lookup that is not a success, and an
 * egress interface not in `tx_ports`. The packet is not written until every lookup has
 * succeeded, so a pass always passes the original.
 *
 * Checksums are updated, not recomputed (RFC 1624, eqn. 3), so a datagram that arrived with a
 * wrong checksum leaves with a wrong checksum and its receiver drops it. A zero UDP checksum
 * ("none", RFC 768) stays zero; a computed zero is sent as 0xffff.
 *
 * Build with scripts/build-bpf; the object is checked in as bpf/xdp_forward.o. */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "xdp_forward.h"

#ifndef AF_INET
#define AF_INET 2
#endif

/* IPv4 fragment bits in frag_off (host order after bpf_ntohs): more fragments, offset. */
#define IP_MF 0x2000
#define IP_OFFSET 0x1fff

/* The program stores last_seen_ns only when the stored value is at least this old, so a busy
 * flow does not write its entry's cache line on every datagram from every CPU. 1 ms is far
 * below any idle timeout ringgate reads it against (seconds). */
#define LAST_SEEN_GRANULARITY_NS 1000000ULL

/* Default capacities; the loader may set others before loading. Flows: two entries per
 * session. Ports: one per interface ringgate attaches to. */
#define FLOWS_MAX 65536
#define TX_PORTS_MAX 64

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, FLOWS_MAX);
	__type(key, struct flow_key);
	__type(value, struct flow_value);
} flows SEC(".maps");

/* Egress interfaces, keyed by ifindex; the value names the same ifindex (and no chained
 * program). The full bpf_devmap_val, not a bare ifindex, because that is what aya writes on
 * kernels that know it (5.8 and later). */
struct {
	__uint(type, BPF_MAP_TYPE_DEVMAP_HASH);
	__uint(max_entries, TX_PORTS_MAX);
	__type(key, __u32);
	__type(value, struct bpf_devmap_val);
} tx_ports SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, COUNTER_MAX);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

static __always_inline int count(__u32 reason, int action)
{
	__u64 *value = bpf_map_lookup_elem(&counters, &reason);

	if (value)
		*value += 1;
	return action;
}

/* One's-complement sum folded to 16 bits. */
static __always_inline __u16 csum_fold(__u32 sum)
{
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__u16)sum;
}

/* Adds to `sum` (an accumulator started at ~checksum) the change of one 16-bit word from `from`
 * to `to`: ~m + m' of RFC 1624 eqn. 3. Words are taken as they lie in memory; one's-complement
 * sums do not depend on byte order as long as every word is read the same way. */
static __always_inline __u32 csum_word(__u32 sum, __u16 from, __u16 to)
{
	return sum + (__u16)~from + to;
}

static __always_inline __u32 csum_addr(__u32 sum, __be32 from, __be32 to)
{
	sum = csum_word(sum, (__u16)(from >> 16), (__u16)(to >> 16));
	return csum_word(sum, (__u16)from, (__u16)to);
}

SEC("xdp")
int xdp_forward(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *iph;
	struct udphdr *udp;
	struct flow_key key;
	struct flow_value *flow;
	struct bpf_fib_lookup fib = {};
	__u16 tot_len, udp_len, ttl_proto_old, ttl_proto_new;
	__u32 sum;
	__u64 now;
	int rc;

	if ((void *)(eth + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP))
		return count(COUNTER_PASS_NOT_IPV4, XDP_PASS);
	iph = (void *)(eth + 1);
	if ((void *)(iph + 1) > data_end)
		return count(COUNTER_PASS_MALFORMED, XDP_PASS);
	if (iph->version != 4)
		return count(COUNTER_PASS_MALFORMED, XDP_PASS);
	if (iph->protocol != IPPROTO_UDP)
		return count(COUNTER_PASS_NOT_UDP, XDP_PASS);
	if (iph->ihl != 5)
		return count(COUNTER_PASS_IP_OPTIONS, XDP_PASS);
	if (iph->frag_off & bpf_htons(IP_MF | IP_OFFSET))
		return count(COUNTER_PASS_FRAGMENT, XDP_PASS);
	udp = (void *)(iph + 1);
	if ((void *)(udp + 1) > data_end)
		return count(COUNTER_PASS_MALFORMED, XDP_PASS);
	/* The IP length must fit in the frame (Ethernet may pad short frames, so it may be less)
	 * and the UDP length in the IP payload: what the stack would drop is left to it. */
	tot_len = bpf_ntohs(iph->tot_len);
	udp_len = bpf_ntohs(udp->len);
	if (tot_len < sizeof(*iph) + sizeof(*udp) || (void *)iph + tot_len > data_end ||
	    udp_len < sizeof(*udp) || udp_len > tot_len - sizeof(*iph))
		return count(COUNTER_PASS_MALFORMED, XDP_PASS);

	key.saddr = iph->saddr;
	key.daddr = iph->daddr;
	key.sport = udp->source;
	key.dport = udp->dest;
	flow = bpf_map_lookup_elem(&flows, &key);
	if (!flow)
		return count(COUNTER_PASS_MISS, XDP_PASS);
	if (iph->ttl <= 1)
		return count(COUNTER_PASS_TTL, XDP_PASS);

	fib.family = AF_INET;
	fib.l4_protocol = IPPROTO_UDP;
	fib.sport = flow->sport;
	fib.dport = flow->dport;
	fib.tot_len = tot_len;
	fib.ifindex = ctx->ingress_ifindex;
	fib.tos = iph->tos;
	fib.ipv4_src = flow->saddr;
	fib.ipv4_dst = flow->daddr;
	rc = bpf_fib_lookup(ctx, &fib, sizeof(fib), 0);
	if (rc != BPF_FIB_LKUP_RET_SUCCESS)
		return count(COUNTER_PASS_FIB, XDP_PASS);
	if (fib.ifindex != ctx->ingress_ifindex && !bpf_map_lookup_elem(&tx_ports, &fib.ifindex))
		return count(COUNTER_PASS_NO_EGRESS, XDP_PASS);

	/* Every lookup succeeded: from here on the frame is ours. */
	now = bpf_ktime_get_ns();
	if (now - flow->last_seen_ns >= LAST_SEEN_GRANULARITY_NS)
		flow->last_seen_ns = now;

	ttl_proto_old = *(__u16 *)&iph->ttl;
	iph->ttl--;
	ttl_proto_new = *(__u16 *)&iph->ttl;
	sum = (__u16)~iph->check;
	sum = csum_word(sum, ttl_proto_old, ttl_proto_new);
	sum = csum_addr(sum, iph->saddr, flow->saddr);
	sum = csum_addr(sum, iph->daddr, flow->daddr);
	iph->check = ~csum_fold(sum);

	if (udp->check) {
		/* The pseudo-header's addresses and the ports; TTL is not in it. */
		sum = (__u16)~udp->check;
		sum = csum_addr(sum, iph->saddr, flow->saddr);
		sum = csum_addr(sum, iph->daddr, flow->daddr);
		sum = csum_word(sum, udp->source, flow->sport);
		sum = csum_word(sum, udp->dest, flow->dport);
		udp->check = ~csum_fold(sum);
		if (!udp->check)
			udp->check = 0xffff;
	}
	iph->saddr = flow->saddr;
	iph->daddr = flow->daddr;
	udp->source = flow->sport;
	udp->dest = flow->dport;

	__builtin_memcpy(eth->h_dest, fib.dmac, ETH_ALEN);
	__builtin_memcpy(eth->h_source, fib.smac, ETH_ALEN);

	if (fib.ifindex == ctx->ingress_ifindex)
		return count(COUNTER_FORWARDED_TX, XDP_TX);
	rc = bpf_redirect_map(&tx_ports, fib.ifindex, 0);
	if (rc != XDP_REDIRECT)
		return count(COUNTER_DROP_REDIRECT, XDP_DROP);
	return count(COUNTER_FORWARDED_REDIRECT, XDP_REDIRECT);
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
