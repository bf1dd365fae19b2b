// SPDX-License-Identifier: MIT
/* ytree_path_at: the field path the follower puts in front of an API object's error, found from the
 * line and column the compiler reported in the object's one line of JSON. */
#include <stdio.h>
#include <string.h>

#include "common/fieldpath.h"
#include "common/util.h"
#include "compile/ytree.h"

static const char object[] =
	"{\"kind\":\"VirtualService\",\"metadata\":{\"name\":\"vs\"},\"spec\":{\"hosts\":[\"a\",\"b\"],"
	"\"http\":[{\"route\":[{\"destination\":{\"subset\":\"v1\"}},{\"destination\":{\"subset\":\"v0\"},"
	"\"weight\":50}]}],\"odd key\\n\":[[1,{\"x\":2}]]}}";

static const struct {
	const char *at;      /* the text the node starts with */
	const char *path;
} cases[] = {
	{ "\"v0\"", "spec.http[0].route[1].destination.subset" },
	{ "\"subset\":\"v0\"", "spec.http[0].route[1].destination.subset" },
	{ "50}", "spec.http[0].route[1].weight" },
	{ "\"b\"", "spec.hosts[1]" },
	{ "{\"destination\":{\"subset\":\"v0\"}", "spec.http[0].route[1]" },
	{ "\"vs\"", "metadata.name" },
	{ "2}", "spec.odd?key?[0][1].x" },
	{ "{\"kind\"", "" },
};

struct query {
	uint32_t col;
	struct fieldpath path;
	int found;
};

static void doc(void *ctx, const struct mark *file, struct ynode *root)
{
	(void)file;
	struct query *q = ctx;
	q->found = ytree_path_at(root, 1, q->col, &q->path);
}

int main(void)
{
	int failures = 0;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct query q = { .col = (uint32_t)(strstr(object, cases[i].at) - object) + 1 };
		struct diags d = { 0 };
		struct mark m = { .file = "VirtualService default/vs" };
		yaml_each_document((const unsigned char *)object, strlen(object), &m, &d, doc, &q);
		if (d.n || !q.found || strcmp(q.path.s, cases[i].path)) {
			printf("FAIL path at %s: expected '%s', got '%s'%s\n", cases[i].at, cases[i].path, q.path.s,
			       q.found ? "" : " (not found)");
			failures++;
		} else {
			printf("ok path at %s: %s\n", cases[i].at, cases[i].path[0] ? cases[i].path : "(the object)");
		}
		diags_free(&d);
	}
	struct query q = { .col = 4 };   /* inside the key "kind": no node starts there */
	struct diags d = { 0 };
	struct mark m = { .file = "x" };
	yaml_each_document((const unsigned char *)object, strlen(object), &m, &d, doc, &q);
	printf("%s a column where no node starts: not found\n", q.found ? "FAIL" : "ok");
	failures += q.found;
	diags_free(&d);
	return failures != 0;
}
