/* SPDX-License-Identifier: MIT */
/*
 * The ABI between the BPF data plane (bpf/sluice.bpf.c socket mode,
 * bpf/sluice_tc.bpf.c TC mode) and the map writer (loader/dataplane/): map
 * keys, values, limits and pin names. One header,
 * included from both sides; only fixed-width types (and 1-byte enums),
 * explicit padding, and a size assertion on every struct and enum, so a key
 * built on one side matches the other byte for byte (uninitialised padding
 * would make lookups miss). The maps are also read by people with bpftool
 * (README: "Inspecting the maps with bpftool"): types are chosen so that its
 * BTF-driven dump prints them plainly. Every map: DESIGN.md §6.
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

/*
 * Fields with named values are 1-byte enums (packed): the same byte as a __u8,
 * and bpftool prints the name ("SLUICE_AF_INET", "SLUICE_LB_ROUND_ROBIN").
 */

/* Address families as the kernel numbers them (AF_INET, AF_INET6); vmlinux.h has no macros. */
enum __attribute__((packed)) sluice_family {
	SLUICE_AF_INET = 2,
	SLUICE_AF_INET6 = 10,
};
SLUICE_ASSERT_SIZE(enum sluice_family, 1);

/* IP protocols as the kernel numbers them (IPPROTO_TCP, IPPROTO_UDP). */
enum __attribute__((packed)) sluice_protocol {
	SLUICE_PROTO_TCP = 6,
	SLUICE_PROTO_UDP = 17,
};
SLUICE_ASSERT_SIZE(enum sluice_protocol, 1);

enum __attribute__((packed)) sluice_lb {   /* same values as enum plan_lb */
	SLUICE_LB_ROUND_ROBIN = 0,
	SLUICE_LB_RANDOM = 1,
};
SLUICE_ASSERT_SIZE(enum sluice_lb, 1);

#define SLUICE_MAX_DESTINATIONS 16  /* per service record: the bound of every loop in BPF */
#define SLUICE_MAX_ENDPOINTS 4096   /* per destination: 16 x 4,096 slots fit first_slot + n_endpoints (u16) */
#define SLUICE_RR_SLOTS 1024        /* round-robin table of one record; a power of two */

/* Service ids key the round-robin state and the counters; one id per (VIP, port, protocol). */
#define SLUICE_MAX_SERVICE_IDS 131072
/* Two records per id at most: one per side of the double buffer. */
#define SLUICE_MAX_SERVICE_RECORDS (2 * SLUICE_MAX_SERVICE_IDS)
/* Endpoint slots of all live versions: during an apply a changed service has two. */
#define SLUICE_MAX_ENDPOINT_SLOTS (1 << 20)
#define SLUICE_MAX_COUNTERS (1 << 19)
#define SLUICE_MAX_UDP_FLOWS 65536

/* Pin names under the bpffs directory (e.g. /sys/fs/bpf/sluice/maps/services). */
#define SLUICE_PIN_MAPS "maps"
#define SLUICE_PIN_PROGS "progs"
#define SLUICE_PIN_LINKS "links"
/* TC links are pinned per interface: links/sluice_tc_ingress@eth0, links/sluice_tc_egress@eth0. */
#define SLUICE_PIN_TC_PREFIX "sluice_tc_"

/*
 * An address as both sides store it: IPv4 in the first 4 bytes, the rest zero.
 * Bytes alone (no union with words), so that bpftool prints it once and as
 * written: 198.19.0.1 is [198,19,0,1,0,0,0,0,0,0,0,0,0,0,0,0]. Aligned to 4:
 * BPF compares and copies it by 32-bit words (bpf/sluice.bpf.h addr_w), and
 * stack access must be aligned.
 */
struct sluice_addr {
	__u8 bytes[16];
} __attribute__((aligned(4)));
SLUICE_ASSERT_SIZE(struct sluice_addr, 16);

/*
 * Ports in the routing maps (services, endpoints, counters, udp_flows,
 * udp_reverse, socket storage) are in host byte order, as a user writes them:
 * bpftool prints 8080. The BPF programs convert where a port meets the wire
 * or a socket address (bpf_ntohs/bpf_htons). Only TC mode's conntrack
 * (tc_flows) keeps ports as they appear in packets (__be16).
 */

/* Key of `services`: one record per (VIP, port, protocol) and side of the double buffer. */
struct sluice_service_key {
	struct sluice_addr vip;     /* or a gateway address */
	__u16 port;
	enum sluice_protocol protocol;
	enum sluice_family family;
	__u8 side;                  /* 0 or 1: the record is live when it equals `active`.side */
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
	__u32 weight;               /* as configured (the VirtualService's weight); for readers, BPF does not use it */
	__u32 cum_weight;           /* RANDOM: cumulative reduced weight up to and including this one */
	__u16 first_slot;           /* endpoints are slots [first_slot, first_slot + n_endpoints) */
	__u16 n_endpoints;          /* 0: this share is refused with ECONNREFUSED */
	struct sluice_tcp_policy tcp;
};
SLUICE_ASSERT_SIZE(struct sluice_destination, 24);

