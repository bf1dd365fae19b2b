// SPDX-License-Identifier: MIT
/* compile_plan_update (the follower's build of only what a change affects) and compile_pods_update
 * (its quick path for batches of pods) against a whole build of the same objects, over 4,000 random
 * batches of changes to a small cluster: Services, pods, DestinationRules, VirtualServices and a
 * Gateway appear, change and go, valid or not. Every step must give the whole build's plan, or its
 * errors; a quick path that declines leaves the batch to compile_plan_update. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compile/compile.h"
#include "plan/plan.h"
#include "plan/print.h"
#include "outcome.h"

#define N_SVC 3
#define N_POD 9

enum { SVC, POD, DR, VS, GW, GW_VS, KINDS };
static const int slots[KINDS] = { N_SVC, N_POD, N_SVC, N_SVC, 1, 1 };

/* Variant v of slot i of a kind, as the API would hand it over; NULL: the object is absent. */
static char *object(int kind, int i, int v)
{
	char *s = NULL;
	int r = 0;
	if (v == 0)
		return NULL;
	switch (kind) {
	case SVC:   /* 1 normal, 2 another port, 3 the VIP of s0 (refused for s1, s2), 4 no selector */
		r = asprintf(&s, "{\"apiVersion\":\"v1\",\"kind\":\"Service\",\"metadata\":{\"name\":\"s%d\",\"namespace\":\"ns\"},"
			     "\"spec\":{\"clusterIP\":\"198.19.0.%d\",%s\"ports\":[{\"name\":\"http\",\"port\":%d,"
			     "\"targetPort\":8080}]}}",
			     i, v == 3 ? 10 : 10 + i, v == 4 ? "" : (i == 2 ? "\"selector\":{\"app\":\"s1\"}," : "\"selector\":{\"app\":\"s0\"},") + 0,
			     v == 2 ? 81 : 80);
		break;
	case POD: { /* 1 ready, 2 unready, 3 version v3, 4 a new IP: p1's for p0, s0's VIP for p1 (refused) */
		int app = i % 2, ver = 1 + (i / 2) % 2;
		char ip[32];
		snprintf(ip, sizeof(ip), v == 4 && i == 0 ? "198.18.0.11" : v == 4 && i == 1 ? "198.19.0.10" : "198.18.%d.%d",
			 v == 4 ? 1 : 0, 10 + i);
		r = asprintf(&s, "{\"apiVersion\":\"v1\",\"kind\":\"Pod\",\"metadata\":{\"name\":\"p%d\",\"namespace\":\"ns\","
			     "\"labels\":{\"app\":\"s%d\",\"version\":\"v%d\"}},\"spec\":{\"containers\":[{\"name\":\"c\"}]},"
			     "\"status\":{\"phase\":\"Running\",\"podIP\":\"%s\",\"conditions\":[{\"type\":\"Ready\","
			     "\"status\":\"%s\"}]}}",
			     i, app, v == 3 ? 3 : ver, ip, v == 2 ? "False" : "True");
		break;
	}
	case DR:    /* 1 v1 and v2, 2 v1 only, 3 v2 selects version v3, 4 ROUND_ROBIN off (RANDOM) */
		r = asprintf(&s, "{\"apiVersion\":\"networking.istio.io/v1\",\"kind\":\"DestinationRule\",\"metadata\":"
			     "{\"name\":\"d%d\",\"namespace\":\"ns\"},\"spec\":{\"host\":\"s%d\",%s\"subsets\":[{\"name\":\"v1\","
			     "\"labels\":{\"version\":\"v1\"}}%s]}}",
			     i, i, v == 4 ? "\"trafficPolicy\":{\"loadBalancer\":{\"simple\":\"RANDOM\"}}," : "",
			     v == 2 ? "" : v == 3 ? ",{\"name\":\"v2\",\"labels\":{\"version\":\"v3\"}}"
						  : ",{\"name\":\"v2\",\"labels\":{\"version\":\"v2\"}}");
		break;
	case VS:    /* 1 all v1, 2 80/20, 3 to the next Service's v1, 4 the host of s0 too */
		r = asprintf(&s, "{\"apiVersion\":\"networking.istio.io/v1\",\"kind\":\"VirtualService\",\"metadata\":"
			     "{\"name\":\"r%d\",\"namespace\":\"ns\"},\"spec\":{\"hosts\":[\"s%d\"%s],\"http\":[{\"route\":["
			     "%s]}]}}",
			     i, i, v == 4 && i ? ",\"s0\"" : "",
			     v == 2 ? "{\"destination\":{\"host\":\"s0\",\"subset\":\"v1\"},\"weight\":80},"
				      "{\"destination\":{\"host\":\"s0\",\"subset\":\"v2\"},\"weight\":20}"
			     : v == 3 ? (i == 0 ? "{\"destination\":{\"host\":\"s1.ns.svc.cluster.local\",\"subset\":\"v1\"}}"
					       : "{\"destination\":{\"host\":\"s0\",\"subset\":\"v1\"}}")
				      : "{\"destination\":{\"host\":\"s1\",\"subset\":\"v1\"}}");
		break;
	case GW:    /* 1 port 80, 2 port 8080, 3 no address, 4 the VIP of s0 */
		r = asprintf(&s, "{\"apiVersion\":\"networking.istio.io/v1\",\"kind\":\"Gateway\",\"metadata\":{\"name\":\"gw\","
			     "\"namespace\":\"ns\"},\"spec\":{%s\"servers\":[{\"port\":{\"number\":%d,\"name\":\"http\","
			     "\"protocol\":\"HTTP\"},\"hosts\":[\"*\"]}]}}",
			     v == 3 ? "" : v == 4 ? "\"addresses\":[{\"value\":\"198.19.0.10\"}]," : "\"addresses\":[{\"value\":\"198.19.1.1\"}],",
			     v == 2 ? 8080 : 80);
		break;
	case GW_VS: /* 1 to s0 v1, 2 to s1 v2, 3 to a Gateway of another name, 4 mesh and the Gateway */
		r = asprintf(&s, "{\"apiVersion\":\"networking.istio.io/v1\",\"kind\":\"VirtualService\",\"metadata\":"
			     "{\"name\":\"ingress\",\"namespace\":\"ns\"},\"spec\":{\"hosts\":[\"%s\"],\"gateways\":[%s],"
			     "\"http\":[{\"route\":[{\"destination\":{\"host\":\"%s\",\"subset\":\"%s\"}}]}]}}",
			     v == 4 ? "s2" : "*", v == 3 ? "\"other\"" : v == 4 ? "\"mesh\",\"ns/gw\"" : "\"gw\"",
			     v == 2 ? "s1" : "s0", v == 2 ? "v2" : "v1");
		break;
	}
	if (r < 0)
		abort();
	return s;
}

