// SPDX-License-Identifier: MIT
/*
 * Weights and the round-robin table (loader/dataplane/rr.c), without root or BPF: the gcd
 * reduction (80/20 and 4/1 route alike), largest-remainder scaling when a total passes what a
 * record holds, and the interleaved table's promise that every window of sum consecutive
 * connections gives each destination exactly its weight (the e2e tests check the same through
 * the kernel). Table-driven: to add a case, add a row.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "dataplane/rr.h"

static int failures, checks;

/* One assertion: what was expected and what came, under the row's description. */
#define CHECK_EQ(desc, what, got, want)                                                                   \
	do {                                                                                               \
		long long got_ = (long long)(got), want_ = (long long)(want);                              \
		checks++;                                                                                  \
		if (got_ != want_) {                                                                       \
			fprintf(stderr, "%s: %s: expected %lld, got %lld\n", (desc), (what), want_, got_); \
			failures++;                                                                        \
		}                                                                                          \
	} while (0)

#define N(a) (sizeof(a) / sizeof((a)[0]))

/* ---- reduce_weights: Istio's weights -> the weights a record holds ---- */

static const struct {
	const char *desc;
	size_t n;
	uint32_t in[SLUICE_MAX_DESTINATIONS];
	int err;
	uint32_t want[SLUICE_MAX_DESTINATIONS];
} reduces[] = {
	{ "80/20 is divided by its gcd", 2, { 80, 20 }, 0, { 4, 1 } },
	{ "4/1 is already reduced", 2, { 4, 1 }, 0, { 4, 1 } },
	{ "50/50 is 1/1", 2, { 50, 50 }, 0, { 1, 1 } },
	{ "33/33/34 has gcd 1", 3, { 33, 33, 34 }, 0, { 33, 33, 34 } },
	{ "a lone destination gets everything (weight 100)", 1, { 100 }, 0, { 1 } },
	{ "a lone destination gets everything (weight 0)", 1, { 0 }, 0, { 1 } },
	{ "a zero weight stays zero: 100/0", 2, { 100, 0 }, 0, { 1, 0 } },
	{ "a zero weight stays zero: 0/30/60", 3, { 0, 30, 60 }, 0, { 0, 1, 2 } },
	{ "weights that all are zero are refused", 2, { 0, 0 }, -EINVAL, { 0 } },
	{ "16 destinations of 6 are 16 of 1", 16, { 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6 }, 0,
	  { 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1 } },
	{ "16 destinations 10..160 are 1..16", 16,
	  { 10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 110, 120, 130, 140, 150, 160 }, 0,
	  { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16 } },
	/* past RANDOM_WEIGHT_LIMIT (2^31): floors 1610612735/536870911/0, the two left over go to the
	 * largest remainders (destinations 1, then 0); weight 1 of 4e9 rounds to nothing */
	{ "3e9/1e9/1 sums past 2^31: scaled by largest remainder", 3, { 3000000000u, 1000000000u, 1 }, 0,
	  { 1610612736u, 536870912u, 0 } },
	{ "2^32-1 and 2^32-2 (gcd 1): scaled to 2^31", 2, { 4294967295u, 4294967294u }, 0,
	  { 1073741824u, 1073741824u } },
};

static void test_reduce(void)
{
	for (size_t r = 0; r < N(reduces); r++) {
		uint32_t out[SLUICE_MAX_DESTINATIONS] = { 0 };
		uint64_t sum = 0;
		int err = reduce_weights(reduces[r].in, reduces[r].n, out);
		CHECK_EQ(reduces[r].desc, "return value", err, reduces[r].err);
		if (err)
			continue;
		for (size_t i = 0; i < reduces[r].n; i++) {
			char what[64];
			snprintf(what, sizeof(what), "reduced weight of destination %zu", i);
			CHECK_EQ(reduces[r].desc, what, out[i], reduces[r].want[i]);
			sum += out[i];
		}
		if (sum > RANDOM_WEIGHT_LIMIT)
			CHECK_EQ(reduces[r].desc, "total at most 2^31", sum, RANDOM_WEIGHT_LIMIT);
	}
}

