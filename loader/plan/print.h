/* SPDX-License-Identifier: MIT */
/* Text and JSON forms of a plan, shared by `sluice plan` and `sluice status`. */
#ifndef SLUICE_PLAN_PRINT_H
#define SLUICE_PLAN_PRINT_H

#include <stdio.h>

#include "common/json.h"
#include "plan/plan.h"

void plan_addr_str(const struct plan_addr *a, char *buf, size_t len);
void plan_endpoint_str(const struct plan_addr *a, uint16_t port, char *buf, size_t len);  /* IP:PORT, [IP]:PORT */
void plan_percent_str(double percent, char *buf, size_t len);
const char *plan_protocol_name(uint8_t protocol);
const char *plan_lb_name(enum plan_lb lb);
/* A destination's TCP policy: "connect timeout 500ms, keepalive 60s/10s x3" ("default": the kernel's) */
void plan_print_tcp_text(const struct plan_tcp_policy *t, FILE *out);
/* "  subset v1       weight 80   share    80%": a destination as `sluice plan` and status begin it */
void plan_print_destination_text(const struct plan_destination *pd, uint32_t weight, double percent, FILE *out);
void plan_print_text(const struct plan *plan, FILE *out);
void plan_print_json(const struct plan *plan, FILE *out);
char *plan_json_string(const struct plan *plan);   /* the same, malloc'd (to compare plans); NULL: no memory */
void plan_print_json_generation(const struct plan *plan, uint64_t generation, FILE *out);  /* sluiced's state */

/* Pieces of a JSON object being written: "tcp":{...} (nothing when no policy is set), a list of
 * addresses, a share as a number, a Gateway route's "gateway", "gatewayAddresses", "gatewayPort". */
void plan_json_tcp(json_writer_t *w, const struct plan_tcp_policy *t);
void plan_json_addrs(json_writer_t *w, const char *name, const struct plan_addr *a, size_t n);
void plan_json_percent(json_writer_t *w, const char *name, double percent);
void plan_json_gateway(json_writer_t *w, const struct plan_service *s);

#endif
