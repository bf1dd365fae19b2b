// SPDX-License-Identifier: MIT
/* Istio Gateways into gateway records (YAML -> records): addresses and servers. build_plan.c makes
 * each server a VirtualService binds a plan entry, served by TC mode. */
#include "compile/kinds.h"

#include <string.h>

#include "common/names.h"

static const char *const gateway_spec_fields[] = { "addresses", "selector", "servers", NULL };
static const char *const gateway_server_fields[] = { "bind", "defaultEndpoint", "hosts", "name", "port", "tls", NULL };
static const char *const gateway_port_fields[] = { "name", "number", "protocol", "targetPort", NULL };

/* A server's hosts: "*" or NAMESPACE/"*" only, since choosing by Host or SNI needs a proxy. */
static bool read_server_hosts(struct cctx *c, const struct ynode *v)
{
	bool good = true;
	if (!v->n) {
		cc_err(c, v, "%s is empty: use \"*\"", c->path.s);
		good = false;
	}
	for (uint32_t j = 0; j < v->n; j++) {
		size_t old = cc_push_index(c, j);
		const char *h = cc_get_str(c, v->items[j]);
		const char *slash = h ? strchr(h, '/') : NULL;
		const char *why = NULL;
		/* NAMESPACE/HOST: the namespace is "*", "." or a DNS-1123 label, as Istio has it */
		if (slash && (slash - h != 1 || (h[0] != '*' && h[0] != '.')))
			why = name_istio_label_error(h, (size_t)(slash - h));
		if (why) {
			cc_err(c, v->items[j], "%s: namespace %s of host %s %s", c->path.s,
			       cc_quote_len(c, h, (size_t)(slash - h)), cc_quote_node(c, v->items[j]), why);
			good = false;
		} else if (h && strcmp(slash ? slash + 1 : h, "*")) {
			cc_err(c, v->items[j],
			       "%s: host %s: choosing routes by Host or SNI needs a proxy, and sluice sees "
			       "connections; use \"*\" and one VirtualService per Gateway port",
			       c->path.s, cc_quote_node(c, v->items[j]));
			good = false;
		}
		cc_pop(c, old);
	}
	return good;
}

/* A server's port: its number, and a protocol sluice can serve without terminating anything. */
static bool read_server_port(struct cctx *c, const struct ynode *v, struct gw_server *srv)
{
	bool good = true;
	cc_check_fields(c, v, gateway_port_fields);
	const struct ynode *num = ymap_get(v, "number"), *proto = ymap_get(v, "protocol");
	size_t old = cc_push_key(c, "number");
	if (!num) {
		cc_err(c, v, "%s is required", c->path.s);
		good = false;
	} else if (!cc_get_port(c, num, &srv->port)) {
		good = false;
	}
	cc_pop(c, old);
	old = cc_push_key(c, "protocol");
	const char *p = proto ? cc_get_str(c, proto) : NULL;
	if (!proto) {
		cc_err(c, v, "%s is required: HTTP, HTTP2, GRPC or TCP", c->path.s);
		good = false;
	} else if (p && (!strcmp(p, "HTTP") || !strcmp(p, "HTTP2") || !strcmp(p, "GRPC"))) {
		srv->http = true;
	} else if (p && (!strcmp(p, "HTTPS") || !strcmp(p, "TLS"))) {
		cc_err(c, proto, "%s %s: TLS termination needs a proxy; use TCP to pass TLS through to the pods",
		       c->path.s, p);
		good = false;
	} else if (p && strcmp(p, "TCP")) {
		cc_err(c, proto, "%s %s is not supported: use HTTP, HTTP2, GRPC or TCP", c->path.s, cc_clip(c, p));
		good = false;
	}
	cc_pop(c, old);
	const struct ynode *tp = ymap_get(v, "targetPort");
	if (tp) {
		cc_err(c, tp, "%s.targetPort is not supported: sluice translates to the destination's port", c->path.s);
		good = false;
	}
	return good;
}

static void read_gateway_server(struct cctx *c, const struct ynode *n, struct gw_server *srv, bool *ok)
{
	*ok = false;
	if (!cc_want(c, n, YN_MAP))
		return;
	cc_check_fields(c, n, gateway_server_fields);
	srv->at = cc_node_mark(c, n);
	bool good = true;
	for (uint32_t i = 0; i < n->n; i++) {
		const struct ynode *k = ymap_key(n, i), *v = ymap_val(n, i);
		if (k->type != YN_SCALAR)
			continue;
		size_t old = cc_push_key(c, k->str);
		if (!strcmp(k->str, "tls")) {
			cc_err(c, k,
			       "%s: TLS termination needs a proxy: sluice forwards connections, it does not "
			       "decrypt them; terminate TLS in the application, or use protocol TCP to pass TLS "
			       "through",
			       c->path.s);
			good = false;
		} else if (!strcmp(k->str, "bind") || !strcmp(k->str, "defaultEndpoint")) {
			cc_err(c, k, "%s is not supported: sluice serves a Gateway on the address it is given", c->path.s);
			good = false;
		} else if (!strcmp(k->str, "name")) {
			cc_get_str(c, v);
		} else if (!strcmp(k->str, "hosts") && cc_want(c, v, YN_SEQ)) {
			good = read_server_hosts(c, v) && good;
		} else if (!strcmp(k->str, "port") && cc_want(c, v, YN_MAP)) {
			good = read_server_port(c, v, srv) && good;
		}
		cc_pop(c, old);
	}
	if (!ymap_get(n, "port")) {
		cc_err(c, n, "%s.port is required", c->path.s);
		good = false;
	}
	if (!ymap_get(n, "hosts")) {
		cc_err(c, n, "%s.hosts is required: use \"*\"", c->path.s);
		good = false;
	}
	*ok = good;
}

