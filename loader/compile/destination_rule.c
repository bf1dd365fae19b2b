// SPDX-License-Identifier: MIT
/* Istio DestinationRules into dr records (YAML -> records): host, subsets, load balancer, and the
 * TCP policy (connect timeout, keepalive) with the durations it is written in. */
#include "compile/kinds.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "common/names.h"

static const char *const dr_spec_fields[] = { "exportTo", "host", "subsets", "trafficPolicy", "workloadSelector",
					      NULL };
static const char *const subset_fields[] = { "labels", "name", "trafficPolicy", NULL };
static const char *const traffic_policy_fields[] = { "connectionPool", "loadBalancer", "outlierDetection",
						     "portLevelSettings", "proxyProtocol", "tls", "tunnel", NULL };
static const char *const load_balancer_fields[] = { "consistentHash", "localityLbSetting", "simple",
						    "warmupDurationSecs", NULL };

static const char *const connection_pool_fields[] = { "http", "tcp", NULL };
static const char *const tcp_settings_fields[] = { "connectTimeout", "idleTimeout", "maxConnectionDuration",
						   "maxConnections", "tcpKeepalive", NULL };
static const char *const tcp_keepalive_fields[] = { "interval", "probes", "time", NULL };

/* What a duration field holds once read: whole units from min to max, and why those bounds. */
struct duration_range {
	uint64_t unit_ns;
	const char *unit, *units;    /* "ms", "milliseconds" */
	uint64_t min, max;           /* in units */
	const char *range_why;       /* after the range in its error, or "" */
	const char *unit_why;        /* after "a whole number of UNITS" in its error */
};

static const struct duration_range connect_timeout_range = {
	1000000, "ms", "milliseconds", 1, 2147483647, "", " (TCP_USER_TIMEOUT counts milliseconds)",
};
static const struct duration_range keepalive_time_range = {
	1000000000, "s", "seconds", 1, 32767, " (the kernel's limits for TCP_KEEPIDLE)",
	" (TCP_KEEPIDLE counts seconds)",
};
static const struct duration_range keepalive_interval_range = {
	1000000000, "s", "seconds", 1, 32767, " (the kernel's limits for TCP_KEEPINTVL)",
	" (TCP_KEEPINTVL counts seconds)",
};

