/* SPDX-License-Identifier: MIT */
/*
 * The data plane: loads bpf/sluice.bpf.c (socket mode) and attaches it to a
 * cgroup, and optionally bpf/sluice_tc.bpf.c (TC mode) on network interfaces,
 * all with BPF links; pins everything under a bpffs directory, and writes
 * routing plans into the shared maps with one atomic generation switch per
 * apply.
 */
#ifndef SLUICE_DATAPLANE_H
#define SLUICE_DATAPLANE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "plan/plan.h"
#include "sluice_abi.h"

struct dataplane;

struct dataplane_opts {
	const char *bpffs_dir;      /* e.g. /sys/fs/bpf/sluice; created, bpffs mounted if needed */
	const char *cgroup_path;    /* cgroup v2 directory whose processes are served */
	bool allow_cgroup_root;     /* the root of the cgroup v2 hierarchy (the whole node) is refused unless set */
	bool verbose;               /* libbpf's messages and the verifier log on stderr */
	/*
	 * TC mode: interfaces (in the caller's network namespace, Ethernet-like)
	 * whose ingress and egress get the TC programs through pinned tcx links.
	 * The list is the wanted state: an adopted data plane is attached to the
	 * interfaces missing, detached from those no longer listed, and TC mode
	 * is removed altogether when the list is empty (unless tc_load).
	 */
	const char *const *tc_ifaces;
	size_t n_tc_ifaces;
	uint32_t tc_flows;          /* flows the TC conntrack holds; 0: SLUICE_TC_FLOWS_DEFAULT. A pinned table keeps its size */
	bool tc_load;               /* load and pin the TC programs even with no interface (BPF_PROG_TEST_RUN) */
};

#define DATAPLANE_MAX_TC_IFACES 32

struct dataplane_stats {
	uint32_t services_written;  /* records added or changed (per VIP) */
	uint32_t services_removed;
	uint32_t services_unchanged;
	uint32_t endpoints_written; /* endpoint slots of new revisions */
	uint64_t flip_ns;           /* the switch itself: one write to `active` */
	uint64_t drain_ns;          /* waiting for programs still reading the old side (synchronize_rcu) */
	uint64_t total_ns;          /* the whole apply, from plan to both sides equal */
};

/*
 * How many entries the maps sized by the plan hold (their max_entries): grown before an apply
 * that needs more, to twice its need, and never shrunk (sluiced --uninstall starts small).
 */
struct dataplane_caps {
	uint32_t records;           /* services: a record per service address and side */
	uint32_t slots;             /* endpoints: a slot per endpoint of every live version of a record */
	uint32_t counters;          /* counters: one per endpoint of a service */
	uint32_t ids;               /* rr_state: one per service id */
	uint32_t udp_flows;         /* udp_flows and udp_reverse: the least until a UDP service is routed */
};
void dataplane_caps(const struct dataplane *dp, struct dataplane_caps *out);

/* The maps an apply writes, and what it did to them (Cilium's cilium_bpf_map_ops_total). */
enum dataplane_map { DP_MAP_ACTIVE, DP_MAP_SERVICES, DP_MAP_ENDPOINTS, DP_MAP_COUNTERS, DP_MAP_RR_STATE,
		     DP_MAP_BARRIER, DP_MAPS };
enum dataplane_map_op { DP_OP_UPDATE, DP_OP_DELETE, DP_OPS };
extern const char *const dataplane_map_names[DP_MAPS];   /* as pinned: "services", ... */
extern const char *const dataplane_map_op_names[DP_OPS];
struct dataplane_map_ops {
	uint64_t ok[DP_MAPS][DP_OPS], failed[DP_MAPS][DP_OPS];
};
/* Since this sluiced started. */
void dataplane_map_ops(const struct dataplane *dp, struct dataplane_map_ops *out);

/*
 * Opens the data plane. If pins exist under bpffs_dir they are adopted: maps
 * are reused (counters and round-robin state survive), the pinned links stay
 * attached and get the freshly loaded programs swapped in atomically, and the
 * bookkeeping is rebuilt from the maps alone. Otherwise loads, attaches to
 * cgroup_path and pins programs, maps and links. The pin directory is locked
 * for the handle's life: -EBUSY if another process holds it (one writer per
 * data plane). Returns 0 or -errno, having printed one "sluiced: error: ..." line.
 */
int dataplane_open(const struct dataplane_opts *o, struct dataplane **out);

/*
 * Makes the maps equal to the plan: services added, changed and removed become
 * visible together at one generation switch. An apply that changes nothing
 * writes nothing and keeps the generation. *generation and *stats may be NULL.
 */
