// SPDX-License-Identifier: MIT
/*
 * /metrics in Prometheus' text format (version 0.0.4): sluice_ prefix, base units, _total counters.
 * Per service port and subset: the weight the live side of the maps holds, connections, and for TCP
 * what sockops saw (handshakes, failed connects by reason, retransmits, RTT as a summary's sum and
 * count); per endpoint only with --metrics-endpoints (one series per pod address). Then the generation, TC
 * mode's counters and the API follower (follow.c). kube-proxy's sync metrics and Cilium's map
 * operations are the models: sluice_kubernetes_apply_duration_seconds is the former's equivalent.
 */
#include <netinet/in.h>
#include <string.h>

#include "daemon/daemon.h"
#include "plan/print.h"

/* A label value: backslash, double quote and newline escaped, as the format asks. */
void metrics_label(FILE *out, const char *name, const char *value, bool first)
{
	fprintf(out, "%s%s=\"", first ? "" : ",", name);
	for (const char *p = value ? value : ""; *p; p++) {
		if (*p == '\\' || *p == '"')
			fputc('\\', out);
		if (*p == '\n')
			fputs("\\n", out);
		else
			fputc(*p, out);
	}
	fputc('"', out);
}

static void help(FILE *out, const char *name, const char *type, const char *text)
{
	fprintf(out, "# HELP %s %s\n# TYPE %s %s\n", name, text, name, type);
}

/* The labels of one destination: service, namespace, port, protocol, subset. */
static void dest_labels(FILE *out, const struct plan_service *s, const struct plan_destination *pd)
{
	char port[8];
	snprintf(port, sizeof(port), "%u", s->port);
	metrics_label(out, "service", s->name, true);
	metrics_label(out, "namespace", s->namespace, false);
	metrics_label(out, "port", port, false);
	metrics_label(out, "protocol", plan_protocol_name(s->protocol), false);
	metrics_label(out, "subset", pd->subset, false);
	if (s->gateway)
		metrics_label(out, "gateway", s->gateway, false);
}

enum series { S_WEIGHT, S_ENDPOINTS, S_CONN, S_EST, S_FAILED, S_RETRANS, S_RTT_SUM, S_RTT_COUNT, N_SERIES };

static const struct {
	const char *name, *type, *help;
	bool tcp;
} series[N_SERIES] = {
	[S_WEIGHT] = { "sluice_destination_weight", "gauge",
		       "The weight of a destination as the live side of the maps holds it.", false },
	[S_ENDPOINTS] = { "sluice_destination_endpoints", "gauge", "The ready endpoints a destination routes to.", false },
	[S_CONN] = { "sluice_connections_total", "counter",
		     "Connections (socket mode) and TC flows routed to a destination's endpoints.", false },
	[S_EST] = { "sluice_tcp_established_total", "counter", "TCP handshakes completed (sockops).", true },
	[S_FAILED] = { "sluice_tcp_connect_failures_total", "counter",
		       "TCP connects that failed, by reason: timeout, refused (RST), unreachable (ICMP), "
		       "aborted (closed by the client first), other (sockops).", true },
	[S_RETRANS] = { "sluice_tcp_retransmits_total", "counter", "TCP segments retransmitted, counted at close.", true },
	[S_RTT_SUM] = { "sluice_tcp_rtt_seconds_sum", NULL, NULL, true },
	[S_RTT_COUNT] = { "sluice_tcp_rtt_seconds_count", NULL, NULL, true },
};

static double value(enum series k, const struct sluice_endpoint_stats *st, uint32_t weight, size_t endpoints)
{
	switch (k) {
	case S_WEIGHT: return weight;
	case S_ENDPOINTS: return (double)endpoints;
	case S_CONN: return (double)st->connections;
	case S_EST: return (double)st->established;
	case S_RETRANS: return (double)st->retransmits;
	case S_RTT_SUM: return (double)st->rtt_sum_us / 1e6;
	default: return (double)st->rtt_samples;
	}
}

/*
 * A destination's sample of one series, or one endpoint's (pe): NAME{labels} VALUE. Failed connects
 * are a sample per reason (label `reason`), every reason always: each series exists from the start.
 */
static void sample(FILE *out, enum series k, const char *name, const struct plan_service *s,
		   const struct plan_destination *pd, const struct plan_endpoint *pe,
		   const struct sluice_endpoint_stats *st, uint32_t weight)
{
	for (int r = 0; r < (k == S_FAILED ? SLUICE_CONNECT_FAILURE_REASONS : 1); r++) {
		fprintf(out, "%s{", name);
		dest_labels(out, s, pd);
		if (pe) {
			char ep[80];
			plan_endpoint_str(&pe->addr, pe->port, ep, sizeof(ep));
			metrics_label(out, "endpoint", ep, false);
			if (pe->pod && *pe->pod)   /* a saved plan holds no pod names */
				metrics_label(out, "pod", pe->pod, false);
		}
		if (k == S_FAILED)
			metrics_label(out, "reason", connect_failure_names[r], false);
		fprintf(out, "} %.17g\n", k == S_FAILED ? (double)st->failed[r] : value(k, st, weight, pd->n_endpoints));
	}
}

