/* SPDX-License-Identifier: MIT */
/*
 * The rules names and addresses are held to, shared by the compiler, the saved plan's reader,
 * sluiced and the CLI: Kubernetes' (apimachinery util/validation) and Istio's
 * (pkg/config/validation). Each check returns NULL when the value is valid, else why not, as a
 * message that does not repeat the value: callers quote it with name_quote() before the reason.
 */
#ifndef SLUICE_NAMES_H
#define SLUICE_NAMES_H

#include <stdbool.h>
#include <stddef.h>

#include "plan/plan.h"

/* Kubernetes IsDNS1123Label: namespaces, Service port names. */
const char *name_dns1123_label_error(const char *s, size_t len);
/* Kubernetes IsDNS1123Subdomain: Pod, VirtualService, DestinationRule and Gateway names. */
const char *name_dns1123_subdomain_error(const char *s, size_t len);
/* Kubernetes IsDNS1035Label: Service names. */
const char *name_dns1035_label_error(const char *s, size_t len);
/* Istio's rule for subset names (validateSubsetName): a DNS-1123 label, upper case allowed. */
const char *name_subset_error(const char *s, size_t len);
/* Istio's labels.IsDNS1123Label, which subset names use: namespaces in Gateway server hosts. */
const char *name_istio_label_error(const char *s, size_t len);
/* Kubernetes IsValidPortName (IANA service names): container port names, a named targetPort. */
const char *name_port_name_error(const char *s, size_t len);
/* Kubernetes IsQualifiedName and IsValidLabelValue: label keys and values. */
const char *name_label_key_error(const char *s, size_t len);
const char *name_label_value_error(const char *s, size_t len);
/* Istio's hosts (ValidateWildcardDomain, or an IP address): VirtualService hosts,
 * DestinationRule host, destination host. */
const char *name_host_error(const char *s, size_t len);
/* Istio's gateway references (validateGatewayNames): "mesh", NAME, NAMESPACE/NAME. */
const char *name_gateway_ref_error(const char *s, size_t len);

/* An IPv4 or IPv6 address in inet_pton's text forms into *addr (zeroed first); false when s is
 * neither. The compiler and the saved plan's reader take addresses through this one door. */
bool name_parse_addr(const char *s, struct plan_addr *addr);

/* NULL, or why addr cannot be a service VIP or gateway address ("is a loopback address: ..."). */
const char *name_vip_error(const struct plan_addr *addr);

/* How many bytes of a value an error quotes, and a buffer that always holds the quote. */
#define NAME_QUOTE_MAX 64
#define NAME_QUOTE_CAP 112

/*
 * The value as an error quotes it: in double quotes, escaped as a C string (every byte outside
 * printable ASCII as \n, \t, \r or \xHH), at most NAME_QUOTE_MAX bytes of escaped text, and when
 * cut `"first bytes..." (N bytes)`. Writes into buf (cap >= 96) and returns buf.
 */
const char *name_quote(const char *s, size_t len, char *buf, size_t cap);

#endif
