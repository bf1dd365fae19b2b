// SPDX-License-Identifier: MIT
/* compile_plan (compile.h): each YAML document of each input to its kind's reader, `kind: List`
 * unwrapped, then the index and the plan (YAML -> records -> plan). Every field of a consumed kind
 * is honoured or refused with an error naming it. */
#include "compile/compile.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/json.h"
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

/* kind names a list: List, or any kind ending in List (ServiceList, PodList...). */
static bool list_kind(const char *kind)
{
	size_t n = strlen(kind);
	return !strcmp(kind, "List") || (n > 4 && !strcmp(kind + n - 4, "List"));
}

/* Whether read_object reads obj, a document, as a List (read_list): its items, if streamed, were
 * read as its. */
static bool read_as_list(const struct ynode *obj)
{
	if (obj->type != YN_MAP)
		return false;
	const struct ynode *kn = ymap_get(obj, "kind"), *av = ymap_get(obj, "apiVersion");
	return kn && kn->type == YN_SCALAR && !ynode_is_null(kn) && av && av->type == YN_SCALAR &&
	       !ynode_is_null(av) && list_kind(kn->str) && !strcmp(av->str, "v1");
}

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
	if (list_kind(kind) && !strcmp(api, "v1") && !in_list) {
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
	if (c->transient && !c->keep->head)   /* a read of one object: its records in one block, mostly */
		c->keep->first = service ? 544 : pod ? 384 : vs ? 768 : 512;
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

void cc_read_document(void *ctx, const struct mark *file, struct ynode *root)
{
	struct cctx *c = ctx;
	c->file = file;
	cc_pop(c, 0);
	if (c->stream && c->stream->streamed && !read_as_list(root)) {
		c->stream->spoiled = true;   /* its items were read as a List's: it is read again whole */
		return;
	}
	read_object(c, root, false);
}

/* As read_list reads items[index], its tree given before the List's end. */
void cc_read_item(void *ctx, const struct mark *file, uint32_t index, struct ynode *item)
{
	struct cctx *c = ctx;
	c->file = file;
	cc_pop(c, 0);
	cc_push_key(c, "items");
	cc_push_index(c, index);
	c->st->items_streamed++;
	read_object(c, item, true);
	cc_pop(c, 0);
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
 * without objects is an error unless errors since errors_before already speak of it. whole: each
 * document a whole tree, on this thread (compile_read's objects are small). */
static void read_inputs(struct cctx *c, const struct compile_input *in, size_t n_in, struct mark *files,
			size_t errors_before, bool whole)
{
	for (size_t i = 0; i < n_in; i++) {
		files[i] = (struct mark){ .file = in[i].name, .file_index = (uint32_t)i, .line = 1, .col = 1 };
		size_t docs = cc_read_input(c, &in[i], &files[i], whole, i + 1 == n_in);
		if (!docs && c->d->n == errors_before)
			diag_error(c->d, &files[i], "no objects in this file: it is empty or holds only comments");
		errors_before = c->d->n;
	}
}

struct cctx cc_context(const struct compile_opts *o, struct diags *d, struct arena *keep, struct compile_stats *stats)
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

/* A compile's start: its plan empty, its figures zero, an arena the plan will own. */
static struct cctx compile_begin(const struct compile_opts *o, struct diags *d, struct plan *plan,
				 struct compile_stats *stats)
{
	struct arena *keep = calloc(1, sizeof(*keep));
	if (!keep)
		abort();
	memset(stats, 0, sizeof(*stats));
	memset(plan, 0, sizeof(*plan));
	return cc_context(o, d, keep, stats);
}

/* What every compile ends with: the plan owns the arena, or the errors say why there is none. */
static int finish(struct cctx *c, struct plan *plan)
{
	ptrvec_free(&c->services);
	ptrvec_free(&c->pods);
	ptrvec_free(&c->vss);
	ptrvec_free(&c->drs);
	ptrvec_free(&c->gateways);
	strmap_free(&c->objects);
	plan->arena = c->keep;
	diags_sort(c->d);
	if (c->d->n) {
		plan_free(plan);
		return -1;
	}
	return 0;
}

/* From the records read to the plan: the index, then the plan; every error of the compile in d. */
static int resolve_and_build(struct cctx *c, struct plan *plan)
{
	struct index ix = { 0 };
	cc_index_build(c, &ix);
	cc_build_plan(c, &ix, NULL, plan);
	cc_index_free(&ix);
	return finish(c, plan);
}

int compile_plan(const struct compile_opts *o, const struct compile_input *in, size_t n_in, struct plan *plan,
		 struct diags *d, struct compile_stats *stats)
{
	struct compile_stats local;
	struct cctx c = compile_begin(o, d, plan, stats ? stats : &local);
	size_t errors_before = d->n;
	bool ns_ok = check_options(&c, o);
	if (!ns_ok)
		n_in = 0;   /* every object would land in that namespace: nothing else can be checked */
	struct mark *files = calloc(n_in ? n_in : 1, sizeof(*files));
	if (!files)
		abort();
	read_inputs(&c, in, n_in, files, errors_before, false);
	c.st->files = n_in;
	if (!n_in && ns_ok) {
		struct mark none = { .file = "sluice", .line = 1, .col = 1 };
		diag_error(d, &none, "no input: give -f FILE, -f DIR or -f -");
	}
	int rc = resolve_and_build(&c, plan);
	free(files);  /* marks copied into diagnostics name in[].name, which outlives them */
	return rc;
}

void compile_member_json(struct json_writer *w, const char *kind, const struct ynode *key, const struct ynode *val)
{
	static const char *const meta[] = { "name", "namespace", "labels", "deletionTimestamp", "resourceVersion", NULL };
	bool pod = !strcmp(kind, "Pod"), status = !strcmp(key->str, "status");
	if (status && !pod)
		return;   /* no reader reads another kind's status */
	jsonw_name(w, key->str);
	if (!strcmp(key->str, "metadata") && val->type == YN_MAP)
		cc_write_members(w, val, meta);   /* read_meta's, and the follower's resourceVersion */
	else if (pod && status)
		cc_pod_status_json(w, val);
	else if (pod && !strcmp(key->str, "spec"))
		cc_pod_spec_json(w, val);
	else
		ytree_write_json(w, val, NULL, NULL);
}

/* ---- reading once, compiling many times ---- */

/* A read is kept as long as its object: its lists without room to grow (180,000 of them). */
static struct ptrvec fit(struct ptrvec pv)
{
	if (pv.n < pv.cap) {
		void **v = pv.n ? realloc(pv.v, pv.n * sizeof(*pv.v)) : NULL;
		if (!pv.n)
			free(pv.v);
		if (v || !pv.n) {
			pv.v = v;
			pv.cap = pv.n;
		}
	}
	return pv;
}

struct compile_read *compile_read(const struct compile_opts *o, const struct compile_input *in)
{
	struct compile_read *r = calloc(1, sizeof(*r));
	if (!r)
		abort();
	/* one object's records, 180,000 of them: a first block the size of its kind's (read_object),
	 * small ones after it; the duplicate check's keys outlive the reading in no read */
	r->records.block = 256;
	struct arena transient = { .block = 4096 };
	struct compile_stats st = { 0 };
	struct cctx c = cc_context(o, &r->d, &r->records, &st);
	struct mark file;
	c.transient = &transient;
	if (o->gateway_address && name_parse_addr(o->gateway_address, &c.gateway_address) &&
	    name_vip_error(&c.gateway_address))
		c.gateway_address.family = 0;   /* refused at every compile_plan_reads */
	read_inputs(&c, in, 1, &file, 0, true);
	arena_free(&transient);
	r->services = fit(c.services);
	r->pods = fit(c.pods);
	r->vss = fit(c.vss);
	r->drs = fit(c.drs);
	r->gateways = fit(c.gateways);
	strmap_free(&c.objects);
	r->objects = st.objects;
	r->skipped = st.skipped;
	r->refs = 1;
	return r;
}

struct compile_read *compile_read_hold(struct compile_read *r)
{
	if (r)
		r->refs++;
	return r;
}

void compile_read_set_text(struct compile_read *r, char *text)
{
	free(r->text);
	r->text = text;
}

const char *compile_read_text(const struct compile_read *r)
{
	return r ? r->text : NULL;
}

size_t compile_read_errors(const struct compile_read *r)
{
	return r->d.n;
}

void compile_read_free(struct compile_read *r)
{
	if (!r || --r->refs)
		return;
	free(r->text);
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
	for (size_t i = 0; i < c->vss.n; i++)
		cc_forget_routes(c->vss.v[i]);
	for (size_t i = 0; i < c->gateways.n; i++) {
		struct gateway *g = c->gateways.v[i];
		g->no_address_reported = false;
		for (uint32_t j = 0; j < g->n_servers; j++)
			g->servers[j].routed_by = NULL;
	}
}

/* The records of every read, as one compile's; their errors given again. */
static void gather_reads(struct cctx *c, struct compile_read *const *reads, size_t n_reads)
{
	for (size_t i = 0; i < n_reads; i++) {
		const struct compile_read *r = reads[i];
		append(&c->services, &r->services);
		append(&c->pods, &r->pods);
		append(&c->vss, &r->vss);
		append(&c->drs, &r->drs);
		append(&c->gateways, &r->gateways);
		for (size_t j = 0; j < r->d.n; j++)
			diag_error(c->d, &r->d.v[j].at, "%s", r->d.v[j].msg);
		c->st->objects += r->objects;
		c->st->skipped += r->skipped;
	}
	c->st->files = n_reads;
	forget_build(c);
}

int compile_plan_reads(const struct compile_opts *o, struct compile_read *const *reads, size_t n_reads,
		       struct plan *plan, struct diags *d, struct compile_stats *stats)
{
	struct compile_stats local;
	struct cctx c = compile_begin(o, d, plan, stats ? stats : &local);
	check_options(&c, o);
	gather_reads(&c, reads, n_reads);
	return resolve_and_build(&c, plan);
}

/* ---- building only what changed ---- */

void compile_memo_free(struct compile_memo *m)
{
	if (!m)
		return;
	cc_quick_free(m->quick);
	for (size_t i = 0; i < m->deps.cap; i++)
		if (m->deps.keys[i])
			cc_deps_put(m->deps.vals[i]);
	strmap_free(&m->deps);
	free(m);
}

/* Beyond this many changed pods, matching each against every destination costs more than a whole build. */
#define UPDATE_MAX_PODS 256

struct hot {
	struct strmap svcs, gws;     /* keys of changed Services (and DestinationRules' hosts), Gateways */
	struct ptrvec pods;          /* changed pods, before and after */
};

/* What a VirtualService names: its hosts' and destinations' Services, its Gateways. */
static void hot_vs(struct cctx *c, struct hot *h, const struct vs *v)
{
	char key[512];
	for (uint32_t i = 0; i < v->n_hosts; i++)
		if (cc_host_key(c, v->hosts[i], v->ns, key, sizeof(key)))
			strmap_put(&h->svcs, arena_strdup(c->keep, key), (void *)v);
	for (uint32_t i = 0; i < v->n_http + v->n_tcp; i++) {
		const struct route *r = i < v->n_http ? &v->http[i] : &v->tcp[i - v->n_http];
		for (uint32_t j = 0; j < r->n_dests; j++)
			if (r->dests[j].host && cc_host_key(c, r->dests[j].host, v->ns, key, sizeof(key)))
				strmap_put(&h->svcs, arena_strdup(c->keep, key), (void *)v);
	}
	for (uint32_t i = 0; i < v->n_gateways; i++) {
		const char *g = v->gateways[i];
		strmap_put(&h->gws, strchr(g, '/') ? g : cc_join(c->keep, '/', v->ns, g, NULL), (void *)v);
	}
}

static bool deps_hot(const struct vs_deps *dep, const struct hot *h)
{
	for (size_t i = 0; i < dep->svcs.n; i++)
		if (strmap_get(&h->svcs, dep->svcs.v[i]))
			return true;
	for (size_t i = 0; i < dep->gws.n; i++)
		if (strmap_get(&h->gws, dep->gws.v[i]))
			return true;
	for (size_t i = 0; i < dep->wants.n; i++)
		for (size_t p = 0; p < h->pods.n; p++)
			if (cc_want_matches(dep->wants.v[i], h->pods.v[p]))
				return true;
	return false;
}

/* The VirtualServices to build: new or changed ones, and those built from a changed Service,
 * DestinationRule host, Gateway or pod (either version of it). false: build them all. */
static bool affected(struct cctx *c, const struct compile_memo *memo, struct compile_read *const *changed,
		     size_t n_changed, struct strmap *build)
{
	struct hot h = { 0 };
	char key[512];
	for (size_t i = 0; i < n_changed; i++) {
		const struct compile_read *r = changed[i];
		for (size_t j = 0; j < r->services.n; j++)
			strmap_put(&h.svcs, ((struct service *)r->services.v[j])->key, r->services.v[j]);
		for (size_t j = 0; j < r->drs.n; j++) {
			const struct dr *dr = r->drs.v[j];
			if (cc_host_key(c, dr->host, dr->ns, key, sizeof(key)))
				strmap_put(&h.svcs, arena_strdup(c->keep, key), (void *)dr);
		}
		for (size_t j = 0; j < r->gateways.n; j++)
			strmap_put(&h.gws, ((struct gateway *)r->gateways.v[j])->key, r->gateways.v[j]);
		for (size_t j = 0; j < r->vss.n; j++) {
			const struct vs *v = r->vss.v[j];
			strmap_put(build, v->key, (void *)v);   /* a key no VirtualService has now builds nothing */
			hot_vs(c, &h, v);
		}
		append(&h.pods, &r->pods);
	}
	bool ok = h.pods.n <= UPDATE_MAX_PODS;
	for (size_t i = 0; ok && i < c->vss.n; i++) {
		const struct vs *v = c->vss.v[i];
		const struct vs_deps *dep = strmap_get(&memo->deps, v->key);
		if (!dep || deps_hot(dep, &h))
			strmap_put(build, v->key, (void *)v);
	}
	strmap_free(&h.svcs);
	strmap_free(&h.gws);
	ptrvec_free(&h.pods);
	return ok && build->len * 2 <= c->vss.n + n_changed;   /* half of them or more: build them all */
}

/* A batch of VirtualServices alone: the quick index stays true of everything else. */
static bool vss_alone(struct compile_read *const *changed, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (changed[i]->services.n || changed[i]->pods.n || changed[i]->drs.n || changed[i]->gateways.n)
			return false;
	return true;
}

/* The namespaces whose pods the VirtualServices to build can reach. */
static void build_namespaces(struct cctx *c, const struct strmap *build, struct strmap *ns)
{
	struct hot h = { 0 };
	for (size_t i = 0; i < c->vss.n; i++)
		if (strmap_get(build, ((struct vs *)c->vss.v[i])->key))
			hot_vs(c, &h, c->vss.v[i]);
	for (size_t i = 0; i < h.svcs.cap; i++)
		if (h.svcs.keys[i])
			strmap_put(ns, strchr(h.svcs.keys[i], '.') + 1, (void *)1);
	strmap_free(&h.svcs);
	strmap_free(&h.gws);
}

/* The last plan's entries by the VirtualService that routes them. */
static void entries_by_route(const struct plan *last, struct strmap *by, struct ptrvec *vecs)
{
	for (size_t i = 0; i < last->n_services; i++) {
		const struct plan_service *ps = &last->services[i];
		if (!ps->route)
			continue;
		struct ptrvec *pv = strmap_get(by, ps->route);
		if (!pv) {
			if (!(pv = calloc(1, sizeof(*pv))))
				abort();
			ptrvec_push(vecs, pv);
			strmap_put(by, ps->route, pv);
		}
		ptrvec_push(pv, (void *)ps);
	}
}

int compile_plan_update(const struct compile_opts *o, struct compile_read *const *reads, size_t n_reads,
			struct compile_read *const *changed, size_t n_changed, const struct plan *last,
			const struct compile_memo *memo, struct compile_memo **memo_out, struct plan *plan,
			struct diags *d, struct compile_stats *stats)
{
	struct compile_stats local;
	struct compile_memo *m = calloc(1, sizeof(*m));
	if (!m)
		abort();
	*memo_out = NULL;
	size_t errors_before = d->n;
	struct cctx c = compile_begin(o, d, plan, stats ? stats : &local);
	check_options(&c, o);
	gather_reads(&c, reads, n_reads);
	struct index ix = { 0 };
	cc_index_services(&c, &ix);
	struct strmap build = { 0 }, label_ns = { 0 }, last_entries = { 0 };
	struct ptrvec vecs = { 0 };
	bool scoped = memo && last && affected(&c, memo, changed, n_changed, &build);
	if (scoped) {
		build_namespaces(&c, &build, &label_ns);
		entries_by_route(last, &last_entries, &vecs);
	}
	/* a memo without the quick index makes one: every pod indexed by its labels */
	bool whole_index = !scoped || !memo->quick;
	cc_index_pods(&c, &ix, whole_index ? NULL : &label_ns);
	struct build_scope scope = { .build = scoped ? &build : NULL, .last_entries = &last_entries, .deps = &m->deps };
	cc_build_plan(&c, &ix, &scope, plan);
	for (size_t i = 0; scoped && !scope.failed && i < c.vss.n; i++) {
		const struct vs *v = c.vss.v[i];   /* what was not built keeps what it was built from */
		struct vs_deps *dep = strmap_get(&build, v->key) ? NULL : strmap_get(&memo->deps, v->key);
		if (dep) {
			dep->refs++;
			strmap_put(&m->deps, dep->key, dep);
		}
	}
	if (whole_index && !scope.failed && !d->n) {
		m->quick = cc_quick_new(&c, &ix, plan, &m->deps);
	} else if (!scope.failed && !d->n && vss_alone(changed, n_changed)) {
		m->quick = cc_quick_carry(memo->quick, &c, plan, last, &memo->deps, &m->deps);   /* now this memo's */
		((struct compile_memo *)memo)->quick = NULL;
	}
	cc_index_free(&ix);
	strmap_free(&build);
	strmap_free(&label_ns);
	strmap_free(&last_entries);
	for (size_t i = 0; i < vecs.n; i++) {
		ptrvec_free(vecs.v[i]);
		free(vecs.v[i]);
	}
	ptrvec_free(&vecs);
	if (scope.failed) {   /* the memo missed something: take back what this build said, build everything */
		diags_truncate(d, errors_before);
		compile_memo_free(m);
		finish(&c, plan);
		plan_free(plan);
		return compile_plan_update(o, reads, n_reads, NULL, 0, NULL, NULL, memo_out, plan, d, stats);
	}
	int rc = finish(&c, plan);
	if (rc)
		compile_memo_free(m);
	else
		*memo_out = m;
	return rc;
}
