// SPDX-License-Identifier: MIT
/* sluice plan, sluice validate: the compiler alone, no daemon, no root. */
#include <stdio.h>
#include <stdlib.h>

#include "compile/compile.h"
#include "main.h"
#include "plan/print.h"

/* Reads every -f into src; unreadable paths go to d. EXIT_USAGE when there is nothing to read. */
int cli_read_sources(struct sources *src, struct diags *d)
{
	if (!cli.n_files) {
		p_err("no input: give -f FILE, -f DIR or -f - (standard input)");
		return EXIT_USAGE;
	}
	if (cli.argc) {
		p_err("unexpected argument \"%s\"; input files go after -f", cli.argv[0]);
		return EXIT_USAGE;
	}
	for (size_t i = 0; i < cli.n_files; i++)
		sources_read(src, cli.files[i], d);
	return EXIT_DONE;
}

/* Reads every -f and compiles; on errors prints them all and returns EXIT_INVALID. */
int cli_compile(struct plan *plan, struct compile_stats *st, struct sources *src)
{
	struct diags d = { 0 };
	struct compile_opts o = {
		.namespace = cli.namespace,
		.namespace_forced = cli.namespace != NULL,
		.cluster_domain = cli.cluster_domain,
		.skipped_log = cli.verbose ? stderr : NULL,
		.gateway_address = cli.gateway_address,
	};
	if (cli_read_sources(src, &d))
		return EXIT_USAGE;
	int rc = d.n ? -1 : 0;
	if (!rc)
		rc = compile_plan(&o, src->v, src->n, plan, &d, st);
	if (rc) {
		diags_sort(&d);
		diags_report(&d, stdout, stderr, cli.json, "");
		diags_free(&d);
		return EXIT_INVALID;
	}
	diags_free(&d);
	return EXIT_DONE;
}

int do_plan(void)
{
	struct plan plan;
	struct compile_stats st;
	struct sources src = { 0 };
	int rc = cli_compile(&plan, &st, &src);
	if (rc == EXIT_DONE) {
		if (cli.json)
			plan_print_json(&plan, stdout);
		else
			plan_print_text(&plan, stdout);
		plan_free(&plan);
	}
	sources_free(&src);
	return rc;
}

int do_validate(void)
{
	struct plan plan;
	struct compile_stats st;
	struct sources src = { 0 };
	int rc = cli_compile(&plan, &st, &src);
	if (rc == EXIT_DONE) {
		if (cli.json)
			printf("{\"valid\":true,\"files\":%zu,\"objects\":%zu,\"skipped\":%zu,\"services\":%zu,"
			       "\"destinations\":%zu,\"endpoints\":%zu}\n",
			       st.files, st.objects, st.skipped, st.services, st.destinations, st.endpoints);
		else
			printf("valid: %zu file%s, %zu object%s (%zu skipped), %zu service%s, %zu destination%s, "
			       "%zu endpoint%s\n",
			       st.files, st.files == 1 ? "" : "s", st.objects, st.objects == 1 ? "" : "s", st.skipped,
			       st.services, st.services == 1 ? "" : "s", st.destinations,
			       st.destinations == 1 ? "" : "s", st.endpoints, st.endpoints == 1 ? "" : "s");
		plan_free(&plan);
	}
	sources_free(&src);
	return rc;
}
