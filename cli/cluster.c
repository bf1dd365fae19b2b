// SPDX-License-Identifier: MIT
/*
 * sluice weight --cluster (or --kubeconfig FILE): the weights are changed where the truth lives,
 * in the VirtualService on the API server, the way Flagger and Argo Rollouts do it: the routes
 * with new weights as a JSON merge patch guarded by the object's resourceVersion, a conflict
 * (someone changed it meanwhile) read again and retried. Every node's sluiced follows it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/json.h"
#include "compile/ytree.h"
#include "kube/client.h"
#include "kube/config.h"
#include "main.h"
#include "nodes.h"
#include "plan/weights.h"

#define CONFLICT_RETRIES 5

static const char *const istio_versions[] = { "v1", "v1beta1", "v1alpha3" };

struct job {
	struct weight_change wc;
	const char *domain;
	struct kube_client *client;
	const struct kube_config *cfg;
	char version[16];
	/* the VirtualService found and what is to be sent */
	char name[256], rv[64], new_rv[64];
	char *patch;
	size_t patch_len;
	char *changes;               /* text lines: each route's weights, old -> new */
	size_t changes_len;
	json_writer_t *jchanges;     /* the same for -o json */
	char *jchanges_buf;
	size_t jchanges_len;
	char error[512];
	int matched;
};

/* Whether a VirtualService host names the service (its short name is relative to the VS's namespace). */
static bool host_names(const struct job *j, const char *host)
{
	char full[384];
	const char *svc = j->wc.service, *ns = j->wc.namespace;
	if (!strcmp(host, svc))
		return true;
	snprintf(full, sizeof(full), "%s.%s", svc, ns);
	if (!strcmp(host, full))
		return true;
	snprintf(full, sizeof(full), "%s.%s.svc", svc, ns);
	if (!strcmp(host, full))
		return true;
	snprintf(full, sizeof(full), "%s.%s.svc.%s", svc, ns, j->domain);
	return !strcmp(host, full);
}

static bool routes_service(const struct job *j, const struct ynode *vs)
{
	const struct ynode *hosts = ymap_get(ymap_get(vs, "spec"), "hosts");
	for (uint32_t i = 0; hosts && hosts->type == YN_SEQ && i < hosts->n; i++)
		if (hosts->items[i]->type == YN_SCALAR && host_names(j, hosts->items[i]->str))
			return true;
	return false;
}

static const char *subset_of(const struct ynode *dest)
{
	const struct ynode *s = ymap_get(ymap_get(dest, "destination"), "subset");
	return s && s->type == YN_SCALAR ? s->str : "";
}

static const struct ynode *weight_of(const struct ynode *dest)
{
	const struct ynode *w = ymap_get(dest, "weight");
	return w && w->type == YN_SCALAR ? w : NULL;
}

/* The change's weight for a subset; -1 if the change does not name it. */
static long new_weight(const struct job *j, const char *subset, size_t n_destinations)
{
	for (size_t k = 0; k < j->wc.n; k++)
		if (!strcmp(j->wc.w[k].subset, subset))
			return plan_weight_held(j->wc.w[k].weight, n_destinations);
	return -1;
}

/* Every route must name exactly the change's subsets, as sluiced's own weight change asks. */
static bool check_route(struct job *j, const char *kind, uint32_t index, const struct ynode *route)
{
	const struct ynode *dests = ymap_get(route, "route");
	char have[512] = "";
	size_t used = 0;
	bool ok = dests && dests->type == YN_SEQ && dests->n == j->wc.n;
	for (uint32_t d = 0; dests && dests->type == YN_SEQ && d < dests->n; d++) {
		const char *sub = subset_of(dests->items[d]);
		int n = snprintf(have + used, sizeof(have) - used, "%s%s", d ? ", " : "", sub[0] ? sub : "(none)");
		used = n > 0 && used + (size_t)n < sizeof(have) ? used + (size_t)n : used;
		ok = ok && new_weight(j, sub, dests->n) >= 0;
	}
	if (!ok)
		snprintf(j->error, sizeof(j->error),
			 "VirtualService %s/%s %s[%u] routes to subsets %s: give a weight for each of them, and add other "
			 "subsets to the VirtualService with kubectl apply",
			 j->wc.namespace, j->name, kind, index, have);
	return ok;
}

struct writing {
	struct job *j;
	const char *kind;
	uint32_t route;
	uint32_t n_dests;
};

