// SPDX-License-Identifier: MIT
/* compile_plan (compile.h): each YAML document of each input to its kind's reader, `kind: List`
 * unwrapped, then the index and the plan (YAML -> records -> plan). Every field of a consumed kind
 * is honoured or refused with an error naming it. */
#include "compile/compile.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/names.h"
#include "compile/kinds.h"
#include "compile/resolve.h"

static bool api_version_is(const char *v, const char *const *ok)
{
	for (; *ok; ok++)
		if (!strcmp(v, *ok))
			return true;
	return false;
}

static void read_object(struct cctx *c, const struct ynode *obj, bool in_list);

static void read_list(struct cctx *c, const struct ynode *obj)
{
	static const char *const list_fields[] = { "apiVersion", "items", "kind", "metadata", NULL };
	cc_check_fields(c, obj, list_fields);
	const struct ynode *items = ymap_get(obj, "items");
	size_t old = cc_push_key(c, "items");
	if (items && !ynode_is_null(items) && cc_want(c, items, YN_SEQ)) {
		for (uint32_t i = 0; i < items->n; i++) {
			size_t o2 = cc_push_index(c, i);
			read_object(c, items->items[i], true);
			cc_pop(c, o2);
		}
	}
	cc_pop(c, old);
}

static void read_object(struct cctx *c, const struct ynode *obj, bool in_list)
{
	static const char *const v1[] = { "v1", NULL };
	static const char *const istio[] = { "networking.istio.io/v1alpha3", "networking.istio.io/v1beta1",
					     "networking.istio.io/v1", NULL };
	if (obj->type != YN_MAP) {
		cc_err(c, obj, "%s must be a Kubernetes object (a mapping with apiVersion and kind), got %s",
		       c->path.len ? c->path.s : "a document", cc_type_name(obj));
		return;
	}
	const struct ynode *kn = ymap_get(obj, "kind"), *av = ymap_get(obj, "apiVersion");
	if (!kn || kn->type != YN_SCALAR || ynode_is_null(kn)) {
		cc_err(c, kn ? kn : obj, "%s%sobject has no kind", c->path.s, c->path.len ? ": " : "");
		return;
	}
	if (!av || av->type != YN_SCALAR || ynode_is_null(av)) {
		cc_err(c, av ? av : obj, "%s%s%s has no apiVersion", c->path.s, c->path.len ? ": " : "", cc_clip_node(c, kn));
		return;
	}
	const char *kind = kn->str, *api = av->str;
	bool service = !strcmp(kind, "Service"), pod = !strcmp(kind, "Pod");
	bool vs = !strcmp(kind, "VirtualService"), dr = !strcmp(kind, "DestinationRule");
	bool gw = !strcmp(kind, "Gateway") && !strncmp(api, "networking.istio.io/", 20);
	bool list = !strcmp(kind, "List") || (strlen(kind) > 4 && !strcmp(kind + strlen(kind) - 4, "List"));
	if (list && !strcmp(api, "v1") && !in_list) {
		read_list(c, obj);
		return;
	}
	/* a Service of another API group (Knative's serving.knative.dev) is another kind */
	if ((service || pod) && strchr(api, '/'))
		service = pod = false;
	if ((service || pod) && !api_version_is(api, v1)) {
		cc_err(c, av, "apiVersion %s is not served for kind %s: use v1", cc_quote_node(c, av), kind);
		return;
	}
	if ((vs || dr || gw) && !api_version_is(api, istio)) {
		if (!strncmp(api, "networking.istio.io/", 20)) {
			cc_err(c, av,
			       "apiVersion %s is not served for kind %s: use networking.istio.io/v1, v1beta1 or "
			       "v1alpha3",
			       cc_quote_node(c, av), kind);
			return;
		}
		vs = dr = gw = false;
	}
	c->st->objects++;
	if (service)
		cc_read_service(c, obj);
	else if (pod)
		cc_read_pod(c, obj);
	else if (vs)
		cc_read_virtual_service(c, obj);
	else if (dr)
		cc_read_destination_rule(c, obj);
	else if (gw)
		cc_read_gateway(c, obj);
	else {
		c->st->skipped++;
		if (c->o->skipped_log) {
			const struct ynode *md = ymap_get(obj, "metadata");
			const struct ynode *name = ymap_get(md, "name");
			fprintf(c->o->skipped_log, "%s:%u:%u: skipped %s %s (%s): not a kind sluice reads\n", c->file->file,
				obj->line, obj->col, cc_clip_node(c, kn),
				name && name->type == YN_SCALAR ? cc_clip_node(c, name) : "(unnamed)", cc_clip_node(c, av));
		}
	}
}

