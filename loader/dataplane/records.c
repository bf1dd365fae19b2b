/* SPDX-License-Identifier: MIT */
/*
 * Plan -> bookkeeping: one svc_state per address of a plan service (each VIP on the service's
 * port, each gateway address on the gateway port), the index that finds it by key, and the
 * record and keys the maps hold for it. Nothing here touches a map.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#include "common/log.h"
#include "plan/weights.h"
#include "dataplane/internal.h"
#include "dataplane/rr.h"
#include "plan/print.h"

_Static_assert(SLUICE_AF_INET == AF_INET && SLUICE_AF_INET6 == AF_INET6, "address family numbers");
_Static_assert((int)SLUICE_PROTO_TCP == (int)IPPROTO_TCP && (int)SLUICE_PROTO_UDP == (int)IPPROTO_UDP, "protocol numbers");
_Static_assert((int)SLUICE_LB_ROUND_ROBIN == (int)PLAN_LB_ROUND_ROBIN && (int)SLUICE_LB_RANDOM == (int)PLAN_LB_RANDOM,
	       "lb modes");
_Static_assert(SLUICE_MAX_DESTINATIONS == PLAN_MAX_DESTINATIONS, "destinations per service");
_Static_assert(SLUICE_MAX_ENDPOINTS == PLAN_MAX_ENDPOINTS, "endpoints per destination");

uint64_t key_hash(const struct sluice_service_key *k)
{
	uint64_t w[3], h = 0;

	_Static_assert(sizeof(*k) == sizeof(w), "key is three words");
	memcpy(w, k, sizeof(w));
	for (size_t i = 0; i < 3; i++) {
		h = (h ^ w[i]) * 0x9e3779b97f4a7c15ull;
		h ^= h >> 29;
	}
	h *= 0xbf58476d1ce4e5b9ull;   /* splitmix64's finaliser: every key bit reaches the low bits */
	return h ^ (h >> 31);
}

bool key_eq(const struct sluice_service_key *a, const struct sluice_service_key *b)
{
	return memcmp(a, b, sizeof(*a)) == 0;
}

int index_build(struct svc_index *ix, struct svc_state **v, size_t n, const struct svc_state **dup)
{
	size_t cap = 16;

	while (cap < 2 * n)
		cap *= 2;
	ix->tab = calloc(cap, sizeof(*ix->tab));
	if (!ix->tab)
		return -ENOMEM;
	ix->cap = cap;
	for (size_t i = 0; i < n; i++) {
		size_t j = key_hash(&v[i]->key) & (cap - 1);
		while (ix->tab[j]) {
			if (key_eq(&ix->tab[j]->key, &v[i]->key)) {
				if (dup)
					*dup = v[i];
				return -EEXIST;
			}
			j = (j + 1) & (cap - 1);
		}
		ix->tab[j] = v[i];
	}
	return 0;
}

struct svc_state *index_get(const struct svc_index *ix, const struct sluice_service_key *k)
{
	if (!ix->cap)
		return NULL;
	for (size_t j = key_hash(k) & (ix->cap - 1); ix->tab[j]; j = (j + 1) & (ix->cap - 1))
		if (key_eq(&ix->tab[j]->key, k))
			return ix->tab[j];
	return NULL;
}

/* Points the index entry of s's key at s (a changed service replacing its previous state). */
void index_replace(struct svc_index *ix, struct svc_state *s)
{
	for (size_t j = key_hash(&s->key) & (ix->cap - 1); ix->tab[j]; j = (j + 1) & (ix->cap - 1))
		if (key_eq(&ix->tab[j]->key, &s->key)) {
			ix->tab[j] = s;
			return;
		}
}

int make_key(const struct plan_addr *vip, uint16_t port, uint8_t protocol, struct sluice_service_key *k)
{
	memset(k, 0, sizeof(*k));
	if (vip->family != AF_INET && vip->family != AF_INET6)
		return -EINVAL;
	memcpy(k->vip.bytes, vip->addr, vip->family == AF_INET ? 4 : 16);
	k->family = vip->family;
	k->port = port;
	k->protocol = protocol;
	return 0;
}

/* A service as the CLI and sluiced name it: name.namespace. */
const char *svc_name(const struct plan_service *ps, char *buf, size_t len)
{
	snprintf(buf, len, "%s.%s", ps->name ? ps->name : "?", ps->namespace ? ps->namespace : "?");
	return buf;
}

/* A record's address, port and protocol as users write them: 198.19.0.10:8080/TCP, [2001:db8::a]:53/UDP. */
const char *key_str(const struct sluice_service_key *k, char *buf, size_t len)
{
	struct plan_addr a = { .family = k->family };
	char ep[INET6_ADDRSTRLEN + 8];

	memcpy(a.addr, k->vip.bytes, sizeof(a.addr));
	plan_endpoint_str(&a, k->port, ep, sizeof(ep));
	snprintf(buf, len, "%s/%s", ep, plan_protocol_name(k->protocol));
	return buf;
}

