// SPDX-License-Identifier: MIT
/* Kubernetes Services into service records (YAML -> records): selector, ports, cluster IPs, and
 * the fields sluice cannot honour once a VirtualService routes the Service. */
#include "compile/kinds.h"

#include <ctype.h>
#include <netinet/in.h>
#include <string.h>

#include "common/names.h"

static const char *const service_spec_fields[] = {
	"allocateLoadBalancerNodePorts", "clusterIP", "clusterIPs", "externalIPs", "externalName",
	"externalTrafficPolicy", "healthCheckNodePort", "internalTrafficPolicy", "ipFamilies", "ipFamilyPolicy",
	"loadBalancerClass", "loadBalancerIP", "loadBalancerSourceRanges", "ports", "publishNotReadyAddresses",
	"selector", "sessionAffinity", "sessionAffinityConfig", "trafficDistribution", "type", NULL
};
static const char *const service_port_fields[] = { "appProtocol", "name", "nodePort", "port", "protocol",
						   "targetPort", NULL };

/* Returns whether p is a port to route: a mapping with a port number (errors are reported). */
static bool read_service_port(struct cctx *c, const struct ynode *n, struct svc_port *p)
{
	if (!cc_want(c, n, YN_MAP))
		return false;
	cc_check_fields(c, n, service_port_fields);
	p->at = cc_node_mark(c, n);
	p->proto = IPPROTO_TCP;
	bool ok = true;
	for (uint32_t i = 0; i < n->n; i++) {
		const char *k = ymap_key(n, i)->str;
		const struct ynode *v = ymap_val(n, i);
		size_t old = cc_push_key(c, k);
		long long num;
		/* Kubernetes: a Service port's name is a DNS-1123 label, a container port's an IANA name */
		if (!strcmp(k, "name"))
			p->name = cc_get_name(c, v, "port name", name_dns1123_label_error);
		else if (!strcmp(k, "port"))
			ok = cc_get_port(c, v, &p->port) && ok;
		else if (!strcmp(k, "protocol"))
			p->proto = cc_get_protocol(c, v, &ok);
		else if (!strcmp(k, "appProtocol"))
			p->app_protocol = cc_get_str(c, v);
		else if (!strcmp(k, "nodePort"))
			cc_get_int(c, v, 0, 65535, &num); /* served by kube-proxy, not by the VIP path */
		else if (!strcmp(k, "targetPort")) {
			if (cc_is_integer(v))
				ok = cc_get_port(c, v, &p->target_num) && ok;
			else if (v->type == YN_SCALAR && !ynode_is_null(v) && !isdigit((unsigned char)v->str[0]))
				p->target_name = cc_get_name(c, v, "targetPort", name_port_name_error);
			else
				cc_err(c, v, "%s must be a port number or a container port name, got %s", c->path.s,
				       cc_clip_node(c, v));
		}
		cc_pop(c, old);
	}
	if (!p->port && ok && !ymap_get(n, "port"))
		cc_err(c, n, "%s.port is required", c->path.s);
	return p->port != 0;
}

/* spec.ports: the ports worth routing, each protocol and number once. */
static void read_service_ports(struct cctx *c, const struct ynode *v, struct service *s)
{
	s->ports = arena_alloc(c->keep, (v->n ? v->n : 1) * sizeof(*s->ports));
	for (uint32_t j = 0; j < v->n; j++) {
		size_t old = cc_push_index(c, j);
		struct svc_port *p = &s->ports[s->n_ports];
		if (read_service_port(c, v->items[j], p)) {
			for (uint32_t q = 0; q < s->n_ports; q++)
				if (s->ports[q].port == p->port && s->ports[q].proto == p->proto)
					cc_err_at(c, &p->at, "duplicate port %u in Service %s", p->port, s->key);
			s->n_ports++;
		} else {
			memset(p, 0, sizeof(*p));
		}
		cc_pop(c, old);
	}
}

/* spec.clusterIP: the VIP, "None" for a headless Service. clusterIPs, when given, overrides it. */
static void read_cluster_ip(struct cctx *c, const struct ynode *v, struct service *s)
{
	const char *ip = cc_get_str(c, v);
	if (ip && !strcmp(ip, "None"))
		s->headless = true;
	else if (ip && !s->n_vips) {
		if (!name_parse_addr(ip, &s->vips[0])) {
			cc_err(c, v, "%s must be an IP address or None, got %s", c->path.s, cc_quote_node(c, v));
		} else {
			cc_check_vip(c, v, &s->vips[0]);
			s->vip_at[0] = cc_node_mark(c, v);
			s->vip_field[0] = "spec.clusterIP";
			s->n_vips = 1;
		}
	}
	s->has_cluster_ip = true;
}

