#!/usr/bin/env python3
"""The kubelet's part for deploy/'s DaemonSet on a mini-cluster node: what a pod of it is, and the
podman command line that runs its container as the kubelet would (DESIGN.md §16, "Containers").

  kubelet.py podman DAEMONSET.yaml --node NAME --node-ip IP --image IMAGE --name CONTAINER
             --netns PATH --host-path HOSTPATH=DIR... --host-root DIR --service-account DIR
             --api HOST:PORT --cgroup-parent PARENT
      JSON: {"create": [podman create arguments], "cmdline": [the container's command line],
             "readiness"/"liveness": {"path", "port", "period", "failures"}, "grace": seconds,
             "hostPaths": {"--option": the host's path of an option's container path}}
  kubelet.py pod DAEMONSET.yaml --node NAME      the Pod object the DaemonSet controller makes
  kubelet.py policy RBAC.yaml                    the API double's --policy from deploy/'s RBAC

Every field of the pod template is either run as the kubelet would or named here as what the test
does not need to run (scheduling); any other field stops the test, so that a manifest change this
file does not understand cannot pass unnoticed.
"""
import argparse
import json
import re
import sys

import yaml

# fields that decide where a pod is placed or how it is admitted, not how its container runs:
# every mini-cluster node takes the pod
SCHEDULING = {"tolerations", "priorityClassName", "nodeSelector", "affinity"}
SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


class Refused(Exception):
    pass


def known(obj, where, fields):
    extra = sorted(set(obj) - set(fields))
    if extra:
        raise Refused(f"{where}.{extra[0]}: the test's kubelet does not run this field "
                      f"(teach tests/cluster/kubelet.py, or remove it)")


def load_all(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d]


def daemonset(path):
    ds = [d for d in load_all(path) if d.get("kind") == "DaemonSet"]
    if len(ds) != 1:
        raise Refused(f"{path}: one DaemonSet expected, found {len(ds)}")
    return ds[0]


def quantity(q, where):
    """A Kubernetes memory quantity in bytes."""
    m = re.fullmatch(r"(\d+)(Ki|Mi|Gi|k|M|G)?", str(q))
    if not m:
        raise Refused(f"{where}: quantity {q!r} not understood")
    mult = {None: 1, "k": 10**3, "M": 10**6, "G": 10**9, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30}
    return int(m.group(1)) * mult[m.group(2)]


def probe(p, ports, where):
    if p is None:
        return None
    # the harness asks every 0.1 s until it answers: the kubelet's timing is not what is under test
    known(p, where, {"httpGet", "periodSeconds", "failureThreshold"})
    get = p.get("httpGet")
    if not get:
        raise Refused(f"{where}: only httpGet probes are run")
    known(get, where + ".httpGet", {"path", "port"})
    port = get["port"]
    if isinstance(port, str):
        if port not in ports:
            raise Refused(f"{where}.httpGet.port: no container port named {port!r}")
        port = ports[port]
    return {"path": get.get("path", "/"), "port": port}


