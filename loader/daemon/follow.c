// SPDX-License-Identifier: MIT
/*
 * sluiced --kubernetes: the API server is the source of truth. One reflector per resource
 * (kube/reflector.c, each on its own thread) hands objects to this file through a queue; the
 * main loop keeps them in a store and, once every resource has been listed and events stop
 * arriving for a short window, compiles the store with the same compiler `sluice apply` uses and
 * switches the data plane to the result in one generation. An object the compiler refuses keeps
 * its last good version (or stays out), so one bad object never blocks the rest; while the API is
 * away the last plan keeps serving. A batch of pods alone takes a quick path (quick_batch): only
 * what it touched is read, built, written and journaled.
 */
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "common/json.h"
#include "common/log.h"
#include "common/fieldpath.h"
#include "compile/compile.h"
#include "compile/ytree.h"
#include "plan/print.h"
#include "daemon/daemon.h"
#include "kube/config.h"
#include "kube/reflector.h"

#define MAX_REFLECTORS 64
#define FALLBACK_ROUNDS 4       /* compiles with refused objects at their last good version */
#define STORE_BUCKETS 65536
#define QUICK_MAX 1024          /* objects a batch changes, beyond which it is built the usual way */
#define JOURNAL_MAX (4 << 20)   /* a journal past this: the whole plan saved instead, the journal emptied */
#define PATCHES_MAX (32 << 20)  /* entries the quick path put in dm->plan: past this, dm->plan copied whole */

/* One object of the API as the store keeps it. */
struct kobj {
	struct kobj *next;          /* in its bucket */
	char *key;                  /* "Kind namespace/name": the compiler's file name for it */
	int refl;                   /* the reflector that delivered it */
	unsigned gen;               /* the list it was last seen in */
	uint64_t hash;              /* of the current version's text, resourceVersion included */
	char *json;                 /* the current version's text until read (then its read keeps it; a pod's, if refused) */
	/* each holds a reference (compile_read_hold): */
	struct compile_read *read;  /* the current version read into records (NULL: not yet) */
	struct compile_read *good;  /* the last version that compiled (NULL: none yet); read itself when it did */
	struct compile_read *fed;   /* what the last compile was given: read or good (NULL: left out) */
	char *errors;               /* why the current version is refused; NULL: it is not */
	char *logged;               /* the errors last logged: a refusal is logged once, not at every batch */
	bool touched;               /* in follower.touched */
};

/* Durations in ms, as a Prometheus histogram's buckets (le 1 ms ... 30 s, +Inf). */
#define HIST_BOUNDS 14
static const double hist_le_ms[HIST_BOUNDS] = { 1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000 };
struct histogram {
	uint64_t bucket[HIST_BOUNDS + 1];   /* not cumulative; the last is +Inf */
	uint64_t count, sum_ms;
};

struct qitem {
	struct qitem *next;
	enum { Q_BEGIN, Q_OBJECT, Q_END } what;
	int refl;
	enum kube_event_type type;
	char *key, *json;
};

struct follower {
	struct kube_config cfg;
	struct reflector refl[MAX_REFLECTORS];
	size_t n_refl;
	volatile sig_atomic_t stop;
	int efd;                    /* readable while the queue holds items */
	pthread_mutex_t qlock;
	struct qitem *head, *tail;
	/* main thread only */
	struct kobj *buckets[STORE_BUCKETS];
	size_t n_objects;
	unsigned gen[MAX_REFLECTORS];
	bool listed[MAX_REFLECTORS];
	bool synced;                /* every resource listed once: a plan may be built */
	bool dirty;
	uint64_t due;               /* when the pending batch applies (ms) */
	unsigned retry_ms;          /* the data plane refused the last batch: the wait before the next try */
	unsigned coalesce_ms;
	time_t last_apply;
	uint64_t last_apply_ms;     /* how long the last batch took, compile to switch */
	uint64_t batches, batch_failures;   /* batches applied, and those that applied nothing */
	struct histogram apply;     /* batches: compile to the switch settled */
	struct histogram programming;   /* changes: the first of a batch arriving to the switch settled */
	uint64_t changed_at;        /* when the pending batch's first change arrived (ms); 0: none timed */
	char drained_rv[MAX_REFLECTORS][32];   /* per resource: the resourceVersion of the last event taken */
	char applied_rv[MAX_REFLECTORS][32];   /* ... as of the last batch applied */
	size_t last_refused;        /* objects refused in the last batch */
	uint64_t reads;             /* objects read into records, ever: a batch reads only what changed */
	/* what the batch changed, for building only what it affects: reads that left the compile's
	 * input (kept, with the keys their places name, until the batch is over) and reads that came
	 * in; each entry holds a reference */
	struct ptrvec retired, retired_keys, fresh;
	struct compile_memo *memo;  /* what dm->plan was built from; NULL: the next batch builds all */
	struct compile_memo *pending;   /* the memo of the plan being applied */
	size_t vs_built, vs_total;  /* VirtualServices built by the last batch, of how many */
	/* the quick path (compile_pods_update): the objects the batch added or changed (touched_all:
	 * too many to list), objects refused now, the entries it put in dm->plan */
	struct compile_opts opts;   /* what objects are read with */
	struct ptrvec touched;
	bool touched_all;
	size_t refused_now;
	struct arena patches;
	bool verify;                /* SLUICE_VERIFY_INCREMENTAL: every partial build checked against a whole one */
	char last_result[256];
};

