/* SPDX-License-Identifier: MIT */
/*
 * tc_fixtures: the TC data plane (bpf/sluice_tc.bpf.c) under BPF_PROG_TEST_RUN.
 *
 *   tc_fixtures --bpffs DIR --cgroup DIR [-v]      (root; tests/prog/run makes both and cleans up)
 *
 * The map writer (loader/dataplane/) loads the data plane with TC mode and no
 * interface, and applies the plan below; then every row of `fixtures` runs a
 * frame through the ingress or egress program and compares the verdict and
 * the frame that comes out, byte for byte. Rows run in order and share the
 * flow table, as packets of one flow do (a SYN row creates the flow its reply
 * row finds). Frames are described by field (struct pk) and built with real
 * checksums; every output frame's checksums are also verified independently.
 * Prints one line per row and "N passed, N failed".
 *
 * To add a case: add a row. A row names the hook, the input frame, the
 * verdict, and the expected frame (NULL: the input, unchanged), and may name
 * a step to run first (e.g. age a flow entry).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <bpf/bpf.h>

#include "sluice_abi.h"
#include "dataplane/dataplane.h"
#include "plan/plan.h"

/* ---- the plan ---- */

#define CLIENT "198.18.250.1"
#define CLIENT6 "2001:db8:250::1"
#define ROUTER "198.18.250.254"
#define ROUTER6 "2001:db8:250::fe"
#define VIP "198.19.0.1"            /* TCP 80 -> 2 endpoints of v1 on 8080, round robin */
#define VIP6 "2001:db8:19::1"
#define EP1 "198.18.1.1"
#define EP2 "198.18.1.2"
#define EP1_6 "2001:db8:18::1:1"
#define EP2_6 "2001:db8:18::1:2"
#define UVIP "198.19.0.2"           /* UDP 53 -> 2 endpoints on 5353, round robin */
#define UVIP6 "2001:db8:19::2"
#define UEP1 "198.18.2.1"
#define UEP2 "198.18.2.2"
#define UEP1_6 "2001:db8:18::2:1"
#define EMPTY "198.19.0.3"          /* TCP 80 and UDP 53: the only subset has no endpoint */
#define EMPTY6 "2001:db8:19::3"
#define GATEWAY "198.19.100.1"      /* the TCP service's gateway address, port 8000 */
#define POD "198.18.9.9"            /* a pod address that is no service */

static struct plan_endpoint ep_tcp[] = {
	{ .pod = "v1-a" }, { .pod = "v1-b" }, { .pod = "v1-a" }, { .pod = "v1-b" },
};
static struct plan_endpoint ep_udp[] = { { .pod = "u-a" }, { .pod = "u-b" }, { .pod = "u-a" } };
static struct plan_destination d_tcp = { .host = "web.test", .subset = "v1", .weight = 100, .percent = 100,
					 .endpoints = ep_tcp, .n_endpoints = 4 };
static struct plan_destination d_udp = { .host = "dns.test", .subset = "v1", .weight = 100, .percent = 100,
					 .endpoints = ep_udp, .n_endpoints = 3 };
static struct plan_destination d_empty = { .host = "empty.test", .subset = "v9", .weight = 100, .percent = 100 };
static struct plan_service services[4] = {
	{ .name = "web", .namespace = "test", .port = 80, .protocol = IPPROTO_TCP, .destinations = &d_tcp,
	  .n_destinations = 1, .n_gateway_addrs = 1, .gateway_port = 8000, .gateway = "test/gw" },
	{ .name = "dns", .namespace = "test", .port = 53, .protocol = IPPROTO_UDP, .destinations = &d_udp,
	  .n_destinations = 1 },
	{ .name = "empty", .namespace = "test", .port = 80, .protocol = IPPROTO_TCP, .destinations = &d_empty,
	  .n_destinations = 1 },
	{ .name = "empty", .namespace = "test", .port = 53, .protocol = IPPROTO_UDP, .destinations = &d_empty,
	  .n_destinations = 1 },
};

static void addr(struct plan_addr *a, const char *s)
{
	memset(a, 0, sizeof(*a));
	a->family = strchr(s, ':') ? AF_INET6 : AF_INET;
	if (inet_pton(a->family, s, a->addr) != 1)
		abort();
}

static void make_plan(struct plan *p)
{
	const char *tcp_eps[] = { EP1, EP2, EP1_6, EP2_6 }, *udp_eps[] = { UEP1, UEP2, UEP1_6 };

	for (int i = 0; i < 4; i++) {
		addr(&ep_tcp[i].addr, tcp_eps[i]);
		ep_tcp[i].port = 8080;
	}
	for (int i = 0; i < 3; i++) {
		addr(&ep_udp[i].addr, udp_eps[i]);
		ep_udp[i].port = 5353;
	}
	addr(&services[0].vips[0], VIP);
	addr(&services[0].vips[1], VIP6);
	services[0].n_vips = 2;
	addr(&services[0].gateway_addrs[0], GATEWAY);
	addr(&services[1].vips[0], UVIP);
	addr(&services[1].vips[1], UVIP6);
	services[1].n_vips = 2;
	for (int i = 2; i < 4; i++) {
		addr(&services[i].vips[0], EMPTY);
		addr(&services[i].vips[1], EMPTY6);
		services[i].n_vips = 2;
	}
	memset(p, 0, sizeof(*p));
	p->services = services;
	p->n_services = 4;
}

/* ---- frames ---- */

