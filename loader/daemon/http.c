// SPDX-License-Identifier: MIT
/*
 * The node endpoint (--listen ADDR:PORT): read-only HTTP for probes, Prometheus and the cluster's
 * status. GET /healthz (the loop answers), /readyz (the first plan is served: with --kubernetes,
 * once every resource was listed and applied), /status (what `sluice status -o json` prints) and
 * /metrics. Its clients share the socket's slots, deadlines and non-blocking writes (serve.c):
 * one request per connection, answered whole, then closed.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/log.h"
#include "daemon/daemon.h"

#define HTTP_MAX_REQUEST 8192       /* a GET and its headers; more is refused with 431 */

/* ADDR:PORT, [ADDR6]:PORT or :PORT (every address). 0, or -EINVAL. */
int parse_listen(const char *s, struct sockaddr_storage *ss, unsigned *len)
{
	char host[64];
	const char *colon = s[0] == '[' ? strstr(s, "]:") : strrchr(s, ':');
	if (!colon || (size_t)(colon - s) >= sizeof(host))
		return -EINVAL;
	const char *port_s = colon + (s[0] == '[' ? 2 : 1);
	char *end;
	unsigned long port = strtoul(port_s, &end, 10);
	if (!*port_s || *end || !port || port > 65535)
		return -EINVAL;
	snprintf(host, sizeof(host), "%.*s", (int)(colon - s - (s[0] == '[')), s + (s[0] == '['));
	memset(ss, 0, sizeof(*ss));
	struct sockaddr_in *v4 = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)ss;
	if (s[0] != '[' && (!host[0] || inet_pton(AF_INET, host, &v4->sin_addr) == 1)) {
		v4->sin_family = AF_INET;
		v4->sin_port = htons((uint16_t)port);
		*len = sizeof(*v4);
		return 0;
	}
	if (s[0] == '[' && inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
		v6->sin6_family = AF_INET6;
		v6->sin6_port = htons((uint16_t)port);
		*len = sizeof(*v6);
		return 0;
	}
	return -EINVAL;
}

int listen_http(struct daemon *dm)
{
	struct sockaddr_storage ss;
	socklen_t len;
	if (!dm->listen_addr)
		return 0;
	if (parse_listen(dm->listen_addr, &ss, &len))
		return -EINVAL;   /* refused with the options, before anything was touched */
	int one = 1, fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) ||
	    bind(fd, (struct sockaddr *)&ss, len) || listen(fd, 64)) {
		int rc = -errno;
		log_error("cannot listen on %s: %s", dm->listen_addr, strerror(-rc));
		if (fd >= 0)
			close(fd);
		return rc;
	}
	dm->http_fd = fd;
	return 0;
}

/* The whole response: status line, headers, body. */
static void respond(struct client *c, int code, const char *reason, const char *type, const char *body, size_t len)
{
	free(c->out);
	c->out = NULL;
	FILE *m = open_memstream(&c->out, &c->out_len);
	if (!m)
		return;
	fprintf(m, "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n", code,
		reason, type, len);
	fwrite(body, 1, len, m);
	fclose(m);
	c->out_off = 0;
}

static void respond_text(struct client *c, int code, const char *reason, const char *text)
{
	respond(c, code, reason, "text/plain; charset=utf-8", text, strlen(text));
}

/* Ready once the first plan is served: from the saved plan, or with --kubernetes from the API. */
static bool ready(const struct daemon *dm, char *why, size_t len)
{
	if (dm->kubernetes && !follower_applied(dm)) {
		snprintf(why, len, "not ready: the API's objects are not listed and applied yet\n");
		return false;
	}
	snprintf(why, len, "ready: generation %llu\n", (unsigned long long)dm->generation);
	return true;
}

/* A request line and headers have arrived: the answer. */
static void http_answer(struct daemon *dm, struct client *c, const char *req)
{
	char method[16], path[256], why[128];
	if (sscanf(req, "%15s %255s HTTP/1.%*c", method, path) != 2) {
		respond_text(c, 400, "Bad Request", "not an HTTP request\n");
		return;
	}
	char *q = strchr(path, '?');
	if (q)
		*q = 0;   /* no endpoint takes parameters */
	bool get = !strcmp(method, "GET");
	bool known = !strcmp(path, "/healthz") || !strcmp(path, "/readyz") || !strcmp(path, "/status") ||
		     !strcmp(path, "/metrics");
	if (!known) {
		respond_text(c, 404, "Not Found", "not found: /healthz, /readyz, /status and /metrics are served\n");
		return;
	}
	if (!get) {
		respond_text(c, 405, "Method Not Allowed", "read-only: GET only\n");
		return;
	}
	char *body = NULL;
	size_t len = 0;
	FILE *m = open_memstream(&body, &len);
	if (!m) {
		respond_text(c, 500, "Internal Server Error", "out of memory\n");
		return;
	}
	int code = 200;
	const char *type = "text/plain; charset=utf-8";
	if (!strcmp(path, "/healthz")) {
		fputs("ok\n", m);
	} else if (!strcmp(path, "/readyz")) {
		code = ready(dm, why, sizeof(why)) ? 200 : 503;
		fputs(why, m);
	} else if (!strcmp(path, "/status")) {
		struct msg none = { 0 };
		struct reply r = { .out = m, .err = stderr, .json = true };
		handle_status(dm, &none, &r);
		type = "application/json";
	} else {
		metrics_write(dm, m);
		type = "text/plain; version=0.0.4; charset=utf-8";
	}
	fclose(m);
	respond(c, code, code == 200 ? "OK" : "Service Unavailable", type, body, len);
	free(body);
}

int http_take(struct daemon *dm, struct client *c, const char *buf, size_t n)
{
	if (c->in_len + n > HTTP_MAX_REQUEST) {
		respond_text(c, 431, "Request Header Fields Too Large", "request too large\n");
		return c->out ? 0 : -ENOMEM;
	}
	char *in = realloc(c->in, c->in_len + n + 1);
	if (!in)
		return -ENOMEM;
	c->in = in;
	memcpy(c->in + c->in_len, buf, n);
	c->in_len += n;
	c->in[c->in_len] = 0;
	if (strstr(c->in, "\r\n\r\n") || strstr(c->in, "\n\n")) {
		http_answer(dm, c, c->in);
		if (!c->out)
			return -ENOMEM;
	}
	return 0;
}