/* Inside a route's destinations: the weight written beside the destination, whatever it was. */
static bool rewrite_weight(void *ctx, json_writer_t *w, const struct ynode *map, const struct ynode *key,
			   const struct ynode *val, int depth)
{
	struct writing *wr = ctx;
	(void)val;
	if (depth != 0)
		return false;
	if (!strcmp(key->str, "weight"))
		return true;   /* written with the destination */
	if (strcmp(key->str, "destination"))
		return false;
	long nw = new_weight(wr->j, subset_of(map), wr->n_dests);
	const struct ynode *old = weight_of(map);
	jsonw_name(w, "destination");
	ytree_write_json(w, val, NULL, NULL);
	jsonw_uint_field(w, "weight", (uint64_t)nw);
	/* what changed, for the reply */
	struct job *j = wr->j;
	char line[256];
	int n = snprintf(line, sizeof(line), "  %s[%u] %-8s weight %4s -> %ld\n", wr->kind, wr->route, subset_of(map),
			 old ? old->str : "-", nw);
	if (n > 0) {
		char *grown = realloc(j->changes, j->changes_len + (size_t)n + 1);
		if (grown) {
			memcpy(grown + j->changes_len, line, (size_t)n + 1);
			j->changes = grown;
			j->changes_len += (size_t)n;
		}
	}
	jsonw_start_object(j->jchanges);
	jsonw_string_field(j->jchanges, "route", wr->kind);
	jsonw_uint_field(j->jchanges, "index", wr->route);
	jsonw_string_field(j->jchanges, "subset", subset_of(map));
	if (old)
		jsonw_raw_field(j->jchanges, "old_weight", old->str);
	else
		jsonw_null_field(j->jchanges, "old_weight");
	jsonw_uint_field(j->jchanges, "weight", (uint64_t)nw);
	jsonw_end_object(j->jchanges);
	return true;
}

/* spec.http or spec.tcp with the new weights; nothing when the VS has none of that kind. */
static bool write_routes(struct job *j, json_writer_t *w, const struct ynode *spec, const char *kind)
{
	const struct ynode *routes = ymap_get(spec, kind);
	if (!routes || routes->type != YN_SEQ)
		return true;
	for (uint32_t i = 0; i < routes->n; i++)
		if (!check_route(j, kind, i, routes->items[i]))
			return false;
	jsonw_name(w, kind);
	jsonw_start_array(w);
	for (uint32_t i = 0; i < routes->n; i++) {
		const struct ynode *route = routes->items[i];
		jsonw_start_object(w);
		for (uint32_t m = 0; m < route->n; m++) {
			const struct ynode *k = ymap_key(route, m), *v = ymap_val(route, m);
			if (k->type != YN_SCALAR)
				continue;
			jsonw_name(w, k->str);
			if (strcmp(k->str, "route") || v->type != YN_SEQ) {
				ytree_write_json(w, v, NULL, NULL);
				continue;
			}
			struct writing wr = { .j = j, .kind = kind, .route = i, .n_dests = v->n };
			jsonw_start_array(w);
			for (uint32_t d = 0; d < v->n; d++)
				ytree_write_json(w, v->items[d], rewrite_weight, &wr);
			jsonw_end_array(w);
		}
		jsonw_end_object(w);
	}
	jsonw_end_array(w);
	return true;
}

/* The merge patch of one VirtualService: its routes with the new weights, and its resourceVersion. */
static void on_list(void *ctx, const struct mark *file, struct ynode *root)
{
	struct job *j = ctx;
	const struct ynode *items = ymap_get(root, "items");
	(void)file;
	for (uint32_t i = 0; items && items->type == YN_SEQ && i < items->n && !j->error[0]; i++) {
		const struct ynode *vs = items->items[i], *meta = ymap_get(vs, "metadata");
		const struct ynode *name = ymap_get(meta, "name"), *rv = ymap_get(meta, "resourceVersion");
		if (!routes_service(j, vs) || !name || name->type != YN_SCALAR)
			continue;
		if (j->matched++) {
			snprintf(j->error, sizeof(j->error),
				 "VirtualServices %s and %s in %s both route %s: change the one you mean with kubectl",
				 j->name, name->str, j->wc.namespace, j->wc.service);
			return;
		}
		snprintf(j->name, sizeof(j->name), "%s", name->str);
		snprintf(j->rv, sizeof(j->rv), "%s", rv && rv->type == YN_SCALAR ? rv->str : "");
		FILE *m = open_memstream(&j->patch, &j->patch_len);
		json_writer_t *w = jsonw_new(m);
		const struct ynode *spec = ymap_get(vs, "spec");
		jsonw_start_object(w);
		jsonw_name(w, "metadata");
		jsonw_start_object(w);
		jsonw_string_field(w, "resourceVersion", j->rv);   /* a precondition: 409 if it moved */
		jsonw_end_object(w);
		jsonw_name(w, "spec");
		jsonw_start_object(w);
		bool ok = write_routes(j, w, spec, "http") && write_routes(j, w, spec, "tcp");
		jsonw_end_object(w);
		jsonw_end_object(w);
		jsonw_free(&w);
		fclose(m);
		if (!ok)
			return;
	}
}

