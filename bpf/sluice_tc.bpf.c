// SPDX-License-Identifier: GPL-2.0
/*
 * sluice TC data plane: per-packet translation for traffic that does not start
 * in a cgroup socket mode serves (north-south, other nodes, an ingress
 * gateway's address). DESIGN.md §11.
 *
 * Attached with tcx links to the ingress and egress of the interfaces sluiced
 * is given (--tc), typically the node's uplink:
 *   ingress: a packet to a service address:port (a VIP or a gateway address)
 *            is DNATed to the endpoint its flow is pinned to; a flow's first
 *            packet picks the endpoint exactly as socket mode does at connect()
 *            (same records, same generation switch, same round-robin state);
 *   egress:  a reply from an endpoint is SNATed back to the address the client
 *            dialled, so the client never sees a pod address.
 * ICMP errors about a translated flow are translated in both directions.
 * Egress on the same interface, rather than ingress on every pod-facing veth,
 * because the reply of a flow that came in through the uplink leaves through
 * it, pods come and go while the uplink stays, and one pair of links serves
 * every pod behind the node.
 *
 * Packets sluice does not translate, and why (tests/prog fixtures show each):
 *   - fragments (IPv4 MF or offset, IPv6 fragment header) and IPv6 packets with
 *     extension headers: passed untouched. A later fragment carries no port to
 *     match, and translating the first alone would split a datagram between
 *     two destinations; non-service traffic that happens to be fragmented must
 *     keep flowing. A fragmented datagram to a service is not delivered: send
 *     UDP below the path MTU (TCP never fragments: DF and PMTU discovery).
 *   - truncated or inconsistent headers (IPv4 ihl < 5, total length past the
 *     frame, TCP data offset < 5 or past the segment, short UDP/ICMP header):
 *     passed untouched; the kernel's own IP/TCP/UDP checks drop them.
 *   - IPv4 options are not malformed: such packets are translated, the
 *     transport header found at ihl * 4, the options kept as they were.
 *   - ICMP errors quoting a packet with IPv4 options or IPv6 extension
 *     headers, or quoting less than 8 bytes of its transport header: passed.
 *   - a rewrite helper failing half-way: the packet is dropped, never sent
 *     half-rewritten.
 *
 * Conntrack full: `tc_flows` is an LRU, so a new flow always gets an entry and
 * is translated; the kernel evicts least recently used entries in batches.
 * A TCP segment other than a SYN to a service with no flow entry (evicted,
 * expired, or started before sluice) is answered with a RST: the client sees
 * its connection reset rather than its bytes landing on another endpoint.
 * A new entry is looked up once right after its insertion, so it starts
 * referenced and survives the next batch eviction (a handshake in flight
 * keeps its entry); and since the LRU evicts entries, not pairs, each
 * direction puts its partner entry back, at most a second later, if it went
 * alone: a flow that carries packets either way keeps both.
 */
#include "sluice.bpf.h"

char LICENSE[] SEC("license") = "GPL";

#define ETH_HLEN 14
#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define IP_MF 0x2000
#define IP_OFFSET 0x1fff
#define IP_DF 0x4000
#define NEXTHDR_ICMP 58
#define NEXTHDR_FRAGMENT 44

#define TCP_FIN 0x01
#define TCP_SYN 0x02
#define TCP_RST 0x04
#define TCP_ACK 0x10

/* tcx verdicts (the same numbers as TC_ACT_UNSPEC, _SHOT, _REDIRECT for clsact). */
#define TC_NEXT (-1)        /* not ours, or translated: later programs and the stack go on */
#define TC_DROP 2
#define TC_REDIRECT 7

#define NSEC_PER_SEC 1000000000ull
/* A flow's idle timeouts: SLUICE_CT_TIMEOUT_NS() of sluice_abi.h, which sluice status counts live flows by too. */

/*
 * tc_flows: LRU_HASH, two entries per flow: forward {client, service address,
 * ports} -> endpoint, reverse {endpoint, client, ports} -> service address.
 * LRU because packets, not userspace, create flows: a full table must still
 * take new flows (DESIGN.md §2, property 9: never refused for want of room), and
 * a lookup refreshes an entry, so flows that carry packets stay. One map for
 * both directions so one size bounds it. Common LRU (not per-CPU): a flow's
 * two directions are handled on different CPUs. Size: 2 x --tc-flows
 * (default SLUICE_TC_FLOWS_DEFAULT flows: 18 MiB locked, bench/results). Addresses and ports as on
 * the wire (network byte order), unlike the routing maps: its layout is kept
 * from release to release, and a restart or an upgrade of sluiced reuses the
 * pinned table, so flows in progress keep their endpoints. Written and read by
 * both TC programs; read by sluice status (live flows) and bpftool.
 */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 2 * SLUICE_TC_FLOWS_DEFAULT);
	__type(key, struct sluice_ct_key);
	__type(value, struct sluice_ct);
} tc_flows SEC(".maps");