/*
 * A plan service's addresses, each one record: its VIPs on its port, then its
 * gateway addresses on the gateway port.
 */
size_t svc_n_addrs(const struct plan_service *ps)
{
	return ps->n_vips + ps->n_gateway_addrs;
}

const struct plan_addr *svc_addr(const struct plan_service *ps, size_t j, uint16_t *port)
{
	if (j < ps->n_vips) {
		*port = ps->port;
		return &ps->vips[j];
	}
	*port = ps->gateway_port;
	return &ps->gateway_addrs[j - ps->n_vips];
}

/* What a service's records cannot hold: more than a VIP per family, more gateway addresses than a plan has. */
int check_service(const struct plan_service *ps)
{
	char name[SVC_STR_LEN];

	if (ps->n_vips > 2) {
		log_error("service %s: %zu VIPs, at most one per family", svc_name(ps, name, sizeof(name)), ps->n_vips);
		return -EINVAL;
	}
	if (ps->n_gateway_addrs > PLAN_MAX_GATEWAY_ADDRS) {
		log_error("service %s: %zu gateway addresses, at most %d", svc_name(ps, name, sizeof(name)),
		       ps->n_gateway_addrs, PLAN_MAX_GATEWAY_ADDRS);
		return -EINVAL;
	}
	return 0;
}

/*
 * Fills s (whose slots buffer holds SLUICE_MAX_DESTINATIONS * SLUICE_MAX_ENDPOINTS)
 * with the record of one address of the service (a VIP or a gateway address)
 * on port: the endpoints of the address's family.
 */
int svc_fill(const struct plan_service *ps, const struct plan_addr *vip, uint16_t port, struct svc_state *s)
{
	char name[SVC_STR_LEN], a[INET6_ADDRSTRLEN + 8];
	struct sluice_endpoint *slots = s->slots;

	memset(s, 0, sizeof(*s));
	s->slots = slots;
	if (ps->protocol != IPPROTO_TCP && ps->protocol != IPPROTO_UDP) {
		log_error("service %s: protocol %u is not tcp or udp; hint: the compiler should have rejected it",
		       svc_name(ps, name, sizeof(name)), ps->protocol);
		return -EINVAL;
	}
	if (port == 0 || ps->n_destinations == 0 || ps->n_destinations > SLUICE_MAX_DESTINATIONS) {
		plan_endpoint_str(vip, port, a, sizeof(a));
		log_error("service %s on %s: %zu destinations (allowed 1..%d) or port 0",
		       svc_name(ps, name, sizeof(name)), a, ps->n_destinations, SLUICE_MAX_DESTINATIONS);
		return -EINVAL;
	}
	if (ps->lb != PLAN_LB_ROUND_ROBIN && ps->lb != PLAN_LB_RANDOM) {
		log_error("service %s: unknown load-balancing mode %d", svc_name(ps, name, sizeof(name)), (int)ps->lb);
		return -EINVAL;
	}
	if (make_key(vip, port, ps->protocol, &s->key)) {
		log_error("service %s: VIP of address family %u; hint: only AF_INET and AF_INET6",
		       svc_name(ps, name, sizeof(name)), vip->family);
		return -EINVAL;
	}
	s->lb = (uint8_t)ps->lb;
	s->n_destinations = (uint8_t)ps->n_destinations;
	for (size_t d = 0; d < ps->n_destinations; d++)
		s->configured[d] = ps->destinations[d].weight;
	if (reduce_weights(s->configured, ps->n_destinations, s->weights)) {
		char why[160];
		log_error("service %s: %s", svc_name(ps, name, sizeof(name)),
			  plan_weights_error(0, ps->n_destinations, why, sizeof(why)) ? why : "no weight to reduce");
		return -EINVAL;
	}
	for (size_t d = 0; d < ps->n_destinations && ps->protocol == IPPROTO_TCP; d++) {
		const struct plan_tcp_policy *t = &ps->destinations[d].tcp;
		s->tcp[d].connect_timeout_ms = t->connect_timeout_ms;
		s->tcp[d].keepalive_time_s = t->keepalive_time_s;
		s->tcp[d].keepalive_interval_s = t->keepalive_interval_s;
		s->tcp[d].keepalive_probes = t->keepalive_probes;
		s->tcp[d].flags = t->keepalive ? SLUICE_TCP_KEEPALIVE : 0;
	}
	for (size_t d = 0; d < ps->n_destinations; d++) {
		const struct plan_destination *pd = &ps->destinations[d];
		if (pd->n_endpoints > SLUICE_MAX_ENDPOINTS) {
			log_error("service %s destination %zu: %zu endpoints, at most %d", svc_name(ps, name, sizeof(name)),
			       d, pd->n_endpoints, SLUICE_MAX_ENDPOINTS);
			return -EINVAL;
		}
		for (size_t e = 0; e < pd->n_endpoints; e++) {
			const struct plan_endpoint *pe = &pd->endpoints[e];
			if (pe->addr.family != vip->family)
				continue;   /* a dual-stack pod: its other address serves the other VIP */
			if (pe->port == 0) {
				plan_addr_str(&pe->addr, a, sizeof(a));
				log_error("service %s: endpoint %s has port 0", svc_name(ps, name, sizeof(name)), a);
				return -EINVAL;
			}
			endpoint_of(pe, &s->slots[s->n_slots++]);
			s->n_endpoints[d]++;
		}
	}
	return 0;
}

