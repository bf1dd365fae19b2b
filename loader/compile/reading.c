// SPDX-License-Identifier: MIT
/* One input's documents into the compile's records (YAML -> records), the quickest way that gives
 * what one thread reading whole trees gives: a List item by item (ytree.h's yaml_stream), since
 * `kubectl get -o yaml` prints 150,000 objects as one List; and a large input on two threads, the
 * second from a document or a List's item past the middle. A way that meets what it cannot vouch
 * for (a List that was no List, an error where the halves meet, an object in both) is dropped and
 * the input read again the plainer way (DESIGN.md §5). */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "compile/kinds.h"

/* Smaller inputs are read on one thread: a second would cost more than it saves. */
#define SPLIT_MIN (4u << 20)
/* How far past the middle a line to split at is looked for. */
#define SPLIT_LOOK (1u << 20)

/* What one thread reads into: records, errors, duplicate keys of its own. */
struct part {
	struct cctx c;
	struct arena keep;
	struct diags d;
	struct compile_stats st;
	struct yaml_stream stream;
	size_t docs;
};

/* A part of parent's compile; it sees the objects parent read before (read only while it reads). */
static void part_init(struct part *p, const struct cctx *parent)
{
	memset(p, 0, sizeof(*p));
	p->c = cc_context(parent->o, &p->d, &p->keep, &p->st);
	p->c.gateway_address = parent->gateway_address;
	p->c.outer = &parent->objects;
	p->c.stream = &p->stream;
	p->stream.item = cc_read_item;
}

static void part_free(struct part *p)
{
	ptrvec_free(&p->c.services);
	ptrvec_free(&p->c.pods);
	ptrvec_free(&p->c.vss);
	ptrvec_free(&p->c.drs);
	ptrvec_free(&p->c.gateways);
	strmap_free(&p->c.objects);
	diags_free(&p->d);
	arena_free(&p->keep);
}

static void take_all(struct ptrvec *to, struct ptrvec *from)
{
	if (!to->n) {   /* the usual first input: nothing to copy */
		ptrvec_free(to);
		*to = *from;
		*from = (struct ptrvec){ 0 };
		return;
	}
	for (size_t i = 0; i < from->n; i++)
		ptrvec_push(to, from->v[i]);
	ptrvec_free(from);
}

/* p's records after c's, its errors with c's, its arena c's; p is left empty. keys: its objects'
 * keys too, for the duplicates of what is read after it. */
static void part_merge(struct cctx *c, struct part *p, bool keys)
{
	take_all(&c->services, &p->c.services);
	take_all(&c->pods, &p->c.pods);
	take_all(&c->vss, &p->c.vss);
	take_all(&c->drs, &p->c.drs);
	take_all(&c->gateways, &p->c.gateways);
	if (keys && !c->objects.len) {
		strmap_free(&c->objects);
		c->objects = p->c.objects;
		p->c.objects = (struct strmap){ 0 };
	} else if (keys) {
		strmap_put_all(&c->objects, &p->c.objects);
	}
	for (size_t i = 0; i < p->d.n; i++)
		diag_error(c->d, &p->d.v[i].at, "%s", p->d.v[i].msg);
	c->st->objects += p->st.objects;
	c->st->skipped += p->st.skipped;
	c->st->items_streamed += p->st.items_streamed;
	arena_adopt(c->keep, &p->keep);
	part_free(p);
}

/* Whether an object of b was read in a too: one thread would have called it a duplicate. */
static bool shared_object(const struct part *a, const struct part *b)
{
	return strmap_shares(&a->c.objects, &b->c.objects);
}

/* ---- two threads ---- */

struct split {
	const struct compile_input *in;
	const struct mark *file;
	struct ytree_scan scan;
	size_t at;                   /* the second thread's part starts at in->buf + at, a line start: */
	enum split_at {
		AT_DOCUMENT,             /* a "---" line */
		AT_ITEM,                 /* a "- " line: an item of a List at column 1 */
		AT_VALUE,                /* "{" after "}," (at indent spaces): a value of a JSON List's items */
	} kind;
	size_t indent;
	uint32_t line, base;         /* at's line; the items of its List before it */
	struct part second, *first;
	pthread_t thread;
	bool joined, ok, taken, keys;   /* taken: the first took the second's items; keys: and their keys */
	struct yaml_resume end;
};

