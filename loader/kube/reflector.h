/* SPDX-License-Identifier: MIT */
/*
 * One reflector per resource, shaped like client-go's tools/cache/reflector.go: LIST (paged with
 * limit/continue), then WATCH from the list's resourceVersion with bookmarks and a randomised
 * timeoutSeconds; 410 Gone (as an HTTP status or an ERROR event) lists again; failures back off
 * exponentially with jitter; a watch that stays silent past idle_s is taken for stalled and
 * replaced. It runs on a thread of its own and hands every object to the caller's callbacks as
 * JSON text; a list is framed by relist_begin/relist_end so that the caller can drop what the
 * list no longer holds (objects deleted while the watch was down).
 */
#ifndef SLUICE_KUBE_REFLECTOR_H
#define SLUICE_KUBE_REFLECTOR_H

#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "kube/config.h"

enum kube_event_type {
	KUBE_ADDED,
	KUBE_MODIFIED,
	KUBE_DELETED,
};

struct reflector;

/* Called on the reflector's thread. */
struct reflector_callbacks {
	void (*relist_begin)(void *ctx, struct reflector *r);
	void (*object)(void *ctx, struct reflector *r, enum kube_event_type type, const char *namespace,
		       const char *name, const char *json, size_t len);
	void (*relist_end)(void *ctx, struct reflector *r);
};

/* What a reflector has done, for status. Read with reflector_state(). */
struct reflector_state {
	bool synced;              /* a list completed; events flow */
	bool absent;              /* the API does not serve the resource (a CRD not installed) */
	char resource_version[32];
	char version[16];         /* the API version used, e.g. "v1" of networking.istio.io */
	char error[256];          /* the last failure, "" after a success */
	time_t last_event;        /* when an object last arrived (list or watch) */
	unsigned lists, watches;  /* how many of each were started */
};

struct reflector {
	/* given by the caller */
	const char *kind;         /* "Service", "VirtualService", ... */
	const char *group;        /* NULL for the core group, else e.g. "networking.istio.io" */
	const char *const *versions;   /* versions to try, most wanted first (NULL: "v1") */
	const char *resource;     /* plural, e.g. "services" */
	const char *namespace;    /* NULL: every namespace */
	long idle_s;              /* a watch silent this long is stalled */
	/* private */
	const struct kube_config *cfg;
	const struct reflector_callbacks *cb;
	void *ctx;
	volatile sig_atomic_t *stop;
	pthread_t thread;
	bool started;
	pthread_mutex_t lock;
	struct reflector_state st;
};

/* Starts the reflector's thread. 0 or -errno. */
int reflector_start(struct reflector *r, const struct kube_config *cfg, const struct reflector_callbacks *cb,
		    void *ctx, volatile sig_atomic_t *stop);
/* Waits for the thread to end (after *stop was set). */
void reflector_join(struct reflector *r);
void reflector_state(struct reflector *r, struct reflector_state *out);

#endif
