// SPDX-License-Identifier: MIT
/*
 * The requests that change the data plane, one at a time: apply (compile, switch, save) and weight
 * (check, switch, journal). A change is acknowledged only once it is saved; one that cannot be
 * saved is taken back through the same path, and the reply says so.
 */
#include <errno.h>
#include <malloc.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "common/exit.h"
#include "common/json.h"
#include "common/log.h"
#include "common/names.h"
#include "compile/compile.h"
#include "daemon/daemon.h"
#include "plan/print.h"

void reply_error(struct reply *r, int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	report_verror(r->out, r->err, r->json, fmt, ap);
	va_end(ap);
	r->code = code;
}

const char *request_namespace(const struct msg *req)
{
	const char *ns = msg_get(req, "namespace", NULL);
	return ns ? ns : "default";
}

const char *request_domain(const struct msg *req)
{
	const char *d = msg_get(req, "domain", NULL);
	return d ? d : "cluster.local";
}

/* A change that could not be saved is taken back; if even that fails, the reply and status say the truth. */
static void unsaved_reply(struct daemon *dm, struct reply *r, const char *why, int undo_rc)
{
	if (!undo_rc) {
		reply_error(r, EXIT_INVALID,
			    "%s; nothing changed: a change is made only once it is saved, and the data plane is back as it "
			    "was (generation %llu); hint: free space in %s, or make it writable, then try again",
			    why, (unsigned long long)dm->generation, dm->state_dir);
		return;
	}
	free(dm->unsaved);
	dm->unsaved = strdup(why);
	reply_error(r, EXIT_INVALID,
		    "%s, and taking the change back failed too (%s): generation %llu is live but not saved, and a "
		    "restart would serve generation %llu; sluiced saves it as soon as it can ('sluice status' says "
		    "when); hint: free space in %s",
		    why, strerror(-undo_rc), (unsigned long long)dm->generation, (unsigned long long)dm->saved_generation,
		    dm->state_dir);
	log_error("generation %llu is live but not saved: %s", (unsigned long long)dm->generation, why);
}

/* ---- apply ---- */

/* The plan the request's files compile to, kept alone (not the compile's records). The YAML is
 * freed here; src keeps the file names, which errors print. */
static int compile_request(struct daemon *dm, struct msg *req, struct sources *src, struct plan *plan,
			   struct diags *d)
{
	for (size_t i = 0; i + 1 < req->n; i++) {
		if (strcmp(req->f[i].tag, "file") || strcmp(req->f[i + 1].tag, "data"))
			continue;
		/* the request's own buffers: a cluster's YAML is not copied */
		sources_add(src, req->f[i].data, (unsigned char *)req->f[i + 1].data, req->f[i + 1].len);
		req->f[i].data = req->f[i + 1].data = NULL;
	}
	struct compile_opts o = {
		.namespace = msg_get(req, "namespace", NULL),
		.namespace_forced = msg_get(req, "namespace", NULL) != NULL,
		.cluster_domain = msg_get(req, "domain", NULL),
		.gateway_address = dm->gateway_address,
	};
	struct compile_stats cst;
	struct plan compiled;
	int rc = compile_plan(&o, src->v, src->n, &compiled, d, &cst);
	for (size_t i = 0; i < src->n; i++) {
		free((void *)src->v[i].buf);
		src->v[i].buf = NULL;
	}
	if (!rc && plan_copy(&compiled, plan))   /* the compile's records (every pod, every object) go */
		*plan = compiled;
	else if (!rc)
		plan_free(&compiled);
	return rc;
}

