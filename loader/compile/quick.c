// SPDX-License-Identifier: MIT
/* The follower's quick path (compile.h, compile_pods_update) for the change a cluster makes most:
 * pods that start, turn ready or unready, go. A partial build (compile_plan_update) still indexes
 * every object and checks the whole cluster at every batch, tens of milliseconds at 150,000 Pods;
 * here the index of the last build is kept (quick) and brought up to date by the pods of the
 * batch alone, the VirtualServices their labels reach are built again, and their addresses are
 * checked against the others'. Whatever it cannot decide exactly as a whole build would (another
 * kind changed, an address shared, any error) it leaves to compile_plan_update: it only ever
 * declines. tests/unit/compile_update_test.c holds it to whole builds. */
#include <stdlib.h>
#include <string.h>

#include "compile/resolve.h"

/* An address taken: by pods (how many), or as a VIP or Gateway address. */
struct taken {
	struct plan_addr addr;
	uint32_t pods;
	bool used, vip;
};

struct quick {
	struct index ix;             /* Services, DestinationRules, pods by label in every namespace */
	struct taken *taken;         /* open addressing; a slot once used keeps its address */
	size_t cap, used;
	/* the routes, brought up to date when VirtualServices alone change (cc_quick_carry) */
	struct strmap vss;           /* VirtualService key -> struct vs * */
	struct strmap wants;         /* "ns\x01key\x01value" -> struct ptrvec * of the vs_deps with a want
				      * that names it as its rarest label */
	struct strmap entries;       /* VirtualService key -> struct ptrvec * of its entries' places in the plan */
	struct lists {
		struct arena keys;
		struct ptrvec owned;
	} want_lists, entry_lists;
};

static struct taken *taken_slot(struct taken *t, size_t cap, const struct plan_addr *a)
{
	size_t mask = cap - 1;
	for (size_t i = cc_addr_hash(a) & mask;; i = (i + 1) & mask)
		if (!t[i].used || (t[i].addr.family == a->family && !memcmp(t[i].addr.addr, a->addr, 16)))
			return &t[i];
}

/* The slot of a, made if need be; slots no longer taken are dropped when the table grows. */
static struct taken *taken_get(struct quick *q, const struct plan_addr *a)
{
	if ((q->used + 1) * 10 > q->cap * 7) {   /* at most 70% full */
		size_t cap = q->cap ? q->cap : 1024;
		while ((q->used + 1) * 2 > cap)
			cap *= 2;
		struct taken *t = calloc(cap, sizeof(*t));
		if (!t)
			abort();
		q->used = 0;
		for (size_t i = 0; i < q->cap; i++)
			if (q->taken[i].used && (q->taken[i].pods || q->taken[i].vip)) {
				*taken_slot(t, cap, &q->taken[i].addr) = q->taken[i];
				q->used++;
			}
		free(q->taken);
		q->taken = t;
		q->cap = cap;
	}
	struct taken *s = taken_slot(q->taken, q->cap, a);
	if (!s->used) {
		s->used = true;
		s->addr = *a;
		q->used++;
	}
	return s;
}

/* A pod's addresses given up (-1) or taken (+1). false where a whole build could say otherwise
 * (an address that is a VIP, or another pod's) or its outcome would depend on which pod it meets
 * first (an address shared: a finished pod's, pods on their node's network). */
static bool pod_addresses(struct quick *q, const struct pod *p, int way)
{
	for (size_t a = 0; a < p->n_ips; a++) {
		struct taken *s = taken_get(q, &p->ips[a]);
		if (s->vip || (way > 0 && s->pods) || (way < 0 && s->pods != 1))
			return false;
		s->pods += (uint32_t)way;
	}
	return true;
}

static struct quick *routes(struct quick *q, struct cctx *c, const struct plan *plan, const struct strmap *deps);
static struct ptrvec *list_at(struct lists *l, struct strmap *m, const char *key)
{
	struct ptrvec *pv = strmap_get(m, key);
	if (!pv) {
		if (!(pv = calloc(1, sizeof(*pv))))
			abort();
		strmap_put(m, arena_strdup(&l->keys, key), pv);
		ptrvec_push(&l->owned, pv);
	}
	return pv;
}

