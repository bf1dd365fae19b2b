/* SPDX-License-Identifier: MIT */
/*
 * Open and close: the socket object loaded over the pinned maps (or creating them), its
 * programs attached to the cgroup with pinned links (or swapped into the links already
 * there), TC mode after it; then the bookkeeping rebuilt from adopted maps (adopt.c).
 * Closing lets go of everything and leaves the pins: the data plane keeps serving.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>
#include <linux/magic.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "common/log.h"
#include "common/fs.h"
#include "dataplane/internal.h"
#include "sluice.skel.h"
#include "sluice_tc.skel.h"

static int libbpf_quiet(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	return 0;
}

static int libbpf_verbose(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	return vfprintf(stderr, fmt, ap);
}

/* Opens the cgroup v2 directory; refuses the hierarchy's root unless allowed. */
static int open_cgroup(const struct dataplane_opts *o, int *fd_out, uint64_t *id_out)
{
	const char *cg = o->cgroup_path;
	struct statfs fs;
	struct stat st;
	int fd;

	if (!cg || !*cg) {
		log_error("no cgroup given; hint: pass the cgroup v2 directory whose processes sluice should serve");
		return -EINVAL;
	}
	fd = open(cg, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0) {
		int err = -errno;
		log_error("cannot open cgroup %s: %s; hint: create it under the cgroup v2 mount (see /proc/mounts)",
			  cg, strerror(errno));
		return err;
	}
	if (fstatfs(fd, &fs) || fs.f_type != CGROUP2_SUPER_MAGIC || fstat(fd, &st)) {
		char *mnt = fs_cgroup2_mount();
		log_error("%s is not a cgroup v2 directory; hint: cgroup v2 is mounted at %s", cg,
			  mnt ? mnt : "(nowhere: mount -t cgroup2 none /sys/fs/cgroup)");
		free(mnt);
		close(fd);
		return -ENOTDIR;
	}
	/* every cgroup but the hierarchy's root has cgroup.type: the root serves every process on the machine */
	if (faccessat(fd, "cgroup.type", F_OK, 0) && errno == ENOENT && !o->allow_cgroup_root) {
		log_error("refusing to attach to %s, the root of the cgroup v2 hierarchy: every process on the machine "
			  "would be redirected; hint: pass a child cgroup, or allow the root explicitly", cg);
		close(fd);
		return -EPERM;
	}
	*fd_out = fd;
	*id_out = st.st_ino;   /* on cgroup v2 the inode number is the cgroup id */
	return 0;
}

/*
 * Swaps prog into the link pinned at path, atomically: the hook never runs without a program.
 * 1 when the link served a cgroup since removed (perhaps made again): it is gone, attach anew.
 */
static int swap_into_pinned_link(struct dataplane *dp, struct bpf_program *prog, const char *path, const char *dir,
				 uint64_t cg_id)
{
	struct bpf_link_info info;
	__u32 len = sizeof(info);
	struct bpf_link *link = bpf_link__open(path);
	bool cgroup_link;
	int err;

	if (!link) {
		err = -errno;
		log_error("cannot open pinned link %s: %s; hint: sluiced --uninstall, then start again", path,
		       strerror(-err));
		return err;
	}
	dp->links[dp->n_links++] = link;
	memset(&info, 0, sizeof(info));
	cgroup_link = bpf_obj_get_info_by_fd(bpf_link__fd(link), &info, &len) == 0 && info.type == BPF_LINK_TYPE_CGROUP;
	if (cgroup_link && info.cgroup.cgroup_id == 0) {
		/* its cgroup was removed (and perhaps made again): the link serves nothing now */
		log_info("the pinned link %s served a cgroup that no longer exists (removed, perhaps made "
		      "again): attaching anew to the cgroup given", path);
		bpf_link__unpin(link);
		bpf_link__destroy(link);
		dp->n_links--;
		unlink(path);
		return 1;
	}
	if (cgroup_link && info.cgroup.cgroup_id != cg_id) {
		log_error("the data plane under %s serves cgroup id %llu, not the requested one (id %llu); "
		       "hint: use the same cgroup, or sluiced --uninstall first", dir,
		       (unsigned long long)info.cgroup.cgroup_id, (unsigned long long)cg_id);
		return -EEXIST;
	}
	if ((err = bpf_link__update_program(link, prog))) {
		log_error("cannot swap the new %s program into %s: %s", bpf_program__name(prog), path, strerror(-err));
		return err;
	}
	return 0;
}

