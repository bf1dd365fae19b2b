"""What the double knows about each kind it serves: names for discovery, the patch merge keys of the
built-in kinds, defaults and the few checks the real API makes that clients notice, the columns of
`kubectl get` (server-side printing, meta.k8s.io/v1 Table), and the discovery and OpenAPI documents.

Served: core v1 namespaces, services (+status), pods (+status); networking.istio.io virtualservices,
destinationrules, gateways (+status) in v1, v1beta1 and v1alpha3, one storage for the three versions
as Istio's CRDs have (the schemas are the same, so a version is only the apiVersion string).
"""

import calendar
import ipaddress
import re
import time

ISTIO = "networking.istio.io"
ISTIO_VERSIONS = ("v1", "v1beta1", "v1alpha3")   # discovery order: kube-aware version priority
ISTIO_CATEGORIES = ["istio-io", "networking-istio-io"]


class ResourceType:
    def __init__(self, group, versions, plural, singular, kind, namespaced, short=(), categories=(),
                 builtin=True, fields=()):
        self.group, self.versions, self.plural, self.singular = group, versions, plural, singular
        self.kind, self.namespaced, self.short, self.categories = kind, namespaced, list(short), list(categories)
        self.builtin = builtin            # built-in kinds take strategic merge patch; CRs do not
        self.custom = not builtin         # custom resources: generation, resourceVersion required on update
        self.fields = ("metadata.name", "metadata.namespace") + tuple(fields)
        self.key = (group, plural)
        self.storage_version = versions[0]

    def api_version(self, version=None):
        v = version or self.storage_version
        return "%s/%s" % (self.group, v) if self.group else v

    @property
    def qualified(self):              # "virtualservices.networking.istio.io", "pods"
        return "%s.%s" % (self.plural, self.group) if self.group else self.plural


TYPES = [
    ResourceType("", ("v1",), "namespaces", "namespace", "Namespace", False, ["ns"], fields=("status.phase",)),
    ResourceType("", ("v1",), "services", "service", "Service", True, ["svc"], ["all"],
                 fields=("spec.clusterIP", "spec.type")),
    ResourceType("", ("v1",), "pods", "pod", "Pod", True, ["po"], ["all"],
                 fields=("spec.nodeName", "spec.restartPolicy", "spec.schedulerName", "spec.serviceAccountName",
                         "spec.hostNetwork", "status.phase", "status.podIP", "status.nominatedNodeName")),
    ResourceType(ISTIO, ISTIO_VERSIONS, "virtualservices", "virtualservice", "VirtualService", True, ["vs"],
                 ISTIO_CATEGORIES, builtin=False),
    ResourceType(ISTIO, ISTIO_VERSIONS, "destinationrules", "destinationrule", "DestinationRule", True, ["dr"],
                 ISTIO_CATEGORIES, builtin=False),
    ResourceType(ISTIO, ISTIO_VERSIONS, "gateways", "gateway", "Gateway", True, ["gw"],
                 ISTIO_CATEGORIES, builtin=False),
]
BY_KEY = {t.key: t for t in TYPES}
BY_KIND = {(t.group, t.kind): t for t in TYPES}


def field_values(rtype, obj):
    """The values field selectors compare, as strings (absent fields read as "")."""
    out = {}
    for f in rtype.fields:
        cur = obj
        for part in f.split("."):
            cur = cur.get(part) if isinstance(cur, dict) else None
        if f == "spec.hostNetwork":
            cur = bool(cur)
        if isinstance(cur, bool):
            cur = "true" if cur else "false"
        out[f] = "" if cur is None else str(cur)
    return out


# ---- strategic merge patch: the merge keys of the built-in kinds' Go types ----

_META = {
    "metadata.finalizers": ({"merge"}, None),
    "metadata.ownerReferences": ({"merge"}, "uid"),
}
_CONTAINER = {
    "ports": ({"merge"}, "containerPort"),
    "env": ({"merge"}, "name"),
    "volumeMounts": ({"merge"}, "mountPath"),
    "volumeDevices": ({"merge"}, "devicePath"),
}
_POD = {
    "spec.volumes": ({"merge", "retainKeys"}, "name"),
    "spec.containers": ({"merge"}, "name"),
    "spec.initContainers": ({"merge"}, "name"),
    "spec.ephemeralContainers": ({"merge"}, "name"),
    "spec.imagePullSecrets": ({"merge"}, "name"),
    "spec.hostAliases": ({"merge"}, "ip"),
    "spec.topologySpreadConstraints": ({"merge"}, "topologyKey"),
    "spec.resourceClaims": ({"merge", "retainKeys"}, "name"),
    "spec.schedulingGates": ({"merge"}, "name"),
    "status.conditions": ({"merge"}, "type"),
    "status.podIPs": ({"merge"}, "ip"),
    "status.hostIPs": ({"merge"}, "ip"),
    "status.resourceClaimStatuses": ({"merge", "retainKeys"}, "name"),
}
for _c in ("containers", "initContainers", "ephemeralContainers"):
    for _f, _m in _CONTAINER.items():
        _POD["spec.%s[].%s" % (_c, _f)] = _m