/*
 * Value of `services`: a whole version of one service's routing, replaced
 * whole (never edited in place on a side that readers use). RANDOM draws
 * against the last destination's cum_weight; ROUND_ROBIN walks rr_table.
 */
struct sluice_service {
	__u32 id;                   /* stable per key: keys `rr_state` and `counters` */
	enum sluice_lb lb;
	__u8 n_destinations;
	__u16 rr_slots;             /* used length of rr_table, 1..SLUICE_RR_SLOTS */
	__u64 generation;           /* the generation this version was written for; its endpoints are {id, slot, generation} */
	struct sluice_destination destinations[SLUICE_MAX_DESTINATIONS];
	__u8 rr_table[SLUICE_RR_SLOTS];   /* destination index per round-robin slot, interleaved */
};
SLUICE_ASSERT_SIZE(struct sluice_service, 16 + 24 * SLUICE_MAX_DESTINATIONS + SLUICE_RR_SLOTS);

/* Key of `endpoints`: one slot of one version of a service. */
struct sluice_endpoint_key {
	__u32 service_id;
	__u32 slot;
	__u64 generation;           /* the record's: a changed service's new endpoints never overwrite the live ones */
};
SLUICE_ASSERT_SIZE(struct sluice_endpoint_key, 16);

struct sluice_endpoint {
	struct sluice_addr addr;
	__u16 port;
	enum sluice_family family;
	__u8 pad;
};
SLUICE_ASSERT_SIZE(struct sluice_endpoint, 20);

/* Key of `counters`: an endpoint of a service, whatever its slot or version. */
struct sluice_counter_key {
	__u32 service_id;
	struct sluice_addr addr;
	__u16 port;
	enum sluice_family family;
	__u8 pad;
};
SLUICE_ASSERT_SIZE(struct sluice_counter_key, 24);

/*
 * Why a TCP connect failed, from the socket's error as sockops sees it go SYN_SENT -> CLOSE
 * (DESIGN.md §10): indexes of sluice_endpoint_stats.failed. An index, never stored: not packed.
 */
enum sluice_connect_failure {
	SLUICE_FAILED_TIMEOUT,      /* ETIMEDOUT: the SYN retries or connectTimeout ran out unanswered */
	SLUICE_FAILED_REFUSED,      /* ECONNREFUSED: a RST, or ICMP port unreachable */
	SLUICE_FAILED_UNREACHABLE,  /* EHOSTUNREACH, ENETUNREACH: ICMP host or net unreachable */
	SLUICE_FAILED_ABORTED,      /* no error: the client closed the socket before the handshake ended */
	SLUICE_FAILED_OTHER,        /* any other error (ICMP protocol unreachable: ENOPROTOOPT, ...) */
	SLUICE_CONNECT_FAILURE_REASONS,
};

/* Value of `counters` (one for all CPUs): what connections to one endpoint of a service did. */
struct sluice_endpoint_stats {
	__u64 connections;          /* socket mode connections and TC flows routed to it */
	__u64 established;          /* sockops: TCP handshakes completed (socket mode) */
	__u64 failed[SLUICE_CONNECT_FAILURE_REASONS];   /* sockops: connects that failed, by reason */
	__u64 retransmits;          /* sockops: segments retransmitted, summed at close */
	__u64 rtt_sum_us;           /* sockops: smoothed RTT at close, summed ... */
	__u64 rtt_samples;          /* ... over this many closed connections */
};
SLUICE_ASSERT_SIZE(struct sluice_endpoint_stats, 8 * (5 + SLUICE_CONNECT_FAILURE_REASONS));

/* Value of `rr_state` (keyed by service id): shared by all CPUs, advanced with atomic fetch-add. */
struct sluice_rr_state {
	__u64 next_slot;                                /* into the record's rr_table */
	__u64 next_endpoint[SLUICE_MAX_DESTINATIONS];   /* within each destination (u64: 32-bit fetch-add needs -mcpu=v3) */
};
SLUICE_ASSERT_SIZE(struct sluice_rr_state, 8 + 8 * SLUICE_MAX_DESTINATIONS);

/*
 * Input of the `sluice_merge` program (BPF_PROG_RUN from userspace): words added, atomically, to
 * one entry of `counters` or of `rr_state`, which the running programs may be
 * adding to at the same moment. Growing the maps merges what the previous maps counted after
 * their copy with it (loader/dataplane/grow.c); a userspace read-modify-write would lose adds.
 */
