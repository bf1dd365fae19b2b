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
