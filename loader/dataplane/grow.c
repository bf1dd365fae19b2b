/* SPDX-License-Identifier: MIT */
/*
 * The maps sized by the plan (DESIGN.md §12): services, endpoints, counters, rr_state and the UDP
 * flow tables hold what the configuration needs, with room to double, instead of their limits
 * (a hash table's buckets cost 16 B per max_entries whatever it holds). A pinned map keeps its
 * size across restarts; an apply that needs more grows them first, under the running programs:
 *
 *   1. a second socket object is loaded: maps that grow are made at their new size, the others
 *      are the live ones (reused);
 *   2. what the growing maps hold is copied into the new ones (services and endpoints only
 *      sluiced writes; counters, round-robin positions and UDP flows the programs write too);
 *   3. the new maps are pinned in place of the old (a restart from here adopts them);
 *   4. the new programs are swapped into the pinned links (socket, then TC): the hooks never run
 *      without a program, and every connection is served by one object or the other;
 *   5. after a grace period no program uses the old maps: what they counted after the copy is
 *      added to the new ones by sluice_merge (atomic, while the programs keep counting).
 * Nothing is reset and no connection fails. What the switch can blur: a UDP flow first seen in
 * the microseconds between copy and switch may pick another endpoint at its next packet, and
 * round robin may repeat as many positions as connections were made in that moment.
 */
#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sys/capability.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "common/log.h"
#include "dataplane/internal.h"
#include "sluice.skel.h"
#include "sluice_tc.skel.h"


/* The sized maps: which capacity each follows, the least it is made with, and its limit. */
static const struct sized {
	const char *name;
	size_t cap;                 /* offset in struct dataplane_caps */
	uint32_t least, limit;
} sized[] = {
	{ "services", offsetof(struct dataplane_caps, records), 64, SLUICE_MAX_SERVICE_RECORDS },
	{ "endpoints", offsetof(struct dataplane_caps, slots), 256, SLUICE_MAX_ENDPOINT_SLOTS },
	{ "counters", offsetof(struct dataplane_caps, counters), 256, SLUICE_MAX_COUNTERS },
	{ "rr_state", offsetof(struct dataplane_caps, ids), 32, SLUICE_MAX_SERVICE_IDS },
	{ "udp_flows", offsetof(struct dataplane_caps, udp_flows), 256, SLUICE_MAX_UDP_FLOWS },
	{ "udp_reverse", offsetof(struct dataplane_caps, udp_flows), 256, SLUICE_MAX_UDP_FLOWS },
};
#define N_SIZED (sizeof(sized) / sizeof(sized[0]))

static uint32_t *cap_of(struct dataplane_caps *c, const struct sized *z)
{
	return (uint32_t *)((char *)c + z->cap);
}

static uint32_t cap_get(const struct dataplane_caps *c, const struct sized *z)
{
	return *(const uint32_t *)((const char *)c + z->cap);
}

static const struct sized *sized_map(const char *name)
{
	for (size_t i = 0; i < N_SIZED; i++)
		if (!strcmp(sized[i].name, name))
			return &sized[i];
	return NULL;
}

static uint32_t pinned_max_entries(const char *dir, const char *name)
{
	struct bpf_map_info info;
	__u32 len = sizeof(info);
	char path[PATH_MAX];
	int fd;

	if (pin_path(path, dir, SLUICE_PIN_MAPS, name) || (fd = bpf_obj_get(path)) < 0)
		return 0;
	memset(&info, 0, sizeof(info));
	if (bpf_obj_get_info_by_fd(fd, &info, &len))
		info.max_entries = 0;
	close(fd);
	return info.max_entries;
}

int caps_set(const struct dataplane *dp, struct bpf_object *obj)
{
	struct bpf_map *map;
	int err;

	bpf_object__for_each_map(map, obj) {
		const struct sized *z = sized_map(bpf_map__name(map));
		if (z && (err = bpf_map__set_max_entries(map, cap_get(&dp->caps, z))))
			return err;
	}
	return 0;
}