/*
 * tc_stats: PERCPU_ARRAY of SLUICE_TC_STATS __u64, indexed by enum
 * sluice_tc_stat (include/sluice_abi.h names each index): per-packet counters
 * without a shared cache line; readers sum the CPUs. Written by the TC
 * programs, read by sluice status and bpftool.
 */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SLUICE_TC_STATS);
	__type(key, __u32);
	__type(value, __u64);
} tc_stats SEC(".maps");

static __always_inline void stat(__u32 which)
{
	__u64 *n = bpf_map_lookup_elem(&tc_stats, &which);

	if (n)
		*n += 1;
}

/* One packet's addresses and transport header, as far as translation needs them. */
struct pkt {
	struct sluice_addr src, dst;
	__be16 sport, dport;
	__u32 l4_off;       /* transport header, from the start of the frame */
	__u32 l4_len;       /* transport header and payload, as the IP header says */
	__be32 tcp_seq;
	__u8 family, protocol, tcp_flags, tcp_hlen;
};

/* The packet an ICMP error quotes. */
struct quoted {
	struct sluice_addr src, dst;
	__be16 sport, dport;
	__u32 l3_off, l4_off;
	__u8 protocol;
};

enum verdict {
	P_OTHER,            /* not TCP/UDP nor an ICMP error: not ours */
	P_FLOW,             /* TCP or UDP with ports */
	P_ICMP_ERROR,       /* an ICMP error quoting a TCP or UDP packet */
	P_FRAGMENT,         /* fragment or IPv6 extension header: passed */
	P_MALFORMED,        /* truncated or inconsistent: passed */
};

static __always_inline bool icmp_is_error(__u8 family, __u8 type)
{
	if (family == SLUICE_AF_INET)
		return type == 3 || type == 4 || type == 11 || type == 12;   /* unreachable, quench, time, parameter */
	return type >= 1 && type <= 4;     /* unreachable, too big, time, parameter */
}

static __always_inline enum verdict parse_l4(struct __sk_buff *skb, struct pkt *p)
{
	__u8 h[14];

	switch (p->protocol) {
	case IPPROTO_TCP:
		if (p->l4_len < 20 || bpf_skb_load_bytes(skb, p->l4_off, h, 14))
			return P_MALFORMED;
		p->tcp_hlen = (h[12] >> 4) * 4;
		if (p->tcp_hlen < 20 || p->tcp_hlen > p->l4_len)
			return P_MALFORMED;
		p->tcp_flags = h[13];
		__builtin_memcpy(&p->tcp_seq, &h[4], 4);
		break;
	case IPPROTO_UDP:
		if (p->l4_len < 8 || bpf_skb_load_bytes(skb, p->l4_off, h, 4))
			return P_MALFORMED;
		break;
	case IPPROTO_ICMP:
	case NEXTHDR_ICMP:
		if ((p->protocol == IPPROTO_ICMP) != (p->family == SLUICE_AF_INET))
			return P_OTHER;
		if (p->l4_len < 8 || bpf_skb_load_bytes(skb, p->l4_off, h, 1))
			return P_MALFORMED;
		return icmp_is_error(p->family, h[0]) ? P_ICMP_ERROR : P_OTHER;
	default:
		return P_OTHER;
	}
	__builtin_memcpy(&p->sport, &h[0], 2);
	__builtin_memcpy(&p->dport, &h[2], 2);
	return P_FLOW;
}

static __always_inline enum verdict parse(struct __sk_buff *skb, struct pkt *p)
{
	__be16 proto;

	__builtin_memset(p, 0, sizeof(*p));
	if (bpf_skb_load_bytes(skb, 12, &proto, 2))
		return P_OTHER;
	if (proto == bpf_htons(ETH_P_IP)) {
		struct iphdr ip;
		__u32 hl, tot;

		if (bpf_skb_load_bytes(skb, ETH_HLEN, &ip, sizeof(ip)))
			return P_MALFORMED;
		hl = ip.ihl * 4;
		tot = bpf_ntohs(ip.tot_len);
		if (ip.version != 4 || hl < 20 || tot < hl || ETH_HLEN + tot > skb->len)
			return P_MALFORMED;
		if (ip.frag_off & bpf_htons(IP_MF | IP_OFFSET))
			return P_FRAGMENT;
		p->family = SLUICE_AF_INET;
		p->protocol = ip.protocol;
		addr_w(&p->src)[0] = ip.saddr;
		addr_w(&p->dst)[0] = ip.daddr;
		p->l4_off = ETH_HLEN + hl;
		p->l4_len = tot - hl;
	} else if (proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr ip6;
		__u32 plen;

		if (bpf_skb_load_bytes(skb, ETH_HLEN, &ip6, sizeof(ip6)))
			return P_MALFORMED;
		plen = bpf_ntohs(ip6.payload_len);
		if (ip6.version != 6 || plen == 0 || ETH_HLEN + 40 + plen > skb->len)
			return P_MALFORMED;
		if (ip6.nexthdr != IPPROTO_TCP && ip6.nexthdr != IPPROTO_UDP && ip6.nexthdr != NEXTHDR_ICMP)
			return ip6.nexthdr == 59 ? P_OTHER : P_FRAGMENT;   /* 59: no next header */
		p->family = SLUICE_AF_INET6;
		p->protocol = ip6.nexthdr;
		__builtin_memcpy(addr_w(&p->src), &ip6.saddr, 16);
		__builtin_memcpy(addr_w(&p->dst), &ip6.daddr, 16);
		p->l4_off = ETH_HLEN + 40;
		p->l4_len = plen;
	} else {
		return P_OTHER;
	}
	return parse_l4(skb, p);
}

