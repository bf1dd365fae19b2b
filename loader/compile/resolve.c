// SPDX-License-Identifier: MIT
/* Records resolved against each other (records -> plan): the index, hosts to Services, a route's
 * destinations to a Service, subset and port, and the ready pods each one reaches. */
#include "compile/resolve.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Istio host forms: name, name.ns, name.ns.svc, name.ns.svc.DOMAIN. */
bool cc_host_key(const struct cctx *c, const char *host, const char *ns, char *buf, size_t len)
{
	const char *dot = strchr(host, '.');
	if (!dot)
		return (size_t)snprintf(buf, len, "%s.%s", host, ns) < len;
	const char *ns_start = dot + 1, *ns_end = strchr(ns_start, '.');
	if (!ns_end)
		return (size_t)snprintf(buf, len, "%s", host) < len;
	const char *rest = ns_end + 1;
	if (strcmp(rest, "svc")) {
		size_t dl = strlen(c->domain);
		if (strncmp(rest, "svc.", 4) || strcmp(rest + 4, c->domain) || !dl)
			return false;
	}
	return (size_t)snprintf(buf, len, "%.*s", (int)(ns_end - host), host) < len;
}

struct service *cc_resolve_host(struct cctx *c, struct index *ix, const char *host, const char *ns)
{
	char buf[512];
	return cc_host_key(c, host, ns, buf, sizeof(buf)) ? strmap_get(&ix->services, buf) : NULL;
}

void cc_host_error(struct cctx *c, struct index *ix, const struct mark *at, const char *host, const char *ns)
{
	if (strchr(host, '*')) {
		cc_err_at(c, at, "host %s: wildcard hosts are not supported: name one Service", cc_quote(c, host));
		return;
	}
	/* name.ns.svc.DOMAIN under another domain: say which flag makes it resolve */
	const char *dot = strchr(host, '.'), *rest = dot ? strchr(dot + 1, '.') : NULL;
	if (rest && !strncmp(rest, ".svc.", 5) && strcmp(rest + 5, c->domain)) {
		cc_err_at(c, at, "host %s is not in the cluster domain %s: set --cluster-domain %s", cc_quote(c, host),
			  cc_clip(c, c->domain), cc_clip(c, rest + 5));
		return;
	}
	char known[256] = "";
	size_t len = 0, shown = 0;
	for (size_t i = 0; i < c->services.n && shown < 5; i++) {
		const struct service *s = c->services.v[i];
		if (strcmp(s->ns, ns))
			continue;
		int n = snprintf(known + len, sizeof(known) - len, "%s%s", shown ? ", " : "", s->name);
		if (n < 0 || (size_t)n >= sizeof(known) - len)
			break;
		len += (size_t)n;
		shown++;
	}
	(void)ix;
	cc_err_at(c, at, "host %s matches no Service in the input (namespace %s has: %s)", cc_quote(c, host), ns,
		  shown ? known : "none");
}

/* Pods by address: binary keys, since 80,000 of them are indexed at every build. */
uint32_t cc_addr_hash(const struct plan_addr *a)
{
	uint64_t x, y;
	memcpy(&x, a->addr, 8);
	memcpy(&y, a->addr + 8, 8);
	x = (x ^ (y * 0x9e3779b97f4a7c15ULL) ^ a->family) * 0xff51afd7ed558ccdULL;
	return (uint32_t)(x >> 32);
}

static struct pod **pod_slot(const struct pod_ips *m, const struct plan_addr *a)
{
	size_t mask = m->cap - 1;
	for (size_t i = cc_addr_hash(a) & mask;; i = (i + 1) & mask)
		if (!m->slots[i] || (m->addrs[i].family == a->family && !memcmp(m->addrs[i].addr, a->addr, 16)))
			return &m->slots[i];
}

static struct pod *pod_at(const struct index *ix, const struct plan_addr *a)
{
	return ix->pod_ips.cap ? *pod_slot(&ix->pod_ips, a) : NULL;
}

static void check_vip_not_pod(struct cctx *c, struct index *ix, const struct plan_addr *vip, const struct mark *at,
			      const char *field)
{
	char ip[INET6_ADDRSTRLEN];
	const struct pod *p = pod_at(ix, vip);
	if (p && inet_ntop(vip->family, vip->addr, ip, sizeof(ip)))
		cc_err_at(c, at, "%s %s is also the IP of pod %s/%s (%s:%u): as a VIP it would take over every connection "
			  "made to that pod", field, cc_quote(c, ip), p->ns, p->name, p->at.file, p->at.line);
}

