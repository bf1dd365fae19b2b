// SPDX-License-Identifier: MIT
/* The name and address rules of loader/common/names.c against the examples Kubernetes' and Istio's own
 * tests use, the hostile names of issue 10, and the quote every error puts a value in. */
#include <arpa/inet.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/names.h"
#include "common/util.h"

static int failures;

typedef const char *(*check_fn)(const char *s, size_t len);

static const struct {
	const char *rule;
	check_fn fn;
	const char *value;
	bool valid;
} names[] = {
	/* DNS-1123 label: namespaces, Service port names */
	{ "dns1123 label", name_dns1123_label_error, "a", true },
	{ "dns1123 label", name_dns1123_label_error, "istio-system", true },
	{ "dns1123 label", name_dns1123_label_error, "123-abc", true },
	{ "dns1123 label", name_dns1123_label_error, "", false },
	{ "dns1123 label", name_dns1123_label_error, "a b", false },
	{ "dns1123 label", name_dns1123_label_error, "A", false },
	{ "dns1123 label", name_dns1123_label_error, "-a", false },
	{ "dns1123 label", name_dns1123_label_error, "a-", false },
	{ "dns1123 label", name_dns1123_label_error, "a.b", false },
	{ "dns1123 label", name_dns1123_label_error, "a_b", false },
	{ "dns1123 label", name_dns1123_label_error, "%s%n", false },
	{ "dns1123 label", name_dns1123_label_error, "a\nb", false },
	{ "dns1123 label", name_dns1123_label_error, "abcdefghij-abcdefghij-abcdefghij-abcdefghij-abcdefghij-abcdefgh", true },
	{ "dns1123 label", name_dns1123_label_error,
	  "abcdefghij-abcdefghij-abcdefghij-abcdefghij-abcdefghij-abcdefghi", false },
	/* DNS-1123 subdomain: Pod, VirtualService, DestinationRule, Gateway names */
	{ "dns1123 subdomain", name_dns1123_subdomain_error, "reviews-v1-5f7c8d9b6a-a1b2c", true },
	{ "dns1123 subdomain", name_dns1123_subdomain_error, "example.com", true },
	{ "dns1123 subdomain", name_dns1123_subdomain_error, "1.2.3.4", true },
	{ "dns1123 subdomain", name_dns1123_subdomain_error, "a..b", false },
	{ "dns1123 subdomain", name_dns1123_subdomain_error, ".a", false },
	{ "dns1123 subdomain", name_dns1123_subdomain_error, "a.", false },
	{ "dns1123 subdomain", name_dns1123_subdomain_error, "a.-b", false },
	{ "dns1123 subdomain", name_dns1123_subdomain_error, "A.b", false },
	{ "dns1123 subdomain", name_dns1123_subdomain_error, "", false },
	/* DNS-1035 label: Service names */
	{ "dns1035 label", name_dns1035_label_error, "reviews", true },
	{ "dns1035 label", name_dns1035_label_error, "abc-123", true },
	{ "dns1035 label", name_dns1035_label_error, "1abc", false },
	{ "dns1035 label", name_dns1035_label_error, "a.b", false },
	{ "dns1035 label", name_dns1035_label_error, "a b", false },
	/* subsets, as Istio: upper case is fine */
	{ "subset", name_subset_error, "v1", true },
	{ "subset", name_subset_error, "V1", true },
	{ "subset", name_subset_error, "canary-2", true },
	{ "subset", name_subset_error, "v 1", false },
	{ "subset", name_subset_error, "v1=2", false },
	{ "subset", name_subset_error, "v1.2", false },
	{ "subset", name_subset_error, "v_1", false },
	{ "subset", name_subset_error, "", false },
	/* IANA service names: container ports, a named targetPort */
	{ "port name", name_port_name_error, "http", true },
	{ "port name", name_port_name_error, "http-metrics", true },
	{ "port name", name_port_name_error, "h2c", true },
	{ "port name", name_port_name_error, "a-very-long-nam", true },
	{ "port name", name_port_name_error, "a-very-long-name", false },
	{ "port name", name_port_name_error, "8080", false },
	{ "port name", name_port_name_error, "http--x", false },
	{ "port name", name_port_name_error, "-http", false },
	{ "port name", name_port_name_error, "HTTP", false },
	{ "port name", name_port_name_error, "", false },
	/* label keys and values */
	{ "label key", name_label_key_error, "app", true },
	{ "label key", name_label_key_error, "app.kubernetes.io/name", true },
	{ "label key", name_label_key_error, "Version_2", true },
	{ "label key", name_label_key_error, "/app", false },
	{ "label key", name_label_key_error, "a/b/c", false },
	{ "label key", name_label_key_error, "Example.com/app", false },
	{ "label key", name_label_key_error, "app ", false },
	{ "label key", name_label_key_error, "", false },
	{ "label value", name_label_value_error, "", true },
	{ "label value", name_label_value_error, "v1", true },
	{ "label value", name_label_value_error, "My_value.1", true },
	{ "label value", name_label_value_error, "v 1", false },
	{ "label value", name_label_value_error, "-v1", false },
	{ "label value", name_label_value_error, "v1=2", false },
	/* hosts, as Istio's ValidateWildcardDomain */
	{ "host", name_host_error, "reviews", true },
	{ "host", name_host_error, "reviews.default.svc.cluster.local", true },
	{ "host", name_host_error, "*", true },
	{ "host", name_host_error, "*.example.com", true },
	{ "host", name_host_error, "*-api.example.com", true },
	{ "host", name_host_error, "example.com.", true },
	{ "host", name_host_error, "reviews.", true },
	{ "host", name_host_error, ".", false },
	{ "host", name_host_error, "reviews..", false },
	{ "host", name_host_error, "reviews.default.5", false },
	{ "host", name_host_error, "reviews.5a", true },
	{ "host", name_host_error, "Reviews", true },
	{ "host", name_host_error, "a b", false },
	{ "host", name_host_error, "a..b", false },
	{ "host", name_host_error, "*.*.example.com", false },
	{ "host", name_host_error, "api.*.com", false },
	{ "host", name_host_error, "1.2.3.4", false },
	{ "host", name_host_error, "reviews/default", false },
	{ "host", name_host_error, "", false },
	/* gateway references, as Istio's validateGatewayNames */
	{ "gateway", name_gateway_ref_error, "mesh", true },
	{ "gateway", name_gateway_ref_error, "ecadraft-gateway", true },
	{ "gateway", name_gateway_ref_error, "istio-system/ingress", true },
	{ "gateway", name_gateway_ref_error, "ingress.istio-system.svc.cluster.local", true },
	{ "gateway", name_gateway_ref_error, "/ingress", false },
	{ "gateway", name_gateway_ref_error, "istio-system/", false },
	{ "gateway", name_gateway_ref_error, "a/b/c", false },
	{ "gateway", name_gateway_ref_error, "in gress", false },
	{ "gateway", name_gateway_ref_error, "ingress.", true },
	{ "gateway", name_gateway_ref_error, "ingress.5", false },
	{ "gateway", name_gateway_ref_error, "", false },
};

