// SPDX-License-Identifier: MIT
#include "common/proto.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

void msg_add(struct msg *m, const char *tag, const void *data, size_t len)
{
	if (m->n == m->cap) {
		m->cap = m->cap ? m->cap * 2 : 8;
		m->f = realloc(m->f, m->cap * sizeof(*m->f));
		if (!m->f)
			abort();
	}
	struct field *f = &m->f[m->n++];
	snprintf(f->tag, sizeof(f->tag), "%s", tag);
	f->data = malloc(len + 1);
	if (!f->data)
		abort();
	memcpy(f->data, data, len);
	f->data[len] = 0;
	f->len = len;
}

void msg_add_str(struct msg *m, const char *tag, const char *s)
{
	msg_add(m, tag, s, strlen(s));
}

const char *msg_get(const struct msg *m, const char *tag, size_t *len)
{
	for (size_t i = 0; i < m->n; i++)
		if (!strcmp(m->f[i].tag, tag)) {
			if (len)
				*len = m->f[i].len;
			return m->f[i].data;
		}
	return NULL;
}

void msg_free(struct msg *m)
{
	for (size_t i = 0; i < m->n; i++)
		free(m->f[i].data);
	free(m->f);
	memset(m, 0, sizeof(*m));
}

int msg_encode(const struct msg *m, char **buf, size_t *len)
{
	char head[48];
	size_t cap = (size_t)snprintf(head, sizeof(head), "sluice/1 %zu\n", m->n);
	for (size_t i = 0; i < m->n; i++)
		cap += sizeof(head) + m->f[i].len;
	char *b = malloc(cap), *p = b;
	if (!b)
		return -ENOMEM;
	p += sprintf(p, "sluice/1 %zu\n", m->n);
	for (size_t i = 0; i < m->n; i++) {
		p += sprintf(p, "%s %zu\n", m->f[i].tag, m->f[i].len);
		memcpy(p, m->f[i].data, m->f[i].len);
		p += m->f[i].len;
	}
	*buf = b;
	*len = (size_t)(p - b);
	return 0;
}

/* ---- reading a frame as its bytes arrive ---- */

enum { P_HEAD, P_FIELD_HEAD, P_FIELD_DATA, P_DONE };

void msg_parser_init(struct msg_parser *p, struct msg *m)
{
	memset(p, 0, sizeof(*p));
	p->m = m;
}

void msg_parser_free(struct msg_parser *p)
{
	free(p->data);
	p->data = NULL;
}

/* A header line is whole: what it says decides the next state. */
static int parse_line(struct msg_parser *p)
{
	size_t n;
	if (p->state == P_HEAD) {
		if (sscanf(p->line, "sluice/1 %zu", &n) != 1 || n > 1u << 20)
			return -EPROTO;
		p->fields_left = n;
		p->state = n ? P_FIELD_HEAD : P_DONE;
		return 0;
	}
	if (sscanf(p->line, "%15s %zu", p->tag, &n) != 2 || n > PROTO_MAX_BYTES - p->total)
		return -EPROTO;
	p->total += n;
	p->data = malloc(n + 1);
	if (!p->data)
		return -ENOMEM;
	p->want = n;
	p->got = 0;
	p->state = P_FIELD_DATA;
	return 0;
}

static void field_done(struct msg_parser *p)
{
	msg_add(p->m, p->tag, "", 0);
	struct field *f = &p->m->f[p->m->n - 1];
	free(f->data);
	p->data[p->want] = 0;
	f->data = p->data;
	f->len = p->want;
	p->data = NULL;
	p->state = --p->fields_left ? P_FIELD_HEAD : P_DONE;
}

int msg_parse(struct msg_parser *p, const char *buf, size_t len, size_t *used)
{
	size_t i = 0;
	int rc = 0;
	while (p->state != P_DONE && (i < len || (p->state == P_FIELD_DATA && p->got == p->want))) {
		if (p->state == P_FIELD_DATA) {
			size_t k = len - i < p->want - p->got ? len - i : p->want - p->got;
			memcpy(p->data + p->got, buf + i, k);
			p->got += k;
			i += k;
			if (p->got == p->want)
				field_done(p);
			continue;
		}
		char c = buf[i++];
		if (c != '\n') {
			if (p->line_len + 1 >= sizeof(p->line)) {
				rc = -EPROTO;
				break;
			}
			p->line[p->line_len++] = c;
			continue;
		}
		p->line[p->line_len] = 0;
		p->line_len = 0;
		if ((rc = parse_line(p)))
			break;
	}
	if (used)
		*used = i;
	return rc ? rc : p->state == P_DONE;
}

