/* SPDX-License-Identifier: MIT */
/*
 * dp_driver: drives the map writer (loader/dataplane/) from the command line for
 * tests/e2e/dataplane.sh. Plans are built in C from the arguments, without
 * the YAML compiler.
 *
 *   dp_driver apply     --bpffs DIR --cgroup CG [--verbose] SERVICE...
 *   dp_driver counters  --bpffs DIR --cgroup CG SERVICE...     one line per endpoint: DEST ADDR PORT COUNT
 *   dp_driver view      --bpffs DIR --cgroup CG SERVICE...     what the live side of the maps holds
 *                       (dataplane_service_view), one line per destination:
 *                       ADDR:PORT id ID lb rr|random DEST weight W percent P endpoints N
 *   dp_driver flap      --bpffs DIR --cgroup CG --times N SERVICE... --alt SERVICE...
 *                       applies the plan before --alt and the one after it in turn, N switches
 *   dp_driver sweep     --bpffs DIR --cgroup CG --times N SERVICE...
 *                       N applies; apply i gives the first two destinations weights 100-k and k, k = i % 101
 *   dp_driver reopen    --bpffs DIR --cgroup CG --times N SERVICE...
 *                       N times: close the handle, adopt the pins again, re-apply the same plan
 *   dp_driver generation --bpffs DIR --cgroup CG
 *   dp_driver uninstall --bpffs DIR
 *
 * Every command that opens the data plane also takes --tc IFACE[,IFACE...],
 * --tc-flows N and --tc-load (TC mode, see dataplane_opts).
 *
 *   SERVICE := --service VIP:PORT/tcp|udp=rr|random DEST... [--gateway ADDR[,ADDR]:PORT]
 *   VIP     := A.B.C.D | [IPV6]      (several VIPs: VIP,VIP)
 *   DEST    := NAME:WEIGHT@EP,EP,...  (NAME:WEIGHT@ alone: a subset with no endpoint)
 *   EP      := A.B.C.D:PORT | [IPV6]:PORT
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dataplane/dataplane.h"
#include "plan/plan.h"

static void die(const char *fmt, const char *arg)
{
	fprintf(stderr, "dp_driver: ");
	fprintf(stderr, fmt, arg);
	fputc('\n', stderr);
	exit(2);
}

/* "A.B.C.D" or "[v6]" followed by ":PORT" when want_port. Returns the rest of s. */
static const char *parse_addr(const char *s, struct plan_addr *a, uint16_t *port)
{
	char buf[64];
	const char *end;

	memset(a, 0, sizeof(*a));
	if (*s == '[') {
		end = strchr(s, ']');
		if (!end || (size_t)(end - s - 1) >= sizeof(buf))
			die("bad address '%s'", s);
		memcpy(buf, s + 1, end - s - 1);
		buf[end - s - 1] = '\0';
		if (inet_pton(AF_INET6, buf, a->addr) != 1)
			die("bad IPv6 address '%s'", buf);
		a->family = AF_INET6;
		end++;
	} else {
		size_t n = strspn(s, "0123456789.");
		if (n == 0 || n >= sizeof(buf))
			die("bad address '%s'", s);
		memcpy(buf, s, n);
		buf[n] = '\0';
		if (inet_pton(AF_INET, buf, a->addr) != 1)
			die("bad IPv4 address '%s'", buf);
		a->family = AF_INET;
		end = s + n;
	}
	if (port) {
		if (*end != ':')
			die("missing :PORT in '%s'", s);
		*port = (uint16_t)strtoul(end + 1, (char **)&end, 10);
	}
	return end;
}