/* ---- the queue, written by reflector threads ---- */

static void push(struct follower *f, struct qitem *q)
{
	uint64_t one = 1;
	pthread_mutex_lock(&f->qlock);
	if (f->tail)
		f->tail->next = q;
	else
		f->head = q;
	f->tail = q;
	pthread_mutex_unlock(&f->qlock);
	if (write(f->efd, &one, sizeof(one)) < 0) {
		/* the counter is saturated: the loop is awake anyway */
	}
}

static int refl_index(struct follower *f, struct reflector *r)
{
	return (int)(r - f->refl);
}

static void on_relist_begin(void *ctx, struct reflector *r)
{
	struct follower *f = ctx;
	struct qitem *q = calloc(1, sizeof(*q));
	if (!q)
		return;
	q->what = Q_BEGIN;
	q->refl = refl_index(f, r);
	push(f, q);
}

static void on_relist_end(void *ctx, struct reflector *r)
{
	struct follower *f = ctx;
	struct qitem *q = calloc(1, sizeof(*q));
	if (!q)
		return;
	q->what = Q_END;
	q->refl = refl_index(f, r);
	push(f, q);
}

static void on_object(void *ctx, struct reflector *r, enum kube_event_type type, const char *ns, const char *name,
		      const char *json, size_t len)
{
	struct follower *f = ctx;
	struct qitem *q = calloc(1, sizeof(*q));
	if (!q || asprintf(&q->key, "%s %s%s%s", r->kind, ns, *ns ? "/" : "", name) < 0 || !(q->json = strndup(json, len))) {
		free(q);
		return;
	}
	q->what = Q_OBJECT;
	q->refl = refl_index(f, r);
	q->type = type;
	push(f, q);
}

static const struct reflector_callbacks callbacks = {
	.relist_begin = on_relist_begin,
	.object = on_object,
	.relist_end = on_relist_end,
};

/* ---- the store ---- */

static uint32_t key_hash(const char *s)
{
	uint32_t h = 2166136261u;
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 16777619u;
	return h;
}

static struct kobj **slot(struct follower *f, const char *key)
{
	struct kobj **p = &f->buckets[key_hash(key) % STORE_BUCKETS];
	while (*p && strcmp((*p)->key, key))
		p = &(*p)->next;
	return p;
}

/* The batch is over: no object is new to the next. */
static void untouch_all(struct follower *f)
{
	for (size_t i = 0; i < f->touched.n; i++)
		((struct kobj *)f->touched.v[i])->touched = false;
	f->touched.n = 0;
	f->touched_all = false;
}

/* An object added or changed: the quick path reads these alone. */
static void touch(struct follower *f, struct kobj *o)
{
	if (o->touched || f->touched_all)
		return;
	if (f->touched.n == QUICK_MAX) {   /* a list, a relist: built the usual way */
		untouch_all(f);
		f->touched_all = true;
		return;
	}
	o->touched = true;
	ptrvec_push(&f->touched, o);
}

/* What the next compile is given of o: the batch learns what left its input and what came in. */
static void set_fed(struct follower *f, struct kobj *o, struct compile_read *r)
{
	if (o->fed == r)
		return;
	if (o->fed)
		ptrvec_push(&f->retired, o->fed);   /* with fed's reference */
	if (r)
		ptrvec_push(&f->fresh, compile_read_hold(r));
	o->fed = compile_read_hold(r);
}

static void kobj_free(struct follower *f, struct kobj *o)
{
	for (size_t i = 0; o->touched && i < f->touched.n; i++)
		if (f->touched.v[i] == o) {
			f->touched.v[i] = f->touched.v[--f->touched.n];
			break;
		}
	set_fed(f, o, NULL);   /* the batch still needs to know what the object was */
	ptrvec_push(&f->retired_keys, o->key);   /* the places of its reads name it */
	compile_read_free(o->read);
	compile_read_free(o->good);
	free(o->json);
	free(o->errors);
	free(o->logged);
	free(o);
}

/* The current version read into records, once. A pod's text goes then (150,000 pods: 55 MB): a
 * build places the errors it finds in a pod at the pod itself, where no text is needed. */
static void read_current(struct follower *f, struct kobj *o)
{
	if (o->read || !o->json)
		return;
	struct compile_input in = { .name = o->key, .buf = (const unsigned char *)o->json, .len = strlen(o->json) };
	o->read = compile_read(&f->opts, &in);
	if (!strncmp(o->key, "Pod ", 4) && !compile_read_errors(o->read))
		free(o->json);
	else
		compile_read_set_text(o->read, o->json);   /* for an error's field path */
	o->json = NULL;
	f->reads++;
}

static void store_put(struct follower *f, struct qitem *q)
{
	struct kobj **p = slot(f, q->key);
	if (q->type == KUBE_DELETED) {
		if (*p) {
			struct kobj *o = *p;
			*p = o->next;
			kobj_free(f, o);
			f->n_objects--;
			f->dirty = true;
		}
		return;
	}
	struct kobj *o = *p;
	uint64_t hash = hash_str(q->json);   /* a relist's copy of an object is the same text, resourceVersion and all */
	if (!o) {
		o = calloc(1, sizeof(*o));
		if (!o)
			return;
		o->key = q->key;
		q->key = NULL;
		*p = o;
		f->n_objects++;
	} else if (o->hash == hash) {
		o->gen = f->gen[q->refl];   /* unchanged: seen, nothing to compile */
		o->refl = q->refl;
		return;
	} else {
		compile_read_free(o->read);   /* good and fed keep theirs */
		o->read = NULL;
		free(o->json);
	}
	o->hash = hash;
	o->json = q->json;
	q->json = NULL;
	o->refl = q->refl;
	o->gen = f->gen[q->refl];
	f->dirty = true;
	touch(f, o);
	read_current(f, o);   /* now, while the list is still arriving: the first build has less to do */
}

