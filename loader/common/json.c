// SPDX-License-Identifier: MIT
#include "common/json.h"

#include <stdlib.h>

#include "common/util.h"


#define JSONW_MAX_DEPTH 64   /* Kubernetes objects nest deeply (pod templates, CRD schemas) */

/* A writer is one thread's, so stdio's lock per call is waste: a plan of 10,000 services is
 * millions of calls (90 ms of `sluice plan -o json`'s second at the envelope, 20 unlocked). */
#define fputc putc_unlocked
#define fwrite fwrite_unlocked
#define fputs fputs_unlocked

/* A string as a JSON literal: quotes, backslashes and control bytes escaped; the runs between them
 * written whole (a saved plan of 10,000 services is megabytes of it, at every change). */
static void json_string(FILE *out, const char *s)
{
	const unsigned char *p = (const unsigned char *)s, *run = p;
	fputc('"', out);
	for (;; p++) {
		if (*p >= 0x20 && *p != '"' && *p != '\\')
			continue;
		if (p > run)
			fwrite(run, 1, (size_t)(p - run), out);
		if (!*p)
			break;
		switch (*p) {
		case '"': fputs("\\\"", out); break;
		case '\\': fputs("\\\\", out); break;
		case '\n': fputs("\\n", out); break;
		case '\t': fputs("\\t", out); break;
		case '\r': fputs("\\r", out); break;
		default: fprintf(out, "\\u%04x", *p);
		}
		run = p + 1;
	}
	fputc('"', out);
}


struct json_writer {
	FILE *out;
	unsigned depth;
	bool first[JSONW_MAX_DEPTH];   /* no value written yet at this depth: no comma before the next */
	bool named;                    /* a name was just written: its value needs no comma */
};

json_writer_t *jsonw_new(FILE *out)
{
	json_writer_t *self = calloc(1, sizeof(*self));
	if (!self)
		abort();
	self->out = out;
	self->first[0] = true;
	return self;
}

void jsonw_free(json_writer_t **self)
{
	if (!self || !*self)
		return;
	free(*self);
	*self = NULL;
}

void jsonw_destroy(json_writer_t **self)
{
	if (!self || !*self)
		return;
	fputc('\n', (*self)->out);
	jsonw_free(self);
}

/* Before any value or name: the comma that separates it from the one before. */
static void sep(json_writer_t *self)
{
	if (self->named) {
		self->named = false;
		return;
	}
	if (!self->first[self->depth])
		fputc(',', self->out);
	self->first[self->depth] = false;
}

static void jsonw_open(json_writer_t *self, char c)
{
	sep(self);
	fputc(c, self->out);
	if (self->depth + 1 < JSONW_MAX_DEPTH)
		self->depth++;
	self->first[self->depth] = true;
}

static void jsonw_close(json_writer_t *self, char c)
{
	fputc(c, self->out);
	if (self->depth)
		self->depth--;
}

void jsonw_start_object(json_writer_t *self) { jsonw_open(self, '{'); }
void jsonw_end_object(json_writer_t *self) { jsonw_close(self, '}'); }
void jsonw_start_array(json_writer_t *self) { jsonw_open(self, '['); }
void jsonw_end_array(json_writer_t *self) { jsonw_close(self, ']'); }

void jsonw_name(json_writer_t *self, const char *name)
{
	sep(self);
	json_string(self->out, name);
	fputc(':', self->out);
	self->named = true;
}

void jsonw_string(json_writer_t *self, const char *value)
{
	sep(self);
	json_string(self->out, value);
}

void jsonw_uint(json_writer_t *self, uint64_t value)
{
	char buf[20];
	sep(self);
	fwrite(buf, 1, (size_t)(uint_write(buf, value) - buf), self->out);
}

void jsonw_bool(json_writer_t *self, bool value)
{
	sep(self);
	fputs(value ? "true" : "false", self->out);
}

void jsonw_null(json_writer_t *self)
{
	sep(self);
	fputs("null", self->out);
}

void jsonw_raw(json_writer_t *self, const char *token)
{
	sep(self);
	fputs(token, self->out);
}