/* The TCP or UDP packet an ICMP error quotes: its header (no options) and 8 bytes of transport. */
static __always_inline bool parse_quoted(struct __sk_buff *skb, const struct pkt *p, struct quoted *q)
{
	__be16 ports[2];

	__builtin_memset(q, 0, sizeof(*q));
	q->l3_off = p->l4_off + 8;
	if (p->family == SLUICE_AF_INET) {
		struct iphdr ip;

		if (p->l4_len < 8 + 20 + 8 || bpf_skb_load_bytes(skb, q->l3_off, &ip, sizeof(ip)))
			return false;
		if (ip.version != 4 || ip.ihl != 5 || (ip.frag_off & bpf_htons(IP_OFFSET)))
			return false;
		q->protocol = ip.protocol;
		addr_w(&q->src)[0] = ip.saddr;
		addr_w(&q->dst)[0] = ip.daddr;
		q->l4_off = q->l3_off + 20;
	} else {
		struct ipv6hdr ip6;

		if (p->l4_len < 8 + 40 + 8 || bpf_skb_load_bytes(skb, q->l3_off, &ip6, sizeof(ip6)))
			return false;
		if (ip6.version != 6)
			return false;
		q->protocol = ip6.nexthdr;
		__builtin_memcpy(addr_w(&q->src), &ip6.saddr, 16);
		__builtin_memcpy(addr_w(&q->dst), &ip6.daddr, 16);
		q->l4_off = q->l3_off + 40;
	}
	if (q->protocol != IPPROTO_TCP && q->protocol != IPPROTO_UDP)
		return false;
	if (bpf_skb_load_bytes(skb, q->l4_off, ports, 4))
		return false;
	q->sport = ports[0];
	q->dport = ports[1];
	return true;
}

static __always_inline void ct_key(struct sluice_ct_key *k, const struct sluice_addr *src,
				   const struct sluice_addr *dst, __be16 sport, __be16 dport, __u8 protocol,
				   __u8 family, __u8 direction)
{
	__builtin_memset(k, 0, sizeof(*k));
	k->src = *src;
	k->dst = *dst;
	k->sport = sport;
	k->dport = dport;
	k->protocol = protocol;
	k->family = family;
	k->direction = direction;
}

/* ---- rewriting (checksums first, then the bytes; any failure drops the packet) ---- */

static __always_inline __u32 l4_csum_off(const struct pkt *p)
{
	return p->l4_off + (p->protocol == IPPROTO_TCP ? 16 : 6);
}

static __always_inline __u64 l4_mangled(const struct pkt *p)
{
	return p->protocol == IPPROTO_UDP ? BPF_F_MARK_MANGLED_0 : 0;   /* UDP checksum 0: none, keep it */
}

/* The source (dst = false) or destination address of p, its IP and transport checksums. */
static __always_inline int set_addr(struct __sk_buff *skb, const struct pkt *p, bool dst,
				    const struct sluice_addr *from_, const struct sluice_addr *to_)
{
	struct sluice_addr from = *from_, to = *to_;

	if (p->family == SLUICE_AF_INET) {
		if (bpf_l4_csum_replace(skb, l4_csum_off(p), addr_w(&from)[0], addr_w(&to)[0],
					BPF_F_PSEUDO_HDR | l4_mangled(p) | 4) ||
		    bpf_l3_csum_replace(skb, ETH_HLEN + 10, addr_w(&from)[0], addr_w(&to)[0], 4))
			return -1;
		return bpf_skb_store_bytes(skb, ETH_HLEN + (dst ? 16 : 12), &addr_w(&to)[0], 4, 0);
	}
	__s64 diff = bpf_csum_diff(addr_w(&from), 16, addr_w(&to), 16, 0);
	if (diff < 0 || bpf_l4_csum_replace(skb, l4_csum_off(p), 0, diff, BPF_F_PSEUDO_HDR | l4_mangled(p)))
		return -1;
	/* No IPv6 header checksum compensates the address: keep a CHECKSUM_COMPLETE sum right. */
	return bpf_skb_store_bytes(skb, ETH_HLEN + (dst ? 24 : 8), addr_w(&to), 16, BPF_F_RECOMPUTE_CSUM);
}

static __always_inline int set_port(struct __sk_buff *skb, const struct pkt *p, bool dst, __be16 from, __be16 to)
{
	if (from == to)
		return 0;
	if (bpf_l4_csum_replace(skb, l4_csum_off(p), from, to, l4_mangled(p) | 2))
		return -1;
	return bpf_skb_store_bytes(skb, p->l4_off + (dst ? 2 : 0), &to, 2, 0);
}

static __always_inline int rewritten(int err)
{
	if (err) {
		stat(SLUICE_TC_ERRORS);
		return TC_DROP;
	}
	return TC_NEXT;
}

