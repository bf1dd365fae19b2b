"""The double's storage: one global resourceVersion counter (as etcd's revision), the objects of each
resource type as serialized JSON, and per resource type an event log (the watch cache's window).

- Objects are kept as the bytes they are served as (storage version; only the apiVersion string
  differs between Istio's versions), with the few parsed fields selectors need. A write parses,
  changes and serializes again; a LIST joins bytes.
- The event log of a resource holds its last `history` events. A watch from resourceVersion N needs
  every event after N: N older than the log's window, or older than the last compaction, is 410.
- A list at an older resourceVersion (a `continue` token, or resourceVersionMatch=Exact) is rebuilt
  from the current objects by undoing the logged events after it, and cached; with the same window.
- ApiError carries the Status the API returns. Everything here runs under Store.lock.
"""

import collections
import contextlib
import copy
import gc
import ipaddress
import json
import random
import threading
import time
import uuid

import kinds
import patches

OBJECT_META = {"name", "generateName", "namespace", "selfLink", "uid", "resourceVersion", "generation",
               "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "labels", "annotations",
               "ownerReferences", "finalizers", "managedFields"}
TOP_LEVEL = {"apiVersion", "kind", "metadata", "spec", "status"}


class ApiError(Exception):
    def __init__(self, code, reason, message, details=None, headers=None):
        super().__init__(message)
        self.code, self.reason, self.message, self.details = code, reason, message, details
        self.headers = headers or []

    def status(self):
        st = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": self.message,
              "reason": self.reason, "code": self.code}
        if self.details is not None:
            st["details"] = self.details
        return st


def _details(rtype, name, kind=None):
    d = {}
    if name:
        d["name"] = name
    if rtype.group:
        d["group"] = rtype.group
    d["kind"] = kind or rtype.plural
    return d


def not_found(rtype, name):
    return ApiError(404, "NotFound", '%s "%s" not found' % (rtype.qualified, name), _details(rtype, name))


def no_such_path():
    return ApiError(404, "NotFound", "the server could not find the requested resource", {})


def conflict(rtype, name, why="the object has been modified; please apply your changes to the latest version "
                              "and try again"):
    return ApiError(409, "Conflict", 'Operation cannot be fulfilled on %s "%s": %s' % (rtype.qualified, name, why),
                    _details(rtype, name))


def invalid(rtype, name, causes):
    """causes: (field, message) pairs, message in apimachinery's words ("Invalid value: ...")."""
    text = ["%s: %s" % (f, m) for f, m in causes]
    msg = '%s "%s" is invalid: %s' % (rtype.kind, name, text[0] if len(text) == 1 else "[" + ", ".join(text) + "]")
    reason = {"Invalid": "FieldValueInvalid", "Required": "FieldValueRequired", "Forbidden": "FieldValueForbidden",
              "Duplicate": "FieldValueDuplicate", "Unsupported": "FieldValueNotSupported"}
    return ApiError(422, "Invalid", msg, dict(_details(rtype, name, rtype.kind), causes=[
        {"reason": reason.get(m.split(" ")[0].rstrip(":"), "FieldValueInvalid"), "message": m, "field": f}
        for f, m in causes]))


def bad_request(message):
    return ApiError(400, "BadRequest", message)


def gone(message):
    return ApiError(410, "Expired", message)


def now_rfc3339(t=None):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() if t is None else t))


_bulk_loads = 0
_bulk_lock = threading.Lock()


@contextlib.contextmanager
def bulk_load():
    """Around a load's parse and store. Its millions of new containers hold no cycle, yet each full pass
    of the garbage collector walks them all (most of a 180,000-object load's time): the collector waits
    until the last concurrent load ends, then what they stored is frozen out of its later passes."""
    global _bulk_loads
    with _bulk_lock:
        _bulk_loads += 1
        gc.disable()
    try:
        yield
    finally:
        with _bulk_lock:
            _bulk_loads -= 1
            if not _bulk_loads:
                gc.freeze()
                gc.enable()


