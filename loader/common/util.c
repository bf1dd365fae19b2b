// SPDX-License-Identifier: MIT
#include "common/util.h"

#include "common/json.h"

#include <stdlib.h>
#include <string.h>

#define ARENA_BLOCK (256 * 1024)

static void oom(void)
{
	fputs("sluice: error: out of memory\n", stderr);
	abort();
}

void *arena_take_block(struct arena *a, size_t size)
{
	size = (size + 15) & ~(size_t)15;
	size_t block = !a->head && a->first ? a->first : a->block ? a->block : ARENA_BLOCK;
	struct arena_block *b = a->head;
	if (!b || b->size - b->used < size) {
		size_t bs = size > block / 4 ? size : block;
		b = malloc(sizeof(*b) + bs);
		if (!b)
			oom();
		b->size = bs;
		b->used = 0;
		/* a large block goes behind the head so the head's free space is not lost */
		if (bs != block && a->head) {
			b->next = a->head->next;
			a->head->next = b;
		} else {
			b->next = a->head;
			a->head = b;
		}
	}
	void *p = b->data + b->used;
	b->used += size;
	a->used += size;
	return p;
}

void *arena_alloc(struct arena *a, size_t size)
{
	return memset(arena_take(a, size), 0, size);
}

char *arena_strndup(struct arena *a, const char *s, size_t len)
{
	char *p = arena_take(a, len + 1);
	memcpy(p, s, len);
	p[len] = 0;
	return p;
}

char *arena_strdup(struct arena *a, const char *s)
{
	return arena_strndup(a, s, strlen(s));
}

char *arena_printf(struct arena *a, const char *fmt, ...)
{
	va_list ap, ap2;
	va_start(ap, fmt);
	va_copy(ap2, ap);
	int n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	char *p = arena_alloc(a, (size_t)n + 1);
	vsnprintf(p, (size_t)n + 1, fmt, ap2);
	va_end(ap2);
	return p;
}

void arena_reset(struct arena *a)
{
	struct arena_block *keep = a->head;
	if (keep && keep->size != (a->block ? a->block : ARENA_BLOCK))
		keep = NULL;
	for (struct arena_block *b = a->head; b;) {
		struct arena_block *next = b->next;
		if (b != keep)
			free(b);
		b = next;
	}
	a->head = keep;
	if (keep) {
		keep->next = NULL;
		keep->used = 0;
	}
	a->used = 0;
}

void arena_free(struct arena *a)
{
	struct arena_block *b = a->head;
	while (b) {
		struct arena_block *next = b->next;
		free(b);
		b = next;
	}
	a->head = NULL;
	a->used = 0;
}

void arena_adopt(struct arena *a, struct arena *from)
{
	struct arena_block *tail = from->head;
	if (!tail)
		return;
	while (tail->next)
		tail = tail->next;
	if (a->head) {   /* behind the head, whose free space is used next */
		tail->next = a->head->next;
		a->head->next = from->head;
	} else {
		a->head = from->head;
	}
	a->used += from->used;
	from->head = NULL;
	from->used = 0;
}

char *uint_write(char *out, uint64_t v)
{
	char digits[20];
	int k = 0;
	do
		digits[k++] = (char)('0' + v % 10);
	while (v /= 10);
	while (k)
		*out++ = digits[--k];
	return out;
}

uint64_t hash_str(const char *s)
{
	uint64_t h = 1469598103934665603ULL;
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ULL;
	return h;
}

/* Each slot keeps its key's hash, so a probe past another key costs no strcmp (and no cache miss). */
static size_t strmap_slot(const struct strmap *m, const char *key, uint32_t h)
{
	size_t mask = m->cap - 1, i = h & mask;
	while (m->keys[i] && (m->hashes[i] != h || strcmp(m->keys[i], key)))
		i = (i + 1) & mask;
	return i;
}

void *strmap_get(const struct strmap *m, const char *key)
{
	if (!m->cap)
		return NULL;
	size_t i = strmap_slot(m, key, (uint32_t)hash_str(key));
	return m->keys[i] ? m->vals[i] : NULL;
}