_SERVICE = {
    "spec.ports": ({"merge"}, "port"),
    "status.conditions": ({"merge"}, "type"),
}
_NAMESPACE = {
    "status.conditions": ({"merge"}, "type"),
}
_MERGE_KEYS = {"Pod": _POD, "Service": _SERVICE, "Namespace": _NAMESPACE}
_REPLACE = (set(), None)


def patch_meta(kind):
    table = dict(_META)
    table.update(_MERGE_KEYS.get(kind, {}))

    def meta(path):
        return table.get(".".join(path).replace(".[]", "[]"), _REPLACE)
    return meta


# ---- names ----

DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def name_error(rtype, name):
    """The validation message for a bad metadata.name, or None (the messages are apimachinery's)."""
    if rtype.kind in ("Service", "Namespace"):
        rx, what, eg, pat, limit = (
            (DNS1035_LABEL, "a DNS-1035 label", "'my-name',  or 'abc-123'", "[a-z]([-a-z0-9]*[a-z0-9])?", 63)
            if rtype.kind == "Service" else
            (DNS1123_LABEL, "a lowercase RFC 1123 label", "'my-name',  or '123-abc'",
             "[a-z0-9]([-a-z0-9]*[a-z0-9])?", 63))
        first = ("start with an alphabetic character" if rtype.kind == "Service"
                 else "start with an alphanumeric character")
        if len(name) > limit:
            return "must be no more than %d characters" % limit
        if not rx.match(name):
            return ("%s must consist of lower case alphanumeric characters or '-', %s, and end with an "
                    "alphanumeric character (e.g. %s, regex used for validation is '%s')" % (what, first, eg, pat))
        return None
    if len(name) > 253:
        return "must be no more than 253 characters"
    if not DNS1123_SUBDOMAIN.match(name):
        return ("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
                "and must start and end with an alphanumeric character (e.g. 'example.com', regex used for "
                "validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')")
    return None


# ---- defaults, as the API server's defaulting and registry strategies set them ----

def default_pod(obj):
    spec = obj.setdefault("spec", {})
    for c in spec.get("containers") or []:
        if not isinstance(c, dict):
            continue
        c.setdefault("terminationMessagePath", "/dev/termination-log")
        c.setdefault("terminationMessagePolicy", "File")
        image = c.get("image", "")
        tag = image.rsplit("/", 1)[-1]
        c.setdefault("imagePullPolicy", "Always" if (":" not in tag or tag.endswith(":latest")) and "@" not in tag
                     else "IfNotPresent")
        c.setdefault("resources", {})
        for p in c.get("ports") or []:
            if isinstance(p, dict):
                p.setdefault("protocol", "TCP")
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("securityContext", {})
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("enableServiceLinks", True)
    spec.setdefault("preemptionPolicy", "PreemptLowerPriority")
    spec.setdefault("priority", 0)


def pod_initial_status(obj):
    """Pod creation resets status, as the registry does: the kubelet writes it through pods/status."""
    qos = "BestEffort"
    for c in (obj.get("spec") or {}).get("containers") or []:
        res = c.get("resources") or {} if isinstance(c, dict) else {}
        if res.get("requests") or res.get("limits"):
            qos = "Burstable"
    obj["status"] = {"phase": "Pending", "qosClass": qos}


def default_service(obj):
    spec = obj.setdefault("spec", {})
    spec.setdefault("type", "ClusterIP")
    spec.setdefault("sessionAffinity", "None")
    spec.setdefault("internalTrafficPolicy", "Cluster")
    for p in spec.get("ports") or []:
        if isinstance(p, dict):
            p.setdefault("protocol", "TCP")
            if "port" in p:
                p.setdefault("targetPort", p["port"])


