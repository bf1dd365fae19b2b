// SPDX-License-Identifier: MIT
/* The plan's text and JSON forms: `sluice plan`, sluiced's saved plan, and the pieces of `sluice
 * status` that describe a destination. */
#include "plan/print.h"

#include <string.h>

#include "common/util.h"

/* "connect timeout 500ms, keepalive 60s/10s x3": keepalive idle/interval x probes, "default" for 0. */
void plan_print_tcp_text(const struct plan_tcp_policy *t, FILE *out)
{
	if (t->connect_timeout_ms)
		fprintf(out, "connect timeout %ums%s", t->connect_timeout_ms, t->keepalive ? ", " : "");
	if (!t->keepalive)
		return;
	fputs("keepalive ", out);
	if (t->keepalive_time_s)
		fprintf(out, "%us/", t->keepalive_time_s);
	else
		fputs("default/", out);
	if (t->keepalive_interval_s)
		fprintf(out, "%us", t->keepalive_interval_s);
	else
		fputs("default", out);
	if (t->keepalive_probes)
		fprintf(out, " x%u", t->keepalive_probes);
	else
		fputs(" x default", out);
}

void plan_json_tcp(json_writer_t *w, const struct plan_tcp_policy *t)
{
	if (!t->connect_timeout_ms && !t->keepalive)
		return;
	jsonw_name(w, "tcp");
	jsonw_start_object(w);
	if (t->connect_timeout_ms)
		jsonw_uint_field(w, "connect_timeout_ms", t->connect_timeout_ms);
	if (t->keepalive) {
		jsonw_name(w, "keepalive");
		jsonw_start_object(w);
		jsonw_uint_field(w, "time_s", t->keepalive_time_s);
		jsonw_uint_field(w, "interval_s", t->keepalive_interval_s);
		jsonw_uint_field(w, "probes", t->keepalive_probes);
		jsonw_end_object(w);
	}
	jsonw_end_object(w);
}

void plan_json_addrs(json_writer_t *w, const char *name, const struct plan_addr *a, size_t n)
{
	char buf[64];
	jsonw_name(w, name);
	jsonw_start_array(w);
	for (size_t i = 0; i < n; i++) {
		plan_addr_str(&a[i], buf, sizeof(buf));
		jsonw_string(w, buf);
	}
	jsonw_end_array(w);
}

void plan_json_percent(json_writer_t *w, const char *name, double percent)
{
	char pct[32];
	plan_percent_str(percent, pct, sizeof(pct));
	jsonw_raw_field(w, name, pct);
}

/* One destination's line: subset, weight, share, then what the caller adds. */
void plan_print_destination_text(const struct plan_destination *pd, uint32_t weight, double percent, FILE *out)
{
	char pct[32];
	plan_percent_str(percent, pct, sizeof(pct));
	fprintf(out, "  subset %-8s weight %-4u share %5s%%", pd->subset[0] ? pd->subset : "(all)", weight, pct);
}

void plan_print_text(const struct plan *plan, FILE *out)
{
	char buf[320];
	if (!plan->n_services)
		fputs("no services routed\n", out);
	for (size_t i = 0; i < plan->n_services; i++) {
		const struct plan_service *s = &plan->services[i];
		fprintf(out, "service %s.%s  vip", s->name, s->namespace);
		if (!s->n_vips)
			fputs(" -", out);
		for (size_t v = 0; v < s->n_vips; v++) {
			plan_addr_str(&s->vips[v], buf, sizeof(buf));
			fprintf(out, "%s%s", v ? "," : " ", buf);
		}
		fprintf(out, "  port %u/%s  lb %s", s->port, plan_protocol_name(s->protocol), plan_lb_name(s->lb));
		if (s->route)
			fprintf(out, "  route %s", s->route);
		if (s->gateway) {
			fprintf(out, "  gateway %s", s->gateway);
			for (size_t a = 0; a < s->n_gateway_addrs; a++) {
				plan_endpoint_str(&s->gateway_addrs[a], s->gateway_port, buf, sizeof(buf));
				fprintf(out, "%s%s", a ? "," : " ", buf);
			}
		}
		fputc('\n', out);
		for (size_t d = 0; d < s->n_destinations; d++) {
			const struct plan_destination *pd = &s->destinations[d];
			plan_print_destination_text(pd, pd->weight, pd->percent, out);
			fputs("  ", out);
			snprintf(buf, sizeof(buf), "%s.%s", s->name, s->namespace);
			if (strcmp(pd->host, buf))
				fprintf(out, "host %s  ", pd->host);
			if (pd->tcp.connect_timeout_ms || pd->tcp.keepalive) {
				plan_print_tcp_text(&pd->tcp, out);
				fputs("  ", out);
			}
			if (!pd->n_endpoints)
				fputs("no ready endpoints: its share is refused", out);
			for (size_t e = 0; e < pd->n_endpoints; e++) {
				plan_endpoint_str(&pd->endpoints[e].addr, pd->endpoints[e].port, buf, sizeof(buf));
				fprintf(out, "%s%s", e ? " " : "", buf);
			}
			fputc('\n', out);
		}
	}
}