/* A list ended: what it did not hold was deleted while the watch was away. */
static void store_sweep(struct follower *f, int refl)
{
	for (size_t b = 0; b < STORE_BUCKETS; b++)
		for (struct kobj **p = &f->buckets[b]; *p;) {
			struct kobj *o = *p;
			if (o->refl == refl && o->gen != f->gen[refl]) {
				*p = o->next;
				kobj_free(f, o);
				f->n_objects--;
				f->dirty = true;
			} else {
				p = &o->next;
			}
		}
}

/* metadata.resourceVersion of an object's JSON as the reflector wrote it ("" when none). */
static const char *json_rv(const char *json, char *buf, size_t len)
{
	const char *p = json ? strstr(json, "\"resourceVersion\":\"") : NULL;
	buf[0] = 0;
	if (p) {
		p += strlen("\"resourceVersion\":\"");
		snprintf(buf, len, "%.*s", (int)strcspn(p, "\""), p);
	}
	return buf;
}

/* An object's input: its current version, or its last good one if refused (NULL: left out). */
static struct compile_read *feed(struct follower *f, struct kobj *o)
{
	read_current(f, o);
	set_fed(f, o, o->errors ? o->good : o->read);
	return o->fed;
}

static void drain(struct follower *f)
{
	uint64_t n;
	if (read(f->efd, &n, sizeof(n)) < 0 && errno != EAGAIN)
		return;
	pthread_mutex_lock(&f->qlock);
	struct qitem *q = f->head;
	f->head = f->tail = NULL;
	pthread_mutex_unlock(&f->qlock);
	while (q) {
		struct qitem *next = q->next;
		if (q->what == Q_BEGIN) {
			f->gen[q->refl]++;
		} else if (q->what == Q_OBJECT) {
			json_rv(q->json, f->drained_rv[q->refl], sizeof(f->drained_rv[q->refl]));
			store_put(f, q);
		} else {
			store_sweep(f, q->refl);
			if (!f->listed[q->refl])
				f->dirty = true;   /* a first list, even an empty one, completes the view */
			f->listed[q->refl] = true;
		}
		free(q->key);
		free(q->json);
		free(q);
		q = next;
	}
}

/* ---- compiling the store ---- */

/* The inputs: every object's. */
static size_t gather(struct follower *f, struct compile_read **reads)
{
	size_t n = 0;
	for (size_t b = 0; b < STORE_BUCKETS; b++)
		for (struct kobj *o = f->buckets[b]; o; o = o->next)
			if ((reads[n] = feed(f, o)))
				n++;
	return n;
}

struct field_query {
	uint32_t line, col;
	struct fieldpath path;
};

static void find_field(void *ctx, const struct mark *file, struct ynode *root)
{
	(void)file;
	struct field_query *q = ctx;
	if (!ytree_path_at(root, q->line, q->col, &q->path))
		fieldpath_pop(&q->path, 0);
}

/* "spec.http[0].route[1].destination.subset": where in the object (one line of JSON) an error is. */
static void error_field(const struct kobj *o, const struct mark *at, struct fieldpath *p)
{
	struct diags d = { 0 };
	struct mark m = { .file = o->key };
	struct field_query q = { .line = at->line, .col = at->col };
	const char *text = compile_read_text(o->fed);
	if (text)   /* else a pod's, dropped: its errors are placed at the object itself */
		yaml_each_document((const unsigned char *)text, strlen(text), &m, &d, find_field, &q);
	diags_free(&d);
	*p = q.path;
}

/* Each object the errors name is refused: it keeps its last good version. How many were newly refused. */
static size_t refuse(struct follower *f, const struct diags *d)
{
	size_t refused = 0;
	for (size_t i = 0; i < d->n; i++) {
		struct kobj *o = *slot(f, d->v[i].at.file);
		if (!o)
			continue;
		struct fieldpath field;
		error_field(o, &d->v[i].at, &field);
		char *line;
		/* the field is named once: many messages name it already */
		if (asprintf(&line, "%s: %s%s%s", o->key, field.len && !strstr(d->v[i].msg, field.s) ? field.s : "",
			     field.len && !strstr(d->v[i].msg, field.s) ? ": " : "", d->v[i].msg) < 0)
			continue;
		if (!o->errors) {
			o->errors = line;
			refused++;
		} else if (!strstr(o->errors, d->v[i].msg)) {
			char *joined;
			if (asprintf(&joined, "%s\n%s", o->errors, line) >= 0) {
				free(o->errors);
				o->errors = joined;
			}
			free(line);
		} else {
			free(line);
		}
	}
	return refused;
}