static void on_document(void *ctx, const struct mark *file, struct ynode *root)
{
	struct cctx *c = ctx;
	c->file = file;
	cc_pop(c, 0);
	read_object(c, root, false);
}

/* The options' values, which errors place at the option's name. Returns false for a -n namespace
 * that is not one. */
static bool check_options(struct cctx *c, const struct compile_opts *o)
{
	if (o->gateway_address) {
		struct mark opt = { .file = "--gateway-address", .line = 1, .col = 1 };
		const char *why = NULL;
		if (!name_parse_addr(o->gateway_address, &c->gateway_address))
			why = "is not an IP address";
		else
			why = name_vip_error(&c->gateway_address);
		if (why)
			diag_error(c->d, &opt, "%s %s", cc_quote(c, o->gateway_address), why);
	}
	const char *ns_why = o->namespace ? name_dns1123_label_error(o->namespace, strlen(o->namespace)) : NULL;
	if (ns_why) {
		struct mark opt = { .file = "-n", .line = 1, .col = 1 };
		diag_error(c->d, &opt, "namespace %s %s", cc_quote(c, o->namespace), ns_why);
	}
	return !ns_why;
}

/* Every document of every input, read in order; files[i] is where input i's errors point. An input
 * without objects is an error unless errors since errors_before already speak of it. */
static void read_inputs(struct cctx *c, const struct compile_input *in, size_t n_in, struct mark *files,
			size_t errors_before)
{
	for (size_t i = 0; i < n_in; i++) {
		files[i] = (struct mark){ .file = in[i].name, .file_index = (uint32_t)i, .line = 1, .col = 1 };
		size_t docs = yaml_each_document(in[i].buf, in[i].len, &files[i], c->d, on_document, c);
		if (!docs && c->d->n == errors_before)
			diag_error(c->d, &files[i], "no objects in this file: it is empty or holds only comments");
		errors_before = c->d->n;
	}
}

static struct cctx cctx_new(const struct compile_opts *o, struct diags *d, struct arena *keep,
			    struct compile_stats *stats)
{
	return (struct cctx){
		.o = o,
		.default_ns = o->namespace ? o->namespace : "default",
		.domain = o->cluster_domain ? o->cluster_domain : "cluster.local",
		.d = d,
		.keep = keep,
		.st = stats,
	};
}

/* From the records read to the plan: the index, then the plan; every error of the compile in d. */
static int resolve_and_build(struct cctx *c, struct arena *keep, struct plan *plan)
{
	struct index ix = { 0 };
	cc_index_build(c, &ix);
	cc_build_plan(c, &ix, plan);
	cc_index_free(&ix);
	ptrvec_free(&c->services);
	ptrvec_free(&c->pods);
	ptrvec_free(&c->vss);
	ptrvec_free(&c->drs);
	ptrvec_free(&c->gateways);
	strmap_free(&c->objects);
	plan->arena = keep;
	diags_sort(c->d);
	if (c->d->n) {
		plan_free(plan);
		return -1;
	}
	return 0;
}

int compile_plan(const struct compile_opts *o, const struct compile_input *in, size_t n_in, struct plan *plan,
		 struct diags *d, struct compile_stats *stats)
{
	struct compile_stats local;
	struct arena *keep = calloc(1, sizeof(*keep));
	if (!keep)
		abort();
	if (!stats)
		stats = &local;
	memset(stats, 0, sizeof(*stats));
	memset(plan, 0, sizeof(*plan));
	struct cctx c = cctx_new(o, d, keep, stats);
	size_t errors_before = d->n;
	bool ns_ok = check_options(&c, o);
	if (!ns_ok)
		n_in = 0;   /* every object would land in that namespace: nothing else can be checked */
	struct mark *files = calloc(n_in ? n_in : 1, sizeof(*files));
	if (!files)
		abort();
	read_inputs(&c, in, n_in, files, errors_before);
	stats->files = n_in;
	if (!n_in && ns_ok) {
		struct mark none = { .file = "sluice", .line = 1, .col = 1 };
		diag_error(d, &none, "no input: give -f FILE, -f DIR or -f -");
	}
	int rc = resolve_and_build(&c, keep, plan);
	free(files);  /* marks copied into diagnostics name in[].name, which outlives them */
	return rc;
}

