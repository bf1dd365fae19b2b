// SPDX-License-Identifier: MIT
/* sluiced's saved plan survives a restart: plan_print_json's output read back by plan_load_json
 * gives the same destinations, TCP policy included, and prints the same bytes again. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plan_load.h"
#include "plan_print.h"

static int failures;

#define ASSERT_TRUE(cond, what)                                                        \
	({                                                                             \
		bool ok_ = (cond);                                                     \
		if (!ok_) {                                                            \
			fprintf(stderr, "%s:%d: %s: expected %s\n", __FILE__, __LINE__, \
				what, #cond);                                          \
			failures++;                                                    \
		}                                                                      \
		ok_;                                                                   \
	})

#define ASSERT_EQ(got, want, what)                                                           \
	({                                                                                   \
		long long got_ = (long long)(got), want_ = (long long)(want);                \
		if (got_ != want_) {                                                         \
			fprintf(stderr, "%s:%d: %s: expected %lld, got %lld\n", __FILE__, __LINE__, \
				what, want_, got_);                                          \
			failures++;                                                          \
		}                                                                            \
		got_ == want_;                                                               \
	})

#define ASSERT_STREQ(got, want, what)                                                             \
	({                                                                                        \
		const char *got_ = (got), *want_ = (want);                                        \
		bool ok_ = got_ && !strcmp(got_, want_);                                          \
		if (!ok_) {                                                                       \
			fprintf(stderr, "%s:%d: %s:\n  expected %s\n  got      %s\n", __FILE__, __LINE__, \
				what, want_, got_ ? got_ : "(null)");                              \
			failures++;                                                               \
		}                                                                                 \
		ok_;                                                                              \
	})

/* A destination's TCP policy as the compiler may write it, and the JSON it saves as. */
static const struct {
	const char *desc;
	struct plan_tcp_policy tcp;
	const char *json;            /* the "tcp" member, or "" when none is printed */
} policies[] = {
	{ "no policy", { 0 }, "" },
	{ "connectTimeout alone", { .connect_timeout_ms = 500 }, ",\"tcp\":{\"connect_timeout_ms\":500}" },
	{ "connectTimeout at its maximum", { .connect_timeout_ms = 2147483647 },
	  ",\"tcp\":{\"connect_timeout_ms\":2147483647}" },
	{ "tcpKeepalive {}", { .keepalive = true },
	  ",\"tcp\":{\"keepalive\":{\"time_s\":0,\"interval_s\":0,\"probes\":0}}" },
	{ "tcpKeepalive at the kernel's limits",
	  { .keepalive = true, .keepalive_time_s = 32767, .keepalive_interval_s = 32767, .keepalive_probes = 127 },
	  ",\"tcp\":{\"keepalive\":{\"time_s\":32767,\"interval_s\":32767,\"probes\":127}}" },
	{ "both",
	  { .connect_timeout_ms = 1500, .keepalive = true, .keepalive_time_s = 60, .keepalive_interval_s = 10,
	    .keepalive_probes = 3 },
	  ",\"tcp\":{\"connect_timeout_ms\":1500,\"keepalive\":{\"time_s\":60,\"interval_s\":10,\"probes\":3}}" },
};

#define N_POLICIES (sizeof(policies) / sizeof(policies[0]))

static char *print_plan(const struct plan *plan, uint64_t generation, size_t *len)
{
	char *buf = NULL;
	FILE *out = open_memstream(&buf, len);
	if (!out)
		abort();
	plan_print_json_generation(plan, generation, out);
	fclose(out);
	return buf;
}

