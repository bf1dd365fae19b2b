// SPDX-License-Identifier: MIT
/* Names and addresses as Kubernetes and Istio accept them; see names.h for where each applies. */
#include "common/names.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <arpa/inet.h>
#include <sys/socket.h>

static bool lower_alnum(char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9');
}

static bool alnum(char ch)
{
	return lower_alnum(ch) || (ch >= 'A' && ch <= 'Z');
}

/* [a-z0-9]([-a-z0-9]*[a-z0-9])?, any length but not empty: one part of a Kubernetes DNS name. */
static bool k8s_label_chars(const char *s, size_t len)
{
	if (!len || !lower_alnum(s[0]) || !lower_alnum(s[len - 1]))
		return false;
	for (size_t i = 1; i + 1 < len; i++)
		if (!lower_alnum(s[i]) && s[i] != '-')
			return false;
	return true;
}

/* Istio's labels.IsDNS1123Label: [a-zA-Z0-9](?:[-a-zA-Z0-9]*[a-zA-Z0-9])?, at most 63. */
static bool istio_label(const char *s, size_t len)
{
	if (!len || len > 63 || !alnum(s[0]) || !alnum(s[len - 1]))
		return false;
	for (size_t i = 1; i + 1 < len; i++)
		if (!alnum(s[i]) && s[i] != '-')
			return false;
	return true;
}

#define DNS1123_LABEL_RULE \
	"lowercase letters, digits and '-', starting and ending with a letter or digit, at most 63 characters"

const char *name_dns1123_label_error(const char *s, size_t len)
{
	if (len <= 63 && k8s_label_chars(s, len))
		return NULL;
	return "is not a valid DNS-1123 label: " DNS1123_LABEL_RULE;
}

static bool dns1123_subdomain(const char *s, size_t len)
{
	if (len > 253)
		return false;
	size_t start = 0;
	for (size_t i = 0; i <= len; i++) {
		if (i < len && s[i] != '.')
			continue;
		if (!k8s_label_chars(s + start, i - start))
			return false;
		start = i + 1;
	}
	return true;
}

const char *name_dns1123_subdomain_error(const char *s, size_t len)
{
	if (dns1123_subdomain(s, len))
		return NULL;
	return "is not a valid DNS-1123 subdomain: lowercase letters, digits, '-' and '.', each part between dots "
	       "starting and ending with a letter or digit, at most 253 characters";
}

const char *name_dns1035_label_error(const char *s, size_t len)
{
	if (len <= 63 && k8s_label_chars(s, len) && s[0] >= 'a' && s[0] <= 'z')
		return NULL;
	return "is not a valid DNS-1035 label: lowercase letters, digits and '-', starting with a letter and ending "
	       "with a letter or digit, at most 63 characters";
}

#define ISTIO_LABEL_RULE "letters, digits and '-', starting and ending with a letter or digit, at most 63 characters"

const char *name_istio_label_error(const char *s, size_t len)
{
	if (istio_label(s, len))
		return NULL;
	return "is not a valid DNS-1123 label: " ISTIO_LABEL_RULE;
}

const char *name_subset_error(const char *s, size_t len)
{
	/* Istio's own IsDNS1123Label takes upper case too: a subset named V1 is valid there */
	return name_istio_label_error(s, len);
}

const char *name_port_name_error(const char *s, size_t len)
{
	bool letter = false, ok = len >= 1 && len <= 15 && s[0] != '-' && s[len - 1] != '-';
	for (size_t i = 0; ok && i < len; i++) {
		ok = lower_alnum(s[i]) || (s[i] == '-' && (i == 0 || s[i - 1] != '-'));
		letter = letter || (s[i] >= 'a' && s[i] <= 'z');
	}
	if (ok && letter)
		return NULL;
	return "is not a valid port name: at most 15 lowercase letters, digits and '-', with at least one letter, "
	       "not starting or ending with '-' and without '--'";
}

/* ([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9], at most 63: a label key's name, a label value. */
static bool qualified_name_part(const char *s, size_t len)
{
	if (!len || len > 63 || !alnum(s[0]) || !alnum(s[len - 1]))
		return false;
	for (size_t i = 1; i + 1 < len; i++)
		if (!alnum(s[i]) && s[i] != '-' && s[i] != '_' && s[i] != '.')
			return false;
	return true;
}

