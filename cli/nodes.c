// SPDX-License-Identifier: MIT
/*
 * The nodes of a cluster, as `sluice status --cluster` and `sluice weight --cluster --wait` see them:
 * the DaemonSet's pods (namespace sluice-system, label app.kubernetes.io/name=sluice, as deploy/
 * makes them) found through the API server, then each node's endpoint read directly at the pod's
 * address and its port named "endpoint" (the DaemonSet runs on the host network: the node's IP).
 */
#include <curl/curl.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "main.h"
#include "nodes.h"
#include "common/exit.h"
#include "common/json.h"
#include "compile/ytree.h"
#include "kube/client.h"
#include "kube/config.h"

#define SLUICE_NAMESPACE "sluice-system"
#define SLUICE_SELECTOR "app.kubernetes.io%2Fname%3Dsluice"
#define ENDPOINT_PORT 9464      /* deploy/'s --listen, when a pod names no port "endpoint" */

static const char *scalar(const struct ynode *n)
{
	return n && n->type == YN_SCALAR ? n->str : "";
}

static const struct ynode *at(const struct ynode *n, const char *path)
{
	char key[64];
	while (n && *path) {
		size_t len = strcspn(path, ".");
		snprintf(key, sizeof(key), "%.*s", (int)len, path);
		n = n->type == YN_MAP ? ymap_get(n, key) : NULL;
		path += len + (path[len] == '.');
	}
	return n;
}

static void on_pods(void *ctx, const struct mark *file, struct ynode *root)
{
	struct nodes *ns = ctx;
	(void)file;
	const struct ynode *items = ymap_get(root, "items");
	for (uint32_t i = 0; items && items->type == YN_SEQ && i < items->n; i++) {
		const struct ynode *pod = items->items[i];
		struct node_view *v = realloc(ns->v, (ns->n + 1) * sizeof(*v));
		if (!v)
			return;
		ns->v = v;
		v = &ns->v[ns->n++];
		memset(v, 0, sizeof(*v));
		snprintf(v->pod, sizeof(v->pod), "%s", scalar(at(pod, "metadata.name")));
		snprintf(v->node, sizeof(v->node), "%s", scalar(at(pod, "spec.nodeName")));
		long port = ENDPOINT_PORT;
		const struct ynode *cs = at(pod, "spec.containers");
		for (uint32_t c = 0; cs && cs->type == YN_SEQ && c < cs->n; c++) {
			const struct ynode *ports = ymap_get(cs->items[c], "ports");
			for (uint32_t p = 0; ports && ports->type == YN_SEQ && p < ports->n; p++)
				if (!strcmp(scalar(ymap_get(ports->items[p], "name")), "endpoint"))
					port = strtol(scalar(ymap_get(ports->items[p], "containerPort")), NULL, 10);
		}
		const char *ip = scalar(at(pod, "status.podIP"));
		snprintf(v->address, sizeof(v->address), strchr(ip, ':') ? "[%s]:%ld" : "%s:%ld", ip, port);
		if (!*ip)
			snprintf(v->error, sizeof(v->error), "the pod has no IP yet");
	}
}

int nodes_find(struct kube_client *c, const struct kube_config *cfg, struct nodes *out)
{
	char err[512], path[256];
	struct kube_response resp;
	memset(out, 0, sizeof(*out));
	snprintf(path, sizeof(path), "/api/v1/namespaces/%s/pods?labelSelector=%s", SLUICE_NAMESPACE, SLUICE_SELECTOR);
	if (kube_request(c, "GET", path, NULL, NULL, &resp, err, sizeof(err))) {
		p_err("cannot reach the API server at %s to list sluice's pods: %s", cfg->server, err);
		return EXIT_UNREACHABLE;
	}
	if (resp.status != 200) {
		char msg[512];
		p_err("cannot list sluice's pods in %s: HTTP %ld: %s%s", SLUICE_NAMESPACE, resp.status,
		      kube_status_message(&resp, msg, sizeof(msg)),
		      resp.status == 403 ? "; hint: the user needs list on pods in " SLUICE_NAMESPACE : "");
		kube_response_free(&resp);
		return resp.status == 401 || resp.status == 403 ? EXIT_UNREACHABLE : EXIT_INVALID;
	}
	struct diags d = { 0 };
	struct mark file = { .file = path, .line = 1, .col = 1 };
	yaml_each_document((const unsigned char *)resp.body, resp.len, &file, &d, on_pods, out);
	diags_free(&d);
	kube_response_free(&resp);
	if (!out->n) {
		p_err("no sluice pods in namespace %s (label app.kubernetes.io/name=sluice); hint: kubectl apply -f deploy/",
		      SLUICE_NAMESPACE);
		return EXIT_INVALID;
	}
	return EXIT_DONE;
}

