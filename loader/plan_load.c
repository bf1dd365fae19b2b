// SPDX-License-Identifier: MIT
/* Reads back the JSON that plan_print_json wrote: sluiced's saved state after a reboot. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "plan_load.h"
#include "ytree.h"

struct loader {
	struct plan *plan;
	uint64_t generation;
	struct arena *arena;
	const char *problem;
	const struct ynode *where;
	bool seen;
};

static bool fail(struct loader *l, const struct ynode *n, const char *problem)
{
	if (!l->problem) {
		l->problem = problem;
		l->where = n;
	}
	return false;
}

static const char *str(struct loader *l, const struct ynode *m, const char *key)
{
	const struct ynode *n = ymap_get(m, key);
	if (!n || n->type != YN_SCALAR) {
		fail(l, m, key);
		return NULL;
	}
	return arena_strndup(l->arena, n->str, n->len);
}

static bool num(struct loader *l, const struct ynode *m, const char *key, double *out)
{
	const struct ynode *n = ymap_get(m, key);
	char *end;
	if (!n || n->type != YN_SCALAR)
		return fail(l, m, key);
	*out = strtod(n->str, &end);
	return *end ? fail(l, n, key) : true;
}

static bool addr(const char *s, struct plan_addr *a)
{
	memset(a, 0, sizeof(*a));
	if (inet_pton(AF_INET, s, a->addr) == 1)
		a->family = AF_INET;
	else if (inet_pton(AF_INET6, s, a->addr) == 1)
		a->family = AF_INET6;
	return a->family != 0;
}

/* "IP:PORT" or "[IP]:PORT" */
static bool endpoint(const char *s, struct plan_endpoint *e)
{
	char ip[64];
	const char *colon = strrchr(s, ':');
	if (!colon || colon - s >= (long)sizeof(ip))
		return false;
	const char *start = s, *end = colon;
	if (*s == '[') {
		start = s + 1;
		end = colon - 1;
		if (end < start || *end != ']')
			return false;
	}
	memcpy(ip, start, (size_t)(end - start));
	ip[end - start] = 0;
	long port = strtol(colon + 1, NULL, 10);
	e->port = (uint16_t)port;
	return port > 0 && port < 65536 && addr(ip, &e->addr);
}

/* A number of the saved plan that must lie in min..max. */
static bool num_in(struct loader *l, const struct ynode *m, const char *key, double min, double max, double *out)
{
	if (!num(l, m, key, out))
		return false;
	return *out >= min && *out <= max && *out == (double)(uint64_t)*out ? true : fail(l, ymap_get(m, key), key);
}

/* "tcp":{"connect_timeout_ms":N,"keepalive":{"time_s":N,"interval_s":N,"probes":N}}, both optional. */
static bool read_tcp_policy(struct loader *l, const struct ynode *m, struct plan_tcp_policy *t)
{
	double ms, time, interval, probes;
	const struct ynode *ka = ymap_get(m, "keepalive");
	if (m->type != YN_MAP || (!ymap_get(m, "connect_timeout_ms") && !ka))
		return fail(l, m, "tcp");
	if (ymap_get(m, "connect_timeout_ms")) {
		if (!num_in(l, m, "connect_timeout_ms", 1, 2147483647, &ms))
			return false;
		t->connect_timeout_ms = (uint32_t)ms;
	}
	if (!ka)
		return true;
	if (ka->type != YN_MAP)
		return fail(l, ka, "keepalive");
	if (!num_in(l, ka, "time_s", 0, 32767, &time) || !num_in(l, ka, "interval_s", 0, 32767, &interval) ||
	    !num_in(l, ka, "probes", 0, 127, &probes))
		return false;
	t->keepalive = true;
	t->keepalive_time_s = (uint16_t)time;
	t->keepalive_interval_s = (uint16_t)interval;
	t->keepalive_probes = (uint8_t)probes;
	return true;
}

static bool read_destination(struct loader *l, const struct ynode *m, struct plan_destination *d)
{
	double w, pct;
	const struct ynode *eps = ymap_get(m, "endpoints");
	d->host = str(l, m, "host");
	d->subset = str(l, m, "subset");
	if (!d->host || !d->subset || !num(l, m, "weight", &w) || !num(l, m, "percent", &pct))
		return false;
	d->weight = (uint32_t)w;
	d->percent = pct;
	if (!eps || eps->type != YN_SEQ || eps->n > PLAN_MAX_ENDPOINTS)
		return fail(l, m, "endpoints");
	d->endpoints = arena_alloc(l->arena, (eps->n + 1) * sizeof(*d->endpoints));
	for (uint32_t i = 0; i < eps->n; i++) {
		if (eps->items[i]->type != YN_SCALAR || !endpoint(eps->items[i]->str, &d->endpoints[i]))
			return fail(l, eps->items[i], "endpoint");
		d->endpoints[i].pod = "";
	}
	d->n_endpoints = eps->n;
	const struct ynode *tcp = ymap_get(m, "tcp");
	return !tcp || read_tcp_policy(l, tcp, &d->tcp);
}

