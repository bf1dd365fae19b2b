// SPDX-License-Identifier: MIT
#include "kube/reflector.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <linux/capability.h>
#include <sys/syscall.h>

#include "common/json.h"
#include "common/util.h"
#include "compile/compile.h"
#include "compile/ytree.h"
#include "kube/client.h"

#define LIST_PAGE 500
#define BACKOFF_MIN_MS 200
#define BACKOFF_MAX_MS 30000
#define ABSENT_RECHECK_S 10        /* a CRD not installed: discovery asked again this often */

enum outcome { DONE, RELIST, RETRY, STOPPED };

static void set_error(struct reflector *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_error(struct reflector *r, const char *fmt, ...)
{
	va_list ap;
	pthread_mutex_lock(&r->lock);
	va_start(ap, fmt);
	vsnprintf(r->st.error, sizeof(r->st.error), fmt, ap);
	va_end(ap);
	pthread_mutex_unlock(&r->lock);
}

static void set_rv(struct reflector *r, const char *rv, size_t len, bool event)
{
	pthread_mutex_lock(&r->lock);
	snprintf(r->st.resource_version, sizeof(r->st.resource_version), "%.*s", (int)len, rv);
	if (event)
		r->st.last_event = time(NULL);
	pthread_mutex_unlock(&r->lock);
}

void reflector_state(struct reflector *r, struct reflector_state *out)
{
	pthread_mutex_lock(&r->lock);
	*out = r->st;
	pthread_mutex_unlock(&r->lock);
}

/* Sleeps ms in slices, so that stop is heard. false when stopped. */
static bool pause_ms(struct reflector *r, long ms)
{
	while (ms > 0 && !*r->stop) {
		long slice = ms < 200 ? ms : 200;
		usleep((useconds_t)slice * 1000);
		ms -= slice;
	}
	return !*r->stop;
}

/* Exponential backoff with jitter (client-go's shape): the wait doubles, +-50% at random. */
static bool back_off(struct reflector *r, long *backoff_ms)
{
	long ms = *backoff_ms / 2 + random() % (*backoff_ms + 1);
	*backoff_ms = *backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : *backoff_ms * 2;
	return pause_ms(r, ms);
}

/* ---- JSON text of an object, as the compiler reads it ---- */

/* An object as JSON text, with the apiVersion and kind a list's items leave out: what the follower
 * keeps of it (150,000 Pods as the API sends them are 200 MB). */
static char *object_json(struct reflector *r, const struct ynode *obj, size_t *len)
{
	char *text = NULL, api_version[96];
	FILE *m = open_memstream(&text, len);
	json_writer_t *w = jsonw_new(m);
	if (r->group)
		snprintf(api_version, sizeof(api_version), "%s/%s", r->group, r->st.version);
	else
		snprintf(api_version, sizeof(api_version), "v1");
	jsonw_start_object(w);
	if (!ymap_get(obj, "apiVersion"))
		jsonw_string_field(w, "apiVersion", api_version);
	if (!ymap_get(obj, "kind"))
		jsonw_string_field(w, "kind", r->kind);
	for (uint32_t i = 0; i < obj->n; i++)   /* as the compiler reads it: most of what the API sends is not */
		if (ymap_key(obj, i)->type == YN_SCALAR)
			compile_member_json(w, r->kind, ymap_key(obj, i), ymap_val(obj, i));
	jsonw_end_object(w);
	jsonw_free(&w);   /* no newline: the caller frames objects itself */
	fclose(m);
	return text;
}

static const char *meta_str(const struct ynode *obj, const char *key, size_t *len)
{
	const struct ynode *n = ymap_get(ymap_get(obj, "metadata"), key);
	if (!n || n->type != YN_SCALAR)
		return NULL;
	if (len)
		*len = n->len;
	return n->str;
}

/* One object to the caller, with its namespace and name (objects without a name are passed over). */
static void deliver(struct reflector *r, enum kube_event_type type, const struct ynode *obj)
{
	size_t nl = 0, nsl = 0, len;
	const char *name = meta_str(obj, "name", &nl), *ns = meta_str(obj, "namespace", &nsl);
	if (!name || obj->type != YN_MAP)
		return;
	char *n = strndup(name, nl), *s = ns ? strndup(ns, nsl) : strdup("");
	char *json = object_json(r, obj, &len);
	if (n && s && json)
		r->cb->object(r->ctx, r, type, s, n, json, len);
	free(json);
	free(n);
	free(s);
}

/* ---- discovery, list, watch ---- */

static void collection(struct reflector *r, char *buf, size_t len)
{
	char prefix[128];
	if (r->group)
		snprintf(prefix, sizeof(prefix), "/apis/%s/%s", r->group, r->st.version);
	else
		snprintf(prefix, sizeof(prefix), "/api/v1");
	if (r->namespace)
		snprintf(buf, len, "%s/namespaces/%s/%s", prefix, r->namespace, r->resource);
	else
		snprintf(buf, len, "%s/%s", prefix, r->resource);
}

struct versions_ctx {
	struct reflector *r;
	bool found;
};

static void on_group(void *ctx, const struct mark *file, struct ynode *root)
{
	struct versions_ctx *v = ctx;
	const struct ynode *list = ymap_get(root, "versions");
	(void)file;
	for (const char *const *want = v->r->versions; *want && !v->found; want++)
		for (uint32_t i = 0; list && list->type == YN_SEQ && i < list->n && !v->found; i++) {
			const struct ynode *ver = ymap_get(list->items[i], "version");
			if (ver && ver->type == YN_SCALAR && !strcmp(ver->str, *want)) {
				snprintf(v->r->st.version, sizeof(v->r->st.version), "%s", *want);
				v->found = true;
			}
		}
}

/* Which version of the group the API serves (Istio's CRDs: v1, v1beta1 or v1alpha3). */
static enum outcome discover(struct reflector *r, struct kube_client *c)
{
	char path[160], err[256], msg[256];
	struct kube_response resp;
	if (!r->group) {
		snprintf(r->st.version, sizeof(r->st.version), "v1");
		return DONE;
	}
	snprintf(path, sizeof(path), "/apis/%s", r->group);
	if (kube_request(c, "GET", path, NULL, NULL, &resp, err, sizeof(err))) {
		set_error(r, "discovery of %s: %s", r->group, err);
		return *r->stop ? STOPPED : RETRY;
	}
	struct versions_ctx v = { .r = r };
	if (resp.status == 200) {
		struct diags d = { 0 };
		struct mark file = { .file = path, .line = 1, .col = 1 };
		pthread_mutex_lock(&r->lock);
		yaml_each_document((const unsigned char *)resp.body, resp.len, &file, &d, on_group, &v);
		pthread_mutex_unlock(&r->lock);
		diags_free(&d);
	}
	enum outcome out = DONE;
	if (resp.status == 404 || (resp.status == 200 && !v.found)) {
		pthread_mutex_lock(&r->lock);
		r->st.absent = true;
		snprintf(r->st.error, sizeof(r->st.error), "the API serves no %s of %s: its CRD is not installed; "
			 "watched for every %d s", r->resource, r->group, ABSENT_RECHECK_S);
		pthread_mutex_unlock(&r->lock);
		out = RELIST;   /* the caller treats an absent resource as an empty list */
	} else if (resp.status != 200) {
		set_error(r, "discovery of %s: HTTP %ld: %s", r->group, resp.status, kube_status_message(&resp, msg, sizeof(msg)));
		out = RETRY;
	} else {
		pthread_mutex_lock(&r->lock);
		r->st.absent = false;
		pthread_mutex_unlock(&r->lock);
	}
	kube_response_free(&resp);
	return out;
}

struct page_ctx {
	struct reflector *r;
	char cont[1024];
	bool ok;
};

static void on_page(void *ctx, const struct mark *file, struct ynode *root)
{
	struct page_ctx *p = ctx;
	struct reflector *r = p->r;
	const struct ynode *items = ymap_get(root, "items");
	size_t n;
	(void)file;
	if (!items || items->type != YN_SEQ)
		return;
	p->ok = true;
	const char *rv = meta_str(root, "resourceVersion", &n), *cont = meta_str(root, "continue", NULL);
	if (rv)
		set_rv(r, rv, n, items->n > 0);
	snprintf(p->cont, sizeof(p->cont), "%s", cont ? cont : "");
	for (uint32_t i = 0; i < items->n; i++) {
		deliver(r, KUBE_ADDED, items->items[i]);
	}
}

/* A query value, percent-encoded: continue tokens are base64 with '+', '/' and '='. */
static void url_escape(const char *s, char *out, size_t cap)
{
	size_t o = 0;
	for (; *s && o + 4 < cap; s++) {
		unsigned char c = (unsigned char)*s;
		if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || strchr("-._~", c))
			out[o++] = (char)c;
		else
			o += (size_t)snprintf(out + o, cap - o, "%%%02X", c);
	}
	out[o] = 0;
}