static void handle_apply(struct daemon *dm, struct msg *req, struct reply *r)
{
	struct sources src = { 0 };
	struct diags d = { 0 };
	struct plan plan;
	int rc = compile_request(dm, req, &src, &plan, &d);
	if (rc) {
		diags_report(&d, r->out, r->err, r->json, ": nothing applied");
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
	if (r->json) {
		json_writer_t *w = jsonw_new(r->out);
		jsonw_start_object(w);
		jsonw_uint_field(w, "generation", gen);
		jsonw_uint_field(w, "services", plan.n_services);
		jsonw_uint_field(w, "written", st.services_written);
		jsonw_uint_field(w, "removed", st.services_removed);
		jsonw_end_object(w);
		jsonw_destroy(&w);
	} else {
		fprintf(r->out, "generation %llu: %zu service%s routed\n", (unsigned long long)gen, plan.n_services,
			plan.n_services == 1 ? "" : "s");
		fprintf(r->out, "%u service records written, %u removed, %u unchanged; switch %.1f us, apply %.1f ms\n",
			st.services_written, st.services_removed, st.services_unchanged, st.flip_ns / 1e3,
			st.total_ns / 1e6);
	}
	log_info("apply: generation %llu, %zu services, %u written, %u removed, switch %llu ns",
		 (unsigned long long)gen, plan.n_services, st.services_written, st.services_removed,
		 (unsigned long long)st.flip_ns);
out:
	diags_free(&d);
	sources_free(&src);
	malloc_trim(0);   /* a cluster's YAML and its compile are gone: give the memory back */
}

/* ---- weight ---- */

/* One weight change in flight: the service's entries (one per port) and their destinations as they were. */
struct weight_job {
	struct weight_change wc;
	const struct plan_service **svcs;
	size_t n_svcs;
	struct plan_destination *old;   /* every entry's destinations before the change, in plan order */
	bool lone;                      /* an entry with one destination: it takes everything, weight 100 */
};

/* Why a weight change names no routed service, with what the user may have meant. */
static void no_such_service(struct daemon *dm, struct reply *r, const struct weight_change *wc)
{
	char also[256] = "", route[160], host[160];
	size_t used = 0;
	for (size_t i = 0; i < dm->plan.n_services && used + 80 < sizeof(also); i++) {
		const struct plan_service *s = &dm->plan.services[i];
		if (strcmp(s->name, wc->service) || (i && !strcmp(s->name, dm->plan.services[i - 1].name) &&
						     !strcmp(s->namespace, dm->plan.services[i - 1].namespace)))
			continue;
		used += (size_t)snprintf(also + used, sizeof(also) - used, "%s%s.%s", used ? ", " : "", s->name,
					 s->namespace);
	}
	/* a VirtualService's name, or a service reached only through a Gateway, is not the name it is
	 * routed under: say which is */
	snprintf(route, sizeof(route), "%s/%s", wc->namespace, wc->service);
	snprintf(host, sizeof(host), "%s.%s", wc->service, wc->namespace);
	for (size_t i = 0; i < dm->plan.n_services; i++) {
		const struct plan_service *s = &dm->plan.services[i];
		if (s->route && !strcmp(s->route, route)) {
			reply_error(r, EXIT_INVALID,
				    "no routed service %s.%s; VirtualService %s routes service %s.%s: sluice weight %s.%s ...",
				    wc->service, wc->namespace, route, s->name, s->namespace, s->name, s->namespace);
			return;
		}
		for (size_t d = 0; s->gateway && d < s->n_destinations; d++)
			if (s->destinations[d].host && !strcmp(s->destinations[d].host, host)) {
				reply_error(r, EXIT_INVALID,
					    "no routed service %s.%s; Gateway %s sends its traffic, routed as %s.%s: sluice "
					    "weight %s.%s ...",
					    wc->service, wc->namespace, s->gateway, s->name, s->namespace, s->name,
					    s->namespace);
				return;
			}
	}
	reply_error(r, EXIT_INVALID, "no routed service %s.%s; %s%s%s'sluice status' lists them", wc->service,
		    wc->namespace, used ? "in other namespaces: " : "", also, used ? "; " : "");
}

/* The request's SERVICE and SUBSET=WEIGHT words, and the service's entries. 0, or -1 having replied. */
static int weight_job_start(struct daemon *dm, const struct msg *req, struct reply *r, struct weight_job *j)
{
	char *words[PLAN_MAX_DESTINATIONS + 1], msg[768];
	size_t n_words = 0, n_old = 0;
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
		return -1;
	}
	if (weight_change_parse(&j->wc, words, n_words, msg, sizeof(msg)) ||
	    plan_service_ref(svc, request_namespace(req), request_domain(req), j->wc.service, j->wc.namespace, msg,
			     sizeof(msg))) {
		reply_error(r, EXIT_USAGE, "%s", msg);
		return -1;
	}
	for (size_t i = 0; i < dm->plan.n_services; i++)
		j->n_svcs += weight_change_names(&j->wc, &dm->plan.services[i]);
	if (!j->n_svcs) {
		no_such_service(dm, r, &j->wc);
		return -1;
	}
	j->svcs = calloc(j->n_svcs + 1, sizeof(*j->svcs));
	j->old = calloc(j->n_svcs * PLAN_MAX_DESTINATIONS + 1, sizeof(*j->old));
	if (!j->svcs || !j->old) {
		reply_error(r, EXIT_INVALID, "out of memory");
		return -1;
	}
	for (size_t i = 0, k = 0; i < dm->plan.n_services; i++) {
		const struct plan_service *s = &dm->plan.services[i];
		if (!weight_change_names(&j->wc, s))
			continue;
		j->svcs[k++] = s;
		j->lone = j->lone || s->n_destinations == 1;
		for (size_t d = 0; d < s->n_destinations; d++)
			j->old[n_old++] = s->destinations[d];
	}
	return 0;
}

