// SPDX-License-Identifier: MIT
/*
 * `sluice status`: what the data plane does, read from the maps (weights and shares from the live
 * side, per-endpoint counters, TC mode's counters), with warnings first. One walk prints text or
 * JSON: each printer is given the JSON writer, or NULL for text.
 */
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "common/exit.h"
#include "common/json.h"
#include "daemon/daemon.h"
#include "plan/print.h"

/* Names of enum sluice_tc_stat for status: JSON key, then text label. */
static const char *const tc_stat_names[SLUICE_TC_STATS][2] = {
	[SLUICE_TC_NEW_FLOWS] = { "new_flows", "new flows" },
	[SLUICE_TC_FORWARD] = { "forwarded", "forwarded" },
	[SLUICE_TC_REPLIES] = { "replies", "replies" },
	[SLUICE_TC_ICMP] = { "icmp_errors", "icmp errors" },
	[SLUICE_TC_REFUSED] = { "refused", "refused" },
	[SLUICE_TC_UNKNOWN_FLOW] = { "unknown_flows", "unknown flows" },
	[SLUICE_TC_FRAGMENTS] = { "fragments", "fragments passed" },
	[SLUICE_TC_MALFORMED] = { "malformed", "malformed passed" },
	[SLUICE_TC_ERRORS] = { "errors", "rewrite errors" },
};

/* Why connects failed (enum sluice_connect_failure): status's JSON keys and text, /metrics' reason label. */
const char *const connect_failure_names[SLUICE_CONNECT_FAILURE_REASONS] = {
	[SLUICE_FAILED_TIMEOUT] = "timeout",
	[SLUICE_FAILED_REFUSED] = "refused",
	[SLUICE_FAILED_UNREACHABLE] = "unreachable",
	[SLUICE_FAILED_ABORTED] = "aborted",
	[SLUICE_FAILED_OTHER] = "other",
};

/* The maps' sizes: what the plan made them hold, and the kernel's account of their memory. */
static void status_maps(struct daemon *dm, json_writer_t *w, FILE *out)
{
	struct dataplane_map_size m[DATAPLANE_MAX_MAPS];
	size_t n = dataplane_map_sizes(dm->dp, m);
	uint64_t total = 0;
	for (size_t i = 0; i < n; i++)
		total += m[i].bytes;
	if (w) {
		jsonw_name(w, "maps");
		jsonw_start_object(w);
		jsonw_uint_field(w, "bytes", total);
		jsonw_name(w, "sizes");
		jsonw_start_array(w);
		for (size_t i = 0; i < n; i++) {
			jsonw_start_object(w);
			jsonw_string_field(w, "name", m[i].name);
			jsonw_uint_field(w, "maxEntries", m[i].max_entries);
			jsonw_uint_field(w, "bytes", m[i].bytes);
			jsonw_end_object(w);
		}
		jsonw_end_array(w);
		jsonw_end_object(w);
		return;
	}
	fprintf(out, "maps %.1f KiB:", (double)total / 1024);
	for (size_t i = 0; i < n; i++)
		if (m[i].max_entries > 1)
			fprintf(out, " %s %u", m[i].name, m[i].max_entries);
	fputc('\n', out);
}

