/* SPDX-License-Identifier: MIT */
/*
 * The pin directory (--bpffs): on a bpf filesystem, mounted if need be; locked by its one
 * writer; every pin recorded with a reference of its own, so that pins removed under a running
 * sluiced are made again; removed whole by an uninstall.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>
#include <unistd.h>
#include <linux/magic.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "common/log.h"
#include "common/fs.h"
#include "dataplane/internal.h"

#define DEFAULT_BPFFS "/sys/fs/bpf"

bool path_exists(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0;
}

int pin_path(char *buf, const char *dir, const char *a, const char *b)
{
	int n = b ? snprintf(buf, PATH_MAX, "%s/%s/%s", dir, a, b) : snprintf(buf, PATH_MAX, "%s/%s", dir, a);

	return n < 0 || n >= PATH_MAX ? -ENAMETOOLONG : 0;
}

/* Points each map of obj at its pin under DIR/maps: pinned maps are reused by the load, missing ones pinned by it. */
int set_map_pins(struct bpf_object *obj, const char *dir)
{
	char path[PATH_MAX];
	struct bpf_map *map;
	int err;

	bpf_object__for_each_map(map, obj) {
		if (bpf_map__is_internal(map))
			continue;
		if ((err = pin_path(path, dir, SLUICE_PIN_MAPS, bpf_map__name(map))) ||
		    (err = bpf_map__set_pin_path(map, path)))
			return err;
	}
	return 0;
}

/* Pins a loaded program as DIR/progs/NAME, in place of the previous build's. */
int pin_program(struct bpf_program *prog, const char *dir)
{
	char path[PATH_MAX];
	int err;

	if ((err = pin_path(path, dir, SLUICE_PIN_PROGS, bpf_program__name(prog))))
		return err;
	unlink(path);
	if ((err = bpf_program__pin(prog, path))) {
		log_error("cannot pin %s: %s", path, strerror(-err));
		return err;
	}
	return 0;
}

/* The directory must be on a bpf filesystem; mounts one at /sys/fs/bpf if nothing is mounted there. */
int prepare_bpffs(const char *dir)
{
	char up[PATH_MAX], path[PATH_MAX];
	struct statfs fs;
	char *slash;

	if (!dir || dir[0] != '/' || strlen(dir) >= sizeof(up)) {
		log_error("bpffs directory '%s' is not an absolute path; hint: e.g. /sys/fs/bpf/sluice", dir ? dir : "");
		return -EINVAL;
	}
	/* The nearest existing ancestor decides which filesystem the pins land on. */
	strcpy(up, dir);
	while (statfs(up, &fs) != 0) {
		slash = strrchr(up, '/');
		if (!slash || slash == up) {
			strcpy(up, "/");
			if (statfs(up, &fs) != 0)
				return -errno;
			break;
		}
		*slash = '\0';
	}
	if (fs.f_type != BPF_FS_MAGIC) {
		if (strcmp(up, DEFAULT_BPFFS) != 0 || mount("bpf", DEFAULT_BPFFS, "bpf", 0, "mode=0700")) {
			log_error("%s is not on a bpf filesystem (nearest existing directory %s); hint: mount -t bpf bpf %s",
			       dir, up, DEFAULT_BPFFS);
			return -ENOTSUP;
		}
	}
	int err = fs_mkdir_p(dir, 0700);
	if (err) {
		log_error("cannot create %s: %s", dir, strerror(-err));
		return err;
	}
	const char *subs[] = { SLUICE_PIN_MAPS, SLUICE_PIN_PROGS, SLUICE_PIN_LINKS };
	for (size_t i = 0; i < sizeof(subs) / sizeof(subs[0]); i++) {
		if (pin_path(path, dir, subs[i], NULL))
			return -ENAMETOOLONG;
		if (mkdir(path, 0700) && errno != EEXIST) {
			err = -errno;
			log_error("cannot create %s: %s; hint: is %s on a bpf filesystem?", path, strerror(errno), dir);
			return err;
		}
	}
	return 0;
}

