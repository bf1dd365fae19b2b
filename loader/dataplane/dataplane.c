/* SPDX-License-Identifier: MIT */
/*
 * The map writer of the data plane: socket mode (bpf/sluice.bpf.c) and TC mode
 * (bpf/sluice_tc.bpf.c) read the same routing maps.
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
 *
 * Two BPF objects, one set of maps: the socket object is loaded first and pins
 * its maps; the TC object declares the same routing maps (bpf/sluice.bpf.h) and
 * libbpf reuses them through those pins, so one apply and one switch serve
 * both modes. Two objects rather than one because a skeleton loads all of its
 * programs: socket mode alone (no --tc) then loads no packet program, and the
 * TC programs attach to interfaces with their own link pins.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <linux/magic.h>
#include <net/if.h>
#include <net/if_arp.h>
#include <netinet/in.h>

#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>

#include "sluice_abi.h"
#include "dataplane/dataplane.h"
#include "dataplane/rr.h"
#include "common/log.h"
#include "sluice.skel.h"
#include "sluice_tc.skel.h"

_Static_assert(SLUICE_AF_INET == AF_INET && SLUICE_AF_INET6 == AF_INET6, "address family numbers");
_Static_assert((int)SLUICE_PROTO_TCP == (int)IPPROTO_TCP && (int)SLUICE_PROTO_UDP == (int)IPPROTO_UDP, "protocol numbers");
_Static_assert((int)SLUICE_LB_ROUND_ROBIN == (int)PLAN_LB_ROUND_ROBIN && (int)SLUICE_LB_RANDOM == (int)PLAN_LB_RANDOM,
	       "lb modes");
_Static_assert(SLUICE_MAX_DESTINATIONS == PLAN_MAX_DESTINATIONS, "destinations per service");
_Static_assert(SLUICE_MAX_ENDPOINTS == PLAN_MAX_ENDPOINTS, "endpoints per destination");

#define DEFAULT_BPFFS "/sys/fs/bpf"

/* tcx (6.6+): libbpf 1.1 and the 6.1 UAPI headers of Debian 12 predate them; the kernel's numbers. */
#define TCX_INGRESS 46              /* BPF_TCX_INGRESS */
#define TCX_EGRESS 47               /* BPF_TCX_EGRESS */
#define LINK_TYPE_TCX 11            /* BPF_LINK_TYPE_TCX */

/* One service record as the bookkeeping knows it: what a side of `services` holds for one VIP. */
struct svc_state {
	struct sluice_service_key key;  /* side 0 */
	uint32_t id;
	uint64_t generation;            /* the one its record was written for: its endpoints' key */
	uint8_t lb, n_destinations;
	uint32_t configured[SLUICE_MAX_DESTINATIONS];  /* the weights as the plan gives them (80/20), shown in the record */
	uint32_t weights[SLUICE_MAX_DESTINATIONS];     /* reduced by gcd: 80/20 and 4/1 route alike (4/1) */
	struct sluice_tcp_policy tcp[SLUICE_MAX_DESTINATIONS];   /* zero for UDP */
	uint16_t n_endpoints[SLUICE_MAX_DESTINATIONS];
	uint32_t n_slots;
	struct sluice_endpoint *slots;  /* destination 0's endpoints, then destination 1's, ... */
	uint64_t stamp;                 /* the apply that last saw this service in its plan */
	size_t pos;                     /* index in dataplane.svcs */
};

/* Open addressing over svc_state pointers, keyed by the record key. */
struct svc_index {
	struct svc_state **tab;
	size_t cap;
};

/* The service ids of the maps an upgrade replaces, kept for the same keys (upgrade_begin). */
struct kept_ids {
	struct kept_id {
		struct sluice_service_key key;   /* side 0, this build's form */
		uint32_t id;
		bool used;
	} *tab;                                  /* open addressing by key */
	size_t cap;
	uint8_t *taken;                          /* bit per id: kept for some key */
};

struct dataplane {
	struct sluice_bpf *skel;
	struct bpf_link *links[16];
	size_t n_links;
	struct sluice_tc_bpf *tc_skel;  /* NULL: no TC mode */
	int tc_links[2 * DATAPLANE_MAX_TC_IFACES];   /* pinned tcx links: they stay attached after close */
	size_t n_tc_links;
	int fd_active, fd_services, fd_endpoints, fd_counters, fd_rr_state, fd_barrier, fd_barrier_inner;
	uint64_t generation;
	struct svc_state **svcs;        /* current routing: equal to both sides of `services` */
	size_t n_svcs;
	struct svc_index index;
	struct svc_state **by_id;       /* SLUICE_MAX_SERVICE_IDS entries */
	uint32_t id_hint;
	uint64_t stamp;                 /* apply counter, for the diff */
	uint64_t slots_in_use;          /* endpoint slots of all current records */
	bool sides_differ;              /* a failed write left the inactive side stale: resync before use */
	struct pending *pending;        /* an apply switched, its old side not yet replayed (deferred) */
	/* An upgrade that changed the maps' layout: new programs wait for the first apply (upgrade_begin). */
	bool upgrading;
	char *dir;                      /* the bpffs directory, for the deferred attach */
	int upgrade_cg_fd;
	uint64_t upgrade_cg_id;
	struct kept_ids kept;           /* until the first apply of an upgrade */
	char *tc_names[DATAPLANE_MAX_TC_IFACES];
	int tc_ifindex[DATAPLANE_MAX_TC_IFACES];
	size_t n_tc_pending;
	int ncpus;
	int lock_fd;                    /* flock on the pin directory: one writer per data plane */
	struct pin *pins;               /* what is pinned, to pin again if it disappears */
	size_t n_pins;
};

/* One pinned object and a reference to it that outlives its pin. */
struct pin {
	char *path;
	int fd;
	ino_t ino;
};



static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

static int libbpf_quiet(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	return 0;
}

static int libbpf_verbose(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	return vfprintf(stderr, fmt, ap);
}

/* ---- the bookkeeping index ---- */

static uint64_t key_hash(const struct sluice_service_key *k)
{
	uint64_t w[3], h = 0;

	_Static_assert(sizeof(*k) == sizeof(w), "key is three words");
	memcpy(w, k, sizeof(w));
	for (size_t i = 0; i < 3; i++) {
		h = (h ^ w[i]) * 0x9e3779b97f4a7c15ull;
		h ^= h >> 29;
	}
	h *= 0xbf58476d1ce4e5b9ull;   /* splitmix64's finaliser: every key bit reaches the low bits */
	return h ^ (h >> 31);
}

static bool key_eq(const struct sluice_service_key *a, const struct sluice_service_key *b)
{
	return memcmp(a, b, sizeof(*a)) == 0;
}

static int index_build(struct svc_index *ix, struct svc_state **v, size_t n)
{
	size_t cap = 16;

	while (cap < 2 * n)
		cap *= 2;
	ix->tab = calloc(cap, sizeof(*ix->tab));
	if (!ix->tab)
		return -ENOMEM;
	ix->cap = cap;
	for (size_t i = 0; i < n; i++) {
		size_t j = key_hash(&v[i]->key) & (cap - 1);
		while (ix->tab[j]) {
			if (key_eq(&ix->tab[j]->key, &v[i]->key))
				return -EEXIST;
			j = (j + 1) & (cap - 1);
		}
		ix->tab[j] = v[i];
	}
	return 0;
}

static struct svc_state *index_get(const struct svc_index *ix, const struct sluice_service_key *k)
{
	if (!ix->cap)
		return NULL;
	for (size_t j = key_hash(k) & (ix->cap - 1); ix->tab[j]; j = (j + 1) & (ix->cap - 1))
		if (key_eq(&ix->tab[j]->key, k))
			return ix->tab[j];
	return NULL;
}

/* Points the index entry of s's key at s (a changed service replacing its previous state). */
static void index_replace(struct svc_index *ix, struct svc_state *s)
{
	for (size_t j = key_hash(&s->key) & (ix->cap - 1); ix->tab[j]; j = (j + 1) & (ix->cap - 1))
		if (key_eq(&ix->tab[j]->key, &s->key)) {
			ix->tab[j] = s;
			return;
		}
}

static void svc_free(struct svc_state *s)
{
	if (s) {
		free(s->slots);
		free(s);
	}
}

/* ---- the record a svc_state becomes (weights and the round-robin table: rr.c) ---- */

static void build_record(const struct svc_state *s, struct sluice_service *r)
{
	uint32_t cum = 0;
	uint16_t slot = 0;

	memset(r, 0, sizeof(*r));
	r->id = s->id;
	r->generation = s->generation;
	r->lb = s->lb;
	r->n_destinations = s->n_destinations;
	for (size_t i = 0; i < s->n_destinations; i++) {
		cum += s->weights[i];
		r->destinations[i].weight = s->configured[i];
		r->destinations[i].cum_weight = cum;
		r->destinations[i].first_slot = slot;
		r->destinations[i].n_endpoints = s->n_endpoints[i];
		r->destinations[i].tcp = s->tcp[i];
		slot += s->n_endpoints[i];
	}
	if (s->lb == SLUICE_LB_ROUND_ROBIN)
		r->rr_slots = build_rr_table(s->weights, s->n_destinations, r->rr_table);
}

/* ---- plan -> bookkeeping ---- */

static const char *addr_str(uint8_t family, const void *addr, char *buf, size_t len)
{
	if (!inet_ntop(family, addr, buf, len))
		snprintf(buf, len, "(family %u)", family);
	return buf;
}

