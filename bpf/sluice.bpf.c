// SPDX-License-Identifier: GPL-2.0
/*
 * sluice socket-mode data plane: cgroup connect/sendmsg hooks rewrite a
 * connection to a service VIP:port onto one endpoint of one destination
 * (subset), chosen by weight; getpeername/recvmsg hooks show the VIP again.
 *
 * Consistency (DESIGN.md §2 properties 1-3, §7): every record lives twice, once per
 * side of a double buffer. A program reads `active` once and uses only its
 * side byte (`generation & 1`). The writer (loader/dataplane/apply.c) edits
 * only the other side, flips `active` with one map write (the generation and
 * its side), waits one RCU grace period (a
 * map-in-map update from userspace calls synchronize_rcu()), and then replays
 * the same edits on the side nobody reads any more. Per-connection work is a
 * fixed number of lookups and loops bounded by SLUICE_MAX_DESTINATIONS.
 * The routing maps and the choice of an endpoint live in sluice.bpf.h, shared
 * with TC mode (sluice_tc.bpf.c).
 */
#include "sluice.bpf.h"

char LICENSE[] SEC("license") = "GPL";

/*
 * sock_state: SK_STORAGE, 56 B per socket connect() saw going to a service
 * (struct sluice_sock): the VIP and backend it chose, the service id and the
 * destination's TCP policy. Socket storage rather than an LRU keyed by socket
 * cookie: it lives exactly as long as the socket (no eviction under pressure
 * that would break getpeername of a long-lived connection, no stale entries),
 * and needs no size. Written by connect, read by getpeername, recvmsg and
 * sockops. bpftool cannot dump it (socket storage has no keys to walk).
 */
struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct sluice_sock);
} sock_state SEC(".maps");

/*
 * udp_flows / udp_reverse: LRU_HASH keyed by socket cookie, SLUICE_MAX_UDP_FLOWS
 * entries each once a UDP service is routed, 256 before (56 B of key and value;
 * preallocated, ~8 MB each at full size with the LRU's bookkeeping; sized by
 * loader/dataplane/grow.c). An unconnected UDP socket may talk to many VIPs, so one
 * socket-storage value is not enough; cookies are never reused, so entries of
 * closed sockets are only dead weight that the LRU evicts. Forward: {cookie,
 * VIP:port} -> backend (the flow's stickiness, as kube-proxy's conntrack
 * gives). Reverse: {cookie, backend:port} -> VIP:port for recvmsg. Ports in
 * host order. Written by sendmsg, read by sendmsg and recvmsg.
 */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, SLUICE_MAX_UDP_FLOWS);
	__type(key, struct sluice_flow_key);
	__type(value, struct sluice_flow);
} udp_flows SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, SLUICE_MAX_UDP_FLOWS);
	__type(key, struct sluice_flow_key);
	__type(value, struct sluice_flow);
} udp_reverse SEC(".maps");

/*
 * rcu_barrier: ARRAY_OF_MAPS, 1 slot, never read by a program. A userspace update of
 * any map-in-map calls synchronize_rcu() before returning
 * (maybe_wait_bpf_programs() in kernel/bpf/syscall.c), and these programs run
 * under rcu_read_lock: after that update no program still uses the side the
 * switch left. Measured 2-35 ms per call (median ~15 ms) on the 6.18 test
 * machine: it bounds how often applies can follow each other, not how fast
 * one takes effect (the switch already happened). Written by userspace only
 * (sluiced sets the slot to an inner map it made; nothing is pinned inside).
 */
struct rcu_barrier_inner {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 1);
	__type(key, __u32);
	__array(values, struct rcu_barrier_inner);
} rcu_barrier SEC(".maps");

/* A destination address of a hook, v4-mapped IPv6 folded into IPv4; the port in host order, as the maps hold it. */
struct peer {
	struct sluice_addr addr;
	__u16 port;
	__u8 family;
};