static __always_inline int dnat(struct __sk_buff *skb, const struct pkt *p, const struct sluice_addr *to, __be16 port)
{
	return rewritten(set_addr(skb, p, true, &p->dst, to) || set_port(skb, p, true, p->dport, port));
}

static __always_inline int snat(struct __sk_buff *skb, const struct pkt *p, const struct sluice_addr *to, __be16 port)
{
	return rewritten(set_addr(skb, p, false, &p->src, to) || set_port(skb, p, false, p->sport, port));
}

/*
 * An ICMP error about a translated flow. Toward the endpoint (inner_dst false)
 * the quoted packet is a reply whose source was the service address: it and
 * the outer destination become the endpoint. Toward the client (inner_dst
 * true) the quoted packet went to the endpoint: its destination becomes the
 * service address again, and so does the outer source if the endpoint itself
 * sent the error. The quoted IPv4 header checksum, the quoted transport
 * checksum when the quote holds it (UDP's always, TCP's when 18+ bytes are
 * quoted; a UDP checksum of 0 stays 0) and the ICMP checksum are updated.
 */
static __always_inline int rewrite_icmp(struct __sk_buff *skb, const struct pkt *p, const struct quoted *q,
					bool inner_dst, const struct sluice_addr *to_, __be16 to_port)
{
	struct sluice_addr from = inner_dst ? q->dst : q->src, to = *to_;
	__be16 from_port = inner_dst ? q->dport : q->sport;
	const struct sluice_addr *outer = inner_dst ? &p->src : &p->dst;
	__u32 icmp_csum = p->l4_off + 2;
	__u32 q_csum = q->l4_off + (q->protocol == IPPROTO_TCP ? 16 : 6);
	__u32 outer_off, inner_off;
	__sum16 old_sum = 0, new_sum = 0, old_qsum = 0, new_qsum = 0;
	bool has_qsum = q_csum + 2 <= p->l4_off + p->l4_len;
	__u64 qmangled = q->protocol == IPPROTO_UDP ? BPF_F_MARK_MANGLED_0 : 0;
	__s64 diff = 0;

	if (has_qsum && bpf_skb_load_bytes(skb, q_csum, &old_qsum, 2))
		return rewritten(-1);
	has_qsum = has_qsum && !(q->protocol == IPPROTO_UDP && old_qsum == 0);
	if (p->family == SLUICE_AF_INET) {
		outer_off = ETH_HLEN + (inner_dst ? 12 : 16);
		inner_off = q->l3_off + (inner_dst ? 16 : 12);
		if (addr_eq(outer, &from) &&
		    (bpf_l3_csum_replace(skb, ETH_HLEN + 10, addr_w(&from)[0], addr_w(&to)[0], 4) ||
		     bpf_skb_store_bytes(skb, outer_off, &addr_w(&to)[0], 4, 0)))
			return rewritten(-1);
		if (bpf_skb_load_bytes(skb, q->l3_off + 10, &old_sum, 2) ||
		    bpf_l3_csum_replace(skb, q->l3_off + 10, addr_w(&from)[0], addr_w(&to)[0], 4) ||
		    bpf_skb_load_bytes(skb, q->l3_off + 10, &new_sum, 2) ||
		    bpf_l4_csum_replace(skb, icmp_csum, addr_w(&from)[0], addr_w(&to)[0], 4) ||
		    bpf_l4_csum_replace(skb, icmp_csum, old_sum, new_sum, 2) ||
		    (has_qsum && bpf_l4_csum_replace(skb, q_csum, addr_w(&from)[0], addr_w(&to)[0], BPF_F_PSEUDO_HDR | qmangled | 4)) ||
		    bpf_skb_store_bytes(skb, inner_off, &addr_w(&to)[0], 4, 0))
			return rewritten(-1);
	} else {
		diff = bpf_csum_diff(addr_w(&from), 16, addr_w(&to), 16, 0);
		outer_off = ETH_HLEN + (inner_dst ? 8 : 24);
		inner_off = q->l3_off + (inner_dst ? 24 : 8);
		if (diff < 0)
			return rewritten(-1);
		if (addr_eq(outer, &from) &&
		    (bpf_l4_csum_replace(skb, icmp_csum, 0, diff, BPF_F_PSEUDO_HDR) ||
		     bpf_skb_store_bytes(skb, outer_off, addr_w(&to), 16, BPF_F_RECOMPUTE_CSUM)))
			return rewritten(-1);
		if (bpf_l4_csum_replace(skb, icmp_csum, 0, diff, 0) ||
		    (has_qsum && bpf_l4_csum_replace(skb, q_csum, 0, diff, BPF_F_PSEUDO_HDR | qmangled)) ||
		    bpf_skb_store_bytes(skb, inner_off, addr_w(&to), 16, BPF_F_RECOMPUTE_CSUM))
			return rewritten(-1);
	}
	if (from_port != to_port &&
	    (bpf_l4_csum_replace(skb, icmp_csum, from_port, to_port, 2) ||
	     (has_qsum && bpf_l4_csum_replace(skb, q_csum, from_port, to_port, qmangled | 2)) ||
	     bpf_skb_store_bytes(skb, q->l4_off + (inner_dst ? 2 : 0), &to_port, 2, 0)))
		return rewritten(-1);
	if (has_qsum &&
	    (bpf_skb_load_bytes(skb, q_csum, &new_qsum, 2) ||
	     bpf_l4_csum_replace(skb, icmp_csum, old_qsum, new_qsum, 2)))
		return rewritten(-1);
	stat(SLUICE_TC_ICMP);
	return TC_NEXT;
}