/* One TCP service whose destinations hold every policy of the table, one each. */
static void test_round_trip(void)
{
	struct plan_endpoint ep = { .addr = { .family = AF_INET }, .port = 8080, .pod = "" };
	struct plan_destination dests[N_POLICIES];
	struct plan_service svc = {
		.name = "reviews", .namespace = "default", .n_vips = 1, .port = 9080, .protocol = IPPROTO_TCP,
		.route = "default/reviews", .destinations = dests, .n_destinations = N_POLICIES,
	};
	struct plan plan = { .services = &svc, .n_services = 1 };
	inet_pton(AF_INET, "198.19.9.80", svc.vips[0].addr);
	svc.vips[0].family = AF_INET;
	inet_pton(AF_INET, "198.18.9.11", ep.addr.addr);
	for (size_t i = 0; i < N_POLICIES; i++)
		dests[i] = (struct plan_destination){ .host = "reviews.default", .subset = "v1", .weight = 1,
						      .percent = 100.0 / N_POLICIES, .endpoints = &ep, .n_endpoints = 1,
						      .tcp = policies[i].tcp };

	size_t len;
	char *saved = print_plan(&plan, 7, &len);
	for (size_t i = 0; i < N_POLICIES; i++) {
		char want[256];
		snprintf(want, sizeof(want), "\"endpoints\":[\"198.18.9.11:8080\"]%s}", policies[i].json);
		ASSERT_TRUE(strstr(saved, want) != NULL, policies[i].desc);
	}

	struct plan back;
	struct diags d = { 0 };
	uint64_t generation = 0;
	if (!ASSERT_EQ(plan_load_json((unsigned char *)saved, len, "state.json", &back, &generation, &d), 0,
		       "plan_load_json")) {
		diags_print(&d, stderr);
		goto cleanup;
	}
	ASSERT_EQ(generation, 7, "generation");
	ASSERT_TRUE(strstr(saved, "\"route\":\"default/reviews\"") != NULL, "the route is saved");
	if (!ASSERT_EQ(back.n_services, 1, "services") || !ASSERT_EQ(back.services[0].n_destinations, N_POLICIES,
								       "destinations"))
		goto cleanup_plan;
	for (size_t i = 0; i < N_POLICIES; i++) {
		const struct plan_tcp_policy *want = &policies[i].tcp, *got = &back.services[0].destinations[i].tcp;
		char what[128];
		snprintf(what, sizeof(what), "%s: connect_timeout_ms", policies[i].desc);
		ASSERT_EQ(got->connect_timeout_ms, want->connect_timeout_ms, what);
		snprintf(what, sizeof(what), "%s: keepalive", policies[i].desc);
		ASSERT_EQ(got->keepalive, want->keepalive, what);
		snprintf(what, sizeof(what), "%s: keepalive_time_s", policies[i].desc);
		ASSERT_EQ(got->keepalive_time_s, want->keepalive_time_s, what);
		snprintf(what, sizeof(what), "%s: keepalive_interval_s", policies[i].desc);
		ASSERT_EQ(got->keepalive_interval_s, want->keepalive_interval_s, what);
		snprintf(what, sizeof(what), "%s: keepalive_probes", policies[i].desc);
		ASSERT_EQ(got->keepalive_probes, want->keepalive_probes, what);
	}
	size_t len2;
	char *again = print_plan(&back, generation, &len2);
	ASSERT_STREQ(again, saved, "the reloaded plan prints as it was saved");
	free(again);
cleanup_plan:
	plan_free(&back);
cleanup:
	diags_free(&d);
	free(saved);
}

/* A saved "tcp" that sluiced did not write is refused, naming the member, rather than half-applied. */
static const struct {
	const char *desc, *tcp, *error;
} bad_policies[] = {
	{ "empty tcp object", "{}", "bad or missing \"tcp\" in saved plan" },
	{ "tcp not an object", "5", "bad or missing \"tcp\" in saved plan" },
	{ "connect timeout of 0", "{\"connect_timeout_ms\":0}", "bad or missing \"connect_timeout_ms\" in saved plan" },
	{ "connect timeout past INT_MAX", "{\"connect_timeout_ms\":2147483648}",
	  "bad or missing \"connect_timeout_ms\" in saved plan" },
	{ "connect timeout not whole", "{\"connect_timeout_ms\":1.5}",
	  "bad or missing \"connect_timeout_ms\" in saved plan" },
	{ "keepalive without probes", "{\"keepalive\":{\"time_s\":1,\"interval_s\":1}}",
	  "bad or missing \"probes\" in saved plan" },
	{ "keepalive probes past 127", "{\"keepalive\":{\"time_s\":1,\"interval_s\":1,\"probes\":128}}",
	  "bad or missing \"probes\" in saved plan" },
	{ "keepalive time past 32767", "{\"keepalive\":{\"time_s\":32768,\"interval_s\":1,\"probes\":1}}",
	  "bad or missing \"time_s\" in saved plan" },
	{ "keepalive not an object", "{\"keepalive\":true}", "bad or missing \"keepalive\" in saved plan" },
};

static void test_bad_saved_policy(void)
{
	for (size_t i = 0; i < sizeof(bad_policies) / sizeof(bad_policies[0]); i++) {
		char json[512];
		int len = snprintf(json, sizeof(json),
				   "{\"services\":[{\"name\":\"r\",\"namespace\":\"default\",\"vips\":[\"198.19.9.80\"],"
				   "\"port\":80,\"protocol\":\"TCP\",\"loadBalancer\":\"ROUND_ROBIN\",\"destinations\":"
				   "[{\"host\":\"r.default\",\"subset\":\"\",\"weight\":100,\"percent\":100,"
				   "\"endpoints\":[],\"tcp\":%s}]}]}",
				   bad_policies[i].tcp);
		struct plan plan;
		struct diags d = { 0 };
		int rc = plan_load_json((unsigned char *)json, (size_t)len, "state.json", &plan, NULL, &d);
		if (ASSERT_EQ(rc, -1, bad_policies[i].desc) && ASSERT_EQ(d.n, 1, bad_policies[i].desc))
			ASSERT_STREQ(d.v[0].msg, bad_policies[i].error, bad_policies[i].desc);
		diags_free(&d);
	}
}

int main(void)
{
	test_round_trip();
	test_bad_saved_policy();
	if (failures) {
		fprintf(stderr, "%d failed\n", failures);
		return 1;
	}
	return 0;
}
