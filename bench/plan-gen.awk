# Writes the input of bench/plan-bench: SERVICES Services (default 10,000), each with a
# DestinationRule of two subsets, a VirtualService splitting 90/10, and PODS ready pods per Service
# (default 8), v1 and v2 in turn (15: 8 of v1, 7 of v2).
#   awk -v services=10000 [-v pods=15] -v form=compact -f bench/plan-gen.awk > cluster.yaml
# form=compact: the objects with the fields sluice reads and their names, as a user writes them;
# form=kubectl: Services and Pods as `kubectl get svc,pods -o yaml` prints them (a sidecar-free
# pod, status included), about five times the bytes: every object an item of one `kind: List`, as
# kubectl prints what it gets (the rules too, as `kubectl get svc,pods,dr,vs` would);
# form=documents: the same objects as separate documents (a directory of them, joined).
# Addresses are never dialled: VIPs from 198.19.0.0/16, pods from 10.0.0.0/8.
# Objects are written through put: as documents ("---" lines), or as the items of one List.
function put(s,  n, lines, i) {
	if (form != "kubectl") {
		printf "%s", s
		return
	}
	n = split(s, lines, "\n")
	for (i = 1; i < n; i++) {
		if (lines[i] == "---") {
			item = 1
			continue
		}
		printf "%s%s\n", item ? "- " : "  ", lines[i]
		item = 0
	}
}
function ip4(n) { return sprintf("%d.%d.%d", int(n / 65536) % 256, int(n / 256) % 256, n % 256) }
# The service's DestinationRule (subsets v1, v2) and VirtualService (90/10), alike in both forms.
function rules(name, ns) {
	put(sprintf("---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata:\n  name: %s\n  namespace: %s\n", name, ns))
	put(sprintf("spec:\n  host: %s\n  subsets:\n  - name: v1\n    labels:\n      version: v1\n  - name: v2\n    labels:\n      version: v2\n", name))
	put(sprintf("---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: %s\n  namespace: %s\n", name, ns))
	put(sprintf("spec:\n  hosts:\n  - %s\n  http:\n  - route:\n", name))
	put(sprintf("    - destination:\n        host: %s\n        subset: v1\n      weight: 90\n", name))
	put(sprintf("    - destination:\n        host: %s\n        subset: v2\n      weight: 10\n", name))
}

