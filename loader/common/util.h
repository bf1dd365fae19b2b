/* SPDX-License-Identifier: MIT */
/* Small building blocks of the compiler: arena, string map, diagnostics. */
#ifndef SLUICE_UTIL_H
#define SLUICE_UTIL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Bump allocator: a compile's objects die together, so nothing is freed one by one. */
struct arena {
	struct arena_block *head;
	size_t used;            /* bytes handed out, for the memory figures */
	size_t block;           /* bytes per block; 0: 256 KiB (small for the many arenas of one object) */
	size_t first;           /* bytes of the first block, when not block */
};

void *arena_alloc(struct arena *a, size_t size);           /* zeroed; aborts on OOM */
void *arena_take_block(struct arena *a, size_t size);      /* arena_take, from a new block when need be */

/* Not zeroed. Inline: every node of every document comes here (5 million at the envelope). */
struct arena_block {
	struct arena_block *next;
	size_t size, used;
	char data[];
};
static inline void *arena_take(struct arena *a, size_t size)
{
	struct arena_block *b = a->head;
	size = (size + 15) & ~(size_t)15;
	if (b && b->size - b->used >= size) {
		void *p = b->data + b->used;
		b->used += size;
		a->used += size;
		return p;
	}
	return arena_take_block(a, size);
}
char *arena_strndup(struct arena *a, const char *s, size_t len);
char *arena_strdup(struct arena *a, const char *s);
char *arena_printf(struct arena *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void arena_reset(struct arena *a);                         /* frees all but one block, for reuse */
void arena_free(struct arena *a);
void arena_adopt(struct arena *a, struct arena *from);      /* from's blocks become a's; from is left empty */

uint64_t hash_str(const char *s);   /* FNV-1a, 64 bits */
/* v in decimal at out, no NUL; returns the end. Without printf: plans print 150,000 addresses. */
char *uint_write(char *out, uint64_t v);

/* Open-addressing map from string to pointer; keys are not copied. */
struct strmap {
	const char **keys;
	void **vals;
	uint32_t *hashes;
	size_t cap, len;
};

void *strmap_get(const struct strmap *m, const char *key);
void strmap_put(struct strmap *m, const char *key, void *val);   /* replaces */
void *strmap_add(struct strmap *m, const char *key, void *val);  /* key's value if it has one, else puts it: NULL */
void strmap_reserve(struct strmap *m, size_t n);   /* room for n keys without growing */
void strmap_free(struct strmap *m);
void strmap_put_all(struct strmap *m, const struct strmap *from);   /* every key of from, replacing */
bool strmap_shares(const struct strmap *a, const struct strmap *b);   /* a key of b is in a */

/* Growable array of pointers. */
struct ptrvec {
	void **v;
	size_t n, cap;
};

void ptrvec_grow(struct ptrvec *pv);
/* inline: a document's every node is pushed once */
static inline void ptrvec_push(struct ptrvec *pv, void *p)
{
	if (pv->n == pv->cap)
		ptrvec_grow(pv);
	pv->v[pv->n++] = p;
}
void ptrvec_free(struct ptrvec *pv);

/* A place in an input file; line and col count from 1. */
struct mark {
	const char *file;
	uint32_t file_index;    /* order of the file on the command line, for sorting */
	uint32_t line, col;
};

struct diag {
	struct mark at;
	char *msg;
	size_t seq;
};

/* Every error of a run, reported together, sorted by place. */
struct diags {
	struct diag *v;
	size_t n, cap;
};

void diag_error(struct diags *d, const struct mark *at, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void diag_verror(struct diags *d, const struct mark *at, const char *fmt, va_list ap);
void diags_sort(struct diags *d);
void diags_truncate(struct diags *d, size_t n);                /* takes back every error after the first n */
void diags_print(const struct diags *d, FILE *out);            /* FILE:LINE:COL: error: MESSAGE */
void diags_print_json(const struct diags *d, FILE *out);       /* {"errors":[...]} */
/* Every error for the user: {"errors":[...]} on out with json, else each on err and "N errors"
 * followed by outcome (e.g. ": nothing applied"). */
void diags_report(const struct diags *d, FILE *out, FILE *err, bool json, const char *outcome);
void diags_free(struct diags *d);


#endif
