/* SPDX-License-Identifier: MIT */
/*
 * The ABI between the BPF data plane (bpf/sluice.bpf.c socket mode,
 * bpf/sluice_tc.bpf.c TC mode) and the map writer (loader/dataplane.c): map
 * keys, values, limits and pin names. One header,
 * included from both sides; only fixed-width types and explicit padding, and a
 * size assertion on every struct, so a key built on one side matches the other
 * byte for byte (uninitialised padding would make lookups miss).
 */
#ifndef SLUICE_ABI_H
#define SLUICE_ABI_H

#ifdef __BPF__
/* vmlinux.h already defines __u8..__u64 and __be16/__be32. */
#else
#include <linux/types.h>
#endif

#ifndef __cplusplus
#define SLUICE_ASSERT_SIZE(type, size) _Static_assert(sizeof(type) == (size), #type " changed size: the ABI moved")
#else
#define SLUICE_ASSERT_SIZE(type, size) static_assert(sizeof(type) == (size), #type " changed size: the ABI moved")
#endif

/* Address families as the kernel numbers them (AF_INET, AF_INET6); vmlinux.h has no macros. */
#define SLUICE_AF_INET 2
#define SLUICE_AF_INET6 10

#define SLUICE_LB_ROUND_ROBIN 0     /* same values as enum plan_lb */
#define SLUICE_LB_RANDOM 1

#define SLUICE_MAX_DESTINATIONS 16  /* per service record: the bound of every loop in BPF */
#define SLUICE_MAX_ENDPOINTS 256    /* per destination */
#define SLUICE_RR_SLOTS 1024        /* round-robin table of one record; a power of two */

/* Service ids index the round-robin state; one id per (VIP, port, protocol). */
#define SLUICE_MAX_SERVICE_IDS 131072
/* Two records per id at most: one per side of the double buffer. */
#define SLUICE_MAX_SERVICE_RECORDS (2 * SLUICE_MAX_SERVICE_IDS)
/* Endpoint slots of all live revisions: during an apply a changed service has two. */
#define SLUICE_MAX_ENDPOINT_SLOTS (1 << 20)
#define SLUICE_MAX_COUNTERS (1 << 19)
#define SLUICE_MAX_UDP_FLOWS 65536

/* Pin names under the bpffs directory (e.g. /sys/fs/bpf/sluice/maps/services). */
#define SLUICE_PIN_MAPS "maps"
#define SLUICE_PIN_PROGS "progs"
#define SLUICE_PIN_LINKS "links"
/* TC links are pinned per interface: links/sluice_tc_ingress@eth0, links/sluice_tc_egress@eth0. */
#define SLUICE_PIN_TC_PREFIX "sluice_tc_"

/* An address as both sides store it: IPv4 in the first 4 bytes, the rest zero. */
struct sluice_addr {
	union {
		__u8 bytes[16];
		__be32 words[4];    /* BPF compares and copies by word: stack access must be aligned */
	};
};
SLUICE_ASSERT_SIZE(struct sluice_addr, 16);

/* Key of `services`: one record per (VIP, port, protocol) and side of the double buffer. */
struct sluice_service_key {
	struct sluice_addr vip;
	__be16 port;
	__u8 protocol;              /* IPPROTO_TCP or IPPROTO_UDP */
	__u8 family;                /* SLUICE_AF_INET or SLUICE_AF_INET6 */
	__u8 side;                  /* generation & 1 */
	__u8 pad[3];
};
SLUICE_ASSERT_SIZE(struct sluice_service_key, 24);

/* TCP policy of a destination (DestinationRule connectionPool.tcp), applied by sockops. */
struct sluice_tcp_policy {
	__u32 connect_timeout_ms;   /* TCP_USER_TIMEOUT until established; 0: none */
	__u16 keepalive_time_s;     /* TCP_KEEPIDLE; 0: the kernel's */
	__u16 keepalive_interval_s; /* TCP_KEEPINTVL; 0: the kernel's */
	__u8 keepalive_probes;      /* TCP_KEEPCNT; 0: the kernel's */
	__u8 flags;                 /* SLUICE_TCP_* */
	__u8 pad[2];
};
SLUICE_ASSERT_SIZE(struct sluice_tcp_policy, 12);