static int make_key(const struct plan_addr *vip, uint16_t port, uint8_t protocol, struct sluice_service_key *k)
{
	memset(k, 0, sizeof(*k));
	if (vip->family != AF_INET && vip->family != AF_INET6)
		return -EINVAL;
	memcpy(k->vip.bytes, vip->addr, vip->family == AF_INET ? 4 : 16);
	k->family = vip->family;
	k->port = port;
	k->protocol = protocol;
	return 0;
}

static bool svc_same_routing(const struct svc_state *a, const struct svc_state *b)
{
	return a->lb == b->lb && a->n_destinations == b->n_destinations &&
	       memcmp(a->configured, b->configured, sizeof(a->configured)) == 0 &&
	       memcmp(a->weights, b->weights, sizeof(a->weights)) == 0 &&
	       memcmp(a->tcp, b->tcp, sizeof(a->tcp)) == 0 &&
	       memcmp(a->n_endpoints, b->n_endpoints, sizeof(a->n_endpoints)) == 0 &&
	       a->n_slots == b->n_slots &&
	       memcmp(a->slots, b->slots, a->n_slots * sizeof(*a->slots)) == 0;
}

/*
 * A plan service's addresses, each one record: its VIPs on its port, then its
 * gateway addresses on the gateway port.
 */
static size_t svc_n_addrs(const struct plan_service *ps)
{
	return ps->n_vips + ps->n_gateway_addrs;
}

static const struct plan_addr *svc_addr(const struct plan_service *ps, size_t j, uint16_t *port)
{
	if (j < ps->n_vips) {
		*port = ps->port;
		return &ps->vips[j];
	}
	*port = ps->gateway_port;
	return &ps->gateway_addrs[j - ps->n_vips];
}

/*
 * Fills s (whose slots buffer holds SLUICE_MAX_DESTINATIONS * SLUICE_MAX_ENDPOINTS)
 * with the record of one address of the service (a VIP or a gateway address)
 * on port: the endpoints of the address's family.
 */
static int svc_fill(const struct plan_service *ps, const struct plan_addr *vip, uint16_t port, struct svc_state *s)
{
	char a[INET6_ADDRSTRLEN];
	const char *name = ps->name ? ps->name : "?";
	const char *ns = ps->namespace ? ps->namespace : "?";
	struct sluice_endpoint *slots = s->slots;

	memset(s, 0, sizeof(*s));
	s->slots = slots;
	if (ps->protocol != IPPROTO_TCP && ps->protocol != IPPROTO_UDP) {
		log_error("service %s/%s: protocol %u is not tcp or udp; hint: the compiler should have rejected it",
		       ns, name, ps->protocol);
		return -EINVAL;
	}
	if (port == 0 || ps->n_destinations == 0 || ps->n_destinations > SLUICE_MAX_DESTINATIONS) {
		log_error("service %s/%s port %u: %zu destinations (allowed 1..%d) or port 0",
		       ns, name, port, ps->n_destinations, SLUICE_MAX_DESTINATIONS);
		return -EINVAL;
	}
	if (ps->lb != PLAN_LB_ROUND_ROBIN && ps->lb != PLAN_LB_RANDOM) {
		log_error("service %s/%s: unknown load-balancing mode %d", ns, name, (int)ps->lb);
		return -EINVAL;
	}
	if (make_key(vip, port, ps->protocol, &s->key)) {
		log_error("service %s/%s: VIP of address family %u; hint: only AF_INET and AF_INET6", ns, name,
		       vip->family);
		return -EINVAL;
	}
	s->lb = (uint8_t)ps->lb;
	s->n_destinations = (uint8_t)ps->n_destinations;
	for (size_t d = 0; d < ps->n_destinations; d++)
		s->configured[d] = ps->destinations[d].weight;
	if (reduce_weights(s->configured, ps->n_destinations, s->weights)) {
		log_error("service %s/%s: the weights of its %zu destinations sum to 0; hint: give at least one a weight",
		       ns, name, ps->n_destinations);
		return -EINVAL;
	}
	for (size_t d = 0; d < ps->n_destinations && ps->protocol == IPPROTO_TCP; d++) {
		const struct plan_tcp_policy *t = &ps->destinations[d].tcp;
		s->tcp[d].connect_timeout_ms = t->connect_timeout_ms;
		s->tcp[d].keepalive_time_s = t->keepalive_time_s;
		s->tcp[d].keepalive_interval_s = t->keepalive_interval_s;
		s->tcp[d].keepalive_probes = t->keepalive_probes;
		s->tcp[d].flags = t->keepalive ? SLUICE_TCP_KEEPALIVE : 0;
	}
	for (size_t d = 0; d < ps->n_destinations; d++) {
		const struct plan_destination *pd = &ps->destinations[d];
		if (pd->n_endpoints > SLUICE_MAX_ENDPOINTS) {
			log_error("service %s/%s destination %zu: %zu endpoints, at most %d", ns, name, d,
			       pd->n_endpoints, SLUICE_MAX_ENDPOINTS);
			return -EINVAL;
		}
		for (size_t e = 0; e < pd->n_endpoints; e++) {
			const struct plan_endpoint *pe = &pd->endpoints[e];
			if (pe->addr.family != vip->family)
				continue;   /* a dual-stack pod: its other address serves the other VIP */
			if (pe->port == 0) {
				log_error("service %s/%s: endpoint %s has port 0", ns, name,
				       addr_str(pe->addr.family, pe->addr.addr, a, sizeof(a)));
				return -EINVAL;
			}
			struct sluice_endpoint *ep = &s->slots[s->n_slots++];
			memset(ep, 0, sizeof(*ep));
			memcpy(ep->addr.bytes, pe->addr.addr, pe->addr.family == AF_INET ? 4 : 16);
			ep->port = pe->port;
			ep->family = pe->addr.family;
			s->n_endpoints[d]++;
		}
	}
	return 0;
}

static struct svc_state *svc_dup(const struct svc_state *from)
{
	struct svc_state *s = malloc(sizeof(*s));

	if (!s)
		return NULL;
	*s = *from;
	s->slots = malloc((from->n_slots ? from->n_slots : 1) * sizeof(*s->slots));
	if (!s->slots) {
		free(s);
		return NULL;
	}
	memcpy(s->slots, from->slots, from->n_slots * sizeof(*s->slots));
	return s;
}

static void svcs_free(struct svc_state **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		svc_free(v[i]);
	free(v);
}

/* ---- map writes ---- */

static int write_endpoints(struct dataplane *dp, const struct svc_state *s)
{
	struct sluice_endpoint_key k;

	for (uint32_t i = 0; i < s->n_slots; i++) {
		memset(&k, 0, sizeof(k));
		k.service_id = s->id;
		k.slot = i;
		k.generation = s->generation;
		if (bpf_map_update_elem(dp->fd_endpoints, &k, &s->slots[i], BPF_ANY))
			return -errno;
	}
	return 0;
}

static void delete_endpoints(struct dataplane *dp, const struct svc_state *s)
{
	struct sluice_endpoint_key k;

	for (uint32_t i = 0; i < s->n_slots; i++) {
		memset(&k, 0, sizeof(k));
		k.service_id = s->id;
		k.slot = i;
		k.generation = s->generation;
		bpf_map_delete_elem(dp->fd_endpoints, &k);
	}
}

static void counter_key(uint32_t id, const struct sluice_endpoint *ep, struct sluice_counter_key *k)
{
	memset(k, 0, sizeof(*k));
	k->service_id = id;
	k->addr = ep->addr;
	k->port = ep->port;
	k->family = ep->family;
}

/* Counters are created by userspace only; an existing one is kept (that is the point). */
static int create_counters(struct dataplane *dp, const struct svc_state *s)
{
	struct sluice_counter_key k;
	struct sluice_endpoint_stats *zero = calloc(dp->ncpus, sizeof(*zero));
	int err = 0;

	if (!zero)
		return -ENOMEM;
	for (uint32_t i = 0; i < s->n_slots && !err; i++) {
		counter_key(s->id, &s->slots[i], &k);
		if (bpf_map_update_elem(dp->fd_counters, &k, zero, BPF_NOEXIST) && errno != EEXIST)
			err = -errno;
	}
	free(zero);
	return err;
}

static bool has_endpoint(const struct svc_state *s, const struct sluice_endpoint *ep)
{
	for (uint32_t i = 0; i < s->n_slots; i++)
		if (memcmp(&s->slots[i], ep, sizeof(*ep)) == 0)
			return true;
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
		bpf_map_delete_elem(dp->fd_counters, &k);
	}
}

static int write_record(struct dataplane *dp, const struct svc_state *s, unsigned side)
{
	struct sluice_service_key k = s->key;
	struct sluice_service *r = malloc(sizeof(*r));
	int err = 0;

	if (!r)
		return -ENOMEM;
	build_record(s, r);
	k.side = side;
	if (bpf_map_update_elem(dp->fd_services, &k, r, BPF_ANY))
		err = -errno;
	free(r);
	return err;
}

static int delete_record(struct dataplane *dp, const struct svc_state *s, unsigned side)
{
	struct sluice_service_key k = s->key;

	k.side = side;
	if (bpf_map_delete_elem(dp->fd_services, &k) && errno != ENOENT)
		return -errno;
	return 0;
}

static int set_generation(struct dataplane *dp, uint64_t generation)
{
	struct sluice_active a = { .generation = generation, .side = generation & 1 };
	uint32_t zero = 0;

	if (bpf_map_update_elem(dp->fd_active, &zero, &a, BPF_ANY))
		return -errno;
	return 0;
}

/* One RCU grace period: every program that started before this call has finished. */
static int wait_for_readers(struct dataplane *dp)
{
	uint32_t zero = 0;

	if (bpf_map_update_elem(dp->fd_barrier, &zero, &dp->fd_barrier_inner, BPF_ANY))
		return -errno;
	return 0;
}

