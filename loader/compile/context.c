// SPDX-License-Identifier: MIT
/* The compile context's helpers (context.h): errors at a node, the field path, typed getters, name
 * and address checks, metadata. Every reader of compile/ goes through them (YAML -> records). */
#include "compile/context.h"

#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "common/json.h"
#include "common/names.h"

struct mark cc_node_mark(const struct cctx *c, const struct ynode *n)
{
	struct mark m = *c->file;
	m.line = n->line;
	m.col = n->col;
	return m;
}

void cc_err(struct cctx *c, const struct ynode *n, const char *fmt, ...)
{
	struct mark m = cc_node_mark(c, n);
	va_list ap;
	va_start(ap, fmt);
	diag_verror(c->d, &m, fmt, ap);
	va_end(ap);
}

void cc_err_at(struct cctx *c, const struct mark *m, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	diag_verror(c->d, m, fmt, ap);
	va_end(ap);
}

size_t cc_push_key(struct cctx *c, const char *key)
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

const char *cc_type_name(const struct ynode *n)
{
	if (ynode_is_null(n))
		return "null";
	return n->type == YN_MAP ? "a mapping" : n->type == YN_SEQ ? "a list" : "a scalar";
}

bool cc_want(struct cctx *c, const struct ynode *n, uint8_t type)
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

bool cc_known_field(const char *const *known, const char *key)
{
	for (const char *const *f = known; *f; f++)
		if ((*f)[0] == key[0] && !strcmp(*f, key))
			return true;
	return false;
}

void cc_write_members(json_writer_t *w, const struct ynode *m, const char *const *kept)
{
	jsonw_start_object(w);
	for (uint32_t i = 0; i < m->n; i++) {
		const struct ynode *k = ymap_key(m, i);
		if (k->type == YN_SCALAR && cc_known_field(kept, k->str)) {
			jsonw_name(w, k->str);
			ytree_write_json(w, ymap_val(m, i), NULL, NULL);
		}
	}
	jsonw_end_object(w);
}