/* A Gateway route's addresses: "gateway", "gatewayAddresses", "gatewayPort"; nothing otherwise. */
void plan_json_gateway(json_writer_t *w, const struct plan_service *s)
{
	if (!s->gateway)
		return;
	jsonw_string_field(w, "gateway", s->gateway);
	plan_json_addrs(w, "gatewayAddresses", s->gateway_addrs, s->n_gateway_addrs);
	jsonw_uint_field(w, "gatewayPort", s->gateway_port);
}

static void plan_json_service(json_writer_t *w, const struct plan_service *s)
{
	char buf[64];
	jsonw_start_object(w);
	jsonw_string_field(w, "name", s->name);
	jsonw_string_field(w, "namespace", s->namespace);
	plan_json_addrs(w, "vips", s->vips, s->n_vips);
	jsonw_uint_field(w, "port", s->port);
	jsonw_string_field(w, "protocol", plan_protocol_name(s->protocol));
	jsonw_string_field(w, "loadBalancer", plan_lb_name(s->lb));
	if (s->route)
		jsonw_string_field(w, "route", s->route);
	plan_json_gateway(w, s);
	jsonw_name(w, "destinations");
	jsonw_start_array(w);
	for (size_t d = 0; d < s->n_destinations; d++) {
		const struct plan_destination *pd = &s->destinations[d];
		jsonw_start_object(w);
		jsonw_string_field(w, "host", pd->host);
		jsonw_string_field(w, "subset", pd->subset);
		jsonw_uint_field(w, "weight", pd->weight);
		plan_json_percent(w, "percent", pd->percent);
		jsonw_name(w, "endpoints");
		jsonw_start_array(w);
		for (size_t e = 0; e < pd->n_endpoints; e++) {
			plan_endpoint_str(&pd->endpoints[e].addr, pd->endpoints[e].port, buf, sizeof(buf));
			jsonw_string(w, buf);
		}
		jsonw_end_array(w);
		plan_json_tcp(w, &pd->tcp);
		jsonw_end_object(w);
	}
	jsonw_end_array(w);
	jsonw_end_object(w);
}

void plan_print_json(const struct plan *plan, FILE *out)
{
	plan_print_json_generation(plan, 0, out);
}

char *plan_json_string(const struct plan *plan)
{
	char *s = NULL;
	size_t len = 0;
	FILE *m = open_memstream(&s, &len);
	if (!m)
		return NULL;
	plan_print_json(plan, m);
	fclose(m);
	return s;
}

void plan_print_json_generation(const struct plan *plan, uint64_t generation, FILE *out)
{
	json_writer_t *w = jsonw_new(out);
	jsonw_start_object(w);
	if (generation)
		jsonw_uint_field(w, "generation", generation);
	jsonw_name(w, "services");
	jsonw_start_array(w);
	for (size_t i = 0; i < plan->n_services; i++)
		plan_json_service(w, &plan->services[i]);
	jsonw_end_array(w);
	jsonw_end_object(w);
	jsonw_destroy(&w);
}
