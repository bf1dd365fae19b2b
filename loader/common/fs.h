/* SPDX-License-Identifier: MIT */
/* Files and directories, as the compiler's inputs, sluiced and the data plane use them. */
#ifndef SLUICE_FS_H
#define SLUICE_FS_H

#include <stddef.h>
#include <sys/types.h>

/* fd read to its end (retrying EINTR) into a malloc'd *buf of *len bytes and a NUL after them, the
 * buffer first sized for size_hint bytes. 0, or -errno (-ENOMEM) with nothing to free; fd stays open.
 * For what fs_read_file refuses: standard input, a FIFO, /dev/stdin. */
int fs_read_fd(int fd, size_t size_hint, unsigned char **buf, size_t *len);

/* A whole regular file into a malloc'd buffer (NUL after the last byte). 0, or -errno: -EISDIR for
 * a directory, -EINVAL for anything else that is not a regular file. */
int fs_read_file(const char *path, unsigned char **buf, size_t *len);

/* mkdir -p: every missing directory of path with mode. 0 or -errno. */
int fs_mkdir_p(const char *path, mode_t mode);

/* The cgroup v2 mount as /proc/mounts lists it (the node's root cgroup), malloc'd; NULL if none. */
char *fs_cgroup2_mount(void);

#endif
