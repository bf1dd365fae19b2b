/* SPDX-License-Identifier: MIT */
/* For tests that compare two compiles: what one gave, as text to compare (malloc'd). */
#ifndef SLUICE_TEST_OUTCOME_H
#define SLUICE_TEST_OUTCOME_H

#include <stdio.h>
#include <stdlib.h>

#include "common/util.h"
#include "plan/print.h"

/* The plan as JSON when rc is 0, else the errors as sluice prints them. */
static inline char *outcome(int rc, const struct plan *plan, const struct diags *d)
{
	char *s = NULL;
	size_t len = 0;
	FILE *f = rc ? open_memstream(&s, &len) : NULL;
	if (f) {
		diags_print(d, f);
		fclose(f);
	} else if (!rc) {
		s = plan_json_string(plan);
	}
	if (!s)
		abort();
	return s;
}

#endif
