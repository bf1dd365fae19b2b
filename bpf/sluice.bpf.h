/* SPDX-License-Identifier: GPL-2.0 */
/*
 * What both data planes share: the routing maps the map writer
 * (loader/dataplane/) fills, and the per-connection choice of an endpoint.
 * bpf/sluice.bpf.c (socket mode, at connect) and bpf/sluice_tc.bpf.c (TC
 * mode, at a flow's first packet) include it; the loader loads the socket
 * object first and the TC object reuses these maps through their pins, so both
 * read one copy of every record and advance one round-robin state per service.
 */
#ifndef SLUICE_BPF_H
#define SLUICE_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "sluice_abi.h"

#define ECONNREFUSED 111
#define ENOENT 2

/* An address by 32-bit words (struct sluice_addr is bytes; may_alias makes this access legal C). */
typedef __u32 __attribute__((may_alias)) sluice_word;
#define addr_w(a) ((sluice_word *)(a)->bytes)

static __always_inline bool addr_eq(const struct sluice_addr *a, const struct sluice_addr *b)
{
	return addr_w(a)[0] == addr_w(b)[0] && addr_w(a)[1] == addr_w(b)[1] &&
	       addr_w(a)[2] == addr_w(b)[2] && addr_w(a)[3] == addr_w(b)[3];
}

/*
 * The routing maps, each with its type, why, size, writer and reader. All of
 * them are pinned under DIR/maps and meant to be read with bpftool too (see
 * the README's "Inspecting the maps with bpftool"). The max_entries below are
 * limits: sluiced makes services, endpoints, counters and rr_state as large as
 * the plan needs and grows them (loader/dataplane/grow.c), since a hash
 * table's buckets cost 16 B per max_entries even when empty.
 */

/*
 * active: ARRAY, 1 slot of 16 bytes. The generation readers use and its side
 * of `services`. Written by userspace once per apply (that write is the
 * switch: 2-4 us measured by bench/dp_switch.c with 1 and with 10,000
 * services loaded), read once per connection. BPF reads the one byte `side`,
 * so even an update seen half-way could not mix two versions.
 */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct sluice_active);
} active SEC(".maps");

/*
 * services: HASH {VIP, port, protocol, family, side} -> whole record (1424 B:
 * configured and reduced weights, 1024-slot round-robin table, endpoint slot
 * ranges, the generation it was written for). Two records per VIP, one per
 * side; the live one has key.side == active.side, and outside an apply both
 * are equal. HASH and not ARRAY: keyed by VIP, and an update replaces the
 * value whole. NO_PREALLOC: a replaced or deleted element is freed after an
 * RCU grace period instead of going back to a free list where a concurrent
 * update could reuse it at once; and memory follows the number of services
 * (2 records of one 2 kB allocation each) rather than max_entries
 * (SLUICE_MAX_SERVICE_RECORDS). Written only on the inactive side by
 * userspace; read by connect/sendmsg and by the TC programs at a flow's
 * first packet.
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, SLUICE_MAX_SERVICE_RECORDS);
	__type(key, struct sluice_service_key);
	__type(value, struct sluice_service);
} services SEC(".maps");

/*
 * endpoints: HASH {service id, slot, generation} -> address and port.
 * Immutable once written: a changed service's record names a new generation,
 * so a reader still holding the previous record finds the previous endpoints;
 * a generation's slots are deleted only after a grace period and once no
 * record on either side names them. NO_PREALLOC for memory (1M slots would
 * preallocate ~100 MB; a slot is 36 B of key and value, about 100 B with the
 * hash table's own). Written by userspace, read by connect/sendmsg and TC.
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, SLUICE_MAX_ENDPOINT_SLOTS);
	__type(key, struct sluice_endpoint_key);
	__type(value, struct sluice_endpoint);
} endpoints SEC(".maps");

/*
 * counters: HASH {service id, endpoint address, port} -> connections (socket
 * mode) and flows (TC mode) made, and what sockops saw of their TCP life
 * (handshakes, failures by reason, retransmits, RTT): 80 B per endpoint of a
 * service, up to SLUICE_MAX_COUNTERS. Keyed by the endpoint itself, not its
 * slot, so the count survives weight changes and re-applies that keep the
 * endpoint. One value for all CPUs, added to atomically, as rr_state already
 * is on the same path: a per-CPU value costs 80 B per CPU and one allocation
 * of the kernel's per-CPU allocator per entry (21 us; 3.1 s for the envelope's
 * 150,000 endpoints, against 0.2 s for a shared value; DESIGN.md §6). Created
 * and deleted only by userspace (BPF never inserts), so its presence also says
 * "this endpoint is still part of this service" for sticky UDP flows (socket
 * and TC mode).
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, SLUICE_MAX_COUNTERS);
	__type(key, struct sluice_counter_key);
	__type(value, struct sluice_endpoint_stats);
} counters SEC(".maps");

/*
 * rr_state: HASH service id -> round-robin position (136 B), one entry per id
 * in use: created (zeroed) by userspace when an id is allocated, deleted when
 * it is freed, so a dump shows the services' ids and nothing else. One value
 * shared by all CPUs on purpose: atomic fetch-adds per connection (one for
 * the table slot, one for the endpoint within the destination) make round
 * robin exact node-wide (of any 100 consecutive connections to an 80/20
 * service, exactly 80 go to v1; DESIGN.md §8). NO_PREALLOC: memory follows the ids in use
 * (at most SLUICE_MAX_SERVICE_IDS), and a deleted entry is freed after a
 * grace period, never handed to another id under a reader. Read and advanced
 * by connect/sendmsg and TC.
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, SLUICE_MAX_SERVICE_IDS);
	__type(key, __u32);
	__type(value, struct sluice_rr_state);
} rr_state SEC(".maps");

/* The live record of service key {addr, port (host order), protocol, family}: the side `active` names. */
static __always_inline const struct sluice_service *lookup_service(const struct sluice_addr *addr, __u16 port,
								    __u8 protocol, __u8 family)
{
	struct sluice_service_key key;
	__u32 zero = 0;

	const struct sluice_active *act = bpf_map_lookup_elem(&active, &zero);
	if (!act)
		return NULL;
	__builtin_memset(&key, 0, sizeof(key));
	key.vip = *addr;
	key.port = port;
	key.protocol = protocol;
	key.family = family;
	key.side = *(volatile const __u8 *)&act->side & 1;   /* read once */
	return bpf_map_lookup_elem(&services, &key);
}