static void log_refused(struct follower *f)
{
	f->refused_now = 0;
	for (size_t b = 0; b < STORE_BUCKETS; b++)
		for (struct kobj *o = f->buckets[b]; o; o = o->next) {
			f->refused_now += o->errors != NULL;
			if (o->errors && (!o->logged || strcmp(o->logged, o->errors)))
				log_warn("refused, %s: %s", o->good ? "its last good version stays" : "left out", o->errors);
			free(o->logged);
			o->logged = o->errors ? strdup(o->errors) : NULL;
		}
}

/* The batch is over: what it changed is known to the memo, or the memo is gone. */
static void forget_changes(struct follower *f)
{
	for (size_t i = 0; i < f->retired.n; i++)
		compile_read_free(f->retired.v[i]);
	for (size_t i = 0; i < f->fresh.n; i++)
		compile_read_free(f->fresh.v[i]);
	for (size_t i = 0; i < f->retired_keys.n; i++)
		free(f->retired_keys.v[i]);
	f->retired.n = f->retired_keys.n = f->fresh.n = 0;
}

/* dm->plan did not change: a memo of another plan would mislead the next batch. */
static void forget_memo(struct follower *f)
{
	compile_memo_free(f->memo);
	compile_memo_free(f->pending);
	f->memo = f->pending = NULL;
	forget_changes(f);
}

/* SLUICE_VERIFY_INCREMENTAL: a partial build must be what a whole build of the same reads gives. */
static void verify_partial(struct follower *f, const struct compile_opts *o, struct compile_read **in, size_t n,
			   const struct plan *partial)
{
	struct diags d = { 0 };
	struct plan whole;
	if (compile_plan_reads(o, in, n, &whole, &d, NULL)) {
		log_error("kubernetes: verify: a partial build of %zu VirtualServices succeeded where a whole build fails",
			  f->vs_built);
		diags_print(&d, stderr);
		diags_free(&d);
		return;
	}
	char *a = plan_json_string(partial), *b = plan_json_string(&whole);
	if (!a || !b || strcmp(a, b))
		log_error("kubernetes: verify: a partial build of %zu VirtualServices differs from a whole build",
			  f->vs_built);
	free(a);
	free(b);
	plan_free(&whole);
}

/* Compiles the store into *plan, refusing what does not compile. 0, or -1 when nothing would. */
static int compile_store(struct daemon *dm, struct follower *f, struct plan *plan, size_t *refused)
{
	struct compile_read **in = calloc(f->n_objects + 1, sizeof(*in));
	const struct compile_opts *o = &f->opts;
	int rc = -1;
	*refused = 0;
	if (!in)
		return -1;
	for (size_t b = 0; b < STORE_BUCKETS; b++)   /* every object gets its chance again */
		for (struct kobj *k = f->buckets[b]; k; k = k->next) {
			free(k->errors);
			k->errors = NULL;
		}
	for (int round = 0; round < FALLBACK_ROUNDS && rc; round++) {
		struct diags d = { 0 };
		struct compile_stats st;
		struct plan compiled;
		size_t n = gather(f, in);
		/* the first round builds what the batch affects; a round after a refusal builds it all */
		struct compile_read **changed = calloc(f->retired.n + f->fresh.n + 1, sizeof(*changed));
		if (!changed)
			break;
		memcpy(changed, f->retired.v, f->retired.n * sizeof(*changed));
		memcpy(changed + f->retired.n, f->fresh.v, f->fresh.n * sizeof(*changed));
		compile_memo_free(f->pending);
		f->pending = NULL;
		int crc = compile_plan_update(o, in, n, changed, f->retired.n + f->fresh.n, &dm->plan,
					      round ? NULL : f->memo, &f->pending, &compiled, &d, &st);
		free(changed);
		if (!crc) {
			f->vs_built = st.vs_built;
			f->vs_total = st.vs_total;
			if (f->verify && f->vs_built < f->vs_total)
				verify_partial(f, o, in, n, &compiled);
			/* the plan alone, not the records behind it nor the last plan a partial build shares */
			rc = plan_copy(&compiled, plan);
			plan_free(&compiled);
			if (rc)
				log_error("kubernetes: out of memory copying the plan");
		} else {
			size_t r = refuse(f, &d);
			*refused += r;
			if (!r) {   /* errors in no object we can take back: nothing to fall back to */
				diags_print(&d, stderr);
				diags_free(&d);
				break;
			}
		}
		diags_free(&d);
	}
	free(in);
	return rc;
}

#define RETRY_MAX_MS 30000

static void observe(struct histogram *h, uint64_t ms)
{
	size_t b = 0;
	while (b < HIST_BOUNDS && (double)ms > hist_le_ms[b])
		b++;
	h->bucket[b]++;
	h->count++;
	h->sum_ms += ms;
}