static __always_inline void read_peer(const struct bpf_sock_addr *ctx, bool v6, struct peer *p)
{
	__builtin_memset(p, 0, sizeof(*p));
	p->port = bpf_ntohs((__be16)ctx->user_port);
	if (!v6) {
		p->family = SLUICE_AF_INET;
		addr_w(&p->addr)[0] = ctx->user_ip4;
		return;
	}
	__u32 w0 = ctx->user_ip6[0], w1 = ctx->user_ip6[1];
	__u32 w2 = ctx->user_ip6[2], w3 = ctx->user_ip6[3];
	if (w0 == 0 && w1 == 0 && w2 == bpf_htonl(0xffff)) {
		p->family = SLUICE_AF_INET;     /* ::ffff:a.b.c.d: an IPv4 service dialed from a dual-stack socket */
		addr_w(&p->addr)[0] = w3;
		return;
	}
	p->family = SLUICE_AF_INET6;
	addr_w(&p->addr)[0] = w0;
	addr_w(&p->addr)[1] = w1;
	addr_w(&p->addr)[2] = w2;
	addr_w(&p->addr)[3] = w3;
}

/* port in host order, as the maps hold it */
static __always_inline void write_peer(struct bpf_sock_addr *ctx, bool v6, const struct sluice_addr *a,
				       __u8 family, __u16 port)
{
	ctx->user_port = (__u32)bpf_htons(port);
	if (!v6) {
		ctx->user_ip4 = addr_w(a)[0];
	} else if (family == SLUICE_AF_INET) {
		ctx->user_ip6[0] = 0;
		ctx->user_ip6[1] = 0;
		ctx->user_ip6[2] = bpf_htonl(0xffff);
		ctx->user_ip6[3] = addr_w(a)[0];
	} else {
		ctx->user_ip6[0] = addr_w(a)[0];
		ctx->user_ip6[1] = addr_w(a)[1];
		ctx->user_ip6[2] = addr_w(a)[2];
		ctx->user_ip6[3] = addr_w(a)[3];
	}
}

static __always_inline const struct sluice_service *lookup_peer(const struct peer *p, __u8 protocol)
{
	return lookup_service(&p->addr, p->port, protocol, p->family);
}

/*
 * Returning 0 denies the call; the kernel reports -EPERM unless the program set
 * another error. On 6.18 connect() (blocking or not) and sendto() then fail at
 * once with ECONNREFUSED, what a client of a pod-less Service would see.
 */
static __always_inline int refuse(void)
{
	bpf_set_retval(-ECONNREFUSED);
	return 0;
}

static __always_inline int do_connect(struct bpf_sock_addr *ctx, bool v6)
{
	const struct sluice_endpoint *ep;
	struct sluice_sock *ss;
	struct peer p;
	__u32 dest = SLUICE_MAX_DESTINATIONS;
	int err;

	if (ctx->protocol != IPPROTO_TCP && ctx->protocol != IPPROTO_UDP)
		return 1;
	read_peer(ctx, v6, &p);
	const struct sluice_service *svc = lookup_peer(&p, ctx->protocol);

	ss = bpf_sk_storage_get(&sock_state, ctx->sk, 0, svc ? BPF_SK_STORAGE_GET_F_CREATE : 0);
	if (ss)
		ss->family = 0;   /* a socket connected again (UDP) forgets its previous VIP */
	if (!svc)
		return 1;
	ep = pick_endpoint(svc, &err, &dest);
	if (err == -ECONNREFUSED)
		return refuse();
	if (!ep || (ep->family != p.family))
		return 1;
	count_connection(svc->id, ep);
	if (ss) {
		ss->vip = p.addr;
		ss->vip_port = p.port;
		ss->backend = ep->addr;
		ss->backend_port = ep->port;
		ss->family = p.family;
		ss->service_id = svc->id;
		if (dest < SLUICE_MAX_DESTINATIONS)
			ss->tcp = svc->destinations[dest].tcp;
	}
	write_peer(ctx, v6, &ep->addr, ep->family, ep->port);
	return 1;
}

