#!/usr/bin/env python3
"""A Kubernetes API server double for sluice's tests: TLS, bearer tokens, per-user authorization,
discovery and OpenAPI as kubectl reads them, list/get/create/update/patch/delete/watch of Namespaces,
Services, Pods and Istio's VirtualService, DestinationRule and Gateway, and faults on demand.

    apiserver.py --cert server.crt --key server.key --tokens tokens.csv [--port 0] [--port-file F] ...

Python 3 standard library only. The protocol subset it serves and what it simplifies:
tests/apiserver/README.md. The tests that hold it to the protocol with the real kubectl:
tests/e2e/test_apiserver.sh.
"""

import argparse
import base64
import bisect
import csv
import json
import operator
import os
import re
import select
import signal
import socket
import ssl
import sys
import threading
import time
import traceback
import urllib.parse
from http.server import BaseHTTPRequestHandler

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kinds                                       # noqa: E402
import protobuf                                    # noqa: E402
import selector as sel                             # noqa: E402
from store import ApiError, Store, bad_request, bulk_load, dumps, gone, no_such_path  # noqa: E402

SERVER_VERSION = "v1.32.0"

# The users' rights, as RBAC rules: (verbs, API groups, resources); "*" is anything.
DEFAULT_POLICY = {
    "admin": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}],
    "sluiced": [{"verbs": ["get", "list", "watch"], "apiGroups": ["", kinds.ISTIO],
                 "resources": ["services", "pods", "virtualservices", "destinationrules", "gateways"]}],
    "rollout": [{"verbs": ["get", "list", "watch", "patch", "update"], "apiGroups": [kinds.ISTIO],
                 "resources": ["virtualservices"]},
                {"verbs": ["list"], "apiGroups": [""], "resources": ["pods"]}],   # sluice's pods, for --wait
    "nobody": [],
}

RAW = operator.attrgetter("raw")      # a Rec's bytes, fetched in C by map() over a page
LIST_WRITE_ITEMS = 2000               # a list's items per write: a few MB each, not one string of the whole list

PATCH_TYPES = {"application/merge-patch+json": "merge", "application/json-patch+json": "json",
               "application/strategic-merge-patch+json": "strategic"}


class Faults:
    """What the tests asked to go wrong (POST /_sluice/faults)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.reset()

    def reset(self):
        self.fail = []          # [{"count", "code", "path" (regex), "method"}]
        self.delay_ms = 0
        self.delay_path = None

    def state(self):
        return {"fail": self.fail, "delay_ms": self.delay_ms, "delay_path": self.delay_path}

    def take_failure(self, method, path):
        with self.lock:
            for f in self.fail:
                if f["count"] > 0 and (not f.get("path") or re.search(f["path"], path)) and \
                        (not f.get("method") or f["method"].upper() == method):
                    f["count"] -= 1
                    code = f.get("code", 500)
                    self.fail = [x for x in self.fail if x["count"] > 0]
                    return code
        return None

    def delay(self, path):
        if self.delay_ms and (not self.delay_path or re.search(self.delay_path, path)):
            return self.delay_ms / 1000.0
        return 0


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.requests = {}      # user -> verb -> count
        self.watches_open = 0
        self.watches_total = 0
        self.events_sent = 0
        self.started = time.time()

    def count(self, user, verb):
        with self.lock:
            u = self.requests.setdefault(user or "-", {})
            u[verb] = u.get(verb, 0) + 1

    def json(self):
        with self.lock:
            return {"requests": self.requests, "watches_open": self.watches_open,
                    "watches_total": self.watches_total, "events_sent": self.events_sent,
                    "uptime_seconds": round(time.time() - self.started, 3)}


class Watcher:
    def __init__(self, conn, rtype):
        self.conn, self.rtype, self.dropped = conn, rtype, False


class Server:
    def __init__(self, opts):
        self.opts = opts
        self.store = Store(history=opts.history, service_cidr=opts.service_cidr,
                           graceful_pods=opts.graceful_pod_deletion)
        if opts.no_crds:
            self.store.set_crds(False)
        self.faults = Faults()
        self.stats = Stats()
        self.tokens = load_tokens(opts.tokens)
        self.tokens_stamp = _stamp(opts.tokens)
        self.policy = DEFAULT_POLICY
        if opts.policy:
            with open(opts.policy) as f:
                self.policy = json.load(f)
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(opts.cert, opts.key)
        self.ctx.set_alpn_protocols(["http/1.1"])
        if opts.client_ca:                      # kube-apiserver's --client-ca-file: x509 users
            self.ctx.load_verify_locations(opts.client_ca)
            self.ctx.verify_mode = ssl.CERT_OPTIONAL
        self.conns = set()
        self.watchers = set()
        self.track = threading.Lock()
        self.down_until = 0
        self.stopping = False
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        self.lsock = self._listen(opts.port)
        self.port = self.lsock.getsockname()[1]
        self.log = open(opts.log, "a", buffering=1) if opts.log else None
        if opts.load:
            with open(opts.load) as f, bulk_load():
                data = json.load(f)
                self.store.load(data.get("items", []) if isinstance(data, dict) else data)

    def _listen(self, port):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((self.opts.address, port))
        s.listen(512)
        return s

    def serve(self):
        while not self.stopping:
            if self.down_until:
                if self.lsock is not None:
                    self.lsock.close()
                    self.lsock = None
                left = self.down_until - time.time()
                if left > 0:
                    select.select([self.wake_r], [], [], min(left, 0.5))
                    self._drain_wake()
                    continue
                self.lsock = self._listen(self.port)
                self.down_until = 0
                self.note("up again on port %d" % self.port)
            r, _, _ = select.select([self.lsock, self.wake_r], [], [], 1.0)
            if self.wake_r in r:
                self._drain_wake()
            if self.lsock in r and not self.down_until:
                try:
                    conn, addr = self.lsock.accept()
                except OSError:
                    continue
                threading.Thread(target=self.connection, args=(conn, addr), daemon=True).start()

    def _drain_wake(self):
        try:
            os.read(self.wake_r, 4096)
        except (BlockingIOError, OSError):
            pass

    def connection(self, conn, addr):
        try:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn.settimeout(10)
            tls = self.ctx.wrap_socket(conn, server_side=True)
        except (OSError, ssl.SSLError):
            conn.close()
            return
        with self.track:
            if self.down_until:
                tls.close()
                return
            self.conns.add(tls)
        try:
            tls.settimeout(self.opts.idle_timeout)
            Handler(tls, addr, self)
        except (OSError, ssl.SSLError, ValueError):
            pass
        except Exception:
            self.note("connection error: %s" % traceback.format_exc())
        finally:
            with self.track:
                self.conns.discard(tls)
            try:
                tls.close()
            except OSError:
                pass

    def kill_connections(self, only_watches=False, rtype=None):
        with self.track:
            targets = [w.conn for w in self.watchers if rtype is None or w.rtype is rtype] if only_watches \
                else list(self.conns)
            for w in self.watchers:
                if rtype is None or w.rtype is rtype:
                    w.dropped = True
        for c in targets:
            try:   # the TCP socket under the TLS one: its own thread sees EOF, the SSL object stays whole
                socket.socket.shutdown(c, socket.SHUT_RDWR)
            except OSError:
                pass
        with self.store.lock:
            for res in self.store.res.values():
                res.cond.notify_all()
        return len(targets)

    def go_down(self, seconds):
        self.down_until = time.time() + seconds
        self.note("down for %.1fs" % seconds)
        os.write(self.wake_w, b"x")
        self.kill_connections()

    def note(self, text):
        if self.log:
            self.log.write("%s %s\n" % (time.strftime("%H:%M:%S"), text))


def load_tokens(path):
    """kube-apiserver's --token-auth-file: token,user,uid,"group1,group2"."""
    tokens = {}
    if path:
        with open(path) as f:
            for row in csv.reader(f):
                if len(row) >= 2 and not row[0].startswith("#"):
                    tokens[row[0].strip()] = row[1].strip()
    return tokens