/* ---- answers built in place: a TCP RST, an ICMP port unreachable ---- */

static __always_inline __sum16 csum_fold(__s64 sum)
{
	__u32 s = (__u32)sum;

	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	return (__sum16)~s;
}

struct tcp_min {
	__be16 sport, dport;
	__be32 seq, ack_seq;
	__u8 doff;          /* data offset << 4 */
	__u8 flags;
	__be16 window;
	__sum16 check;
	__be16 urg_ptr;
};

struct pseudo4 {
	__be32 saddr, daddr;
	__u8 zero, protocol;
	__be16 len;
};

struct pseudo6 {
	__be32 saddr[4], daddr[4];
	__be32 len;
	__u8 zero[3], nexthdr;
};

struct icmp_min {
	__u8 type, code;
	__sum16 check;
	__be32 unused;
};

/* The frame's Ethernet header with source and destination swapped: the answer goes back where it came from. */
static __always_inline int eth_reversed(struct __sk_buff *skb, __u8 eth[ETH_HLEN])
{
	__u8 mac[6];

	if (bpf_skb_load_bytes(skb, 0, eth, ETH_HLEN))
		return -1;
	__builtin_memcpy(mac, eth, 6);
	__builtin_memcpy(eth, eth + 6, 6);
	__builtin_memcpy(eth + 6, mac, 6);
	return 0;
}

static __always_inline void ip4_header(struct iphdr *ip, const struct pkt *p, __u8 protocol, __u16 tot_len)
{
	__builtin_memset(ip, 0, sizeof(*ip));
	ip->version = 4;
	ip->ihl = 5;
	ip->tot_len = bpf_htons(tot_len);
	ip->frag_off = bpf_htons(IP_DF);
	ip->ttl = 64;
	ip->protocol = protocol;
	ip->saddr = addr_w(&p->dst)[0];    /* from the address the client dialled */
	ip->daddr = addr_w(&p->src)[0];
	ip->check = csum_fold(bpf_csum_diff(NULL, 0, (__be32 *)ip, sizeof(*ip), 0));
}

static __always_inline void ip6_header(struct ipv6hdr *ip6, const struct pkt *p, __u8 nexthdr, __u16 payload_len)
{
	__builtin_memset(ip6, 0, sizeof(*ip6));
	ip6->version = 6;
	ip6->payload_len = bpf_htons(payload_len);
	ip6->nexthdr = nexthdr;
	ip6->hop_limit = 64;
	__builtin_memcpy(&ip6->saddr, addr_w(&p->dst), 16);
	__builtin_memcpy(&ip6->daddr, addr_w(&p->src), 16);
}

/* The checksum seed of the pseudo header of an answer from p->dst to p->src. */
static __always_inline __s64 pseudo_sum(const struct pkt *p, __u8 protocol, __u16 len)
{
	if (p->family == SLUICE_AF_INET) {
		struct pseudo4 ph = {
			.saddr = addr_w(&p->dst)[0], .daddr = addr_w(&p->src)[0], .protocol = protocol, .len = bpf_htons(len),
		};
		return bpf_csum_diff(NULL, 0, (__be32 *)&ph, sizeof(ph), 0);
	}
	struct pseudo6 ph;
	__builtin_memset(&ph, 0, sizeof(ph));
	__builtin_memcpy(ph.saddr, addr_w(&p->dst), 16);
	__builtin_memcpy(ph.daddr, addr_w(&p->src), 16);
	ph.len = bpf_htonl(len);
	ph.nexthdr = protocol;
	return bpf_csum_diff(NULL, 0, (__be32 *)&ph, sizeof(ph), 0);
}

/* Sends the frame, rewritten into the answer, back out of the interface it came in on. */
static __always_inline int send_back(struct __sk_buff *skb)
{
	return bpf_redirect(skb->ifindex, 0);
}

/*
 * A RST for segment p, from the address it was sent to (RFC 9293 3.10.7.1):
 * acknowledging its sequence space when it had no ACK (a refused SYN reads as
 * ECONNREFUSED), else at the sequence number it acknowledged.
 */