int dataplane_apply(struct dataplane *dp, const struct plan *plan, uint64_t *generation,
		    struct dataplane_stats *stats);

/*
 * The weight-change path: the n services listed (routed now, with the same addresses and ports)
 * get new destinations; every other service stays. Work in proportion to the change, not to the
 * plan. With defer, returns right after the switch (the change is visible); the rest (waiting for
 * readers of the old side, replaying it) is done by dataplane_settle(), or by the next call.
 * -ENOENT if a service is not routed now.
 */
int dataplane_apply_services(struct dataplane *dp, const struct plan_service *const *svcs, size_t n, bool defer,
			     uint64_t *generation, struct dataplane_stats *stats);

/* Finishes a deferred apply (an RCU grace period, then the old side's rewrite). 0 if none. */
int dataplane_settle(struct dataplane *dp);

/*
 * All of ep's counters for svc, summed over its VIPs and gateway addresses of ep's family:
 * connections (socket mode) and flows (TC mode) made, and sockops' view of their TCP life.
 * -ENOENT if not routed.
 */
int dataplane_endpoint_stats(struct dataplane *dp, const struct plan_service *svc, const struct plan_endpoint *ep,
			     struct sluice_endpoint_stats *out);

/* Adds st to sum, field by field and reason by reason: over CPUs, endpoints or a destination. */
void dataplane_stats_add(struct sluice_endpoint_stats *sum, const struct sluice_endpoint_stats *st);

/* The connects that failed, whatever the reason. */
uint64_t dataplane_stats_failed(const struct sluice_endpoint_stats *st);

/* What the live side of the maps holds for one address of a service (its first VIP, else its first gateway address). */
struct dataplane_service_view {
	uint32_t id;                 /* the service id (rr_state, counters) */
	uint8_t lb;                  /* SLUICE_LB_* */
	size_t n_destinations;
	struct {
		uint32_t weight;         /* as configured, from the record */
		double percent;          /* the share of new connections the record gives it: rr slots / rr_slots, or reduced weight / total */
		uint16_t n_endpoints;
	} destinations[SLUICE_MAX_DESTINATIONS];
};
/* Fills *v from the live side of `services`. -ENOENT if the maps do not route svc. */
int dataplane_service_view(struct dataplane *dp, const struct plan_service *svc, struct dataplane_service_view *v);

/* One pinned map's size, for `sluice status` and /metrics: what bpftool shows as max_entries and bytes_memlock. */
struct dataplane_map_size {
	char name[16];
	uint32_t max_entries;
	uint64_t bytes;
};
#define DATAPLANE_MAX_MAPS 16
/* Fills out with the socket object's maps, then TC's; returns how many. */
size_t dataplane_map_sizes(const struct dataplane *dp, struct dataplane_map_size out[DATAPLANE_MAX_MAPS]);

/* What TC mode did, for `sluice status`: packet counters and the conntrack's fill. */
struct dataplane_tc_status {
	uint64_t stats[SLUICE_TC_STATS]; /* enum sluice_tc_stat, summed over CPUs */
	uint32_t flows_max;              /* flows the conntrack holds */
	uint32_t flows_live;             /* flows seen within their idle timeout */
};

/* Fills *st. -ENOENT when TC mode is not loaded. */
int dataplane_tc_status(struct dataplane *dp, struct dataplane_tc_status *st);

/*
 * After an upgrade that changed the maps' layout, dataplane_open leaves the running programs on
 * their previous maps and loads new ones; the new programs go into the hooks here, once the
 * new maps hold the routing (dataplane_apply calls it too). 0 and nothing to do otherwise.
 */
int dataplane_finish_open(struct dataplane *dp);

uint64_t dataplane_generation(struct dataplane *dp);

/* How many service addresses (VIP or gateway address, port, protocol) the maps route. */
size_t dataplane_n_records(struct dataplane *dp);

/*
 * Pins removed while the handle is open (rm -rf of the pin directory, say): the hooks keep their
 * programs while the handle holds the links, but a restart would find nothing to adopt. Pins
 * every missing object again from the handle's own references. Returns how many were missing
 * (their paths in msg), 0 when all are in place, or -errno with msg saying what is wrong.
 */
int dataplane_check_pins(struct dataplane *dp, char *msg, size_t len);

/* Frees the handle; pins and links stay: the data plane keeps serving. NULL is fine. */
void dataplane_close(struct dataplane *dp);

/* Detaches the links and removes every pin under bpffs_dir. 0 if nothing was installed;
 * -EBUSY, touching nothing, while a sluiced holds the directory. */
int dataplane_uninstall(const struct dataplane_opts *o);

#endif
