// SPDX-License-Identifier: MIT
#include "kube/client.h"

#include <curl/curl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/fs.h"
#include "common/util.h"
#include "compile/ytree.h"

#define CONNECT_TIMEOUT_S 10L
#define REQUEST_TIMEOUT_S 60L     /* a whole non-watch request; a list of 80,000 pods takes seconds */

struct kube_client {
	CURL *curl;
	const struct kube_config *cfg;
	volatile sig_atomic_t *stop;
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;

static void curl_init_once(void)
{
	curl_global_init(CURL_GLOBAL_DEFAULT);
}

struct kube_client *kube_client_new(const struct kube_config *cfg)
{
	pthread_once(&curl_once, curl_init_once);
	struct kube_client *c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->cfg = cfg;
	c->curl = curl_easy_init();
	if (!c->curl) {
		free(c);
		return NULL;
	}
	return c;
}

void kube_client_free(struct kube_client *c)
{
	if (!c)
		return;
	curl_easy_cleanup(c->curl);
	free(c);
}

void kube_client_stop_on(struct kube_client *c, volatile sig_atomic_t *stop)
{
	c->stop = stop;
}

static int on_progress(void *ctx, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow)
{
	struct kube_client *c = ctx;
	(void)dltotal, (void)dlnow, (void)ultotal, (void)ulnow;
	return c->stop && *c->stop;
}

/* The handle set up for one request: TLS against the cluster's CA, the user's credentials. */
static struct curl_slist *prepare(struct kube_client *c, const char *method, const char *path,
				  const char *content_type, char *err, size_t len)
{
	const struct kube_config *cfg = c->cfg;
	CURL *h = c->curl;
	char *url, *auth = NULL;
	struct curl_slist *hdrs = NULL;
	curl_easy_reset(h);
	if (asprintf(&url, "%s%s", cfg->server, path) < 0)
		abort();
	curl_easy_setopt(h, CURLOPT_URL, url);
	free(url);
	curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
	if (cfg->ca_file)
		curl_easy_setopt(h, CURLOPT_CAINFO, cfg->ca_file);
	if (cfg->ca_pem) {
		struct curl_blob b = { .data = cfg->ca_pem, .len = strlen(cfg->ca_pem), .flags = CURL_BLOB_COPY };
		curl_easy_setopt(h, CURLOPT_CAINFO_BLOB, &b);
	}
	if (cfg->cert_file) {
		curl_easy_setopt(h, CURLOPT_SSLCERT, cfg->cert_file);
		curl_easy_setopt(h, CURLOPT_SSLKEY, cfg->key_file);
	}
	if (cfg->cert_pem) {
		struct curl_blob cb = { .data = cfg->cert_pem, .len = strlen(cfg->cert_pem), .flags = CURL_BLOB_COPY };
		struct curl_blob kb = { .data = cfg->key_pem, .len = strlen(cfg->key_pem), .flags = CURL_BLOB_COPY };
		curl_easy_setopt(h, CURLOPT_SSLCERT_BLOB, &cb);
		curl_easy_setopt(h, CURLOPT_SSLKEY_BLOB, &kb);
	}
	const char *token = cfg->token;
	unsigned char *file_token = NULL;
	size_t n = 0;
	if (!token && cfg->token_file) {
		int rc = fs_read_file(cfg->token_file, &file_token, &n);
		if (rc) {
			snprintf(err, len, "cannot read the token file %s: %s", cfg->token_file, strerror(-rc));
			return NULL;
		}
		file_token[strcspn((char *)file_token, "\r\n")] = 0;
		token = (const char *)file_token;
	}
	if (token && asprintf(&auth, "Authorization: Bearer %s", token) >= 0)
		hdrs = curl_slist_append(hdrs, auth);
	free(auth);
	free(file_token);
	hdrs = curl_slist_append(hdrs, "Accept: application/json");
	hdrs = curl_slist_append(hdrs, "User-Agent: sluice");
	if (content_type) {
		char ct[128];
		snprintf(ct, sizeof(ct), "Content-Type: %s", content_type);
		hdrs = curl_slist_append(hdrs, ct);
	}
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, CONNECT_TIMEOUT_S);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);   /* threads: no SIGALRM for timeouts */
	curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
	curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
	curl_easy_setopt(h, CURLOPT_XFERINFODATA, c);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, NULL);
	return hdrs;
}

struct buffer {
	char *data;
	size_t len, cap;
};

static size_t on_body(char *p, size_t size, size_t n, void *ctx)
{
	struct buffer *b = ctx;
	size_t k = size * n;
	if (b->len + k + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 16384;
		while (cap < b->len + k + 1)
			cap *= 2;
		char *d = realloc(b->data, cap);
		if (!d)
			return 0;
		b->data = d;
		b->cap = cap;
	}
	memcpy(b->data + b->len, p, k);
	b->len += k;
	b->data[b->len] = 0;
	return k;
}

static int transport_error(CURLcode rc, const char *ebuf, struct kube_client *c, char *err, size_t len)
{
	if (c->stop && *c->stop)
		snprintf(err, len, "stopped");
	else
		snprintf(err, len, "%s", ebuf[0] ? ebuf : curl_easy_strerror(rc));
	return -1;
}