def podman(o):
    ds = daemonset(o.manifest)
    pod_name = pod_object(ds, o.node)["metadata"]["name"]
    spec = ds["spec"]["template"]["spec"]
    w = "spec.template.spec"
    known(spec, w, SCHEDULING | {"serviceAccountName", "hostNetwork", "dnsPolicy", "terminationGracePeriodSeconds",
                                 "containers", "volumes", "automountServiceAccountToken"})
    if not spec.get("hostNetwork"):
        raise Refused(f"{w}.hostNetwork: the test runs sluiced in the node's network namespace only")
    # with the host network, DNS is the node's resolv.conf either way; sluiced reaches the API by address
    if spec.get("dnsPolicy", "ClusterFirstWithHostNet") not in ("ClusterFirstWithHostNet", "Default"):
        raise Refused(f"{w}.dnsPolicy: {spec['dnsPolicy']!r} not run")
    if len(spec["containers"]) != 1:
        raise Refused(f"{w}.containers: one container expected")
    c = spec["containers"][0]
    wc = f"{w}.containers[0]"
    known(c, wc, {"name", "image", "imagePullPolicy", "command", "args", "env", "ports", "livenessProbe",
                  "readinessProbe", "resources", "securityContext", "volumeMounts"})
    host = dict(hp.split("=", 1) for hp in o.host_path)
    volumes = {}
    for i, v in enumerate(spec.get("volumes", [])):
        known(v, f"{w}.volumes[{i}]", {"name", "hostPath"})
        if "hostPath" not in v:
            raise Refused(f"{w}.volumes[{i}]: only hostPath volumes are run")
        known(v["hostPath"], f"{w}.volumes[{i}].hostPath", {"path", "type"})
        path = v["hostPath"]["path"]
        # the node's view of a host path: the node's own bpffs or cgroup directory, or under its root
        volumes[v["name"]] = (host.get(path, o.host_root + path), v["hostPath"].get("type", ""))

    args = ["--name", o.name, "--hostname", o.node, "--network", f"ns:{o.netns}",
            "--cgroup-parent", o.cgroup_parent, "--pull", "never"]
    sc = c.get("securityContext", {})
    known(sc, wc + ".securityContext", {"privileged", "capabilities", "readOnlyRootFilesystem", "seccompProfile"})
    privileged = bool(sc.get("privileged"))
    if privileged:
        args.append("--privileged")
    caps = sc.get("capabilities", {})
    known(caps, wc + ".securityContext.capabilities", {"add", "drop"})
    args += [a for cap in caps.get("drop", []) for a in ("--cap-drop", cap)]
    args += [a for cap in caps.get("add", []) for a in ("--cap-add", cap)]
    if sc.get("readOnlyRootFilesystem"):
        args.append("--read-only")
    # the kubelet's default is Unconfined; RuntimeDefault is the runtime's own profile
    seccomp = sc.get("seccompProfile", {}).get("type", "Unconfined")
    if seccomp == "Unconfined":
        args += ["--security-opt", "seccomp=unconfined"]
    elif seccomp != "RuntimeDefault":
        raise Refused(f"{wc}.securityContext.seccompProfile.type: {seccomp!r} not run")

    res = c.get("resources", {})
    known(res, wc + ".resources", {"requests", "limits"})
    known(res.get("limits", {}), wc + ".resources.limits", {"memory", "cpu"})
    known(res.get("requests", {}), wc + ".resources.requests", {"memory", "cpu"})   # scheduling
    if "memory" in res.get("limits", {}):
        args += ["--memory", str(quantity(res["limits"]["memory"], wc + ".resources.limits.memory"))]
    if "cpu" in res.get("limits", {}):
        cpu = str(res["limits"]["cpu"])
        args += ["--cpus", str(int(cpu[:-1]) / 1000 if cpu.endswith("m") else float(cpu))]

    ports = {}
    for i, p in enumerate(c.get("ports", [])):
        known(p, f"{wc}.ports[{i}]", {"name", "containerPort", "protocol"})
        if "name" in p:
            ports[p["name"]] = p["containerPort"]

    api_host, api_port = o.api.rsplit(":", 1)
    env = {"KUBERNETES_SERVICE_HOST": api_host, "KUBERNETES_SERVICE_PORT": api_port}
    fields = {"spec.nodeName": o.node, "metadata.name": pod_name, "status.hostIP": o.node_ip,
              "status.podIP": o.node_ip, "metadata.namespace": ds["metadata"]["namespace"]}
    for i, e in enumerate(c.get("env", [])):
        known(e, f"{wc}.env[{i}]", {"name", "value", "valueFrom"})
        if "valueFrom" in e:
            ref = e["valueFrom"].get("fieldRef", {}).get("fieldPath")
            if ref not in fields:
                raise Refused(f"{wc}.env[{i}].valueFrom: only fieldRef to {sorted(fields)} is run")
            env[e["name"]] = fields[ref]
        else:
            env[e["name"]] = str(e.get("value", ""))
    args += [a for k, v in env.items() for a in ("--env", f"{k}={v}")]

    mounts = {}   # container path -> host path, for hostPaths
    for i, m in enumerate(c.get("volumeMounts", [])):
        wm = f"{wc}.volumeMounts[{i}]"
        known(m, wm, {"name", "mountPath", "readOnly", "mountPropagation"})
        if m["name"] not in volumes:
            raise Refused(f"{wm}.name: no volume {m['name']!r}")
        src, _ = volumes[m["name"]]
        prop = {"None": "rprivate", "HostToContainer": "rslave", "Bidirectional": "rshared"}.get(
            m.get("mountPropagation", "None"))
        if prop is None:
            raise Refused(f"{wm}.mountPropagation: {m['mountPropagation']!r}")
        if prop == "rshared" and not privileged:   # as the API server refuses it
            raise Refused(f"{wm}.mountPropagation: Bidirectional needs a privileged container")
        opts = [prop] + (["ro"] if m.get("readOnly") else [])
        args += ["--volume", f"{src}:{m['mountPath']}:{','.join(opts)}"]
        mounts[m["mountPath"]] = src
    if spec.get("automountServiceAccountToken", True):
        args += ["--volume", f"{o.service_account}:{SA_DIR}:ro"]

    command = c.get("command")
    cmdline = (command or []) + c.get("args", [])
    if command:
        if len(command) != 1:
            raise Refused(f"{wc}.command: one program, its arguments in args")
        args += ["--entrypoint", command[0]]
    args += [o.image] + c.get("args", [])

    host_paths = {}
    for a in c.get("args", []):
        m = re.fullmatch(r"(--[a-z-]+)=(/.*)", a)
        if m:
            for mp, src in mounts.items():
                if m.group(2) == mp or m.group(2).startswith(mp.rstrip("/") + "/"):
                    host_paths[m.group(1)] = src + m.group(2)[len(mp.rstrip("/")):]
    return {"create": args, "cmdline": cmdline, "grace": spec.get("terminationGracePeriodSeconds", 30),
            "readiness": probe(c.get("readinessProbe"), ports, wc + ".readinessProbe"),
            "liveness": probe(c.get("livenessProbe"), ports, wc + ".livenessProbe"),
            "directories": [src for src, t in volumes.values() if t == "DirectoryOrCreate"],
            "hostPaths": host_paths}


