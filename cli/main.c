// SPDX-License-Identifier: MIT
/* sluice: validate, apply and inspect traffic splits. A table of commands, one table of options. */
#include "main.h"

#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/util.h"

struct cli cli;

struct cmd {
	const char *name;
	int (*fn)(void);
	const char *args;
	const char *help;
};

static const struct cmd cmds[] = {
	{ "plan", do_plan, "-f PATH... [-n NS] [-o json]", "compile Services, Pods and Istio rules into a routing plan" },
	{ "validate", do_validate, "-f PATH... [-n NS]", "check rules, print every error and a one-line summary" },
	{ "apply", do_apply, "-f PATH... [-n NS]", "compile and switch the data plane to the new plan" },
	{ "weight", do_weight, "SERVICE[.NAMESPACE] SUBSET=WEIGHT...", "set the weights of a service's route" },
	{ "status", do_status, "[SERVICE[.NAMESPACE]] [-o json]", "show what the data plane is doing" },
	{ NULL, NULL, NULL, NULL },
};

static const struct option options[] = {
	{ "filename", required_argument, NULL, 'f' },
	{ "namespace", required_argument, NULL, 'n' },
	{ "output", required_argument, NULL, 'o' },
	{ "json", no_argument, NULL, 'j' },
	{ "verbose", no_argument, NULL, 'v' },
	{ "socket", required_argument, NULL, 'S' },
	{ "cluster-domain", required_argument, NULL, 'D' },
	{ "gateway-address", required_argument, NULL, 'G' },
	{ "timeout", required_argument, NULL, 'T' },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

void p_err(const char *fmt, ...)
{
	char *msg;
	va_list ap;
	va_start(ap, fmt);
	if (vasprintf(&msg, fmt, ap) < 0)
		msg = NULL;
	va_end(ap);
	report_error(stdout, stderr, cli.json, "%s", msg ? msg : "out of memory");
	free(msg);
}

static void usage(FILE *out)
{
	fputs("Usage: sluice [OPTIONS] COMMAND [ARGS]\n\nCommands:\n", out);
	for (const struct cmd *c = cmds; c->name; c++)
		fprintf(out, "  %-9s %-40s %s\n", c->name, c->args, c->help);
	fputs("\nOptions:\n"
	      "  -f, --filename PATH     file, directory (read recursively) or - for standard input; repeatable\n"
	      "  -n, --namespace NS      namespace of objects that name none (default: default)\n"
	      "  -o, --output FORMAT     text (default) or json\n"
	      "  -v, --verbose           also list the objects skipped (kinds sluice does not read)\n"
	      "      --socket PATH       sluiced's socket (default: $SLUICE_SOCKET or /run/sluice/sluice.sock)\n"
	      "      --cluster-domain D  cluster domain of service hosts (default: cluster.local)\n"
	      "      --timeout SECONDS   apply, weight, status: give up on sluiced after this long (default: 30)\n"
	      "      --gateway-address IP  plan, validate: where Gateways without spec.addresses are served\n"
	      "                          (apply uses sluiced's --gateway-address)\n"
	      "\nExit status: 0 done, 1 not done (invalid input, or sluiced could not apply or save the change),\n"
	      "2 usage, 3 daemon unreachable, not answering in time, or permission denied.\n",
	      out);
}

int main(int argc, char **argv)
{
	cli.timeout_s = 30;
	cli.socket = getenv("SLUICE_SOCKET");
	if (!cli.socket || !*cli.socket)
		cli.socket = "/run/sluice/sluice.sock";
	cli.files = calloc((size_t)argc + 1, sizeof(*cli.files));
	if (!cli.files)
		return EXIT_USAGE;
	/* a leading '-' keeps arguments such as v1=80 in order, like bpftool's positional words */
	int c;
	opterr = 0;
	char **words = calloc((size_t)argc + 1, sizeof(*words));
	int n_words = 0;
	while ((c = getopt_long(argc, argv, "-f:n:o:jvh", options, NULL)) != -1) {
		switch (c) {
		case 1:
			words[n_words++] = optarg;
			break;
		case 'f':
			cli.files[cli.n_files++] = optarg;
			break;
		case 'n':
			cli.namespace = optarg;
			break;
		case 'o':
			if (!strcmp(optarg, "json")) {
				cli.json = true;
			} else if (strcmp(optarg, "text")) {
				p_err("unknown output format \"%s\"; use -o json or -o text", optarg);
				return EXIT_USAGE;
			}
			break;
		case 'j':
			cli.json = true;
			break;
		case 'v':
			cli.verbose = true;
			break;
		case 'S':
			cli.socket = optarg;
			break;
		case 'D':
			cli.cluster_domain = optarg;
			break;
		case 'G':
			cli.gateway_address = optarg;
			break;
		case 'T': {
			char *end;
			unsigned long t = strtoul(optarg, &end, 10);
			if (!*optarg || *end || optarg[0] == '-' || optarg[0] == '+' || !t || t > 86400) {
				p_err("--timeout \"%s\" is not a number of seconds from 1 to 86400", optarg);
				return EXIT_USAGE;
			}
			cli.timeout_s = (unsigned)t;
			break;
		}
		case 'h':
			usage(stdout);
			return EXIT_DONE;
		default:
			if (optopt)
				p_err("option -%c needs a value or is unknown; run 'sluice --help'", optopt);
			else
				p_err("unknown option \"%s\"; run 'sluice --help'", argv[optind - 1]);
			return EXIT_USAGE;
		}
	}
	if (!n_words) {
		usage(stderr);
		return EXIT_USAGE;
	}
	if (!strcmp(words[0], "help")) {
		usage(stdout);
		return EXIT_DONE;
	}
	cli.argc = n_words - 1;
	cli.argv = words + 1;
	for (const struct cmd *cmd = cmds; cmd->name; cmd++)
		if (!strcmp(cmd->name, words[0]))
			return cmd->fn();
	p_err("unknown command \"%s\"; run 'sluice help' for the list", words[0]);
	return EXIT_USAGE;
}
