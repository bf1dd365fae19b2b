// SPDX-License-Identifier: MIT
#include "compile/ytree.h"

#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "common/fieldpath.h"
#include "common/json.h"
#include "common/names.h"

struct frame {
	struct ynode *node;
	struct ptrvec kids;
	char *anchor;                /* in the document's arena */
};

struct builder {
	struct arena arena;          /* one document's nodes */
	struct strmap anchors;
	struct ptrvec stack;         /* struct frame *, reused from document to document */
	size_t depth;                /* frames of stack in use */
	struct ynode *root;
	size_t alias_nodes;
	bool failed;
	const struct mark *file;
	struct diags *d;
};

static struct mark at(const struct builder *b, uint32_t line, uint32_t col)
{
	struct mark m = *b->file;
	m.line = line;
	m.col = col;
	return m;
}

bool ytree_path_at(const struct ynode *n, uint32_t line, uint32_t col, struct fieldpath *p)
{
	if (n->line == line && n->col == col)
		return true;
	for (uint32_t i = 0; n->type != YN_SCALAR && i < n->n; i++) {
		const struct ynode *key = n->type == YN_MAP ? ymap_key(n, i) : NULL;
		const struct ynode *val = key ? ymap_val(n, i) : n->items[i];
		size_t old;
		if (key) {
			char part[NAME_QUOTE_MAX + 1];   /* a key reaches messages: printable and short */
			size_t k = 0;
			for (; k < key->len && k < NAME_QUOTE_MAX; k++)
				part[k] = key->str[k] > 0x20 && key->str[k] < 0x7f && key->str[k] != '"' ? key->str[k] : '?';
			part[k] = '\0';
			old = fieldpath_push_str(p, p->len ? "." : "", part);
		} else {
			old = fieldpath_push_index(p, i);
		}
		if ((key && key->line == line && key->col == col) || ytree_path_at(val, line, col, p))
			return true;
		fieldpath_pop(p, old);
	}
	return false;
}

struct ynode *ymap_get(const struct ynode *m, const char *key)
{
	if (!m || m->type != YN_MAP)
		return NULL;
	for (uint32_t i = 0; i < m->n; i++) {
		struct ynode *k = ymap_key(m, i);
		if (k->type == YN_SCALAR && !strcmp(k->str, key))
			return ymap_val(m, i);
	}
	return NULL;
}

bool ynode_is_null(const struct ynode *n)
{
	if (!n)
		return true;
	if (n->type != YN_SCALAR || !n->plain)
		return false;
	return !n->len || !strcmp(n->str, "~") || !strcmp(n->str, "null") || !strcmp(n->str, "Null") ||
	       !strcmp(n->str, "NULL");
}

/* Counts the nodes a subtree stands for, so aliases cannot multiply a document unseen. */
static size_t subtree_size(const struct ynode *n, size_t budget)
{
	size_t size = 1;
	if (n->type == YN_SCALAR)
		return 1;
	uint32_t kids = n->type == YN_MAP ? 2 * n->n : n->n;
	for (uint32_t i = 0; i < kids && size <= budget; i++)
		size += subtree_size(n->items[i], budget - size);
	return size;
}

static void attach(struct builder *b, struct ynode *n)
{
	if (!b->depth) {
		b->root = n;
		return;
	}
	struct frame *f = b->stack.v[b->depth - 1];
	ptrvec_push(&f->kids, n);
}

static struct ynode *new_node(struct builder *b, uint8_t type, const yaml_mark_t *m)
{
	struct ynode *n = arena_alloc(&b->arena, sizeof(*n));
	n->type = type;
	n->line = (uint32_t)m->line + 1;
	n->col = (uint32_t)m->column + 1;
	return n;
}

static void remember_anchor(struct builder *b, const yaml_char_t *anchor, struct ynode *n)
{
	if (anchor)
		strmap_put(&b->anchors, arena_strdup(&b->arena, (const char *)anchor), n);
}

/* Keys must be unique scalars: a repeated key would silently override the first. Each offending
 * pair is reported and dropped, so readers see every key once. */
static void check_mapping(struct builder *b, struct ynode *m)
{
	struct strmap seen = { 0 };
	bool use_map = m->n > 16;  /* the linear scan is quadratic in the keys of a mapping */
	uint32_t kept = 0;
	for (uint32_t i = 0; i < m->n; i++) {
		struct ynode *k = ymap_key(m, i);
		struct mark w = at(b, k->line, k->col);
		if (k->type != YN_SCALAR) {
			/* readers take keys as strings: a document with another key is not read at all */
			diag_error(b->d, &w, "mapping keys must be plain strings");
			b->failed = true;
			continue;
		}
		if (k->plain && !strcmp(k->str, "<<")) {
			diag_error(b->d, &w, "YAML merge keys (<<) are not supported: write the fields out");
			continue;
		}
		const struct ynode *first = NULL;
		if (use_map) {
			first = strmap_get(&seen, k->str);
			if (!first)
				strmap_put(&seen, k->str, k);
		} else {
			for (uint32_t j = 0; j < kept && !first; j++)
				if (!strcmp(ymap_key(m, j)->str, k->str))
					first = ymap_key(m, j);
		}
		if (first) {
			char q[NAME_QUOTE_CAP];
			diag_error(b->d, &w, "duplicate key %s (first at line %u column %u)",
				   name_quote(k->str, k->len, q, sizeof(q)), first->line, first->col);
			continue;
		}
		m->items[2 * kept] = k;
		m->items[2 * kept + 1] = ymap_val(m, i);
		kept++;
	}
	m->n = kept;
	strmap_free(&seen);
}

