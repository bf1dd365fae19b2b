// SPDX-License-Identifier: MIT
/* The ways compile_plan reads an input (compile_opts.reading) against the plainest, each document
 * a whole tree on one thread: the same plan or the same errors, over every fixture of tests/unit
 * split at each of its lines, and over Lists as `kubectl get -o yaml` prints them, clean and with
 * what must make the quick ways give up (a List that is no List, an object in both halves, a
 * document libyaml must read, errors on both sides of the split). Counts, per input, how often
 * the two threads' reading was kept, and fails where it must be and was not. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "compile/compile.h"
#include "plan/plan.h"
#include "outcome.h"

static int failures, cases;

struct text {
	char *s;
	size_t len;
	FILE *f;
};

static void text_open(struct text *t)
{
	t->s = NULL;
	t->len = 0;
	t->f = open_memstream(&t->s, &t->len);
	if (!t->f)
		abort();
}

static void text_close(struct text *t)
{
	fclose(t->f);
}

static size_t streamed;   /* the last compile's items read one by one */

/* The outcome of compiling in as o says; *split: inputs read on two threads. */
static char *compile_as(struct compile_input *in, size_t n, enum compile_reading how, size_t from, size_t *split)
{
	struct compile_opts o = { .reading = how, .split_from = from };
	struct plan plan;
	struct diags d = { 0 };
	struct compile_stats st;
	int rc = compile_plan(&o, in, n, &plan, &d, &st);
	char *s = outcome(rc, &plan, &d);
	if (!rc)
		plan_free(&plan);
	diags_free(&d);
	if (split)
		*split = st.inputs_split;
	streamed = st.items_streamed;
	return s;
}

/* Every way, and the split looked for from each line start of the longest input, against WHOLE.
 * Returns how many compiles kept the split. */
static size_t check(const char *what, struct compile_input *in, size_t n)
{
	char *want = compile_as(in, n, COMPILE_READ_WHOLE, 0, NULL);
	size_t kept = 0, longest = 0;
	for (size_t i = 0; i < n; i++)
		if (in[i].len > in[longest].len)
			longest = i;
	const unsigned char *buf = in[longest].buf;
	for (size_t from = 0; from <= in[longest].len; from++) {
		bool extra = from == 0;   /* from 0: STREAM and BEST once, then SPLIT at each line start */
		if (!extra && buf[from - 1] != '\n')
			continue;
		for (int how = extra ? COMPILE_READ_BEST : COMPILE_READ_SPLIT; how <= COMPILE_READ_STREAM; how++) {
			if (!extra && how != COMPILE_READ_SPLIT)
				continue;
			size_t split = 0;
			char *got = compile_as(in, n, how, from ? from - 1 : 0, &split);
			cases++;
			kept += split;
			if (strcmp(want, got)) {
				failures++;
				printf("FAIL %s, read %s (split looked for from byte %zu):\n--- whole\n%s--- read so\n%s", what,
				       how == COMPILE_READ_SPLIT ? "on two threads" : how == COMPILE_READ_STREAM ? "streamed" : "best",
				       from ? from - 1 : 0, want, got);
				free(got);
				free(want);
				return kept;
			}
			free(got);
		}
	}
	free(want);
	return kept;
}

static void fixture(const char *path, void *ctx)
{
	(void)ctx;
	struct sources src = { 0 };
	struct diags d = { 0 };
	if (!sources_read(&src, path, &d) && src.n)
		check(path, src.v, src.n);
	diags_free(&d);
	sources_free(&src);
}

/* ---- Lists as kubectl prints them ---- */

/* One object, its lines each prefixed: "- " for the first of an item, "  " after. */
static void object(struct text *t, bool item, const char *fmt, ...)
{
	char *s;
	va_list ap;
	va_start(ap, fmt);
	if (vasprintf(&s, fmt, ap) < 0)
		abort();
	va_end(ap);
	bool first = true;
	for (char *line = strtok(s, "\n"); line; line = strtok(NULL, "\n")) {
		fprintf(t->f, "%s%s\n", item ? (first ? "- " : "  ") : "", line);
		first = false;
	}
	free(s);
}

