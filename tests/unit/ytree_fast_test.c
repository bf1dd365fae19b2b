// SPDX-License-Identifier: MIT
/* The fast reader of ytree.c against libyaml: every input of the fixture tables, the lab's files,
 * the fuzzer's seeds and deploy/, generated kubectl-shaped and JSON objects, and each of them
 * mutated line by line (indentation, comments, markers, quotes, tabs, cut lines...), read both
 * ways, must give the same documents (every node's kind, text, style, line and column) and the
 * same errors. And the fast reader must read the shapes it is there for by itself: kubectl's
 * YAML and the API's JSON. And the first look at a file (ytree_scan_fd), two threads for a large
 * one, finds what a look at its bytes in memory finds. */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/fs.h"
#include "common/util.h"
#include "compile/ytree.h"

static int failures, inputs, fast_alone;

static void dump(FILE *out, const struct ynode *n)
{
	fprintf(out, "%u:%u ", n->line, n->col);
	if (n->type == YN_SCALAR) {
		fprintf(out, "%s%zu[", n->plain ? "plain" : "quoted", n->len);
		fwrite(n->str, 1, n->len, out);
		fputs("]\n", out);
		return;
	}
	fprintf(out, "%s %u\n", n->type == YN_MAP ? "map" : "seq", n->n);
	for (uint32_t i = 0; i < (n->type == YN_MAP ? 2 * n->n : n->n); i++)
		dump(out, n->items[i]);
}

static void on_doc(void *ctx, const struct mark *file, struct ynode *root)
{
	(void)file;
	fputs("--- document\n", ctx);
	dump(ctx, root);
}

/* Every document and error of buf, read one way, as text. */
static char *read_as(const unsigned char *buf, size_t len, enum yaml_readers how, size_t *docs)
{
	char *text = NULL;
	size_t size = 0;
	FILE *out = open_memstream(&text, &size);
	struct diags d = { 0 };
	struct mark file = { .file = "input.yaml" };
	*docs = yaml_each_document_with(buf, len, &file, &d, on_doc, out, how);
	fprintf(out, "%zu documents\n", *docs);
	diags_print(&d, out);
	diags_free(&d);
	fclose(out);
	return text;
}

static void compare(const char *what, const unsigned char *buf, size_t len)
{
	size_t docs_both, docs_libyaml;
	char *both = read_as(buf, len, YAML_BOTH, &docs_both);
	char *libyaml = read_as(buf, len, YAML_LIBYAML_ONLY, &docs_libyaml);
	inputs++;
	if (strcmp(both, libyaml)) {
		printf("FAIL %s: the fast reader and libyaml differ\n--- input\n%.*s\n--- libyaml\n%s--- with the fast reader\n%s",
		       what, (int)(len < 2000 ? len : 2000), buf, libyaml, both);
		failures++;
	}
	free(both);
	free(libyaml);
}

