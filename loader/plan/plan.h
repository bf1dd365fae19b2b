/* SPDX-License-Identifier: MIT */
/* The routing plan: what the compiler produces from YAML and the map writer consumes (DESIGN.md §5). */
#ifndef SLUICE_PLAN_H
#define SLUICE_PLAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PLAN_MAX_DESTINATIONS 16    /* per route */
#define PLAN_MAX_ENDPOINTS 4096     /* per subset: 16 of them fill a record's 16-bit slot range */
#define PLAN_MAX_SERVICES 65536     /* (service, port) entries */
#define PLAN_MAX_GATEWAY_ADDRS 4    /* per (service, port) entry */

enum plan_lb {
	PLAN_LB_ROUND_ROBIN = 0,    /* Istio's default */
	PLAN_LB_RANDOM = 1,
};

struct plan_addr {
	uint8_t family;             /* AF_INET or AF_INET6 */
	uint8_t addr[16];           /* IPv4 in the first 4 bytes, network order */
};

struct plan_endpoint {
	struct plan_addr addr;
	uint16_t port;              /* host order: the Service's targetPort resolved */
	const char *pod;            /* pod name, for status */
};

/*
 * TCP policy of a destination: its host's DestinationRule trafficPolicy.connectionPool.tcp,
 * applied by sockops to each connection made to the destination's endpoints. All zero: none.
 */
struct plan_tcp_policy {
	uint32_t connect_timeout_ms;    /* connectTimeout; 0: the kernel's SYN retries decide */
	bool keepalive;                 /* tcpKeepalive given (even empty): SO_KEEPALIVE on */
	uint16_t keepalive_time_s;      /* tcpKeepalive.time, 1..32767; 0: the kernel's default */
	uint16_t keepalive_interval_s;  /* tcpKeepalive.interval, 1..32767; 0: the kernel's default */
	uint8_t keepalive_probes;       /* tcpKeepalive.probes, 1..127; 0: the kernel's default */
};

struct plan_destination {
	const char *host;           /* destination Service, "name.namespace" */
	const char *subset;         /* "" when the route names no subset */
	uint32_t weight;            /* as written; a lone destination's omitted weight is 100 */
	double percent;             /* share of new connections, 0..100 */
	struct plan_endpoint *endpoints;
	size_t n_endpoints;         /* 0: the share is refused with ECONNREFUSED */
	struct plan_tcp_policy tcp; /* TCP services only */
};

struct plan_service {
	const char *name;
	const char *namespace;
	struct plan_addr vips[2];   /* clusterIPs: at most one per family */
	size_t n_vips;
	uint16_t port;              /* host order: the port clients dial on the VIP */
	uint8_t protocol;           /* IPPROTO_TCP or IPPROTO_UDP */
	enum plan_lb lb;
	const char *route;          /* "namespace/name" of the VirtualService that routes it; NULL if unknown */
	struct plan_destination *destinations;
	size_t n_destinations;
	/*
	 * Ingress: the same routing is also reachable on each (gateway address,
	 * gateway_port), e.g. an Istio Gateway's address and server port. Served by
	 * TC mode (sluiced --tc) and socket mode alike. n_vips may be 0: a route
	 * bound to a Gateway and not to `mesh` has only these. Each (address, port,
	 * protocol) is one data plane key: it may appear once in a plan.
	 */
	struct plan_addr gateway_addrs[PLAN_MAX_GATEWAY_ADDRS];
	size_t n_gateway_addrs;
	uint16_t gateway_port;      /* host order: the Gateway server's port number */
	const char *gateway;        /* "namespace/name" of the Gateway, for status; NULL if none */
};

/* Services are sorted by namespace, name, port and protocol (plan_service_cmp, for qsort and
 * bsearch). All memory belongs to the plan. */
struct plan {
	struct plan_service *services;
	size_t n_services;
	void *arena;                /* private */
};

void plan_free(struct plan *plan);
int plan_service_cmp(const void *a, const void *b);

/* Whether the service has a VIP or gateway address of this family (AF_INET, AF_INET6). */
bool plan_service_has_family(const struct plan_service *s, uint8_t family);

/* A copy of the plan alone, in an arena of its own: what a compile built to reach it is not kept. 0 or -1. */
int plan_copy(const struct plan *from, struct plan *to);
/* One entry, copied into the arena a (common/util.h); and whether two entries say the same. */
struct arena;
void plan_service_copy(struct arena *a, const struct plan_service *from, struct plan_service *to);
bool plan_service_equal(const struct plan_service *a, const struct plan_service *b);

#endif