/* A frame by field; zero values are the usual ones (TTL 64, DF, id 0, window 0, 8 quoted bytes). */
struct pk {
	int v6;
	const char *src, *dst;
	int proto;                  /* IPPROTO_TCP, _UDP, _ICMP, _ICMPV6 */
	uint16_t sport, dport;
	uint8_t flags;              /* TCP */
	uint32_t seq, ack;
	int payload;                /* bytes of payload */
	int mss;                    /* TCP: an MSS option (data offset 6) */
	int ip_opts;                /* IPv4: option bytes (NOPs then EOL) */
	uint16_t frag;              /* IPv4: MF and offset bits of frag_off */
	int no_df;
	int v6_ext;                 /* IPv6: an extension header first (0 hop-by-hop is written as -1, 44 fragment) */
	int udp_csum0;              /* UDP: no checksum */
	uint8_t icmp_type, icmp_code;
	const struct pk *quote;     /* ICMP error: the packet quoted (its IP header and quote_len bytes) */
	int quote_len;              /* default 8 */
	int swap_eth;               /* Ethernet addresses reversed: an answer sent back out */
	/* damage, for malformed inputs */
	int cut;                    /* frame truncated to this length */
	int ihl;                    /* IPv4 ihl forced */
	int tot_len_add;
	int doff;                   /* TCP data offset forced */
};

static uint32_t sum16(const uint8_t *b, size_t n, uint32_t s)
{
	for (size_t i = 0; i + 1 < n; i += 2)
		s += (uint32_t)(b[i] << 8 | b[i + 1]);
	if (n & 1)
		s += (uint32_t)b[n - 1] << 8;
	return s;
}

static uint16_t fold(uint32_t s)
{
	while (s >> 16)
		s = (s & 0xffff) + (s >> 16);
	return (uint16_t)~s;
}

static void put16(uint8_t *b, uint16_t v)
{
	b[0] = v >> 8;
	b[1] = v & 0xff;
}

static void put32(uint8_t *b, uint32_t v)
{
	put16(b, v >> 16);
	put16(b + 2, v & 0xffff);
}

static uint32_t pseudo(int v6, const uint8_t *src, const uint8_t *dst, int proto, size_t len)
{
	uint32_t s = sum16(src, v6 ? 16 : 4, 0);

	s = sum16(dst, v6 ? 16 : 4, s);
	return s + (uint32_t)proto + (uint32_t)(len >> 16) + (uint32_t)(len & 0xffff);
}

/* The IP packet (no Ethernet header) of p into b; returns its length. */
static size_t build_ip(const struct pk *p, uint8_t *b)
{
	uint8_t src[16] = { 0 }, dst[16] = { 0 }, l4[2048];
	size_t l4_len = 0, hl;
	int alen = p->v6 ? 16 : 4;

	if (inet_pton(p->v6 ? AF_INET6 : AF_INET, p->src, src) != 1 ||
	    inet_pton(p->v6 ? AF_INET6 : AF_INET, p->dst, dst) != 1) {
		fprintf(stderr, "tc_fixtures: bad address %s or %s\n", p->src, p->dst);
		exit(2);
	}
	memset(l4, 0, sizeof(l4));
	if (p->proto == IPPROTO_TCP) {
		size_t th = p->mss ? 24 : 20;
		put16(l4, p->sport);
		put16(l4 + 2, p->dport);
		put32(l4 + 4, p->seq);
		put32(l4 + 8, p->ack);
		l4[12] = (uint8_t)((p->doff ? p->doff : (int)th / 4) << 4);
		l4[13] = p->flags;
		if (p->mss) {
			l4[20] = 2;
			l4[21] = 4;
			put16(l4 + 22, 1460);
		}
		for (int i = 0; i < p->payload; i++)
			l4[th + i] = (uint8_t)('a' + i % 26);
		l4_len = th + (size_t)p->payload;
		put16(l4 + 16, fold(sum16(l4, l4_len, pseudo(p->v6, src, dst, IPPROTO_TCP, l4_len))));
	} else if (p->proto == IPPROTO_UDP) {
		put16(l4, p->sport);
		put16(l4 + 2, p->dport);
		l4_len = 8 + (size_t)p->payload;
		put16(l4 + 4, (uint16_t)l4_len);
		for (int i = 0; i < p->payload; i++)
			l4[8 + i] = (uint8_t)('A' + i % 26);
		if (!p->udp_csum0) {
			uint16_t c = fold(sum16(l4, l4_len, pseudo(p->v6, src, dst, IPPROTO_UDP, l4_len)));
			put16(l4 + 6, c ? c : 0xffff);
		}
	} else {
		uint8_t inner[2048];
		l4[0] = p->icmp_type;
		l4[1] = p->icmp_code;
		l4_len = 8;
		if (p->quote) {
			size_t n = build_ip(p->quote, inner);
			size_t ihl = p->quote->v6 ? 40 : (size_t)(inner[0] & 0xf) * 4;
			size_t q = ihl + (size_t)(p->quote_len ? p->quote_len : 8);
			if (q > n)
				q = n;
			memcpy(l4 + 8, inner, q);
			l4_len += q;
		}
		uint32_t s = p->v6 ? pseudo(1, src, dst, IPPROTO_ICMPV6, l4_len) : 0;
		put16(l4 + 2, fold(sum16(l4, l4_len, s)));
	}

	if (p->v6) {
		int ext = p->v6_ext;
		b[0] = 0x60;
		b[1] = b[2] = b[3] = 0;
		put16(b + 4, (uint16_t)(l4_len + (ext ? 8 : 0)));
		b[6] = (uint8_t)(ext ? (ext < 0 ? 0 : ext) : p->proto);
		b[7] = 64;
		memcpy(b + 8, src, 16);
		memcpy(b + 24, dst, 16);
		hl = 40;
		if (ext) {
			memset(b + 40, 0, 8);
			b[40] = (uint8_t)p->proto;
			if (ext == 44)
				b[43] = 1;      /* fragment offset 0, more fragments */
			else
				b[42] = 1, b[43] = 4;   /* hop-by-hop: PadN */
			hl = 48;
		}
	} else {
		size_t opt = (size_t)p->ip_opts;
		hl = 20 + opt;
		memset(b, 0, hl);
		b[0] = (uint8_t)(0x40 | (p->ihl ? p->ihl : (int)hl / 4));
		put16(b + 2, (uint16_t)(hl + l4_len + (size_t)p->tot_len_add));
		put16(b + 6, (uint16_t)((p->no_df ? 0 : 0x4000) | p->frag));
		b[8] = 64;
		b[9] = (uint8_t)p->proto;
		memcpy(b + 12, src, 4);
		memcpy(b + 16, dst, 4);
		for (size_t i = 0; i < opt; i++)
			b[20 + i] = i + 1 < opt ? 1 : 0;
		put16(b + 10, fold(sum16(b, hl, 0)));
	}
	(void)alen;
	memcpy(b + hl, l4, l4_len);
	return hl + l4_len;
}