/* The input as it is, and mutated at each of its first lines. */
static void mutations(const char *what, const unsigned char *buf, size_t len)
{
	static const char *const inserts[] = { "  ", " ", "# c\n", "---\n", "...\n", "- ", "x: ", "\t", ": ", " #", "\"",
					       "'", "{", "[]", "- - a\n", "&a ", "*a", "!!str ", "|\n", "%YAML 1.1\n",
					       "\\", "\xc3\xa9", "\r", "? ", "\n", "k:\n", "  - \n",
					       "\x01", "\xff", "\x7f", "\xc3" };
	compare(what, buf, len);
	size_t lines = 0;
	for (size_t off = 0; off < len && lines < 40; lines++) {
		const unsigned char *nl = memchr(buf + off, '\n', len - off);
		size_t end = nl ? (size_t)(nl - buf) + 1 : len;
		for (size_t m = 0; m < sizeof(inserts) / sizeof(inserts[0]) + 4; m++) {
			size_t at = off, cut = 0;   /* insert at the line's start, or change the line */
			const char *ins = "";
			if (m < sizeof(inserts) / sizeof(inserts[0])) {
				ins = inserts[m];
				if (m % 3 == 1) {   /* some in the middle of the line, after its first ": " or "- " */
					const unsigned char *c = memmem(buf + off, end - off, ": ", 2);
					if (!c)
						c = memmem(buf + off, end - off, "- ", 2);
					at = c ? (size_t)(c - buf) + 2 : off;
				}
			} else if (m == sizeof(inserts) / sizeof(inserts[0])) {
				cut = end - off;   /* the line deleted */
			} else if (m == sizeof(inserts) / sizeof(inserts[0]) + 1) {
				at = off + (end - off) / 2;   /* the line cut in two */
				ins = "\n";
			} else if (m == sizeof(inserts) / sizeof(inserts[0]) + 2) {
				at = end > off + 1 ? end - 1 : end;   /* something at the line's end */
				ins = ":";
			} else {
				cut = end - off > 1 && buf[off] == ' ' ? 1 : 0;   /* one space less */
			}
			size_t il = strlen(ins), n = len - cut + il;
			unsigned char *mut = malloc(n + 1);
			memcpy(mut, buf, at);
			memcpy(mut + at, ins, il);
			memcpy(mut + at + il, buf + at + cut, len - at - cut);
			char name[600];
			snprintf(name, sizeof(name), "%s, line %zu, mutation %zu", what, lines + 1, m);
			compare(name, mut, n);
			free(mut);
		}
		off = end;
	}
}

/* The fast reader must take these by itself. */
static void fast_only(const char *what, const char *text)
{
	size_t docs;
	char *got = read_as((const unsigned char *)text, strlen(text), YAML_FAST_ONLY, &docs);
	if (docs == SIZE_MAX) {
		printf("FAIL %s: the fast reader leaves it to libyaml\n%s\n", what, text);
		failures++;
	} else {
		fast_alone++;
	}
	free(got);
	compare(what, (const unsigned char *)text, strlen(text));
}

static void one_file(const char *path)
{
	unsigned char *buf;
	size_t len;
	if (fs_read_file(path, &buf, &len))
		return;
	if (len < 20000)
		mutations(path, buf, len);
	else
		compare(path, buf, len);
	free(buf);
}

static void walk(const char *dir)
{
	struct dirent **names;
	int n = scandir(dir, &names, NULL, alphasort);
	if (n < 0) {
		printf("FAIL cannot read %s (run from the repository's top)\n", dir);
		failures++;
		return;
	}
	for (int i = 0; i < n; i++) {
		const char *e = names[i]->d_name;
		char path[1024];
		snprintf(path, sizeof(path), "%s/%s", dir, e);
		if (e[0] != '.' && names[i]->d_type == DT_DIR)
			walk(path);
		else if (e[0] != '.' && (strstr(e, ".yaml") || strstr(e, ".yml") || strstr(e, ".json") || !strchr(e, '.')))
			one_file(path);
		free(names[i]);
	}
	free(names);
}

/* A Pod as `kubectl get pods -o yaml` prints it, and as the API sends it. */
static const char kubectl_pod[] =
	"apiVersion: v1\n"
	"kind: Pod\n"
	"metadata:\n"
	"  annotations:\n"
	"    kubectl.kubernetes.io/restartedAt: \"2024-05-01T10:00:00Z\"\n"
	"    note: 'it''s here'\n"
	"  creationTimestamp: null\n"
	"  generateName: web-v1-5d8f7c9b-\n"
	"  labels:\n"
	"    app: web\n"
	"    pod-template-hash: 5d8f7c9b\n"
	"  name: web-v1-5d8f7c9b-x2x9z\n"
	"  namespace: default\n"
	"  ownerReferences:\n"
	"  - apiVersion: apps/v1\n"
	"    blockOwnerDeletion: true\n"
	"    kind: ReplicaSet\n"
	"    name: web-v1-5d8f7c9b\n"
	"spec:\n"
	"  containers:\n"
	"  - args:\n"
	"    - --port=8080\n"
	"    - -v\n"
	"    image: registry.example/web:1.0   # pinned\n"
	"    ports:\n"
	"    - containerPort: 8080\n"
	"      name: http\n"
	"      protocol: TCP\n"
	"    resources: {}\n"
	"    volumeMounts: []\n"
	"  nodeSelector:\n"
	"    kubernetes.io/os: linux\n"
	"status:\n"
	"  conditions:\n"
	"  - lastProbeTime: null\n"
	"    status: \"True\"\n"
	"    type: Ready\n"
	"  podIP: 10.1.2.3\n"
	"  podIPs:\n"
	"  - ip: 10.1.2.3\n"
	"  - ip: fd00::1:2:3\n"
	"  phase: Running\n"
	"# the end\n";

