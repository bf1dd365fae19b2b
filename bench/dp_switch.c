/* SPDX-License-Identifier: MIT */
/*
 * dp_switch: how long one weight change takes to apply, with 1 and with
 * 10,000 services loaded (DESIGN.md §2, property 3). Prints figures; never fails
 * on a slow machine. Needs root: it installs the data plane on a cgroup and
 * a bpffs directory of its own and removes both at the end.
 *
 *   make build/dp_switch && build/dp_switch [ROUNDS]
 */
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dataplane/dataplane.h"
#include "plan/plan.h"

#define N_LARGE 10000

static struct plan make_plan(size_t n)
{
	struct plan p = { .services = calloc(n, sizeof(struct plan_service)), .n_services = n };

	for (size_t i = 0; i < n; i++) {
		struct plan_service *s = &p.services[i];
		s->name = "bench";
		s->namespace = "bench";
		s->n_vips = 1;
		s->vips[0].family = AF_INET;
		memcpy(s->vips[0].addr, (uint8_t[]){ 198, 19, (uint8_t)(i >> 8), (uint8_t)i }, 4);
		s->port = 8080;
		s->protocol = IPPROTO_TCP;
		s->lb = PLAN_LB_ROUND_ROBIN;
		s->n_destinations = 2;
		s->destinations = calloc(2, sizeof(*s->destinations));
		for (size_t d = 0; d < 2; d++) {
			struct plan_destination *dst = &s->destinations[d];
			dst->host = "bench.bench";
			dst->subset = d ? "v2" : "v1";
			dst->weight = d ? 20 : 80;
			dst->n_endpoints = 2;
			dst->endpoints = calloc(2, sizeof(*dst->endpoints));
			for (size_t e = 0; e < 2; e++) {
				dst->endpoints[e].addr.family = AF_INET;
				memcpy(dst->endpoints[e].addr.addr,
				       (uint8_t[]){ 198, 18, (uint8_t)(i >> 6), (uint8_t)((i & 63) << 2 | d << 1 | e) }, 4);
				dst->endpoints[e].port = 8080;
			}
		}
	}
	return p;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static void report(const char *what, uint64_t *v, int n)
{
	qsort(v, n, sizeof(*v), cmp_u64);
	printf("  %-26s median %10.1f us   min %10.1f us   max %10.1f us\n", what, v[n / 2] / 1e3, v[0] / 1e3,
	       v[n - 1] / 1e3);
}

static int run(struct dataplane *dp, size_t n, int rounds)
{
	struct plan p = make_plan(n);
	struct dataplane_stats st;
	uint64_t flip[rounds], drain[rounds], total[rounds], rest[rounds];
	int err;

	if ((err = dataplane_apply(dp, &p, NULL, &st)))
		return err;
	printf("%zu services loaded: initial apply %.1f ms (%u records, %u endpoint slots)\n", n, st.total_ns / 1e6,
	       st.services_written, st.endpoints_written);
	for (int r = 0; r < rounds; r++) {
		p.services[0].destinations[0].weight = r & 1 ? 80 : 70;
		p.services[0].destinations[1].weight = r & 1 ? 20 : 30;
		if ((err = dataplane_apply(dp, &p, NULL, &st)))
			return err;
		if (st.services_written != 1)
			fprintf(stderr, "dp_switch: expected one record written, got %u\n", st.services_written);
		flip[r] = st.flip_ns;
		drain[r] = st.drain_ns;
		total[r] = st.total_ns;
		rest[r] = st.total_ns - st.drain_ns;
	}
	printf("one weight change with %zu services loaded (%d rounds):\n", n, rounds);
	report("switch (write `active`)", flip, rounds);
	report("wait for readers (RCU)", drain, rounds);
	report("apply minus the wait", rest, rounds);
	report("apply total", total, rounds);
	return 0;
}

int main(int argc, char **argv)
{
	int rounds = argc > 1 ? atoi(argv[1]) : 30;
	char cg[256] = "", bpffs[128];
	struct dataplane *dp = NULL;
	FILE *f = fopen("/proc/mounts", "r");
	char line[512], mnt[256], type[64];
	int err = 1;

	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "%*s %255s %63s", mnt, type) == 2 && strcmp(type, "cgroup2") == 0) {
			snprintf(cg, sizeof(cg), "%s/sluice-bench-%d", mnt, getpid());
			break;
		}
	if (f)
		fclose(f);
	if (!cg[0] || rounds < 1) {
		fprintf(stderr, "dp_switch: no cgroup v2 mount, or bad ROUNDS\n");
		return 1;
	}
	snprintf(bpffs, sizeof(bpffs), "/sys/fs/bpf/sluice-bench-%d", getpid());
	if (mkdir(cg, 0755)) {
		perror("dp_switch: mkdir cgroup");
		return 1;
	}
	struct dataplane_opts o = { .bpffs_dir = bpffs, .cgroup_path = cg };
	if (dataplane_open(&o, &dp))
		goto out;
	if (run(dp, 1, rounds) || run(dp, N_LARGE, rounds))
		goto out;
	err = 0;
out:
	dataplane_close(dp);
	dataplane_uninstall(&o);
	rmdir(cg);
	return err;
}