/* The TC part: interfaces, the conntrack's fill and packet counters; JSON null without --tc. */
static void status_tc(struct daemon *dm, json_writer_t *w, FILE *out)
{
	struct dataplane_tc_status st;
	if (!dm->tc || dataplane_tc_status(dm->dp, &st)) {
		if (w)
			jsonw_null_field(w, "tc");
		return;
	}
	char *ifaces = strdup(dm->tc), *save = NULL;
	size_t n = 0;
	if (w) {
		jsonw_name(w, "tc");
		jsonw_start_object(w);
		jsonw_name(w, "interfaces");
		jsonw_start_array(w);
	} else {
		fputs("tc on", out);
	}
	for (char *t = ifaces ? strtok_r(ifaces, ",", &save) : NULL; t; t = strtok_r(NULL, ",", &save), n++) {
		if (w)
			jsonw_string(w, t);
		else
			fprintf(out, "%s%s", n ? "," : " ", t);
	}
	free(ifaces);
	if (w) {
		jsonw_end_array(w);
		jsonw_uint_field(w, "flows_live", st.flows_live);
		jsonw_uint_field(w, "flows_max", st.flows_max);
	} else {
		fprintf(out, "  flows live %u of %u\n ", st.flows_live, st.flows_max);
	}
	for (int i = 0; i < SLUICE_TC_STATS; i++) {
		if (w)
			jsonw_uint_field(w, tc_stat_names[i][0], st.stats[i]);
		else
			fprintf(out, " %s %llu%s", tc_stat_names[i][1], (unsigned long long)st.stats[i],
				i + 1 < SLUICE_TC_STATS ? "," : "\n");
	}
	if (w)
		jsonw_end_object(w);
}

/* What a user must know before trusting the rest: a plan live but not saved, pins that went missing. */
static void status_warnings(struct daemon *dm, json_writer_t *w, FILE *out)
{
	if (!w) {
		if (dm->unsaved)
			fprintf(out, "warning: generation %llu is live but not saved (%s); a restart would serve generation %llu\n",
				(unsigned long long)dm->generation, dm->unsaved, (unsigned long long)dm->saved_generation);
		if (dm->pins_note)
			fprintf(out, "%s: %s\n", dm->pins_broken ? "warning" : "note", dm->pins_note);
		return;
	}
	if (dm->unsaved) {
		jsonw_name(w, "unsaved");
		jsonw_start_object(w);
		jsonw_uint_field(w, "generation", dm->generation);
		jsonw_uint_field(w, "saved_generation", dm->saved_generation);
		jsonw_string_field(w, "error", dm->unsaved);
		jsonw_end_object(w);
	} else {
		jsonw_null_field(w, "unsaved");
	}
	if (dm->pins_note) {
		jsonw_name(w, "pins");
		jsonw_start_object(w);
		jsonw_bool_field(w, "ok", !dm->pins_broken);
		jsonw_string_field(w, "message", dm->pins_note);
		jsonw_end_object(w);
	} else {
		jsonw_null_field(w, "pins");
	}
}

/* Failed connects by reason: every reason in JSON; in text those that happened, "(timeout 5, refused 1)". */
static void status_failed_by(json_writer_t *w, FILE *out, const struct sluice_endpoint_stats *st)
{
	bool shown = false;
	if (w) {
		jsonw_name(w, "failedBy");
		jsonw_start_object(w);
	}
	for (int r = 0; r < SLUICE_CONNECT_FAILURE_REASONS; r++) {
		if (w) {
			jsonw_uint_field(w, connect_failure_names[r], st->failed[r]);
		} else if (st->failed[r]) {
			fprintf(out, "%s%s %llu", shown ? ", " : " (", connect_failure_names[r],
				(unsigned long long)st->failed[r]);
			shown = true;
		}
	}
	if (w)
		jsonw_end_object(w);
	else if (shown)
		fputc(')', out);
}

