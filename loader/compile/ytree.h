/* SPDX-License-Identifier: MIT */
/* YAML front end: libyaml events into a tree that remembers where every node was written. */
#ifndef SLUICE_YTREE_H
#define SLUICE_YTREE_H

#include "common/util.h"

enum ynode_type {
	YN_SCALAR = 1,
	YN_SEQ,
	YN_MAP,
};

struct ynode {
	uint8_t type;
	bool plain;             /* an unquoted scalar: may be a number, a bool or null */
	uint32_t line, col;     /* from 1 */
	uint32_t n;             /* YN_SEQ: items; YN_MAP: key/value pairs */
	const char *str;        /* YN_SCALAR: text, NUL-terminated */
	size_t len;
	struct ynode **items;   /* YN_SEQ: n items; YN_MAP: 2n nodes, key then value */
};

/* Aliases may share nodes; past this many nodes added by aliases a document is refused. */
#define YAML_MAX_ALIAS_NODES 1000000

/* Called once per non-empty document; the tree lives until fn returns. */
typedef void (*ydoc_fn)(void *ctx, const struct mark *file, struct ynode *root);

/* Parses every document of buf. Returns how many non-empty documents there were. */
size_t yaml_each_document(const unsigned char *buf, size_t len, const struct mark *file,
			  struct diags *d, ydoc_fn fn, void *ctx);
/* What a first look at an input finds, before any document is read: whether it holds only what
 * libyaml's reader takes as it is (else libyaml reads it whole: ytree.c's plain_text) and where its
 * first NUL is (SIZE_MAX: none). ytree_scan_bytes looks at bytes in memory, piece by piece (used:
 * how many it took, short of a character the piece's end cuts unless last); ytree_scan_fd at a
 * file through pread, so that its pages need not be mapped for it. 0 or -errno. */
struct ytree_scan {
	bool plain;
	size_t nul, scanned;
};
void ytree_scan_bytes(struct ytree_scan *sc, const unsigned char *s, size_t n, bool last, size_t *used);
int ytree_scan_fd(int fd, size_t len, struct ytree_scan *sc);
/* yaml_each_document over a file mmap'd read-only (sources.c) that ytree_scan_fd looked at: the
 * pages read are given back as it goes, so that a large input is never resident whole. */
size_t yaml_each_document_mapped(const unsigned char *buf, size_t len, const struct ytree_scan *scan,
				 const struct mark *file, struct diags *d, ydoc_fn fn, void *ctx);
/* A List's items read one at a time, as they are parsed: `kubectl get -o yaml` prints one List
 * document, and 150,000 objects as one tree would take gigabytes. The fast reader gives item each
 * item of the first "items" key of a document's root mapping (a block sequence, or a JSON array
 * as `-o json` prints it), the item's tree living until item returns; the root then holds items
 * empty. Whether the document was a List is
 * known only at its end ("kind" is printed after "items"): fn sees streamed > 0 and must judge;
 * spoiled says a document whose items were given was then left to libyaml or not read at all.
 * Either way the caller reads the input again without a stream.
 * split, join: at split (a line start), a streamed sequence at column 1 asks join whether another
 * thread read the items from there (yaml_stream_items); true: the reader goes on from *at. */
struct yaml_resume {
	const unsigned char *p, *ls;   /* the reader's cursor and the start of its line */
	uint32_t line;
	int indent;
	uint32_t items;                /* items the other thread gave */
};
struct yaml_stream {
	void (*item)(void *ctx, const struct mark *file, uint32_t index, struct ynode *item);
	uint32_t streamed;             /* the current document's items given so far */
	bool spoiled;
	const unsigned char *split;
	bool (*join)(void *join_ctx, uint32_t index, struct yaml_resume *at);
	void *join_ctx;
};
/* yaml_each_document over part of a larger input: len bytes from buf, which is a line start at
 * line; scan: what ytree_scan_* found in the whole input (plain, no NUL); mapped: give its pages
 * back as they are read; stream: NULL, or Lists streamed. */
size_t yaml_each_document_part(const unsigned char *buf, size_t len, uint32_t line, const struct ytree_scan *scan,
			       bool mapped, const struct mark *file, struct diags *d, ydoc_fn fn, void *ctx,
			       struct yaml_stream *stream);
/* Items of a block sequence at column 1 from buf (a line start at line) to its end, or (json)
 * values of the root's "items" array from one of them (buf: a line start, spaces before it) to
 * its ']' (where *end stops, the ']' not read), given to stream->item, numbered from
 * stream->streamed, as the first thread would give them had it read so far; *end: where they
 * end. false when the fast reader cannot read them (then what was given is worthless). */
bool yaml_stream_items(const unsigned char *buf, size_t len, uint32_t line, bool json, bool mapped,
		       const struct mark *file, struct diags *d, void *ctx, struct yaml_stream *stream,
		       struct yaml_resume *end);

/* The whole pages of a mapped input between from and to given back, read again if need be (a
 * large input is never resident whole); returns where the next give-back may start. */
const unsigned char *ytree_give_back(const unsigned char *from, const unsigned char *to);
/* For tests (ytree_fast_test.c), which hold the two readers to the same trees and errors: libyaml
 * alone, or the fast reader alone (SIZE_MAX at the first document it would leave to libyaml). */
enum yaml_readers { YAML_BOTH, YAML_LIBYAML_ONLY, YAML_FAST_ONLY };
size_t yaml_each_document_with(const unsigned char *buf, size_t len, const struct mark *file,
			       struct diags *d, ydoc_fn fn, void *ctx, enum yaml_readers readers);

/*
 * A tree read from JSON, written back as JSON (plain scalars as JSON's numbers, true, false and
 * null). hook, when not NULL, is asked about each member of each mapping (depth: 0 for the root's
 * members) and returns true when it wrote or dropped the member itself.
 */
struct json_writer;
typedef bool (*ytree_json_hook)(void *ctx, struct json_writer *w, const struct ynode *map, const struct ynode *key,
				const struct ynode *val, int depth);
void ytree_write_json(struct json_writer *w, const struct ynode *n, ytree_json_hook hook, void *ctx);

/* The field path (spec.http[0].route[1].destination.subset) of the node at line:col of a tree;
 * for objects from the API, which have no file or line worth showing. false when none is there. */
struct fieldpath;
bool ytree_path_at(const struct ynode *n, uint32_t line, uint32_t col, struct fieldpath *p);

static inline struct ynode *ymap_key(const struct ynode *m, uint32_t i) { return m->items[2 * i]; }
static inline struct ynode *ymap_val(const struct ynode *m, uint32_t i) { return m->items[2 * i + 1]; }
struct ynode *ymap_get(const struct ynode *m, const char *key);   /* NULL when absent */
bool ynode_is_null(const struct ynode *n);                          /* ~, null, empty plain */

#endif
