// SPDX-License-Identifier: MIT
/* Kubernetes Pods into pod records (YAML -> records): labels, container ports, IPs and readiness,
 * from which resolve.c picks the endpoints of a destination. */
#include "compile/kinds.h"

#include <netinet/in.h>
#include <string.h>

#include "common/json.h"
#include "common/names.h"

static const char *const pod_spec_fields[] = {
	"activeDeadlineSeconds", "affinity", "automountServiceAccountToken", "containers", "dnsConfig",
	"dnsPolicy", "enableServiceLinks", "ephemeralContainers", "hostAliases", "hostIPC", "hostNetwork",
	"hostPID", "hostUsers", "hostname", "hostnameOverride", "imagePullSecrets", "initContainers", "nodeName",
	"nodeSelector", "os", "overhead", "preemptionPolicy", "priority", "priorityClassName", "readinessGates",
	"resourceClaims", "resources", "restartPolicy", "runtimeClassName", "schedulerName", "schedulingGates",
	"securityContext", "serviceAccount", "serviceAccountName", "setHostnameAsFQDN", "shareProcessNamespace",
	"subdomain", "terminationGracePeriodSeconds", "tolerations", "topologySpreadConstraints", "volumes", NULL
};
static const char *const container_fields[] = {
	"args", "command", "env", "envFrom", "image", "imagePullPolicy", "lifecycle", "livenessProbe", "name",
	"ports", "readinessProbe", "resizePolicy", "resources", "restartPolicy", "restartPolicyRules",
	"securityContext", "startupProbe", "stdin", "stdinOnce", "terminationMessagePath",
	"terminationMessagePolicy", "tty", "volumeDevices", "volumeMounts", "workingDir", NULL
};
static const char *const container_port_fields[] = { "containerPort", "hostIP", "hostPort", "name", "protocol",
						      NULL };

/* The members of a mapping but those known (fields) and not read (but those of read), as JSON. */
static void write_read(json_writer_t *w, const struct ynode *m, const char *const *fields, const char *read,
		       const char *also)
{
	jsonw_start_object(w);
	for (uint32_t i = 0; i < m->n; i++) {
		const struct ynode *k = ymap_key(m, i), *v = ymap_val(m, i);
		if (k->type != YN_SCALAR || (cc_known_field(fields, k->str) && strcmp(k->str, read) && strcmp(k->str, also)))
			continue;
		jsonw_name(w, k->str);
		if (!strcmp(k->str, "containers") && v->type == YN_SEQ) {
			jsonw_start_array(w);
			for (uint32_t j = 0; j < v->n; j++)
				if (v->items[j]->type == YN_MAP)
					write_read(w, v->items[j], container_fields, "ports", "ports");
				else
					ytree_write_json(w, v->items[j], NULL, NULL);
			jsonw_end_array(w);
		} else {
			ytree_write_json(w, v, NULL, NULL);
		}
	}
	jsonw_end_object(w);
}

/* A Pod's spec and status as the readers below read them (compile_member_json). */
void cc_pod_spec_json(json_writer_t *w, const struct ynode *spec)
{
	if (spec->type == YN_MAP)
		write_read(w, spec, pod_spec_fields, "containers", "hostNetwork");
	else
		ytree_write_json(w, spec, NULL, NULL);
}

void cc_pod_status_json(json_writer_t *w, const struct ynode *st)
{
	static const char *const kept[] = { "phase", "podIP", "podIPs", "conditions", NULL };
	static const char *const ip[] = { "ip", NULL }, *const condition[] = { "type", "status", NULL };
	if (st->type != YN_MAP) {
		ytree_write_json(w, st, NULL, NULL);
		return;
	}
	const struct ynode *all_ips = ymap_get(st, "podIPs");
	bool listed = all_ips && all_ips->type == YN_SEQ && all_ips->n;   /* podIP is read only without them */
	jsonw_start_object(w);
	for (uint32_t i = 0; i < st->n; i++) {
		const struct ynode *k = ymap_key(st, i), *v = ymap_val(st, i);
		bool ips = !strcmp(k->str, "podIPs"), conds = !strcmp(k->str, "conditions");
		if (k->type != YN_SCALAR || !cc_known_field(kept, k->str) || (listed && !strcmp(k->str, "podIP")))
			continue;
		jsonw_name(w, k->str);
		if ((!ips && !conds) || v->type != YN_SEQ) {
			ytree_write_json(w, v, NULL, NULL);
			continue;
		}
		jsonw_start_array(w);
		for (uint32_t j = 0; j < v->n; j++) {
			const struct ynode *item = v->items[j], *type = ymap_get(item, "type");
			if (item->type != YN_MAP)
				ytree_write_json(w, item, NULL, NULL);
			else if (!conds || !type || type->type != YN_SCALAR || !strcmp(type->str, "Ready"))
				cc_write_members(w, item, conds ? condition : ip);
			/* another condition than Ready: read_pod_status passes over it */
		}
		jsonw_end_array(w);
	}
	jsonw_end_object(w);
}

/* One port of a container, added to p when it has a number: a named targetPort looks it up. */
static void read_container_port(struct cctx *c, const struct ynode *cp, struct pod *p)
{
	cc_check_fields(c, cp, container_port_fields);
	struct pod_port *pp = &p->ports[p->n_ports];
	bool ok = true;
	pp->proto = IPPROTO_TCP;
	for (uint32_t q = 0; q < cp->n; q++) {
		const char *k = ymap_key(cp, q)->str;
		const struct ynode *v = ymap_val(cp, q);
		size_t old = cc_push_key(c, k);
		if (!strcmp(k, "containerPort"))
			ok = cc_get_port(c, v, &pp->port) && ok;
		else if (!strcmp(k, "name"))
			pp->name = cc_get_name(c, v, "port name", name_port_name_error);
		else if (!strcmp(k, "protocol"))
			pp->proto = cc_get_protocol(c, v, &ok);
		cc_pop(c, old);
	}
	if (ok && pp->port)
		p->n_ports++;
}