/* kubectl's strict validation: a field outside the schema is an error, with a suggestion. */
void cc_check_fields(struct cctx *c, const struct ynode *m, const char *const *known)
{
	for (uint32_t i = 0; i < m->n; i++) {
		const struct ynode *k = ymap_key(m, i);
		if (k->type != YN_SCALAR || cc_known_field(known, k->str))
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
char *cc_join(struct arena *a, char sep, const char *x, const char *y, const char *z)
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

const char *cc_keep_str(struct cctx *c, const struct ynode *n)
{
	return arena_strndup(c->keep, n->str, n->len);
}

/* A value of the input as an error quotes it: escaped, at most 64 bytes and its length (names.h). */
const char *cc_quote_len(struct cctx *c, const char *s, size_t len)
{
	char buf[NAME_QUOTE_CAP];
	return arena_strdup(c->keep, name_quote(s, len, buf, sizeof(buf)));
}

const char *cc_quote(struct cctx *c, const char *s)
{
	return cc_quote_len(c, s, strlen(s));
}

const char *cc_quote_node(struct cctx *c, const struct ynode *n)
{
	return n->type == YN_SCALAR ? cc_quote_len(c, n->str, n->len) : cc_type_name(n);
}

/* A value of the input that an error prints unquoted (a number, a keyword): as cc_quote() when it is
 * not short printable ASCII, so no control byte or huge value reaches the terminal. */
const char *cc_clip(struct cctx *c, const char *s)
{
	size_t len = strlen(s);
	bool plain = len <= NAME_QUOTE_MAX;
	for (size_t i = 0; plain && i < len; i++)
		plain = s[i] > 0x20 && s[i] < 0x7f;
	return plain ? s : cc_quote_len(c, s, len);
}

const char *cc_clip_node(struct cctx *c, const struct ynode *n)
{
	return n->type == YN_SCALAR ? (n->len == strlen(n->str) ? cc_clip(c, n->str) : cc_quote_node(c, n)) : cc_type_name(n);
}

/* A name read from n checked against a rule of names.h: "WHAT "value" is not a valid ...". A NUL
 * inside is the reader's error already: the name is what the rest of the compiler sees. */
bool cc_check_name(struct cctx *c, const struct ynode *n, const char *what,
		   const char *(*rule)(const char *s, size_t len))
{
	const char *why = rule(n->str, strlen(n->str));
	if (why)
		cc_err(c, n, "%s %s %s", what, cc_quote_node(c, n), why);
	return !why;
}

/* A string field: a scalar that is not null. Returns NULL (after an error) otherwise. */
const char *cc_get_str(struct cctx *c, const struct ynode *n)
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
const char *cc_get_name(struct cctx *c, const struct ynode *n, const char *what,
			const char *(*rule)(const char *s, size_t len))
{
	const char *s = cc_get_str(c, n);
	return s && cc_check_name(c, n, what, rule) ? s : NULL;
}

bool cc_is_integer(const struct ynode *n)
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

bool cc_get_int(struct cctx *c, const struct ynode *n, long long min, long long max, long long *out)
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

bool cc_get_port(struct cctx *c, const struct ynode *n, uint16_t *out)
{
	long long v;
	if (!cc_get_int(c, n, 1, 65535, &v))
		return false;
	*out = (uint16_t)v;
	return true;
}

bool cc_get_bool(struct cctx *c, const struct ynode *n, bool *out)
{
	if (n->type == YN_SCALAR && n->plain && (!strcmp(n->str, "true") || !strcmp(n->str, "false"))) {
		*out = n->str[0] == 't';
		return true;
	}
	cc_err(c, n, "%s must be true or false, got %s", c->path.s, cc_clip_node(c, n));
	return false;
}

uint8_t cc_get_protocol(struct cctx *c, const struct ynode *n, bool *ok)
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

/* Label maps: string keys to scalar values, as Kubernetes stores them, and names as it takes them
 * (a label Kubernetes refuses can be on no pod). */
void cc_get_labels(struct cctx *c, const struct ynode *n, struct labels *out)
{
	if (ynode_is_null(n) || !cc_want(c, n, YN_MAP))
		return;
	out->v = arena_alloc(c->keep, (n->n ? n->n : 1) * sizeof(*out->v));
	out->n = 0;
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
bool cc_check_vip(struct cctx *c, const struct ynode *n, const struct plan_addr *a)
{
	const char *why = name_vip_error(a);
	if (why)
		cc_err(c, n, "%s %s %s", c->path.s, cc_quote_node(c, n), why);
	return !why;
}

/* The top-level fields of every kind sluice reads. */
static const char *const object_fields[] = { "apiVersion", "kind", "metadata", "spec", "status", NULL };

static bool read_meta(struct cctx *c, const struct ynode *obj, const char *kind, struct meta *m)
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
			size_t lk = strnlen(kind, sizeof(what) - 6);   /* no printf: once per object */
			memcpy(what, kind, lk);
			memcpy(what + lk, " name", 6);
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
static bool unique_object(struct cctx *c, const char *kind, const struct meta *m)
{
	struct arena *a = c->transient ? c->transient : c->keep;
	const char *key = cc_join(a, '/', kind, m->ns, m->name);
	struct mark *at = arena_take(a, sizeof(*at));
	*at = cc_node_mark(c, m->node);
	const struct mark *first = c->outer && c->outer->len ? strmap_get(c->outer, key) : NULL;
	if (!first)
		first = strmap_add(&c->objects, key, at);   /* one look: the map holds the first */
	if (first) {
		cc_err(c, m->node, "duplicate %s %s/%s (first defined at %s:%u:%u)", kind, m->ns, m->name, first->file,
		       first->line, first->col);
		return false;
	}
	return true;
}

/* Every reader starts here: the object's top-level fields, its metadata, and no other object of its
 * kind, namespace and name in the input. */
bool cc_open_object(struct cctx *c, const struct ynode *obj, const char *kind, struct meta *m)
{
	cc_check_fields(c, obj, object_fields);
	return read_meta(c, obj, kind, m) && unique_object(c, kind, m);
}

/* The spec of obj, a mapping of the given fields, with the path at "spec": give *old to cc_pop.
 * NULL after an error ("Kind key has no spec"), with the path as it was. */
const struct ynode *cc_open_spec(struct cctx *c, const struct ynode *obj, const char *kind, const char *key,
				 const char *const *fields, size_t *old)
{
	const struct ynode *spec = ymap_get(obj, "spec");
	if (!spec || ynode_is_null(spec)) {
		cc_err(c, obj, "%s %s has no spec", kind, key);
		return NULL;
	}
	*old = cc_push_key(c, "spec");
	if (!cc_want(c, spec, YN_MAP)) {
		cc_pop(c, *old);
		return NULL;
	}
	cc_check_fields(c, spec, fields);
	return spec;
}

/* exportTo of a VirtualService or DestinationRule: "*" only, as sluice applies every rule node-wide. */
void cc_check_export_to(struct cctx *c, const struct ynode *e)
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