static void strmap_grow(struct strmap *m)
{
	struct strmap n = { .cap = m->cap ? m->cap * 2 : 64 };
	n.keys = calloc(n.cap, sizeof(*n.keys));
	n.vals = calloc(n.cap, sizeof(*n.vals));
	n.hashes = calloc(n.cap, sizeof(*n.hashes));
	if (!n.keys || !n.vals || !n.hashes)
		oom();
	for (size_t i = 0; i < m->cap; i++) {
		if (!m->keys[i])
			continue;
		size_t j = strmap_slot(&n, m->keys[i], m->hashes[i]);
		n.keys[j] = m->keys[i];
		n.vals[j] = m->vals[i];
		n.hashes[j] = m->hashes[i];
		n.len++;
	}
	strmap_free(m);
	*m = n;
}

void strmap_reserve(struct strmap *m, size_t n)
{
	while (n * 2 > m->cap)
		strmap_grow(m);
}

void strmap_put_all(struct strmap *m, const struct strmap *from)
{
	strmap_reserve(m, m->len + from->len);
	for (size_t i = 0; i < from->cap; i++) {
		if (!from->keys[i])
			continue;
		size_t j = strmap_slot(m, from->keys[i], from->hashes[i]);
		if (!m->keys[j]) {
			m->keys[j] = from->keys[i];
			m->hashes[j] = from->hashes[i];
			m->len++;
		}
		m->vals[j] = from->vals[i];
	}
}

bool strmap_shares(const struct strmap *a, const struct strmap *b)
{
	for (size_t i = 0; a->cap && i < b->cap; i++)
		if (b->keys[i] && a->keys[strmap_slot(a, b->keys[i], b->hashes[i])])
			return true;
	return false;
}

void *strmap_add(struct strmap *m, const char *key, void *val)
{
	if ((m->len + 1) * 2 > m->cap)
		strmap_grow(m);
	uint32_t h = (uint32_t)hash_str(key);
	size_t i = strmap_slot(m, key, h);
	if (m->keys[i])
		return m->vals[i];
	m->keys[i] = key;
	m->hashes[i] = h;
	m->vals[i] = val;
	m->len++;
	return NULL;
}

void strmap_put(struct strmap *m, const char *key, void *val)
{
	if ((m->len + 1) * 2 > m->cap)
		strmap_grow(m);
	uint32_t h = (uint32_t)hash_str(key);
	size_t i = strmap_slot(m, key, h);
	if (!m->keys[i]) {
		m->keys[i] = key;
		m->hashes[i] = h;
		m->len++;
	}
	m->vals[i] = val;
}

void strmap_free(struct strmap *m)
{
	free(m->keys);
	free(m->vals);
	free(m->hashes);
	memset(m, 0, sizeof(*m));
}

void ptrvec_grow(struct ptrvec *pv)
{
	pv->cap = pv->cap ? pv->cap * 2 : 8;
	pv->v = realloc(pv->v, pv->cap * sizeof(*pv->v));
	if (!pv->v)
		oom();
}

void ptrvec_free(struct ptrvec *pv)
{
	free(pv->v);
	memset(pv, 0, sizeof(*pv));
}

/*
 * Errors quote the input's values through name_quote(); this is the net under a call that
 * forgot: no control byte or non-ASCII byte (a terminal escape, a forged second line) reaches
 * the terminal or a log, and no message grows without bound.
 */
#define DIAG_MAX_MSG 4096

static void diag_sanitize(struct diag *g)
{
	size_t len = 0, extra = 0;
	for (const unsigned char *p = (const unsigned char *)g->msg; *p; p++, len++)
		extra += *p < 0x20 || *p > 0x7e ? 3 : 0;
	if (!extra && len <= DIAG_MAX_MSG)
		return;
	char *out = malloc(DIAG_MAX_MSG + 64), *o = out;
	if (!out)
		oom();
	for (const unsigned char *p = (const unsigned char *)g->msg; *p && o - out < DIAG_MAX_MSG; p++) {
		if (*p < 0x20 || *p > 0x7e)
			o += sprintf(o, "\\x%02x", *p);
		else
			*o++ = (char)*p;
	}
	if (len + extra > DIAG_MAX_MSG)
		o += sprintf(o, "... (message cut at %d bytes)", DIAG_MAX_MSG);
	*o = 0;
	free(g->msg);
	g->msg = out;
}

