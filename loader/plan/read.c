// SPDX-License-Identifier: MIT
/*
 * Reads back the JSON that plan_print_json wrote: sluiced's saved state after a reboot. The file
 * is an input like any other (it may have been edited, truncated or forged), so it is held to the
 * compiler's rules: the same name and address checks (names.c), the limits, Istio's weights, and
 * every member the printer writes in the form the printer writes it. Shares are recomputed from
 * the weights, never taken from the file.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "common/fieldpath.h"
#include "common/names.h"
#include "plan/read.h"
#include "plan/weights.h"
#include "plan/print.h"
#include "compile/ytree.h"

struct loader {
	struct plan *plan;
	uint64_t generation;
	struct arena *arena;
	struct diags *d;
	const struct mark *file;
	struct fieldpath path;       /* the member being read: services[2].destinations[0].weight */
	bool seen;
	struct strmap services;      /* "namespace/name/port/protocol/gateway" -> its node, for repeats */
	struct strmap keys;          /* "address port protocol" -> its node: one data plane key each */
	struct strmap endpoints;     /* endpoint address -> its node */
};

static void fail(struct loader *l, const struct ynode *n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void fail(struct loader *l, const struct ynode *n, const char *fmt, ...)
{
	struct mark at = *l->file;
	at.line = n->line;
	at.col = n->col;
	va_list ap;
	va_start(ap, fmt);
	diag_verror(l->d, &at, fmt, ap);
	va_end(ap);
}

/* A scalar as an error quotes it: bounded and escaped (names.h). */
static const char *quoted(struct loader *l, const struct ynode *n)
{
	char q[NAME_QUOTE_CAP];
	return arena_strdup(l->arena, name_quote(n->str, n->len, q, sizeof(q)));
}

/* A value as an error shows it: a number as written, a string quoted, both bounded and escaped. */
static const char *shown(struct loader *l, const struct ynode *n)
{
	if (n->type != YN_SCALAR)
		return n->type == YN_MAP ? "a mapping" : "a list";
	const char *q = quoted(l, n);
	if (n->plain && strlen(q) == n->len + 2)
		return arena_strndup(l->arena, q + 1, n->len);   /* printable and short: as written */
	return n->plain ? q : arena_printf(l->arena, "the string %s", q);
}

static bool is_string(const struct ynode *n)
{
	return n->type == YN_SCALAR && !n->plain && n->len == strlen(n->str);
}

/* members the printer writes; anything else was not written by sluiced */
static void check_members(struct loader *l, const struct ynode *m, const char *const *known)
{
	for (uint32_t i = 0; i < m->n; i++) {
		const struct ynode *k = ymap_key(m, i);
		bool found = false;
		for (const char *const *f = known; *f && !found; f++)
			found = !strcmp(*f, k->str);
		if (!found) {
			char q[NAME_QUOTE_CAP];
			fail(l, k, "%s%sunknown member %s: sluiced does not write it", l->path.s, l->path.len ? ": " : "",
			     name_quote(k->str, k->len, q, sizeof(q)));
		}
	}
}

/* A member that must be there; reported at the object when it is not. */
static const struct ynode *need(struct loader *l, const struct ynode *m, const char *key)
{
	const struct ynode *n = ymap_get(m, key);
	if (!n)
		fail(l, m, "%s%s%s is missing", l->path.s, l->path.len ? "." : "", key);
	return n;
}

/* A string member (a JSON string, as the printer writes every one). */
static const char *get_string(struct loader *l, const struct ynode *n)
{
	if (!is_string(n)) {
		fail(l, n, "%s must be a string, got %s", l->path.s, shown(l, n));
		return NULL;
	}
	return arena_strndup(l->arena, n->str, n->len);
}

/* An integer as the printer writes it: plain digits, no sign, no leading zero, no exponent. */
static bool get_uint(struct loader *l, const struct ynode *n, uint64_t min, uint64_t max, uint64_t *out)
{
	uint64_t v = 0;
	bool ok = n->type == YN_SCALAR && n->plain && n->len && n->len <= 20 && (n->str[0] != '0' || n->len == 1);
	for (size_t i = 0; ok && i < n->len; i++) {
		unsigned digit = (unsigned char)n->str[i] - '0';
		ok = digit <= 9 && v <= (UINT64_MAX - digit) / 10;
		v = v * 10 + digit;
	}
	if (!ok || v < min || v > max) {
		fail(l, n, "%s must be an integer from %llu to %llu written as plain digits, got %s", l->path.s,
		     (unsigned long long)min, (unsigned long long)max, shown(l, n));
		return false;
	}
	*out = v;
	return true;
}

/* A JSON number from 0 to 100: the printer's share, checked for form and then recomputed. */
static bool check_percent(struct loader *l, const struct ynode *n)
{
	const char *p = n->type == YN_SCALAR && n->plain ? n->str : "";
	const char *start = p;
	bool ok = *p >= '0' && *p <= '9' && (p[0] != '0' || p[1] < '0' || p[1] > '9');
	while (*p >= '0' && *p <= '9')
		p++;
	if (ok && *p == '.') {
		ok = p[1] >= '0' && p[1] <= '9';
		for (p++; *p >= '0' && *p <= '9'; p++)
			;
	}
	ok = ok && !*p && (size_t)(p - start) == n->len && strtod(start, NULL) <= 100;
	if (!ok)
		fail(l, n, "%s must be a number from 0 to 100, got %s", l->path.s, shown(l, n));
	return ok;
}

/* A service VIP or gateway address: an IP address that the compiler would take as one. */
static bool get_vip(struct loader *l, const struct ynode *n, struct plan_addr *a)
{
	const char *s = get_string(l, n);
	if (!s)
		return false;
	const char *why = name_parse_addr(s, a) ? name_vip_error(a) : "is not an IP address";
	if (why)
		fail(l, n, "%s %s %s", l->path.s, quoted(l, n), why);
	return !why;
}

/* A name checked against a rule of names.h: "PATH "value" is not a valid ...". */
static bool check_name(struct loader *l, const struct ynode *n, const char *s,
		       const char *(*rule)(const char *s, size_t len))
{
	const char *why = rule(s, strlen(s));
	if (why)
		fail(l, n, "%s %s %s", l->path.s, quoted(l, n), why);
	return !why;
}

/* "FIRST<sep>SECOND" (a Service's "name.namespace", an object's "namespace/name"), each part held
 * to its rule. */
static bool check_pair(struct loader *l, const struct ynode *n, const char *s, char sep, const char *form,
		       const char *first_part, const char *(*first)(const char *, size_t), const char *second_part,
		       const char *(*second)(const char *, size_t))
{
	const char *at = strchr(s, sep);
	const char *why = !at ? NULL : first(s, (size_t)(at - s)), *which = first_part;
	if (at && !why) {
		why = second(at + 1, strlen(at + 1));
		which = second_part;
	}
	if (!at)
		fail(l, n, "%s %s is not %s", l->path.s, quoted(l, n), form);
	else if (why)
		fail(l, n, "%s %s: its %s %s", l->path.s, quoted(l, n), which, why);
	return at && !why;
}

static bool check_service_key(struct loader *l, const struct ynode *n, const char *s)
{
	return check_pair(l, n, s, '.', "NAME.NAMESPACE", "name", name_dns1035_label_error, "namespace",
			  name_dns1123_label_error);
}

static bool check_object_key(struct loader *l, const struct ynode *n, const char *s)
{
	return check_pair(l, n, s, '/', "NAMESPACE/NAME", "namespace", name_dns1123_label_error, "name",
			  name_dns1123_subdomain_error);
}

/* "IP:PORT" or "[IP]:PORT", as plan_endpoint_str writes it. */
static bool get_endpoint(struct loader *l, const struct ynode *n, struct plan_endpoint *e)
{
	const char *s = get_string(l, n);
	if (!s)
		return false;
	char ip[INET6_ADDRSTRLEN + 2];
	const char *colon = strrchr(s, ':'), *start = s, *end = colon;
	bool ok = colon && colon - s < (long)sizeof(ip);
	if (ok && *s == '[') {
		start = s + 1;
		end = colon - 1;
		ok = end > start && *end == ']';
	}
	if (ok) {
		memcpy(ip, start, (size_t)(end - start));
		ip[end - start] = 0;
		ok = name_parse_addr(ip, &e->addr) && (e->addr.family == AF_INET6) == (*s == '[');
	}
	/* the port as the printer writes it: 1 to 5 digits, no leading zero, 1..65535 */
	const char *digits = ok ? colon + 1 : "";
	size_t n_digits = strspn(digits, "0123456789");
	long port = ok && n_digits && n_digits <= 5 && !digits[n_digits] && digits[0] != '0' ? strtol(digits, NULL, 10) : 0;
	ok = port >= 1 && port <= 65535;
	if (!ok) {
		fail(l, n, "%s must be IP:PORT or [IPv6]:PORT with a port from 1 to 65535, got %s", l->path.s, shown(l, n));
		return false;
	}
	e->port = (uint16_t)port;
	e->pod = "";
	return true;
}

static const char *const tcp_members[] = { "connect_timeout_ms", "keepalive", NULL };
static const char *const keepalive_members[] = { "time_s", "interval_s", "probes", NULL };

/* "tcp":{"connect_timeout_ms":N,"keepalive":{"time_s":N,"interval_s":N,"probes":N}}, both optional. */
static bool read_tcp_policy(struct loader *l, const struct ynode *m, struct plan_tcp_policy *t)
{
	if (m->type != YN_MAP || !m->n) {
		fail(l, m, "%s must be a mapping of connect_timeout_ms and keepalive, got %s", l->path.s,
		     m->type == YN_MAP ? "an empty one" : shown(l, m));
		return false;
	}
	check_members(l, m, tcp_members);
	bool ok = true;
	uint64_t v;
	const struct ynode *ms = ymap_get(m, "connect_timeout_ms"), *ka = ymap_get(m, "keepalive");
	if (ms) {
		size_t old = fieldpath_push(&l->path, ".connect_timeout_ms");
		ok = get_uint(l, ms, 1, 2147483647, &v);
		t->connect_timeout_ms = (uint32_t)v;
		fieldpath_pop(&l->path, old);
	}
	if (!ka)
		return ok;
	size_t old = fieldpath_push(&l->path, ".keepalive");
	if (ka->type != YN_MAP) {
		fail(l, ka, "%s must be a mapping of time_s, interval_s and probes, got %s", l->path.s, shown(l, ka));
		fieldpath_pop(&l->path, old);
		return false;
	}
	check_members(l, ka, keepalive_members);
	static const struct {
		const char *key;
		uint64_t max;
	} fields[] = { { "time_s", 32767 }, { "interval_s", 32767 }, { "probes", 127 } };
	uint64_t got[3] = { 0 };
	for (size_t i = 0; i < 3; i++) {
		const struct ynode *n = need(l, ka, fields[i].key);
		size_t o2 = fieldpath_push(&l->path, ".%s", fields[i].key);
		ok = n && get_uint(l, n, 0, fields[i].max, &got[i]) && ok;
		fieldpath_pop(&l->path, o2);
	}
	fieldpath_pop(&l->path, old);
	t->keepalive = true;
	t->keepalive_time_s = (uint16_t)got[0];
	t->keepalive_interval_s = (uint16_t)got[1];
	t->keepalive_probes = (uint8_t)got[2];
	return ok;
}

static const char *const destination_members[] = { "host", "subset", "weight", "percent", "endpoints", "tcp", NULL };

static bool read_destination(struct loader *l, const struct ynode *m, const struct plan_service *s,
			     struct plan_destination *d)
{
	if (m->type != YN_MAP) {
		fail(l, m, "%s must be a mapping, got %s", l->path.s, shown(l, m));
		return false;
	}
	check_members(l, m, destination_members);
	const struct ynode *host = need(l, m, "host"), *subset = need(l, m, "subset"), *weight = need(l, m, "weight");
	const struct ynode *percent = need(l, m, "percent"), *eps = need(l, m, "endpoints"), *tcp = ymap_get(m, "tcp");
	bool ok = host && subset && weight && percent && eps;
	size_t old;
	if (host) {
		old = fieldpath_push(&l->path, ".host");
		ok = (d->host = get_string(l, host)) && check_service_key(l, host, d->host) && ok;
		fieldpath_pop(&l->path, old);
	}
	if (subset) {
		old = fieldpath_push(&l->path, ".subset");
		d->subset = get_string(l, subset);
		ok = d->subset && (!d->subset[0] || check_name(l, subset, d->subset, name_subset_error)) && ok;
		fieldpath_pop(&l->path, old);
	}
	if (weight) {
		uint64_t w = 0;
		old = fieldpath_push(&l->path, ".weight");
		ok = get_uint(l, weight, 0, 2147483647, &w) && ok;
		d->weight = (uint32_t)w;
		fieldpath_pop(&l->path, old);
	}
	if (percent) {
		old = fieldpath_push(&l->path, ".percent");
		ok = check_percent(l, percent) && ok;
		fieldpath_pop(&l->path, old);
	}
	if (eps) {
		old = fieldpath_push(&l->path, ".endpoints");
		if (eps->type != YN_SEQ) {
			fail(l, eps, "%s must be a list, got %s", l->path.s, shown(l, eps));
			ok = false;
		} else if (eps->n > PLAN_MAX_ENDPOINTS) {
			fail(l, eps, "%s has %u endpoints, more than the limit of %d", l->path.s, eps->n, PLAN_MAX_ENDPOINTS);
			ok = false;
		} else {
			d->endpoints = arena_alloc(l->arena, (eps->n + 1) * sizeof(*d->endpoints));
			for (uint32_t i = 0; i < eps->n; i++) {
				size_t o2 = fieldpath_push(&l->path, "[%u]", i);
				struct plan_endpoint *e = &d->endpoints[d->n_endpoints];
				if (!get_endpoint(l, eps->items[i], e)) {
					ok = false;
				} else if (!plan_service_has_family(s, e->addr.family)) {
					fail(l, eps->items[i], "%s %s is IPv%c but the service has no IPv%c address", l->path.s,
					     quoted(l, eps->items[i]), e->addr.family == AF_INET ? '4' : '6',
					     e->addr.family == AF_INET ? '4' : '6');
					ok = false;
				} else {
					char ip[INET6_ADDRSTRLEN];
					plan_addr_str(&e->addr, ip, sizeof(ip));
					if (!strmap_get(&l->endpoints, ip))
						strmap_put(&l->endpoints, arena_strdup(l->arena, ip), eps->items[i]);
					d->n_endpoints++;
				}
				fieldpath_pop(&l->path, o2);
			}
		}
		fieldpath_pop(&l->path, old);
	}
	if (tcp) {
		old = fieldpath_push(&l->path, ".tcp");
		if (s->protocol != IPPROTO_TCP) {
			fail(l, tcp, "%s: a TCP policy on a UDP service", l->path.s);
			ok = false;
		} else {
			ok = read_tcp_policy(l, tcp, &d->tcp) && ok;
		}
		fieldpath_pop(&l->path, old);
	}
	return ok;
}

/* One data plane key per (address, port, protocol), as the compiler makes them. */
static bool unique_key(struct loader *l, const struct ynode *n, const struct plan_addr *a, uint16_t port,
		       uint8_t protocol)
{
	char ip[INET6_ADDRSTRLEN];
	plan_addr_str(a, ip, sizeof(ip));
	char *key = arena_printf(l->arena, "%s %u %s", ip, port, plan_protocol_name(protocol));
	const struct ynode *first = strmap_get(&l->keys, key);
	if (first) {
		fail(l, n, "%s: %s port %u/%s is served twice (first at line %u): one address, port and protocol "
			   "has one route",
		     l->path.s, ip, port, plan_protocol_name(protocol), first->line);
		return false;
	}
	strmap_put(&l->keys, key, (void *)n);
	return true;
}

static const char *const service_members[] = { "name", "namespace", "vips", "port", "protocol", "loadBalancer",
					       "route", "gateway", "gatewayAddresses", "gatewayPort", "destinations",
					       NULL };

/* The members of a service every other member's check depends on: gateway, name, namespace, route. */
static bool read_service_names(struct loader *l, const struct ynode *m, struct plan_service *s)
{
	const struct ynode *name = need(l, m, "name"), *ns = need(l, m, "namespace"), *route = ymap_get(m, "route");
	const struct ynode *gw = ymap_get(m, "gateway"), *gwa = ymap_get(m, "gatewayAddresses");
	const struct ynode *gwp = ymap_get(m, "gatewayPort");
	bool ok = name && ns;
	size_t old;
	if (gw) {
		old = fieldpath_push(&l->path, ".gateway");
		ok = (s->gateway = get_string(l, gw)) && check_object_key(l, gw, s->gateway) && ok;
		fieldpath_pop(&l->path, old);
		if (!gwa)
			ok = need(l, m, "gatewayAddresses") && ok;
		if (!gwp)
			ok = need(l, m, "gatewayPort") && ok;
	} else if (gwa || gwp) {
		fail(l, gwa ? gwa : gwp, "%s: %s without gateway", l->path.s, gwa ? "gatewayAddresses" : "gatewayPort");
		ok = false;
	}
	if (name) {
		/* a gateway's entry is named after its Gateway, any other after its Service */
		old = fieldpath_push(&l->path, ".name");
		ok = (s->name = get_string(l, name)) &&
		     check_name(l, name, s->name, gw ? name_dns1123_subdomain_error : name_dns1035_label_error) && ok;
		fieldpath_pop(&l->path, old);
	}
	if (ns) {
		old = fieldpath_push(&l->path, ".namespace");
		ok = (s->namespace = get_string(l, ns)) && check_name(l, ns, s->namespace, name_dns1123_label_error) && ok;
		fieldpath_pop(&l->path, old);
	}
	if (route) {
		/* state files of the release before this one lack "route" */
		old = fieldpath_push(&l->path, ".route");
		ok = (s->route = get_string(l, route)) && check_object_key(l, route, s->route) && ok;
		fieldpath_pop(&l->path, old);
	}
	return ok;
}

/* One of the words a member may be; which one in *index. */
static bool read_word(struct loader *l, const struct ynode *m, const char *member, const char *a, const char *b,
		      int *index)
{
	const struct ynode *n = need(l, m, member);
	if (!n)
		return false;
	char path[32];
	snprintf(path, sizeof(path), ".%s", member);
	size_t old = fieldpath_push(&l->path, "%s", path);
	const char *p = get_string(l, n);
	bool ok = p && (!strcmp(p, a) || !strcmp(p, b));
	if (p && !ok)
		fail(l, n, "%s must be %s or %s, got %s", l->path.s, a, b, shown(l, n));
	*index = p && !strcmp(p, b);
	fieldpath_pop(&l->path, old);
	return ok;
}

static bool read_port(struct loader *l, const struct ynode *n, const char *member, uint16_t *port)
{
	uint64_t v = 0;
	size_t old = fieldpath_push(&l->path, ".%s", member);
	bool ok = get_uint(l, n, 1, 65535, &v);
	*port = (uint16_t)v;
	fieldpath_pop(&l->path, old);
	return ok;
}

/* A list of service addresses (VIPs, a gateway's addresses), each held to the VIP rules. */
static bool read_addrs(struct loader *l, const struct ynode *list, const char *member, size_t min, size_t max,
		       struct plan_addr *out, size_t *n_out, bool one_per_family)
{
	bool ok = true;
	size_t old = fieldpath_push(&l->path, ".%s", member);
	if (list->type != YN_SEQ || list->n < min || list->n > max) {
		if (one_per_family)
			fail(l, list, "%s must be a list of at most %zu addresses, one per IP family, got %s", l->path.s, max,
			     list->type == YN_SEQ ? arena_printf(l->arena, "%u", list->n) : shown(l, list));
		else
			fail(l, list, "%s must be a list of %zu to %zu addresses, got %s", l->path.s, min, max,
			     list->type == YN_SEQ ? arena_printf(l->arena, "%u", list->n) : shown(l, list));
		fieldpath_pop(&l->path, old);
		return false;
	}
	for (uint32_t i = 0; i < list->n; i++) {
		size_t o2 = fieldpath_push(&l->path, "[%u]", i);
		struct plan_addr *a = &out[*n_out];
		if (!get_vip(l, list->items[i], a)) {
			ok = false;
		} else if (one_per_family && *n_out && out[0].family == a->family) {
			fail(l, list->items[i], "%s: a service has at most one VIP per IP family", l->path.s);
			ok = false;
		} else {
			(*n_out)++;
		}
		fieldpath_pop(&l->path, o2);
	}
	fieldpath_pop(&l->path, old);
	return ok;
}

/* The destinations, their weights held to Istio's rules, and the shares they give. */
static bool read_service_destinations(struct loader *l, const struct ynode *ds, struct plan_service *s)
{
	bool ok = true;
	size_t old = fieldpath_push(&l->path, ".destinations");
	if (ds->type != YN_SEQ || !ds->n || ds->n > PLAN_MAX_DESTINATIONS) {
		fail(l, ds, "%s must be a list of 1 to %d destinations, got %s", l->path.s, PLAN_MAX_DESTINATIONS,
		     ds->type == YN_SEQ ? arena_printf(l->arena, "%u", ds->n) : shown(l, ds));
		fieldpath_pop(&l->path, old);
		return false;
	}
	s->destinations = arena_alloc(l->arena, ds->n * sizeof(*s->destinations));
	s->n_destinations = ds->n;
	uint64_t sum = 0;
	for (uint32_t i = 0; i < ds->n; i++) {
		size_t o2 = fieldpath_push(&l->path, "[%u]", i);
		ok = read_destination(l, ds->items[i], s, &s->destinations[i]) && ok;
		sum += s->destinations[i].weight;
		fieldpath_pop(&l->path, o2);
	}
	char why[160];
	if (ok && plan_weights_error(sum, ds->n, why, sizeof(why))) {
		fail(l, ds, "%s: %s", l->path.s, why);
		ok = false;
	}
	fieldpath_pop(&l->path, old);
	if (ok)
		plan_service_shares(s);   /* never the file's percent: the weights decide */
	return ok;
}

/* A service is one entry, and each of its addresses, port and protocol one data plane key. */
static bool check_service_unique(struct loader *l, const struct ynode *m, const struct plan_service *s)
{
	const struct ynode *vips = ymap_get(m, "vips"), *gwa = ymap_get(m, "gatewayAddresses");
	const char *key = arena_printf(l->arena, "%s/%s/%u/%s/%s", s->namespace, s->name, s->port,
				       plan_protocol_name(s->protocol), s->gateway ? s->gateway : "");
	const struct ynode *first = strmap_get(&l->services, key);
	bool ok = true;
	if (first) {
		fail(l, m, "%s repeats service %s.%s port %u/%s%s%s (first at line %u)", l->path.s, s->name, s->namespace,
		     s->port, plan_protocol_name(s->protocol), s->gateway ? " of gateway " : "",
		     s->gateway ? s->gateway : "", first->line);
		return false;
	}
	strmap_put(&l->services, (char *)key, (void *)m);
	for (size_t i = 0; i < s->n_vips; i++) {
		size_t o2 = fieldpath_push(&l->path, ".vips[%zu]", i);
		ok = unique_key(l, vips->items[i], &s->vips[i], s->port, s->protocol) && ok;
		fieldpath_pop(&l->path, o2);
	}
	for (size_t i = 0; i < s->n_gateway_addrs; i++) {
		size_t o2 = fieldpath_push(&l->path, ".gatewayAddresses[%zu]", i);
		ok = unique_key(l, gwa->items[i], &s->gateway_addrs[i], s->gateway_port, s->protocol) && ok;
		fieldpath_pop(&l->path, o2);
	}
	return ok;
}

static bool read_service(struct loader *l, const struct ynode *m, struct plan_service *s)
{
	if (m->type != YN_MAP) {
		fail(l, m, "%s must be a mapping, got %s", l->path.s, shown(l, m));
		return false;
	}
	check_members(l, m, service_members);
	const struct ynode *vips = need(l, m, "vips"), *port = need(l, m, "port"), *ds = need(l, m, "destinations");
	const struct ynode *gwa = ymap_get(m, "gatewayAddresses"), *gwp = ymap_get(m, "gatewayPort");
	bool ok = read_service_names(l, m, s) && vips && port && ds;
	int udp = 0, random = 0;
	ok = (!port || read_port(l, port, "port", &s->port)) && ok;
	ok = read_word(l, m, "protocol", "TCP", "UDP", &udp) && ok;
	s->protocol = udp ? IPPROTO_UDP : IPPROTO_TCP;
	ok = read_word(l, m, "loadBalancer", "ROUND_ROBIN", "RANDOM", &random) && ok;
	s->lb = random ? PLAN_LB_RANDOM : PLAN_LB_ROUND_ROBIN;
	if (vips) {
		ok = read_addrs(l, vips, "vips", 0, 2, s->vips, &s->n_vips, true) && ok;
		if (vips->type == YN_SEQ && !vips->n && !ymap_get(m, "gateway")) {
			size_t old = fieldpath_push(&l->path, ".vips");
			fail(l, vips, "%s is empty and there is no gateway: the service cannot be reached", l->path.s);
			fieldpath_pop(&l->path, old);
			ok = false;
		}
	}
	if (ymap_get(m, "gateway") && gwa)
		ok = read_addrs(l, gwa, "gatewayAddresses", 1, PLAN_MAX_GATEWAY_ADDRS, s->gateway_addrs,
				&s->n_gateway_addrs, false) && ok;
	if (ymap_get(m, "gateway") && gwp)
		ok = read_port(l, gwp, "gatewayPort", &s->gateway_port) && ok;
	if (!ok)
		return false;   /* the destinations need the service's families and protocol */
	return read_service_destinations(l, ds, s) && check_service_unique(l, m, s);
}

/* A VIP that is also an endpoint would take over the connections made to that pod. */
static void check_vips_not_endpoints(struct loader *l, const struct ynode *svcs)
{
	for (size_t i = 0; i < l->plan->n_services; i++) {
		const struct plan_service *s = &l->plan->services[i];
		const struct ynode *m = svcs->items[i];
		for (int g = 0; g < 2; g++) {
			const struct ynode *list = ymap_get(m, g ? "gatewayAddresses" : "vips");
			size_t n = g ? s->n_gateway_addrs : s->n_vips;
			for (size_t a = 0; a < n; a++) {
				char ip[INET6_ADDRSTRLEN];
				plan_addr_str(g ? &s->gateway_addrs[a] : &s->vips[a], ip, sizeof(ip));
				const struct ynode *ep = strmap_get(&l->endpoints, ip);
				if (ep)
					fail(l, list->items[a],
					     "services[%zu].%s[%zu] \"%s\" is also an endpoint (line %u): as a VIP it would take "
					     "over every connection made to that pod",
					     i, g ? "gatewayAddresses" : "vips", a, ip, ep->line);
			}
		}
	}
}

static const char *const plan_members[] = { "generation", "services", NULL };

static void on_doc(void *ctx, const struct mark *file, struct ynode *root)
{
	struct loader *l = ctx;
	(void)file;
	if (l->seen) {
		fail(l, root, "a second document: the saved plan is one JSON object");
		return;
	}
	l->seen = true;
	if (root->type != YN_MAP) {
		fail(l, root, "the saved plan must be a mapping with services, got %s", shown(l, root));
		return;
	}
	check_members(l, root, plan_members);
	const struct ynode *gen = ymap_get(root, "generation"), *svcs = need(l, root, "services");
	if (gen) {
		size_t old = fieldpath_push(&l->path, "generation");
		get_uint(l, gen, 0, UINT64_MAX, &l->generation);
		fieldpath_pop(&l->path, old);
	}
	if (!svcs)
		return;
	size_t old = fieldpath_push(&l->path, "services");
	if (svcs->type != YN_SEQ || svcs->n > PLAN_MAX_SERVICES) {
		fail(l, svcs, "%s must be a list of at most %d services, got %s", l->path.s, PLAN_MAX_SERVICES,
		     svcs->type == YN_SEQ ? arena_printf(l->arena, "%u", svcs->n) : shown(l, svcs));
		fieldpath_pop(&l->path, old);
		return;
	}
	fieldpath_pop(&l->path, old);
	l->plan->services = arena_alloc(l->arena, (svcs->n + 1) * sizeof(*l->plan->services));
	bool ok = true;
	for (uint32_t i = 0; i < svcs->n; i++) {
		old = fieldpath_push(&l->path, "services[%u]", i);
		ok = read_service(l, svcs->items[i], &l->plan->services[i]) && ok;
		fieldpath_pop(&l->path, old);
	}
	if (!ok)
		return;
	l->plan->n_services = svcs->n;
	check_vips_not_endpoints(l, svcs);
}

int plan_read_json(const unsigned char *buf, size_t len, const char *name, struct plan *plan, uint64_t *generation,
		   struct diags *d)
{
	struct arena *arena = calloc(1, sizeof(*arena));
	if (!arena)
		abort();
	memset(plan, 0, sizeof(*plan));
	plan->arena = arena;
	struct mark file = { .file = name, .line = 1, .col = 1 };
	struct loader l = { .plan = plan, .arena = arena, .d = d, .file = &file };
	size_t errors = d->n;
	yaml_each_document(buf, len, &file, d, on_doc, &l);
	if (!l.seen && d->n == errors)
		diag_error(d, &file, "empty state file");
	strmap_free(&l.services);
	strmap_free(&l.keys);
	strmap_free(&l.endpoints);
	if (d->n != errors) {
		diags_sort(d);
		plan_free(plan);
		return -1;
	}
	if (generation)
		*generation = l.generation;
	return 0;
}
