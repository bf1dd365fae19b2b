/* SPDX-License-Identifier: MIT */
/* For tests that compare two compiles: what one gave, as text to compare (malloc'd). */
#ifndef SLUICE_TEST_OUTCOME_H
#define SLUICE_TEST_OUTCOME_H

#include <dirent.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

/* Every case of the fixture tables (a .yaml or .yml file, or a directory), in name order, to fn.
 * false when a table cannot be read (said on stdout). */
static inline bool each_fixture(void (*fn)(const char *path, void *ctx), void *ctx)
{
	static const char *const tables[] = { "tests/unit/good", "tests/unit/bad", "tests/unit/labs" };
	for (size_t t = 0; t < sizeof(tables) / sizeof(tables[0]); t++) {
		struct dirent **names;
		int n = scandir(tables[t], &names, NULL, alphasort);
		if (n < 0) {
			printf("FAIL cannot read %s (run from the repository's top)\n", tables[t]);
			return false;
		}
		for (int i = 0; i < n; i++) {
			const char *e = names[i]->d_name;
			size_t l = strlen(e);
			bool input = (l > 5 && !strcmp(e + l - 5, ".yaml")) || (l > 4 && !strcmp(e + l - 4, ".yml"));
			if (e[0] != '.' && (input || names[i]->d_type == DT_DIR)) {
				char path[512];
				snprintf(path, sizeof(path), "%s/%s", tables[t], e);
				fn(path, ctx);
			}
			free(names[i]);
		}
		free(names);
	}
	return true;
}

#endif