int caps_from_pins(struct dataplane *dp, const char *dir)
{
	for (size_t i = 0; i < N_SIZED; i++) {
		uint32_t n = pinned_max_entries(dir, sized[i].name);
		*cap_of(&dp->caps, &sized[i]) = n ? n : sized[i].least;   /* pinned: kept, whatever release made it */
	}
	return caps_set(dp, dp->skel->obj);
}

void dataplane_caps(const struct dataplane *dp, struct dataplane_caps *out)
{
	*out = dp->caps;
}

static uint32_t pow2_at_least(uint64_t n)
{
	uint32_t p = 1;
	while (p < n && p < (1u << 31))
		p <<= 1;
	return p;
}

/* A map's content, copied: its keys and values. */
struct copy {
	void *keys, *values;
	size_t n, key_size, value_size;
};

/* Batches of lookups and updates: a growth copies every entry, and one syscall per entry was most of its time. */
#define COPY_BATCH 4096

static void copy_free(struct copy *c)
{
	free(c->keys);
	free(c->values);
	memset(c, 0, sizeof(*c));
}

/* Every entry of a map, a batch at a time (in its buckets' order). */
static int read_map(int fd, struct copy *c)
{
	struct bpf_map_info info;
	__u32 len = sizeof(info), in = 0, out = 0;
	size_t cap = 0;
	bool first = true;

	memset(&info, 0, sizeof(info));
	if (bpf_obj_get_info_by_fd(fd, &info, &len))
		return -errno;
	c->key_size = info.key_size;
	c->value_size = info.value_size;   /* no sized map is per-CPU */
	for (;;) {
		if (c->n + COPY_BATCH > cap) {
			void *k, *v;
			cap = 2 * cap + COPY_BATCH;
			if (!(k = realloc(c->keys, cap * c->key_size)))
				return -ENOMEM;
			c->keys = k;
			if (!(v = realloc(c->values, cap * c->value_size)))
				return -ENOMEM;
			c->values = v;
		}
		__u32 count = COPY_BATCH;
		int rc = bpf_map_lookup_batch(fd, first ? NULL : &in, &out, (char *)c->keys + c->n * c->key_size,
					      (char *)c->values + c->n * c->value_size, &count, NULL);
		if (rc && errno != ENOENT)
			return -errno;
		c->n += count;
		if (rc)
			return 0;   /* ENOENT: that was the last batch */
		in = out;
		first = false;
	}
}

/* Into the new map, which no program uses yet. */
static int copy_map(int from, int to, struct copy *c)
{
	size_t written;
	int err = read_map(from, c);

	return err ? err : map_write_batch(to, c->keys, c->values, c->n, c->key_size, c->value_size, &written);
}

/* 5. What the old map counted since the copy, added to the new one word by word. */
static int merge(struct dataplane *dp, int old_fd, const struct copy *c, enum sluice_merge_map which)
{
	size_t words = c->value_size / 8;
	int prog = bpf_program__fd(dp->skel->progs.sluice_merge);
	struct copy now = { 0 };
	char *one = malloc(c->value_size ? c->value_size : 1);
	/* only sluiced adds or removes keys of these maps, and not since the copy: the same order */
	int err = one ? read_map(old_fd, &now) : -ENOMEM;

	for (size_t i = 0; i < c->n && !err; i++) {
		const char *k = (const char *)c->keys + i * c->key_size;
		const uint64_t *was = (const uint64_t *)((const char *)c->values + i * c->value_size);
		const char *is = (const char *)now.values + i * c->value_size;
		if (i >= now.n || memcmp(k, (const char *)now.keys + i * c->key_size, c->key_size)) {
			if (bpf_map_lookup_elem(old_fd, k, one))
				continue;
			is = one;
		}
		struct sluice_merge m = { .map = which };
		const uint64_t *w = (const uint64_t *)is;
		bool any = false;
		memcpy(&m.key, k, which == SLUICE_MERGE_COUNTERS ? sizeof(m.key) : sizeof(uint32_t));
		for (size_t j = 0; j < words && j < SLUICE_MERGE_WORDS; j++) {
			m.add[j] = w[j] - was[j];
			any = any || m.add[j];
		}
		if (!any)
			continue;
		LIBBPF_OPTS(bpf_test_run_opts, run, .ctx_in = &m, .ctx_size_in = sizeof(m));
		if (bpf_prog_test_run_opts(prog, &run))
			err = -errno;
		/* retval 1: the entry is gone from the new map (an apply removed it): nothing to add to */
	}
	copy_free(&now);
	free(one);
	return err;
}