function compact(s,  ns, name, vip, v, p, k) {
	ns = sprintf("team-%02d", s % 100)
	name = sprintf("svc-%05d", s)
	vip = "198.19." int((s + 1) / 256) "." ((s + 1) % 256)
	put(sprintf("---\napiVersion: v1\nkind: Service\nmetadata:\n  name: %s\n  namespace: %s\nspec:\n  clusterIP: %s\n", name, ns, vip))
	put(sprintf("  selector:\n    app: %s\n  ports:\n  - name: http\n    port: 80\n    targetPort: 8080\n", name))
	rules(name, ns)
	for (p = 0; p < pods; p++) {
		v = p % 2 + 1
		k = s * pods + p
		put(sprintf("---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: %s-v%d-%d\n  namespace: %s\n", name, v, p, ns))
		put(sprintf("  labels:\n    app: %s\n    version: v%d\nstatus:\n  phase: Running\n", name, v))
		put(sprintf("  conditions:\n  - type: Ready\n    status: \"True\"\n  podIP: 10.%s\n", ip4(k)))
	}
}
BEGIN {
	if (!services) services = 10000
	if (!pods) pods = 8
	if (form == "kubectl")
		printf "apiVersion: v1\nitems:\n"
	for (s = 0; s < services; s++) {
		if (form == "compact") {
			compact(s)
			continue
		}
		ns = sprintf("team-%02d", s % 100)
		name = sprintf("svc-%05d", s)
		vip = "198.19." int((s + 1) / 256) "." ((s + 1) % 256)
		put(sprintf("---\napiVersion: v1\nkind: Service\nmetadata:\n  labels:\n    app: %s\n  name: %s\n  namespace: %s\n", name, name, ns))
		put(sprintf("  resourceVersion: \"%d\"\n  uid: 5d0c1a2b-0000-4000-8000-%012d\n", 1000 + s, s))
		put(sprintf("spec:\n  clusterIP: %s\n  clusterIPs:\n  - %s\n  internalTrafficPolicy: Cluster\n", vip, vip))
		put(sprintf("  ipFamilies:\n  - IPv4\n  ipFamilyPolicy: SingleStack\n"))
		put(sprintf("  ports:\n  - name: http\n    port: 80\n    protocol: TCP\n    targetPort: 8080\n"))
		put(sprintf("  selector:\n    app: %s\n  sessionAffinity: None\n  type: ClusterIP\nstatus:\n  loadBalancer: {}\n", name))
		rules(name, ns)
		for (p = 0; p < pods; p++) {
			v = p % 2 + 1
			k = s * pods + p
			hash = sprintf("%08x%d", s, v)
			pod = sprintf("%s-v%d-%s-%05d", name, v, hash, p)
			ip = "10." ip4(k)
			put(sprintf("---\napiVersion: v1\nkind: Pod\nmetadata:\n  generateName: %s-v%d-%s-\n", name, v, hash))
			put(sprintf("  labels:\n    app: %s\n    pod-template-hash: %s\n    version: v%d\n", name, hash, v))
			put(sprintf("  name: %s\n  namespace: %s\n", pod, ns))
			put(sprintf("  ownerReferences:\n  - apiVersion: apps/v1\n    blockOwnerDeletion: true\n    controller: true\n"))
			put(sprintf("    kind: ReplicaSet\n    name: %s-v%d-%s\n    uid: 7e1f2a3b-0000-4000-8000-%012d\n", name, v, hash, s))
			put(sprintf("  resourceVersion: \"%d\"\n  uid: 9a8b7c6d-0000-4000-8000-%012d\n", 50000 + k, k))
			put(sprintf("spec:\n  containers:\n  - image: registry.example/%s:v%d\n    imagePullPolicy: IfNotPresent\n", name, v))
			put(sprintf("    name: app\n    ports:\n    - containerPort: 8080\n      name: http\n      protocol: TCP\n"))
			put(sprintf("    resources: {}\n    terminationMessagePath: /dev/termination-log\n    terminationMessagePolicy: File\n"))
			put(sprintf("  dnsPolicy: ClusterFirst\n  nodeName: node-%d\n  restartPolicy: Always\n", k % 50))
			put(sprintf("  schedulerName: default-scheduler\n  serviceAccountName: default\n  terminationGracePeriodSeconds: 30\n"))
			put(sprintf("status:\n  conditions:\n"))
			put(sprintf("  - lastProbeTime: null\n    lastTransitionTime: \"2024-05-01T10:00:00Z\"\n    status: \"True\"\n    type: Initialized\n"))
			put(sprintf("  - lastProbeTime: null\n    lastTransitionTime: \"2024-05-01T10:00:05Z\"\n    status: \"True\"\n    type: Ready\n"))
			put(sprintf("  - lastProbeTime: null\n    lastTransitionTime: \"2024-05-01T10:00:05Z\"\n    status: \"True\"\n    type: ContainersReady\n"))
			put(sprintf("  - lastProbeTime: null\n    lastTransitionTime: \"2024-05-01T10:00:00Z\"\n    status: \"True\"\n    type: PodScheduled\n"))
			put(sprintf("  hostIP: 172.18.0.%d\n  phase: Running\n  podIP: %s\n  podIPs:\n  - ip: %s\n", 2 + k % 50, ip, ip))
			put(sprintf("  qosClass: BestEffort\n  startTime: \"2024-05-01T10:00:00Z\"\n"))
		}
	}
	if (form == "kubectl")
		printf "kind: List\nmetadata:\n  resourceVersion: \"\"\n"
}
