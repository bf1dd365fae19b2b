/* SPDX-License-Identifier: MIT */
/*
 * Pins found at open. Maps of this build's layout are adopted: the bookkeeping is rebuilt
 * from them alone (rebuild). Maps of another layout are upgraded across, as below.
 *
 * Upgrades across a change of the maps' layout (a record, a counter or socket storage grew).
 * Pinned maps that do not fit this build cannot be reused, and mixing old and new maps would
 * hand the running programs half a world. So the socket object's pinned maps move aside, all of
 * them, to SLUICE_PIN_MAPS_OLD: the running programs keep using them, untouched, while this
 * build loads fresh maps, the saved plan is applied to those (same generation onwards), and only
 * then are the new programs swapped into the pinned links (dataplane_finish_open). TC's flow
 * table keeps its place (its layout does not change between releases) and services keep their
 * ids (read_kept_ids), so TC flows in progress keep their endpoints. What restarts: per-endpoint
 * counters, round-robin positions, getpeername's VIP for connections opened before, and the
 * backend choice of unconnected UDP sockets.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <arpa/inet.h>

#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>

#include "common/log.h"
#include "dataplane/internal.h"
#include "sluice.skel.h"

/* One live record and its endpoints, read back into the bookkeeping. */
static int read_back(struct dataplane *dp, const struct sluice_service_key *key, const struct sluice_service *r)
{
	struct svc_state *s;

	if (r->id >= SLUICE_MAX_SERVICE_IDS || dp->by_id[r->id] ||
	    r->n_destinations == 0 || r->n_destinations > SLUICE_MAX_DESTINATIONS)
		return -EUCLEAN;
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->pos = dp->n_svcs;
	dp->svcs[dp->n_svcs++] = s;
	svc_of_record(key, r, s);
	dp->slots_in_use += s->n_slots;
	dp->by_id[s->id] = s;
	s->slots = calloc(s->n_slots ? s->n_slots : 1, sizeof(*s->slots));
	if (!s->slots)
		return -ENOMEM;
	for (uint32_t slot = 0; slot < s->n_slots; slot++) {
		struct sluice_endpoint_key k;
		endpoint_key(s->id, slot, s->generation, &k);
		if (bpf_map_lookup_elem(dp->fd_endpoints, &k, &s->slots[slot]))
			return -EUCLEAN;
	}
	return 0;
}

/* Rebuilds the bookkeeping from the maps alone: the active side is the truth. */
int rebuild(struct dataplane *dp)
{
	struct sluice_service_key *keys = NULL;
	struct sluice_service *r = malloc(sizeof(*r));
	struct sluice_active act;
	uint32_t zero = 0;
	size_t n = 0;
	int err;

	if (!r)
		return -ENOMEM;
	if (bpf_map_lookup_elem(dp->fd_active, &zero, &act)) {
		err = -errno;
		goto out;
	}
	dp->generation = act.generation;
	if ((err = map_keys(dp->fd_services, sizeof(*keys), (void **)&keys, &n)))
		goto out;
	dp->svcs = calloc(n ? n : 1, sizeof(*dp->svcs));
	if (!dp->svcs) {
		err = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < n && !err; i++)
		if (keys[i].side == (dp->generation & 1) && bpf_map_lookup_elem(dp->fd_services, &keys[i], r) == 0)
			err = read_back(dp, &keys[i], r);
	if (err)
		goto out;
	if ((err = index_build(&dp->index, dp->svcs, dp->n_svcs, NULL)))
		goto out;
	err = resync(dp);
out:
	if (err == -EUCLEAN)
		log_error("the pinned maps hold an inconsistent routing table; hint: sluiced --uninstall, then apply again");
	else if (err)
		log_error("cannot read the pinned maps back: %s", strerror(-err));
	free(r);
	free(keys);
	return err;
}

static bool pin_mismatch(const char *path, const struct bpf_map *m)
{
	struct bpf_map_info info;
	__u32 len = sizeof(info);
	int fd = bpf_obj_get(path);
	bool bad;

	if (fd < 0)
		return false;   /* not pinned yet: the load creates it */
	memset(&info, 0, sizeof(info));
	bad = bpf_obj_get_info_by_fd(fd, &info, &len) || info.type != bpf_map__type(m) ||
	      info.key_size != bpf_map__key_size(m) || info.value_size != bpf_map__value_size(m) ||
	      info.max_entries != bpf_map__max_entries(m) || info.map_flags != bpf_map__map_flags(m);
	close(fd);
	return bad;
}