static const struct kept_id *kept_get(const struct kept_ids *kt, const struct sluice_service_key *k)
{
	if (!kt->cap)
		return NULL;
	for (size_t j = key_hash(k) & (kt->cap - 1); kt->tab[j].used; j = (j + 1) & (kt->cap - 1))
		if (key_eq(&kt->tab[j].key, k))
			return &kt->tab[j];
	return NULL;
}

static bool kept_taken(const struct kept_ids *kt, uint32_t id)
{
	return kt->taken && (kt->taken[id / 8] & (1u << (id % 8)));
}

static void kept_free(struct kept_ids *kt)
{
	free(kt->tab);
	free(kt->taken);
	memset(kt, 0, sizeof(*kt));
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
static int map_keys(int fd, size_t key_size, void **out, size_t *n_out)
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
static int resync(struct dataplane *dp)
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
		if (bpf_map_update_elem(dp->fd_services, &k, want, BPF_ANY))
			err = -errno;
	}

	if (!err && !(err = map_keys(dp->fd_services, sizeof(*skeys), (void **)&skeys, &n))) {
		for (size_t i = 0; i < n; i++) {
			struct sluice_service_key k = skeys[i];
			k.side = 0;
			if (!index_get(&dp->index, &k))
				bpf_map_delete_elem(dp->fd_services, &skeys[i]);
		}
	}
	if (!err && !(err = map_keys(dp->fd_endpoints, sizeof(*ekeys), (void **)&ekeys, &n))) {
		for (size_t i = 0; i < n; i++) {
			const struct sluice_endpoint_key *k = &ekeys[i];
			struct svc_state *s = k->service_id < SLUICE_MAX_SERVICE_IDS ? dp->by_id[k->service_id] : NULL;
			if (!s || s->generation != k->generation || k->slot >= s->n_slots)
				bpf_map_delete_elem(dp->fd_endpoints, k);
		}
	}
	if (!err && !(err = map_keys(dp->fd_counters, sizeof(*ckeys), (void **)&ckeys, &n))) {
		for (size_t i = 0; i < n; i++) {
			const struct sluice_counter_key *k = &ckeys[i];
			struct svc_state *s = k->service_id < SLUICE_MAX_SERVICE_IDS ? dp->by_id[k->service_id] : NULL;
			struct sluice_endpoint ep;
			memset(&ep, 0, sizeof(ep));
			ep.addr = k->addr;
			ep.port = k->port;
			ep.family = k->family;
			if (!s || !has_endpoint(s, &ep))
				bpf_map_delete_elem(dp->fd_counters, k);
		}
	}
	/* an existing entry keeps its position: only missing ones are created */
	for (size_t i = 0; i < dp->n_svcs && !err; i++)
		if (bpf_map_update_elem(dp->fd_rr_state, &dp->svcs[i]->id, &zero_rr, BPF_NOEXIST) && errno != EEXIST)
			err = -errno;
	if (!err && !(err = map_keys(dp->fd_rr_state, sizeof(*rkeys), (void **)&rkeys, &n))) {
		for (size_t i = 0; i < n; i++)
			if (rkeys[i] >= SLUICE_MAX_SERVICE_IDS || !dp->by_id[rkeys[i]])
				bpf_map_delete_elem(dp->fd_rr_state, &rkeys[i]);
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

/* An apply switched but not settled: what steps 4-6 and the bookkeeping still need. */
struct pending {
	struct svc_state **next, **old_of, **removed;
	enum change *what;
	size_t n_next, n_removed;
	struct svc_index nix;
	bool same_keys;
	uint64_t slots_new, slots_freed;
};

static int check_service(const struct plan_service *ps)
{
	if (ps->n_vips > 2) {
		log_error("service %s/%s: %zu VIPs, at most one per family", ps->namespace, ps->name, ps->n_vips);
		return -EINVAL;
	}
	if (ps->n_gateway_addrs > PLAN_MAX_GATEWAY_ADDRS) {
		log_error("service %s/%s: %zu gateway addresses, at most %d", ps->namespace, ps->name, ps->n_gateway_addrs,
		       PLAN_MAX_GATEWAY_ADDRS);
		return -EINVAL;
	}
	return 0;
}

/* Steps 4-6 of an apply (readers of the old side finish, the old side is replayed, what only the
 * previous records named goes), then the bookkeeping becomes the new routing. */
static int settle(struct dataplane *dp, uint64_t *drain_ns)
{
	struct pending *p = dp->pending;
	unsigned side_old = (dp->generation + 1) & 1;   /* the side readers left at the switch */
	uint64_t t1;
	int err;

	if (!p)
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
		goto commit;
	}

	/* 5. Replay on the side nobody reads now. */
	for (size_t i = 0; i < p->n_next && !err; i++)
		if (p->what[i] != SAME)
			err = write_record(dp, p->next[i], side_old);
	for (size_t i = 0; i < p->n_removed && !err; i++)
		err = delete_record(dp, p->removed[i], side_old);
	if (err) {
		log_error("equalising the previous side failed: %s; the switch is done, the next apply resynchronises",
		       strerror(-err));
		dp->sides_differ = true;
		goto commit;
	}

	/* 6. Nothing references the previous records' endpoints now, nor removed services' ids. */
	for (size_t i = 0; i < p->n_next; i++) {
		if (p->what[i] != CHANGED)
			continue;
		delete_endpoints(dp, p->old_of[i]);
		delete_counters(dp, p->old_of[i], p->next[i]);
	}
	for (size_t i = 0; i < p->n_removed; i++) {
		delete_endpoints(dp, p->removed[i]);
		delete_counters(dp, p->removed[i], NULL);
		bpf_map_delete_elem(dp->fd_rr_state, &p->removed[i]->id);   /* the id is free from here on */
	}

commit:
	/* The bookkeeping becomes `next`; unchanged services keep their objects. */
	for (size_t i = 0; i < p->n_removed; i++) {
		dp->by_id[p->removed[i]->id] = NULL;
		svc_free(p->removed[i]);
	}
	for (size_t i = 0; i < p->n_next; i++) {
		if (p->what[i] == SAME)
			continue;
		dp->by_id[p->next[i]->id] = p->next[i];
		if (p->same_keys) {
			p->next[i]->pos = i;
			index_replace(&dp->index, p->next[i]);
		}
		svc_free(p->old_of[i]);
	}
	if (!p->same_keys) {
		free(dp->index.tab);
		dp->index = p->nix;
		for (size_t i = 0; i < p->n_next; i++)
			p->next[i]->pos = i;
	}
	free(dp->svcs);
	dp->svcs = p->next;
	dp->n_svcs = p->n_next;
	dp->slots_in_use = dp->slots_in_use + p->slots_new - p->slots_freed;
	free(p->old_of);
	free(p->removed);
	free(p->what);
	free(p);
	return 0;
}