/* The pid holding an flock on fd's file, from /proc/locks; 0 if unknown. */
static int lock_owner(int fd)
{
	struct stat st;
	char line[256];
	int pid = 0;
	FILE *f;

	if (fstat(fd, &st) || !(f = fopen("/proc/locks", "re")))
		return 0;
	while (!pid && fgets(line, sizeof(line), f)) {
		unsigned maj, min;
		unsigned long ino;
		int p;
		if (sscanf(line, "%*d: FLOCK %*s WRITE %d %x:%x:%lu", &p, &maj, &min, &ino) == 4 &&
		    ino == st.st_ino && maj == major(st.st_dev) && min == minor(st.st_dev))
			pid = p;
	}
	fclose(f);
	return pid;
}

/*
 * One writer per pin directory, as xdp-tools locks its bpffs directory: an exclusive flock held
 * for the writer's life and released by the kernel when it exits, even by SIGKILL.
 * -EBUSY, having said who holds it, when another process does.
 */
int lock_pins(const char *dir, const char *doing, int *fd_out)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC), err;

	if (fd < 0) {
		err = -errno;
		log_error("cannot open %s: %s", dir, strerror(errno));
		return err;
	}
	if (flock(fd, LOCK_EX | LOCK_NB) == 0) {
		*fd_out = fd;
		return 0;
	}
	err = errno == EWOULDBLOCK ? -EBUSY : -errno;
	if (err == -EBUSY) {
		int pid = lock_owner(fd);
		char who[32] = "another process", stop[48] = "";
		if (pid) {
			snprintf(who, sizeof(who), "process %d", pid);
			snprintf(stop, sizeof(stop), " (kill -TERM %d)", pid);
		}
		log_error("%s: %s serves the data plane pinned under %s, and there is one writer per data plane; "
		       "hint: stop it first%s, or give this sluiced its own --bpffs", doing, who, dir, stop);
	} else {
		log_error("cannot lock %s: %s", dir, strerror(-err));
	}
	close(fd);
	return err;
}

/* Records every pin under the directory with a reference of its own, so that a pin removed later can be put back. */
void pins_record(struct dataplane *dp)
{
	const char *subs[] = { SLUICE_PIN_MAPS, SLUICE_PIN_PROGS, SLUICE_PIN_LINKS };
	char dir[PATH_MAX], path[PATH_MAX];

	for (size_t i = 0; i < dp->n_pins; i++) {
		close(dp->pins[i].fd);
		free(dp->pins[i].path);
	}
	dp->n_pins = 0;
	for (size_t i = 0; i < sizeof(subs) / sizeof(subs[0]); i++) {
		struct dirent *de;
		DIR *d;
		if (pin_path(dir, dp->dir, subs[i], NULL) || !(d = opendir(dir)))
			continue;
		while ((de = readdir(d))) {
			struct stat st;
			struct pin *p;
			int fd;
			if (de->d_name[0] == '.' || pin_path(path, dir, de->d_name, NULL) || stat(path, &st) ||
			    (fd = bpf_obj_get(path)) < 0)
				continue;
			if (!(p = realloc(dp->pins, (dp->n_pins + 1) * sizeof(*p))) || !(path[0] && (p[dp->n_pins].path = strdup(path)))) {
				if (p)
					dp->pins = p;
				close(fd);
				break;
			}
			dp->pins = p;
			p[dp->n_pins].fd = fd;
			p[dp->n_pins++].ino = st.st_ino;
		}
		closedir(d);
	}
}