/* Attaches prog to the cgroup with a link pinned at path. */
static int attach_pinned_link(struct dataplane *dp, struct bpf_program *prog, const char *path, int cg_fd)
{
	struct bpf_link *link = bpf_program__attach_cgroup(prog, cg_fd);
	int err;

	if (!link) {
		err = -errno;
		log_error("cannot attach %s to the cgroup: %s; hint: the kernel needs cgroup BPF links (5.7+)",
		       bpf_program__name(prog), strerror(-err));
		return err;
	}
	dp->links[dp->n_links++] = link;
	if ((err = bpf_link__pin(link, path))) {
		log_error("cannot pin %s: %s", path, strerror(-err));
		return err;
	}
	return 0;
}

/* Attaches each program with a pinned link, or swaps the program inside an existing pinned link. */
int attach_programs(struct dataplane *dp, const char *dir, int cg_fd, uint64_t cg_id)
{
	struct bpf_program *prog;
	char path[PATH_MAX];
	int err;

	bpf_object__for_each_program(prog, dp->skel->obj) {
		const char *name = bpf_program__name(prog);

		if (bpf_program__type(prog) == BPF_PROG_TYPE_SYSCALL)
			continue;   /* sluice_merge: run by sluiced, attached nowhere */

		if (dp->n_links == sizeof(dp->links) / sizeof(dp->links[0]))
			return -E2BIG;
		if ((err = pin_path(path, dir, SLUICE_PIN_LINKS, name)))
			return err;
		err = path_exists(path) ? swap_into_pinned_link(dp, prog, path, dir, cg_id) : 1;
		if (err == 1)
			err = attach_pinned_link(dp, prog, path, cg_fd);
		if (err || (err = pin_program(prog, dir)))
			return err;
	}
	return 0;
}

void map_fds(struct dataplane *dp)
{
	dp->fd_active = bpf_map__fd(dp->skel->maps.active);
	dp->fd_services = bpf_map__fd(dp->skel->maps.services);
	dp->fd_endpoints = bpf_map__fd(dp->skel->maps.endpoints);
	dp->fd_counters = bpf_map__fd(dp->skel->maps.counters);
	dp->fd_rr_state = bpf_map__fd(dp->skel->maps.rr_state);
	dp->fd_barrier = bpf_map__fd(dp->skel->maps.rcu_barrier);
}

/* A handle with its bookkeeping's arrays; it takes the lock on dir from *lock_fd. */
static int handle_new(const char *dir, int *lock_fd, struct dataplane **out)
{
	struct dataplane *dp = calloc(1, sizeof(*dp));
	int err = 0;

	if (!dp)
		return -ENOMEM;
	dp->lock_fd = -1;
	dp->cg_fd = -1;
	dp->fd_barrier_inner = -1;
	dp->upgrade_cg_fd = -1;
	dp->ncpus = libbpf_num_possible_cpus();
	if (!(dp->by_id = calloc(SLUICE_MAX_SERVICE_IDS, sizeof(*dp->by_id))) || !(dp->dir = strdup(dir)))
		err = -ENOMEM;
	else if (dp->ncpus <= 0)
		err = dp->ncpus ? dp->ncpus : -EINVAL;
	if (err) {
		dataplane_close(dp);
		return err;
	}
	dp->lock_fd = *lock_fd;
	*lock_fd = -1;
	*out = dp;
	return 0;
}

/*
 * The socket object, loaded over the pinned maps (those missing are created and pinned by the
 * load) once upgrade_begin() has moved maps of another layout aside; then the maps' descriptors
 * and the grace-period map. *upgrade_gen: the generation an upgrade carries on from.
 */
static int load_socket_object(struct dataplane *dp, const struct dataplane_opts *o, bool adopt, uint64_t *upgrade_gen)
{
	int err;

	dp->skel = sluice_bpf__open();
	if (!dp->skel) {
		err = -errno;
		log_error("cannot open the BPF object: %s", strerror(-err));
		return err;
	}
	if ((err = caps_from_pins(dp, o->bpffs_dir)))   /* before upgrade_begin compares the sizes */
		return err;
	if (adopt && (err = upgrade_begin(dp, o->bpffs_dir, upgrade_gen)))
		return err;
	if ((err = set_map_pins(dp->skel->obj, o->bpffs_dir)))
		return err;
	if ((err = sluice_bpf__load(dp->skel))) {
		if (adopt)
			log_error("the maps pinned under %s do not fit this build of the data plane: %s; "
			       "hint: sluiced --uninstall, then start again (counters restart)", o->bpffs_dir, strerror(-err));
		else
			log_error("loading the BPF data plane failed: %s; hint: rerun with --verbose for the verifier log",
			       strerror(-err));
		return err;
	}
	map_fds(dp);
	dp->fd_barrier_inner = bpf_map_create(BPF_MAP_TYPE_ARRAY, "sluice_rcu_in", sizeof(__u32), sizeof(__u32), 1, NULL);
	if (dp->fd_barrier_inner < 0) {
		err = -errno;
		log_error("cannot create the grace-period map: %s", strerror(-err));
		return err;
	}
	return 0;
}

