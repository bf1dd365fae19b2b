// SPDX-License-Identifier: MIT
/* sluiced: the only writer of the data plane's maps. Loads or adopts the pinned
 * BPF objects (locking their directory: one writer per data plane), restores the
 * saved plan, drops capabilities, then serves the CLI over a unix socket. Many
 * clients may be connected at once and none can hold another: requests are read
 * as their bytes arrive and replies sent as their readers take them, each within
 * a deadline; requests are handled one at a time, each change one generation,
 * and a change is acknowledged only once it is saved. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <malloc.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/capability.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "compile/compile.h"
#include "dataplane/dataplane.h"
#include "common/exit.h"
#include "common/log.h"
#include "common/names.h"
#include "plan/read.h"
#include "plan/print.h"
#include "common/proto.h"
#include "compile/ytree.h"


#define MAX_CLIENTS 64              /* at the limit, the client connected longest is dropped for a new one */
#define REQUEST_DEADLINE_MS 10000   /* from accept to the whole request */
#define REPLY_DEADLINE_MS 10000     /* from the request to the whole reply taken by its reader */
#define HOUSEKEEPING_MS 1000        /* pins checked, an unsaved plan saved again */

/* One connection: its request read as bytes arrive, then its reply sent as the peer takes it. */
struct client {
	int fd;
	uint64_t accepted, deadline;
	struct msg req;
	struct msg_parser parser;   /* parser.m points at req: fixed up when the slot moves */
	char *out;                  /* the encoded reply; NULL while reading */
	size_t out_len, out_off;
};

struct daemon {
	const char *cgroup, *bpffs, *socket_path, *state_dir;
	const char *tc;              /* --tc IFACE[,IFACE...] */
	unsigned long tc_flows;      /* --tc-flows N; 0: the default */
	const char *gateway_address; /* --gateway-address: where Gateways without spec.addresses listen */
	bool cgroup_given, verbose, uninstall;
	struct dataplane *dp;
	struct plan plan;            /* what the maps hold now */
	uint64_t generation;
	uint64_t saved_generation;   /* of what the state directory holds (plan and journal) */
	char *unsaved;               /* why the live plan is not saved; NULL when it is */
	char *pins_note;             /* the last thing the pin check found, with its time; NULL: nothing */
	bool pins_broken;            /* pins are missing and could not be made again */
	int listen_fd;
	struct client clients[MAX_CLIENTS];
	size_t n_clients;
};

static volatile sig_atomic_t stopping;

static void on_signal(int sig)
{
	(void)sig;
	stopping = 1;
}

/* A value from a user or a file as messages quote it: escaped and cut (names.h). */
static const char *quote(const char *s, char *buf, size_t cap)
{
	return name_quote(s, strlen(s), buf, cap);
}

/* The cgroup v2 mount, as /proc/mounts lists it: the node's root cgroup. */
static char *cgroup2_root(void)
{
	FILE *f = fopen("/proc/mounts", "r");
	char dev[256], dir[PATH_MAX], type[64];
	char *found = NULL;
	if (!f)
		return NULL;
	while (!found && fscanf(f, "%255s %4095s %63s %*[^\n]", dev, dir, type) == 3)
		if (!strcmp(type, "cgroup2"))
			found = strdup(dir);
	fclose(f);
	return found;
}

static int mkdir_p(const char *path, mode_t mode)
{
	char buf[PATH_MAX];
	snprintf(buf, sizeof(buf), "%s", path);
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

/* ---- the state directory: the plan, and the weight changes made since it was saved ---- */

static char *state_path(const struct daemon *dm, const char *name)
{
	char *p;
	if (asprintf(&p, "%s/%s", dm->state_dir, name) < 0)
		abort();
	return p;
}

static int read_file(const char *path, unsigned char **buf, size_t *len)
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
	size_t cap = (size_t)st.st_size + 1, n = 0;
	unsigned char *b = malloc(cap);
	while (b) {
		ssize_t r = read(fd, b + n, cap - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			rc = r ? -errno : 0;
			break;
		}
		n += (size_t)r;
		if (n == cap) {
			unsigned char *nb = realloc(b, cap *= 2);
			if (!nb)
				free(b);
			b = nb;
		}
	}
	close(fd);
	if (!b)
		return -ENOMEM;
	if (rc) {
		free(b);
		return rc;
	}
	*buf = b;
	*len = n;
	return 0;
}

static int fsync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC), rc = 0;
	if (fd < 0)
		return -errno;
	if (fsync(fd))
		rc = -errno;
	close(fd);
	return rc;
}

/* The whole plan, durable: a temporary file, fsynced, renamed over the old one, the directory fsynced.
 * A crash leaves the old plan or the new. Then the journal holds nothing the plan does not. */
static int save_plan(struct daemon *dm, char *why, size_t len)
{
	char *path = state_path(dm, "plan.json"), *tmp = state_path(dm, "plan.json.tmp");
	int rc = 0, fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
	if (!f) {
		rc = -errno;
		if (fd >= 0)
			close(fd);
	} else {
		plan_print_json_generation(&dm->plan, dm->generation, f);
		if (fflush(f) || ferror(f) || fsync(fd))
			rc = errno ? -errno : -EIO;
		if (fclose(f) && !rc)
			rc = -errno;
		if (!rc && rename(tmp, path))
			rc = -errno;
		if (!rc)
			rc = fsync_dir(dm->state_dir);
	}
	if (rc) {
		unlink(tmp);
		snprintf(why, len, "cannot save the plan to %s: %s", path, strerror(-rc));
	} else {
		dm->saved_generation = dm->generation;
		char *journal = state_path(dm, "weights.log");
		if (unlink(journal) && errno != ENOENT)
			log_warn("cannot remove %s (%s): the plan saved at generation %llu holds its changes, and "
				"a restart skips them", journal, strerror(errno), (unsigned long long)dm->generation);
		free(journal);
	}
	free(path);
	free(tmp);
	return rc;
}

/* A weight change: one service (all its ports), every subset of its routes named. */
struct weights {
	char svc[64], ns[64];
	size_t n;
	struct {
		char subset[64];
		uint32_t weight;
	} w[PLAN_MAX_DESTINATIONS];
};

/*
 * One weight change, durable: a JSON line appended and fsynced, so that its cost does not grow with
 * the plan. The line carries the generation it made: a restart replays only lines newer than the
 * saved plan. A line cut short by a full disk is truncated away.
 */
static int journal_append(struct daemon *dm, const struct weights *wt, char *why, size_t len)
{
	char *path = state_path(dm, "weights.log");
	char *line = NULL;
	size_t line_len = 0;
	FILE *m = open_memstream(&line, &line_len);
	fprintf(m, "{\"generation\":%llu,\"service\":", (unsigned long long)dm->generation);
	json_string(m, wt->svc);
	fputs(",\"namespace\":", m);
	json_string(m, wt->ns);
	fputs(",\"weights\":[", m);
	for (size_t j = 0; j < wt->n; j++) {
		fputs(j ? ",{\"subset\":" : "{\"subset\":", m);
		json_string(m, wt->w[j].subset);
		fprintf(m, ",\"weight\":%u}", wt->w[j].weight);
	}
	fputs("]}\n", m);
	fclose(m);
	int rc = 0, fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	struct stat st;
	if (fd < 0 || fstat(fd, &st)) {
		rc = -errno;
	} else {
		ssize_t w = write(fd, line, line_len);
		rc = w < 0 ? -errno : w != (ssize_t)line_len ? -ENOSPC : fdatasync(fd) ? -errno : 0;
		if (rc) {
			if (ftruncate(fd, st.st_size))
				log_warn("cannot cut a partial line from %s: %s", path, strerror(errno));
		}
	}
	if (fd >= 0)
		close(fd);
	if (rc)
		snprintf(why, len, "cannot append to %s: %s", path, strerror(-rc));
	else
		dm->saved_generation = dm->generation;
	free(line);
	free(path);
	return rc;
}

/* ---- weights: parsing SUBSET=WEIGHT and setting them on a plan, all or nothing ---- */