static void histogram_metric(FILE *out, const char *name, const char *help, const struct histogram *h)
{
	uint64_t cum = 0;
	fprintf(out, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
	for (size_t b = 0; b <= HIST_BOUNDS; b++) {
		cum += h->bucket[b];
		if (b < HIST_BOUNDS)
			fprintf(out, "%s_bucket{le=\"%g\"} %llu\n", name, hist_le_ms[b] / 1000, (unsigned long long)cum);
		else
			fprintf(out, "%s_bucket{le=\"+Inf\"} %llu\n", name, (unsigned long long)cum);
	}
	fprintf(out, "%s_sum %.3f\n%s_count %llu\n", name, (double)h->sum_ms / 1000, name, (unsigned long long)h->count);
}

/* The data plane refused the batch's plan (memory short for a moment, say): the last one keeps
 * serving, the batch is tried again, less and less often, and builds everything. */
static void refused_by_dataplane(struct follower *f, int rc)
{
	f->retry_ms = f->retry_ms ? (f->retry_ms * 2 > RETRY_MAX_MS ? RETRY_MAX_MS : f->retry_ms * 2) : 1000;
	snprintf(f->last_result, sizeof(f->last_result),
		 "the data plane refused the plan (%s); the last one keeps serving, trying again in %u s", strerror(-rc),
		 f->retry_ms / 1000);
	log_error("kubernetes: %s", f->last_result);
	forget_memo(f);
	f->batch_failures++;
	f->dirty = true;
	f->due = proto_now_ms() + f->retry_ms;
}

/* What compiled is the new last good. */
static void make_good(struct kobj *o)
{
	if (!o->errors && o->read && o->good != o->read) {
		compile_read_free(o->good);
		o->good = compile_read_hold(o->read);
	}
}

/* The batch's plan serves: its figures, and its log line when the generation moved. */
static void adopted(struct daemon *dm, struct follower *f, uint64_t gen, const struct dataplane_stats *st,
		    uint64_t t0)
{
	bool changed = gen != dm->generation;
	f->retry_ms = 0;
	dm->generation = gen;
	forget_changes(f);
	f->last_apply = time(NULL);
	uint64_t done = proto_now_ms();
	f->last_apply_ms = done - t0;
	f->batches++;
	observe(&f->apply, f->last_apply_ms);
	if (changed && f->changed_at)
		observe(&f->programming, done - f->changed_at);
	f->changed_at = 0;
	memcpy(f->applied_rv, f->drained_rv, sizeof(f->applied_rv));
	snprintf(f->last_result, sizeof(f->last_result),
		 "generation %llu: %zu services, %u written, %u removed; built %zu of %zu VirtualServices",
		 (unsigned long long)gen, dm->plan.n_services, st->services_written, st->services_removed, f->vs_built,
		 f->vs_total);
	if (changed)
		log_info("kubernetes: %s in %llu ms", f->last_result, (unsigned long long)f->last_apply_ms);
}

static void save_warn(const char *why)
{
	log_warn("kubernetes: %s (the API server holds the truth; a restart relists it)", why);
}

/* The quick path for a batch of pods (compile_pods_update): only the objects it touched read, only
 * the entries that changed written to the maps (dataplane_apply_services) and journaled, in
 * proportion to the change and not to the cluster. false: the batch is built the usual way, with
 * what was read here. */
static bool quick_batch(struct daemon *dm, struct follower *f, uint64_t t0)
{
	const struct compile_opts *o = &f->opts;
	struct compile_delta delta;
	struct compile_stats cst;
	if (!f->memo || f->touched_all || f->refused_now)
		return false;
	for (size_t i = 0; i < f->touched.n; i++)
		feed(f, f->touched.v[i]);
	if (compile_pods_update(o, (struct compile_read *const *)f->retired.v, f->retired.n,
				(struct compile_read *const *)f->fresh.v, f->fresh.n, &dm->plan, f->memo, &delta, &cst))
		return false;
	size_t n = delta.entries.n_services;
	struct plan_service *was = calloc(n + 1, sizeof(*was));
	const struct plan_service **svcs = calloc(n + 1, sizeof(*svcs));
	if (!was || !svcs)
		abort();
	for (size_t i = 0; i < n; i++) {   /* dm->plan takes the new entries; the old ones are kept to put back */
		struct plan_service *ps = &dm->plan.services[delta.at[i]];
		was[i] = *ps;
		plan_service_copy(&f->patches, &delta.entries.services[i], ps);
		svcs[i] = ps;
	}
	compile_delta_free(&delta);
	f->vs_built = cst.vs_built;
	f->vs_total = cst.vs_total;
	if (f->verify) {
		struct compile_read **in = calloc(f->n_objects + 1, sizeof(*in));
		if (in)
			verify_partial(f, o, in, gather(f, in), &dm->plan);
		free(in);
	}
	uint64_t gen = dm->generation;
	struct dataplane_stats st = { 0 };
	int rc = n ? dataplane_apply_services(dm->dp, svcs, n, false, &gen, &st) : 0;
	if (rc) {
		for (size_t i = 0; i < n; i++)
			*(struct plan_service *)svcs[i] = was[i];
		refused_by_dataplane(f, rc);
	} else {
		bool changed = gen != dm->generation;
		for (size_t i = 0; i < f->touched.n; i++)
			make_good(f->touched.v[i]);
		adopted(dm, f, gen, &st, t0);
		char why[512];
		long long size = changed ? journal_append_services(dm, svcs, n, why, sizeof(why)) : 0;
		if ((size < 0 || size > JOURNAL_MAX) && save_plan(dm, why, sizeof(why)))
			save_warn(why);
	}
	if (f->patches.used > PATCHES_MAX) {   /* the replaced entries' room back: dm->plan in one piece */
		struct plan whole;
		if (!plan_copy(&dm->plan, &whole)) {
			plan_free(&dm->plan);
			dm->plan = whole;
			arena_free(&f->patches);
		}
	}
	free(was);
	free(svcs);
	return true;
}

/* One batch: compile the store, switch the data plane, save. */
static void apply_batch(struct daemon *dm, struct follower *f)
{
	struct plan plan;
	size_t refused;
	uint64_t t0 = proto_now_ms();
	f->dirty = false;
	bool quick = quick_batch(dm, f, t0);
	untouch_all(f);
	if (quick)
		return;
	if (compile_store(dm, f, &plan, &refused)) {
		snprintf(f->last_result, sizeof(f->last_result), "no plan compiles; the last one keeps serving");
		f->changed_at = 0;   /* not programmed: the fix, when it comes, is timed from its arrival */
		log_error("kubernetes: %s", f->last_result);
		log_refused(f);
		forget_memo(f);
		f->batch_failures++;
		return;
	}
	log_refused(f);
	f->last_refused = refused;
	uint64_t gen;
	struct dataplane_stats st;
	int rc = dataplane_apply(dm->dp, &plan, &gen, &st);
	if (rc) {
		plan_free(&plan);
		refused_by_dataplane(f, rc);
		return;
	}
	for (size_t b = 0; b < STORE_BUCKETS; b++)
		for (struct kobj *o = f->buckets[b]; o; o = o->next)
			make_good(o);
	bool changed = gen != dm->generation;
	plan_free(&dm->plan);
	arena_free(&f->patches);   /* entries the quick path put in the plan gone with it */
	dm->plan = plan;
	compile_memo_free(f->memo);   /* the memo now describes dm->plan */
	f->memo = f->pending;
	f->pending = NULL;
	adopted(dm, f, gen, &st, t0);
	char why[512];
	if (changed && save_plan(dm, why, sizeof(why)))
		save_warn(why);
	malloc_trim(0);
}

/* ---- the follower in sluiced's loop ---- */

static const char *const istio_versions[] = { "v1", "v1beta1", "v1alpha3", NULL };

static const struct {
	const char *kind, *group, *resource;
	const char *const *versions;
} resources[] = {
	{ "Service", NULL, "services", NULL },
	{ "Pod", NULL, "pods", NULL },
	{ "VirtualService", "networking.istio.io", "virtualservices", istio_versions },
	{ "DestinationRule", "networking.istio.io", "destinationrules", istio_versions },
	{ "Gateway", "networking.istio.io", "gateways", istio_versions },
};

int follower_start(struct daemon *dm)
{
	char err[512];
	struct follower *f = calloc(1, sizeof(*f));
	if (!f)
		return -ENOMEM;
	if (kube_config_load(&f->cfg, dm->kubeconfig, dm->kube_context, !dm->kubeconfig && kube_in_cluster(), err,
			     sizeof(err))) {
		log_error("kubernetes: %s", err);
		free(f);
		return -EINVAL;
	}
	f->verify = getenv("SLUICE_VERIFY_INCREMENTAL") != NULL;
	f->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (f->efd < 0) {
		free(f);
		return -errno;
	}
	pthread_mutex_init(&f->qlock, NULL);
	f->coalesce_ms = dm->coalesce_ms;
	f->opts.gateway_address = dm->gateway_address;
	size_t n_ns = dm->n_namespaces ? dm->n_namespaces : 1;
	for (size_t i = 0; i < sizeof(resources) / sizeof(resources[0]); i++)
		for (size_t k = 0; k < n_ns && f->n_refl < MAX_REFLECTORS; k++) {
			struct reflector *r = &f->refl[f->n_refl++];
			r->kind = resources[i].kind;
			r->group = resources[i].group;
			r->resource = resources[i].resource;
			r->versions = resources[i].versions;
			r->namespace = dm->n_namespaces ? dm->namespaces[k] : NULL;
			r->idle_s = dm->watch_idle_s;
		}
	dm->follower = f;
	for (size_t i = 0; i < f->n_refl; i++)
		if (reflector_start(&f->refl[i], &f->cfg, &callbacks, f, &f->stop)) {
			log_error("kubernetes: cannot start the %s reflector", f->refl[i].kind);
			return -EAGAIN;
		}
	log_info("kubernetes: following %s (context %s, %s) for %zu resource%s%s", f->cfg.server, f->cfg.context,
		 f->cfg.source, f->n_refl, f->n_refl == 1 ? "" : "s", dm->n_namespaces ? " in the namespaces given" : "");
	return 0;
}

int follower_fd(struct daemon *dm)
{
	return dm->follower ? dm->follower->efd : -1;
}

uint64_t follower_due(struct daemon *dm)
{
	struct follower *f = dm->follower;
	return f && f->dirty && f->synced ? f->due : 0;
}

void follower_work(struct daemon *dm, uint64_t now, bool readable)
{
	struct follower *f = dm->follower;
	if (!f)
		return;
	if (readable) {
		bool was_dirty = f->dirty;
		drain(f);
		if (f->dirty && !was_dirty) {
			f->due = now + f->coalesce_ms;   /* changes that arrive together make one generation */
			if (f->synced)
				f->changed_at = now;     /* the first sync is not a change to program */
		}
		if (!f->synced) {
			bool all = true;
			for (size_t i = 0; i < f->n_refl; i++)
				all = all && f->listed[i];
			if (all) {
				f->synced = true;
				f->dirty = true;
				f->due = now;
				log_info("kubernetes: every resource listed (%zu objects): building the plan", f->n_objects);
				malloc_trim(0);   /* the listing's pages, freed in the reflectors' arenas: back before the build */
			}
		}
	}
	if (f->synced && f->dirty && now >= f->due)
		apply_batch(dm, f);
}

void follower_stop(struct daemon *dm)
{
	struct follower *f = dm->follower;
	if (!f)
		return;
	f->stop = 1;
	for (size_t i = 0; i < f->n_refl; i++)
		reflector_join(&f->refl[i]);
	drain(f);
	for (size_t b = 0; b < STORE_BUCKETS; b++)
		while (f->buckets[b]) {
			struct kobj *o = f->buckets[b];
			f->buckets[b] = o->next;
			kobj_free(f, o);
		}
	forget_changes(f);
	ptrvec_free(&f->retired);
	ptrvec_free(&f->retired_keys);
	ptrvec_free(&f->fresh);
	ptrvec_free(&f->touched);
	struct plan whole;   /* dm->plan outlives the follower: in one piece of its own */
	if (f->patches.used && !plan_copy(&dm->plan, &whole)) {
		plan_free(&dm->plan);
		dm->plan = whole;
	}
	arena_free(&f->patches);
	compile_memo_free(f->memo);
	compile_memo_free(f->pending);
	close(f->efd);
	kube_config_free(&f->cfg);
	free(f);
	dm->follower = NULL;
}

bool follower_active(const struct daemon *dm)
{
	return dm->follower != NULL;
}

const char *follower_server(const struct daemon *dm)
{
	return dm->follower ? dm->follower->cfg.server : "";
}

static void time_str(time_t t, char *buf, size_t len)
{
	struct tm tm;
	if (!t) {
		snprintf(buf, len, "never");
		return;
	}
	gmtime_r(&t, &tm);
	strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}


bool follower_applied(const struct daemon *dm)
{
	return dm->follower && dm->follower->last_apply;
}

static void kind_metric(FILE *out, const char *name, const char *kind, double v)
{
	fprintf(out, "%s{", name);
	metrics_label(out, "kind", kind, true);
	fprintf(out, "} %.17g\n", v);
}

/* The follower's part of /metrics; nothing without --kubernetes. */
void follower_metrics(struct daemon *dm, FILE *out)
{
	struct follower *f = dm->follower;
	if (!f)
		return;
	fprintf(out, "# HELP sluice_kubernetes_synced 1 once every resource was listed.\n"
		     "# TYPE sluice_kubernetes_synced gauge\nsluice_kubernetes_synced %d\n", f->synced);
	fprintf(out, "# HELP sluice_kubernetes_objects Objects held from the API.\n"
		     "# TYPE sluice_kubernetes_objects gauge\nsluice_kubernetes_objects %zu\n", f->n_objects);
	size_t refused = 0;
	for (size_t b = 0; b < STORE_BUCKETS; b++)
		for (struct kobj *o = f->buckets[b]; o; o = o->next)
			refused += o->errors != NULL;
	fprintf(out, "# HELP sluice_kubernetes_refused_objects Objects the compiler refuses (see /status).\n"
		     "# TYPE sluice_kubernetes_refused_objects gauge\nsluice_kubernetes_refused_objects %zu\n", refused);
	fprintf(out, "# HELP sluice_kubernetes_batches_total Batches of API changes applied to the data plane.\n"
		     "# TYPE sluice_kubernetes_batches_total counter\nsluice_kubernetes_batches_total %llu\n",
		(unsigned long long)f->batches);
	fprintf(out, "# HELP sluice_kubernetes_batch_failures_total Batches that changed nothing: no plan compiled, or "
		     "the data plane refused it.\n# TYPE sluice_kubernetes_batch_failures_total counter\n"
		     "sluice_kubernetes_batch_failures_total %llu\n", (unsigned long long)f->batch_failures);
	fprintf(out, "# HELP sluice_kubernetes_last_apply_timestamp_seconds When a batch was last applied.\n"
		     "# TYPE sluice_kubernetes_last_apply_timestamp_seconds gauge\n"
		     "sluice_kubernetes_last_apply_timestamp_seconds %lld\n", (long long)f->last_apply);
	histogram_metric(out, "sluice_kubernetes_apply_duration_seconds",
			 "A batch from compile to the switch settled (kube-proxy's sync_proxy_rules_duration_seconds).",
			 &f->apply);
	histogram_metric(out, "sluice_kubernetes_network_programming_duration_seconds",
			 "An API change from its arrival (the first of its batch) to the data plane serving it, "
			 "--coalesce-ms and retries included (kube-proxy's network_programming_duration_seconds).",
			 &f->programming);
	static const char *const names[][2] = {
		{ "sluice_kubernetes_resource_synced", "1 once the resource was listed (an absent CRD counts as listed)." },
		{ "sluice_kubernetes_resource_installed", "0 while the API does not serve the resource (a CRD not installed)." },
		{ "sluice_kubernetes_resource_version", "The last resourceVersion seen, when the API's are numbers (etcd's)." },
		{ "sluice_kubernetes_applied_resource_version", "The resourceVersion of the last event in the last batch applied." },
		{ "sluice_kubernetes_resource_failing", "1 while the last list or watch of the resource failed (see /status)." },
		{ "sluice_kubernetes_lists_total", "Lists started (the first, and after 410 Gone)." },
		{ "sluice_kubernetes_watches_total", "Watches started." },
	};
	for (size_t m = 0; m < sizeof(names) / sizeof(names[0]); m++) {
		fprintf(out, "# HELP %s %s\n# TYPE %s %s\n", names[m][0], names[m][1], names[m][0],
			strstr(names[m][0], "_total") ? "counter" : "gauge");
		for (size_t i = 0; i < f->n_refl; i++) {
			struct reflector_state st;
			reflector_state(&f->refl[i], &st);
			char *end;
			const char *rvs = m == 3 ? f->applied_rv[i] : st.resource_version;
			double rv = strtod(rvs, &end);
			double v[] = { st.synced, !st.absent, rv, rv, st.error[0] != 0, st.lists, st.watches };
			if ((m == 2 || m == 3) && (!rvs[0] || *end))
				continue;
			kind_metric(out, names[m][0], f->refl[i].kind, v[m]);
		}
	}
}

void follower_status(struct daemon *dm, json_writer_t *w, FILE *out)
{
	struct follower *f = dm->follower;
	char when[32];
	if (!f) {
		if (w)
			jsonw_null_field(w, "kubernetes");
		return;
	}
	if (w) {
		jsonw_name(w, "kubernetes");
		jsonw_start_object(w);
		jsonw_string_field(w, "server", f->cfg.server);
		jsonw_string_field(w, "context", f->cfg.context);
		jsonw_bool_field(w, "synced", f->synced);
		jsonw_uint_field(w, "objects", f->n_objects);
		jsonw_uint_field(w, "objectsRead", f->reads);
		time_str(f->last_apply, when, sizeof(when));
		jsonw_string_field(w, "lastApplied", when);
		jsonw_uint_field(w, "lastApplyMs", f->last_apply_ms);
		jsonw_string_field(w, "lastResult", f->last_result);
		jsonw_name(w, "resources");
		jsonw_start_array(w);
	} else {
		fprintf(out, "kubernetes %s (context %s): %s, %zu objects, last applied %s%s%s\n", f->cfg.server,
			f->cfg.context, f->synced ? "synced" : "not synced yet", f->n_objects,
			(time_str(f->last_apply, when, sizeof(when)), when), f->last_result[0] ? ": " : "", f->last_result);
	}
	for (size_t i = 0; i < f->n_refl; i++) {
		struct reflector_state st;
		reflector_state(&f->refl[i], &st);
		time_str(st.last_event, when, sizeof(when));
		if (w) {
			jsonw_start_object(w);
			jsonw_string_field(w, "kind", f->refl[i].kind);
			if (f->refl[i].group)
				jsonw_string_field(w, "group", f->refl[i].group);
			jsonw_string_field(w, "version", st.version);
			if (f->refl[i].namespace)
				jsonw_string_field(w, "namespace", f->refl[i].namespace);
			jsonw_bool_field(w, "synced", st.synced);
			jsonw_bool_field(w, "installed", !st.absent);
			jsonw_string_field(w, "resourceVersion", st.resource_version);
			jsonw_string_field(w, "lastEvent", when);
			jsonw_uint_field(w, "lists", st.lists);
			jsonw_uint_field(w, "watches", st.watches);
			jsonw_string_field(w, "error", st.error);
			jsonw_end_object(w);
		} else {
			fprintf(out, "  %-16s %-8s %-10s rv %-10s last event %s%s%s\n", f->refl[i].kind, st.version,
				st.absent ? "absent" : st.synced ? "synced" : "syncing", st.resource_version, when,
				st.error[0] ? "  error: " : "", st.error);
		}
	}
	if (w) {
		jsonw_end_array(w);
		/* what `sluice status --cluster` and `weight --wait` compare with the API: per VirtualService
		 * the resourceVersion seen and the one applied (its last good version, serving now) */
		jsonw_name(w, "virtualServices");
		jsonw_start_array(w);
		for (size_t b = 0; b < STORE_BUCKETS; b++)
			for (struct kobj *o = f->buckets[b]; o; o = o->next) {
				char seen[32], applied[32];
				if (strncmp(o->key, "VirtualService ", 15))
					continue;
				const char *slash = strchr(o->key + 15, '/');
				jsonw_start_object(w);
				if (slash) {   /* always: the key is "VirtualService namespace/name" */
					char ns[256];
					snprintf(ns, sizeof(ns), "%.*s", (int)(slash - (o->key + 15)), o->key + 15);
					jsonw_string_field(w, "namespace", ns);
					jsonw_string_field(w, "name", slash + 1);
				}
				const char *now = o->json ? o->json : compile_read_text(o->read);   /* a VirtualService's is kept */
				jsonw_string_field(w, "resourceVersion", json_rv(now, seen, sizeof(seen)));
				jsonw_string_field(w, "appliedResourceVersion",
						   json_rv(compile_read_text(o->good), applied, sizeof(applied)));
				jsonw_end_object(w);
			}
		jsonw_end_array(w);
		jsonw_name(w, "refused");
		jsonw_start_array(w);
	}
	for (size_t b = 0; b < STORE_BUCKETS; b++)
		for (struct kobj *o = f->buckets[b]; o; o = o->next) {
			if (!o->errors)
				continue;
			if (w) {
				jsonw_start_object(w);
				jsonw_string_field(w, "object", o->key);
				jsonw_bool_field(w, "lastGoodServes", o->good != NULL);
				jsonw_string_field(w, "errors", o->errors);
				jsonw_end_object(w);
			} else {
				fprintf(out, "  refused (%s): %s\n", o->good ? "its last good version serves" : "left out",
					o->errors);
			}
		}
	if (w) {
		jsonw_end_array(w);
		jsonw_end_object(w);
	}
}
