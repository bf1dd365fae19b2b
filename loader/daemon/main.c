// SPDX-License-Identifier: MIT
/*
 * sluiced: the only writer of the data plane's maps (daemon.h lists its files). Shaped like
 * libbpf-bootstrap's loader: options, open (or adopt) the data plane, restore the saved plan,
 * drop capabilities, serve until SIGINT or SIGTERM, one cleanup path. The data plane keeps
 * serving from its pins when sluiced stops.
 */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/capability.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/exit.h"
#include "common/fs.h"
#include "common/log.h"
#include "common/options.h"
#include "daemon/daemon.h"

volatile sig_atomic_t stopping;

static void on_signal(int sig)
{
	(void)sig;
	stopping = 1;
}

enum { OPT_STATE_DIR = 256, OPT_UNINSTALL, OPT_TC, OPT_TC_FLOWS, OPT_GATEWAY_ADDRESS, OPT_CGROUP, OPT_BPFFS,
       OPT_SOCKET, OPT_KUBERNETES, OPT_KUBECONFIG, OPT_CONTEXT, OPT_NAMESPACE, OPT_COALESCE, OPT_WATCH_IDLE,
       OPT_LISTEN, OPT_METRICS_ENDPOINTS };

static const struct opt options[] = {
	{ "cgroup", 0, "PATH", "cgroup v2 directory whose processes are served\n"
			       "(default: the cgroup v2 root from /proc/mounts: every pod on the node)", OPT_CGROUP },
	{ "bpffs", 0, "DIR", "where programs, maps and links are pinned (default: /sys/fs/bpf/sluice)", OPT_BPFFS },
	{ "socket", 0, "PATH", "the CLI's socket, mode 0600 (default: /run/sluice/sluice.sock)", OPT_SOCKET },
	{ "state-dir", 0, "DIR", "the applied plan and weight journal (default: /var/lib/sluice)", OPT_STATE_DIR },
	{ "tc", 0, "IFACE[,IFACE...]", "TC mode on those interfaces (default: none, socket mode only)", OPT_TC },
	{ "tc-flows", 0, "N", "size of TC mode's conntrack (default: 65536; a pinned table keeps its size)",
	  OPT_TC_FLOWS },
	{ "gateway-address", 0, "IP", "where Istio Gateways without spec.addresses are served (default: none)",
	  OPT_GATEWAY_ADDRESS },
	{ "kubernetes", 0, NULL, "follow the Kubernetes API: its Services, Pods and Istio objects are the plan,\n"
				 "and local apply and weight are refused (in a pod: the service account)", OPT_KUBERNETES },
	{ "kubeconfig", 0, "PATH", "with --kubernetes, outside a pod: the kubeconfig (default: $KUBECONFIG,\n"
				   "then ~/.kube/config)", OPT_KUBECONFIG },
	{ "context", 0, "NAME", "with --kubeconfig: the context (default: its current-context)", OPT_CONTEXT },
	{ "namespace", 0, "NS", "with --kubernetes: follow only this namespace; repeatable (default: all)",
	  OPT_NAMESPACE },
	{ "coalesce-ms", 0, "MS", "with --kubernetes: API changes this close together make one generation\n"
				  "(default: 10)", OPT_COALESCE },
	{ "watch-idle", 0, "SECONDS", "with --kubernetes: a watch silent this long is taken for stalled and\n"
				       "replaced (default: 120)", OPT_WATCH_IDLE },
	{ "listen", 0, "ADDR:PORT", "the node endpoint, read-only HTTP: /healthz, /readyz, /status, /metrics\n"
				    "(default: none; ADDR may be [IPv6] or empty for every address)", OPT_LISTEN },
	{ "metrics-endpoints", 0, NULL, "/metrics: a series per endpoint too (one per pod address: bounded by the\n"
					"cluster's pods), not only per subset", OPT_METRICS_ENDPOINTS },
	{ "uninstall", 0, NULL, "detach and unpin everything under --bpffs (refused while a sluiced runs)",
	  OPT_UNINSTALL },
	{ "verbose", 'v', NULL, "libbpf's messages, the verifier log, and debug lines", 'v' },
	{ "help", 'h', NULL, "this text", 'h' },
	{ NULL, 0, NULL, NULL, 0 },
};

static void usage(FILE *out)
{
	fputs("Usage: sluiced [OPTIONS]\n"
	      "       sluiced --uninstall [--bpffs DIR] [--socket PATH]\n\nOptions:\n",
	      out);
	opts_usage(out, options);
}