def dumps(obj):
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


class Rec:
    """One stored object: its bytes at the storage version and what selectors read."""
    __slots__ = ("key", "ns", "name", "rv", "labels", "fields", "raw")

    def __init__(self, rtype, obj, rv):
        meta = obj["metadata"]
        self.ns, self.name, self.rv = meta.get("namespace", ""), meta["name"], rv
        self.key = "%s/%s" % (self.ns, self.name) if rtype.namespaced else self.name
        self.labels = meta.get("labels") or {}
        self.fields = kinds.field_values(rtype, obj)
        ordered = {"apiVersion": rtype.api_version(), "kind": rtype.kind, "metadata": meta}
        for k, v in obj.items():
            if k not in ordered:
                ordered[k] = v
        self.raw = dumps(ordered)

    def obj(self):
        return json.loads(self.raw)


class Event:
    __slots__ = ("rv", "type", "new", "old", "cache")

    def __init__(self, rv, etype, new, old):
        self.rv, self.type, self.new, self.old, self.cache = rv, etype, new, old, {}


class Resource:
    def __init__(self, rtype, lock):
        self.t = rtype
        self.objs = {}
        self.sorted_keys = None
        self.log = []
        self.base = 0           # sequence number of log[0]
        self.floor = 0          # resourceVersion of the newest event trimmed from the log
        self.cond = threading.Condition(lock)
        self.installed = True   # custom resources: is the CRD installed

    def keys_sorted(self):
        if self.sorted_keys is None:
            self.sorted_keys = sorted(self.objs)
        return self.sorted_keys

    def next_seq(self):
        return self.base + len(self.log)