static const uint8_t MAC_NODE[6] = { 0x02, 0, 0, 0, 0, 0x01 }, MAC_PEER[6] = { 0x02, 0, 0, 0, 0, 0x02 };

static size_t build(const struct pk *p, uint8_t *b)
{
	size_t n;

	memcpy(b, p->swap_eth ? MAC_PEER : MAC_NODE, 6);
	memcpy(b + 6, p->swap_eth ? MAC_NODE : MAC_PEER, 6);
	put16(b + 12, p->v6 ? 0x86dd : 0x0800);
	n = 14 + build_ip(p, b + 14);
	if (p->cut && (size_t)p->cut < n)
		n = (size_t)p->cut;
	return n;
}

/* Independent check of an output frame: IPv4 header, TCP/UDP/ICMP checksums (no extension headers). */
static const char *check_sums(const uint8_t *f, size_t n)
{
	const uint8_t *ip = f + 14, *l4;
	size_t l4_len;
	uint32_t s;
	int proto, v6 = n >= 14 && f[12] == 0x86;

	if (n < 14 + 20)
		return NULL;
	if (!v6) {
		size_t hl = (size_t)(ip[0] & 0xf) * 4;
		if (fold(sum16(ip, hl, 0)) != 0)
			return "IPv4 header checksum";
		l4 = ip + hl;
		l4_len = (size_t)(ip[2] << 8 | ip[3]) - hl;
		proto = ip[9];
		s = pseudo(0, ip + 12, ip + 16, proto, l4_len);
	} else {
		l4 = ip + 40;
		l4_len = (size_t)(ip[4] << 8 | ip[5]);
		proto = ip[6];
		s = pseudo(1, ip + 8, ip + 24, proto, l4_len);
	}
	if (14 + (size_t)(l4 - ip) + l4_len > n)
		return NULL;
	if (proto == IPPROTO_ICMP)
		s = 0;
	else if (proto != IPPROTO_TCP && proto != IPPROTO_UDP && proto != IPPROTO_ICMPV6)
		return NULL;
	if (proto == IPPROTO_UDP && l4[6] == 0 && l4[7] == 0)
		return NULL;
	if (fold(sum16(l4, l4_len, s)) != 0)
		return "transport checksum";
	return NULL;
}

/* ---- the fixtures ---- */

#define NEXT (-1)       /* TCX_NEXT: passed on, translated or not */
#define DROP 2
#define REDIRECT 7      /* an answer sent back out of the interface */
#define INGRESS 0
#define EGRESS 1

#define SYN 0x02
#define ACK 0x10
#define FIN 0x01
#define RST 0x04
#define PSH 0x08

struct ctx {
	int fd_flows;
};

struct fixture {           /* rows may leave out `before` */
	const char *what;
	int hook;
	const struct pk *in;
	int verdict;
	const struct pk *out;       /* NULL: the input, unchanged (not compared for DROP) */
	void (*before)(struct ctx *);
};

/* Ages the UDP flow from CLIENT:5000 to UVIP:53 past the idle timeout. */
static void age_udp_flow(struct ctx *c)
{
	struct sluice_ct_key k;
	struct sluice_ct v;

	memset(&k, 0, sizeof(k));
	inet_pton(AF_INET, CLIENT, k.src.bytes);
	inet_pton(AF_INET, UVIP, k.dst.bytes);
	k.sport = htons(5000);
	k.dport = htons(53);
	k.protocol = SLUICE_PROTO_UDP;
	k.family = AF_INET;
	k.direction = SLUICE_CT_FORWARD;
	if (bpf_map_lookup_elem(c->fd_flows, &k, &v) == 0) {
		v.last_seen = 1;   /* boot time: idle for longer than any timeout */
		bpf_map_update_elem(c->fd_flows, &k, &v, BPF_EXIST);
	}
}

static void flow_key(struct sluice_ct_key *k, const char *src, uint16_t sport, const char *dst, uint16_t dport,
		     int direction)
{
	memset(k, 0, sizeof(*k));
	inet_pton(AF_INET, src, k->src.bytes);
	inet_pton(AF_INET, dst, k->dst.bytes);
	k->sport = htons(sport);
	k->dport = htons(dport);
	k->protocol = SLUICE_PROTO_TCP;
	k->family = AF_INET;
	k->direction = (uint8_t)direction;
}

/* Makes entry k look last refreshed `seconds` ago. */
static void backdate_by(struct ctx *c, const struct sluice_ct_key *k, uint64_t seconds)
{
	struct sluice_ct v;
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	if (bpf_map_lookup_elem(c->fd_flows, k, &v) == 0) {
		v.last_seen = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec - seconds * 1000000000ull;
		bpf_map_update_elem(c->fd_flows, k, &v, BPF_EXIST);
	}
}

/* Two seconds: due for its once-a-second refresh. */
static void backdate(struct ctx *c, const struct sluice_ct_key *k)
{
	backdate_by(c, k, 2);
}

/* The closed flow CLIENT:40003 -> VIP:80 has been idle for 11 s (the closing timeout is 10). */
static void idle_closed_flow(struct ctx *c)
{
	struct sluice_ct_key f;

	flow_key(&f, CLIENT, 40003, VIP, 80, SLUICE_CT_FORWARD);
	backdate_by(c, &f, SLUICE_TC_CLOSING_TIMEOUT_S + 1);
}