static void lists_free(struct lists *l, struct strmap *m)
{
	for (size_t i = 0; i < l->owned.n; i++) {
		ptrvec_free(l->owned.v[i]);
		free(l->owned.v[i]);
	}
	ptrvec_free(&l->owned);
	arena_free(&l->keys);
	strmap_free(m);
}

void cc_quick_free(struct quick *q)
{
	if (!q)
		return;
	cc_index_free(&q->ix);
	strmap_free(&q->vss);
	lists_free(&q->want_lists, &q->wants);
	lists_free(&q->entry_lists, &q->entries);
	free(q->taken);
	free(q);
}

struct quick *cc_quick_new(struct cctx *c, struct index *ix, const struct plan *plan, const struct strmap *deps)
{
	struct quick *q = calloc(1, sizeof(*q));
	if (!q)
		abort();
	struct pod_ips ips = ix->pod_ips;
	q->ix = *ix;   /* its maps are the quick index's now; the pods' addresses are counted below */
	q->ix.pod_ips = (struct pod_ips){ 0 };
	memset(ix, 0, sizeof(*ix));
	ix->pod_ips = ips;   /* freed with ix */
	for (size_t i = 0; i < c->pods.n; i++) {
		const struct pod *p = c->pods.v[i];
		for (size_t a = 0; a < p->n_ips; a++)   /* counted as they are: the plan compiled */
			taken_get(q, &p->ips[a])->pods++;
	}
	for (size_t i = 0; i < c->services.n; i++) {
		const struct service *s = c->services.v[i];
		for (size_t a = 0; a < s->n_vips; a++)
			taken_get(q, &s->vips[a])->vip = true;
	}
	for (size_t i = 0; i < c->gateways.n; i++) {
		const struct gateway *g = c->gateways.v[i];
		for (size_t a = 0; a < g->n_addrs; a++)
			taken_get(q, &g->addrs[a])->vip = true;
	}
	return routes(q, c, plan, deps);
}

/* VirtualServices by key. */
static void vss_of(struct quick *q, struct cctx *c)
{
	strmap_free(&q->vss);
	for (size_t i = 0; i < c->vss.n; i++)
		strmap_put(&q->vss, ((struct vs *)c->vss.v[i])->key, c->vss.v[i]);
}

/* Where each VirtualService's entries are in the plan. */
static void places(struct quick *q, const struct plan *plan)
{
	lists_free(&q->entry_lists, &q->entries);
	for (size_t i = 0; i < plan->n_services; i++)
		if (plan->services[i].route)
			ptrvec_push(list_at(&q->entry_lists, &q->entries, plan->services[i].route), (void *)(uintptr_t)i);
}

/* dep's wants listed under their rarest labels (a pod it selects carries each of them). false for a
 * want of no label (every pod of its namespace: no label leads to it). */
static bool wants_add(struct quick *q, const struct vs_deps *dep)
{
	char key[768];
	for (size_t w = 0; w < dep->wants.n; w++) {
		const struct want *want = dep->wants.v[w];
		if (!want->labels.n)
			return false;
		uint32_t rarest = 0;
		size_t fewest = SIZE_MAX;
		for (uint32_t l = 0; l < want->labels.n; l++) {
			const struct ptrvec *pods = cc_pods_with_label(&q->ix, want->ns, &want->labels.v[l], false);
			if ((pods ? pods->n : 0) < fewest) {
				fewest = pods ? pods->n : 0;
				rarest = l;
			}
		}
		snprintf(key, sizeof(key), "%s\x01%s\x01%s", want->ns, want->labels.v[rarest].key,
			 want->labels.v[rarest].val);
		struct ptrvec *pv = list_at(&q->want_lists, &q->wants, key);
		if (!pv->n || pv->v[pv->n - 1] != dep)
			ptrvec_push(pv, (void *)dep);
	}
	return true;
}

/* dep out of every list it is in (under whichever of its labels it was listed). */
static void wants_drop(struct quick *q, const struct vs_deps *dep)
{
	char key[768];
	for (size_t w = 0; w < dep->wants.n; w++) {
		const struct want *want = dep->wants.v[w];
		for (uint32_t l = 0; l < want->labels.n; l++) {
			snprintf(key, sizeof(key), "%s\x01%s\x01%s", want->ns, want->labels.v[l].key, want->labels.v[l].val);
			struct ptrvec *pv = strmap_get(&q->wants, key);
			for (size_t k = 0; pv && k < pv->n; k++)
				if (pv->v[k] == dep)
					pv->v[k--] = pv->v[--pv->n];
		}
	}
}

