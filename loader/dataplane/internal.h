/* SPDX-License-Identifier: MIT */
/*
 * Inside the map writer: the handle, its bookkeeping, and what the files of loader/dataplane/
 * share. dataplane.h is the API; nothing outside this folder includes this header. The switch
 * and why it is atomic: DESIGN.md §7; adoption, upgrades and pins: §12.
 *
 *   rr.c       weights and the round-robin table: arithmetic only, no BPF (rr.h)
 *   records.c  plan -> bookkeeping: one svc_state per service address, the index that finds
 *              it by key, the records and keys the maps hold
 *   apply.c    an apply: diff, writes to the inactive side, the switch, settle; resync
 *   install.c  open (load the socket object, attach it to the cgroup) and close
 *   pins.c     the pin directory: bpffs, where each object is pinned, the one-writer lock,
 *              pins made again, uninstall
 *   adopt.c    pins found at open: the bookkeeping rebuilt from the maps, or an upgrade
 *              across a change of their layout
 *   grow.c     the maps sized by the plan, grown under the running programs
 *   tc.c       TC mode: its object over the shared maps, tcx links per interface
 *   read.c     what status reads: the generation, endpoint stats, the service view, TC status
 *
 * Only install.c, adopt.c, grow.c, read.c and tc.c include the BPF skeletons; the rest reach the
 * maps through the descriptors in struct dataplane (and build without clang or bpftool).
 */
#ifndef SLUICE_DATAPLANE_INTERNAL_H
#define SLUICE_DATAPLANE_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "sluice_abi.h"
#include "dataplane/dataplane.h"
#include "plan/plan.h"

struct bpf_link;
struct bpf_map;
struct bpf_object;
struct bpf_program;
struct sluice_bpf;      /* sluice.skel.h */
struct sluice_tc_bpf;   /* sluice_tc.skel.h */

/* Where an upgrade moves the previous maps' pins (adopt.c); bpffs refuses names with a dot. */
#define SLUICE_PIN_MAPS_OLD "maps_old"
/* Where a growth pins its new maps before they take the old ones' names (grow.c). */
#define SLUICE_PIN_MAPS_GROW "maps_grow"

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

/* One pinned object and a reference to it that outlives its pin. */
struct pin {
	char *path;
	int fd;
	ino_t ino;
};

struct dataplane {
	struct sluice_bpf *skel;
	struct bpf_link *links[16];
	size_t n_links;
	struct sluice_tc_bpf *tc_skel;  /* NULL: no TC mode */
	int tc_links[2 * DATAPLANE_MAX_TC_IFACES];   /* pinned tcx links: they stay attached after close */
	size_t n_tc_links;
	int fd_active, fd_services, fd_endpoints, fd_counters, fd_rr_state, fd_barrier, fd_barrier_inner;
	int fd_tc_stats, fd_tc_flows;   /* with tc_skel */
	uint64_t generation;
	struct svc_state **svcs;        /* current routing: equal to both sides of `services` */
	size_t n_svcs;
	struct svc_index index;
	struct svc_state **by_id;       /* SLUICE_MAX_SERVICE_IDS entries */
	uint32_t id_hint;
	uint64_t stamp;                 /* apply counter, for the diff */
	uint64_t slots_in_use;          /* endpoint slots of all current records */
	bool sides_differ;              /* a failed write left the inactive side stale: resync before use */
	struct changes *pending;        /* an apply switched, its old side not yet replayed (deferred) */
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
	struct dataplane_map_ops ops;   /* apply.c's map writes, counted */
	struct dataplane_caps caps;     /* the sized maps' max_entries (grow.c) */
	int cg_fd;                      /* the cgroup served, for a growth's swap into its links */
	uint64_t cg_id;
	char *tc_ifnames[DATAPLANE_MAX_TC_IFACES];   /* TC mode's interfaces, attached */
	int tc_ifindexes[DATAPLANE_MAX_TC_IFACES];
	size_t n_tc_ifaces;
};

/* apply.c: a map write, counted in dp->ops; errno as the bpf_map_* call left it. A delete of
 * an absent key and an insert (BPF_NOEXIST) of a present one leave the map as asked: they count
 * as done. */