static bool read_service(struct loader *l, const struct ynode *m, struct plan_service *s)
{
	double port;
	const struct ynode *vips = ymap_get(m, "vips"), *ds = ymap_get(m, "destinations");
	s->name = str(l, m, "name");
	s->namespace = str(l, m, "namespace");
	const char *proto = str(l, m, "protocol"), *lb = str(l, m, "loadBalancer");
	if (!s->name || !s->namespace || !proto || !lb || !num(l, m, "port", &port))
		return false;
	s->port = (uint16_t)port;
	s->protocol = !strcmp(proto, "UDP") ? IPPROTO_UDP : IPPROTO_TCP;
	s->lb = !strcmp(lb, "RANDOM") ? PLAN_LB_RANDOM : PLAN_LB_ROUND_ROBIN;
	/* state files of the release before it lack "route" */
	if (ymap_get(m, "route") && !(s->route = str(l, m, "route")))
		return false;
	const struct ynode *gw = ymap_get(m, "gateway"), *gwa = ymap_get(m, "gatewayAddresses");
	if (!vips || vips->type != YN_SEQ || vips->n > 2 || (!vips->n && !gw))
		return fail(l, m, "vips");
	for (uint32_t i = 0; i < vips->n; i++)
		if (vips->items[i]->type != YN_SCALAR || !addr(vips->items[i]->str, &s->vips[s->n_vips++]))
			return fail(l, vips->items[i], "vip");
	if (gw) {
		double gport;
		s->gateway = str(l, m, "gateway");
		if (!s->gateway || !num(l, m, "gatewayPort", &gport))
			return false;
		s->gateway_port = (uint16_t)gport;
		if (!gwa || gwa->type != YN_SEQ || !gwa->n || gwa->n > PLAN_MAX_GATEWAY_ADDRS)
			return fail(l, m, "gatewayAddresses");
		for (uint32_t i = 0; i < gwa->n; i++)
			if (gwa->items[i]->type != YN_SCALAR ||
			    !addr(gwa->items[i]->str, &s->gateway_addrs[s->n_gateway_addrs++]))
				return fail(l, gwa->items[i], "gateway address");
	}
	if (!ds || ds->type != YN_SEQ || !ds->n || ds->n > PLAN_MAX_DESTINATIONS)
		return fail(l, m, "destinations");
	s->destinations = arena_alloc(l->arena, ds->n * sizeof(*s->destinations));
	s->n_destinations = ds->n;
	for (uint32_t i = 0; i < ds->n; i++)
		if (!read_destination(l, ds->items[i], &s->destinations[i]))
			return false;
	return true;
}

static void on_doc(void *ctx, const struct mark *file, struct ynode *root)
{
	struct loader *l = ctx;
	double gen = 0;
	(void)file;
	if (l->seen)
		return;
	l->seen = true;
	const struct ynode *svcs = ymap_get(root, "services");
	if (!svcs || svcs->type != YN_SEQ) {
		fail(l, root, "services");
		return;
	}
	if (ymap_get(root, "generation") && num(l, root, "generation", &gen))
		l->generation = (uint64_t)gen;
	l->plan->services = arena_alloc(l->arena, (svcs->n + 1) * sizeof(*l->plan->services));
	for (uint32_t i = 0; i < svcs->n; i++)
		if (!read_service(l, svcs->items[i], &l->plan->services[i]))
			return;
	l->plan->n_services = svcs->n;
}

int plan_load_json(const unsigned char *buf, size_t len, const char *name, struct plan *plan, uint64_t *generation,
		   struct diags *d)
{
	struct arena *arena = calloc(1, sizeof(*arena));
	if (!arena)
		abort();
	memset(plan, 0, sizeof(*plan));
	plan->arena = arena;
	struct loader l = { .plan = plan, .arena = arena };
	struct mark file = { .file = name, .line = 1, .col = 1 };
	size_t errors = d->n;
	yaml_each_document(buf, len, &file, d, on_doc, &l);
	if (!l.seen && d->n == errors)
		diag_error(d, &file, "empty state file");
	if (l.problem) {
		struct mark at = file;
		at.line = l.where->line;
		at.col = l.where->col;
		diag_error(d, &at, "bad or missing \"%s\" in saved plan", l.problem);
	}
	if (d->n != errors) {
		plan_free(plan);
		return -1;
	}
	if (generation)
		*generation = l.generation;
	return 0;
}
