/* SPDX-License-Identifier: MIT */
/*
 * A small JSON writer in the manner of bpftool's json_writer: the writer keeps the commas and the
 * nesting, so a printer walks its data once and says what each value is. Compact output, one
 * document per jsonw_new() .. jsonw_destroy().
 */
#ifndef SLUICE_JSON_H
#define SLUICE_JSON_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

typedef struct json_writer json_writer_t;

json_writer_t *jsonw_new(FILE *out);           /* aborts on out of memory, as the arena does */
void jsonw_destroy(json_writer_t **self);      /* a newline after the document; NULL is fine */
void jsonw_free(json_writer_t **self);         /* the same without the newline */

void jsonw_start_object(json_writer_t *self);
void jsonw_end_object(json_writer_t *self);
void jsonw_start_array(json_writer_t *self);
void jsonw_end_array(json_writer_t *self);
void jsonw_name(json_writer_t *self, const char *name);   /* the next value's name, in an object */

void jsonw_string(json_writer_t *self, const char *value);
void jsonw_uint(json_writer_t *self, uint64_t value);
void jsonw_bool(json_writer_t *self, bool value);
void jsonw_null(json_writer_t *self);
void jsonw_raw(json_writer_t *self, const char *token);    /* a number already formatted */

static inline void jsonw_string_field(json_writer_t *self, const char *name, const char *value)
{
	jsonw_name(self, name);
	jsonw_string(self, value);
}

static inline void jsonw_uint_field(json_writer_t *self, const char *name, uint64_t value)
{
	jsonw_name(self, name);
	jsonw_uint(self, value);
}

static inline void jsonw_bool_field(json_writer_t *self, const char *name, bool value)
{
	jsonw_name(self, name);
	jsonw_bool(self, value);
}

static inline void jsonw_null_field(json_writer_t *self, const char *name)
{
	jsonw_name(self, name);
	jsonw_null(self);
}

static inline void jsonw_raw_field(json_writer_t *self, const char *name, const char *token)
{
	jsonw_name(self, name);
	jsonw_raw(self, token);
}

#endif
