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

int plan_copy(const struct plan *from, struct plan *to)
{
	struct arena *a = calloc(1, sizeof(*a));
	if (!a)
		return -1;
	memset(to, 0, sizeof(*to));
	to->arena = a;
	to->n_services = from->n_services;
	to->services = arena_alloc(a, (from->n_services + 1) * sizeof(*to->services));
	for (size_t i = 0; i < from->n_services; i++) {
		const struct plan_service *fs = &from->services[i];
		struct plan_service *ts = &to->services[i];
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
	return 0;
}

void plan_addr_str(const struct plan_addr *a, char *buf, size_t len)
{
	if (!inet_ntop(a->family, a->addr, buf, (socklen_t)len))
		snprintf(buf, len, "?");
}

void plan_endpoint_str(const struct plan_addr *a, uint16_t port, char *buf, size_t len)
{
	char ip[INET6_ADDRSTRLEN];
	plan_addr_str(a, ip, sizeof(ip));
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