/* The whole collection, page by page, framed by relist_begin/relist_end. */
static enum outcome list(struct reflector *r, struct kube_client *c)
{
	char coll[256], path[256 + 3 * 1024 + 64], err[256], msg[256];
	struct page_ctx p = { .r = r };
	bool begun = false;
	collection(r, coll, sizeof(coll));
	pthread_mutex_lock(&r->lock);
	r->st.lists++;
	pthread_mutex_unlock(&r->lock);
	do {
		struct kube_response resp;
		char cont[sizeof(p.cont) * 3];
		url_escape(p.cont, cont, sizeof(cont));
		snprintf(path, sizeof(path), "%s?limit=%d%s%s", coll, LIST_PAGE, cont[0] ? "&continue=" : "", cont);
		if (kube_request(c, "GET", path, NULL, NULL, &resp, err, sizeof(err))) {
			set_error(r, "list %s: %s", coll, err);
			return *r->stop ? STOPPED : RETRY;
		}
		if (resp.status != 200) {
			long status = resp.status;
			set_error(r, "list %s: HTTP %ld: %s", coll, status, kube_status_message(&resp, msg, sizeof(msg)));
			kube_response_free(&resp);
			return status == 410 ? RELIST : status == 404 && r->group ? RELIST : RETRY;
		}
		if (!begun) {
			r->cb->relist_begin(r->ctx, r);
			begun = true;
		}
		struct diags d = { 0 };
		struct mark file = { .file = coll, .line = 1, .col = 1 };
		p.ok = false;
		yaml_each_document((const unsigned char *)resp.body, resp.len, &file, &d, on_page, &p);
		kube_response_free(&resp);
		if (d.n || !p.ok) {
			set_error(r, "list %s: not a list%s%s", coll, d.n ? ": " : "", d.n ? d.v[0].msg : "");
			diags_free(&d);
			r->cb->relist_end(r->ctx, r);   /* what arrived stays; a later list completes it */
			return RETRY;
		}
		diags_free(&d);
	} while (p.cont[0] && !*r->stop);
	r->cb->relist_end(r->ctx, r);
	pthread_mutex_lock(&r->lock);
	r->st.synced = true;
	r->st.error[0] = 0;
	pthread_mutex_unlock(&r->lock);
	return DONE;
}

