// SPDX-License-Identifier: MIT
/* The plan from the resolved records (records -> plan): each VirtualService's routes on the ports
 * of its Services and its Gateways' servers, one route per address, port and protocol. */
#include "compile/resolve.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plan/weights.h"

static bool port_is_tcp_only(const struct svc_port *p)
{
	const char *n = p->app_protocol ? p->app_protocol : p->name;
	return n && (!strcmp(n, "tcp") || !strncmp(n, "tcp-", 4));
}

static bool route_has_port(const struct route *r, uint16_t port)
{
	if (!r->n_matches)
		return true;
	for (uint32_t i = 0; i < r->n_matches; i++)
		if (!r->matches[i].port || r->matches[i].port == port)
			return true;
	return false;
}

/* Istio's choice per port: the first route that matches it, http routes for HTTP ports. */
static struct route *pick_route(struct vs *v, const struct svc_port *p)
{
	bool http = p->proto == IPPROTO_TCP && !port_is_tcp_only(p) && v->n_http;
	struct route *list = http ? v->http : v->tcp;
	uint32_t n = http ? v->n_http : v->n_tcp;
	for (uint32_t i = 0; i < n; i++)
		if (route_has_port(&list[i], p->port))
			return &list[i];
	return NULL;
}

/* A match port that none of the VirtualService's Services has can never match. One that only some
 * of them have is a route for those. */
static void check_route_ports(struct cctx *c, const struct ptrvec *services, struct route *list, uint32_t n)
{
	/* a route whose match ports are all missing is reported here, not again as unused */
	for (uint32_t i = 0; i < n; i++) {
		struct route *r = &list[i];
		for (uint32_t m = 0; m < r->n_matches; m++) {
			bool found = !r->matches[m].port;
			for (size_t si = 0; si < services->n && !found; si++) {
				const struct service *s = services->v[si];
				for (uint32_t p = 0; p < s->n_ports && !found; p++)
					found = s->ports[p].port == r->matches[m].port;
			}
			if (found)
				continue;
			const struct service *s = services->v[0];
			if (services->n == 1)
				cc_err_at(c, &r->match_at[m], "match port %u is not a port of Service %s (ports: %s)",
					  r->matches[m].port, s->key, cc_port_list(c, s));
			else
				cc_err_at(c, &r->match_at[m],
					  "match port %u is not a port of any Service of this VirtualService (%s ports: %s; "
					  "and %zu more)",
					  r->matches[m].port, s->key, cc_port_list(c, s), services->n - 1);
			r->port_missing = true;
		}
	}
}

/* One port number may be both TCP and UDP (DNS): each plan entry takes the port of its protocol. */
static const struct svc_port *dest_port(const struct rdest *r, const struct svc_port *sp)
{
	for (uint32_t i = 0; r->port->proto != sp->proto && i < r->svc->n_ports; i++)
		if (r->svc->ports[i].port == r->port->port && r->svc->ports[i].proto == sp->proto)
			return &r->svc->ports[i];
	return r->port;
}

/* One VirtualService while its entries are made. */
struct vs_build {
	struct vs *v;
	struct route *lists[2];      /* its http and tcp routes, indexed by route.tcp */
	uint32_t counts[2];
	struct rdest *resolved[2];   /* per list, every route's destinations in order */
	bool valid;                  /* every route resolved: only then are entries made */
	struct ptrvec routed;        /* the Services of the hosts it routes */
	struct vs_deps *deps;        /* what it was built from; NULL: not kept */
};

/* ---- what a VirtualService was built from ---- */

static void deps_add_key(struct ptrvec *pv, const char *key)
{
	for (size_t i = 0; i < pv->n; i++)
		if (!strcmp(pv->v[i], key))
			return;
	char *k = strdup(key);
	if (!k)
		abort();
	ptrvec_push(pv, k);
}