static uint64_t add_saturating(uint64_t a, uint64_t b)
{
	return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

/*
 * A duration as Istio's CRDs take it: protobuf's "1.5s" or Go's "1h30m", "500ms", "10us".
 * Returns false when s is not one; sets *ns (saturating), the sign, and whether a fraction
 * finer than a nanosecond was written.
 */
static bool parse_duration(const char *s, bool *negative, uint64_t *ns, bool *sub_ns)
{
	static const struct {
		const char *name;
		uint64_t ns;
	} units[] = {
		{ "ns", 1 }, { "us", 1000 }, { "\u00b5s", 1000 }, { "\u03bcs", 1000 }, { "ms", 1000000 },
		{ "s", 1000000000 }, { "m", 60000000000ULL }, { "h", 3600000000000ULL },
	};
	*negative = *s == '-';
	*ns = 0;
	*sub_ns = false;
	if (*s == '-' || *s == '+')
		s++;
	if (!strcmp(s, "0"))
		return true;
	if (!*s)
		return false;
	while (*s) {
		uint64_t whole = 0;
		bool digits = false;
		for (; isdigit((unsigned char)*s); s++, digits = true)
			whole = whole > (UINT64_MAX - 9) / 10 ? UINT64_MAX : whole * 10 + (uint64_t)(*s - '0');
		const char *frac = NULL;
		size_t n_frac = 0;
		if (*s == '.') {
			frac = ++s;
			for (; isdigit((unsigned char)*s); s++, n_frac++)
				digits = true;
		}
		size_t u = 0, len = 0;
		for (; u < sizeof(units) / sizeof(units[0]); u++) {
			len = strlen(units[u].name);
			if (!strncmp(s, units[u].name, len))
				break;
		}
		if (!digits || u == sizeof(units) / sizeof(units[0]))
			return false;
		s += len;
		uint64_t unit = units[u].ns;
		*ns = add_saturating(*ns, whole > UINT64_MAX / unit ? UINT64_MAX : whole * unit);
		/* each fraction digit is worth a tenth of the one before, while that is whole nanoseconds */
		uint64_t scale = unit;
		for (size_t i = 0; i < n_frac; i++) {
			uint64_t digit = (uint64_t)(frac[i] - '0');
			if (scale % 10) {
				*sub_ns = *sub_ns || digit;
				continue;
			}
			scale /= 10;
			*ns = add_saturating(*ns, digit * scale);
		}
	}
	return true;
}

/* A duration field (c->path.s) in whole units within r. */
static bool get_duration(struct cctx *c, const struct ynode *n, const struct duration_range *r, uint64_t *out)
{
	const char *s = cc_get_str(c, n);
	if (!s)
		return false;
	bool negative, sub_ns;
	uint64_t ns;
	if (!parse_duration(s, &negative, &ns, &sub_ns)) {
		cc_err(c, n, "%s must be a duration such as \"500ms\", \"10s\" or \"1m\", got %s", c->path.s,
		       cc_quote_node(c, n));
		return false;
	}
	if (negative || ns / r->unit_ns < r->min || ns / r->unit_ns > r->max ||
	    (ns / r->unit_ns == r->max && ns % r->unit_ns)) {
		cc_err(c, n, "%s must be from %llu%s to %llu%s%s, got %s", c->path.s, (unsigned long long)r->min, r->unit,
		       (unsigned long long)r->max, r->unit, r->range_why, cc_quote_node(c, n));
		return false;
	}
	if (ns % r->unit_ns || sub_ns) {
		cc_err(c, n, "%s must be a whole number of %s%s, got %s", c->path.s, r->units, r->unit_why, cc_quote_node(c, n));
		return false;
	}
	*out = ns / r->unit_ns;
	return true;
}

static void read_tcp_keepalive(struct cctx *c, const struct ynode *ka, struct plan_tcp_policy *t)
{
	if (ynode_is_null(ka) || !cc_want(c, ka, YN_MAP))
		return;
	cc_check_fields(c, ka, tcp_keepalive_fields);
	t->keepalive = true;  /* even when empty: on, with the kernel's defaults */
	for (uint32_t i = 0; i < ka->n; i++) {
		const struct ynode *k = ymap_key(ka, i), *v = ymap_val(ka, i);
		if (k->type != YN_SCALAR)
			continue;
		size_t old = cc_push_key(c, k->str);
		uint64_t secs;
		if (!strcmp(k->str, "time")) {
			if (get_duration(c, v, &keepalive_time_range, &secs))
				t->keepalive_time_s = (uint16_t)secs;
		} else if (!strcmp(k->str, "interval")) {
			if (get_duration(c, v, &keepalive_interval_range, &secs))
				t->keepalive_interval_s = (uint16_t)secs;
		} else if (!strcmp(k->str, "probes")) {
			long long probes = cc_is_integer(v) ? strtoll(v->str, NULL, 10) : 0;
			if (cc_is_integer(v) && (probes < 1 || probes > 127))
				cc_err(c, v, "%s must be an integer from 1 to 127 (the kernel's limits for TCP_KEEPCNT), got %s",
				       c->path.s, cc_clip_node(c, v));
			else if (cc_get_int(c, v, 1, 127, &probes))
				t->keepalive_probes = (uint8_t)probes;
		}
		cc_pop(c, old);
	}
}

/* connectionPool.tcp: what sockops can set on a connection; the pool limits need a proxy's pool. */
static void read_tcp_settings(struct cctx *c, const struct ynode *tcp, struct plan_tcp_policy *t)
{
	if (ynode_is_null(tcp) || !cc_want(c, tcp, YN_MAP))
		return;
	cc_check_fields(c, tcp, tcp_settings_fields);
	for (uint32_t i = 0; i < tcp->n; i++) {
		const struct ynode *k = ymap_key(tcp, i), *v = ymap_val(tcp, i);
		if (k->type != YN_SCALAR)
			continue;
		size_t old = cc_push_key(c, k->str);
		uint64_t ms;
		if (!strcmp(k->str, "connectTimeout")) {
			if (get_duration(c, v, &connect_timeout_range, &ms))
				t->connect_timeout_ms = (uint32_t)ms;
		} else if (!strcmp(k->str, "tcpKeepalive")) {
			read_tcp_keepalive(c, v, t);
		} else if (!strcmp(k->str, "maxConnections") || !strcmp(k->str, "maxConnectionDuration") ||
			   !strcmp(k->str, "idleTimeout")) {
			cc_err(c, k, "%s is not implemented yet: remove it (sluice honours connectTimeout and tcpKeepalive)",
			       c->path.s);
		}
		cc_pop(c, old);
	}
}

static void read_connection_pool(struct cctx *c, const struct ynode *cp, struct dr *d)
{
	if (ynode_is_null(cp) || !cc_want(c, cp, YN_MAP))
		return;
	cc_check_fields(c, cp, connection_pool_fields);
	for (uint32_t i = 0; i < cp->n; i++) {
		const struct ynode *k = ymap_key(cp, i), *v = ymap_val(cp, i);
		if (k->type != YN_SCALAR)
			continue;
		size_t old = cc_push_key(c, k->str);
		if (!strcmp(k->str, "tcp"))
			read_tcp_settings(c, v, &d->tcp);
		else if (!strcmp(k->str, "http"))
			cc_err(c, k, "%s: HTTP connection pool settings need an L7 proxy, and sluice picks the backend at "
				  "connect(); remove it",
			    c->path.s);
		cc_pop(c, old);
	}
}

/* trafficPolicy.loadBalancer: simple ROUND_ROBIN or RANDOM, which the data plane's tables can do. */
static void read_load_balancer(struct cctx *c, const struct ynode *lb, struct dr *d)
{
	if (ynode_is_null(lb) || !cc_want(c, lb, YN_MAP))
		return;
	cc_check_fields(c, lb, load_balancer_fields);
	for (uint32_t j = 0; j < lb->n; j++) {
		const struct ynode *k = ymap_key(lb, j), *v = ymap_val(lb, j);
		if (k->type != YN_SCALAR)
			continue;
		size_t old = cc_push_key(c, k->str);
		if (!strcmp(k->str, "simple")) {
			const char *s = cc_get_str(c, v);
			if (s && !strcmp(s, "ROUND_ROBIN"))
				d->lb = PLAN_LB_ROUND_ROBIN;
			else if (s && !strcmp(s, "RANDOM"))
				d->lb = PLAN_LB_RANDOM;
			else if (s)
				cc_err(c, v, "%s %s is not supported: use ROUND_ROBIN or RANDOM", c->path.s, cc_clip(c, s));
		} else if (strcmp(k->str, "consistentHash") && strcmp(k->str, "localityLbSetting") &&
			   strcmp(k->str, "warmupDurationSecs")) {
			/* unknown, already reported */
		} else {
			cc_err(c, k, "%s is not supported: sluice balances with simple ROUND_ROBIN or RANDOM", c->path.s);
		}
		cc_pop(c, old);
	}
}

static void read_traffic_policy(struct cctx *c, const struct ynode *tp, struct dr *d)
{
	if (ynode_is_null(tp) || !cc_want(c, tp, YN_MAP))
		return;
	cc_check_fields(c, tp, traffic_policy_fields);
	for (uint32_t i = 0; i < tp->n; i++) {
		const struct ynode *k = ymap_key(tp, i), *v = ymap_val(tp, i);
		if (k->type != YN_SCALAR)
			continue;
		size_t old = cc_push_key(c, k->str);
		if (!strcmp(k->str, "loadBalancer")) {
			read_load_balancer(c, v, d);
		} else if (!strcmp(k->str, "connectionPool")) {
			read_connection_pool(c, v, d);
		} else if (!strcmp(k->str, "outlierDetection")) {
			cc_err(c, k, "%s needs request outcomes that sluice does not see; remove it", c->path.s);
		} else if (!strcmp(k->str, "tls")) {
			cc_err(c, k, "%s: TLS origination needs a proxy; remove it", c->path.s);
		} else if (!strcmp(k->str, "portLevelSettings")) {
			cc_err(c, k, "%s is not supported: set trafficPolicy for the whole host", c->path.s);
		} else if (!strcmp(k->str, "proxyProtocol") || !strcmp(k->str, "tunnel")) {
			cc_err(c, k, "%s needs a proxy; remove it", c->path.s);
		}
		cc_pop(c, old);
	}
}

/* One subset: a name no subset before it took, and the labels that pick its pods. */
static void read_subset(struct cctx *c, const struct ynode *s, struct dr *d)
{
	cc_check_fields(c, s, subset_fields);
	struct subset *sub = &d->subsets[d->n_subsets];
	*sub = (struct subset){ 0 };   /* a refused subset before it left its fields in this slot */
	sub->at = cc_node_mark(c, s);
	const struct ynode *name = ymap_get(s, "name"), *tp = ymap_get(s, "trafficPolicy");
	size_t old = cc_push_key(c, "name");
	if (!name)
		cc_err(c, s, "%s is required", c->path.s);
	else
		sub->name = cc_get_name(c, name, "subset name", name_subset_error);
	cc_pop(c, old);
	old = cc_push_key(c, "labels");
	cc_get_labels(c, ymap_get(s, "labels"), &sub->labels);
	cc_pop(c, old);
	for (uint32_t q = 0; tp && q < s->n; q++)
		if (ymap_val(s, q) == tp)
			cc_err(c, ymap_key(s, q),
			       "%s.trafficPolicy is not supported per subset: set it for the whole host", c->path.s);
	for (uint32_t q = 0; sub->name && q < d->n_subsets; q++)
		if (d->subsets[q].name && !strcmp(d->subsets[q].name, sub->name))
			cc_err(c, name, "duplicate subset \"%s\" (first at line %u)", sub->name,
			       d->subsets[q].at.line);
	if (sub->name)
		d->n_subsets++;
}

static void read_subsets(struct cctx *c, const struct ynode *v, struct dr *d)
{
	d->subsets = arena_alloc(c->keep, (v->n ? v->n : 1) * sizeof(*d->subsets));
	for (uint32_t j = 0; j < v->n; j++) {
		size_t old = cc_push_index(c, j);
		if (cc_want(c, v->items[j], YN_MAP))
			read_subset(c, v->items[j], d);
		cc_pop(c, old);
	}
}

void cc_read_destination_rule(struct cctx *c, const struct ynode *obj)
{
	struct meta m;
	if (!cc_open_object(c, obj, "DestinationRule", &m))
		return;
	struct dr *d = arena_alloc(c->keep, sizeof(*d));
	d->name = m.name;
	d->ns = m.ns;
	d->at = cc_node_mark(c, obj);
	size_t old;
	const struct ynode *spec = cc_open_spec(c, obj, "DestinationRule", cc_join(c->keep, '/', m.ns, m.name, NULL),
						dr_spec_fields, &old);
	if (!spec)
		return;
	for (uint32_t i = 0; i < spec->n; i++) {
		const struct ynode *k = ymap_key(spec, i), *v = ymap_val(spec, i);
		size_t o2 = cc_push_key(c, k->str);
		if (!strcmp(k->str, "host")) {
			d->host = cc_get_name(c, v, "host", name_host_error);
			d->host_at = cc_node_mark(c, v);
		} else if (!strcmp(k->str, "exportTo")) {
			cc_check_export_to(c, v);
		} else if (!strcmp(k->str, "workloadSelector")) {
			cc_err(c, k, "%s is not supported: sluice applies a DestinationRule on every client; remove it",
			       c->path.s);
		} else if (!strcmp(k->str, "trafficPolicy")) {
			read_traffic_policy(c, v, d);
		} else if (!strcmp(k->str, "subsets") && !ynode_is_null(v) && cc_want(c, v, YN_SEQ)) {
			read_subsets(c, v, d);
		}
		cc_pop(c, o2);
	}
	if (!ymap_get(spec, "host"))
		cc_err(c, spec, "spec.host is required: name the Service this DestinationRule applies to");
	cc_pop(c, old);
	if (d->host)
		ptrvec_push(&c->drs, d);
}