struct body {
	char *data;
	size_t len;
};

static size_t on_body(char *p, size_t size, size_t n, void *ctx)
{
	struct body *b = ctx;
	char *d = realloc(b->data, b->len + size * n + 1);
	if (!d)
		return 0;
	memcpy(d + b->len, p, size * n);
	b->data = d;
	b->len += size * n;
	d[b->len] = 0;
	return size * n;
}

static void on_status(void *ctx, const struct mark *file, struct ynode *root)
{
	struct node_view *v = ctx;
	(void)file;
	v->generation = strtoull(scalar(ymap_get(root, "generation")), NULL, 10);
	const struct ynode *k = ymap_get(root, "kubernetes");
	v->synced = !strcmp(scalar(ymap_get(k, "synced")), "true");
	snprintf(v->last_result, sizeof(v->last_result), "%s", scalar(ymap_get(k, "lastResult")));
	const struct ynode *refused = ymap_get(k, "refused");
	v->refused = refused && refused->type == YN_SEQ ? refused->n : 0;
	const struct ynode *vss = ymap_get(k, "virtualServices");
	free(v->vs);
	v->vs = NULL;
	v->n_vs = 0;
	if (vss && vss->type == YN_SEQ && (v->vs = calloc(vss->n + 1, sizeof(*v->vs)))) {
		for (uint32_t i = 0; i < vss->n; i++) {
			struct vs_applied *a = &v->vs[v->n_vs++];
			snprintf(a->ns, sizeof(a->ns), "%s", scalar(ymap_get(vss->items[i], "namespace")));
			snprintf(a->name, sizeof(a->name), "%s", scalar(ymap_get(vss->items[i], "name")));
			snprintf(a->applied, sizeof(a->applied), "%s",
				 scalar(ymap_get(vss->items[i], "appliedResourceVersion")));
		}
	}
}

int node_read(struct node_view *v)
{
	char url[160];
	struct body b = { 0 };
	CURL *h = curl_easy_init();
	if (!h)
		return -1;
	snprintf(url, sizeof(url), "http://%s/status", v->address);
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, &b);
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 5000L);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	CURLcode rc = curl_easy_perform(h);
	long code = 0;
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
	curl_easy_cleanup(h);
	v->answered = rc == CURLE_OK && code == 200;
	if (!v->answered) {
		snprintf(v->error, sizeof(v->error), "%s: %s", url, rc != CURLE_OK ? curl_easy_strerror(rc) : "not 200");
	} else {
		struct diags d = { 0 };
		struct mark file = { .file = url, .line = 1, .col = 1 };
		v->error[0] = 0;
		yaml_each_document((const unsigned char *)b.data, b.len, &file, &d, on_status, v);
		diags_free(&d);
	}
	free(b.data);
	return v->answered ? 0 : -1;
}

const char *node_applied(const struct node_view *v, const char *ns, const char *name)
{
	for (size_t i = 0; i < v->n_vs; i++)
		if (!strcmp(v->vs[i].ns, ns) && !strcmp(v->vs[i].name, name))
			return v->vs[i].applied;
	return NULL;
}

/* How many nodes serve resourceVersion rv of VirtualService ns/name, or a later one (one object's
 * resourceVersions grow); the others go to lag as "node unreachable|RV|not applied". */
static size_t nodes_applied(const struct nodes *nodes, const char *ns, const char *name, const char *rv, char *lag,
			    size_t len)
{
	size_t have = 0;
	lag[0] = 0;
	for (size_t i = 0; i < nodes->n; i++) {
		const struct node_view *v = &nodes->v[i];
		const char *applied = v->answered ? node_applied(v, ns, name) : NULL;
		if (applied && (strlen(applied) > strlen(rv) || (strlen(applied) == strlen(rv) && strcmp(applied, rv) >= 0)))
			have++;
		else if (strlen(lag) + 64 < len)
			snprintf(lag + strlen(lag), len - strlen(lag), "%s%s %s", lag[0] ? ", " : "", v->node,
				 !v->answered ? "unreachable" : applied && *applied ? applied : "not applied");
	}
	return have;
}

