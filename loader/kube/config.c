// SPDX-License-Identifier: MIT
#include "kube/config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/fs.h"
#include "common/util.h"
#include "compile/ytree.h"

#define SA_DIR "/var/run/secrets/kubernetes.io/serviceaccount"

static int fail(char *err, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(char *err, size_t len, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, len, fmt, ap);
	va_end(ap);
	return -1;
}

/* Base64 as kubeconfig's *-data fields carry PEM: the decoded text, NUL-terminated; NULL if not base64. */
static char *base64_decode(const char *s, size_t n)
{
	char *out = malloc(n / 4 * 3 + 4);
	size_t o = 0;
	unsigned acc = 0, bits = 0;
	if (!out)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		int v = c >= 'A' && c <= 'Z' ? c - 'A' : c >= 'a' && c <= 'z' ? c - 'a' + 26 : c >= '0' && c <= '9' ? c - '0' + 52 :
			c == '+' ? 62 : c == '/' ? 63 : -1;
		if (c == '=' || c == '\n' || c == '\r' || c == ' ')
			continue;
		if (v < 0) {
			free(out);
			return NULL;
		}
		acc = acc << 6 | (unsigned)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			out[o++] = (char)(acc >> bits & 0xff);
		}
	}
	out[o] = 0;
	return out;
}

static char *dup_scalar(const struct ynode *m, const char *key)
{
	const struct ynode *n = ymap_get(m, key);
	return n && n->type == YN_SCALAR && !ynode_is_null(n) ? strndup(n->str, n->len) : NULL;
}

/* A named entry of a kubeconfig list (clusters, users, contexts): its inner mapping. */
static const struct ynode *named(const struct ynode *root, const char *list, const char *inner, const char *name)
{
	const struct ynode *l = ymap_get(root, list);
	for (uint32_t i = 0; l && l->type == YN_SEQ && i < l->n; i++) {
		const struct ynode *e = l->items[i], *n = ymap_get(e, "name");
		if (n && n->type == YN_SCALAR && !strcmp(n->str, name))
			return ymap_get(e, inner);
	}
	return NULL;
}

/* A path in a kubeconfig is relative to the file's directory, as kubectl resolves it. */
static char *resolve_path(const char *kubeconfig, char *path)
{
	if (!path || path[0] == '/')
		return path;
	const char *slash = strrchr(kubeconfig, '/');
	char *full;
	if (!slash || asprintf(&full, "%.*s/%s", (int)(slash - kubeconfig), kubeconfig, path) < 0)
		return path;
	free(path);
	return full;
}

struct parse {
	struct kube_config *cfg;
	const char *want_context, *path;
	char *err;
	size_t len;
	int rc;
	int seen;
};

static int pem_field(struct parse *p, const struct ynode *m, const char *key, char **out)
{
	char *b64 = dup_scalar(m, key);
	if (!b64)
		return 0;
	*out = base64_decode(b64, strlen(b64));
	free(b64);
	return *out ? 0 : fail(p->err, p->len, "%s: %s of context %s is not base64", p->path, key, p->cfg->context);
}

static int read_user(struct parse *p, const struct ynode *user)
{
	struct kube_config *cfg = p->cfg;
	if (ymap_get(user, "exec") || ymap_get(user, "auth-provider"))
		return fail(p->err, p->len,
			    "%s: user of context %s authenticates with an exec plugin or auth provider, which sluice does "
			    "not run; hint: give it a token, tokenFile or client certificate",
			    p->path, cfg->context);
	if (ymap_get(user, "username") || ymap_get(user, "password"))
		return fail(p->err, p->len, "%s: user of context %s has a username and password, which the API no longer "
					    "accepts; hint: use a token or a client certificate", p->path, cfg->context);
	cfg->token = dup_scalar(user, "token");
	cfg->token_file = resolve_path(p->path, dup_scalar(user, "tokenFile"));
	cfg->cert_file = resolve_path(p->path, dup_scalar(user, "client-certificate"));
	cfg->key_file = resolve_path(p->path, dup_scalar(user, "client-key"));
	if (pem_field(p, user, "client-certificate-data", &cfg->cert_pem) ||
	    pem_field(p, user, "client-key-data", &cfg->key_pem))
		return -1;
	int cert = cfg->cert_file || cfg->cert_pem, key = cfg->key_file || cfg->key_pem;
	if (cert != key)
		return fail(p->err, p->len, "%s: user of context %s has a client %s but no %s", p->path, cfg->context,
			    cert ? "certificate" : "key", cert ? "key" : "certificate");
	if (!cfg->token && !cfg->token_file && !cert)
		return fail(p->err, p->len, "%s: user of context %s has no token, tokenFile or client certificate",
			    p->path, cfg->context);
	return 0;
}

static int read_cluster(struct parse *p, const struct ynode *cluster)
{
	struct kube_config *cfg = p->cfg;
	const struct ynode *insecure = ymap_get(cluster, "insecure-skip-tls-verify");
	if (insecure && insecure->type == YN_SCALAR && !strcmp(insecure->str, "true"))
		return fail(p->err, p->len,
			    "%s: cluster of context %s sets insecure-skip-tls-verify: sluice always verifies the API "
			    "server's certificate; hint: give certificate-authority or certificate-authority-data",
			    p->path, cfg->context);
	cfg->server = dup_scalar(cluster, "server");
	if (!cfg->server || strncmp(cfg->server, "https://", 8))
		return fail(p->err, p->len, "%s: cluster of context %s has %s; hint: an https:// server", p->path,
			    cfg->context, cfg->server ? "a server that is not https://" : "no server");
	size_t l = strlen(cfg->server);
	while (l > 8 && cfg->server[l - 1] == '/')
		cfg->server[--l] = 0;
	cfg->ca_file = resolve_path(p->path, dup_scalar(cluster, "certificate-authority"));
	if (pem_field(p, cluster, "certificate-authority-data", &cfg->ca_pem))
		return -1;
	return 0;
}