/* 3. The new maps take the old ones' pins: pinned beside first, then renamed over them. */
static int repin(const char *dir, const char *name, int fd)
{
	char grow[PATH_MAX], path[PATH_MAX];
	int err;

	if ((err = pin_path(grow, dir, SLUICE_PIN_MAPS_GROW, NULL)))
		return err;
	if (mkdir(grow, 0700) && errno != EEXIST)
		return -errno;
	if ((err = pin_path(grow, dir, SLUICE_PIN_MAPS_GROW, name)) || (err = pin_path(path, dir, SLUICE_PIN_MAPS, name)))
		return err;
	unlink(grow);
	if (bpf_obj_pin(fd, grow) || rename(grow, path))
		return -errno;
	return 0;
}

/*
 * 4. The socket programs of the new object into the pinned links, then TC's object loaded again
 * over the new pins and its programs into its links. In an upgrade the hooks get the programs at
 * its end (dataplane_finish_open); TC's object is loaded again all the same, to name the new maps.
 */
static int swap_programs(struct dataplane *dp)
{
	struct dataplane_opts o = { .bpffs_dir = dp->dir };
	int err;

	if (!dp->upgrading) {
		for (size_t i = 0; i < dp->n_links; i++) {
			bpf_link__disconnect(dp->links[i]);   /* pinned: stays attached */
			bpf_link__destroy(dp->links[i]);
		}
		dp->n_links = 0;
		if ((err = attach_programs(dp, dp->dir, dp->cg_fd, dp->cg_id)))
			return err;
	}
	if (!dp->tc_skel)
		return 0;
	for (size_t i = 0; i < dp->n_tc_links; i++)
		close(dp->tc_links[i]);     /* pinned: stays attached */
	dp->n_tc_links = 0;
	sluice_tc_bpf__destroy(dp->tc_skel);
	dp->tc_skel = NULL;
	if ((err = tc_load(dp, &o)))
		return err;
	for (size_t i = 0; i < dp->n_tc_ifaces && !dp->upgrading && !err; i++)
		err = tc_attach(dp, dp->dir, dp->tc_ifnames[i], dp->tc_ifindexes[i]);
	return err;
}