bool svc_same_routing(const struct svc_state *a, const struct svc_state *b)
{
	return a->lb == b->lb && a->n_destinations == b->n_destinations &&
	       memcmp(a->configured, b->configured, sizeof(a->configured)) == 0 &&
	       memcmp(a->weights, b->weights, sizeof(a->weights)) == 0 &&
	       memcmp(a->tcp, b->tcp, sizeof(a->tcp)) == 0 &&
	       memcmp(a->n_endpoints, b->n_endpoints, sizeof(a->n_endpoints)) == 0 &&
	       a->n_slots == b->n_slots &&
	       memcmp(a->slots, b->slots, a->n_slots * sizeof(*a->slots)) == 0;
}

struct svc_state *svc_dup(const struct svc_state *from)
{
	struct svc_state *s = malloc(sizeof(*s));

	if (!s)
		return NULL;
	*s = *from;
	s->slots = malloc((from->n_slots ? from->n_slots : 1) * sizeof(*s->slots));
	if (!s->slots) {
		free(s);
		return NULL;
	}
	memcpy(s->slots, from->slots, from->n_slots * sizeof(*s->slots));
	return s;
}

void svc_free(struct svc_state *s)
{
	if (s) {
		free(s->slots);
		free(s);
	}
}

void svcs_free(struct svc_state **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		svc_free(v[i]);
	free(v);
}

/* The record a service state becomes: its weights as configured and as cumulative reduced ones,
 * each destination's endpoint slots, and for ROUND_ROBIN the table (rr.c). */
void build_record(const struct svc_state *s, struct sluice_service *r)
{
	uint32_t cum = 0;
	uint16_t slot = 0;

	memset(r, 0, sizeof(*r));
	r->id = s->id;
	r->generation = s->generation;
	r->lb = s->lb;
	r->n_destinations = s->n_destinations;
	for (size_t i = 0; i < s->n_destinations; i++) {
		cum += s->weights[i];
		r->destinations[i].weight = s->configured[i];
		r->destinations[i].cum_weight = cum;
		r->destinations[i].first_slot = slot;
		r->destinations[i].n_endpoints = s->n_endpoints[i];
		r->destinations[i].tcp = s->tcp[i];
		slot += s->n_endpoints[i];
	}
	if (s->lb == SLUICE_LB_ROUND_ROBIN)
		r->rr_slots = build_rr_table(s->weights, s->n_destinations, r->rr_table);
}

/* The other way, for a record read back from the maps (its endpoints aside): s's routing, key and id. */
void svc_of_record(const struct sluice_service_key *key, const struct sluice_service *r, struct svc_state *s)
{
	uint32_t prev = 0;

	s->key = *key;
	s->key.side = 0;
	s->id = r->id;
	s->generation = r->generation;
	s->lb = r->lb;
	s->n_destinations = r->n_destinations;
	for (size_t d = 0; d < r->n_destinations; d++) {
		s->configured[d] = r->destinations[d].weight;
		s->weights[d] = r->destinations[d].cum_weight - prev;
		prev = r->destinations[d].cum_weight;
		s->n_endpoints[d] = r->destinations[d].n_endpoints;
		s->tcp[d] = r->destinations[d].tcp;
		s->n_slots += r->destinations[d].n_endpoints;
	}
}

/* An endpoint of the plan as the maps hold it: the address in its family's bytes, the rest zero. */
void endpoint_of(const struct plan_endpoint *pe, struct sluice_endpoint *ep)
{
	memset(ep, 0, sizeof(*ep));
	memcpy(ep->addr.bytes, pe->addr.addr, pe->addr.family == AF_INET ? 4 : 16);
	ep->port = pe->port;
	ep->family = pe->addr.family;
}

/* The key of one endpoint slot of a record: the service's id, the slot, the record's generation. */
void endpoint_key(uint32_t id, uint32_t slot, uint64_t generation, struct sluice_endpoint_key *k)
{
	memset(k, 0, sizeof(*k));
	k->service_id = id;
	k->slot = slot;
	k->generation = generation;
}

/* The key of an endpoint's counters in a service: kept whatever its slot or the record's generation. */
void counter_key(uint32_t id, const struct sluice_endpoint *ep, struct sluice_counter_key *k)
{
	memset(k, 0, sizeof(*k));
	k->service_id = id;
	k->addr = ep->addr;
	k->port = ep->port;
	k->family = ep->family;
}
