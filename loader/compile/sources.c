// SPDX-License-Identifier: MIT
/* The inputs -f names (compile.h): files, directories read recursively, standard input; read
 * before the path YAML -> records -> plan starts. */
#include "compile/compile.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/fs.h"
#include "compile/ytree.h"

#define INPUT_SIZE_HINT 65535   /* most manifests fit: one allocation, then doubling */
#define INPUT_MAP_MIN (1 << 20)

void sources_add(struct sources *s, char *name, unsigned char *buf, size_t len)
{
	if (s->n == s->cap) {
		s->cap = s->cap ? s->cap * 2 : 8;
		s->v = realloc(s->v, s->cap * sizeof(*s->v));
		if (!s->v)
			abort();
	}
	s->v[s->n++] = (struct compile_input){ .name = name, .buf = buf, .len = len };
}

static void path_error(struct diags *d, const char *path, const char *what)
{
	struct mark m = { .file = path, .file_index = UINT32_MAX, .line = 1, .col = 1 };
	diag_error(d, &m, "%s", what);
}

static bool yaml_name(const char *name)
{
	const char *dot = strrchr(name, '.');
	return dot && (!strcmp(dot, ".yaml") || !strcmp(dot, ".yml") || !strcmp(dot, ".json"));
}

static int name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int read_path(struct sources *s, const char *path, bool explicit, struct diags *d, int depth);

/* As kubectl apply -f DIR: its subdirectories and YAML or JSON files, in name order, hidden ones
 * left out. A directory named on the command line must hold one. */
static int read_dir(struct sources *s, const char *path, bool explicit, struct diags *d, int depth)
{
	if (depth > 32) {
		path_error(d, path, "directories nest too deep (a symlink loop?)");
		return -1;
	}
	DIR *dir = opendir(path);
	if (!dir) {
		char msg[256];
		snprintf(msg, sizeof(msg), "cannot read directory: %s", strerror(errno));
		path_error(d, path, msg);
		return -1;
	}
	size_t files_before = s->n;
	struct ptrvec names = { 0 };
	struct dirent *e;
	while ((e = readdir(dir)))
		if (e->d_name[0] != '.')
			ptrvec_push(&names, strdup(e->d_name));
	closedir(dir);
	qsort(names.v, names.n, sizeof(*names.v), name_cmp);
	int rc = 0;
	for (size_t i = 0; i < names.n; i++) {
		char *child;
		if (asprintf(&child, "%s%s%s", path, path[strlen(path) - 1] == '/' ? "" : "/", (char *)names.v[i]) < 0)
			abort();
		struct stat cst;
		if (!stat(child, &cst) && (S_ISDIR(cst.st_mode) || yaml_name(child)))
			rc |= read_path(s, child, false, d, depth + 1);
		free(child);
		free(names.v[i]);
	}
	ptrvec_free(&names);
	if (explicit && !rc && s->n == files_before) {
		path_error(d, path, "no .yaml, .yml or .json file in this directory");
		return -1;
	}
	return rc;
}

static int read_path(struct sources *s, const char *path, bool explicit, struct diags *d, int depth)
{
	struct stat st;
	if (stat(path, &st)) {
		char msg[256];
		snprintf(msg, sizeof(msg), "cannot read: %s", strerror(errno));
		path_error(d, path, msg);
		return -1;
	}
	if (S_ISDIR(st.st_mode))
		return read_dir(s, path, explicit, d, depth);
	bool mapped = false;
	unsigned char *buf = NULL;
	size_t len;
	/* any file the user can read, as kubectl takes it: a FIFO or /dev/stdin too, not only a regular one */
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	int rc = fd < 0 ? -errno : 0;
	/* a large file is mapped, not copied, and looked at first through pread: the reader gives its
	 * pages back as it goes (ytree.h) */
	struct ytree_scan *scan = NULL;
	if (!rc && !fstat(fd, &st) && S_ISREG(st.st_mode) && st.st_size >= INPUT_MAP_MIN &&
	    (scan = malloc(sizeof(*scan))) && !ytree_scan_fd(fd, (size_t)st.st_size, scan)) {
		len = (size_t)st.st_size;
		buf = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
		if (buf == MAP_FAILED)
			buf = NULL;
		else
			madvise(buf, len, MADV_SEQUENTIAL);
	}
	if (!buf) {
		free(scan);
		scan = NULL;
	}
	if (!rc && !buf)
		rc = fs_read_fd(fd, INPUT_SIZE_HINT, &buf, &len);
	else if (buf)
		mapped = true;
	if (fd >= 0)
		close(fd);
	if (rc) {
		char msg[256];
		snprintf(msg, sizeof(msg), "cannot read: %s", strerror(-rc));
		path_error(d, path, msg);
		return -1;
	}
	sources_add(s, strdup(path), buf, len);
	s->v[s->n - 1].mapped = mapped;
	s->v[s->n - 1].scan = scan;
	return 0;
}

int sources_read(struct sources *s, const char *path, struct diags *d)
{
	if (!strcmp(path, "-")) {
		unsigned char *buf;
		size_t len;
		int rc = fs_read_fd(STDIN_FILENO, INPUT_SIZE_HINT, &buf, &len);
		if (rc) {
			path_error(d, "<stdin>", "cannot read standard input");
			return -1;
		}
		sources_add(s, strdup("<stdin>"), buf, len);
		return 0;
	}
	return read_path(s, path, true, d, 0);
}

void sources_free(struct sources *s)
{
	for (size_t i = 0; i < s->n; i++) {
		free((void *)s->v[i].name);
		if (s->v[i].mapped)
			munmap((void *)s->v[i].buf, s->v[i].len);
		else
			free((void *)s->v[i].buf);
		free(s->v[i].scan);
	}
	free(s->v);
	memset(s, 0, sizeof(*s));
}