int dataplane_settle(struct dataplane *dp)
{
	return dp ? settle(dp, NULL) : -EINVAL;
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
	uint64_t t0 = now_ns(), t1, slots_new = 0, slots_freed = 0;
	struct svc_state scratch = { 0 };
	struct svc_state **next = NULL, **old_of = NULL, **removed = NULL;
	enum change *what = NULL;
	struct svc_index nix = { 0 };
	size_t n_in = only ? n_only : plan->n_services;
	size_t n_next = 0, cap = 0, n_removed = 0, n_seen = 0, ids_needed = 0, cursor = 0;
	unsigned side_new;
	bool same_keys;
	int err = 0;

	if ((err = settle(dp, NULL)))
		return err;
	if (dp->sides_differ && (err = resync(dp)))
		return err;
	for (size_t i = 0; i < n_in; i++) {
		const struct plan_service *ps = only ? only[i] : &plan->services[i];
		if ((err = check_service(ps)))
			return err;
		cap += svc_n_addrs(ps);
	}
	if (only)
		cap = dp->n_svcs;
	scratch.slots = malloc(SLUICE_MAX_DESTINATIONS * SLUICE_MAX_ENDPOINTS * sizeof(*scratch.slots));
	next = calloc(cap ? cap : 1, sizeof(*next));
	old_of = calloc(cap ? cap : 1, sizeof(*old_of));
	what = calloc(cap ? cap : 1, sizeof(*what));   /* SAME */
	if (!scratch.slots || !next || !old_of || !what) {
		err = -ENOMEM;
		goto out;
	}
	if (only) {
		memcpy(next, dp->svcs, dp->n_svcs * sizeof(*next));
		n_next = n_seen = dp->n_svcs;
	}

	/* 1. Diff, in a scratch record: only added and changed services are copied. */
	dp->stamp++;
	for (size_t i = 0; i < n_in; i++) {
		const struct plan_service *ps = only ? only[i] : &plan->services[i];
		for (size_t j = 0; j < svc_n_addrs(ps); j++) {
			struct svc_state *old;
			uint16_t port;
			size_t at;
			const struct plan_addr *addr = svc_addr(ps, j, &port);
			if ((err = svc_fill(ps, addr, port, &scratch)))
				goto out;
			/* Plans come sorted, so the next service is usually the one after the last match. */
			if (cursor < dp->n_svcs && key_eq(&dp->svcs[cursor]->key, &scratch.key))
				old = dp->svcs[cursor];
			else
				old = index_get(&dp->index, &scratch.key);
			cursor = old ? old->pos + 1 : cursor;
			if (old && old->stamp == dp->stamp) {
				err = -EEXIST;
				goto out;
			}
			if (!old && only) {
				log_error("service %s/%s: not routed now; a weight change only changes routed services",
				       ps->namespace, ps->name);
				err = -ENOENT;
				goto out;
			}
			if (old) {
				old->stamp = dp->stamp;
				n_seen += !only;
			}
			at = only ? old->pos : n_next++;
			if (old && svc_same_routing(old, &scratch)) {
				next[at] = old;
				what[at] = SAME;
				st.services_unchanged += !only;
				continue;
			}
			if (!(next[at] = svc_dup(&scratch))) {
				err = -ENOMEM;
				goto out;
			}
			old_of[at] = old;
			what[at] = old ? CHANGED : ADDED;
			ids_needed += !old;
			slots_new += scratch.n_slots;
			slots_freed += old ? old->n_slots : 0;
		}
	}
	if (n_seen < dp->n_svcs) {
		removed = calloc(dp->n_svcs - n_seen, sizeof(*removed));
		if (!removed) {
			err = -ENOMEM;
			goto out;
		}
		for (size_t i = 0; i < dp->n_svcs; i++)
			if (dp->svcs[i]->stamp != dp->stamp) {
				removed[n_removed++] = dp->svcs[i];
				slots_freed += dp->svcs[i]->n_slots;
			}
	}
	st.services_removed = n_removed;
	if (only)
		for (size_t i = 0; i < n_next; i++)
			st.services_unchanged += what[i] == SAME;
	if (n_removed == 0 && st.services_unchanged == n_next)
		goto done;   /* nothing changed: no switch */
	same_keys = ids_needed == 0 && n_removed == 0;
	if (!same_keys && (err = index_build(&nix, next, n_next)))
		goto out;
	if (ids_needed > SLUICE_MAX_SERVICE_IDS - dp->n_svcs + n_removed) {
		log_error("the plan needs %zu new service ids, %zu are free (limit %d VIP/port entries); hint: split the cluster",
		       ids_needed, SLUICE_MAX_SERVICE_IDS - dp->n_svcs, SLUICE_MAX_SERVICE_IDS);
		err = -ENOSPC;
		goto out;
	}
	if (dp->slots_in_use + slots_new > SLUICE_MAX_ENDPOINT_SLOTS) {
		log_error("the plan needs %llu endpoint slots while %llu are in use (limit %d); hint: apply it in smaller steps",
		       (unsigned long long)slots_new, (unsigned long long)dp->slots_in_use, SLUICE_MAX_ENDPOINT_SLOTS);
		err = -ENOSPC;
		goto out;
	}

	/* 2. The inactive side: endpoints and counters first, then the records that name them. */
	side_new = (dp->generation + 1) & 1;
	for (size_t i = 0; i < n_next; i++) {
		struct svc_state *s = next[i];
		if (what[i] == SAME)
			continue;
		if (what[i] == ADDED) {
			struct sluice_rr_state zero_rr = { 0 };
			if ((err = alloc_id(dp, &s->key, &s->id)))
				goto write_failed;
			dp->by_id[s->id] = s;   /* reserved; released on failure */
			if (bpf_map_update_elem(dp->fd_rr_state, &s->id, &zero_rr, BPF_ANY)) {
				err = -errno;
				goto write_failed;
			}
		} else {
			s->id = old_of[i]->id;
		}
		s->generation = dp->generation + 1;   /* the switch below makes it live */
		if ((err = write_endpoints(dp, s)) || (err = create_counters(dp, s)) ||
		    (err = write_record(dp, s, side_new)))
			goto write_failed;
		st.services_written++;
		st.endpoints_written += s->n_slots;
	}
	for (size_t i = 0; i < n_removed; i++)
		if ((err = delete_record(dp, removed[i], side_new)))
			goto write_failed;

	/* 3. The switch. */
	t1 = now_ns();
	err = set_generation(dp, dp->generation + 1);
	st.flip_ns = now_ns() - t1;
	if (err)
		goto write_failed;
	dp->generation++;

	/* The rest waits for readers of the old side: now, or at dataplane_settle() when deferred. */
	if (!(dp->pending = malloc(sizeof(*dp->pending)))) {
		err = -ENOMEM;   /* switched without bookkeeping: rebuild it from the maps */
		log_error("out of memory after the switch; the data plane resynchronises at the next apply");
		dp->sides_differ = true;
		goto out;
	}
	*dp->pending = (struct pending){ .next = next, .old_of = old_of, .removed = removed, .what = what,
					 .n_next = n_next, .n_removed = n_removed, .nix = nix,
					 .same_keys = same_keys, .slots_new = slots_new, .slots_freed = slots_freed };
	next = old_of = removed = NULL;
	what = NULL;
	nix.tab = NULL;
	if (!defer)
		settle(dp, &st.drain_ns);
	goto done;

write_failed:
	log_error("writing the routing maps failed: %s; nothing was switched, the previous routing stays; hint: %s",
	       strerror(-err), err == -E2BIG || err == -ENOMEM || err == -ENOSPC
				   ? "a map is full or memory is short, apply fewer services"
				   : "rerun with --verbose");
	for (size_t i = 0; i < n_next; i++)
		if (what[i] == ADDED && dp->by_id[next[i]->id] == next[i])
			dp->by_id[next[i]->id] = NULL;
	dp->sides_differ = true;
	resync(dp);   /* the inactive side back to the bookkeeping; new endpoints, counters and rr state deleted */
	goto out;

done:
	st.total_ns = now_ns() - t0;
	if (stats)
		*stats = st;
	if (generation)
		*generation = dp->generation;
out:
	if (err == -EEXIST)
		log_error("the plan routes one address (VIP or gateway address), port and protocol twice; "
		       "hint: the compiler should have merged them");
	for (size_t i = 0; next && i < n_next; i++)
		if (what[i] != SAME)
			svc_free(next[i]);
	free(next);
	free(nix.tab);
	free(scratch.slots);
	free(what);
	free(old_of);
	free(removed);
	return err == -EEXIST ? -EINVAL : err;
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

/* ---- install, adopt, uninstall ---- */

static bool path_exists(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0;
}

static int join(char *buf, const char *dir, const char *a, const char *b)
{
	int n = b ? snprintf(buf, PATH_MAX, "%s/%s/%s", dir, a, b) : snprintf(buf, PATH_MAX, "%s/%s", dir, a);

	return n < 0 || n >= PATH_MAX ? -ENAMETOOLONG : 0;
}

/* The directory must be on a bpf filesystem; mounts one at /sys/fs/bpf if nothing is mounted there. */
static int prepare_bpffs(const char *dir)
{
	char up[PATH_MAX], path[PATH_MAX];
	struct statfs fs;
	char *slash;

	if (!dir || dir[0] != '/' || strlen(dir) >= sizeof(up)) {
		log_error("bpffs directory '%s' is not an absolute path; hint: e.g. /sys/fs/bpf/sluice", dir ? dir : "");
		return -EINVAL;
	}
	/* The nearest existing ancestor decides which filesystem the pins land on. */
	strcpy(up, dir);
	while (statfs(up, &fs) != 0) {
		slash = strrchr(up, '/');
		if (!slash || slash == up) {
			strcpy(up, "/");
			if (statfs(up, &fs) != 0)
				return -errno;
			break;
		}
		*slash = '\0';
	}
	if (fs.f_type != BPF_FS_MAGIC) {
		if (strcmp(up, DEFAULT_BPFFS) != 0 || mount("bpf", DEFAULT_BPFFS, "bpf", 0, "mode=0700")) {
			log_error("%s is not on a bpf filesystem (nearest existing directory %s); hint: mount -t bpf bpf %s",
			       dir, up, DEFAULT_BPFFS);
			return -ENOTSUP;
		}
	}
	/* mkdir -p of the directories between the existing ancestor and dir. */
	strcpy(path, dir);
	for (char *p = strchr(path + strlen(up), '/'); p; p = strchr(p + 1, '/')) {
		if (p == path)
			continue;
		*p = '\0';
		if (mkdir(path, 0700) && errno != EEXIST) {
			int err = -errno;
			log_error("cannot create %s: %s", path, strerror(errno));
			return err;
		}
		*p = '/';
	}
	const char *subs[] = { "", SLUICE_PIN_MAPS, SLUICE_PIN_PROGS, SLUICE_PIN_LINKS };
	for (size_t i = 0; i < sizeof(subs) / sizeof(subs[0]); i++) {
		if (i == 0)
			snprintf(path, sizeof(path), "%s", dir);
		else if (join(path, dir, subs[i], NULL))
			return -ENAMETOOLONG;
		if (mkdir(path, 0700) && errno != EEXIST) {
			int err = -errno;
			log_error("cannot create %s: %s; hint: is %s on a bpf filesystem?", path, strerror(errno), dir);
			return err;
		}
	}
	return 0;
}

/* The pid holding an flock on fd's file, from /proc/locks; 0 if unknown. */
static int lock_owner(int fd)
{
	struct stat st;
	char line[256];
	int pid = 0;
	FILE *f;

	if (fstat(fd, &st) || !(f = fopen("/proc/locks", "re")))
		return 0;
	while (!pid && fgets(line, sizeof(line), f)) {
		unsigned maj, min;
		unsigned long ino;
		int p;
		if (sscanf(line, "%*d: FLOCK %*s WRITE %d %x:%x:%lu", &p, &maj, &min, &ino) == 4 &&
		    ino == st.st_ino && maj == major(st.st_dev) && min == minor(st.st_dev))
			pid = p;
	}
	fclose(f);
	return pid;
}

/*
 * One writer per pin directory, as xdp-tools locks its bpffs directory: an exclusive flock held
 * for the writer's life and released by the kernel when it exits, even by SIGKILL.
 * -EBUSY, having said who holds it, when another process does.
 */
static int lock_pins(const char *dir, const char *doing, int *fd_out)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC), err;

	if (fd < 0) {
		err = -errno;
		log_error("cannot open %s: %s", dir, strerror(errno));
		return err;
	}
	if (flock(fd, LOCK_EX | LOCK_NB) == 0) {
		*fd_out = fd;
		return 0;
	}
	err = errno == EWOULDBLOCK ? -EBUSY : -errno;
	if (err == -EBUSY) {
		int pid = lock_owner(fd);
		char who[32] = "another process", stop[48] = "";
		if (pid) {
			snprintf(who, sizeof(who), "process %d", pid);
			snprintf(stop, sizeof(stop), " (kill -TERM %d)", pid);
		}
		log_error("%s: %s serves the data plane pinned under %s, and there is one writer per data plane; "
		       "hint: stop it first%s, or give this sluiced its own --bpffs", doing, who, dir, stop);
	} else {
		log_error("cannot lock %s: %s", dir, strerror(-err));
	}
	close(fd);
	return err;
}