struct watch_ctx {
	struct reflector *r;
	enum outcome outcome;
	char error[256];
};

static void on_event(void *ctx, const struct mark *file, struct ynode *root)
{
	struct watch_ctx *w = ctx;
	struct reflector *r = w->r;
	const struct ynode *type = ymap_get(root, "type"), *obj = ymap_get(root, "object");
	size_t n;
	(void)file;
	if (!type || type->type != YN_SCALAR || !obj || obj->type != YN_MAP) {
		/* not an event: an error Status answered instead of a stream */
		const struct ynode *code = ymap_get(root, "code"), *msg = ymap_get(root, "message");
		bool has_code = code && code->type == YN_SCALAR;
		w->outcome = has_code && !strcmp(code->str, "410") ? RELIST : RETRY;
		snprintf(w->error, sizeof(w->error), "watch: %s%s%s%s", has_code ? "HTTP " : "", has_code ? code->str : "",
			 has_code ? ": " : "", msg && msg->type == YN_SCALAR ? msg->str : "not a watch event");
		return;
	}
	const char *rv = meta_str(obj, "resourceVersion", &n);
	if (!strcmp(type->str, "BOOKMARK")) {
		if (rv)
			set_rv(r, rv, n, false);
		return;
	}
	if (!strcmp(type->str, "ERROR")) {
		const struct ynode *code = ymap_get(obj, "code"), *msg = ymap_get(obj, "message");
		w->outcome = code && code->type == YN_SCALAR && !strcmp(code->str, "410") ? RELIST : RETRY;
		snprintf(w->error, sizeof(w->error), "watch: %s", msg && msg->type == YN_SCALAR ? msg->str : "ERROR event");
		return;
	}
	enum kube_event_type t = !strcmp(type->str, "ADDED") ? KUBE_ADDED : !strcmp(type->str, "DELETED") ? KUBE_DELETED :
				 KUBE_MODIFIED;
	deliver(r, t, obj);
	if (rv)
		set_rv(r, rv, n, true);
}