int kube_request(struct kube_client *c, const char *method, const char *path, const char *content_type,
		 const char *body, struct kube_response *resp, char *err, size_t len)
{
	char ebuf[CURL_ERROR_SIZE] = "";
	struct buffer b = { 0 };
	memset(resp, 0, sizeof(*resp));
	struct curl_slist *hdrs = prepare(c, method, path, content_type, err, len);
	if (!hdrs)
		return -1;
	curl_easy_setopt(c->curl, CURLOPT_ERRORBUFFER, ebuf);
	curl_easy_setopt(c->curl, CURLOPT_TIMEOUT, REQUEST_TIMEOUT_S);
	curl_easy_setopt(c->curl, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(c->curl, CURLOPT_WRITEDATA, &b);
	if (body) {
		curl_easy_setopt(c->curl, CURLOPT_POSTFIELDS, body);
		curl_easy_setopt(c->curl, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
	}
	CURLcode rc = curl_easy_perform(c->curl);
	curl_slist_free_all(hdrs);
	if (rc != CURLE_OK) {
		free(b.data);
		return transport_error(rc, ebuf, c, err, len);
	}
	curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &resp->status);
	resp->body = b.data ? b.data : strdup("");
	resp->len = b.len;
	return 0;
}

void kube_response_free(struct kube_response *resp)
{
	free(resp->body);
	memset(resp, 0, sizeof(*resp));
}

struct stream {
	struct buffer pending;       /* the part of a line not yet ended */
	kube_line_fn fn;
	void *ctx;
	bool stopped_by_fn;
	CURL *curl;
};

/* The headers' end: a 200 means the stream is open, which fn hears as a NULL line. */
static size_t on_stream_header(char *p, size_t size, size_t n, void *ctx)
{
	struct stream *s = ctx;
	long code = 0;
	if (size * n == 2 && p[0] == '\r' && p[1] == '\n' &&
	    curl_easy_getinfo(s->curl, CURLINFO_RESPONSE_CODE, &code) == CURLE_OK && code == 200)
		s->fn(s->ctx, NULL, 0);
	return size * n;
}

static size_t on_stream(char *p, size_t size, size_t n, void *ctx)
{
	struct stream *s = ctx;
	size_t k = size * n, start = 0;
	for (size_t i = 0; i < k; i++) {
		if (p[i] != '\n')
			continue;
		int rc;
		if (s->pending.len) {
			if (!on_body(p + start, 1, i - start, &s->pending))
				return 0;
			rc = s->fn(s->ctx, s->pending.data, s->pending.len);
			s->pending.len = 0;
		} else {
			rc = s->fn(s->ctx, p + start, i - start);
		}
		start = i + 1;
		if (rc) {
			s->stopped_by_fn = true;
			return 0;   /* ends the transfer */
		}
	}
	if (start < k && !on_body(p + start, 1, k - start, &s->pending))
		return 0;
	return k;
}

int kube_stream(struct kube_client *c, const char *path, long idle_s, kube_line_fn fn, void *ctx, long *status,
		char *err, size_t len)
{
	char ebuf[CURL_ERROR_SIZE] = "";
	struct stream s = { .fn = fn, .ctx = ctx, .curl = c->curl };
	*status = 0;
	struct curl_slist *hdrs = prepare(c, "GET", path, NULL, err, len);
	if (!hdrs)
		return -1;
	curl_easy_setopt(c->curl, CURLOPT_HEADERFUNCTION, on_stream_header);
	curl_easy_setopt(c->curl, CURLOPT_HEADERDATA, &s);
	curl_easy_setopt(c->curl, CURLOPT_ERRORBUFFER, ebuf);
	curl_easy_setopt(c->curl, CURLOPT_WRITEFUNCTION, on_stream);
	curl_easy_setopt(c->curl, CURLOPT_WRITEDATA, &s);
	/* nothing for idle_s seconds (not even a bookmark): the connection is taken for stalled */
	curl_easy_setopt(c->curl, CURLOPT_LOW_SPEED_LIMIT, 1L);
	curl_easy_setopt(c->curl, CURLOPT_LOW_SPEED_TIME, idle_s);
	CURLcode rc = curl_easy_perform(c->curl);
	curl_slist_free_all(hdrs);
	curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, status);
	if (s.pending.len && !s.stopped_by_fn && rc == CURLE_OK)
		fn(ctx, s.pending.data, s.pending.len);   /* a last line without a newline (an error Status) */
	free(s.pending.data);
	if (rc == CURLE_OK || (rc == CURLE_WRITE_ERROR && s.stopped_by_fn))
		return 0;
	if (rc == CURLE_OPERATION_TIMEDOUT)
		snprintf(err, len, "nothing received for %ld s: the watch stalled", idle_s);
	else
		transport_error(rc, ebuf, c, err, len);
	return -1;
}

struct message_ctx {
	char *buf;
	size_t len;
	bool found;
};

static void on_status(void *ctx, const struct mark *file, struct ynode *root)
{
	struct message_ctx *m = ctx;
	const struct ynode *msg = ymap_get(root, "message");
	(void)file;
	if (!m->found && msg && msg->type == YN_SCALAR) {
		snprintf(m->buf, m->len, "%s", msg->str);
		m->found = true;
	}
}

const char *kube_status_message(const struct kube_response *resp, char *buf, size_t len)
{
	struct message_ctx m = { .buf = buf, .len = len };
	struct diags d = { 0 };
	struct mark file = { .file = "response", .line = 1, .col = 1 };
	if (resp->body && resp->len)
		yaml_each_document((const unsigned char *)resp->body, resp->len, &file, &d, on_status, &m);
	diags_free(&d);
	if (!m.found)
		snprintf(buf, len, "%.*s", (int)(resp->len < 200 ? resp->len : 200), resp->body ? resp->body : "");
	return buf;
}
