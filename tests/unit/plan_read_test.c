// SPDX-License-Identifier: MIT
/* sluiced's saved plan survives a restart: plan_print_json's output read back by plan_read_json
 * gives the same destinations, TCP policy included, and prints the same bytes again; and a saved
 * plan that sluiced did not write is refused with the compiler's rules, at its FILE:LINE:COL. */
#include <arpa/inet.h>
#include <glob.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plan/read.h"
#include "plan/print.h"

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
	if (!ASSERT_EQ(plan_read_json((unsigned char *)saved, len, "state.json", &back, &generation, &d), 0,
		       "plan_read_json")) {
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

/*
 * A saved plan as sluiced writes it, a service or destination a line so that places read as
 * line:column: two services, the second dual-stack, UDP and reached through a Gateway too. Each
 * bad case below changes one piece of it.
 */
#define REVIEWS                                                                                             \
	"{\"name\":\"reviews\",\"namespace\":\"default\",\"vips\":[\"198.19.9.80\"],\"port\":9080,"             \
	"\"protocol\":\"TCP\",\"loadBalancer\":\"ROUND_ROBIN\",\"route\":\"default/reviews\",\"destinations\":[\n"
#define REVIEWS_V1 \
	"{\"host\":\"reviews.default\",\"subset\":\"v1\",\"weight\":80,\"percent\":80,\"endpoints\":[\"198.18.9.11:9080\"]}"
#define REVIEWS_V2                                                                                                  \
	"{\"host\":\"reviews.default\",\"subset\":\"v2\",\"weight\":20,\"percent\":20,\"endpoints\":[\"198.18.9.21:9080\"]," \
	"\"tcp\":{\"connect_timeout_ms\":500,\"keepalive\":{\"time_s\":60,\"interval_s\":10,\"probes\":3}}}"
#define RATINGS                                                                                                 \
	"{\"name\":\"ratings\",\"namespace\":\"shop\",\"vips\":[\"198.19.9.90\",\"2001:db8::9:90\"],\"port\":53,"      \
	"\"protocol\":\"UDP\",\"loadBalancer\":\"RANDOM\",\"route\":\"shop/ratings\",\"gateway\":\"shop/ingress\","     \
	"\"gatewayAddresses\":[\"198.19.100.1\"],\"gatewayPort\":5353,\"destinations\":[\n"
#define RATINGS_ALL                                                     \
	"{\"host\":\"ratings.shop\",\"subset\":\"\",\"weight\":100,\"percent\":100," \
	"\"endpoints\":[\"198.18.9.31:5353\",\"[2001:db8::9:31]:5353\"]}"

static const char base_plan[] = "{\"generation\":3,\"services\":[\n" REVIEWS REVIEWS_V1 ",\n" REVIEWS_V2 "]},\n" RATINGS
				RATINGS_ALL "]}\n]}\n";

/* The base plan with the first `from` replaced by `to`; NULL if `from` is not in it. */
static char *edit_plan(const char *from, const char *to)
{
	const char *at = strstr(base_plan, from);
	if (!at)
		return NULL;
	size_t head = (size_t)(at - base_plan), len = strlen(base_plan) - strlen(from) + strlen(to);
	char *out = malloc(len + 1);
	if (!out)
		abort();
	memcpy(out, base_plan, head);
	strcpy(out + head, to);
	strcat(out, at + strlen(from));
	return out;
}

/* A saved plan that sluiced did not write is refused whole, at the member that is wrong, with the
 * rule it breaks: the same rules as the compiler's for names, addresses, weights and limits. */
static const struct {
	const char *desc, *from, *to;
	unsigned line, col;
	const char *error;
} bad_plans[] = {
	/* weights: integers 0..2147483647 as the printer writes them */
	{ "weight -1", "\"weight\":80", "\"weight\":-1", 3, 50,
	  "services[0].destinations[0].weight must be an integer from 0 to 2147483647 written as plain digits, got -1" },
	{ "weight 1e300", "\"weight\":80", "\"weight\":1e300", 3, 50,
	  "services[0].destinations[0].weight must be an integer from 0 to 2147483647 written as plain digits, got 1e300" },
	{ "weight 5e9", "\"weight\":80", "\"weight\":5e9", 3, 50,
	  "services[0].destinations[0].weight must be an integer from 0 to 2147483647 written as plain digits, got 5e9" },
	{ "weight 5000000000", "\"weight\":80", "\"weight\":5000000000", 3, 50,
	  "services[0].destinations[0].weight must be an integer from 0 to 2147483647 written as plain digits, got "
	  "5000000000" },
	{ "weight 2147483648", "\"weight\":80", "\"weight\":2147483648", 3, 50,
	  "services[0].destinations[0].weight must be an integer from 0 to 2147483647 written as plain digits, got "
	  "2147483648" },
	{ "weight 1.5", "\"weight\":80", "\"weight\":1.5", 3, 50,
	  "services[0].destinations[0].weight must be an integer from 0 to 2147483647 written as plain digits, got 1.5" },
	{ "weight +5", "\"weight\":80", "\"weight\":+5", 3, 50,
	  "services[0].destinations[0].weight must be an integer from 0 to 2147483647 written as plain digits, got +5" },
	{ "weight \" 5\"", "\"weight\":80", "\"weight\":\" 5\"", 3, 50,
	  "services[0].destinations[0].weight must be an integer from 0 to 2147483647 written as plain digits, got the "
	  "string \" 5\"" },
	{ "weight 080", "\"weight\":80", "\"weight\":080", 3, 50,
	  "services[0].destinations[0].weight must be an integer from 0 to 2147483647 written as plain digits, got 080" },
	{ "weight null", "\"weight\":80", "\"weight\":null", 3, 50,
	  "services[0].destinations[0].weight must be an integer from 0 to 2147483647 written as plain digits, got null" },
	{ "weights summing to 0",
	  "\"weight\":80,\"percent\":80,\"endpoints\":[\"198.18.9.11:9080\"]},\n"
	  "{\"host\":\"reviews.default\",\"subset\":\"v2\",\"weight\":20",
	  "\"weight\":0,\"percent\":80,\"endpoints\":[\"198.18.9.11:9080\"]},\n"
	  "{\"host\":\"reviews.default\",\"subset\":\"v2\",\"weight\":0",
	  2, 163,
	  "services[0].destinations: the weights of the 2 destinations sum to 0: give at least one a positive weight" },
	{ "weight missing", "\"weight\":80,", "", 3, 1, "services[0].destinations[0].weight is missing" },
	/* shares: a number from 0 to 100, recomputed */
	{ "percent as a string", "\"percent\":80", "\"percent\":\"80%\"", 3, 63,
	  "services[0].destinations[0].percent must be a number from 0 to 100, got the string \"80%\"" },
	{ "percent past 100", "\"percent\":80", "\"percent\":180", 3, 63,
	  "services[0].destinations[0].percent must be a number from 0 to 100, got 180" },
	/* ports and protocols */
	{ "port 0", "\"port\":9080", "\"port\":0", 2, 71,
	  "services[0].port must be an integer from 1 to 65535 written as plain digits, got 0" },
	{ "port 65536", "\"port\":9080", "\"port\":65536", 2, 71,
	  "services[0].port must be an integer from 1 to 65535 written as plain digits, got 65536" },
	{ "port as a string", "\"port\":9080", "\"port\":\"9080\"", 2, 71,
	  "services[0].port must be an integer from 1 to 65535 written as plain digits, got the string \"9080\"" },
	{ "gateway port 0", "\"gatewayPort\":5353", "\"gatewayPort\":0", 5, 227,
	  "services[1].gatewayPort must be an integer from 1 to 65535 written as plain digits, got 0" },
	{ "protocol SCTP", "\"protocol\":\"TCP\"", "\"protocol\":\"SCTP\"", 2, 87,
	  "services[0].protocol must be TCP or UDP, got the string \"SCTP\"" },
	{ "load balancer LEAST_CONN", "\"loadBalancer\":\"ROUND_ROBIN\"", "\"loadBalancer\":\"LEAST_CONN\"", 2, 108,
	  "services[0].loadBalancer must be ROUND_ROBIN or RANDOM, got the string \"LEAST_CONN\"" },
	{ "TCP policy on a UDP service", "\"weight\":100,\"percent\":100,",
	  "\"weight\":100,\"percent\":100,\"tcp\":{\"connect_timeout_ms\":5},", 6, 69,
	  "services[1].destinations[0].tcp: a TCP policy on a UDP service" },
	/* names, as the compiler checks them */
	{ "service name with a space", "\"name\":\"reviews\"", "\"name\":\"a b\"", 2, 9,
	  "services[0].name \"a b\" is not a valid DNS-1035 label: lowercase letters, digits and '-', starting with a "
	  "letter and ending with a letter or digit, at most 63 characters" },
	{ "service name with a newline", "\"name\":\"reviews\"", "\"name\":\"web\\nservice evil.default  vip 1.2.3.4\"", 2,
	  9,
	  "services[0].name \"web\\nservice evil.default  vip 1.2.3.4\" is not a valid DNS-1035 label: lowercase "
	  "letters, digits and '-', starting with a letter and ending with a letter or digit, at most 63 characters" },
	{ "service name empty", "\"name\":\"reviews\"", "\"name\":\"\"", 2, 9,
	  "services[0].name \"\" is not a valid DNS-1035 label: lowercase letters, digits and '-', starting with a "
	  "letter and ending with a letter or digit, at most 63 characters" },
	{ "service name not a string", "\"name\":\"reviews\"", "\"name\":5", 2, 9,
	  "services[0].name must be a string, got 5" },
	{ "namespace with a dot", "\"namespace\":\"default\"", "\"namespace\":\"shop.prod\"", 2, 31,
	  "services[0].namespace \"shop.prod\" is not a valid DNS-1123 label: lowercase letters, digits and '-', "
	  "starting and ending with a letter or digit, at most 63 characters" },
	{ "subset v1=2", "\"subset\":\"v1\"", "\"subset\":\"v1=2\"", 3, 36,
	  "services[0].destinations[0].subset \"v1=2\" is not a valid DNS-1123 label: letters, digits and '-', "
	  "starting and ending with a letter or digit, at most 63 characters" },
	{ "subset %s%n", "\"subset\":\"v1\"", "\"subset\":\"%s%n\"", 3, 36,
	  "services[0].destinations[0].subset \"%s%n\" is not a valid DNS-1123 label: letters, digits and '-', "
	  "starting and ending with a letter or digit, at most 63 characters" },
	{ "host without a namespace", "\"host\":\"reviews.default\"", "\"host\":\"reviews\"", 3, 9,
	  "services[0].destinations[0].host \"reviews\" is not NAME.NAMESPACE" },
	{ "host with a bad name", "\"host\":\"reviews.default\"", "\"host\":\"a b.default\"", 3, 9,
	  "services[0].destinations[0].host \"a b.default\": its name is not a valid DNS-1035 label: lowercase letters, "
	  "digits and '-', starting with a letter and ending with a letter or digit, at most 63 characters" },
	{ "route with a bad namespace", "\"route\":\"default/reviews\"", "\"route\":\"Default/reviews\"", 2, 130,
	  "services[0].route \"Default/reviews\": its namespace is not a valid DNS-1123 label: lowercase letters, "
	  "digits and '-', starting and ending with a letter or digit, at most 63 characters" },
	{ "route without a slash", "\"route\":\"default/reviews\"", "\"route\":\"reviews\"", 2, 130,
	  "services[0].route \"reviews\" is not NAMESPACE/NAME" },
	{ "gateway with a bad name", "\"gateway\":\"shop/ingress\"", "\"gateway\":\"shop/in gress\"", 5, 162,
	  "services[1].gateway \"shop/in gress\": its name is not a valid DNS-1123 subdomain: lowercase letters, "
	  "digits, '-' and '.', each part between dots starting and ending with a letter or digit, at most 253 "
	  "characters" },
	/* addresses, as the compiler checks them */
	{ "VIP 127.0.0.1", "\"vips\":[\"198.19.9.80\"]", "\"vips\":[\"127.0.0.1\"]", 2, 49,
	  "services[0].vips[0] \"127.0.0.1\" is a loopback address (127.0.0.0/8, ::1): as a VIP it would take over "
	  "every process's connections to that port on the node, a pod's connections to its own listeners included" },
	{ "VIP ::", "\"2001:db8::9:90\"", "\"::\"", 5, 60,
	  "services[1].vips[1] \"::\" is the unspecified address (0.0.0.0, ::): a connection to it reaches the node "
	  "itself, so as a VIP it would take over every process's connections to that port on the node" },
	{ "VIP not an address", "\"vips\":[\"198.19.9.80\"]", "\"vips\":[\"reviews\"]", 2, 49,
	  "services[0].vips[0] \"reviews\" is not an IP address" },
	{ "two IPv4 VIPs", "\"2001:db8::9:90\"", "\"198.19.9.91\"", 5, 60,
	  "services[1].vips[1]: a service has at most one VIP per IP family" },
	{ "three VIPs", "\"vips\":[\"198.19.9.80\"]", "\"vips\":[\"198.19.9.80\",\"2001:db8::1\",\"198.19.9.81\"]", 2, 48,
	  "services[0].vips must be a list of at most 2 addresses, one per IP family, got 3" },
	{ "no VIP and no gateway", "\"vips\":[\"198.19.9.80\"]", "\"vips\":[]", 2, 48,
	  "services[0].vips is empty and there is no gateway: the service cannot be reached" },
	{ "gateway address 255.255.255.255", "\"gatewayAddresses\":[\"198.19.100.1\"]",
	  "\"gatewayAddresses\":[\"255.255.255.255\"]", 5, 197,
	  "services[1].gatewayAddresses[0] \"255.255.255.255\" is the limited broadcast address (255.255.255.255): it "
	  "reaches every host on the link, not one service" },
	{ "gateway addresses without a gateway", "\"route\":\"default/reviews\",",
	  "\"route\":\"default/reviews\",\"gatewayAddresses\":[\"198.19.100.2\"],", 2, 167,
	  "services[0]: gatewayAddresses without gateway" },
	{ "a VIP that is an endpoint", "\"198.18.9.11:9080\"", "\"198.19.9.90:9080\"", 5, 46,
	  "services[1].vips[0] \"198.19.9.90\" is also an endpoint (line 3): as a VIP it would take over every "
	  "connection made to that pod" },
	/* endpoints */
	{ "endpoint without a port", "\"198.18.9.11:9080\"", "\"198.18.9.11\"", 3, 79,
	  "services[0].destinations[0].endpoints[0] must be IP:PORT or [IPv6]:PORT with a port from 1 to 65535, got "
	  "the string \"198.18.9.11\"" },
	{ "endpoint port 0", "\"198.18.9.11:9080\"", "\"198.18.9.11:0\"", 3, 79,
	  "services[0].destinations[0].endpoints[0] must be IP:PORT or [IPv6]:PORT with a port from 1 to 65535, got "
	  "the string \"198.18.9.11:0\"" },
	{ "IPv6 endpoint without brackets", "\"[2001:db8::9:31]:5353\"", "\"2001:db8::9:31:5353\"", 6, 95,
	  "services[1].destinations[0].endpoints[1] must be IP:PORT or [IPv6]:PORT with a port from 1 to 65535, got "
	  "the string \"2001:db8::9:31:5353\"" },
	{ "IPv6 endpoint of an IPv4 service", "\"198.18.9.11:9080\"", "\"[2001:db8::9:11]:9080\"", 3, 79,
	  "services[0].destinations[0].endpoints[0] \"[2001:db8::9:11]:9080\" is IPv6 but the service has no IPv6 "
	  "address" },
	/* the plan's shape */
	{ "unknown member", "\"port\":9080,", "\"port\":9080,\"mirror\":\"v3\",", 2, 76,
	  "services[0]: unknown member \"mirror\": sluiced does not write it" },
	{ "destinations missing", ",\"destinations\":[\n" RATINGS_ALL "]}", "}", 5, 1,
	  "services[1].destinations is missing" },
	{ "generation -1", "\"generation\":3", "\"generation\":-1", 1, 15,
	  "generation must be an integer from 0 to 18446744073709551615 written as plain digits, got -1" },
	{ "unknown member of the plan", "\"generation\":3,", "\"generation\":3,\"weights\":{},", 1, 17,
	  "unknown member \"weights\": sluiced does not write it" },
	/* one service, one entry; one address, port and protocol, one route */
	{ "a service twice", "]}\n]}\n", "]},\n" REVIEWS REVIEWS_V1 "]}\n]}\n", 7, 1,
	  "services[2] repeats service reviews.default port 9080/TCP (first at line 2)" },
	{ "an address, port and protocol twice", "\"198.19.100.1\"],\"gatewayPort\":5353",
	  "\"198.19.9.90\"],\"gatewayPort\":53", 5, 197,
	  "services[1].gatewayAddresses[0]: 198.19.9.90 port 53/UDP is served twice (first at line 5): one address, "
	  "port and protocol has one route" },
};

/* Whole documents that are not a saved plan. */
static const struct {
	const char *desc, *json;
	unsigned line, col;
	const char *error;
} bad_documents[] = {
	{ "empty", "", 1, 1, "empty state file" },
	{ "not a mapping", "[]", 1, 1, "the saved plan must be a mapping with services, got a list" },
	{ "services not a list", "{\"services\":{}}", 1, 13,
	  "services must be a list of at most 65536 services, got a mapping" },
	{ "services missing", "{\"generation\":1}", 1, 1, "services is missing" },
	{ "a second document", "{\"services\":[]}\n---\n{\"services\":[]}", 3, 1,
	  "a second document: the saved plan is one JSON object" },
};

/* The line of json at `line`, from column `col`, for a failure's message. */
static void show_place(const char *json, unsigned line, unsigned col)
{
	const char *p = json;
	for (unsigned l = 1; l < line && p; l++)
		p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL;
	if (p && col >= 1 && strlen(p) >= col - 1)
		fprintf(stderr, "    at %u:%u: %.40s\n", line, col, p + col - 1);
}

static void check_refused(const char *desc, const char *json, unsigned line, unsigned col, const char *error)
{
	struct plan plan;
	struct diags d = { 0 };
	int rc = plan_read_json((const unsigned char *)json, strlen(json), "state.json", &plan, NULL, &d);
	if (ASSERT_EQ(rc, -1, desc) && ASSERT_EQ(d.n, 1, desc)) {
		ASSERT_STREQ(d.v[0].msg, error, desc);
		ASSERT_STREQ(d.v[0].at.file, "state.json", desc);
		if (!ASSERT_EQ(d.v[0].at.line, line, desc) | !ASSERT_EQ(d.v[0].at.col, col, desc))
			show_place(json, d.v[0].at.line, d.v[0].at.col);
	} else {
		diags_print(&d, stderr);
	}
	if (!rc)
		plan_free(&plan);
	diags_free(&d);
}

static void test_bad_saved_plans(void)
{
	for (size_t i = 0; i < sizeof(bad_plans) / sizeof(bad_plans[0]); i++) {
		char *json = edit_plan(bad_plans[i].from, bad_plans[i].to);
		if (ASSERT_TRUE(json != NULL, bad_plans[i].desc))
			check_refused(bad_plans[i].desc, json, bad_plans[i].line, bad_plans[i].col, bad_plans[i].error);
		free(json);
	}
	for (size_t i = 0; i < sizeof(bad_documents) / sizeof(bad_documents[0]); i++)
		check_refused(bad_documents[i].desc, bad_documents[i].json, bad_documents[i].line, bad_documents[i].col,
			      bad_documents[i].error);
}

/* A plan the printer wrote, loaded, printed again: the same bytes. */
static bool reloads_as_saved(const char *desc, const char *json, struct plan *back)
{
	struct diags d = { 0 };
	uint64_t generation = 0;
	int rc = plan_read_json((const unsigned char *)json, strlen(json), "state.json", back, &generation, &d);
	if (!ASSERT_EQ(rc, 0, desc)) {
		diags_print(&d, stderr);
		diags_free(&d);
		return false;
	}
	diags_free(&d);
	size_t len;
	char *again = print_plan(back, generation, &len);
	/* the printer's compact form of json: whitespace outside strings dropped (plans hold none inside) */
	char *compact = malloc(strlen(json) + 1), *o = compact;
	if (!compact)
		abort();
	for (const char *p = json; *p; p++)
		if (*p != ' ' && *p != '\n')
			*o++ = *p;
	*o++ = '\n';
	*o = 0;
	bool same = ASSERT_STREQ(again, compact, desc);
	free(again);
	free(compact);
	return same;
}

/* Plans of the release before this one carry no "route"; shares are the weights', not the file's. */
static void test_good_saved_plans(void)
{
	struct plan back;
	char *old = edit_plan(",\"route\":\"default/reviews\"", "");
	if (reloads_as_saved("a plan without route (the release before)", old, &back)) {
		ASSERT_TRUE(back.services[0].route == NULL, "no route");
		ASSERT_STREQ(back.services[1].route, "shop/ratings", "the other service's route");
		plan_free(&back);
	}
	free(old);

	/* the file's shares are ignored: 1 and 3 are 25% and 75%, a lone destination 100% whatever its weight */
	static const char shares[] =
		"{\"services\":[{\"name\":\"a\",\"namespace\":\"default\",\"vips\":[\"198.19.1.1\"],\"port\":80,"
		"\"protocol\":\"TCP\",\"loadBalancer\":\"ROUND_ROBIN\",\"destinations\":["
		"{\"host\":\"a.default\",\"subset\":\"v1\",\"weight\":1,\"percent\":99,\"endpoints\":[]},"
		"{\"host\":\"a.default\",\"subset\":\"v2\",\"weight\":3,\"percent\":1,\"endpoints\":[]}]},"
		"{\"name\":\"b\",\"namespace\":\"default\",\"vips\":[\"198.19.1.2\"],\"port\":80,"
		"\"protocol\":\"TCP\",\"loadBalancer\":\"ROUND_ROBIN\",\"destinations\":["
		"{\"host\":\"b.default\",\"subset\":\"\",\"weight\":0,\"percent\":0,\"endpoints\":[]}]}]}";
	struct diags d = { 0 };
	if (ASSERT_EQ(plan_read_json((const unsigned char *)shares, strlen(shares), "state.json", &back, NULL, &d), 0,
		      "shares")) {
		ASSERT_EQ(back.services[0].destinations[0].percent * 100, 2500, "1 of 4 is 25%");
		ASSERT_EQ(back.services[0].destinations[1].percent * 100, 7500, "3 of 4 is 75%");
		ASSERT_EQ(back.services[1].destinations[0].percent * 100, 10000, "a lone destination takes 100%");
		plan_free(&back);
	}
	diags_free(&d);

	/* every plan the unit tables expect of the compiler reloads as it was printed */
	glob_t g;
	size_t n = 0;
	if (!glob("tests/unit/*/*.plan.json", 0, NULL, &g)) {
		for (size_t i = 0; i < g.gl_pathc; i++) {
			FILE *f = fopen(g.gl_pathv[i], "r");
			char *json = NULL;
			size_t cap = 0;
			if (!f || getdelim(&json, &cap, 0, f) < 0)
				abort();
			fclose(f);
			if (reloads_as_saved(g.gl_pathv[i], json, &back))
				plan_free(&back);
			free(json);
			n++;
		}
		globfree(&g);
	}
	ASSERT_TRUE(n >= 20, "the expected plans of tests/unit/ are found (run from the top of the tree)");
}

/* 16 destinations and 4,096 endpoints each are the limits; one more is refused. */
static void test_limits(void)
{
	for (int over = 0; over < 2; over++) {
		char *json = NULL;
		size_t len;
		FILE *out = open_memstream(&json, &len);
		fputs("{\"services\":[{\"name\":\"a\",\"namespace\":\"default\",\"vips\":[\"198.19.1.1\"],\"port\":80,"
		      "\"protocol\":\"TCP\",\"loadBalancer\":\"ROUND_ROBIN\",\"destinations\":[",
		      out);
		for (int i = 0; i < 16 + over; i++) {
			fprintf(out, "%s{\"host\":\"a.default\",\"subset\":\"v%d\",\"weight\":1,\"percent\":6.25,\"endpoints\":[",
				i ? "," : "", i);
			for (int e = 0; e < (i ? 1 : PLAN_MAX_ENDPOINTS + over); e++)
				fprintf(out, "%s\"198.18.%d.%d:8080\"", e ? "," : "", i ? 200 + i : e / 256, e % 256);
			fputs("]}", out);
		}
		fputs("]}]}", out);
		fclose(out);
		struct plan plan;
		struct diags d = { 0 };
		int rc = plan_read_json((const unsigned char *)json, len, "state.json", &plan, NULL, &d);
		if (!over) {
			if (ASSERT_EQ(rc, 0, "16 destinations, 4096 endpoints"))
				plan_free(&plan);
		} else if (ASSERT_EQ(rc, -1, "17 destinations, 4097 endpoints") && ASSERT_EQ(d.n, 1, "one error")) {
			ASSERT_STREQ(d.v[0].msg,
				     "services[0].destinations must be a list of 1 to 16 destinations, got 17",
				     "17 destinations");
		}
		diags_free(&d);
		free(json);
	}
	/* 4,097 endpoints in one destination */
	char *json = NULL;
	size_t len;
	FILE *out = open_memstream(&json, &len);
	fputs("{\"services\":[{\"name\":\"a\",\"namespace\":\"default\",\"vips\":[\"198.19.1.1\"],\"port\":80,"
	      "\"protocol\":\"TCP\",\"loadBalancer\":\"ROUND_ROBIN\",\"destinations\":["
	      "{\"host\":\"a.default\",\"subset\":\"v1\",\"weight\":1,\"percent\":100,\"endpoints\":[",
	      out);
	for (int e = 0; e < PLAN_MAX_ENDPOINTS + 1; e++)
		fprintf(out, "%s\"198.18.%d.%d:8080\"", e ? "," : "", e / 256, e % 256);
	fputs("]}]}]}", out);
	fclose(out);
	struct plan plan;
	struct diags d = { 0 };
	if (ASSERT_EQ(plan_read_json((const unsigned char *)json, len, "state.json", &plan, NULL, &d), -1,
		      "4097 endpoints") && ASSERT_EQ(d.n, 1, "one error")) {
		ASSERT_STREQ(d.v[0].msg,
			     "services[0].destinations[0].endpoints has 4097 endpoints, more than the limit of 4096",
			     "4097 endpoints");
		ASSERT_EQ(d.v[0].at.col, 213, "4097 endpoints: the column of the list");
	}
	diags_free(&d);
	free(json);
}

int main(void)
{
	test_round_trip();
	test_bad_saved_plans();
	test_good_saved_plans();
	test_limits();
	if (failures) {
		fprintf(stderr, "%d failed\n", failures);
		return 1;
	}
	return 0;
}
