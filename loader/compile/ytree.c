// SPDX-License-Identifier: MIT
#include "compile/ytree.h"

#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <yaml.h>

#include "common/fieldpath.h"
#include "common/json.h"
#include "common/names.h"

/* Past this many bytes read, a mapped input's pages behind the reader are given back. */
#define DROP_BEHIND (8u << 20)

struct frame {
	struct ynode *node;
	struct ptrvec kids;
	char *anchor;                /* in the document's arena */
};

struct builder {
	struct arena arena;          /* one document's nodes */
	struct arena *nodes;         /* where nodes are made: arena, or a streamed item's own */
	struct strmap anchors;
	struct ptrvec stack;         /* struct frame *, reused from document to document */
	size_t depth;                /* frames of stack in use */
	struct ynode *root;
	size_t alias_nodes;
	bool failed;
	const struct mark *file;
	struct diags *d;
	uint32_t line_base;          /* lines before the text libyaml was given (it starts at a document) */
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
		if (k->type == YN_SCALAR && k->str[0] == key[0] && !strcmp(k->str, key))
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
	return !n->len || (n->len == 1 && n->str[0] == '~') ||
	       (n->len == 4 && (!strcmp(n->str, "null") || !strcmp(n->str, "Null") || !strcmp(n->str, "NULL")));
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

/* A node, and room for extra bytes after it (a scalar's text): one allocation, every field set. */
static struct ynode *new_node_extra(struct builder *b, uint8_t type, uint32_t line, uint32_t col, size_t extra)
{
	struct ynode *n = arena_take(b->nodes, sizeof(*n) + extra);
	*n = (struct ynode){ .type = type, .line = line, .col = col };
	return n;
}

static struct ynode *new_node(struct builder *b, uint8_t type, uint32_t line, uint32_t col)
{
	return new_node_extra(b, type, line, col, 0);
}

/* A libyaml mark as a place in the whole input. */
static struct mark at_yaml(const struct builder *b, const yaml_mark_t *m)
{
	return at(b, b->line_base + (uint32_t)m->line + 1, (uint32_t)m->column + 1);
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
				if (ymap_key(m, j)->len == k->len && !strcmp(ymap_key(m, j)->str, k->str))
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
	n->items = arena_take(b->nodes, (count ? count : 1) * sizeof(*n->items));
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
static void open_frame(struct builder *b, uint8_t type, uint32_t line, uint32_t col, const yaml_char_t *anchor)
{
	if (b->depth == b->stack.n) {
		struct frame *f = calloc(1, sizeof(*f));
		if (!f)
			abort();
		ptrvec_push(&b->stack, f);
	}
	struct frame *f = b->stack.v[b->depth++];
	f->kids.n = 0;
	f->node = new_node(b, type, line, col);
	f->anchor = anchor ? arena_strdup(&b->arena, (const char *)anchor) : NULL;
}

/* A scalar of either reader: its text is copied into the document's arena. nul: the text may hold
 * a NUL (an escape of a quoted scalar). */
static struct ynode *add_scalar(struct builder *b, uint32_t line, uint32_t col, const char *s, size_t len, bool plain,
				bool nul)
{
	struct ynode *n = new_node_extra(b, YN_SCALAR, line, col, len + 1);
	char *text = (char *)(n + 1);
	memcpy(text, s, len);
	text[len] = 0;
	n->str = text;
	n->len = len;
	n->plain = plain;
	/* an escaped \0 would cut the string short everywhere it is compared or printed */
	if (nul && memchr(n->str, 0, n->len)) {
		struct mark w = at(b, n->line, n->col);
		diag_error(b->d, &w, "a NUL character (\\0) in a string is not supported");
	}
	return n;
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
	b->nodes = &b->arena;
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
		struct mark m = at_yaml(b, &ev->start_mark);
		/* an explicit tag (!!str, !!int) would change the type rules; refuse rather than guess */
		if (ev->data.scalar.tag && !ev->data.scalar.plain_implicit && !ev->data.scalar.quoted_implicit) {
			const char *tag = (const char *)ev->data.scalar.tag;
			char q[NAME_QUOTE_CAP];
			name_quote(tag, strlen(tag), q, sizeof(q));
			/* the tag as written when it is short and plain, as other errors print keywords */
			diag_error(b->d, &m, "YAML tags (%s) are not supported",
				   strlen(q) == strlen(tag) + 2 ? tag : q);
		}
		struct ynode *n = add_scalar(b, m.line, m.col, (const char *)ev->data.scalar.value, ev->data.scalar.length,
					     ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE, true);
		remember_anchor(b, ev->data.scalar.anchor, n);
		attach(b, n);
		break;
	}
	case YAML_SEQUENCE_START_EVENT:
	case YAML_MAPPING_START_EVENT: {
		struct mark m = at_yaml(b, &ev->start_mark);
		bool seq = ev->type == YAML_SEQUENCE_START_EVENT;
		open_frame(b, seq ? YN_SEQ : YN_MAP, m.line, m.col,
			   seq ? ev->data.sequence_start.anchor : ev->data.mapping_start.anchor);
		break;
	}
	case YAML_SEQUENCE_END_EVENT:
	case YAML_MAPPING_END_EVENT:
		close_frame(b);
		break;
	case YAML_ALIAS_EVENT: {
		const char *name = (const char *)ev->data.alias.anchor;
		struct ynode *target = strmap_get(&b->anchors, name);
		struct mark w = at_yaml(b, &ev->start_mark);
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
	struct mark w = at(b, b->line_base + line, col);
	diag_error(b->d, &w, "%s", msg);
}

/* Whether s (at a character's start) holds only what libyaml's reader takes: UTF-8, each
 * character printable as its reader decides (tab, line feed, carriage return, ' '..'~', U+0085,
 * U+00A0..U+D7FF, U+E000..U+FFFD, U+10000..U+10FFFF), each in its shortest form. Its reader decodes
 * 16 KiB at a time and stops at the first other character, before the documents of that stretch
 * are parsed: the fast reader cannot say where that would be, and leaves such an input to libyaml
 * whole. *used: up to where s was read (short of a character that s's end cuts, unless last). */
static bool plain_text(const unsigned char *s, size_t n, bool last, size_t *used)
{
	typedef unsigned char bytes16 __attribute__((vector_size(16)));   /* SSE2, NEON: GCC and clang */
	typedef signed char mask16 __attribute__((vector_size(16)));      /* a comparison's lanes: 0 or -1 */
	static const bool ok[128] = { ['\t'] = true, ['\n'] = true, ['\r'] = true, [' ' ... '~'] = true };
	size_t i = 0;
	while (i < n) {
		if (i + 16 <= n) {   /* sixteen bytes a step (240 MiB of kubectl's YAML come through here) */
			bytes16 x;
			uint64_t half[2];
			memcpy(&x, s + i, 16);
			mask16 bad = ((x < ' ') & (x != '\n') & (x != '\t') & (x != '\r')) | (x > '~');
			memcpy(half, &bad, 16);
			if (!(half[0] | half[1])) {
				i += 16;
				continue;
			}
		}
		unsigned char c = s[i];
		if (c < 0x80) {
			if (!ok[c])
				return false;
			i++;
			continue;
		}
		size_t len = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc0 ? 2 : 0;
		if (!len || c > 0xf4)
			return false;
		if (i + len > n) {
			*used = i;
			return !last;   /* the input's end cuts it: not UTF-8 */
		}
		uint32_t v = c & (0x7f >> len);
		for (size_t k = 1; k < len; k++) {
			if ((s[i + k] & 0xc0) != 0x80)
				return false;
			v = v << 6 | (s[i + k] & 0x3f);
		}
		if ((len == 2 && v < 0x80) || (len == 3 && v < 0x800) || (len == 4 && v < 0x10000))
			return false;   /* not its shortest form */
		if (!(v == 0x85 || (v >= 0xa0 && v <= 0xd7ff) || (v >= 0xe000 && v <= 0xfffd) ||
		      (v >= 0x10000 && v <= 0x10ffff)))
			return false;
		i += len;
	}
	*used = n;
	return true;
}

void ytree_scan_bytes(struct ytree_scan *sc, const unsigned char *s, size_t n, bool last, size_t *used)
{
	*used = n;
	if (sc->plain)
		sc->plain = plain_text(s, n, last, used);
	if (!sc->plain)
		*used = n;
	const unsigned char *nul = sc->plain || sc->nul != SIZE_MAX ? NULL : memchr(s, 0, *used);   /* plain: none */
	if (nul)
		sc->nul = sc->scanned + (size_t)(nul - s);
	sc->scanned += *used;
}

/* Bytes [from, to) of a file, from a character's start to the end or another's start. */
static int scan_range(int fd, size_t from, size_t to, struct ytree_scan *sc)
{
	enum { CHUNK = 1 << 20 };
	unsigned char *buf = malloc(CHUNK);
	size_t have = 0, len = to - from;   /* have: bytes at buf's start not scanned yet, a character cut by the last read */
	*sc = (struct ytree_scan){ .plain = true, .nul = SIZE_MAX };
	if (!buf)
		return -ENOMEM;
	while (sc->scanned < len) {
		size_t want = CHUNK - have < len - sc->scanned - have ? CHUNK - have : len - sc->scanned - have;
		ssize_t r = pread(fd, buf + have, want, (off_t)(from + sc->scanned + have));
		if (r <= 0) {
			free(buf);
			return r < 0 ? -errno : -EIO;   /* the file shrank */
		}
		size_t n = have + (size_t)r, used;
		ytree_scan_bytes(sc, buf, n, sc->scanned + n >= len, &used);
		have = n - used;
		memmove(buf, buf + used, have);
	}
	free(buf);
	return 0;
}

struct scan_half {
	int fd, err;
	size_t from, to;
	struct ytree_scan sc;
};

static void *scan_half(void *arg)
{
	struct scan_half *h = arg;
	h->err = scan_range(h->fd, h->from, h->to, &h->sc);
	return NULL;
}

/* A large file is looked at on two threads, split after a line's end (a character's end): the
 * envelope's 240 MiB take 70 ms on one. */
int ytree_scan_fd(int fd, size_t len, struct ytree_scan *sc)
{
	char probe[4096];
	ssize_t got = len >= (8u << 20) ? pread(fd, probe, sizeof(probe), (off_t)(len / 2)) : -1;
	const char *nl = got > 0 ? memchr(probe, '\n', (size_t)got) : NULL;
	if (!nl)
		return scan_range(fd, 0, len, sc);
	struct scan_half second = { .fd = fd, .from = len / 2 + (size_t)(nl - probe) + 1, .to = len };
	pthread_t t;
	if (pthread_create(&t, NULL, scan_half, &second))
		return scan_range(fd, 0, len, sc);
	int err = scan_range(fd, 0, second.from, sc);
	pthread_join(t, NULL);
	if (err || second.err)
		return err ? err : second.err;
	sc->plain = sc->plain && second.sc.plain;
	if (sc->nul == SIZE_MAX && second.sc.nul != SIZE_MAX)
		sc->nul = second.from + second.sc.nul;
	sc->scanned += second.sc.scanned;
	return 0;
}

/* libyaml reports a NUL late and vaguely; say plainly that the file is binary. */
static bool refuse_binary(struct builder *b, const unsigned char *buf, const struct ytree_scan *sc)
{
	if (sc->nul == SIZE_MAX)
		return false;
	report_at_offset(b, buf, sc->nul, "binary file: NUL byte, not YAML text");
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
	struct mark w = at_yaml(b, &p->problem_mark);
	size_t off = p->problem_mark.index;
	if (off < len && buf[off] == '\t') {
		diag_error(b->d, &w, "tab character in indentation: YAML indents with spaces only");
		return;
	}
	const char *problem = p->problem ? p->problem : "cannot parse";
	if (p->context)
		diag_error(b->d, &w, "invalid YAML: %s %s (line %zu column %zu)", problem, p->context,
			   b->line_base + p->context_mark.line + 1, p->context_mark.column + 1);
	else
		diag_error(b->d, &w, "invalid YAML: %s", problem);
}

/* ---- the fast reader: the YAML kubectl prints and the JSON the API sends ----
 *
 * libyaml reads kubectl's 240 MiB for 10,000 Services and 150,000 Pods in about 3 s. Most input is
 * written by machines in a small part of YAML: block mappings and sequences, one-line plain and
 * quoted scalars, {} and [], comments; or one JSON value. A document in that part is read here,
 * into the same nodes libyaml's events make, at the same lines and columns, through the same
 * builder (duplicate keys and NULs are refused there). At the first thing outside it (a tab, a
 * non-ASCII byte, a block scalar, an anchor, a tag, a multi-line scalar, flow YAML, odd
 * indentation...) the document is given to libyaml instead, from its first line: whatever libyaml
 * would say of it, valid or not, it says. tests/unit/ytree_fast_test.c holds the two to the same
 * trees and errors. */

enum fast_result { FAST_DOC, FAST_END, FAST_DECLINE };

struct fast {
	struct builder *b;
	const unsigned char *p, *end;
	const unsigned char *ls;     /* where the cursor's line starts */
	uint32_t line;               /* the cursor's line, from 1 */
	int indent;                  /* the current content line's indentation; -1 at a document's end */
	struct arena scratch;        /* quoted scalars with escapes, unescaped */
	bool declined;
	struct yaml_stream *stream;  /* NULL: a List is read whole */
	void *ctx;                   /* stream->item's */
	bool stream_next;            /* the value read next is the root's "items": stream it */
	bool stream_taken;           /* this document's "items" was met */
	struct arena items;          /* a streamed item's nodes */
	const unsigned char *dropped;   /* pages before it were given back; NULL: not a mapped file */
};

static void drop_behind(const unsigned char *p, const unsigned char **dropped);

/* Marks the document as beyond the fast reader; every function then returns at once. */
static bool decline(struct fast *f)
{
	f->declined = true;
	return false;
}

static uint32_t fcol(const struct fast *f, const unsigned char *p)
{
	return (uint32_t)(p - f->ls) + 1;
}

static bool at_blank(const struct fast *f, const unsigned char *p)   /* space, line break or the end */
{
	return p >= f->end || *p == ' ' || *p == '\n';
}

/* A line from ls: "---" or "..." followed by a blank at column 1 is a document marker. */
static bool marker_line(const struct fast *f, const unsigned char *ls, char c)
{
	return f->end - ls >= 3 && ls[0] == c && ls[1] == c && ls[2] == c && at_blank(f, ls + 3);
}

/* A comment from q, which is at its '#': printable ASCII only, as the rest. Its end, or NULL. */
static const unsigned char *comment_end(const struct fast *f, const unsigned char *q)
{
	for (; q < f->end && *q != '\n'; q++)
		if (*q < 0x20 || *q > 0x7e)
			return NULL;
	return q;
}

/* From the start of a line: past blank lines and comment lines to the first content of the next
 * content line (f->indent), or to a document's end: the end of the input or a "---" line
 * (f->indent -1, the cursor at the marker's line). */
static bool next_content(struct fast *f)
{
	while (f->p < f->end) {
		const unsigned char *q = f->p;
		if (q == f->ls && (marker_line(f, q, '-') || marker_line(f, q, '.') || *q == '%')) {
			if (*q != '-')
				return decline(f);   /* a document end marker or a directive */
			f->indent = -1;
			return true;
		}
		while (q < f->end && *q == ' ')
			q++;
		if (q < f->end && *q == '#' && !(q = comment_end(f, q)))
			return decline(f);
		if (q < f->end && *q != '\n') {
			f->p = q;
			f->indent = (int)(q - f->ls);
			return true;
		}
		if (q == f->end) {
			f->p = q;
			break;
		}
		f->p = f->ls = q + 1;
		f->line++;
	}
	f->indent = -1;
	return true;
}

/* After a node on the cursor's line: spaces, maybe a comment, the line's end; then the next content. */
static bool end_of_line(struct fast *f)
{
	const unsigned char *q = f->p;
	while (q < f->end && *q == ' ')
		q++;
	if (q < f->end && *q == '#') {
		if (q == f->p || !(q = comment_end(f, q)))
			return decline(f);   /* a comment needs a space before it */
	}
	if (q < f->end && *q != '\n')
		return decline(f);
	if (q == f->end) {
		f->p = q;
		f->indent = -1;
		return true;
	}
	f->p = f->ls = q + 1;
	f->line++;
	return next_content(f);
}

/* The indicators a plain scalar cannot start with (- ? : only before a blank; they are refused
 * here before anything). */
static bool plain_start(const struct fast *f, const unsigned char *p)
{
	if (p >= f->end)
		return false;
	switch (*p) {
	case '-':
		return !at_blank(f, p + 1);
	case '?': case ':': case ',': case '[': case ']': case '{': case '}': case '#': case '&': case '*':
	case '!': case '|': case '>': case '\'': case '"': case '%': case '@': case '`':
		return false;
	default:
		return *p > 0x20 && *p < 0x7f;
	}
}

/* The bytes a plain scalar's scan stops at: all but printable ASCII, ' ', ':' and '#'. */
static const bool plain_stop[256] = { [0 ... ' '] = true, [':'] = true, ['#'] = true, [0x7f ... 0xff] = true };

/* From p to the first byte a plain scalar's scan stops at, or end: sixteen bytes a step where the
 * lanes can be read in order (names, uids and times are tens of bytes; this was an eighth of a
 * compile byte by byte). */
static const unsigned char *skip_plain(const unsigned char *p, const unsigned char *end)
{
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	typedef unsigned char bytes16 __attribute__((vector_size(16)));
	typedef signed char mask16 __attribute__((vector_size(16)));
	for (; end - p >= 16; p += 16) {
		bytes16 x;
		uint64_t half[2];
		memcpy(&x, p, 16);
		mask16 stop = (x <= ' ') | (x == ':') | (x == '#') | (x >= 0x7f);
		memcpy(half, &stop, 16);
		if (half[0])
			return p + __builtin_ctzll(half[0]) / 8;
		if (half[1])
			return p + 8 + __builtin_ctzll(half[1]) / 8;
	}
#endif
	while (p < end && !plain_stop[*p])
		p++;
	return p;
}

/* A one-line plain scalar of block context from p: its end (trailing spaces left out), stopping at
 * ": ", ":" at the line's end, " #" or the line's end. NULL for a byte outside printable ASCII. */
static const unsigned char *plain_end(const struct fast *f, const unsigned char *p)
{
	const unsigned char *last = p;
	for (; p < f->end; p++) {
		p = skip_plain(p, f->end);
		if (p > last && p[-1] != ' ')
			last = p;
		if (p == f->end || *p == '\n')
			break;
		if (*p < 0x20 || *p > 0x7e)
			return NULL;
		if (*p == ':' && at_blank(f, p + 1))
			break;
		if (*p == '#' && p[-1] == ' ')
			break;
		if (*p != ' ')
			last = p + 1;
	}
	return last;
}

static bool hex4(const unsigned char *p, const unsigned char *end, unsigned *out)
{
	unsigned v = 0;
	if (end - p < 4)
		return false;
	for (int i = 0; i < 4; i++) {
		unsigned c = p[i];
		v <<= 4;
		if (c >= '0' && c <= '9')
			v |= c - '0';
		else if ((c | 0x20) >= 'a' && (c | 0x20) <= 'f')
			v |= (c | 0x20) - 'a' + 10;
		else
			return false;
	}
	*out = v;
	return true;
}

/* A double-quoted scalar on one line, its escapes the ones JSON writers use: the scalar node, the
 * cursor after its closing quote. */
static struct ynode *double_quoted(struct fast *f)
{
	const unsigned char *start = f->p, *p = start + 1;
	bool escaped = false;
	for (; p < f->end && *p != '"'; p++) {
		if (*p < 0x20 || *p > 0x7e) {
			decline(f);
			return NULL;
		}
		if (*p == '\\') {
			escaped = true;
			p++;
		}
	}
	if (p >= f->end) {
		decline(f);
		return NULL;
	}
	const char *text = (const char *)start + 1;
	size_t len = (size_t)(p - start) - 1;
	if (escaped) {
		char *out = arena_alloc(&f->scratch, len + 1), *o = out;   /* an escape never grows */
		for (const unsigned char *q = start + 1; q < p; q++) {
			if (*q != '\\') {
				*o++ = (char)*q;
				continue;
			}
			unsigned u;
			switch (*++q) {
			case '"': case '\\': case '/': *o++ = (char)*q; break;
			case 'n': *o++ = '\n'; break;
			case 't': *o++ = '\t'; break;
			case 'r': *o++ = '\r'; break;
			case 'b': *o++ = '\b'; break;
			case 'f': *o++ = '\f'; break;
			case 'u':
				if (!hex4(q + 1, p, &u) || (u >= 0xd800 && u <= 0xdfff)) {
					decline(f);
					return NULL;
				}
				q += 4;
				if (u < 0x80) {
					*o++ = (char)u;
				} else if (u < 0x800) {
					*o++ = (char)(0xc0 | u >> 6);
					*o++ = (char)(0x80 | (u & 0x3f));
				} else {
					*o++ = (char)(0xe0 | u >> 12);
					*o++ = (char)(0x80 | (u >> 6 & 0x3f));
					*o++ = (char)(0x80 | (u & 0x3f));
				}
				break;
			default:
				decline(f);
				return NULL;
			}
		}
		text = out;
		len = (size_t)(o - out);
	}
	struct ynode *n = add_scalar(f->b, f->line, fcol(f, start), text, len, false, escaped);
	f->p = p + 1;
	return n;
}

/* A single-quoted scalar on one line ('' is a quote). */
static struct ynode *single_quoted(struct fast *f)
{
	const unsigned char *start = f->p, *p = start + 1;
	bool doubled = false;
	for (;; p++) {
		if (p >= f->end || *p < 0x20 || *p > 0x7e) {
			decline(f);
			return NULL;
		}
		if (*p != '\'')
			continue;
		if (p + 1 >= f->end || p[1] != '\'')
			break;
		doubled = true;
		p++;
	}
	const char *text = (const char *)start + 1;
	size_t len = (size_t)(p - start) - 1;
	if (doubled) {
		char *out = arena_alloc(&f->scratch, len + 1), *o = out;
		for (size_t i = 0; i < len; i++) {
			*o++ = text[i];
			i += text[i] == '\'';   /* '' is one quote */
		}
		text = out;
		len = (size_t)(o - out);
	}
	struct ynode *n = add_scalar(f->b, f->line, fcol(f, start), text, len, false, false);
	f->p = p + 1;
	return n;
}

/* Whether the cursor's line holds a mapping key here, a one-line scalar and ':' before a blank:
 * where its ':' is, or NULL. */
static const unsigned char *key_here(const struct fast *f)
{
	const unsigned char *p = f->p;
	if (p < f->end && (*p == '"' || *p == '\'')) {
		unsigned char quote = *p;
		for (p++; p < f->end && *p != quote && *p != '\n'; p++)
			if (*p == '\\' && quote == '"')
				p++;
		return p < f->end && *p == quote && p + 1 < f->end && p[1] == ':' && at_blank(f, p + 2) ? p + 1 : NULL;
	}
	if (!plain_start(f, p))
		return NULL;
	const unsigned char *e = plain_end(f, p);
	return e && e < f->end && *e == ':' && at_blank(f, e + 1) ? e : NULL;
}

static bool block_node(struct fast *f, bool in_map);
static bool block_sequence(struct fast *f, bool in_map, bool stream);

/* A node that starts and ends on the cursor's line (a scalar, {} or []), then the next content,
 * which may not be indented past parent (that would continue a multi-line scalar). */
static bool inline_node(struct fast *f, int parent)
{
	const unsigned char *p = f->p;
	struct ynode *n = NULL;
	if (*p == '"') {
		n = double_quoted(f);
	} else if (*p == '\'') {
		n = single_quoted(f);
	} else if ((*p == '{' || *p == '[') && p + 1 < f->end && p[1] == (*p == '{' ? '}' : ']')) {
		open_frame(f->b, *p == '{' ? YN_MAP : YN_SEQ, f->line, fcol(f, p), NULL);
		close_frame(f->b);
		f->p = p + 2;
		return end_of_line(f) && (f->indent <= parent || decline(f));
	} else if (plain_start(f, p)) {
		const unsigned char *e = plain_end(f, p);
		if (!e || (e < f->end && *e == ':'))
			return decline(f);   /* a second ": " on the line, or a byte to leave to libyaml */
		n = add_scalar(f->b, f->line, fcol(f, p), (const char *)p, (size_t)(e - p), true, false);
		f->p = e;
	} else {
		return decline(f);
	}
	if (!n)
		return false;
	attach(f->b, n);
	return end_of_line(f) && (f->indent <= parent || decline(f));
}

/* The value after a key's ':' (at column col) or an item's '-': on the same line, below it more
 * indented than parent, or (after a key) a sequence at the key's own indentation; else empty. */
static bool value(struct fast *f, int parent, uint32_t line, uint32_t col, bool after_key)
{
	bool stream = f->stream_next;
	f->stream_next = false;
	while (f->p < f->end && *f->p == ' ')
		f->p++;
	if (f->p < f->end && *f->p != '\n' && *f->p != '#')
		return inline_node(f, parent);
	if (!end_of_line(f))
		return false;
	bool dash = f->indent >= 0 && *f->p == '-' && at_blank(f, f->p + 1);
	if (f->indent > parent || (after_key && f->indent == parent && dash))
		return stream && dash ? block_sequence(f, after_key && f->indent == parent, true)
				      : block_node(f, after_key && f->indent == parent);
	attach(f->b, add_scalar(f->b, line, col, "", 0, true, false));   /* libyaml's empty value: just past the indicator */
	return true;
}

/* A block mapping whose first key is at the cursor. */
static bool block_mapping(struct fast *f)
{
	int indent = f->indent;
	bool root = f->stream && !f->b->depth;
	open_frame(f->b, YN_MAP, f->line, fcol(f, f->p), NULL);
	do {
		const unsigned char *start = f->p, *colon = key_here(f);
		if (!colon)
			return decline(f);
		struct ynode *k;
		if (*f->p == '"' || *f->p == '\'') {
			if (!(k = *f->p == '"' ? double_quoted(f) : single_quoted(f)))
				return false;
		} else {
			k = add_scalar(f->b, f->line, fcol(f, f->p), (const char *)f->p, (size_t)(colon - f->p), true, false);
			f->p = colon;
		}
		if (f->p - start > 1000)
			return decline(f);   /* libyaml looks for a key's ':' within 1024 characters */
		attach(f->b, k);
		f->p++;   /* the ':' */
		if (root && !f->stream_taken && k->len == 5 && !memcmp(k->str, "items", 5))
			f->stream_next = f->stream_taken = true;
		bool ok = value(f, indent, f->line, fcol(f, f->p), true);
		f->stream_next = false;
		if (!ok)
			return false;
	} while (f->indent == indent);
	if (f->indent > indent)
		return decline(f);
	close_frame(f->b);
	return true;
}

/* A streamed item, just read (the last of its sequence's frame): given, then its nodes dropped. */
static void give_item(struct fast *f)
{
	struct frame *fr = f->b->stack.v[f->b->depth - 1];
	struct ynode *item = fr->kids.v[--fr->kids.n];
	f->b->nodes = &f->b->arena;
	f->stream->item(f->ctx, f->b->file, f->stream->streamed++, item);
	arena_reset(&f->items);
	arena_reset(&f->scratch);
	if (f->dropped)
		drop_behind(f->p, &f->dropped);
}

/* At the stream's split: the items from there, if the other thread read them; the cursor then
 * where they end. */
static bool join_items(struct fast *f)
{
	struct yaml_resume r;
	f->stream->split = NULL;   /* asked once */
	if (!f->stream->join(f->stream->join_ctx, f->stream->streamed, &r))
		return false;
	f->p = r.p;
	f->ls = r.ls;
	f->line = r.line;
	f->indent = r.indent;
	f->stream->streamed += r.items;
	return true;
}

/* A block sequence whose first '-' is at the cursor; in_map: at its mapping key's indentation,
 * where a line that is no item ends it. stream: its items are given one by one (struct yaml_stream). */
static bool block_sequence(struct fast *f, bool in_map, bool stream)
{
	int indent = f->indent;
	open_frame(f->b, YN_SEQ, f->line, fcol(f, f->p), NULL);
	while (f->indent == indent && *f->p == '-' && at_blank(f, f->p + 1)) {
		if (stream && !indent && f->p == f->stream->split && join_items(f))
			continue;
		if (stream)
			f->b->nodes = &f->items;
		uint32_t line = f->line, col = fcol(f, f->p) + 1;
		f->p++;
		while (f->p < f->end && *f->p == ' ')
			f->p++;
		if (f->p < f->end && *f->p == '-' && at_blank(f, f->p + 1))
			return decline(f);   /* a sequence in a sequence, on one line */
		if (f->p < f->end && key_here(f)) {
			int item = (int)(f->p - f->ls);
			f->indent = item;
			if (!block_mapping(f))
				return false;
			if (f->indent > indent)
				return decline(f);
		} else if (!value(f, indent, line, col, false)) {
			return false;
		}
		if (stream)
			give_item(f);
	}
	if (f->indent == indent && !in_map)
		return decline(f);
	close_frame(f->b);
	return true;
}

/* The node at the cursor, the first of its line: a sequence (in_map: at its key's indentation) or
 * a mapping. */
static bool block_node(struct fast *f, bool in_map)
{
	if (*f->p == '-' && at_blank(f, f->p + 1))
		return block_sequence(f, in_map, false);
	return block_mapping(f);
}

/* JSON: a value with spaces and line breaks around it. */
static bool json_space(struct fast *f)
{
	for (; f->p < f->end; f->p++) {
		if (*f->p == '\n') {
			f->ls = f->p + 1;
			f->line++;
			/* a line that could be a document marker is libyaml's to judge */
			if (f->ls < f->end && (*f->ls == '-' || *f->ls == '.' || *f->ls == '%'))
				return decline(f);
		} else if (*f->p != ' ') {
			break;
		}
	}
	return true;
}

/* stream: the value is the root's "items" of `kubectl get -o json`; if an array, its values are
 * given one by one (struct yaml_stream), as block_sequence gives a List's items. */
static bool json_value(struct fast *f, int depth, bool stream)
{
	if (!json_space(f) || f->p >= f->end || depth > 1000)
		return decline(f);
	unsigned char c = *f->p;
	if (c == '"') {
		struct ynode *n = double_quoted(f);
		if (!n)
			return false;
		attach(f->b, n);
		return true;
	}
	if (c == '{' || c == '[') {
		bool map = c == '{', root = map && !depth && f->stream;
		stream = stream && !map;
		open_frame(f->b, map ? YN_MAP : YN_SEQ, f->line, fcol(f, f->p), NULL);
		f->p++;
		if (!json_space(f))
			return false;
		if (f->p < f->end && *f->p == (map ? '}' : ']')) {
			f->p++;
			close_frame(f->b);
			return true;
		}
		for (;;) {
			bool items = false;   /* the value read next is the root's "items" */
			if (map) {
				if (!json_space(f) || f->p >= f->end || *f->p != '"')
					return decline(f);
				const unsigned char *key = f->p;
				struct ynode *k = double_quoted(f);
				if (!k)
					return false;
				if (f->p - key > 1000 || f->p >= f->end || *f->p != ':')
					return decline(f);   /* libyaml's keys: under 1024 characters, ':' right after */
				attach(f->b, k);
				f->p++;
				items = root && !f->stream_taken && k->len == 5 && !memcmp(k->str, "items", 5);
				f->stream_taken = f->stream_taken || items;
			}
			/* at the split: the values from there, if the other thread read them (yaml_stream_items) */
			bool joined = stream && f->p == f->stream->split && join_items(f);
			if (!joined && stream)
				f->b->nodes = &f->items;
			if (!joined && !json_value(f, depth + 1, items))
				return false;
			if (!joined && stream)
				give_item(f);
			if (!json_space(f))
				return false;
			if (f->p < f->end && *f->p == ',') {
				f->p++;
				if (!json_space(f) || (f->p < f->end && (*f->p == '}' || *f->p == ']')))
					return decline(f);
				continue;
			}
			if (f->p < f->end && *f->p == (map ? '}' : ']')) {
				f->p++;
				close_frame(f->b);
				return true;
			}
			return decline(f);
		}
	}
	/* numbers, true, false, null */
	const unsigned char *start = f->p;
	while (f->p < f->end && (isalnum(*f->p) || *f->p == '.' || *f->p == '-' || *f->p == '+'))
		f->p++;
	if (f->p == start || (f->p < f->end && !strchr(",]} \n", *f->p)) || (*start == '-' && f->p - start == 1))
		return decline(f);
	attach(f->b, add_scalar(f->b, f->line, fcol(f, start), (const char *)start, (size_t)(f->p - start), true, false));
	return true;
}

/* One document from the cursor (the input's start or a "---" line) to the next "---" line or the
 * end. FAST_END: nothing but comments was left. */
static enum fast_result fast_document(struct fast *f)
{
	bool explicit = marker_line(f, f->p, '-');
	f->declined = false;
	if (explicit) {
		f->p += 3;
		if (!end_of_line(f))
			return FAST_DECLINE;
	} else if (!next_content(f)) {
		return FAST_DECLINE;
	}
	if (f->indent < 0)
		return explicit || f->p < f->end ? FAST_DOC : FAST_END;
	bool ok;
	if (*f->p == '{' || *f->p == '[') {
		ok = json_value(f, 0, false) && end_of_line(f);
	} else {
		ok = block_node(f, false);
	}
	return ok && !f->declined && f->indent < 0 && f->b->depth == 0 ? FAST_DOC : FAST_DECLINE;
}

/* ---- reading a whole input ---- */

/* Where a line starts, counting from a line start. */
static const unsigned char *line_start(const unsigned char *p, const unsigned char *end, uint32_t lines)
{
	while (lines && p < end) {
		const unsigned char *nl = memchr(p, '\n', (size_t)(end - p));
		p = nl ? nl + 1 : end;
		lines--;
	}
	return p;
}

/* libyaml from the cursor (the input's start or a "---" line): one document, after which the fast
 * reader goes on at the next "---"; or, when that one ends with "...", the whole rest. false once
 * the input is over (or its first error stopped it). */
static bool slow_document(struct fast *f, ydoc_fn fn, void *ctx, size_t *docs)
{
	struct builder *b = f->b;
	yaml_parser_t parser;
	yaml_event_t ev;
	bool ended = false, rest = false;   /* a document ended; one ended with "..." */
	if (!yaml_parser_initialize(&parser))
		abort();
	yaml_parser_set_input_string(&parser, f->p, (size_t)(f->end - f->p));
	b->line_base = f->line - 1;
	for (;;) {
		if (!yaml_parser_parse(&parser, &ev)) {
			parse_error(b, &parser, f->p, (size_t)(f->end - f->p));
			break;
		}
		yaml_event_type_t type = ev.type;
		if (type == YAML_DOCUMENT_START_EVENT && ended && !rest) {
			/* the next document, after one that ended without "...": the fast reader's */
			const unsigned char *next = line_start(f->p, f->end, (uint32_t)ev.start_mark.line);
			f->line += (uint32_t)ev.start_mark.line;
			f->p = f->ls = next;
			yaml_event_delete(&ev);
			yaml_parser_delete(&parser);
			return true;
		}
		if (type == YAML_DOCUMENT_END_EVENT) {
			if (b->root && !b->failed && !ynode_is_null(b->root)) {
				(*docs)++;
				fn(ctx, b->file, b->root);
			}
			reset_document(b);
			b->failed = false;
			ended = true;
			rest = rest || !ev.data.document_end.implicit;
		} else if (!b->failed) {
			handle_event(b, &ev);
		}
		yaml_event_delete(&ev);
		if (type == YAML_STREAM_END_EVENT)
			break;
	}
	yaml_parser_delete(&parser);
	return false;
}

const unsigned char *ytree_give_back(const unsigned char *from, const unsigned char *to)
{
	uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE), a = ((uintptr_t)from + page - 1) & ~(page - 1);
	uintptr_t b = (uintptr_t)to & ~(page - 1);
	if (b <= a)
		return from;
	madvise((void *)a, b - a, MADV_DONTNEED);   /* a file's pages: read again if need be */
	return (const unsigned char *)b;
}

static void drop_behind_at_least(const unsigned char *p, const unsigned char **dropped, size_t least)
{
	if (p > *dropped && (size_t)(p - *dropped) >= least)
		*dropped = ytree_give_back(*dropped, p);
}

static void drop_behind(const unsigned char *p, const unsigned char **dropped)
{
	drop_behind_at_least(p, dropped, DROP_BEHIND);
}

/* What a reading of an input leaves: its builder's nodes and frames, the reader's arenas. */
static void fast_free(struct fast *f)
{
	if (f->dropped)   /* a part of the input, one of many: its last pages too */
		drop_behind_at_least(f->p, &f->dropped, 1);
	reset_document(f->b);
	arena_free(&f->b->arena);
	arena_free(&f->scratch);
	arena_free(&f->items);
	free_frames(f->b);
}

static size_t each_document(const unsigned char *buf, size_t len, uint32_t line, const struct mark *file,
			    struct diags *d, ydoc_fn fn, void *ctx, const struct ytree_scan *scanned, bool mapped,
			    struct yaml_stream *stream, enum yaml_readers readers)
{
	struct builder b = { .file = file, .d = d };
	b.nodes = &b.arena;
	size_t docs = 0;
	struct ytree_scan scan = { .plain = true, .nul = SIZE_MAX };
	if (scanned) {
		scan = *scanned;   /* read from the file, not through the mapping: its pages are faulted in once */
	} else {
		for (size_t used; scan.scanned < len;)
			ytree_scan_bytes(&scan, buf + scan.scanned, len - scan.scanned, true, &used);
	}
	if (refuse_binary(&b, buf, &scan))
		return 0;
	if (!scan.plain && readers == YAML_FAST_ONLY)
		return SIZE_MAX;
	if (!scan.plain)
		readers = YAML_LIBYAML_ONLY;
	struct fast f = { .b = &b, .p = buf, .end = buf + len, .ls = buf, .line = line, .stream = stream, .ctx = ctx,
			  .dropped = mapped ? buf : NULL };
	for (;;) {
		const unsigned char *start = f.p;
		uint32_t start_line = f.line;
		size_t errors = d->n;
		if (stream)
			stream->streamed = 0;
		f.stream_taken = false;
		enum fast_result r = readers == YAML_LIBYAML_ONLY ? FAST_DECLINE : fast_document(&f);
		if (r == FAST_DECLINE && readers == YAML_FAST_ONLY) {
			docs = SIZE_MAX;
			break;
		}
		if (r == FAST_DOC && b.root && !b.failed && !ynode_is_null(b.root)) {
			docs++;
			fn(ctx, file, b.root);
		} else if (stream && stream->streamed) {
			stream->spoiled = true;   /* its items were read as objects, and it is no List read */
		}
		if (stream)
			stream->streamed = 0;
		reset_document(&b);
		b.failed = false;
		arena_reset(&f.scratch);
		arena_reset(&f.items);
		if (r == FAST_END)
			break;
		if (r == FAST_DECLINE) {   /* what the fast reader said of it is taken back */
			diags_truncate(d, errors);
			f.p = f.ls = start;
			f.line = start_line;
			if (!slow_document(&f, fn, ctx, &docs))
				break;
		}
		if (f.dropped)
			drop_behind(f.p, &f.dropped);   /* the pages read are given back: read again if need be */
	}
	fast_free(&f);
	return docs;
}

size_t yaml_each_document(const unsigned char *buf, size_t len, const struct mark *file, struct diags *d,
			  ydoc_fn fn, void *ctx)
{
	return each_document(buf, len, 1, file, d, fn, ctx, NULL, false, NULL, YAML_BOTH);
}

size_t yaml_each_document_mapped(const unsigned char *buf, size_t len, const struct ytree_scan *scan,
				 const struct mark *file, struct diags *d, ydoc_fn fn, void *ctx)
{
	return each_document(buf, len, 1, file, d, fn, ctx, scan, true, NULL, YAML_BOTH);
}

size_t yaml_each_document_part(const unsigned char *buf, size_t len, uint32_t line, const struct ytree_scan *scan,
			       bool mapped, const struct mark *file, struct diags *d, ydoc_fn fn, void *ctx,
			       struct yaml_stream *stream)
{
	return each_document(buf, len, line, file, d, fn, ctx, scan, mapped, stream, YAML_BOTH);
}

/* The values of the root's "items" array from one of them (after spaces) to its ']', which is
 * not read: as json_value reads them when it streams. */
static bool json_values(struct fast *f)
{
	if (!json_space(f) || f->p >= f->end || *f->p != '{')
		return false;
	open_frame(f->b, YN_SEQ, f->line, fcol(f, f->p), NULL);
	for (;;) {
		f->b->nodes = &f->items;
		if (!json_value(f, 2, false))
			return false;
		give_item(f);
		if (!json_space(f) || f->p >= f->end || (*f->p != ',' && *f->p != ']'))
			return false;
		if (*f->p == ']')
			break;
		f->p++;
		if (!json_space(f) || f->p >= f->end || *f->p == '}' || *f->p == ']')
			return false;
	}
	close_frame(f->b);
	return true;
}

bool yaml_stream_items(const unsigned char *buf, size_t len, uint32_t line, bool json, bool mapped,
		       const struct mark *file, struct diags *d, void *ctx, struct yaml_stream *stream,
		       struct yaml_resume *end)
{
	struct builder b = { .file = file, .d = d };
	b.nodes = &b.arena;
	struct fast f = { .b = &b, .p = buf, .end = buf + len, .ls = buf, .line = line, .stream = stream, .ctx = ctx,
			  .dropped = mapped ? buf : NULL };
	uint32_t base = stream->streamed;
	bool ok = json ? json_values(&f)
		       : next_content(&f) && f.indent == 0 && *f.p == '-' && at_blank(&f, f.p + 1) &&
				 block_sequence(&f, true, true);
	ok = ok && !f.declined && !b.failed && !b.depth;
	*end = (struct yaml_resume){ .p = f.p, .ls = f.ls, .line = f.line, .indent = f.indent,
				     .items = stream->streamed - base };
	fast_free(&f);
	return ok;
}

size_t yaml_each_document_with(const unsigned char *buf, size_t len, const struct mark *file, struct diags *d,
			       ydoc_fn fn, void *ctx, enum yaml_readers readers)
{
	return each_document(buf, len, 1, file, d, fn, ctx, NULL, false, NULL, readers);
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