static void close_frame(struct builder *b)
{
	struct frame *f = b->stack.v[--b->depth];
	struct ynode *n = f->node;
	size_t count = f->kids.n;
	n->items = arena_alloc(&b->arena, (count ? count : 1) * sizeof(*n->items));
	if (count)
		memcpy(n->items, f->kids.v, count * sizeof(*n->items));
	n->n = (uint32_t)(n->type == YN_MAP ? count / 2 : count);
	if (n->type == YN_MAP)
		check_mapping(b, n);
	if (f->anchor)
		strmap_put(&b->anchors, f->anchor, n);
	attach(b, n);
}

/* Frames and their child lists are kept for the next collection: no malloc per collection. */
static void open_frame(struct builder *b, uint8_t type, const yaml_event_t *ev, const yaml_char_t *anchor)
{
	if (b->depth == b->stack.n) {
		struct frame *f = calloc(1, sizeof(*f));
		if (!f)
			abort();
		ptrvec_push(&b->stack, f);
	}
	struct frame *f = b->stack.v[b->depth++];
	f->kids.n = 0;
	f->node = new_node(b, type, &ev->start_mark);
	f->anchor = anchor ? arena_strdup(&b->arena, (const char *)anchor) : NULL;
}

static void free_frames(struct builder *b)
{
	for (size_t i = 0; i < b->stack.n; i++) {
		struct frame *f = b->stack.v[i];
		ptrvec_free(&f->kids);
		free(f);
	}
	ptrvec_free(&b->stack);
}

static void reset_document(struct builder *b)
{
	b->depth = 0;
	strmap_free(&b->anchors);
	arena_reset(&b->arena);
	b->root = NULL;
	b->alias_nodes = 0;
}

static void handle_event(struct builder *b, yaml_event_t *ev)
{
	switch (ev->type) {
	case YAML_SCALAR_EVENT: {
		struct ynode *n = new_node(b, YN_SCALAR, &ev->start_mark);
		n->str = arena_strndup(&b->arena, (const char *)ev->data.scalar.value, ev->data.scalar.length);
		n->len = ev->data.scalar.length;
		n->plain = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
		/* an explicit tag (!!str, !!int) would change the type rules; refuse rather than guess */
		if (ev->data.scalar.tag && !ev->data.scalar.plain_implicit && !ev->data.scalar.quoted_implicit) {
			struct mark w = at(b, n->line, n->col);
			const char *tag = (const char *)ev->data.scalar.tag;
			char q[NAME_QUOTE_CAP];
			name_quote(tag, strlen(tag), q, sizeof(q));
			/* the tag as written when it is short and plain, as other errors print keywords */
			diag_error(b->d, &w, "YAML tags (%s) are not supported",
				   strlen(q) == strlen(tag) + 2 ? tag : q);
		}
		/* an escaped \0 would cut the string short everywhere it is compared or printed */
		if (memchr(n->str, 0, n->len)) {
			struct mark w = at(b, n->line, n->col);
			diag_error(b->d, &w, "a NUL character (\\0) in a string is not supported");
		}
		remember_anchor(b, ev->data.scalar.anchor, n);
		attach(b, n);
		break;
	}
	case YAML_SEQUENCE_START_EVENT:
		open_frame(b, YN_SEQ, ev, ev->data.sequence_start.anchor);
		break;
	case YAML_MAPPING_START_EVENT:
		open_frame(b, YN_MAP, ev, ev->data.mapping_start.anchor);
		break;
	case YAML_SEQUENCE_END_EVENT:
	case YAML_MAPPING_END_EVENT:
		close_frame(b);
		break;
	case YAML_ALIAS_EVENT: {
		const char *name = (const char *)ev->data.alias.anchor;
		struct ynode *target = strmap_get(&b->anchors, name);
		struct mark w = at(b, (uint32_t)ev->start_mark.line + 1, (uint32_t)ev->start_mark.column + 1);
		if (!target) {
			char q[NAME_QUOTE_CAP];
			name_quote(name, strlen(name), q, sizeof(q));
			diag_error(b->d, &w, "alias *%s refers to no anchor defined before it",
				   strlen(q) == strlen(name) + 2 ? name : q);
			b->failed = true;
			break;
		}
		b->alias_nodes += subtree_size(target, YAML_MAX_ALIAS_NODES + 1);
		if (b->alias_nodes > YAML_MAX_ALIAS_NODES) {
			diag_error(b->d, &w, "aliases expand this document past %d nodes", YAML_MAX_ALIAS_NODES);
			b->failed = true;
			break;
		}
		attach(b, target);
		break;
	}
	default:
		break;
	}
}