def service_errors(obj):
    """The checks of a Service's spec that a client can trip over: (field, message) pairs."""
    errs = []
    spec = obj.get("spec") or {}
    stype = spec.get("type", "ClusterIP")
    if stype not in ("ClusterIP", "NodePort", "LoadBalancer", "ExternalName"):
        errs.append(("spec.type", 'Unsupported value: "%s": supported values: "ClusterIP", "ExternalName", '
                     '"LoadBalancer", "NodePort"' % stype))
    ports = spec.get("ports") or []
    if not ports and stype != "ExternalName":
        errs.append(("spec.ports", "Required value"))
    seen = set()
    for i, p in enumerate(ports):
        if not isinstance(p, dict):
            errs.append(("spec.ports[%d]" % i, "Invalid value: must be an object"))
            continue
        port = p.get("port")
        if not isinstance(port, int) or not 1 <= port <= 65535:
            errs.append(("spec.ports[%d].port" % i, "Invalid value: %s: must be between 1 and 65535, inclusive"
                         % port))
        if p.get("protocol", "TCP") not in ("TCP", "UDP", "SCTP"):
            errs.append(("spec.ports[%d].protocol" % i, 'Unsupported value: "%s": supported values: "SCTP", '
                         '"TCP", "UDP"' % p.get("protocol")))
        if len(ports) > 1 and not p.get("name"):
            errs.append(("spec.ports[%d].name" % i, "Required value"))
        k = (port, p.get("protocol", "TCP"))
        if k in seen:
            errs.append(("spec.ports[%d]" % i, "Duplicate value: %s" % _go_map(k)))
        seen.add(k)
    ip = spec.get("clusterIP")
    if ip not in (None, "", "None"):
        try:
            ipaddress.ip_address(ip)
        except ValueError:
            errs.append(("spec.clusterIPs[0]", 'Invalid value: "%s": must be a valid IP address, (e.g. 10.9.8.7 '
                         'or 2001:db8::ffff)' % ip))
    return errs


def _go_map(k):
    return "core.ServicePort{Port:%s, Protocol:\"%s\"}" % k


# ---- server-side printing: meta.k8s.io/v1 Table ----

