/* SPDX-License-Identifier: MIT */
/*
 * Weights and the round-robin table: Istio's weights become the reduced weights a service
 * record holds (RANDOM draws against their sum) and the interleaved table ROUND_ROBIN walks.
 * Arithmetic only, no BPF and no maps: tests/unit/rr_test.c checks it without root (DESIGN.md §8).
 */
#ifndef SLUICE_DATAPLANE_RR_H
#define SLUICE_DATAPLANE_RR_H

#include <stddef.h>
#include <stdint.h>

#include "sluice_abi.h"

#define RANDOM_WEIGHT_LIMIT (1u << 31)   /* total of the reduced weights RANDOM draws against */

/*
 * Istio's weights (n of them, 1..SLUICE_MAX_DESTINATIONS) to the reduced weights a record
 * holds: a lone destination gets everything (1); otherwise divided by their gcd (80/20 -> 4/1)
 * and, only if the total exceeds RANDOM_WEIGHT_LIMIT, scaled to it by largest remainder.
 * -EINVAL if all are zero.
 */
int reduce_weights(const uint32_t *in, size_t n, uint32_t *out);

/*
 * w[] (n weights that sum to sum > 0) scaled to sum exactly to target: each gets the floor of
 * its share, and what is left goes one each to the largest remainders (ties to the earlier
 * destination).
 */
void scale_largest_remainder(const uint32_t *w, size_t n, uint64_t sum, uint32_t target, uint32_t *out);

/*
 * The round-robin table of reduced weights w[] (n of them, not all zero): fills table[] with
 * destination indexes and returns its length, sum(w), or SLUICE_RR_SLOTS when sum(w) is larger
 * (the weights then scaled to SLUICE_RR_SLOTS by largest remainder). In any window of
 * sum consecutive slots, wrapping around, destination i holds exactly w[i] slots, spread out.
 */
uint16_t build_rr_table(const uint32_t *w, size_t n, uint8_t *table);

#endif