#define SLUICE_TCP_KEEPALIVE 1      /* SO_KEEPALIVE on once established */

struct sluice_destination {
	__u32 cum_weight;           /* RANDOM: cumulative reduced weight up to and including this one */
	__u16 first_slot;           /* endpoints are slots [first_slot, first_slot + n_endpoints) */
	__u16 n_endpoints;          /* 0: this share is refused with ECONNREFUSED */
	struct sluice_tcp_policy tcp;
};
SLUICE_ASSERT_SIZE(struct sluice_destination, 20);

/*
 * Value of `services`: a whole version of one service's routing, replaced
 * whole (never edited in place on a side that readers use).
 */
struct sluice_service {
	__u32 id;                   /* stable per key: indexes `rr_state`, counters */
	__u32 revision;             /* endpoints of this version are {id, revision, slot} */
	__u8 lb;                    /* SLUICE_LB_* */
	__u8 n_destinations;
	__u16 rr_slots;             /* used length of rr_table, 1..SLUICE_RR_SLOTS */
	__u32 total_weight;         /* RANDOM: sum of reduced weights, > 0 */
	struct sluice_destination destinations[SLUICE_MAX_DESTINATIONS];
	__u8 rr_table[SLUICE_RR_SLOTS];   /* destination index per round-robin slot, interleaved */
};
SLUICE_ASSERT_SIZE(struct sluice_service, 16 + 20 * SLUICE_MAX_DESTINATIONS + SLUICE_RR_SLOTS);

struct sluice_endpoint_key {
	__u32 service_id;
	__u32 revision;
	__u32 slot;
};
SLUICE_ASSERT_SIZE(struct sluice_endpoint_key, 12);

struct sluice_endpoint {
	struct sluice_addr addr;
	__be16 port;
	__u8 family;
	__u8 pad;
};
SLUICE_ASSERT_SIZE(struct sluice_endpoint, 20);

/* Key of `counters`: an endpoint of a service, whatever its slot or revision. */
struct sluice_counter_key {
	__u32 service_id;
	struct sluice_addr addr;
	__be16 port;
	__u8 family;
	__u8 pad;
};
SLUICE_ASSERT_SIZE(struct sluice_counter_key, 24);

/* Value of `counters` (per CPU): what connections to one endpoint of a service did. */
struct sluice_endpoint_stats {
	__u64 connections;          /* socket mode connections and TC flows routed to it */
	__u64 established;          /* sockops: TCP handshakes completed (socket mode) */
	__u64 failed;               /* sockops: connects that failed (timeout, reset, unreachable) */
	__u64 retransmits;          /* sockops: segments retransmitted, summed at close */
	__u64 rtt_sum_us;           /* sockops: smoothed RTT at close, summed ... */
	__u64 rtt_samples;          /* ... over this many closed connections */
};
SLUICE_ASSERT_SIZE(struct sluice_endpoint_stats, 48);

/* Value of `rr_state`: shared by all CPUs, advanced with atomic fetch-add. */
struct sluice_rr_state {
	__u64 next_slot;                                /* into the record's rr_table */
	__u64 next_endpoint[SLUICE_MAX_DESTINATIONS];   /* within each destination (u64: 32-bit fetch-add needs -mcpu=v3) */
};
SLUICE_ASSERT_SIZE(struct sluice_rr_state, 8 + 8 * SLUICE_MAX_DESTINATIONS);

/* Value of `active`: the generation readers use; side = generation & 1. */
struct sluice_active {
	__u64 generation;
};
SLUICE_ASSERT_SIZE(struct sluice_active, 8);

/* Per socket (socket storage): where connect() went, for getpeername and recvmsg. */
struct sluice_sock {
	struct sluice_addr vip;
	struct sluice_addr backend;
	__be16 vip_port;
	__be16 backend_port;
	__u8 family;                /* of vip and backend; 0: this socket was not translated */
	__u8 pad[3];
	__u32 service_id;           /* with backend: the endpoint's counters, for sockops */
	struct sluice_tcp_policy tcp;   /* the destination's, for sockops */
};
SLUICE_ASSERT_SIZE(struct sluice_sock, 56);

