/* SPDX-License-Identifier: MIT */
/*
 * What `sluice status` reads: the generation, an endpoint's counters over its addresses, the
 * live side's record of a service, TC mode's counters and live flows. Reads only.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <netinet/in.h>

#include <bpf/bpf.h>

#include "dataplane/internal.h"
#include "sluice.skel.h"
#include "sluice_tc.skel.h"

uint64_t dataplane_generation(struct dataplane *dp)
{
	return dp ? dp->generation : 0;
}

size_t dataplane_n_records(struct dataplane *dp)
{
	return dp ? dp->n_svcs : 0;
}

void dataplane_stats_add(struct sluice_endpoint_stats *sum, const struct sluice_endpoint_stats *st)
{
	sum->connections += st->connections;
	sum->established += st->established;
	for (int r = 0; r < SLUICE_CONNECT_FAILURE_REASONS; r++)
		sum->failed[r] += st->failed[r];
	sum->retransmits += st->retransmits;
	sum->rtt_sum_us += st->rtt_sum_us;
	sum->rtt_samples += st->rtt_samples;
}

uint64_t dataplane_stats_failed(const struct sluice_endpoint_stats *st)
{
	uint64_t n = 0;

	for (int r = 0; r < SLUICE_CONNECT_FAILURE_REASONS; r++)
		n += st->failed[r];
	return n;
}

int dataplane_endpoint_stats(struct dataplane *dp, const struct plan_service *svc, const struct plan_endpoint *ep,
			     struct sluice_endpoint_stats *out)
{
	struct sluice_service_key k;
	struct sluice_counter_key ck;
	struct sluice_endpoint e;
	struct sluice_endpoint_stats v;
	int err = -ENOENT;

	if (!dp || !svc || !ep || !out)
		return -EINVAL;
	if (svc->n_vips > 2 || svc->n_gateway_addrs > PLAN_MAX_GATEWAY_ADDRS)
		return -EINVAL;
	memset(out, 0, sizeof(*out));
	endpoint_of(ep, &e);
	for (size_t j = 0; j < svc_n_addrs(svc); j++) {
		uint16_t port;
		const struct plan_addr *addr = svc_addr(svc, j, &port);
		struct svc_state *s;
		if (addr->family != ep->addr.family || make_key(addr, port, svc->protocol, &k) ||
		    !(s = index_get(&dp->index, &k)))
			continue;
		counter_key(s->id, &e, &ck);
		if (bpf_map_lookup_elem(dp->fd_counters, &ck, &v) == 0) {
			dataplane_stats_add(out, &v);
			err = 0;
		}
	}
	return err;
}

int dataplane_service_view(struct dataplane *dp, const struct plan_service *svc, struct dataplane_service_view *v)
{
	struct sluice_service_key k;
	struct sluice_active act;
	struct sluice_service *r;
	uint32_t slots[SLUICE_MAX_DESTINATIONS] = { 0 }, zero = 0, prev = 0, total;
	const struct plan_addr *addr;
	uint16_t port;
	int err = 0;

	if (!dp || !svc || !v)
		return -EINVAL;
	memset(v, 0, sizeof(*v));
	if (!svc_n_addrs(svc))
		return -ENOENT;
	addr = svc_addr(svc, 0, &port);
	if (make_key(addr, port, svc->protocol, &k))
		return -ENOENT;
	/* the side the programs read now, from the map rather than the bookkeeping */
	if (bpf_map_lookup_elem(dp->fd_active, &zero, &act))
		return -errno;
	k.side = act.side & 1;
	if (!(r = malloc(sizeof(*r))))
		return -ENOMEM;
	if (bpf_map_lookup_elem(dp->fd_services, &k, r)) {
		err = -errno;
		goto out;
	}
	if (r->n_destinations > SLUICE_MAX_DESTINATIONS) {
		err = -EUCLEAN;
		goto out;
	}
	v->id = r->id;
	v->lb = r->lb;
	v->n_destinations = r->n_destinations;
	for (uint32_t s = 0; s < r->rr_slots && s < SLUICE_RR_SLOTS; s++)
		if (r->rr_table[s] < SLUICE_MAX_DESTINATIONS)
			slots[r->rr_table[s]]++;
	total = r->n_destinations ? r->destinations[r->n_destinations - 1].cum_weight : 0;
	for (size_t d = 0; d < r->n_destinations; d++) {
		const struct sluice_destination *rd = &r->destinations[d];
		v->destinations[d].weight = rd->weight;
		v->destinations[d].n_endpoints = rd->n_endpoints;
		if (r->lb == SLUICE_LB_ROUND_ROBIN)
			v->destinations[d].percent = r->rr_slots ? 100.0 * slots[d] / r->rr_slots : 0;
		else
			v->destinations[d].percent = total ? 100.0 * (rd->cum_weight - prev) / total : 0;
		prev = rd->cum_weight;
	}
