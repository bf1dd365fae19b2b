// SPDX-License-Identifier: MIT
/* Istio's weight rules, and `sluice weight`'s change: parsed, checked and set on a plan. */
#include "plan/weights.h"

#include <stdio.h>
#include <string.h>

#include "common/names.h"

double plan_share(uint32_t weight, uint64_t sum, size_t n_destinations)
{
	if (n_destinations == 1)
		return 100;
	return sum ? 100.0 * weight / (double)sum : 0;
}

const char *plan_weights_error(uint64_t sum, size_t n_destinations, char *buf, size_t len)
{
	if (n_destinations < 2 || sum)
		return NULL;
	snprintf(buf, len, "the weights of the %zu destinations sum to 0: give at least one a positive weight",
		 n_destinations);
	return buf;
}

void plan_service_shares(struct plan_service *s)
{
	uint64_t sum = 0;
	for (size_t d = 0; d < s->n_destinations; d++)
		sum += s->destinations[d].weight;
	for (size_t d = 0; d < s->n_destinations; d++)
		s->destinations[d].percent = plan_share(s->destinations[d].weight, sum, s->n_destinations);
}

const char *plan_service_ref(const char *arg, const char *ns, const char *domain, char service[64],
			     char namespace[64], char *msg, size_t len)
{
	char q[NAME_QUOTE_CAP];
	const char *dot = strchr(arg, '.');
	size_t name_len = dot ? (size_t)(dot - arg) : strlen(arg);
	const char *ns_start = dot ? dot + 1 : NULL, *rest = ns_start ? strchr(ns_start, '.') : NULL;
	size_t ns_len = ns_start ? (rest ? (size_t)(rest - ns_start) : strlen(ns_start)) : strlen(ns);
	if (rest && strcmp(rest, ".svc") && (strncmp(rest, ".svc.", 5) || strcmp(rest + 5, domain))) {
		snprintf(msg, len,
			 "%s is not SERVICE, SERVICE.NAMESPACE or SERVICE.NAMESPACE.svc.%s; e.g. purchase-history.istioinaction",
			 name_quote(arg, strlen(arg), q, sizeof(q)), domain);
		return msg;
	}
	if (!name_len || name_len > 63 || (ns_start && !ns_len) || ns_len > 63) {
		snprintf(msg, len, "no routed service %s: names are 1 to 63 characters; 'sluice status' lists the services",
			 name_quote(arg, strlen(arg), q, sizeof(q)));
		return msg;
	}
	snprintf(service, 64, "%.*s", (int)name_len, arg);
	snprintf(namespace, 64, "%.*s", (int)ns_len, ns_start ? ns_start : ns);
	return NULL;
}

const char *weight_change_parse(struct weight_change *wc, char **words, size_t n_words, char *msg, size_t len)
{
	char q[NAME_QUOTE_CAP];
	wc->n = 0;
	for (size_t i = 0; i < n_words; i++) {
		const char *a = words[i], *eq = strchr(a, '='), *d = eq ? eq + 1 : NULL;
		uint64_t w = 0;
		for (const char *p = d; p && *p >= '0' && *p <= '9' && w <= PLAN_WEIGHT_MAX; p++)
			w = w * 10 + (uint64_t)(*p - '0');
		if (!eq || eq == a || !*d || d[strspn(d, "0123456789")] || w > PLAN_WEIGHT_MAX) {
			snprintf(msg, len, "%s is not SUBSET=WEIGHT with a weight from 0 to %u in digits; e.g. v1=80 v2=20",
				 name_quote(a, strlen(a), q, sizeof(q)), PLAN_WEIGHT_MAX);
			return msg;
		}
		if (eq - a > 63) {
			snprintf(msg, len, "subset name %s is longer than 63 characters", name_quote(a, strlen(a), q, sizeof(q)));
			return msg;
		}
		if (wc->n == PLAN_MAX_DESTINATIONS) {
			snprintf(msg, len, "more than %d subsets given", PLAN_MAX_DESTINATIONS);
			return msg;
		}
		char subset[64];
		snprintf(subset, sizeof(subset), "%.*s", (int)(eq - a), a);
		for (size_t j = 0; j < wc->n; j++)
			if (!strcmp(wc->w[j].subset, subset)) {
				snprintf(msg, len, "subset %s is given twice", name_quote(subset, strlen(subset), q, sizeof(q)));
				return msg;
			}
		memcpy(wc->w[wc->n].subset, subset, sizeof(subset));
		wc->w[wc->n++].weight = (uint32_t)w;
	}
	return NULL;
}

bool weight_change_names(const struct weight_change *wc, const struct plan_service *s)
{
	return !strcmp(s->name, wc->service) && !strcmp(s->namespace, wc->namespace);
}

/* Whether the change gives every subset of s a weight, and no other; lists s's subsets in have. */
static bool covers(const struct weight_change *wc, const struct plan_service *s, char *have, size_t cap)
{
	bool ok = s->n_destinations == wc->n;
	size_t used = 0;
	have[0] = 0;
	for (size_t d = 0; d < s->n_destinations; d++) {
		const char *sub = s->destinations[d].subset;
		int n = snprintf(have + used, cap - used, "%s%s", d ? ", " : "", sub[0] ? sub : "(none)");
		used = n > 0 && used + (size_t)n < cap ? used + (size_t)n : used;
		bool found = false;
		for (size_t j = 0; j < wc->n; j++)
			found = found || !strcmp(wc->w[j].subset, sub);
		ok = ok && found;
	}
	return ok;
}

const char *weight_change_apply(const struct weight_change *wc, struct plan *plan, char *msg, size_t len)
{
	size_t matched = 0;
	uint64_t sum = 0;
	for (size_t j = 0; j < wc->n; j++)
		sum += wc->w[j].weight;
	for (size_t i = 0; i < plan->n_services; i++) {
		const struct plan_service *s = &plan->services[i];
		char have[512];
		if (!weight_change_names(wc, s))
			continue;
		matched++;
		if (!covers(wc, s, have, sizeof(have))) {
			snprintf(msg, len,
				 "service %s.%s port %u routes to subsets %s: give a weight for each of them, and add "
				 "other subsets to the VirtualService with 'sluice apply'",
				 s->name, s->namespace, s->port, have);
			return msg;
		}
	}
	if (!matched) {
		snprintf(msg, len, "no routed service %s.%s; 'sluice status' lists them", wc->service, wc->namespace);
		return msg;
	}
	if (plan_weights_error(sum, wc->n, msg, len))
		return msg;
	for (size_t i = 0; i < plan->n_services; i++) {
		struct plan_service *s = &plan->services[i];
		if (!weight_change_names(wc, s))
			continue;
		for (size_t d = 0; d < s->n_destinations; d++)
			for (size_t j = 0; j < wc->n; j++)
				if (!strcmp(wc->w[j].subset, s->destinations[d].subset))
					s->destinations[d].weight = plan_weight_held(wc->w[j].weight, s->n_destinations);
		plan_service_shares(s);
	}
	return NULL;
}
