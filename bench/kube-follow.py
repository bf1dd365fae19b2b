#!/usr/bin/env python3
"""The timing side of bench/kube-follow: API writes made here, over HTTPS, and each node's
sluiced watched from here, so that no shell or process start sits inside a measured interval.

How a node's switch is timed, three ways at once:
  flip  (the figure): each node's data plane says which generation it routes by in the pinned
        BPF map `active` (include/sluice_abi.h: struct sluice_active); sluiced's switch is its one
        write there (loader/dataplane/apply.c, set_generation). This process reads every node's
        `active` through bpf(BPF_MAP_LOOKUP_ELEM) every --period ms (0.5 by default); the first
        sweep that sees a node's generation move is that node's switch time (late by at most the
        period). Nothing is asked of sluiced: it is the data plane itself that is watched.
  log   sluiced writes "kubernetes: generation N: ... in X ms" when apply_batch is done: after the
        switch, after the RCU grace period that lets readers of the old side finish and the old
        side's replay (the plan's save to disk, save_plan, comes after the line). Every node's log
        is watched with inotify and a line is stamped when it is read. X is sluiced's own
        compile-to-done figure.
  poll  (--poll, for comparison) every node's status socket asked over and over, all nodes at
        once from one thread (sluiced's protocol, loader/common/proto.h), until each answers with
        the new weights; its cost is reported (the round trip of a status request, polls made).
Afterwards each node's status socket is asked once whether it serves the generation the map
showed with the expected weights (or without the deleted endpoint): a change counts only if every
node says so.

    kube-follow.py weights --api-dir D --homes H1,H2,... --changes N [--poll] [--out FILE] ...
    kube-follow.py delete  --api-dir D --homes ... --ns NS --pod NAME --ip IP --out FILE
    kube-follow.py wait    --homes ... --service S.NS --weights v1=80,v2=20 [--endpoint IP:PORT]
    kube-follow.py idle    --api-dir D --homes ... --seconds 60
    kube-follow.py gen     --services N --pods N --out FILE
    kube-follow.py synced  --home H --start EPOCH --timeout S
    kube-follow.py podevents --api-dir D --home H --services N --pods N --events N
    kube-follow.py summary FILE...
"""

import argparse
import ctypes
import http.client
import json
import os
import random
import re
import selectors
import socket
import ssl
import sys
import time

# "kubernetes: generation N: S services, W written, R removed[; built B of V VirtualServices] in X ms"
GEN_LINE = re.compile(rb"kubernetes: generation (\d+): (\d+) services, [^;]*?(?:; built (\d+) of (\d+) VirtualServices)? in (\d+) ms$")
IN_MODIFY = 0x2


def now():
    return time.monotonic()


# ---- the API double (tests/apiserver/lib.sh keeps its port, CA and tokens in its directory) ----

class Api:
    def __init__(self, api_dir, user="admin"):
        with open(os.path.join(api_dir, "port")) as f:
            self.port = int(f.read().strip())
        self.token = None
        with open(os.path.join(api_dir, "tokens.csv")) as f:
            for line in f:
                parts = line.strip().split(",")
                if len(parts) > 1 and parts[1] == user:
                    self.token = parts[0]
        self.ctx = ssl.create_default_context(cafile=os.path.join(api_dir, "ca.crt"))
        self.conn = None

    def request(self, method, path, body=None, ctype="application/json"):
        """(status, body, seconds from the request's start to its whole response). Keep-alive."""
        headers = {"Authorization": "Bearer " + self.token, "Accept": "application/json"}
        data = None
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            headers["Content-Type"] = ctype
        for attempt in (0, 1):
            if self.conn is None:
                self.conn = http.client.HTTPSConnection("127.0.0.1", self.port, context=self.ctx, timeout=600)
                self.conn.connect()
                self.conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            try:
                t0 = now()
                self.conn.request(method, path, body=data, headers=headers)
                r = self.conn.getresponse()
                out = r.read()
                return r.status, out, t0, now()
            except (http.client.HTTPException, OSError):
                self.conn.close()
                self.conn = None
                if attempt:
                    raise

    def warm(self):
        """The TLS handshake and a first request, outside any measured interval."""
        self.request("GET", "/version")