int dataplane_check_pins(struct dataplane *dp, char *msg, size_t len)
{
	char path[PATH_MAX];
	size_t missing = 0, used = 0;
	int err = 0;

	msg[0] = '\0';
	if (!dp || dp->upgrading || !dp->n_pins)
		return 0;
	for (size_t i = 0; i < dp->n_pins; i++) {
		struct pin *p = &dp->pins[i];
		struct stat st;
		if (stat(p->path, &st) == 0) {
			if (st.st_ino != p->ino && !err) {
				err = -EEXIST;
				snprintf(msg, len, "%s was replaced by an object sluiced did not pin: another writer?", p->path);
			}
			continue;
		}
		/* the directory itself may be gone: made again, and locked again, before pinning into it */
		if (!missing++ && stat(dp->dir, &st)) {
			int fd;
			if ((err = prepare_bpffs(dp->dir)) || (err = lock_pins(dp->dir, "cannot pin again", &fd))) {
				snprintf(msg, len, "the pins under %s were removed and cannot be made again: %s; the data plane "
					 "runs only as long as this sluiced does", dp->dir, strerror(-err));
				return err;
			}
			close(dp->lock_fd);
			dp->lock_fd = fd;
		}
		snprintf(path, sizeof(path), "%s", p->path);
		char *slash = strrchr(path, '/');
		if (slash) {
			*slash = '\0';
			mkdir(path, 0700);
		}
		if (bpf_obj_pin(p->fd, p->path)) {
			err = -errno;
			snprintf(msg, len, "%s was removed and cannot be pinned again: %s; the data plane runs only as long "
				 "as this sluiced does", p->path, strerror(errno));
			return err;
		}
		if (stat(p->path, &st) == 0)
			p->ino = st.st_ino;
		int n = snprintf(msg + used, len - used, "%s%s", used ? ", " : "", p->path + strlen(dp->dir) + 1);
		used = n > 0 && used + (size_t)n < len ? used + (size_t)n : used;
	}
	return err ? err : (int)missing;
}

/* Removes every entry of one pin subdirectory, detaching links first; then the directory. */
int remove_pins(const char *dir, const char *sub, bool links)
{
	char path[PATH_MAX], entry[PATH_MAX];
	struct dirent *de;
	DIR *d;
	int err = 0;

	if ((err = pin_path(path, dir, sub, NULL)))
		return err;
	d = opendir(path);
	if (!d)
		return errno == ENOENT ? 0 : -errno;
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.' || pin_path(entry, path, de->d_name, NULL))
			continue;
		if (links) {
			int fd = bpf_obj_get(entry);
			if (fd >= 0) {
				bpf_link_detach(fd);   /* detach now, even if another process holds the link */
				close(fd);
			}
		}
		if (unlink(entry) && !err)
			err = -errno;
	}
	closedir(d);
	if (rmdir(path) && !err)
		err = -errno;
	return err;
}

int uninstall_pins(const char *dir)
{
	int err;

	/* Links first: once they are gone no hook runs, and the maps can go. */
	if ((err = remove_pins(dir, SLUICE_PIN_LINKS, true)) || (err = remove_pins(dir, SLUICE_PIN_PROGS, false)) ||
	    (err = remove_pins(dir, SLUICE_PIN_MAPS, false)) || (err = remove_pins(dir, SLUICE_PIN_MAPS_OLD, false)) ||
	    (err = remove_pins(dir, SLUICE_PIN_MAPS_GROW, false))) {
		log_error("cannot remove the pins under %s: %s", dir, strerror(-err));
		return err;
	}
	if (rmdir(dir)) {
		err = -errno;
		log_error("cannot remove %s: %s; hint: something else is pinned there", dir, strerror(errno));
		return err;
	}
	return 0;
}

int dataplane_uninstall(const struct dataplane_opts *o)
{
	int err, lock_fd;

	if (!o || !o->bpffs_dir || o->bpffs_dir[0] != '/')
		return -EINVAL;
	if (!path_exists(o->bpffs_dir))
		return 0;
	/* never from under a running sluiced: it would go on serving a socket to maps nobody routes by */
	if ((err = lock_pins(o->bpffs_dir, "refusing to uninstall", &lock_fd)))
		return err;
	err = uninstall_pins(o->bpffs_dir);
	close(lock_fd);
	return err;
}