void diag_verror(struct diags *d, const struct mark *at, const char *fmt, va_list ap)
{
	if (d->n == d->cap) {
		d->cap = d->cap ? d->cap * 2 : 16;
		d->v = realloc(d->v, d->cap * sizeof(*d->v));
		if (!d->v)
			oom();
	}
	struct diag *g = &d->v[d->n];
	g->at = *at;
	g->seq = d->n++;
	if (vasprintf(&g->msg, fmt, ap) < 0)
		oom();
	diag_sanitize(g);
}

void diag_error(struct diags *d, const struct mark *at, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	diag_verror(d, at, fmt, ap);
	va_end(ap);
}

static int diag_cmp(const void *pa, const void *pb)
{
	const struct diag *a = pa, *b = pb;
	if (a->at.file_index != b->at.file_index)
		return a->at.file_index < b->at.file_index ? -1 : 1;
	if (a->at.line != b->at.line)
		return a->at.line < b->at.line ? -1 : 1;
	if (a->at.col != b->at.col)
		return a->at.col < b->at.col ? -1 : 1;
	return a->seq < b->seq ? -1 : a->seq > b->seq;
}

static bool same_place(const struct diag *a, const struct diag *b)
{
	return a->at.file_index == b->at.file_index && a->at.line == b->at.line && a->at.col == b->at.col &&
	       !strcmp(a->at.file, b->at.file);
}

/* Sorts by place and drops repeats: one object checked once per port it serves says a thing once. */
void diags_sort(struct diags *d)
{
	if (!d->n)
		return;
	qsort(d->v, d->n, sizeof(*d->v), diag_cmp);
	size_t kept = 0;
	for (size_t i = 0; i < d->n; i++) {
		bool repeat = false;
		for (size_t j = kept; j-- > 0 && same_place(&d->v[j], &d->v[i]) && !repeat;)
			repeat = !strcmp(d->v[j].msg, d->v[i].msg);
		if (repeat)
			free(d->v[i].msg);
		else
			d->v[kept++] = d->v[i];
	}
	d->n = kept;
}

void diags_print(const struct diags *d, FILE *out)
{
	for (size_t i = 0; i < d->n; i++)
		fprintf(out, "%s:%u:%u: error: %s\n", d->v[i].at.file, d->v[i].at.line, d->v[i].at.col,
			d->v[i].msg);
}

void diags_print_json(const struct diags *d, FILE *out)
{
	json_writer_t *w = jsonw_new(out);
	jsonw_start_object(w);
	jsonw_name(w, "errors");
	jsonw_start_array(w);
	for (size_t i = 0; i < d->n; i++) {
		jsonw_start_object(w);
		jsonw_string_field(w, "file", d->v[i].at.file);
		jsonw_uint_field(w, "line", d->v[i].at.line);
		jsonw_uint_field(w, "column", d->v[i].at.col);
		jsonw_string_field(w, "message", d->v[i].msg);
		jsonw_end_object(w);
	}
	jsonw_end_array(w);
	jsonw_end_object(w);
	jsonw_destroy(&w);
}

void diags_report(const struct diags *d, FILE *out, FILE *err, bool json, const char *outcome)
{
	if (json) {
		diags_print_json(d, out);
		return;
	}
	diags_print(d, err);
	fprintf(err, "%zu error%s%s\n", d->n, d->n == 1 ? "" : "s", outcome);
}

void diags_truncate(struct diags *d, size_t n)
{
	for (size_t i = n; i < d->n; i++)
		free(d->v[i].msg);
	if (n < d->n)
		d->n = n;
}

void diags_free(struct diags *d)
{
	for (size_t i = 0; i < d->n; i++)
		free(d->v[i].msg);
	free(d->v);
	memset(d, 0, sizeof(*d));
}