struct slot {
	char name[32];
	char *text;
	struct compile_read *read;
};

int main(void)
{
	struct slot sl[KINDS][N_POD] = { 0 };
	struct compile_opts o = { .gateway_address = NULL };
	struct compile_memo *memo = NULL;
	struct plan last = { 0 };
	bool have_last = false;
	int failures = 0, partial = 0, quick = 0, steps = 4000;
	srandom(12);
	for (int k = 0; k < KINDS; k++)
		for (int i = 0; i < slots[k]; i++)
			snprintf(sl[k][i].name, sizeof(sl[k][i].name), "object %d/%d", k, i);
	for (int step = 0; step < steps; step++) {
		struct compile_read *changed[64], *gone[64], *fresh[64];
		size_t n_changed = 0, n_gone = 0, n_fresh = 0;
		/* one to three objects change at once, as a coalesced batch; every 10th batch puts every
		 * object back to its first version (a valid cluster), so that most batches start from a plan */
		bool reset = step % 10 == 0;
		for (int c = reset ? KINDS * N_POD : 1 + (int)(random() % 3); c > 0; c--) {
			int k = (int)(random() % KINDS), i = (int)(random() % slots[k]);
			/* mostly valid changes, so that most batches start from a plan and its memo */
			static const int pick[20] = { 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 3, 3, 4, 4 };
			int v = pick[random() % 20];
			if (reset) {
				k = (c - 1) / N_POD, i = (c - 1) % N_POD, v = 1;
				if (i >= slots[k])
					continue;
			}
			struct slot *s = &sl[k][i];
			char *text = object(k, i, v);
			if ((!text && !s->text) || (text && s->text && !strcmp(text, s->text))) {
				free(text);
				continue;
			}
			if (s->read)
				changed[n_changed++] = gone[n_gone++] = s->read;   /* freed after the step, as the follower does */
			s->read = NULL;
			free(s->text);
			s->text = text;
			if (text) {
				struct compile_input in = { .name = s->name, .buf = (const unsigned char *)text, .len = strlen(text) };
				s->read = compile_read(&o, &in);
				changed[n_changed++] = fresh[n_fresh++] = s->read;
			}
		}
		struct compile_read *reads[KINDS * N_POD];
		size_t n = 0;
		for (int k = 0; k < KINDS; k++)
			for (int i = 0; i < slots[k]; i++)
				if (sl[k][i].read)
					reads[n++] = sl[k][i].read;
		struct plan a, b;
		struct diags da = { 0 }, db = { 0 };
		struct compile_stats st;
		struct compile_memo *next = NULL;
		struct compile_delta delta = { 0 };
		/* the quick path first, as the follower tries it: last with the entries that changed */
		int ra = have_last ? compile_pods_update(&o, gone, n_gone, fresh, n_fresh, &last, memo, &delta, &st) : -1;
		if (!ra) {
			quick++;
			if (plan_copy(&last, &a))
				abort();
			for (size_t i = 0; i < delta.entries.n_services; i++)
				a.services[delta.at[i]] = delta.entries.services[i];
			next = memo;   /* brought up to date */
			memo = NULL;
		} else {
			ra = compile_plan_update(&o, reads, n, changed, n_changed, have_last ? &last : NULL, memo, &next, &a,
						 &da, &st);
		}
		int rb = compile_plan_reads(&o, reads, n, &b, &db, NULL);
		char *ga = outcome(ra, &a, &da), *gb = outcome(rb, &b, &db);
		partial += !ra && st.vs_built < st.vs_total;
		if ((ra != 0) != (rb != 0) || strcmp(ga, gb)) {
			if (failures < 3)
				printf("FAIL step %d (%zu changed, %zu of %zu VirtualServices built):\n--- update\n%s--- whole\n%s",
				       step, n_changed, st.vs_built, st.vs_total, ga, gb);
			failures++;
		}
		free(ga);
		free(gb);
		diags_free(&da);
		diags_free(&db);
		if (!rb)
			plan_free(&b);
		compile_memo_free(memo);
		memo = NULL;
		if (!ra) {   /* the new plan is adopted, as the follower copies it; the memo describes it */
			struct plan copy;
			if (plan_copy(&a, &copy))
				abort();
			plan_free(&a);
			if (delta.at)
				compile_delta_free(&delta);
			if (have_last)
				plan_free(&last);
			last = copy;
			have_last = true;
			memo = next;
		}
		for (size_t i = 0; i < n_changed; i++) {   /* the replaced reads: not in any slot any more */
			bool live = false;   /* a slot changed twice in a batch names its first read twice */
			for (size_t j = 0; j < n && !live; j++)
				live = reads[j] == changed[i];
			for (size_t j = i + 1; j < n_changed && !live; j++)
				live = changed[j] == changed[i];
			if (!live)
				compile_read_free(changed[i]);
		}
	}
	printf("%s compile_plan_update gives a whole build's plan or errors: %d random batches, %d built in part "
	       "(%d by the quick path for pods), %d differ\n",
	       failures || partial < steps / 10 || quick < steps / 20 ? "FAIL" : "ok", steps, partial, quick, failures);
	compile_memo_free(memo);
	if (have_last)
		plan_free(&last);
	for (int k = 0; k < KINDS; k++)
		for (int i = 0; i < slots[k]; i++) {
			compile_read_free(sl[k][i].read);
			free(sl[k][i].text);
		}
	return failures || partial < steps / 10 || quick < steps / 20;
}
