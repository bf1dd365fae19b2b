// SPDX-License-Identifier: MIT
#include "common/options.h"

#include <stdlib.h>
#include <string.h>

struct option *opts_getopt(const struct opt *table, const char *prefix, char **shortopts)
{
	size_t n = 0;
	while (table[n].name)
		n++;
	struct option *longopts = calloc(n + 1, sizeof(*longopts));
	char *s = malloc(strlen(prefix) + 3 * n + 1);
	if (!longopts || !s)
		abort();
	strcpy(s, prefix);
	char *p = s + strlen(s);
	for (size_t i = 0; i < n; i++) {
		longopts[i] = (struct option){ table[i].name, table[i].arg ? required_argument : no_argument, NULL,
					       table[i].id };
		if (table[i].short_name) {
			*p++ = table[i].short_name;
			if (table[i].arg)
				*p++ = ':';
		}
	}
	*p = 0;
	*shortopts = s;
	return longopts;
}

void opts_usage(FILE *out, const struct opt *table)
{
	for (const struct opt *o = table; o->name; o++) {
		char head[64];
		snprintf(head, sizeof(head), "%c%c%c --%s%s%s", o->short_name ? '-' : ' ', o->short_name ? o->short_name : ' ',
			 o->short_name ? ',' : ' ', o->name, o->arg ? " " : "", o->arg ? o->arg : "");
		fprintf(out, "  %-24s", head);
		if (strlen(head) >= 23)   /* no room for a gap before the help */
			fprintf(out, "\n  %-24s", "");
		for (const char *h = o->help; *h; h++) {
			fputc(*h, out);
			if (*h == '\n')
				fprintf(out, "  %-24s", "");
		}
		fputc('\n', out);
	}
}