# ---- sluiced's status socket: "sluice/1 NFIELDS\n", then "TAG LEN\n" and LEN bytes per field ----

def frame(fields):
    out = b"sluice/1 %d\n" % len(fields)
    for tag, val in fields:
        out += b"%s %d\n" % (tag.encode(), len(val)) + val
    return out


def status_request(service):
    fields = [("cmd", b"status"), ("json", b"1")]
    if service:
        fields.append(("arg", service.encode()))
    return frame(fields)


def parse_frame(buf):
    """{tag: bytes} once buf holds a whole message, else None."""
    nl = buf.find(b"\n")
    if nl < 0:
        return None
    head = buf[:nl].split()
    if len(head) != 2 or head[0] != b"sluice/1":
        raise ValueError("not a sluice/1 frame: %r" % buf[:40])
    n, at, out = int(head[1]), nl + 1, {}
    for _ in range(n):
        nl = buf.find(b"\n", at)
        if nl < 0:
            return None
        tag, ln = buf[at:nl].split()
        ln = int(ln)
        if len(buf) < nl + 1 + ln:
            return None
        out.setdefault(tag.decode(), buf[nl + 1:nl + 1 + ln])
        at = nl + 1 + ln
    return out


def status(home, service=None, timeout=10):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(os.path.join(home, "sluice.sock"))
    s.sendall(status_request(service))
    buf = b""
    while True:
        msg = parse_frame(buf)
        if msg is not None:
            break
        chunk = s.recv(65536)
        if not chunk:
            raise OSError("sluiced at %s closed before answering" % home)
        buf += chunk
    s.close()
    out = msg.get("out", b"")
    return json.loads(out) if out.strip() else {}


def weights_of(st):
    return {d["subset"]: d["weight"] for s in st.get("services", []) for d in s.get("destinations", [])}


def endpoints_of(st):
    return {e["address"] for s in st.get("services", []) for d in s.get("destinations", [])
            for e in d.get("endpoints", [])}


def weights_of_bytes(out):
    try:
        return weights_of(json.loads(out))
    except ValueError:
        return {}


# ---- every node's data plane: the generation in its pinned `active` map ----

class Active:
    """bpf(2) on the pinned maps/active of each node: BPF_OBJ_GET once, BPF_MAP_LOOKUP_ELEM per read."""
    SYS_BPF = {"x86_64": 321, "aarch64": 280}.get(os.uname().machine, 321)
    BPF_MAP_LOOKUP_ELEM, BPF_OBJ_GET = 1, 7

    def __init__(self, bpffs_dirs):
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.libc.syscall.restype = ctypes.c_long
        self.attr = ctypes.create_string_buffer(128)
        self.key = ctypes.c_uint32(0)
        self.val = ctypes.create_string_buffer(16)
        self.fds = []
        for d in bpffs_dirs:
            path = ctypes.create_string_buffer(os.path.join(d, "maps", "active").encode())
            ctypes.memset(self.attr, 0, 128)
            ctypes.c_uint64.from_buffer(self.attr, 0).value = ctypes.addressof(path)
            fd = self.libc.syscall(self.SYS_BPF, self.BPF_OBJ_GET, self.attr, 128)
            if fd < 0:
                raise OSError(ctypes.get_errno(), "BPF_OBJ_GET " + path.value.decode())
            self.fds.append(fd)
        # one attr, filled once: only map_fd changes between reads
        ctypes.memset(self.attr, 0, 128)
        ctypes.c_uint64.from_buffer(self.attr, 8).value = ctypes.addressof(self.key)
        ctypes.c_uint64.from_buffer(self.attr, 16).value = ctypes.addressof(self.val)
        self.map_fd = ctypes.c_uint32.from_buffer(self.attr, 0)
        self.gen = ctypes.c_uint64.from_buffer(self.val, 0)

    def generation(self, k):
        self.map_fd.value = self.fds[k]
        if self.libc.syscall(self.SYS_BPF, self.BPF_MAP_LOOKUP_ELEM, self.attr, 128) < 0:
            raise OSError(ctypes.get_errno(), "BPF_MAP_LOOKUP_ELEM")
        return self.gen.value

    def all(self):
        return [self.generation(k) for k in range(len(self.fds))]

    def close(self):
        for fd in self.fds:
            os.close(fd)


