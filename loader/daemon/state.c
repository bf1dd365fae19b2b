// SPDX-License-Identifier: MIT
/*
 * The state directory: the plan (plan.json) and the changes made since it was saved (weights.log,
 * one JSON line each: a weight change, or the follower's entries built again). A change is
 * acknowledged only once one of them holds it; a restart applies both to the maps, so that what
 * sluiced believes and what the maps hold agree.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/fs.h"
#include "common/json.h"
#include "common/log.h"
#include "common/names.h"
#include "compile/ytree.h"
#include "daemon/daemon.h"
#include "plan/print.h"
#include "plan/read.h"

static char *state_path(const struct daemon *dm, const char *name)
{
	char *p;
	if (asprintf(&p, "%s/%s", dm->state_dir, name) < 0)
		abort();
	return p;
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
int save_plan(struct daemon *dm, char *why, size_t len)
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

/*
 * One weight change, durable: a JSON line appended and fsynced, so that its cost does not grow with
 * the plan. The line carries the generation it made: a restart replays only lines newer than the
 * saved plan. A line cut short by a full disk is truncated away.
 */
/* One line at the journal's end, fdatasynced when durable (cut away again if it could not all be
 * written). Returns the journal's size, or -errno with why. */
static long long journal_write(struct daemon *dm, const char *line, size_t line_len, bool durable, char *why,
			       size_t len)
{
	char *path = state_path(dm, "weights.log");
	long long rc = 0;
	int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	struct stat st;
	if (fd < 0 || fstat(fd, &st)) {
		rc = -errno;
	} else {
		ssize_t w = write(fd, line, line_len);
		rc = w < 0 ? -errno : w != (ssize_t)line_len ? -ENOSPC : durable && fdatasync(fd) ? -errno : 0;
		if (rc) {
			if (ftruncate(fd, st.st_size))
				log_warn("cannot cut a partial line from %s: %s", path, strerror(errno));
		}
	}
	if (fd >= 0)
		close(fd);
	if (rc)
		snprintf(why, len, "cannot append to %s: %s", path, strerror((int)-rc));
	else
		dm->saved_generation = dm->generation;
	free(path);
	return rc ? rc : (long long)st.st_size + (long long)line_len;
}

/* The follower's entries built again (and written to the maps): {"generation":N,"services":[...]},
 * the saved plan's own form. Not fdatasynced (a third of a pod event's CPU): the API server holds
 * these changes, a crash of sluiced alone keeps the page cache, and a replay skips a torn line.
 * Returns the journal's size, or -errno with why. */
long long journal_append_services(struct daemon *dm, const struct plan_service *const *svcs, size_t n, char *why,
				  size_t len)
{
	struct plan part = { .n_services = n, .services = calloc(n + 1, sizeof(*part.services)) };
	char *line = NULL;
	size_t line_len = 0;
	FILE *m = open_memstream(&line, &line_len);
	if (!part.services || !m)
		abort();
	for (size_t i = 0; i < n; i++)
		part.services[i] = *svcs[i];
	plan_print_json_generation(&part, dm->generation, m);   /* one line: the writer is compact */
	fclose(m);
	long long rc = journal_write(dm, line, line_len, false, why, len);
	free(part.services);
	free(line);
	return rc;
}

int journal_append(struct daemon *dm, const struct weight_change *wt, char *why, size_t len)
{
	char *line = NULL;
	size_t line_len = 0;
	FILE *m = open_memstream(&line, &line_len);
	json_writer_t *w = jsonw_new(m);
	jsonw_start_object(w);
	jsonw_uint_field(w, "generation", dm->generation);
	jsonw_string_field(w, "service", wt->service);
	jsonw_string_field(w, "namespace", wt->namespace);
	jsonw_name(w, "weights");
	jsonw_start_array(w);
	for (size_t j = 0; j < wt->n; j++) {
		jsonw_start_object(w);
		jsonw_string_field(w, "subset", wt->w[j].subset);
		jsonw_uint_field(w, "weight", wt->w[j].weight);
		jsonw_end_object(w);
	}
	jsonw_end_array(w);
	jsonw_end_object(w);
	jsonw_destroy(&w);   /* the line's newline */
	fclose(m);
	long long rc = journal_write(dm, line, line_len, true, why, len);
	free(line);
	return rc < 0 ? (int)rc : 0;
}