enum defect {
	CLEAN,
	BAD_PORT,          /* an error in an item past the middle */
	BAD_BOTH,          /* errors in items before and past the middle */
	DUP_ACROSS,        /* one Pod at the start and again past the middle */
	NOT_LIST,          /* kind: PodBundle: its items are no objects */
	LIST_V2,           /* kind: List of apiVersion v2 */
	BLOCK_SCALAR,      /* a block scalar in a late item: libyaml reads the document */
	TWO_ITEMS,         /* the root has "items" twice */
	DOCS,              /* the objects as documents, not a List */
	DOCS_DUP,          /* the same, one Service twice */
	DOCS_DIRECTIVE,    /* the same, a %YAML directive before a late document */
	INDENTED,          /* the List's items indented under "items:" */
	SHARED_VIP,        /* a List, Services with pods' addresses, early and late: the build's errors name both */
	DOCS_SHARED_VIP,   /* the same as documents */
	N_DEFECTS
};

static const char *const defect_names[] = {
	"a clean List", "a List, a bad port past the middle", "a List, bad ports on both sides",
	"a List, a Pod at the start and past the middle", "a PodBundle with items", "a List of apiVersion v2",
	"a List, a block scalar late", "a List with items twice", "documents", "documents, a Service twice",
	"documents, a directive late", "a List indented", "a List, VIPs that are pods' addresses",
	"documents, VIPs that are pods' addresses",
};

/* services Services, each with a DestinationRule, a VirtualService and 3 Pods. */
static void cluster(struct text *t, int services, enum defect x)
{
	bool docs = x == DOCS || x == DOCS_DUP || x == DOCS_DIRECTIVE || x == DOCS_SHARED_VIP, item = !docs;
	if (!docs)
		fprintf(t->f, "apiVersion: %s\nitems:\n", x == LIST_V2 ? "v2" : "v1");
	for (int s = 0; s < services; s++) {
		bool late = s == services * 3 / 4;
		if (docs)
			fprintf(t->f, "%s---\n", x == DOCS_DIRECTIVE && late ? "...\n%YAML 1.1\n" : "");
		char svc[64];
		snprintf(svc, sizeof(svc), "svc-%d", (x == DOCS_DUP && late) ? 0 : s);
		/* the shared VIPs: a late Service takes the first pod's address, the second the last pod's */
		char vip[32];
		bool shared = x == SHARED_VIP || x == DOCS_SHARED_VIP;
		if (shared && late)
			snprintf(vip, sizeof(vip), "10.0.0.1");
		else if (shared && s == 1)
			snprintf(vip, sizeof(vip), "10.0.0.%d", services * 3);
		else
			snprintf(vip, sizeof(vip), "198.19.%d.%d", s / 250, s % 250 + 1);
		object(t, item, "apiVersion: v1\nkind: Service\nmetadata:\n  labels:\n    app: %s\n  name: %s\n"
				"  namespace: team\nspec:\n  clusterIPs:\n  - %s\n  ports:\n  - name: http\n"
				"    port: %d\n    protocol: TCP\n    targetPort: 8080\n  selector:\n    app: svc-%d\n"
				"  type: ClusterIP\nstatus:\n  loadBalancer: {}",
		       svc, svc, vip, (x == BAD_PORT && late) || (x == BAD_BOTH && (late || s == 1)) ? 70000 : 80, s);
		if (docs)
			fprintf(t->f, "---\n");
		object(t, item, "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata:\n  name: svc-%d\n"
				"  namespace: team\nspec:\n  host: svc-%d\n  subsets:\n  - labels:\n      version: v1\n"
				"    name: v1\n  - labels:\n      version: v2\n    name: v2",
		       s, s);
		if (docs)
			fprintf(t->f, "---\n");
		object(t, item, "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: svc-%d\n"
				"  namespace: team\nspec:\n  hosts:\n  - svc-%d\n  http:\n  - route:\n    - destination:\n"
				"        host: svc-%d\n        subset: v1\n      weight: 90\n    - destination:\n"
				"        host: svc-%d\n        subset: v2\n      weight: 10",
		       s, s, s, s);
		for (int p = 0; p < 3; p++) {
			if (docs)
				fprintf(t->f, "---\n");
			int pod = (x == DUP_ACROSS && late && p == 0) ? 0 : s * 3 + p;
			object(t, item, "apiVersion: v1\nkind: Pod\nmetadata:\n  %s\n  labels:\n    app: svc-%d\n"
					"    version: v%d\n  name: pod-%d\n  namespace: team\nspec:\n  containers:\n"
					"  - image: registry.example/app:v1\n    name: app\nstatus:\n  conditions:\n"
					"  - status: \"True\"\n    type: Ready\n  phase: Running\n  podIP: 10.0.%d.%d",
			       x == BLOCK_SCALAR && late && !p ? "annotations:\n    note: |\n      written by hand" : "uid: u",
			       s, p % 2 + 1, pod, pod / 250, pod % 250 + 1);
		}
	}
	if (!docs)
		fprintf(t->f, "kind: %s\nmetadata:\n  resourceVersion: \"\"\n", x == NOT_LIST ? "PodBundle" : "List");
	if (x == TWO_ITEMS)
		fprintf(t->f, "items: []\n");
}