# ---- every node's log, watched with inotify ----

class Logs:
    def __init__(self, homes):
        self.libc = ctypes.CDLL("libc.so.6", use_errno=True)
        self.fd = self.libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1")
        self.files = []
        for h in homes:
            path = os.path.join(h, "sluiced.log")
            if self.libc.inotify_add_watch(self.fd, path.encode(), IN_MODIFY) < 0:
                raise OSError(ctypes.get_errno(), "inotify_add_watch " + path)
            self.files.append(os.open(path, os.O_RDONLY | os.O_CLOEXEC))
        self.offsets = [0] * len(homes)

    def mark(self):
        """From here on: what the logs said before is passed over."""
        self.drain()
        self.offsets = [os.fstat(fd).st_size for fd in self.files]

    def drain(self):
        try:
            while os.read(self.fd, 65536):
                pass
        except BlockingIOError:
            pass

    def new_lines(self, k):
        """Node k's complete lines written since the last call (or mark)."""
        data = os.pread(self.files[k], 1 << 20, self.offsets[k])
        end = data.rfind(b"\n")
        if end < 0:
            return []
        self.offsets[k] += end + 1
        return data[:end].split(b"\n")

    def lines(self, k):
        return [m for m in (GEN_LINE.search(line) for line in self.new_lines(k)) if m]


def watch(logs, active, before, deadline, period, sel=None, poller=None):
    """Until every node's map shows a generation past before[k] and its log says it is done (and
    the poller, if any, saw every node switch), or the deadline. Returns
    {k: [flip time, flip generation, log time, logged generation, compile-to-done ms, VSs built]}."""
    n = len(before)
    got = {k: [None, None, None, None, None, None] for k in range(n)}
    sel = sel or selectors.DefaultSelector()
    sel.register(logs.fd, selectors.EVENT_READ, "inotify")

    def sweep():
        t = now()
        for k in range(n):
            if got[k][0] is None:
                g = active.generation(k)
                if g != before[k]:
                    got[k][0], got[k][1] = t, g

    def read_logs():
        t = now()
        for k in range(n):
            if got[k][2] is None:
                for m in logs.lines(k):
                    got[k][2:] = [t, int(m.group(1)), int(m.group(5)), m.group(3) and int(m.group(3))]
                    break

    def pending():
        return any(v[0] is None or v[2] is None for v in got.values()) or (poller and poller.pending)
    try:
        sweep()
        read_logs()
        while pending() and now() < deadline:
            for key, _ in sel.select(period):
                if key.data == "inotify":
                    logs.drain()
                    read_logs()
                elif poller:
                    poller.on_event(key, now())
            sweep()
    finally:
        sel.unregister(logs.fd)
    return got


# ---- polling every node's status socket at once (the comparison method) ----

class Poller:
    def __init__(self, homes, service, want, sel):
        self.homes, self.req, self.want, self.sel = homes, status_request(service), want, sel
        self.pending = set(range(len(homes)))
        self.switched = {}          # node -> time the answer with the new weights arrived
        self.rtts = []              # each status request: connect to whole answer, seconds
        self.polls = 0
        for k in range(len(homes)):
            self.ask(k)

    def ask(self, k):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        t0 = now()
        s.connect(os.path.join(self.homes[k], "sluice.sock"))
        s.sendall(self.req)
        s.setblocking(False)
        self.polls += 1
        self.sel.register(s, selectors.EVENT_READ, ["poll", k, t0, b""])

    def on_event(self, key, t):
        data = key.data
        s = key.fileobj
        try:
            chunk = s.recv(1 << 16)
        except BlockingIOError:
            return bool(self.pending)
        data[3] += chunk
        msg = parse_frame(data[3])
        if msg is None and chunk:
            return bool(self.pending)
        self.sel.unregister(s)
        s.close()
        k = data[1]
        self.rtts.append(t - data[2])
        if msg is not None and weights_of_bytes(msg.get("out", b"")) == self.want:
            self.switched[k] = t
            self.pending.discard(k)
        elif k in self.pending:
            self.ask(k)
        return bool(self.pending)


