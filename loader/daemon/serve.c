// SPDX-License-Identifier: MIT
/*
 * sluiced's socket: many clients connected at once, none able to hold another. Requests are read as
 * their bytes arrive and replies sent as their readers take them, each within a deadline; requests
 * are handled one at a time, in the order they become whole (requests.c, status.c). Once a second,
 * housekeeping: pins removed under sluiced are pinned again, an unsaved plan is saved again.
 */
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "common/fs.h"
#include "common/log.h"
#include "daemon/daemon.h"

#define REQUEST_DEADLINE_MS 10000   /* from accept to the whole request */
#define REPLY_DEADLINE_MS 10000     /* from the request to the whole reply taken by its reader */
#define HOUSEKEEPING_MS 1000        /* pins checked, an unsaved plan saved again */

/* Someone answers on the socket: a running sluiced, whose socket must not be taken. A dead one's is free. */
bool socket_answers(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	bool answers = false;
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	if (fd >= 0) {
		answers = !connect(fd, (struct sockaddr *)&sa, sizeof(sa)) || errno == EAGAIN;
		close(fd);
	}
	return answers;
}

int listen_socket(struct daemon *dm)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	if (strlen(dm->socket_path) >= sizeof(sa.sun_path)) {
		log_error("socket path %s is too long", dm->socket_path);
		return -ENAMETOOLONG;
	}
	strcpy(sa.sun_path, dm->socket_path);
	char dir[PATH_MAX];
	snprintf(dir, sizeof(dir), "%s", dm->socket_path);
	char *slash = strrchr(dir, '/');
	if (slash && slash != dir) {
		*slash = 0;
		fs_mkdir_p(dir, 0700);
	}
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	unlink(dm->socket_path);
	mode_t old = umask(0177);    /* the socket is born 0600: only root may steer the data plane */
	int rc = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
	umask(old);
	if (rc || chmod(dm->socket_path, 0600) || listen(fd, 64)) {
		rc = -errno;
		log_error("cannot listen on %s: %s", dm->socket_path, strerror(-rc));
		close(fd);
		return rc;
	}
	dm->listen_fd = fd;
	return 0;
}


static void client_drop(struct daemon *dm, size_t i)
{
	struct client *c = &dm->clients[i];
	close(c->fd);
	msg_parser_free(&c->parser);
	msg_free(&c->req);
	free(c->out);
	free(c->in);
	dm->clients[i] = dm->clients[--dm->n_clients];
	dm->clients[i].parser.m = &dm->clients[i].req;
}

/* Sends what the peer takes now. 1 when the whole reply is out, 0 for later, -errno when the peer is gone. */
static int client_write(struct client *c)
{
	while (c->out_off < c->out_len) {
		ssize_t w = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return errno == EAGAIN ? 0 : -errno;
		c->out_off += (size_t)w;
	}
	return 1;
}

/* A whole request: handled now, its reply encoded and sent as far as the peer takes it. */
static int client_serve(struct daemon *dm, struct client *c)
{
	struct reply r = { 0 };
	struct msg resp = { 0 };
	char *out_buf = NULL, *err_buf = NULL;
	size_t out_len = 0, err_len = 0;
	r.out = open_memstream(&out_buf, &out_len);
	r.err = open_memstream(&err_buf, &err_len);
	handle_request(dm, &c->req, &r);
	msg_free(&c->req);
	fclose(r.out);
	fclose(r.err);
	char code[16];
	snprintf(code, sizeof(code), "%d", r.code);
	msg_add_str(&resp, "code", code);
	msg_add(&resp, "out", out_buf, out_len);
	msg_add(&resp, "err", err_buf, err_len);
	free(out_buf);
	free(err_buf);
	int rc = msg_encode(&resp, &c->out, &c->out_len);
	msg_free(&resp);
	c->deadline = proto_now_ms() + REPLY_DEADLINE_MS;
	if (!rc)
		rc = client_write(c);
	dataplane_settle(dm->dp);   /* after the answer: a weight change's reply does not wait for it */
	return rc;
}

/* Reads what has arrived. 1 when the client is done with, 0 for later, -errno to drop it. */
static int client_read(struct daemon *dm, struct client *c)
{
	char buf[1 << 16];
	for (;;) {
		ssize_t n = recv(c->fd, buf, sizeof(buf), MSG_DONTWAIT);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return errno == EAGAIN ? 0 : -errno;
		if (n == 0)
			return -EPIPE;   /* gone before its request was whole */
		/* the CLI's framed messages, or a node endpoint client's HTTP request (http.c) */
		int rc = c->http ? http_take(dm, c, buf, (size_t)n) : msg_parse(&c->parser, buf, (size_t)n, NULL);
		if (rc < 0)
			return rc;
		if (c->http && c->out) {
			c->deadline = proto_now_ms() + REPLY_DEADLINE_MS;
			return client_write(c);
		}
		if (!c->http && rc == 1)
			return client_serve(dm, c);
	}
}

