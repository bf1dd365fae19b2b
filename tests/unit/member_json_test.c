// SPDX-License-Identifier: MIT
/* compile_member_json, what the follower keeps of an object: every fixture of the tables, written
 * as JSON, compiled whole and cut down so, must give the same plan, or the same errors (their
 * messages: the columns move with the bytes left out). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/fs.h"
#include "common/json.h"
#include "compile/compile.h"
#include "compile/ytree.h"
#include "plan/print.h"
#include "outcome.h"

struct docs {
	FILE *whole, *cut;
	int pods;
};

static void one_json(FILE *out, const struct ynode *root, bool cut, int *pods)
{
	json_writer_t *w = jsonw_new(out);
	const struct ynode *kind = ymap_get(root, "kind");
	if (!cut || root->type != YN_MAP || !kind || kind->type != YN_SCALAR) {
		ytree_write_json(w, root, NULL, NULL);
	} else {   /* as the reflector writes it */
		jsonw_start_object(w);
		for (uint32_t i = 0; i < root->n; i++)
			if (ymap_key(root, i)->type == YN_SCALAR)
				compile_member_json(w, kind->str, ymap_key(root, i), ymap_val(root, i));
		jsonw_end_object(w);
		*pods += !strcmp(kind->str, "Pod");
	}
	jsonw_destroy(&w);
	fputs("---\n", out);
}

static void on_doc(void *ctx, const struct mark *file, struct ynode *root)
{
	struct docs *d = ctx;
	(void)file;
	one_json(d->whole, root, false, &d->pods);
	one_json(d->cut, root, true, &d->pods);
}

/* The plan, or the errors' messages alone. */
static char *compiled(const char *text)
{
	struct compile_opts o = { 0 };
	struct compile_input in = { .name = "objects.json", .buf = (const unsigned char *)text, .len = strlen(text) };
	struct plan plan;
	struct diags d = { 0 };
	char *out = NULL;
	size_t len = 0;
	if (!compile_plan(&o, &in, 1, &plan, &d, NULL)) {
		out = plan_json_string(&plan);
		plan_free(&plan);
	} else {
		FILE *f = open_memstream(&out, &len);
		for (size_t i = 0; i < d.n; i++)
			fprintf(f, "%s\n", d.v[i].msg);
		fclose(f);
	}
	diags_free(&d);
	return out;
}

struct tally {
	int failures, cases, pods;
};

static void fixture(const char *path, void *ctx)
{
	struct tally *t = ctx;
	char *whole = NULL, *cut = NULL;
	size_t lw = 0, lc = 0, len;
	unsigned char *buf;
	if (!strstr(path, ".yaml") || fs_read_file(path, &buf, &len))
		return;   /* directories: their files are cases of the tables too */
	struct docs d = { .whole = open_memstream(&whole, &lw), .cut = open_memstream(&cut, &lc) };
	struct diags dd = { 0 };
	struct mark m = { .file = path };
	yaml_each_document(buf, len, &m, &dd, on_doc, &d);
	fclose(d.whole);
	fclose(d.cut);
	if (!dd.n) {
		char *a = compiled(whole), *b = compiled(cut);
		t->cases++;
		t->pods += d.pods;
		if (strcmp(a, b)) {
			printf("FAIL %s: with the objects whole\n%s--- cut down\n%s", path, a, b);
			t->failures++;
		}
		free(a);
		free(b);
	}
	diags_free(&dd);
	free(whole);
	free(cut);
	free(buf);
}

int main(void)
{
	struct tally t = { 0 };
	if (!each_fixture(fixture, &t))
		return 1;
	printf("%s objects cut to what the compiler reads compile the same: %d inputs (%d Pods), %d differ\n",
	       t.failures || !t.cases ? "FAIL" : "ok", t.cases, t.pods, t.failures);
	return t.failures || !t.cases;
}