# ---- weight changes ----

def vs_patch(args, w1, w2):
    def dest(subset, w):
        d = {"destination": {"host": args.host, "subset": subset}, "weight": w}
        if args.port:
            d["destination"]["port"] = {"number": args.port}
        return d
    return {"spec": {"http": [{"route": [dest("v1", w1), dest("v2", w2)]}]}}


def bpffs_of(home):
    with open(os.path.join(home, "bpffs")) as f:
        return f.read().strip()


class Nodes:
    """Every node's log and data plane, watched from here."""
    def __init__(self, homes):
        self.homes = homes
        self.logs = Logs(homes)
        self.active = Active([bpffs_of(h) for h in homes])


def timed(nodes, api, args, kind, method, path, body, verify, want_weights=None):
    """One API write and every node's switch to it: a sample (times in ms from the response)."""
    homes = nodes.homes
    nodes.logs.mark()
    before = nodes.active.all()
    sel = selectors.DefaultSelector()
    code, out, t_req, t_resp = api.request(method, path, body, "application/merge-patch+json")
    if code != 200:
        sys.exit("kube-follow.py: %s %s: %d %s" % (method, path, code, out[:300]))
    poller = Poller(homes, args.service, want_weights, sel) if args.poll else None
    got = watch(nodes.logs, nodes.active, before, now() + args.timeout, args.period / 1e3, sel, poller)
    ok = True
    for k, h in enumerate(homes):
        flip_t, flip_gen, log_t, log_gen, _, _ = got[k]
        if flip_t is None or log_t is None:
            ok = False
            print("kube-follow.py: %s: node %d: %s within %.0f s" % (
                path, k + 1, "no switch" if flip_t is None else "switched, but no log line", args.timeout),
                file=sys.stderr)
            continue
        # every node serves the generation its map showed, with what the write asked: asked once, after
        st = status(h, args.service)
        why = verify(st)
        if st.get("generation") != flip_gen or log_gen != flip_gen or why:
            ok = False
            print("kube-follow.py: %s: node %d: map generation %s, log %s, status %s%s" % (
                path, k + 1, flip_gen, log_gen, st.get("generation"), ": " + why if why else ""), file=sys.stderr)

    def ms(i):
        return [(got[k][i] - t_resp) * 1e3 if got[k][i] is not None else None for k in range(len(homes))]
    smp = {"kind": kind, "label": args.label, "nodes": len(homes), "ok": ok, "request_ms": (t_resp - t_req) * 1e3,
           "from_response_ms": ms(0), "log_ms": ms(2), "apply_ms": [got[k][4] for k in range(len(homes))], "built": [got[k][5] for k in range(len(homes))]}
    if poller:
        smp["poll_from_response_ms"] = [(poller.switched[k] - t_resp) * 1e3 if k in poller.switched else None
                                        for k in range(len(homes))]
        smp["poll_rtt_ms"] = [x * 1e3 for x in poller.rtts]
        smp["polls"] = poller.polls
        for key in list(sel.get_map().values()):   # answers still on their way
            sel.unregister(key.fileobj)
            key.fileobj.close()
    sel.close()
    return smp


def cmd_weights(args):
    homes = args.homes.split(",")
    api = Api(args.api_dir)
    api.warm()
    nodes = Nodes(homes)
    path = "/apis/networking.istio.io/v1/namespaces/%s/virtualservices/%s" % (args.ns, args.vs)
    samples = []
    for i in range(args.changes):
        w1 = (20, 80)[i % 2] if args.first == 80 else (80, 20)[i % 2]
        want = {"v1": w1, "v2": 100 - w1}

        def verify(st):
            return "" if weights_of(st) == want else "weights %s, want %s" % (weights_of(st), want)
        samples.append(timed(nodes, api, args, "weight", "PATCH", path, vs_patch(args, w1, 100 - w1), verify, want))
        if args.progress and (i + 1) % args.progress == 0:
            last = [max(x["from_response_ms"]) for x in samples[-args.progress:] if x["ok"]]
            print("  %s: %d of %d changes (last %d: every node switched in %.1f-%.1f ms)" % (
                args.label, i + 1, args.changes, args.progress, min(last or [0]), max(last or [0])),
                file=sys.stderr, flush=True)
        time.sleep(random.uniform(args.gap[0], args.gap[1]) / 1e3)
    write_samples(args.out, samples)
    return 0 if all(x["ok"] for x in samples) else 1


