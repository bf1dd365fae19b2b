// SPDX-License-Identifier: MIT
/* sluice plan, sluice validate: the compiler alone, no daemon, no root. */
#include <stdio.h>
#include <stdlib.h>

#include "common/json.h"
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

/* Compiles every -f, then prints what a command shows of a valid plan. */
static int compile_and(void (*show)(const struct plan *plan, const struct compile_stats *st))
{
	struct plan plan;
	struct compile_stats st;
	struct sources src = { 0 };
	int rc = cli_compile(&plan, &st, &src);
	if (rc == EXIT_DONE) {
		show(&plan, &st);
		plan_free(&plan);
	}
	sources_free(&src);
	return rc;
}

static void show_plan(const struct plan *plan, const struct compile_stats *st)
{
	(void)st;
	if (cli.json)
		plan_print_json(plan, stdout);
	else
		plan_print_text(plan, stdout);
}

static void show_valid(const struct plan *plan, const struct compile_stats *st)
{
	(void)plan;
	if (cli.json) {
		json_writer_t *w = jsonw_new(stdout);
		jsonw_start_object(w);
		jsonw_bool_field(w, "valid", true);
		jsonw_uint_field(w, "files", st->files);
		jsonw_uint_field(w, "objects", st->objects);
		jsonw_uint_field(w, "skipped", st->skipped);
		jsonw_uint_field(w, "services", st->services);
		jsonw_uint_field(w, "destinations", st->destinations);
		jsonw_uint_field(w, "endpoints", st->endpoints);
		jsonw_end_object(w);
		jsonw_destroy(&w);
	} else
		printf("valid: %zu file%s, %zu object%s (%zu skipped), %zu service%s, %zu destination%s, "
		       "%zu endpoint%s\n",
		       st->files, st->files == 1 ? "" : "s", st->objects, st->objects == 1 ? "" : "s", st->skipped,
		       st->services, st->services == 1 ? "" : "s", st->destinations, st->destinations == 1 ? "" : "s",
		       st->endpoints, st->endpoints == 1 ? "" : "s");
}

int do_plan(void)
{
	return compile_and(show_plan);
}

int do_validate(void)
{
	return compile_and(show_valid);
}