/* Moves every pin of the socket object's maps from `from` to `to` (names as in the object). */
static int move_map_pins(struct dataplane *dp, const char *dir, const char *from, const char *to)
{
	char a[PATH_MAX], b[PATH_MAX];
	struct bpf_map *map;
	int err;

	bpf_object__for_each_map(map, dp->skel->obj) {
		if (bpf_map__is_internal(map))
			continue;
		if ((err = pin_path(a, dir, from, bpf_map__name(map))) || (err = pin_path(b, dir, to, bpf_map__name(map))))
			return err;
		if (rename(a, b) && errno != ENOENT)
			return -errno;
	}
	return 0;
}

/* The generation in a pinned `active` of any release: its first 8 bytes (the value grew after them). */
static uint64_t pinned_generation(const char *path)
{
	struct sluice_active act = { 0 };
	__u32 zero = 0;
	int fd = bpf_obj_get(path);

	if (fd < 0)
		return 0;
	_Static_assert(__builtin_offsetof(struct sluice_active, generation) == 0, "generation first, in every release");
	if (bpf_map_lookup_elem(fd, &zero, &act))
		act.generation = 0;
	close(fd);
	return act.generation;
}

/* Whether the port of a pinned `services` key is __be16, as in every release before this one. */
static bool key_port_be16(const struct bpf_map_info *info)
{
	const struct btf_type *t;
	struct btf *btf;
	bool be16 = true;

	if (!info->btf_id || !info->btf_key_type_id || !(btf = btf__load_from_kernel_by_id(info->btf_id)))
		return true;
	t = btf__type_by_id(btf, info->btf_key_type_id);
	for (__u16 i = 0; t && btf_is_struct(t) && i < btf_vlen(t); i++) {
		const struct btf_member *m = btf_members(t) + i;
		if (strcmp(btf__name_by_offset(btf, m->name_off), "port"))
			continue;
		const struct btf_type *pt = btf__type_by_id(btf, m->type);
		be16 = pt && btf_is_typedef(pt) && !strcmp(btf__name_by_offset(btf, pt->name_off), "__be16");
		break;
	}
	btf__free(btf);
	return be16;
}

const struct kept_id *kept_get(const struct kept_ids *kt, const struct sluice_service_key *k)
{
	if (!kt->cap)
		return NULL;
	for (size_t j = key_hash(k) & (kt->cap - 1); kt->tab[j].used; j = (j + 1) & (kt->cap - 1))
		if (key_eq(&kt->tab[j].key, k))
			return &kt->tab[j];
	return NULL;
}

bool kept_taken(const struct kept_ids *kt, uint32_t id)
{
	return kt->taken && (kt->taken[id / 8] & (1u << (id % 8)));
}

void kept_free(struct kept_ids *kt)
{
	free(kt->tab);
	free(kt->taken);
	memset(kt, 0, sizeof(*kt));
}

/*
 * The service ids of the maps moved aside, by key: the upgrade's first apply gives each service
 * the id it had, since TC flows in progress name it (a UDP flow lives while its endpoint's counter
 * under that id does). Every release's `services` key is these 24 bytes and its record starts
 * with the id; only the port's byte order changed. Best effort: without them ids are new.
 */
static void read_kept_ids(struct dataplane *dp, const char *dir)
{
	struct sluice_service_key *keys = NULL;
	struct bpf_map_info info;
	__u32 len = sizeof(info);
	char path[PATH_MAX];
	uint32_t id;
	void *val = NULL;
	size_t n = 0, cap = 16;
	bool be16;
	int fd;

	if (pin_path(path, dir, SLUICE_PIN_MAPS_OLD, "services") || (fd = bpf_obj_get(path)) < 0)
		return;
	memset(&info, 0, sizeof(info));
	if (bpf_obj_get_info_by_fd(fd, &info, &len) || info.key_size != sizeof(*keys) || info.value_size < sizeof(id) ||
	    map_keys(fd, sizeof(*keys), (void **)&keys, &n) || !(val = malloc(info.value_size)))
		goto out;
	be16 = key_port_be16(&info);
	while (cap < 2 * n)
		cap *= 2;
	dp->kept.tab = calloc(cap, sizeof(*dp->kept.tab));
	dp->kept.taken = calloc(SLUICE_MAX_SERVICE_IDS / 8, 1);
	if (!dp->kept.tab || !dp->kept.taken) {
		kept_free(&dp->kept);
		goto out;
	}
	dp->kept.cap = cap;
	for (size_t i = 0; i < n; i++) {
		struct sluice_service_key k = keys[i];
		if (bpf_map_lookup_elem(fd, &keys[i], val))
			continue;
		memcpy(&id, val, sizeof(id));
		k.side = 0;
		if (be16)
			k.port = ntohs(k.port);
		if (id >= SLUICE_MAX_SERVICE_IDS || kept_get(&dp->kept, &k))
			continue;   /* the other side's record of the same key */
		size_t j = key_hash(&k) & (cap - 1);
		while (dp->kept.tab[j].used)
			j = (j + 1) & (cap - 1);
		dp->kept.tab[j] = (struct kept_id){ .key = k, .id = id, .used = true };
		dp->kept.taken[id / 8] |= 1u << (id % 8);
	}
out:
	close(fd);
	free(keys);
	free(val);
}