static void index_services(struct cctx *c, struct index *ix)
{
	char ipbuf[INET6_ADDRSTRLEN];
	struct strmap vips = { 0 };
	strmap_reserve(&ix->services, c->services.n);
	strmap_reserve(&vips, c->services.n);
	for (size_t i = 0; i < c->services.n; i++) {
		struct service *s = c->services.v[i];
		strmap_put(&ix->services, s->key, s);
		/* one VIP, two Services: which one a connection reaches would depend on write order */
		for (size_t a = 0; a < s->n_vips; a++) {
			inet_ntop(s->vips[a].family, s->vips[a].addr, ipbuf, sizeof(ipbuf));
			const struct service *other = strmap_get(&vips, ipbuf);
			if (other)
				cc_err_at(c, &s->at, "Service %s has cluster IP %s, already used by Service %s (%s:%u)", s->key,
					  ipbuf, other->key, other->at.file, other->at.line);
			else
				strmap_put(&vips, arena_strdup(c->keep, ipbuf), s);
		}
	}
	strmap_free(&vips);
}

struct ptrvec *cc_pods_with_label(struct index *ix, const char *ns, const struct kv *label, bool add)
{
	char key[768];
	size_t ln = strlen(ns), lk = strlen(label->key), lv = strlen(label->val);
	if (ln + lk + lv + 3 > sizeof(key))   /* names as Kubernetes takes them are far shorter */
		abort();
	memcpy(key, ns, ln);   /* no printf: every label of every pod comes here */
	key[ln] = '\x01';
	memcpy(key + ln + 1, label->key, lk);
	key[ln + 1 + lk] = '\x01';
	memcpy(key + ln + 2 + lk, label->val, lv + 1);
	struct ptrvec *pv = strmap_get(&ix->pods_by_label, key);
	if (!pv && add) {
		if (!(pv = calloc(1, sizeof(*pv))))
			abort();
		strmap_put(&ix->pods_by_label, arena_strdup(&ix->keys, key), pv);
		ptrvec_push(&ix->vecs, pv);
	}
	return pv;
}

/* Pods by each of their labels (in the namespaces of label_ns only, when given), and by IP: a
 * finished pod's IP may be taken by a running one. */
static void index_pods(struct cctx *c, struct index *ix, const struct strmap *label_ns)
{
	char ipbuf[INET6_ADDRSTRLEN];
	struct pod_ips *m = &ix->pod_ips;
	for (m->cap = 64; m->cap < c->pods.n * 4; m->cap *= 2)   /* at most 2 addresses a pod, half full */
		;
	m->slots = calloc(m->cap, sizeof(*m->slots));
	m->addrs = calloc(m->cap, sizeof(*m->addrs));
	if (!m->slots || !m->addrs)
		abort();
	const char *ns_seen = NULL;   /* pods come namespace by namespace: one lookup for each run */
	bool ns_wanted = true;
	for (size_t i = 0; i < c->pods.n; i++) {
		struct pod *p = c->pods.v[i];
		if (label_ns && (!ns_seen || strcmp(ns_seen, p->ns))) {
			ns_seen = p->ns;
			ns_wanted = strmap_get(label_ns, p->ns) != NULL;
		}
		uint32_t n_labels = ns_wanted ? p->labels.n : 0;
		for (uint32_t l = 0; l < n_labels; l++)
			ptrvec_push(cc_pods_with_label(ix, p->ns, &p->labels.v[l], true), p);
		for (size_t a = 0; a < p->n_ips; a++) {
			struct pod **slot = pod_slot(m, &p->ips[a]), *other = *slot;
			/* pods on the host network share their node's IP (kube-proxy, CNI agents, sluiced) */
			if (other && !p->terminated && !other->terminated && !(p->host_network && other->host_network)) {
				inet_ntop(p->ips[a].family, p->ips[a].addr, ipbuf, sizeof(ipbuf));
				cc_err_at(c, &p->at, "pod %s/%s has IP %s, already used by pod %s/%s (%s:%u)", p->ns, p->name,
					  ipbuf, other->ns, other->name, other->at.file, other->at.line);
				continue;
			}
			if (!other || other->terminated) {
				*slot = p;
				m->addrs[slot - m->slots] = p->ips[a];
			}
		}
	}
}

/* A VIP that is also a pod's IP (ready or not) would take over the connections made to that pod. */
static void check_vips_not_pods(struct cctx *c, struct index *ix)
{
	for (size_t i = 0; i < c->services.n; i++) {
		const struct service *s = c->services.v[i];
		for (size_t a = 0; a < s->n_vips; a++)
			check_vip_not_pod(c, ix, &s->vips[a], &s->vip_at[a], s->vip_field[a]);
	}
	for (size_t i = 0; i < c->gateways.n; i++) {
		const struct gateway *g = c->gateways.v[i];
		for (size_t a = 0; a < g->n_addrs; a++)
			check_vip_not_pod(c, ix, &g->addrs[a], &g->addr_at[a], g->addr_field[a]);
	}
}