/* The clean List with its items two columns in ("items:\n  - ..."): streamed, never split. */
static void indented(struct text *t, int services)
{
	struct text flat;
	text_open(&flat);
	cluster(&flat, services, CLEAN);
	text_close(&flat);
	for (char *line = strtok(flat.s, "\n"); line; line = strtok(NULL, "\n"))
		fprintf(t->f, "%s%s\n", strncmp(line, "- ", 2) && strncmp(line, "  ", 2) ? "" : "  ", line);
	free(flat.s);
}

/* ---- Lists as `kubectl get -o json` prints them ---- */

enum json_defect { J_CLEAN, J_BAD_PORT, J_NOT_LIST, J_TWO_ITEMS, J_TAB, J_KIND_FIRST, J_ITEMS_OBJECT, J_SHARED_VIP, N_JSON };

static const char *const json_names[] = {
	"a JSON List", "a JSON List, a bad port late", "a JSON PodBundle with items", "a JSON List with items twice",
	"a JSON List, a tab late (libyaml reads it)", "a JSON List, kind before items", "a JSON List, items an object",
	"a JSON List, VIPs that are pods' addresses",
};

static void json_cluster(struct text *t, int services, enum json_defect x)
{
	fprintf(t->f, "{\n    %s\"apiVersion\": \"v1\",\n    \"items\": ", x == J_KIND_FIRST ? "\"kind\": \"List\",\n    " : "");
	if (x == J_ITEMS_OBJECT)
		fprintf(t->f, "{}");
	for (int s = 0; s < services && x != J_ITEMS_OBJECT; s++) {
		bool late = s == services * 3 / 4;
		/* the shared VIPs: a late Service takes the first pod's address, the second the last pod's */
		char vip[32];
		if (x == J_SHARED_VIP && late)
			snprintf(vip, sizeof(vip), "10.0.0.1");
		else if (x == J_SHARED_VIP && s == 1)
			snprintf(vip, sizeof(vip), "10.0.0.%d", services * 3);
		else
			snprintf(vip, sizeof(vip), "198.19.0.%d", s + 1);
		fprintf(t->f, "%s\n        {\n            \"apiVersion\": \"v1\",\n            \"kind\": \"Service\",\n"
			      "            \"metadata\": {\"name\": \"svc-%d\", \"namespace\": \"team\"},\n"
			      "            \"spec\": {\n                \"clusterIPs\": [\"%s\"],\n"
			      "                \"ports\": [{\"name\": \"http\", \"port\": %d, \"targetPort\": 8080}],\n"
			      "             %s   \"selector\": {\"app\": \"svc-%d\"}\n            }\n        },\n",
			s ? "," : "[", s, vip, x == J_BAD_PORT && late ? 70000 : 80, x == J_TAB && late ? "\t" : " ", s);
		fprintf(t->f, "        {\n            \"apiVersion\": \"networking.istio.io/v1\",\n"
			      "            \"kind\": \"DestinationRule\",\n"
			      "            \"metadata\": {\"name\": \"svc-%d\", \"namespace\": \"team\"},\n"
			      "            \"spec\": {\"host\": \"svc-%d\", \"subsets\": [{\"labels\": {\"version\": \"v1\"}, "
			      "\"name\": \"v1\"}, {\"labels\": {\"version\": \"v2\"}, \"name\": \"v2\"}]}\n        },\n",
			s, s);
		fprintf(t->f, "        {\n            \"apiVersion\": \"networking.istio.io/v1\",\n"
			      "            \"kind\": \"VirtualService\",\n"
			      "            \"metadata\": {\"name\": \"svc-%d\", \"namespace\": \"team\"},\n"
			      "            \"spec\": {\"hosts\": [\"svc-%d\"], \"http\": [{\"route\": [{\"destination\": "
			      "{\"host\": \"svc-%d\", \"subset\": \"v1\"}, \"weight\": 90}, {\"destination\": {\"host\": "
			      "\"svc-%d\", \"subset\": \"v2\"}, \"weight\": 10}]}]}\n        }",
			s, s, s, s);
		for (int p = 0; p < 3; p++)
			fprintf(t->f, ",\n        {\n            \"apiVersion\": \"v1\",\n            \"kind\": \"Pod\",\n"
				      "            \"metadata\": {\"labels\": {\"app\": \"svc-%d\", \"version\": \"v%d\"},"
				      " \"name\": \"pod-%d\", \"namespace\": \"team\"},\n"
				      "            \"status\": {\"conditions\": [{\"status\": \"True\", \"type\": \"Ready\"}],"
				      " \"phase\": \"Running\", \"podIP\": \"10.0.%d.%d\"}\n        }",
				s, p % 2 + 1, s * 3 + p, (s * 3 + p) / 250, (s * 3 + p) % 250 + 1);
		if (s + 1 == services)
			fprintf(t->f, "\n    ]");
	}
	fprintf(t->f, ",\n%s%s    \"metadata\": {\"resourceVersion\": \"\"}\n}\n", x == J_TWO_ITEMS ? "    \"items\": [],\n" : "",
		x == J_KIND_FIRST ? "" : x == J_NOT_LIST ? "    \"kind\": \"PodBundle\",\n" : "    \"kind\": \"List\",\n");
}