/* The counters of endpoint addr:port (host order) of a service; NULL once the endpoint left it. */
static __always_inline struct sluice_endpoint_stats *endpoint_stats(__u32 service_id, const struct sluice_addr *addr,
								    __u16 port, __u8 family)
{
	struct sluice_counter_key key;

	__builtin_memset(&key, 0, sizeof(key));
	key.service_id = service_id;
	key.addr = *addr;
	key.port = port;
	key.family = family;
	return bpf_map_lookup_elem(&counters, &key);
}

static __always_inline void count_connection(__u32 service_id, const struct sluice_endpoint *ep)
{
	struct sluice_endpoint_stats *st = endpoint_stats(service_id, &ep->addr, ep->port, ep->family);
	if (st)
		__sync_fetch_and_add(&st->connections, 1);   /* shared by all CPUs */
}

/*
 * Picks a destination by weight (its index in *dest), then an endpoint in it.
 * Returns the endpoint, or NULL with *err = -ECONNREFUSED (the share has no
 * endpoint) or -ENOENT (inconsistent record: let the connection through untouched).
 */
static __always_inline const struct sluice_endpoint *pick_endpoint(const struct sluice_service *svc, int *err,
								   __u32 *dest)
{
	struct sluice_endpoint_key key;
	struct sluice_rr_state *rr = NULL;
	__u32 d = SLUICE_MAX_DESTINATIONS, k, n;
	__u32 id = svc->id;

	*err = -ENOENT;
	if (svc->lb == SLUICE_LB_ROUND_ROBIN) {
		rr = bpf_map_lookup_elem(&rr_state, &id);
		if (!rr || !svc->rr_slots)
			return NULL;
		__u64 slot = __sync_fetch_and_add(&rr->next_slot, 1) % svc->rr_slots;
		d = svc->rr_table[slot & (SLUICE_RR_SLOTS - 1)];
	} else {
		/* the last destination's cumulative weight is the total */
		__u32 total = svc->destinations[(svc->n_destinations - 1) & (SLUICE_MAX_DESTINATIONS - 1)].cum_weight;
		__u32 r = ((__u64)bpf_get_prandom_u32() * total) >> 32;
		for (__u32 i = 0; i < SLUICE_MAX_DESTINATIONS; i++) {
			if (i < svc->n_destinations && r < svc->destinations[i].cum_weight) {
				d = i;
				break;
			}
		}
	}
	if (d >= SLUICE_MAX_DESTINATIONS)
		return NULL;
	*dest = d;
	n = svc->destinations[d].n_endpoints;
	if (n == 0) {
		*err = -ECONNREFUSED;
		return NULL;
	}
	if (rr)
		k = __sync_fetch_and_add(&rr->next_endpoint[d], 1) % n;
	else
		k = ((__u64)bpf_get_prandom_u32() * n) >> 32;

	__builtin_memset(&key, 0, sizeof(key));
	key.service_id = id;
	key.slot = svc->destinations[d].first_slot + k;
	key.generation = svc->generation;
	const struct sluice_endpoint *ep = bpf_map_lookup_elem(&endpoints, &key);
	if (ep)
		*err = 0;
	return ep;
}

#endif