/* The same routing written with different numbers: the same record weights and the same table. */
static const struct {
	const char *desc;
	size_t n;
	uint32_t a[SLUICE_MAX_DESTINATIONS], b[SLUICE_MAX_DESTINATIONS];
} alike[] = {
	{ "80/20 and 4/1", 2, { 80, 20 }, { 4, 1 } },
	{ "300/100 and 3/1", 2, { 300, 100 }, { 3, 1 } },
	{ "0/50/25 and 0/2/1", 3, { 0, 50, 25 }, { 0, 2, 1 } },
	{ "a lone 100 and a lone 1", 1, { 100 }, { 1 } },
};

static void test_alike(void)
{
	for (size_t r = 0; r < N(alike); r++) {
		uint32_t ra[SLUICE_MAX_DESTINATIONS], rb[SLUICE_MAX_DESTINATIONS];
		uint8_t ta[SLUICE_RR_SLOTS], tb[SLUICE_RR_SLOTS];
		CHECK_EQ(alike[r].desc, "first reduces", reduce_weights(alike[r].a, alike[r].n, ra), 0);
		CHECK_EQ(alike[r].desc, "second reduces", reduce_weights(alike[r].b, alike[r].n, rb), 0);
		for (size_t i = 0; i < alike[r].n; i++) {
			char what[64];
			snprintf(what, sizeof(what), "reduced weight of destination %zu, second vs first", i);
			CHECK_EQ(alike[r].desc, what, rb[i], ra[i]);
		}
		uint16_t la = build_rr_table(ra, alike[r].n, ta), lb = build_rr_table(rb, alike[r].n, tb);
		CHECK_EQ(alike[r].desc, "table length, second vs first", lb, la);
		for (uint16_t s = 0; s < la && s < lb; s++) {
			char what[64];
			snprintf(what, sizeof(what), "slot %u, second vs first", s);
			CHECK_EQ(alike[r].desc, what, tb[s], ta[s]);
		}
	}
}

/* ---- scale_largest_remainder ---- */

static const struct {
	const char *desc;
	size_t n;
	uint32_t w[SLUICE_MAX_DESTINATIONS];
	uint32_t target;
	uint32_t want[SLUICE_MAX_DESTINATIONS];
} scales[] = {
	/* floors 999/23/0 with remainders 25/1001/1024 (of 1025): the two slots left go to the largest
	 * fractions, destinations 2 and 1, not to the largest weight */
	{ "1000/24/1 (1025) into 1024 slots", 3, { 1000, 24, 1 }, 1024, { 999, 24, 1 } },
	/* floors 695/298/29, remainders 950/260/850 (of 1030): +1 to destinations 0 and 2 */
	{ "700/300/30 (1030) into 1024 slots", 3, { 700, 300, 30 }, 1024, { 696, 298, 30 } },
	{ "1/1/1 into 1024 slots: the tie goes to the earlier destination", 3, { 1, 1, 1 }, 1024, { 342, 341, 341 } },
	{ "1/1/1 into 2: ties in order", 3, { 1, 1, 1 }, 2, { 1, 1, 0 } },
	{ "512/512 already fits 1024", 2, { 512, 512 }, 1024, { 512, 512 } },
	{ "a zero weight gets nothing: 0/2000/48", 3, { 0, 2000, 48 }, 1024, { 0, 1000, 24 } },
	{ "16 destinations 100..115 (1720) into 1024 slots", 16,
	  { 100, 101, 102, 103, 104, 105, 106, 107, 108, 109, 110, 111, 112, 113, 114, 115 }, 1024,
	  { 60, 60, 61, 61, 62, 63, 63, 64, 64, 65, 65, 66, 67, 67, 68, 68 } },
};

static void test_scale(void)
{
	for (size_t r = 0; r < N(scales); r++) {
		uint32_t out[SLUICE_MAX_DESTINATIONS] = { 0 };
		uint64_t sum = 0, given = 0;
		for (size_t i = 0; i < scales[r].n; i++)
			sum += scales[r].w[i];
		scale_largest_remainder(scales[r].w, scales[r].n, sum, scales[r].target, out);
		for (size_t i = 0; i < scales[r].n; i++) {
			char what[64];
			snprintf(what, sizeof(what), "share of destination %zu", i);
			CHECK_EQ(scales[r].desc, what, out[i], scales[r].want[i]);
			given += out[i];
		}
		CHECK_EQ(scales[r].desc, "sum of the shares", given, scales[r].target);
	}
}