/* One endpoint's counters; for TCP also what sockops saw (handshakes, failures, retransmits, RTT). */
static void status_endpoint(json_writer_t *w, FILE *out, const char *addr, const struct sluice_endpoint_stats *st,
			    bool tcp)
{
	unsigned long long rtt = st->rtt_samples ? st->rtt_sum_us / st->rtt_samples : 0;
	if (w) {
		jsonw_start_object(w);
		jsonw_string_field(w, "address", addr);
		jsonw_uint_field(w, "connections", st->connections);
		if (tcp) {
			jsonw_uint_field(w, "established", st->established);
			jsonw_uint_field(w, "failed", dataplane_stats_failed(st));
			status_failed_by(w, out, st);
			jsonw_uint_field(w, "retransmits", st->retransmits);
			if (st->rtt_samples)
				jsonw_uint_field(w, "rtt_us", rtt);
			else
				jsonw_null_field(w, "rtt_us");
		}
		jsonw_end_object(w);
		return;
	}
	fprintf(out, "    %-40s connections %llu", addr, (unsigned long long)st->connections);
	if (tcp) {
		fprintf(out, "  established %llu  failed %llu", (unsigned long long)st->established,
			(unsigned long long)dataplane_stats_failed(st));
		status_failed_by(w, out, st);
		fprintf(out, "  retransmits %llu  rtt ", (unsigned long long)st->retransmits);
		if (st->rtt_samples)
			fprintf(out, "%llu us", rtt);
		else
			fputc('-', out);
	}
	fputc('\n', out);
}

/* The addresses a service is reached on: its VIPs, and a Gateway route's addresses with the gateway port. */
static void status_addresses(const struct plan_service *s, json_writer_t *w, FILE *out)
{
	char buf[80];
	if (w) {
		plan_json_addrs(w, "vips", s->vips, s->n_vips);
		plan_json_gateway(w, s);
		return;
	}
	if (s->n_vips) {
		fputs("  vip", out);
		for (size_t v = 0; v < s->n_vips; v++) {
			plan_addr_str(&s->vips[v], buf, sizeof(buf));
			fprintf(out, "%s%s", v ? "," : " ", buf);
		}
	}
	if (s->gateway) {
		fputs("  gateway", out);
		for (size_t g = 0; g < s->n_gateway_addrs; g++) {
			plan_endpoint_str(&s->gateway_addrs[g], s->gateway_port, buf, sizeof(buf));
			fprintf(out, "%s%s", g ? "," : " ", buf);
		}
		fprintf(out, " (%s)", s->gateway);
	}
}

/* One destination: weight and share as the maps hold them (or the plan's, view NULL), policy, endpoints. */
static void status_destination(struct daemon *dm, json_writer_t *w, FILE *out, const struct plan_service *s, size_t d,
			       const struct dataplane_service_view *view)
{
	const struct plan_destination *pd = &s->destinations[d];
	uint32_t weight = view ? view->destinations[d].weight : pd->weight;
	double percent = view ? view->destinations[d].percent : pd->percent;
	const struct plan_tcp_policy *tp = &pd->tcp;
	bool has_tcp = s->protocol == IPPROTO_TCP && (tp->connect_timeout_ms || tp->keepalive);
	char buf[80];
	if (w) {
		jsonw_start_object(w);
		jsonw_string_field(w, "subset", pd->subset);
		jsonw_uint_field(w, "weight", weight);
		plan_json_percent(w, "percent", percent);
		if (has_tcp)
			plan_json_tcp(w, tp);
		jsonw_name(w, "endpoints");
		jsonw_start_array(w);
	} else {
		plan_print_destination_text(pd, weight, percent, out);
		fprintf(out, "%s\n", pd->n_endpoints ? "" : "  no ready endpoints: its share is refused");
		if (has_tcp) {
			fputs("    tcp policy: ", out);
			plan_print_tcp_text(tp, out);
			fputc('\n', out);
		}
	}
	for (size_t e = 0; e < pd->n_endpoints; e++) {
		struct sluice_endpoint_stats st;
		if (dataplane_endpoint_stats(dm->dp, s, &pd->endpoints[e], &st))
			memset(&st, 0, sizeof(st));
		plan_endpoint_str(&pd->endpoints[e].addr, pd->endpoints[e].port, buf, sizeof(buf));
		status_endpoint(w, out, buf, &st, s->protocol == IPPROTO_TCP);
	}
	if (w) {
		jsonw_end_array(w);
		jsonw_end_object(w);
	}
}

