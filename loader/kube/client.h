/* SPDX-License-Identifier: MIT */
/*
 * HTTP to the Kubernetes API with libcurl (Debian's: TLS, HTTP/1.1 chunked streams, client
 * certificates from files or memory): one request, or a watch stream read line by line. The
 * server's certificate is verified against the cluster's CA; a token file is read at every
 * request, so a rotated service-account token is used as soon as it is written.
 */
#ifndef SLUICE_KUBE_CLIENT_H
#define SLUICE_KUBE_CLIENT_H

#include <signal.h>
#include <stddef.h>

#include "kube/config.h"

struct kube_client;

/* One client per thread (a libcurl handle, its connection kept alive). NULL on out of memory. */
struct kube_client *kube_client_new(const struct kube_config *cfg);
void kube_client_free(struct kube_client *c);

/* Requests in progress give up as soon as *stop is set (checked about once a second). */
void kube_client_stop_on(struct kube_client *c, volatile sig_atomic_t *stop);

struct kube_response {
	long status;       /* HTTP status; 0 when the server could not be reached */
	char *body;        /* NUL-terminated */
	size_t len;
};

/*
 * METHOD path (e.g. "/api/v1/services?limit=500"), with a body of content_type when body is not
 * NULL. 0 with *resp filled whatever the HTTP status, or -1 with the transport error in err
 * (connection refused, TLS, timeout). resp->body is freed by kube_response_free.
 */
int kube_request(struct kube_client *c, const char *method, const char *path, const char *content_type,
		 const char *body, struct kube_response *resp, char *err, size_t len);
void kube_response_free(struct kube_response *resp);

/*
 * GET path as a stream: fn(ctx, line, len) for every complete line as it arrives, until the
 * server ends the stream, fn returns non-zero, nothing arrives for idle_s seconds (a stalled
 * connection), or stop is set. *status is the HTTP status. 0 when the stream ended (or fn
 * stopped it), -1 with why in err otherwise; a body that is not a stream (an error Status) is
 * given to fn as one line.
 */
typedef int (*kube_line_fn)(void *ctx, const char *line, size_t len);   /* line NULL: a 200, the stream open */
int kube_stream(struct kube_client *c, const char *path, long idle_s, kube_line_fn fn, void *ctx, long *status,
		char *err, size_t len);

/* The message of a Kubernetes Status body ("message"), or the start of the body; into buf. */
const char *kube_status_message(const struct kube_response *resp, char *buf, size_t len);

#endif
