// SPDX-License-Identifier: MIT
/* Istio VirtualServices into vs records (YAML -> records): hosts, gateways, http and tcp routes and
 * their weighted destinations. What needs an L7 proxy is refused here, saying what to do instead. */
#include "compile/kinds.h"

#include <string.h>

#include "common/names.h"

static const char *const vs_spec_fields[] = { "exportTo", "gateways", "hosts", "http", "tcp", "tls", NULL };
static const char *const http_route_fields[] = {
	"corsPolicy", "delegate", "directResponse", "fault", "headers", "match", "mirror", "mirrorPercent",
	"mirrorPercentage", "mirror_percent", "mirrors", "name", "redirect", "retries", "rewrite", "route",
	"timeout", NULL
};
static const char *const http_match_fields[] = {
	"authority", "gateways", "headers", "ignoreUriCase", "method", "name", "port", "queryParams", "scheme",
	"sourceLabels", "sourceNamespace", "statPrefix", "uri", "withoutHeaders", NULL
};
static const char *const tcp_route_fields[] = { "match", "route", NULL };
static const char *const tcp_match_fields[] = { "destinationSubnets", "gateways", "port", "sourceLabels",
						"sourceNamespace", "sourceSubnet", NULL };
static const char *const http_dest_fields[] = { "destination", "headers", "weight", NULL };
static const char *const tcp_dest_fields[] = { "destination", "weight", NULL };
static const char *const destination_fields[] = { "host", "port", "subset", NULL };
static const char *const port_selector_fields[] = { "number", NULL };

struct refusal {
	const char *field;
	const char *why;
};

/* What a connect-time data plane cannot do, and what to use instead. */
#define L7 "sluice picks the backend at connect(), before any request byte exists"
static const struct refusal http_route_refusals[] = {
	{ "retries", "HTTP retries replay requests and need an L7 proxy: " L7 "; retry in the client" },
	{ "timeout", "request timeouts need an L7 proxy: " L7 "; set the timeout in the client" },
	{ "fault", "fault injection rewrites requests and needs an L7 proxy: " L7
		   "; canary a faulty version by weight instead" },
	{ "mirror", "mirroring copies requests and needs an L7 proxy: " L7 "; shift a small weight instead" },
	{ "mirrors", "mirroring copies requests and needs an L7 proxy: " L7 "; shift a small weight instead" },
	{ "mirrorPercentage", "mirroring copies requests and needs an L7 proxy: " L7
			      "; shift a small weight instead" },
	{ "mirrorPercent", "mirroring copies requests and needs an L7 proxy: " L7 "; shift a small weight instead" },
	{ "mirror_percent", "mirroring copies requests and needs an L7 proxy: " L7
			    "; shift a small weight instead" },
	{ "rewrite", "URI and authority rewrites need an L7 proxy: " L7 "; remove rewrite" },
	{ "redirect", "HTTP redirects need an L7 proxy: " L7 "; route by weight instead" },
	{ "directResponse", "direct responses need an L7 proxy: " L7 "; route by weight instead" },
	{ "headers", "header manipulation needs an L7 proxy: " L7 "; remove headers" },
	{ "corsPolicy", "CORS needs an L7 proxy: " L7 "; handle CORS in the application" },
	{ "delegate", "delegate VirtualServices are not supported: put the routes in this VirtualService" },
	{ NULL, NULL },
};
static const struct refusal http_match_refusals[] = {
	{ "headers", "matching on HTTP headers needs an L7 proxy: " L7
		     "; split by weight, or run the client pinned to a subset" },
	{ "withoutHeaders", "matching on HTTP headers needs an L7 proxy: " L7
			    "; split by weight, or run the client pinned to a subset" },
	{ "uri", "matching on the URI needs an L7 proxy: " L7 "; split by weight, or give the path its own Service" },
	{ "scheme", "matching on the scheme needs an L7 proxy: " L7 "; match on port instead" },
	{ "method", "matching on the HTTP method needs an L7 proxy: " L7 "; split by weight instead" },
	{ "authority", "matching on the authority needs an L7 proxy: " L7 "; give each host its own Service" },
	{ "queryParams", "matching on query parameters needs an L7 proxy: " L7 "; split by weight instead" },
	{ "ignoreUriCase", "URI matching needs an L7 proxy: " L7 "; remove ignoreUriCase" },
	{ "sourceLabels", "sourceLabels matches are not implemented yet; split by weight, or run the client "
			  "pinned to a subset" },
	{ "sourceNamespace", "sourceNamespace matches are not implemented yet; split by weight instead" },
	{ "statPrefix", "statPrefix names Envoy statistics and has no meaning without a proxy; remove it" },
	{ NULL, NULL },
};
static const struct refusal tcp_match_refusals[] = {
	{ "destinationSubnets", "destinationSubnets matches are not implemented yet; match on port instead" },
	{ "sourceLabels", "sourceLabels matches are not implemented yet; split by weight, or run the client "
			  "pinned to a subset" },
	{ "sourceNamespace", "sourceNamespace matches are not implemented yet; split by weight instead" },
	{ "sourceSubnet", "sourceSubnet matches are not implemented yet; split by weight instead" },
	{ NULL, NULL },
};

