/* SPDX-License-Identifier: MIT */
/*
 * Where the Kubernetes API server is and who we are to it, found as kubectl and client-go find
 * it: in a pod, the service account (KUBERNETES_SERVICE_HOST/PORT, its token file re-read as it
 * rotates, its CA); outside, a kubeconfig (--kubeconfig, else $KUBECONFIG, else ~/.kube/config)
 * and its current context or --context. The server's certificate is always verified.
 */
#ifndef SLUICE_KUBE_CONFIG_H
#define SLUICE_KUBE_CONFIG_H

#include <stddef.h>

struct kube_config {
	char *server;            /* https://host:port, no trailing slash */
	char *ca_file;           /* PEM file of the cluster's CA; or ... */
	char *ca_pem;            /* ... the PEM itself (certificate-authority-data) */
	char *token;             /* a bearer token given inline; or ... */
	char *token_file;        /* ... a file read at each request (service-account tokens rotate) */
	char *cert_file, *key_file;   /* client certificate user: PEM files, or ... */
	char *cert_pem, *key_pem;     /* ... the PEMs (client-certificate-data, client-key-data) */
	char *namespace;         /* the context's namespace, or the pod's; NULL: "default" */
	char *context;           /* the context used, for messages; "in-cluster" in a pod */
	char *source;            /* the file read, for messages */
};

/*
 * Fills *cfg. kubeconfig: a path, or NULL for $KUBECONFIG then ~/.kube/config; context: NULL for
 * the current one; in_cluster: use the service account. 0, or -1 with why in err.
 */
int kube_config_load(struct kube_config *cfg, const char *kubeconfig, const char *context, int in_cluster,
		     char *err, size_t len);

/* Whether sluiced runs in a pod: KUBERNETES_SERVICE_HOST is set and the service account is mounted. */
int kube_in_cluster(void);

void kube_config_free(struct kube_config *cfg);

#endif