/* The pods of a destination: the Service's selector and the subset's labels, in its namespace. */
static void deps_add_want(struct vs_deps *d, const struct service *s, const struct subset *sub)
{
	struct want *w = calloc(1, sizeof(*w));
	uint32_t n = s->selector.n + (sub ? sub->labels.n : 0);
	if (!w || !(w->labels.v = calloc(n + 1, sizeof(*w->labels.v))) || !(w->ns = strdup(s->ns)))
		abort();
	for (uint32_t i = 0; i < n; i++) {
		const struct kv *kv = i < s->selector.n ? &s->selector.v[i] : &sub->labels.v[i - s->selector.n];
		w->labels.v[i].key = strdup(kv->key);
		w->labels.v[i].val = strdup(kv->val);
		if (!w->labels.v[i].key || !w->labels.v[i].val)
			abort();
	}
	w->labels.n = n;
	ptrvec_push(&d->wants, w);
}

static struct vs_deps *deps_new(const char *key)
{
	struct vs_deps *d = calloc(1, sizeof(*d));
	if (!d || !(d->key = strdup(key)))
		abort();
	d->refs = 1;
	return d;
}

void cc_deps_put(struct vs_deps *d)
{
	if (!d || --d->refs)
		return;
	for (size_t i = 0; i < d->svcs.n; i++)
		free(d->svcs.v[i]);
	for (size_t i = 0; i < d->gws.n; i++)
		free(d->gws.v[i]);
	for (size_t i = 0; i < d->wants.n; i++) {
		struct want *w = d->wants.v[i];
		for (uint32_t l = 0; l < w->labels.n; l++) {
			free((char *)w->labels.v[l].key);
			free((char *)w->labels.v[l].val);
		}
		free(w->labels.v);
		free(w->ns);
		free(w);
	}
	ptrvec_free(&d->svcs);
	ptrvec_free(&d->gws);
	ptrvec_free(&d->wants);
	free(d->key);
	free(d);
}

/* The resolved destinations of route r, which follow those of the routes before it. */
static const struct rdest *route_dests(const struct vs_build *b, const struct route *r)
{
	const struct rdest *rd = b->resolved[r->tcp];
	for (const struct route *q = b->lists[r->tcp]; q < r; q++)
		rd += q->n_dests;
	return rd;
}

/* A plan entry's destinations from route r, reached on port sp (a Service's, or a Gateway server's). */
static bool fill_destinations(struct cctx *c, struct index *ix, struct plan_service *ps, const struct route *r,
			      const struct rdest *rd, const struct svc_port *sp, const char *entry)
{
	uint64_t sum = 0;
	ps->destinations = arena_alloc(c->keep, r->n_dests * sizeof(*ps->destinations));
	ps->n_destinations = r->n_dests;
	for (uint32_t j = 0; j < r->n_dests; j++)
		sum += rd[j].weight;
	bool ok = true;
	for (uint32_t j = 0; j < r->n_dests; j++) {
		struct plan_destination *pd = &ps->destinations[j];
		struct rdest one = rd[j];
		one.port = dest_port(&rd[j], sp);
		pd->host = rd[j].svc->key;
		pd->subset = r->dests[j].subset ? r->dests[j].subset : "";
		pd->weight = rd[j].weight;
		pd->percent = plan_share(rd[j].weight, sum, r->n_dests);
		const struct dr *dr = strmap_get(&ix->dr_by_service, pd->host);
		if (dr && sp->proto == IPPROTO_TCP)
			pd->tcp = dr->tcp;  /* host-wide, as in Istio; a UDP port has no use for it */
		if (one.port->proto != sp->proto) {
			cc_err_at(c, &r->dests[j].at, "destination %s port %u is %s but %s port %u is %s", pd->host,
				  one.port->port, one.port->proto == IPPROTO_UDP ? "UDP" : "TCP", entry, sp->port,
				  sp->proto == IPPROTO_UDP ? "UDP" : "TCP");
			ok = false;
			continue;
		}
		ok = cc_collect_endpoints(c, ix, ps, &one, &r->dests[j], pd) && ok;
	}
	return ok;
}

static struct gateway *find_gateway(struct cctx *c, const char *ref, const char *ns)
{
	const char *slash = strchr(ref, '/');
	for (size_t i = 0; i < c->gateways.n; i++) {
		struct gateway *g = c->gateways.v[i];
		if (slash ? !strcmp(g->key, ref) : !strcmp(g->name, ref) && !strcmp(g->ns, ns))
			return g;
	}
	return NULL;
}