/* Records every pin under the directory with a reference of its own, so that a pin removed later can be put back. */
static void pins_record(struct dataplane *dp)
{
	const char *subs[] = { SLUICE_PIN_MAPS, SLUICE_PIN_PROGS, SLUICE_PIN_LINKS };
	char dir[PATH_MAX], path[PATH_MAX];

	for (size_t i = 0; i < dp->n_pins; i++) {
		close(dp->pins[i].fd);
		free(dp->pins[i].path);
	}
	dp->n_pins = 0;
	for (size_t i = 0; i < sizeof(subs) / sizeof(subs[0]); i++) {
		struct dirent *de;
		DIR *d;
		if (join(dir, dp->dir, subs[i], NULL) || !(d = opendir(dir)))
			continue;
		while ((de = readdir(d))) {
			struct stat st;
			struct pin *p;
			int fd;
			if (de->d_name[0] == '.' || join(path, dir, de->d_name, NULL) || stat(path, &st) ||
			    (fd = bpf_obj_get(path)) < 0)
				continue;
			if (!(p = realloc(dp->pins, (dp->n_pins + 1) * sizeof(*p))) || !(path[0] && (p[dp->n_pins].path = strdup(path)))) {
				if (p)
					dp->pins = p;
				close(fd);
				break;
			}
			dp->pins = p;
			p[dp->n_pins].fd = fd;
			p[dp->n_pins++].ino = st.st_ino;
		}
		closedir(d);
	}
}

int dataplane_check_pins(struct dataplane *dp, char *msg, size_t len)
{
	char path[PATH_MAX];
	size_t missing = 0, used = 0;
	int err = 0;

	msg[0] = '\0';
	if (!dp || dp->upgrading || !dp->n_pins)
		return 0;
	for (size_t i = 0; i < dp->n_pins; i++) {
		struct pin *p = &dp->pins[i];
		struct stat st;
		if (stat(p->path, &st) == 0) {
			if (st.st_ino != p->ino && !err) {
				err = -EEXIST;
				snprintf(msg, len, "%s was replaced by an object sluiced did not pin: another writer?", p->path);
			}
			continue;
		}
		/* the directory itself may be gone: made again, and locked again, before pinning into it */
		if (!missing++ && stat(dp->dir, &st)) {
			int fd;
			if ((err = prepare_bpffs(dp->dir)) || (err = lock_pins(dp->dir, "cannot pin again", &fd))) {
				snprintf(msg, len, "the pins under %s were removed and cannot be made again: %s; the data plane "
					 "runs only as long as this sluiced does", dp->dir, strerror(-err));
				return err;
			}
			close(dp->lock_fd);
			dp->lock_fd = fd;
		}
		snprintf(path, sizeof(path), "%s", p->path);
		char *slash = strrchr(path, '/');
		if (slash) {
			*slash = '\0';
			mkdir(path, 0700);
		}
		if (bpf_obj_pin(p->fd, p->path)) {
			err = -errno;
			snprintf(msg, len, "%s was removed and cannot be pinned again: %s; the data plane runs only as long "
				 "as this sluiced does", p->path, strerror(errno));
			return err;
		}
		if (stat(p->path, &st) == 0)
			p->ino = st.st_ino;
		int n = snprintf(msg + used, len - used, "%s%s", used ? ", " : "", p->path + strlen(dp->dir) + 1);
		used = n > 0 && used + (size_t)n < len ? used + (size_t)n : used;
	}
	return err ? err : (int)missing;
}

/* Opens the cgroup v2 directory; refuses the hierarchy's root unless allowed. */
static int open_cgroup(const struct dataplane_opts *o, int *fd_out, uint64_t *id_out)
{
	const char *cg = o->cgroup_path;
	struct statfs fs;
	struct stat st, mst;
	char line[PATH_MAX + 256], mnt[PATH_MAX], type[64], first_mnt[PATH_MAX] = "";
	bool root = false;
	FILE *f;
	int fd;

	if (!cg || !*cg) {
		log_error("no cgroup given; hint: pass the cgroup v2 directory whose processes sluice should serve");
		return -EINVAL;
	}
	fd = open(cg, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0) {
		int err = -errno;
		log_error("cannot open cgroup %s: %s; hint: create it under the cgroup v2 mount (see /proc/mounts)",
		       cg, strerror(errno));
		return err;
	}
	f = fopen("/proc/mounts", "re");
	while (f && fgets(line, sizeof(line), f)) {
		if (sscanf(line, "%*s %4095s %63s", mnt, type) != 2 || strcmp(type, "cgroup2") != 0)
			continue;
		if (!first_mnt[0])
			snprintf(first_mnt, sizeof(first_mnt), "%s", mnt);
		if (stat(mnt, &mst) == 0 && fstat(fd, &st) == 0 && st.st_dev == mst.st_dev && st.st_ino == mst.st_ino)
			root = true;
	}
	if (f)
		fclose(f);
	if (fstatfs(fd, &fs) || fs.f_type != CGROUP2_SUPER_MAGIC || fstat(fd, &st)) {
		log_error("%s is not a cgroup v2 directory; hint: cgroup v2 is mounted at %s", cg,
		       first_mnt[0] ? first_mnt : "(nowhere: mount -t cgroup2 none /sys/fs/cgroup)");
		close(fd);
		return -ENOTDIR;
	}
	if (root && !o->allow_cgroup_root) {
		log_error("refusing to attach to %s, the root of the cgroup v2 hierarchy: every process on the machine "
		       "would be redirected; hint: pass a child cgroup, or allow the root explicitly", cg);
		close(fd);
		return -EPERM;
	}
	*fd_out = fd;
	*id_out = st.st_ino;   /* on cgroup v2 the inode number is the cgroup id */
	return 0;
}

/* Attaches each program with a pinned link, or swaps the program inside an existing pinned link. */
static int attach_programs(struct dataplane *dp, const char *dir, int cg_fd, uint64_t cg_id)
{
	struct bpf_program *prog;
	char path[PATH_MAX];
	int err;

	bpf_object__for_each_program(prog, dp->skel->obj) {
		const char *name = bpf_program__name(prog);
		struct bpf_link *link;

		if (dp->n_links == sizeof(dp->links) / sizeof(dp->links[0]))
			return -E2BIG;
		if ((err = join(path, dir, SLUICE_PIN_LINKS, name)))
			return err;
		if (path_exists(path)) {
			struct bpf_link_info info;
			__u32 len = sizeof(info);

			link = bpf_link__open(path);
			if (!link) {
				err = -errno;
				log_error("cannot open pinned link %s: %s; hint: sluiced --uninstall, then start again", path,
				       strerror(-err));
				return err;
			}
			dp->links[dp->n_links++] = link;
			memset(&info, 0, sizeof(info));
			if (bpf_obj_get_info_by_fd(bpf_link__fd(link), &info, &len) == 0 &&
			    info.type == BPF_LINK_TYPE_CGROUP && info.cgroup.cgroup_id == 0) {
				/* its cgroup was removed (and perhaps made again): the link serves nothing now */
				log_info("the pinned link %s served a cgroup that no longer exists (removed, perhaps made "
				      "again): attaching anew to the cgroup given", path);
				bpf_link__unpin(link);
				bpf_link__destroy(link);
				dp->n_links--;
				unlink(path);
				goto attach;
			}
			if (bpf_obj_get_info_by_fd(bpf_link__fd(link), &info, &len) == 0 &&
			    info.type == BPF_LINK_TYPE_CGROUP && info.cgroup.cgroup_id != cg_id) {
				log_error("the data plane under %s serves cgroup id %llu, not the requested one (id %llu); "
				       "hint: use the same cgroup, or sluiced --uninstall first", dir,
				       (unsigned long long)info.cgroup.cgroup_id, (unsigned long long)cg_id);
				return -EEXIST;
			}
			/* Atomic: the hook never runs without a program. */
			if ((err = bpf_link__update_program(link, prog))) {
				log_error("cannot swap the new %s program into %s: %s", name, path, strerror(-err));
				return err;
			}
		} else {
attach:
			link = bpf_program__attach_cgroup(prog, cg_fd);
			if (!link) {
				err = -errno;
				log_error("cannot attach %s to the cgroup: %s; hint: the kernel needs cgroup BPF links (5.7+)",
				       name, strerror(-err));
				return err;
			}
			dp->links[dp->n_links++] = link;
			if ((err = bpf_link__pin(link, path))) {
				log_error("cannot pin %s: %s", path, strerror(-err));
				return err;
			}
		}
		if ((err = join(path, dir, SLUICE_PIN_PROGS, name)))
			return err;
		unlink(path);
		if ((err = bpf_program__pin(prog, path))) {
			log_error("cannot pin %s: %s", path, strerror(-err));
			return err;
		}
	}
	return 0;
}