/* xorshift64: the same weights on every run */
static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint32_t next_rand(uint32_t bound)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (uint32_t)(rng % bound);
}

/*
 * Any weights past 1024: the shares sum to 1024, each is its exact share rounded down or up, and
 * a destination rounded up never had a smaller remainder than one rounded down (an equal one
 * only if it comes first).
 */
static void test_scale_sweep(void)
{
	char desc[96];

	for (int round = 0; round < 5000; round++) {
		uint32_t w[SLUICE_MAX_DESTINATIONS], out[SLUICE_MAX_DESTINATIONS];
		size_t n = 1 + next_rand(SLUICE_MAX_DESTINATIONS);
		uint32_t bound = round % 2 ? 3000 : 1u << 30;
		uint64_t sum = 0, given = 0, up = 0;
		for (size_t i = 0; i < n; i++)
			sum += w[i] = next_rand(bound);
		if (sum <= SLUICE_RR_SLOTS)
			continue;
		scale_largest_remainder(w, n, sum, SLUICE_RR_SLOTS, out);
		snprintf(desc, sizeof(desc), "sweep round %d (%zu weights summing to %llu)", round, n,
			 (unsigned long long)sum);
		for (size_t i = 0; i < n; i++) {
			uint64_t floor_i = (uint64_t)w[i] * SLUICE_RR_SLOTS / sum;
			given += out[i];
			if (out[i] != floor_i)
				CHECK_EQ(desc, "a share is its floor or the floor + 1", out[i], floor_i + 1);
			up |= (uint64_t)(out[i] != floor_i) << i;
		}
		CHECK_EQ(desc, "sum of the shares", given, SLUICE_RR_SLOTS);
		for (size_t i = 0; i < n; i++)
			for (size_t j = 0; j < n; j++) {
				if (!(up >> i & 1) || (up >> j & 1))
					continue;
				uint64_t ri = (uint64_t)w[i] * SLUICE_RR_SLOTS % sum, rj = (uint64_t)w[j] * SLUICE_RR_SLOTS % sum;
				char what[96];
				snprintf(what, sizeof(what), "destination %zu rounded up before %zu of a larger remainder", i, j);
				CHECK_EQ(desc, what, ri > rj || (ri == rj && i < j), 1);
			}
	}
}

/* ---- build_rr_table: the interleaved table ROUND_ROBIN walks ---- */

static const struct {
	const char *desc;
	size_t n;
	uint32_t w[SLUICE_MAX_DESTINATIONS];  /* as Istio gives them: reduced first, as the map writer does */
	uint16_t len;                         /* the table's length (rr_slots) */
	uint32_t slots[SLUICE_MAX_DESTINATIONS];  /* each destination's slots in it */
	const char *table;                    /* the whole table, one digit a slot; NULL: not checked */
} tables[] = {
	{ "80/20: 4/1, spread out", 2, { 80, 20 }, 5, { 4, 1 }, "00100" },
	{ "50/50 alternates", 2, { 50, 50 }, 2, { 1, 1 }, "01" },
	{ "one destination: one slot", 1, { 100 }, 1, { 1 }, "0" },
	{ "a zero weight gets no slot: 1/0/1", 3, { 1, 0, 1 }, 2, { 1, 0, 1 }, "02" },
	{ "0/100: all to the second", 2, { 0, 100 }, 1, { 0, 1 }, "1" },
	{ "10/90", 2, { 10, 90 }, 10, { 1, 9 }, NULL },
	{ "33/33/34", 3, { 33, 33, 34 }, 100, { 33, 33, 34 }, NULL },
	{ "16 destinations of 1: each once", 16, { 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1 }, 16,
	  { 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1 }, NULL },
	{ "16 destinations 1..16: 136 slots", 16, { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16 }, 136,
	  { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16 }, NULL },
	{ "1000/24/1 (1025) is scaled into 1024 slots", 3, { 1000, 24, 1 }, 1024, { 999, 24, 1 }, NULL },
	{ "16 destinations 100..115 (1720) are scaled into 1024 slots", 16,
	  { 100, 101, 102, 103, 104, 105, 106, 107, 108, 109, 110, 111, 112, 113, 114, 115 }, 1024,
	  { 60, 60, 61, 61, 62, 63, 63, 64, 64, 65, 65, 66, 67, 67, 68, 68 }, NULL },
	{ "3e9/1e9/1, scaled twice (2^31, then 1024 slots)", 3, { 3000000000u, 1000000000u, 1 }, 1024,
	  { 768, 256, 0 }, NULL },
};