static uint64_t ms_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static int grow(struct dataplane *dp, const struct dataplane_caps *want)
{
	uint64_t t0 = ms_now();
	struct sluice_bpf *old = dp->skel, *nw = sluice_bpf__open();
	struct copy copies[N_SIZED] = { 0 };
	struct bpf_map *map;
	int err = 0;
	char what[256] = "";

	if (!nw)
		return -errno;
	bpf_object__for_each_map(map, nw->obj) {
		if (bpf_map__is_internal(map))
			continue;
		const struct sized *z = sized_map(bpf_map__name(map));
		if (z && cap_get(want, z) != cap_get(&dp->caps, z)) {
			err = bpf_map__set_max_entries(map, cap_get(want, z));   /* 1: made anew by the load */
			snprintf(what + strlen(what), sizeof(what) - strlen(what), "%s%s %u -> %u", what[0] ? ", " : "",
				 z->name, cap_get(&dp->caps, z), cap_get(want, z));
		} else {
			struct bpf_map *live = bpf_object__find_map_by_name(old->obj, bpf_map__name(map));
			if (z)
				err = bpf_map__set_max_entries(map, cap_get(&dp->caps, z));
			if (!err)
				err = live ? bpf_map__reuse_fd(map, bpf_map__fd(live)) : -ENOENT;
		}
		if (err)
			goto fail;
	}
	if ((err = sluice_bpf__load(nw))) {
		log_error("growing the maps (%s): loading the data plane failed: %s", what, strerror(-err));
		goto fail;
	}
	/* 2. */
	for (size_t i = 0; i < N_SIZED; i++) {
		if (cap_get(want, &sized[i]) == cap_get(&dp->caps, &sized[i]))
			continue;
		struct bpf_map *a = bpf_object__find_map_by_name(old->obj, sized[i].name);
		struct bpf_map *b = bpf_object__find_map_by_name(nw->obj, sized[i].name);
		if ((err = copy_map(bpf_map__fd(a), bpf_map__fd(b), &copies[i])))
			goto fail;
	}
	/* 3. */
	for (size_t i = 0; i < N_SIZED; i++)
		if (copies[i].key_size &&
		    (err = repin(dp->dir, sized[i].name, bpf_map__fd(bpf_object__find_map_by_name(nw->obj, sized[i].name))))) {
			while (i--)   /* the pins back on the maps the hooks use: a restart adopts one whole set */
				if (copies[i].key_size)
					repin(dp->dir, sized[i].name, bpf_map__fd(bpf_object__find_map_by_name(old->obj, sized[i].name)));
			log_error("growing the maps (%s): cannot pin the new maps: %s", what, strerror(-err));
			goto fail;
		}
	remove_pins(dp->dir, SLUICE_PIN_MAPS_GROW, false);
	dp->skel = nw;
	map_fds(dp);
	dp->caps = *want;   /* what is pinned now: TC's object is loaded over these pins */
	/* 4. */
	if ((err = swap_programs(dp)) || (!dp->upgrading && (err = wait_for_readers(dp))))
		log_error("growing the maps (%s): %s; the maps are grown and pinned, some hooks may still use "
			  "the previous ones; hint: restart sluiced (it adopts the pins)", what, strerror(-err));
	if (!dp->upgrading) {   /* 5.: in an upgrade no hook used the previous maps */
		for (size_t i = 0; i < N_SIZED && !err; i++)
			if (copies[i].key_size && (!strcmp(sized[i].name, "counters") || !strcmp(sized[i].name, "rr_state")))
				err = merge(dp, bpf_map__fd(bpf_object__find_map_by_name(old->obj, sized[i].name)), &copies[i],
					    strcmp(sized[i].name, "counters") ? SLUICE_MERGE_RR_STATE : SLUICE_MERGE_COUNTERS);
	}
	sluice_bpf__destroy(old);   /* its maps go with their last reference */
	pins_record(dp);
	if (!err)
		log_info("maps grown in %llu ms: %s", (unsigned long long)(ms_now() - t0), what);
	for (size_t i = 0; i < N_SIZED; i++)
		copy_free(&copies[i]);
	return err;
fail:
	for (size_t i = 0; i < N_SIZED; i++)
		copy_free(&copies[i]);
	if (dp->skel == old)
		sluice_bpf__destroy(nw);
	return err;
}

/* sluiced keeps what a growth needs permitted, not effective (loader/daemon/main.c): raised for it alone. */
static void loading_capabilities(bool on)
{
	static const cap_value_t load[] = { CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON };
	cap_t caps = cap_get_proc();
	cap_flag_value_t have;

	if (!caps)
		return;
	for (size_t i = 0; i < sizeof(load) / sizeof(load[0]); i++)
		if (!cap_get_flag(caps, load[i], CAP_PERMITTED, &have) && have)
			cap_set_flag(caps, CAP_EFFECTIVE, 1, &load[i], on ? CAP_SET : CAP_CLEAR);
	cap_set_proc(caps);
	cap_free(caps);
}

int caps_ensure(struct dataplane *dp, const struct dataplane_caps *need)
{
	struct dataplane_caps want = dp->caps;
	bool more = false;

	for (size_t i = 0; i < N_SIZED; i++) {
		uint32_t wanted = cap_get(need, &sized[i]);
		if (wanted <= cap_get(&dp->caps, &sized[i]))
			continue;
		/* room to double before the next growth */
		uint32_t to = pow2_at_least(2ull * wanted);
		*cap_of(&want, &sized[i]) = to < sized[i].limit ? to : sized[i].limit;
		more = true;
	}
	if (!more)
		return 0;
	loading_capabilities(true);
	int err = grow(dp, &want);
	loading_capabilities(false);
	return err;
}
