// SPDX-License-Identifier: MIT
#include "plan/plan.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plan/print.h"
#include "common/util.h"

void plan_free(struct plan *plan)
{
	if (plan->arena) {
		arena_free(plan->arena);
		free(plan->arena);
	}
	memset(plan, 0, sizeof(*plan));
}

static const char *copy_str(struct arena *a, const char *s)
{
	return s ? arena_strdup(a, s) : NULL;
}

bool plan_service_has_family(const struct plan_service *s, uint8_t family)
{
	for (size_t i = 0; i < s->n_vips; i++)
		if (s->vips[i].family == family)
			return true;
	for (size_t i = 0; i < s->n_gateway_addrs; i++)
		if (s->gateway_addrs[i].family == family)
			return true;
	return false;
}

void plan_service_copy(struct arena *a, const struct plan_service *fs, struct plan_service *ts)
{
	*ts = *fs;
	ts->name = copy_str(a, fs->name);
	ts->namespace = copy_str(a, fs->namespace);
	ts->route = copy_str(a, fs->route);
	ts->gateway = copy_str(a, fs->gateway);
	ts->destinations = arena_alloc(a, (fs->n_destinations + 1) * sizeof(*ts->destinations));
	for (size_t d = 0; d < fs->n_destinations; d++) {
		const struct plan_destination *fd = &fs->destinations[d];
		struct plan_destination *td = &ts->destinations[d];
		*td = *fd;
		td->host = copy_str(a, fd->host);
		td->subset = copy_str(a, fd->subset);
		td->endpoints = arena_alloc(a, (fd->n_endpoints + 1) * sizeof(*td->endpoints));
		for (size_t e = 0; e < fd->n_endpoints; e++) {
			td->endpoints[e] = fd->endpoints[e];
			td->endpoints[e].pod = copy_str(a, fd->endpoints[e].pod);
		}
	}
}

int plan_copy(const struct plan *from, struct plan *to)
{
	struct arena *a = calloc(1, sizeof(*a));
	if (!a)
		return -1;
	memset(to, 0, sizeof(*to));
	to->arena = a;
	to->n_services = from->n_services;
	to->services = arena_alloc(a, (from->n_services + 1) * sizeof(*to->services));
	for (size_t i = 0; i < from->n_services; i++)
		plan_service_copy(a, &from->services[i], &to->services[i]);
	return 0;
}

int plan_service_cmp(const void *pa, const void *pb)
{
	const struct plan_service *a = pa, *b = pb;
	int r = strcmp(a->namespace, b->namespace);
	if (!r)
		r = strcmp(a->name, b->name);
	if (!r)
		r = (a->port > b->port) - (a->port < b->port);
	if (!r)
		r = (a->protocol > b->protocol) - (a->protocol < b->protocol);
	return r;
}

static bool same_str(const char *a, const char *b)
{
	return a == b || (a && b && !strcmp(a, b));
}

static bool same_addrs(const struct plan_addr *a, const struct plan_addr *b, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (a[i].family != b[i].family || memcmp(a[i].addr, b[i].addr, sizeof(a[i].addr)))
			return false;
	return true;
}

bool plan_service_equal(const struct plan_service *a, const struct plan_service *b)
{
	if (!same_str(a->name, b->name) || !same_str(a->namespace, b->namespace) || a->n_vips != b->n_vips ||
	    !same_addrs(a->vips, b->vips, a->n_vips) || a->port != b->port || a->protocol != b->protocol ||
	    a->lb != b->lb || !same_str(a->route, b->route) || a->n_destinations != b->n_destinations ||
	    a->n_gateway_addrs != b->n_gateway_addrs || !same_addrs(a->gateway_addrs, b->gateway_addrs, a->n_gateway_addrs) ||
	    a->gateway_port != b->gateway_port || !same_str(a->gateway, b->gateway))
		return false;
	for (size_t d = 0; d < a->n_destinations; d++) {
		const struct plan_destination *x = &a->destinations[d], *y = &b->destinations[d];
		const struct plan_tcp_policy *p = &x->tcp, *q = &y->tcp;
		if (!same_str(x->host, y->host) || !same_str(x->subset, y->subset) || x->weight != y->weight ||
		    x->percent != y->percent || x->n_endpoints != y->n_endpoints ||
		    p->connect_timeout_ms != q->connect_timeout_ms || p->keepalive != q->keepalive ||
		    p->keepalive_time_s != q->keepalive_time_s || p->keepalive_interval_s != q->keepalive_interval_s ||
		    p->keepalive_probes != q->keepalive_probes)
			return false;
		for (size_t e = 0; e < x->n_endpoints; e++)
			if (!same_addrs(&x->endpoints[e].addr, &y->endpoints[e].addr, 1) ||
			    x->endpoints[e].port != y->endpoints[e].port || !same_str(x->endpoints[e].pod, y->endpoints[e].pod))
				return false;
	}
	return true;
}

/* An IPv4 address without printf (glibc's inet_ntop formats with it): plans print 150,000. */
void plan_addr_str(const struct plan_addr *a, char *buf, size_t len)
{
	if (a->family == AF_INET && len >= INET_ADDRSTRLEN) {
		char *p = buf;
		for (int i = 0; i < 4; i++) {
			p = uint_write(p, a->addr[i]);
			*p++ = i < 3 ? '.' : 0;
		}
		return;
	}
	if (!inet_ntop(a->family, a->addr, buf, (socklen_t)len))
		snprintf(buf, len, "?");
}

void plan_endpoint_str(const struct plan_addr *a, uint16_t port, char *buf, size_t len)
{
	char ip[INET6_ADDRSTRLEN];
	plan_addr_str(a, ip, sizeof(ip));
	size_t n = strlen(ip);
	if (a->family == AF_INET && n + 7 <= len) {   /* ":65535" and the NUL */
		memcpy(buf, ip, n);
		buf[n] = ':';
		*uint_write(buf + n + 1, port) = 0;
		return;
	}
	snprintf(buf, len, a->family == AF_INET6 ? "[%s]:%u" : "%s:%u", ip, port);
}

const char *plan_protocol_name(uint8_t protocol)
{
	return protocol == IPPROTO_UDP ? "UDP" : "TCP";
}

const char *plan_lb_name(enum plan_lb lb)
{
	return lb == PLAN_LB_RANDOM ? "RANDOM" : "ROUND_ROBIN";
}

/* Shares print with at most two decimals and no trailing zeros: 80, 33.33, 12.5. */
void plan_percent_str(double percent, char *buf, size_t len)
{
	snprintf(buf, len, "%.2f", percent);
	char *dot = strchr(buf, '.');
	if (!dot)
		return;
	char *end = buf + strlen(buf) - 1;
	while (end > dot && *end == '0')
		*end-- = 0;
	if (end == dot)
		*end = 0;
}

