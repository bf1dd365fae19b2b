/* SPDX-License-Identifier: MIT */
/*
 * TC mode (--tc): the TC object loaded over the shared maps' pins, its programs on the ingress
 * and egress of each interface with pinned tcx links, detached from interfaces no longer
 * listed, removed when none is.
 *
 * Two BPF objects, one set of maps: the socket object is loaded first and pins
 * its maps; the TC object declares the same routing maps (bpf/sluice.bpf.h) and
 * libbpf reuses them through those pins, so one apply and one switch serve
 * both modes. Two objects rather than one because a skeleton loads all of its
 * programs: socket mode alone (no --tc) then loads no packet program, and the
 * TC programs attach to interfaces with their own link pins.
 */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>
#include <net/if.h>
#include <net/if_arp.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "common/log.h"
#include "dataplane/internal.h"
#include "sluice.skel.h"
#include "sluice_tc.skel.h"

/* tcx (6.6+): libbpf 1.1 and the 6.1 UAPI headers of Debian 12 predate them; the kernel's numbers. */
#define TCX_INGRESS 46              /* BPF_TCX_INGRESS */
#define TCX_EGRESS 47               /* BPF_TCX_EGRESS */
#define LINK_TYPE_TCX 11            /* BPF_LINK_TYPE_TCX */

/* The index of an Ethernet-like interface of this network namespace. */
static int tc_ifindex(const char *ifname, int *ifindex)
{
	struct ifreq ifr;
	unsigned int idx;
	int sk, err = 0;

	if (!ifname || !*ifname || strlen(ifname) >= IFNAMSIZ || strpbrk(ifname, "/@ ")) {
		log_error("'%s' is not an interface name; hint: --tc IFACE[,IFACE...], e.g. --tc eth0", ifname ? ifname : "");
		return -EINVAL;
	}
	idx = if_nametoindex(ifname);
	if (!idx) {
		log_error("no interface %s in sluiced's network namespace; hint: 'ip link' lists them", ifname);
		return -ENODEV;
	}
	memset(&ifr, 0, sizeof(ifr));
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", ifname);
	sk = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (sk < 0 || ioctl(sk, SIOCGIFHWADDR, &ifr))
		err = -errno;
	if (sk >= 0)
		close(sk);
	if (err) {
		log_error("cannot read the link type of %s: %s", ifname, strerror(-err));
		return err;
	}
	if (ifr.ifr_hwaddr.sa_family != ARPHRD_ETHER) {
		log_error("interface %s is not Ethernet-like (link type %u): the TC programs read an Ethernet header; "
		       "hint: attach to the node's uplink or to the pods' veths", ifname, ifr.ifr_hwaddr.sa_family);
		return -EOPNOTSUPP;
	}
	*ifindex = (int)idx;
	return 0;
}

static bool tc_iface_wanted(const struct dataplane_opts *o, const char *pin_name)
{
	const char *at = strchr(pin_name, '@');

	for (size_t i = 0; at && i < o->n_tc_ifaces; i++)
		if (!strcmp(at + 1, o->tc_ifaces[i]))
			return true;
	return false;
}

/* Detaches and unpins the TC links of interfaces not wanted (all of them when keep_wanted is false). */
static void tc_prune_links(const struct dataplane_opts *o, bool keep_wanted)
{
	char dir[PATH_MAX], path[PATH_MAX];
	struct dirent *de;
	DIR *d;

	if (pin_path(dir, o->bpffs_dir, SLUICE_PIN_LINKS, NULL) || !(d = opendir(dir)))
		return;
	while ((de = readdir(d))) {
		if (strncmp(de->d_name, SLUICE_PIN_TC_PREFIX, strlen(SLUICE_PIN_TC_PREFIX)) ||
		    (keep_wanted && tc_iface_wanted(o, de->d_name)) || pin_path(path, dir, de->d_name, NULL))
			continue;
		int fd = bpf_obj_get(path);
		if (fd >= 0) {
			bpf_link_detach(fd);
			close(fd);
		}
		unlink(path);
		log_info("tc: detached %s: the interface is not in --tc", de->d_name);
	}
	closedir(d);
}

