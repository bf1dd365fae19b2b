// SPDX-License-Identifier: MIT
/* libFuzzer target for the YAML front end: one input file through the whole compiler and both
 * printers, and every plan it compiles through sluiced's saved-plan reader, which must take it
 * back (the two hold names and addresses to the same rules). Any crash, leak, sanitizer report
 * or refused plan is a bug. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "compile/compile.h"
#include "plan/read.h"
#include "plan/print.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
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
