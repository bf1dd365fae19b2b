/* SPDX-License-Identifier: MIT */
/*
 * sluiced, the node's only writer of the data plane, in five files:
 *   main.c      options and lifecycle: open or adopt the data plane, restore, drop capabilities, serve
 *   serve.c     the socket: many clients at once, none able to hold another (deadlines, no blocking)
 *   requests.c  apply and weight: compile, switch, save, or take the change back
 *   status.c    status: what the maps hold, in text or JSON from one walk
 *   state.c     the state directory: the saved plan, the weight journal, what a restart restores
 *   http.c      the node endpoint (--listen): /healthz, /readyz, /status, /metrics (metrics.c)
 *   follow.c    --kubernetes: the API server's objects are the plan
 * What it guarantees (one writer, no client holding another, durability, start): DESIGN.md §12.
 */
#ifndef SLUICE_DAEMON_H
#define SLUICE_DAEMON_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "common/proto.h"
#include "dataplane/dataplane.h"
#include "plan/plan.h"
#include "plan/weights.h"

#define MAX_CLIENTS 64              /* at the limit, the client connected longest is dropped for a new one */

/* One connection: its request read as bytes arrive, then its reply sent as the peer takes it. */
struct client {
	int fd;
	uint64_t accepted, deadline;
	struct msg req;
	struct msg_parser parser;   /* parser.m points at req: fixed up when the slot moves */
	char *out;                  /* the encoded reply; NULL while reading */
	size_t out_len, out_off;
	bool http;                  /* a node endpoint client (http.c): its request is text in `in` */
	char *in;
	size_t in_len;
};

struct daemon {
	const char *cgroup, *bpffs, *socket_path, *state_dir;
	const char *tc;              /* --tc IFACE[,IFACE...] */
	unsigned long tc_flows;      /* --tc-flows N; 0: the default */
	const char *gateway_address; /* --gateway-address: where Gateways without spec.addresses listen */
	bool cgroup_given, verbose, uninstall;
	struct dataplane *dp;
	struct plan plan;            /* what the maps hold now */
	uint64_t generation;
	uint64_t saved_generation;   /* of what the state directory holds (plan and journal) */
	char *unsaved;               /* why the live plan is not saved; NULL when it is */
	char *pins_note;             /* the last thing the pin check found, with its time; NULL: nothing */
	bool pins_broken;            /* pins are missing and could not be made again */
	int listen_fd;
	const char *listen_addr;     /* --listen ADDR:PORT: the node endpoint; NULL: none */
	int http_fd;
	bool metrics_endpoints;      /* --metrics-endpoints: per-endpoint series too (one per pod address) */
	struct client clients[MAX_CLIENTS];
	size_t n_clients;
	/* --kubernetes: the API server is the source of truth (follow.c) */
	bool kubernetes;
	const char *kubeconfig, *kube_context;
	const char *namespaces[32];  /* --namespace, repeatable; none: every namespace */
	size_t n_namespaces;
	unsigned coalesce_ms;        /* --coalesce-ms: changes this close together make one generation */
	long watch_idle_s;           /* --watch-idle: a watch silent this long is replaced */
	struct follower *follower;
};

/* A reply being written: its text or JSON output, its errors, the CLI's exit status. */
struct reply {
	FILE *out, *err;
	int code;
	bool json;
};

extern volatile sig_atomic_t stopping;

/* requests.c */
void handle_request(struct daemon *dm, struct msg *req, struct reply *r);
void reply_error(struct reply *r, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
const char *request_namespace(const struct msg *req);
const char *request_domain(const struct msg *req);

/* status.c */
void handle_status(struct daemon *dm, const struct msg *req, struct reply *r);
extern const char *const connect_failure_names[SLUICE_CONNECT_FAILURE_REASONS];   /* "timeout", ... */

/* state.c: 0, or -errno with why in why (saves); restore_state logs what it did */
int save_plan(struct daemon *dm, char *why, size_t len);
int journal_append(struct daemon *dm, const struct weight_change *wc, char *why, size_t len);
/* the journal's size after the line, or -errno */
long long journal_append_services(struct daemon *dm, const struct plan_service *const *svcs, size_t n, char *why,
				  size_t len);
int restore_state(struct daemon *dm);

/* follow.c: sluiced --kubernetes; all do nothing without it */
struct json_writer;
int follower_start(struct daemon *dm);                 /* after capabilities are dropped: threads */
int follower_fd(struct daemon *dm);                    /* readable when API events wait; -1: none */
uint64_t follower_due(struct daemon *dm);              /* when a pending batch applies (ms); 0: none */
void follower_work(struct daemon *dm, uint64_t now, bool readable);
void follower_stop(struct daemon *dm);
bool follower_active(const struct daemon *dm);
const char *follower_server(const struct daemon *dm);
void follower_status(struct daemon *dm, struct json_writer *w, FILE *out);

bool follower_applied(const struct daemon *dm);       /* the first plan from the API is served */
void follower_metrics(struct daemon *dm, FILE *out);

/* serve.c */
bool socket_answers(const char *path);
int listen_socket(struct daemon *dm);
void serve(struct daemon *dm);

/* http.c, metrics.c */
struct sockaddr_storage;
int parse_listen(const char *s, struct sockaddr_storage *ss, unsigned *len);
int listen_http(struct daemon *dm);
/* Bytes of an endpoint client's request; once it is whole, c->out holds the response. 0 or -errno. */
int http_take(struct daemon *dm, struct client *c, const char *buf, size_t n);
void metrics_write(struct daemon *dm, FILE *out);
void metrics_label(FILE *out, const char *name, const char *value, bool first);   /* name="value", escaped */

#endif