int dataplane_open(const struct dataplane_opts *o, struct dataplane **out)
{
	int tc_ifindexes[DATAPLANE_MAX_TC_IFACES];
	struct dataplane *dp = NULL;
	char path[PATH_MAX];
	bool adopt = false;
	uint64_t cg_id = 0, upgrade_gen = 0;
	int cg_fd = -1, lock_fd = -1, err;

	if (!o || !out)
		return -EINVAL;
	*out = NULL;
	libbpf_set_print(o->verbose ? libbpf_verbose : libbpf_quiet);
	if ((err = tc_check(o, tc_ifindexes)) || (err = open_cgroup(o, &cg_fd, &cg_id)))
		return err;
	if ((err = prepare_bpffs(o->bpffs_dir)) || (err = lock_pins(o->bpffs_dir, "cannot start", &lock_fd))) {
		close(cg_fd);
		return err;   /* nothing of ours to undo: never the pins of the writer holding the lock */
	}
	if ((err = pin_path(path, o->bpffs_dir, SLUICE_PIN_MAPS, "active")))
		goto cleanup;
	adopt = path_exists(path);
	if ((err = handle_new(o->bpffs_dir, &lock_fd, &dp)) || (err = load_socket_object(dp, o, adopt, &upgrade_gen)))
		goto cleanup;
	dp->cg_id = cg_id;
	if ((dp->cg_fd = fcntl(cg_fd, F_DUPFD_CLOEXEC, 0)) < 0) {
		err = -errno;
		goto cleanup;
	}
	if (dp->upgrading) {
		/* fresh maps: nothing to rebuild; the programs are swapped in after the first apply */
		dp->upgrade_cg_fd = cg_fd;
		dp->upgrade_cg_id = cg_id;
		cg_fd = -1;
		if ((err = set_generation(dp, upgrade_gen)) || (err = tc_open(dp, o)))
			goto cleanup;
		dp->generation = upgrade_gen;
	} else {
		if ((err = attach_programs(dp, o->bpffs_dir, cg_fd, cg_id)) || (err = tc_open(dp, o)))
			goto cleanup;
		if (adopt && (err = rebuild(dp)))
			goto cleanup;
		pins_record(dp);
	}
	*out = dp;
	dp = NULL;
cleanup:
	if (cg_fd >= 0)
		close(cg_fd);
	if (err && dp && dp->upgrading)
		upgrade_abort(dp, o->bpffs_dir);
	if (err && !adopt && err != -EPERM && err != -EINVAL)
		uninstall_pins(o->bpffs_dir);   /* a first install that failed half-way leaves nothing behind */
	dataplane_close(dp);
	if (lock_fd >= 0)
		close(lock_fd);
	return err;
}

void dataplane_close(struct dataplane *dp)
{
	if (!dp)
		return;
	settle(dp, NULL);   /* a deferred apply finishes: the old side must not stay stale */
	if (dp->upgrade_cg_fd >= 0)
		close(dp->upgrade_cg_fd);
	if (dp->cg_fd >= 0)
		close(dp->cg_fd);
	for (size_t i = 0; i < dp->n_tc_pending; i++)
		free(dp->tc_names[i]);
	for (size_t i = 0; i < dp->n_tc_ifaces; i++)
		free(dp->tc_ifnames[i]);
	free(dp->dir);
	for (size_t i = 0; i < dp->n_links; i++) {
		bpf_link__disconnect(dp->links[i]);   /* pinned: stays attached after we let go */
		bpf_link__destroy(dp->links[i]);
	}
	for (size_t i = 0; i < dp->n_tc_links; i++)
		close(dp->tc_links[i]);     /* pinned: stays attached */
	sluice_tc_bpf__destroy(dp->tc_skel);
	sluice_bpf__destroy(dp->skel);
	if (dp->fd_barrier_inner >= 0)
		close(dp->fd_barrier_inner);
	svcs_free(dp->svcs, dp->n_svcs);
	free(dp->index.tab);
	kept_free(&dp->kept);
	free(dp->by_id);
	for (size_t i = 0; i < dp->n_pins; i++) {
		close(dp->pins[i].fd);
		free(dp->pins[i].path);
	}
	free(dp->pins);
	if (dp->lock_fd > 0)
		close(dp->lock_fd);
	free(dp);
}