/* spec.clusterIPs: one VIP per IP family (dual stack). */
static void read_cluster_ips(struct cctx *c, const struct ynode *v, struct service *s)
{
	struct plan_addr vips[2];
	struct mark at[2];
	const char *field[2];
	size_t n = 0;
	for (uint32_t j = 0; j < v->n; j++) {
		size_t old = cc_push_index(c, j);
		const char *ip = cc_get_str(c, v->items[j]);
		struct plan_addr a;
		if (ip && !strcmp(ip, "None"))
			s->headless = true;
		else if (ip && !name_parse_addr(ip, &a))
			cc_err(c, v->items[j], "%s must be an IP address, got %s", c->path.s,
			       cc_quote_node(c, v->items[j]));
		else if (ip && (n == 2 || (n == 1 && vips[0].family == a.family)))
			cc_err(c, v->items[j], "%s: a Service has at most one clusterIP per IP family", c->path.s);
		else if (ip) {
			cc_check_vip(c, v->items[j], &a);
			at[n] = cc_node_mark(c, v->items[j]);
			field[n] = arena_strdup(c->keep, c->path.s);
			vips[n++] = a;
		}
		cc_pop(c, old);
	}
	/* clusterIPs is authoritative: clusterIP is its first entry */
	if (n) {
		memcpy(s->vips, vips, sizeof(vips));
		memcpy(s->vip_at, at, sizeof(at));
		memcpy(s->vip_field, field, sizeof(field));
		s->n_vips = n;
		s->has_cluster_ip = true;
	}
}

/* A field sluice cannot honour is an error only if a VirtualService routes the Service: the first
 * one is kept for then. */
static void note_unsupported(struct cctx *c, struct service *s, const struct ynode *v, const char *why)
{
	if (s->unsupported)
		return;
	s->unsupported = why;
	s->unsupported_at = cc_node_mark(c, v);
}

/* One field of spec, k: v, at the path spec.k. */
static void read_service_field(struct cctx *c, const struct ynode *k, const struct ynode *v, struct service *s)
{
	if (!strcmp(k->str, "selector")) {
		cc_get_labels(c, v, &s->selector);
		s->has_selector = s->selector.n > 0;
	} else if (!strcmp(k->str, "ports") && !ynode_is_null(v) && cc_want(c, v, YN_SEQ)) {
		read_service_ports(c, v, s);
	} else if (!strcmp(k->str, "clusterIP") && !ynode_is_null(v)) {
		read_cluster_ip(c, v, s);
	} else if (!strcmp(k->str, "clusterIPs") && !ynode_is_null(v) && cc_want(c, v, YN_SEQ)) {
		read_cluster_ips(c, v, s);
	} else if (!strcmp(k->str, "type")) {
		const char *t = cc_get_str(c, v);
		if (t && !strcmp(t, "ExternalName"))
			s->external_name = true;
		else if (t && strcmp(t, "ClusterIP") && strcmp(t, "NodePort") && strcmp(t, "LoadBalancer"))
			cc_err(c, v, "%s must be ClusterIP, NodePort, LoadBalancer or ExternalName, got %s", c->path.s,
			       cc_quote_node(c, v));
	} else if (!strcmp(k->str, "publishNotReadyAddresses")) {
		cc_get_bool(c, v, &s->publish_not_ready);
	} else if (!strcmp(k->str, "sessionAffinity")) {
		const char *a = cc_get_str(c, v);
		if (a && strcmp(a, "None"))
			note_unsupported(c, s, v,
					 "spec.sessionAffinity ClientIP is not supported: sluice splits connections by "
					 "weight; remove sessionAffinity");
	} else if (!strcmp(k->str, "internalTrafficPolicy")) {
		const char *a = cc_get_str(c, v);
		if (a && strcmp(a, "Cluster"))
			note_unsupported(c, s, v,
					 "spec.internalTrafficPolicy Local is not supported: sluice does not know which "
					 "pods are on this node; use Cluster");
	} else if (!strcmp(k->str, "trafficDistribution")) {
		note_unsupported(c, s, v,
				 "spec.trafficDistribution is not supported: sluice splits by the VirtualService's "
				 "weights only; remove it");
	}
}

void cc_read_service(struct cctx *c, const struct ynode *obj)
{
	struct meta m;
	if (!cc_open_object(c, obj, "Service", &m))
		return;
	struct service *s = arena_alloc(c->keep, sizeof(*s));
	s->name = m.name;
	s->ns = m.ns;
	s->key = cc_join(c->keep, '.', m.name, m.ns, NULL);
	s->at = cc_node_mark(c, obj);
	size_t old;
	const struct ynode *spec = cc_open_spec(c, obj, "Service", s->key, service_spec_fields, &old);
	if (!spec)
		return;
	for (uint32_t i = 0; i < spec->n; i++) {
		size_t o2 = cc_push_key(c, ymap_key(spec, i)->str);
		read_service_field(c, ymap_key(spec, i), ymap_val(spec, i), s);
		cc_pop(c, o2);
	}
	cc_pop(c, old);
	ptrvec_push(&c->services, s);
}