static void refuse_fields(struct cctx *c, const struct ynode *m, const struct refusal *r)
{
	for (uint32_t i = 0; i < m->n; i++) {
		const struct ynode *k = ymap_key(m, i);
		for (const struct refusal *x = r; x->field; x++)
			if (k->type == YN_SCALAR && !strcmp(k->str, x->field))
				cc_err(c, k, "%s.%s: %s", c->path.s, x->field, x->why);
	}
}

/* match[].gateways: a per-route gateway choice; only "mesh" there. */
static void check_gateways(struct cctx *c, const struct ynode *g)
{
	if (ynode_is_null(g) || !cc_want(c, g, YN_SEQ))
		return;
	for (uint32_t i = 0; i < g->n; i++) {
		size_t old = cc_push_index(c, i);
		const char *name = cc_get_str(c, g->items[i]);
		if (name && !cc_check_name(c, g->items[i], "gateway", name_gateway_ref_error))
			name = NULL;
		if (name && strcmp(name, "mesh"))
			cc_err(c, g->items[i],
			       "%s: matching on gateway %s is not supported: bind the whole VirtualService to it "
			       "in spec.gateways, or give the Gateway's routes their own VirtualService",
			       c->path.s, cc_quote(c, name));
		cc_pop(c, old);
	}
}

/* spec.gateways: "mesh" for pods' connections, Gateway names for ingress through TC mode. Returns
 * false when a name is refused: what the VirtualService binds is then unknown. */
static bool read_vs_gateways(struct cctx *c, const struct ynode *g, struct vs *v)
{
	bool ok = true;
	if (ynode_is_null(g) || !cc_want(c, g, YN_SEQ))
		return ok;
	v->mesh = false;
	v->gateways = arena_alloc(c->keep, (g->n ? g->n : 1) * sizeof(*v->gateways));
	v->gateways_at = arena_alloc(c->keep, (g->n ? g->n : 1) * sizeof(*v->gateways_at));
	for (uint32_t i = 0; i < g->n; i++) {
		size_t old = cc_push_index(c, i);
		const char *name = cc_get_str(c, g->items[i]);
		if (name && !cc_check_name(c, g->items[i], "gateway", name_gateway_ref_error)) {
			ok = false;
		} else if (name && !strcmp(name, "mesh")) {
			v->mesh = true;
		} else if (name) {
			v->gateways_at[v->n_gateways] = cc_node_mark(c, g->items[i]);
			v->gateways[v->n_gateways++] = name;
		}
		cc_pop(c, old);
	}
	return ok;
}

static void read_destination(struct cctx *c, const struct ynode *rd, bool tcp, struct dest *d)
{
	d->weight = -1;
	d->at = cc_node_mark(c, rd);
	cc_check_fields(c, rd, tcp ? tcp_dest_fields : http_dest_fields);
	if (!tcp)
		refuse_fields(c, rd, (const struct refusal[]){
			{ "headers", "header manipulation needs an L7 proxy: " L7 "; remove headers" }, { NULL, NULL } });
	const struct ynode *w = ymap_get(rd, "weight");
	if (w) {
		size_t old = cc_push_key(c, "weight");
		long long v;
		d->weight_at = cc_node_mark(c, w);
		if (cc_is_integer(w) && w->str[0] == '-') {
			cc_err(c, w, "%s must not be negative, got %s: weights are relative shares from 0 up", c->path.s,
			       w->str);
			d->weight = -2;
		} else if (cc_get_int(c, w, 0, INT32_MAX, &v))
			d->weight = v;
		else
			d->weight = -2; /* reported; keeps the route from a second error */
		cc_pop(c, old);
	}
	const struct ynode *dn = ymap_get(rd, "destination");
	size_t old = cc_push_key(c, "destination");
	if (!dn || ynode_is_null(dn)) {
		cc_err(c, rd, "%s is required", c->path.s);
	} else if (cc_want(c, dn, YN_MAP)) {
		cc_check_fields(c, dn, destination_fields);
		const struct ynode *h = ymap_get(dn, "host"), *s = ymap_get(dn, "subset"), *p = ymap_get(dn, "port");
		if (!h) {
			cc_err(c, dn, "%s.host is required", c->path.s);
		} else {
			size_t o2 = cc_push_key(c, "host");
			d->host = cc_get_name(c, h, "host", name_host_error);
			d->host_at = cc_node_mark(c, h);
			cc_pop(c, o2);
		}
		if (s && !ynode_is_null(s)) {
			size_t o2 = cc_push_key(c, "subset");
			d->subset = cc_get_str(c, s);
			d->subset_at = cc_node_mark(c, s);
			if (d->subset && !cc_check_name(c, s, "subset name", name_subset_error))
				d->bad_name = true;
			cc_pop(c, o2);
		}
		if (p && !ynode_is_null(p)) {
			size_t o2 = cc_push_key(c, "port");
			if (cc_want(c, p, YN_MAP)) {
				cc_check_fields(c, p, port_selector_fields);
				const struct ynode *num = ymap_get(p, "number");
				size_t o3 = cc_push_key(c, "number");
				if (!num)
					cc_err(c, p, "%s is required", c->path.s);
				else if (cc_get_port(c, num, &d->port))
					d->port_at = cc_node_mark(c, num);
				cc_pop(c, o3);
			}
			cc_pop(c, o2);
		}
	}
	cc_pop(c, old);
}

