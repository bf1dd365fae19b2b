/* SPDX-License-Identifier: MIT */
/*
 * An apply: the plan into the maps with one switch.
 *
 * Every service record exists twice, once per side of a double buffer; the
 * programs read `active` once per connection and use side generation & 1.
 * apply() works like this:
 *   1. diff the plan against the bookkeeping: added, changed, removed, same;
 *   2. on the inactive side only: write the endpoints of the added and changed
 *      services under the new generation, then their records, delete the
 *      removed ones;
 *   3. flip `active` (one map write of the generation and its side, of which
 *      the programs read the one side byte: the switch, for every service);
 *   4. wait one RCU grace period (update of the map-in-map `rcu_barrier`):
 *      no program still reads the side the switch left;
 *   5. replay the same record edits on that side, so both sides are equal;
 *   6. delete endpoints, counters and round-robin state nothing references any more.
 * Steps 4-6 may be deferred (settle()) until the caller has answered: a weight
 * change is visible at step 3. A weight change diffs only the services it names
 * (dataplane_apply_services), so its cost, like every apply's map writes, is
 * proportional to the change, never to the number of services.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <bpf/bpf.h>

#include "common/log.h"
#include "dataplane/internal.h"

const char *const dataplane_map_names[DP_MAPS] = { "active", "services", "endpoints", "counters", "rr_state",
						   "rcu_barrier" };
const char *const dataplane_map_op_names[DP_OPS] = { "update", "delete" };

static int map_fd(const struct dataplane *dp, enum dataplane_map m)
{
	const int fds[DP_MAPS] = { dp->fd_active, dp->fd_services, dp->fd_endpoints, dp->fd_counters,
				   dp->fd_rr_state, dp->fd_barrier };
	return fds[m];
}

static int counted(struct dataplane *dp, enum dataplane_map m, enum dataplane_map_op op, int rc, int as_asked)
{
	int err = errno;
	if (rc == 0 || err == as_asked)
		dp->ops.ok[m][op]++;
	else
		dp->ops.failed[m][op]++;
	errno = err;
	return rc;
}

int map_write(int fd, const void *key, const void *value, uint64_t flags)
{
	int rc;

	/* a map without preallocation takes elements from per-CPU caches refilled asynchronously
	 * (bpf_mem_alloc): a burst of writes can find them empty for a moment, with memory to spare */
	for (int tries = 0; (rc = bpf_map_update_elem(fd, key, value, flags)) && errno == ENOMEM && tries < 100; tries++)
		usleep(tries < 10 ? 100 : 2000);
	return rc;
}

int map_write_batch(int fd, const void *keys, const void *values, size_t n, size_t key_size, size_t value_size,
		    size_t *written)
{
	int tries = 0;

	*written = 0;
	while (*written < n) {
		__u32 count = (__u32)(n - *written);
		int rc = bpf_map_update_batch(fd, (const char *)keys + *written * key_size,
					      (const char *)values + *written * value_size, &count, NULL);   /* BPF_ANY */
		*written += count;
		if (!rc)
			continue;
		if (errno != ENOMEM || (count == 0 && ++tries == 100))
			return -errno;
		usleep(tries < 10 ? 100 : 2000);   /* as map_write */
	}
	return 0;
}

int map_update(struct dataplane *dp, enum dataplane_map m, const void *key, const void *value, uint64_t flags)
{
	return counted(dp, m, DP_OP_UPDATE, map_write(map_fd(dp, m), key, value, flags), flags == BPF_NOEXIST ? EEXIST : 0);
}

int map_delete(struct dataplane *dp, enum dataplane_map m, const void *key)
{
	return counted(dp, m, DP_OP_DELETE, bpf_map_delete_elem(map_fd(dp, m), key), ENOENT);
}