/* A journal line: {"generation":N,"service":S,"namespace":NS,"weights":[{"subset":X,"weight":W},...]}. */
struct journal_line {
	struct weight_change wt;
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
	    !journal_str(root, "service", jl->wt.service, sizeof(jl->wt.service)) ||
	    !journal_str(root, "namespace", jl->wt.namespace, sizeof(jl->wt.namespace)))
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
	snprintf(jl->wt.service, sizeof(jl->wt.service), "%s", words[0]);
	snprintf(jl->wt.namespace, sizeof(jl->wt.namespace), "%s", words[1]);
	jl->generation = UINT64_MAX;   /* no generation: after the saved plan, as that release wrote them */
	return !weight_change_parse(&jl->wt, words + 2, nw - 2, msg, len);
}

/* A line of the follower's entries: each takes the place of the plan's entry of the same name,
 * namespace, port and protocol. 1: replayed (the line's plan kept in parts, which the entries now
 * point into); 0: older than the saved plan; -1: not such a line, or an entry the plan lacks. */
static int replay_entries(struct plan *plan, const unsigned char *line, size_t len, const struct mark *at,
			  uint64_t saved_gen, struct ptrvec *parts)
{
	struct plan *part = calloc(1, sizeof(*part));
	struct diags d = { 0 };
	uint64_t gen = 0;
	if (!part)
		abort();
	int rc = plan_read_json(line, len, at->file, part, &gen, &d) ? -1 : gen <= saved_gen ? 0 : 1;
	diags_free(&d);
	for (size_t i = 0; rc > 0 && i < part->n_services; i++)   /* every one held, before any is replaced */
		if (!bsearch(&part->services[i], plan->services, plan->n_services, sizeof(*plan->services), plan_service_cmp))
			rc = -1;
	for (size_t i = 0; rc > 0 && i < part->n_services; i++) {
		struct plan_service *k = bsearch(&part->services[i], plan->services, plan->n_services, sizeof(*plan->services),
						 plan_service_cmp);
		*k = part->services[i];
	}
	if (rc > 0) {
		ptrvec_push(parts, part);
		return 1;
	}
	plan_free(part);
	free(part);
	return rc;
}

/* Replays onto plan the changes made after it was saved (generation saved_gen). */
static void replay_journal(struct daemon *dm, struct plan *plan, uint64_t saved_gen)
{
	struct ptrvec parts = { 0 };
	char *path = state_path(dm, "weights.log"), msg[512], q[NAME_QUOTE_CAP];
	unsigned char *buf = NULL;
	size_t len = 0, applied = 0, older = 0, skipped = 0, lineno = 0, batches = 0;
	int rc = fs_read_file(path, &buf, &len);
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
		name_quote(line, strlen(line), q, sizeof(q));   /* before the words are cut apart */
		struct journal_line jl = { 0 };
		struct diags d = { 0 };
		struct mark at = { .file = path, .line = lineno, .col = 1 };
		if (!strncmp(line, "{\"generation\":", 14) && strstr(line, "\"services\":[")) {
			int r = replay_entries(plan, (const unsigned char *)line, (size_t)(end - line), &at, saved_gen, &parts);
			batches += r > 0;
			older += r == 0;
			if (r < 0) {
				log_warn("%s:%zu: skipping %s: not entries of a plan, or entries it does not hold", path, lineno, q);
				skipped++;
			}
			continue;
		}
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
			err = weight_change_apply(&jl.wt, plan, msg, sizeof(msg));
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
	if (batches)
		log_info("replayed the entries of %zu batch%s of the API's changes from %s", batches, batches == 1 ? "" : "es",
			 path);
	if (parts.n) {   /* the plan in one piece again: entries replayed point into the lines' plans */
		struct plan whole;
		if (plan_copy(plan, &whole))
			abort();
		plan_free(plan);
		*plan = whole;
	}
	for (size_t i = 0; i < parts.n; i++) {
		plan_free(parts.v[i]);
		free(parts.v[i]);
	}
	ptrvec_free(&parts);
	free(buf);
	free(path);
}

/*
 * What the maps hold and what sluiced believes agree from the start: the saved plan (and the weight
 * changes since) is applied to the maps; without a saved plan the maps are cleared, and the log
 * says which. An unreadable or invalid plan stops sluiced rather than guess.
 */
int restore_state(struct daemon *dm)
{
	char *path = state_path(dm, "plan.json");
	unsigned char *buf = NULL;
	size_t len = 0;
	struct plan plan = { 0 };
	uint64_t saved_gen = 0;
	int rc = fs_read_file(path, &buf, &len);
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
