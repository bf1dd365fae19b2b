/* SPDX-License-Identifier: MIT */
/* The sluice CLI: shared options, output mode and error reporting, as bpftool does it. */
#ifndef SLUICE_CLI_MAIN_H
#define SLUICE_CLI_MAIN_H

#include <stdbool.h>
#include <stddef.h>

#include "common/exit.h"

struct cli {
	bool json;
	bool verbose;
	const char *socket;
	const char *namespace;
	const char *cluster_domain;
	const char *gateway_address;
	unsigned timeout_s;     /* --timeout: the whole round trip to sluiced */
	bool cluster;           /* --cluster or --kubeconfig: weight changes the VirtualService on the API server */
	const char *kubeconfig, *context;
	bool wait;              /* weight --cluster --wait: until every node applied it */
	const char **files;     /* -f, in order */
	size_t n_files;
	int argc;               /* the command's own arguments */
	char **argv;
};

extern struct cli cli;

/* "Error: MESSAGE" on stderr, or {"error": ...} on stdout with -o json. */
void p_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

struct sources;
struct diags;
int cli_read_sources(struct sources *src, struct diags *d);   /* every -f; EXIT_USAGE if none */

int do_plan(void);
int do_validate(void);
int do_apply(void);
int do_weight(void);
int do_status(void);
int cluster_weight(void);   /* cluster.c: sluice weight against the API server */

#endif
