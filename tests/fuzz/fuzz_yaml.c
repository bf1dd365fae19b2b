// SPDX-License-Identifier: MIT
/* libFuzzer target for the YAML front end: one input file through the whole compiler and both
 * printers, and every plan it compiles through sluiced's saved-plan reader, which must take it
 * back (the two hold names and addresses to the same rules); and read by ytree's own reader and by
 * libyaml alone, which must give the same nodes and errors; and compiled as whole trees on one
 * thread and on two threads split where the input says, which must give the same plan or errors.
 * Any crash, leak, sanitizer report, refused plan or difference is a bug. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compile/compile.h"
#include "compile/ytree.h"
#include "plan/read.h"
#include "plan/print.h"

static void dump(FILE *out, const struct ynode *n)
{
	fprintf(out, "%u:%u %d %d %zu[", n->line, n->col, n->type, n->plain, n->len);
	if (n->type == YN_SCALAR)
		fwrite(n->str, 1, n->len, out);
	fprintf(out, "] %u\n", n->n);
	for (uint32_t i = 0; n->type != YN_SCALAR && i < (n->type == YN_MAP ? 2 * n->n : n->n); i++)
		dump(out, n->items[i]);
}

static void on_doc(void *ctx, const struct mark *file, struct ynode *root)
{
	(void)file;
	dump(ctx, root);
}

/* The documents and errors of the input, read one way, as text. */
static char *read_as(const uint8_t *data, size_t size, enum yaml_readers how)
{
	char *text = NULL;
	size_t len = 0;
	FILE *out = open_memstream(&text, &len);
	struct diags d = { 0 };
	struct mark file = { .file = "fuzz.yaml" };
	if (!out)
		abort();
	fprintf(out, "%zu documents\n", yaml_each_document_with(data, size, &file, &d, on_doc, out, how));
	diags_print(&d, out);
	diags_free(&d);
	fclose(out);
	return text;
}

/* The plan as JSON, or the errors, of data compiled with o. */
static char *outcome_of(const struct compile_opts *o, const struct compile_input *in)
{
	char *text = NULL;
	size_t len = 0;
	FILE *out = open_memstream(&text, &len);
	struct plan plan;
	struct diags d = { 0 };
	if (!out)
		abort();
	if (compile_plan(o, in, 1, &plan, &d, NULL) == 0) {
		plan_print_json_generation(&plan, 1, out);
		plan_free(&plan);
	} else {
		diags_print(&d, out);
	}
	diags_free(&d);
	fclose(out);
	return text;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *both = read_as(data, size, YAML_BOTH), *libyaml = read_as(data, size, YAML_LIBYAML_ONLY);
	if (strcmp(both, libyaml)) {   /* the fast reader took a document and read it otherwise */
		fprintf(stderr, "--- libyaml\n%s--- with the fast reader\n%s", libyaml, both);
		abort();
	}
	free(both);
	free(libyaml);
	static FILE *null_out;
	if (!null_out)
		null_out = fopen("/dev/null", "w");
	/* -v always (its listing reads names too); -n on inputs of odd length, so both paths run */
	struct compile_opts o = { .skipped_log = null_out };
	if (size % 3 == 0)
		o.gateway_address = "198.19.100.1";   /* Gateways then become plan entries */
	if (size & 1) {
		o.namespace = "default";
		o.namespace_forced = true;
	}
	struct compile_input in = { .name = "fuzz.yaml", .buf = data, .len = size };
	/* the second thread's part looked for from the input's first byte's share of it */
	struct compile_opts whole = { .reading = COMPILE_READ_WHOLE }, split = { .reading = COMPILE_READ_SPLIT };
	split.split_from = size ? size * data[0] / 256 : 0;
	char *one = outcome_of(&whole, &in), *two = outcome_of(&split, &in);
	if (strcmp(one, two)) {
		fprintf(stderr, "--- whole, one thread\n%s--- on two threads from byte %zu\n%s", one, split.split_from, two);
		abort();
	}
	free(one);
	free(two);
	struct plan plan;
	struct diags d = { 0 };
	struct compile_stats st;
	if (compile_plan(&o, &in, 1, &plan, &d, &st) == 0) {
		plan_print_text(&plan, null_out);
		char *json = NULL;
		size_t len = 0;
		FILE *mem = open_memstream(&json, &len);
		if (!mem)
			abort();
		plan_print_json_generation(&plan, 1, mem);
		fclose(mem);
		struct plan back;
		if (plan_read_json((const unsigned char *)json, len, "saved.json", &back, NULL, &d)) {
			/* a plan sluiced would save and then refuse after a restart */
			diags_print(&d, stderr);
			fprintf(stderr, "%s", json);
			abort();
		}
		plan_free(&back);
		free(json);
		plan_free(&plan);
	} else {
		diags_print(&d, null_out);
		diags_print_json(&d, null_out);
	}
	diags_free(&d);
	return 0;
}