/* ---- reading once, compiling many times ---- */

struct compile_read {
	struct arena records;
	struct ptrvec services, pods, vss, drs, gateways;
	struct diags d;              /* the reading's errors, given again at every compile */
	size_t objects, skipped;
	struct mark file;
};

struct compile_read *compile_read(const struct compile_opts *o, const struct compile_input *in)
{
	struct compile_read *r = calloc(1, sizeof(*r));
	if (!r)
		abort();
	r->records.block = 2048;   /* one object's records: a pod's are about 500 bytes */
	struct compile_stats st = { 0 };
	struct cctx c = cctx_new(o, &r->d, &r->records, &st);
	if (o->gateway_address && name_parse_addr(o->gateway_address, &c.gateway_address) &&
	    name_vip_error(&c.gateway_address))
		c.gateway_address.family = 0;   /* refused at every compile_plan_reads */
	read_inputs(&c, in, 1, &r->file, 0);
	r->services = c.services;
	r->pods = c.pods;
	r->vss = c.vss;
	r->drs = c.drs;
	r->gateways = c.gateways;
	strmap_free(&c.objects);
	r->objects = st.objects;
	r->skipped = st.skipped;
	return r;
}

void compile_read_free(struct compile_read *r)
{
	if (!r)
		return;
	ptrvec_free(&r->services);
	ptrvec_free(&r->pods);
	ptrvec_free(&r->vss);
	ptrvec_free(&r->drs);
	ptrvec_free(&r->gateways);
	diags_free(&r->d);
	arena_free(&r->records);
	free(r);
}

static void append(struct ptrvec *to, const struct ptrvec *from)
{
	for (size_t i = 0; i < from->n; i++)
		ptrvec_push(to, from->v[i]);
}

/* What the last build wrote into the records: a read serves many builds, each starts clean. */
static void forget_build(struct cctx *c)
{
	for (size_t i = 0; i < c->services.n; i++) {
		struct service *s = c->services.v[i];
		s->routed_by = NULL;
		s->routed_at_host = NULL;
	}
	for (size_t i = 0; i < c->vss.n; i++) {
		struct vs *v = c->vss.v[i];
		for (uint32_t j = 0; j < v->n_http + v->n_tcp; j++) {
			struct route *r = j < v->n_http ? &v->http[j] : &v->tcp[j - v->n_http];
			r->used = false;
			r->port_missing = false;
		}
	}
	for (size_t i = 0; i < c->gateways.n; i++) {
		struct gateway *g = c->gateways.v[i];
		g->no_address_reported = false;
		for (uint32_t j = 0; j < g->n_servers; j++)
			g->servers[j].routed_by = NULL;
	}
}

int compile_plan_reads(const struct compile_opts *o, struct compile_read *const *reads, size_t n_reads,
		       struct plan *plan, struct diags *d, struct compile_stats *stats)
{
	struct compile_stats local;
	struct arena *keep = calloc(1, sizeof(*keep));
	if (!keep)
		abort();
	if (!stats)
		stats = &local;
	memset(stats, 0, sizeof(*stats));
	memset(plan, 0, sizeof(*plan));
	struct cctx c = cctx_new(o, d, keep, stats);
	check_options(&c, o);
	for (size_t i = 0; i < n_reads; i++) {
		const struct compile_read *r = reads[i];
		append(&c.services, &r->services);
		append(&c.pods, &r->pods);
		append(&c.vss, &r->vss);
		append(&c.drs, &r->drs);
		append(&c.gateways, &r->gateways);
		for (size_t j = 0; j < r->d.n; j++)
			diag_error(d, &r->d.v[j].at, "%s", r->d.v[j].msg);
		stats->objects += r->objects;
		stats->skipped += r->skipped;
	}
	stats->files = n_reads;
	forget_build(&c);
	return resolve_and_build(&c, keep, plan);
}
