// SPDX-License-Identifier: MIT
#include "proto.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
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

/* Writes every byte of iov[0..n), resuming after partial writes. */
static int writev_all(int fd, struct iovec *iov, int n)
{
	while (n > 0) {
		ssize_t w = writev(fd, iov, n);
		if (w < 0 && errno == EINTR)
			continue;
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

/* Headers and fields go out in batches of writev: a small request is one syscall. */
int msg_send(int fd, const struct msg *m)
{
	enum { BATCH = 64 };
	char heads[BATCH / 2][40];
	struct iovec iov[BATCH];
	int n = 0, rc = 0;

	iov[n].iov_base = heads[0];
	iov[n++].iov_len = (size_t)snprintf(heads[0], sizeof(heads[0]), "sluice/1 %zu\n", m->n);
	for (size_t i = 0; !rc && i < m->n; i++) {
		char *h = heads[(n + 1) / 2];
		iov[n].iov_base = h;
		iov[n++].iov_len = (size_t)snprintf(h, sizeof(heads[0]), "%s %zu\n", m->f[i].tag, m->f[i].len);
		iov[n].iov_base = m->f[i].data;
		iov[n++].iov_len = m->f[i].len;
		if (n + 2 > BATCH) {
			rc = writev_all(fd, iov, n);
			n = 0;
		}
	}
	return rc ? rc : writev_all(fd, iov, n);
}

/* One message per connection and direction: reading ahead into a buffer consumes nothing of another. */
struct reader {
	int fd;
	size_t pos, len;
	char buf[4096];
};

static int read_all(struct reader *rd, void *out, size_t len)
{
	char *p = out;
	while (len) {
		if (rd->pos < rd->len) {
			size_t k = rd->len - rd->pos < len ? rd->len - rd->pos : len;
			memcpy(p, rd->buf + rd->pos, k);
			rd->pos += k;
			p += k;
			len -= k;
			continue;
		}
		/* large fields straight into place; small reads through the buffer */
		ssize_t r = len >= sizeof(rd->buf) ? read(rd->fd, p, len) : read(rd->fd, rd->buf, sizeof(rd->buf));
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (!r)
			return -EPROTO;
		if (len >= sizeof(rd->buf)) {
			p += r;
			len -= (size_t)r;
		} else {
			rd->pos = 0;
			rd->len = (size_t)r;
		}
	}
	return 0;
}

static int read_line(struct reader *rd, char *buf, size_t cap)
{
	for (size_t i = 0; i + 1 < cap; i++) {
		int rc = read_all(rd, &buf[i], 1);
		if (rc)
			return rc;
		if (buf[i] == '\n') {
			buf[i] = 0;
			return 0;
		}
	}
	return -EPROTO;
}

int msg_recv(int fd, struct msg *m)
{
	char line[64], tag[16];
	size_t n, total = 0;
	struct reader *rd = malloc(sizeof(*rd));
	int rc;

	if (!rd)
		return -ENOMEM;
	rd->fd = fd;
	rd->pos = rd->len = 0;
	rc = read_line(rd, line, sizeof(line));
	if (!rc && (sscanf(line, "sluice/1 %zu", &n) != 1 || n > 1u << 20))
		rc = -EPROTO;
	for (size_t i = 0; !rc && i < n; i++) {
		size_t len;
		rc = read_line(rd, line, sizeof(line));
		if (rc)
			break;
		if (sscanf(line, "%15s %zu", tag, &len) != 2 || len > PROTO_MAX_BYTES - total) {
			rc = -EPROTO;
			break;
		}
		total += len;
		char *data = malloc(len + 1);
		if (!data) {
			rc = -ENOMEM;
			break;
		}
		rc = read_all(rd, data, len);
		if (rc) {
			free(data);
			break;
		}
		msg_add(m, tag, "", 0);
		free(m->f[m->n - 1].data);
		data[len] = 0;
		m->f[m->n - 1].data = data;
		m->f[m->n - 1].len = len;
	}
	free(rd);
	return rc;
}

void msg_free(struct msg *m)
{
	for (size_t i = 0; i < m->n; i++)
		free(m->f[i].data);
	free(m->f);
	memset(m, 0, sizeof(*m));
}
