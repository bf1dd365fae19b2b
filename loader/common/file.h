/* SPDX-License-Identifier: MIT */
/* Reading a whole input into memory: the compiler's -f files and standard input, and any other
 * reader that wants a file's bytes in one buffer. */
#ifndef SLUICE_FILE_H
#define SLUICE_FILE_H

#include <stddef.h>

/* Reads fd to its end (retrying EINTR) into a malloc'd *buf of *len bytes; the caller frees it.
 * Returns 0, or -errno (-ENOMEM) with nothing to free. fd stays open. */
int file_read_fd(int fd, unsigned char **buf, size_t *len);

/* file_read_fd() of path, opened read-only: any file the caller may read (a FIFO, /dev/stdin),
 * not only a regular one. Returns 0 or -errno. */
int file_read(const char *path, unsigned char **buf, size_t *len);

#endif
