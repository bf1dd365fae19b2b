/* SPDX-License-Identifier: MIT */
/* The CLI <-> sluiced protocol (DESIGN.md §13): one request, one response, each a list of tagged
 * fields. Frame: "sluice/1 NFIELDS\n", then per field "TAG LEN\n" and LEN bytes. */
#ifndef SLUICE_PROTO_H
#define SLUICE_PROTO_H

#include <stddef.h>
#include <stdint.h>

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
void msg_free(struct msg *m);

/* The whole frame in one buffer (the daemon sends it as the peer takes it). 0 or -ENOMEM. */
int msg_encode(const struct msg *m, char **buf, size_t *len);

/*
 * Reads one message from bytes as they arrive, so a server never blocks on a slow peer.
 * msg_parse consumes what it can of buf[0..len) and returns 1 once the message is whole,
 * 0 when it needs more bytes, -EPROTO on a malformed frame.
 */
struct msg_parser {
	struct msg *m;
	int state;
	char line[64];
	size_t line_len, fields_left, total;
	char *data;
	size_t want, got;
	char tag[16];
};

void msg_parser_init(struct msg_parser *p, struct msg *m);
int msg_parse(struct msg_parser *p, const char *buf, size_t len, size_t *used);
void msg_parser_free(struct msg_parser *p);   /* a field cut short */

/* Milliseconds of CLOCK_MONOTONIC, for deadlines. */
uint64_t proto_now_ms(void);

/* Blocking send and receive bounded by an absolute deadline (proto_now_ms(); 0: none).
 * 0, -ETIMEDOUT past the deadline, -EPROTO for a malformed or cut frame, or -errno. */
int msg_send(int fd, const struct msg *m, uint64_t deadline_ms);
int msg_recv(int fd, struct msg *m, uint64_t deadline_ms);

#endif
