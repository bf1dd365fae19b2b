/* SPDX-License-Identifier: MIT */
/* The CLI <-> sluiced protocol: one request, one response, each a list of tagged fields.
 * Frame: "sluice/1 NFIELDS\n", then per field "TAG LEN\n" and LEN bytes. */
#ifndef SLUICE_PROTO_H
#define SLUICE_PROTO_H

#include <stddef.h>

#define PROTO_MAX_BYTES (512u << 20)    /* a whole cluster's YAML fits; a runaway peer does not */

struct field {
	char tag[16];
	char *data;                         /* NUL-terminated for convenience */
	size_t len;
};

struct msg {
	struct field *f;
	size_t n, cap;
};

void msg_add(struct msg *m, const char *tag, const void *data, size_t len);
void msg_add_str(struct msg *m, const char *tag, const char *s);
const char *msg_get(const struct msg *m, const char *tag, size_t *len);   /* first field with tag */
int msg_send(int fd, const struct msg *m);                                 /* 0 or -errno */
int msg_recv(int fd, struct msg *m);                                       /* 0 or -errno (-EPROTO) */
void msg_free(struct msg *m);

#endif