def pod_object(ds, node):
    """The pod the DaemonSet controller makes for a node: the template, bound to the node."""
    tpl = ds["spec"]["template"]
    suffix = re.sub(r"[^a-z0-9]", "", node.rsplit("-", 1)[-1])
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": f"{ds['metadata']['name']}-{suffix}", "namespace": ds["metadata"]["namespace"],
                         "labels": tpl["metadata"].get("labels", {}),
                         "ownerReferences": [{"apiVersion": "apps/v1", "kind": "DaemonSet",
                                              "name": ds["metadata"]["name"], "uid": "daemonset-sluiced",
                                              "controller": True}]},
            "spec": dict(tpl["spec"], nodeName=node)}


def policy(path):
    """The API double's users, as deploy/'s RBAC grants: sluiced (the DaemonSet's service account,
    through its ClusterRoleBinding) and rollout (the sluice-rollout ClusterRole); admin and nobody."""
    docs = load_all(path)
    roles = {d["metadata"]["name"]: d["rules"] for d in docs if d["kind"] == "ClusterRole"}
    bound = [d["roleRef"]["name"] for d in docs if d["kind"] == "ClusterRoleBinding"
             for s in d["subjects"] if s["kind"] == "ServiceAccount" and s["name"] == "sluiced"]
    if len(bound) != 1 or bound[0] not in roles or "sluice-rollout" not in roles:
        raise Refused(f"{path}: one ClusterRole bound to the sluiced ServiceAccount, and sluice-rollout, expected")
    rules = lambda name: [{"verbs": r["verbs"], "apiGroups": r["apiGroups"], "resources": r["resources"]}
                          for r in roles[name]]
    return {"admin": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}],
            "sluiced": rules(bound[0]), "rollout": rules("sluice-rollout"), "nobody": []}


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    pm = sub.add_parser("podman")
    pm.add_argument("manifest")
    for a in ("--node", "--node-ip", "--image", "--name", "--netns", "--host-root", "--service-account", "--api",
              "--cgroup-parent"):
        pm.add_argument(a, required=True)
    pm.add_argument("--host-path", action="append", default=[])
    po = sub.add_parser("pod")
    po.add_argument("manifest")
    po.add_argument("--node", required=True)
    pl = sub.add_parser("policy")
    pl.add_argument("rbac")
    o = p.parse_args()
    try:
        if o.cmd == "podman":
            out = podman(o)
        elif o.cmd == "pod":
            out = pod_object(daemonset(o.manifest), o.node)
        else:
            out = policy(o.rbac)
    except Refused as e:
        print(f"kubelet.py: {e}", file=sys.stderr)
        return 1
    json.dump(out, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
