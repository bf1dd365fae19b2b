/* SPDX-License-Identifier: MIT */
/*
 * One way to report, for sluice and sluiced alike.
 *   - The log (sluiced's stderr, the CLI's warnings): "PROGRAM: [LEVEL: ]MESSAGE", one line each,
 *     errors and warnings always, notes (info) unless quiet, debug lines with -v.
 *   - An error answered to a user (the CLI's own, or one sluiced sends back in its reply), as
 *     bpftool prints it: "Error: MESSAGE" on the error stream, or {"error":"MESSAGE"} on the
 *     output stream with -o json.
 */
#ifndef SLUICE_LOG_H
#define SLUICE_LOG_H

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>

enum log_level {
	LOG_ERROR,
	LOG_WARN,
	LOG_INFO,
	LOG_DEBUG,
};

/* The program's name for every line, and the most detailed level printed (LOG_INFO by default). */
void log_init(const char *program, enum log_level max);
bool log_enabled(enum log_level level);

void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)

/* An error for the user: "Error: MESSAGE" on err, or {"error":"MESSAGE"} on out when json. */
void report_error(FILE *out, FILE *err, bool json, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
void report_verror(FILE *out, FILE *err, bool json, const char *fmt, va_list ap);

#endif