void nodes_free(struct nodes *ns)
{
	for (size_t i = 0; i < ns->n; i++)
		free(ns->v[i].vs);
	free(ns->v);
	memset(ns, 0, sizeof(*ns));
}

/* ---- sluice status --cluster ---- */

struct api_vs {
	char ns[64], name[256], rv[32];
};

struct vs_list {
	struct api_vs *v;
	size_t n;
};

static void on_vss(void *ctx, const struct mark *file, struct ynode *root)
{
	struct vs_list *l = ctx;
	(void)file;
	const struct ynode *items = ymap_get(root, "items");
	for (uint32_t i = 0; items && items->type == YN_SEQ && i < items->n; i++) {
		struct api_vs *v = realloc(l->v, (l->n + 1) * sizeof(*v));
		if (!v)
			return;
		l->v = v;
		v = &l->v[l->n++];
		snprintf(v->ns, sizeof(v->ns), "%s", scalar(at(items->items[i], "metadata.namespace")));
		snprintf(v->name, sizeof(v->name), "%s", scalar(at(items->items[i], "metadata.name")));
		snprintf(v->rv, sizeof(v->rv), "%s", scalar(at(items->items[i], "metadata.resourceVersion")));
	}
}

/* Every VirtualService as the API holds it now, in whichever Istio version it serves. */
static int list_vss(struct kube_client *c, const struct kube_config *cfg, struct vs_list *out)
{
	static const char *const versions[] = { "v1", "v1beta1", "v1alpha3" };
	char err[512], path[128];
	memset(out, 0, sizeof(*out));
	for (size_t i = 0; i < sizeof(versions) / sizeof(versions[0]); i++) {
		struct kube_response resp;
		snprintf(path, sizeof(path), "/apis/networking.istio.io/%s/virtualservices", versions[i]);
		if (kube_request(c, "GET", path, NULL, NULL, &resp, err, sizeof(err))) {
			p_err("cannot reach the API server at %s to list VirtualServices: %s", cfg->server, err);
			return EXIT_UNREACHABLE;
		}
		if (resp.status == 404) {
			kube_response_free(&resp);
			continue;
		}
		if (resp.status != 200) {
			char msg[512];
			p_err("cannot list VirtualServices: HTTP %ld: %s", resp.status,
			      kube_status_message(&resp, msg, sizeof(msg)));
			kube_response_free(&resp);
			return resp.status == 401 || resp.status == 403 ? EXIT_UNREACHABLE : EXIT_INVALID;
		}
		struct diags d = { 0 };
		struct mark file = { .file = path, .line = 1, .col = 1 };
		yaml_each_document((const unsigned char *)resp.body, resp.len, &file, &d, on_vss, out);
		diags_free(&d);
		kube_response_free(&resp);
		return EXIT_DONE;
	}
	return EXIT_DONE;   /* Istio's CRDs not installed: no VirtualService to compare */
}