const char *name_label_key_error(const char *s, size_t len)
{
	const char *slash = memchr(s, '/', len);
	bool ok;
	if (!slash) {
		ok = qualified_name_part(s, len);
	} else {
		size_t plen = (size_t)(slash - s);
		const char *name = slash + 1;
		size_t nlen = len - plen - 1;
		ok = plen && dns1123_subdomain(s, plen) && !memchr(name, '/', nlen) && qualified_name_part(name, nlen);
	}
	if (ok)
		return NULL;
	return "is not a valid label key: an optional DNS-1123 subdomain and '/', then at most 63 letters, digits, "
	       "'-', '_' and '.', starting and ending with a letter or digit";
}

const char *name_label_value_error(const char *s, size_t len)
{
	if (!len || qualified_name_part(s, len))
		return NULL;
	return "is not a valid label value: empty, or at most 63 letters, digits, '-', '_' and '.', starting and "
	       "ending with a letter or digit";
}

/* Istio's ValidateDNS1123Labels: dot-separated labels, the last not all digits; a trailing dot is allowed. */
static bool istio_dns_labels(const char *s, size_t len)
{
	if (!len)
		return true;   /* what follows the dot of "example." */
	size_t last = len;
	while (last > 0 && s[last - 1] != '.')
		last--;
	/* strconv.Atoi: an optional sign and digits */
	size_t i = last + (last < len && (s[last] == '+' || s[last] == '-'));
	bool numeric = i < len;
	for (; i < len; i++)
		numeric = numeric && s[i] >= '0' && s[i] <= '9';
	if (numeric)
		return false;
	size_t start = 0;
	for (i = 0; i <= len; i++) {
		if (i < len && s[i] != '.')
			continue;
		if (i == len && start == len)
			return true;   /* "example.com." */
		if (!istio_label(s + start, i - start))
			return false;
		start = i + 1;
	}
	return true;
}

/* Istio's IsWildcardDNS1123Label: "*", a label, or "*" or "*-" then a label; at most 63. */
static bool istio_wildcard_label(const char *s, size_t len)
{
	if (len > 63)
		return false;
	if (len == 1 && s[0] == '*')
		return true;
	if (len && s[0] == '*') {
		s++, len--;
		if (len && s[0] == '-')
			s++, len--;
	}
	return istio_label(s, len);
}

const char *name_host_error(const char *s, size_t len)
{
	bool ok = len >= 1 && len <= 255;
	if (ok) {
		const char *dot = memchr(s, '.', len);
		size_t first = dot ? (size_t)(dot - s) : len;
		ok = istio_wildcard_label(s, first) && (!dot || istio_dns_labels(dot + 1, len - first - 1));
	}
	if (ok)
		return NULL;
	return "is not a valid host: a DNS name of at most 255 characters, its parts between dots made of letters, "
	       "digits and '-', starting and ending with a letter or digit, at most 63 characters each, the last not "
	       "all digits, the first may be \"*\" or start with \"*\"";
}

const char *name_gateway_ref_error(const char *s, size_t len)
{
	const char *slash = memchr(s, '/', len);
	bool ok;
	if (!slash) {
		ok = len >= 1 && len <= 255 && istio_dns_labels(s, len);   /* mesh, NAME, or NAME.NAMESPACE... */
	} else {
		size_t nslen = (size_t)(slash - s);
		ok = istio_label(s, nslen) && istio_label(slash + 1, len - nslen - 1);
	}
	if (ok)
		return NULL;
	return "is not a valid gateway reference: \"mesh\", NAME or NAMESPACE/NAME, each a DNS-1123 label: "
	       ISTIO_LABEL_RULE;
}

bool name_parse_addr(const char *s, struct plan_addr *addr)
{
	memset(addr, 0, sizeof(*addr));
	if (inet_pton(AF_INET, s, addr->addr) == 1)
		addr->family = AF_INET;
	else if (inet_pton(AF_INET6, s, addr->addr) == 1)
		addr->family = AF_INET6;
	return addr->family != 0;
}

