// SPDX-License-Identifier: MIT
/* compile_read + compile_plan_reads (the follower's compile, which reads an object once per version)
 * against compile_plan, over every fixture of tests/unit: the same plan or the same errors, and the
 * same again from the same reads a second time (a build must not leave state in the records). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compile/compile.h"
#include "plan/plan.h"
#include "plan/print.h"
#include "outcome.h"

static int failures, cases;

static void one_case(const char *path)
{
	struct sources src = { 0 };
	struct diags d = { 0 };
	if (sources_read(&src, path, &d) || !src.n) {
		diags_free(&d);
		sources_free(&src);
		return;   /* unreadable on purpose (a bad fixture): nothing to compare */
	}
	struct compile_opts o = { 0 };
	struct plan plan;
	int rc = compile_plan(&o, src.v, src.n, &plan, &d, NULL);
	char *want = outcome(rc, &plan, &d);
	if (!rc)
		plan_free(&plan);
	diags_free(&d);
	struct compile_read **reads = calloc(src.n, sizeof(*reads));
	for (size_t i = 0; i < src.n; i++)
		reads[i] = compile_read(&o, &src.v[i]);
	for (int round = 1; round <= 2; round++) {
		rc = compile_plan_reads(&o, reads, src.n, &plan, &d, NULL);
		char *got = outcome(rc, &plan, &d);
		if (!rc)
			plan_free(&plan);
		diags_free(&d);
		cases++;
		if (strcmp(want, got) && !(src.n > 1 && strstr(want, "duplicate "))) {
			printf("FAIL %s, read once, compiled %d time%s:\n--- compile_plan\n%s--- compile_plan_reads\n%s",
			       path, round, round > 1 ? "s" : "", want, got);
			failures++;
		}
		free(got);
	}
	for (size_t i = 0; i < src.n; i++)
		compile_read_free(reads[i]);
	free(reads);
	free(want);
	sources_free(&src);
}

static void fixture(const char *path, void *ctx)
{
	(void)ctx;
	one_case(path);
}

int main(void)
{
	if (!each_fixture(fixture, NULL))
		return 1;
	printf("%s compile_plan_reads gives compile_plan's plan or errors: %d compiles, %d differ\n",
	       failures ? "FAIL" : "ok", cases, failures);
	return failures != 0;
}