def _stamp(path):
    try:
        st = os.stat(path)
        return (st.st_ino, st.st_mtime_ns, st.st_size)
    except OSError:
        return None


def status_body(err):
    return dumps(err.status())


def forbidden(user, verb, rtype=None, sub=None, ns="", name="", path=None):
    """The authorizer's 403, word for word (apiserver's responsewriters.Forbidden)."""
    if rtype is None:
        msg = 'forbidden: User "%s" cannot %s path "%s"' % (user, verb, path)
        return ApiError(403, "Forbidden", msg, {})
    resource = rtype.plural + ("/" + sub if sub else "")
    where = ('in the namespace "%s"' % ns) if ns else "at the cluster scope"
    why = 'User "%s" cannot %s resource "%s" in API group "%s" %s' % (user, verb, resource, rtype.group, where)
    what = '%s "%s"' % (rtype.qualified, name) if name else rtype.qualified
    details = {"kind": rtype.plural}
    if name:
        details = {"name": name, "kind": rtype.plural}
    if rtype.group:
        details["group"] = rtype.group
    return ApiError(403, "Forbidden", "%s is forbidden: %s" % (what, why), details)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "sluice-apiserver-double"
    sys_version = ""

    def __init__(self, sock, addr, server):
        self.api = server
        super().__init__(sock, addr, server)

    def log_message(self, fmt, *args):
        pass

    def do_GET(self):
        self.dispatch("GET")

    def do_POST(self):
        self.dispatch("POST")

    def do_PUT(self):
        self.dispatch("PUT")

    def do_PATCH(self):
        self.dispatch("PATCH")

    def do_DELETE(self):
        self.dispatch("DELETE")

    # ---- plumbing ----

    def send_bytes(self, code, body, ctype="application/json", headers=()):
        """The whole response in one write: headers and body in one TLS record train."""
        self.wfile.write(self.response_head(code, len(body), ctype, headers) + body)

    def send_items(self, prefix, items, suffix):
        """A JSON body whose items are bytes, written LIST_WRITE_ITEMS at a time: a whole list of
        150,000 Pods is never one 240 MB string, nor a copy of it behind the headers."""
        length = len(prefix) + sum(map(len, items)) + max(len(items) - 1, 0) + len(suffix)
        parts = [self.response_head(200, length), prefix]
        for i in range(0, len(items), LIST_WRITE_ITEMS):
            if i:
                self.wfile.write(b"".join(parts))
                parts = [b","]
            parts.append(b",".join(items[i:i + LIST_WRITE_ITEMS]))
        parts.append(suffix)
        self.wfile.write(b"".join(parts))

    def response_head(self, code, length, ctype="application/json", headers=()):
        self.code = code
        head = ["HTTP/1.1 %d %s" % (code, self.responses.get(code, ("",))[0]),
                "Date: " + self.date_time_string(), "Content-Type: " + ctype, "Content-Length: %d" % length,
                "Cache-Control: no-cache, private"]
        head += ["%s: %s" % kv for kv in headers]
        if self.close_connection:
            head.append("Connection: close")
        return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1")

    def send_error_status(self, err):
        self.send_bytes(err.code, status_body(err), headers=err.headers)

    def read_body(self):
        n = int(self.headers.get("Content-Length") or 0)
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            data = bytearray()
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    break
                data += self.rfile.read(size)
                self.rfile.readline()
            return bytes(data)
        return self.rfile.read(n) if n else b""

    def json_body(self, raw):
        try:
            return json.loads(raw) if raw else None
        except ValueError as e:
            raise bad_request("couldn't get version/kind; json parse error: %s" % e)

    def dispatch(self, method):
        t0 = time.time()
        self.code, self.user, self.verb = 0, None, method.lower()
        url = urllib.parse.urlsplit(self.path)
        path = url.path.rstrip("/") or "/"
        query = {k: v[-1] for k, v in urllib.parse.parse_qs(url.query, keep_blank_values=True).items()}
        try:
            body = self.read_body() if method in ("POST", "PUT", "PATCH", "DELETE") else b""
            if not path.startswith("/_sluice/"):
                d = self.api.faults.delay(path)
                if d:
                    time.sleep(d)
            if path in ("/healthz", "/readyz", "/livez"):
                self.send_bytes(200, b"ok", "text/plain; charset=utf-8")
                return
            self.user = self.authenticate()
            if not path.startswith("/_sluice/"):
                code = self.api.faults.take_failure(method, path)
                if code is not None:
                    raise injected(code)
            self.route(method, path, query, body)
        except ApiError as e:
            self.api.stats.count(self.user, self.verb)
            self.send_error_status(e)
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError, OSError):
            self.close_connection = True
        except Exception:
            self.api.note("error on %s %s: %s" % (method, self.path, traceback.format_exc()))
            try:
                self.send_error_status(ApiError(500, "InternalError", "Internal error occurred: %s"
                                                % traceback.format_exc().splitlines()[-1]))
            except OSError:
                pass
        finally:
            self.api.note("%s %s %s %d %.1fms" % (self.user or "-", method, self.path, self.code,
                                                   (time.time() - t0) * 1000))

    def authenticate(self):
        api = self.api
        stamp = _stamp(api.opts.tokens)
        if stamp != api.tokens_stamp:           # rotated: the file is replaced whole (rename)
            api.tokens, api.tokens_stamp = load_tokens(api.opts.tokens), stamp
        cert = self.connection.getpeercert() if api.opts.client_ca else None
        if cert:                                # verified against the client CA: the user is its CN
            for rdn in cert.get("subject", ()):
                for k, v in rdn:
                    if k == "commonName":
                        return v
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Bearer "):
            user = self.api.tokens.get(auth[7:].strip())
            if user:
                return user
        raise ApiError(401, "Unauthorized", "Unauthorized")

    def allowed(self, verb, group, resource):
        for rule in self.api.policy.get(self.user, []):
            if ("*" in rule["verbs"] or verb in rule["verbs"]) and \
                    ("*" in rule["apiGroups"] or group in rule["apiGroups"]) and \
                    ("*" in rule["resources"] or resource in rule["resources"]):
                return True
        return False

    def is_admin(self):
        return self.allowed("*", "*", "*")

    # ---- routing ----

    def route(self, method, path, query, body):
        store = self.api.store
        crds = store.res[("networking.istio.io", "virtualservices")].installed
        if path.startswith("/_sluice/"):
            self.verb = method.lower()
            if not self.is_admin():
                raise forbidden(self.user, self.verb, path=path)
            self.api.stats.count(self.user, "control")
            return self.control(method, path, body)
        simple = self.discovery(path, crds)
        if simple is not None:
            if method != "GET":
                raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested "
                                                        "resource", {})
            self.verb = "get"
            self.api.stats.count(self.user, "discovery")
            ctype, data = simple
            return self.send_bytes(200, data, ctype)
        m = re.match(r"^/api/v1(/.*)?$", path)
        group, version = "", "v1"
        rest = None
        if m:
            rest = m.group(1) or ""
        else:
            m = re.match(r"^/apis/([^/]+)/([^/]+)(/.*)?$", path)
            if m and m.group(1) == kinds.ISTIO and m.group(2) in kinds.ISTIO_VERSIONS and crds:
                group, version, rest = m.group(1), m.group(2), m.group(3) or ""
        if rest is None or rest == "":
            raise no_such_path()
        segs = [urllib.parse.unquote(s) for s in rest.strip("/").split("/")]
        ns = ""
        if segs[0] == "namespaces" and group == "" and (len(segs) <= 2 or segs[2] in ("status", "finalize")):
            plural, name, sub = "namespaces", segs[1] if len(segs) > 1 else "", segs[2] if len(segs) > 2 else None
        else:
            if segs[0] == "namespaces":
                if len(segs) < 3:
                    raise no_such_path()
                ns, segs = segs[1], segs[2:]
            if len(segs) > 3:
                raise no_such_path()
            plural, name, sub = segs[0], segs[1] if len(segs) > 1 else "", segs[2] if len(segs) > 2 else None
        rtype = kinds.BY_KEY.get((group, plural))
        if rtype is None or version not in rtype.versions or (sub and sub != "status"):
            raise no_such_path()
        if ns and not rtype.namespaced:
            raise no_such_path()
        watch = query.get("watch", "") in ("1", "true", "True")
        if method == "GET":
            verb = "get" if name else ("watch" if watch else "list")
        elif method == "POST":
            verb = "create"
        elif method == "PUT":
            verb = "update"
        elif method == "PATCH":
            verb = "patch"
        elif method == "DELETE":
            verb = "delete" if name else "deletecollection"
        else:
            raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested "
                                                    "resource", {})
        self.verb = verb
        if (not name and method in ("POST",) and rtype.namespaced and not ns) or \
                (not name and method in ("PUT", "PATCH")) or (sub and not name) or \
                (sub and method in ("POST", "DELETE")) or (name and method == "POST"):
            raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested "
                                                    "resource", {})
        if not self.allowed(verb, group, rtype.plural + ("/" + sub if sub else "")):
            raise forbidden(self.user, verb, rtype, sub, ns, name)
        self.api.stats.count(self.user, verb)
        dry_run = query.get("dryRun") == "All"
        validation = query.get("fieldValidation") or "Warn"
        if validation not in ("Strict", "Warn", "Ignore"):
            raise bad_request('fieldValidation "%s" is invalid: valid values are "Ignore", "Warn", "Strict"'
                              % validation)
        if verb == "get":
            with store.lock:
                rec = store.get_rec(rtype, ns, name)
                rv = query.get("resourceVersion", "")
                if rv not in ("", "0"):
                    self.check_rv_not_too_large(rv)
            return self.send_object(200, rtype, version, rec)
        if verb == "list":
            return self.list(rtype, version, ns, query)
        if verb == "watch":
            return self.watch(rtype, version, ns, query)
        warnings = []
        headers = lambda: [("Warning", '299 - "%s"' % w.replace('"', '\\"')) for w in warnings]  # noqa: E731
        if verb == "create":
            obj = self.object_body(body)
            rec = store.create(rtype, version, ns, obj, dry_run, validation, warnings)
            return self.send_object(201, rtype, version, rec, headers())
        if verb == "update":
            obj = self.object_body(body)
            rec = store.update(rtype, version, ns, name, obj, sub, dry_run, validation, warnings)
            return self.send_object(200, rtype, version, rec, headers())
        if verb == "patch":
            ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip()
            ptype = PATCH_TYPES.get(ctype)
            if ptype is None or (ptype == "strategic" and rtype.custom):
                accepted = ["application/json-patch+json", "application/merge-patch+json",
                            "application/apply-patch+yaml"]
                if rtype.builtin:
                    accepted.insert(2, "application/strategic-merge-patch+json")
                raise ApiError(415, "UnsupportedMediaType", "the body of the request was in an unknown format - "
                                                            "accepted media types include: " + ", ".join(accepted), {})
            patch = self.json_body(body)
            rec = store.patch(rtype, version, ns, name, ptype, patch, sub, dry_run, validation, warnings)
            return self.send_object(200, rtype, version, rec, headers())
        if verb == "delete":
            options = self.json_body(body) or {}
            if "gracePeriodSeconds" in query:
                options["gracePeriodSeconds"] = self.int_param(query, "gracePeriodSeconds")
            rec, gone_now = store.delete(rtype, ns, name, options, dry_run)
            if gone_now and rtype.kind not in ("Pod", "Service"):
                st = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                      "details": {"name": rec.name, "kind": rtype.plural, "uid": json.loads(rec.raw)["metadata"]
                                  .get("uid")}}
                if rtype.group:
                    st["details"]["group"] = rtype.group
                return self.send_bytes(200, dumps(st))
            return self.send_object(200, rtype, version, rec)
        if verb == "deletecollection":
            lsel, fsel = self.selectors(rtype, query)
            recs = store.delete_collection(rtype, ns, lambda r: sel.labels_match(lsel, r.labels)
                                           and sel.fields_match(fsel, r.fields))
            return self.send_list(rtype, version, recs, store.rv, None, None)

    def object_body(self, body):
        """A POST or PUT body: JSON, or the protobuf Namespace of `kubectl create namespace`."""
        ctype = (self.headers.get("Content-Type") or "application/json").split(";")[0].strip()
        if ctype in ("application/json", "*/*", ""):
            return self.json_body(body)
        if ctype == "application/vnd.kubernetes.protobuf":
            try:
                return protobuf.decode(body)
            except (protobuf.Unsupported, UnicodeDecodeError):
                pass
        raise ApiError(415, "UnsupportedMediaType", "the body of the request was in an unknown format - "
                                                    "accepted media types include: application/json", {})

    def int_param(self, query, name):
        v = query.get(name, "")
        try:
            return int(v) if v else 0
        except ValueError:
            raise bad_request('%s: Invalid value: "%s": strconv.ParseInt: parsing "%s": invalid syntax' % (name, v, v))

    def check_rv_not_too_large(self, rv):
        try:
            n = int(rv)
        except ValueError:
            raise bad_request('resourceVersion: Invalid value: "%s": strconv.ParseUint: parsing "%s": invalid '
                              'syntax' % (rv, rv))
        if n > self.api.store.rv:
            raise ApiError(504, "Timeout", "Too large resource version: %d, current: %d" % (n, self.api.store.rv),
                           {"causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}],
                            "retryAfterSeconds": 1})
        return n

    # ---- discovery and OpenAPI ----

    def discovery(self, path, crds):
        j = lambda o: ("application/json", dumps(o))  # noqa: E731
        if path == "/version":
            return j({"major": "1", "minor": SERVER_VERSION.split(".")[1], "gitVersion": SERVER_VERSION,
                      "gitCommit": "0000000000000000000000000000000000000000", "gitTreeState": "clean",
                      "buildDate": "2024-12-11T00:00:00Z", "goVersion": "go1.23.3", "compiler": "gc",
                      "platform": "linux/amd64"})
        if path == "/api":
            return j({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [
                {"clientCIDR": "0.0.0.0/0", "serverAddress": "%s:%d" % (self.api.opts.address, self.api.port)}]})
        if path == "/api/v1":
            return j(kinds.resource_list("", "v1"))
        if path == "/apis":
            return j({"kind": "APIGroupList", "apiVersion": "v1", "groups": [kinds.istio_group()] if crds else []})
        if crds and path == "/apis/" + kinds.ISTIO:
            return j(dict(kind="APIGroup", apiVersion="v1", **kinds.istio_group()))
        if crds and path.startswith("/apis/%s/" % kinds.ISTIO) and path.count("/") == 3:
            v = path.rsplit("/", 1)[1]
            if v in kinds.ISTIO_VERSIONS:
                return j(kinds.resource_list(kinds.ISTIO, v))
        if path == "/openapi/v2":
            return ("application/octet-stream",
                    kinds.openapi_v2_protobuf(SERVER_VERSION))
        if path == "/openapi/v3":
            paths = kinds.openapi_v3_paths(crds)
            return j({"paths": {p: {"serverRelativeURL": "/openapi/v3/%s?hash=%s" % (p, "C0FFEE%d" % int(crds))}
                                for p in paths}})
        if path.startswith("/openapi/v3/"):
            gv = kinds.openapi_v3_paths(crds).get(path[len("/openapi/v3/"):])
            if gv is None:
                raise no_such_path()
            return j(kinds.openapi_v3_doc(gv[0], gv[1], crds))
        return None

    # ---- output ----

    def accept(self):
        """"json", "table" or "pom" (PartialObjectMetadata), from the Accept header."""
        acc = self.headers.get("Accept", "")
        for part in acc.split(","):
            params = dict(p.strip().split("=", 1) for p in part.split(";")[1:] if "=" in p)
            if params.get("g") == "meta.k8s.io" and params.get("as") == "Table":
                return "table"
            if params.get("g") == "meta.k8s.io" and params.get("as") in ("PartialObjectMetadata",
                                                                           "PartialObjectMetadataList"):
                return "pom"
            if part.split(";")[0].strip() in ("application/json", "*/*", ""):
                return "json"
        return "json"

    def raw_at(self, rtype, version, rec):
        raw = rec.raw
        if version != rtype.storage_version:
            old = b'{"apiVersion":"%s",' % rtype.api_version().encode()
            if raw.startswith(old):
                return b'{"apiVersion":"%s",' % rtype.api_version(version).encode() + raw[len(old):]
            obj = json.loads(raw)
            obj["apiVersion"] = rtype.api_version(version)
            return dumps(obj)
        return raw

    def send_object(self, code, rtype, version, rec, headers=()):
        fmt = self.accept()
        if fmt == "table":
            body = self.table(rtype, version, [rec], rec.rv, None, None)
        elif fmt == "pom":
            body = dumps(partial_metadata(json.loads(rec.raw)))
        else:
            body = self.raw_at(rtype, version, rec)
        self.send_bytes(code, body, headers=headers)

    def table(self, rtype, version, recs, rv, cont, remaining, columns=True):
        include = self.query_include
        rows = []
        for rec in recs:
            obj = json.loads(rec.raw)
            row = {"cells": kinds.table_cells(rtype, obj)}
            if include == "Object":
                obj["apiVersion"] = rtype.api_version(version)
                row["object"] = obj
            elif include != "None":
                row["object"] = partial_metadata(obj)
            rows.append(row)
        meta = {"resourceVersion": str(rv)}
        if cont:
            meta["continue"] = cont
        if remaining:
            meta["remainingItemCount"] = remaining
        t = {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": meta}
        if columns:
            t["columnDefinitions"] = kinds.table_columns(rtype)
        t["rows"] = rows
        return dumps(t)

    @property
    def query_include(self):
        q = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
        return (q.get("includeObject") or ["Metadata"])[-1]

    def send_list(self, rtype, version, recs, rv, cont, remaining):
        fmt = self.accept()
        if fmt == "table":
            return self.send_bytes(200, self.table(rtype, version, recs, rv, cont, remaining))
        meta = {"resourceVersion": str(rv)}
        if cont:
            meta["continue"] = cont
        if remaining:
            meta["remainingItemCount"] = remaining
        if fmt == "pom":
            body = dumps({"kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1", "metadata": meta,
                          "items": [partial_metadata(json.loads(r.raw)) for r in recs]})
            return self.send_bytes(200, body)
        head = dumps({"kind": rtype.kind + "List", "apiVersion": rtype.api_version(version), "metadata": meta})
        if version == rtype.storage_version:
            items = list(map(RAW, recs))
        else:
            items = [self.raw_at(rtype, version, r) for r in recs]
        self.send_items(head[:-1] + b',"items":[', items, b"]}")

    # ---- list ----

    def selectors(self, rtype, query):
        try:
            return (sel.parse_labels(query.get("labelSelector", "")),
                    sel.parse_fields(query.get("fieldSelector", ""), rtype.fields))
        except sel.SelectorError as e:
            raise bad_request(str(e))

    def list(self, rtype, version, ns, query):
        store = self.api.store
        lsel, fsel = self.selectors(rtype, query)
        limit = self.int_param(query, "limit")
        rv_param, match = query.get("resourceVersion", ""), query.get("resourceVersionMatch", "")
        cont = query.get("continue", "")
        if match and not rv_param:
            raise bad_request("resourceVersionMatch is forbidden unless resourceVersion is provided")
        if match and match not in ("Exact", "NotOlderThan"):
            raise bad_request('resourceVersionMatch: Unsupported value: "%s": supported values: "Exact", '
                              '"NotOlderThan"' % match)
        if match == "Exact" and rv_param == "0":
            raise bad_request('resourceVersionMatch "exact" is forbidden for resourceVersion "0"')
        if cont and (rv_param or match):
            raise bad_request('specifying resource version is not allowed when using continue')
        res = store.resource(rtype)
        start = ""
        with store.lock:
            store._check_installed(res)
            if cont:
                try:
                    tok = json.loads(base64.b64decode(cont + "=" * (-len(cont) % 4)))
                    at, start = int(tok["rv"]), tok["start"]
                except (ValueError, KeyError, TypeError):
                    raise bad_request('continue key is not valid: illegal base64 data at input byte 0')
                if at < store.floor(res):
                    raise gone("The provided continue parameter is too old to display a consistent list result. "
                               "You can start a new list without the continue parameter, or use the continue "
                               "token in this response to retrieve the remainder of the results. Continuing with "
                               "the provided token results in an inconsistent list - objects that were created, "
                               "modified, or deleted between the time the first chunk was returned and now may "
                               "show up in the list.")
                rv, keys, objs = store.snapshot(res, at)
            elif rv_param not in ("", "0"):
                n = self.check_rv_not_too_large(rv_param)
                if match == "Exact" or (limit and match != "NotOlderThan"):
                    rv, keys, objs = store.snapshot(res, n)
                else:
                    rv, keys, objs = store.snapshot(res)
            else:
                if rv_param == "0":
                    limit = 0        # the watch cache serves resourceVersion=0 whole, ignoring limit
                rv, keys, objs = store.snapshot(res)
            lo, hi = 0, len(keys)
            if ns:
                lo = bisect.bisect_left(keys, ns + "/")
                hi = bisect.bisect_left(keys, ns + "0")      # "0" sorts right after "/"
            if start:
                lo = max(lo, bisect.bisect_right(keys, start))
            nxt = None
            filtered = bool(lsel or fsel)
            if filtered:
                out, i = [], lo
                while i < hi:
                    rec = objs[keys[i]]
                    i += 1
                    if not (sel.labels_match(lsel, rec.labels) and sel.fields_match(fsel, rec.fields)):
                        continue
                    out.append(rec)
                    if limit and len(out) >= limit:
                        if i < hi:
                            nxt = rec.key
                        break
            else:
                i = min(hi, lo + limit) if limit else hi
                out = list(map(objs.__getitem__, keys[lo:i]))
                if i < hi:
                    nxt = out[-1].key
        token, remaining = None, None
        if nxt is not None:
            token = base64.b64encode(json.dumps({"v": "meta.k8s.io/v1", "rv": rv, "start": nxt},
                                                separators=(",", ":")).encode()).decode()
            if not filtered:
                remaining = hi - i
        self.send_list(rtype, version, out, rv, token, remaining)

    # ---- watch ----

    def watch(self, rtype, version, ns, query):
        api, store = self.api, self.api.store
        lsel, fsel = self.selectors(rtype, query)
        res = store.resource(rtype)
        rv_param = query.get("resourceVersion", "")
        bookmarks = query.get("allowWatchBookmarks", "") in ("1", "true", "True")
        initial_events = query.get("sendInitialEvents", "") in ("1", "true", "True")
        if initial_events and (query.get("resourceVersionMatch") != "NotOlderThan" or not bookmarks):
            raise bad_request("sendInitialEvents is forbidden for watch unless resourceVersionMatch is "
                              "NotOlderThan and allowWatchBookmarks is true")
        timeout = self.int_param(query, "timeoutSeconds") or api.opts.min_request_timeout * (1 + (time.time() % 1))
        fmt = self.accept()
        too_old = None
        with store.lock:
            store._check_installed(res)
            initial = []
            if rv_param in ("", "0") or initial_events:
                if rv_param not in ("", "0"):
                    self.check_rv_not_too_large(rv_param)
                initial = [r for r in (res.objs[k] for k in res.keys_sorted()) if (not ns or r.ns == ns)]
                seq, start_rv = res.next_seq(), store.rv
            else:
                n = self.check_rv_not_too_large(rv_param)
                if n < store.floor(res):
                    too_old = "too old resource version: %d (%d)" % (n, store.floor(res))
                    seq = start_rv = 0
                else:
                    seq = res.base + _bisect_rv(res.log, n)
                    start_rv = n
        w = Watcher(self.connection, rtype)
        with api.track:
            api.watchers.add(w)
        with api.stats.lock:
            api.stats.watches_open += 1
            api.stats.watches_total += 1
        self.code = 200
        try:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.send_header("Cache-Control", "no-cache, private")
            self.end_headers()
            if too_old:
                err = gone(too_old)
                self.write_lines([dumps({"type": "ERROR", "object": err.status()})])
                return self.end_stream()
            match = lambda r: (r is not None and (not ns or r.ns == ns) and  # noqa: E731
                               sel.labels_match(lsel, r.labels) and sel.fields_match(fsel, r.fields))
            lines = [self.event_line(rtype, version, fmt, "ADDED", r, None) for r in initial if match(r)]
            if initial_events:
                lines.append(self.bookmark(rtype, version, start_rv, initial_end=True))
            if lines:
                self.write_lines(lines)
            deadline = time.time() + timeout
            interval = api.opts.bookmark_interval
            next_bookmark = time.time() + interval
            while True:
                with store.lock:
                    while (seq >= res.next_seq() and not w.dropped and res.installed
                           and time.time() < min(deadline, next_bookmark if bookmarks else deadline)):
                        # at least once a second: a client that hung up is noticed without an event
                        res.cond.wait(min(deadline, next_bookmark if bookmarks else deadline, time.time() + 1)
                                      - time.time())
                        if seq >= res.next_seq() and self.client_gone():
                            w.dropped = True
                    if w.dropped or not res.installed:
                        break
                    if seq < res.base:          # fell behind the window: the real server drops it too
                        break
                    batch = res.log[seq - res.base:]
                    seq = res.next_seq()
                    now_rv = store.rv
                lines = []
                for ev in batch:
                    m_new, m_old = match(ev.new) if ev.type != "DELETED" else False, match(ev.old)
                    if ev.type == "ADDED" and m_new:
                        lines.append(self.event_line(rtype, version, fmt, "ADDED", ev.new, ev))
                    elif ev.type == "MODIFIED" and (m_new or m_old):
                        t = "MODIFIED" if m_new and m_old else ("ADDED" if m_new else "DELETED")
                        lines.append(self.event_line(rtype, version, fmt, t, ev.new, ev))
                    elif ev.type == "DELETED" and m_old:
                        lines.append(self.event_line(rtype, version, fmt, "DELETED", ev.new, ev))
                now = time.time()
                if now >= deadline:
                    if bookmarks:
                        lines.append(self.bookmark(rtype, version, now_rv))
                    if lines:
                        self.write_lines(lines)
                    break
                if bookmarks and now >= next_bookmark:
                    lines.append(self.bookmark(rtype, version, now_rv))
                    next_bookmark = now + interval
                if lines:
                    self.write_lines(lines)
            if w.dropped:
                self.close_connection = True
                return
            self.end_stream()
        finally:
            with api.track:
                api.watchers.discard(w)
            with api.stats.lock:
                api.stats.watches_open -= 1

    def client_gone(self):
        """While a watch streams the client sends nothing; anything readable is its hang-up."""
        try:
            r, _, _ = select.select([self.connection], [], [], 0)
        except (OSError, ValueError):
            return True
        return bool(r)

    def event_line(self, rtype, version, fmt, etype, rec, ev):
        key = (etype, version, fmt, self.query_include if fmt == "table" else None)
        if ev is not None:
            line = ev.cache.get(key)
            if line is not None:
                return line
        if fmt == "table":
            obj = self.table(rtype, version, [rec], rec.rv, None, None)
        elif fmt == "pom":
            obj = dumps(partial_metadata(json.loads(rec.raw)))
        else:
            obj = self.raw_at(rtype, version, rec)
        line = b'{"type":"%s","object":%s}\n' % (etype.encode(), obj)
        if ev is not None:
            ev.cache[key] = line
        return line

    def bookmark(self, rtype, version, rv, initial_end=False):
        meta = {"resourceVersion": str(rv), "creationTimestamp": None}
        if initial_end:
            meta["annotations"] = {"k8s.io/initial-events-end": "true"}
        return dumps({"type": "BOOKMARK", "object": {"kind": rtype.kind, "apiVersion": rtype.api_version(version),
                                                     "metadata": meta}}) + b"\n"

    def write_lines(self, lines):
        out = bytearray()
        for line in lines:
            if not line.endswith(b"\n"):
                line += b"\n"
            out += b"%x\r\n" % len(line)
            out += line
            out += b"\r\n"
        self.wfile.write(out)
        with self.api.stats.lock:
            self.api.stats.events_sent += len(lines)

    def end_stream(self):
        self.wfile.write(b"0\r\n\r\n")

    # ---- control ----

    def control(self, method, path, body):
        api = self.api
        if path == "/_sluice/stats" and method == "GET":
            return self.send_bytes(200, dumps(api.stats.json()))
        if path == "/_sluice/load" and method == "POST":
            with bulk_load():
                data = self.json_body(body)
                n, rv = api.store.load(data.get("items", []) if isinstance(data, dict) else data or [])
            return self.send_bytes(200, dumps({"loaded": n, "resourceVersion": str(rv)}))
        if path != "/_sluice/faults":
            raise no_such_path()
        if method == "GET":
            return self.send_bytes(200, dumps(api.faults.state()))
        if method != "POST":
            raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested "
                                                    "resource", {})
        req = self.json_body(body) or {}
        done = {}
        if req.get("reset"):
            with api.faults.lock:
                api.faults.reset()
            done["reset"] = True
        if "fail" in req:
            f = dict(req["fail"])
            f.setdefault("count", 1)
            f.setdefault("code", 500)
            if f.get("path"):
                re.compile(f["path"])
            with api.faults.lock:
                api.faults.fail.append(f)
            done["fail"] = f
        if "delay_ms" in req:
            api.faults.delay_ms = int(req["delay_ms"])
            api.faults.delay_path = req.get("delay_path")
            done["delay_ms"] = api.faults.delay_ms
        if req.get("compact"):
            with api.store.lock:
                api.store.compact()
                done["compacted"] = str(api.store.compacted)
        if "crds" in req:
            api.store.set_crds(bool(req["crds"]))
            done["crds"] = bool(req["crds"])
        if req.get("drop_watches"):
            rtype = None
            if isinstance(req["drop_watches"], str):
                rtype = next((t for t in kinds.TYPES if t.plural == req["drop_watches"]), None)
            done["dropped_watches"] = api.kill_connections(only_watches=True, rtype=rtype)
        self.send_bytes(200, dumps(done))
        self.wfile.flush()
        if req.get("down"):
            api.go_down(float(req["down"]))


