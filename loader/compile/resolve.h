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
	struct pod_ips {             /* address -> pod, open addressing */
		struct pod **slots;
		struct plan_addr *addrs;
		size_t cap;
	} pod_ips;
	struct ptrvec vecs;          /* owned ptrvecs, for freeing */
	struct arena keys;           /* pods_by_label's keys */
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
/* The same in two steps: Services and DestinationRules, then pods; pods are indexed by label only
 * in the namespaces of label_ns when it is given (an incremental build needs no others). */
void cc_index_services(struct cctx *c, struct index *ix);
void cc_index_pods(struct cctx *c, struct index *ix, const struct strmap *label_ns);
void cc_index_free(struct index *ix);
uint32_t cc_addr_hash(const struct plan_addr *a);
/* The pods of namespace ns that carry label (key and value); add: an empty list made when none. */
struct ptrvec *cc_pods_with_label(struct index *ix, const char *ns, const struct kv *label, bool add);

struct service *cc_resolve_host(struct cctx *c, struct index *ix, const char *host, const char *ns);
/* The key ("name.ns") of the Service a host names, from the host alone; false for none. */
bool cc_host_key(const struct cctx *c, const char *host, const char *ns, char *buf, size_t len);
void cc_host_error(struct cctx *c, struct index *ix, const struct mark *at, const char *host, const char *ns);
bool cc_resolve_dest(struct cctx *c, struct index *ix, const struct vs *v, const struct dest *d, struct rdest *r);
bool cc_collect_endpoints(struct cctx *c, struct index *ix, const struct plan_service *ps, const struct rdest *r,
			  const struct dest *d, struct plan_destination *pd);
const char *cc_port_list(struct cctx *c, const struct service *s);   /* "80, 443", or "none" */

/* What one VirtualService's entries were built from: the Services its hosts and destinations name,
 * the Gateways it binds, and the labels (in a namespace) the pods of its destinations carry. An
 * incremental build rebuilds it when any of them changes, and takes its entries from the last plan
 * otherwise. Immutable once built, shared by the memos of successive plans. */
struct vs_deps {
	int refs;
	char *key;                   /* the VirtualService's "namespace/name" */
	struct ptrvec svcs, gws;     /* char *: Service keys "name.ns", Gateway keys "ns/name" */
	struct ptrvec wants;         /* struct want *: what a destination's pods carry */
};

struct want {
	char *ns;
	struct labels labels;        /* keys and values malloc'd */
};

void cc_deps_put(struct vs_deps *d);                      /* drops a reference */
bool cc_want_matches(const struct want *w, const struct pod *p);
bool cc_labels_match(const struct labels *have, const struct labels *want);   /* every one of want */

/* One input read into records (compile.h), kept while it does not change. */
struct compile_read {
	struct arena records;
	struct ptrvec services, pods, vss, drs, gateways;
	struct diags d;              /* the reading's errors, given again at every compile */
	size_t objects, skipped;
	unsigned refs;               /* owners: compile_read_free frees at the last (compile_read_hold) */
	char *text;                  /* what was read, when a holder keeps it (compile_read_set_text) */
};

/* What a plan was built from (compile.h), for the next batch to build only what it affects. */
struct quick;
struct compile_memo {
	struct strmap deps;          /* VirtualService key -> struct vs_deps * */
	struct quick *quick;         /* quick.c's index, kept by compile_pods_update; NULL: none */
};

/* quick.c: the index of the plan's build, for compile_pods_update; NULL when the plan is one it
 * cannot keep up to date (a VirtualService's destinations that select every pod). It takes ix's
 * maps (ix is left to be freed). */
struct quick *cc_quick_new(struct cctx *c, struct index *ix, const struct plan *plan, const struct strmap *deps);
/* q (taken from the memo of last, whose deps were was) for the plan built from it after a batch of
 * VirtualServices alone: true of pods, Services and the rest still; the VirtualServices built again
 * (deps) listed anew. NULL as cc_quick_new. */
struct quick *cc_quick_carry(struct quick *q, struct cctx *c, const struct plan *plan, const struct plan *last,
			     const struct strmap *was, const struct strmap *deps);
void cc_quick_free(struct quick *q);

/* Which VirtualServices to build and where the others' entries come from. */
struct build_scope {
	const struct strmap *build;        /* VirtualService keys to build; NULL: every one */
	const struct strmap *last_entries; /* key -> struct ptrvec * of the last plan's plan_services */
	struct strmap *deps;               /* out: key -> struct vs_deps * of those built (new refs) */
	bool failed;                       /* a kept entry's Service or Gateway is gone: build everything */
};

/* The plan's entries from every VirtualService, sorted, with the compile's figures (build_plan.c).
 * scope NULL: every VirtualService is built and no deps are kept. */
void cc_build_plan(struct cctx *c, struct index *ix, struct build_scope *scope, struct plan *plan);
/* What a build wrote into a VirtualService's routes (which were used), cleared for the next. */
void cc_forget_routes(struct vs *v);
/* A quick build's (compile_pods_update): the entries (struct plan_service *) of VirtualService v
 * alone, sorted as a plan's, on the index ix; what an earlier build wrote into v's routes and the
 * Services it routes cleared first. Gateways are not looked at: v must bind none. */
void cc_build_vs(struct cctx *c, struct index *ix, struct vs *v, struct ptrvec *out);

#endif