/* Every destination's value of one series (per endpoint too for counters, with --metrics-endpoints). */
static void destinations(struct daemon *dm, FILE *out, enum series k, const char *name, bool per_endpoint)
{
	for (size_t i = 0; i < dm->plan.n_services; i++) {
		const struct plan_service *s = &dm->plan.services[i];
		if (series[k].tcp && s->protocol != IPPROTO_TCP)
			continue;
		struct dataplane_service_view view;
		bool live = !dataplane_service_view(dm->dp, s, &view) && view.n_destinations == s->n_destinations;
		for (size_t d = 0; d < s->n_destinations; d++) {
			const struct plan_destination *pd = &s->destinations[d];
			struct sluice_endpoint_stats sum = { 0 };
			for (size_t e = 0; e < pd->n_endpoints && k != S_WEIGHT && k != S_ENDPOINTS; e++) {
				struct sluice_endpoint_stats st;
				if (dataplane_endpoint_stats(dm->dp, s, &pd->endpoints[e], &st))
					memset(&st, 0, sizeof(st));
				if (per_endpoint)
					sample(out, k, name, s, pd, &pd->endpoints[e], &st, 0);
				else
					dataplane_stats_add(&sum, &st);
			}
			if (!per_endpoint)
				sample(out, k, name, s, pd, NULL, &sum, live ? view.destinations[d].weight : pd->weight);
		}
	}
}

void metrics_write(struct daemon *dm, FILE *out)
{
	help(out, "sluice_generation", "gauge", "The generation of the plan the data plane serves.");
	fprintf(out, "sluice_generation %llu\n", (unsigned long long)dm->generation);
	help(out, "sluice_plan_unsaved", "gauge", "1 while the live generation is not saved to the state directory.");
	fprintf(out, "sluice_plan_unsaved %d\n", dm->unsaved != NULL);
	help(out, "sluice_service_ports", "gauge", "The service ports (and Gateway ports) the data plane routes.");
	fprintf(out, "sluice_service_ports %zu\n", dm->plan.n_services);
	for (int k = 0; k < N_SERIES; k++) {
		if (k == S_RTT_SUM)
			help(out, "sluice_tcp_rtt_seconds", "summary", "Smoothed RTT of TCP connections, taken at close.");
		else if (series[k].help)
			help(out, series[k].name, series[k].type, series[k].help);
		destinations(dm, out, (enum series)k, series[k].name, false);
	}
	if (dm->metrics_endpoints) {
		static const enum series counters[] = { S_CONN, S_EST, S_FAILED, S_RETRANS };
		for (size_t i = 0; i < sizeof(counters) / sizeof(counters[0]); i++) {
			char name[96];
			snprintf(name, sizeof(name), "sluice_endpoint_%s", series[counters[i]].name + strlen("sluice_"));
			help(out, name, "counter", series[counters[i]].help);
			destinations(dm, out, counters[i], name, true);
		}
	}
	struct dataplane_tc_status tc;
	if (dm->tc && !dataplane_tc_status(dm->dp, &tc)) {
		static const char *const events[SLUICE_TC_STATS] = {
			[SLUICE_TC_NEW_FLOWS] = "new_flow", [SLUICE_TC_FORWARD] = "forwarded", [SLUICE_TC_REPLIES] = "reply",
			[SLUICE_TC_ICMP] = "icmp_error", [SLUICE_TC_REFUSED] = "refused",
			[SLUICE_TC_UNKNOWN_FLOW] = "unknown_flow", [SLUICE_TC_FRAGMENTS] = "fragment_passed",
			[SLUICE_TC_MALFORMED] = "malformed_passed", [SLUICE_TC_ERRORS] = "rewrite_error",
		};
		help(out, "sluice_tc_flows", "gauge", "TC mode's conntrack: flows seen within their idle timeout.");
		fprintf(out, "sluice_tc_flows %u\n", tc.flows_live);
		help(out, "sluice_tc_flows_max", "gauge", "TC mode's conntrack: its size.");
		fprintf(out, "sluice_tc_flows_max %u\n", tc.flows_max);
		help(out, "sluice_tc_packets_total", "counter", "Packets TC mode handled, by what it did.");
		for (int i = 0; i < SLUICE_TC_STATS; i++)
			fprintf(out, "sluice_tc_packets_total{event=\"%s\"} %llu\n", events[i], (unsigned long long)tc.stats[i]);
	}
	struct dataplane_map_size sizes[DATAPLANE_MAX_MAPS];
	size_t n_maps = dataplane_map_sizes(dm->dp, sizes);
	help(out, "sluice_bpf_map_max_entries", "gauge", "A pinned map's size: grown with the plan, never shrunk.");
	for (size_t i = 0; i < n_maps; i++)
		fprintf(out, "sluice_bpf_map_max_entries{map=\"%s\"} %u\n", sizes[i].name, sizes[i].max_entries);
	help(out, "sluice_bpf_map_memory_bytes", "gauge", "A pinned map's memory, as the kernel accounts it (bpftool's bytes_memlock).");
	for (size_t i = 0; i < n_maps; i++)
		fprintf(out, "sluice_bpf_map_memory_bytes{map=\"%s\"} %llu\n", sizes[i].name, (unsigned long long)sizes[i].bytes);
	struct dataplane_map_ops ops;
	dataplane_map_ops(dm->dp, &ops);
	help(out, "sluice_bpf_map_ops_total", "counter",
	     "Map writes of applies, by map, operation and outcome (Cilium's cilium_bpf_map_ops_total).");
	for (int m = 0; m < DP_MAPS; m++)
		for (int op = 0; op < DP_OPS; op++)
			for (int failed = 0; failed < 2; failed++)
				fprintf(out, "sluice_bpf_map_ops_total{map=\"%s\",operation=\"%s\",outcome=\"%s\"} %llu\n",
					dataplane_map_names[m], dataplane_map_op_names[op], failed ? "failure" : "success",
					(unsigned long long)(failed ? ops.failed[m][op] : ops.ok[m][op]));
	follower_metrics(dm, out);
}
