// SPDX-License-Identifier: MIT
/* Reads Kubernetes and Istio objects into compact records, then resolves them into a plan.
 * Every field of a consumed kind is honoured or refused with an error naming it. */
#include "compile/compile.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/fieldpath.h"
#include "common/file.h"
#include "common/names.h"
#include "compile/ytree.h"

/* ---- records read from the input ---- */

struct kv {
	const char *key, *val;
};

struct labels {
	struct kv *v;
	uint32_t n;
};

struct svc_port {
	const char *name;
	const char *app_protocol;
	uint16_t port;
	uint8_t proto;               /* IPPROTO_*; 0 for SCTP, refused when routed */
	uint16_t target_num;         /* 0: use target_name, or port when both are unset */
	const char *target_name;
	struct mark at;
};

struct service {
	const char *name, *ns, *key; /* key: "name.ns" */
	struct mark at;
	struct labels selector;
	bool has_selector, publish_not_ready, headless, external_name, has_cluster_ip;
	struct plan_addr vips[2];
	size_t n_vips;
	struct mark vip_at[2];       /* where each VIP is written, and in which field */
	const char *vip_field[2];
	struct svc_port *ports;
	uint32_t n_ports;
	const char *unsupported;     /* first field whose value sluice cannot honour, when routed */
	struct mark unsupported_at;
	const struct vs *routed_by;
	const char *routed_at_host;  /* the host as routed_by writes it */
};

struct pod_port {
	const char *name;
	uint16_t port;
	uint8_t proto;
};

struct pod {
	const char *name, *ns;
	struct mark at;
	struct labels labels;
	struct plan_addr ips[2];
	size_t n_ips;
	bool ready;
	bool terminated;             /* Succeeded or Failed: its IP is released for other pods */
	bool deleting;               /* metadata.deletionTimestamp: leaving, never an endpoint */
	struct pod_port *ports;
	uint32_t n_ports;
};

struct dest {
	const char *host, *subset;   /* subset NULL when absent */
	uint16_t port;               /* 0 when absent */
	int64_t weight;              /* -1 when absent */
	bool bad_name;               /* the subset's name is refused (reported) */
	struct mark at, host_at, subset_at, port_at, weight_at;
};

struct match {
	uint16_t port;               /* 0: any port */
};

struct route {
	bool tcp;
	uint32_t index;
	struct match *matches;       /* none: every port */
	uint32_t n_matches;
	struct mark at, *match_at;
	struct dest *dests;
	uint32_t n_dests;
	bool used;
	bool port_missing;           /* a match port the Service lacks: reported already */
};

struct vs {
	const char *name, *ns, *key; /* key: "namespace/name" */
	struct mark at;
	const char **hosts;
	struct mark *hosts_at;
	uint32_t n_hosts;
	bool mesh;                   /* routes pods' connections: no `gateways`, or "mesh" among them */
	const char **gateways;       /* Gateway names, "name" or "namespace/name" */
	struct mark *gateways_at;
	uint32_t n_gateways;
	struct route *http, *tcp;
	uint32_t n_http, n_tcp;
	bool read_errors;            /* a refused match may hide which routes serve which ports */
};

struct subset {
	const char *name;
	struct labels labels;
	struct mark at;
};

/* An Istio Gateway: its servers become (gateway address, port) entries served by TC mode. */
struct gw_server {
	uint16_t port;
	bool http;                   /* HTTP, HTTP2, GRPC: http routes serve it; TCP: tcp routes */
	struct mark at;
	const struct vs *routed_by;
};

struct gateway {
	const char *name, *ns, *key; /* key: "namespace/name" */
	struct mark at;
	struct gw_server *servers;
	uint32_t n_servers;
	struct plan_addr addrs[PLAN_MAX_GATEWAY_ADDRS];
	struct mark addr_at[PLAN_MAX_GATEWAY_ADDRS];    /* where each address is written, in which field */
	const char *addr_field[PLAN_MAX_GATEWAY_ADDRS];
	size_t n_addrs;
	bool no_address_reported;
};

struct dr {
	const char *name, *ns, *host;
	struct mark at, host_at;
	struct subset *subsets;
	uint32_t n_subsets;
	enum plan_lb lb;
	struct plan_tcp_policy tcp;  /* trafficPolicy.connectionPool.tcp, for the host's TCP ports */
};

/* ---- compile context ---- */

struct cctx {
	const struct compile_opts *o;
	const char *default_ns;
	const char *domain;
	struct diags *d;
	struct arena *keep;
	const struct mark *file;
	struct fieldpath path;
	struct ptrvec services, pods, vss, drs, gateways;
	struct plan_addr gateway_address;   /* --gateway-address; family 0 when not given */
	struct strmap objects;       /* "Kind/ns/name" -> struct mark *, for duplicates */
	struct compile_stats *st;
};

static struct mark cc_node_mark(const struct cctx *c, const struct ynode *n)
{
	struct mark m = *c->file;
	m.line = n->line;
	m.col = n->col;
	return m;
}