/* TC mode off: its links, programs and own maps (the flow table) go; the shared maps stay. */
static void tc_remove(struct dataplane *dp, const struct dataplane_opts *o)
{
	char path[PATH_MAX];
	struct sluice_tc_bpf *tc;
	struct bpf_program *prog;
	struct bpf_map *map;

	tc_prune_links(o, false);
	tc = sluice_tc_bpf__open();
	if (!tc)
		return;
	bpf_object__for_each_program(prog, tc->obj)
		if (!pin_path(path, o->bpffs_dir, SLUICE_PIN_PROGS, bpf_program__name(prog)))
			unlink(path);
	bpf_object__for_each_map(map, tc->obj)
		if (!bpf_map__is_internal(map) && !bpf_object__find_map_by_name(dp->skel->obj, bpf_map__name(map)) &&
		    !pin_path(path, o->bpffs_dir, SLUICE_PIN_MAPS, bpf_map__name(map)))
			unlink(path);
	sluice_tc_bpf__destroy(tc);
}

/* Attaches prog to one side of an interface with a pinned tcx link, or swaps it into the link already there. */
static int tc_attach_one(struct dataplane *dp, const char *dir, const char *ifname, int ifindex,
			 struct bpf_program *prog, int attach_type)
{
	char name[128], path[PATH_MAX];
	int fd, err;

	snprintf(name, sizeof(name), "%s@%s", bpf_program__name(prog), ifname);
	if ((err = pin_path(path, dir, SLUICE_PIN_LINKS, name)))
		return err;
	fd = bpf_obj_get(path);
	if (fd >= 0) {
		struct bpf_link_info info;
		__u32 len = sizeof(info);

		memset(&info, 0, sizeof(info));
		/* info.xdp.ifindex: tcx's ifindex sits at the same place, and the 6.1 headers have no tcx member */
		if (bpf_obj_get_info_by_fd(fd, &info, &len) == 0 && info.type == LINK_TYPE_TCX &&
		    (int)info.xdp.ifindex == ifindex) {
			/* Atomic: the hook never runs without a program. */
			if (bpf_link_update(fd, bpf_program__fd(prog), NULL)) {
				err = -errno;
				log_error("cannot swap the new %s program into %s: %s", bpf_program__name(prog), path,
				       strerror(-err));
				close(fd);
				return err;
			}
			dp->tc_links[dp->n_tc_links++] = fd;
			return 0;
		}
		/* The interface was deleted (its link is defunct) or recreated under the same name. */
		bpf_link_detach(fd);
		close(fd);
		unlink(path);
	}
	fd = bpf_link_create(bpf_program__fd(prog), ifindex, attach_type, NULL);
	if (fd < 0) {
		err = -errno;
		log_error("cannot attach %s to %s: %s; hint: TC mode needs tcx links (Linux 6.6+)", bpf_program__name(prog),
		       ifname, strerror(-err));
		return err;
	}
	dp->tc_links[dp->n_tc_links++] = fd;
	if (bpf_obj_pin(fd, path)) {
		err = -errno;
		log_error("cannot pin %s: %s", path, strerror(-err));
		return err;
	}
	return 0;
}

/* Both sides of one interface: ingress translates toward endpoints, egress translates replies back. */
int tc_attach(struct dataplane *dp, const char *dir, const char *ifname, int ifindex)
{
	int err = tc_attach_one(dp, dir, ifname, ifindex, dp->tc_skel->progs.sluice_tc_ingress, TCX_INGRESS);

	if (!err)
		err = tc_attach_one(dp, dir, ifname, ifindex, dp->tc_skel->progs.sluice_tc_egress, TCX_EGRESS);
	for (size_t i = 0; i < dp->n_tc_ifaces; i++)
		if (dp->tc_ifindexes[i] == ifindex)
			return err;
	/* remembered, for a growth of the maps to swap its programs in again */
	if (!err && dp->n_tc_ifaces < DATAPLANE_MAX_TC_IFACES && (dp->tc_ifnames[dp->n_tc_ifaces] = strdup(ifname)))
		dp->tc_ifindexes[dp->n_tc_ifaces++] = ifindex;
	return err;
}

/* The TC options, checked before anything is created: interfaces exist, are Ethernet-like, once each. */
int tc_check(const struct dataplane_opts *o, int ifindex[DATAPLANE_MAX_TC_IFACES])
{
	int err;

	if (o->n_tc_ifaces > DATAPLANE_MAX_TC_IFACES) {
		log_error("%zu interfaces for TC mode, at most %d", o->n_tc_ifaces, DATAPLANE_MAX_TC_IFACES);
		return -E2BIG;
	}
	if (o->n_tc_ifaces && !o->tc_ifaces)
		return -EINVAL;
	for (size_t i = 0; i < o->n_tc_ifaces; i++) {
		if ((err = tc_ifindex(o->tc_ifaces[i], &ifindex[i])))
			return err;
		for (size_t j = 0; j < i; j++)
			if (ifindex[j] == ifindex[i]) {
				log_error("interface %s is given twice to --tc", o->tc_ifaces[i]);
				return -EINVAL;
			}
	}
	if (o->tc_flows > (1u << 26)) {
		log_error("a flow table of %u flows is too large (at most %u); hint: the default is %d", o->tc_flows,
		       1u << 26, SLUICE_TC_FLOWS_DEFAULT);
		return -EINVAL;
	}
	return 0;
}