static int on_line(void *ctx, const char *line, size_t len)
{
	struct watch_ctx *w = ctx;
	struct diags d = { 0 };
	struct mark file = { .file = "watch", .line = 1, .col = 1 };
	if (!line) {   /* the watch is open: an earlier failure is over */
		pthread_mutex_lock(&w->r->lock);
		w->r->st.error[0] = 0;
		pthread_mutex_unlock(&w->r->lock);
		return 0;
	}
	if (!len)
		return 0;
	yaml_each_document((const unsigned char *)line, len, &file, &d, on_event, w);
	if (d.n) {
		w->outcome = RETRY;
		snprintf(w->error, sizeof(w->error), "watch: an event that is not JSON: %s", d.v[0].msg);
	}
	diags_free(&d);
	return w->outcome != DONE || *w->r->stop;
}

/* Watches from the current resourceVersion until the stream ends (DONE: watch again) or fails. */
static enum outcome watch(struct reflector *r, struct kube_client *c)
{
	char coll[256], path[512], err[256];
	struct watch_ctx w = { .r = r, .outcome = DONE };
	long status;
	collection(r, coll, sizeof(coll));
	pthread_mutex_lock(&r->lock);
	r->st.watches++;
	snprintf(path, sizeof(path), "%s?watch=1&allowWatchBookmarks=true&resourceVersion=%s&timeoutSeconds=%ld", coll,
		 r->st.resource_version, 300 + random() % 300);   /* client-go's 5 to 10 minutes */
	pthread_mutex_unlock(&r->lock);
	int rc = kube_stream(c, path, r->idle_s, on_line, &w, &status, err, sizeof(err));
	if (*r->stop)
		return STOPPED;
	if (w.outcome != DONE) {
		set_error(r, "%s", w.error);
		return w.outcome;
	}
	if (rc) {
		set_error(r, "watch %s: %s", coll, err);
		return RETRY;
	}
	if (status == 410)
		return RELIST;
	if (status != 200) {
		set_error(r, "watch %s: HTTP %ld", coll, status);
		return status == 404 && r->group ? RELIST : RETRY;
	}
	return DONE;
}

/* A thread that talks to the API server holds no capability, whatever its process keeps. */
static void drop_thread_capabilities(void)
{
	struct __user_cap_header_struct h = { .version = _LINUX_CAPABILITY_VERSION_3, .pid = 0 };
	struct __user_cap_data_struct none[2] = { { 0 } };
	syscall(SYS_capset, &h, none);
}

static void *run(void *arg)
{
	struct reflector *r = arg;
	drop_thread_capabilities();
	struct kube_client *c = kube_client_new(r->cfg);
	long backoff = BACKOFF_MIN_MS;
	bool listed = false;
	if (!c) {
		set_error(r, "out of memory");
		return NULL;
	}
	kube_client_stop_on(c, r->stop);
	while (!*r->stop) {
		if (!listed) {
			enum outcome o = discover(r, c);
			if (o == RELIST) {   /* absent: an empty list, asked again later */
				r->cb->relist_begin(r->ctx, r);
				r->cb->relist_end(r->ctx, r);
				pthread_mutex_lock(&r->lock);
				r->st.synced = true;
				pthread_mutex_unlock(&r->lock);
				pause_ms(r, ABSENT_RECHECK_S * 1000L);
				continue;
			}
			if (o == DONE)
				o = list(r, c);
			if (o == DONE) {
				listed = true;
				backoff = BACKOFF_MIN_MS;
				continue;
			}
			if (o == STOPPED || !back_off(r, &backoff))
				break;
			continue;
		}
		enum outcome o = watch(r, c);
		if (o == DONE) {
			backoff = BACKOFF_MIN_MS;
			continue;   /* the server ended the stream (timeoutSeconds): watch again */
		}
		if (o == STOPPED)
			break;
		if (o == RELIST)
			listed = false;   /* 410 Gone, or the resource went away */
		if (!back_off(r, &backoff))
			break;
	}
	kube_client_free(c);
	return NULL;
}

int reflector_start(struct reflector *r, const struct kube_config *cfg, const struct reflector_callbacks *cb,
		    void *ctx, volatile sig_atomic_t *stop)
{
	static const char *const core[] = { "v1", NULL };
	r->cfg = cfg;
	r->cb = cb;
	r->ctx = ctx;
	r->stop = stop;
	if (!r->versions)
		r->versions = core;
	if (!r->idle_s)
		r->idle_s = 120;
	memset(&r->st, 0, sizeof(r->st));
	pthread_mutex_init(&r->lock, NULL);
	int rc = pthread_create(&r->thread, NULL, run, r);
	r->started = rc == 0;
	return -rc;
}

void reflector_join(struct reflector *r)
{
	if (r->started)
		pthread_join(r->thread, NULL);
	r->started = false;
}
