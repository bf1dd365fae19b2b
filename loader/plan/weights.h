/* SPDX-License-Identifier: MIT */
/*
 * Istio's weight rules (1.15+), in one place for every stage that writes or reads weights: the
 * compiler, the saved plan's reader, sluiced's `sluice weight` and the data plane.
 *   - weights are relative non-negative integers up to 2^31 - 1;
 *   - a lone destination gets all traffic, whatever its weight, and holds weight 100;
 *   - several destinations whose weights sum to 0 are refused;
 *   - a destination's share is its weight over the sum (DESIGN.md §2, property 6).
 */
#ifndef SLUICE_PLAN_WEIGHTS_H
#define SLUICE_PLAN_WEIGHTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "plan/plan.h"

#define PLAN_WEIGHT_MAX 2147483647u
#define PLAN_LONE_WEIGHT 100

/* The weight a destination holds: as written, or PLAN_LONE_WEIGHT for the route's only one. */
static inline uint32_t plan_weight_held(uint32_t written, size_t n_destinations)
{
	return n_destinations == 1 ? PLAN_LONE_WEIGHT : written;
}

/* Percent of new connections: weight / sum, everything for a lone destination. */
double plan_share(uint32_t weight, uint64_t sum, size_t n_destinations);

/* NULL, or why a route's weights cannot be (several summing to 0), without place, in buf. */
const char *plan_weights_error(uint64_t sum, size_t n_destinations, char *buf, size_t len);

/* Each destination's percent from the weights. */
void plan_service_shares(struct plan_service *s);

/* A weight change, as `sluice weight SERVICE SUBSET=WEIGHT...` and sluiced's journal give it. */
struct weight_change {
	char service[64], namespace[64];
	size_t n;
	struct {
		char subset[64];
		uint32_t weight;
	} w[PLAN_MAX_DESTINATIONS];
};

/* A service as users name it: SERVICE, SERVICE.NAMESPACE, SERVICE.NAMESPACE.svc[.CLUSTER-DOMAIN]
 * (ns: the namespace of a bare SERVICE). NULL, or an error message in msg. */
const char *plan_service_ref(const char *arg, const char *ns, const char *domain, char service[64],
			     char namespace[64], char *msg, size_t len);

/* SUBSET=WEIGHT words, weights in plain digits. NULL, or an error message in msg. */
const char *weight_change_parse(struct weight_change *wc, char **words, size_t n_words, char *msg, size_t len);

/* Whether s is an entry (one port) of the service the change names. */
bool weight_change_names(const struct weight_change *wc, const struct plan_service *s);

/*
 * Sets the change's weights on every entry of its service, all or nothing: every route of the
 * service must be given a weight for each of its subsets, and no other. NULL, or why not in msg.
 */
const char *weight_change_apply(const struct weight_change *wc, struct plan *plan, char *msg, size_t len);

#endif