/* ---- TC mode ---- */


/* The index of an Ethernet-like interface of this network namespace. */
static int tc_ifindex(const char *ifname, int *ifindex)
{
	struct ifreq ifr;
	unsigned int idx;
	int sk, err = 0;

	if (!ifname || !*ifname || strlen(ifname) >= IFNAMSIZ || strpbrk(ifname, "/@ ")) {
		log_error("'%s' is not an interface name; hint: --tc IFACE[,IFACE...], e.g. --tc eth0", ifname ? ifname : "");
		return -EINVAL;
	}
	idx = if_nametoindex(ifname);
	if (!idx) {
		log_error("no interface %s in sluiced's network namespace; hint: 'ip link' lists them", ifname);
		return -ENODEV;
	}
	memset(&ifr, 0, sizeof(ifr));
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", ifname);
	sk = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (sk < 0 || ioctl(sk, SIOCGIFHWADDR, &ifr))
		err = -errno;
	if (sk >= 0)
		close(sk);
	if (err) {
		log_error("cannot read the link type of %s: %s", ifname, strerror(-err));
		return err;
	}
	if (ifr.ifr_hwaddr.sa_family != ARPHRD_ETHER) {
		log_error("interface %s is not Ethernet-like (link type %u): the TC programs read an Ethernet header; "
		       "hint: attach to the node's uplink or to the pods' veths", ifname, ifr.ifr_hwaddr.sa_family);
		return -EOPNOTSUPP;
	}
	*ifindex = (int)idx;
	return 0;
}

static bool tc_iface_wanted(const struct dataplane_opts *o, const char *pin_name)
{
	const char *at = strchr(pin_name, '@');

	for (size_t i = 0; at && i < o->n_tc_ifaces; i++)
		if (!strcmp(at + 1, o->tc_ifaces[i]))
			return true;
	return false;
}

/* Detaches and unpins the TC links of interfaces not wanted (all of them when keep_wanted is false). */
static void tc_prune_links(const struct dataplane_opts *o, bool keep_wanted)
{
	char dir[PATH_MAX], path[PATH_MAX];
	struct dirent *de;
	DIR *d;

	if (join(dir, o->bpffs_dir, SLUICE_PIN_LINKS, NULL) || !(d = opendir(dir)))
		return;
	while ((de = readdir(d))) {
		if (strncmp(de->d_name, SLUICE_PIN_TC_PREFIX, strlen(SLUICE_PIN_TC_PREFIX)) ||
		    (keep_wanted && tc_iface_wanted(o, de->d_name)) || join(path, dir, de->d_name, NULL))
			continue;
		int fd = bpf_obj_get(path);
		if (fd >= 0) {
			bpf_link_detach(fd);
			close(fd);
		}
		unlink(path);
		log_info("tc: detached %s: the interface is not in --tc", de->d_name);
	}
	closedir(d);
}

/* TC mode off: its links, programs and own maps (the flow table) go; the shared maps stay. */
static void tc_remove(struct dataplane *dp, const struct dataplane_opts *o)
{
	char path[PATH_MAX];
	struct sluice_tc_bpf *tc;
	struct bpf_program *prog;
	struct bpf_map *map;

	tc_prune_links(o, false);
	tc = sluice_tc_bpf__open();
	if (!tc)
		return;
	bpf_object__for_each_program(prog, tc->obj)
		if (!join(path, o->bpffs_dir, SLUICE_PIN_PROGS, bpf_program__name(prog)))
			unlink(path);
	bpf_object__for_each_map(map, tc->obj)
		if (!bpf_map__is_internal(map) && !bpf_object__find_map_by_name(dp->skel->obj, bpf_map__name(map)) &&
		    !join(path, o->bpffs_dir, SLUICE_PIN_MAPS, bpf_map__name(map)))
			unlink(path);
	sluice_tc_bpf__destroy(tc);
}

/* Attaches prog to one side of an interface with a pinned tcx link, or swaps it into the link already there. */
static int tc_attach_one(struct dataplane *dp, const char *dir, const char *ifname, int ifindex,
			 struct bpf_program *prog, int attach_type)
{
	char name[128], path[PATH_MAX];
	int fd, err;

	snprintf(name, sizeof(name), "%s@%s", bpf_program__name(prog), ifname);
	if ((err = join(path, dir, SLUICE_PIN_LINKS, name)))
		return err;
	fd = bpf_obj_get(path);
	if (fd >= 0) {
		struct bpf_link_info info;
		__u32 len = sizeof(info);

		memset(&info, 0, sizeof(info));
		/* info.xdp.ifindex: tcx's ifindex sits at the same place, and the 6.1 headers have no tcx member */
		if (bpf_obj_get_info_by_fd(fd, &info, &len) == 0 && info.type == LINK_TYPE_TCX &&
		    (int)info.xdp.ifindex == ifindex) {
			/* Atomic: the hook never runs without a program. */
			if (bpf_link_update(fd, bpf_program__fd(prog), NULL)) {
				err = -errno;
				log_error("cannot swap the new %s program into %s: %s", bpf_program__name(prog), path,
				       strerror(-err));
				close(fd);
				return err;
			}
			dp->tc_links[dp->n_tc_links++] = fd;
			return 0;
		}
		/* The interface was deleted (its link is defunct) or recreated under the same name. */
		bpf_link_detach(fd);
		close(fd);
		unlink(path);
	}
	fd = bpf_link_create(bpf_program__fd(prog), ifindex, attach_type, NULL);
	if (fd < 0) {
		err = -errno;
		log_error("cannot attach %s to %s: %s; hint: TC mode needs tcx links (Linux 6.6+)", bpf_program__name(prog),
		       ifname, strerror(-err));
		return err;
	}
	dp->tc_links[dp->n_tc_links++] = fd;
	if (bpf_obj_pin(fd, path)) {
		err = -errno;
		log_error("cannot pin %s: %s", path, strerror(-err));
		return err;
	}
	return 0;
}

/* The TC options, checked before anything is created: interfaces exist, are Ethernet-like, once each. */
static int tc_check(const struct dataplane_opts *o, int ifindex[DATAPLANE_MAX_TC_IFACES])
{
	int err;

	if (o->n_tc_ifaces > DATAPLANE_MAX_TC_IFACES) {
		log_error("%zu interfaces for TC mode, at most %d", o->n_tc_ifaces, DATAPLANE_MAX_TC_IFACES);
		return -E2BIG;
	}
	if (o->n_tc_ifaces && !o->tc_ifaces)
		return -EINVAL;
	for (size_t i = 0; i < o->n_tc_ifaces; i++) {
		if ((err = tc_ifindex(o->tc_ifaces[i], &ifindex[i])))
			return err;
		for (size_t j = 0; j < i; j++)
			if (ifindex[j] == ifindex[i]) {
				log_error("interface %s is given twice to --tc", o->tc_ifaces[i]);
				return -EINVAL;
			}
	}
	if (o->tc_flows > (1u << 26)) {
		log_error("a flow table of %u flows is too large (at most %u); hint: the default is %d", o->tc_flows,
		       1u << 26, SLUICE_TC_FLOWS_DEFAULT);
		return -EINVAL;
	}
	return 0;
}

/*
 * Loads the TC object over the shared maps' pins, attaches it to the wanted
 * interfaces and detaches it from the others; with no interface (and no
 * tc_load) removes TC mode. Called after the socket object pinned its maps.
 */
static int tc_open(struct dataplane *dp, const struct dataplane_opts *o)
{
	int ifindex[DATAPLANE_MAX_TC_IFACES];
	char path[PATH_MAX];
	struct bpf_program *prog;
	struct bpf_map *map;
	uint64_t entries;
	bool adopt = false;
	int err;

	if (!o->n_tc_ifaces && !o->tc_load) {
		tc_remove(dp, o);
		return 0;
	}
	if ((err = tc_check(o, ifindex)))
		return err;
	entries = 2ull * (o->tc_flows ? o->tc_flows : SLUICE_TC_FLOWS_DEFAULT);
	dp->tc_skel = sluice_tc_bpf__open();
	if (!dp->tc_skel) {
		err = -errno;
		log_error("cannot open the TC BPF object: %s", strerror(-err));
		return err;
	}
	bpf_object__for_each_map(map, dp->tc_skel->obj) {
		if (bpf_map__is_internal(map))
			continue;
		if ((err = join(path, o->bpffs_dir, SLUICE_PIN_MAPS, bpf_map__name(map))) ||
		    (err = bpf_map__set_pin_path(map, path)))
			return err;
	}
	/* A pinned flow table keeps its size: replacing it would drop every flow in progress. */
	if (!join(path, o->bpffs_dir, SLUICE_PIN_MAPS, bpf_map__name(dp->tc_skel->maps.tc_flows))) {
		int fd = bpf_obj_get(path);
		adopt = fd >= 0;
		if (fd >= 0) {
			struct bpf_map_info info;
			__u32 len = sizeof(info);
			memset(&info, 0, sizeof(info));
			if (bpf_obj_get_info_by_fd(fd, &info, &len) == 0 && info.max_entries != entries) {
				if (o->tc_flows)
					log_info("tc: the pinned flow table holds %u flows, kept; --tc-flows %u takes effect "
						"after sluiced --uninstall", info.max_entries / 2, o->tc_flows);
				entries = info.max_entries;
			}
			close(fd);
		}
	}
	if ((err = bpf_map__set_max_entries(dp->tc_skel->maps.tc_flows, (__u32)entries)))
		return err;
	if ((err = sluice_tc_bpf__load(dp->tc_skel))) {
		if (adopt)
			log_error("the TC maps pinned under %s do not fit this build of the data plane: %s; "
			       "hint: sluiced --uninstall, then start again (flows in progress are reset)", o->bpffs_dir,
			       strerror(-err));
		else
			log_error("loading the TC data plane failed: %s; hint: rerun with --verbose for the verifier log",
			       strerror(-err));
		return err;
	}
	bpf_object__for_each_program(prog, dp->tc_skel->obj) {
		if ((err = join(path, o->bpffs_dir, SLUICE_PIN_PROGS, bpf_program__name(prog))))
			return err;
		unlink(path);
		if ((err = bpf_program__pin(prog, path))) {
			log_error("cannot pin %s: %s", path, strerror(-err));
			return err;
		}
	}
	for (size_t i = 0; i < o->n_tc_ifaces; i++) {
		if (dp->upgrading) {   /* attached with the socket programs, after the first apply */
			if (!(dp->tc_names[dp->n_tc_pending] = strdup(o->tc_ifaces[i])))
				return -ENOMEM;
			dp->tc_ifindex[dp->n_tc_pending++] = ifindex[i];
			continue;
		}
		if ((err = tc_attach_one(dp, o->bpffs_dir, o->tc_ifaces[i], ifindex[i],
					 dp->tc_skel->progs.sluice_tc_ingress, TCX_INGRESS)) ||
		    (err = tc_attach_one(dp, o->bpffs_dir, o->tc_ifaces[i], ifindex[i],
					 dp->tc_skel->progs.sluice_tc_egress, TCX_EGRESS)))
			return err;
	}
	tc_prune_links(o, true);
	return 0;
}