/*
 * A flow table pinned at path keeps its size (*entries, 2 a flow): replacing it would drop every
 * flow in progress. True if one is pinned.
 */
static bool tc_flow_table_size(const struct dataplane_opts *o, const char *path, uint64_t *entries)
{
	struct bpf_map_info info;
	__u32 len = sizeof(info);
	int fd = bpf_obj_get(path);

	if (fd < 0)
		return false;
	memset(&info, 0, sizeof(info));
	if (bpf_obj_get_info_by_fd(fd, &info, &len) == 0 && info.max_entries != *entries) {
		if (o->tc_flows)
			log_info("tc: the pinned flow table holds %u flows, kept; --tc-flows %u takes effect "
				"after sluiced --uninstall", info.max_entries / 2, o->tc_flows);
		*entries = info.max_entries;
	}
	close(fd);
	return true;
}

/* Opens and loads the TC object over the shared maps' pins (its own maps pinned beside them), and pins its programs. */
int tc_load(struct dataplane *dp, const struct dataplane_opts *o)
{
	char path[PATH_MAX];
	struct bpf_program *prog;
	uint64_t entries = 2ull * (o->tc_flows ? o->tc_flows : SLUICE_TC_FLOWS_DEFAULT);
	bool adopt = false;
	int err;

	dp->tc_skel = sluice_tc_bpf__open();
	if (!dp->tc_skel) {
		err = -errno;
		log_error("cannot open the TC BPF object: %s", strerror(-err));
		return err;
	}
	if ((err = set_map_pins(dp->tc_skel->obj, o->bpffs_dir)) || (err = caps_set(dp, dp->tc_skel->obj)))
		return err;
	if (!pin_path(path, o->bpffs_dir, SLUICE_PIN_MAPS, bpf_map__name(dp->tc_skel->maps.tc_flows)))
		adopt = tc_flow_table_size(o, path, &entries);
	if ((err = bpf_map__set_max_entries(dp->tc_skel->maps.tc_flows, (__u32)entries)))
		return err;
	if ((err = sluice_tc_bpf__load(dp->tc_skel))) {
		if (adopt)
			log_error("the TC maps pinned under %s do not fit this build of the data plane: %s; "
			       "hint: sluiced --uninstall, then start again (flows in progress are reset)", o->bpffs_dir,
			       strerror(-err));
		else
			log_error("loading the TC data plane failed: %s; hint: rerun with --verbose for the verifier log",
			       strerror(-err));
		return err;
	}
	dp->fd_tc_stats = bpf_map__fd(dp->tc_skel->maps.tc_stats);
	dp->fd_tc_flows = bpf_map__fd(dp->tc_skel->maps.tc_flows);
	bpf_object__for_each_program(prog, dp->tc_skel->obj)
		if ((err = pin_program(prog, o->bpffs_dir)))
			return err;
	return 0;
}

/*
 * Loads the TC object over the shared maps' pins, attaches it to the wanted
 * interfaces and detaches it from the others; with no interface (and no
 * tc_load) removes TC mode. Called after the socket object pinned its maps.
 */
int tc_open(struct dataplane *dp, const struct dataplane_opts *o)
{
	int ifindex[DATAPLANE_MAX_TC_IFACES];
	int err;

	if (!o->n_tc_ifaces && !o->tc_load) {
		tc_remove(dp, o);
		return 0;
	}
	if ((err = tc_check(o, ifindex)) || (err = tc_load(dp, o)))
		return err;
	for (size_t i = 0; i < o->n_tc_ifaces; i++) {
		if (dp->upgrading) {   /* attached with the socket programs, after the first apply */
			if (!(dp->tc_names[dp->n_tc_pending] = strdup(o->tc_ifaces[i])))
				return -ENOMEM;
			dp->tc_ifindex[dp->n_tc_pending++] = ifindex[i];
			continue;
		}
		if ((err = tc_attach(dp, o->bpffs_dir, o->tc_ifaces[i], ifindex[i])))
			return err;
	}
	tc_prune_links(o, true);
	return 0;
}