static __always_inline int answer_rst(struct __sk_buff *skb, const struct pkt *p)
{
	__u8 eth[ETH_HLEN];
	struct tcp_min in, out;
	__u32 len = ETH_HLEN + (p->family == SLUICE_AF_INET ? 20 : 40) + sizeof(out);

	if (eth_reversed(skb, eth) || bpf_skb_load_bytes(skb, p->l4_off, &in, sizeof(in)))
		return rewritten(-1);
	__builtin_memset(&out, 0, sizeof(out));
	out.sport = p->dport;
	out.dport = p->sport;
	out.doff = 5 << 4;
	if (in.flags & TCP_ACK) {
		out.seq = in.ack_seq;
		out.flags = TCP_RST;
	} else {
		__u32 seg = p->l4_len - p->tcp_hlen + !!(in.flags & TCP_SYN) + !!(in.flags & TCP_FIN);
		out.ack_seq = bpf_htonl(bpf_ntohl(in.seq) + seg);
		out.flags = TCP_RST | TCP_ACK;
	}
	out.check = csum_fold(bpf_csum_diff(NULL, 0, (__be32 *)&out, sizeof(out),
					    pseudo_sum(p, IPPROTO_TCP, sizeof(out))));
	if (bpf_skb_change_tail(skb, len, 0) || bpf_skb_store_bytes(skb, 0, eth, ETH_HLEN, 0))
		return rewritten(-1);
	if (p->family == SLUICE_AF_INET) {
		struct iphdr ip;
		ip4_header(&ip, p, IPPROTO_TCP, 20 + sizeof(out));
		if (bpf_skb_store_bytes(skb, ETH_HLEN, &ip, sizeof(ip), 0) ||
		    bpf_skb_store_bytes(skb, ETH_HLEN + 20, &out, sizeof(out), 0))
			return rewritten(-1);
	} else {
		struct ipv6hdr ip6;
		ip6_header(&ip6, p, IPPROTO_TCP, sizeof(out));
		if (bpf_skb_store_bytes(skb, ETH_HLEN, &ip6, sizeof(ip6), 0) ||
		    bpf_skb_store_bytes(skb, ETH_HLEN + 40, &out, sizeof(out), 0))
			return rewritten(-1);
	}
	return send_back(skb);
}

/*
 * ICMP port unreachable (ICMPv6 destination unreachable, code 4) for datagram
 * p, from the address it was sent to, quoting its IP header and first 8 bytes
 * of UDP: a connected UDP socket reads ECONNREFUSED.
 */
static __always_inline int answer_port_unreachable(struct __sk_buff *skb, const struct pkt *p)
{
	__u8 eth[ETH_HLEN], quote[68];
	struct icmp_min icmp;
	__u32 qlen = p->l4_off - ETH_HLEN + 8;    /* IPv4: 28..68; IPv6: 48 */
	__s64 sum;

	if (qlen < 28 || qlen > sizeof(quote) || (qlen & 3))
		return rewritten(-1);
	if (eth_reversed(skb, eth) || bpf_skb_load_bytes(skb, ETH_HLEN, quote, qlen))
		return rewritten(-1);
	__builtin_memset(&icmp, 0, sizeof(icmp));
	if (p->family == SLUICE_AF_INET) {
		icmp.type = 3;
		icmp.code = 3;
		sum = 0;
	} else {
		icmp.type = 1;
		icmp.code = 4;
		sum = pseudo_sum(p, NEXTHDR_ICMP, sizeof(icmp) + qlen);
	}
	sum = bpf_csum_diff(NULL, 0, (__be32 *)&icmp, sizeof(icmp), sum);
	icmp.check = csum_fold(bpf_csum_diff(NULL, 0, (__be32 *)quote, qlen, sum));
	__u32 ip_len = p->family == SLUICE_AF_INET ? 20 : 40;
	if (bpf_skb_change_tail(skb, ETH_HLEN + ip_len + sizeof(icmp) + qlen, 0) ||
	    bpf_skb_store_bytes(skb, 0, eth, ETH_HLEN, 0))
		return rewritten(-1);
	if (p->family == SLUICE_AF_INET) {
		struct iphdr ip;
		ip4_header(&ip, p, IPPROTO_ICMP, 20 + sizeof(icmp) + qlen);
		if (bpf_skb_store_bytes(skb, ETH_HLEN, &ip, sizeof(ip), 0))
			return rewritten(-1);
	} else {
		struct ipv6hdr ip6;
		ip6_header(&ip6, p, NEXTHDR_ICMP, sizeof(icmp) + qlen);
		if (bpf_skb_store_bytes(skb, ETH_HLEN, &ip6, sizeof(ip6), 0))
			return rewritten(-1);
	}
	if (bpf_skb_store_bytes(skb, ETH_HLEN + ip_len, &icmp, sizeof(icmp), 0) ||
	    bpf_skb_store_bytes(skb, ETH_HLEN + ip_len + sizeof(icmp), quote, qlen, 0))
		return rewritten(-1);
	return send_back(skb);
}

/* ---- flows ---- */

/* Whether a flow entry still routes p: not idle past its timeout, not a new connection on a closed flow's ports. */
static __always_inline bool flow_alive(const struct sluice_ct *ct, const struct pkt *p, bool syn, __u64 now)
{
	__u64 timeout = SLUICE_CT_TIMEOUT_NS(p->protocol, ct->flags);

	if (now > ct->last_seen && now - ct->last_seen > timeout)
		return false;
	/* A SYN on a closed flow's ports is a new connection, unless it repeats the flow's own SYN. */
	if (syn && (ct->flags & SLUICE_CT_CLOSING) && p->tcp_seq != ct->syn_seq)
		return false;
	if (p->protocol == IPPROTO_UDP) {
		/* UDP follows an endpoint removed from the service, as socket mode's sticky flows do;
		 * the conntrack keeps the port in wire order, the counters in host order */
		if (!endpoint_stats(ct->service_id, &ct->addr, bpf_ntohs(ct->port), p->family))
			return false;
	}
	return true;
}