static void report_at_offset(struct builder *b, const unsigned char *buf, size_t off, const char *msg)
{
	uint32_t line = 1, col = 1;
	for (const unsigned char *p = buf; p < buf + off; p++) {
		if (*p == '\n') {
			line++;
			col = 1;
		} else if ((*p & 0xc0) != 0x80) {
			col++;
		}
	}
	struct mark w = at(b, line, col);
	diag_error(b->d, &w, "%s", msg);
}

/* libyaml reports a NUL late and vaguely; say plainly that the file is binary. */
static bool refuse_binary(struct builder *b, const unsigned char *buf, size_t len)
{
	const unsigned char *nul = memchr(buf, 0, len);
	if (!nul)
		return false;
	report_at_offset(b, buf, (size_t)(nul - buf), "binary file: NUL byte, not YAML text");
	return true;
}

static void parse_error(struct builder *b, const yaml_parser_t *p, const unsigned char *buf, size_t len)
{
	if (p->error == YAML_READER_ERROR) {
		/* the reader reports a byte offset, not a mark */
		report_at_offset(b, buf, p->problem_offset < len ? p->problem_offset : len,
				 "not UTF-8 text (a binary file?)");
		return;
	}
	struct mark w = at(b, (uint32_t)p->problem_mark.line + 1, (uint32_t)p->problem_mark.column + 1);
	size_t off = p->problem_mark.index;
	if (off < len && buf[off] == '\t') {
		diag_error(b->d, &w, "tab character in indentation: YAML indents with spaces only");
		return;
	}
	const char *problem = p->problem ? p->problem : "cannot parse";
	if (p->context)
		diag_error(b->d, &w, "invalid YAML: %s %s (line %zu column %zu)", problem, p->context,
			   p->context_mark.line + 1, p->context_mark.column + 1);
	else
		diag_error(b->d, &w, "invalid YAML: %s", problem);
}

size_t yaml_each_document(const unsigned char *buf, size_t len, const struct mark *file, struct diags *d,
			  ydoc_fn fn, void *ctx)
{
	struct builder b = { .file = file, .d = d };
	yaml_parser_t parser;
	yaml_event_t ev;
	size_t docs = 0;

	if (refuse_binary(&b, buf, len))
		return 0;
	if (!yaml_parser_initialize(&parser))
		abort();
	yaml_parser_set_input_string(&parser, buf, len);
	for (;;) {
		if (!yaml_parser_parse(&parser, &ev)) {
			parse_error(&b, &parser, buf, len);
			break;
		}
		yaml_event_type_t type = ev.type;
		if (type == YAML_DOCUMENT_END_EVENT) {
			if (b.root && !b.failed && !ynode_is_null(b.root)) {
				docs++;
				fn(ctx, file, b.root);
			}
			reset_document(&b);
			b.failed = false;
		} else if (!b.failed) {
			handle_event(&b, &ev);
		}
		yaml_event_delete(&ev);
		if (type == YAML_STREAM_END_EVENT)
			break;
	}
	reset_document(&b);
	arena_free(&b.arena);
	free_frames(&b);
	yaml_parser_delete(&parser);
	return docs;
}

static void write_json(json_writer_t *w, const struct ynode *n, ytree_json_hook hook, void *ctx, int depth)
{
	if (n->type == YN_MAP) {
		jsonw_start_object(w);
		for (uint32_t i = 0; i < n->n; i++) {
			const struct ynode *k = ymap_key(n, i), *v = ymap_val(n, i);
			if (k->type != YN_SCALAR || (hook && hook(ctx, w, n, k, v, depth)))
				continue;
			jsonw_name(w, k->str);
			write_json(w, v, hook, ctx, depth + 1);
		}
		jsonw_end_object(w);
	} else if (n->type == YN_SEQ) {
		jsonw_start_array(w);
		for (uint32_t i = 0; i < n->n; i++)
			write_json(w, n->items[i], hook, ctx, depth + 1);
		jsonw_end_array(w);
	} else if (n->plain) {
		jsonw_raw(w, n->len ? n->str : "null");
	} else {
		jsonw_string(w, n->str);
	}
}

void ytree_write_json(struct json_writer *w, const struct ynode *n, ytree_json_hook hook, void *ctx)
{
	write_json(w, n, hook, ctx, 0);
}
