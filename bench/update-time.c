// SPDX-License-Identifier: MIT
/* The follower's build at scale: every object of a plan-gen.awk file read once (compile_read), a
 * whole build, then changes of one object each built as sluiced --kubernetes builds a batch: 100
 * pods turning unready (or ready again), each on the quick path (compile_pods_update) when it takes
 * it, else with compile_plan_update; 100 VirtualServices' weights swapped (compile_plan_update),
 * each followed by a pod's change (the quick path's index carried over the VirtualService's build).
 * Prints the time of each kind of build, median and worst.
 *   update-time FILE */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/fs.h"
#include "compile/compile.h"
#include "plan/plan.h"

static double now_ms(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

struct doc {
	char name[32];
	char *text;
	struct compile_read *read;
};

static struct compile_opts opts;
static struct compile_memo *memo;
static struct plan last;

static struct arena patches;   /* entries the quick path put in last, as the follower keeps them */
static size_t quick;            /* changes that took it */

/* One build of the reads with what changed (changed[0] the version before, changed[1] after); the
 * plan adopted as the follower adopts it. */
static double update(struct doc *docs, size_t n, struct compile_read **changed, size_t n_changed,
		     struct compile_stats *st)
{
	struct compile_read **reads = malloc(n * sizeof(*reads));
	for (size_t i = 0; i < n; i++)
		reads[i] = docs[i].read;
	struct diags d = { 0 };
	struct plan p, copy;
	struct compile_memo *next;
	struct compile_delta delta;
	double t0 = now_ms();
	if (n_changed == 2 && !compile_pods_update(&opts, changed, 1, changed + 1, 1, &last, memo, &delta, st)) {
		for (size_t i = 0; i < delta.entries.n_services; i++)
			plan_service_copy(&patches, &delta.entries.services[i], &last.services[delta.at[i]]);
		compile_delta_free(&delta);
		free(reads);
		quick++;
		return now_ms() - t0;
	}
	int rc = compile_plan_update(&opts, reads, n, changed, n_changed, last.services ? &last : NULL, memo, &next,
				     &p, &d, st);
	if (!rc && plan_copy(&p, &copy))
		rc = -1;
	double t = now_ms() - t0;
	if (rc) {
		diags_print(&d, stderr);
		exit(1);
	}
	plan_free(&p);
	plan_free(&last);
	arena_free(&patches);
	last = copy;
	compile_memo_free(memo);
	memo = next;
	free(reads);
	return t;
}

/* Document i with from replaced by to, read again; the changed reads are the old and the new. */
static void change(struct doc *dc, const char *from, const char *to, struct compile_read **changed)
{
	char *at = strstr(dc->text, from);
	if (!at) {
		fprintf(stderr, "update-time: %s has no %s\n", dc->name, from);
		exit(1);
	}
	size_t pre = (size_t)(at - dc->text);
	char *text = malloc(strlen(dc->text) - strlen(from) + strlen(to) + 1);
	sprintf(text, "%.*s%s%s", (int)pre, dc->text, to, at + strlen(from));
	free(dc->text);
	dc->text = text;
	changed[0] = dc->read;
	struct compile_input in = { .name = dc->name, .buf = (const unsigned char *)text, .len = strlen(text) };
	dc->read = changed[1] = compile_read(&opts, &in);
}

static void report(const char *what, double *t, int n)
{
	qsort(t, (size_t)n, sizeof(*t), cmp);
	printf("%-44s median %7.2f ms   worst %7.2f ms\n", what, t[n / 2], t[n - 1]);
}

int main(int argc, char **argv)
{
	unsigned char *buf;
	size_t len;
	if (argc != 2 || fs_read_file(argv[1], &buf, &len)) {
		fputs("usage: update-time FILE (bench/plan-gen.awk's output)\n", stderr);
		return 2;
	}
	size_t n = 0, cap = 1024;
	struct doc *docs = calloc(cap, sizeof(*docs));
	for (char *s = (char *)buf, *end; s && *s; s = end ? end + 5 : NULL) {   /* one object per document */
		end = strstr(s, "\n---\n");
		if (n == cap)
			docs = realloc(docs, (cap *= 2) * sizeof(*docs));
		docs[n].text = strndup(s, end ? (size_t)(end - s + 1) : strlen(s));
		snprintf(docs[n].name, sizeof(docs[n].name), "object %zu", n);
		n++;
	}
	double t0 = now_ms();
	for (size_t i = 0; i < n; i++) {
		struct compile_input in = { .name = docs[i].name, .buf = (const unsigned char *)docs[i].text,
					    .len = strlen(docs[i].text) };
		docs[i].read = compile_read(&opts, &in);
	}
	double t_read = now_ms() - t0;
	struct compile_stats st;
	double t_whole = update(docs, n, NULL, 0, &st);
	printf("%zu objects, %zu plan services, %zu VirtualServices\n", n, st.services, st.vs_total);
	printf("%-44s %6.1f ms\n", "every object read (compile_read)", t_read);
	printf("%-44s %6.1f ms\n", "a whole build from the reads", t_whole);
	double pod[100], vs[100], after[100];
	size_t built = 0;
	srandom(1);
	for (int k = 0; k < 300; k++) {
		struct compile_read *changed[2];
		size_t i;
		bool weights = k >= 100 && k % 2 == 0;   /* 100 pods, then VirtualServices and pods in turn */
		do
			i = (size_t)random() % n;
		while (!strstr(docs[i].text, weights ? "kind: VirtualService" : "kind: Pod"));
		if (weights) {
			bool ninety = strstr(docs[i].text, "weight: 90");
			change(&docs[i], ninety ? "weight: 90" : "weight: 10", ninety ? "weight: 10" : "weight: 90", changed);
		} else {
			bool ready = strstr(docs[i].text, "status: \"True\"");
			change(&docs[i], ready ? "status: \"True\"" : "status: \"False\"",
			       ready ? "status: \"False\"" : "status: \"True\"", changed);
		}
		size_t quick_before = quick;
		double t = update(docs, n, changed, 2, &st);
		if (k < 100 && quick > quick_before)
			pod[k] = t;
		else if (k < 100)
			pod[k] = -1;
		else if (weights)
			vs[(k - 100) / 2] = t;
		else
			after[(k - 100) / 2] = t;
		built += st.vs_built;
		compile_read_free(changed[0]);
	}
	int n_quick = 0;
	for (int k = 0; k < 100; k++)
		if (pod[k] >= 0)
			pod[n_quick++] = pod[k];
	char what[64];
	snprintf(what, sizeof(what), "a pod turns unready or ready (%d quick)", n_quick);
	if (n_quick)
		report(what, pod, n_quick);
	report("a VirtualService's weights (100 builds)", vs, 100);
	report("the first pod's change after it (100)", after, 100);
	printf("VirtualServices built per change: %.1f on average\n", built / 300.0);
	return 0;
}