def human_duration(seconds):
    """apimachinery's duration.HumanDuration, as kubectl's AGE column shows it."""
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    if s < 0:
        return "0s"
    if s < 120:
        return "%ds" % s
    m = s // 60
    if m < 10:
        return "%dm" % m if s % 60 == 0 else "%dm%ds" % (m, s % 60)
    if m < 180:
        return "%dm" % m
    h = s // 3600
    if h < 8:
        return "%dh" % h if m % 60 == 0 else "%dh%dm" % (h, m % 60)
    if h < 48:
        return "%dh" % h
    if h < 24 * 8:
        return "%dd" % (h // 24) if h % 24 == 0 else "%dd%dh" % (h // 24, h % 24)
    if h < 24 * 365 * 2:
        return "%dd" % (h // 24)
    if h < 24 * 365 * 8:
        dy = (h // 24) % 365
        return "%dy" % (h // 24 // 365) if dy == 0 else "%dy%dd" % (h // 24 // 365, dy)
    return "%dy" % (h // 24 // 365)


def _age(obj):
    ts = (obj.get("metadata") or {}).get("creationTimestamp")
    if not ts:
        return "<unknown>"
    try:
        t = calendar.timegm(time.strptime(ts, "%Y-%m-%dT%H:%M:%SZ"))
    except ValueError:
        return "<unknown>"
    return human_duration(time.time() - t)


def _col(name, typ, desc, priority=0, fmt=""):
    return {"name": name, "type": typ, "format": fmt, "description": desc, "priority": priority}


NAME_COL = _col("Name", "string", "Name must be unique within a namespace. Is required when creating resources, "
                "although some resources may allow a client to request the generation of an appropriate name "
                "automatically. Name is primarily intended for creation idempotence and configuration "
                "definition. Cannot be updated. More info: "
                "https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names", fmt="name")
AGE_COL = _col("Age", "string", "CreationTimestamp is a timestamp representing the server time when this object "
               "was created. It is not guaranteed to be set in happens-before order across separate operations. "
               "Clients may not set this value. It is represented in RFC3339 form and is in UTC.")
AGE_COL_CR = _col("Age", "date", AGE_COL["description"])


def _labels_string(sel):
    if not sel:
        return "<none>"
    return ",".join("%s=%s" % (k, sel[k]) for k in sorted(sel))


def _service_ports(spec):
    out = []
    for p in spec.get("ports") or []:
        if p.get("nodePort"):
            out.append("%s:%s/%s" % (p.get("port"), p["nodePort"], p.get("protocol", "TCP")))
        else:
            out.append("%s/%s" % (p.get("port"), p.get("protocol", "TCP")))
    return ",".join(out) if out else "<none>"


def _service_external(obj):
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    t = spec.get("type", "ClusterIP")
    if t == "ExternalName":
        return spec.get("externalName", "<none>")
    ips = list(spec.get("externalIPs") or [])
    if t == "LoadBalancer":
        ing = [i.get("ip") or i.get("hostname") for i in (status.get("loadBalancer") or {}).get("ingress") or []]
        ips = ing + ips
        return ",".join(ips) if ips else "<pending>"
    return ",".join(ips) if ips else "<none>"


def _pod_row(obj):
    spec, status, meta = obj.get("spec") or {}, obj.get("status") or {}, obj.get("metadata") or {}
    containers = spec.get("containers") or []
    statuses = status.get("containerStatuses") or []
    ready = sum(1 for s in statuses if s.get("ready"))
    restarts = sum(int(s.get("restartCount") or 0) for s in statuses)
    reason = status.get("reason") or status.get("phase") or ""
    for s in statuses:
        st = s.get("state") or {}
        if (st.get("waiting") or {}).get("reason"):
            reason = st["waiting"]["reason"]
        elif (st.get("terminated") or {}).get("reason"):
            reason = st["terminated"]["reason"]
    if meta.get("deletionTimestamp"):
        reason = "Terminating"
    gates = spec.get("readinessGates") or []
    conds = {c.get("type"): c.get("status") for c in status.get("conditions") or []}
    gates_cell = "<none>" if not gates else "%d/%d" % (
        sum(1 for g in gates if conds.get(g.get("conditionType")) == "True"), len(gates))
    return ["%d/%d" % (ready, len(containers)), reason, str(restarts), _age(obj),
            status.get("podIP") or "<none>", spec.get("nodeName") or "<none>",
            status.get("nominatedNodeName") or "<none>", gates_cell]


def _jsonpath_cell(value):
    if value is None:
        return None
    if isinstance(value, (list, dict)):
        import json
        return json.dumps(value, separators=(",", ":"))
    return str(value)


TABLES = {
    "Namespace": ([_col("Status", "string", "The status of the namespace")],
                  lambda o: [(o.get("status") or {}).get("phase", "Active")]),
    "Service": ([_col("Type", "string", "type determines how the Service is exposed."),
                 _col("Cluster-IP", "string", "clusterIP is the IP address of the service."),
                 _col("External-IP", "string", "List of IP addresses for which nodes in the cluster will also "
                      "accept traffic for this service."),
                 _col("Port(s)", "string", "The list of ports that are exposed by this service.")],
                lambda o: [(o.get("spec") or {}).get("type", "ClusterIP"),
                           (o.get("spec") or {}).get("clusterIP") or "<none>",
                           _service_external(o), _service_ports(o.get("spec") or {})]),
    "VirtualService": ([_col("Gateways", "string", "The names of gateways and sidecars that should apply these "
                             "routes"),
                        _col("Hosts", "string", "The destination hosts to which traffic is being sent")],
                       lambda o: [_jsonpath_cell((o.get("spec") or {}).get("gateways")),
                                  _jsonpath_cell((o.get("spec") or {}).get("hosts"))]),
    "DestinationRule": ([_col("Host", "string", "The name of a service from the service registry")],
                        lambda o: [_jsonpath_cell((o.get("spec") or {}).get("host"))]),
    "Gateway": ([], lambda o: []),
}


def table_columns(rtype):
    if rtype.kind == "Pod":
        return [NAME_COL, _col("Ready", "string", "The aggregate readiness state of this pod for accepting "
                               "traffic."),
                _col("Status", "string", "The aggregate status of the containers in this pod."),
                _col("Restarts", "string", "The number of times the containers in this pod have been restarted "
                     "and when the last container in this pod has restarted."),
                AGE_COL,
                _col("IP", "string", "podIP is the IP address allocated to the pod.", 1),
                _col("Node", "string", "Name of the Node this pod is bound to.", 1),
                _col("Nominated Node", "string", "nominatedNodeName is set when this pod preempts other pods "
                     "on the node.", 1),
                _col("Readiness Gates", "string", "If specified, all readiness gates will be evaluated for pod "
                     "readiness.", 1)]
    cols, _ = TABLES[rtype.kind]
    if rtype.custom:
        return [NAME_COL] + cols + [AGE_COL_CR]
    extra = [_col("Selector", "string", "Route service traffic to pods with label keys and values matching this "
                  "selector.", 1)] if rtype.kind == "Service" else []
    return [NAME_COL] + cols + [AGE_COL] + extra


def table_cells(rtype, obj):
    name = (obj.get("metadata") or {}).get("name", "")
    if rtype.kind == "Pod":
        return [name] + _pod_row(obj)
    _, cells = TABLES[rtype.kind]
    row = [name] + cells(obj) + [_age(obj)]
    if rtype.kind == "Service":
        row.append(_labels_string((obj.get("spec") or {}).get("selector")))
    return row


# ---- discovery ----

VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
STATUS_VERBS = ["get", "patch", "update"]


def resource_list(group, version, crds_installed=True):
    gv = "%s/%s" % (group, version) if group else version
    res = []
    for t in TYPES:
        if t.group != group or version not in t.versions or (t.custom and not crds_installed):
            continue
        entry = {"name": t.plural, "singularName": t.singular, "namespaced": t.namespaced, "kind": t.kind,
                 "verbs": VERBS if t.kind != "Namespace" else [v for v in VERBS if v != "deletecollection"]}
        if t.short:
            entry["shortNames"] = t.short
        if t.categories:
            entry["categories"] = t.categories
        res.append(entry)
        res.append({"name": t.plural + "/status", "singularName": "", "namespaced": t.namespaced,
                    "kind": t.kind, "verbs": STATUS_VERBS})
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": res}


def istio_group():
    versions = [{"groupVersion": "%s/%s" % (ISTIO, v), "version": v} for v in ISTIO_VERSIONS]
    return {"name": ISTIO, "versions": versions, "preferredVersion": versions[0]}


# ---- OpenAPI ----
#
# kubectl >= 1.26 asks /openapi/v3 whether a kind's PATCH takes the fieldValidation parameter
# (cli-runtime's QueryParamVerifierV3). The documents below say yes for every kind, so kubectl
# leaves validation to the server (fieldValidation=Strict) and needs no schema. They name the
# patch bodies each kind takes without strategic merge patch, so kubectl's apply computes its patch
# from its compiled-in Go types (built-in kinds) or as a JSON merge patch (custom resources),
# instead of from schemas the double does not carry. kubectl 1.20 validates on the client from
# /openapi/v2 (protobuf only): that document has no definitions, so no kind has a schema and
# kubectl validates nothing, as for a CRD without a schema.

def _op(t, version, verb):
    op = {"operationId": "%s%s" % (verb, t.kind),
          "x-kubernetes-action": verb,
          "x-kubernetes-group-version-kind": {"group": t.group, "version": version, "kind": t.kind},
          "parameters": [{"name": "dryRun", "in": "query", "schema": {"type": "string"}},
                         {"name": "fieldManager", "in": "query", "schema": {"type": "string"}},
                         {"name": "fieldValidation", "in": "query", "schema": {"type": "string"}}],
          "responses": {"200": {"description": "OK"}}}
    if verb == "patch":
        op["requestBody"] = {"content": {ct: {"schema": {"type": "object"}} for ct in
                                         ("application/json-patch+json", "application/merge-patch+json")},
                             "required": True}
    return op


def openapi_v3_paths(crds_installed=True):
    gvs = {"api/v1": ("", "v1")}
    if crds_installed:
        for v in ISTIO_VERSIONS:
            gvs["apis/%s/%s" % (ISTIO, v)] = (ISTIO, v)
    return gvs


def openapi_v3_doc(group, version, crds_installed=True):
    paths = {}
    for t in TYPES:
        if t.group != group or version not in t.versions or (t.custom and not crds_installed):
            continue
        base = "/api/v1" if not group else "/apis/%s/%s" % (group, version)
        item = base + ("/namespaces/{namespace}/%s/{name}" if t.namespaced else "/%s/{name}") % t.plural
        paths[item] = {"get": _op(t, version, "get"), "put": _op(t, version, "put"),
                       "patch": _op(t, version, "patch"), "delete": _op(t, version, "delete")}
        coll = base + ("/namespaces/{namespace}/%s" if t.namespaced else "/%s") % t.plural
        paths[coll] = {"get": _op(t, version, "list"), "post": _op(t, version, "post")}
        paths[item + "/status"] = {"get": _op(t, version, "get"), "put": _op(t, version, "put"),
                                   "patch": _op(t, version, "patch")}
    return {"openapi": "3.0.0",
            "info": {"title": "Kubernetes", "version": "v1.32.0"},
            "paths": paths, "components": {}}


def _pb_field(num, payload):
    """A length-delimited protobuf field (wire type 2)."""
    n, out = len(payload), bytearray([(num << 3) | 2])
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            break
    return bytes(out) + payload


def openapi_v2_protobuf(version):
    """gnostic's openapi_v2.Document: swagger "2.0", info {title, version}, empty paths."""
    info = _pb_field(1, b"Kubernetes") + _pb_field(2, version.encode())
    return _pb_field(1, b"2.0") + _pb_field(2, info) + _pb_field(8, b"")