static void on_kubeconfig(void *ctx, const struct mark *file, struct ynode *root)
{
	struct parse *p = ctx;
	struct kube_config *cfg = p->cfg;
	(void)file;
	if (p->seen++)
		return;
	const struct ynode *cur = ymap_get(root, "current-context");
	const char *name = p->want_context ? p->want_context : cur && cur->type == YN_SCALAR ? cur->str : NULL;
	if (!name) {
		p->rc = fail(p->err, p->len, "%s has no current-context; hint: pass --context", p->path);
		return;
	}
	cfg->context = strdup(name);
	const struct ynode *ctxn = named(root, "contexts", "context", name);
	if (!ctxn) {
		p->rc = fail(p->err, p->len, "%s has no context %s", p->path, name);
		return;
	}
	char *cluster = dup_scalar(ctxn, "cluster"), *user = dup_scalar(ctxn, "user");
	cfg->namespace = dup_scalar(ctxn, "namespace");
	const struct ynode *c = cluster ? named(root, "clusters", "cluster", cluster) : NULL;
	const struct ynode *u = user ? named(root, "users", "user", user) : NULL;
	if (!c)
		p->rc = fail(p->err, p->len, "%s: context %s names no cluster it defines (%s)", p->path, name,
			     cluster ? cluster : "none");
	else if (!u)
		p->rc = fail(p->err, p->len, "%s: context %s names no user it defines (%s)", p->path, name,
			     user ? user : "none");
	else
		p->rc = read_cluster(p, c) || read_user(p, u) ? -1 : 0;
	free(cluster);
	free(user);
}

int kube_in_cluster(void)
{
	return getenv("KUBERNETES_SERVICE_HOST") && access(SA_DIR "/token", R_OK) == 0;
}

static int load_in_cluster(struct kube_config *cfg, char *err, size_t len)
{
	const char *host = getenv("KUBERNETES_SERVICE_HOST"), *port = getenv("KUBERNETES_SERVICE_PORT");
	if (!host || !*host)
		return fail(err, len, "not in a pod: KUBERNETES_SERVICE_HOST is not set; hint: pass --kubeconfig");
	if (access(SA_DIR "/token", R_OK))
		return fail(err, len, "cannot read the service account token %s/token: %s", SA_DIR, strerror(errno));
	/* an IPv6 service address needs brackets, as client-go writes it */
	if (asprintf(&cfg->server, strchr(host, ':') ? "https://[%s]:%s" : "https://%s:%s", host,
		     port && *port ? port : "443") < 0)
		abort();
	cfg->token_file = strdup(SA_DIR "/token");
	cfg->ca_file = strdup(SA_DIR "/ca.crt");
	unsigned char *ns = NULL;
	size_t n = 0;
	if (!fs_read_file(SA_DIR "/namespace", &ns, &n)) {
		cfg->namespace = strndup((char *)ns, strcspn((char *)ns, "\r\n"));
		free(ns);
	}
	cfg->context = strdup("in-cluster");
	cfg->source = strdup(SA_DIR);
	return 0;
}

int kube_config_load(struct kube_config *cfg, const char *kubeconfig, const char *context, int in_cluster,
		     char *err, size_t len)
{
	memset(cfg, 0, sizeof(*cfg));
	if (in_cluster)
		return load_in_cluster(cfg, err, len);
	char *path = NULL;
	const char *env = getenv("KUBECONFIG"), *home = getenv("HOME");
	if (kubeconfig)
		path = strdup(kubeconfig);
	else if (env && *env)
		path = strndup(env, strcspn(env, ":"));   /* the first of a list, which holds the current context */
	else if (home && asprintf(&path, "%s/.kube/config", home) < 0)
		path = NULL;
	if (!path)
		return fail(err, len, "no kubeconfig: pass --kubeconfig, or set KUBECONFIG");
	cfg->source = path;
	unsigned char *buf = NULL;
	size_t n = 0;
	int rc = fs_read_file(path, &buf, &n);
	if (rc)
		return fail(err, len, "cannot read kubeconfig %s: %s", path, strerror(-rc));
	struct diags d = { 0 };
	struct mark file = { .file = path, .line = 1, .col = 1 };
	struct parse p = { .cfg = cfg, .want_context = context, .path = path, .err = err, .len = len };
	yaml_each_document(buf, n, &file, &d, on_kubeconfig, &p);
	free(buf);
	if (d.n) {
		snprintf(err, len, "%s:%u:%u: %s", path, d.v[0].at.line, d.v[0].at.col, d.v[0].msg);
		p.rc = -1;
	} else if (!p.seen) {
		p.rc = fail(err, len, "kubeconfig %s is empty", path);
	}
	diags_free(&d);
	return p.rc;
}

void kube_config_free(struct kube_config *cfg)
{
	char **fields[] = { &cfg->server, &cfg->ca_file, &cfg->ca_pem, &cfg->token, &cfg->token_file, &cfg->cert_file,
			    &cfg->key_file, &cfg->cert_pem, &cfg->key_pem, &cfg->namespace, &cfg->context, &cfg->source };
	for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
		free(*fields[i]);
		*fields[i] = NULL;
	}
}