/* A container's ports join those of the containers before it: a pod has one list. */
static void read_container_ports(struct cctx *c, const struct ynode *ports, struct pod *p)
{
	struct pod_port *np = arena_alloc(c->keep, (p->n_ports + ports->n + 1) * sizeof(*np));
	if (p->n_ports)
		memcpy(np, p->ports, p->n_ports * sizeof(*np));
	p->ports = np;
	for (uint32_t j = 0; j < ports->n; j++) {
		size_t old = cc_push_index(c, j);
		if (cc_want(c, ports->items[j], YN_MAP))
			read_container_port(c, ports->items[j], p);
		cc_pop(c, old);
	}
}

static void read_containers(struct cctx *c, const struct ynode *list, struct pod *p)
{
	if (ynode_is_null(list) || !cc_want(c, list, YN_SEQ))
		return;
	for (uint32_t i = 0; i < list->n; i++) {
		const struct ynode *ct = list->items[i];
		size_t old = cc_push_index(c, i);
		if (cc_want(c, ct, YN_MAP)) {
			cc_check_fields(c, ct, container_fields);
			const struct ynode *ports = ymap_get(ct, "ports");
			size_t o2 = cc_push_key(c, "ports");
			if (ports && !ynode_is_null(ports) && cc_want(c, ports, YN_SEQ))
				read_container_ports(c, ports, p);
			cc_pop(c, o2);
		}
		cc_pop(c, old);
	}
}

static void read_pod_status(struct cctx *c, const struct ynode *st, struct pod *p)
{
	if (!st || ynode_is_null(st) || st->type != YN_MAP)
		return;
	const struct ynode *phase = ymap_get(st, "phase");
	bool running = phase && phase->type == YN_SCALAR && !strcmp(phase->str, "Running");
	p->terminated = phase && phase->type == YN_SCALAR &&
			(!strcmp(phase->str, "Succeeded") || !strcmp(phase->str, "Failed"));
	bool ready = false;
	const struct ynode *conds = ymap_get(st, "conditions");
	for (uint32_t i = 0; conds && conds->type == YN_SEQ && i < conds->n; i++) {
		const struct ynode *t = ymap_get(conds->items[i], "type"), *s = ymap_get(conds->items[i], "status");
		if (t && s && t->type == YN_SCALAR && s->type == YN_SCALAR && !strcmp(t->str, "Ready"))
			ready = !strcmp(s->str, "True") || !strcmp(s->str, "true");
	}
	p->ready = running && ready;
	size_t old = cc_push_key(c, "status");
	const struct ynode *ips = ymap_get(st, "podIPs"), *ip = ymap_get(st, "podIP");
	if (ips && ips->type == YN_SEQ && ips->n) {
		size_t o2 = cc_push_key(c, "podIPs");
		for (uint32_t i = 0; i < ips->n; i++) {
			size_t o3 = fieldpath_push(&c->path, "[%u].ip", i);
			const struct ynode *one = ymap_get(ips->items[i], "ip");
			struct plan_addr a;
			if (!one) {
				cc_err(c, ips->items[i], "%s is required", c->path.s);
			} else if (one->type != YN_SCALAR || !name_parse_addr(one->str, &a)) {
				cc_err(c, one, "%s must be an IP address, got %s", c->path.s, cc_clip_node(c, one));
			} else if (p->n_ips == 2 || (p->n_ips == 1 && p->ips[0].family == a.family)) {
				cc_err(c, one, "%s: a pod has at most one IP per family", c->path.s);
			} else {
				p->ips[p->n_ips++] = a;
			}
			cc_pop(c, o3);
		}
		cc_pop(c, o2);
	} else if (ip && !ynode_is_null(ip)) {
		size_t o2 = cc_push_key(c, "podIP");
		if (ip->type != YN_SCALAR || !name_parse_addr(ip->str, &p->ips[0]))
			cc_err(c, ip, "%s must be an IP address, got %s", c->path.s, cc_clip_node(c, ip));
		else
			p->n_ips = 1;
		cc_pop(c, o2);
	}
	cc_pop(c, old);
}

void cc_read_pod(struct cctx *c, const struct ynode *obj)
{
	struct meta m;
	if (!cc_open_object(c, obj, "Pod", &m))
		return;
	struct pod *p = arena_alloc(c->keep, sizeof(*p));
	p->name = m.name;
	p->ns = m.ns;
	p->at = cc_node_mark(c, obj);
	size_t old = fieldpath_push_str(&c->path, "", "metadata.labels");
	cc_get_labels(c, m.labels, &p->labels);
	cc_pop(c, old);
	const struct ynode *spec = ymap_get(obj, "spec");
	old = cc_push_key(c, "spec");
	if (spec && !ynode_is_null(spec) && cc_want(c, spec, YN_MAP)) {
		cc_check_fields(c, spec, pod_spec_fields);
		const struct ynode *hn = ymap_get(spec, "hostNetwork");
		p->host_network = hn && hn->type == YN_SCALAR && !strcmp(hn->str, "true");
		size_t o2 = cc_push_key(c, "containers");
		read_containers(c, ymap_get(spec, "containers"), p);
		cc_pop(c, o2);
	}
	cc_pop(c, old);
	read_pod_status(c, ymap_get(obj, "status"), p);
	p->deleting = m.deleting;
	ptrvec_push(&c->pods, p);
}