/* A plan entry while the plan is built, with where its addresses are written, for errors. */
struct entry {
	struct plan_service ps;      /* first: the entries are collected as plan services */
	const struct mark *addr_at;  /* of ps.vips (a Service's) or ps.gateway_addrs (a Gateway's) */
	const char *kind, *key;      /* "Service", "web.default"; "Gateway", "default/ingress" */
};

/* One address, port and protocol is one data plane key: two entries cannot share one. */
static void check_entry_keys(struct cctx *c, const struct ptrvec *out)
{
	struct strmap seen = { 0 };
	char ip[INET6_ADDRSTRLEN];
	for (size_t i = 0; i < out->n; i++) {
		struct entry *e = out->v[i];
		const struct plan_service *ps = &e->ps;
		bool gw = ps->gateway != NULL;
		size_t n = gw ? ps->n_gateway_addrs : ps->n_vips;
		uint16_t port = gw ? ps->gateway_port : ps->port;
		for (size_t a = 0; a < n; a++) {
			const struct plan_addr *addr = gw ? &ps->gateway_addrs[a] : &ps->vips[a];
			inet_ntop(addr->family, addr->addr, ip, sizeof(ip));
			char *key = arena_printf(c->keep, "%s %u %u", ip, port, ps->protocol);
			const struct entry *first = strmap_get(&seen, key);
			if (!first) {
				strmap_put(&seen, key, e);
				continue;
			}
			/* the first's address is at the same place in its list: find it for its mark */
			bool first_gw = first->ps.gateway != NULL;
			size_t fa = 0, fn = first_gw ? first->ps.n_gateway_addrs : first->ps.n_vips;
			while (fa + 1 < fn &&
			       memcmp(first_gw ? &first->ps.gateway_addrs[fa] : &first->ps.vips[fa], addr, sizeof(*addr)))
				fa++;
			cc_err_at(c, &e->addr_at[a],
				  "%s %s: %s port %u/%s is already served by %s %s (%s:%u): one address, port and protocol "
				  "takes one route",
				  e->kind, e->key, ip, port, ps->protocol == IPPROTO_UDP ? "UDP" : "TCP", first->kind, first->key,
				  first->addr_at[fa].file, first->addr_at[fa].line);
		}
	}
	strmap_free(&seen);
}

/* A new entry of kind "Service" or "Gateway"; addr_at says where its addresses are written. */
static struct plan_service *new_entry(struct cctx *c, const char *kind, const char *key, const struct mark *addr_at)
{
	struct entry *e = arena_alloc(c->keep, sizeof(*e));
	e->addr_at = addr_at;
	e->kind = kind;
	e->key = key;
	return &e->ps;
}

/* Resolves route r's destinations into rd, one each, with their weights. Returns false when the
 * route cannot make entries (the reason is reported). */
static bool resolve_route(struct cctx *c, struct index *ix, const struct vs *v, const struct route *r,
			  struct rdest *rd)
{
	uint64_t sum = 0;
	bool ok = true;
	for (uint32_t j = 0; j < r->n_dests; j++) {
		const struct dest *d = &r->dests[j];
		ok = cc_resolve_dest(c, ix, v, d, &rd[j]) && ok;
		if (d->weight == -2)
			ok = false;
		sum += d->weight > 0 ? (uint64_t)d->weight : 0;
		for (uint32_t q = 0; q < j && rd[j].ok; q++) {
			const struct rdest *a = &rd[q];
			if (a->ok && a->svc == rd[j].svc && a->subset == rd[j].subset && a->port == rd[j].port) {
				cc_err_at(c, &d->at,
					  "destination %s subset %s appears twice in this route (first at line %u): "
					  "merge their weights",
					  rd[j].svc->key, d->subset ? d->subset : "(none)", r->dests[q].at.line);
				ok = false;
			}
		}
		if (rd[j].ok && rd[j].port->proto == 0) {
			cc_err_at(c, &d->at, "Service %s port %u is SCTP: sluice splits TCP and UDP only",
				  rd[j].svc->key, rd[j].port->port);
			ok = false;
		}
		rd[j].weight = plan_weight_held(d->weight > 0 ? (uint32_t)d->weight : 0, r->n_dests);
	}
	char why[160];
	if (ok && plan_weights_error(sum, r->n_dests, why, sizeof(why))) {
		cc_err_at(c, &r->at, "%s", why);
		ok = false;
	}
	return ok;
}