/* Unconnected UDP: one backend per (socket, VIP:port), chosen at the first datagram. */
static __always_inline int do_sendmsg(struct bpf_sock_addr *ctx, bool v6)
{
	struct sluice_flow_key fkey, rkey;
	struct sluice_flow fwd, rev;
	struct peer p;
	int err;

	read_peer(ctx, v6, &p);
	const struct sluice_service *svc = lookup_peer(&p, IPPROTO_UDP);
	if (!svc)
		return 1;

	__builtin_memset(&fkey, 0, sizeof(fkey));
	fkey.cookie = bpf_get_socket_cookie(ctx);
	fkey.addr = p.addr;
	fkey.port = p.port;
	fkey.family = p.family;
	struct sluice_flow *flow = bpf_map_lookup_elem(&udp_flows, &fkey);
	if (flow && flow->service_id == svc->id) {
		/* Keep the flow's backend while the service still has it (its counter exists). */
		if (endpoint_stats(svc->id, &flow->addr, flow->port, flow->family)) {
			write_peer(ctx, v6, &flow->addr, flow->family, flow->port);
			return 1;
		}
	}

	__u32 dest;
	const struct sluice_endpoint *ep = pick_endpoint(svc, &err, &dest);
	if (err == -ECONNREFUSED)
		return refuse();
	if (!ep || ep->family != p.family)
		return 1;
	count_connection(svc->id, ep);

	__builtin_memset(&fwd, 0, sizeof(fwd));
	fwd.addr = ep->addr;
	fwd.port = ep->port;
	fwd.family = ep->family;
	fwd.service_id = svc->id;
	bpf_map_update_elem(&udp_flows, &fkey, &fwd, BPF_ANY);

	__builtin_memset(&rkey, 0, sizeof(rkey));
	rkey.cookie = fkey.cookie;
	rkey.addr = ep->addr;
	rkey.port = ep->port;
	rkey.family = ep->family;
	__builtin_memset(&rev, 0, sizeof(rev));
	rev.addr = p.addr;
	rev.port = p.port;
	rev.family = p.family;
	rev.service_id = svc->id;
	bpf_map_update_elem(&udp_reverse, &rkey, &rev, BPF_ANY);

	write_peer(ctx, v6, &ep->addr, ep->family, ep->port);
	return 1;
}

/* getpeername and recvmsg: a backend address this socket was sent to reads as its VIP. */
static __always_inline int do_reverse(struct bpf_sock_addr *ctx, bool v6, bool udp_flows_too)
{
	struct sluice_flow_key rkey;
	struct peer p;

	read_peer(ctx, v6, &p);
	struct sluice_sock *ss = bpf_sk_storage_get(&sock_state, ctx->sk, 0, 0);
	if (ss && ss->family == p.family && ss->backend_port == p.port && addr_eq(&ss->backend, &p.addr)) {
		write_peer(ctx, v6, &ss->vip, ss->family, ss->vip_port);
		return 1;
	}
	if (!udp_flows_too)
		return 1;
	__builtin_memset(&rkey, 0, sizeof(rkey));
	rkey.cookie = bpf_get_socket_cookie(ctx);
	rkey.addr = p.addr;
	rkey.port = p.port;
	rkey.family = p.family;
	const struct sluice_flow *rev = bpf_map_lookup_elem(&udp_reverse, &rkey);
	if (rev)
		write_peer(ctx, v6, &rev->addr, rev->family, rev->port);
	return 1;
}

SEC("cgroup/connect4")
int sluice_connect4(struct bpf_sock_addr *ctx)
{
	return do_connect(ctx, false);
}

SEC("cgroup/connect6")
int sluice_connect6(struct bpf_sock_addr *ctx)
{
	return do_connect(ctx, true);
}

SEC("cgroup/sendmsg4")
int sluice_sendmsg4(struct bpf_sock_addr *ctx)
{
	return do_sendmsg(ctx, false);
}

SEC("cgroup/sendmsg6")
int sluice_sendmsg6(struct bpf_sock_addr *ctx)
{
	return do_sendmsg(ctx, true);
}

SEC("cgroup/recvmsg4")
int sluice_recvmsg4(struct bpf_sock_addr *ctx)
{
	return do_reverse(ctx, false, true);
}