static void client_accept(struct daemon *dm, int listen_fd, bool http)
{
	for (;;) {
		int fd = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
		if (fd < 0)
			return;
		uint64_t now = proto_now_ms();
		if (dm->n_clients == MAX_CLIENTS) {
			size_t oldest = 0;
			for (size_t i = 1; i < dm->n_clients; i++)
				if (dm->clients[i].accepted < dm->clients[oldest].accepted)
					oldest = i;
			log_info("%d clients connected: dropped the one connected longest (%llu ms ago) for a new one",
				MAX_CLIENTS, (unsigned long long)(now - dm->clients[oldest].accepted));
			client_drop(dm, oldest);
		}
		struct client *c = &dm->clients[dm->n_clients++];
		memset(c, 0, sizeof(*c));
		c->fd = fd;
		c->http = http;
		c->accepted = now;
		c->deadline = now + REQUEST_DEADLINE_MS;
		msg_parser_init(&c->parser, &c->req);
	}
}

/* Once a second: pins removed under a running sluiced are made again; an unsaved plan is saved again. */
static void housekeeping(struct daemon *dm)
{
	char msg[1024], when[32];
	time_t t = time(NULL);
	strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", localtime(&t));
	int rc = dataplane_check_pins(dm->dp, msg, sizeof(msg));
	if (rc) {
		char *note = NULL;
		if (rc > 0 && asprintf(&note, "pins under %s were removed while sluiced ran; pinned again at %s: %s",
				       dm->bpffs, when, msg) < 0)
			note = NULL;
		if (rc < 0 && asprintf(&note, "%s (since %s)", msg, when) < 0)
			note = NULL;
		if (note && (!dm->pins_note || !dm->pins_broken || rc > 0))
			log_msg(rc < 0 ? LOG_ERROR : LOG_INFO, "%s", note);
		if (note && (rc > 0 || !dm->pins_broken)) {
			free(dm->pins_note);
			dm->pins_note = note;
		} else {
			free(note);
		}
		dm->pins_broken = rc < 0;
	} else if (dm->pins_broken) {
		dm->pins_broken = false;
	}
	if (dm->unsaved && !save_plan(dm, msg, sizeof(msg))) {
		log_info("saved generation %llu, live since an earlier save failed (%s)", (unsigned long long)dm->generation,
			dm->unsaved);
		free(dm->unsaved);
		dm->unsaved = NULL;
	}
}

void serve(struct daemon *dm)
{
	struct pollfd p[MAX_CLIENTS + 3];
	uint64_t next_housekeeping = 0;
	while (!stopping) {
		uint64_t now = proto_now_ms();
		if (now >= next_housekeeping) {
			housekeeping(dm);
			next_housekeeping = now + HOUSEKEEPING_MS;
		}
		uint64_t wake = next_housekeeping, due = follower_due(dm);
		wake = due && due < wake ? due : wake;
		size_t n = dm->n_clients;
		/* the API follower's events (fd -1 without --kubernetes: poll passes over it) */
		p[n + 1] = (struct pollfd){ .fd = follower_fd(dm), .events = POLLIN };
		p[n + 2] = (struct pollfd){ .fd = dm->http_fd, .events = POLLIN };   /* -1 without --listen */
		p[0] = (struct pollfd){ .fd = dm->listen_fd, .events = POLLIN };
		for (size_t i = 0; i < dm->n_clients; i++) {
			struct client *c = &dm->clients[i];
			p[i + 1] = (struct pollfd){ .fd = c->fd, .events = c->out ? POLLOUT : POLLIN };
			wake = c->deadline < wake ? c->deadline : wake;
		}
		if (poll(p, n + 3, wake > now ? (int)(wake - now) : 0) < 0 && errno != EINTR)
			break;
		now = proto_now_ms();
		follower_work(dm, now, p[n + 1].revents & POLLIN);
		/* clients first, from the last: a dropped slot takes the last one's place */
		for (size_t i = n; i-- > 0;) {
			struct client *c = &dm->clients[i];
			int rc = 0;
			if (p[i + 1].revents)
				rc = c->out ? client_write(c) : client_read(dm, c);
			if (!rc && now >= c->deadline) {
				log_debug("dropped a client: %s within %d s", c->out ? "its reply not taken" : "no whole request",
					  (c->out ? REPLY_DEADLINE_MS : REQUEST_DEADLINE_MS) / 1000);
				rc = -ETIMEDOUT;
			}
			if (rc)
				client_drop(dm, i);
		}
		if (p[0].revents & POLLIN)
			client_accept(dm, dm->listen_fd, false);
		if (p[n + 2].revents & POLLIN)
			client_accept(dm, dm->http_fd, true);
	}
	while (dm->n_clients)
		client_drop(dm, 0);
}