int cluster_status(void)
{
	struct kube_config cfg;
	char err[512];
	if (cli.argc) {
		p_err("usage: sluice status --cluster [-o json]");
		return EXIT_USAGE;
	}
	if (kube_config_load(&cfg, cli.kubeconfig, cli.context, 0, err, sizeof(err))) {
		p_err("%s", err);
		return EXIT_USAGE;
	}
	struct kube_client *c = kube_client_new(&cfg);
	struct nodes ns = { 0 };
	struct vs_list vss = { 0 };
	int rc = c ? nodes_find(c, &cfg, &ns) : EXIT_UNREACHABLE;
	if (rc == EXIT_DONE)
		rc = list_vss(c, &cfg, &vss);
	size_t unreachable = 0;
	for (size_t i = 0; rc == EXIT_DONE && i < ns.n; i++) {
		if (!ns.v[i].error[0])   /* a pod without an IP yet is not asked */
			node_read(&ns.v[i]);
		unreachable += !ns.v[i].answered;
	}
	if (rc == EXIT_DONE) {
		json_writer_t *w = cli.json ? jsonw_new(stdout) : NULL;
		if (w) {
			jsonw_start_object(w);
			jsonw_name(w, "nodes");
			jsonw_start_array(w);
		} else {
			printf("%-24s %-32s %-10s %-7s %s\n", "NODE", "POD", "GENERATION", "SYNCED", "LAST RESULT");
		}
		for (size_t i = 0; i < ns.n; i++) {
			const struct node_view *v = &ns.v[i];
			if (w) {
				jsonw_start_object(w);
				jsonw_string_field(w, "node", v->node);
				jsonw_string_field(w, "pod", v->pod);
				jsonw_string_field(w, "endpoint", v->address);
				jsonw_bool_field(w, "answered", v->answered);
				if (v->answered) {
					jsonw_uint_field(w, "generation", v->generation);
					jsonw_bool_field(w, "synced", v->synced);
					jsonw_uint_field(w, "refused", v->refused);
					jsonw_string_field(w, "lastResult", v->last_result);
				} else {
					jsonw_string_field(w, "error", v->error);
				}
				jsonw_end_object(w);
			} else if (v->answered) {
				printf("%-24s %-32s %-10llu %-7s %s%s\n", v->node, v->pod, (unsigned long long)v->generation,
				       v->synced ? "yes" : "no", v->last_result, v->refused ? " (objects refused: see its status)" : "");
			} else {
				printf("%-24s %-32s %-10s %-7s unreachable: %s\n", v->node, v->pod, "-", "-", v->error);
			}
		}
		if (w) {
			jsonw_end_array(w);
			jsonw_name(w, "virtualServices");
			jsonw_start_array(w);
		}
		for (size_t k = 0; k < vss.n; k++) {
			const struct api_vs *a = &vss.v[k];
			char lag[512];
			size_t have = nodes_applied(&ns, a->ns, a->name, a->rv, lag, sizeof(lag));
			if (w) {
				jsonw_start_object(w);
				jsonw_string_field(w, "namespace", a->ns);
				jsonw_string_field(w, "name", a->name);
				jsonw_string_field(w, "resourceVersion", a->rv);
				jsonw_uint_field(w, "nodesApplied", have);
				jsonw_uint_field(w, "nodes", ns.n);
				jsonw_bool_field(w, "converged", have == ns.n);
				jsonw_end_object(w);
			} else {
				printf("virtualservice %s/%s resourceVersion %s: %s %zu of %zu nodes%s%s%s\n", a->ns, a->name, a->rv,
				       have == ns.n ? "applied on every node," : "not converged:", have, ns.n, lag[0] ? " (" : "",
				       lag, lag[0] ? ")" : "");
			}
		}
		if (w) {
			jsonw_end_array(w);
			jsonw_end_object(w);
			jsonw_destroy(&w);
		}
		if (unreachable)
			rc = EXIT_UNREACHABLE;
	}
	free(vss.v);
	nodes_free(&ns);
	kube_client_free(c);
	kube_config_free(&cfg);
	return rc;
}

/* ---- sluice weight --cluster --wait ---- */

static uint64_t now_ms(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000 + (uint64_t)t.tv_nsec / 1000000;
}

int nodes_wait(struct kube_client *c, const struct kube_config *cfg, const char *ns, const char *name, const char *rv,
	       unsigned timeout_s)
{
	struct nodes nodes;
	uint64_t t0 = now_ms(), deadline = t0 + (uint64_t)timeout_s * 1000;
	int rc = nodes_find(c, cfg, &nodes);
	if (rc)
		return rc;
	size_t have;
	char lag[512];
	for (;;) {
		for (size_t i = 0; i < nodes.n; i++)
			node_read(&nodes.v[i]);
		have = nodes_applied(&nodes, ns, name, rv, lag, sizeof(lag));
		if (have == nodes.n || now_ms() >= deadline)
			break;
		usleep(20000);
	}
	if (have == nodes.n) {
		if (!cli.json)
			printf("every node (%zu) applied resourceVersion %s in %llu ms\n", nodes.n, rv,
			       (unsigned long long)(now_ms() - t0));
	} else {
		p_err("%zu of %zu nodes applied resourceVersion %s of VirtualService %s/%s within %u s (%s); the change is "
		      "on the API server: nodes follow it when they can; 'sluice status --cluster' shows them",
		      have, nodes.n, rv, ns, name, timeout_s, lag);
		rc = EXIT_INVALID;
	}
	nodes_free(&nodes);
	return rc;
}