/* Destinations resolve once per VirtualService: their hosts are relative to its namespace. Returns
 * whether every route resolved. */
static bool resolve_routes(struct cctx *c, struct index *ix, struct vs_build *b)
{
	bool valid = true;
	for (int l = 0; l < 2; l++) {
		size_t total = 0;
		for (uint32_t i = 0; i < b->counts[l]; i++)
			total += b->lists[l][i].n_dests;
		b->resolved[l] = arena_alloc(c->keep, (total + 1) * sizeof(struct rdest));
		struct rdest *rd = b->resolved[l];
		for (uint32_t i = 0; i < b->counts[l]; i++) {
			const struct route *r = &b->lists[l][i];
			valid = resolve_route(c, ix, b->v, r, rd) && valid;
			for (uint32_t j = 0; b->deps && j < r->n_dests; j++) {
				if (!rd[j].svc)
					continue;
				deps_add_key(&b->deps->svcs, rd[j].svc->key);
				deps_add_want(b->deps, rd[j].svc, rd[j].subset);
			}
			rd += r->n_dests;
		}
	}
	return valid;
}

/* Ingress: each server of each Gateway the VirtualService binds becomes a (gateway address, port)
 * entry with the route that serves that port. Returns whether any route was used. */
static bool gateway_entries(struct cctx *c, struct index *ix, struct vs_build *b, struct ptrvec *out)
{
	struct vs *v = b->v;
	bool used = false;
	for (uint32_t g = 0; g < v->n_gateways; g++) {
		struct gateway *gw = find_gateway(c, v->gateways[g], v->ns);
		if (gw && b->deps)
			deps_add_key(&b->deps->gws, gw->key);
		if (!gw) {
			cc_err_at(c, &v->gateways_at[g], "gateway %s is not defined in the input: add its Gateway, or "
				  "remove it from spec.gateways", cc_quote(c, v->gateways[g]));
			continue;
		}
		for (uint32_t i = 0; i < gw->n_servers; i++) {
			struct gw_server *srv = &gw->servers[i];
			struct svc_port sp = { .name = srv->http ? "http" : "tcp", .port = srv->port,
					       .proto = IPPROTO_TCP, .at = srv->at };
			struct route *r = pick_route(v, &sp);
			if (!r)
				continue;
			r->used = used = true;
			if (srv->routed_by) {
				cc_err_at(c, &v->gateways_at[g],
					  "Gateway %s port %u is already routed by VirtualService %s/%s (%s:%u): a Gateway port "
					  "takes one VirtualService, since choosing by Host needs a proxy",
					  gw->key, srv->port, srv->routed_by->ns, srv->routed_by->name, srv->routed_by->at.file,
					  srv->routed_by->at.line);
				continue;
			}
			srv->routed_by = v;
			if (!b->valid)
				continue;
			if (!gw->n_addrs) {
				if (!gw->no_address_reported)
					cc_err_at(c, &gw->at, "Gateway %s has no address: give sluiced --gateway-address, or "
						  "spec.addresses", gw->key);
				gw->no_address_reported = true;
				continue;
			}
			if (out->n >= PLAN_MAX_SERVICES)
				continue; /* reported with the mesh entries */
			struct plan_service *ps = new_entry(c, "Gateway", gw->key, gw->addr_at);
			ps->name = gw->name;
			ps->namespace = gw->ns;
			ps->port = srv->port;
			ps->protocol = IPPROTO_TCP;
			ps->gateway = gw->key;
			ps->gateway_port = srv->port;
			ps->route = v->key;
			memcpy(ps->gateway_addrs, gw->addrs, sizeof(gw->addrs));
			ps->n_gateway_addrs = gw->n_addrs;
			const struct rdest *rd = route_dests(b, r);
			const struct dr *dr = r->n_dests ? strmap_get(&ix->dr_by_service, rd[0].svc->key) : NULL;
			ps->lb = dr ? dr->lb : PLAN_LB_ROUND_ROBIN;
			char entry[320];
			snprintf(entry, sizeof(entry), "Gateway %s", gw->key);
			if (fill_destinations(c, ix, ps, r, rd, &sp, entry))
				ptrvec_push(out, ps);
		}
	}
	return used;
}