/* One match of a route: the port it takes (0: any), the rest refused or checked. */
static void read_match(struct cctx *c, const struct ynode *m, bool tcp, struct route *out)
{
	cc_check_fields(c, m, tcp ? tcp_match_fields : http_match_fields);
	refuse_fields(c, m, tcp ? tcp_match_refusals : http_match_refusals);
	struct match *mt = &out->matches[out->n_matches];
	out->match_at[out->n_matches] = cc_node_mark(c, m);
	const struct ynode *port = ymap_get(m, "port"), *gw = ymap_get(m, "gateways");
	if (port) {
		size_t old = cc_push_key(c, "port");
		cc_get_port(c, port, &mt->port);
		out->match_at[out->n_matches] = cc_node_mark(c, port);
		cc_pop(c, old);
	}
	if (gw) {
		size_t old = cc_push_key(c, "gateways");
		check_gateways(c, gw);
		cc_pop(c, old);
	}
	const struct ynode *name = ymap_get(m, "name");
	if (name) {
		size_t old = cc_push_key(c, "name");
		cc_get_str(c, name);
		cc_pop(c, old);
	}
	out->n_matches++;
}

static void read_matches(struct cctx *c, const struct ynode *ms, bool tcp, struct route *out)
{
	out->matches = arena_alloc(c->keep, (ms->n ? ms->n : 1) * sizeof(*out->matches));
	out->match_at = arena_alloc(c->keep, (ms->n ? ms->n : 1) * sizeof(*out->match_at));
	for (uint32_t i = 0; i < ms->n; i++) {
		size_t old = cc_push_index(c, i);
		if (cc_want(c, ms->items[i], YN_MAP))
			read_match(c, ms->items[i], tcp, out);
		cc_pop(c, old);
	}
}

static void read_route(struct cctx *c, const struct ynode *r, bool tcp, uint32_t index, struct route *out)
{
	out->tcp = tcp;
	out->index = index;
	out->at = cc_node_mark(c, r);
	cc_check_fields(c, r, tcp ? tcp_route_fields : http_route_fields);
	if (!tcp)
		refuse_fields(c, r, http_route_refusals);
	const struct ynode *ms = ymap_get(r, "match");
	size_t old = cc_push_key(c, "match");
	if (ms && !ynode_is_null(ms) && cc_want(c, ms, YN_SEQ))
		read_matches(c, ms, tcp, out);
	cc_pop(c, old);
	const struct ynode *name = ymap_get(r, "name");
	if (name) {
		old = cc_push_key(c, "name");
		cc_get_str(c, name);
		cc_pop(c, old);
	}
	const struct ynode *rs = ymap_get(r, "route");
	old = cc_push_key(c, "route");
	if (!rs || ynode_is_null(rs)) {
		if (tcp || !ymap_get(r, "redirect"))
			cc_err(c, r, "%s is required: list the destinations and their weights", c->path.s);
	} else if (cc_want(c, rs, YN_SEQ)) {
		if (rs->n > PLAN_MAX_DESTINATIONS)
			cc_err(c, rs, "%s has %u destinations, more than the limit of %d", c->path.s, rs->n,
			       PLAN_MAX_DESTINATIONS);
		else if (!rs->n)
			cc_err(c, rs, "%s is empty: list at least one destination", c->path.s);
		out->dests = arena_alloc(c->keep, (rs->n ? rs->n : 1) * sizeof(*out->dests));
		for (uint32_t i = 0; i < rs->n && rs->n <= PLAN_MAX_DESTINATIONS; i++) {
			size_t o2 = cc_push_index(c, i);
			if (cc_want(c, rs->items[i], YN_MAP))
				read_destination(c, rs->items[i], tcp, &out->dests[out->n_dests++]);
			cc_pop(c, o2);
		}
	}
	cc_pop(c, old);
}