/* A service as users name it: SERVICE, SERVICE.NAMESPACE, SERVICE.NAMESPACE.svc[.CLUSTER-DOMAIN]. */
static const char *parse_service_ref(const char *arg, const char *ns, const char *domain, char *svc, char *svc_ns,
				     char *msg, size_t len)
{
	char q[160];
	const char *dot = strchr(arg, '.');
	size_t name_len = dot ? (size_t)(dot - arg) : strlen(arg);
	const char *ns_start = dot ? dot + 1 : NULL, *rest = ns_start ? strchr(ns_start, '.') : NULL;
	size_t ns_len = ns_start ? (rest ? (size_t)(rest - ns_start) : strlen(ns_start)) : strlen(ns);
	if (rest && strcmp(rest, ".svc") && (strncmp(rest, ".svc.", 5) || strcmp(rest + 5, domain))) {
		snprintf(msg, len,
			 "%s is not SERVICE, SERVICE.NAMESPACE or SERVICE.NAMESPACE.svc.%s; e.g. purchase-history.istioinaction",
			 quote(arg, q, sizeof(q)), domain);
		return msg;
	}
	if (!name_len || name_len > 63 || (ns_start && !ns_len) || ns_len > 63) {
		snprintf(msg, len, "no routed service %s: names are 1 to 63 characters; 'sluice status' lists the services",
			 quote(arg, q, sizeof(q)));
		return msg;
	}
	snprintf(svc, 64, "%.*s", (int)name_len, arg);
	snprintf(svc_ns, 64, "%.*s", (int)ns_len, ns_start ? ns_start : ns);
	return NULL;
}

/* SUBSET=WEIGHT words, weights in plain digits; NULL or an error message for the user. */
static const char *parse_weights(struct weights *wt, char **words, size_t n_words, char *msg, size_t len)
{
	char q[160];
	wt->n = 0;
	for (size_t i = 0; i < n_words; i++) {
		const char *a = words[i], *eq = strchr(a, '='), *d = eq ? eq + 1 : NULL;
		uint64_t w = 0;
		for (const char *p = d; p && *p >= '0' && *p <= '9' && w <= INT32_MAX; p++)
			w = w * 10 + (uint64_t)(*p - '0');
		if (!eq || eq == a || !*d || d[strspn(d, "0123456789")] || w > INT32_MAX) {
			snprintf(msg, len, "%s is not SUBSET=WEIGHT with a weight from 0 to %d in digits; e.g. v1=80 v2=20",
				 quote(a, q, sizeof(q)), INT32_MAX);
			return msg;
		}
		if (eq - a > 63) {
			snprintf(msg, len, "subset name %s is longer than 63 characters", quote(a, q, sizeof(q)));
			return msg;
		}
		if (wt->n == PLAN_MAX_DESTINATIONS) {
			snprintf(msg, len, "more than %d subsets given", PLAN_MAX_DESTINATIONS);
			return msg;
		}
		char subset[64];
		snprintf(subset, sizeof(subset), "%.*s", (int)(eq - a), a);
		for (size_t j = 0; j < wt->n; j++)
			if (!strcmp(wt->w[j].subset, subset)) {
				snprintf(msg, len, "subset %s is given twice", quote(subset, q, sizeof(q)));
				return msg;
			}
		memcpy(wt->w[wt->n].subset, subset, sizeof(subset));
		wt->w[wt->n++].weight = (uint32_t)w;
	}
	return NULL;
}

static bool service_is(const struct plan_service *s, const struct weights *wt)
{
	return !strcmp(s->name, wt->svc) && !strcmp(s->namespace, wt->ns);
}

/* Checks every route of the service first, then sets all weights: all or nothing. */
static const char *set_weights(struct plan *plan, const struct weights *wt, char *msg, size_t len)
{
	size_t matched = 0;
	uint64_t sum = 0;
	for (size_t j = 0; j < wt->n; j++)
		sum += wt->w[j].weight;
	for (size_t i = 0; i < plan->n_services; i++) {
		const struct plan_service *s = &plan->services[i];
		if (!service_is(s, wt))
			continue;
		matched++;
		bool ok = s->n_destinations == wt->n;
		char have[512] = "";
		size_t used = 0;
		for (size_t d = 0; d < s->n_destinations; d++) {
			const char *sub = s->destinations[d].subset;
			int n = snprintf(have + used, sizeof(have) - used, "%s%s", d ? ", " : "", sub[0] ? sub : "(none)");
			used = n > 0 && used + (size_t)n < sizeof(have) ? used + (size_t)n : used;
			bool found = false;
			for (size_t j = 0; j < wt->n; j++)
				found = found || !strcmp(wt->w[j].subset, sub);
			ok = ok && found;
		}
		if (!ok) {
			snprintf(msg, len,
				 "service %s.%s port %u routes to subsets %s: give a weight for each of them, and add "
				 "other subsets to the VirtualService with 'sluice apply'",
				 s->name, s->namespace, s->port, have);
			return msg;
		}
	}
	if (!matched) {
		snprintf(msg, len, "no routed service %s.%s; 'sluice status' lists them", wt->svc, wt->ns);
		return msg;
	}
	if (wt->n > 1 && !sum) {
		snprintf(msg, len, "the weights sum to 0: give at least one subset a positive weight");
		return msg;
	}
	for (size_t i = 0; i < plan->n_services; i++) {
		struct plan_service *s = &plan->services[i];
		if (!service_is(s, wt))
			continue;
		for (size_t d = 0; d < s->n_destinations; d++) {
			struct plan_destination *pd = &s->destinations[d];
			for (size_t j = 0; j < wt->n; j++)
				if (!strcmp(wt->w[j].subset, pd->subset))
					pd->weight = wt->w[j].weight;
			pd->percent = s->n_destinations == 1 ? 100 : 100.0 * pd->weight / (double)sum;
		}
	}
	return NULL;
}

/* ---- restoring the saved state at start ---- */

/* A journal line: {"generation":N,"service":S,"namespace":NS,"weights":[{"subset":X,"weight":W},...]}. */
struct journal_line {
	struct weights wt;
	uint64_t generation;
	bool ok;
};

static bool journal_str(const struct ynode *m, const char *key, char *out, size_t cap)
{
	const struct ynode *n = ymap_get(m, key);
	if (!n || n->type != YN_SCALAR || n->len >= cap || memchr(n->str, 0, n->len))
		return false;
	memcpy(out, n->str, n->len + 1);
	return true;
}

static bool journal_num(const struct ynode *n, uint64_t max, uint64_t *out)
{
	if (!n || n->type != YN_SCALAR || !n->plain || !n->len || n->len > 20 || n->str[strspn(n->str, "0123456789")])
		return false;
	*out = strtoull(n->str, NULL, 10);
	return *out <= max;
}

static void on_journal_line(void *ctx, const struct mark *file, struct ynode *root)
{
	struct journal_line *jl = ctx;
	const struct ynode *ws = root->type == YN_MAP ? ymap_get(root, "weights") : NULL;
	(void)file;
	if (jl->ok || !ws || ws->type != YN_SEQ || !ws->n || ws->n > PLAN_MAX_DESTINATIONS ||
	    !journal_num(ymap_get(root, "generation"), UINT64_MAX, &jl->generation) ||
	    !journal_str(root, "service", jl->wt.svc, sizeof(jl->wt.svc)) ||
	    !journal_str(root, "namespace", jl->wt.ns, sizeof(jl->wt.ns)))
		return;
	for (uint32_t i = 0; i < ws->n; i++) {
		uint64_t w;
		if (ws->items[i]->type != YN_MAP ||
		    !journal_str(ws->items[i], "subset", jl->wt.w[i].subset, sizeof(jl->wt.w[i].subset)) ||
		    !journal_num(ymap_get(ws->items[i], "weight"), INT32_MAX, &w))
			return;
		jl->wt.w[i].weight = (uint32_t)w;
	}
	jl->wt.n = ws->n;
	jl->ok = true;
}

