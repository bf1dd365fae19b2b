/* SPDX-License-Identifier: MIT */
/* Resolution, the step from records to plan (YAML -> records -> plan): an index of what was read,
 * hosts and destinations resolved against it, the endpoints a destination reaches (resolve.c);
 * and the plan built from each VirtualService's routes (build_plan.c). */
#ifndef SLUICE_COMPILE_RESOLVE_H
#define SLUICE_COMPILE_RESOLVE_H

#include "compile/context.h"

struct index {
	struct strmap services;      /* "name.ns" -> service */
	struct strmap pods_by_label; /* "ns\x1key\x1value" -> struct ptrvec * of pods */
	struct strmap dr_by_service; /* service key -> dr */
	struct strmap pod_ips;       /* "ip" -> pod */
	struct ptrvec vecs;          /* owned ptrvecs, for freeing */
};

/* A destination resolved against the Services and DestinationRules. */
struct rdest {
	struct service *svc;
	const struct subset *subset;
	const struct svc_port *port;
	uint32_t weight;
	bool ok;
};

/* Builds the index, reporting what no single object shows: shared VIPs and pod IPs, a second
 * DestinationRule for one host. */
void cc_index_build(struct cctx *c, struct index *ix);
void cc_index_free(struct index *ix);

struct service *cc_resolve_host(struct cctx *c, struct index *ix, const char *host, const char *ns);
void cc_host_error(struct cctx *c, struct index *ix, const struct mark *at, const char *host, const char *ns);
bool cc_resolve_dest(struct cctx *c, struct index *ix, const struct vs *v, const struct dest *d, struct rdest *r);
bool cc_collect_endpoints(struct cctx *c, struct index *ix, const struct plan_service *ps, const struct rdest *r,
			  const struct dest *d, struct plan_destination *pd);
const char *cc_port_list(struct cctx *c, const struct service *s);   /* "80, 443", or "none" */

/* The plan's entries from every VirtualService, sorted, with the compile's figures (build_plan.c). */
void cc_build_plan(struct cctx *c, struct index *ix, struct plan *plan);

#endif