const char *name_vip_error(const struct plan_addr *addr)
{
	static const char loopback[] =
		"is a loopback address (127.0.0.0/8, ::1): as a VIP it would take over every process's connections "
		"to that port on the node, a pod's connections to its own listeners included";
	static const char unspecified[] =
		"is the unspecified address (0.0.0.0, ::): a connection to it reaches the node itself, so as a VIP it "
		"would take over every process's connections to that port on the node";
	static const char link_local[] =
		"is a link-local address (169.254.0.0/16, fe80::/10): nodes and pods use these for their own links "
		"(169.254.1.1 is a pod's gateway under Calico), so a VIP there would take their traffic";
	static const char multicast[] =
		"is a multicast address (224.0.0.0/4, ff00::/8): it names a group of hosts, not one service";
	const uint8_t *a = addr->addr;
	if (addr->family == AF_INET) {
		if (!a[0] && !a[1] && !a[2] && !a[3])
			return unspecified;
		if (a[0] == 0)
			return "is in 0.0.0.0/8 (\"this network\"), a source address only: no host can be reached there";
		if (a[0] == 127)
			return loopback;
		if (a[0] == 169 && a[1] == 254)
			return link_local;
		if ((a[0] & 0xf0) == 224)
			return multicast;
		if (a[0] == 255 && a[1] == 255 && a[2] == 255 && a[3] == 255)
			return "is the limited broadcast address (255.255.255.255): it reaches every host on the link, not "
			       "one service";
		return NULL;
	}
	if (addr->family != AF_INET6)
		return "is not an IP address";
	static const uint8_t zero[16];
	if (!memcmp(a, zero, 15) && a[15] <= 1)
		return a[15] ? loopback : unspecified;
	if (a[0] == 0xff)
		return multicast;
	if (a[0] == 0xfe && (a[1] & 0xc0) == 0x80)
		return link_local;
	if (!memcmp(a, zero, 10) && a[10] == 0xff && a[11] == 0xff)
		return "is an IPv4-mapped IPv6 address (::ffff:0:0/96): connections to it go over IPv4, so write the "
		       "IPv4 address itself";
	return NULL;
}

/* The escaped form of one byte, as a C string writes it. */
static size_t escape_byte(unsigned char ch, char esc[5])
{
	static const char hex[] = "0123456789abcdef";
	switch (ch) {
	case '"': memcpy(esc, "\\\"", 3); return 2;
	case '\\': memcpy(esc, "\\\\", 3); return 2;
	case '\n': memcpy(esc, "\\n", 3); return 2;
	case '\t': memcpy(esc, "\\t", 3); return 2;
	case '\r': memcpy(esc, "\\r", 3); return 2;
	}
	if (ch >= 0x20 && ch <= 0x7e) {
		esc[0] = (char)ch;
		esc[1] = 0;
		return 1;
	}
	esc[0] = '\\';
	esc[1] = 'x';
	esc[2] = hex[ch >> 4];
	esc[3] = hex[ch & 15];
	esc[4] = 0;
	return 4;
}

const char *name_quote(const char *s, size_t len, char *buf, size_t cap)
{
	char esc[5], tail[48];
	size_t whole = 0, i;
	for (i = 0; i < len && whole <= NAME_QUOTE_MAX; i++)
		whole += escape_byte((unsigned char)s[i], esc);
	bool cut = whole > NAME_QUOTE_MAX || 2 + whole >= cap;
	if (cut)
		snprintf(tail, sizeof(tail), "...\" (%zu bytes)", len);
	else
		memcpy(tail, "\"", 2);
	size_t tail_len = strlen(tail);
	if (cap < 2 + tail_len) {
		if (cap)
			buf[0] = 0;
		return buf;
	}
	size_t budget = cap - 2 - tail_len, out = 1;   /* room for the text between the quotes */
	if (budget > NAME_QUOTE_MAX)
		budget = NAME_QUOTE_MAX;
	buf[0] = '"';
	for (i = 0; i < len; i++) {
		size_t w = escape_byte((unsigned char)s[i], esc);
		if (out - 1 + w > budget)
			break;
		memcpy(buf + out, esc, w);
		out += w;
	}
	memcpy(buf + out, tail, tail_len + 1);
	return buf;
}