/* The previous release's lines: "SERVICE NAMESPACE SUBSET=WEIGHT..." with no generation. */
static bool journal_line_words(char *line, struct journal_line *jl, char *msg, size_t len)
{
	char *words[PLAN_MAX_DESTINATIONS + 3], *save = NULL;
	size_t nw = 0;
	for (char *t = strtok_r(line, " ", &save); t && nw < PLAN_MAX_DESTINATIONS + 3; t = strtok_r(NULL, " ", &save))
		words[nw++] = t;
	if (nw < 3 || nw > PLAN_MAX_DESTINATIONS + 2 || strlen(words[0]) > 63 || strlen(words[1]) > 63)
		return false;
	snprintf(jl->wt.svc, sizeof(jl->wt.svc), "%s", words[0]);
	snprintf(jl->wt.ns, sizeof(jl->wt.ns), "%s", words[1]);
	jl->generation = UINT64_MAX;   /* no generation: after the saved plan, as that release wrote them */
	return !parse_weights(&jl->wt, words + 2, nw - 2, msg, len);
}

/* Replays onto plan the weight changes made after it was saved (generation saved_gen). */
static void replay_journal(struct daemon *dm, struct plan *plan, uint64_t saved_gen)
{
	char *path = state_path(dm, "weights.log"), msg[512], q[160];
	unsigned char *buf = NULL;
	size_t len = 0, applied = 0, older = 0, skipped = 0, lineno = 0;
	int rc = read_file(path, &buf, &len);
	if (rc) {
		if (rc != -ENOENT)
			log_warn("cannot read %s (%s): the saved plan (generation %llu) is restored without it", path,
				strerror(-rc), (unsigned long long)saved_gen);
		free(path);
		return;
	}
	for (char *line = (char *)buf, *end; line < (char *)buf + len; line = end + 1) {
		lineno++;
		end = memchr(line, '\n', (size_t)((char *)buf + len - line));
		if (!end) {
			log_warn("%s:%zu: the last line was cut short (a write that never finished): ignored", path, lineno);
			break;
		}
		*end = 0;
		quote(line, q, sizeof(q));   /* before the words are cut apart */
		struct journal_line jl = { 0 };
		struct diags d = { 0 };
		struct mark at = { .file = path, .line = 1, .col = 1 };
		if (line[0] == '{')
			yaml_each_document((const unsigned char *)line, (size_t)(end - line), &at, &d, on_journal_line, &jl);
		else
			jl.ok = journal_line_words(line, &jl, msg, sizeof(msg));
		diags_free(&d);
		const char *err = jl.ok ? NULL : "not a weight change";
		if (jl.ok && jl.generation <= saved_gen) {
			older++;   /* already in the saved plan: a journal that could not be removed */
			continue;
		}
		if (!err)
			err = set_weights(plan, &jl.wt, msg, sizeof(msg));
		if (err) {
			log_warn("%s:%zu: skipping %s: %s", path, lineno, q, err);
			skipped++;
			continue;
		}
		applied++;
	}
	if (applied || skipped)
		log_info("replayed %zu weight change%s from %s, skipped %zu that no longer apply%s", applied,
			applied == 1 ? "" : "s", path, skipped, older ? " (and passed over lines the plan already holds)" : "");
	free(buf);
	free(path);
}

/*
 * What the maps hold and what sluiced believes agree from the start: the saved plan (and the weight
 * changes since) is applied to the maps; without a saved plan the maps are cleared, and the log
 * says which. An unreadable or invalid plan stops sluiced rather than guess.
 */
static int restore_state(struct daemon *dm)
{
	char *path = state_path(dm, "plan.json");
	unsigned char *buf = NULL;
	size_t len = 0;
	struct plan plan = { 0 };
	uint64_t saved_gen = 0;
	int rc = read_file(path, &buf, &len);
	bool saved = !rc;
	if (rc && rc != -ENOENT) {
		log_error("cannot read the saved plan %s: %s; hint: move it away to start with an empty data plane",
			path, strerror(-rc));
		free(path);
		return rc;
	}
	if (saved) {
		struct diags d = { 0 };
		rc = plan_read_json(buf, len, path, &plan, &saved_gen, &d);
		free(buf);
		if (rc) {
			diags_print(&d, stderr);
			log_error("the saved plan in %s is invalid; hint: move it away to start with an empty data plane",
				path);
			diags_free(&d);
			free(path);
			return -EINVAL;
		}
		diags_free(&d);
		replay_journal(dm, &plan, saved_gen);
	}
	uint64_t before = dm->generation;
	size_t held = dataplane_n_records(dm->dp);
	struct dataplane_stats st;
	rc = dataplane_apply(dm->dp, &plan, &dm->generation, &st);
	if (rc) {
		log_error("the data plane refused the saved plan in %s (%s)", path, strerror(-rc));
		plan_free(&plan);
		free(path);
		return rc;
	}
	plan_free(&dm->plan);
	dm->plan = plan;
	if (!saved && held)
		log_info("no saved plan in %s: cleared the %zu service address%s the pinned maps routed (generation %llu), "
			"which sluiced has no record of; 'sluice apply' routes again", dm->state_dir, held,
			held == 1 ? "" : "es", (unsigned long long)before);
	else if (!saved)
		log_info("no saved plan in %s: starting with an empty data plane", dm->state_dir);
	else
		log_info("restored %zu services from %s (saved at generation %llu)%s, now generation %llu", plan.n_services,
			path, (unsigned long long)saved_gen,
			st.services_written || st.services_removed ? "; the maps held something else, now replaced" : "",
			(unsigned long long)dm->generation);
	char why[512];
	if (save_plan(dm, why, sizeof(why)))
		log_warn("%s (the state directory still holds what was restored)", why);
	dm->saved_generation = dm->generation;
	free(path);
	return 0;
}

/* Only what serving needs stays: map reads and writes through fds already open. */
static int drop_capabilities(void)
{
	/* the bounding set first: emptying it needs CAP_SETPCAP, which goes next */
	for (cap_value_t c = 0; c <= CAP_LAST_CAP; c++)
		if (CAP_IS_SUPPORTED(c) && cap_drop_bound(c) && errno != EINVAL)
			return -errno;
	cap_t caps = cap_init();     /* empty set */
	if (!caps)
		return -errno;
	int rc = cap_set_proc(caps) ? -errno : 0;
	cap_free(caps);
	if (!rc)
		prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
	return rc;
}

/* Someone answers on the socket: a running sluiced, whose socket must not be taken. A dead one's socket is free. */
static bool socket_answers(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	bool answers = false;
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	if (fd >= 0) {
		answers = !connect(fd, (struct sockaddr *)&sa, sizeof(sa)) || errno == EAGAIN;
		close(fd);
	}
	return answers;
}

static int listen_socket(struct daemon *dm)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	if (strlen(dm->socket_path) >= sizeof(sa.sun_path)) {
		log_error("socket path %s is too long", dm->socket_path);
		return -ENAMETOOLONG;
	}
	strcpy(sa.sun_path, dm->socket_path);
	char dir[PATH_MAX];
	snprintf(dir, sizeof(dir), "%s", dm->socket_path);
	char *slash = strrchr(dir, '/');
	if (slash && slash != dir) {
		*slash = 0;
		mkdir_p(dir, 0700);
	}
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	unlink(dm->socket_path);
	mode_t old = umask(0177);    /* the socket is born 0600: only root may steer the data plane */
	int rc = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
	umask(old);
	if (rc || chmod(dm->socket_path, 0600) || listen(fd, 64)) {
		rc = -errno;
		log_error("cannot listen on %s: %s", dm->socket_path, strerror(-rc));
		close(fd);
		return rc;
	}
	dm->listen_fd = fd;
	return 0;
}

/* ---- requests ---- */

struct reply {
	FILE *out, *err;
	char *out_buf, *err_buf;
	size_t out_len, err_len;
	int code;
	bool json;
};