/* Rebuilds the bookkeeping from the maps alone: the active side is the truth. */
static int rebuild(struct dataplane *dp)
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
	for (size_t i = 0; i < n; i++) {
		struct svc_state *s;
		uint32_t prev = 0;

		if (bpf_map_lookup_elem(dp->fd_services, &keys[i], r))
			continue;
		if (keys[i].side != (dp->generation & 1))
			continue;
		if (r->id >= SLUICE_MAX_SERVICE_IDS || dp->by_id[r->id] ||
		    r->n_destinations == 0 || r->n_destinations > SLUICE_MAX_DESTINATIONS) {
			err = -EUCLEAN;
			goto out;
		}
		s = calloc(1, sizeof(*s));
		if (!s) {
			err = -ENOMEM;
			goto out;
		}
		s->pos = dp->n_svcs;
		dp->svcs[dp->n_svcs++] = s;
		s->key = keys[i];
		s->key.side = 0;
		s->id = r->id;
		s->generation = r->generation;
		s->lb = r->lb;
		s->n_destinations = r->n_destinations;
		for (size_t d = 0; d < r->n_destinations; d++) {
			s->configured[d] = r->destinations[d].weight;
			s->weights[d] = r->destinations[d].cum_weight - prev;
			prev = r->destinations[d].cum_weight;
			s->n_endpoints[d] = r->destinations[d].n_endpoints;
			s->tcp[d] = r->destinations[d].tcp;
			s->n_slots += r->destinations[d].n_endpoints;
		}
		dp->slots_in_use += s->n_slots;
		dp->by_id[s->id] = s;
		s->slots = calloc(s->n_slots ? s->n_slots : 1, sizeof(*s->slots));
		if (!s->slots) {
			err = -ENOMEM;
			goto out;
		}
		for (uint32_t slot = 0; slot < s->n_slots; slot++) {
			struct sluice_endpoint_key k;
			memset(&k, 0, sizeof(k));
			k.service_id = s->id;
			k.slot = slot;
			k.generation = s->generation;
			if (bpf_map_lookup_elem(dp->fd_endpoints, &k, &s->slots[slot])) {
				err = -EUCLEAN;
				goto out;
			}
		}
	}
	if ((err = index_build(&dp->index, dp->svcs, dp->n_svcs)))
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

/*
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
#define SLUICE_PIN_MAPS_OLD "maps_old"   /* bpffs refuses names with a dot */

static int remove_pins(const char *dir, const char *sub, bool links);
static int uninstall_pins(const char *dir);

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
		if ((err = join(a, dir, from, bpf_map__name(map))) || (err = join(b, dir, to, bpf_map__name(map))))
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

	if (join(path, dir, SLUICE_PIN_MAPS_OLD, "services") || (fd = bpf_obj_get(path)) < 0)
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

static int upgrade_begin(struct dataplane *dp, const char *dir, uint64_t *generation)
{
	char path[PATH_MAX];
	struct bpf_map *map;
	bool changed = false;
	int err;

	/* An upgrade stopped before its swap: the programs in the hooks still use the maps moved aside. */
	if (!join(path, dir, SLUICE_PIN_MAPS_OLD, "active") && path_exists(path)) {
		*generation = pinned_generation(path);
		bpf_object__for_each_map(map, dp->skel->obj)
			if (!bpf_map__is_internal(map) && !join(path, dir, SLUICE_PIN_MAPS, bpf_map__name(map)))
				unlink(path);   /* the unfinished new maps: no hook reads them */
		log_info("tc: resuming an upgrade that stopped before its switch");
		read_kept_ids(dp, dir);
		dp->upgrading = true;
		return 0;
	}
	bpf_object__for_each_map(map, dp->skel->obj) {
		if (bpf_map__is_internal(map))
			continue;
		if ((err = join(path, dir, SLUICE_PIN_MAPS, bpf_map__name(map))))
			return err;
		changed = changed || pin_mismatch(path, map);
	}
	if (!changed)
		return 0;
	/* the generation carries on, so that status and logs keep counting up */
	*generation = join(path, dir, SLUICE_PIN_MAPS, "active") ? 0 : pinned_generation(path);
	if ((err = join(path, dir, SLUICE_PIN_MAPS_OLD, NULL)))
		return err;
	if (mkdir(path, 0700) && errno != EEXIST)
		return -errno;
	if ((err = move_map_pins(dp, dir, SLUICE_PIN_MAPS, SLUICE_PIN_MAPS_OLD))) {
		move_map_pins(dp, dir, SLUICE_PIN_MAPS_OLD, SLUICE_PIN_MAPS);
		log_error("cannot move the previous maps aside under %s: %s", path, strerror(-err));
		return err;
	}
	log_info("tc: the pinned maps do not fit this build: upgrading; the running programs keep the previous "
		"maps (%s) until the saved plan is applied to new ones", path);
	read_kept_ids(dp, dir);
	dp->upgrading = true;
	return 0;
}

/* A failed upgrade puts the previous maps back: the running programs never left them. */
static void upgrade_abort(struct dataplane *dp, const char *dir)
{
	char path[PATH_MAX];
	struct bpf_map *map;

	bpf_object__for_each_map(map, dp->skel->obj)
		if (!bpf_map__is_internal(map) && !join(path, dir, SLUICE_PIN_MAPS, bpf_map__name(map)))
			unlink(path);
	move_map_pins(dp, dir, SLUICE_PIN_MAPS_OLD, SLUICE_PIN_MAPS);
	if (!join(path, dir, SLUICE_PIN_MAPS_OLD, NULL))
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
		if ((err = tc_attach_one(dp, dp->dir, dp->tc_names[i], dp->tc_ifindex[i],
					 dp->tc_skel->progs.sluice_tc_ingress, TCX_INGRESS)) ||
		    (err = tc_attach_one(dp, dp->dir, dp->tc_names[i], dp->tc_ifindex[i],
					 dp->tc_skel->progs.sluice_tc_egress, TCX_EGRESS)))
			return err;
	/* the previous programs are gone from the hooks: their maps go with the last reference */
	remove_pins(dp->dir, SLUICE_PIN_MAPS_OLD, false);
	kept_free(&dp->kept);
	dp->upgrading = false;
	close(dp->upgrade_cg_fd);
	dp->upgrade_cg_fd = -1;
	pins_record(dp);
	log_info("tc: upgraded: the new programs serve from the new maps");
	return 0;
}