/* Each JSON List read streamed, on two threads from its values' lines, or (when it must give up)
 * whole, as whole trees read it. */
static void json_lists(void)
{
	for (int x = 0; x < N_JSON; x++) {
		struct text t;
		text_open(&t);
		json_cluster(&t, 8, x);
		text_close(&t);
		struct compile_input in = { .name = "cluster.json", .buf = (const unsigned char *)t.s, .len = t.len };
		int before = failures, before_cases = cases;
		size_t kept = check(json_names[x], &in, 1), compiles = (size_t)(cases - before_cases);
		free(compile_as(&in, 1, COMPILE_READ_STREAM, 0, NULL));
		bool must_stream = x == J_CLEAN || x == J_BAD_PORT || x == J_KIND_FIRST || x == J_TWO_ITEMS || x == J_SHARED_VIP;
		bool must_split = x == J_CLEAN || x == J_KIND_FIRST || x == J_TWO_ITEMS || x == J_SHARED_VIP;
		bool ok = failures == before && (must_stream ? streamed > 0 : !streamed) &&
			  (must_split ? kept * 2 > compiles : !must_stream ? !kept : true);
		if (failures == before && !ok)
			failures++;
		printf("%s %s: %zu compiles the same, %zu of them on two threads; %zu items streamed\n", ok ? "ok" : "FAIL",
		       json_names[x], compiles, kept, streamed);
		free(t.s);
	}
}