static void test_names(void)
{
	char long_name[301];
	memset(long_name, 'a', 300);
	long_name[300] = 0;
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		const char *why = names[i].fn(names[i].value, strlen(names[i].value));
		if ((why == NULL) != names[i].valid) {
			fprintf(stderr, "%s \"%s\": expected %s, got %s\n", names[i].rule, names[i].value,
				names[i].valid ? "valid" : "an error", why ? why : "valid");
			failures++;
		}
	}
	/* every rule refuses 300 characters; only the length is wrong */
	check_fn all[] = { name_dns1123_label_error, name_dns1123_subdomain_error, name_dns1035_label_error,
			   name_subset_error, name_port_name_error, name_label_key_error, name_label_value_error,
			   name_host_error, name_gateway_ref_error };
	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
		if (!all[i](long_name, 300)) {
			fprintf(stderr, "rule %zu accepts a name of 300 characters\n", i);
			failures++;
		}
	/* the length counts, not a NUL inside */
	if (!name_dns1123_label_error("ab\0c", 4)) {
		fprintf(stderr, "a NUL inside a label is accepted\n");
		failures++;
	}
}

static const struct {
	const char *addr, *why;   /* why: the start of the reason, or NULL when the address may be a VIP */
} vips[] = {
	{ "198.19.9.80", NULL },
	{ "10.96.0.1", NULL },
	{ "2001:db8::9:80", NULL },
	{ "127.0.0.1", "is a loopback address" },
	{ "127.255.0.9", "is a loopback address" },
	{ "::1", "is a loopback address" },
	{ "0.0.0.0", "is the unspecified address" },
	{ "::", "is the unspecified address" },
	{ "0.1.2.3", "is in 0.0.0.0/8" },
	{ "224.0.0.1", "is a multicast address" },
	{ "239.255.255.250", "is a multicast address" },
	{ "ff02::1", "is a multicast address" },
	{ "255.255.255.255", "is the limited broadcast address" },
	{ "169.254.1.1", "is a link-local address" },
	{ "fe80::1", "is a link-local address" },
	{ "febf::1", "is a link-local address" },
	{ "fec0::1", NULL },
	{ "::ffff:198.19.9.80", "is an IPv4-mapped IPv6 address" },
	{ "240.0.0.1", NULL },
};

static void test_vips(void)
{
	for (size_t i = 0; i < sizeof(vips) / sizeof(vips[0]); i++) {
		struct plan_addr a = { 0 };
		a.family = strchr(vips[i].addr, ':') ? AF_INET6 : AF_INET;
		if (inet_pton(a.family, vips[i].addr, a.addr) != 1)
			abort();
		const char *why = name_vip_error(&a);
		bool ok = vips[i].why ? why && !strncmp(why, vips[i].why, strlen(vips[i].why)) : !why;
		if (!ok) {
			fprintf(stderr, "VIP %s: expected %s, got %s\n", vips[i].addr, vips[i].why ? vips[i].why : "valid",
				why ? why : "valid");
			failures++;
		}
	}
}