int map_update(struct dataplane *dp, enum dataplane_map m, const void *key, const void *value, uint64_t flags);
int map_write(int fd, const void *key, const void *value, uint64_t flags);   /* retried while ENOMEM is transient */
/* n entries BPF_MAP_UPDATE_BATCH at a time (BPF_ANY), retried as map_write; *written: how many went in */
int map_write_batch(int fd, const void *keys, const void *values, size_t n, size_t key_size, size_t value_size,
		    size_t *written);
int map_delete(struct dataplane *dp, enum dataplane_map m, const void *key);

/* records.c: plan -> bookkeeping, the index, records and keys */
uint64_t key_hash(const struct sluice_service_key *k);
bool key_eq(const struct sluice_service_key *a, const struct sluice_service_key *b);
int index_build(struct svc_index *ix, struct svc_state **v, size_t n, const struct svc_state **dup);
struct svc_state *index_get(const struct svc_index *ix, const struct sluice_service_key *k);
void index_replace(struct svc_index *ix, struct svc_state *s);
#define SVC_STR_LEN 256   /* svc_name(), key_str() */
const char *svc_name(const struct plan_service *ps, char *buf, size_t len);
const char *key_str(const struct sluice_service_key *k, char *buf, size_t len);
int make_key(const struct plan_addr *vip, uint16_t port, uint8_t protocol, struct sluice_service_key *k);
size_t svc_n_addrs(const struct plan_service *ps);
const struct plan_addr *svc_addr(const struct plan_service *ps, size_t j, uint16_t *port);
int check_service(const struct plan_service *ps);
int svc_fill(const struct plan_service *ps, const struct plan_addr *vip, uint16_t port, struct svc_state *s);
bool svc_same_routing(const struct svc_state *a, const struct svc_state *b);
struct svc_state *svc_dup(const struct svc_state *from);
void svc_free(struct svc_state *s);
void svcs_free(struct svc_state **v, size_t n);
void build_record(const struct svc_state *s, struct sluice_service *r);
void svc_of_record(const struct sluice_service_key *key, const struct sluice_service *r, struct svc_state *s);
void endpoint_of(const struct plan_endpoint *pe, struct sluice_endpoint *ep);
void endpoint_key(uint32_t id, uint32_t slot, uint64_t generation, struct sluice_endpoint_key *k);
void counter_key(uint32_t id, const struct sluice_endpoint *ep, struct sluice_counter_key *k);

/* apply.c: map writes and the switch */
int set_generation(struct dataplane *dp, uint64_t generation);
int map_keys(int fd, size_t key_size, void **out, size_t *n_out);
int resync(struct dataplane *dp);
int settle(struct dataplane *dp, uint64_t *drain_ns);
int wait_for_readers(struct dataplane *dp);

/* grow.c: the maps sized by the plan */
int caps_from_pins(struct dataplane *dp, const char *dir);
int caps_set(const struct dataplane *dp, struct bpf_object *obj);   /* another object over the same maps */
int caps_ensure(struct dataplane *dp, const struct dataplane_caps *need);

/* pins.c: the pin directory */
bool path_exists(const char *path);
int pin_path(char *buf, const char *dir, const char *a, const char *b);
int prepare_bpffs(const char *dir);
int set_map_pins(struct bpf_object *obj, const char *dir);
int pin_program(struct bpf_program *prog, const char *dir);
int lock_pins(const char *dir, const char *doing, int *fd_out);
void pins_record(struct dataplane *dp);
int remove_pins(const char *dir, const char *sub, bool links);
int uninstall_pins(const char *dir);

/* install.c */
int attach_programs(struct dataplane *dp, const char *dir, int cg_fd, uint64_t cg_id);
void map_fds(struct dataplane *dp);   /* dp's descriptors of the socket object's maps */

/* tc.c */
int tc_check(const struct dataplane_opts *o, int ifindex[DATAPLANE_MAX_TC_IFACES]);
int tc_open(struct dataplane *dp, const struct dataplane_opts *o);
int tc_attach(struct dataplane *dp, const char *dir, const char *ifname, int ifindex);
int tc_load(struct dataplane *dp, const struct dataplane_opts *o);

/* adopt.c: pinned maps found at open */
int rebuild(struct dataplane *dp);
int upgrade_begin(struct dataplane *dp, const char *dir, uint64_t *generation);
void upgrade_abort(struct dataplane *dp, const char *dir);
const struct kept_id *kept_get(const struct kept_ids *kt, const struct sluice_service_key *k);
bool kept_taken(const struct kept_ids *kt, uint32_t id);
void kept_free(struct kept_ids *kt);

#endif
