/* SPDX-License-Identifier: MIT */
/* One reader per kind sluice reads: an object of the input becomes a record in the compile
 * context's lists (YAML -> records). compile.c calls them, one object at a time. */
#ifndef SLUICE_COMPILE_KINDS_H
#define SLUICE_COMPILE_KINDS_H

#include "compile/context.h"

void cc_read_service(struct cctx *c, const struct ynode *obj);          /* service.c */
void cc_read_pod(struct cctx *c, const struct ynode *obj);              /* pod.c */
void cc_read_virtual_service(struct cctx *c, const struct ynode *obj);  /* virtual_service.c */
void cc_read_destination_rule(struct cctx *c, const struct ynode *obj); /* destination_rule.c */
void cc_read_gateway(struct cctx *c, const struct ynode *obj);          /* gateway.c */

/* One input's documents into the records (reading.c): read as compile_opts.reading says, or whole
 * trees on one thread (whole). last: no input follows, whose duplicates need its objects' keys.
 * Returns how many documents it held. */
size_t cc_read_input(struct cctx *c, const struct compile_input *in, const struct mark *file, bool whole, bool last);
/* A document, and a streamed List's item (ytree.h), to its kind's reader (compile.c). */
void cc_read_document(void *ctx, const struct mark *file, struct ynode *root);
void cc_read_item(void *ctx, const struct mark *file, uint32_t index, struct ynode *item);

/* What the follower keeps of an object (compile_member_json): a Pod's spec and status as pod.c
 * reads them. */
struct json_writer;
void cc_pod_spec_json(struct json_writer *w, const struct ynode *spec);
void cc_pod_status_json(struct json_writer *w, const struct ynode *status);

#endif
