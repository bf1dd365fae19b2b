/* SPDX-License-Identifier: MIT */
#ifndef SLUICE_PLAN_LOAD_H
#define SLUICE_PLAN_LOAD_H

#include "plan/plan.h"
#include "common/util.h"

/* Parses {"generation":N,"services":[...]} as plan_print_json writes it. 0, or -1 with errors in d. */
int plan_read_json(const unsigned char *buf, size_t len, const char *name, struct plan *plan, uint64_t *generation,
		   struct diags *d);

#endif