/* One DestinationRule per Service: two would each define subsets the other does not know. */
static void index_destination_rules(struct cctx *c, struct index *ix)
{
	for (size_t i = 0; i < c->drs.n; i++) {
		struct dr *d = c->drs.v[i];
		struct service *s = cc_resolve_host(c, ix, d->host, d->ns);
		if (!s) {
			cc_host_error(c, ix, &d->host_at, d->host, d->ns);
			continue;
		}
		struct dr *first = strmap_get(&ix->dr_by_service, s->key);
		if (first) {
			cc_err_at(c, &d->host_at,
				  "DestinationRule %s/%s is the second one for host %s (first: %s/%s at %s:%u): merge their "
				  "subsets",
				  d->ns, d->name, s->key, first->ns, first->name, first->at.file, first->at.line);
			continue;
		}
		strmap_put(&ix->dr_by_service, s->key, d);
	}
}

void cc_index_services(struct cctx *c, struct index *ix)
{
	index_services(c, ix);
	index_destination_rules(c, ix);
}

void cc_index_pods(struct cctx *c, struct index *ix, const struct strmap *label_ns)
{
	index_pods(c, ix, label_ns);
	check_vips_not_pods(c, ix);
}

void cc_index_build(struct cctx *c, struct index *ix)
{
	cc_index_services(c, ix);
	cc_index_pods(c, ix, NULL);
}

void cc_index_free(struct index *ix)
{
	for (size_t i = 0; i < ix->vecs.n; i++) {
		ptrvec_free(ix->vecs.v[i]);
		free(ix->vecs.v[i]);
	}
	ptrvec_free(&ix->vecs);
	strmap_free(&ix->services);
	strmap_free(&ix->pods_by_label);
	strmap_free(&ix->dr_by_service);
	free(ix->pod_ips.slots);
	free(ix->pod_ips.addrs);
	arena_free(&ix->keys);
}

const char *cc_port_list(struct cctx *c, const struct service *s)
{
	char *out = arena_strdup(c->keep, "");
	for (uint32_t i = 0; i < s->n_ports; i++)
		out = arena_printf(c->keep, "%s%s%u", out, i ? ", " : "", s->ports[i].port);
	return s->n_ports ? out : "none";
}

static const char *subset_list(struct cctx *c, const struct dr *d)
{
	char *out = arena_strdup(c->keep, "");
	for (uint32_t i = 0; d && i < d->n_subsets; i++)
		out = arena_printf(c->keep, "%s%s%s", out, i ? ", " : "", d->subsets[i].name);
	return d && d->n_subsets ? out : "none";
}

bool cc_resolve_dest(struct cctx *c, struct index *ix, const struct vs *v, const struct dest *d, struct rdest *r)
{
	memset(r, 0, sizeof(*r));
	if (!d->host || d->bad_name)
		return false;   /* reported */
	r->svc = cc_resolve_host(c, ix, d->host, v->ns);
	if (!r->svc) {
		cc_host_error(c, ix, &d->host_at, d->host, v->ns);
		return false;
	}
	bool ok = true;
	if (d->subset) {
		const struct dr *dr = strmap_get(&ix->dr_by_service, r->svc->key);
		for (uint32_t i = 0; dr && i < dr->n_subsets; i++)
			if (!strcmp(dr->subsets[i].name, d->subset))
				r->subset = &dr->subsets[i];
		if (!r->subset) {
			if (dr)
				cc_err_at(c, &d->subset_at,
					  "subset %s is not defined by any DestinationRule for host %s (defined: %s)",
					  cc_quote(c, d->subset), cc_clip(c, d->host), subset_list(c, dr));
			else
				cc_err_at(c, &d->subset_at,
					  "subset %s is not defined by any DestinationRule for host %s (no "
					  "DestinationRule for that host)",
					  cc_quote(c, d->subset), cc_clip(c, d->host));
			ok = false;
		}
	}
	if (d->port) {
		for (uint32_t i = 0; i < r->svc->n_ports; i++)
			if (r->svc->ports[i].port == d->port)
				r->port = &r->svc->ports[i];
		if (!r->port) {
			cc_err_at(c, &d->port_at, "port %u is not a port of Service %s (ports: %s)", d->port, r->svc->key,
				  cc_port_list(c, r->svc));
			ok = false;
		}
	} else if (r->svc->n_ports == 1) {
		r->port = &r->svc->ports[0];
	} else if (r->svc->n_ports > 1) {
		cc_err_at(c, &d->at, "destination.port is required: Service %s has several ports (%s)", r->svc->key,
			  cc_port_list(c, r->svc));
		ok = false;
	} else {
		cc_err_at(c, &d->host_at, "Service %s has no ports", r->svc->key);
		ok = false;
	}
	r->ok = ok;
	return ok;
}