def write_samples(path, samples):
    with open(path, "a") as f:
        for s in samples:
            f.write(json.dumps(s) + "\n")


# ---- a pod's deletion ----

def wait_until(homes, service, pred, timeout, interval=0.02):
    deadline = now() + timeout
    left = list(homes)
    while left and now() < deadline:
        left = [h for h in left if not pred(status(h, service))]
        if left:
            time.sleep(interval)
    return left


def cmd_delete(args):
    homes = args.homes.split(",")
    api = Api(args.api_dir)
    api.warm()
    ep = "%s:%d" % (args.ip, args.port)
    left = wait_until(homes, args.service, lambda st: ep in endpoints_of(st), args.timeout)
    if left:
        sys.exit("kube-follow.py: %s never became an endpoint on %s" % (ep, " ".join(left)))
    time.sleep(0.05)   # the pod's own events have all been compiled
    nodes = Nodes(homes)
    args.poll = False

    def verify(st):
        return "%s is still an endpoint" % ep if ep in endpoints_of(st) else ""
    smp = timed(nodes, api, args, "delete", "DELETE", "/api/v1/namespaces/%s/pods/%s" % (args.ns, args.pod), None,
                verify)
    write_samples(args.out, [smp])
    return 0 if smp["ok"] else 1


def cmd_wait(args):
    homes = args.homes.split(",")
    want = {kv.split("=")[0]: int(kv.split("=")[1]) for kv in args.weights.split(",")} if args.weights else None

    def pred(st):
        if want is not None and weights_of(st) != want:
            return False
        return not args.endpoint or args.endpoint in endpoints_of(st)
    left = wait_until(homes, args.service, pred, args.timeout, 0.05)
    if left:
        sys.exit("kube-follow.py: not there within %.0f s: %s" % (args.timeout, " ".join(left)))


# ---- steady state: what N idle followers ask of the API ----

def cmd_idle(args):
    homes = args.homes.split(",")
    api = Api(args.api_dir)

    def snap():
        _, body, _, _ = api.request("GET", "/_sluice/stats")
        st = json.loads(body)
        refl = {"lists": 0, "watches": 0}
        for h in homes:
            for r in status(h).get("kubernetes", {}).get("resources", []):
                refl["lists"] += r.get("lists", 0)
                refl["watches"] += r.get("watches", 0)
        return st, refl
    a, ra = snap()
    t0 = now()
    time.sleep(args.seconds)
    b, rb = snap()
    minutes = (now() - t0) / 60
    n = len(homes)
    ua, ub = a["requests"].get(args.user, {}), b["requests"].get(args.user, {})
    verbs = {v: ub.get(v, 0) - ua.get(v, 0) for v in set(ua) | set(ub)}
    verbs = {v: c for v, c in verbs.items() if c}
    total = sum(verbs.values())
    print(json.dumps({"nodes": n, "seconds": round(minutes * 60, 1), "requests": total,
                      "requests_per_minute_per_node": total / minutes / n,
                      "by_verb": verbs, "watches_open": b["watches_open"], "watches_open_per_node": b["watches_open"] / n,
                      "watches_opened": b["watches_total"] - a["watches_total"],
                      "reflector_lists": rb["lists"] - ra["lists"], "reflector_watches": rb["watches"] - ra["watches"],
                      "events_sent": b["events_sent"] - a["events_sent"],
                      "requests_since_start_by_verb": ub}))


# ---- 10,000 Services and 80,000 Pods ----

