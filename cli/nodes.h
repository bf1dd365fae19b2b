/* SPDX-License-Identifier: MIT */
/* The cluster's nodes as their endpoints report them (nodes.c): sluice status --cluster, weight --wait. */
#ifndef SLUICE_CLI_NODES_H
#define SLUICE_CLI_NODES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct vs_applied {
	char ns[64], name[256], applied[32];   /* the resourceVersion a node serves */
};

struct node_view {
	char node[128], pod[256], address[80];
	bool answered, synced;
	char error[320];
	uint64_t generation;
	char last_result[256];
	size_t refused;
	struct vs_applied *vs;
	size_t n_vs;
};

struct nodes {
	struct node_view *v;
	size_t n;
};

struct kube_client;
struct kube_config;
int nodes_find(struct kube_client *c, const struct kube_config *cfg, struct nodes *out);   /* exit status */
int node_read(struct node_view *v);                 /* GET /status; 0, or -1 with v->error */
const char *node_applied(const struct node_view *v, const char *ns, const char *name);   /* NULL: not seen */
void nodes_free(struct nodes *ns);
int cluster_status(void);                           /* sluice status --cluster */
/* Until every node applied resourceVersion rv of VirtualService ns/name, or timeout_s: an exit status. */
int nodes_wait(struct kube_client *c, const struct kube_config *cfg, const char *ns, const char *name, const char *rv,
	       unsigned timeout_s);

#endif