/* A file past the size that is mapped (1 MiB) and split (4 MiB), read as `sluice plan -f` reads
 * it: the mapped reading on two threads, its pages given back, gives whole trees' outcome. */
static void mapped_file(const char *what, enum defect x, int services)
{
	char path[] = "/tmp/sluice-reading-XXXXXX";
	int fd = mkstemp(path);
	struct text t;
	text_open(&t);
	cluster(&t, services, x);
	text_close(&t);
	bool written = fd >= 0 && write(fd, t.s, t.len) == (ssize_t)t.len;
	if (fd >= 0)
		close(fd);
	struct sources src = { 0 };
	struct diags d = { 0 };
	size_t split = 0;
	char *want = NULL, *got = NULL;
	if (written && !sources_read(&src, path, &d) && src.n == 1 && src.v[0].mapped) {
		want = compile_as(src.v, 1, COMPILE_READ_WHOLE, 0, NULL);
		got = compile_as(src.v, 1, COMPILE_READ_BEST, 0, &split);
	}
	cases += 2;
	bool ok = want && got && !strcmp(want, got) && split == 1 && (x == DOCS || streamed > 0);
	if (!ok)
		failures++;
	printf("%s %s, %.1f MiB mapped: read on %s threads%s, %zu items streamed\n", ok ? "ok" : "FAIL", what,
	       t.len / 1048576.0, split ? "two" : "one", want && got && !strcmp(want, got) ? ", as whole trees" : ", NOT as whole trees",
	       streamed);
	if (fd >= 0)
		unlink(path);
	free(want);
	free(got);
	free(t.s);
	diags_free(&d);
	sources_free(&src);
}

int main(void)
{
	if (!each_fixture(fixture, NULL))
		return 1;
	int fixture_failures = failures;
	printf("%s every fixture, read each way and split at each line, as whole trees: %d compiles, %d differ\n",
	       fixture_failures ? "FAIL" : "ok", cases, fixture_failures);
	for (int x = 0; x < N_DEFECTS; x++) {
		struct text t;
		text_open(&t);
		if (x == INDENTED)
			indented(&t, 8);
		else
			cluster(&t, 8, x);
		text_close(&t);
		struct compile_input in = { .name = "cluster.yaml", .buf = (const unsigned char *)t.s, .len = t.len };
		int before = failures, before_cases = cases;
		size_t kept = check(defect_names[x], &in, 1);
		free(compile_as(&in, 1, COMPILE_READ_STREAM, 0, NULL));
		bool list = x != DOCS && x != DOCS_DUP && x != DOCS_DIRECTIVE && x != DOCS_SHARED_VIP;
		bool whole = x == NOT_LIST || x == LIST_V2 || x == BLOCK_SCALAR;   /* read again as whole trees */
		/* a clean List or documents are read on two threads from most places; what is no List, a
		 * document libyaml reads, or items at another column never */
		bool must_split = x == CLEAN || x == DOCS || x == SHARED_VIP || x == DOCS_SHARED_VIP;
		bool must_not = x == NOT_LIST || x == LIST_V2 || x == BLOCK_SCALAR || x == INDENTED;
		size_t compiles = (size_t)(cases - before_cases);
		bool ok = failures == before && (!must_split || kept * 2 > compiles) && (!must_not || !kept) &&
			  (list && !whole ? streamed > 0 : !streamed);
		if (failures == before && !ok)
			failures++;
		printf("%s %s: %zu compiles the same, %zu of them on two threads; %zu items streamed\n", ok ? "ok" : "FAIL",
		       defect_names[x], compiles, kept, streamed);
		free(t.s);
	}
	json_lists();
	mapped_file("a List", CLEAN, 3000);
	mapped_file("documents", DOCS, 3000);
	printf("%s compile_plan reads every way alike: %d compiles, %d differ\n", failures ? "FAIL" : "ok", cases,
	       failures);
	return failures != 0;
}