static void cc_err(struct cctx *c, const struct ynode *n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void cc_err(struct cctx *c, const struct ynode *n, const char *fmt, ...)
{
	struct mark m = cc_node_mark(c, n);
	va_list ap;
	va_start(ap, fmt);
	diag_verror(c->d, &m, fmt, ap);
	va_end(ap);
}

static void cc_err_at(struct cctx *c, const struct mark *m, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void cc_err_at(struct cctx *c, const struct mark *m, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	diag_verror(c->d, m, fmt, ap);
	va_end(ap);
}

/* The field path (spec.http[0].route) travels with the walk so errors can name it. */
static size_t cc_push_index(struct cctx *c, uint32_t i)
{
	return fieldpath_push_index(&c->path, i);
}

static void cc_pop(struct cctx *c, size_t old)
{
	fieldpath_pop(&c->path, old);
}

static const char *cc_quote(struct cctx *c, const char *s);

static size_t cc_push_key(struct cctx *c, const char *key)
{
	/* keys of the input reach error messages through the path: short and printable, or quoted */
	size_t len = 0;
	for (; key[len]; len++)
		if ((unsigned char)key[len] <= 0x20 || (unsigned char)key[len] >= 0x7f || key[len] == '"')
			break;
	if (key[len] || len > NAME_QUOTE_MAX)
		key = cc_quote(c, key);
	return fieldpath_push_str(&c->path, c->path.len ? "." : "", key);
}

static const char *cc_type_name(const struct ynode *n)
{
	if (ynode_is_null(n))
		return "null";
	return n->type == YN_MAP ? "a mapping" : n->type == YN_SEQ ? "a list" : "a scalar";
}

static bool cc_want(struct cctx *c, const struct ynode *n, uint8_t type)
{
	if (n->type == type)
		return true;
	static const char *names[] = { [YN_SCALAR] = "a scalar", [YN_SEQ] = "a list", [YN_MAP] = "a mapping" };
	cc_err(c, n, "%s must be %s, got %s", c->path.s, names[type], cc_type_name(n));
	return false;
}

/* Edit distance, for "did you mean" on unknown fields. */
static unsigned distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	if (la > 32 || lb > 32)
		return 99;
	unsigned row[33];
	for (size_t j = 0; j <= lb; j++)
		row[j] = (unsigned)j;
	for (size_t i = 1; i <= la; i++) {
		unsigned diag = row[0];
		row[0] = (unsigned)i;
		for (size_t j = 1; j <= lb; j++) {
			unsigned up = row[j];
			unsigned best = diag + (tolower((unsigned char)a[i - 1]) != tolower((unsigned char)b[j - 1]));
			if (row[j - 1] + 1 < best)
				best = row[j - 1] + 1;
			if (up + 1 < best)
				best = up + 1;
			row[j] = best;
			diag = up;
		}
	}
	return row[lb];
}

/* kubectl's strict validation: a field outside the schema is an error, with a suggestion. */
static void cc_check_fields(struct cctx *c, const struct ynode *m, const char *const *known)
{
	for (uint32_t i = 0; i < m->n; i++) {
		const struct ynode *k = ymap_key(m, i);
		if (k->type != YN_SCALAR)
			continue;
		bool found = false;
		for (const char *const *f = known; *f && !found; f++)
			found = (*f)[0] == k->str[0] && !strcmp(*f, k->str);
		if (found)
			continue;
		/* the edit distances only for a field that is unknown: they cost far more than strcmp */
		const char *close = NULL;
		unsigned best = 3;
		for (const char *const *f = known; *f; f++) {
			unsigned dist = distance(*f, k->str);
			if (dist < best) {
				best = dist;
				close = *f;
			}
		}
		const char *field = cc_quote(c, arena_printf(c->keep, "%s%s%s", c->path.s, c->path.len ? "." : "", k->str));
		if (close)
			cc_err(c, k, "unknown field %s (did you mean \"%s\"?)", field, close);
		else
			cc_err(c, k, "unknown field %s", field);
	}
}

/* "x SEP y [SEP z]" in the arena, without printf: index keys are made per object and label. */
static char *cc_join(struct arena *a, char sep, const char *x, const char *y, const char *z)
{
	size_t lx = strlen(x), ly = strlen(y), lz = z ? strlen(z) + 1 : 0;
	char *out = arena_alloc(a, lx + ly + lz + 2);
	memcpy(out, x, lx);
	out[lx] = sep;
	memcpy(out + lx + 1, y, ly);
	if (z) {
		out[lx + 1 + ly] = sep;
		memcpy(out + lx + 2 + ly, z, lz - 1);
	}
	return out;
}

static const char *cc_keep_str(struct cctx *c, const struct ynode *n)
{
	return arena_strndup(c->keep, n->str, n->len);
}

/* A value of the input as an error quotes it: escaped, at most 64 bytes and its length (names.h). */
static const char *cc_quote_len(struct cctx *c, const char *s, size_t len)
{
	char buf[NAME_QUOTE_CAP];
	return arena_strdup(c->keep, name_quote(s, len, buf, sizeof(buf)));
}

static const char *cc_quote(struct cctx *c, const char *s)
{
	return cc_quote_len(c, s, strlen(s));
}

static const char *cc_quote_node(struct cctx *c, const struct ynode *n)
{
	return n->type == YN_SCALAR ? cc_quote_len(c, n->str, n->len) : cc_type_name(n);
}

/* A value of the input that an error prints unquoted (a number, a keyword): as cc_quote() when it is
 * not short printable ASCII, so no control byte or huge value reaches the terminal. */
static const char *cc_clip(struct cctx *c, const char *s)
{
	size_t len = strlen(s);
	bool plain = len <= NAME_QUOTE_MAX;
	for (size_t i = 0; plain && i < len; i++)
		plain = s[i] > 0x20 && s[i] < 0x7f;
	return plain ? s : cc_quote_len(c, s, len);
}

static const char *cc_clip_node(struct cctx *c, const struct ynode *n)
{
	return n->type == YN_SCALAR ? (n->len == strlen(n->str) ? cc_clip(c, n->str) : cc_quote_node(c, n)) : cc_type_name(n);
}

/* A name read from n checked against a rule of names.h: "WHAT "value" is not a valid ...". A NUL
 * inside is the reader's error already: the name is what the rest of the compiler sees. */
static bool cc_check_name(struct cctx *c, const struct ynode *n, const char *what,
			  const char *(*rule)(const char *s, size_t len))
{
	const char *why = rule(n->str, strlen(n->str));
	if (why)
		cc_err(c, n, "%s %s %s", what, cc_quote_node(c, n), why);
	return !why;
}

/* A string field: a scalar that is not null. Returns NULL (after an error) otherwise. */
static const char *cc_get_str(struct cctx *c, const struct ynode *n)
{
	if (!cc_want(c, n, YN_SCALAR))
		return NULL;
	if (ynode_is_null(n)) {
		cc_err(c, n, "%s must be a string, got null", c->path.s);
		return NULL;
	}
	return cc_keep_str(c, n);
}

/* A string field that names something: NULL (after an error) when the rule of names.h refuses it. */
static const char *cc_get_name(struct cctx *c, const struct ynode *n, const char *what,
			       const char *(*rule)(const char *s, size_t len))
{
	const char *s = cc_get_str(c, n);
	return s && cc_check_name(c, n, what, rule) ? s : NULL;
}

static bool cc_is_integer(const struct ynode *n)
{
	if (n->type != YN_SCALAR || !n->plain || !n->len)
		return false;
	const char *p = n->str;
	if (*p == '-' || *p == '+')
		p++;
	if (!*p)
		return false;
	for (; *p; p++)
		if (!isdigit((unsigned char)*p))
			return false;
	return true;
}

static bool cc_get_int(struct cctx *c, const struct ynode *n, long long min, long long max, long long *out)
{
	if (!cc_is_integer(n)) {
		if (n->type == YN_SCALAR && !n->plain)
			cc_err(c, n, "%s must be an integer, got the string %s", c->path.s, cc_quote_node(c, n));
		else if (n->type == YN_SCALAR && !ynode_is_null(n))
			cc_err(c, n, "%s must be an integer, got %s", c->path.s, cc_quote_node(c, n));
		else
			cc_err(c, n, "%s must be an integer, got %s", c->path.s, cc_type_name(n));
		return false;
	}
	errno = 0;
	long long v = strtoll(n->str, NULL, 10);
	if (errno || v < min || v > max) {
		cc_err(c, n, "%s must be an integer from %lld to %lld, got %s", c->path.s, min, max, cc_clip_node(c, n));
		return false;
	}
	*out = v;
	return true;
}

static bool cc_get_port(struct cctx *c, const struct ynode *n, uint16_t *out)
{
	long long v;
	if (!cc_get_int(c, n, 1, 65535, &v))
		return false;
	*out = (uint16_t)v;
	return true;
}

static bool cc_get_bool(struct cctx *c, const struct ynode *n, bool *out)
{
	if (n->type == YN_SCALAR && n->plain && (!strcmp(n->str, "true") || !strcmp(n->str, "false"))) {
		*out = n->str[0] == 't';
		return true;
	}
	cc_err(c, n, "%s must be true or false, got %s", c->path.s, cc_clip_node(c, n));
	return false;
}

/* Label maps: string keys to scalar values, as Kubernetes stores them, and names as it takes them
 * (a label Kubernetes refuses can be on no pod). */
static void cc_get_labels(struct cctx *c, const struct ynode *n, struct labels *out)
{
	if (ynode_is_null(n) || !cc_want(c, n, YN_MAP))
		return;
	out->v = arena_alloc(c->keep, (n->n ? n->n : 1) * sizeof(*out->v));
	for (uint32_t i = 0; i < n->n; i++) {
		const struct ynode *k = ymap_key(n, i), *v = ymap_val(n, i);
		if (k->type != YN_SCALAR)
			continue;
		const char *why = name_label_key_error(k->str, strlen(k->str));
		if (why) {
			cc_err(c, k, "%s key %s %s", c->path.s, cc_quote_node(c, k), why);
			continue;
		}
		size_t old = cc_push_key(c, k->str);
		if (v->type != YN_SCALAR || ynode_is_null(v)) {
			cc_err(c, v, "%s must be a string, got %s", c->path.s, cc_type_name(v));
		} else if ((why = name_label_value_error(v->str, strlen(v->str)))) {
			cc_err(c, v, "%s %s %s", c->path.s, cc_quote_node(c, v), why);
		} else {
			out->v[out->n].key = cc_keep_str(c, k);
			out->v[out->n].val = cc_keep_str(c, v);
			out->n++;
		}
		cc_pop(c, old);
	}
}

/* A service VIP or gateway address written at n: not one the node or its pods use for themselves. */
static bool cc_check_vip(struct cctx *c, const struct ynode *n, const struct plan_addr *a)
{
	const char *why = name_vip_error(a);
	if (why)
		cc_err(c, n, "%s %s %s", c->path.s, cc_quote_node(c, n), why);
	return !why;
}

/* ---- reading objects ---- */

struct meta {
	const char *name, *ns;
	const struct ynode *labels;
	bool deleting;
	const struct ynode *node;
};

static bool cc_read_meta(struct cctx *c, const struct ynode *obj, const char *kind, struct meta *m)
{
	memset(m, 0, sizeof(*m));
	m->node = obj;
	const struct ynode *md = ymap_get(obj, "metadata");
	if (!md || ynode_is_null(md)) {
		cc_err(c, obj, "%s has no metadata.name", kind);
		return false;
	}
	size_t old = cc_push_key(c, "metadata");
	bool ok = cc_want(c, md, YN_MAP);
	if (ok) {
		const struct ynode *name = ymap_get(md, "name"), *ns = ymap_get(md, "namespace");
		if (!name || ynode_is_null(name)) {
			cc_err(c, md, "%s has no metadata.name", kind);
			ok = false;
		} else {
			/* Kubernetes: a Service's name is a DNS-1035 label (it becomes a DNS name and an
			 * environment variable), every other kind's a DNS-1123 subdomain */
			size_t o2 = cc_push_key(c, "name");
			char what[64];
			snprintf(what, sizeof(what), "%s name", kind);
			m->name = cc_get_name(c, name, what, !strcmp(kind, "Service") ? name_dns1035_label_error :
										name_dns1123_subdomain_error);
			cc_pop(c, o2);
			ok = m->name != NULL;
		}
		/* "" is no namespace, as kubectl reads it */
		if (ns && !ynode_is_null(ns) && !(ns->type == YN_SCALAR && !ns->len)) {
			size_t o2 = cc_push_key(c, "namespace");
			m->ns = cc_get_name(c, ns, "namespace", name_dns1123_label_error);
			cc_pop(c, o2);
			if (!m->ns) {
				ok = false;
			} else if (c->o->namespace_forced && strcmp(m->ns, c->default_ns)) {
				cc_err(c, ns, "metadata.namespace \"%s\" does not match -n %s: drop -n or fix the namespace",
				       m->ns, c->default_ns);
				ok = false;
			}
		}
		m->labels = ymap_get(md, "labels");
		const struct ynode *del = ymap_get(md, "deletionTimestamp");
		m->deleting = del && !ynode_is_null(del);
	}
	cc_pop(c, old);
	if (!m->ns)
		m->ns = c->default_ns;
	return ok;
}

/* Two objects of one kind, namespace and name in one input would make one of them win silently. */
static bool cc_unique_object(struct cctx *c, const char *kind, const struct meta *m)
{
	const char *key = cc_join(c->keep, '/', kind, m->ns, m->name);
	const struct mark *first = strmap_get(&c->objects, key);
	if (first) {
		cc_err(c, m->node, "duplicate %s %s/%s (first defined at %s:%u:%u)", kind, m->ns, m->name, first->file,
		       first->line, first->col);
		return false;
	}
	struct mark *at = arena_alloc(c->keep, sizeof(*at));
	*at = cc_node_mark(c, m->node);
	strmap_put(&c->objects, key, at);
	return true;
}

static const char *const service_fields[] = { "apiVersion", "kind", "metadata", "spec", "status", NULL };
static const char *const service_spec_fields[] = {
	"allocateLoadBalancerNodePorts", "clusterIP", "clusterIPs", "externalIPs", "externalName",
	"externalTrafficPolicy", "healthCheckNodePort", "internalTrafficPolicy", "ipFamilies", "ipFamilyPolicy",
	"loadBalancerClass", "loadBalancerIP", "loadBalancerSourceRanges", "ports", "publishNotReadyAddresses",
	"selector", "sessionAffinity", "sessionAffinityConfig", "trafficDistribution", "type", NULL
};
static const char *const service_port_fields[] = { "appProtocol", "name", "nodePort", "port", "protocol",
						   "targetPort", NULL };

static uint8_t cc_get_protocol(struct cctx *c, const struct ynode *n, bool *ok)
{
	const char *p = cc_get_str(c, n);
	if (!p) {
		*ok = false;
		return 0;
	}
	if (!strcmp(p, "TCP"))
		return IPPROTO_TCP;
	if (!strcmp(p, "UDP"))
		return IPPROTO_UDP;
	if (!strcmp(p, "SCTP"))
		return 0;
	cc_err(c, n, "%s must be TCP, UDP or SCTP, got %s", c->path.s, cc_quote_node(c, n));
	*ok = false;
	return 0;
}

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

static void cc_read_service(struct cctx *c, const struct ynode *obj)
{
	struct meta m;
	cc_check_fields(c, obj, service_fields);
	if (!cc_read_meta(c, obj, "Service", &m) || !cc_unique_object(c, "Service", &m))
		return;
	struct service *s = arena_alloc(c->keep, sizeof(*s));
	s->name = m.name;
	s->ns = m.ns;
	s->key = cc_join(c->keep, '.', m.name, m.ns, NULL);
	s->at = cc_node_mark(c, obj);
	const struct ynode *spec = ymap_get(obj, "spec");
	if (!spec || ynode_is_null(spec)) {
		cc_err(c, obj, "Service %s has no spec", s->key);
		return;
	}
	size_t old = cc_push_key(c, "spec");
	if (!cc_want(c, spec, YN_MAP)) {
		cc_pop(c, old);
		return;
	}
	cc_check_fields(c, spec, service_spec_fields);
	for (uint32_t i = 0; i < spec->n; i++) {
		const struct ynode *k = ymap_key(spec, i), *v = ymap_val(spec, i);
		size_t o2 = cc_push_key(c, k->str);
		if (!strcmp(k->str, "selector")) {
			cc_get_labels(c, v, &s->selector);
			s->has_selector = s->selector.n > 0;
		} else if (!strcmp(k->str, "ports") && !ynode_is_null(v) && cc_want(c, v, YN_SEQ)) {
			s->ports = arena_alloc(c->keep, (v->n ? v->n : 1) * sizeof(*s->ports));
			for (uint32_t j = 0; j < v->n; j++) {
				size_t o3 = cc_push_index(c, j);
				struct svc_port *p = &s->ports[s->n_ports];
				if (read_service_port(c, v->items[j], p)) {
					for (uint32_t q = 0; q < s->n_ports; q++)
						if (s->ports[q].port == p->port && s->ports[q].proto == p->proto)
							cc_err_at(c, &p->at, "duplicate port %u in Service %s", p->port, s->key);
					s->n_ports++;
				} else {
					memset(p, 0, sizeof(*p));
				}
				cc_pop(c, o3);
			}
		} else if (!strcmp(k->str, "clusterIP") && !ynode_is_null(v)) {
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
		} else if (!strcmp(k->str, "clusterIPs") && !ynode_is_null(v) && cc_want(c, v, YN_SEQ)) {
			struct plan_addr vips[2];
			struct mark at[2];
			const char *field[2];
			size_t n = 0;
			for (uint32_t j = 0; j < v->n; j++) {
				size_t o3 = cc_push_index(c, j);
				const char *ip = cc_get_str(c, v->items[j]);
				struct plan_addr a;
				if (ip && !strcmp(ip, "None"))
					s->headless = true;
				else if (ip && !name_parse_addr(ip, &a))
					cc_err(c, v->items[j], "%s must be an IP address, got %s", c->path.s,
					       cc_quote_node(c, v->items[j]));
				else if (ip && (n == 2 || (n == 1 && vips[0].family == a.family)))
					cc_err(c, v->items[j], "%s: a Service has at most one clusterIP per IP family",
					       c->path.s);
				else if (ip) {
					cc_check_vip(c, v->items[j], &a);
					at[n] = cc_node_mark(c, v->items[j]);
					field[n] = arena_strdup(c->keep, c->path.s);
					vips[n++] = a;
				}
				cc_pop(c, o3);
			}
			/* clusterIPs is authoritative: clusterIP is its first entry */
			if (n) {
				memcpy(s->vips, vips, sizeof(vips));
				memcpy(s->vip_at, at, sizeof(at));
				memcpy(s->vip_field, field, sizeof(field));
				s->n_vips = n;
				s->has_cluster_ip = true;
			}
		} else if (!strcmp(k->str, "type")) {
			const char *t = cc_get_str(c, v);
			if (t && !strcmp(t, "ExternalName"))
				s->external_name = true;
			else if (t && strcmp(t, "ClusterIP") && strcmp(t, "NodePort") && strcmp(t, "LoadBalancer"))
				cc_err(c, v, "%s must be ClusterIP, NodePort, LoadBalancer or ExternalName, got %s",
				       c->path.s, cc_quote_node(c, v));
		} else if (!strcmp(k->str, "publishNotReadyAddresses")) {
			cc_get_bool(c, v, &s->publish_not_ready);
		} else if (!strcmp(k->str, "sessionAffinity")) {
			const char *a = cc_get_str(c, v);
			if (a && strcmp(a, "None") && !s->unsupported) {
				s->unsupported = "spec.sessionAffinity ClientIP is not supported: sluice splits "
						 "connections by weight; remove sessionAffinity";
				s->unsupported_at = cc_node_mark(c, v);
			}
		} else if (!strcmp(k->str, "internalTrafficPolicy")) {
			const char *a = cc_get_str(c, v);
			if (a && strcmp(a, "Cluster") && !s->unsupported) {
				s->unsupported = "spec.internalTrafficPolicy Local is not supported: sluice does not "
						 "know which pods are on this node; use Cluster";
				s->unsupported_at = cc_node_mark(c, v);
			}
		} else if (!strcmp(k->str, "trafficDistribution")) {
			if (!s->unsupported) {
				s->unsupported = "spec.trafficDistribution is not supported: sluice splits by the "
						 "VirtualService's weights only; remove it";
				s->unsupported_at = cc_node_mark(c, v);
			}
		}
		cc_pop(c, o2);
	}
	cc_pop(c, old);
	ptrvec_push(&c->services, s);
}

static const char *const pod_fields[] = { "apiVersion", "kind", "metadata", "spec", "status", NULL };
static const char *const pod_spec_fields[] = {
	"activeDeadlineSeconds", "affinity", "automountServiceAccountToken", "containers", "dnsConfig",
	"dnsPolicy", "enableServiceLinks", "ephemeralContainers", "hostAliases", "hostIPC", "hostNetwork",
	"hostPID", "hostUsers", "hostname", "hostnameOverride", "imagePullSecrets", "initContainers", "nodeName",
	"nodeSelector", "os", "overhead", "preemptionPolicy", "priority", "priorityClassName", "readinessGates",
	"resourceClaims", "resources", "restartPolicy", "runtimeClassName", "schedulerName", "schedulingGates",
	"securityContext", "serviceAccount", "serviceAccountName", "setHostnameAsFQDN", "shareProcessNamespace",
	"subdomain", "terminationGracePeriodSeconds", "tolerations", "topologySpreadConstraints", "volumes", NULL
};
static const char *const container_fields[] = {
	"args", "command", "env", "envFrom", "image", "imagePullPolicy", "lifecycle", "livenessProbe", "name",
	"ports", "readinessProbe", "resizePolicy", "resources", "restartPolicy", "restartPolicyRules",
	"securityContext", "startupProbe", "stdin", "stdinOnce", "terminationMessagePath",
	"terminationMessagePolicy", "tty", "volumeDevices", "volumeMounts", "workingDir", NULL
};
static const char *const container_port_fields[] = { "containerPort", "hostIP", "hostPort", "name", "protocol",
						      NULL };

static void read_containers(struct cctx *c, const struct ynode *list, struct pod *p)
{
	if (ynode_is_null(list) || !cc_want(c, list, YN_SEQ))
		return;
	for (uint32_t i = 0; i < list->n; i++) {
		const struct ynode *ct = list->items[i];
		size_t old = cc_push_index(c, i);
		if (cc_want(c, ct, YN_MAP)) {
			cc_check_fields(c, ct, container_fields);
			const struct ynode *ports = ymap_get(ct, "ports");
			size_t o2 = cc_push_key(c, "ports");
			if (ports && !ynode_is_null(ports) && cc_want(c, ports, YN_SEQ)) {
				struct pod_port *np = arena_alloc(c->keep, (p->n_ports + ports->n + 1) * sizeof(*np));
				if (p->n_ports)
					memcpy(np, p->ports, p->n_ports * sizeof(*np));
				p->ports = np;
				for (uint32_t j = 0; j < ports->n; j++) {
					const struct ynode *cp = ports->items[j];
					size_t o3 = cc_push_index(c, j);
					if (cc_want(c, cp, YN_MAP)) {
						cc_check_fields(c, cp, container_port_fields);
						struct pod_port *pp = &p->ports[p->n_ports];
						bool ok = true;
						pp->proto = IPPROTO_TCP;
						for (uint32_t q = 0; q < cp->n; q++) {
							const char *k = ymap_key(cp, q)->str;
							const struct ynode *v = ymap_val(cp, q);
							size_t o4 = cc_push_key(c, k);
							if (!strcmp(k, "containerPort"))
								ok = cc_get_port(c, v, &pp->port) && ok;
							else if (!strcmp(k, "name"))
								pp->name = cc_get_name(c, v, "port name", name_port_name_error);
							else if (!strcmp(k, "protocol"))
								pp->proto = cc_get_protocol(c, v, &ok);
							cc_pop(c, o4);
						}
						if (ok && pp->port)
							p->n_ports++;
					}
					cc_pop(c, o3);
				}
			}
			cc_pop(c, o2);
		}
		cc_pop(c, old);
	}
}

static void read_pod_status(struct cctx *c, const struct ynode *st, struct pod *p)
{
	if (!st || ynode_is_null(st) || st->type != YN_MAP)
		return;
	const struct ynode *phase = ymap_get(st, "phase");
	bool running = phase && phase->type == YN_SCALAR && !strcmp(phase->str, "Running");
	p->terminated = phase && phase->type == YN_SCALAR &&
			(!strcmp(phase->str, "Succeeded") || !strcmp(phase->str, "Failed"));
	bool ready = false;
	const struct ynode *conds = ymap_get(st, "conditions");
	for (uint32_t i = 0; conds && conds->type == YN_SEQ && i < conds->n; i++) {
		const struct ynode *t = ymap_get(conds->items[i], "type"), *s = ymap_get(conds->items[i], "status");
		if (t && s && t->type == YN_SCALAR && s->type == YN_SCALAR && !strcmp(t->str, "Ready"))
			ready = !strcmp(s->str, "True") || !strcmp(s->str, "true");
	}
	p->ready = running && ready;
	size_t old = cc_push_key(c, "status");
	const struct ynode *ips = ymap_get(st, "podIPs"), *ip = ymap_get(st, "podIP");
	if (ips && ips->type == YN_SEQ && ips->n) {
		size_t o2 = cc_push_key(c, "podIPs");
		for (uint32_t i = 0; i < ips->n; i++) {
			size_t o3 = fieldpath_push(&c->path, "[%u].ip", i);
			const struct ynode *one = ymap_get(ips->items[i], "ip");
			struct plan_addr a;
			if (!one) {
				cc_err(c, ips->items[i], "%s is required", c->path.s);
			} else if (one->type != YN_SCALAR || !name_parse_addr(one->str, &a)) {
				cc_err(c, one, "%s must be an IP address, got %s", c->path.s, cc_clip_node(c, one));
			} else if (p->n_ips == 2 || (p->n_ips == 1 && p->ips[0].family == a.family)) {
				cc_err(c, one, "%s: a pod has at most one IP per family", c->path.s);
			} else {
				p->ips[p->n_ips++] = a;
			}
			cc_pop(c, o3);
		}
		cc_pop(c, o2);
	} else if (ip && !ynode_is_null(ip)) {
		size_t o2 = cc_push_key(c, "podIP");
		if (ip->type != YN_SCALAR || !name_parse_addr(ip->str, &p->ips[0]))
			cc_err(c, ip, "%s must be an IP address, got %s", c->path.s, cc_clip_node(c, ip));
		else
			p->n_ips = 1;
		cc_pop(c, o2);
	}
	cc_pop(c, old);
}

static void cc_read_pod(struct cctx *c, const struct ynode *obj)
{
	struct meta m;
	cc_check_fields(c, obj, pod_fields);
	if (!cc_read_meta(c, obj, "Pod", &m) || !cc_unique_object(c, "Pod", &m))
		return;
	struct pod *p = arena_alloc(c->keep, sizeof(*p));
	p->name = m.name;
	p->ns = m.ns;
	p->at = cc_node_mark(c, obj);
	size_t old = fieldpath_push_str(&c->path, "", "metadata.labels");
	cc_get_labels(c, m.labels, &p->labels);
	cc_pop(c, old);
	const struct ynode *spec = ymap_get(obj, "spec");
	old = cc_push_key(c, "spec");
	if (spec && !ynode_is_null(spec) && cc_want(c, spec, YN_MAP)) {
		cc_check_fields(c, spec, pod_spec_fields);
		size_t o2 = cc_push_key(c, "containers");
		read_containers(c, ymap_get(spec, "containers"), p);
		cc_pop(c, o2);
	}
	cc_pop(c, old);
	read_pod_status(c, ymap_get(obj, "status"), p);
	p->deleting = m.deleting;
	ptrvec_push(&c->pods, p);
}

/* ---- Istio objects ---- */

static const char *const istio_fields[] = { "apiVersion", "kind", "metadata", "spec", "status", NULL };
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

static const char *const gateway_spec_fields[] = { "addresses", "selector", "servers", NULL };
static const char *const gateway_server_fields[] = { "bind", "defaultEndpoint", "hosts", "name", "port", "tls", NULL };
static const char *const gateway_port_fields[] = { "name", "number", "protocol", "targetPort", NULL };

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
			cc_err(c, k, "%s: TLS termination needs a proxy: sluice forwards connections, it does not decrypt "
				  "them; terminate TLS in the application, or use protocol TCP to pass TLS through",
			    c->path.s);
			good = false;
		} else if (!strcmp(k->str, "bind") || !strcmp(k->str, "defaultEndpoint")) {
			cc_err(c, k, "%s is not supported: sluice serves a Gateway on the address it is given", c->path.s);
			good = false;
		} else if (!strcmp(k->str, "name")) {
			cc_get_str(c, v);
		} else if (!strcmp(k->str, "hosts") && cc_want(c, v, YN_SEQ)) {
			if (!v->n) {
				cc_err(c, v, "%s is empty: use \"*\"", c->path.s);
				good = false;
			}
			for (uint32_t j = 0; j < v->n; j++) {
				size_t o2 = cc_push_index(c, j);
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
					       "%s: host %s: choosing routes by Host or SNI needs a proxy, and sluice "
					       "sees connections; use \"*\" and one VirtualService per Gateway port",
					       c->path.s, cc_quote_node(c, v->items[j]));
					good = false;
				}
				cc_pop(c, o2);
			}
		} else if (!strcmp(k->str, "port") && cc_want(c, v, YN_MAP)) {
			cc_check_fields(c, v, gateway_port_fields);
			const struct ynode *num = ymap_get(v, "number"), *proto = ymap_get(v, "protocol");
			size_t o2 = cc_push_key(c, "number");
			if (!num) {
				cc_err(c, v, "%s is required", c->path.s);
				good = false;
			} else if (!cc_get_port(c, num, &srv->port)) {
				good = false;
			}
			cc_pop(c, o2);
			o2 = cc_push_key(c, "protocol");
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
			cc_pop(c, o2);
			const struct ynode *tp = ymap_get(v, "targetPort");
			if (tp) {
				cc_err(c, tp, "%s.targetPort is not supported: sluice translates to the destination's port",
				       c->path.s);
				good = false;
			}
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

static void cc_read_gateway(struct cctx *c, const struct ynode *obj)
{
	struct meta m;
	cc_check_fields(c, obj, istio_fields);
	if (!cc_read_meta(c, obj, "Gateway", &m) || !cc_unique_object(c, "Gateway", &m))
		return;
	struct gateway *g = arena_alloc(c->keep, sizeof(*g));
	g->name = m.name;
	g->ns = m.ns;
	g->key = cc_join(c->keep, '/', m.ns, m.name, NULL);
	g->at = cc_node_mark(c, obj);
	const struct ynode *spec = ymap_get(obj, "spec");
	if (!spec || ynode_is_null(spec)) {
		cc_err(c, obj, "Gateway %s has no spec", g->key);
		return;
	}
	size_t old = cc_push_key(c, "spec");
	if (!cc_want(c, spec, YN_MAP)) {
		cc_pop(c, old);
		return;
	}
	cc_check_fields(c, spec, gateway_spec_fields);
	bool ok = true;
	const struct ynode *sel = ymap_get(spec, "selector"), *servers = ymap_get(spec, "servers");
	const struct ynode *addrs = ymap_get(spec, "addresses");
	if (sel) {
		/* the selector names Istio's gateway pods; sluice's TC interfaces take their place */
		size_t o2 = cc_push_key(c, "selector");
		struct labels ignored = { 0 };
		cc_get_labels(c, sel, &ignored);
		cc_pop(c, o2);
	}
	if (addrs && !ynode_is_null(addrs)) {
		size_t o2 = cc_push_key(c, "addresses");
		if (cc_want(c, addrs, YN_SEQ)) {
			for (uint32_t i = 0; i < addrs->n; i++) {
				size_t o3 = cc_push_index(c, i);
				const struct ynode *a = addrs->items[i];
				if (a->type == YN_MAP) {
					/* Gateway API's form: {type: IPAddress, value: ...} */
					const struct ynode *t = ymap_get(a, "type");
					if (t && (t->type != YN_SCALAR || strcmp(t->str, "IPAddress")))
						cc_err(c, t, "%s.type must be IPAddress", c->path.s);
					a = ymap_get(a, "value");
					if (!a) {
						cc_err(c, addrs->items[i], "%s.value is required", c->path.s);
						ok = false;
						cc_pop(c, o3);
						continue;
					}
					cc_push_key(c, "value");
				}
				const char *ip = cc_get_str(c, a);
				struct plan_addr pa;
				if (ip && !name_parse_addr(ip, &pa)) {
					cc_err(c, a, "%s must be an IP address, got %s", c->path.s, cc_quote_node(c, a));
					ok = false;
				} else if (ip && g->n_addrs == PLAN_MAX_GATEWAY_ADDRS) {
					cc_err(c, a, "%s: at most %d addresses", c->path.s, PLAN_MAX_GATEWAY_ADDRS);
					ok = false;
				} else if (ip && !cc_check_vip(c, a, &pa)) {
					ok = false;
				} else if (ip && gateway_has_addr(g, &pa)) {
					cc_err(c, a, "%s %s is listed twice", c->path.s, cc_quote_node(c, a));
					ok = false;
				} else if (ip) {
					g->addr_at[g->n_addrs] = cc_node_mark(c, a);
					g->addr_field[g->n_addrs] = arena_strdup(c->keep, c->path.s);
					g->addrs[g->n_addrs++] = pa;
				}
				cc_pop(c, o3);
			}
		}
		cc_pop(c, o2);
	}
	size_t o2 = cc_push_key(c, "servers");
	if (!servers || ynode_is_null(servers)) {
		cc_err(c, spec, "spec.servers is required: list the ports the Gateway serves");
		ok = false;
	} else if (cc_want(c, servers, YN_SEQ)) {
		g->servers = arena_alloc(c->keep, (servers->n ? servers->n : 1) * sizeof(*g->servers));
		for (uint32_t i = 0; i < servers->n; i++) {
			size_t o3 = cc_push_index(c, i);
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
			cc_pop(c, o3);
		}
	}
	cc_pop(c, o2);
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

static void cc_check_export_to(struct cctx *c, const struct ynode *e)
{
	if (ynode_is_null(e) || !cc_want(c, e, YN_SEQ))
		return;
	for (uint32_t i = 0; i < e->n; i++) {
		size_t old = cc_push_index(c, i);
		const char *v = cc_get_str(c, e->items[i]);
		if (v && strcmp(v, "*"))
			cc_err(c, e->items[i],
			       "%s: exportTo %s is not supported: sluice applies rules to every namespace on the "
			       "node; use \"*\" or remove exportTo",
			       c->path.s, cc_quote_node(c, e->items[i]));
		cc_pop(c, old);
	}
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
	if (ms && !ynode_is_null(ms) && cc_want(c, ms, YN_SEQ)) {
		out->matches = arena_alloc(c->keep, (ms->n ? ms->n : 1) * sizeof(*out->matches));
		out->match_at = arena_alloc(c->keep, (ms->n ? ms->n : 1) * sizeof(*out->match_at));
		for (uint32_t i = 0; i < ms->n; i++) {
			const struct ynode *m = ms->items[i];
			size_t o2 = cc_push_index(c, i);
			if (cc_want(c, m, YN_MAP)) {
				cc_check_fields(c, m, tcp ? tcp_match_fields : http_match_fields);
				refuse_fields(c, m, tcp ? tcp_match_refusals : http_match_refusals);
				struct match *mt = &out->matches[out->n_matches];
				out->match_at[out->n_matches] = cc_node_mark(c, m);
				const struct ynode *port = ymap_get(m, "port"), *gw = ymap_get(m, "gateways");
				if (port) {
					size_t o3 = cc_push_key(c, "port");
					cc_get_port(c, port, &mt->port);
					out->match_at[out->n_matches] = cc_node_mark(c, port);
					cc_pop(c, o3);
				}
				if (gw) {
					size_t o3 = cc_push_key(c, "gateways");
					check_gateways(c, gw);
					cc_pop(c, o3);
				}
				const struct ynode *name = ymap_get(m, "name");
				if (name) {
					size_t o3 = cc_push_key(c, "name");
					cc_get_str(c, name);
					cc_pop(c, o3);
				}
				out->n_matches++;
			}
			cc_pop(c, o2);
		}
	}
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

static void cc_read_virtual_service(struct cctx *c, const struct ynode *obj)
{
	struct meta m;
	cc_check_fields(c, obj, istio_fields);
	if (!cc_read_meta(c, obj, "VirtualService", &m) || !cc_unique_object(c, "VirtualService", &m))
		return;
	struct vs *v = arena_alloc(c->keep, sizeof(*v));
	v->name = m.name;
	v->ns = m.ns;
	v->key = cc_join(c->keep, '/', m.ns, m.name, NULL);
	v->mesh = true;
	v->at = cc_node_mark(c, obj);
	const struct ynode *spec = ymap_get(obj, "spec");
	if (!spec || ynode_is_null(spec)) {
		cc_err(c, obj, "VirtualService %s/%s has no spec", m.ns, m.name);
		return;
	}
	size_t old = cc_push_key(c, "spec");
	if (!cc_want(c, spec, YN_MAP)) {
		cc_pop(c, old);
		return;
	}
	cc_check_fields(c, spec, vs_spec_fields);
	bool ok = true;
	size_t errors = c->d->n;
	for (uint32_t i = 0; i < spec->n; i++) {
		const struct ynode *k = ymap_key(spec, i), *val = ymap_val(spec, i);
		size_t o2 = cc_push_key(c, k->str);
		if (!strcmp(k->str, "hosts") && !ynode_is_null(val) && cc_want(c, val, YN_SEQ)) {
			v->hosts = arena_alloc(c->keep, (val->n ? val->n : 1) * sizeof(*v->hosts));
			v->hosts_at = arena_alloc(c->keep, (val->n ? val->n : 1) * sizeof(*v->hosts_at));
			for (uint32_t j = 0; j < val->n; j++) {
				size_t o3 = cc_push_index(c, j);
				const char *h = cc_get_str(c, val->items[j]);
				struct plan_addr ip;
				/* a DNS name, a wildcard or, as Istio allows in a VirtualService, an IP address */
				if (h && (name_parse_addr(h, &ip) || cc_check_name(c, val->items[j], "host", name_host_error))) {
					v->hosts_at[v->n_hosts] = cc_node_mark(c, val->items[j]);
					v->hosts[v->n_hosts++] = h;
				}
				cc_pop(c, o3);
			}
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
			if (!ynode_is_null(v) && cc_want(c, v, YN_MAP)) {
				cc_check_fields(c, v, load_balancer_fields);
				for (uint32_t j = 0; j < v->n; j++) {
					const struct ynode *lk = ymap_key(v, j), *lv = ymap_val(v, j);
					if (lk->type != YN_SCALAR)
						continue;
					size_t o2 = cc_push_key(c, lk->str);
					if (!strcmp(lk->str, "simple")) {
						const char *s = cc_get_str(c, lv);
						if (s && !strcmp(s, "ROUND_ROBIN"))
							d->lb = PLAN_LB_ROUND_ROBIN;
						else if (s && !strcmp(s, "RANDOM"))
							d->lb = PLAN_LB_RANDOM;
						else if (s)
							cc_err(c, lv, "%s %s is not supported: use ROUND_ROBIN or RANDOM",
							       c->path.s, cc_clip(c, s));
					} else if (strcmp(lk->str, "consistentHash") && strcmp(lk->str, "localityLbSetting") &&
						   strcmp(lk->str, "warmupDurationSecs")) {
						/* unknown, already reported */
					} else {
						cc_err(c, lk, "%s is not supported: sluice balances with simple "
							   "ROUND_ROBIN or RANDOM",
						    c->path.s);
					}
					cc_pop(c, o2);
				}
			}
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

static void cc_read_destination_rule(struct cctx *c, const struct ynode *obj)
{
	struct meta m;
	cc_check_fields(c, obj, istio_fields);
	if (!cc_read_meta(c, obj, "DestinationRule", &m) || !cc_unique_object(c, "DestinationRule", &m))
		return;
	struct dr *d = arena_alloc(c->keep, sizeof(*d));
	d->name = m.name;
	d->ns = m.ns;
	d->at = cc_node_mark(c, obj);
	const struct ynode *spec = ymap_get(obj, "spec");
	if (!spec || ynode_is_null(spec)) {
		cc_err(c, obj, "DestinationRule %s/%s has no spec", m.ns, m.name);
		return;
	}
	size_t old = cc_push_key(c, "spec");
	if (!cc_want(c, spec, YN_MAP)) {
		cc_pop(c, old);
		return;
	}
	cc_check_fields(c, spec, dr_spec_fields);
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
			d->subsets = arena_alloc(c->keep, (v->n ? v->n : 1) * sizeof(*d->subsets));
			for (uint32_t j = 0; j < v->n; j++) {
				const struct ynode *s = v->items[j];
				size_t o3 = cc_push_index(c, j);
				if (cc_want(c, s, YN_MAP)) {
					cc_check_fields(c, s, subset_fields);
					struct subset *sub = &d->subsets[d->n_subsets];
					sub->at = cc_node_mark(c, s);
					const struct ynode *name = ymap_get(s, "name"), *tp = ymap_get(s, "trafficPolicy");
					size_t o4 = cc_push_key(c, "name");
					if (!name)
						cc_err(c, s, "%s is required", c->path.s);
					else
						sub->name = cc_get_name(c, name, "subset name", name_subset_error);
					cc_pop(c, o4);
					o4 = cc_push_key(c, "labels");
					cc_get_labels(c, ymap_get(s, "labels"), &sub->labels);
					cc_pop(c, o4);
					for (uint32_t q = 0; tp && q < s->n; q++)
						if (ymap_val(s, q) == tp)
							cc_err(c, ymap_key(s, q),
							       "%s.trafficPolicy is not supported per subset: set it for the "
							       "whole host",
							       c->path.s);
					for (uint32_t q = 0; sub->name && q < d->n_subsets; q++)
						if (d->subsets[q].name && !strcmp(d->subsets[q].name, sub->name))
							cc_err(c, name, "duplicate subset \"%s\" (first at line %u)", sub->name,
							       d->subsets[q].at.line);
					if (sub->name)
						d->n_subsets++;
				}
				cc_pop(c, o3);
			}
		}
		cc_pop(c, o2);
	}
	if (!ymap_get(spec, "host"))
		cc_err(c, spec, "spec.host is required: name the Service this DestinationRule applies to");
	cc_pop(c, old);
	if (d->host)
		ptrvec_push(&c->drs, d);
}

/* ---- documents ---- */

static bool api_version_is(const char *v, const char *const *ok)
{
	for (; *ok; ok++)
		if (!strcmp(v, *ok))
			return true;
	return false;
}

static void read_object(struct cctx *c, const struct ynode *obj, bool in_list);

static void read_list(struct cctx *c, const struct ynode *obj)
{
	static const char *const list_fields[] = { "apiVersion", "items", "kind", "metadata", NULL };
	cc_check_fields(c, obj, list_fields);
	const struct ynode *items = ymap_get(obj, "items");
	size_t old = cc_push_key(c, "items");
	if (items && !ynode_is_null(items) && cc_want(c, items, YN_SEQ)) {
		for (uint32_t i = 0; i < items->n; i++) {
			size_t o2 = cc_push_index(c, i);
			read_object(c, items->items[i], true);
			cc_pop(c, o2);
		}
	}
	cc_pop(c, old);
}

static void read_object(struct cctx *c, const struct ynode *obj, bool in_list)
{
	static const char *const v1[] = { "v1", NULL };
	static const char *const istio[] = { "networking.istio.io/v1alpha3", "networking.istio.io/v1beta1",
					     "networking.istio.io/v1", NULL };
	if (obj->type != YN_MAP) {
		cc_err(c, obj, "%s must be a Kubernetes object (a mapping with apiVersion and kind), got %s",
		       c->path.len ? c->path.s : "a document", cc_type_name(obj));
		return;
	}
	const struct ynode *kn = ymap_get(obj, "kind"), *av = ymap_get(obj, "apiVersion");
	if (!kn || kn->type != YN_SCALAR || ynode_is_null(kn)) {
		cc_err(c, kn ? kn : obj, "%s%sobject has no kind", c->path.s, c->path.len ? ": " : "");
		return;
	}
	if (!av || av->type != YN_SCALAR || ynode_is_null(av)) {
		cc_err(c, av ? av : obj, "%s%s%s has no apiVersion", c->path.s, c->path.len ? ": " : "", cc_clip_node(c, kn));
		return;
	}
	const char *kind = kn->str, *api = av->str;
	bool service = !strcmp(kind, "Service"), pod = !strcmp(kind, "Pod");
	bool vs = !strcmp(kind, "VirtualService"), dr = !strcmp(kind, "DestinationRule");
	bool gw = !strcmp(kind, "Gateway") && !strncmp(api, "networking.istio.io/", 20);
	bool list = !strcmp(kind, "List") || (strlen(kind) > 4 && !strcmp(kind + strlen(kind) - 4, "List"));
	if (list && !strcmp(api, "v1") && !in_list) {
		read_list(c, obj);
		return;
	}
	/* a Service of another API group (Knative's serving.knative.dev) is another kind */
	if ((service || pod) && strchr(api, '/'))
		service = pod = false;
	if ((service || pod) && !api_version_is(api, v1)) {
		cc_err(c, av, "apiVersion %s is not served for kind %s: use v1", cc_quote_node(c, av), kind);
		return;
	}
	if ((vs || dr || gw) && !api_version_is(api, istio)) {
		if (!strncmp(api, "networking.istio.io/", 20)) {
			cc_err(c, av,
			       "apiVersion %s is not served for kind %s: use networking.istio.io/v1, v1beta1 or "
			       "v1alpha3",
			       cc_quote_node(c, av), kind);
			return;
		}
		vs = dr = gw = false;
	}
	c->st->objects++;
	if (service)
		cc_read_service(c, obj);
	else if (pod)
		cc_read_pod(c, obj);
	else if (vs)
		cc_read_virtual_service(c, obj);
	else if (dr)
		cc_read_destination_rule(c, obj);
	else if (gw)
		cc_read_gateway(c, obj);
	else {
		c->st->skipped++;
		if (c->o->skipped_log) {
			const struct ynode *md = ymap_get(obj, "metadata");
			const struct ynode *name = ymap_get(md, "name");
			fprintf(c->o->skipped_log, "%s:%u:%u: skipped %s %s (%s): not a kind sluice reads\n", c->file->file,
				obj->line, obj->col, cc_clip_node(c, kn),
				name && name->type == YN_SCALAR ? cc_clip_node(c, name) : "(unnamed)", cc_clip_node(c, av));
		}
	}
}

static void on_document(void *ctx, const struct mark *file, struct ynode *root)
{
	struct cctx *c = ctx;
	c->file = file;
	cc_pop(c, 0);
	read_object(c, root, false);
}

/* ---- resolution ---- */

struct index {
	struct strmap services;      /* "name.ns" -> service */
	struct strmap pods_by_label; /* "ns\x1key\x1value" -> struct ptrvec * of pods */
	struct strmap dr_by_service; /* service key -> dr */
	struct strmap pod_ips;       /* "ip" -> pod */
	struct ptrvec vecs;          /* owned ptrvecs, for freeing */
};

/* Istio host forms: name, name.ns, name.ns.svc, name.ns.svc.DOMAIN. */
static struct service *cc_resolve_host(struct cctx *c, struct index *ix, const char *host, const char *ns)
{
	char buf[512];
	const char *dot = strchr(host, '.');
	if (!dot) {
		snprintf(buf, sizeof(buf), "%s.%s", host, ns);
		return strmap_get(&ix->services, buf);
	}
	const char *ns_start = dot + 1, *ns_end = strchr(ns_start, '.');
	if (!ns_end)
		return strmap_get(&ix->services, host);
	const char *rest = ns_end + 1;
	if (strcmp(rest, "svc")) {
		size_t dl = strlen(c->domain);
		if (strncmp(rest, "svc.", 4) || strcmp(rest + 4, c->domain) || !dl)
			return NULL;
	}
	snprintf(buf, sizeof(buf), "%.*s", (int)(ns_end - host), host);
	return strmap_get(&ix->services, buf);
}

static void cc_host_error(struct cctx *c, struct index *ix, const struct mark *at, const char *host, const char *ns)
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

static void check_vip_not_pod(struct cctx *c, struct index *ix, const struct plan_addr *vip, const struct mark *at,
			      const char *field)
{
	char ip[INET6_ADDRSTRLEN];
	inet_ntop(vip->family, vip->addr, ip, sizeof(ip));
	const struct pod *p = strmap_get(&ix->pod_ips, ip);
	if (p)
		cc_err_at(c, at, "%s %s is also the IP of pod %s/%s (%s:%u): as a VIP it would take over every connection "
			  "made to that pod", field, cc_quote(c, ip), p->ns, p->name, p->at.file, p->at.line);
}

static void cc_index_build(struct cctx *c, struct index *ix)
{
	char ipbuf[INET6_ADDRSTRLEN];
	struct strmap vips = { 0 };
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
	for (size_t i = 0; i < c->pods.n; i++) {
		struct pod *p = c->pods.v[i];
		for (uint32_t l = 0; l < p->labels.n; l++) {
			char *key = cc_join(c->keep, '\x01', p->ns, p->labels.v[l].key, p->labels.v[l].val);
			struct ptrvec *pv = strmap_get(&ix->pods_by_label, key);
			if (!pv) {
				pv = calloc(1, sizeof(*pv));
				if (!pv)
					abort();
				strmap_put(&ix->pods_by_label, key, pv);
				ptrvec_push(&ix->vecs, pv);
			}
			ptrvec_push(pv, p);
		}
		for (size_t a = 0; a < p->n_ips; a++) {
			inet_ntop(p->ips[a].family, p->ips[a].addr, ipbuf, sizeof(ipbuf));
			struct pod *other = strmap_get(&ix->pod_ips, ipbuf);
			if (other && !p->terminated && !other->terminated) {
				cc_err_at(c, &p->at, "pod %s/%s has IP %s, already used by pod %s/%s (%s:%u)", p->ns, p->name,
					  ipbuf, other->ns, other->name, other->at.file, other->at.line);
				continue;
			}
			if (!other || other->terminated)
				strmap_put(&ix->pod_ips, arena_strdup(c->keep, ipbuf), p);
		}
	}
	/* a VIP that is also a pod's IP (ready or not) would take over the connections made to that pod */
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

static void cc_index_free(struct index *ix)
{
	for (size_t i = 0; i < ix->vecs.n; i++) {
		ptrvec_free(ix->vecs.v[i]);
		free(ix->vecs.v[i]);
	}
	ptrvec_free(&ix->vecs);
	strmap_free(&ix->services);
	strmap_free(&ix->pods_by_label);
	strmap_free(&ix->dr_by_service);
	strmap_free(&ix->pod_ips);
}

/* A destination resolved against the Services and DestinationRules. */
struct rdest {
	struct service *svc;
	const struct subset *subset;
	const struct svc_port *port;
	uint32_t weight;
	bool ok;
};

static bool port_is_tcp_only(const struct svc_port *p)
{
	const char *n = p->app_protocol ? p->app_protocol : p->name;
	return n && (!strcmp(n, "tcp") || !strncmp(n, "tcp-", 4));
}

static const char *cc_port_list(struct cctx *c, const struct service *s)
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

static bool cc_resolve_dest(struct cctx *c, struct index *ix, const struct vs *v, const struct dest *d, struct rdest *r)
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

static bool labels_match(const struct labels *have, const struct labels *want)
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

static bool has_family(const struct plan_service *ps, uint8_t family)
{
	for (size_t i = 0; i < ps->n_vips; i++)
		if (ps->vips[i].family == family)
			return true;
	for (size_t i = 0; i < ps->n_gateway_addrs; i++)
		if (ps->gateway_addrs[i].family == family)
			return true;
	return false;
}

/* The ready pods a destination reaches: Service selector, subset labels, then targetPort. */
static bool cc_collect_endpoints(struct cctx *c, struct index *ix, const struct plan_service *ps, const struct rdest *r,
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
	char key[768];
	for (uint32_t i = 0; i < want.n; i++) {
		snprintf(key, sizeof(key), "%s\x01%s\x01%s", s->ns, want.v[i].key, want.v[i].val);
		struct ptrvec *pv = strmap_get(&ix->pods_by_label, key);
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
		    !labels_match(&p->labels, &want))
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
			if (!has_family(ps, p->ips[a].family))
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

static int service_cmp(const void *pa, const void *pb)
{
	const struct plan_service *a = pa, *b = pb;
	int r = strcmp(a->namespace, b->namespace);
	if (!r)
		r = strcmp(a->name, b->name);
	if (!r)
		r = (a->port > b->port) - (a->port < b->port);
	if (!r)
		r = (a->protocol > b->protocol) - (a->protocol < b->protocol);
	return r;
}

/* The resolved destinations of route r, which follow those of the routes before it. */
static const struct rdest *route_dests(struct rdest *const *resolved, struct route *const *lists, const struct route *r)
{
	const struct rdest *rd = resolved[r->tcp];
	for (const struct route *q = lists[r->tcp]; q < r; q++)
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
		pd->percent = sum ? 100.0 * rd[j].weight / (double)sum : 0;
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

/* Ingress: each server of each Gateway the VirtualService binds becomes a (gateway address, port)
 * entry with the route that serves that port. Returns whether any route was used. */
static bool gateway_entries(struct cctx *c, struct index *ix, struct vs *v, struct rdest *const *resolved,
			    struct route *const *lists, bool valid, struct ptrvec *out)
{
	bool used = false;
	for (uint32_t g = 0; g < v->n_gateways; g++) {
		struct gateway *gw = find_gateway(c, v->gateways[g], v->ns);
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
			if (!valid)
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
			struct entry *e = arena_alloc(c->keep, sizeof(*e));
			struct plan_service *ps = &e->ps;
			e->addr_at = gw->addr_at;
			e->kind = "Gateway";
			e->key = gw->key;
			ps->name = gw->name;
			ps->namespace = gw->ns;
			ps->port = srv->port;
			ps->protocol = IPPROTO_TCP;
			ps->gateway = gw->key;
			ps->gateway_port = srv->port;
			ps->route = v->key;
			memcpy(ps->gateway_addrs, gw->addrs, sizeof(gw->addrs));
			ps->n_gateway_addrs = gw->n_addrs;
			const struct rdest *rd = route_dests(resolved, lists, r);
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

static void cc_build_plan(struct cctx *c, struct index *ix, struct plan *plan)
{
	struct ptrvec out = { 0 };
	bool over_limit = false;
	for (size_t vi = 0; vi < c->vss.n; vi++) {
		struct vs *v = c->vss.v[vi];
		/* destinations resolve once per VirtualService: their hosts are relative to its namespace */
		struct route *lists[2] = { v->http, v->tcp };
		uint32_t counts[2] = { v->n_http, v->n_tcp };
		struct rdest *resolved[2];
		bool valid = true;
		struct ptrvec routed = { 0 };  /* the Services of the hosts this VirtualService routes */
		for (int l = 0; l < 2; l++) {
			size_t total = 0;
			for (uint32_t i = 0; i < counts[l]; i++)
				total += lists[l][i].n_dests;
			resolved[l] = arena_alloc(c->keep, (total + 1) * sizeof(struct rdest));
			size_t k = 0;
			for (uint32_t i = 0; i < counts[l]; i++) {
				struct route *r = &lists[l][i];
				uint64_t sum = 0;
				bool route_ok = true;
				for (uint32_t j = 0; j < r->n_dests; j++, k++) {
					struct dest *d = &r->dests[j];
					route_ok = cc_resolve_dest(c, ix, v, d, &resolved[l][k]) && route_ok;
					if (d->weight == -2)
						route_ok = false;
					sum += d->weight > 0 ? (uint64_t)d->weight : 0;
					for (uint32_t q = 0; q < j && resolved[l][k].ok; q++) {
						struct rdest *a = &resolved[l][k - j + q];
						if (a->ok && a->svc == resolved[l][k].svc &&
						    a->subset == resolved[l][k].subset && a->port == resolved[l][k].port) {
							cc_err_at(c, &d->at,
								  "destination %s subset %s appears twice in this route (first "
								  "at line %u): merge their weights",
								  resolved[l][k].svc->key, d->subset ? d->subset : "(none)",
								  r->dests[q].at.line);
							route_ok = false;
						}
					}
					if (resolved[l][k].ok && resolved[l][k].port->proto == 0) {
						cc_err_at(c, &d->at, "Service %s port %u is SCTP: sluice splits TCP and UDP only",
							  resolved[l][k].svc->key, resolved[l][k].port->port);
						route_ok = false;
					}
					resolved[l][k].weight = r->n_dests == 1 ? 100 : d->weight > 0 ? (uint32_t)d->weight : 0;
				}
				if (r->n_dests > 1 && sum == 0 && route_ok) {
					cc_err_at(c, &r->at,
						  "the weights of the %u destinations of this route sum to 0: give at least one "
						  "a positive weight",
						  r->n_dests);
					route_ok = false;
				}
				valid = valid && route_ok;
			}
		}
		bool gw_used = gateway_entries(c, ix, v, resolved, lists, valid, &out);
		for (uint32_t h = 0; !v->mesh && h < v->n_hosts; h++)
			if (strcmp(v->hosts[h], "*"))
				cc_err_at(c, &v->hosts_at[h],
					  "host %s: at a Gateway, choosing a VirtualService by Host needs a proxy, and "
					  "sluice sees connections; use \"*\" (one VirtualService per Gateway port)",
					  cc_quote(c, v->hosts[h]));
		for (uint32_t h = 0; v->mesh && h < v->n_hosts; h++) {
			const char *host = v->hosts[h];
			struct service *s = cc_resolve_host(c, ix, host, v->ns);
			if (!s) {
				cc_host_error(c, ix, &v->hosts_at[h], host, v->ns);
				continue;
			}
			if (s->routed_by == v) {
				cc_err_at(c, &v->hosts_at[h], "host %s is listed twice in spec.hosts (as %s and %s)",
					  s->key, cc_clip(c, s->routed_at_host), cc_clip(c, v->hosts[h]));
				continue;
			}
			if (s->routed_by) {
				cc_err_at(c, &v->hosts_at[h],
					  "host %s is already routed by VirtualService %s/%s (%s:%u): one VirtualService per "
					  "host, merge their routes",
					  s->key, s->routed_by->ns, s->routed_by->name, s->routed_by->at.file,
					  s->routed_by->at.line);
				continue;
			}
			s->routed_by = v;
			s->routed_at_host = host;
			if (s->unsupported) {
				cc_err_at(c, &s->unsupported_at, "Service %s: %s", s->key, s->unsupported);
				continue;
			}
			if (s->external_name || s->headless || !s->has_cluster_ip || !s->n_vips) {
				cc_err_at(c, &v->hosts_at[h],
					  "Service %s has no cluster IP (%s): sluice rewrites connections to a VIP; use a "
					  "ClusterIP Service as `kubectl get svc -o yaml` prints it",
					  s->key, s->external_name ? "type ExternalName" :
					  s->headless ? "headless" : "spec.clusterIP unset");
				continue;
			}
			if (!s->has_selector) {
				cc_err_at(c, &s->at,
					  "Service %s has no selector: sluice finds endpoints through the selector's pods",
					  s->key);
				continue;
			}
			ptrvec_push(&routed, s);
			for (uint32_t pi = 0; pi < s->n_ports; pi++) {
				const struct svc_port *sp = &s->ports[pi];
				struct route *r = pick_route(v, sp);
				if (!r)
					continue;
				r->used = true;
				if (!valid)
					continue;
				if (sp->proto == 0) {
					cc_err_at(c, &sp->at, "Service %s port %u is SCTP: sluice splits TCP and UDP only",
						  s->key, sp->port);
					continue;
				}
				if (out.n >= PLAN_MAX_SERVICES) {
					if (!over_limit)
						cc_err_at(c, &v->hosts_at[h],
							  "more than %d service ports are routed: the limit of sluice",
							  PLAN_MAX_SERVICES);
					over_limit = true;
					break;
				}
				struct entry *e = arena_alloc(c->keep, sizeof(*e));
				struct plan_service *ps = &e->ps;
				e->addr_at = s->vip_at;
				e->kind = "Service";
				e->key = s->key;
				ps->name = s->name;
				ps->namespace = s->ns;
				memcpy(ps->vips, s->vips, sizeof(ps->vips));
				ps->n_vips = s->n_vips;
				ps->port = sp->port;
				ps->protocol = sp->proto;
				ps->route = v->key;
				const struct dr *dr = strmap_get(&ix->dr_by_service, s->key);
				ps->lb = dr ? dr->lb : PLAN_LB_ROUND_ROBIN;
				bool ok = fill_destinations(c, ix, ps, r, route_dests(resolved, lists, r), sp, s->key);
				if (ok)
					ptrvec_push(&out, ps);
			}
		}
		if (routed.n) {
			check_route_ports(c, &routed, v->http, v->n_http);
			check_route_ports(c, &routed, v->tcp, v->n_tcp);
		}
		for (int l = 0; l < 2; l++) {
			for (uint32_t i = 0; i < counts[l]; i++) {
				struct route *r = &lists[l][i];
				if (r->used || r->port_missing || !valid || !(routed.n || gw_used) || v->read_errors)
					continue;
				if (l == 0 && v->n_http)
					cc_err_at(c, &r->at,
						  "spec.http[%u] is never used: an earlier route takes every port it matches, or "
						  "the Service's ports are UDP or named tcp (use a tcp route)",
						  r->index);
				else
					cc_err_at(c, &r->at,
						  "spec.tcp[%u] is never used: an earlier route takes every port it matches, or "
						  "http routes serve the Service's TCP ports",
						  r->index);
			}
		}
		ptrvec_free(&routed);
	}
	/* -v: a Service without a VirtualService stays kube-proxy's; say so rather than leave it unsaid */
	for (size_t i = 0; c->o->skipped_log && i < c->services.n; i++) {
		const struct service *s = c->services.v[i];
		if (!s->routed_by)
			fprintf(c->o->skipped_log, "%s:%u:%u: skipped Service %s: no VirtualService routes it, "
				"kube-proxy serves it\n", s->at.file, s->at.line, s->at.col, s->key);
	}
	check_entry_keys(c, &out);
	plan->n_services = out.n;
	plan->services = arena_alloc(c->keep, (out.n ? out.n : 1) * sizeof(*plan->services));
	for (size_t i = 0; i < out.n; i++)
		plan->services[i] = *(struct plan_service *)out.v[i];
	ptrvec_free(&out);
	if (plan->n_services > 1)
		qsort(plan->services, plan->n_services, sizeof(*plan->services), service_cmp);
	for (size_t i = 0; i < plan->n_services; i++) {
		c->st->destinations += plan->services[i].n_destinations;
		for (size_t j = 0; j < plan->services[i].n_destinations; j++)
			c->st->endpoints += plan->services[i].destinations[j].n_endpoints;
	}
	c->st->services = plan->n_services;
}

int compile_plan(const struct compile_opts *o, const struct compile_input *in, size_t n_in, struct plan *plan,
		 struct diags *d, struct compile_stats *stats)
{
	struct compile_stats local;
	struct arena *keep = calloc(1, sizeof(*keep));
	if (!keep)
		abort();
	if (!stats)
		stats = &local;
	memset(stats, 0, sizeof(*stats));
	memset(plan, 0, sizeof(*plan));
	struct cctx c = {
		.o = o,
		.default_ns = o->namespace ? o->namespace : "default",
		.domain = o->cluster_domain ? o->cluster_domain : "cluster.local",
		.d = d,
		.keep = keep,
		.st = stats,
	};
	size_t errors_before = d->n;
	if (o->gateway_address) {
		struct mark opt = { .file = "--gateway-address", .line = 1, .col = 1 };
		const char *why = NULL;
		if (!name_parse_addr(o->gateway_address, &c.gateway_address))
			why = "is not an IP address";
		else
			why = name_vip_error(&c.gateway_address);
		if (why)
			diag_error(d, &opt, "%s %s", cc_quote(&c, o->gateway_address), why);
	}
	const char *ns_why = o->namespace ? name_dns1123_label_error(o->namespace, strlen(o->namespace)) : NULL;
	if (ns_why) {
		/* every object would land in that namespace: nothing else can be checked */
		struct mark opt = { .file = "-n", .line = 1, .col = 1 };
		diag_error(d, &opt, "namespace %s %s", cc_quote(&c, o->namespace), ns_why);
		n_in = 0;
	}
	struct mark *files = calloc(n_in ? n_in : 1, sizeof(*files));
	if (!files)
		abort();
	for (size_t i = 0; i < n_in; i++) {
		files[i] = (struct mark){ .file = in[i].name, .file_index = (uint32_t)i, .line = 1, .col = 1 };
		size_t docs = yaml_each_document(in[i].buf, in[i].len, &files[i], d, on_document, &c);
		if (!docs && d->n == errors_before)
			diag_error(d, &files[i], "no objects in this file: it is empty or holds only comments");
		errors_before = d->n;
	}
	stats->files = n_in;
	if (!n_in && !ns_why) {
		struct mark none = { .file = "sluice", .line = 1, .col = 1 };
		diag_error(d, &none, "no input: give -f FILE, -f DIR or -f -");
	}
	struct index ix = { 0 };
	cc_index_build(&c, &ix);
	cc_build_plan(&c, &ix, plan);
	cc_index_free(&ix);
	ptrvec_free(&c.services);
	ptrvec_free(&c.pods);
	ptrvec_free(&c.vss);
	ptrvec_free(&c.drs);
	ptrvec_free(&c.gateways);
	strmap_free(&c.objects);
	plan->arena = keep;
	free(files);  /* marks copied into diagnostics name in[].name, which outlives them */
	diags_sort(d);
	if (d->n) {
		plan_free(plan);
		return -1;
	}
	return 0;
}

/* ---- reading files ---- */

static void sources_add(struct sources *s, const char *name, unsigned char *buf, size_t len)
{
	if (s->n == s->cap) {
		s->cap = s->cap ? s->cap * 2 : 8;
		s->v = realloc(s->v, s->cap * sizeof(*s->v));
		if (!s->v)
			abort();
	}
	s->v[s->n++] = (struct compile_input){ .name = strdup(name), .buf = buf, .len = len };
}

static void path_error(struct diags *d, const char *path, const char *what)
{
	struct mark m = { .file = path, .file_index = UINT32_MAX, .line = 1, .col = 1 };
	diag_error(d, &m, "%s", what);
}

static bool yaml_name(const char *name)
{
	const char *dot = strrchr(name, '.');
	return dot && (!strcmp(dot, ".yaml") || !strcmp(dot, ".yml") || !strcmp(dot, ".json"));
}

static int name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int read_path(struct sources *s, const char *path, bool explicit, struct diags *d, int depth)
{
	struct stat st;
	if (stat(path, &st)) {
		char msg[256];
		snprintf(msg, sizeof(msg), "cannot read: %s", strerror(errno));
		path_error(d, path, msg);
		return -1;
	}
	if (S_ISDIR(st.st_mode)) {
		if (depth > 32) {
			path_error(d, path, "directories nest too deep (a symlink loop?)");
			return -1;
		}
		DIR *dir = opendir(path);
		if (!dir) {
			char msg[256];
			snprintf(msg, sizeof(msg), "cannot read directory: %s", strerror(errno));
			path_error(d, path, msg);
			return -1;
		}
		size_t files_before = s->n;
		struct ptrvec names = { 0 };
		struct dirent *e;
		while ((e = readdir(dir)))
			if (e->d_name[0] != '.')
				ptrvec_push(&names, strdup(e->d_name));
		closedir(dir);
		qsort(names.v, names.n, sizeof(*names.v), name_cmp);
		int rc = 0;
		for (size_t i = 0; i < names.n; i++) {
			char *child;
			if (asprintf(&child, "%s%s%s", path, path[strlen(path) - 1] == '/' ? "" : "/",
				     (char *)names.v[i]) < 0)
				abort();
			struct stat cst;
			if (!stat(child, &cst) && (S_ISDIR(cst.st_mode) || yaml_name(child)))
				rc |= read_path(s, child, false, d, depth + 1);
			free(child);
			free(names.v[i]);
		}
		ptrvec_free(&names);
		if (explicit && !rc && s->n == files_before) {
			path_error(d, path, "no .yaml, .yml or .json file in this directory");
			return -1;
		}
		return rc;
	}
	unsigned char *buf;
	size_t len;
	int rc = file_read(path, &buf, &len);
	if (rc) {
		char msg[256];
		snprintf(msg, sizeof(msg), "cannot read: %s", strerror(-rc));
		path_error(d, path, msg);
		return -1;
	}
	sources_add(s, path, buf, len);
	return 0;
}

int sources_read(struct sources *s, const char *path, struct diags *d)
{
	if (!strcmp(path, "-")) {
		unsigned char *buf;
		size_t len;
		int rc = file_read_fd(STDIN_FILENO, &buf, &len);
		if (rc) {
			path_error(d, "<stdin>", "cannot read standard input");
			return -1;
		}
		sources_add(s, "<stdin>", buf, len);
		return 0;
	}
	return read_path(s, path, true, d, 0);
}

void sources_free(struct sources *s)
{
	for (size_t i = 0; i < s->n; i++) {
		free((void *)s->v[i].name);
		free((void *)s->v[i].buf);
	}
	free(s->v);
	memset(s, 0, sizeof(*s));
}