void dataplane_map_ops(const struct dataplane *dp, struct dataplane_map_ops *out)
{
	*out = dp->ops;
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

/*
 * Writes gathered per map and sent BPF_MAP_UPDATE_BATCH at a time: an apply of 10,000 services
 * writes some 200,000 entries, and a syscall each was most of its time. Only for entries no
 * program reads before the switch (the inactive side, new generations' slots, new counters).
 */
#define WRITE_BATCH 4096
struct batch {
	enum dataplane_map map;
	size_t key_size, value_size, n;
	char *keys, *values;
};

static int batch_flush(struct dataplane *dp, struct batch *b)
{
	size_t written;
	int err = map_write_batch(map_fd(dp, b->map), b->keys, b->values, b->n, b->key_size, b->value_size, &written);

	dp->ops.ok[b->map][DP_OP_UPDATE] += written;
	dp->ops.failed[b->map][DP_OP_UPDATE] += err != 0;
	b->n = 0;
	return err;
}

static int batch_add(struct dataplane *dp, struct batch *b, const void *key, const void *value)
{
	if (!b->keys) {
		b->keys = malloc(WRITE_BATCH * b->key_size);
		b->values = malloc(WRITE_BATCH * b->value_size);
		if (!b->keys || !b->values)
			return -ENOMEM;
	}
	memcpy(b->keys + b->n * b->key_size, key, b->key_size);
	memcpy(b->values + b->n * b->value_size, value, b->value_size);
	return ++b->n == WRITE_BATCH ? batch_flush(dp, b) : 0;
}

static void batch_free(struct batch *b)
{
	free(b->keys);
	free(b->values);
}

/* The writes of one apply's new and changed services, before its switch. */
struct writes {
	struct batch endpoints, counters, records, rr;
	struct sluice_service record;   /* scratch */
	struct sluice_endpoint_stats zero;    /* a new counter's value */
};

static void writes_init(struct writes *w)
{
	memset(w, 0, sizeof(*w));
	w->endpoints = (struct batch){ .map = DP_MAP_ENDPOINTS, .key_size = sizeof(struct sluice_endpoint_key),
				       .value_size = sizeof(struct sluice_endpoint) };
	w->counters = (struct batch){ .map = DP_MAP_COUNTERS, .key_size = sizeof(struct sluice_counter_key),
				      .value_size = sizeof(struct sluice_endpoint_stats) };
	w->records = (struct batch){ .map = DP_MAP_SERVICES, .key_size = sizeof(struct sluice_service_key),
				     .value_size = sizeof(struct sluice_service) };
	w->rr = (struct batch){ .map = DP_MAP_RR_STATE, .key_size = sizeof(uint32_t),
				.value_size = sizeof(struct sluice_rr_state) };
}

static int writes_flush(struct dataplane *dp, struct writes *w)
{
	int err = batch_flush(dp, &w->endpoints);
	if (!err)
		err = batch_flush(dp, &w->counters);
	if (!err)
		err = batch_flush(dp, &w->rr);
	if (!err)
		err = batch_flush(dp, &w->records);
	return err;
}

static void writes_free(struct writes *w)
{
	batch_free(&w->endpoints);
	batch_free(&w->counters);
	batch_free(&w->records);
	batch_free(&w->rr);
}

/*
 * A service's record on one side, its endpoints under its generation, its counters made: in the
 * batch when its id is new (no counter of it can exist), else one by one, an existing counter
 * kept (that is the point; a batch can only overwrite).
 */
static int write_service(struct dataplane *dp, struct writes *w, const struct svc_state *s, unsigned side, bool added)
{
	struct sluice_service_key rk = s->key;
	int err = 0;

	for (uint32_t i = 0; i < s->n_slots && !err; i++) {
		struct sluice_endpoint_key ek;
		struct sluice_counter_key ck;
		endpoint_key(s->id, i, s->generation, &ek);
		counter_key(s->id, &s->slots[i], &ck);
		if ((err = batch_add(dp, &w->endpoints, &ek, &s->slots[i])))
			break;
		if (added)
			err = batch_add(dp, &w->counters, &ck, &w->zero);
		else if (map_update(dp, DP_MAP_COUNTERS, &ck, &w->zero, BPF_NOEXIST) && errno != EEXIST)
			err = -errno;
	}
	rk.side = side;
	build_record(s, &w->record);
	return err ? err : batch_add(dp, &w->records, &rk, &w->record);
}

static void delete_endpoints(struct dataplane *dp, const struct svc_state *s)
{
	struct sluice_endpoint_key k;

	for (uint32_t i = 0; i < s->n_slots; i++) {
		endpoint_key(s->id, i, s->generation, &k);
		map_delete(dp, DP_MAP_ENDPOINTS, &k);
	}
}

static bool has_endpoint(const struct svc_state *s, const struct sluice_endpoint *ep)
{
	for (uint32_t i = 0; i < s->n_slots; i++)
		if (memcmp(&s->slots[i], ep, sizeof(*ep)) == 0)
			return true;
	return false;
}

/* Whether k is the key of the counters of one of s's endpoints. */
static bool has_counter(const struct svc_state *s, const struct sluice_counter_key *k)
{
	struct sluice_counter_key mine;

	for (uint32_t i = 0; i < s->n_slots; i++) {
		counter_key(s->id, &s->slots[i], &mine);
		if (memcmp(&mine, k, sizeof(mine)) == 0)
			return true;
	}
	return false;
}

/* Deletes the counters of old's endpoints that next (NULL: removed service) does not keep. */
static void delete_counters(struct dataplane *dp, const struct svc_state *old, const struct svc_state *next)
{
	struct sluice_counter_key k;

	for (uint32_t i = 0; i < old->n_slots; i++) {
		if (next && has_endpoint(next, &old->slots[i]))
			continue;
		counter_key(old->id, &old->slots[i], &k);
		map_delete(dp, DP_MAP_COUNTERS, &k);
	}
}

static int delete_record(struct dataplane *dp, const struct svc_state *s, unsigned side)
{
	struct sluice_service_key k = s->key;

	k.side = side;
	if (map_delete(dp, DP_MAP_SERVICES, &k) && errno != ENOENT)
		return -errno;
	return 0;
}

int set_generation(struct dataplane *dp, uint64_t generation)
{
	struct sluice_active a = { .generation = generation, .side = generation & 1 };
	uint32_t zero = 0;

	if (map_update(dp, DP_MAP_ACTIVE, &zero, &a, BPF_ANY))
		return -errno;
	return 0;
}

/* One RCU grace period: every program that started before this call has finished. */
int wait_for_readers(struct dataplane *dp)
{
	uint32_t zero = 0;

	if (map_update(dp, DP_MAP_BARRIER, &zero, &dp->fd_barrier_inner, BPF_ANY))
		return -errno;
	return 0;
}

/* An id for a new service: after an upgrade the one its key had, else a free one no kept key claims. */
static int alloc_id(struct dataplane *dp, const struct sluice_service_key *key, uint32_t *id)
{
	const struct kept_id *kept = kept_get(&dp->kept, key);

	if (kept && !dp->by_id[kept->id]) {
		*id = kept->id;
		return 0;
	}
	for (int pass = 0; pass < 2; pass++)   /* ids kept for keys gone from the plan, if all else is taken */
		for (uint32_t n = 0; n < SLUICE_MAX_SERVICE_IDS; n++) {
			uint32_t i = (dp->id_hint + n) % SLUICE_MAX_SERVICE_IDS;
			if (!dp->by_id[i] && (pass || !kept_taken(&dp->kept, i))) {
				*id = i;
				dp->id_hint = i + 1;
				return 0;
			}
		}
	return -ENOSPC;
}

/* Every key of a map, for the rare full passes (adopt, resync). */
int map_keys(int fd, size_t key_size, void **out, size_t *n_out)
{
	size_t n = 0, cap = 256;
	char *keys = malloc(cap * key_size), *p;
	int err;

	for (;;) {
		if (!keys)
			return -ENOMEM;
		if (n == cap) {
			p = realloc(keys, 2 * cap * key_size);
			if (!p) {
				free(keys);
				return -ENOMEM;
			}
			keys = p;
			cap *= 2;
		}
		if (bpf_map_get_next_key(fd, n ? keys + (n - 1) * key_size : NULL, keys + n * key_size))
			break;
		n++;
	}
	if (errno != ENOENT) {
		err = -errno;
		free(keys);
		return err;
	}
	*out = keys;
	*n_out = n;
	return 0;
}

/*
 * Makes the inactive side equal to the bookkeeping, gives every service id in
 * use its round-robin state, and deletes records, endpoints, counters and
 * round-robin state nothing references: after an adopt, or after a write that
 * failed half-way. O(size of the maps); never on the normal path.
 */
int resync(struct dataplane *dp)
{
	unsigned inactive = (dp->generation + 1) & 1;
	struct sluice_service *cur = malloc(sizeof(*cur)), *want = malloc(sizeof(*want));
	struct sluice_service_key *skeys = NULL;
	struct sluice_endpoint_key *ekeys = NULL;
	struct sluice_counter_key *ckeys = NULL;
	struct sluice_rr_state zero_rr = { 0 };
	uint32_t *rkeys = NULL;
	size_t n;
	int err = wait_for_readers(dp);   /* a crashed or failed apply may have flipped just before */

	if (!err && (!cur || !want))
		err = -ENOMEM;
	for (size_t i = 0; i < dp->n_svcs && !err; i++) {
		struct sluice_service_key k = dp->svcs[i]->key;
		k.side = inactive;
		build_record(dp->svcs[i], want);
		if (bpf_map_lookup_elem(dp->fd_services, &k, cur) == 0 && memcmp(cur, want, sizeof(*cur)) == 0)
			continue;
		if (map_update(dp, DP_MAP_SERVICES, &k, want, BPF_ANY))
			err = -errno;
	}

	if (!err && !(err = map_keys(dp->fd_services, sizeof(*skeys), (void **)&skeys, &n))) {
		for (size_t i = 0; i < n; i++) {
			struct sluice_service_key k = skeys[i];
			k.side = 0;
			if (!index_get(&dp->index, &k))
				map_delete(dp, DP_MAP_SERVICES, &skeys[i]);
		}
	}
	if (!err && !(err = map_keys(dp->fd_endpoints, sizeof(*ekeys), (void **)&ekeys, &n))) {
		for (size_t i = 0; i < n; i++) {
			const struct sluice_endpoint_key *k = &ekeys[i];
			struct svc_state *s = k->service_id < SLUICE_MAX_SERVICE_IDS ? dp->by_id[k->service_id] : NULL;
			if (!s || s->generation != k->generation || k->slot >= s->n_slots)
				map_delete(dp, DP_MAP_ENDPOINTS, k);
		}
	}
	if (!err && !(err = map_keys(dp->fd_counters, sizeof(*ckeys), (void **)&ckeys, &n))) {
		for (size_t i = 0; i < n; i++) {
			const struct sluice_counter_key *k = &ckeys[i];
			struct svc_state *s = k->service_id < SLUICE_MAX_SERVICE_IDS ? dp->by_id[k->service_id] : NULL;
			if (!s || !has_counter(s, k))
				map_delete(dp, DP_MAP_COUNTERS, k);
		}
	}
	/* an existing entry keeps its position: only missing ones are created */
	for (size_t i = 0; i < dp->n_svcs && !err; i++)
		if (map_update(dp, DP_MAP_RR_STATE, &dp->svcs[i]->id, &zero_rr, BPF_NOEXIST) && errno != EEXIST)
			err = -errno;
	if (!err && !(err = map_keys(dp->fd_rr_state, sizeof(*rkeys), (void **)&rkeys, &n))) {
		for (size_t i = 0; i < n; i++)
			if (rkeys[i] >= SLUICE_MAX_SERVICE_IDS || !dp->by_id[rkeys[i]])
				map_delete(dp, DP_MAP_RR_STATE, &rkeys[i]);
	}
	if (err)
		log_error("resynchronising the data plane maps failed: %s; hint: check memory, or reinstall with 'sluiced --uninstall'",
		       strerror(-err));
	else
		dp->sides_differ = false;
	free(cur);
	free(want);
	free(skeys);
	free(ekeys);
	free(ckeys);
	free(rkeys);
	return err;
}

enum change { SAME, ADDED, CHANGED };

/*
 * What one apply changes, from the diff to settle(): the routing after it (`next`, in plan
 * order; unchanged services keep their svc_state), what each entry of it is and replaces, and
 * what goes. Between the switch and settle() it is dp->pending.
 */
struct changes {
	struct svc_state **next, **old_of, **removed;
	enum change *what;
	size_t *touched;                /* the indexes of next that are not SAME: a pod's change is 1 of 10,000 */
	size_t n_next, n_removed, n_touched;
	size_t ids_needed;              /* services added */
	struct svc_index nix;           /* next's index, built unless same_keys */
	bool same_keys;                 /* none added or removed: the index is patched in place */
	uint64_t slots_new, slots_freed;
};

/* An apply that did not switch: its new states go, unchanged ones stay the bookkeeping's. */
static void changes_free(struct changes *c)
{
	if (!c)
		return;
	for (size_t t = 0; t < c->n_touched; t++)
		svc_free(c->next[c->touched[t]]);
	free(c->next);
	free(c->nix.tab);
	free(c->what);
	free(c->touched);
	free(c->old_of);
	free(c->removed);
	free(c);
}

/* The bookkeeping becomes `next`; unchanged services keep their objects. */
static void commit(struct dataplane *dp, struct changes *c)
{
	for (size_t i = 0; i < c->n_removed; i++) {
		dp->by_id[c->removed[i]->id] = NULL;
		svc_free(c->removed[i]);
	}
	for (size_t t = 0; t < c->n_touched; t++) {
		size_t i = c->touched[t];
		dp->by_id[c->next[i]->id] = c->next[i];
		if (c->same_keys) {
			c->next[i]->pos = i;
			index_replace(&dp->index, c->next[i]);
		}
		svc_free(c->old_of[i]);
	}
	if (!c->same_keys) {
		free(dp->index.tab);
		dp->index = c->nix;
		for (size_t i = 0; i < c->n_next; i++)
			c->next[i]->pos = i;
	}
	free(dp->svcs);
	dp->svcs = c->next;
	dp->n_svcs = c->n_next;
	dp->slots_in_use = dp->slots_in_use + c->slots_new - c->slots_freed;
	free(c->old_of);
	free(c->removed);
	free(c->what);
	free(c->touched);
	free(c);
}

/* 5. The old side, which nobody reads now, gets the same record edits. */
static int replay(struct dataplane *dp, const struct changes *c, unsigned side_old)
{
	struct writes w;
	int err = 0;

	writes_init(&w);

	for (size_t t = 0; t < c->n_touched && !err; t++) {
		size_t i = c->touched[t];
		struct sluice_service_key k = c->next[i]->key;
		k.side = side_old;
		build_record(c->next[i], &w.record);
		err = batch_add(dp, &w.records, &k, &w.record);
	}
	if (!err)
		err = batch_flush(dp, &w.records);
	writes_free(&w);
	for (size_t i = 0; i < c->n_removed && !err; i++)
		err = delete_record(dp, c->removed[i], side_old);
	return err;
}

/* 6. Nothing references the previous records' endpoints now, nor removed services' ids. */
static void delete_unreferenced(struct dataplane *dp, const struct changes *c)
{
	for (size_t t = 0; t < c->n_touched; t++) {
		size_t i = c->touched[t];
		if (c->what[i] != CHANGED)
			continue;
		delete_endpoints(dp, c->old_of[i]);
		delete_counters(dp, c->old_of[i], c->next[i]);
	}
	for (size_t i = 0; i < c->n_removed; i++) {
		delete_endpoints(dp, c->removed[i]);
		delete_counters(dp, c->removed[i], NULL);
		map_delete(dp, DP_MAP_RR_STATE, &c->removed[i]->id);   /* the id is free from here on */
	}
}

/* Steps 4-6 of an apply (readers of the old side finish, the old side is replayed, what only the
 * previous records named goes), then the bookkeeping becomes the new routing. */
int settle(struct dataplane *dp, uint64_t *drain_ns)
{
	struct changes *c = dp->pending;
	unsigned side_old = (dp->generation + 1) & 1;   /* the side readers left at the switch */
	uint64_t t1;
	int err;

	if (!c)
		return 0;
	dp->pending = NULL;
	/* 4. Programs that read the old side finish. */
	t1 = now_ns();
	err = wait_for_readers(dp);
	if (drain_ns)
		*drain_ns = now_ns() - t1;
	if (err) {
		/* Without the grace period the old side may still be read: leave it, and what it names, alone. */
		log_error("waiting for readers of the previous generation failed: %s; the switch is done, "
		       "old entries stay until the next apply", strerror(-err));
		dp->sides_differ = true;
	} else if ((err = replay(dp, c, side_old))) {
		log_error("equalising the previous side failed: %s; the switch is done, the next apply resynchronises",
		       strerror(-err));
		dp->sides_differ = true;
	} else {
		delete_unreferenced(dp, c);
	}
	commit(dp, c);
	return 0;
}

int dataplane_settle(struct dataplane *dp)
{
	return dp ? settle(dp, NULL) : -EINVAL;
}

/* A plan that routes one address, port and protocol twice: refused as invalid. */
static int routed_twice(const struct sluice_service_key *k)
{
	char key[SVC_STR_LEN];

	log_error("the plan routes one address (VIP or gateway address), port and protocol twice: %s; "
	       "hint: the compiler should have merged them", key_str(k, key, sizeof(key)));
	return -EINVAL;
}

/*
 * Step 1 for the j-th address of ps: its state, filled in scratch, against the bookkeeping's.
 * An unchanged service keeps its svc_state in `next`; an added or changed one gets a copy.
 */
static int diff_address(struct dataplane *dp, const struct plan_service *ps, size_t j, bool only,
			struct svc_state *scratch, size_t *cursor, struct changes *c, struct dataplane_stats *st)
{
	struct svc_state *old;
	uint16_t port;
	size_t at;
	const struct plan_addr *addr = svc_addr(ps, j, &port);
	int err;

	if ((err = svc_fill(ps, addr, port, scratch)))
		return err;
	/* Plans come sorted, so the next service is usually the one after the last match. */
	if (*cursor < dp->n_svcs && key_eq(&dp->svcs[*cursor]->key, &scratch->key))
		old = dp->svcs[*cursor];
	else
		old = index_get(&dp->index, &scratch->key);
	*cursor = old ? old->pos + 1 : *cursor;
	if (old && old->stamp == dp->stamp)
		return routed_twice(&scratch->key);
	if (!old && only) {
		char name[SVC_STR_LEN], key[SVC_STR_LEN];
		log_error("service %s: %s is not routed now; a weight change only changes routed services",
		       svc_name(ps, name, sizeof(name)), key_str(&scratch->key, key, sizeof(key)));
		return -ENOENT;
	}
	if (old)
		old->stamp = dp->stamp;
	at = only ? old->pos : c->n_next++;
	if (old && svc_same_routing(old, scratch)) {
		c->next[at] = old;
		c->what[at] = SAME;
		st->services_unchanged += !only;
		return 0;
	}
	if (!(c->next[at] = svc_dup(scratch)))
		return -ENOMEM;
	c->touched[c->n_touched++] = at;
	c->old_of[at] = old;
	c->what[at] = old ? CHANGED : ADDED;
	c->ids_needed += !old;
	c->slots_new += scratch->n_slots;
	c->slots_freed += old ? old->n_slots : 0;
	return 0;
}

/*
 * 1. The diff of the plan's services (or only those listed, every other staying) against the
 * bookkeeping, in a scratch state: only added and changed services are copied. Fills c, and
 * st's counts of removed and unchanged services.
 */
static int diff(struct dataplane *dp, const struct plan *plan, const struct plan_service *const *only,
		size_t n_only, struct changes *c, struct dataplane_stats *st)
{
	struct svc_state scratch = { 0 };
	size_t n_in = only ? n_only : plan->n_services, cap = 0, n_seen, cursor = 0;
	int err = 0;

	for (size_t i = 0; i < n_in; i++) {
		const struct plan_service *ps = only ? only[i] : &plan->services[i];
		if ((err = check_service(ps)))
			return err;
		cap += svc_n_addrs(ps);
	}
	if (only)
		cap = dp->n_svcs;
	scratch.slots = malloc(SLUICE_MAX_DESTINATIONS * SLUICE_MAX_ENDPOINTS * sizeof(*scratch.slots));
	c->next = calloc(cap ? cap : 1, sizeof(*c->next));
	c->old_of = calloc(cap ? cap : 1, sizeof(*c->old_of));
	c->what = calloc(cap ? cap : 1, sizeof(*c->what));   /* SAME */
	c->touched = malloc((cap ? cap : 1) * sizeof(*c->touched));
	if (!scratch.slots || !c->next || !c->old_of || !c->what || !c->touched) {
		err = -ENOMEM;
		goto out;
	}
	if (only) {
		memcpy(c->next, dp->svcs, dp->n_svcs * sizeof(*c->next));
		c->n_next = dp->n_svcs;
	}
	dp->stamp++;
	for (size_t i = 0; i < n_in && !err; i++) {
		const struct plan_service *ps = only ? only[i] : &plan->services[i];
		for (size_t j = 0; j < svc_n_addrs(ps) && !err; j++)
			err = diff_address(dp, ps, j, only, &scratch, &cursor, c, st);
	}
	if (err)
		goto out;
	/* the services of the bookkeeping the plan named: all but the added ones of next */
	n_seen = only ? dp->n_svcs : c->n_next - c->ids_needed;
	if (n_seen < dp->n_svcs) {
		c->removed = calloc(dp->n_svcs - n_seen, sizeof(*c->removed));
		if (!c->removed) {
			err = -ENOMEM;
			goto out;
		}
		for (size_t i = 0; i < dp->n_svcs; i++)
			if (dp->svcs[i]->stamp != dp->stamp) {
				c->removed[c->n_removed++] = dp->svcs[i];
				c->slots_freed += dp->svcs[i]->n_slots;
			}
	}
	st->services_removed = c->n_removed;
	if (only)
		st->services_unchanged = c->n_next - c->n_touched;
out:
	free(scratch.slots);
	return err;
}

/* Before any write: next's index when services come or go, and room for their ids and endpoints. */
static int check_room(struct dataplane *dp, struct changes *c)
{
	const struct svc_state *dup;
	int err;

	c->same_keys = c->ids_needed == 0 && c->n_removed == 0;
	if (!c->same_keys && (err = index_build(&c->nix, c->next, c->n_next, &dup)))
		return err == -EEXIST ? routed_twice(&dup->key) : err;
	if (c->ids_needed > SLUICE_MAX_SERVICE_IDS - dp->n_svcs + c->n_removed) {
		log_error("the plan needs %zu new service ids, %zu are free (limit %d VIP/port entries); hint: split the cluster",
		       c->ids_needed, SLUICE_MAX_SERVICE_IDS - dp->n_svcs, SLUICE_MAX_SERVICE_IDS);
		return -ENOSPC;
	}
	if (dp->slots_in_use + c->slots_new > SLUICE_MAX_ENDPOINT_SLOTS) {
		log_error("the plan needs %llu endpoint slots while %llu are in use (limit %d); hint: apply it in smaller steps",
		       (unsigned long long)c->slots_new, (unsigned long long)dp->slots_in_use, SLUICE_MAX_ENDPOINT_SLOTS);
		return -ENOSPC;
	}
	/* both sides hold a record per service; until settle() the old versions' slots and counters stay */
	struct dataplane_caps need = {
		.records = (uint32_t)(2 * (dp->n_svcs + c->ids_needed)),
		.slots = (uint32_t)(dp->slots_in_use + c->slots_new),
		.counters = (uint32_t)(dp->slots_in_use + c->slots_new),
		.ids = (uint32_t)(dp->n_svcs + c->ids_needed),
	};
	for (size_t t = 0; t < c->n_touched && !need.udp_flows; t++)   /* the others had room before */
		if (c->next[c->touched[t]]->key.protocol == SLUICE_PROTO_UDP)
			need.udp_flows = SLUICE_MAX_UDP_FLOWS;
	return caps_ensure(dp, &need);
}

/* 2. The inactive side: endpoints and counters first, then the records that name them. */
static int write_inactive(struct dataplane *dp, struct changes *c, struct dataplane_stats *st)
{
	unsigned side_new = (dp->generation + 1) & 1;
	struct sluice_rr_state zero_rr = { 0 };
	struct writes w;
	int err = 0;

	writes_init(&w);

	for (size_t t = 0; t < c->n_touched && !err; t++) {
		size_t i = c->touched[t];
		struct svc_state *s = c->next[i];
		if (c->what[i] == ADDED) {
			if ((err = alloc_id(dp, &s->key, &s->id)))
				break;
			dp->by_id[s->id] = s;   /* reserved; released on failure */
			if ((err = batch_add(dp, &w.rr, &s->id, &zero_rr)))
				break;
		} else {
			s->id = c->old_of[i]->id;
		}
		s->generation = dp->generation + 1;   /* the switch makes it live */
		if ((err = write_service(dp, &w, s, side_new, c->what[i] == ADDED)))
			break;
		st->services_written++;
		st->endpoints_written += s->n_slots;
	}
	if (!err)
		err = writes_flush(dp, &w);   /* all of it before the switch, which is all that orders it */
	writes_free(&w);
	for (size_t i = 0; i < c->n_removed && !err; i++)
		err = delete_record(dp, c->removed[i], side_new);
	return err;
}

/* A write before the switch failed: the ids reserved are released, the inactive side restored. */
static void write_failed(struct dataplane *dp, struct changes *c, int err)
{
	log_error("writing the routing maps failed: %s; nothing was switched, the previous routing stays; hint: %s",
	       strerror(-err), err == -E2BIG || err == -ENOMEM || err == -ENOSPC
				   ? "a map is full or memory is short, apply fewer services"
				   : "rerun with --verbose");
	for (size_t t = 0; t < c->n_touched; t++) {
		size_t i = c->touched[t];
		if (c->what[i] == ADDED && dp->by_id[c->next[i]->id] == c->next[i])
			dp->by_id[c->next[i]->id] = NULL;
	}
	dp->sides_differ = true;
	resync(dp);   /* the inactive side back to the bookkeeping; new endpoints, counters and rr state deleted */
}

/*
 * The apply: `plan` is the whole routing (services missing from it are removed), or, with `only`,
 * the n_only services listed change and every other stays as it is (a weight change: work in
 * proportion to the change, not to the plan).
 */
static int apply(struct dataplane *dp, const struct plan *plan, const struct plan_service *const *only, size_t n_only,
		 bool defer, uint64_t *generation, struct dataplane_stats *stats)
{
	struct dataplane_stats st = { 0 };
	uint64_t t0 = now_ns(), t1;
	struct changes *c;
	int err;

	if ((err = settle(dp, NULL)))
		return err;
	if (dp->sides_differ && (err = resync(dp)))
		return err;
	if (!(c = calloc(1, sizeof(*c))))
		return -ENOMEM;
	if ((err = diff(dp, plan, only, n_only, c, &st)))
		goto out;
	if (c->n_removed == 0 && st.services_unchanged == c->n_next)
		goto done;   /* nothing changed: no switch */
	if ((err = check_room(dp, c)))
		goto out;
	if ((err = write_inactive(dp, c, &st))) {
		write_failed(dp, c, err);
		goto out;
	}

	/* 3. The switch. */
	t1 = now_ns();
	err = set_generation(dp, dp->generation + 1);
	st.flip_ns = now_ns() - t1;
	if (err) {
		write_failed(dp, c, err);
		goto out;
	}
	dp->generation++;

	/* The rest waits for readers of the old side: now, or at dataplane_settle() when deferred. */
	dp->pending = c;
	c = NULL;
	if (!defer)
		settle(dp, &st.drain_ns);
done:
	st.total_ns = now_ns() - t0;
	if (stats)
		*stats = st;
	if (generation)
		*generation = dp->generation;
out:
	changes_free(c);
	return err;
}

int dataplane_apply(struct dataplane *dp, const struct plan *plan, uint64_t *generation, struct dataplane_stats *stats)
{
	int err;

	if (!dp || !plan)
		return -EINVAL;
	err = apply(dp, plan, NULL, 0, false, generation, stats);
	return err ? err : dataplane_finish_open(dp);
}

int dataplane_apply_services(struct dataplane *dp, const struct plan_service *const *svcs, size_t n, bool defer,
			     uint64_t *generation, struct dataplane_stats *stats)
{
	if (!dp || (n && !svcs))
		return -EINVAL;
	return apply(dp, NULL, svcs, n, defer, generation, stats);
}