/* EXIT_DONE to go on, or the exit status. */
static int parse_options(int argc, char **argv, struct daemon *dm)
{
	char *shortopts;
	struct option *longopts = opts_getopt(options, "", &shortopts);
	int c, rc = EXIT_DONE;
	while (rc == EXIT_DONE && (c = getopt_long(argc, argv, shortopts, longopts, NULL)) != -1) {
		switch (c) {
		case OPT_CGROUP: dm->cgroup = optarg; dm->cgroup_given = true; break;
		case OPT_BPFFS: dm->bpffs = optarg; break;
		case OPT_SOCKET: dm->socket_path = optarg; break;
		case OPT_STATE_DIR: dm->state_dir = optarg; break;
		case OPT_UNINSTALL: dm->uninstall = true; break;
		case OPT_GATEWAY_ADDRESS: dm->gateway_address = optarg; break;
		case OPT_TC: dm->tc = optarg; break;
		case 'v': dm->verbose = true; break;
		case OPT_KUBERNETES: dm->kubernetes = true; break;
		case OPT_LISTEN: {
			struct sockaddr_storage ss;
			unsigned len;
			dm->listen_addr = optarg;
			if (parse_listen(optarg, &ss, &len)) {
				log_error("--listen \"%s\" is not ADDR:PORT, [ADDR6]:PORT or :PORT", optarg);
				rc = EXIT_USAGE;
			}
			break;
		}
		case OPT_METRICS_ENDPOINTS: dm->metrics_endpoints = true; break;
		case OPT_KUBECONFIG: dm->kubeconfig = optarg; break;
		case OPT_CONTEXT: dm->kube_context = optarg; break;
		case OPT_NAMESPACE:
			if (dm->n_namespaces == sizeof(dm->namespaces) / sizeof(dm->namespaces[0])) {
				log_error("more than %zu --namespace", dm->n_namespaces);
				rc = EXIT_USAGE;
			} else {
				dm->namespaces[dm->n_namespaces++] = optarg;
			}
			break;
		case OPT_COALESCE:
		case OPT_WATCH_IDLE: {
			char *end;
			unsigned long v = strtoul(optarg, &end, 10);
			unsigned long max = c == OPT_COALESCE ? 60000 : 86400, min = c == OPT_COALESCE ? 0 : 1;
			if (!*optarg || *end || optarg[0] == '-' || v < min || v > max) {
				log_error("--%s \"%s\" is not a number from %lu to %lu", c == OPT_COALESCE ? "coalesce-ms" :
					  "watch-idle", optarg, min, max);
				rc = EXIT_USAGE;
			} else if (c == OPT_COALESCE) {
				dm->coalesce_ms = (unsigned)v;
			} else {
				dm->watch_idle_s = (long)v;
			}
			break;
		}
		case OPT_TC_FLOWS: {
			char *end;
			dm->tc_flows = strtoul(optarg, &end, 10);
			if (*end || !dm->tc_flows || dm->tc_flows > UINT32_MAX) {
				log_error("--tc-flows \"%s\" is not a number of flows above 0", optarg);
				rc = EXIT_USAGE;
			}
			break;
		}
		case 'h': usage(stdout); rc = -1; break;
		default: usage(stderr); rc = EXIT_USAGE; break;
		}
	}
	if (rc == EXIT_DONE && !dm->kubernetes &&
	    (dm->kubeconfig || dm->kube_context || dm->n_namespaces || dm->coalesce_ms != 10 || dm->watch_idle_s != 120)) {
		log_error("--kubeconfig, --context, --namespace, --coalesce-ms and --watch-idle go with --kubernetes");
		rc = EXIT_USAGE;
	}
	if (rc == EXIT_DONE && optind < argc) {
		log_error("unexpected argument \"%s\"", argv[optind]);
		usage(stderr);
		rc = EXIT_USAGE;
	}
	free(longopts);
	free(shortopts);
	return rc;
}

/*
 * Serving needs no capability (map reads and writes through fds already open); growing the maps
 * (loader/dataplane/grow.c) needs those of loading programs, kept permitted but not effective:
 * the growth raises them for itself, and the follower's threads drop them (DESIGN.md §12).
 */
static int drop_capabilities(void)
{
	static const cap_value_t grow[] = { CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON };
	/* the bounding set first: emptying it needs CAP_SETPCAP, which goes next */
	for (cap_value_t c = 0; c <= CAP_LAST_CAP; c++)
		if (CAP_IS_SUPPORTED(c) && cap_drop_bound(c) && errno != EINVAL)
			return -errno;
	cap_t caps = cap_init();     /* empty set */
	if (!caps)
		return -errno;
	int rc = cap_set_flag(caps, CAP_PERMITTED, 3, grow, CAP_SET) || cap_set_proc(caps) ? -errno : 0;
	cap_free(caps);
	if (!rc)
		prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
	return rc;
}