class Store:
    def __init__(self, history=100000, service_cidr="198.19.0.0/16", graceful_pods=False):
        self.lock = threading.Lock()
        self.rv = 1
        self.compacted = 0
        self.history = history
        self.res = {t.key: Resource(t, self.lock) for t in kinds.TYPES}
        self.snapshots = collections.OrderedDict()
        self.net = ipaddress.ip_network(service_cidr)
        self.ip_cursor = 10
        self.used_ips = set()
        self.graceful_pods = graceful_pods
        self.timers = []
        with self.lock:
            for ns in ("default", "kube-system", "kube-public"):
                self._put_namespace(ns)

    # ---- the log ----

    def _commit(self, res, etype, new, old):
        ev = Event(self.rv, etype, new, old)
        res.log.append(ev)
        if len(res.log) > self.history:
            cut = len(res.log) - self.history + max(1, self.history // 8)
            res.floor = res.log[cut - 1].rv
            del res.log[:cut]
            res.base += cut
        res.cond.notify_all()

    def floor(self, res):
        """The oldest resourceVersion a watch or an Exact list of this resource may start from."""
        return max(self.compacted, res.floor)

    def compact(self):
        self.compacted = self.rv
        self.snapshots.clear()

    def _next_rv(self):
        self.rv += 1
        return self.rv

    # ---- snapshots (lists at a resourceVersion, continue tokens) ----

    def snapshot(self, res, rv=None):
        """A resource at rv (None: now) as its sorted keys and a key -> Rec mapping: now, the live objects
        themselves (read them under the lock); an older rv, rebuilt from the log and cached. 410 past the
        window."""
        if rv is None or rv == self.rv:
            return self.rv, res.keys_sorted(), res.objs
        if rv < self.floor(res):
            raise gone("The resourceVersion for the provided list is too old.")
        cache_key = (res.t.key, rv)
        snap = self.snapshots.get(cache_key)
        if snap is not None:
            self.snapshots.move_to_end(cache_key)
            return (rv,) + snap
        state = dict(res.objs)
        for ev in reversed(res.log):
            if ev.rv <= rv:
                break
            key = (ev.new or ev.old).key
            if ev.type == "ADDED":
                state.pop(key, None)
            else:
                state[key] = ev.old
        snap = sorted(state), state
        self._cache(cache_key, snap)
        return (rv,) + snap

    def _cache(self, key, snap):
        self.snapshots[key] = snap
        while len(self.snapshots) > 8:
            self.snapshots.popitem(last=False)

    # ---- helpers ----

    def resource(self, rtype):
        return self.res[rtype.key]

    def _put_namespace(self, name):
        res = self.res[("", "namespaces")]
        if name in res.objs:
            return
        obj = {"apiVersion": "v1", "kind": "Namespace",
               "metadata": {"name": name, "uid": str(uuid.uuid4()), "creationTimestamp": now_rfc3339(),
                            "labels": {"kubernetes.io/metadata.name": name}},
               "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}}
        rv = self._next_rv()
        obj["metadata"]["resourceVersion"] = str(rv)
        rec = Rec(res.t, obj, rv)
        self._insert(res, rec)
        self._commit(res, "ADDED", rec, None)

    def _insert(self, res, rec):
        if rec.key not in res.objs:
            res.sorted_keys = None
        res.objs[rec.key] = rec

    def _remove(self, res, key):
        res.objs.pop(key, None)
        res.sorted_keys = None

    def _check_namespace(self, ns):
        if ns and ns not in self.res[("", "namespaces")].objs:
            raise not_found(kinds.BY_KEY[("", "namespaces")], ns)

    def _strict(self, rtype, obj, version, validation, warnings):
        """fieldValidation: unknown top-level and metadata fields are dropped; Strict refuses them."""
        unknown = ['"%s"' % k for k in obj if k not in TOP_LEVEL]
        unknown += ['"metadata.%s"' % k for k in (obj.get("metadata") or {}) if k not in OBJECT_META]
        if not unknown:
            return
        if validation == "Strict":
            raise bad_request('%s in version "%s" cannot be handled as a %s: strict decoding error: %s' % (
                rtype.kind, version, rtype.kind, ", ".join("unknown field %s" % u for u in unknown)))
        if validation == "Warn":
            warnings.extend("unknown field %s" % u for u in unknown)
        for k in [k for k in obj if k not in TOP_LEVEL]:
            del obj[k]
        meta = obj.get("metadata") or {}
        for k in [k for k in meta if k not in OBJECT_META]:
            del meta[k]

    def _check_body(self, rtype, obj, version, ns, name=None):
        if not isinstance(obj, dict):
            raise bad_request("the body of the request was in an unknown format")
        want = rtype.api_version(version)
        if obj.get("kind") not in (None, "", rtype.kind) or obj.get("apiVersion") not in (None, "", want):
            raise bad_request('the API version in the data (%s) does not match the expected API version (%s)'
                              % (obj.get("apiVersion"), want) if obj.get("apiVersion") not in (None, "", want)
                              else "%s in version \"%s\" cannot be handled as a %s: the kind in the data (%s) "
                                   "does not match the expected kind" % (rtype.kind, version, rtype.kind,
                                                                         obj.get("kind")))
        meta = obj.get("metadata")
        if meta is None:
            meta = obj["metadata"] = {}
        if not isinstance(meta, dict):
            raise bad_request("metadata must be an object")
        if rtype.namespaced:
            if meta.get("namespace") and meta["namespace"] != ns:
                raise bad_request("the namespace of the provided object does not match the namespace sent on "
                                  "the request")
            meta["namespace"] = ns
        else:
            meta.pop("namespace", None)
        if name is not None and meta.get("name") and meta["name"] != name:
            raise bad_request("the name of the object (%s) does not match the name on the URL (%s)"
                              % (meta["name"], name))

    # ---- create ----

    def create(self, rtype, version, ns, obj, dry_run=False, validation="Strict", warnings=None):
        self._check_body(rtype, obj, version, ns)
        self._strict(rtype, obj, version, validation, warnings if warnings is not None else [])
        meta = obj["metadata"]
        if not meta.get("name"):
            if meta.get("generateName"):
                meta["name"] = meta["generateName"] + "".join(random.choice("bcdfghjklmnpqrstvwxz2456789")
                                                              for _ in range(5))
            else:
                raise invalid(rtype, "", [("metadata.name", "Required value: name or generateName is required")])
        err = kinds.name_error(rtype, meta["name"])
        if err:
            raise invalid(rtype, meta["name"], [("metadata.name", 'Invalid value: "%s": %s' % (meta["name"], err))])
        for k in ("uid", "resourceVersion", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds",
                  "generation", "selfLink", "managedFields"):
            meta.pop(k, None)
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = now_rfc3339()
        if rtype.custom:
            meta["generation"] = 1
            obj.pop("status", None)
        if rtype.kind == "Pod":
            kinds.default_pod(obj)
            kinds.pod_initial_status(obj)
        elif rtype.kind == "Service":
            kinds.default_service(obj)
            obj["status"] = {"loadBalancer": {}}
            errs = kinds.service_errors(obj)
            if errs:
                raise invalid(rtype, meta["name"], errs)
        elif rtype.kind == "Namespace":
            obj["spec"] = {"finalizers": ["kubernetes"]}
            obj["status"] = {"phase": "Active"}
            meta.setdefault("labels", {})["kubernetes.io/metadata.name"] = meta["name"]
        res = self.resource(rtype)
        with self.lock:
            self._check_installed(res)
            self._check_namespace(ns if rtype.namespaced else "")
            key = "%s/%s" % (ns, meta["name"]) if rtype.namespaced else meta["name"]
            if key in res.objs:
                raise ApiError(409, "AlreadyExists", '%s "%s" already exists' % (rtype.qualified, meta["name"]),
                               _details(rtype, meta["name"]))
            if rtype.kind == "Service":
                self._allocate_ips(rtype, obj, None, dry_run)
            if dry_run:
                return Rec(rtype, obj, 0)
            rv = self._next_rv()
            meta["resourceVersion"] = str(rv)
            rec = Rec(rtype, obj, rv)
            self._insert(res, rec)
            self._commit(res, "ADDED", rec, None)
            return rec

    def _check_installed(self, res):
        if not res.installed:
            raise no_such_path()

    def _allocate_ips(self, rtype, obj, old, dry_run):
        spec = obj["spec"]
        name = obj["metadata"]["name"]
        if spec.get("type") == "ExternalName":
            return
        ips = list(spec.get("clusterIPs") or [])
        ip = spec.get("clusterIP")
        if ip and not ips:
            ips = [ip]
        if ip and ips and ips[0] != ip:
            raise invalid(rtype, name, [("spec.clusterIPs", "Invalid value: %s: first value must match "
                                         "`clusterIP`" % json.dumps(ips))])
        if ips == ["None"]:
            spec["clusterIP"], spec["clusterIPs"] = "None", ["None"]
            return
        if not ips:
            ips = [self._free_ip()]
        elif old is None:
            for a in ips:
                if a in self.used_ips:
                    raise invalid(rtype, name, [("spec.clusterIPs", 'Invalid value: %s: failed to allocate IP %s: '
                                                 'provided IP is already allocated' % (json.dumps(ips), a))])
        spec["clusterIP"], spec["clusterIPs"] = ips[0], ips
        fams = ["IPv6" if ":" in a else "IPv4" for a in ips]
        spec.setdefault("ipFamilies", fams)
        spec.setdefault("ipFamilyPolicy", "SingleStack" if len(ips) == 1 else "RequireDualStack")
        if not dry_run:
            self.used_ips.update(ips)

    def _free_ip(self):
        n = self.net.num_addresses
        for _ in range(n):
            self.ip_cursor = self.ip_cursor + 1 if self.ip_cursor + 1 < n - 1 else 10
            a = str(self.net.network_address + self.ip_cursor)
            if a not in self.used_ips:
                return a
        raise ApiError(500, "InternalError", "Internal error occurred: failed to allocate a serviceIP: range is full")

    # ---- update and patch ----

    def get_rec(self, rtype, ns, name):
        res = self.resource(rtype)
        self._check_installed(res)
        rec = res.objs.get("%s/%s" % (ns, name) if rtype.namespaced else name)
        if rec is None:
            raise not_found(rtype, name)
        return rec

    def update(self, rtype, version, ns, name, obj, sub=None, dry_run=False, validation="Strict", warnings=None):
        self._check_body(rtype, obj, version, ns, name)
        obj["metadata"].setdefault("name", name)
        self._strict(rtype, obj, version, validation, warnings if warnings is not None else [])
        with self.lock:
            old = self.get_rec(rtype, ns, name)
            want = obj["metadata"].get("resourceVersion")
            if not want and rtype.custom:
                raise invalid(rtype, name, [("metadata.resourceVersion",
                                             "Invalid value: 0x0: must be specified for an update")])
            if want and want != str(old.rv):
                raise conflict(rtype, name)
            return self._write(rtype, old, obj, sub, dry_run)

    def patch(self, rtype, version, ns, name, ptype, body, sub=None, dry_run=False, validation="Strict",
              warnings=None):
        with self.lock:
            old = self.get_rec(rtype, ns, name)
            current = old.obj()
            current["apiVersion"] = rtype.api_version(version)
            try:
                if ptype == "merge":
                    new = patches.merge_patch(current, body)
                elif ptype == "json":
                    new = patches.json_patch(current, body)
                else:
                    new = patches.strategic_merge_patch(current, body, kinds.patch_meta(rtype.kind))
            except patches.PatchError as e:      # the patch handler's 422 (NewGenericServerResponse)
                raise ApiError(422, "Invalid", str(e), {})
            if not isinstance(new, dict):
                raise bad_request("the patch did not produce an object")
            self._check_body(rtype, new, version, ns, name)
            self._strict(rtype, new, version, validation, warnings if warnings is not None else [])
            want = new["metadata"].get("resourceVersion")
            if want and want != str(old.rv):
                raise conflict(rtype, name)
            return self._write(rtype, old, new, sub, dry_run)

    def _write(self, rtype, old, new, sub, dry_run):
        """Stores new over old as the registry's update strategies would; no change, no event."""
        res = self.resource(rtype)
        prev = old.obj()
        if sub == "status":
            status = new.get("status")
            new = copy.deepcopy(prev)
            if status is None:
                new.pop("status", None)
            else:
                new["status"] = status
        else:
            meta, pmeta = new["metadata"], prev["metadata"]
            for k in ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "generation"):
                if k in pmeta:
                    meta[k] = pmeta[k]
                else:
                    meta.pop(k, None)
            meta.pop("managedFields", None)
            meta.pop("selfLink", None)
            if "status" in prev:
                new["status"] = prev["status"]
            else:
                new.pop("status", None)
            if rtype.kind == "Service":
                self._service_update(rtype, prev, new)
            elif rtype.kind == "Pod":
                self._pod_update(rtype, prev, new)
            elif rtype.kind == "Namespace":
                new["spec"] = prev.get("spec", {})
            if rtype.custom:
                strip = ("metadata", "status", "apiVersion", "kind")
                if {k: v for k, v in new.items() if k not in strip} != \
                        {k: v for k, v in prev.items() if k not in strip}:
                    meta["generation"] = int(pmeta.get("generation", 1)) + 1
        new["metadata"]["resourceVersion"] = str(old.rv)
        new["apiVersion"], new["kind"] = rtype.api_version(), rtype.kind
        rec = Rec(rtype, new, old.rv)
        if rec.raw == old.raw:
            return old
        if dry_run:
            return rec
        rv = self._next_rv()
        new["metadata"]["resourceVersion"] = str(rv)
        rec = Rec(rtype, new, rv)
        self._insert(res, rec)
        self._commit(res, "MODIFIED", rec, old)
        meta = new["metadata"]
        if meta.get("deletionTimestamp") and not meta.get("finalizers") and not self._grace_pending(rtype, new):
            return self._delete_now(res, rec)
        return rec

    def _service_update(self, rtype, prev, new):
        spec, pspec = new.setdefault("spec", {}), prev.get("spec", {})
        kinds.default_service(new)
        for k in ("clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"):
            if not spec.get(k) and pspec.get(k):
                spec[k] = pspec[k]
        if spec.get("clusterIP") != pspec.get("clusterIP") and pspec.get("type") != "ExternalName":
            raise invalid(rtype, new["metadata"]["name"], [("spec.clusterIPs[0]", 'Invalid value: %s: may not '
                                                            'change once set' % json.dumps(spec.get("clusterIPs")))])
        errs = kinds.service_errors(new)
        if errs:
            raise invalid(rtype, new["metadata"]["name"], errs)

    def _pod_update(self, rtype, prev, new):
        kinds.default_pod(new)

        def mutable_stripped(spec):
            s = copy.deepcopy(spec or {})
            for group in ("containers", "initContainers"):
                for c in s.get(group) or []:
                    if isinstance(c, dict):
                        c.pop("image", None)
            for k in ("activeDeadlineSeconds", "tolerations", "terminationGracePeriodSeconds"):
                s.pop(k, None)
            return s
        if mutable_stripped(new.get("spec")) != mutable_stripped(prev.get("spec")):
            raise invalid(rtype, new["metadata"]["name"], [(
                "spec", "Forbidden: pod updates may not change fields other than `spec.containers[*].image`,"
                        "`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only "
                        "additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be "
                        "set to 1 if it was previously negative)")])

    # ---- delete ----

    def delete(self, rtype, ns, name, options, dry_run=False):
        res = self.resource(rtype)
        with self.lock:
            old = self.get_rec(rtype, ns, name)
            pre = (options or {}).get("preconditions") or {}
            obj = old.obj()
            meta = obj["metadata"]
            if pre.get("uid") and pre["uid"] != meta.get("uid"):
                raise conflict(rtype, name, "Precondition failed: UID in precondition: %s, UID in object meta: %s"
                               % (pre["uid"], meta.get("uid")))
            if pre.get("resourceVersion") and pre["resourceVersion"] != str(old.rv):
                raise conflict(rtype, name, "the ResourceVersion in the precondition (%s) does not match the "
                                            "ResourceVersion in record (%s). The object might have been modified"
                               % (pre["resourceVersion"], old.rv))
            if dry_run:
                return old, True
            grace = (options or {}).get("gracePeriodSeconds")
            graceful = (rtype.kind == "Pod" and self.graceful_pods and (obj.get("spec") or {}).get("nodeName")
                        and (grace is None or grace > 0))
            if meta.get("finalizers") or graceful:
                if graceful:
                    g = grace if grace is not None else (obj.get("spec") or {}).get("terminationGracePeriodSeconds", 30)
                    if not meta.get("deletionTimestamp") or g < meta.get("deletionGracePeriodSeconds", g + 1):
                        meta["deletionTimestamp"] = now_rfc3339(time.time() + g)
                        meta["deletionGracePeriodSeconds"] = g
                        self._expire_later(rtype, ns, name, g)
                elif not meta.get("deletionTimestamp"):
                    meta["deletionTimestamp"] = now_rfc3339()
                    meta["deletionGracePeriodSeconds"] = 0
                if meta == old.obj()["metadata"]:
                    return old, False
                rv = self._next_rv()
                meta["resourceVersion"] = str(rv)
                rec = Rec(rtype, obj, rv)
                self._insert(res, rec)
                self._commit(res, "MODIFIED", rec, old)
                return rec, False
            if rtype.kind == "Namespace":
                self._delete_namespace_contents(name)
            return self._delete_now(res, old), True

    def _grace_pending(self, rtype, obj):
        meta = obj["metadata"]
        return (rtype.kind == "Pod" and self.graceful_pods and meta.get("deletionGracePeriodSeconds", 0) > 0
                and meta.get("deletionTimestamp", "") > now_rfc3339())

    def _expire_later(self, rtype, ns, name, seconds):
        def expire():
            with self.lock:
                res = self.resource(rtype)
                rec = res.objs.get("%s/%s" % (ns, name))
                if rec is not None:
                    meta = rec.obj()["metadata"]
                    if meta.get("deletionTimestamp") and not meta.get("finalizers"):
                        self._delete_now(res, rec)
        t = threading.Timer(max(seconds, 0), expire)
        t.daemon = True
        t.start()

    def _delete_now(self, res, old):
        obj = old.obj()
        rv = self._next_rv()
        obj["metadata"]["resourceVersion"] = str(rv)
        rec = Rec(res.t, obj, rv)
        self._remove(res, old.key)
        if res.t.kind == "Service":
            self.used_ips.difference_update((obj.get("spec") or {}).get("clusterIPs") or [])
        self._commit(res, "DELETED", rec, old)
        return rec

    def _delete_namespace_contents(self, ns):
        for res in self.res.values():
            if res.t.namespaced:
                for key in [k for k, r in res.objs.items() if r.ns == ns]:
                    self._delete_now(res, res.objs[key])

    def delete_collection(self, rtype, ns, match):
        res = self.resource(rtype)
        out = []
        with self.lock:
            self._check_installed(res)
            for key in list(res.keys_sorted()):
                rec = res.objs.get(key)
                if rec is not None and (not ns or rec.ns == ns) and match(rec):
                    out.append(self._delete_now(res, rec))
        return out

    # ---- bulk load: objects stored as given, as a restore from etcd would ----

    def load(self, objs):
        n = 0
        with self.lock:
            for obj in objs:
                if not isinstance(obj, dict):
                    raise bad_request("load: every item must be an object")
                api = obj.get("apiVersion", "")
                group, _, version = api.rpartition("/")
                rtype = kinds.BY_KIND.get((group, obj.get("kind")))
                if rtype is None or version not in rtype.versions or not self.resource(rtype).installed:
                    raise bad_request("load: no resource for %s %s%s" % (
                        api, obj.get("kind"), " (its CRD is not installed)" if rtype else ""))
                meta = obj.setdefault("metadata", {})
                if not meta.get("name"):
                    raise bad_request("load: an object without metadata.name")
                if rtype.namespaced:
                    meta.setdefault("namespace", "default")
                    self._put_namespace(meta["namespace"])
                meta.setdefault("uid", str(uuid.uuid4()))
                meta.setdefault("creationTimestamp", now_rfc3339())
                if rtype.custom:
                    meta.setdefault("generation", 1)
                if rtype.kind == "Service":
                    kinds.default_service(obj)
                    self._allocate_ips(rtype, obj, None, False)
                res = self.resource(rtype)
                rv = self._next_rv()
                meta["resourceVersion"] = str(rv)
                obj["apiVersion"] = rtype.api_version()
                rec = Rec(rtype, obj, rv)
                old = res.objs.get(rec.key)
                self._insert(res, rec)
                self._commit(res, "MODIFIED" if old else "ADDED", rec, old)
                n += 1
            for res in self.res.values():     # sorted now, as etcd's keyspace is: not by the first list, under the lock
                res.keys_sorted()
            return n, self.rv

    # ---- CRDs ----

    def set_crds(self, installed):
        with self.lock:
            for res in self.res.values():
                if not res.t.custom or res.installed == installed:
                    continue
                if not installed:
                    for key in list(res.keys_sorted()):
                        self._delete_now(res, res.objs[key])
                res.installed = installed
                res.cond.notify_all()
