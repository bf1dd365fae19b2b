#!/usr/bin/env python3
"""Figures for the API double at cluster size (run by tests/apiserver/bench.sh, against a double
started by api_up):

  list     10,000 Services and 80,000 Pods loaded, then LIST of each: seconds, bytes, server RSS
  writes   merge PATCHes of one VirtualService from one keep-alive client: requests/s
  fanout   W watchers on pods; E pod updates committed at once (bulk load); events/s delivered to
           all watchers together, and the time until the last watcher has the last event
  latency  W watchers on one VirtualService; PATCHes one at a time: from each PATCH to the last
           watcher holding its event, p50 and p99

    bench.py --url URL --ca CA --token TOKEN [--services N] [--pods N] [--watchers W] [--events E]
"""

import argparse
import http.client
import json
import ssl
import threading
import time
import urllib.parse


def connect(args):
    ctx = ssl.create_default_context(cafile=args.ca)
    u = urllib.parse.urlsplit(args.url)
    return http.client.HTTPSConnection(u.hostname, u.port, context=ctx, timeout=600)


def request(conn, args, method, path, body=None, ctype="application/json"):
    headers = {"Authorization": "Bearer " + args.token, "Accept": "application/json"}
    if body is not None:
        headers["Content-Type"] = ctype
    conn.request(method, path, body=body, headers=headers)
    r = conn.getresponse()
    data = r.read()
    if r.status >= 300:
        raise SystemExit("%s %s: %d %s" % (method, path, r.status, data[:300]))
    return data


def service(i):
    ns = "bench-%d" % (i % 100)
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "svc-%d" % i, "namespace": ns, "labels": {"app": "app-%d" % i}},
            "spec": {"selector": {"app": "app-%d" % i}, "type": "ClusterIP",
                     "ports": [{"name": "http", "port": 8080, "targetPort": 8080, "protocol": "TCP"}]}}


def pod(i, services, rev=0):
    s = i % services
    ns = "bench-%d" % (s % 100)
    ip = "10.%d.%d.%d" % (i >> 16 & 255, i >> 8 & 255, i & 255)
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "pod-%d" % i, "namespace": ns, "uid": "00000000-0000-4000-8000-%012d" % i,
                         "labels": {"app": "app-%d" % s, "version": "v%d" % (i % 2 + 1),
                                    "pod-template-hash": "5d8f7c9b%02d" % (i % 100)},
                         "annotations": {"bench/rev": str(rev)}},
            "spec": {"nodeName": "node-%d" % (i % 20), "restartPolicy": "Always", "dnsPolicy": "ClusterFirst",
                     "schedulerName": "default-scheduler", "terminationGracePeriodSeconds": 30,
                     "containers": [{"name": "app", "image": "registry.example/app-%d:1.0" % s,
                                     "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                                     "resources": {}, "imagePullPolicy": "IfNotPresent",
                                     "terminationMessagePath": "/dev/termination-log",
                                     "terminationMessagePolicy": "File"}]},
            "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}], "hostIP": "198.18.254.%d" % (i % 20),
                       "qosClass": "BestEffort", "startTime": "2025-01-01T00:00:00Z",
                       "conditions": [{"type": t, "status": "True", "lastTransitionTime": "2025-01-01T00:00:00Z",
                                       "lastProbeTime": None}
                                      for t in ("PodScheduled", "Initialized", "ContainersReady", "Ready")],
                       "containerStatuses": [{"name": "app", "ready": True, "started": True, "restartCount": 0,
                                              "image": "registry.example/app-%d:1.0" % s, "imageID": "",
                                              "containerID": "containerd://%064x" % i,
                                              "state": {"running": {"startedAt": "2025-01-01T00:00:00Z"}}}]}}


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def bench_list(args):
    conn = connect(args)
    t0 = time.time()
    objs = [service(i) for i in range(args.services)] + [pod(i, args.services) for i in range(args.pods)]
    body = json.dumps({"kind": "List", "items": objs}).encode()
    del objs
    request(conn, args, "POST", "/_sluice/load", body)
    print("load      %d services + %d pods (%.1f MB JSON) in %.1f s" % (
        args.services, args.pods, len(body) / 1e6, time.time() - t0))
    del body
    # the server frees the load's parsed body after answering, before it reads the next request
    # on this connection: not part of a LIST
    request(conn, args, "GET", "/version")
    for path, what in (("/api/v1/services", "services"), ("/api/v1/pods", "pods")):
        for limit in ("", "?limit=500") * args.repeat:
            t0, total, pages = time.time(), 0, 0
            cont = ""
            while True:
                q = limit + ("&continue=" + cont if cont else "")
                data = request(conn, args, "GET", path + q)
                total += len(data)
                pages += 1
                if not limit:
                    break
                # the continue token is in the list's metadata, before the items
                head = data[:400].decode("utf-8", "replace")
                at = head.find('"continue":"')
                cont = head[at + 12:head.index('"', at + 12)] if at >= 0 else ""
                if not cont:
                    break
            dt = time.time() - t0
            print("LIST %-9s %-11s %6.2f s  %6.1f MB  %d request%s" % (
                what, "whole" if not limit else "limit=500", dt, total / 1e6, pages, "s" if pages > 1 else ""))
    if args.pid:
        print("server RSS %.0f MB" % (rss_kb(args.pid) / 1024))