/* Bound to Gateways only, a VirtualService serves whatever reaches their ports: no host to pick. */
static void check_gateway_hosts(struct cctx *c, const struct vs *v)
{
	for (uint32_t h = 0; !v->mesh && h < v->n_hosts; h++)
		if (strcmp(v->hosts[h], "*"))
			cc_err_at(c, &v->hosts_at[h],
				  "host %s: at a Gateway, choosing a VirtualService by Host needs a proxy, and sluice sees "
				  "connections; use \"*\" (one VirtualService per Gateway port)",
				  cc_quote(c, v->hosts[h]));
}

/* The Service that host h of v names, now routed by v; NULL (reported) when v cannot route it. */
static struct service *routed_service(struct cctx *c, struct index *ix, struct vs *v, uint32_t h)
{
	const char *host = v->hosts[h];
	struct service *s = cc_resolve_host(c, ix, host, v->ns);
	if (!s) {
		cc_host_error(c, ix, &v->hosts_at[h], host, v->ns);
		return NULL;
	}
	if (s->routed_by == v) {
		cc_err_at(c, &v->hosts_at[h], "host %s is listed twice in spec.hosts (as %s and %s)", s->key,
			  cc_clip(c, s->routed_at_host), cc_clip(c, v->hosts[h]));
		return NULL;
	}
	if (s->routed_by) {
		cc_err_at(c, &v->hosts_at[h],
			  "host %s is already routed by VirtualService %s/%s (%s:%u): one VirtualService per host, "
			  "merge their routes",
			  s->key, s->routed_by->ns, s->routed_by->name, s->routed_by->at.file, s->routed_by->at.line);
		return NULL;
	}
	s->routed_by = v;
	s->routed_at_host = host;
	if (s->unsupported) {
		cc_err_at(c, &s->unsupported_at, "Service %s: %s", s->key, s->unsupported);
		return NULL;
	}
	if (s->external_name || s->headless || !s->has_cluster_ip || !s->n_vips) {
		cc_err_at(c, &v->hosts_at[h],
			  "Service %s has no cluster IP (%s): sluice rewrites connections to a VIP; use a ClusterIP "
			  "Service as `kubectl get svc -o yaml` prints it",
			  s->key,
			  s->external_name ? "type ExternalName" : s->headless ? "headless" : "spec.clusterIP unset");
		return NULL;
	}
	if (!s->has_selector) {
		cc_err_at(c, &s->at, "Service %s has no selector: sluice finds endpoints through the selector's pods",
			  s->key);
		return NULL;
	}
	return s;
}

/* Mesh: each port of Service s that a route serves becomes an entry at the Service's VIPs. host_at
 * is where the VirtualService names s; *over_limit says the limit of entries is reported. */