static struct quick *routes(struct quick *q, struct cctx *c, const struct plan *plan, const struct strmap *deps)
{
	vss_of(q, c);
	places(q, plan);
	for (size_t i = 0; i < deps->cap; i++)
		if (deps->keys[i] && !wants_add(q, deps->vals[i])) {
			cc_quick_free(q);
			return NULL;
		}
	return q;
}

struct quick *cc_quick_carry(struct quick *q, struct cctx *c, const struct plan *plan, const struct plan *last,
			     const struct strmap *was, const struct strmap *deps)
{
	vss_of(q, c);
	bool moved = plan->n_services != last->n_services;
	for (size_t i = 0; i < plan->n_services && !moved; i++)
		moved = !plan->services[i].route != !last->services[i].route ||
			(plan->services[i].route && strcmp(plan->services[i].route, last->services[i].route));
	if (moved)
		places(q, plan);
	for (size_t i = 0; i < deps->cap; i++) {   /* the VirtualServices built: their deps are new */
		const struct vs_deps *dep = deps->keys[i] ? deps->vals[i] : NULL, *old = dep ? strmap_get(was, dep->key) : NULL;
		if (!dep || dep == old)
			continue;
		if (old)
			wants_drop(q, old);
		if (!wants_add(q, dep)) {
			cc_quick_free(q);
			return NULL;
		}
	}
	for (size_t i = 0; i < was->cap; i++)   /* the VirtualServices gone */
		if (was->keys[i] && !strmap_get(deps, was->keys[i]))
			wants_drop(q, was->vals[i]);
	return q;
}

/* The pods of reads that hold Pods alone, read without an error and not on their node's network
 * (whose endpoints may share an address and port, ordered as the whole build meets them). */
static bool pods_of(struct compile_read *const *reads, size_t n, struct ptrvec *pods)
{
	for (size_t i = 0; i < n; i++) {
		const struct compile_read *r = reads[i];
		if (r->services.n || r->vss.n || r->drs.n || r->gateways.n || r->d.n)
			return false;
		for (size_t j = 0; j < r->pods.n; j++) {
			const struct pod *p = r->pods.v[j];
			if (p->host_network)
				return false;
			ptrvec_push(pods, r->pods.v[j]);
		}
	}
	return true;
}

/* The VirtualServices whose destinations select one of the pods; false for one that binds a Gateway. */
static bool reached(struct quick *q, const struct ptrvec *pods, struct strmap *build)
{
	char key[768];
	for (size_t i = 0; i < pods->n; i++) {
		const struct pod *p = pods->v[i];
		for (uint32_t l = 0; l < p->labels.n; l++) {
			snprintf(key, sizeof(key), "%s\x01%s\x01%s", p->ns, p->labels.v[l].key, p->labels.v[l].val);
			const struct ptrvec *deps = strmap_get(&q->wants, key);
			for (size_t d = 0; deps && d < deps->n; d++) {
				const struct vs_deps *dep = deps->v[d];
				bool wants = false;
				for (size_t w = 0; w < dep->wants.n && !wants && !strmap_get(build, dep->key); w++)
					wants = cc_want_matches(dep->wants.v[w], p);
				if (!wants)
					continue;
				struct vs *v = strmap_get(&q->vss, dep->key);
				if (!v || v->n_gateways)
					return false;
				strmap_put(build, v->key, v);
			}
		}
	}
	return true;
}