/* Unconnected UDP: the backend one socket's datagrams to one VIP:port stick to. */
struct sluice_flow_key {
	__u64 cookie;               /* socket cookie: unique per boot, never reused */
	struct sluice_addr addr;    /* forward: the VIP; reverse: the backend */
	__be16 port;
	__u8 family;
	__u8 pad[5];
};
SLUICE_ASSERT_SIZE(struct sluice_flow_key, 32);

struct sluice_flow {
	struct sluice_addr addr;    /* forward: the backend; reverse: the VIP */
	__be16 port;
	__u8 family;
	__u8 pad;
	__u32 service_id;
};
SLUICE_ASSERT_SIZE(struct sluice_flow, 24);

/* ---- TC mode (bpf/sluice_tc.bpf.c): per-packet translation with a conntrack ---- */

#define SLUICE_TC_FLOWS_DEFAULT 65536          /* flows the conntrack holds (two entries each) */
#define SLUICE_TC_TCP_TIMEOUT_S (24 * 3600)    /* an idle open TCP flow; kube-proxy's established timeout */
#define SLUICE_TC_CLOSING_TIMEOUT_S 10         /* an idle TCP flow after FIN or RST */
#define SLUICE_TC_UDP_TIMEOUT_S 60             /* an idle UDP flow */

#define SLUICE_CT_FORWARD 0        /* client -> service address (VIP or gateway address) */
#define SLUICE_CT_REVERSE 1        /* endpoint -> client */

/* Key of `tc_flows`: one packet's 5-tuple as it appears on the wire in that direction. */
struct sluice_ct_key {
	struct sluice_addr src;
	struct sluice_addr dst;
	__be16 sport;
	__be16 dport;
	__u8 protocol;             /* IPPROTO_TCP or IPPROTO_UDP */
	__u8 family;               /* SLUICE_AF_INET or SLUICE_AF_INET6 */
	__u8 direction;            /* SLUICE_CT_FORWARD or SLUICE_CT_REVERSE */
	__u8 pad;
};
SLUICE_ASSERT_SIZE(struct sluice_ct_key, 40);

#define SLUICE_CT_CLOSING 1        /* a FIN or RST was seen: the flow ages in SLUICE_TC_CLOSING_TIMEOUT_S;
                                      a SYN with a new sequence number opens a new flow on its ports */

/* Value of `tc_flows`: where this direction's packets are rewritten to. */
struct sluice_ct {
	struct sluice_addr addr;   /* forward: the endpoint (new destination); reverse: the service address (new source) */
	__be16 port;
	__u8 flags;                /* SLUICE_CT_* */
	__u8 pad;
	__u32 service_id;          /* the service key the flow was routed by */
	__be32 syn_seq;            /* forward, TCP: the opening SYN's sequence number (a retransmission repeats it) */
	__u32 pad2;
	__u64 last_seen;           /* bpf_ktime_get_coarse_ns() of a recent packet, refreshed at most once a second */
};
SLUICE_ASSERT_SIZE(struct sluice_ct, 40);

/* Indexes of `tc_stats` (PERCPU_ARRAY of __u64): what the TC programs did with packets. */
enum sluice_tc_stat {
	SLUICE_TC_NEW_FLOWS,       /* flows routed to an endpoint */
	SLUICE_TC_FORWARD,         /* packets rewritten client -> endpoint */
	SLUICE_TC_REPLIES,         /* packets rewritten endpoint -> client */
	SLUICE_TC_ICMP,            /* ICMP errors about a translated flow, rewritten */
	SLUICE_TC_REFUSED,         /* empty share: answered with TCP RST or ICMP port unreachable */
	SLUICE_TC_UNKNOWN_FLOW,    /* TCP non-SYN to a service with no flow entry: answered with RST */
	SLUICE_TC_FRAGMENTS,       /* IP fragments (and IPv6 extension headers): passed untranslated */
	SLUICE_TC_MALFORMED,       /* truncated or inconsistent headers: passed untranslated */
	SLUICE_TC_ERRORS,          /* a rewrite helper failed: packet dropped rather than half-rewritten */
	SLUICE_TC_STATS,
};

#endif
