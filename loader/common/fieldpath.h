/* SPDX-License-Identifier: MIT */
/* The path of the field being read (spec.http[0].route), so that errors can name it: the compiler
 * and the saved plan's reader push a part as they enter a field and pop it as they leave. */
#ifndef SLUICE_FIELDPATH_H
#define SLUICE_FIELDPATH_H

#include <stddef.h>
#include <stdint.h>

struct fieldpath {
	char s[512];                 /* always NUL-terminated; what does not fit is cut */
	size_t len;
};

/* Each push returns the length to hand to fieldpath_pop, which takes the part off again. */
size_t fieldpath_push(struct fieldpath *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
size_t fieldpath_push_str(struct fieldpath *p, const char *sep, const char *s);
size_t fieldpath_push_index(struct fieldpath *p, uint32_t i);   /* "[i]" */
void fieldpath_pop(struct fieldpath *p, size_t old);

#endif