def bench_writes(args):
    conn = connect(args)
    ns = "bench-writes"
    request(conn, args, "POST", "/api/v1/namespaces", json.dumps({"metadata": {"name": ns}}).encode())
    vs = {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService", "metadata": {"name": "vs"},
          "spec": {"hosts": ["svc"], "http": [{"route": [{"destination": {"host": "svc", "subset": "v1"}, "weight": 100}]}]}}
    path = "/apis/networking.istio.io/v1/namespaces/%s/virtualservices" % ns
    request(conn, args, "POST", path, json.dumps(vs).encode())
    n = args.writes
    t0 = time.time()
    for i in range(n):
        patch = {"spec": {"http": [{"route": [{"destination": {"host": "svc", "subset": "v1"}, "weight": 100 - i % 100},
                                              {"destination": {"host": "svc", "subset": "v2"}, "weight": i % 100}]}]}}
        request(conn, args, "PATCH", path + "/vs", json.dumps(patch).encode(), "application/merge-patch+json")
    dt = time.time() - t0
    print("writes    %d merge PATCHes from one client: %.0f requests/s (%.2f ms each)" % (n, n / dt, dt * 1000 / n))


def bench_fanout(args):
    conn = connect(args)
    data = request(conn, args, "GET", "/api/v1/pods?limit=1")
    rv = json.loads(data)["metadata"]["resourceVersion"]
    got = [0] * args.watchers
    last = [0.0] * args.watchers
    ready = threading.Barrier(args.watchers + 1)

    def watcher(k):
        c = connect(args)
        c.request("GET", "/api/v1/pods?watch=1&allowWatchBookmarks=true&resourceVersion=%s&timeoutSeconds=600" % rv,
                  headers={"Authorization": "Bearer " + args.token})
        r = c.getresponse()
        ready.wait()
        while got[k] < args.events:
            line = r.fp.readline()
            if not line:
                break
            if line.startswith(b'{"type":"') and not line.startswith(b'{"type":"BOOKMARK"'):
                got[k] += 1
        last[k] = time.time()
        c.close()

    threads = [threading.Thread(target=watcher, args=(k,), daemon=True) for k in range(args.watchers)]
    for t in threads:
        t.start()
    ready.wait()
    time.sleep(0.5)
    body = json.dumps({"kind": "List", "items": [pod(i, args.services, rev=1) for i in range(args.events)]}).encode()
    t0 = time.time()
    request(conn, args, "POST", "/_sluice/load", body)
    committed = time.time() - t0
    for t in threads:
        t.join(600)
    done = max(last) - t0
    total = sum(got)
    print("fanout    %d pod updates to %d watchers: committed in %.2f s; all %d events delivered in %.2f s: "
          "%.0f events/s (%.0f per watcher)" % (args.events, args.watchers, committed, total, done, total / done,
                                                 total / done / args.watchers))
    if min(got) < args.events:
        print("          short: some watcher got only %d of %d" % (min(got), args.events))


