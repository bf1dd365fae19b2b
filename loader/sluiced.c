// SPDX-License-Identifier: MIT
/* sluiced: the only writer of the data plane's maps. Loads or adopts the pinned
 * BPF objects, restores the saved plan, drops capabilities, then serves the CLI's
 * requests one at a time over a unix socket, each change one generation. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
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

#include "compile.h"
#include "dataplane.h"
#include "plan_load.h"
#include "plan_print.h"
#include "proto.h"

#define EXIT_INVALID 1
#define EXIT_USAGE 2

struct daemon {
	const char *cgroup, *bpffs, *socket_path, *state_dir;
	const char *tc;              /* --tc IFACE[,IFACE...] */
	unsigned long tc_flows;      /* --tc-flows N; 0: the default */
	const char *gateway_address; /* --gateway-address: where Gateways without spec.addresses listen */
	bool cgroup_given, verbose, uninstall;
	struct dataplane *dp;
	struct plan plan;            /* what the maps hold now */
	uint64_t generation;
	int listen_fd;
};

static volatile sig_atomic_t stopping;

static void on_signal(int sig)
{
	(void)sig;
	stopping = 1;
}

static void log_msg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void log_msg(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("sluiced: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
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

static char *state_file(const struct daemon *dm)
{
	char *p;
	if (asprintf(&p, "%s/plan.json", dm->state_dir) < 0)
		abort();
	return p;
}

static char *journal_file(const struct daemon *dm)
{
	char *p;
	if (asprintf(&p, "%s/weights.log", dm->state_dir) < 0)
		abort();
	return p;
}

static void replay_journal(struct daemon *dm, struct plan *plan);

/* Written to a temporary file and renamed, so a crash leaves the old state or the new. */
static int save_state(struct daemon *dm)
{
	char *path = state_file(dm), *tmp;
	if (asprintf(&tmp, "%s.tmp", path) < 0)
		abort();
	int rc = 0;
	FILE *f = fopen(tmp, "w");
	if (!f) {
		rc = -errno;
	} else {
		plan_print_json_generation(&dm->plan, dm->generation, f);
		if (fflush(f) || fsync(fileno(f)))
			rc = -errno;
		if (fclose(f) && !rc)
			rc = -errno;
		if (!rc && rename(tmp, path))
			rc = -errno;
	}
	if (!rc) {
		char *journal = journal_file(dm);
		unlink(journal);   /* the full plan now holds every weight change */
		free(journal);
	}
	if (rc)
		log_msg("error: cannot save state to %s: %s", path, strerror(-rc));
	free(path);
	free(tmp);
	return rc;
}

static int read_file(const char *path, unsigned char **buf, size_t *len)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return -errno;
	size_t cap = 1 << 16, n = 0;
	unsigned char *b = malloc(cap);
	size_t r;
	while (b && (r = fread(b + n, 1, cap - n, f)) > 0) {
		n += r;
		if (n == cap)
			b = realloc(b, cap *= 2);
	}
	fclose(f);
	if (!b)
		return -ENOMEM;
	*buf = b;
	*len = n;
	return 0;
}

/* After a reboot bpffs is empty but the state directory is not: serve the last plan again. */
static int restore_state(struct daemon *dm)
{
	char *path = state_file(dm);
	unsigned char *buf = NULL;
	size_t len = 0;
	int rc = read_file(path, &buf, &len);
	if (rc == -ENOENT) {
		free(path);
		return 0;
	}
	if (rc) {
		log_msg("error: cannot read %s: %s", path, strerror(-rc));
		free(path);
		return rc;
	}
	struct diags d = { 0 };
	struct plan plan;
	uint64_t saved_gen = 0;
	rc = plan_load_json(buf, len, path, &plan, &saved_gen, &d);
	free(buf);
	if (rc) {
		diags_print(&d, stderr);
		log_msg("error: the saved plan in %s is unreadable; move it away to start empty", path);
		diags_free(&d);
		free(path);
		return -EINVAL;
	}
	diags_free(&d);
	replay_journal(dm, &plan);
	struct dataplane_stats st;
	rc = dataplane_apply(dm->dp, &plan, &dm->generation, &st);
	if (rc) {
		plan_free(&plan);
		free(path);
		return rc;
	}
	plan_free(&dm->plan);
	dm->plan = plan;
	save_state(dm);
	log_msg("restored %zu services from %s (saved at generation %llu), now generation %llu", plan.n_services, path,
		(unsigned long long)saved_gen, (unsigned long long)dm->generation);
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

static int listen_socket(struct daemon *dm)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	if (strlen(dm->socket_path) >= sizeof(sa.sun_path)) {
		log_msg("error: socket path %s is too long", dm->socket_path);
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
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	unlink(dm->socket_path);
	mode_t old = umask(0177);    /* the socket is born 0600: only root may steer the data plane */
	int rc = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
	umask(old);
	if (rc || chmod(dm->socket_path, 0600) || listen(fd, 16)) {
		rc = -errno;
		log_msg("error: cannot listen on %s: %s", dm->socket_path, strerror(-rc));
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
	if (r->json) {
		fputs("{\"error\":", r->out);
		json_string(r->out, msg);
		fputs("}\n", r->out);
	} else {
		fprintf(r->err, "Error: %s\n", msg);
	}
	free(msg);
	r->code = code;
}

static const char *default_namespace(const struct msg *req)
{
	const char *ns = msg_get(req, "namespace", NULL);
	return ns ? ns : "default";
}

static void print_changes(struct reply *r, const struct dataplane_stats *st)
{
	if (r->json)
		return;
	fprintf(r->out, "%u service records written, %u removed, %u unchanged; switch %.1f us, apply %.1f ms\n",
		st->services_written, st->services_removed, st->services_unchanged, st->flip_ns / 1e3,
		st->total_ns / 1e6);
}

static void do_apply(struct daemon *dm, const struct msg *req, struct reply *r)
{
	struct sources src = { 0 };
	for (size_t i = 0; i + 1 < req->n; i++) {
		if (strcmp(req->f[i].tag, "file") || strcmp(req->f[i + 1].tag, "data"))
			continue;
		struct compile_input in = { .name = strdup(req->f[i].data), .len = req->f[i + 1].len };
		unsigned char *copy = malloc(in.len + 1);
		memcpy(copy, req->f[i + 1].data, in.len);
		in.buf = copy;
		if (src.n == src.cap) {
			src.cap = src.cap ? src.cap * 2 : 8;
			src.v = realloc(src.v, src.cap * sizeof(*src.v));
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
	if (compile_plan(&o, src.v, src.n, &plan, &d, &cst)) {
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
	int rc = dataplane_apply(dm->dp, &plan, &gen, &st);
	if (rc) {
		reply_error(r, EXIT_INVALID, "the data plane refused the plan (%s): nothing applied; see sluiced's log",
			    strerror(-rc));
		plan_free(&plan);
		goto out;
	}
	plan_free(&dm->plan);
	dm->plan = plan;
	dm->generation = gen;
	save_state(dm);
	if (r->json)
		fprintf(r->out, "{\"generation\":%llu,\"services\":%zu,\"written\":%u,\"removed\":%u}\n",
			(unsigned long long)gen, plan.n_services, st.services_written, st.services_removed);
	else {
		fprintf(r->out, "generation %llu: %zu service%s routed\n", (unsigned long long)gen, plan.n_services,
			plan.n_services == 1 ? "" : "s");
		print_changes(r, &st);
	}
	log_msg("apply: generation %llu, %zu services, %u written, %u removed, switch %llu ns",
		(unsigned long long)gen, plan.n_services, st.services_written, st.services_removed,
		(unsigned long long)st.flip_ns);
out:
	diags_free(&d);
	sources_free(&src);
}

/* SERVICE or SERVICE.NAMESPACE */
static bool service_matches(const struct plan_service *s, const char *want, const char *ns)
{
	const char *dot = strchr(want, '.');
	if (dot)
		return strlen(s->name) == (size_t)(dot - want) && !strncmp(s->name, want, (size_t)(dot - want)) &&
		       !strcmp(s->namespace, dot + 1);
	return !strcmp(s->name, want) && !strcmp(s->namespace, ns);
}

/* A weight change: one service (all its ports), every subset of its routes named. */
struct weights {
	char svc[256], ns[256];
	size_t n;
	struct {
		char subset[64];
		uint32_t weight;
	} w[PLAN_MAX_DESTINATIONS];
};

/* Parses SUBSET=WEIGHT words; NULL or an error message for the user. */
static const char *parse_weights(struct weights *wt, char **words, size_t n_words, const char *svc, const char *ns,
				 char *msg, size_t len)
{
	const char *dot = strchr(svc, '.');
	memset(wt, 0, sizeof(*wt));
	snprintf(wt->svc, sizeof(wt->svc), "%.*s", dot ? (int)(dot - svc) : (int)strlen(svc), svc);
	snprintf(wt->ns, sizeof(wt->ns), "%s", dot ? dot + 1 : ns);
	for (size_t i = 0; i < n_words; i++) {
		const char *a = words[i], *eq = strchr(a, '=');
		char *end;
		long long w = eq ? strtoll(eq + 1, &end, 10) : -1;
		if (!eq || eq == a || eq - a >= 64 || !eq[1] || *end || w < 0 || w > INT32_MAX) {
			snprintf(msg, len, "\"%s\" is not SUBSET=WEIGHT with a weight from 0 to %d; e.g. v1=80 v2=20", a,
				 INT32_MAX);
			return msg;
		}
		if (wt->n == PLAN_MAX_DESTINATIONS) {
			snprintf(msg, len, "more than %d subsets given", PLAN_MAX_DESTINATIONS);
			return msg;
		}
		for (size_t j = 0; j < wt->n; j++)
			if (strlen(wt->w[j].subset) == (size_t)(eq - a) && !strncmp(wt->w[j].subset, a, (size_t)(eq - a))) {
				snprintf(msg, len, "subset \"%.*s\" is given twice", (int)(eq - a), a);
				return msg;
			}
		snprintf(wt->w[wt->n].subset, sizeof(wt->w[wt->n].subset), "%.*s", (int)(eq - a), a);
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
					pd->weight = s->n_destinations == 1 ? 100 : wt->w[j].weight;
			pd->percent = s->n_destinations == 1 ? 100 : 100.0 * pd->weight / (double)sum;
		}
	}
	return NULL;
}

/* A weight change is one appended line, so its cost does not grow with the plan; apply compacts. */
static int journal_weights(struct daemon *dm, const struct weights *wt)
{
	char *path = journal_file(dm);
	int rc = 0, fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	if (fd < 0) {
		rc = -errno;
	} else {
		char line[2048];
		size_t len = (size_t)snprintf(line, sizeof(line), "%s %s", wt->svc, wt->ns);
		for (size_t j = 0; j < wt->n && len < sizeof(line); j++)
			len += (size_t)snprintf(line + len, sizeof(line) - len, " %s=%u", wt->w[j].subset, wt->w[j].weight);
		if (len < sizeof(line) - 1)
			line[len++] = '\n';
		if (write(fd, line, len) != (ssize_t)len || fsync(fd))
			rc = -errno ? -errno : -EIO;
		close(fd);
	}
	if (rc)
		log_msg("error: cannot append to %s: %s", path, strerror(-rc));
	free(path);
	return rc;
}

/* The plan as saved, then the weight changes made since. */
static void replay_journal(struct daemon *dm, struct plan *plan)
{
	char *path = journal_file(dm), line[2048], msg[512];
	FILE *f = fopen(path, "r");
	size_t n = 0;
	while (f && fgets(line, sizeof(line), f)) {
		char *words[PLAN_MAX_DESTINATIONS + 2], *save = NULL;
		size_t nw = 0;
		for (char *t = strtok_r(line, " \n", &save); t && nw < PLAN_MAX_DESTINATIONS + 2; t = strtok_r(NULL, " \n", &save))
			words[nw++] = t;
		struct weights wt;
		const char *err = nw < 3 ? "short line" : parse_weights(&wt, words + 2, nw - 2, words[0], words[1], msg, sizeof(msg));
		if (!err) {
			snprintf(wt.ns, sizeof(wt.ns), "%s", words[1]);
			err = set_weights(plan, &wt, msg, sizeof(msg));
		}
		if (err)
			log_msg("%s: skipping a weight change that no longer applies: %s", path, err);
		n++;
	}
	if (f)
		fclose(f);
	if (n)
		log_msg("replayed %zu weight changes from %s", n, path);
	free(path);
}

static void do_weight(struct daemon *dm, const struct msg *req, struct reply *r)
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
	if (parse_weights(&wt, words, n_words, svc, default_namespace(req), msg, sizeof(msg))) {
		reply_error(r, EXIT_USAGE, "%s", msg);
		return;
	}
	/* the service's entries (one per port), and their old weights to print and to restore on failure */
	size_t n_svcs = 0, n_old = 0;
	for (size_t i = 0; i < dm->plan.n_services; i++)
		n_svcs += service_is(&dm->plan.services[i], &wt);
	const struct plan_service **svcs = calloc(n_svcs + 1, sizeof(*svcs));
	struct plan_destination *old = calloc(n_svcs * PLAN_MAX_DESTINATIONS + 1, sizeof(*old));
	if (!svcs || !old) {
		reply_error(r, EXIT_INVALID, "out of memory");
		free(svcs);
		free(old);
		return;
	}
	for (size_t i = 0, k = 0; i < dm->plan.n_services; i++)
		if (service_is(&dm->plan.services[i], &wt)) {
			svcs[k++] = &dm->plan.services[i];
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
	/* deferred: the reply goes out at the switch; serve_one settles the old side after it */
	int rc = dataplane_apply_services(dm->dp, svcs, n_svcs, true, &gen, &st);
	free(svcs);
	size_t k = 0;
	bool first = true;
	if (r->json && !rc)
		fputs("{\"changes\":[", r->out);
	for (size_t i = 0; i < dm->plan.n_services; i++) {
		struct plan_service *s = &dm->plan.services[i];
		if (!service_is(s, &wt))
			continue;
		for (size_t d = 0; d < s->n_destinations; d++, k++) {
			struct plan_destination *pd = &s->destinations[d];
			char a[32], b[32];
			if (rc) {
				*pd = old[k];
				continue;
			}
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
	free(old);
	if (rc) {
		reply_error(r, EXIT_INVALID, "the data plane refused the change (%s): weights unchanged", strerror(-rc));
		return;
	}
	dm->generation = gen;
	journal_weights(dm, &wt);
	if (r->json)
		fprintf(r->out, "],\"generation\":%llu,\"switch_ns\":%llu}\n", (unsigned long long)gen,
			(unsigned long long)st.flip_ns);
	else
		fprintf(r->out, "generation %llu\n", (unsigned long long)gen);
	log_msg("weight %s.%s: generation %llu, switch %llu ns, apply %llu ns", wt.svc, wt.ns, (unsigned long long)gen,
		(unsigned long long)st.flip_ns, (unsigned long long)st.total_ns);
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

static void do_status(struct daemon *dm, const struct msg *req, struct reply *r)
{
	const char *svc = NULL, *ns = default_namespace(req);
	for (size_t i = 0; i < req->n; i++)
		if (!strcmp(req->f[i].tag, "arg")) {
			if (svc) {
				reply_error(r, EXIT_USAGE, "usage: sluice status [SERVICE[.NAMESPACE]]");
				return;
			}
			svc = req->f[i].data;
		}
	char buf[80], pct[32];
	size_t shown = 0;
	if (r->json)
		fprintf(r->out, "{\"generation\":%llu", (unsigned long long)dm->generation);
	else
		fprintf(r->out, "generation %llu\n", (unsigned long long)dm->generation);
	status_tc(dm, r);
	if (r->json)
		fputs(",\"services\":[", r->out);
	for (size_t i = 0; i < dm->plan.n_services; i++) {
		const struct plan_service *s = &dm->plan.services[i];
		if (svc && !service_matches(s, svc, ns))
			continue;
		if (r->json) {
			fprintf(r->out, "%s{\"name\":", shown ? "," : "");
			json_string(r->out, s->name);
			fputs(",\"namespace\":", r->out);
			json_string(r->out, s->namespace);
			fputs(",\"vips\":[", r->out);
			for (size_t v = 0; v < s->n_vips; v++) {
				plan_addr_str(&s->vips[v], buf, sizeof(buf));
				fprintf(r->out, "%s\"%s\"", v ? "," : "", buf);
			}
			fprintf(r->out, "],\"port\":%u,\"protocol\":\"%s\",\"loadBalancer\":\"%s\",\"destinations\":[",
				s->port, plan_protocol_name(s->protocol), plan_lb_name(s->lb));
		} else {
			fprintf(r->out, "service %s.%s  vip", s->name, s->namespace);
			for (size_t v = 0; v < s->n_vips; v++) {
				plan_addr_str(&s->vips[v], buf, sizeof(buf));
				fprintf(r->out, "%s%s", v ? "," : " ", buf);
			}
			fprintf(r->out, "  port %u/%s  lb %s\n", s->port, plan_protocol_name(s->protocol),
				plan_lb_name(s->lb));
		}
		for (size_t d = 0; d < s->n_destinations; d++) {
			const struct plan_destination *pd = &s->destinations[d];
			plan_percent_str(pd->percent, pct, sizeof(pct));
			const struct plan_tcp_policy *tp = &pd->tcp;
			bool has_tcp = s->protocol == IPPROTO_TCP && (tp->connect_timeout_ms || tp->keepalive);
			if (r->json) {
				fprintf(r->out, "%s{\"subset\":", d ? "," : "");
				json_string(r->out, pd->subset);
				fprintf(r->out, ",\"weight\":%u,\"percent\":%s", pd->weight, pct);
				if (has_tcp)
					plan_print_tcp_json(tp, r->out);
				fputs(",\"endpoints\":[", r->out);
			} else {
				fprintf(r->out, "  subset %-8s weight %-4u share %5s%%%s\n",
					pd->subset[0] ? pd->subset : "(all)", pd->weight, pct,
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
	if (svc && !shown) {
		if (r->json) {
			/* the JSON above is complete; the error goes to stderr in this one case */
			fprintf(r->err, "Error: no routed service %s\n", svc);
			r->code = EXIT_INVALID;
		} else {
			reply_error(r, EXIT_INVALID, "no routed service %s; 'sluice status' lists them", svc);
		}
	}
}

static void serve_one(struct daemon *dm, int fd)
{
	struct msg req = { 0 }, resp = { 0 };
	struct reply r = { 0 };
	struct timeval tv = { .tv_sec = 30 };
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (msg_recv(fd, &req)) {
		msg_free(&req);
		return;
	}
	r.out = open_memstream(&r.out_buf, &r.out_len);
	r.err = open_memstream(&r.err_buf, &r.err_len);
	r.json = msg_get(&req, "json", NULL) != NULL;
	const char *cmd = msg_get(&req, "cmd", NULL);
	if (cmd && !strcmp(cmd, "apply"))
		do_apply(dm, &req, &r);
	else if (cmd && !strcmp(cmd, "weight"))
		do_weight(dm, &req, &r);
	else if (cmd && !strcmp(cmd, "status"))
		do_status(dm, &req, &r);
	else
		reply_error(&r, EXIT_USAGE, "sluiced does not know the command \"%s\"; is sluice newer than sluiced?",
			    cmd ? cmd : "");
	fclose(r.out);
	fclose(r.err);
	char code[16];
	snprintf(code, sizeof(code), "%d", r.code);
	msg_add_str(&resp, "code", code);
	msg_add(&resp, "out", r.out_buf, r.out_len);
	msg_add(&resp, "err", r.err_buf, r.err_len);
	msg_send(fd, &resp);
	dataplane_settle(dm->dp);   /* after the answer: a weight change's reply does not wait for it */
	free(r.out_buf);
	free(r.err_buf);
	msg_free(&req);
	msg_free(&resp);
}

static void usage(FILE *out)
{
	fputs("Usage: sluiced [--cgroup PATH] [--bpffs DIR] [--socket PATH] [--state-dir DIR]\n"
	      "               [--tc IFACE[,IFACE...]] [--tc-flows N] [--gateway-address IP] [-v]\n"
	      "       sluiced --uninstall [--bpffs DIR] [--socket PATH] [--state-dir DIR]\n"
	      "Defaults: --cgroup the cgroup v2 root from /proc/mounts, --bpffs /sys/fs/bpf/sluice,\n"
	      "--socket /run/sluice/sluice.sock, --state-dir /var/lib/sluice, no --tc (socket mode only),\n"
	      "--tc-flows 65536 (the TC conntrack's size, kept by a restart over existing pins).\n",
	      out);
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
				log_msg("error: --tc-flows \"%s\" is not a number of flows above 0", optarg);
				return EXIT_USAGE;
			}
			break;
		}
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return EXIT_USAGE;
		}
	}
	if (optind < argc) {
		log_msg("error: unexpected argument \"%s\"", argv[optind]);
		usage(stderr);
		return EXIT_USAGE;
	}
	struct dataplane_opts o = { .bpffs_dir = dm.bpffs, .verbose = dm.verbose };
	if (dm.uninstall) {
		rc = dataplane_uninstall(&o);
		unlink(dm.socket_path);
		if (!rc)
			log_msg("uninstalled: links detached, %s removed; saved rules kept in %s", dm.bpffs, dm.state_dir);
		return rc ? 1 : 0;
	}
	if (!dm.cgroup) {
		dm.cgroup = cgroup2_root();
		if (!dm.cgroup) {
			log_msg("error: no cgroup2 mount in /proc/mounts; mount cgroup v2 or pass --cgroup");
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
		log_msg("error: cannot create state directory %s: %s", dm.state_dir, strerror(errno));
		return 1;
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
		log_msg("error: cannot drop capabilities: %s", strerror(errno));
		goto cleanup;
	}
	log_msg("serving cgroup %s%s%s, pins in %s, socket %s, generation %llu", dm.cgroup, dm.tc ? " and TC on " : "",
		dm.tc ? dm.tc : "", dm.bpffs, dm.socket_path, (unsigned long long)dm.generation);
	while (!stopping) {
		struct pollfd p = { .fd = dm.listen_fd, .events = POLLIN };
		if (poll(&p, 1, 1000) <= 0)
			continue;
		int fd = accept4(dm.listen_fd, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0)
			continue;
		serve_one(&dm, fd);
		close(fd);
	}
	log_msg("stopping; the data plane keeps serving from its pins");
	rc = 0;
cleanup:
	if (dm.listen_fd >= 0) {
		close(dm.listen_fd);
		unlink(dm.socket_path);
	}
	dataplane_close(dm.dp);
	plan_free(&dm.plan);
	free(tc_copy);
	return rc;
}