static void reply_error(struct reply *r, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void reply_error(struct reply *r, int code, const char *fmt, ...)
{
	char *msg;
	va_list ap;
	va_start(ap, fmt);
	if (vasprintf(&msg, fmt, ap) < 0)
		abort();
	va_end(ap);
	report_error(r->out, r->err, r->json, "%s", msg);
	free(msg);
	r->code = code;
}

static const char *default_namespace(const struct msg *req)
{
	const char *ns = msg_get(req, "namespace", NULL);
	return ns ? ns : "default";
}

static const char *cluster_domain(const struct msg *req)
{
	const char *d = msg_get(req, "domain", NULL);
	return d ? d : "cluster.local";
}

static void print_changes(struct reply *r, const struct dataplane_stats *st)
{
	if (r->json)
		return;
	fprintf(r->out, "%u service records written, %u removed, %u unchanged; switch %.1f us, apply %.1f ms\n",
		st->services_written, st->services_removed, st->services_unchanged, st->flip_ns / 1e3,
		st->total_ns / 1e6);
}

/* A change that could not be saved is taken back; if even that fails, the reply and status say the truth. */
static void unsaved_reply(struct daemon *dm, struct reply *r, const char *why, int undo_rc)
{
	char *dir = dm->state_dir ? strdup(dm->state_dir) : NULL;
	if (!undo_rc) {
		reply_error(r, EXIT_INVALID,
			    "%s; nothing changed: a change is made only once it is saved, and the data plane is back as it "
			    "was (generation %llu); hint: free space in %s, or make it writable, then try again",
			    why, (unsigned long long)dm->generation, dir);
	} else {
		free(dm->unsaved);
		dm->unsaved = strdup(why);
		reply_error(r, EXIT_INVALID,
			    "%s, and taking the change back failed too (%s): generation %llu is live but not saved, and a "
			    "restart would serve generation %llu; sluiced saves it as soon as it can ('sluice status' says "
			    "when); hint: free space in %s",
			    why, strerror(-undo_rc), (unsigned long long)dm->generation,
			    (unsigned long long)dm->saved_generation, dir);
		log_error("generation %llu is live but not saved: %s", (unsigned long long)dm->generation, why);
	}
	free(dir);
}

static void handle_apply(struct daemon *dm, struct msg *req, struct reply *r)
{
	struct sources src = { 0 };
	for (size_t i = 0; i + 1 < req->n; i++) {
		if (strcmp(req->f[i].tag, "file") || strcmp(req->f[i + 1].tag, "data"))
			continue;
		/* the request's own buffers: a cluster's YAML is not copied */
		struct compile_input in = { .name = req->f[i].data, .buf = (unsigned char *)req->f[i + 1].data,
					    .len = req->f[i + 1].len };
		req->f[i].data = req->f[i + 1].data = NULL;
		if (src.n == src.cap) {
			src.cap = src.cap ? src.cap * 2 : 8;
			src.v = realloc(src.v, src.cap * sizeof(*src.v));
			if (!src.v)
				abort();
		}
		src.v[src.n++] = in;
	}
	struct compile_opts o = {
		.namespace = msg_get(req, "namespace", NULL),
		.namespace_forced = msg_get(req, "namespace", NULL) != NULL,
		.cluster_domain = msg_get(req, "domain", NULL),
		.gateway_address = dm->gateway_address,
	};
	struct diags d = { 0 };
	struct plan plan;
	struct compile_stats cst;
	int rc = compile_plan(&o, src.v, src.n, &plan, &d, &cst);
	for (size_t i = 0; i < src.n; i++) {   /* the YAML goes now; the names stay for the errors */
		free((void *)src.v[i].buf);
		src.v[i].buf = NULL;
	}
	struct plan compiled = plan;
	if (!rc && plan_copy(&compiled, &plan)) {   /* the compile's records (every pod, every object) go */
		plan = compiled;
	} else if (!rc) {
		plan_free(&compiled);
	}
	if (rc) {
		if (r->json)
			diags_print_json(&d, r->out);
		else {
			diags_print(&d, r->err);
			fprintf(r->err, "%zu error%s: nothing applied\n", d.n, d.n == 1 ? "" : "s");
		}
		r->code = EXIT_INVALID;
		goto out;
	}
	/* a Gateway's traffic comes from outside the node: only TC mode sees it */
	for (size_t i = 0; !dm->tc && i < plan.n_services; i++)
		if (plan.services[i].gateway) {
			reply_error(r, EXIT_INVALID,
				    "Gateway %s needs TC mode, which sees traffic from outside the node: start sluiced "
				    "with --tc IFACE (the interface ingress arrives on); nothing applied",
				    plan.services[i].gateway);
			plan_free(&plan);
			goto out;
		}
	struct dataplane_stats st;
	uint64_t gen;
	rc = dataplane_apply(dm->dp, &plan, &gen, &st);
	if (rc) {
		reply_error(r, EXIT_INVALID, "the data plane refused the plan (%s): nothing applied; see sluiced's log",
			    strerror(-rc));
		plan_free(&plan);
		goto out;
	}
	struct plan old = dm->plan;
	dm->plan = plan;
	dm->generation = gen;
	char why[512];
	if (save_plan(dm, why, sizeof(why))) {
		int undo = dataplane_apply(dm->dp, &old, &dm->generation, NULL);
		if (!undo) {
			dm->plan = old;
			plan_free(&plan);
		} else {
			plan_free(&old);
		}
		log_info("apply: %s; %s", why, undo ? "the new plan stays live, unsaved" : "taken back");
		unsaved_reply(dm, r, why, undo);
		goto out;
	}
	plan_free(&old);
	if (r->json)
		fprintf(r->out, "{\"generation\":%llu,\"services\":%zu,\"written\":%u,\"removed\":%u}\n",
			(unsigned long long)gen, plan.n_services, st.services_written, st.services_removed);
	else {
		fprintf(r->out, "generation %llu: %zu service%s routed\n", (unsigned long long)gen, plan.n_services,
			plan.n_services == 1 ? "" : "s");
		print_changes(r, &st);
	}
	log_info("apply: generation %llu, %zu services, %u written, %u removed, switch %llu ns",
		(unsigned long long)gen, plan.n_services, st.services_written, st.services_removed,
		(unsigned long long)st.flip_ns);
out:
	diags_free(&d);
	sources_free(&src);
	malloc_trim(0);   /* a cluster's YAML and its compile are gone: give the memory back */
}

/* Why a weight change names no routed service, with what the user may have meant. */
static void no_such_service(struct daemon *dm, struct reply *r, const struct weights *wt)
{
	char also[256] = "";
	size_t used = 0;
	for (size_t i = 0; i < dm->plan.n_services && used + 80 < sizeof(also); i++) {
		const struct plan_service *s = &dm->plan.services[i];
		if (strcmp(s->name, wt->svc) || (i && !strcmp(s->name, dm->plan.services[i - 1].name) &&
						 !strcmp(s->namespace, dm->plan.services[i - 1].namespace)))
			continue;
		used += (size_t)snprintf(also + used, sizeof(also) - used, "%s%s.%s", used ? ", " : "", s->name,
					 s->namespace);
	}
	/* a VirtualService's name, or a service reached only through a Gateway, is not the name it is
	 * routed under: say which is */
	char route[160], host[160];
	snprintf(route, sizeof(route), "%s/%s", wt->ns, wt->svc);
	snprintf(host, sizeof(host), "%s.%s", wt->svc, wt->ns);
	for (size_t i = 0; i < dm->plan.n_services; i++) {
		const struct plan_service *s = &dm->plan.services[i];
		if (s->route && !strcmp(s->route, route)) {
			reply_error(r, EXIT_INVALID,
				    "no routed service %s.%s; VirtualService %s routes service %s.%s: sluice weight %s.%s ...",
				    wt->svc, wt->ns, route, s->name, s->namespace, s->name, s->namespace);
			return;
		}
		for (size_t d = 0; s->gateway && d < s->n_destinations; d++)
			if (s->destinations[d].host && !strcmp(s->destinations[d].host, host)) {
				reply_error(r, EXIT_INVALID,
					    "no routed service %s.%s; Gateway %s sends its traffic, routed as %s.%s: sluice "
					    "weight %s.%s ...",
					    wt->svc, wt->ns, s->gateway, s->name, s->namespace, s->name, s->namespace);
				return;
			}
	}
	reply_error(r, EXIT_INVALID, "no routed service %s.%s; %s%s%s'sluice status' lists them", wt->svc, wt->ns,
		    used ? "in other namespaces: " : "", also, used ? "; " : "");
}

static void handle_weight(struct daemon *dm, const struct msg *req, struct reply *r)
{
	char *words[PLAN_MAX_DESTINATIONS + 1], msg[768];
	size_t n_words = 0;
	const char *svc = NULL;
	for (size_t i = 0; i < req->n; i++) {
		if (strcmp(req->f[i].tag, "arg"))
			continue;
		if (!svc)
			svc = req->f[i].data;
		else if (n_words <= PLAN_MAX_DESTINATIONS)
			words[n_words++] = req->f[i].data;
	}
	if (!svc || !n_words) {
		reply_error(r, EXIT_USAGE, "usage: sluice weight SERVICE[.NAMESPACE] SUBSET=WEIGHT...");
		return;
	}
	struct weights wt;
	if (parse_weights(&wt, words, n_words, msg, sizeof(msg)) ||
	    parse_service_ref(svc, default_namespace(req), cluster_domain(req), wt.svc, wt.ns, msg, sizeof(msg))) {
		reply_error(r, EXIT_USAGE, "%s", msg);
		return;
	}
	/* the service's entries (one per port), and their old weights to print and to restore on failure */
	size_t n_svcs = 0, n_old = 0;
	for (size_t i = 0; i < dm->plan.n_services; i++)
		n_svcs += service_is(&dm->plan.services[i], &wt);
	if (!n_svcs) {
		no_such_service(dm, r, &wt);
		return;
	}
	const struct plan_service **svcs = calloc(n_svcs + 1, sizeof(*svcs));
	struct plan_destination *old = calloc(n_svcs * PLAN_MAX_DESTINATIONS + 1, sizeof(*old));
	if (!svcs || !old) {
		reply_error(r, EXIT_INVALID, "out of memory");
		free(svcs);
		free(old);
		return;
	}
	bool lone = false;
	for (size_t i = 0, k = 0; i < dm->plan.n_services; i++)
		if (service_is(&dm->plan.services[i], &wt)) {
			svcs[k++] = &dm->plan.services[i];
			lone = lone || dm->plan.services[i].n_destinations == 1;
			for (size_t d = 0; d < dm->plan.services[i].n_destinations; d++)
				old[n_old++] = dm->plan.services[i].destinations[d];
		}
	if (set_weights(&dm->plan, &wt, msg, sizeof(msg))) {
		reply_error(r, EXIT_INVALID, "%s", msg);
		free(svcs);
		free(old);
		return;
	}
	struct dataplane_stats st;
	uint64_t gen;
	/* deferred: the reply goes out at the switch; the client loop settles the old side after it */
	int rc = dataplane_apply_services(dm->dp, svcs, n_svcs, true, &gen, &st);
	char why[512] = "";
	if (!rc) {
		dm->generation = gen;
		if (journal_append(dm, &wt, why, sizeof(why))) {
			log_info("weight: %s; saving the whole plan instead", why);
			if (!save_plan(dm, why, sizeof(why)))
				why[0] = 0;
		}
	}
	if (rc || why[0]) {
		/* the old weights back, through the same path */
		for (size_t i = 0, k = 0; i < dm->plan.n_services; i++)
			if (service_is(&dm->plan.services[i], &wt))
				for (size_t d = 0; d < dm->plan.services[i].n_destinations; d++)
					dm->plan.services[i].destinations[d] = old[k++];
		if (rc) {
			reply_error(r, EXIT_INVALID, "the data plane refused the change (%s): weights unchanged",
				    strerror(-rc));
			goto done;
		}
		int undo = dataplane_apply_services(dm->dp, svcs, n_svcs, true, &dm->generation, NULL);
		if (undo)   /* the maps keep the new weights: so does what sluiced believes */
			set_weights(&dm->plan, &wt, msg, sizeof(msg));
		log_info("weight %s.%s: %s; %s", wt.svc, wt.ns, why, undo ? "the change stays live, unsaved" : "taken back");
		unsaved_reply(dm, r, why, undo);
		goto done;
	}
	size_t k = 0;
	bool first = true;
	if (r->json)
		fputs("{\"changes\":[", r->out);
	for (size_t i = 0; i < dm->plan.n_services; i++) {
		struct plan_service *s = &dm->plan.services[i];
		if (!service_is(s, &wt))
			continue;
		for (size_t d = 0; d < s->n_destinations; d++, k++) {
			struct plan_destination *pd = &s->destinations[d];
			char a[32], b[32];
			plan_percent_str(old[k].percent, a, sizeof(a));
			plan_percent_str(pd->percent, b, sizeof(b));
			if (r->json) {
				fputs(first ? "{\"service\":" : ",{\"service\":", r->out);
				json_string(r->out, s->name);
				fputs(",\"namespace\":", r->out);
				json_string(r->out, s->namespace);
				fprintf(r->out, ",\"port\":%u,\"subset\":", s->port);
				json_string(r->out, pd->subset);
				fprintf(r->out, ",\"old_weight\":%u,\"weight\":%u,\"old_percent\":%s,\"percent\":%s}",
					old[k].weight, pd->weight, a, b);
			} else {
				if (!d)
					fprintf(r->out, "%s.%s port %u/%s\n", s->name, s->namespace, s->port,
						plan_protocol_name(s->protocol));
				fprintf(r->out, "  %-8s weight %4u -> %-4u share %6s%% -> %s%%\n", pd->subset, old[k].weight,
					pd->weight, a, b);
			}
			first = false;
		}
	}
	if (r->json)
		fprintf(r->out, "],\"generation\":%llu,\"switch_ns\":%llu}\n", (unsigned long long)dm->generation,
			(unsigned long long)st.flip_ns);
	else {
		if (lone)
			fprintf(r->out, "note: a route with one destination sends it all traffic whatever its weight (as "
					"Istio does); the weight is kept for when others join\n");
		fprintf(r->out, "generation %llu\n", (unsigned long long)dm->generation);
	}
	log_info("weight %s.%s: generation %llu, switch %llu ns, apply %llu ns", wt.svc, wt.ns,
		(unsigned long long)dm->generation, (unsigned long long)st.flip_ns, (unsigned long long)st.total_ns);
done:
	free(svcs);
	free(old);
}

/* Names of enum sluice_tc_stat for status: JSON key, then text label. */
static const char *const tc_stat_names[SLUICE_TC_STATS][2] = {
	[SLUICE_TC_NEW_FLOWS] = { "new_flows", "new flows" },
	[SLUICE_TC_FORWARD] = { "forwarded", "forwarded" },
	[SLUICE_TC_REPLIES] = { "replies", "replies" },
	[SLUICE_TC_ICMP] = { "icmp_errors", "icmp errors" },
	[SLUICE_TC_REFUSED] = { "refused", "refused" },
	[SLUICE_TC_UNKNOWN_FLOW] = { "unknown_flows", "unknown flows" },
	[SLUICE_TC_FRAGMENTS] = { "fragments", "fragments passed" },
	[SLUICE_TC_MALFORMED] = { "malformed", "malformed passed" },
	[SLUICE_TC_ERRORS] = { "errors", "rewrite errors" },
};

/* The TC part of status: interfaces, the conntrack's fill and packet counters; JSON null without --tc. */
static void status_tc(struct daemon *dm, struct reply *r)
{
	struct dataplane_tc_status st;
	if (!dm->tc || dataplane_tc_status(dm->dp, &st)) {
		if (r->json)
			fputs(",\"tc\":null", r->out);
		return;
	}
	char *ifaces = strdup(dm->tc), *save = NULL;
	size_t n = 0;
	fputs(r->json ? ",\"tc\":{\"interfaces\":[" : "tc on", r->out);
	for (char *t = ifaces ? strtok_r(ifaces, ",", &save) : NULL; t; t = strtok_r(NULL, ",", &save), n++) {
		if (r->json) {
			fputs(n ? "," : "", r->out);
			json_string(r->out, t);
		} else {
			fprintf(r->out, "%s%s", n ? "," : " ", t);
		}
	}
	free(ifaces);
	if (r->json)
		fprintf(r->out, "],\"flows_live\":%u,\"flows_max\":%u", st.flows_live, st.flows_max);
	else
		fprintf(r->out, "  flows live %u of %u\n ", st.flows_live, st.flows_max);
	for (int i = 0; i < SLUICE_TC_STATS; i++) {
		if (r->json)
			fprintf(r->out, ",\"%s\":%llu", tc_stat_names[i][0], (unsigned long long)st.stats[i]);
		else
			fprintf(r->out, " %s %llu%s", tc_stat_names[i][1], (unsigned long long)st.stats[i],
				i + 1 < SLUICE_TC_STATS ? "," : "\n");
	}
	if (r->json)
		fputc('}', r->out);
}

/* What a user must know before trusting the rest: a plan live but not saved, pins that went missing. */
static void status_warnings(struct daemon *dm, struct reply *r)
{
	if (r->json) {
		fputs(",\"unsaved\":", r->out);
		if (dm->unsaved) {
			fprintf(r->out, "{\"generation\":%llu,\"saved_generation\":%llu,\"error\":",
				(unsigned long long)dm->generation, (unsigned long long)dm->saved_generation);
			json_string(r->out, dm->unsaved);
			fputc('}', r->out);
		} else {
			fputs("null", r->out);
		}
		fputs(",\"pins\":", r->out);
		if (dm->pins_note) {
			fprintf(r->out, "{\"ok\":%s,\"message\":", dm->pins_broken ? "false" : "true");
			json_string(r->out, dm->pins_note);
			fputc('}', r->out);
		} else {
			fputs("null", r->out);
		}
		return;
	}
	if (dm->unsaved)
		fprintf(r->out, "warning: generation %llu is live but not saved (%s); a restart would serve generation %llu\n",
			(unsigned long long)dm->generation, dm->unsaved, (unsigned long long)dm->saved_generation);
	if (dm->pins_note)
		fprintf(r->out, "%s: %s\n", dm->pins_broken ? "warning" : "note", dm->pins_note);
}

/* One endpoint's counters; for TCP also what sockops saw (handshakes, failures, retransmits, RTT). */
static void status_endpoint(struct reply *r, const char *addr, const struct sluice_endpoint_stats *st, bool tcp,
			    bool first)
{
	unsigned long long rtt = st->rtt_samples ? st->rtt_sum_us / st->rtt_samples : 0;
	if (r->json) {
		fprintf(r->out, "%s{\"address\":\"%s\",\"connections\":%llu", first ? "" : ",", addr,
			(unsigned long long)st->connections);
		if (tcp) {
			fprintf(r->out, ",\"established\":%llu,\"failed\":%llu,\"retransmits\":%llu,\"rtt_us\":",
				(unsigned long long)st->established, (unsigned long long)st->failed,
				(unsigned long long)st->retransmits);
			if (st->rtt_samples)
				fprintf(r->out, "%llu", rtt);
			else
				fputs("null", r->out);
		}
		fputc('}', r->out);
		return;
	}
	fprintf(r->out, "    %-40s connections %llu", addr, (unsigned long long)st->connections);
	if (tcp) {
		fprintf(r->out, "  established %llu  failed %llu  retransmits %llu  rtt ",
			(unsigned long long)st->established, (unsigned long long)st->failed,
			(unsigned long long)st->retransmits);
		if (st->rtt_samples)
			fprintf(r->out, "%llu us", rtt);
		else
			fputc('-', r->out);
	}
	fputc('\n', r->out);
}

/* The addresses a service is reached on: its VIPs, and a Gateway route's addresses with the gateway port. */
static void status_addresses(const struct plan_service *s, struct reply *r)
{
	char buf[80];
	if (r->json) {
		fputs(",\"vips\":[", r->out);
		for (size_t v = 0; v < s->n_vips; v++) {
			plan_addr_str(&s->vips[v], buf, sizeof(buf));
			fprintf(r->out, "%s\"%s\"", v ? "," : "", buf);
		}
		fputc(']', r->out);
		if (s->gateway) {
			fputs(",\"gateway\":", r->out);
			json_string(r->out, s->gateway);
			fputs(",\"gatewayAddresses\":[", r->out);
			for (size_t g = 0; g < s->n_gateway_addrs; g++) {
				plan_addr_str(&s->gateway_addrs[g], buf, sizeof(buf));
				fprintf(r->out, "%s\"%s\"", g ? "," : "", buf);
			}
			fprintf(r->out, "],\"gatewayPort\":%u", s->gateway_port);
		}
		return;
	}
	if (s->n_vips) {
		fputs("  vip", r->out);
		for (size_t v = 0; v < s->n_vips; v++) {
			plan_addr_str(&s->vips[v], buf, sizeof(buf));
			fprintf(r->out, "%s%s", v ? "," : " ", buf);
		}
	}
	if (s->gateway) {
		fputs("  gateway", r->out);
		for (size_t g = 0; g < s->n_gateway_addrs; g++) {
			plan_endpoint_str(&s->gateway_addrs[g], s->gateway_port, buf, sizeof(buf));
			fprintf(r->out, "%s%s", g ? "," : " ", buf);
		}
		fprintf(r->out, " (%s)", s->gateway);
	}
}

static void handle_status(struct daemon *dm, const struct msg *req, struct reply *r)
{
	const char *arg = NULL, *ns = default_namespace(req);
	char svc[64] = "", svc_ns[64] = "", msg[512];
	for (size_t i = 0; i < req->n; i++)
		if (!strcmp(req->f[i].tag, "arg")) {
			if (arg) {
				reply_error(r, EXIT_USAGE, "usage: sluice status [SERVICE[.NAMESPACE]]");
				return;
			}
			arg = req->f[i].data;
		}
	if (arg && parse_service_ref(arg, ns, cluster_domain(req), svc, svc_ns, msg, sizeof(msg))) {
		reply_error(r, EXIT_USAGE, "%s", msg);
		return;
	}
	char buf[80], pct[32];
	size_t shown = 0;
	if (r->json)
		fprintf(r->out, "{\"generation\":%llu", (unsigned long long)dm->generation);
	else
		fprintf(r->out, "generation %llu\n", (unsigned long long)dm->generation);
	status_warnings(dm, r);
	status_tc(dm, r);
	if (r->json)
		fputs(",\"services\":[", r->out);
	for (size_t i = 0; i < dm->plan.n_services; i++) {
		const struct plan_service *s = &dm->plan.services[i];
		if (arg && (strcmp(s->name, svc) || strcmp(s->namespace, svc_ns)))
			continue;
		/* weights and shares as the live side of the maps holds them, not as sluiced remembers them */
		struct dataplane_service_view view;
		int vrc = dataplane_service_view(dm->dp, s, &view);
		if (!vrc && view.n_destinations != s->n_destinations)
			vrc = -EUCLEAN;
		if (r->json) {
			fprintf(r->out, "%s{\"name\":", shown ? "," : "");
			json_string(r->out, s->name);
			fputs(",\"namespace\":", r->out);
			json_string(r->out, s->namespace);
			if (s->route) {
				fputs(",\"route\":", r->out);
				json_string(r->out, s->route);
			}
			status_addresses(s, r);
			fprintf(r->out, ",\"port\":%u,\"protocol\":\"%s\",\"loadBalancer\":\"%s\",\"in_maps\":%s,\"destinations\":[",
				s->port, plan_protocol_name(s->protocol), plan_lb_name(s->lb), vrc ? "false" : "true");
		} else {
			fprintf(r->out, "service %s.%s", s->name, s->namespace);
			status_addresses(s, r);
			fprintf(r->out, "  port %u/%s  lb %s\n", s->port, plan_protocol_name(s->protocol),
				plan_lb_name(s->lb));
			if (vrc)
				fprintf(r->out, "  warning: the maps do not route this service as planned (%s); the plan is shown\n",
					vrc == -ENOENT ? "no record" : strerror(-vrc));
		}
		for (size_t d = 0; d < s->n_destinations; d++) {
			const struct plan_destination *pd = &s->destinations[d];
			uint32_t weight = vrc ? pd->weight : view.destinations[d].weight;
			plan_percent_str(vrc ? pd->percent : view.destinations[d].percent, pct, sizeof(pct));
			const struct plan_tcp_policy *tp = &pd->tcp;
			bool has_tcp = s->protocol == IPPROTO_TCP && (tp->connect_timeout_ms || tp->keepalive);
			if (r->json) {
				fprintf(r->out, "%s{\"subset\":", d ? "," : "");
				json_string(r->out, pd->subset);
				fprintf(r->out, ",\"weight\":%u,\"percent\":%s", weight, pct);
				if (has_tcp)
					plan_print_tcp_json(tp, r->out);
				fputs(",\"endpoints\":[", r->out);
			} else {
				fprintf(r->out, "  subset %-8s weight %-4u share %5s%%%s\n",
					pd->subset[0] ? pd->subset : "(all)", weight, pct,
					pd->n_endpoints ? "" : "  no ready endpoints: its share is refused");
				if (has_tcp) {
					fputs("    tcp policy: ", r->out);
					plan_print_tcp_text(tp, r->out);
					fputc('\n', r->out);
				}
			}
			for (size_t e = 0; e < pd->n_endpoints; e++) {
				struct sluice_endpoint_stats st;
				if (dataplane_endpoint_stats(dm->dp, s, &pd->endpoints[e], &st))
					memset(&st, 0, sizeof(st));
				plan_endpoint_str(&pd->endpoints[e].addr, pd->endpoints[e].port, buf, sizeof(buf));
				status_endpoint(r, buf, &st, s->protocol == IPPROTO_TCP, e == 0);
			}
			if (r->json)
				fputs("]}", r->out);
		}
		if (r->json)
			fputs("]}", r->out);
		shown++;
	}
	if (r->json)
		fputs("]}\n", r->out);
	if (arg && !shown) {
		if (r->json) {
			/* the JSON above is complete; the error goes to stderr in this one case */
			fprintf(r->err, "Error: no routed service %s.%s\n", svc, svc_ns);
			r->code = EXIT_INVALID;
		} else {
			reply_error(r, EXIT_INVALID, "no routed service %s.%s; 'sluice status' lists them", svc, svc_ns);
		}
	}
}

static void handle(struct daemon *dm, struct msg *req, struct reply *r)
{
	const char *cmd = msg_get(req, "cmd", NULL);
	char q[160];
	r->json = msg_get(req, "json", NULL) != NULL;
	if (cmd && !strcmp(cmd, "apply"))
		handle_apply(dm, req, r);
	else if (cmd && !strcmp(cmd, "weight"))
		handle_weight(dm, req, r);
	else if (cmd && !strcmp(cmd, "status"))
		handle_status(dm, req, r);
	else
		reply_error(r, EXIT_USAGE, "sluiced does not know the command %s; is sluice newer than sluiced?",
			    quote(cmd ? cmd : "", q, sizeof(q)));
}

/* ---- serving: many clients, none able to hold another ---- */

static void client_drop(struct daemon *dm, size_t i)
{
	struct client *c = &dm->clients[i];
	close(c->fd);
	msg_parser_free(&c->parser);
	msg_free(&c->req);
	free(c->out);
	dm->clients[i] = dm->clients[--dm->n_clients];
	dm->clients[i].parser.m = &dm->clients[i].req;
}

/* Sends what the peer takes now. 1 when the whole reply is out, 0 for later, -errno when the peer is gone. */
static int client_write(struct client *c)
{
	while (c->out_off < c->out_len) {
		ssize_t w = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return errno == EAGAIN ? 0 : -errno;
		c->out_off += (size_t)w;
	}
	return 1;
}

/* A whole request: handled now, its reply encoded and sent as far as the peer takes it. */
static int client_serve(struct daemon *dm, struct client *c)
{
	struct reply r = { 0 };
	struct msg resp = { 0 };
	r.out = open_memstream(&r.out_buf, &r.out_len);
	r.err = open_memstream(&r.err_buf, &r.err_len);
	handle(dm, &c->req, &r);
	msg_free(&c->req);
	fclose(r.out);
	fclose(r.err);
	char code[16];
	snprintf(code, sizeof(code), "%d", r.code);
	msg_add_str(&resp, "code", code);
	msg_add(&resp, "out", r.out_buf, r.out_len);
	msg_add(&resp, "err", r.err_buf, r.err_len);
	free(r.out_buf);
	free(r.err_buf);
	int rc = msg_encode(&resp, &c->out, &c->out_len);
	msg_free(&resp);
	c->deadline = proto_now_ms() + REPLY_DEADLINE_MS;
	if (!rc)
		rc = client_write(c);
	dataplane_settle(dm->dp);   /* after the answer: a weight change's reply does not wait for it */
	return rc;
}

/* Reads what has arrived. 1 when the client is done with, 0 for later, -errno to drop it. */
static int client_read(struct daemon *dm, struct client *c)
{
	char buf[1 << 16];
	for (;;) {
		ssize_t n = recv(c->fd, buf, sizeof(buf), MSG_DONTWAIT);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return errno == EAGAIN ? 0 : -errno;
		if (n == 0)
			return -EPIPE;   /* gone before its request was whole */
		int rc = msg_parse(&c->parser, buf, (size_t)n, NULL);
		if (rc < 0)
			return rc;
		if (rc == 1)
			return client_serve(dm, c);
	}
}

static void client_accept(struct daemon *dm)
{
	for (;;) {
		int fd = accept4(dm->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
		if (fd < 0)
			return;
		uint64_t now = proto_now_ms();
		if (dm->n_clients == MAX_CLIENTS) {
			size_t oldest = 0;
			for (size_t i = 1; i < dm->n_clients; i++)
				if (dm->clients[i].accepted < dm->clients[oldest].accepted)
					oldest = i;
			log_info("%d clients connected: dropped the one connected longest (%llu ms ago) for a new one",
				MAX_CLIENTS, (unsigned long long)(now - dm->clients[oldest].accepted));
			client_drop(dm, oldest);
		}
		struct client *c = &dm->clients[dm->n_clients++];
		memset(c, 0, sizeof(*c));
		c->fd = fd;
		c->accepted = now;
		c->deadline = now + REQUEST_DEADLINE_MS;
		msg_parser_init(&c->parser, &c->req);
	}
}

/* Once a second: pins removed under a running sluiced are made again; an unsaved plan is saved again. */
static void housekeeping(struct daemon *dm)
{
	char msg[1024], when[32];
	time_t t = time(NULL);
	strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", localtime(&t));
	int rc = dataplane_check_pins(dm->dp, msg, sizeof(msg));
	if (rc) {
		char *note = NULL;
		if (rc > 0 && asprintf(&note, "pins under %s were removed while sluiced ran; pinned again at %s: %s",
				       dm->bpffs, when, msg) < 0)
			note = NULL;
		if (rc < 0 && asprintf(&note, "%s (since %s)", msg, when) < 0)
			note = NULL;
		if (note && (!dm->pins_note || !dm->pins_broken || rc > 0))
			log_msg(rc < 0 ? LOG_ERROR : LOG_INFO, "%s", note);
		if (note && (rc > 0 || !dm->pins_broken)) {
			free(dm->pins_note);
			dm->pins_note = note;
		} else {
			free(note);
		}
		dm->pins_broken = rc < 0;
	} else if (dm->pins_broken) {
		dm->pins_broken = false;
	}
	if (dm->unsaved && !save_plan(dm, msg, sizeof(msg))) {
		log_info("saved generation %llu, live since an earlier save failed (%s)", (unsigned long long)dm->generation,
			dm->unsaved);
		free(dm->unsaved);
		dm->unsaved = NULL;
	}
}

static void serve(struct daemon *dm)
{
	struct pollfd p[MAX_CLIENTS + 1];
	uint64_t next_housekeeping = 0;
	while (!stopping) {
		uint64_t now = proto_now_ms();
		if (now >= next_housekeeping) {
			housekeeping(dm);
			next_housekeeping = now + HOUSEKEEPING_MS;
		}
		uint64_t wake = next_housekeeping;
		p[0] = (struct pollfd){ .fd = dm->listen_fd, .events = POLLIN };
		for (size_t i = 0; i < dm->n_clients; i++) {
			struct client *c = &dm->clients[i];
			p[i + 1] = (struct pollfd){ .fd = c->fd, .events = c->out ? POLLOUT : POLLIN };
			wake = c->deadline < wake ? c->deadline : wake;
		}
		size_t n = dm->n_clients;
		if (poll(p, n + 1, wake > now ? (int)(wake - now) : 0) < 0 && errno != EINTR)
			break;
		now = proto_now_ms();
		/* clients first, from the last: a dropped slot takes the last one's place */
		for (size_t i = n; i-- > 0;) {
			struct client *c = &dm->clients[i];
			int rc = 0;
			if (p[i + 1].revents)
				rc = c->out ? client_write(c) : client_read(dm, c);
			if (!rc && now >= c->deadline) {
				log_debug("dropped a client: %s within %d s", c->out ? "its reply not taken" : "no whole request",
					  (c->out ? REPLY_DEADLINE_MS : REQUEST_DEADLINE_MS) / 1000);
				rc = -ETIMEDOUT;
			}
			if (rc)
				client_drop(dm, i);
		}
		if (p[0].revents & POLLIN)
			client_accept(dm);
	}
	while (dm->n_clients)
		client_drop(dm, 0);
}

static void usage(FILE *out)
{
	fputs("Usage: sluiced [--cgroup PATH] [--bpffs DIR] [--socket PATH] [--state-dir DIR]\n"
	      "               [--tc IFACE[,IFACE...]] [--tc-flows N] [--gateway-address IP] [-v]\n"
	      "       sluiced --uninstall [--bpffs DIR] [--socket PATH]\n"
	      "Defaults: --cgroup the cgroup v2 root from /proc/mounts, --bpffs /sys/fs/bpf/sluice,\n"
	      "--socket /run/sluice/sluice.sock, --state-dir /var/lib/sluice, no --tc (socket mode only),\n"
	      "--tc-flows 65536 (the TC conntrack's size, kept by a restart over existing pins).\n",
	      out);
}

/* Unpins everything, refused while a sluiced serves the pins; the saved plan stays where it is. */
static int uninstall(struct daemon *dm, const struct dataplane_opts *o)
{
	int rc = dataplane_uninstall(o);
	if (rc)
		return 1;
	/* a socket nobody answers on is a dead sluiced's; one that answers is another data plane's */
	if (!socket_answers(dm->socket_path))
		unlink(dm->socket_path);
	log_info("uninstalled: links detached, %s removed; a saved plan stays in its state directory (remove it to "
		"start empty)", dm->bpffs);
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option options[] = {
		{ "cgroup", required_argument, NULL, 'c' },    { "bpffs", required_argument, NULL, 'b' },
		{ "socket", required_argument, NULL, 's' },    { "state-dir", required_argument, NULL, 'd' },
		{ "uninstall", no_argument, NULL, 'u' },        { "verbose", no_argument, NULL, 'v' },
		{ "tc", required_argument, NULL, 't' },        { "tc-flows", required_argument, NULL, 'f' },
		{ "gateway-address", required_argument, NULL, 'g' },
		{ "help", no_argument, NULL, 'h' },             { NULL, 0, NULL, 0 },
	};
	struct daemon dm = {
		.bpffs = "/sys/fs/bpf/sluice",
		.socket_path = "/run/sluice/sluice.sock",
		.state_dir = "/var/lib/sluice",
		.listen_fd = -1,
	};
	int c, rc = 1;
	log_init("sluiced", LOG_INFO);
	while ((c = getopt_long(argc, argv, "vh", options, NULL)) != -1) {
		switch (c) {
		case 'c': dm.cgroup = optarg; dm.cgroup_given = true; break;
		case 'b': dm.bpffs = optarg; break;
		case 's': dm.socket_path = optarg; break;
		case 'd': dm.state_dir = optarg; break;
		case 'u': dm.uninstall = true; break;
		case 'v': dm.verbose = true; break;
		case 'g': dm.gateway_address = optarg; break;
		case 't': dm.tc = optarg; break;
		case 'f': {
			char *end;
			dm.tc_flows = strtoul(optarg, &end, 10);
			if (*end || !dm.tc_flows || dm.tc_flows > UINT32_MAX) {
				log_error("--tc-flows \"%s\" is not a number of flows above 0", optarg);
				return EXIT_USAGE;
			}
			break;
		}
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return EXIT_USAGE;
		}
	}
	if (optind < argc) {
		log_error("unexpected argument \"%s\"", argv[optind]);
		usage(stderr);
		return EXIT_USAGE;
	}
	log_init("sluiced", dm.verbose ? LOG_DEBUG : LOG_INFO);
	struct dataplane_opts o = { .bpffs_dir = dm.bpffs, .verbose = dm.verbose };
	if (dm.uninstall)
		return uninstall(&dm, &o);
	if (!dm.cgroup) {
		dm.cgroup = cgroup2_root();
		if (!dm.cgroup) {
			log_error("no cgroup2 mount in /proc/mounts; mount cgroup v2 or pass --cgroup");
			return 1;
		}
	}
	o.cgroup_path = dm.cgroup;
	/* TC mode on the interfaces listed (none: TC mode off, and removed if a previous run had it) */
	char *tc_ifaces[DATAPLANE_MAX_TC_IFACES + 1], *tc_copy = dm.tc ? strdup(dm.tc) : NULL, *save = NULL;
	for (char *t = tc_copy ? strtok_r(tc_copy, ",", &save) : NULL; t && o.n_tc_ifaces <= DATAPLANE_MAX_TC_IFACES;
	     t = strtok_r(NULL, ",", &save))
		tc_ifaces[o.n_tc_ifaces++] = t;
	o.tc_ifaces = (const char *const *)tc_ifaces;
	o.tc_flows = (uint32_t)dm.tc_flows;
	/* the whole node is the default, as a DaemonSet serves every pod; tests pass their own cgroup */
	o.allow_cgroup_root = !dm.cgroup_given;
	signal(SIGPIPE, SIG_IGN);
	struct sigaction sa = { .sa_handler = on_signal };
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);

	if (mkdir_p(dm.state_dir, 0700)) {
		log_error("cannot create state directory %s: %s", dm.state_dir, strerror(errno));
		return 1;
	}
	if (socket_answers(dm.socket_path)) {
		log_error("another sluiced answers on %s; hint: stop it, or give this one its own --socket",
			dm.socket_path);
		goto cleanup;
	}
	if (dataplane_open(&o, &dm.dp))
		goto cleanup;
	dm.generation = dataplane_generation(dm.dp);
	/* an upgrade across a map layout change swaps its programs in once the plan is in the new maps */
	if (restore_state(&dm) || dataplane_finish_open(dm.dp))
		goto cleanup;
	if (listen_socket(&dm))
		goto cleanup;
	if (drop_capabilities()) {
		log_error("cannot drop capabilities: %s", strerror(errno));
		goto cleanup;
	}
	log_info("serving cgroup %s%s%s, pins in %s, socket %s, generation %llu", dm.cgroup, dm.tc ? " and TC on " : "",
		dm.tc ? dm.tc : "", dm.bpffs, dm.socket_path, (unsigned long long)dm.generation);
	serve(&dm);
	log_info("stopping; the data plane keeps serving from its pins");
	rc = 0;
cleanup:
	if (dm.listen_fd >= 0) {
		close(dm.listen_fd);
		unlink(dm.socket_path);
	}
	dataplane_close(dm.dp);
	plan_free(&dm.plan);
	free(dm.unsaved);
	free(dm.pins_note);
	free(tc_copy);
	return rc;
}