/* The patched object's new resourceVersion, from the answer. */
static void on_patched(void *ctx, const struct mark *file, struct ynode *root)
{
	struct job *j = ctx;
	const struct ynode *rv = ymap_get(ymap_get(root, "metadata"), "resourceVersion");
	(void)file;
	if (rv && rv->type == YN_SCALAR)
		snprintf(j->new_rv, sizeof(j->new_rv), "%s", rv->str);
}

static int api_error(struct job *j, const char *what, const struct kube_response *resp)
{
	char msg[512];
	kube_status_message(resp, msg, sizeof(msg));
	if (resp->status == 401)
		p_err("the API server at %s refused the credentials of context %s (401 Unauthorized) to %s: %s",
		      j->cfg->server, j->cfg->context, what, msg);
	else if (resp->status == 403)
		p_err("%s (403 Forbidden); hint: the user of context %s needs get, list and patch on virtualservices.networking.istio.io",
		      msg, j->cfg->context);
	else
		p_err("cannot %s: HTTP %ld: %s", what, resp->status, msg);
	return resp->status == 401 || resp->status == 403 ? EXIT_UNREACHABLE : EXIT_INVALID;
}

static int request(struct job *j, const char *method, const char *path, const char *ctype, const char *body,
		   struct kube_response *resp, const char *what)
{
	char err[512];
	if (kube_request(j->client, method, path, ctype, body, resp, err, sizeof(err))) {
		p_err("cannot reach the API server at %s to %s: %s", j->cfg->server, what, err);
		return EXIT_UNREACHABLE;
	}
	if (resp->status >= 200 && resp->status < 300)
		return EXIT_DONE;
	int rc = resp->status == 409 ? -1 : api_error(j, what, resp);
	kube_response_free(resp);   /* a conflict's body says nothing the caller needs */
	return rc;
}

/* Which of Istio's versions the API serves. */
static int discover(struct job *j)
{
	for (size_t i = 0; i < sizeof(istio_versions) / sizeof(istio_versions[0]); i++) {
		char path[128];
		struct kube_response resp;
		snprintf(path, sizeof(path), "/apis/networking.istio.io/%s", istio_versions[i]);
		int rc = request(j, "GET", path, NULL, NULL, &resp, "discover Istio's API");
		if (rc == EXIT_DONE) {
			snprintf(j->version, sizeof(j->version), "%s", istio_versions[i]);
			kube_response_free(&resp);
			return EXIT_DONE;
		}
		if (rc == EXIT_UNREACHABLE)
			return rc;
	}
	p_err("the API server at %s serves no VirtualServices: Istio's CRDs are not installed", j->cfg->server);
	return EXIT_INVALID;
}

static void job_reset(struct job *j)
{
	free(j->patch);
	free(j->changes);
	free(j->jchanges_buf);
	j->patch = j->changes = j->jchanges_buf = NULL;
	j->patch_len = j->changes_len = j->jchanges_len = 0;
	j->matched = 0;
	j->error[0] = j->name[0] = j->rv[0] = 0;
}