/* ---- blocking I/O with a deadline (the CLI's side) ---- */

uint64_t proto_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Waits until fd is ready for events or the deadline passes. */
static int wait_fd(int fd, short events, uint64_t deadline_ms)
{
	for (;;) {
		int timeout = -1;
		if (deadline_ms) {
			uint64_t now = proto_now_ms();
			if (now >= deadline_ms)
				return -ETIMEDOUT;
			timeout = deadline_ms - now > 60000 ? 60000 : (int)(deadline_ms - now);
		}
		struct pollfd pfd = { .fd = fd, .events = events };
		int n = poll(&pfd, 1, timeout);
		if (n > 0)
			return 0;
		if (n < 0 && errno != EINTR)
			return -errno;
	}
}

static int set_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);
	return fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) ? -errno : 0;
}

/* Writes every byte of iov[0..n), resuming after partial writes. */
static int writev_all(int fd, struct iovec *iov, int n, uint64_t deadline_ms)
{
	while (n > 0) {
		ssize_t w = writev(fd, iov, n);
		if (w < 0 && (errno == EAGAIN || errno == EINTR)) {
			int rc = errno == EAGAIN ? wait_fd(fd, POLLOUT, deadline_ms) : 0;
			if (rc)
				return rc;
			continue;
		}
		if (w < 0)
			return -errno;
		while (n > 0 && (size_t)w >= iov->iov_len) {
			w -= (ssize_t)iov->iov_len;
			iov++;
			n--;
		}
		if (n > 0) {
			iov->iov_base = (char *)iov->iov_base + w;
			iov->iov_len -= (size_t)w;
		}
	}
	return 0;
}

/* Headers and fields go out in batches of writev: a small request is one syscall, a large field is not copied. */
int msg_send(int fd, const struct msg *m, uint64_t deadline_ms)
{
	enum { BATCH = 64 };
	char heads[BATCH / 2][40];
	struct iovec iov[BATCH];
	int n = 0, rc = set_nonblock(fd);

	iov[n].iov_base = heads[0];
	iov[n++].iov_len = (size_t)snprintf(heads[0], sizeof(heads[0]), "sluice/1 %zu\n", m->n);
	for (size_t i = 0; !rc && i < m->n; i++) {
		char *h = heads[(n + 1) / 2];
		iov[n].iov_base = h;
		iov[n++].iov_len = (size_t)snprintf(h, sizeof(heads[0]), "%s %zu\n", m->f[i].tag, m->f[i].len);
		iov[n].iov_base = m->f[i].data;
		iov[n++].iov_len = m->f[i].len;
		if (n + 2 > BATCH) {
			rc = writev_all(fd, iov, n, deadline_ms);
			n = 0;
		}
	}
	return rc ? rc : writev_all(fd, iov, n, deadline_ms);
}

int msg_recv(int fd, struct msg *m, uint64_t deadline_ms)
{
	struct msg_parser p;
	char *buf = malloc(1 << 16);
	int rc = set_nonblock(fd);

	msg_parser_init(&p, m);
	while (!rc && buf) {
		ssize_t r = read(fd, buf, 1 << 16);
		if (r < 0 && (errno == EAGAIN || errno == EINTR)) {
			rc = errno == EAGAIN ? wait_fd(fd, POLLIN, deadline_ms) : 0;
			continue;
		}
		if (r <= 0) {
			rc = r ? -errno : -EPROTO;   /* closed before the message was whole */
			break;
		}
		size_t used;
		rc = msg_parse(&p, buf, (size_t)r, &used);
		if (rc == 1) {
			rc = 0;
			break;
		}
	}
	if (!buf)
		rc = -ENOMEM;
	msg_parser_free(&p);
	free(buf);
	return rc;
}