/* The service's destinations as they were before the change. */
static void weight_job_restore(struct daemon *dm, const struct weight_job *j)
{
	for (size_t i = 0, k = 0; i < dm->plan.n_services; i++)
		if (weight_change_names(&j->wc, &dm->plan.services[i]))
			for (size_t d = 0; d < dm->plan.services[i].n_destinations; d++)
				dm->plan.services[i].destinations[d] = j->old[k++];
}

/* Each destination of each entry, old weight and share beside the new, in text or JSON. */
static void weight_job_print(struct daemon *dm, struct reply *r, const struct weight_job *j,
			     const struct dataplane_stats *st)
{
	json_writer_t *w = r->json ? jsonw_new(r->out) : NULL;
	size_t k = 0;
	if (w) {
		jsonw_start_object(w);
		jsonw_name(w, "changes");
		jsonw_start_array(w);
	}
	for (size_t i = 0; i < dm->plan.n_services; i++) {
		const struct plan_service *s = &dm->plan.services[i];
		if (!weight_change_names(&j->wc, s))
			continue;
		if (!w)
			fprintf(r->out, "%s.%s port %u/%s\n", s->name, s->namespace, s->port, plan_protocol_name(s->protocol));
		for (size_t d = 0; d < s->n_destinations; d++, k++) {
			const struct plan_destination *pd = &s->destinations[d];
			if (w) {
				jsonw_start_object(w);
				jsonw_string_field(w, "service", s->name);
				jsonw_string_field(w, "namespace", s->namespace);
				jsonw_uint_field(w, "port", s->port);
				jsonw_string_field(w, "subset", pd->subset);
				jsonw_uint_field(w, "old_weight", j->old[k].weight);
				jsonw_uint_field(w, "weight", pd->weight);
				plan_json_percent(w, "old_percent", j->old[k].percent);
				plan_json_percent(w, "percent", pd->percent);
				jsonw_end_object(w);
				continue;
			}
			char a[32], b[32];
			plan_percent_str(j->old[k].percent, a, sizeof(a));
			plan_percent_str(pd->percent, b, sizeof(b));
			fprintf(r->out, "  %-8s weight %4u -> %-4u share %6s%% -> %s%%\n", pd->subset, j->old[k].weight,
				pd->weight, a, b);
		}
	}
	if (w) {
		jsonw_end_array(w);
		jsonw_uint_field(w, "generation", dm->generation);
		jsonw_uint_field(w, "switch_ns", st->flip_ns);
		jsonw_end_object(w);
		jsonw_destroy(&w);
		return;
	}
	if (j->lone)
		fprintf(r->out, "note: a route with one destination sends it all traffic whatever its weight, as Istio "
				"does: its weight stays %u\n", PLAN_LONE_WEIGHT);
	fprintf(r->out, "generation %llu\n", (unsigned long long)dm->generation);
}

