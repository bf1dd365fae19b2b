// SPDX-License-Identifier: MIT
#include "common/fs.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int fs_read_fd(int fd, size_t size_hint, unsigned char **buf, size_t *len)
{
	size_t cap = size_hint + 1, n = 0;
	unsigned char *b = malloc(cap);
	int rc = 0;
	while (b) {
		if (n + 1 == cap) {   /* more than the hint: a pipe, or a file that grew since fstat */
			unsigned char *nb = realloc(b, cap *= 2);
			if (!nb)
				free(b);
			b = nb;
			if (!b)
				break;
		}
		ssize_t r = read(fd, b + n, cap - n - 1);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			rc = r ? -errno : 0;
			break;
		}
		n += (size_t)r;
	}
	if (!b)
		return -ENOMEM;
	if (rc) {
		free(b);
		return rc;
	}
	b[n] = 0;
	*buf = b;
	*len = n;
	return 0;
}

int fs_read_file(const char *path, unsigned char **buf, size_t *len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC), rc = 0;
	struct stat st;
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) || !S_ISREG(st.st_mode)) {
		rc = S_ISDIR(st.st_mode) ? -EISDIR : -EINVAL;
		close(fd);
		return rc;
	}
	rc = fs_read_fd(fd, (size_t)st.st_size, buf, len);
	close(fd);
	return rc;
}

int fs_mkdir_p(const char *path, mode_t mode)
{
	char buf[PATH_MAX];
	if (snprintf(buf, sizeof(buf), "%s", path) >= (int)sizeof(buf))
		return -ENAMETOOLONG;
	for (char *p = buf + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = 0;
		if (mkdir(buf, mode) && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	if (mkdir(buf, mode) && errno != EEXIST)
		return -errno;
	return 0;
}

char *fs_cgroup2_mount(void)
{
	FILE *f = fopen("/proc/mounts", "re");
	char line[PATH_MAX + 256], dir[PATH_MAX], type[64];
	char *found = NULL;
	while (f && !found && fgets(line, sizeof(line), f))
		if (sscanf(line, "%*s %4095s %63s", dir, type) == 2 && !strcmp(type, "cgroup2"))
			found = strdup(dir);
	if (f)
		fclose(f);
	return found;
}
