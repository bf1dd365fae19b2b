/* SPDX-License-Identifier: MIT */
/* The rule compiler's API for the CLI, sluiced and the tests: Services, Pods, VirtualServices,
 * DestinationRules and Gateways into a plan (DESIGN.md §5). Its own files share context.h, kinds.h
 * and resolve.h. */
#ifndef SLUICE_COMPILE_H
#define SLUICE_COMPILE_H

#include "plan/plan.h"
#include "common/util.h"

struct ytree_scan;

struct compile_opts {
	const char *namespace;       /* -n: namespace of objects that name none; NULL: "default" */
	bool namespace_forced;       /* -n given: an object in another namespace is an error */
	const char *cluster_domain;  /* NULL: "cluster.local" */
	FILE *skipped_log;           /* non-NULL (-v): one line per skipped object */
	const char *gateway_address; /* where Gateways without spec.addresses are served; NULL: none */
	/* How an input is read (reading.c); every way gives one outcome, as tests check. BEST: a List
	 * item by item, a large input on two threads; SPLIT: two threads at any size, the second's part
	 * looked for from byte split_from (0: the middle); STREAM: one thread; WHOLE: one thread, each
	 * document a whole tree. */
	enum compile_reading { COMPILE_READ_BEST, COMPILE_READ_SPLIT, COMPILE_READ_STREAM, COMPILE_READ_WHOLE } reading;
	size_t split_from;
};

/* One input file, already read. */
struct compile_input {
	const char *name;            /* as errors print it; "<stdin>" for -f - */
	const unsigned char *buf;
	size_t len;
	bool mapped;                 /* buf is a file mmap'd read-only: its pages are given back as it is read */
	struct ytree_scan *scan;     /* mapped: what ytree_scan_fd found in the file */
};

struct compile_stats {
	size_t files, objects, skipped;
	size_t services, destinations, endpoints;
	size_t vs_built, vs_total;   /* VirtualServices built (an incremental build keeps the others' entries), of all */
	size_t inputs_split;         /* inputs read on two threads (compile_opts.reading) */
	size_t items_streamed;       /* a List's items read one by one, its tree never whole */
};

/* Fills plan, or reports every error in d. Returns 0 when the plan is valid. */
int compile_plan(const struct compile_opts *o, const struct compile_input *in, size_t n_in,
		 struct plan *plan, struct diags *d, struct compile_stats *stats);

/* One input read into its records once and kept while it does not change: a follower of the API
 * server compiles a changing set of objects and reads only what changed (reading is ~90% of a
 * compile). The input's name must outlive the read: its records' places point at it. */
struct compile_read;
struct compile_read *compile_read(const struct compile_opts *o, const struct compile_input *in);
struct compile_read *compile_read_hold(struct compile_read *r);   /* one more owner; returns r */
void compile_read_free(struct compile_read *r);                    /* one owner less: freed at the last */
/* The text r was read from, kept with it and freed with it (an error's field path is found in it);
 * NULL drops it. */
void compile_read_set_text(struct compile_read *r, char *text);
const char *compile_read_text(const struct compile_read *r);
size_t compile_read_errors(const struct compile_read *r);   /* what reading r found wrong */

/* compile_plan over inputs read before, each as compile_read left it. Reads cannot hold one object
 * twice (the API server's objects, one per kind, namespace and name): duplicates across reads are
 * not looked for. */
int compile_plan_reads(const struct compile_opts *o, struct compile_read *const *reads, size_t n_reads,
		       struct plan *plan, struct diags *d, struct compile_stats *stats);

/* compile_plan_reads that builds only the VirtualServices the changed reads (the versions before
 * and after of every object added, changed or deleted) can affect, and takes the others' entries
 * from last, the plan memo was made with. Without memo or last everything is built. *memo_out:
 * the new plan's memo (NULL when it failed), for the next update once that plan is adopted. */
struct compile_memo;
int compile_plan_update(const struct compile_opts *o, struct compile_read *const *reads, size_t n_reads,
			struct compile_read *const *changed, size_t n_changed, const struct plan *last,
			const struct compile_memo *memo, struct compile_memo **memo_out, struct plan *plan,
			struct diags *d, struct compile_stats *stats);
void compile_memo_free(struct compile_memo *m);

/* The follower's quick path for the change it sees most (pods starting, turning ready or unready,
 * going): a batch whose reads replaced (gone) and made (fresh) hold Pods alone, on the memo of
 * last (kept up to date by it). It builds again only the VirtualServices whose destinations
 * select one of the pods, before or after, and checks the pods' addresses against every other
 * pod's, VIP and Gateway address, in proportion to the change. 0: *out holds the entries that
 * differ from last's (maybe none), and memo describes last with them. -1: the batch is not one it
 * can build exactly as a whole build would (another kind changed, an address is shared, an error);
 * call compile_plan_update, with the same memo. */
struct compile_delta {
	struct plan entries;         /* the entries that changed, in last's order, in an arena of their own */
	size_t *at;                  /* entries.services[i] takes the place of last->services[at[i]] */
};
int compile_pods_update(const struct compile_opts *o, struct compile_read *const *gone, size_t n_gone,
			struct compile_read *const *fresh, size_t n_fresh, const struct plan *last,
			struct compile_memo *memo, struct compile_delta *out, struct compile_stats *stats);
void compile_delta_free(struct compile_delta *d);

/* One top-level member (key: val) of an object of kind, as JSON, with what the compiler never reads
 * left out, for the follower to keep (kube/reflector.c): of metadata, all but name, namespace,
 * labels, deletionTimestamp (and resourceVersion, which status reports); of a Pod's spec the values
 * of the fields known and never read (images, commands, volumes, probes...), unknown fields kept
 * for their error; of a Pod's status all but phase, podIP, podIPs[].ip and the Ready condition;
 * other kinds' status whole. Everything of another shape than the readers expect is written as it
 * is, for them to refuse as before. tests/unit/member_json_test.c compiles the fixtures both ways. */
struct json_writer;
struct ynode;
void compile_member_json(struct json_writer *w, const char *kind, const struct ynode *key, const struct ynode *val);

/* Inputs named like `kubectl apply -f`: files, directories read recursively
 * (*.yaml, *.yml, *.json), or "-" for standard input. Unreadable paths are errors in d. */
struct sources {
	struct compile_input *v;
	size_t n, cap;
};

int sources_read(struct sources *s, const char *path, struct diags *d);
/* One input more; s owns name and buf from now on (sources_free frees them). */
void sources_add(struct sources *s, char *name, unsigned char *buf, size_t len);
void sources_free(struct sources *s);

#endif
