/* SPDX-License-Identifier: MIT */
/* The compile context every step of compile/ takes, and the helpers its readers share: errors at
 * a node, the field path, typed getters, name and address checks, metadata (YAML -> records). */
#ifndef SLUICE_COMPILE_CONTEXT_H
#define SLUICE_COMPILE_CONTEXT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/fieldpath.h"
#include "common/util.h"
#include "compile/compile.h"
#include "compile/records.h"
#include "compile/ytree.h"

/* cc_ marks what compile/ shares inside itself; compile.h is its API to the rest of sluice. */

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
	const struct strmap *outer;  /* the objects of inputs read before, when this reads a part of one */
	struct yaml_stream *stream;  /* non-NULL: a List's items come one by one (ytree.h) */
	struct arena *transient;     /* objects' keys and marks when they need not outlive the reading; NULL: keep */
	struct compile_stats *st;
};

/* A compile's context: its options, errors, the arena its records and plan live in, its figures. */
struct cctx cc_context(const struct compile_opts *o, struct diags *d, struct arena *keep, struct compile_stats *stats);

/* Errors, at a node of the current file or at a mark kept in a record. */
struct mark cc_node_mark(const struct cctx *c, const struct ynode *n);
void cc_err(struct cctx *c, const struct ynode *n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void cc_err_at(struct cctx *c, const struct mark *m, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* The field path (spec.http[0].route) travels with the walk so errors can name it. */
size_t cc_push_key(struct cctx *c, const char *key);

static inline size_t cc_push_index(struct cctx *c, uint32_t i)
{
	return fieldpath_push_index(&c->path, i);
}

static inline void cc_pop(struct cctx *c, size_t old)
{
	fieldpath_pop(&c->path, old);
}

/* Shapes and fields: each reports its error and returns false (or NULL). */
const char *cc_type_name(const struct ynode *n);
bool cc_want(struct cctx *c, const struct ynode *n, uint8_t type);
void cc_check_fields(struct cctx *c, const struct ynode *m, const char *const *known);
bool cc_known_field(const char *const *known, const char *key);
/* A mapping with only the members named in kept, as JSON (what the follower keeps of it). */
struct json_writer;
void cc_write_members(struct json_writer *w, const struct ynode *m, const char *const *kept);

/* Strings kept in the compile's arena, and values of the input as errors show them. */
char *cc_join(struct arena *a, char sep, const char *x, const char *y, const char *z);
const char *cc_keep_str(struct cctx *c, const struct ynode *n);
const char *cc_quote_len(struct cctx *c, const char *s, size_t len);
const char *cc_quote(struct cctx *c, const char *s);
const char *cc_quote_node(struct cctx *c, const struct ynode *n);
const char *cc_clip(struct cctx *c, const char *s);
const char *cc_clip_node(struct cctx *c, const struct ynode *n);

/* Typed getters of a field at c->path. */
bool cc_check_name(struct cctx *c, const struct ynode *n, const char *what,
		   const char *(*rule)(const char *s, size_t len));
const char *cc_get_str(struct cctx *c, const struct ynode *n);
const char *cc_get_name(struct cctx *c, const struct ynode *n, const char *what,
			const char *(*rule)(const char *s, size_t len));
bool cc_is_integer(const struct ynode *n);
bool cc_get_int(struct cctx *c, const struct ynode *n, long long min, long long max, long long *out);
bool cc_get_port(struct cctx *c, const struct ynode *n, uint16_t *out);
bool cc_get_bool(struct cctx *c, const struct ynode *n, bool *out);
uint8_t cc_get_protocol(struct cctx *c, const struct ynode *n, bool *ok);
void cc_get_labels(struct cctx *c, const struct ynode *n, struct labels *out);
bool cc_check_vip(struct cctx *c, const struct ynode *n, const struct plan_addr *a);

/* What every object has: metadata, and a kind/namespace/name no other object of the input takes. */
struct meta {
	const char *name, *ns;
	const struct ynode *labels;
	bool deleting;
	const struct ynode *node;
};

bool cc_open_object(struct cctx *c, const struct ynode *obj, const char *kind, struct meta *m);
const struct ynode *cc_open_spec(struct cctx *c, const struct ynode *obj, const char *kind, const char *key,
				 const char *const *fields, size_t *old);
void cc_check_export_to(struct cctx *c, const struct ynode *e);   /* VirtualService, DestinationRule */

#endif
