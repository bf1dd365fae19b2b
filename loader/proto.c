// SPDX-License-Identifier: MIT
#include "proto.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

static int write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;
	while (len) {
		ssize_t w = write(fd, p, len);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -errno;
		p += w;
		len -= (size_t)w;
	}
	return 0;
}

static int read_all(int fd, void *buf, size_t len)
{
	char *p = buf;
	while (len) {
		ssize_t r = read(fd, p, len);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (!r)
			return -EPROTO;
		p += r;
		len -= (size_t)r;
	}
	return 0;
}

/* Header lines are short; read them byte by byte so no field bytes are consumed. */
static int read_line(int fd, char *buf, size_t cap)
{
	for (size_t i = 0; i + 1 < cap; i++) {
		int rc = read_all(fd, &buf[i], 1);
		if (rc)
			return rc;
		if (buf[i] == '\n') {
			buf[i] = 0;
			return 0;
		}
	}
	return -EPROTO;
}

int msg_send(int fd, const struct msg *m)
{
	char line[64];
	int n = snprintf(line, sizeof(line), "sluice/1 %zu\n", m->n);
	int rc = write_all(fd, line, (size_t)n);
	for (size_t i = 0; !rc && i < m->n; i++) {
		n = snprintf(line, sizeof(line), "%s %zu\n", m->f[i].tag, m->f[i].len);
		rc = write_all(fd, line, (size_t)n);
		if (!rc)
			rc = write_all(fd, m->f[i].data, m->f[i].len);
	}
	return rc;
}

int msg_recv(int fd, struct msg *m)
{
	char line[64], tag[16];
	size_t n, total = 0;
	int rc = read_line(fd, line, sizeof(line));
	if (rc)
		return rc;
	if (sscanf(line, "sluice/1 %zu", &n) != 1 || n > 1u << 20)
		return -EPROTO;
	for (size_t i = 0; i < n; i++) {
		size_t len;
		rc = read_line(fd, line, sizeof(line));
		if (rc)
			return rc;
		if (sscanf(line, "%15s %zu", tag, &len) != 2 || len > PROTO_MAX_BYTES - total)
			return -EPROTO;
		total += len;
		char *data = malloc(len + 1);
		if (!data)
			return -ENOMEM;
		rc = read_all(fd, data, len);
		if (rc) {
			free(data);
			return rc;
		}
		msg_add(m, tag, "", 0);
		free(m->f[m->n - 1].data);
		data[len] = 0;
		m->f[m->n - 1].data = data;
		m->f[m->n - 1].len = len;
	}
	return 0;
}

void msg_free(struct msg *m)
{
	for (size_t i = 0; i < m->n; i++)
		free(m->f[i].data);
	free(m->f);
	memset(m, 0, sizeof(*m));
}