/* A mapped file's pages counted through are given back every 8 MiB, so that a count ahead of the
 * first thread's reading never holds half the file (the first thread faults them in again). */
#define GIVE_BACK (8u << 20)

/* Lines before at, and the lines starting "- " after the last line that starts at column 1 with
 * anything else: the items before at of the sequence it is in, if it is in one. 16 bytes at a
 * time in vectors (GCC's, any target), counted in 8-bit lanes for 255 steps: ~15 ms for 120 MiB. */
typedef unsigned char v16 __attribute__((vector_size(16)));

static v16 load16(const unsigned char *p)
{
	v16 v;
	memcpy(&v, p, sizeof(v));
	return v;
}

static uint32_t lanes(v16 v)
{
	uint32_t n = 0;
	for (int k = 0; k < 16; k++)
		n += v[k];
	return n;
}

#define DASH(c1, c2) (((c1) == '-') & (((c2) == ' ') | ((c2) == '\n')))
#define TOP(c1, c2) (((c1) != ' ') & ((c1) != '#') & ((c1) != '\n') & !DASH(c1, c2))

static void count_before(const unsigned char *buf, size_t at, bool mapped, uint32_t *line, uint32_t *items)
{
	enum { STEP = 16, BLOCK = 255 * 16 };
	uint32_t lines = 1, dashes = at && DASH(buf[0], buf[1]);
	size_t given = 0;
	for (size_t b = 0; b + 1 < at; b += BLOCK) {
		if (mapped && b - given >= GIVE_BACK)
			given = (size_t)(ytree_give_back(buf + given, buf + b) - buf);
		size_t e = b + BLOCK < at - 1 ? b + BLOCK : at - 1;   /* newlines at i < e: their lines start before at */
		v16 nl = { 0 }, ds = { 0 }, tops = { 0 };
		size_t i = b;
		for (; i + STEP <= e; i += STEP) {
			v16 c0 = load16(buf + i), c1 = load16(buf + i + 1), c2 = load16(buf + i + 2);
			v16 newline = (v16)(c0 == '\n');
			v16 dash = (v16)(c1 == '-') & ((v16)(c2 == ' ') | (v16)(c2 == '\n'));
			v16 top = (v16)(c1 != ' ') & (v16)(c1 != '#') & (v16)(c1 != '\n') & ~dash;
			nl -= newline;
			ds -= newline & dash;
			tops -= newline & top;
		}
		uint32_t n_nl = lanes(nl), n_ds = lanes(ds), n_tops = lanes(tops);
		for (; i < e; i++) {
			n_nl += buf[i] == '\n';
			n_ds += buf[i] == '\n' && DASH(buf[i + 1], buf[i + 2]);
			n_tops += buf[i] == '\n' && TOP(buf[i + 1], buf[i + 2]);
		}
		lines += n_nl;
		if (!n_tops) {
			dashes += n_ds;
			continue;
		}
		size_t last = e;   /* the block's last line that starts otherwise: items start after it */
		while (!(buf[--last] == '\n' && TOP(buf[last + 1], buf[last + 2])))
			;
		dashes = 0;
		for (i = last + 1; i < e; i++)
			dashes += buf[i] == '\n' && DASH(buf[i + 1], buf[i + 2]);
	}
	*line = lines + (at && buf[at - 1] == '\n');   /* the newline that ends the line before at */
	*items = dashes;
	if (mapped)
		ytree_give_back(buf + given, buf + at);
}
#undef TOP
#undef DASH

/* What kubectl indents a JSON List's values by, at most: 2 x 16. */
static const char spaces[] = "                                ";

/* The values of a JSON List before at (a value's line, at indent): the lines that are "{" at that
 * indent, found from the '{' bytes, which are few. */