static const struct {
	const char *desc, *value;
	size_t len;         /* 0: strlen(value) */
	const char *want;
} quotes[] = {
	{ "plain", "v1", 0, "\"v1\"" },
	{ "empty", "", 0, "\"\"" },
	{ "space", "a b", 0, "\"a b\"" },
	{ "newline and tab", "a\nservice x vip 1.2.3.4\t", 0, "\"a\\nservice x vip 1.2.3.4\\t\"" },
	{ "quote and backslash", "a\"b\\c", 0, "\"a\\\"b\\\\c\"" },
	{ "control byte and escape", "\x1b[2J\x7f", 0, "\"\\x1b[2J\\x7f\"" },
	{ "UTF-8 is escaped byte by byte", "v\xc2\x9b" "1", 0, "\"v\\xc2\\x9b1\"" },
	{ "a NUL inside", "a\0b", 3, "\"a\\x00b\"" },
	{ "64 bytes: whole", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", 0,
	  "\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"" },
	{ "65 bytes: cut", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaab", 0,
	  "\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa...\" (65 bytes)" },
	{ "an escape is not split", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\nbbbb", 0,
	  "\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\\n...\" (67 bytes)" },
	{ "escapes count toward the 64", "\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01", 0,
	  "\"\\x01\\x01\\x01\\x01\\x01\\x01\\x01\\x01\\x01\\x01\\x01\\x01\\x01\\x01\\x01\\x01...\" (17 bytes)" },
};

static void test_quote(void)
{
	char buf[NAME_QUOTE_CAP];
	for (size_t i = 0; i < sizeof(quotes) / sizeof(quotes[0]); i++) {
		size_t len = quotes[i].len ? quotes[i].len : strlen(quotes[i].value);
		const char *got = name_quote(quotes[i].value, len, buf, sizeof(buf));
		if (strcmp(got, quotes[i].want)) {
			fprintf(stderr, "quote, %s:\n  expected %s\n  got      %s\n", quotes[i].desc, quotes[i].want, got);
			failures++;
		}
	}
	/* a 100 MB name: 64 bytes of it and its length, in a buffer of the smallest size allowed */
	size_t big = 100 * 1024 * 1024;
	char *name = malloc(big), small[96];
	if (!name)
		abort();
	memset(name, 'a', big);
	const char *got = name_quote(name, big, small, sizeof(small));
	char want[128];
	snprintf(want, sizeof(want), "\"%.64s...\" (%zu bytes)", name, big);
	if (strcmp(got, want)) {
		fprintf(stderr, "quote, 100 MB:\n  expected %s\n  got      %s\n", want, got);
		failures++;
	}
	free(name);
	/* a buffer too small for 64 bytes still ends in the length, and never overflows */
	char tiny[40];
	memset(tiny, 'x', sizeof(tiny));
	got = name_quote("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", 52, tiny, 32);
	if (strlen(got) >= 32 || !strstr(got, "...\" (52 bytes)") || tiny[32] != 'x') {
		fprintf(stderr, "quote into 32 bytes: got %s\n", got);
		failures++;
	}
}

/* The net under an error that forgot to quote: no raw control byte, no unbounded message. */
static void test_diag_net(void)
{
	struct diags d = { 0 };
	struct mark at = { .file = "x.yaml", .line = 1, .col = 1 };
	diag_error(&d, &at, "subset %s is bad", "v1\nx.yaml:9:9: error: forged\x1b[2J\xc2\x9b");
	char *big = malloc(10000);
	if (!big)
		abort();
	memset(big, 'a', 9999);
	big[9999] = 0;
	diag_error(&d, &at, "host %s is bad", big);
	free(big);
	const char *want = "subset v1\\x0ax.yaml:9:9: error: forged\\x1b[2J\\xc2\\x9b is bad";
	if (d.n != 2 || strcmp(d.v[0].msg, want)) {
		fprintf(stderr, "diag net:\n  expected %s\n  got      %s\n", want, d.n ? d.v[0].msg : "(none)");
		failures++;
	}
	if (d.n == 2 && (strlen(d.v[1].msg) > 4200 || !strstr(d.v[1].msg, "... (message cut at 4096 bytes)"))) {
		fprintf(stderr, "diag net: a message of 10 kB is %zu bytes\n", strlen(d.v[1].msg));
		failures++;
	}
	diags_free(&d);
}

int main(void)
{
	test_diag_net();
	test_names();
	test_vips();
	test_quote();
	if (failures) {
		fprintf(stderr, "%d failed\n", failures);
		return 1;
	}
	return 0;
}