enum sluice_merge_map {
	SLUICE_MERGE_COUNTERS = 0,
	SLUICE_MERGE_RR_STATE = 1,
};
#define SLUICE_MERGE_WORDS (sizeof(struct sluice_rr_state) / 8)   /* the larger of the two values */
struct sluice_merge {
	__u32 map;                          /* enum sluice_merge_map */
	__u32 pad;
	struct sluice_counter_key key;      /* counters; rr_state: key.service_id */
	__u64 add[SLUICE_MERGE_WORDS];      /* the value's words, in order */
};
SLUICE_ASSERT_SIZE(struct sluice_merge, 8 + 24 + 8 * (1 + SLUICE_MAX_DESTINATIONS));
SLUICE_ASSERT_SIZE(char[sizeof(struct sluice_endpoint_stats) <= sizeof(struct sluice_rr_state)], 1);   /* merge words */

/*
 * Value of `active`: the generation readers use and its side of `services`
 * (generation & 1, written out so that a reader of the map needs no
 * arithmetic). BPF reads `side` alone: one byte, so even an update read
 * half-way cannot mix two versions.
 */
struct sluice_active {
	__u64 generation;
	__u8 side;
	__u8 pad[7];
};
SLUICE_ASSERT_SIZE(struct sluice_active, 16);

/* Per socket (socket storage): where connect() went, for getpeername and recvmsg. */
struct sluice_sock {
	struct sluice_addr vip;
	struct sluice_addr backend;
	__u16 vip_port;
	__u16 backend_port;
	__u8 family;                /* of vip and backend (enum sluice_family); 0: this socket was not translated */
	__u8 pad[3];
	__u32 service_id;           /* with backend: the endpoint's counters, for sockops */
	struct sluice_tcp_policy tcp;   /* the destination's, for sockops */
};
SLUICE_ASSERT_SIZE(struct sluice_sock, 56);

/* Unconnected UDP: the backend one socket's datagrams to one VIP:port stick to. */
struct sluice_flow_key {
	__u64 cookie;               /* socket cookie: unique per boot, never reused */
	struct sluice_addr addr;    /* forward: the VIP; reverse: the backend */
	__u16 port;
	enum sluice_family family;
	__u8 pad[5];
};
SLUICE_ASSERT_SIZE(struct sluice_flow_key, 32);

struct sluice_flow {
	struct sluice_addr addr;    /* forward: the backend; reverse: the VIP */
	__u16 port;
	enum sluice_family family;
	__u8 pad;
	__u32 service_id;
};
SLUICE_ASSERT_SIZE(struct sluice_flow, 24);

/* ---- TC mode (bpf/sluice_tc.bpf.c): per-packet translation with a conntrack ---- */

#define SLUICE_TC_FLOWS_DEFAULT 65536          /* flows the conntrack holds (two entries each) */
#define SLUICE_TC_TCP_TIMEOUT_S (24 * 3600)    /* an idle open TCP flow; kube-proxy's established timeout */
#define SLUICE_TC_CLOSING_TIMEOUT_S 10         /* an idle TCP flow after FIN or RST */
#define SLUICE_TC_UDP_TIMEOUT_S 60             /* an idle UDP flow */

enum __attribute__((packed)) sluice_ct_direction {
	SLUICE_CT_FORWARD = 0,     /* client -> service address (VIP or gateway address) */
	SLUICE_CT_REVERSE = 1,     /* endpoint -> client */
};
SLUICE_ASSERT_SIZE(enum sluice_ct_direction, 1);

/*
 * Key of `tc_flows`: one packet's 5-tuple as it appears on the wire in that
 * direction. Its layout and its value's (ports in network byte order) do not
 * change between releases: the flow table is kept across upgrades, so that TC
 * flows in progress keep their endpoints.
 */
struct sluice_ct_key {
	struct sluice_addr src;
	struct sluice_addr dst;
	__be16 sport;
	__be16 dport;
	enum sluice_protocol protocol;
	enum sluice_family family;
	enum sluice_ct_direction direction;
	__u8 pad;
};
SLUICE_ASSERT_SIZE(struct sluice_ct_key, 40);

#define SLUICE_CT_CLOSING 1        /* a FIN or RST was seen: the flow ages in SLUICE_TC_CLOSING_TIMEOUT_S;
                                      a SYN with a new sequence number opens a new flow on its ports */

/*
 * How long (ns) a flow entry idle since its last_seen still routes, by the key's protocol and the
 * entry's flags: the one rule for TC mode, which lets a flow go after it, and for `sluice status`,
 * which counts the flows still live.
 */
#define SLUICE_CT_TIMEOUT_NS(protocol, flags)                                \
	(1000000000ull * ((protocol) != SLUICE_PROTO_TCP ? SLUICE_TC_UDP_TIMEOUT_S \
			  : ((flags) & SLUICE_CT_CLOSING) ? SLUICE_TC_CLOSING_TIMEOUT_S \
			  : SLUICE_TC_TCP_TIMEOUT_S))

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
