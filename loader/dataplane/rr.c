/* SPDX-License-Identifier: MIT */
/* Weights and the round-robin table (rr.h): the arithmetic behind a service record's shares. */
#include <errno.h>
#include <string.h>

#include "dataplane/rr.h"

static uint32_t gcd32(uint32_t a, uint32_t b)
{
	while (b) {
		uint32_t t = a % b;
		a = b;
		b = t;
	}
	return a;
}

void scale_largest_remainder(const uint32_t *w, size_t n, uint64_t sum, uint32_t target, uint32_t *out)
{
	uint64_t rem[SLUICE_MAX_DESTINATIONS];
	uint64_t given = 0;

	for (size_t i = 0; i < n; i++) {
		out[i] = (uint32_t)((uint64_t)w[i] * target / sum);
		rem[i] = (uint64_t)w[i] * target % sum;
		given += out[i];
	}
	while (given < target) {
		size_t best = 0;
		for (size_t i = 1; i < n; i++)
			if (rem[i] > rem[best])
				best = i;
		out[best]++;
		rem[best] = 0;
		given++;
	}
}

int reduce_weights(const uint32_t *in, size_t n, uint32_t *out)
{
	uint64_t sum = 0;
	uint32_t g = 0;

	if (n == 1) {
		out[0] = 1;
		return 0;
	}
	for (size_t i = 0; i < n; i++) {
		g = gcd32(g, in[i]);
		sum += in[i];
	}
	if (sum == 0)
		return -EINVAL;
	for (size_t i = 0; i < n; i++)
		out[i] = in[i] / g;
	sum /= g;
	if (sum > RANDOM_WEIGHT_LIMIT) {
		uint32_t tmp[SLUICE_MAX_DESTINATIONS];
		memcpy(tmp, out, n * sizeof(*out));
		scale_largest_remainder(tmp, n, sum, RANDOM_WEIGHT_LIMIT, out);
	}
	return 0;
}

/*
 * Smooth weighted round robin (nginx): each destination gains its weight, the
 * richest is picked and pays the total. Over one table of length sum(w) every
 * destination appears exactly w times, spread out (4/1 -> 0 0 1 0 0). If the
 * reduced weights add up to more than SLUICE_RR_SLOTS they are first scaled to
 * SLUICE_RR_SLOTS by largest remainder: exact to 1/1024, a weight under 1/1024
 * of the total may round to no slot.
 */
uint16_t build_rr_table(const uint32_t *w, size_t n, uint8_t *table)
{
	uint32_t ws[SLUICE_MAX_DESTINATIONS];
	int64_t current[SLUICE_MAX_DESTINATIONS] = { 0 };
	uint64_t sum = 0;

	for (size_t i = 0; i < n; i++)
		sum += w[i];
	if (sum > SLUICE_RR_SLOTS) {
		scale_largest_remainder(w, n, sum, SLUICE_RR_SLOTS, ws);
		sum = SLUICE_RR_SLOTS;
	} else {
		memcpy(ws, w, n * sizeof(*w));
	}
	for (uint64_t s = 0; s < sum; s++) {
		size_t best = n;
		for (size_t i = 0; i < n; i++) {
			if (!ws[i])
				continue;
			current[i] += ws[i];
			if (best == n || current[i] > current[best])
				best = i;
		}
		current[best] -= (int64_t)sum;
		table[s] = (uint8_t)best;
	}
	return (uint16_t)sum;
}