static void service_entries(struct cctx *c, struct index *ix, struct vs_build *b, const struct service *s,
			    const struct mark *host_at, struct ptrvec *out, bool *over_limit)
{
	for (uint32_t pi = 0; pi < s->n_ports; pi++) {
		const struct svc_port *sp = &s->ports[pi];
		struct route *r = pick_route(b->v, sp);
		if (!r)
			continue;
		r->used = true;
		if (!b->valid)
			continue;
		if (sp->proto == 0) {
			cc_err_at(c, &sp->at, "Service %s port %u is SCTP: sluice splits TCP and UDP only", s->key,
				  sp->port);
			continue;
		}
		if (out->n >= PLAN_MAX_SERVICES) {
			if (!*over_limit)
				cc_err_at(c, host_at, "more than %d service ports are routed: the limit of sluice",
					  PLAN_MAX_SERVICES);
			*over_limit = true;
			break;
		}
		struct plan_service *ps = new_entry(c, "Service", s->key, s->vip_at);
		ps->name = s->name;
		ps->namespace = s->ns;
		memcpy(ps->vips, s->vips, sizeof(ps->vips));
		ps->n_vips = s->n_vips;
		ps->port = sp->port;
		ps->protocol = sp->proto;
		ps->route = b->v->key;
		const struct dr *dr = strmap_get(&ix->dr_by_service, s->key);
		ps->lb = dr ? dr->lb : PLAN_LB_ROUND_ROBIN;
		if (fill_destinations(c, ix, ps, r, route_dests(b, r), sp, s->key))
			ptrvec_push(out, ps);
	}
}

/* A route that no port reaches is a mistake, unless an error already said why it cannot be placed. */
static void report_unused_routes(struct cctx *c, const struct vs_build *b, bool gw_used)
{
	if (!b->valid || !(b->routed.n || gw_used) || b->v->read_errors)
		return;
	for (int l = 0; l < 2; l++) {
		for (uint32_t i = 0; i < b->counts[l]; i++) {
			const struct route *r = &b->lists[l][i];
			if (r->used || r->port_missing)
				continue;
			if (l == 0 && b->v->n_http)
				cc_err_at(c, &r->at,
					  "spec.http[%u] is never used: an earlier route takes every port it matches, or the "
					  "Service's ports are UDP or named tcp (use a tcp route)",
					  r->index);
			else
				cc_err_at(c, &r->at,
					  "spec.tcp[%u] is never used: an earlier route takes every port it matches, or http "
					  "routes serve the Service's TCP ports",
					  r->index);
		}
	}
}

/* The entries of one VirtualService: its Gateways' servers, then the ports of its hosts' Services. */
static void vs_entries(struct cctx *c, struct index *ix, struct vs *v, struct ptrvec *out, bool *over_limit,
		       struct vs_deps *deps)
{
	struct vs_build b = { .v = v, .lists = { v->http, v->tcp }, .counts = { v->n_http, v->n_tcp }, .deps = deps };
	b.valid = resolve_routes(c, ix, &b);
	bool gw_used = gateway_entries(c, ix, &b, out);
	check_gateway_hosts(c, v);
	for (uint32_t h = 0; v->mesh && h < v->n_hosts; h++) {
		char key[512];
		if (deps && cc_host_key(c, v->hosts[h], v->ns, key, sizeof(key)))
			deps_add_key(&deps->svcs, key);   /* even when refused: a change to it may cure it */
		struct service *s = routed_service(c, ix, v, h);
		if (!s)
			continue;
		ptrvec_push(&b.routed, s);
		service_entries(c, ix, &b, s, &v->hosts_at[h], out, over_limit);
	}
	if (b.routed.n) {
		check_route_ports(c, &b.routed, v->http, v->n_http);
		check_route_ports(c, &b.routed, v->tcp, v->n_tcp);
	}
	report_unused_routes(c, &b, gw_used);
	ptrvec_free(&b.routed);
}

/* -v: a Service without a VirtualService stays kube-proxy's; say so rather than leave it unsaid. */
static void log_unrouted_services(const struct cctx *c)
{
	for (size_t i = 0; c->o->skipped_log && i < c->services.n; i++) {
		const struct service *s = c->services.v[i];
		if (!s->routed_by)
			fprintf(c->o->skipped_log, "%s:%u:%u: skipped Service %s: no VirtualService routes it, "
				"kube-proxy serves it\n", s->at.file, s->at.line, s->at.col, s->key);
	}
}

