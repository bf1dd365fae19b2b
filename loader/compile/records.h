/* SPDX-License-Identifier: MIT */
/* The records the compiler reads its input into, one per object (YAML -> records -> plan): the
 * readers of compile/ fill them, resolve.c and build_plan.c turn them into the plan. */
#ifndef SLUICE_COMPILE_RECORDS_H
#define SLUICE_COMPILE_RECORDS_H

#include <stdbool.h>
#include <stdint.h>

#include "common/util.h"
#include "plan/plan.h"

struct kv {
	const char *key, *val;
};

struct labels {
	struct kv *v;
	uint32_t n;
};

struct svc_port {
	const char *name;
	const char *app_protocol;
	uint16_t port;
	uint8_t proto;               /* IPPROTO_*; 0 for SCTP, refused when routed */
	uint16_t target_num;         /* 0: use target_name, or port when both are unset */
	const char *target_name;
	struct mark at;
};

struct service {
	const char *name, *ns, *key; /* key: "name.ns" */
	struct mark at;
	struct labels selector;
	bool has_selector, publish_not_ready, headless, external_name, has_cluster_ip;
	struct plan_addr vips[2];
	size_t n_vips;
	struct mark vip_at[2];       /* where each VIP is written, and in which field */
	const char *vip_field[2];
	struct svc_port *ports;
	uint32_t n_ports;
	const char *unsupported;     /* first field whose value sluice cannot honour, when routed */
	struct mark unsupported_at;
	const struct vs *routed_by;
	const char *routed_at_host;  /* the host as routed_by writes it */
};

struct pod_port {
	const char *name;
	uint16_t port;
	uint8_t proto;
};

struct pod {
	const char *name, *ns;
	struct mark at;
	struct labels labels;
	struct plan_addr ips[2];
	size_t n_ips;
	bool ready;
	bool terminated;             /* Succeeded or Failed: its IP is released for other pods */
	bool deleting;               /* metadata.deletionTimestamp: leaving, never an endpoint */
	bool host_network;           /* spec.hostNetwork: the node's IP, shared with the node's other such pods */
	struct pod_port *ports;
	uint32_t n_ports;
};

struct dest {
	const char *host, *subset;   /* subset NULL when absent */
	uint16_t port;               /* 0 when absent */
	int64_t weight;              /* -1 when absent */
	bool bad_name;               /* the subset's name is refused (reported) */
	struct mark at, host_at, subset_at, port_at, weight_at;
};

struct match {
	uint16_t port;               /* 0: any port */
};

struct route {
	bool tcp;
	uint32_t index;
	struct match *matches;       /* none: every port */
	uint32_t n_matches;
	struct mark at, *match_at;
	struct dest *dests;
	uint32_t n_dests;
	bool used;
	bool port_missing;           /* a match port the Service lacks: reported already */
};

struct vs {
	const char *name, *ns, *key; /* key: "namespace/name" */
	struct mark at;
	const char **hosts;
	struct mark *hosts_at;
	uint32_t n_hosts;
	bool mesh;                   /* routes pods' connections: no `gateways`, or "mesh" among them */
	const char **gateways;       /* Gateway names, "name" or "namespace/name" */
	struct mark *gateways_at;
	uint32_t n_gateways;
	struct route *http, *tcp;
	uint32_t n_http, n_tcp;
	bool read_errors;            /* a refused match may hide which routes serve which ports */
};

struct subset {
	const char *name;
	struct labels labels;
	struct mark at;
};

/* An Istio Gateway: its servers become (gateway address, port) entries served by TC mode. */
struct gw_server {
	uint16_t port;
	bool http;                   /* HTTP, HTTP2, GRPC: http routes serve it; TCP: tcp routes */
	struct mark at;
	const struct vs *routed_by;
};

struct gateway {
	const char *name, *ns, *key; /* key: "namespace/name" */
	struct mark at;
	struct gw_server *servers;
	uint32_t n_servers;
	struct plan_addr addrs[PLAN_MAX_GATEWAY_ADDRS];
	struct mark addr_at[PLAN_MAX_GATEWAY_ADDRS];    /* where each address is written, in which field */
	const char *addr_field[PLAN_MAX_GATEWAY_ADDRS];
	size_t n_addrs;
	bool no_address_reported;
};

struct dr {
	const char *name, *ns, *host;
	struct mark at, host_at;
	struct subset *subsets;
	uint32_t n_subsets;
	enum plan_lb lb;
	struct plan_tcp_policy tcp;  /* trafficPolicy.connectionPool.tcp, for the host's TCP ports */
};

#endif