int upgrade_begin(struct dataplane *dp, const char *dir, uint64_t *generation)
{
	char path[PATH_MAX];
	struct bpf_map *map;
	bool changed = false;
	int err;

	/* An upgrade stopped before its swap: the programs in the hooks still use the maps moved aside. */
	if (!pin_path(path, dir, SLUICE_PIN_MAPS_OLD, "active") && path_exists(path)) {
		*generation = pinned_generation(path);
		bpf_object__for_each_map(map, dp->skel->obj)
			if (!bpf_map__is_internal(map) && !pin_path(path, dir, SLUICE_PIN_MAPS, bpf_map__name(map)))
				unlink(path);   /* the unfinished new maps: no hook reads them */
		log_info("upgrade: resuming an upgrade that stopped before its switch");
		read_kept_ids(dp, dir);
		dp->upgrading = true;
		return 0;
	}
	bpf_object__for_each_map(map, dp->skel->obj) {
		if (bpf_map__is_internal(map))
			continue;
		if ((err = pin_path(path, dir, SLUICE_PIN_MAPS, bpf_map__name(map))))
			return err;
		changed = changed || pin_mismatch(path, map);
	}
	if (!changed)
		return 0;
	/* the generation carries on, so that status and logs keep counting up */
	*generation = pin_path(path, dir, SLUICE_PIN_MAPS, "active") ? 0 : pinned_generation(path);
	if ((err = pin_path(path, dir, SLUICE_PIN_MAPS_OLD, NULL)))
		return err;
	if (mkdir(path, 0700) && errno != EEXIST)
		return -errno;
	if ((err = move_map_pins(dp, dir, SLUICE_PIN_MAPS, SLUICE_PIN_MAPS_OLD))) {
		move_map_pins(dp, dir, SLUICE_PIN_MAPS_OLD, SLUICE_PIN_MAPS);
		log_error("cannot move the previous maps aside under %s: %s", path, strerror(-err));
		return err;
	}
	log_info("upgrade: the pinned maps do not fit this build; the running programs keep the previous "
		"maps (%s) until the saved plan is applied to new ones", path);
	read_kept_ids(dp, dir);
	dp->upgrading = true;
	return 0;
}

/* A failed upgrade puts the previous maps back: the running programs never left them. */
void upgrade_abort(struct dataplane *dp, const char *dir)
{
	char path[PATH_MAX];
	struct bpf_map *map;

	bpf_object__for_each_map(map, dp->skel->obj)
		if (!bpf_map__is_internal(map) && !pin_path(path, dir, SLUICE_PIN_MAPS, bpf_map__name(map)))
			unlink(path);
	move_map_pins(dp, dir, SLUICE_PIN_MAPS_OLD, SLUICE_PIN_MAPS);
	if (!pin_path(path, dir, SLUICE_PIN_MAPS_OLD, NULL))
		rmdir(path);
	dp->upgrading = false;
}

int dataplane_finish_open(struct dataplane *dp)
{
	int err = 0;

	if (!dp || !dp->upgrading)
		return 0;
	/* swapped into the pinned links: the hooks never run without a program */
	if ((err = attach_programs(dp, dp->dir, dp->upgrade_cg_fd, dp->upgrade_cg_id)))
		return err;
	for (size_t i = 0; i < dp->n_tc_pending; i++)
		if ((err = tc_attach(dp, dp->dir, dp->tc_names[i], dp->tc_ifindex[i])))
			return err;
	/* the previous programs are gone from the hooks: their maps go with the last reference */
	remove_pins(dp->dir, SLUICE_PIN_MAPS_OLD, false);
	kept_free(&dp->kept);
	dp->upgrading = false;
	close(dp->upgrade_cg_fd);
	dp->upgrade_cg_fd = -1;
	pins_record(dp);
	log_info("upgrade: done: the new programs serve from the new maps");
	return 0;
}
