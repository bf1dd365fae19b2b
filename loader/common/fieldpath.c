// SPDX-License-Identifier: MIT
/* The field path errors name (fieldpath.h): built as a walk enters fields, for the compiler and the
 * saved plan's reader alike. */
#include "common/fieldpath.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

size_t fieldpath_push(struct fieldpath *p, const char *fmt, ...)
{
	size_t old = p->len;
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(p->s + old, sizeof(p->s) - old, fmt, ap);
	va_end(ap);
	if (n > 0)
		p->len = old + (size_t)n < sizeof(p->s) ? old + (size_t)n : sizeof(p->s) - 1;
	return old;
}

/* fieldpath_push() without printf: the compiler builds a path for every field it reads. */
size_t fieldpath_push_str(struct fieldpath *p, const char *sep, const char *s)
{
	size_t old = p->len, room = sizeof(p->s) - 1 - old;
	size_t ls = strlen(sep), lk = strlen(s);
	if (ls + lk > room)
		return fieldpath_push(p, "%s%s", sep, s);
	memcpy(p->s + old, sep, ls);
	memcpy(p->s + old + ls, s, lk + 1);
	p->len = old + ls + lk;
	return old;
}

size_t fieldpath_push_index(struct fieldpath *p, uint32_t i)
{
	char buf[16], *d = buf + sizeof(buf);
	*--d = 0;
	*--d = ']';
	do
		*--d = (char)('0' + i % 10);
	while (i /= 10);
	*--d = '[';
	return fieldpath_push_str(p, "", d);
}

void fieldpath_pop(struct fieldpath *p, size_t old)
{
	p->len = old;
	p->s[old] = 0;
}
