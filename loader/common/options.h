/* SPDX-License-Identifier: MIT */
/* Command-line options as one table per program, which drives both getopt_long and the usage
 * text, so that no option is parsed without being listed (xdp-tools' params do the same). */
#ifndef SLUICE_OPTIONS_H
#define SLUICE_OPTIONS_H

#include <getopt.h>
#include <stdio.h>

struct opt {
	const char *name;       /* long name, without "--" */
	char short_name;        /* 0: none */
	const char *arg;        /* the value's name in usage, e.g. "PATH"; NULL: a flag */
	const char *help;       /* one line; a '\n' continues it on the next line, aligned */
	int id;                 /* what getopt_long returns: the short name, or an id above 255 */
};

/* getopt_long's long options and short option string for a table ending with { NULL }. The
 * short string starts with prefix (e.g. "-" to keep positional words in order, ":" for missing
 * values). Both are allocated; free them. */
struct option *opts_getopt(const struct opt *table, const char *prefix, char **shortopts);

/* One line per option: "  -f, --filename PATH     help". */
void opts_usage(FILE *out, const struct opt *table);

#endif