out:
	free(r);
	return err;
}

/* Whether a forward flow entry would still be used by the TC program at now (coarse monotonic ns). */
static bool flow_live(const struct sluice_ct_key *k, const struct sluice_ct *ct, uint64_t now)
{
	uint64_t timeout = SLUICE_CT_TIMEOUT_NS(k->protocol, ct->flags);

	return k->direction == SLUICE_CT_FORWARD && !(now > ct->last_seen && now - ct->last_seen > timeout);
}

int dataplane_tc_status(struct dataplane *dp, struct dataplane_tc_status *st)
{
	enum { BATCH = 4096 };
	struct bpf_map_info info;
	__u32 len = sizeof(info), count, in_batch = 0, out_batch;
	struct sluice_ct_key *keys = NULL;
	struct sluice_ct *vals = NULL;
	struct timespec ts;
	uint64_t *v, now;
	bool first = true;
	int fd, err = 0;

	if (!dp || !st)
		return -EINVAL;
	if (!dp->tc_skel)
		return -ENOENT;
	memset(st, 0, sizeof(*st));
	if (!(v = calloc(dp->ncpus, sizeof(*v))))
		return -ENOMEM;
	fd = dp->fd_tc_stats;
	for (__u32 i = 0; i < SLUICE_TC_STATS; i++)
		if (bpf_map_lookup_elem(fd, &i, v) == 0)
			for (int c = 0; c < dp->ncpus; c++)
				st->stats[i] += v[c];
	free(v);

	fd = dp->fd_tc_flows;
	memset(&info, 0, sizeof(info));
	if (bpf_obj_get_info_by_fd(fd, &info, &len) == 0)
		st->flows_max = info.max_entries / 2;
	/* the BPF side stamps last_seen with bpf_ktime_get_coarse_ns(): the same clock */
	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	now = (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
	keys = calloc(BATCH, sizeof(*keys));
	vals = calloc(BATCH, sizeof(*vals));
	if (!keys || !vals) {
		err = -ENOMEM;
		goto out;
	}
	do {
		count = BATCH;
		err = bpf_map_lookup_batch(fd, first ? NULL : &in_batch, &out_batch, keys, vals, &count, NULL);
		if (err && errno != ENOENT) {
			err = -errno;
			goto out;
		}
		for (__u32 i = 0; i < count; i++)
			st->flows_live += flow_live(&keys[i], &vals[i], now);
		in_batch = out_batch;
		first = false;
	} while (!err);
	err = 0;
out:
	free(keys);
	free(vals);
	return err;
}

/* The kernel's account of a map's memory, as bpftool reads it: the memlock line of its fdinfo. */
static uint64_t map_memlock(int fd)
{
	char path[64], line[128];
	unsigned long long bytes = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
	if (!(f = fopen(path, "re")))
		return 0;
	while (fgets(line, sizeof(line), f) && sscanf(line, "memlock: %llu", &bytes) != 1)
		;
	fclose(f);
	return bytes;
}

/* obj's maps that are not `shared`'s (TC's object holds the socket object's maps too). */
static size_t object_map_sizes(struct bpf_object *obj, struct bpf_object *shared, struct dataplane_map_size *out,
			       size_t n)
{
	struct bpf_map *map;

	bpf_object__for_each_map(map, obj) {
		struct bpf_map_info info;
		__u32 len = sizeof(info);
		if (bpf_map__is_internal(map) || n == DATAPLANE_MAX_MAPS ||
		    (shared && bpf_object__find_map_by_name(shared, bpf_map__name(map))))
			continue;
		memset(&info, 0, sizeof(info));
		if (bpf_obj_get_info_by_fd(bpf_map__fd(map), &info, &len))
			continue;
		snprintf(out[n].name, sizeof(out[n].name), "%s", bpf_map__name(map));
		out[n].max_entries = info.max_entries;
		out[n++].bytes = map_memlock(bpf_map__fd(map));
	}
	return n;
}

size_t dataplane_map_sizes(const struct dataplane *dp, struct dataplane_map_size out[DATAPLANE_MAX_MAPS])
{
	size_t n = object_map_sizes(dp->skel->obj, NULL, out, 0);
	return dp->tc_skel ? object_map_sizes(dp->tc_skel->obj, dp->skel->obj, out, n) : n;
}