/* One read-modify-write: -1 on a conflict (read again), else the exit status. */
static int attempt(struct job *j)
{
	char path[512], what[512];
	struct kube_response resp;
	snprintf(path, sizeof(path), "/apis/networking.istio.io/%s/namespaces/%s/virtualservices", j->version,
		 j->wc.namespace);
	snprintf(what, sizeof(what), "list virtualservices in %s", j->wc.namespace);
	int rc = request(j, "GET", path, NULL, NULL, &resp, what);
	if (rc)
		return rc == -1 ? EXIT_INVALID : rc;
	job_reset(j);
	FILE *jm = open_memstream(&j->jchanges_buf, &j->jchanges_len);
	j->jchanges = jsonw_new(jm);
	jsonw_start_array(j->jchanges);
	struct diags d = { 0 };
	struct mark file = { .file = path, .line = 1, .col = 1 };
	yaml_each_document((const unsigned char *)resp.body, resp.len, &file, &d, on_list, j);
	kube_response_free(&resp);
	diags_free(&d);
	jsonw_end_array(j->jchanges);
	jsonw_free(&j->jchanges);
	fclose(jm);
	if (j->error[0]) {
		p_err("%s", j->error);
		return EXIT_INVALID;
	}
	if (!j->matched) {
		p_err("no VirtualService in namespace %s routes %s.%s (its hosts: %s, %s.%s, %s.%s.svc.%s); 'kubectl get vs "
		      "-n %s' lists them", j->wc.namespace, j->wc.service, j->wc.namespace, j->wc.service, j->wc.service,
		      j->wc.namespace, j->wc.service, j->wc.namespace, j->domain, j->wc.namespace);
		return EXIT_INVALID;
	}
	snprintf(path + strlen(path), sizeof(path) - strlen(path), "/%s", j->name);
	snprintf(what, sizeof(what), "patch VirtualService %s/%s", j->wc.namespace, j->name);
	rc = request(j, "PATCH", path, "application/merge-patch+json", j->patch, &resp, what);
	if (rc)
		return rc;
	struct diags d2 = { 0 };
	struct mark answer = { .file = path, .line = 1, .col = 1 };
	yaml_each_document((const unsigned char *)resp.body, resp.len, &answer, &d2, on_patched, j);
	diags_free(&d2);
	kube_response_free(&resp);
	return EXIT_DONE;
}

int cluster_weight(void)
{
	struct kube_config cfg;
	char err[512], msg[768];
	struct job j = { .domain = cli.cluster_domain ? cli.cluster_domain : "cluster.local", .cfg = &cfg };
	if (kube_config_load(&cfg, cli.kubeconfig, cli.context, 0, err, sizeof(err))) {
		p_err("%s", err);
		return EXIT_USAGE;
	}
	const char *ns = cli.namespace ? cli.namespace : cfg.namespace ? cfg.namespace : "default";
	if (weight_change_parse(&j.wc, cli.argv + 1, (size_t)cli.argc - 1, msg, sizeof(msg)) ||
	    plan_service_ref(cli.argv[0], ns, j.domain, j.wc.service, j.wc.namespace, msg, sizeof(msg))) {
		p_err("%s", msg);
		kube_config_free(&cfg);
		return EXIT_USAGE;
	}
	uint64_t sum = 0;
	for (size_t k = 0; k < j.wc.n; k++)
		sum += j.wc.w[k].weight;
	if (plan_weights_error(sum, j.wc.n, msg, sizeof(msg))) {
		p_err("%s", msg);
		kube_config_free(&cfg);
		return EXIT_INVALID;
	}
	j.client = kube_client_new(&cfg);
	int rc = j.client ? discover(&j) : EXIT_UNREACHABLE;
	int tries = 0;
	while (rc == EXIT_DONE && (rc = attempt(&j)) == -1 && ++tries < CONFLICT_RETRIES)
		rc = EXIT_DONE;   /* 409: the object changed since it was read; read it again */
	if (rc == -1) {
		p_err("VirtualService %s/%s kept changing under %d attempts (409 Conflict); try again", j.wc.namespace,
		      j.name, CONFLICT_RETRIES);
		rc = EXIT_INVALID;
	}
	if (rc == EXIT_DONE && cli.json) {
		json_writer_t *w = jsonw_new(stdout);
		jsonw_start_object(w);
		jsonw_string_field(w, "virtualService", j.name);
		jsonw_string_field(w, "namespace", j.wc.namespace);
		jsonw_string_field(w, "oldResourceVersion", j.rv);
		jsonw_string_field(w, "resourceVersion", j.new_rv);
		jsonw_uint_field(w, "conflicts", (uint64_t)tries);
		jsonw_raw_field(w, "changes", j.jchanges_buf ? j.jchanges_buf : "[]");
		jsonw_end_object(w);
		jsonw_destroy(&w);
	} else if (rc == EXIT_DONE) {
		printf("virtualservice %s/%s: resourceVersion %s -> %s%s\n%s", j.wc.namespace, j.name, j.rv, j.new_rv,
		       tries ? " (read again after a conflict)" : "", j.changes ? j.changes : "");
		if (!cli.wait)
			printf("every node's sluiced follows it from the API server at %s\n", cfg.server);
	}
	if (rc == EXIT_DONE && cli.wait)
		rc = nodes_wait(j.client, &cfg, j.wc.namespace, j.name, j.new_rv, cli.timeout_s);
	job_reset(&j);
	kube_client_free(j.client);
	kube_config_free(&cfg);
	return rc;
}