/* Whether to refresh last_seen now: at most once a second, so the entry's cache line stays shared. */
static __always_inline bool stale(const struct sluice_ct *ct, __u64 now)
{
	return now > ct->last_seen + NSEC_PER_SEC;
}

static __always_inline void mark_closing(struct sluice_ct *ct, const struct sluice_ct_key *other)
{
	if (ct->flags & SLUICE_CT_CLOSING)
		return;
	ct->flags |= SLUICE_CT_CLOSING;
	struct sluice_ct *o = bpf_map_lookup_elem(&tc_flows, other);
	if (o)
		o->flags |= SLUICE_CT_CLOSING;
}

/*
 * The flow's own SYN again after a RST closed it: the handshake goes on (e.g. the
 * endpoint still held a TIME_WAIT socket on these ports, answered the SYN with an
 * ACK, and the client reset that and retried): the flow is open again.
 */
static __always_inline void reopen(struct sluice_ct *ct, const struct sluice_ct_key *other)
{
	ct->flags &= ~SLUICE_CT_CLOSING;
	struct sluice_ct *o = bpf_map_lookup_elem(&tc_flows, other);
	if (o)
		o->flags &= ~SLUICE_CT_CLOSING;
}

/* Inserts a flow entry and looks it up once, so it starts referenced for the LRU. */
static __always_inline int ct_insert(const struct sluice_ct_key *k, const struct sluice_ct *v, __u64 flags)
{
	int err = bpf_map_update_elem(&tc_flows, k, v, flags);

	if (!err)
		bpf_map_lookup_elem(&tc_flows, k);
	return err;
}

/*
 * Once a second per flow and direction: refreshes the other direction's entry,
 * or puts it back if the LRU evicted it alone (it evicts entries, not pairs), so
 * a flow that carries packets in either direction keeps both.
 */
static __always_inline void keep_partner(const struct sluice_ct_key *k, const struct sluice_ct *ct,
					 const struct sluice_addr *addr, __be16 port, __u64 now)
{
	struct sluice_ct *o = bpf_map_lookup_elem(&tc_flows, k);
	struct sluice_ct v;

	if (o) {
		if (stale(o, now))
			o->last_seen = now;
		return;
	}
	__builtin_memset(&v, 0, sizeof(v));
	v.addr = *addr;
	v.port = port;
	v.flags = ct->flags;
	v.service_id = ct->service_id;
	v.last_seen = now;
	ct_insert(k, &v, BPF_NOEXIST);
}

/* Ingress: a packet from a client. */
static __always_inline int forward(struct __sk_buff *skb, const struct pkt *p)
{
	struct sluice_ct_key key, rkey;
	struct sluice_ct fwd, rev;
	struct sluice_ct *ct;
	struct sluice_addr to;
	__be16 to_port;
	bool tcp = p->protocol == IPPROTO_TCP;
	bool syn = tcp && (p->tcp_flags & (TCP_SYN | TCP_ACK)) == TCP_SYN;
	__u64 now = bpf_ktime_get_coarse_ns();
	int err;

	ct_key(&key, &p->src, &p->dst, p->sport, p->dport, p->protocol, p->family, SLUICE_CT_FORWARD);
	ct = bpf_map_lookup_elem(&tc_flows, &key);
	if (ct && flow_alive(ct, p, syn, now)) {
		to = ct->addr;
		to_port = ct->port;
		ct_key(&rkey, &to, &p->src, to_port, p->sport, p->protocol, p->family, SLUICE_CT_REVERSE);
		if (stale(ct, now)) {
			ct->last_seen = now;
			keep_partner(&rkey, ct, &p->dst, p->dport, now);
		}
		if (tcp && (p->tcp_flags & (TCP_FIN | TCP_RST | TCP_SYN))) {
			if (!syn)
				mark_closing(ct, &rkey);
			else if (ct->flags & SLUICE_CT_CLOSING)
				reopen(ct, &rkey);
		}
		stat(SLUICE_TC_FORWARD);
		return dnat(skb, p, &to, to_port);
	}

	const struct sluice_service *svc = lookup_service(&p->dst, bpf_ntohs(p->dport), p->protocol, p->family);
	if (!svc)
		return TC_NEXT;
	if (tcp && !syn) {
		stat(SLUICE_TC_UNKNOWN_FLOW);
		return (p->tcp_flags & TCP_RST) ? TC_DROP : answer_rst(skb, p);
	}
	__u32 dest;
	const struct sluice_endpoint *ep = pick_endpoint(svc, &err, &dest);
	if (err == -ECONNREFUSED) {
		stat(SLUICE_TC_REFUSED);
		return tcp ? answer_rst(skb, p) : answer_port_unreachable(skb, p);
	}
	if (!ep || ep->family != p->family)
		return TC_NEXT;
	to = ep->addr;
	to_port = bpf_htons(ep->port);

	__builtin_memset(&fwd, 0, sizeof(fwd));
	fwd.addr = to;
	fwd.port = to_port;
	fwd.service_id = svc->id;
	fwd.syn_seq = p->tcp_seq;
	fwd.last_seen = now;
	if (ct_insert(&key, &fwd, ct ? BPF_ANY : BPF_NOEXIST)) {
		/* Another CPU created this flow a moment ago: follow its choice. */
		ct = bpf_map_lookup_elem(&tc_flows, &key);
		if (!ct)
			return rewritten(-1);
		to = ct->addr;
		to_port = ct->port;
		stat(SLUICE_TC_FORWARD);
		return dnat(skb, p, &to, to_port);
	}
	ct_key(&rkey, &to, &p->src, to_port, p->sport, p->protocol, p->family, SLUICE_CT_REVERSE);
	__builtin_memset(&rev, 0, sizeof(rev));
	rev.addr = p->dst;
	rev.port = p->dport;
	rev.service_id = svc->id;
	rev.last_seen = now;
	if (ct_insert(&rkey, &rev, BPF_ANY)) {
		bpf_map_delete_elem(&tc_flows, &key);
		return rewritten(-1);
	}
	count_connection(svc->id, ep);
	stat(SLUICE_TC_NEW_FLOWS);
	stat(SLUICE_TC_FORWARD);
	return dnat(skb, p, &to, to_port);
}