static const char *parse_service(char **argv, int argc, int i, struct plan_service *svc)
{
	const char *s = argv[i];
	memset(svc, 0, sizeof(*svc));
	svc->name = "svc";
	svc->namespace = "test";
	do {
		if (svc->n_vips == 2)
			die("more than two VIPs in '%s'", argv[i]);
		s = parse_addr(s, &svc->vips[svc->n_vips++], NULL);
	} while (*s == ',' && s++);
	if (*s != ':')
		die("missing :PORT in service '%s'", argv[i]);
	svc->port = (uint16_t)strtoul(s + 1, (char **)&s, 10);
	if (strncmp(s, "/tcp", 4) == 0)
		svc->protocol = IPPROTO_TCP;
	else if (strncmp(s, "/udp", 4) == 0)
		svc->protocol = IPPROTO_UDP;
	else
		die("service '%s': want /tcp or /udp", argv[i]);
	s += 4;
	if (strcmp(s, "=rr") == 0)
		svc->lb = PLAN_LB_ROUND_ROBIN;
	else if (strcmp(s, "=random") == 0)
		svc->lb = PLAN_LB_RANDOM;
	else
		die("service '%s': want =rr or =random", argv[i]);

	svc->destinations = calloc(PLAN_MAX_DESTINATIONS, sizeof(*svc->destinations));
	for (int j = i + 1; j < argc && strncmp(argv[j], "--", 2) != 0; j++) {
		struct plan_destination *d = &svc->destinations[svc->n_destinations++];
		char *name = strdup(argv[j]), *colon = strchr(name, ':'), *at;
		if (svc->n_destinations > PLAN_MAX_DESTINATIONS || !colon || !(at = strchr(colon, '@')))
			die("bad destination '%s' (want NAME:WEIGHT@EP,...)", argv[j]);
		*colon = '\0';
		d->subset = d->host = name;
		d->weight = (uint32_t)strtoul(colon + 1, NULL, 10);
		d->endpoints = calloc(PLAN_MAX_ENDPOINTS, sizeof(*d->endpoints));
		for (const char *e = at + 1; *e;) {
			if (d->n_endpoints == PLAN_MAX_ENDPOINTS)
				die("too many endpoints in '%s'", argv[j]);
			struct plan_endpoint *ep = &d->endpoints[d->n_endpoints++];
			e = parse_addr(e, &ep->addr, &ep->port);
			ep->pod = "pod";
			if (*e == ',')
				e++;
			else if (*e)
				die("bad endpoint list '%s'", argv[j]);
		}
	}
	return NULL;
}

struct args {
	struct dataplane_opts o;
	const char *tc_ifaces[DATAPLANE_MAX_TC_IFACES + 1];
	long times;
	struct plan plans[2];   /* [1]: after --alt */
};

static void parse_args(int argc, char **argv, struct args *a)
{
	int which = 0;

	memset(a, 0, sizeof(*a));
	a->times = 1;
	for (int i = 2; i < argc; i++) {
		if (strcmp(argv[i], "--bpffs") == 0 && i + 1 < argc) {
			a->o.bpffs_dir = argv[++i];
		} else if (strcmp(argv[i], "--cgroup") == 0 && i + 1 < argc) {
			a->o.cgroup_path = argv[++i];
		} else if (strcmp(argv[i], "--verbose") == 0) {
			a->o.verbose = true;
		} else if (strcmp(argv[i], "--tc") == 0 && i + 1 < argc) {
			char *save = NULL, *list = strdup(argv[++i]);
			for (char *t = strtok_r(list, ",", &save); t && a->o.n_tc_ifaces <= DATAPLANE_MAX_TC_IFACES;
			     t = strtok_r(NULL, ",", &save))
				a->tc_ifaces[a->o.n_tc_ifaces++] = t;
			a->o.tc_ifaces = a->tc_ifaces;
		} else if (strcmp(argv[i], "--tc-flows") == 0 && i + 1 < argc) {
			a->o.tc_flows = (uint32_t)strtoul(argv[++i], NULL, 10);
		} else if (strcmp(argv[i], "--tc-load") == 0) {
			a->o.tc_load = true;
		} else if (strcmp(argv[i], "--gateway") == 0 && i + 1 < argc) {
			struct plan *p = &a->plans[which];
			if (!p->n_services)
				die("--gateway '%s' before any --service", argv[i + 1]);
			struct plan_service *svc = &p->services[p->n_services - 1];
			const char *g = argv[++i];
			do {
				if (svc->n_gateway_addrs == PLAN_MAX_GATEWAY_ADDRS)
					die("too many gateway addresses in '%s'", argv[i]);
				g = parse_addr(g, &svc->gateway_addrs[svc->n_gateway_addrs++], NULL);
			} while (*g == ',' && g++);
			if (*g != ':')
				die("missing :PORT in gateway '%s'", argv[i]);
			svc->gateway_port = (uint16_t)strtoul(g + 1, NULL, 10);
			svc->gateway = "test/gateway";
		} else if (strcmp(argv[i], "--times") == 0 && i + 1 < argc) {
			a->times = strtol(argv[++i], NULL, 10);
		} else if (strcmp(argv[i], "--alt") == 0) {
			which = 1;
		} else if (strcmp(argv[i], "--service") == 0 && i + 1 < argc) {
			struct plan *p = &a->plans[which];
			p->services = realloc(p->services, (p->n_services + 1) * sizeof(*p->services));
			parse_service(argv, argc, ++i, &p->services[p->n_services++]);
		} else if (strncmp(argv[i], "--", 2) == 0) {
			die("unknown option '%s'", argv[i]);
		}
	}
	if (!a->o.bpffs_dir)
		die("%s: --bpffs DIR is required", argv[1]);
}

static void print_stats(uint64_t gen, const struct dataplane_stats *st)
{
	printf("generation %llu written %u removed %u unchanged %u endpoints %u flip_ns %llu drain_ns %llu total_ns %llu\n",
	       (unsigned long long)gen, st->services_written, st->services_removed, st->services_unchanged,
	       st->endpoints_written, (unsigned long long)st->flip_ns, (unsigned long long)st->drain_ns,
	       (unsigned long long)st->total_ns);
}