SEC("cgroup/recvmsg6")
int sluice_recvmsg6(struct bpf_sock_addr *ctx)
{
	return do_reverse(ctx, true, true);
}

SEC("cgroup/getpeername4")
int sluice_getpeername4(struct bpf_sock_addr *ctx)
{
	return do_reverse(ctx, false, false);
}

SEC("cgroup/getpeername6")
int sluice_getpeername6(struct bpf_sock_addr *ctx)
{
	return do_reverse(ctx, true, false);
}

/* ---- sockops: the TCP life of translated connections ---- */

#define SOL_SOCKET 1
#define SO_KEEPALIVE 9
#define SOL_TCP 6
#define TCP_KEEPIDLE 4
#define TCP_KEEPINTVL 5
#define TCP_KEEPCNT 6
#define TCP_USER_TIMEOUT 18
#define ENETUNREACH 101
#define ETIMEDOUT 110
#define EHOSTUNREACH 113

/* The kernel's tick rate, for the SYN's first retransmission timeout (in jiffies); 0: unknown. */
extern unsigned int CONFIG_HZ __kconfig __weak;

static __always_inline struct sluice_sock *translated(struct bpf_sock_ops *skops)
{
	struct bpf_sock *sk = skops->sk;
	struct sluice_sock *ss;

	if (!sk)
		return NULL;
	ss = bpf_sk_storage_get(&sock_state, sk, 0, 0);
	return ss && ss->family ? ss : NULL;
}

static __always_inline void set_int(struct bpf_sock_ops *skops, int level, int opt, int v)
{
	bpf_setsockopt(skops, level, opt, &v, sizeof(v));
}

/*
 * Why a connect ended, from the error the kernel gave the socket before tcp_done(): tcp_reset and
 * ICMP port unreachable set ECONNREFUSED, tcp_write_err ETIMEDOUT or the soft error an ICMP left,
 * tcp_v4_err/tcp_v6_err the ICMP's; 0 when the client closed it. An ICMP error that came while
 * connect() held the socket is only a soft error: one the client closed on, unread, still names
 * the reason (DESIGN.md §10). Reading these fields through BTF needs CAP_PERFMON or CAP_SYS_ADMIN.
 */
static __always_inline __u32 connect_failure(struct bpf_sock_ops *skops)
{
	struct bpf_sock *sk = skops->sk;
	struct tcp_sock *tp = sk ? bpf_skc_to_tcp_sock(sk) : NULL;

	if (!tp)
		return SLUICE_FAILED_OTHER;
	switch (tp->inet_conn.icsk_inet.sk.sk_err ?: tp->inet_conn.icsk_inet.sk.sk_err_soft) {
	case 0: return SLUICE_FAILED_ABORTED;
	case ETIMEDOUT: return SLUICE_FAILED_TIMEOUT;
	case ECONNREFUSED: return SLUICE_FAILED_REFUSED;
	case EHOSTUNREACH:
	case ENETUNREACH: return SLUICE_FAILED_UNREACHABLE;
	default: return SLUICE_FAILED_OTHER;
	}
}

/*
 * A connection connect() translated gets its destination's TCP policy (DestinationRule
 * connectionPool.tcp) and is counted per endpoint: connectTimeout is TCP_USER_TIMEOUT while the
 * handshake runs (with the SYN's first retransmission no later than the timeout, so that a
 * sub-second timeout fires on time), lifted once established so that it never limits the
 * connection itself; tcpKeepalive is SO_KEEPALIVE and TCP_KEEPIDLE/KEEPINTVL/KEEPCNT from then on.
 * Counts: handshakes completed, connects failed (SYN_SENT -> CLOSE) by reason, and at close the
 * retransmissions and smoothed RTT. Other sockets cost one socket-storage lookup per callback.
 */
