// SPDX-License-Identifier: MIT
#include "common/log.h"

#include <stdarg.h>
#include <stdlib.h>

#include "common/json.h"

static const char *program = "sluice";
static enum log_level max_level = LOG_INFO;

void log_init(const char *name, enum log_level max)
{
	program = name;
	max_level = max;
}

bool log_enabled(enum log_level level)
{
	return level <= max_level;
}

void log_msg(enum log_level level, const char *fmt, ...)
{
	static const char *const tags[] = { "error: ", "warning: ", "", "debug: " };
	va_list ap;
	if (!log_enabled(level))
		return;
	va_start(ap, fmt);
	fprintf(stderr, "%s: %s", program, tags[level]);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

void report_error(FILE *out, FILE *err, bool json, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	report_verror(out, err, json, fmt, ap);
	va_end(ap);
}

void report_verror(FILE *out, FILE *err, bool json, const char *fmt, va_list ap)
{
	char *msg;
	if (vasprintf(&msg, fmt, ap) < 0)
		msg = NULL;
	if (json) {
		json_writer_t *w = jsonw_new(out);
		jsonw_start_object(w);
		jsonw_string_field(w, "error", msg ? msg : "out of memory");
		jsonw_end_object(w);
		jsonw_destroy(&w);
	} else {
		fprintf(err, "Error: %s\n", msg ? msg : "out of memory");
	}
	free(msg);
}