def cmd_gen(args):
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "apiserver"))
    import bench   # the API double's own bench: its Services, and Pods as a kubelet writes them
    items = [bench.service(i) for i in range(args.services)]
    for i in range(args.pods):
        p = bench.pod(i, args.services)
        # its version alternates per pod index, and pods i, i + services, ... share a service: half
        # of each service's pods are v1 and half v2, whatever the counts
        p["metadata"]["labels"]["version"] = "v%d" % ((i // args.services) % 2 + 1)
        items.append(p)
    for i in range(args.services):
        ns, name = "bench-%d" % (i % 100), "svc-%d" % i
        items.append({"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
                      "metadata": {"name": name, "namespace": ns},
                      "spec": {"host": name, "subsets": [{"name": "v1", "labels": {"version": "v1"}},
                                                         {"name": "v2", "labels": {"version": "v2"}}]}})
        items.append({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
                      "metadata": {"name": name, "namespace": ns},
                      "spec": {"hosts": [name], "http": [{"route": [
                          {"destination": {"host": name, "subset": "v1"}, "weight": 90},
                          {"destination": {"host": name, "subset": "v2"}, "weight": 10}]}]}})
    with open(args.out, "w") as f:
        json.dump({"apiVersion": "v1", "kind": "List", "items": items}, f, separators=(",", ":"))
    print("%d objects, %.0f MB" % (len(items), os.path.getsize(args.out) / 1e6))


def cmd_synced(args):
    """When (seconds after --start, an epoch time) the follower said it had listed everything, and
    when its first generation was switched in; the first "generation" line's figures."""
    path = os.path.join(args.home, "sluiced.log")
    listed = first = None
    off = 0
    deadline = time.time() + args.timeout
    while time.time() < deadline and first is None:
        with open(path, "rb") as f:
            f.seek(off)
            data = f.read()
        end = data.rfind(b"\n")
        t = time.time()
        if end >= 0:
            off += end + 1
            for line in data[:end].split(b"\n"):
                if listed is None and b"every resource listed" in line:
                    listed = (t - args.start, line.decode(errors="replace"))
                m = GEN_LINE.search(line)
                if m and first is None:
                    first = (t - args.start, int(m.group(2)), int(m.group(5)))
        if first is None:
            time.sleep(0.02)
    print(json.dumps({"listed_s": listed and listed[0], "listed_line": listed and listed[1],
                      "first_generation_s": first and first[0], "services": first and first[1],
                      "compile_switch_ms": first and first[2]}))
    return 0 if first else 1


# ---- what one pod event costs the follower: its CPU time, every thread together ----

def cpu_ns(pid):
    """(every thread's time on a CPU, the main thread's) in ns: /proc/PID/task/*/schedstat."""
    total = main = 0
    for tid in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/schedstat" % (pid, tid)) as f:
                ns = int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            continue   # a thread that just ended
        total += ns
        if int(tid) == pid:
            main = ns
    return total, main


def cmd_podevents(args):
    """--events pods made unready, one at a time, each awaited in the node's pinned `active` map, then
    made ready again the same way; then --events status changes that leave the plan as it is (a
    condition's lastTransitionTime, --gap ms apart). sluiced's CPU time over each run, divided by its events; the same wall time idle, measured
    before, is the baseline taken off (housekeeping, bookmarks)."""
    with open(os.path.join(args.home, "sluiced.pid")) as f:
        pid = int(f.read())
    api = Api(args.api_dir)
    api.warm()
    active = Active([bpffs_of(args.home)])
    picked = [(i * 7919) % args.pods for i in range(args.events)]   # spread over services and namespaces

    def pod_path(i, status):
        ns = "bench-%d" % (i % args.services % 100)
        return "/api/v1/namespaces/%s/pods/pod-%d%s" % (ns, i, "/status" if status else "")

    def ready_run(ready):
        lat, t_start, c0 = [], now(), cpu_ns(pid)
        for i in picked:
            before = active.generation(0)
            body = {"status": {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}
            code, out, _, t_resp = api.request("PATCH", pod_path(i, True), body, "application/strategic-merge-patch+json")
            if code != 200:
                sys.exit("kube-follow.py: PATCH %s: %d %s" % (pod_path(i, True), code, out[:300]))
            deadline = t_resp + args.timeout
            while active.generation(0) == before and now() < deadline:
                time.sleep(0.0002)
            if active.generation(0) == before:
                sys.exit("kube-follow.py: pod-%d: no switch within %.0f s" % (i, args.timeout))
            lat.append((now() - t_resp) * 1e3)
        c1 = cpu_ns(pid)
        return lat, now() - t_start, c1[0] - c0[0], c1[1] - c0[1]

    # the baseline: sluiced left alone as long as a run of events takes, before any of them
    time.sleep(1)
    c0, t0 = cpu_ns(pid), now()
    time.sleep(args.idle)
    c1 = cpu_ns(pid)
    idle_rate = (c1[0] - c0[0]) / (now() - t0)
    runs = {}
    for label, ready in (("unready", False), ("ready", True)):
        lat, wall, cpu, main = ready_run(ready)
        runs[label] = {"events": len(picked), "wall_s": wall, "cpu_ms": cpu / 1e6, "main_ms": main / 1e6,
                       "idle_ms": idle_rate * wall / 1e6, "switch_ms": [pct(lat, 50), pct(lat, 99), max(lat)]}
    t_start, c0 = now(), cpu_ns(pid)
    for k, i in enumerate(picked):
        body = {"status": {"conditions": [{"type": "PodScheduled", "status": "True",
                                           "lastTransitionTime": "2025-01-01T00:%02d:%02dZ" % (k // 60 % 60, k % 60)}]}}
        code, out, _, _ = api.request("PATCH", pod_path(i, True), body, "application/strategic-merge-patch+json")
        if code != 200:
            sys.exit("kube-follow.py: PATCH %s: %d %s" % (pod_path(i, True), code, out[:300]))
        time.sleep(args.gap / 1e3)
    time.sleep(0.5)   # the last one handled
    c1 = cpu_ns(pid)
    wall = now() - t_start
    runs["status"] = {"events": len(picked), "wall_s": wall, "cpu_ms": (c1[0] - c0[0]) / 1e6,
                          "main_ms": (c1[1] - c0[1]) / 1e6, "idle_ms": idle_rate * wall / 1e6}
    for r in runs.values():
        r["per_event_ms"] = max(r["cpu_ms"] - r["idle_ms"], 0) / r["events"]
        r["main_per_event_ms"] = r["main_ms"] / r["events"]
    print(json.dumps({"idle_cpu_ms_per_s": idle_rate / 1e6, "runs": runs}))
    return 0


# ---- figures ----

def pct(xs, p):
    """Nearest rank: the smallest value with at least p% of the values at or below it."""
    xs = sorted(xs)
    if not xs:
        return float("nan")
    k = max(0, min(len(xs) - 1, -(-len(xs) * p // 100) - 1))
    return xs[int(k)]


def cmd_summary(args):
    rows = []
    for path in args.files:
        with open(path) as f:
            rows += [json.loads(line) for line in f if line.strip()]
    groups = {}
    for r in rows:
        groups.setdefault((r["kind"], r["label"]), []).append(r)
    out = {}
    for (kind, label), rs in groups.items():
        good = [r for r in rs if r["ok"] and None not in r["from_response_ms"] and None not in r["log_ms"]]
        every = [max(r["from_response_ms"]) for r in good]
        each = [x for r in good for x in r["from_response_ms"]]
        first = [min(r["from_response_ms"]) for r in good]
        apply_ms = [x for r in good for x in r["apply_ms"]]
        req = [r["request_ms"] for r in good]
        logs_every = [max(r["log_ms"]) for r in good]
        settle = [lg - fl for r in good for fl, lg in zip(r["from_response_ms"], r["log_ms"])]
        g = {"samples": len(rs), "ok": len(good), "nodes": rs[0]["nodes"],
             "log_every_node": [pct(logs_every, 50), pct(logs_every, 99), max(logs_every or [float("nan")])],
             "flip_to_log": [pct(settle, 50), pct(settle, 99), max(settle or [float("nan")])],
             "every_node": [pct(every, 50), pct(every, 99), max(every or [float("nan")])],
             "each_node": [pct(each, 50), pct(each, 99), max(each or [float("nan")])],
             "first_node": [pct(first, 50), pct(first, 99)],
             "apply_ms": [pct(apply_ms, 50), pct(apply_ms, 99), max(apply_ms or [float("nan")])],
             "request_ms": [pct(req, 50), pct(req, 99)],
             "negative": sum(1 for x in each if x < 0)}
        built = [x for r in good for x in r.get("built", []) if x is not None]
        g["built_max"] = max(built) if built else None
        # the slowest changes: which node, and how long its own compile-to-switch took
        worst = sorted(good, key=lambda r: -max(r["from_response_ms"]))[:3]
        g["worst"] = [{"ms": round(max(r["from_response_ms"]), 1),
                       "node": r["from_response_ms"].index(max(r["from_response_ms"])) + 1,
                       "its_apply_ms": r["apply_ms"][r["from_response_ms"].index(max(r["from_response_ms"]))],
                       "spread_ms": round(max(r["from_response_ms"]) - min(r["from_response_ms"]), 1)}
                      for r in worst]
        if any("poll_from_response_ms" in r for r in good):
            pg = [r for r in good if None not in r.get("poll_from_response_ms", [None])]
            pevery = [max(r["poll_from_response_ms"]) for r in pg]
            lag = [p - l for r in pg for p, l in zip(r["poll_from_response_ms"], r["from_response_ms"])]
            rtt = [x for r in pg for x in r["poll_rtt_ms"]]
            g["poll"] = {"ok": len(pg), "every_node": [pct(pevery, 50), pct(pevery, 99), max(pevery or [float("nan")])],
                         "lag_vs_flip": [pct(lag, 50), pct(lag, 99)],
                         "rtt": [pct(rtt, 50), pct(rtt, 99)],
                         "polls_per_change": sum(r["polls"] for r in pg) / max(1, len(pg))}
        out["%s/%s" % (kind, label)] = g
    print(json.dumps(out, indent=1))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)

    def common(p, api=True):
        if api:
            p.add_argument("--api-dir", required=True)
        p.add_argument("--homes", required=True, help="every node's sluiced home, comma-separated")
        p.add_argument("--service", default="purchase-history.istioinaction")
        p.add_argument("--timeout", type=float, default=30)
        p.add_argument("--label", default="")
        p.add_argument("--out", default="/dev/null")
        p.add_argument("--period", type=float, default=0.5, help="ms between reads of every node's active map")
    p = sub.add_parser("weights")
    common(p)
    p.add_argument("--ns", default="istioinaction")
    p.add_argument("--vs", default="purchase-history-vs")
    p.add_argument("--host", default="purchase-history.istioinaction.svc.cluster.local")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--first", type=int, default=80, help="v1's weight the nodes hold before the first change")
    p.add_argument("--changes", type=int, default=100)
    p.add_argument("--poll", action="store_true")
    p.add_argument("--gap", type=float, nargs=2, default=(100, 200), help="ms between changes, at random")
    p.add_argument("--progress", type=int, default=0)
    p = sub.add_parser("delete")
    common(p)
    p.add_argument("--ns", default="istioinaction")
    p.add_argument("--pod", required=True)
    p.add_argument("--ip", required=True)
    p.add_argument("--port", type=int, default=8080)
    p = sub.add_parser("wait")
    common(p, api=False)
    p.add_argument("--weights", default="")
    p.add_argument("--endpoint", default="")
    p = sub.add_parser("idle")
    common(p)
    p.add_argument("--seconds", type=float, default=60)
    p.add_argument("--user", default="sluiced")
    p = sub.add_parser("gen")
    p.add_argument("--services", type=int, default=10000)
    p.add_argument("--pods", type=int, default=80000)
    p.add_argument("--out", required=True)
    p = sub.add_parser("synced")
    p.add_argument("--home", required=True)
    p.add_argument("--start", type=float, required=True)
    p.add_argument("--timeout", type=float, default=300)
    p = sub.add_parser("podevents")
    p.add_argument("--api-dir", required=True)
    p.add_argument("--home", required=True)
    p.add_argument("--services", type=int, required=True)
    p.add_argument("--pods", type=int, required=True)
    p.add_argument("--events", type=int, default=100)
    p.add_argument("--idle", type=float, default=5, help="seconds of idle CPU measured as the baseline")
    p.add_argument("--gap", type=float, default=50, help="ms between the status changes the plan ignores")
    p.add_argument("--timeout", type=float, default=30)
    p = sub.add_parser("summary")
    p.add_argument("files", nargs="+")
    args = ap.parse_args()
    return globals()["cmd_" + args.cmd](args) or 0


if __name__ == "__main__":
    sys.exit(main())