bool cc_want_matches(const struct want *w, const struct pod *p)
{
	return !strcmp(w->ns, p->ns) && cc_labels_match(&p->labels, &w->labels);
}

bool cc_labels_match(const struct labels *have, const struct labels *want)
{
	for (uint32_t i = 0; i < want->n; i++) {
		bool found = false;
		for (uint32_t j = 0; j < have->n && !found; j++)
			found = !strcmp(have->v[j].key, want->v[i].key) && !strcmp(have->v[j].val, want->v[i].val);
		if (!found)
			return false;
	}
	return true;
}

static int endpoint_cmp(const void *pa, const void *pb)
{
	const struct plan_endpoint *a = pa, *b = pb;
	if (a->addr.family != b->addr.family)
		return a->addr.family < b->addr.family ? -1 : 1;
	int r = memcmp(a->addr.addr, b->addr.addr, 16);
	if (r)
		return r;
	return (a->port > b->port) - (a->port < b->port);
}

/* The ready pods a destination reaches: Service selector, subset labels, then targetPort. */
bool cc_collect_endpoints(struct cctx *c, struct index *ix, const struct plan_service *ps, const struct rdest *r,
			  const struct dest *d, struct plan_destination *pd)
{
	const struct service *s = r->svc;
	struct labels want = { 0 };
	want.v = arena_alloc(c->keep, (s->selector.n + (r->subset ? r->subset->labels.n : 0) + 1) * sizeof(*want.v));
	for (uint32_t i = 0; i < s->selector.n; i++)
		want.v[want.n++] = s->selector.v[i];
	for (uint32_t i = 0; r->subset && i < r->subset->labels.n; i++)
		want.v[want.n++] = r->subset->labels.v[i];
	/* the rarest label narrows the candidates; every pod of them is then checked in full */
	struct ptrvec *best = NULL;
	for (uint32_t i = 0; i < want.n; i++) {
		struct ptrvec *pv = cc_pods_with_label(ix, s->ns, &want.v[i], false);
		if (!pv)
			return true;
		if (!best || pv->n < best->n)
			best = pv;
	}
	if (!best)
		return true;
	size_t cap = 0;
	for (size_t i = 0; i < best->n; i++) {
		const struct pod *p = best->v[i];
		/* publishNotReadyAddresses waives readiness only: a leaving or finished pod takes no connection */
		if (p->terminated || p->deleting || (!p->ready && !s->publish_not_ready) ||
		    !cc_labels_match(&p->labels, &want))
			continue;
		uint16_t port = r->port->target_num ? r->port->target_num : r->port->port;
		if (r->port->target_name) {
			port = 0;
			for (uint32_t q = 0; q < p->n_ports && !port; q++)
				if (p->ports[q].name && !strcmp(p->ports[q].name, r->port->target_name) &&
				    p->ports[q].proto == r->port->proto)
					port = p->ports[q].port;
			if (!port)
				continue; /* as Kubernetes: a pod without the named port is no endpoint */
		}
		for (size_t a = 0; a < p->n_ips; a++) {
			if (!plan_service_has_family(ps, p->ips[a].family))
				continue;
			if (pd->n_endpoints == cap) {
				cap = cap ? cap * 2 : 8;
				struct plan_endpoint *ne = arena_alloc(c->keep, cap * sizeof(*ne));
				if (pd->n_endpoints)
					memcpy(ne, pd->endpoints, pd->n_endpoints * sizeof(*ne));
				pd->endpoints = ne;
			}
			pd->endpoints[pd->n_endpoints++] =
				(struct plan_endpoint){ .addr = p->ips[a], .port = port, .pod = p->name };
		}
	}
	if (pd->n_endpoints > PLAN_MAX_ENDPOINTS) {
		cc_err_at(c, d->subset ? &d->subset_at : &d->host_at,
			  "subset \"%s\" of %s has %zu ready endpoints, more than the limit of %d: split the "
			  "Deployment into more subsets",
			  d->subset ? d->subset : "(all)", s->key, pd->n_endpoints, PLAN_MAX_ENDPOINTS);
		return false;
	}
	if (pd->n_endpoints > 1)
		qsort(pd->endpoints, pd->n_endpoints, sizeof(*pd->endpoints), endpoint_cmp);
	return true;
}