/* The LRU evicted the reply entry of flow CLIENT:40002 -> VIP:80 alone. */
static void evict_reverse(struct ctx *c)
{
	struct sluice_ct_key f, r;

	flow_key(&f, CLIENT, 40002, VIP, 80, SLUICE_CT_FORWARD);
	flow_key(&r, EP1, 8080, CLIENT, 40002, SLUICE_CT_REVERSE);
	bpf_map_delete_elem(c->fd_flows, &r);
	backdate(c, &f);
}

/* ... and later its forward entry alone. */
static void evict_forward(struct ctx *c)
{
	struct sluice_ct_key f, r;

	flow_key(&f, CLIENT, 40002, VIP, 80, SLUICE_CT_FORWARD);
	flow_key(&r, EP1, 8080, CLIENT, 40002, SLUICE_CT_REVERSE);
	bpf_map_delete_elem(c->fd_flows, &f);
	backdate(c, &r);
}

#define P(...) (&(const struct pk){ __VA_ARGS__ })
#define TCP4(s, sp, d, dp, ...) P(.src = s, .dst = d, .proto = IPPROTO_TCP, .sport = sp, .dport = dp, __VA_ARGS__)
#define TCP6(s, sp, d, dp, ...) P(.v6 = 1, .src = s, .dst = d, .proto = IPPROTO_TCP, .sport = sp, .dport = dp, __VA_ARGS__)
#define UDP4(s, sp, d, dp, ...) P(.src = s, .dst = d, .proto = IPPROTO_UDP, .sport = sp, .dport = dp, __VA_ARGS__)
#define UDP6(s, sp, d, dp, ...) P(.v6 = 1, .src = s, .dst = d, .proto = IPPROTO_UDP, .sport = sp, .dport = dp, __VA_ARGS__)
#define ICMP4(s, d, t, c, q, ...) P(.src = s, .dst = d, .proto = IPPROTO_ICMP, .icmp_type = t, .icmp_code = c, .quote = q, __VA_ARGS__)
#define ICMP6(s, d, t, c, q, ...) P(.v6 = 1, .src = s, .dst = d, .proto = IPPROTO_ICMPV6, .icmp_type = t, .icmp_code = c, .quote = q, __VA_ARGS__)