int dataplane_open(const struct dataplane_opts *o, struct dataplane **out)
{
	struct dataplane *dp = NULL;
	struct bpf_map *map;
	char path[PATH_MAX];
	bool adopt = false;
	uint64_t cg_id = 0;
	int cg_fd = -1, lock_fd = -1, err;

	if (!o || !out)
		return -EINVAL;
	*out = NULL;
	libbpf_set_print(o->verbose ? libbpf_verbose : libbpf_quiet);
	int tc_ifindexes[DATAPLANE_MAX_TC_IFACES];
	if ((err = tc_check(o, tc_ifindexes)) || (err = open_cgroup(o, &cg_fd, &cg_id)))
		return err;
	if ((err = prepare_bpffs(o->bpffs_dir)) || (err = lock_pins(o->bpffs_dir, "cannot start", &lock_fd))) {
		close(cg_fd);
		return err;   /* nothing of ours to undo: never the pins of the writer holding the lock */
	}
	if ((err = join(path, o->bpffs_dir, SLUICE_PIN_MAPS, "active")))
		goto cleanup;
	adopt = path_exists(path);

	dp = calloc(1, sizeof(*dp));
	if (!dp || !(dp->by_id = calloc(SLUICE_MAX_SERVICE_IDS, sizeof(*dp->by_id))) ||
	    !(dp->dir = strdup(o->bpffs_dir))) {
		err = -ENOMEM;
		goto cleanup;
	}
	dp->lock_fd = lock_fd;
	lock_fd = -1;
	dp->fd_barrier_inner = -1;
	dp->upgrade_cg_fd = -1;
	dp->ncpus = libbpf_num_possible_cpus();
	if (dp->ncpus <= 0) {
		err = dp->ncpus ? dp->ncpus : -EINVAL;
		goto cleanup;
	}
	dp->skel = sluice_bpf__open();
	if (!dp->skel) {
		err = -errno;
		log_error("cannot open the BPF object: %s", strerror(-err));
		goto cleanup;
	}
	uint64_t upgrade_gen = 0;
	if (adopt && (err = upgrade_begin(dp, o->bpffs_dir, &upgrade_gen)))
		goto cleanup;
	/* Pinned maps are reused (adopt); missing ones are created and pinned by the load. */
	bpf_object__for_each_map(map, dp->skel->obj) {
		if (bpf_map__is_internal(map))
			continue;
		if ((err = join(path, o->bpffs_dir, SLUICE_PIN_MAPS, bpf_map__name(map))) ||
		    (err = bpf_map__set_pin_path(map, path)))
			goto cleanup;
	}
	if ((err = sluice_bpf__load(dp->skel))) {
		if (adopt)
			log_error("the maps pinned under %s do not fit this build of the data plane: %s; "
			       "hint: sluiced --uninstall, then start again (counters restart)", o->bpffs_dir, strerror(-err));
		else
			log_error("loading the BPF data plane failed: %s; hint: rerun with --verbose for the verifier log",
			       strerror(-err));
		goto cleanup;
	}
	dp->fd_active = bpf_map__fd(dp->skel->maps.active);
	dp->fd_services = bpf_map__fd(dp->skel->maps.services);
	dp->fd_endpoints = bpf_map__fd(dp->skel->maps.endpoints);
	dp->fd_counters = bpf_map__fd(dp->skel->maps.counters);
	dp->fd_rr_state = bpf_map__fd(dp->skel->maps.rr_state);
	dp->fd_barrier = bpf_map__fd(dp->skel->maps.rcu_barrier);
	dp->fd_barrier_inner = bpf_map_create(BPF_MAP_TYPE_ARRAY, "sluice_rcu_in", sizeof(__u32), sizeof(__u32), 1, NULL);
	if (dp->fd_barrier_inner < 0) {
		err = -errno;
		log_error("cannot create the grace-period map: %s", strerror(-err));
		goto cleanup;
	}
	if (dp->upgrading) {
		/* fresh maps: nothing to rebuild; the programs are swapped in after the first apply */
		dp->upgrade_cg_fd = cg_fd;
		dp->upgrade_cg_id = cg_id;
		cg_fd = -1;
		if ((err = set_generation(dp, upgrade_gen)) || (err = tc_open(dp, o)))
			goto cleanup;
		dp->generation = upgrade_gen;
	} else {
		if ((err = attach_programs(dp, o->bpffs_dir, cg_fd, cg_id)) || (err = tc_open(dp, o)))
			goto cleanup;
		if (adopt && (err = rebuild(dp)))
			goto cleanup;
		pins_record(dp);
	}
	*out = dp;
	dp = NULL;
cleanup:
	if (cg_fd >= 0)
		close(cg_fd);
	if (err && dp && dp->upgrading)
		upgrade_abort(dp, o->bpffs_dir);
	if (err && !adopt && err != -EPERM && err != -EINVAL)
		uninstall_pins(o->bpffs_dir);   /* a first install that failed half-way leaves nothing behind */
	dataplane_close(dp);
	if (lock_fd >= 0)
		close(lock_fd);
	return err;
}

uint64_t dataplane_generation(struct dataplane *dp)
{
	return dp ? dp->generation : 0;
}

size_t dataplane_n_records(struct dataplane *dp)
{
	return dp ? dp->n_svcs : 0;
}

int dataplane_endpoint_stats(struct dataplane *dp, const struct plan_service *svc, const struct plan_endpoint *ep,
			     struct sluice_endpoint_stats *out)
{
	struct sluice_service_key k;
	struct sluice_counter_key ck;
	struct sluice_endpoint e;
	struct sluice_endpoint_stats *v;
	int err = -ENOENT;

	if (!dp || !svc || !ep || !out)
		return -EINVAL;
	if (svc->n_vips > 2 || svc->n_gateway_addrs > PLAN_MAX_GATEWAY_ADDRS)
		return -EINVAL;
	memset(out, 0, sizeof(*out));
	memset(&e, 0, sizeof(e));
	memcpy(e.addr.bytes, ep->addr.addr, ep->addr.family == AF_INET ? 4 : 16);
	e.port = ep->port;
	e.family = ep->addr.family;
	v = calloc(dp->ncpus, sizeof(*v));
	if (!v)
		return -ENOMEM;
	for (size_t j = 0; j < svc_n_addrs(svc); j++) {
		uint16_t port;
		const struct plan_addr *addr = svc_addr(svc, j, &port);
		struct svc_state *s;
		if (addr->family != ep->addr.family || make_key(addr, port, svc->protocol, &k) ||
		    !(s = index_get(&dp->index, &k)))
			continue;
		counter_key(s->id, &e, &ck);
		if (bpf_map_lookup_elem(dp->fd_counters, &ck, v) == 0) {
			for (int i = 0; i < dp->ncpus; i++) {
				out->connections += v[i].connections;
				out->established += v[i].established;
				out->failed += v[i].failed;
				out->retransmits += v[i].retransmits;
				out->rtt_sum_us += v[i].rtt_sum_us;
				out->rtt_samples += v[i].rtt_samples;
			}
			err = 0;
		}
	}
	free(v);
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
	uint64_t timeout = k->protocol != SLUICE_PROTO_TCP ? SLUICE_TC_UDP_TIMEOUT_S
			   : (ct->flags & SLUICE_CT_CLOSING) ? SLUICE_TC_CLOSING_TIMEOUT_S : SLUICE_TC_TCP_TIMEOUT_S;
	return k->direction == SLUICE_CT_FORWARD && !(now > ct->last_seen && now - ct->last_seen > timeout * 1000000000ull);
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
	fd = bpf_map__fd(dp->tc_skel->maps.tc_stats);
	for (__u32 i = 0; i < SLUICE_TC_STATS; i++)
		if (bpf_map_lookup_elem(fd, &i, v) == 0)
			for (int c = 0; c < dp->ncpus; c++)
				st->stats[i] += v[c];
	free(v);

	fd = bpf_map__fd(dp->tc_skel->maps.tc_flows);
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

void dataplane_close(struct dataplane *dp)
{
	if (!dp)
		return;
	settle(dp, NULL);   /* a deferred apply finishes: the old side must not stay stale */
	if (dp->upgrade_cg_fd >= 0)
		close(dp->upgrade_cg_fd);
	for (size_t i = 0; i < dp->n_tc_pending; i++)
		free(dp->tc_names[i]);
	free(dp->dir);
	for (size_t i = 0; i < dp->n_links; i++) {
		bpf_link__disconnect(dp->links[i]);   /* pinned: stays attached after we let go */
		bpf_link__destroy(dp->links[i]);
	}
	for (size_t i = 0; i < dp->n_tc_links; i++)
		close(dp->tc_links[i]);     /* pinned: stays attached */
	sluice_tc_bpf__destroy(dp->tc_skel);
	sluice_bpf__destroy(dp->skel);
	if (dp->fd_barrier_inner >= 0)
		close(dp->fd_barrier_inner);
	svcs_free(dp->svcs, dp->n_svcs);
	free(dp->index.tab);
	kept_free(&dp->kept);
	free(dp->by_id);
	for (size_t i = 0; i < dp->n_pins; i++) {
		close(dp->pins[i].fd);
		free(dp->pins[i].path);
	}
	free(dp->pins);
	if (dp->lock_fd > 0)
		close(dp->lock_fd);
	free(dp);
}

/* Removes every entry of one pin subdirectory, detaching links first; then the directory. */
static int remove_pins(const char *dir, const char *sub, bool links)
{
	char path[PATH_MAX], entry[PATH_MAX];
	struct dirent *de;
	DIR *d;
	int err = 0;

	if ((err = join(path, dir, sub, NULL)))
		return err;
	d = opendir(path);
	if (!d)
		return errno == ENOENT ? 0 : -errno;
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.' || join(entry, path, de->d_name, NULL))
			continue;
		if (links) {
			int fd = bpf_obj_get(entry);
			if (fd >= 0) {
				bpf_link_detach(fd);   /* detach now, even if another process holds the link */
				close(fd);
			}
		}
		if (unlink(entry) && !err)
			err = -errno;
	}
	closedir(d);
	if (rmdir(path) && !err)
		err = -errno;
	return err;
}

static int uninstall_pins(const char *dir)
{
	int err;

	/* Links first: once they are gone no hook runs, and the maps can go. */
	if ((err = remove_pins(dir, SLUICE_PIN_LINKS, true)) || (err = remove_pins(dir, SLUICE_PIN_PROGS, false)) ||
	    (err = remove_pins(dir, SLUICE_PIN_MAPS, false)) || (err = remove_pins(dir, SLUICE_PIN_MAPS_OLD, false))) {
		log_error("cannot remove the pins under %s: %s", dir, strerror(-err));
		return err;
	}
	if (rmdir(dir)) {
		err = -errno;
		log_error("cannot remove %s: %s; hint: something else is pinned there", dir, strerror(errno));
		return err;
	}
	return 0;
}

int dataplane_uninstall(const struct dataplane_opts *o)
{
	int err, lock_fd;

	if (!o || !o->bpffs_dir || o->bpffs_dir[0] != '/')
		return -EINVAL;
	if (!path_exists(o->bpffs_dir))
		return 0;
	/* never from under a running sluiced: it would go on serving a socket to maps nobody routes by */
	if ((err = lock_pins(o->bpffs_dir, "refusing to uninstall", &lock_fd)))
		return err;
	err = uninstall_pins(o->bpffs_dir);
	close(lock_fd);
	return err;
}