static void handle_weight(struct daemon *dm, const struct msg *req, struct reply *r)
{
	struct weight_job j = { 0 };
	struct dataplane_stats st;
	char msg[768], why[512] = "";
	uint64_t gen;
	if (weight_job_start(dm, req, r, &j))
		goto done;
	if (weight_change_apply(&j.wc, &dm->plan, msg, sizeof(msg))) {
		reply_error(r, EXIT_INVALID, "%s", msg);
		goto done;
	}
	/* deferred: the reply goes out at the switch; the client loop settles the old side after it */
	int rc = dataplane_apply_services(dm->dp, j.svcs, j.n_svcs, true, &gen, &st);
	if (rc) {
		weight_job_restore(dm, &j);
		reply_error(r, EXIT_INVALID, "the data plane refused the change (%s): weights unchanged", strerror(-rc));
		goto done;
	}
	dm->generation = gen;
	if (journal_append(dm, &j.wc, why, sizeof(why))) {
		log_info("weight: %s; saving the whole plan instead", why);
		if (!save_plan(dm, why, sizeof(why)))
			why[0] = 0;
	}
	if (why[0]) {   /* not saved: the old weights back, through the same path */
		weight_job_restore(dm, &j);
		int undo = dataplane_apply_services(dm->dp, j.svcs, j.n_svcs, true, &dm->generation, NULL);
		if (undo)   /* the maps keep the new weights: so does what sluiced believes */
			weight_change_apply(&j.wc, &dm->plan, msg, sizeof(msg));
		log_info("weight %s.%s: %s; %s", j.wc.service, j.wc.namespace, why,
			 undo ? "the change stays live, unsaved" : "taken back");
		unsaved_reply(dm, r, why, undo);
		goto done;
	}
	weight_job_print(dm, r, &j, &st);
	log_info("weight %s.%s: generation %llu, switch %llu ns, apply %llu ns", j.wc.service, j.wc.namespace,
		 (unsigned long long)dm->generation, (unsigned long long)st.flip_ns, (unsigned long long)st.total_ns);
done:
	free(j.svcs);
	free(j.old);
}

void handle_request(struct daemon *dm, struct msg *req, struct reply *r)
{
	const char *cmd = msg_get(req, "cmd", NULL);
	char q[NAME_QUOTE_CAP];
	r->json = msg_get(req, "json", NULL) != NULL;
	if (cmd && follower_active(dm) && (!strcmp(cmd, "apply") || !strcmp(cmd, "weight")))
		reply_error(r, EXIT_INVALID,
			    "sluiced follows the Kubernetes API at %s, which holds the truth: a local %s would be undone "
			    "by the next event; change the objects there (kubectl apply -f FILE, or sluice --kubeconfig "
			    "FILE weight ...)",
			    follower_server(dm), cmd);
	else if (cmd && !strcmp(cmd, "apply"))
		handle_apply(dm, req, r);
	else if (cmd && !strcmp(cmd, "weight"))
		handle_weight(dm, req, r);
	else if (cmd && !strcmp(cmd, "status"))
		handle_status(dm, req, r);
	else
		reply_error(r, EXIT_USAGE, "sluiced does not know the command %s; is sluice newer than sluiced?",
			    name_quote(cmd ? cmd : "", cmd ? strlen(cmd) : 0, q, sizeof(q)));
}