static const struct fixture fixtures[] = {
	/* TCP over IPv4: a flow is routed at its SYN and pinned; replies go back as the VIP. */
	{ "TCP SYN to VIP:80 is DNATed to the first endpoint (round robin), checksums updated", INGRESS,
	  TCP4(CLIENT, 40000, VIP, 80, .flags = SYN, .seq = 1000, .mss = 1), NEXT,
	  TCP4(CLIENT, 40000, EP1, 8080, .flags = SYN, .seq = 1000, .mss = 1) },
	{ "a retransmitted SYN keeps its endpoint (conntrack, not a second pick)", INGRESS,
	  TCP4(CLIENT, 40000, VIP, 80, .flags = SYN, .seq = 1000, .mss = 1), NEXT,
	  TCP4(CLIENT, 40000, EP1, 8080, .flags = SYN, .seq = 1000, .mss = 1) },
	{ "a SYN from another port is a new flow: the next endpoint", INGRESS,
	  TCP4(CLIENT, 40001, VIP, 80, .flags = SYN, .seq = 5000), NEXT,
	  TCP4(CLIENT, 40001, EP2, 8080, .flags = SYN, .seq = 5000) },
	{ "the client resets a half-open flow (e.g. a TIME_WAIT socket answered its SYN with an ACK)", INGRESS,
	  TCP4(CLIENT, 40001, VIP, 80, .flags = RST, .seq = 5001), NEXT, TCP4(CLIENT, 40001, EP2, 8080, .flags = RST, .seq = 5001) },
	{ "... and its retransmitted SYN (same sequence number) keeps the flow's endpoint", INGRESS,
	  TCP4(CLIENT, 40001, VIP, 80, .flags = SYN, .seq = 5000), NEXT, TCP4(CLIENT, 40001, EP2, 8080, .flags = SYN, .seq = 5000) },
	{ "the endpoint's SYN-ACK leaves SNATed to VIP:80", EGRESS,
	  TCP4(EP1, 8080, CLIENT, 40000, .flags = SYN | ACK, .seq = 7000, .ack = 1001, .mss = 1), NEXT,
	  TCP4(VIP, 80, CLIENT, 40000, .flags = SYN | ACK, .seq = 7000, .ack = 1001, .mss = 1) },
	{ "data with IPv4 options (NOP NOP NOP EOL) is translated, options kept", INGRESS,
	  TCP4(CLIENT, 40000, VIP, 80, .flags = ACK | PSH, .seq = 1001, .ack = 7001, .payload = 100, .ip_opts = 4), NEXT,
	  TCP4(CLIENT, 40000, EP1, 8080, .flags = ACK | PSH, .seq = 1001, .ack = 7001, .payload = 100, .ip_opts = 4) },
	{ "odd-length payload: checksums still right", INGRESS,
	  TCP4(CLIENT, 40000, VIP, 80, .flags = ACK, .seq = 1101, .ack = 7001, .payload = 37), NEXT,
	  TCP4(CLIENT, 40000, EP1, 8080, .flags = ACK, .seq = 1101, .ack = 7001, .payload = 37) },
	{ "ICMP unreachable from a router about a forwarded segment: the quote reads VIP:80 again", EGRESS,
	  ICMP4(ROUTER, CLIENT, 3, 1, TCP4(CLIENT, 40000, EP1, 8080, .flags = ACK, .seq = 1101, .ack = 7001)), NEXT,
	  ICMP4(ROUTER, CLIENT, 3, 1, TCP4(CLIENT, 40000, VIP, 80, .flags = ACK, .seq = 1101, .ack = 7001)) },
	{ "... quoting 28 bytes of TCP (its checksum too): the quoted checksum is updated", EGRESS,
	  ICMP4(ROUTER, CLIENT, 3, 1, TCP4(CLIENT, 40000, EP1, 8080, .flags = ACK, .seq = 1101, .ack = 7001, .payload = 8),
		.quote_len = 28), NEXT,
	  ICMP4(ROUTER, CLIENT, 3, 1, TCP4(CLIENT, 40000, VIP, 80, .flags = ACK, .seq = 1101, .ack = 7001, .payload = 8),
		.quote_len = 28) },
	{ "ICMP frag-needed from the client side about a reply: goes to the endpoint, quote and outer rewritten", INGRESS,
	  ICMP4(CLIENT, VIP, 3, 4, TCP4(VIP, 80, CLIENT, 40000, .flags = ACK, .seq = 7001, .ack = 1101, .payload = 1400)),
	  NEXT,
	  ICMP4(CLIENT, EP1, 3, 4, TCP4(EP1, 8080, CLIENT, 40000, .flags = ACK, .seq = 7001, .ack = 1101, .payload = 1400)) },
	{ "an ICMP error about a flow sluice does not know is untouched", EGRESS,
	  ICMP4(ROUTER, CLIENT, 3, 1, TCP4(CLIENT, 41234, EP1, 8080, .flags = ACK)), NEXT, NULL },
	{ "the gateway address 198.19.100.1:8000 is DNATed to the service's endpoints", INGRESS,
	  TCP4(CLIENT, 40100, GATEWAY, 8000, .flags = SYN, .seq = 9), NEXT,
	  TCP4(CLIENT, 40100, EP1, 8080, .flags = SYN, .seq = 9) },
	{ "... and its replies leave as the gateway address", EGRESS,
	  TCP4(EP1, 8080, CLIENT, 40100, .flags = SYN | ACK, .ack = 10), NEXT,
	  TCP4(GATEWAY, 8000, CLIENT, 40100, .flags = SYN | ACK, .ack = 10) },

	/* Closing: FIN marks the flow; a SYN on the same ports afterwards is a new connection. */
	{ "a third flow takes EP1 (round robin goes on)", INGRESS,
	  TCP4(CLIENT, 40002, VIP, 80, .flags = SYN, .seq = 1), NEXT,
	  TCP4(CLIENT, 40002, EP1, 8080, .flags = SYN, .seq = 1) },
	{ "the LRU evicted the third flow's reply entry alone: its next packet is translated...", INGRESS,
	  TCP4(CLIENT, 40002, VIP, 80, .flags = ACK, .seq = 2, .ack = 3), NEXT,
	  TCP4(CLIENT, 40002, EP1, 8080, .flags = ACK, .seq = 2, .ack = 3), evict_reverse },
	{ "... and has put the reply entry back: the reply leaves as the VIP", EGRESS,
	  TCP4(EP1, 8080, CLIENT, 40002, .flags = ACK, .seq = 3, .ack = 2), NEXT,
	  TCP4(VIP, 80, CLIENT, 40002, .flags = ACK, .seq = 3, .ack = 2) },
	{ "its forward entry evicted alone: the next reply is still translated...", EGRESS,
	  TCP4(EP1, 8080, CLIENT, 40002, .flags = ACK, .seq = 3, .ack = 2), NEXT,
	  TCP4(VIP, 80, CLIENT, 40002, .flags = ACK, .seq = 3, .ack = 2), evict_forward },
	{ "... and has put the forward entry back: the client's next segment reaches EP1, not a RST", INGRESS,
	  TCP4(CLIENT, 40002, VIP, 80, .flags = ACK, .seq = 2, .ack = 3), NEXT,
	  TCP4(CLIENT, 40002, EP1, 8080, .flags = ACK, .seq = 2, .ack = 3) },
	{ "FIN on the first flow is translated (and marks it closing)", INGRESS,
	  TCP4(CLIENT, 40000, VIP, 80, .flags = FIN | ACK, .seq = 1138, .ack = 7001), NEXT,
	  TCP4(CLIENT, 40000, EP1, 8080, .flags = FIN | ACK, .seq = 1138, .ack = 7001) },
	{ "the endpoint's FIN leaves as the VIP", EGRESS,
	  TCP4(EP1, 8080, CLIENT, 40000, .flags = FIN | ACK, .seq = 7001, .ack = 1139), NEXT,
	  TCP4(VIP, 80, CLIENT, 40000, .flags = FIN | ACK, .seq = 7001, .ack = 1139) },
	{ "a new SYN on the closed flow's ports is routed anew: EP2, not EP1", INGRESS,
	  TCP4(CLIENT, 40000, VIP, 80, .flags = SYN, .seq = 90000), NEXT,
	  TCP4(CLIENT, 40000, EP2, 8080, .flags = SYN, .seq = 90000) },

	{ "a fifth flow takes EP1", INGRESS, TCP4(CLIENT, 40003, VIP, 80, .flags = SYN, .seq = 10), NEXT,
	  TCP4(CLIENT, 40003, EP1, 8080, .flags = SYN, .seq = 10) },
	{ "its RST marks it closing", INGRESS, TCP4(CLIENT, 40003, VIP, 80, .flags = RST | ACK, .seq = 11, .ack = 20), NEXT,
	  TCP4(CLIENT, 40003, EP1, 8080, .flags = RST | ACK, .seq = 11, .ack = 20) },
	{ "a closed flow idle past the closing timeout is forgotten: a late segment is reset by sluice", INGRESS,
	  TCP4(CLIENT, 40003, VIP, 80, .flags = ACK, .seq = 11, .ack = 20), REDIRECT,
	  TCP4(VIP, 80, CLIENT, 40003, .flags = RST, .seq = 20, .swap_eth = 1), idle_closed_flow },

	/* A segment of no known flow: reset, never sent to an endpoint mid-stream. */
	{ "an ACK to the VIP with no flow entry is answered with RST (seq = its ack), sent back out", INGRESS,
	  TCP4(CLIENT, 45000, VIP, 80, .flags = ACK | PSH, .seq = 100, .ack = 200, .payload = 10), REDIRECT,
	  TCP4(VIP, 80, CLIENT, 45000, .flags = RST, .seq = 200, .swap_eth = 1) },
	{ "a RST to the VIP with no flow entry is dropped (nothing to reset)", INGRESS,
	  TCP4(CLIENT, 45001, VIP, 80, .flags = RST, .seq = 100), DROP, NULL },

	/* UDP over IPv4. */
	{ "UDP to VIP:53 is DNATed to the first endpoint", INGRESS,
	  UDP4(CLIENT, 5000, UVIP, 53, .payload = 30), NEXT, UDP4(CLIENT, 5000, UEP1, 5353, .payload = 30) },
	{ "the next datagram of the flow sticks to it", INGRESS,
	  UDP4(CLIENT, 5000, UVIP, 53, .payload = 31), NEXT, UDP4(CLIENT, 5000, UEP1, 5353, .payload = 31) },
	{ "an idle UDP flow (past its timeout) is routed anew: the next endpoint", INGRESS,
	  UDP4(CLIENT, 5000, UVIP, 53, .payload = 1), NEXT, UDP4(CLIENT, 5000, UEP2, 5353, .payload = 1),
	  age_udp_flow },
	{ "a UDP datagram without checksum keeps checksum 0", INGRESS,
	  UDP4(CLIENT, 5001, UVIP, 53, .payload = 4, .udp_csum0 = 1), NEXT,
	  UDP4(CLIENT, 5001, UEP1, 5353, .payload = 4, .udp_csum0 = 1) },
	{ "the endpoint's answer leaves as VIP:53", EGRESS,
	  UDP4(UEP2, 5353, CLIENT, 5000, .payload = 12), NEXT, UDP4(UVIP, 53, CLIENT, 5000, .payload = 12) },
	{ "ICMP port unreachable from the endpoint: outer source and quote (UDP checksum too) read VIP:53", EGRESS,
	  ICMP4(UEP2, CLIENT, 3, 3, UDP4(CLIENT, 5000, UEP2, 5353, .payload = 30)), NEXT,
	  ICMP4(UVIP, CLIENT, 3, 3, UDP4(CLIENT, 5000, UVIP, 53, .payload = 30)) },

	/* IPv6. */
	{ "IPv6 TCP SYN to the VIP is DNATed to an IPv6 endpoint", INGRESS,
	  TCP6(CLIENT6, 40000, VIP6, 80, .flags = SYN, .seq = 1, .mss = 1), NEXT,
	  TCP6(CLIENT6, 40000, EP1_6, 8080, .flags = SYN, .seq = 1, .mss = 1) },
	{ "IPv6 SYN-ACK leaves as the VIP", EGRESS,
	  TCP6(EP1_6, 8080, CLIENT6, 40000, .flags = SYN | ACK, .seq = 5, .ack = 2), NEXT,
	  TCP6(VIP6, 80, CLIENT6, 40000, .flags = SYN | ACK, .seq = 5, .ack = 2) },
	{ "IPv6 UDP to the VIP is DNATed", INGRESS,
	  UDP6(CLIENT6, 5000, UVIP6, 53, .payload = 9), NEXT, UDP6(CLIENT6, 5000, UEP1_6, 5353, .payload = 9) },
	{ "ICMPv6 unreachable from the endpoint: outer source and quote read the VIP", EGRESS,
	  ICMP6(UEP1_6, CLIENT6, 1, 4, UDP6(CLIENT6, 5000, UEP1_6, 5353, .payload = 9)), NEXT,
	  ICMP6(UVIP6, CLIENT6, 1, 4, UDP6(CLIENT6, 5000, UVIP6, 53, .payload = 9)) },
	{ "ICMPv6 packet-too-big from the client side about a reply: goes to the endpoint", INGRESS,
	  ICMP6(CLIENT6, VIP6, 2, 0, TCP6(VIP6, 80, CLIENT6, 40000, .flags = ACK, .seq = 6, .ack = 2, .payload = 40)), NEXT,
	  ICMP6(CLIENT6, EP1_6, 2, 0, TCP6(EP1_6, 8080, CLIENT6, 40000, .flags = ACK, .seq = 6, .ack = 2, .payload = 40)) },

	/* Empty share: refused the way socket mode refuses (ECONNREFUSED at the client). */
	{ "TCP SYN to a share with no endpoint: RST|ACK from the VIP acknowledging the SYN", INGRESS,
	  TCP4(CLIENT, 40500, EMPTY, 80, .flags = SYN, .seq = 777, .mss = 1), REDIRECT,
	  TCP4(EMPTY, 80, CLIENT, 40500, .flags = RST | ACK, .ack = 778, .swap_eth = 1) },
	{ "IPv6 TCP SYN to a share with no endpoint: RST|ACK", INGRESS,
	  TCP6(CLIENT6, 40500, EMPTY6, 80, .flags = SYN, .seq = 0xfffffffe), REDIRECT,
	  TCP6(EMPTY6, 80, CLIENT6, 40500, .flags = RST | ACK, .ack = 0xffffffff, .swap_eth = 1) },
	{ "UDP to a share with no endpoint: ICMP port unreachable quoting header + 8 bytes", INGRESS,
	  UDP4(CLIENT, 6000, EMPTY, 53, .payload = 100), REDIRECT,
	  ICMP4(EMPTY, CLIENT, 3, 3, UDP4(CLIENT, 6000, EMPTY, 53, .payload = 100), .swap_eth = 1) },
	{ "... with IPv4 options: the quote keeps them", INGRESS,
	  UDP4(CLIENT, 6001, EMPTY, 53, .payload = 3, .ip_opts = 8), REDIRECT,
	  ICMP4(EMPTY, CLIENT, 3, 3, UDP4(CLIENT, 6001, EMPTY, 53, .payload = 3, .ip_opts = 8), .swap_eth = 1) },
	{ "IPv6 UDP to a share with no endpoint: ICMPv6 port unreachable", INGRESS,
	  UDP6(CLIENT6, 6000, EMPTY6, 53), REDIRECT,
	  ICMP6(EMPTY6, CLIENT6, 1, 4, UDP6(CLIENT6, 6000, EMPTY6, 53), .swap_eth = 1) },

	/* Not sluice's: untouched. */
	{ "a SYN to a pod address (e.g. already rewritten by socket mode at connect) is untouched", INGRESS,
	  TCP4(CLIENT, 40600, EP1, 8080, .flags = SYN), NEXT, NULL },
	{ "a SYN to the VIP on a port no service has is untouched", INGRESS,
	  TCP4(CLIENT, 40601, VIP, 81, .flags = SYN), NEXT, NULL },
	{ "UDP to a TCP service's VIP:port is untouched", INGRESS, UDP4(CLIENT, 40602, VIP, 80), NEXT, NULL },
	{ "ICMP echo to the VIP is untouched", INGRESS, ICMP4(CLIENT, VIP, 8, 0, NULL), NEXT, NULL },
	{ "a packet from a pod to a client that no flow knows leaves untouched", EGRESS,
	  TCP4(POD, 8080, CLIENT, 40000, .flags = ACK), NEXT, NULL },

	/* Malformed: passed untouched, never translated (the kernel's own checks drop them). */
	/* (BPF_PROG_TEST_RUN builds no skb from a frame shorter than its IP header: that case is
	 * covered by the same load failure as the ones below, not by a row of its own.) */
	{ "IPv4 header claiming 60 bytes (ihl 15) in a 54-byte frame", INGRESS,
	  TCP4(CLIENT, 40700, VIP, 80, .flags = SYN, .ihl = 15), NEXT, NULL },
	{ "IPv4 header and no transport header at all", INGRESS,
	  TCP4(CLIENT, 40710, VIP, 80, .flags = SYN, .cut = 14 + 20), NEXT, NULL },
	{ "truncated TCP header", INGRESS, TCP4(CLIENT, 40701, VIP, 80, .flags = SYN, .cut = 14 + 20 + 12), NEXT, NULL },
	{ "IPv4 total length past the end of the frame", INGRESS,
	  TCP4(CLIENT, 40702, VIP, 80, .flags = SYN, .tot_len_add = 10), NEXT, NULL },
	{ "IPv4 ihl 4 (shorter than the header)", INGRESS, TCP4(CLIENT, 40703, VIP, 80, .flags = SYN, .ihl = 4), NEXT, NULL },
	{ "TCP data offset 4 (shorter than the header)", INGRESS,
	  TCP4(CLIENT, 40704, VIP, 80, .flags = SYN, .doff = 4), NEXT, NULL },
	{ "TCP data offset past the segment", INGRESS,
	  TCP4(CLIENT, 40705, VIP, 80, .flags = SYN, .doff = 15), NEXT, NULL },
	{ "truncated UDP header", INGRESS, UDP4(CLIENT, 40706, UVIP, 53, .cut = 14 + 20 + 6), NEXT, NULL },
	{ "IPv6 header and no transport header at all", INGRESS,
	  TCP6(CLIENT6, 40707, VIP6, 80, .flags = SYN, .cut = 14 + 40), NEXT, NULL },
	{ "IPv6 payload length past the end of the frame", INGRESS,
	  TCP6(CLIENT6, 40708, VIP6, 80, .flags = SYN, .cut = 14 + 40 + 16), NEXT, NULL },
	{ "an ICMP error quoting only 4 bytes of transport is untouched", EGRESS,
	  ICMP4(ROUTER, CLIENT, 3, 1, TCP4(CLIENT, 40002, EP1, 8080, .flags = ACK), .quote_len = 4), NEXT, NULL },

	/* Fragments and IPv6 extension headers: passed untouched. */
	{ "IPv4 first fragment (MF) of UDP to the VIP: untouched", INGRESS,
	  UDP4(CLIENT, 40800, UVIP, 53, .payload = 64, .frag = 0x2000, .no_df = 1), NEXT, NULL },
	{ "IPv4 later fragment (offset 8) to the VIP: untouched", INGRESS,
	  UDP4(CLIENT, 40801, UVIP, 53, .payload = 64, .frag = 8, .no_df = 1), NEXT, NULL },
	{ "IPv4 later fragment of a known flow's ports: untouched too", INGRESS,
	  UDP4(CLIENT, 5000, UVIP, 53, .payload = 16, .frag = 185, .no_df = 1), NEXT, NULL },
	{ "IPv6 fragment header: untouched", INGRESS, UDP6(CLIENT6, 40802, UVIP6, 53, .payload = 8, .v6_ext = 44), NEXT, NULL },
	{ "IPv6 hop-by-hop header: untouched", INGRESS, TCP6(CLIENT6, 40803, VIP6, 80, .flags = SYN, .v6_ext = -1), NEXT, NULL },
};