/* Unpins everything, refused while a sluiced serves the pins; the saved plan stays where it is. */
static int uninstall(struct daemon *dm, const struct dataplane_opts *o)
{
	if (dataplane_uninstall(o))
		return EXIT_INVALID;
	/* a socket nobody answers on is a dead sluiced's; one that answers is another data plane's */
	if (!socket_answers(dm->socket_path))
		unlink(dm->socket_path);
	log_info("uninstalled: links detached, %s removed; a saved plan stays in its state directory (remove it to "
		 "start empty)", dm->bpffs);
	return EXIT_DONE;
}

int main(int argc, char **argv)
{
	struct daemon dm = {
		.bpffs = "/sys/fs/bpf/sluice",
		.socket_path = "/run/sluice/sluice.sock",
		.state_dir = "/var/lib/sluice",
		.listen_fd = -1,
		.http_fd = -1,
		.coalesce_ms = 10,
		.watch_idle_s = 120,
	};
	log_init("sluiced", LOG_INFO);
	int rc = parse_options(argc, argv, &dm);
	if (rc)
		return rc < 0 ? EXIT_DONE : rc;
	rc = EXIT_INVALID;
	log_init("sluiced", dm.verbose ? LOG_DEBUG : LOG_INFO);
	struct dataplane_opts o = { .bpffs_dir = dm.bpffs, .verbose = dm.verbose };
	if (dm.uninstall)
		return uninstall(&dm, &o);
	if (!dm.cgroup) {
		dm.cgroup = fs_cgroup2_mount();
		if (!dm.cgroup) {
			log_error("no cgroup2 mount in /proc/mounts; mount cgroup v2 or pass --cgroup");
			return EXIT_INVALID;
		}
	}
	o.cgroup_path = dm.cgroup;
	/* TC mode on the interfaces listed (none: TC mode off, and removed if a previous run had it) */
	char *tc_ifaces[DATAPLANE_MAX_TC_IFACES + 1], *tc_copy = dm.tc ? strdup(dm.tc) : NULL, *save = NULL;
	for (char *t = tc_copy ? strtok_r(tc_copy, ",", &save) : NULL; t && o.n_tc_ifaces <= DATAPLANE_MAX_TC_IFACES;
	     t = strtok_r(NULL, ",", &save))
		tc_ifaces[o.n_tc_ifaces++] = t;
	o.tc_ifaces = (const char *const *)tc_ifaces;
	o.tc_flows = (uint32_t)dm.tc_flows;
	/* the whole node is the default, as a DaemonSet serves every pod; tests pass their own cgroup */
	o.allow_cgroup_root = !dm.cgroup_given;
	signal(SIGPIPE, SIG_IGN);
	struct sigaction sa = { .sa_handler = on_signal };
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);

	int err = fs_mkdir_p(dm.state_dir, 0700);
	if (err) {
		log_error("cannot create state directory %s: %s", dm.state_dir, strerror(-err));
		goto cleanup;
	}
	if (socket_answers(dm.socket_path)) {
		log_error("another sluiced answers on %s; hint: stop it, or give this one its own --socket",
			  dm.socket_path);
		goto cleanup;
	}
	if (dataplane_open(&o, &dm.dp))
		goto cleanup;
	dm.generation = dataplane_generation(dm.dp);
	/* an upgrade across a map layout change swaps its programs in once the plan is in the new maps */
	if (restore_state(&dm) || dataplane_finish_open(dm.dp))
		goto cleanup;
	if (listen_socket(&dm) || listen_http(&dm))
		goto cleanup;
	if (drop_capabilities()) {
		log_error("cannot drop capabilities: %s", strerror(errno));
		goto cleanup;
	}
	log_info("serving cgroup %s%s%s, pins in %s, socket %s, generation %llu", dm.cgroup, dm.tc ? " and TC on " : "",
		 dm.tc ? dm.tc : "", dm.bpffs, dm.socket_path, (unsigned long long)dm.generation);
	/* threads only now: they inherit the dropped capabilities */
	if (dm.kubernetes && follower_start(&dm))
		goto cleanup;
	serve(&dm);
	log_info("stopping; the data plane keeps serving from its pins");
	rc = EXIT_DONE;
cleanup:
	follower_stop(&dm);
	if (dm.listen_fd >= 0) {
		close(dm.listen_fd);
		unlink(dm.socket_path);
	}
	if (dm.http_fd >= 0)
		close(dm.http_fd);
	dataplane_close(dm.dp);
	plan_free(&dm.plan);
	free(dm.unsaved);
	free(dm.pins_note);
	free(tc_copy);
	return rc;
}