/*
 * What users rely on: connection k of a service takes slot (start + k) mod len, start being
 * wherever the shared round-robin position stands. Any `window` consecutive connections, from
 * any start, give destination i exactly want[i].
 */
static void check_windows(const char *desc, const uint8_t *table, uint16_t len, size_t n, uint64_t window,
			  const uint32_t *want)
{
	uint64_t count[SLUICE_MAX_DESTINATIONS] = { 0 };
	char what[96];

	for (uint64_t k = 0; k < window; k++)
		count[table[k % len]]++;
	for (uint64_t start = 0; start < len; start++) {
		for (size_t i = 0; i < n; i++) {
			if (count[i] == want[i] && start)
				continue;   /* one check per start is enough noise; a miss is reported below */
			snprintf(what, sizeof(what), "connections to destination %zu of %llu from slot %llu", i,
				 (unsigned long long)window, (unsigned long long)start);
			CHECK_EQ(desc, what, count[i], want[i]);
		}
		count[table[start]]--;
		count[table[(start + window) % len]]++;
	}
}

static void test_tables(void)
{
	for (size_t r = 0; r < N(tables); r++) {
		const char *desc = tables[r].desc;
		uint32_t reduced[SLUICE_MAX_DESTINATIONS];
		uint8_t table[SLUICE_RR_SLOTS];
		uint32_t count[SLUICE_MAX_DESTINATIONS] = { 0 };
		uint64_t raw_sum = 0, reduced_sum = 0;
		size_t n = tables[r].n;

		memset(table, 0xff, sizeof(table));
		CHECK_EQ(desc, "the weights reduce", reduce_weights(tables[r].w, n, reduced), 0);
		uint16_t len = build_rr_table(reduced, n, table);
		CHECK_EQ(desc, "table length", len, tables[r].len);
		if (len != tables[r].len || len == 0 || len > SLUICE_RR_SLOTS)
			continue;
		for (uint16_t s = 0; s < len; s++) {
			char what[64];
			if (table[s] >= n) {
				snprintf(what, sizeof(what), "slot %u: a destination index, at most %zu", s, n - 1);
				CHECK_EQ(desc, what, table[s], n - 1);
				goto next;
			}
			count[table[s]]++;
			if (tables[r].table) {
				snprintf(what, sizeof(what), "slot %u", s);
				CHECK_EQ(desc, what, table[s], tables[r].table[s] - '0');
			}
		}
		for (size_t i = 0; i < n; i++) {
			char what[64];
			snprintf(what, sizeof(what), "slots of destination %zu", i);
			CHECK_EQ(desc, what, count[i], tables[r].slots[i]);
			raw_sum += tables[r].w[i];
			reduced_sum += reduced[i];
		}
		/* unscaled, any raw-sum connections follow the raw weights (80/20: 80 of every 100);
		 * scaled, any 1024 follow the scaled ones */
		if (reduced_sum <= SLUICE_RR_SLOTS && n > 1)
			check_windows(desc, table, len, n, raw_sum, tables[r].w);
		check_windows(desc, table, len, n, len, tables[r].slots);
next:;
	}
}

int main(void)
{
	test_reduce();
	test_alike();
	test_scale();
	test_scale_sweep();
	test_tables();
	printf("rr_test: %zu rows, %d checks, %d failed\n",
	       N(reduces) + N(alike) + N(scales) + N(tables) + 1, checks, failures);
	return failures ? 1 : 0;
}