/* Egress: a packet toward a client; a reply of a translated flow leaves with the service address. */
static __always_inline int reply(struct __sk_buff *skb, const struct pkt *p)
{
	struct sluice_ct_key key, fkey;
	struct sluice_addr to;
	__u64 now;

	ct_key(&key, &p->src, &p->dst, p->sport, p->dport, p->protocol, p->family, SLUICE_CT_REVERSE);
	struct sluice_ct *ct = bpf_map_lookup_elem(&tc_flows, &key);
	if (!ct)
		return TC_NEXT;
	to = ct->addr;
	ct_key(&fkey, &p->dst, &to, p->dport, ct->port, p->protocol, p->family, SLUICE_CT_FORWARD);
	now = bpf_ktime_get_coarse_ns();
	if (stale(ct, now)) {
		/* Replies keep the flow alive too (a download's client may go quiet). */
		ct->last_seen = now;
		keep_partner(&fkey, ct, &p->src, p->sport, now);
	}
	if (p->protocol == IPPROTO_TCP && (p->tcp_flags & (TCP_FIN | TCP_RST)))
		mark_closing(ct, &fkey);
	stat(SLUICE_TC_REPLIES);
	return snat(skb, p, &to, ct->port);
}

/* Ingress: an error from the client's side about a reply (e.g. PMTU): goes to the endpoint. */
static __always_inline int icmp_to_endpoint(struct __sk_buff *skb, const struct pkt *p)
{
	struct sluice_ct_key key;
	struct quoted q;

	if (!parse_quoted(skb, p, &q))
		return TC_NEXT;
	/* The quoted reply went service address -> client: the flow's forward key, reversed. */
	ct_key(&key, &q.dst, &q.src, q.dport, q.sport, q.protocol, p->family, SLUICE_CT_FORWARD);
	struct sluice_ct *ct = bpf_map_lookup_elem(&tc_flows, &key);
	if (!ct || !addr_eq(&p->dst, &q.src))
		return TC_NEXT;
	struct sluice_addr to = ct->addr;
	return rewrite_icmp(skb, p, &q, false, &to, ct->port);
}

/* Egress: an error from the endpoint's side (the pod, or a router on the way) about a forwarded packet. */
static __always_inline int icmp_to_client(struct __sk_buff *skb, const struct pkt *p)
{
	struct sluice_ct_key key;
	struct quoted q;

	if (!parse_quoted(skb, p, &q))
		return TC_NEXT;
	/* The quoted packet went client -> endpoint: the flow's reverse key, reversed. */
	ct_key(&key, &q.dst, &q.src, q.dport, q.sport, q.protocol, p->family, SLUICE_CT_REVERSE);
	struct sluice_ct *ct = bpf_map_lookup_elem(&tc_flows, &key);
	if (!ct)
		return TC_NEXT;
	struct sluice_addr to = ct->addr;
	return rewrite_icmp(skb, p, &q, true, &to, ct->port);
}

/* Both directions parse alike; a flow's packet and an ICMP error go the direction's way. */
static __always_inline int dispatch(struct __sk_buff *skb, bool ingress)
{
	struct pkt p;

	switch (parse(skb, &p)) {
	case P_FLOW:
		return ingress ? forward(skb, &p) : reply(skb, &p);
	case P_ICMP_ERROR:
		return ingress ? icmp_to_endpoint(skb, &p) : icmp_to_client(skb, &p);
	case P_FRAGMENT:
		stat(SLUICE_TC_FRAGMENTS);
		return TC_NEXT;
	case P_MALFORMED:
		stat(SLUICE_TC_MALFORMED);
		return TC_NEXT;
	default:
		return TC_NEXT;
	}
}

SEC("tc")
int sluice_tc_ingress(struct __sk_buff *skb)
{
	return dispatch(skb, true);
}

SEC("tc")
int sluice_tc_egress(struct __sk_buff *skb)
{
	return dispatch(skb, false);
}