static void hexdump(const char *what, const uint8_t *b, size_t n)
{
	fprintf(stderr, "     %s (%zu bytes):", what, n);
	for (size_t i = 0; i < n; i++)
		fprintf(stderr, "%s%02x", i % 16 ? " " : "\n       ", b[i]);
	fputc('\n', stderr);
}

static int prog_fd(const char *bpffs, const char *name)
{
	char path[PATH_MAX];

	snprintf(path, sizeof(path), "%s/%s/%s", bpffs, SLUICE_PIN_PROGS, name);
	return bpf_obj_get(path);
}

static void usage(void)
{
	fprintf(stderr, "usage: tc_fixtures --bpffs DIR --cgroup DIR [-v] [--bench]\n");
	exit(2);
}

/*
 * --bench: the programs' own cost per packet after the fixtures: BPF_PROG_TEST_RUN
 * 100,000 times per frame, one run each (test_run's repeat would rerun one skb,
 * already rewritten by the first run), the kernel's measure of each run averaged.
 */
static const struct { const char *what; int hook; const struct pk *in; } bench_rows[] = {
	{ "ingress, not a service (pod address)", INGRESS, TCP4(CLIENT, 50000, POD, 8080, .flags = ACK, .payload = 64) },
	{ "ingress, a flow's packet: DNAT", INGRESS, TCP4(CLIENT, 40002, VIP, 80, .flags = ACK, .payload = 64) },
	{ "ingress, IPv6 flow's packet: DNAT", INGRESS, TCP6(CLIENT6, 40000, VIP6, 80, .flags = ACK, .payload = 64) },
	{ "egress, not a flow's reply", EGRESS, TCP4(POD, 8080, CLIENT, 50000, .flags = ACK, .payload = 64) },
	{ "egress, a flow's reply: SNAT", EGRESS, TCP4(EP1, 8080, CLIENT, 40002, .flags = ACK, .payload = 64) },
};