/* The pods of the batch out of the index, then in. false: the index no longer says what it did. */
static bool move_pods(struct quick *q, const struct ptrvec *gone, const struct ptrvec *fresh)
{
	for (size_t i = 0; i < gone->n; i++) {
		const struct pod *p = gone->v[i];
		if (!pod_addresses(q, p, -1))
			return false;
		for (uint32_t l = 0; l < p->labels.n; l++) {
			struct ptrvec *pv = cc_pods_with_label(&q->ix, p->ns, &p->labels.v[l], false);
			size_t k = 0;
			while (pv && k < pv->n && pv->v[k] != p)
				k++;
			if (!pv || k == pv->n)
				return false;
			pv->v[k] = pv->v[--pv->n];   /* endpoints are sorted by address: the order is no one's */
		}
	}
	for (size_t i = 0; i < fresh->n; i++) {
		const struct pod *p = fresh->v[i];
		if (!pod_addresses(q, p, +1))
			return false;
		for (uint32_t l = 0; l < p->labels.n; l++)
			ptrvec_push(cc_pods_with_label(&q->ix, p->ns, &p->labels.v[l], true), (void *)p);
	}
	return true;
}

/* The entries of the VirtualServices to build, each compared with the one at its place in last. */
static bool build_again(struct quick *q, struct cctx *c, const struct strmap *build, const struct plan *last,
			struct ptrvec *changed, struct ptrvec *at)
{
	for (size_t i = 0; i < build->cap; i++) {
		struct vs *v = build->keys[i] ? build->vals[i] : NULL;
		if (!v)
			continue;
		struct ptrvec out = { 0 };
		const struct ptrvec *places = strmap_get(&q->entries, v->key);
		cc_build_vs(c, &q->ix, v, &out);
		bool ok = !c->d->n && out.n == (places ? places->n : 0);
		for (size_t k = 0; ok && k < out.n; k++) {
			size_t place = (uintptr_t)places->v[k];
			const struct plan_service *ps = out.v[k], *was = &last->services[place];
			ok = place < last->n_services && !plan_service_cmp(ps, was);
			if (ok && !plan_service_equal(ps, was)) {
				ptrvec_push(changed, out.v[k]);
				ptrvec_push(at, (void *)(uintptr_t)place);
			}
		}
		ptrvec_free(&out);
		if (!ok)
			return false;
	}
	return true;
}

void compile_delta_free(struct compile_delta *d)
{
	plan_free(&d->entries);
	free(d->at);
	d->at = NULL;
}

int compile_pods_update(const struct compile_opts *o, struct compile_read *const *gone, size_t n_gone,
			struct compile_read *const *fresh, size_t n_fresh, const struct plan *last,
			struct compile_memo *memo, struct compile_delta *out, struct compile_stats *stats)
{
	struct quick *q = memo ? memo->quick : NULL;
	struct ptrvec pods_gone = { 0 }, pods_fresh = { 0 }, changed = { 0 }, at = { 0 };
	struct strmap build = { 0 };
	struct compile_stats local;
	memset(out, 0, sizeof(*out));
	bool ok = q && last && pods_of(gone, n_gone, &pods_gone) && pods_of(fresh, n_fresh, &pods_fresh) &&
		  reached(q, &pods_gone, &build) && reached(q, &pods_fresh, &build);
	bool touched = ok;   /* from here the index changes: a failure drops it */
	struct arena *keep = ok ? calloc(1, sizeof(*keep)) : NULL;
	struct diags d = { 0 };
	if (ok && !keep)
		abort();
	struct cctx c = cc_context(o, &d, keep, stats ? stats : &local);
	memset(c.st, 0, sizeof(*c.st));
	ok = ok && move_pods(q, &pods_gone, &pods_fresh) && build_again(q, &c, &build, last, &changed, &at);
	if (ok) {
		out->entries.arena = keep;
		out->entries.n_services = changed.n;
		out->entries.services = arena_alloc(keep, (changed.n + 1) * sizeof(*out->entries.services));
		if (!(out->at = calloc(changed.n + 1, sizeof(*out->at))))
			abort();
		for (size_t i = 0; i < changed.n; i++) {
			out->entries.services[i] = *(struct plan_service *)changed.v[i];
			out->at[i] = (uintptr_t)at.v[i];
		}
		c.st->vs_built = build.len;
		c.st->vs_total = q->vss.len;
		c.st->services = last->n_services;
	} else {
		plan_free(&(struct plan){ .arena = keep });
		if (touched) {
			cc_quick_free(q);
			memo->quick = NULL;
		}
	}
	diags_free(&d);
	ptrvec_free(&pods_gone);
	ptrvec_free(&pods_fresh);
	ptrvec_free(&changed);
	ptrvec_free(&at);
	strmap_free(&build);
	return ok ? 0 : -1;
}