SEC("sockops")
int sluice_sockops(struct bpf_sock_ops *skops)
{
	struct sluice_endpoint_stats *st;
	struct sluice_sock *ss;
	__u32 op = skops->op;

	if (op != BPF_SOCK_OPS_TCP_CONNECT_CB && op != BPF_SOCK_OPS_TIMEOUT_INIT &&
	    op != BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB && op != BPF_SOCK_OPS_STATE_CB)
		return 1;
	ss = translated(skops);
	if (!ss)
		return 1;
	switch (op) {
	case BPF_SOCK_OPS_TCP_CONNECT_CB:
		if (ss->tcp.connect_timeout_ms)
			set_int(skops, SOL_TCP, TCP_USER_TIMEOUT, (int)ss->tcp.connect_timeout_ms);
		bpf_sock_ops_cb_flags_set(skops, skops->bpf_sock_ops_cb_flags | BPF_SOCK_OPS_STATE_CB_FLAG);
		break;
	case BPF_SOCK_OPS_TIMEOUT_INIT:
		/* the user timeout is only checked when a retransmission timer fires: the first at 1 s */
		if (ss->tcp.connect_timeout_ms && ss->tcp.connect_timeout_ms < 1000 && CONFIG_HZ)
			skops->reply = (ss->tcp.connect_timeout_ms * CONFIG_HZ + 999) / 1000;
		break;
	case BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB:
		if (ss->tcp.connect_timeout_ms)
			set_int(skops, SOL_TCP, TCP_USER_TIMEOUT, 0);
		if (ss->tcp.flags & SLUICE_TCP_KEEPALIVE) {
			set_int(skops, SOL_SOCKET, SO_KEEPALIVE, 1);
			if (ss->tcp.keepalive_time_s)
				set_int(skops, SOL_TCP, TCP_KEEPIDLE, ss->tcp.keepalive_time_s);
			if (ss->tcp.keepalive_interval_s)
				set_int(skops, SOL_TCP, TCP_KEEPINTVL, ss->tcp.keepalive_interval_s);
			if (ss->tcp.keepalive_probes)
				set_int(skops, SOL_TCP, TCP_KEEPCNT, ss->tcp.keepalive_probes);
		}
		st = endpoint_stats(ss->service_id, &ss->backend, ss->backend_port, ss->family);
		if (st)
			__sync_fetch_and_add(&st->established, 1);
		break;
	case BPF_SOCK_OPS_STATE_CB:
		if (skops->args[1] != BPF_TCP_CLOSE)
			break;
		st = endpoint_stats(ss->service_id, &ss->backend, ss->backend_port, ss->family);
		if (!st)
			break;
		if (skops->args[0] == BPF_TCP_SYN_SENT) {
			__sync_fetch_and_add(&st->failed[connect_failure(skops)], 1);
		} else {
			__sync_fetch_and_add(&st->retransmits, skops->total_retrans);
			if (skops->srtt_us) {
				__sync_fetch_and_add(&st->rtt_sum_us, skops->srtt_us >> 3);   /* stored << 3 */
				__sync_fetch_and_add(&st->rtt_samples, 1);
			}
		}
		break;
	}
	return 1;
}

/*
 * sluice_merge: userspace's atomic add to one entry (struct sluice_merge), run with BPF_PROG_RUN
 * when the maps grow: the previous maps' counts since their copy join the new maps' while the
 * programs keep counting into them. Attached nowhere.
 */
SEC("syscall")
int sluice_merge(struct sluice_merge *ctx)
{
	struct sluice_merge m;
	__u64 *v;
	__u32 n;

	__builtin_memcpy(&m, ctx, sizeof(m));   /* a context is read at constant offsets only */
	if (m.map == SLUICE_MERGE_COUNTERS) {
		v = bpf_map_lookup_elem(&counters, &m.key);
		n = sizeof(struct sluice_endpoint_stats) / 8;
	} else {
		v = bpf_map_lookup_elem(&rr_state, &m.key.service_id);
		n = sizeof(struct sluice_rr_state) / 8;
	}
	if (!v)
		return 1;
	for (__u32 i = 0; i < SLUICE_MERGE_WORDS && i < n; i++)
		if (m.add[i])
			__sync_fetch_and_add(&v[i], m.add[i]);
	return 0;
}