static const char kubectl_list[] =
	"# kubectl get svc,pods -o yaml\n"
	"apiVersion: v1\n"
	"items:\n"
	"- apiVersion: v1\n"
	"  kind: Service\n"
	"  metadata:\n"
	"    name: web\n"
	"  spec:\n"
	"    clusterIP: 198.19.0.10\n"
	"    ports:\n"
	"    - name: http\n"
	"      port: 80\n"
	"      targetPort: http\n"
	"    selector:\n"
	"      app: web\n"
	"  status:\n"
	"    loadBalancer: {}\n"
	"kind: List\n"
	"metadata:\n"
	"  resourceVersion: \"\"\n"
	"---\n"
	"--- # an empty document, then one more\n"
	"apiVersion: networking.istio.io/v1\n"
	"kind: VirtualService\n"
	"metadata:\n"
	"  name: web\n"
	"spec:\n"
	"  hosts:\n"
	"  - web\n"
	"  http:\n"
	"  - route:\n"
	"    - destination:\n"
	"        host: web\n"
	"        subset: v1\n"
	"      weight: 90\n"
	"    - destination: {}\n"
	"      weight:\n"
	"  -\n"
	"  - \n";

static const char api_json[] =
	"{\"kind\":\"PodList\",\"apiVersion\":\"v1\",\"metadata\":{\"resourceVersion\":\"123\",\"continue\":\"eyJ2Ijo=\"},"
	"\"items\":[{\"metadata\":{\"name\":\"p\",\"namespace\":\"default\",\"labels\":{\"app\":\"web\"},"
	"\"annotations\":{\"a\":\"\\u003cb\\u003e \\\"q\\\" \\\\ \\/ \\n\\t\\u00e9\\u20ac\"}},"
	"\"spec\":{\"containers\":[{\"name\":\"app\",\"ports\":[{\"containerPort\":8080,\"protocol\":\"TCP\"}]}],"
	"\"terminationGracePeriodSeconds\":30,\"hostNetwork\":false},"
	"\"status\":{\"phase\":\"Running\",\"podIP\":\"10.0.0.1\",\"conditions\":[{\"type\":\"Ready\",\"status\":\"True\","
	"\"lastProbeTime\":null}],\"x\":-1.5e3,\"y\":[],\"z\":{}}}]}";

static const char pretty_json[] =
	"{\n"
	"    \"apiVersion\": \"v1\",\n"
	"    \"kind\": \"Service\",\n"
	"    \"metadata\": {\n"
	"        \"name\": \"web\"\n"
	"    },\n"
	"    \"spec\": {\n"
	"        \"ports\": [\n"
	"            {\n"
	"                \"port\": 80\n"
	"            }\n"
	"        ]\n"
	"    }\n"
	"}\n";

/* A 9 MiB file, plain YAML but for what is put at the given places: ytree_scan_fd (which splits
 * it in two past 8 MiB) against ytree_scan_bytes over it whole. */