static uint32_t count_values(const unsigned char *buf, size_t at, size_t indent, bool mapped)
{
	uint32_t n = 0;
	const unsigned char *given = buf;
	for (const unsigned char *q = buf + indent + 1, *end = buf + at; q < end && (q = memchr(q, '{', (size_t)(end - q)));
	     q++) {
		const unsigned char *ls = q - indent;
		if (q + 1 < end && q[1] == '\n' && ls[-1] == '\n' && !memcmp(ls, spaces, indent))
			n++;
		if (mapped && (size_t)(ls - given) >= GIVE_BACK)
			given = ytree_give_back(given, ls - 1);
	}
	if (mapped)
		ytree_give_back(given, buf + at);
	return n;
}

static void *second_thread(void *arg)
{
	struct split *s = arg;
	struct part *p = &s->second;
	const unsigned char *buf = s->in->buf + s->at;
	size_t len = s->in->len - s->at;
	count_before(s->in->buf, s->at, s->in->mapped, &s->line, &s->base);
	if (s->kind == AT_VALUE)
		s->base = count_values(s->in->buf, s->at, s->indent, s->in->mapped);
	if (s->kind != AT_DOCUMENT) {
		p->stream.streamed = s->base;
		s->ok = yaml_stream_items(buf, len, s->line, s->kind == AT_VALUE, s->in->mapped, s->file, &p->d, &p->c,
					  &p->stream, &s->end);
	} else {
		p->docs = yaml_each_document_part(buf, len, s->line, &s->scan, s->in->mapped, s->file, &p->d,
						  cc_read_document, &p->c, &p->stream);
		s->ok = true;
	}
	s->ok = s->ok && !p->stream.spoiled && !p->d.n;
	return NULL;
}

/* The first thread at the split, index items into the List: the second's items are taken when it
 * read them cleanly from the same place; else the first reads them itself. */
static bool join_items(void *ctx, uint32_t index, struct yaml_resume *at)
{
	struct split *s = ctx;
	pthread_join(s->thread, NULL);
	s->joined = true;
	if (!s->ok || s->base != index || shared_object(s->first, &s->second))
		return false;
	*at = s->end;
	part_merge(&s->first->c, &s->second, s->keys);
	s->taken = true;
	return true;
}

/* Where `kubectl get -o json` prints a List's values: a document that starts "{" on a line of
 * its own, its members indented r spaces, has its items' values at 2r. 0: not such a document. */
static size_t json_items_indent(const unsigned char *buf, size_t len)
{
	size_t r = 0;
	if (len < 3 || buf[0] != '{' || buf[1] != '\n')
		return 0;
	while (2 + r < len && buf[2 + r] == ' ')
		r++;
	return 2 + r < len && buf[2 + r] == '"' && r && r <= 16 ? 2 * r : 0;
}

/* A line that is "{" at indent spaces after one that is "}," at the same: a JSON value after
 * another, as `kubectl get -o json` prints a List's items. */
static bool json_value_line(const unsigned char *buf, const unsigned char *q, const unsigned char *end, size_t indent)
{
	const unsigned char *prev = q - (indent + 3);   /* the line before: indent spaces, "},", its newline */
	return indent && end - q >= (ptrdiff_t)indent + 2 && !memcmp(q, spaces, indent) && q[indent] == '{' &&
	       q[indent + 1] == '\n' && prev >= buf && (prev == buf || prev[-1] == '\n') && !memcmp(prev, spaces, indent) &&
	       !memcmp(prev + indent, "},", 2);
}

/* Where the second thread's part starts: the first line from `from` on that starts a document, an
 * item at column 1, or a JSON List's value. */
static bool find_split(const struct compile_input *in, size_t from, size_t *at, enum split_at *kind, size_t *indent)
{
	const unsigned char *buf = in->buf, *end = buf + in->len, *q = buf + from;
	const unsigned char *nl = memchr(q, '\n', (size_t)(end - q));
	*indent = json_items_indent(buf, in->len);
	for (q = nl ? nl + 1 : end; q < end && (size_t)(q - buf) < from + SPLIT_LOOK;) {
		bool blank1 = q + 1 == end || q[1] == ' ' || q[1] == '\n';
		bool marker = end - q >= 3 && !memcmp(q, "---", 3) && (q + 3 == end || q[3] == ' ' || q[3] == '\n');
		bool value = *q == ' ' && json_value_line(buf, q, end, *indent);
		if (marker || (*q == '-' && blank1) || value) {
			*at = (size_t)(q - buf);
			*kind = marker ? AT_DOCUMENT : value ? AT_VALUE : AT_ITEM;
			return true;
		}
		nl = memchr(q, '\n', (size_t)(end - q));
		q = nl ? nl + 1 : end;
	}
	return false;
}

