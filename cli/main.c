// SPDX-License-Identifier: MIT
/* sluice: validate, apply and inspect traffic splits. A table of commands, one table of options. */
#include "main.h"

#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/options.h"
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

enum { OPT_SOCKET = 256, OPT_CLUSTER_DOMAIN, OPT_GATEWAY_ADDRESS, OPT_TIMEOUT, OPT_JSON, OPT_CLUSTER, OPT_KUBECONFIG,
       OPT_CONTEXT, OPT_WAIT };

static const struct opt options[] = {
	{ "filename", 'f', "PATH", "file, directory (read recursively) or - for standard input; repeatable", 'f' },
	{ "namespace", 'n', "NS", "namespace of objects that name none (default: default)", 'n' },
	{ "output", 'o', "FORMAT", "text (default) or json", 'o' },
	{ "json", 'j', NULL, "the same as -o json", OPT_JSON },
	{ "verbose", 'v', NULL, "also list the objects skipped (kinds sluice does not read)", 'v' },
	{ "socket", 0, "PATH", "sluiced's socket (default: $SLUICE_SOCKET or /run/sluice/sluice.sock)", OPT_SOCKET },
	{ "cluster-domain", 0, "D", "cluster domain of service hosts (default: cluster.local)", OPT_CLUSTER_DOMAIN },
	{ "timeout", 0, "SECONDS", "apply, weight, status: give up on sluiced after this long (default: 30)",
	  OPT_TIMEOUT },
	{ "gateway-address", 0, "IP", "plan, validate: where Gateways without spec.addresses are served\n"
				      "(apply uses sluiced's --gateway-address)", OPT_GATEWAY_ADDRESS },
	{ "cluster", 0, NULL, "weight: change the VirtualService on the Kubernetes API server, which every\n"
			      "node's sluiced follows ($KUBECONFIG, else ~/.kube/config); status: every node's,\n"
			      "from the endpoints of sluice's DaemonSet pods", OPT_CLUSTER },
	{ "wait", 0, NULL, "with weight --cluster: until every node applied the change (or --timeout)", OPT_WAIT },
	{ "kubeconfig", 0, "PATH", "the same as --cluster, with this kubeconfig", OPT_KUBECONFIG },
	{ "context", 0, "NAME", "with --cluster: the kubeconfig's context (default: its current one)", OPT_CONTEXT },
	{ "help", 'h', NULL, "this text", 'h' },
	{ NULL, 0, NULL, NULL, 0 },
};

void p_err(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	report_verror(stdout, stderr, cli.json, fmt, ap);
	va_end(ap);
}

static void usage(FILE *out)
{
	fputs("Usage: sluice [OPTIONS] COMMAND [ARGS]\n\nCommands:\n", out);
	for (const struct cmd *c = cmds; c->name; c++)
		fprintf(out, "  %-9s %-40s %s\n", c->name, c->args, c->help);
	fputs("\nOptions:\n", out);
	opts_usage(out, options);
	fputs("\nExit status: 0 done, 1 not done (invalid input, or sluiced could not apply or save the change),\n"
	      "2 usage, 3 daemon unreachable, not answering in time, or permission denied.\n",
	      out);
}

/* One option's value into cli. EXIT_DONE, or the exit status of a bad value. */
static int set_option(int c, const char *arg)
{
	switch (c) {
	case 'f': cli.files[cli.n_files++] = arg; break;
	case 'n': cli.namespace = arg; break;
	case 'v': cli.verbose = true; break;
	case OPT_JSON: cli.json = true; break;
	case OPT_SOCKET: cli.socket = arg; break;
	case OPT_CLUSTER_DOMAIN: cli.cluster_domain = arg; break;
	case OPT_GATEWAY_ADDRESS: cli.gateway_address = arg; break;
	case OPT_CLUSTER: cli.cluster = true; break;
	case OPT_KUBECONFIG: cli.kubeconfig = arg; cli.cluster = true; break;
	case OPT_CONTEXT: cli.context = arg; break;
	case OPT_WAIT: cli.wait = true; break;
	case 'o':
		if (!strcmp(arg, "json")) {
			cli.json = true;
		} else if (strcmp(arg, "text")) {
			p_err("unknown output format \"%s\"; use -o json or -o text", arg);
			return EXIT_USAGE;
		}
		break;
	case OPT_TIMEOUT: {
		char *end;
		unsigned long t = strtoul(arg, &end, 10);
		if (!*arg || *end || arg[0] == '-' || arg[0] == '+' || !t || t > 86400) {
			p_err("--timeout \"%s\" is not a number of seconds from 1 to 86400", arg);
			return EXIT_USAGE;
		}
		cli.timeout_s = (unsigned)t;
		break;
	}
	}
	return EXIT_DONE;
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
	char *shortopts;
	struct option *longopts = opts_getopt(options, "-:", &shortopts);
	char **words = calloc((size_t)argc + 1, sizeof(*words));
	int c, n_words = 0, rc = EXIT_DONE;
	opterr = 0;
	while (rc == EXIT_DONE && (c = getopt_long(argc, argv, shortopts, longopts, NULL)) != -1) {
		if (c == 1) {
			words[n_words++] = optarg;
		} else if (c == 'h') {
			usage(stdout);
			return EXIT_DONE;
		} else if (c == ':') {
			p_err("option %s needs a value; run 'sluice --help'", argv[optind - 1]);
			rc = EXIT_USAGE;
		} else if (c == '?') {
			if (optopt && optopt < 256)
				p_err("unknown option -%c; run 'sluice --help'", optopt);
			else
				p_err("unknown option \"%s\"; run 'sluice --help'", argv[optind - 1]);
			rc = EXIT_USAGE;
		} else {
			rc = set_option(c, optarg);
		}
	}
	free(longopts);
	free(shortopts);
	if (rc)
		return rc;
	if (!n_words) {
		usage(stderr);
		return EXIT_USAGE;
	}
	if (!strcmp(words[0], "help")) {
		usage(stdout);
		return EXIT_DONE;
	}
	if ((cli.cluster || cli.context) && strcmp(words[0], "weight") && strcmp(words[0], "status")) {
		p_err("--cluster, --kubeconfig and --context go with weight and status: the other commands talk to the "
		      "node's sluiced");
		return EXIT_USAGE;
	}
	if (cli.wait && (!cli.cluster || strcmp(words[0], "weight"))) {
		p_err("--wait goes with weight --cluster");
		return EXIT_USAGE;
	}
	if (cli.context && !cli.cluster) {
		p_err("--context goes with --cluster or --kubeconfig");
		return EXIT_USAGE;
	}
	cli.argc = n_words - 1;
	cli.argv = words + 1;
	for (const struct cmd *cmd = cmds; cmd->name; cmd++)
		if (!strcmp(cmd->name, words[0]))
			return cmd->fn();
	p_err("unknown command \"%s\"; run 'sluice help' for the list", words[0]);
	return EXIT_USAGE;
}