static void scan_case(const char *what, size_t n_at, const size_t *at, const char *const *bytes, bool plain)
{
	size_t len = 9u << 20;
	unsigned char *buf = malloc(len);
	for (size_t i = 0; i < len; i++)
		buf[i] = i % 32 == 31 ? '\n' : "key: value-abcdefghijklmnopqrst"[i % 32];
	for (size_t k = 0; k < n_at; k++)
		memcpy(buf + at[k], bytes[k], strlen(bytes[k]) + (bytes[k][0] ? 0 : 1));
	struct ytree_scan want = { .plain = true, .nul = SIZE_MAX }, got;
	for (size_t used; want.scanned < len;)
		ytree_scan_bytes(&want, buf + want.scanned, len - want.scanned, true, &used);
	char path[] = "/tmp/sluice-scan-XXXXXX";
	int fd = mkstemp(path);
	int err = fd < 0 || write(fd, buf, len) != (ssize_t)len ? -1 : ytree_scan_fd(fd, len, &got);
	inputs++;
	if (err || got.plain != want.plain || got.nul != want.nul || got.scanned != len || want.plain != plain) {
		failures++;
		printf("FAIL the first look at a file, %s: plain %d nul %zu, in memory plain %d nul %zu (err %d), "
		       "plain it is %d\n", what, err ? -1 : got.plain, err ? 0 : got.nul, want.plain, want.nul, err, plain);
	}
	if (fd >= 0) {
		close(fd);
		unlink(path);
	}
	free(buf);
}

static void scan_cases(void)
{
	size_t mid = (9u << 20) / 2, late = 7u << 20;
	scan_case("all plain", 0, NULL, NULL, true);
	scan_case("UTF-8 across the middle", 1, (size_t[]){ mid - 1 }, (const char *const[]){ "\xc3\xa9\xe2\x82\xac" },
		  true);
	scan_case("a NUL early", 1, (size_t[]){ 100 }, (const char *const[]){ "" }, false);
	scan_case("a NUL late", 1, (size_t[]){ late }, (const char *const[]){ "" }, false);
	scan_case("NULs early and late", 2, (size_t[]){ 100, late }, (const char *const[]){ "", "" }, false);
	scan_case("bad UTF-8 late", 1, (size_t[]){ late }, (const char *const[]){ "\xc3(" }, false);
	scan_case("bad UTF-8 early, a NUL late", 2, (size_t[]){ 100, late }, (const char *const[]){ "\xff", "" }, false);
	scan_case("a character cut at the end", 1, (size_t[]){ (9u << 20) - 1 }, (const char *const[]){ "\xc3" }, false);
}

int main(void)
{
	scan_cases();
	static const char *const dirs[] = { "tests/unit/good", "tests/unit/bad", "tests/unit/labs", "tests/e2e/lab",
					    "tests/fuzz/seeds", "deploy" };
	for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++)
		walk(dirs[i]);
	fast_only("a Pod as kubectl prints it", kubectl_pod);
	fast_only("a List as kubectl prints it", kubectl_list);
	fast_only("a page of a list from the API", api_json);
	fast_only("JSON as kubectl -o json prints it", pretty_json);
	mutations("a Pod as kubectl prints it", (const unsigned char *)kubectl_pod, strlen(kubectl_pod));
	mutations("a List as kubectl prints it", (const unsigned char *)kubectl_list, strlen(kubectl_list));
	mutations("JSON as kubectl -o json prints it", (const unsigned char *)pretty_json, strlen(pretty_json));
	/* the API's JSON cut and bent at every byte */
	size_t n = strlen(api_json);
	for (size_t i = 0; i < n; i++) {
		char *mut = strdup(api_json);
		static const char subst[] = " \n:,\"{}[]\\x-";
		mut[i] = subst[i % (sizeof(subst) - 1)];
		char name[64];
		snprintf(name, sizeof(name), "the API's JSON, byte %zu changed", i);
		compare(name, (const unsigned char *)mut, n);
		compare("the API's JSON, cut", (const unsigned char *)api_json, i);
		free(mut);
	}
	printf("%s the fast reader reads as libyaml does: %d inputs, %d differ; %d read by it alone\n",
	       failures ? "FAIL" : "ok", inputs, failures, fast_alone);
	return failures != 0;
}