static void bench(int fds[2])
{
	const int runs = 100000;

	printf("program cost per packet (BPF_PROG_TEST_RUN, mean of %d single runs)\n", runs);
	for (size_t i = 0; i < sizeof(bench_rows) / sizeof(bench_rows[0]); i++) {
		uint8_t in[256], out[256];
		size_t n = build(bench_rows[i].in, in);
		uint64_t total = 0;
		int k;
		for (k = 0; k < runs; k++) {
			LIBBPF_OPTS(bpf_test_run_opts, t, .data_in = in, .data_size_in = (__u32)n, .data_out = out,
				    .data_size_out = sizeof(out), .repeat = 1);
			if (bpf_prog_test_run_opts(fds[bench_rows[i].hook], &t))
				break;
			total += t.duration;
		}
		if (k < runs)
			printf("  %-40s failed: %s\n", bench_rows[i].what, strerror(errno));
		else
			printf("  %-40s %4llu ns\n", bench_rows[i].what, (unsigned long long)(total / runs));
	}
}

int main(int argc, char **argv)
{
	struct dataplane_opts o = { .tc_load = true };
	struct dataplane *dp = NULL;
	struct plan plan;
	struct ctx c;
	char path[PATH_MAX];
	int passed = 0, failed = 0, fds[2];
	bool verbose = false, do_bench = false;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--bpffs") && i + 1 < argc)
			o.bpffs_dir = argv[++i];
		else if (!strcmp(argv[i], "--cgroup") && i + 1 < argc)
			o.cgroup_path = argv[++i];
		else if (!strcmp(argv[i], "-v"))
			verbose = o.verbose = true;
		else if (!strcmp(argv[i], "--bench"))
			do_bench = true;
		else
			usage();
	}
	if (!o.bpffs_dir || !o.cgroup_path)
		usage();
	setvbuf(stdout, NULL, _IOLBF, 0);
	make_plan(&plan);
	if (dataplane_open(&o, &dp) || dataplane_apply(dp, &plan, NULL, NULL)) {
		printf("FAIL load the data plane and apply the fixture plan\n0 passed, 1 failed\n");
		dataplane_close(dp);
		return 1;
	}
	fds[INGRESS] = prog_fd(o.bpffs_dir, "sluice_tc_ingress");
	fds[EGRESS] = prog_fd(o.bpffs_dir, "sluice_tc_egress");
	snprintf(path, sizeof(path), "%s/%s/tc_flows", o.bpffs_dir, SLUICE_PIN_MAPS);
	c.fd_flows = bpf_obj_get(path);
	if (fds[0] < 0 || fds[1] < 0 || c.fd_flows < 0) {
		printf("FAIL the TC programs and flow table are pinned under %s\n0 passed, 1 failed\n", o.bpffs_dir);
		dataplane_close(dp);
		return 1;
	}

	for (size_t i = 0; i < sizeof(fixtures) / sizeof(fixtures[0]); i++) {
		const struct fixture *f = &fixtures[i];
		uint8_t in[4096], want[4096], got[4096];
		size_t n_in = build(f->in, in), n_want = f->out ? build(f->out, want) : n_in;
		const char *bad = NULL;
		char why[256] = "";

		if (!f->out)
			memcpy(want, in, n_in);
		if (f->before)
			f->before(&c);
		LIBBPF_OPTS(bpf_test_run_opts, t, .data_in = in, .data_size_in = (__u32)n_in, .data_out = got,
			    .data_size_out = sizeof(got), .repeat = 1);
		int err = bpf_prog_test_run_opts(fds[f->hook], &t);
		int verdict = (int)t.retval;
		if (err) {
			snprintf(why, sizeof(why), "BPF_PROG_TEST_RUN failed: %s", strerror(errno));
		} else if (verdict != f->verdict) {
			snprintf(why, sizeof(why), "expected verdict %d, got %d", f->verdict, verdict);
		} else if (f->verdict != DROP && (t.data_size_out != n_want || memcmp(got, want, n_want))) {
			size_t k = 0;
			while (k < n_want && k < t.data_size_out && got[k] == want[k])
				k++;
			snprintf(why, sizeof(why), "output differs from the expected frame at byte %zu (%u bytes out, %zu expected)",
				 k, t.data_size_out, n_want);
		} else if (f->verdict != DROP && f->out && (bad = check_sums(got, t.data_size_out))) {
			snprintf(why, sizeof(why), "output frame has a wrong %s", bad);
		}
		if (!why[0]) {
			passed++;
			printf("ok   %s\n", f->what);
			continue;
		}
		failed++;
		printf("FAIL %s: %s\n", f->what, why);
		if (verbose || !err) {
			hexdump("input", in, n_in);
			hexdump("expected", want, n_want);
			if (!err)
				hexdump("got", got, t.data_size_out);
		}
	}
	if (do_bench && !failed)
		bench(fds);
	close(c.fd_flows);
	close(fds[0]);
	close(fds[1]);
	dataplane_close(dp);
	printf("%d passed, %d failed\n", passed, failed);
	return failed ? 1 : 0;
}