/* in on two threads into first, which holds all of it on true (*both: read by two threads, else
 * the first read it all). false: nothing read (*tried false), or not all of it (first is dropped). */
static bool read_split(struct cctx *c, const struct compile_input *in, const struct mark *file, struct part *first,
		       bool keys, bool *tried, bool *both)
{
	struct split s = { .in = in, .file = file, .first = first, .keys = keys };
	*tried = false;
	size_t used;
	s.scan = in->mapped ? *in->scan : (struct ytree_scan){ .plain = true, .nul = SIZE_MAX };
	if (!in->mapped)   /* the whole input as its last piece: one call looks at all of it */
		ytree_scan_bytes(&s.scan, in->buf, in->len, true, &used);
	size_t from = c->o->split_from ? c->o->split_from : in->len / 2;
	if (!s.scan.plain || s.scan.nul != SIZE_MAX || from >= in->len ||
	    !find_split(in, from, &s.at, &s.kind, &s.indent))
		return false;   /* libyaml reads it all, or it is refused whole: one thread */
	part_init(&s.second, c);
	bool items = s.kind != AT_DOCUMENT;
	if (items) {
		first->stream.split = in->buf + s.at + (s.kind == AT_VALUE ? s.indent : 0);   /* a value: at its '{' */
		first->stream.join = join_items;
		first->stream.join_ctx = &s;
	}
	if (pthread_create(&s.thread, NULL, second_thread, &s)) {
		part_free(&s.second);
		first->stream.split = NULL;
		return false;
	}
	*tried = true;
	/* an item split: the first thread reads on, taking the second's items or reading them itself */
	size_t len = items ? in->len : s.at;
	first->docs = yaml_each_document_part(in->buf, len, 1, &s.scan, in->mapped, file, &first->d, cc_read_document,
					      &first->c, &first->stream);
	if (!s.joined)
		pthread_join(s.thread, NULL);
	bool ok = !first->stream.spoiled;
	if (!items) {
		/* the second's documents follow the first's when the first ended cleanly at theirs */
		ok = ok && !first->d.n && s.ok && !shared_object(first, &s.second);
		if (ok) {
			first->docs += s.second.docs;
			part_merge(&first->c, &s.second, s.keys);
		}
	}
	*both = ok && (s.taken || !items);
	part_free(&s.second);
	return ok;
}

/* ---- one input ---- */

size_t cc_read_input(struct cctx *c, const struct compile_input *in, const struct mark *file, bool whole, bool last)
{
	enum compile_reading how = whole ? COMPILE_READ_WHOLE : c->o->reading;
	if (how == COMPILE_READ_BEST && (in->len < SPLIT_MIN || c->o->skipped_log))
		how = COMPILE_READ_STREAM;   /* -v's lines come in order */
	if (how != COMPILE_READ_WHOLE) {
		struct part p;
		part_init(&p, c);
		bool tried = false, ok = false, both = false;
		if (how != COMPILE_READ_STREAM)
			ok = read_split(c, in, file, &p, !last, &tried, &both);
		c->st->inputs_split += both;
		if (!ok && tried) {
			part_free(&p);
			part_init(&p, c);
		}
		if (!ok)
			p.docs = yaml_each_document_part(in->buf, in->len, 1, in->mapped ? in->scan : NULL, in->mapped,
							 file, &p.d, cc_read_document, &p.c, &p.stream);
		if (!p.stream.spoiled) {
			size_t docs = p.docs;
			part_merge(c, &p, !last);
			return docs;
		}
		part_free(&p);   /* a List's items were read before it proved none: read it whole */
	}
	return in->mapped ? yaml_each_document_mapped(in->buf, in->len, in->scan, file, c->d, cc_read_document, c)
			  : yaml_each_document(in->buf, in->len, file, c->d, cc_read_document, c);
}