static void read_routes(struct cctx *c, const struct ynode *list, bool tcp, struct route **out, uint32_t *n)
{
	if (ynode_is_null(list) || !cc_want(c, list, YN_SEQ))
		return;
	*out = arena_alloc(c->keep, (list->n ? list->n : 1) * sizeof(**out));
	for (uint32_t i = 0; i < list->n; i++) {
		size_t old = cc_push_index(c, i);
		if (cc_want(c, list->items[i], YN_MAP))
			read_route(c, list->items[i], tcp, i, &(*out)[(*n)++]);
		cc_pop(c, old);
	}
}

/* spec.hosts: the Services the VirtualService routes, resolved once every object is read. */
static void read_vs_hosts(struct cctx *c, const struct ynode *hosts, struct vs *v)
{
	v->hosts = arena_alloc(c->keep, (hosts->n ? hosts->n : 1) * sizeof(*v->hosts));
	v->hosts_at = arena_alloc(c->keep, (hosts->n ? hosts->n : 1) * sizeof(*v->hosts_at));
	for (uint32_t j = 0; j < hosts->n; j++) {
		size_t old = cc_push_index(c, j);
		const struct ynode *n = hosts->items[j];
		const char *h = cc_get_str(c, n);
		struct plan_addr ip;
		/* a DNS name, a wildcard or, as Istio allows in a VirtualService, an IP address */
		if (h && (name_parse_addr(h, &ip) || cc_check_name(c, n, "host", name_host_error))) {
			v->hosts_at[v->n_hosts] = cc_node_mark(c, n);
			v->hosts[v->n_hosts++] = h;
		}
		cc_pop(c, old);
	}
}

void cc_read_virtual_service(struct cctx *c, const struct ynode *obj)
{
	struct meta m;
	if (!cc_open_object(c, obj, "VirtualService", &m))
		return;
	struct vs *v = arena_alloc(c->keep, sizeof(*v));
	v->name = m.name;
	v->ns = m.ns;
	v->key = cc_join(c->keep, '/', m.ns, m.name, NULL);
	v->mesh = true;
	v->at = cc_node_mark(c, obj);
	size_t old;
	const struct ynode *spec = cc_open_spec(c, obj, "VirtualService", v->key, vs_spec_fields, &old);
	if (!spec)
		return;
	bool ok = true;
	size_t errors = c->d->n;
	for (uint32_t i = 0; i < spec->n; i++) {
		const struct ynode *k = ymap_key(spec, i), *val = ymap_val(spec, i);
		size_t o2 = cc_push_key(c, k->str);
		if (!strcmp(k->str, "hosts") && !ynode_is_null(val) && cc_want(c, val, YN_SEQ)) {
			read_vs_hosts(c, val, v);
		} else if (!strcmp(k->str, "gateways")) {
			ok = read_vs_gateways(c, val, v) && ok;
		} else if (!strcmp(k->str, "exportTo")) {
			cc_check_export_to(c, val);
		} else if (!strcmp(k->str, "http")) {
			read_routes(c, val, false, &v->http, &v->n_http);
		} else if (!strcmp(k->str, "tcp")) {
			read_routes(c, val, true, &v->tcp, &v->n_tcp);
		} else if (!strcmp(k->str, "tls") && !ynode_is_null(val)) {
			cc_err(c, k, "%s: tls routes match on the TLS SNI, which sluice cannot see at connect(); "
				  "use tcp routes",
			    c->path.s);
		}
		cc_pop(c, o2);
	}
	if (!v->n_hosts && c->d->n == errors) {
		cc_err(c, spec, "spec.hosts is required: name the Service this VirtualService routes");
		ok = false;
	}
	if (!v->n_http && !v->n_tcp && c->d->n == errors) {
		cc_err(c, spec, "VirtualService %s/%s has no http or tcp routes", m.ns, m.name);
		ok = false;
	}
	cc_pop(c, old);
	v->read_errors = c->d->n != errors;
	if (ok)
		ptrvec_push(&c->vss, v);
}