def injected(code):
    """An injected failure as the API words that code. Only 429 says Retry-After (priority and
    fairness always does): client-go retries a 429 or 5xx that has one, so the others reach the
    caller."""
    if code == 429:
        return ApiError(429, "TooManyRequests", "Too many requests, please try again later.",
                        {"causes": [{"message": "injected fault"}], "retryAfterSeconds": 1},
                        [("Retry-After", "1")])
    if code == 503:
        return ApiError(503, "ServiceUnavailable", "the server is currently unable to handle the request "
                                                   "(injected fault)", {"causes": [{"message": "injected fault"}]})
    if code == 504:
        return ApiError(504, "Timeout", "the server was unable to return a response in the time allotted "
                                        "(injected fault)", {"causes": [{"message": "injected fault"}]})
    return ApiError(code, "InternalError", "Internal error occurred: injected fault (sluice test double)",
                    {"causes": [{"message": "injected fault"}]})


def partial_metadata(obj):
    return {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj.get("metadata", {})}


def _bisect_rv(log, rv):
    """Index of the first event in log after rv."""
    lo, hi = 0, len(log)
    while lo < hi:
        mid = (lo + hi) // 2
        if log[mid].rv <= rv:
            lo = mid + 1
        else:
            hi = mid
    return lo


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--tokens", required=True, help="token,user,uid,groups lines (kube-apiserver's token file)")
    p.add_argument("--client-ca", help="CA of client certificates; a verified certificate's CN is the user")
    p.add_argument("--policy", help="JSON {user: [{verbs, apiGroups, resources}]} replacing the built-in users")
    p.add_argument("--address", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0: a free port (see --port-file)")
    p.add_argument("--port-file", help="written with the port once the server listens")
    p.add_argument("--load", help="a JSON List (or array) of objects to hold at start")
    p.add_argument("--history", type=int, default=100000, help="events kept per resource for watches (window)")
    p.add_argument("--bookmark-interval", type=float, default=60.0, help="seconds between BOOKMARK events")
    p.add_argument("--min-request-timeout", type=float, default=1800.0,
                   help="a watch without timeoutSeconds lasts between this and twice this")
    p.add_argument("--idle-timeout", type=float, default=600.0, help="an idle keep-alive connection is closed")
    p.add_argument("--service-cidr", default="198.19.0.0/16")
    p.add_argument("--no-crds", action="store_true", help="start without Istio's CRDs (install: faults crds=true)")
    p.add_argument("--graceful-pod-deletion", action="store_true",
                   help="deleting a scheduled pod marks it Terminating until its grace period ends")
    p.add_argument("--parent-pid", type=int, help="exit when this process is gone")
    p.add_argument("--log", help="request log file")
    opts = p.parse_args()
    try:
        server = Server(opts)
    except ApiError as e:
        sys.exit("apiserver.py: %s" % e.message)
    except (OSError, ValueError, ssl.SSLError) as e:
        sys.exit("apiserver.py: %s" % e)
    if opts.port_file:
        tmp = opts.port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write("%d\n" % server.port)
        os.rename(tmp, opts.port_file)
    signal.signal(signal.SIGTERM, lambda *a: os._exit(0))
    signal.signal(signal.SIGINT, lambda *a: os._exit(0))
    if opts.parent_pid:
        def orphan_watch():
            while True:
                time.sleep(1)
                try:
                    os.kill(opts.parent_pid, 0)
                except ProcessLookupError:
                    os._exit(0)
                except PermissionError:
                    pass
        threading.Thread(target=orphan_watch, daemon=True).start()
    server.note("listening on %s:%d" % (opts.address, server.port))
    server.serve()


if __name__ == "__main__":
    main()