def bench_latency(args):
    """From a PATCH's send to the last of W watchers holding its event: what issue 12's weight
    changes cost in the double (the watchers are threads of this process: an upper bound)."""
    conn = connect(args)
    ns = "bench-latency"
    request(conn, args, "POST", "/api/v1/namespaces", json.dumps({"metadata": {"name": ns}}).encode())
    path = "/apis/networking.istio.io/v1/namespaces/%s/virtualservices" % ns
    vs = {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService", "metadata": {"name": "vs"},
          "spec": {"hosts": ["svc"]}}
    rv = json.loads(request(conn, args, "POST", path, json.dumps(vs).encode()))["metadata"]["resourceVersion"]
    seen = {}                      # resourceVersion -> [arrival times]
    lock = threading.Lock()
    ready = threading.Barrier(args.watchers + 1)

    def watcher():
        c = connect(args)
        c.request("GET", path + "?watch=1&resourceVersion=%s&timeoutSeconds=600" % rv,
                  headers={"Authorization": "Bearer " + args.token})
        r = c.getresponse()
        ready.wait()
        n = 0
        while n < args.changes:
            line = r.fp.readline()
            if not line:
                break
            if line.startswith(b'{"type":"MODIFIED"'):
                t = time.time()
                at = line.find(b'"resourceVersion":"')
                v = line[at + 19:line.index(b'"', at + 19)].decode()
                with lock:
                    seen.setdefault(v, []).append(t)
                n += 1
        c.close()

    threads = [threading.Thread(target=watcher, daemon=True) for _ in range(args.watchers)]
    for t in threads:
        t.start()
    ready.wait()
    time.sleep(0.3)
    sent = {}
    for i in range(args.changes):
        patch = {"spec": {"http": [{"route": [{"destination": {"host": "svc", "subset": "v1"}, "weight": 100 - i},
                                              {"destination": {"host": "svc", "subset": "v2"}, "weight": i}]}]}}
        t0 = time.time()
        out = request(conn, args, "PATCH", path + "/vs", json.dumps(patch).encode(), "application/merge-patch+json")
        t1 = time.time()
        sent[json.loads(out)["metadata"]["resourceVersion"]] = (t0, t1)
        time.sleep(args.gap / 1000.0)
    for t in threads:
        t.join(30)
    from_send, from_reply = [], []
    for v, (t0, t1) in sent.items():
        arr = seen.get(v, [])
        if len(arr) < args.watchers:
            print("latency   resourceVersion %s reached %d of %d watchers" % (v, len(arr), args.watchers))
            continue
        from_send.append((max(arr) - t0) * 1000)
        from_reply.append((max(arr) - t1) * 1000)

    def pct(xs, p):
        xs = sorted(xs)
        return xs[min(len(xs) - 1, int(round(p / 100.0 * (len(xs) - 1))))] if xs else float("nan")
    print("latency   %d PATCHes, %d watchers: to the last watcher from the request p50 %.2f ms p99 %.2f ms; "
          "from the response p50 %.2f ms p99 %.2f ms" % (len(from_send), args.watchers, pct(from_send, 50),
                                                        pct(from_send, 99), pct(from_reply, 50), pct(from_reply, 99)))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--url", required=True)
    p.add_argument("--ca", required=True)
    p.add_argument("--token", required=True)
    p.add_argument("--pid", type=int, help="the server's pid, for its RSS")
    p.add_argument("--services", type=int, default=10000)
    p.add_argument("--pods", type=int, default=80000)
    p.add_argument("--writes", type=int, default=1000)
    p.add_argument("--watchers", type=int, default=20)
    p.add_argument("--events", type=int, default=5000)
    p.add_argument("--repeat", type=int, default=1, help="list: times each LIST is made")
    p.add_argument("--changes", type=int, default=200, help="latency: PATCHes")
    p.add_argument("--gap", type=float, default=20, help="latency: ms between PATCHes")
    p.add_argument("what", nargs="*", default=["list", "writes", "fanout", "latency"])
    args = p.parse_args()
    for w in args.what:
        {"list": bench_list, "writes": bench_writes, "fanout": bench_fanout, "latency": bench_latency}[w](args)


if __name__ == "__main__":
    main()