/* The plan holds the entries sorted by namespace, name, port and protocol, and the compile counts them. */
static void plan_from_entries(struct cctx *c, const struct ptrvec *out, struct plan *plan)
{
	plan->n_services = out->n;
	plan->services = arena_alloc(c->keep, (out->n ? out->n : 1) * sizeof(*plan->services));
	for (size_t i = 0; i < out->n; i++)
		plan->services[i] = *(struct plan_service *)out->v[i];
	if (plan->n_services > 1)
		qsort(plan->services, plan->n_services, sizeof(*plan->services), plan_service_cmp);
	for (size_t i = 0; i < plan->n_services; i++) {
		c->st->destinations += plan->services[i].n_destinations;
		for (size_t j = 0; j < plan->services[i].n_destinations; j++)
			c->st->endpoints += plan->services[i].destinations[j].n_endpoints;
	}
	c->st->services = plan->n_services;
}

/* A VirtualService not built again: its entries as the last plan holds them, with where their
 * addresses are written (the records of their Service or Gateway, which did not change). */
static bool kept_entries(struct cctx *c, struct index *ix, const struct ptrvec *last, struct ptrvec *out)
{
	for (size_t i = 0; last && i < last->n; i++) {
		const struct plan_service *ps = last->v[i];
		struct entry *e = arena_alloc(c->keep, sizeof(*e));
		e->ps = *ps;   /* the last plan outlives this one's copy (the follower copies it at once) */
		if (ps->gateway) {
			struct gateway *gw = find_gateway(c, ps->gateway, "");
			if (!gw)
				return false;
			e->kind = "Gateway";
			e->key = gw->key;
			e->addr_at = gw->addr_at;
		} else {
			char key[512];
			snprintf(key, sizeof(key), "%s.%s", ps->name, ps->namespace);
			struct service *s = strmap_get(&ix->services, key);
			if (!s)
				return false;
			e->kind = "Service";
			e->key = s->key;
			e->addr_at = s->vip_at;
		}
		ptrvec_push(out, &e->ps);
	}
	return true;
}

void cc_forget_routes(struct vs *v)
{
	for (uint32_t j = 0; j < v->n_http + v->n_tcp; j++) {
		struct route *r = j < v->n_http ? &v->http[j] : &v->tcp[j - v->n_http];
		r->used = false;
		r->port_missing = false;
	}
}

static int entry_ptr_cmp(const void *a, const void *b)
{
	return plan_service_cmp(*(const void *const *)a, *(const void *const *)b);
}

void cc_build_vs(struct cctx *c, struct index *ix, struct vs *v, struct ptrvec *out)
{
	cc_forget_routes(v);
	for (uint32_t h = 0; h < v->n_hosts; h++) {
		struct service *s = cc_resolve_host(c, ix, v->hosts[h], v->ns);
		if (s && s->routed_by == v)
			s->routed_by = NULL;
	}
	bool over_limit = false;
	vs_entries(c, ix, v, out, &over_limit, NULL);
	if (out->n > 1)
		qsort(out->v, out->n, sizeof(*out->v), entry_ptr_cmp);
}

void cc_build_plan(struct cctx *c, struct index *ix, struct build_scope *scope, struct plan *plan)
{
	struct ptrvec out = { 0 };
	bool over_limit = false;
	for (size_t i = 0; i < c->vss.n; i++) {
		struct vs *v = c->vss.v[i];
		if (scope && scope->build && !strmap_get(scope->build, v->key)) {
			if (!kept_entries(c, ix, strmap_get(scope->last_entries, v->key), &out)) {
				scope->failed = true;
				break;
			}
			continue;
		}
		struct vs_deps *deps = scope ? deps_new(v->key) : NULL;
		vs_entries(c, ix, v, &out, &over_limit, deps);
		if (deps)
			strmap_put(scope->deps, deps->key, deps);
	}
	if (scope && scope->failed) {
		ptrvec_free(&out);
		return;
	}
	if (!scope || !scope->build)
		log_unrouted_services(c);   /* -v: only a whole build knows which Services no route takes */
	check_entry_keys(c, &out);
	plan_from_entries(c, &out, plan);
	ptrvec_free(&out);
	c->st->vs_built = 0;
	c->st->vs_total = c->vss.n;
	for (size_t i = 0; i < c->vss.n; i++)
		c->st->vs_built += !scope || !scope->build || strmap_get(scope->build, ((struct vs *)c->vss.v[i])->key);
}
