// SPDX-License-Identifier: MIT
#include "plan/plan.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plan/print.h"
#include "common/util.h"

void plan_free(struct plan *plan)
{
	if (plan->arena) {
		arena_free(plan->arena);
		free(plan->arena);
	}
	memset(plan, 0, sizeof(*plan));
}

static const char *copy_str(struct arena *a, const char *s)
{
	return s ? arena_strdup(a, s) : NULL;
}

int plan_copy(const struct plan *from, struct plan *to)
{
	struct arena *a = calloc(1, sizeof(*a));
	if (!a)
		return -1;
	memset(to, 0, sizeof(*to));
	to->arena = a;
	to->n_services = from->n_services;
	to->services = arena_alloc(a, (from->n_services + 1) * sizeof(*to->services));
	for (size_t i = 0; i < from->n_services; i++) {
		const struct plan_service *fs = &from->services[i];
		struct plan_service *ts = &to->services[i];
		*ts = *fs;
		ts->name = copy_str(a, fs->name);
		ts->namespace = copy_str(a, fs->namespace);
		ts->route = copy_str(a, fs->route);
		ts->gateway = copy_str(a, fs->gateway);
		ts->destinations = arena_alloc(a, (fs->n_destinations + 1) * sizeof(*ts->destinations));
		for (size_t d = 0; d < fs->n_destinations; d++) {
			const struct plan_destination *fd = &fs->destinations[d];
			struct plan_destination *td = &ts->destinations[d];
			*td = *fd;
			td->host = copy_str(a, fd->host);
			td->subset = copy_str(a, fd->subset);
			td->endpoints = arena_alloc(a, (fd->n_endpoints + 1) * sizeof(*td->endpoints));
			for (size_t e = 0; e < fd->n_endpoints; e++) {
				td->endpoints[e] = fd->endpoints[e];
				td->endpoints[e].pod = copy_str(a, fd->endpoints[e].pod);
			}
		}
	}
	return 0;
}

void plan_addr_str(const struct plan_addr *a, char *buf, size_t len)
{
	if (!inet_ntop(a->family, a->addr, buf, (socklen_t)len))
		snprintf(buf, len, "?");
}

void plan_endpoint_str(const struct plan_addr *a, uint16_t port, char *buf, size_t len)
{
	char ip[INET6_ADDRSTRLEN];
	plan_addr_str(a, ip, sizeof(ip));
	snprintf(buf, len, a->family == AF_INET6 ? "[%s]:%u" : "%s:%u", ip, port);
}

const char *plan_protocol_name(uint8_t protocol)
{
	return protocol == IPPROTO_UDP ? "UDP" : "TCP";
}

const char *plan_lb_name(enum plan_lb lb)
{
	return lb == PLAN_LB_RANDOM ? "RANDOM" : "ROUND_ROBIN";
}

/* Shares print with at most two decimals and no trailing zeros: 80, 33.33, 12.5. */
void plan_percent_str(double percent, char *buf, size_t len)
{
	snprintf(buf, len, "%.2f", percent);
	char *dot = strchr(buf, '.');
	if (!dot)
		return;
	char *end = buf + strlen(buf) - 1;
	while (end > dot && *end == '0')
		*end-- = 0;
	if (end == dot)
		*end = 0;
}

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

void plan_print_tcp_json(const struct plan_tcp_policy *t, FILE *out)
{
	if (!t->connect_timeout_ms && !t->keepalive)
		return;
	fputs(",\"tcp\":{", out);
	if (t->connect_timeout_ms)
		fprintf(out, "\"connect_timeout_ms\":%u%s", t->connect_timeout_ms, t->keepalive ? "," : "");
	if (t->keepalive)
		fprintf(out, "\"keepalive\":{\"time_s\":%u,\"interval_s\":%u,\"probes\":%u}",
			t->keepalive_time_s, t->keepalive_interval_s, t->keepalive_probes);
	fputc('}', out);
}

void plan_print_text(const struct plan *plan, FILE *out)
{
	char buf[320], pct[32];
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
			plan_percent_str(pd->percent, pct, sizeof(pct));
			fprintf(out, "  subset %-8s weight %-4u share %5s%%  ", pd->subset[0] ? pd->subset : "(all)",
				pd->weight, pct);
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

void plan_print_service_json(const struct plan_service *s, FILE *out)
{
	char buf[64], pct[32];
	fputs("{\"name\":", out);
	json_string(out, s->name);
	fputs(",\"namespace\":", out);
	json_string(out, s->namespace);
	fputs(",\"vips\":[", out);
	for (size_t v = 0; v < s->n_vips; v++) {
		plan_addr_str(&s->vips[v], buf, sizeof(buf));
		fprintf(out, "%s\"%s\"", v ? "," : "", buf);
	}
	fprintf(out, "],\"port\":%u,\"protocol\":\"%s\",\"loadBalancer\":\"%s\",", s->port,
		plan_protocol_name(s->protocol), plan_lb_name(s->lb));
	if (s->route) {
		fputs("\"route\":", out);
		json_string(out, s->route);
		fputc(',', out);
	}
	if (s->gateway) {
		fputs("\"gateway\":", out);
		json_string(out, s->gateway);
		fputs(",\"gatewayAddresses\":[", out);
		for (size_t a = 0; a < s->n_gateway_addrs; a++) {
			plan_addr_str(&s->gateway_addrs[a], buf, sizeof(buf));
			fprintf(out, "%s\"%s\"", a ? "," : "", buf);
		}
		fprintf(out, "],\"gatewayPort\":%u,", s->gateway_port);
	}
	fputs("\"destinations\":[", out);
	for (size_t d = 0; d < s->n_destinations; d++) {
		const struct plan_destination *pd = &s->destinations[d];
		plan_percent_str(pd->percent, pct, sizeof(pct));
		fputs(d ? ",{\"host\":" : "{\"host\":", out);
		json_string(out, pd->host);
		fputs(",\"subset\":", out);
		json_string(out, pd->subset);
		fprintf(out, ",\"weight\":%u,\"percent\":%s,\"endpoints\":[", pd->weight, pct);
		for (size_t e = 0; e < pd->n_endpoints; e++) {
			plan_endpoint_str(&pd->endpoints[e].addr, pd->endpoints[e].port, buf, sizeof(buf));
			fprintf(out, "%s\"%s\"", e ? "," : "", buf);
		}
		fputc(']', out);
		plan_print_tcp_json(&pd->tcp, out);
		fputc('}', out);
	}
	fputs("]}", out);
}

void plan_print_json(const struct plan *plan, FILE *out)
{
	plan_print_json_generation(plan, 0, out);
}

void plan_print_json_generation(const struct plan *plan, uint64_t generation, FILE *out)
{
	if (generation)
		fprintf(out, "{\"generation\":%llu,\"services\":[", (unsigned long long)generation);
	else
		fputs("{\"services\":[", out);
	for (size_t i = 0; i < plan->n_services; i++) {
		if (i)
			fputc(',', out);
		plan_print_service_json(&plan->services[i], out);
	}
	fputs("]}\n", out);
}