static int print_counters(struct dataplane *dp, const struct plan *p)
{
	char a[INET6_ADDRSTRLEN];

	for (size_t s = 0; s < p->n_services; s++)
		for (size_t d = 0; d < p->services[s].n_destinations; d++) {
			const struct plan_destination *dst = &p->services[s].destinations[d];
			for (size_t e = 0; e < dst->n_endpoints; e++) {
				struct sluice_endpoint_stats st;
				int err = dataplane_endpoint_stats(dp, &p->services[s], &dst->endpoints[e], &st);
				if (err) {
					fprintf(stderr, "dp_driver: counter: %s\n", strerror(-err));
					return 1;
				}
				inet_ntop(dst->endpoints[e].addr.family, dst->endpoints[e].addr.addr, a, sizeof(a));
				printf("%s %s %u %llu\n", dst->subset, a, dst->endpoints[e].port,
				       (unsigned long long)st.connections);
			}
		}
	return 0;
}

static int print_views(struct dataplane *dp, const struct plan *p)
{
	char a[INET6_ADDRSTRLEN];

	for (size_t s = 0; s < p->n_services; s++) {
		const struct plan_service *svc = &p->services[s];
		struct dataplane_service_view v;
		int err = dataplane_service_view(dp, svc, &v);
		if (err) {
			fprintf(stderr, "dp_driver: view: %s\n", strerror(-err));
			return 1;
		}
		const struct plan_addr *addr = svc->n_vips ? &svc->vips[0] : &svc->gateway_addrs[0];
		inet_ntop(addr->family, addr->addr, a, sizeof(a));
		for (size_t d = 0; d < v.n_destinations; d++)
			printf("%s:%u id %u lb %s %s weight %u percent %.2f endpoints %u\n", a,
			       svc->n_vips ? svc->port : svc->gateway_port, v.id,
			       v.lb == SLUICE_LB_ROUND_ROBIN ? "rr" : "random",
			       d < svc->n_destinations ? svc->destinations[d].subset : "?", v.destinations[d].weight,
			       v.destinations[d].percent, v.destinations[d].n_endpoints);
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct dataplane *dp = NULL;
	struct dataplane_stats st;
	struct args a;
	uint64_t gen = 0, max_flip = 0, max_total = 0, sum_total = 0;
	int err = 0;

	if (argc < 2)
		die("usage: %s", "dp_driver apply|counters|view|flap|sweep|reopen|generation|uninstall --bpffs DIR ...");
	setvbuf(stdout, NULL, _IOLBF, 0);
	parse_args(argc, argv, &a);
	const char *cmd = argv[1];

	if (strcmp(cmd, "uninstall") == 0)
		return dataplane_uninstall(&a.o) ? 1 : 0;
	if ((err = dataplane_open(&a.o, &dp)))
		return 1;
	if (strcmp(cmd, "apply") == 0) {
		if (!(err = dataplane_apply(dp, &a.plans[0], &gen, &st)))
			print_stats(gen, &st);
	} else if (strcmp(cmd, "counters") == 0) {
		err = print_counters(dp, &a.plans[0]);
	} else if (strcmp(cmd, "view") == 0) {
		err = print_views(dp, &a.plans[0]);
	} else if (strcmp(cmd, "generation") == 0) {
		printf("generation %llu\n", (unsigned long long)dataplane_generation(dp));
	} else if (strcmp(cmd, "flap") == 0 || strcmp(cmd, "sweep") == 0 || strcmp(cmd, "reopen") == 0) {
		for (long i = 1; i <= a.times && !err; i++) {
			struct plan *p = &a.plans[0];
			if (cmd[0] == 'f') {
				p = &a.plans[i & 1];
			} else if (cmd[0] == 's') {
				long k = i % 101;
				p->services[0].destinations[0].weight = (uint32_t)(100 - k);
				p->services[0].destinations[1].weight = (uint32_t)k;
			} else {
				dataplane_close(dp);
				dp = NULL;
				if ((err = dataplane_open(&a.o, &dp)))
					break;
			}
			err = dataplane_apply(dp, p, &gen, &st);
			if (st.flip_ns > max_flip)
				max_flip = st.flip_ns;
			if (st.total_ns > max_total)
				max_total = st.total_ns;
			sum_total += st.total_ns;
		}
		printf("%s %ld generation %llu max_flip_ns %llu max_total_ns %llu mean_total_ns %llu\n", cmd, a.times,
		       (unsigned long long)gen, (unsigned long long)max_flip, (unsigned long long)max_total,
		       (unsigned long long)(a.times ? sum_total / a.times : 0));
	} else {
		die("unknown command '%s'", cmd);
	}
	dataplane_close(dp);
	return err ? 1 : 0;
}
