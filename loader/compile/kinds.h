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

#endif
