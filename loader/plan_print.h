/* SPDX-License-Identifier: MIT */
/* Text and JSON forms of a plan, shared by `sluice plan` and `sluice status`. */
#ifndef SLUICE_PLAN_PRINT_H
#define SLUICE_PLAN_PRINT_H

#include <stdio.h>

#include "plan.h"

void plan_addr_str(const struct plan_addr *a, char *buf, size_t len);
void plan_endpoint_str(const struct plan_addr *a, uint16_t port, char *buf, size_t len);  /* IP:PORT, [IP]:PORT */
void plan_percent_str(double percent, char *buf, size_t len);
const char *plan_protocol_name(uint8_t protocol);
const char *plan_lb_name(enum plan_lb lb);
void plan_print_text(const struct plan *plan, FILE *out);
void plan_print_json(const struct plan *plan, FILE *out);
void plan_print_json_generation(const struct plan *plan, uint64_t generation, FILE *out);  /* sluiced's state */
void plan_print_service_json(const struct plan_service *s, FILE *out);

#endif