static void status_service(struct daemon *dm, json_writer_t *w, FILE *out, const struct plan_service *s)
{
	/* weights and shares as the live side of the maps holds them, not as sluiced remembers them */
	struct dataplane_service_view view;
	int vrc = dataplane_service_view(dm->dp, s, &view);
	if (!vrc && view.n_destinations != s->n_destinations)
		vrc = -EUCLEAN;
	if (w) {
		jsonw_start_object(w);
		jsonw_string_field(w, "name", s->name);
		jsonw_string_field(w, "namespace", s->namespace);
		if (s->route)
			jsonw_string_field(w, "route", s->route);
		status_addresses(s, w, out);
		jsonw_uint_field(w, "port", s->port);
		jsonw_string_field(w, "protocol", plan_protocol_name(s->protocol));
		jsonw_string_field(w, "loadBalancer", plan_lb_name(s->lb));
		jsonw_bool_field(w, "in_maps", !vrc);
		jsonw_name(w, "destinations");
		jsonw_start_array(w);
	} else {
		fprintf(out, "service %s.%s", s->name, s->namespace);
		status_addresses(s, w, out);
		fprintf(out, "  port %u/%s  lb %s\n", s->port, plan_protocol_name(s->protocol), plan_lb_name(s->lb));
		if (vrc)
			fprintf(out, "  warning: the maps do not route this service as planned (%s); the plan is shown\n",
				vrc == -ENOENT ? "no record" : strerror(-vrc));
	}
	for (size_t d = 0; d < s->n_destinations; d++)
		status_destination(dm, w, out, s, d, vrc ? NULL : &view);
	if (w) {
		jsonw_end_array(w);
		jsonw_end_object(w);
	}
}

void handle_status(struct daemon *dm, const struct msg *req, struct reply *r)
{
	const char *arg = NULL;
	char svc[64] = "", svc_ns[64] = "", msg[512];
	for (size_t i = 0; i < req->n; i++)
		if (!strcmp(req->f[i].tag, "arg")) {
			if (arg) {
				reply_error(r, EXIT_USAGE, "usage: sluice status [SERVICE[.NAMESPACE]]");
				return;
			}
			arg = req->f[i].data;
		}
	if (arg && plan_service_ref(arg, request_namespace(req), request_domain(req), svc, svc_ns, msg, sizeof(msg))) {
		reply_error(r, EXIT_USAGE, "%s", msg);
		return;
	}
	json_writer_t *w = r->json ? jsonw_new(r->out) : NULL;
	size_t shown = 0;
	if (w) {
		jsonw_start_object(w);
		jsonw_uint_field(w, "generation", dm->generation);
	} else {
		fprintf(r->out, "generation %llu\n", (unsigned long long)dm->generation);
	}
	status_warnings(dm, w, r->out);
	follower_status(dm, w, r->out);
	if (w)
		status_maps(dm, w, r->out);
	status_tc(dm, w, r->out);
	if (w) {
		jsonw_name(w, "services");
		jsonw_start_array(w);
	}
	for (size_t i = 0; i < dm->plan.n_services; i++) {
		const struct plan_service *s = &dm->plan.services[i];
		if (arg && (strcmp(s->name, svc) || strcmp(s->namespace, svc_ns)))
			continue;
		status_service(dm, w, r->out, s);
		shown++;
	}
	if (w) {
		jsonw_end_array(w);
		jsonw_end_object(w);
		jsonw_destroy(&w);
	} else if (!arg) {
		status_maps(dm, NULL, r->out);   /* the node's, after its services */
	}
	if (arg && !shown) {
		if (r->json) {
			/* the JSON above is complete; the error goes to stderr in this one case */
			fprintf(r->err, "Error: no routed service %s.%s\n", svc, svc_ns);
			r->code = EXIT_INVALID;
		} else {
			reply_error(r, EXIT_INVALID, "no routed service %s.%s; 'sluice status' lists them", svc, svc_ns);
		}
	}
}