static bool gateway_has_addr(const struct gateway *g, const struct plan_addr *a)
{
	for (size_t i = 0; i < g->n_addrs; i++)
		if (!memcmp(&g->addrs[i], a, sizeof(*a)))
			return true;
	return false;
}

/* One entry of spec.addresses, an IP or Gateway API's {type: IPAddress, value: IP}, added to g. The
 * caller pops the path, "value" included. */
static bool read_gateway_address(struct cctx *c, const struct ynode *item, struct gateway *g)
{
	const struct ynode *a = item;
	if (a->type == YN_MAP) {
		const struct ynode *t = ymap_get(a, "type");
		if (t && (t->type != YN_SCALAR || strcmp(t->str, "IPAddress")))
			cc_err(c, t, "%s.type must be IPAddress", c->path.s);
		a = ymap_get(a, "value");
		if (!a) {
			cc_err(c, item, "%s.value is required", c->path.s);
			return false;
		}
		cc_push_key(c, "value");
	}
	const char *ip = cc_get_str(c, a);
	struct plan_addr pa;
	if (ip && !name_parse_addr(ip, &pa)) {
		cc_err(c, a, "%s must be an IP address, got %s", c->path.s, cc_quote_node(c, a));
		return false;
	} else if (ip && g->n_addrs == PLAN_MAX_GATEWAY_ADDRS) {
		cc_err(c, a, "%s: at most %d addresses", c->path.s, PLAN_MAX_GATEWAY_ADDRS);
		return false;
	} else if (ip && !cc_check_vip(c, a, &pa)) {
		return false;
	} else if (ip && gateway_has_addr(g, &pa)) {
		cc_err(c, a, "%s %s is listed twice", c->path.s, cc_quote_node(c, a));
		return false;
	} else if (ip) {
		g->addr_at[g->n_addrs] = cc_node_mark(c, a);
		g->addr_field[g->n_addrs] = arena_strdup(c->keep, c->path.s);
		g->addrs[g->n_addrs++] = pa;
	}
	return true;
}

static bool read_gateway_addresses(struct cctx *c, const struct ynode *addrs, struct gateway *g)
{
	bool ok = true;
	size_t old = cc_push_key(c, "addresses");
	if (cc_want(c, addrs, YN_SEQ)) {
		for (uint32_t i = 0; i < addrs->n; i++) {
			size_t o2 = cc_push_index(c, i);
			ok = read_gateway_address(c, addrs->items[i], g) && ok;
			cc_pop(c, o2);
		}
	}
	cc_pop(c, old);
	return ok;
}

/* spec.servers: each port served once. */
static bool read_gateway_servers(struct cctx *c, const struct ynode *spec, const struct ynode *servers,
				 struct gateway *g)
{
	bool ok = true;
	size_t old = cc_push_key(c, "servers");
	if (!servers || ynode_is_null(servers)) {
		cc_err(c, spec, "spec.servers is required: list the ports the Gateway serves");
		ok = false;
	} else if (cc_want(c, servers, YN_SEQ)) {
		g->servers = arena_alloc(c->keep, (servers->n ? servers->n : 1) * sizeof(*g->servers));
		for (uint32_t i = 0; i < servers->n; i++) {
			size_t o2 = cc_push_index(c, i);
			bool good;
			struct gw_server *srv = &g->servers[g->n_servers];
			read_gateway_server(c, servers->items[i], srv, &good);
			for (uint32_t q = 0; good && q < g->n_servers; q++)
				if (g->servers[q].port == srv->port) {
					cc_err_at(c, &srv->at, "%s: port %u is served twice (first at line %u)", c->path.s,
						  srv->port, g->servers[q].at.line);
					good = false;
				}
			if (good)
				g->n_servers++;
			else
				ok = false;
			cc_pop(c, o2);
		}
	}
	cc_pop(c, old);
	return ok;
}

void cc_read_gateway(struct cctx *c, const struct ynode *obj)
{
	struct meta m;
	if (!cc_open_object(c, obj, "Gateway", &m))
		return;
	struct gateway *g = arena_alloc(c->keep, sizeof(*g));
	g->name = m.name;
	g->ns = m.ns;
	g->key = cc_join(c->keep, '/', m.ns, m.name, NULL);
	g->at = cc_node_mark(c, obj);
	size_t old;
	const struct ynode *spec = cc_open_spec(c, obj, "Gateway", g->key, gateway_spec_fields, &old);
	if (!spec)
		return;
	bool ok = true;
	const struct ynode *sel = ymap_get(spec, "selector"), *addrs = ymap_get(spec, "addresses");
	if (sel) {
		/* the selector names Istio's gateway pods; sluice's TC interfaces take their place */
		size_t o2 = cc_push_key(c, "selector");
		struct labels ignored = { 0 };
		cc_get_labels(c, sel, &ignored);
		cc_pop(c, o2);
	}
	if (addrs && !ynode_is_null(addrs))
		ok = read_gateway_addresses(c, addrs, g) && ok;
	ok = read_gateway_servers(c, spec, ymap_get(spec, "servers"), g) && ok;
	cc_pop(c, old);
	if (ok && !g->n_addrs && c->gateway_address.family) {
		/* its errors point at the Gateway, and name the option */
		g->addr_at[g->n_addrs] = g->at;
		g->addr_field[g->n_addrs] = "--gateway-address";
		g->addrs[g->n_addrs++] = c->gateway_address;
	}
	if (ok)
		ptrvec_push(&c->gateways, g);
}
