#!/usr/bin/env bash
# deploy/ run as a cluster runs it (issue 13): `make image`'s image, started by podman on every node
# of a 3-node mini-cluster as the kubelet starts deploy/'s DaemonSet (tests/cluster/kubelet.py reads
# the manifest: command, args, env, security context, resources, host paths, probes), following
# the API server double with the service account's token and the rights deploy/'s RBAC grants. The
# Istio lab's rollout passes with sluiced in containers; a rolling update of a node under traffic
# loses no connection; the image's bpftool reads the node's pins as `kubectl exec` would.
set -u
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/../apiserver/lib.sh"
ds_cleanup() { api_down; e2e_cleanup; }
e2e_begin
trap ds_cleanup EXIT

NS=istioinaction
VIP=198.19.0.10
NODES="1 2 3"
MANIFEST=$SLUICE_TOP/deploy/20-daemonset.yaml
cluster_nodes 3 || exit 1
D=$CLUSTER_DIR
control_plane_up || exit 1
IMG=localhost/sluice-test-$CLUSTER_PREFIX:dev
daemonset_image "$IMG"
out=$(SLUICE_IMAGE_ARCHIVE=$D/image.tar BUILD=$SLUICE_BUILD bash "$SLUICE_TOP/deploy/image/build" "$IMG" 2>&1) ||
	{ echo "$out"; exit 1; }

# the API on the nodes' network; its users have exactly the rights deploy/10-rbac.yaml grants
python3 "$SLUICE_TOP/tests/cluster/kubelet.py" policy "$SLUICE_TOP/deploy/10-rbac.yaml" > "$D/policy.json" || exit 1
API_NETNS=$(fabric_ns) API_ADDRESS=$(control_plane_ip)
api_up "$D/api" --policy "$D/policy.json" --bookmark-interval 1 || exit 1
k() { api_kubectl "$@"; }
cli() { api_in "$SLUICE_BUILD/sluice" --kubeconfig "$API_KUBECONFIG" --context rollout "$@"; }
CLUSTER_KUBELET_HOOK=api_kubelet
k apply -f "$SLUICE_TOP/deploy/00-namespace.yaml" >/dev/null || exit 1
api_lab_workloads $NS $VIP || exit 1

# node K's DaemonSet pod: the controller's Pod object, the kubelet's container, its status once ready
ds_pod_up() {
	local k=$1 pod
	pod=$(python3 "$SLUICE_TOP/tests/cluster/kubelet.py" pod "$MANIFEST" --node "$(node_ns "$k")") || return 1
	api_curl admin POST /api/v1/namespaces/sluice-system/pods "$pod" >/dev/null || return 1
	daemonset_start_node "$k" "$MANIFEST" "$API_SA_DIR" || return 1
	api_curl admin PATCH "/api/v1/namespaces/sluice-system/pods/$(jqr "$pod" .metadata.name)/status" \
		"{\"status\":{\"phase\":\"Running\",\"hostIP\":\"$(node_ip "$k")\",\"podIP\":\"$(node_ip "$k")\",\"conditions\":[{\"type\":\"Ready\",\"status\":\"True\"}]}}" >/dev/null
}
for n in $NODES; do ds_pod_up "$n" || exit 1; done
# node K's /metrics as Prometheus scrapes it (the pod's IP and the manifest's port), one series
scrape() { api_in curl -s --max-time 5 "http://$(node_ip "$1"):9464/metrics" | awk -v s="$2" '$1 == s { print $2 }'; }
PROG=sluice_kubernetes_network_programming_duration_seconds_count
gen2=$(sluice_on 2 status -o json | jq .generation) prog2=$(scrape 2 $PROG)


# 1. What runs is what the manifest says, where the manifest says, and nothing more.
for n in $NODES; do
	plan=$(node_dir "$n")/kubelet.json
	check "node $n: the container runs the manifest's command and args" "$(jq -r '.cmdline | join(" ")' "$plan")" \
		"$(tr '\0' ' ' < "/proc/$(daemonset_pid "$n")/cmdline" | sed 's/ $//')"
	check "node $n: in the node's network namespace (hostNetwork)" "$(stat -L -c %i "/run/netns/$(node_ns "$n")")" \
		"$(stat -L -c %i "/proc/$(daemonset_pid "$n")/ns/net")"
	check "node $n: its connect4 link is on node $n's cgroup, from the pins under the manifest's --bpffs" \
		"$(stat -c %i "$(node_cgroup "$n")")" \
		"$(bpftool -j link show pinned "$(cat "$(node_dir "$n")/bpffs")/links/sluice_connect4" | jq .cgroup_id)"
	check "node $n: follows the API as a pod does (service account, KUBERNETES_SERVICE_HOST)" \
		"in-cluster https://$(control_plane_ip):$API_PORT" \
		"$(sluice_on "$n" status -o json | jq -r '"\(.kubernetes.context) \(.kubernetes.server)"')"
done
check "no sluice program on the machine's cgroup root or the cluster's cgroup" "0 0" \
	"$(bpftool cgroup show "$(cgroup2_mount)" | grep -c sluice) $(bpftool cgroup show "$CLUSTER_CGROUP" | grep -c sluice)"
check "the container's memory limit is the manifest's (512Mi)" 536870912 \
	"$(cluster_podman inspect -f '{{.HostConfig.Memory}}' "$(cat "$(node_dir 1)/container")")"

# 2. The lab's rollout: dark launch and 20% with kubectl, then sluice weight --cluster --wait.
k apply -n $NS -f tests/e2e/lab/purchase-history-dr.yaml -f tests/e2e/lab/purchase-history-vs-all-v1.yaml >/dev/null
wait_for "n1 v1=100 | n2 v1=100 | n3 v1=100" all_weights
check "all-v1: every node's clients, 100 of every 100 on v1" "100 100 | 100 100 | 100 100" "$(every_node_window)"
k apply -n $NS -f tests/e2e/lab/purchase-history-vs-20-v2.yaml >/dev/null
wait_for "n1 v1=80 v2=20 | n2 v1=80 v2=20 | n3 v1=80 v2=20" all_weights
check "kubectl apply 20-v2: every node's clients, exactly 80 of every 100 on v1" "80 80 | 80 80 | 80 80" "$(every_node_window)"
for step in "50 50" "0 100"; do
	set -- $step
	out=$(cli weight --wait purchase-history.$NS v1=$1 v2=$2); rc=$?
	check "sluice weight --wait v1=$1 v2=$2: every node's container applied it" "0 yes" \
		"$rc $(echo "$out" | grep -qE '^every node \(3\) applied resourceVersion [0-9]+ in [0-9]+ ms$' && echo yes)"
	check "v1=$1 v2=$2: every node's clients, exactly $1 of every 100 on v1" "$1 $1 | $1 $1 | $1 $1" "$(every_node_window)"
done
out=$(cli status --cluster -o json); rc=$?
check "status --cluster: 3 nodes answered through their endpoint, purchase-history-vs converged" "0 3 true" \
	"$rc $(jqr "$out" '"\([.nodes[] | select(.answered)] | length) \([.virtualServices[] | select(.name == "purchase-history-vs") | .converged][0])"')"

rv=$(k -n $NS get vs purchase-history-vs -o jsonpath='{.metadata.resourceVersion}')
check "/metrics: node 2 applied the VirtualService's resourceVersion (the last VirtualService event)" "$rv" \
	"$(scrape 2 'sluice_kubernetes_applied_resource_version{kind="VirtualService"}')"
check "/metrics: a network programming duration per generation the API's changes made on node 2" \
	"$(($(sluice_on 2 status -o json | jq .generation) - gen2))" "$(($(scrape 2 $PROG) - prog2))"
check "/metrics: no map write failed, and the services map was written" "0 yes" \
	"$(api_in curl -s "http://$(node_ip 2):9464/metrics" | awk '/^sluice_bpf_map_ops_total.*outcome="failure"/ { f += $2 }
		/^sluice_bpf_map_ops_total.*map="services",operation="update",outcome="success"/ { w = $2 } END { print f + 0, (w > 0 ? "yes" : "no") }')"

# 3. A rolling update (maxUnavailable 1): node 1's pod replaced while its client connects without
#    pause; the new container adopts the pins, and no connection fails.
gen=$(sluice_on 1 status -o json | jq .generation)
loadgen_exec client-1 -o json --target $VIP:8080 -n 100000000 -c 1 > "$D/rolling.json" &
lg=$!
sleep 0.5
daemonset_stop_node 1 && ds_pod_restart=ok
api_curl admin DELETE "/api/v1/namespaces/sluice-system/pods/$(python3 "$SLUICE_TOP/tests/cluster/kubelet.py" pod "$MANIFEST" --node "$(node_ns 1)" | jq -r .metadata.name)" >/dev/null
ds_pod_up 1 || exit 1
sleep 0.5
kill -INT $lg; wait $lg
check "rolling update of node 1 under traffic: the pod replaced, connections made, none failed" "ok yes 0" \
	"${ds_pod_restart:-no} $(jqr "$(cat "$D/rolling.json")" '"\(.ok > 100 | if . then "yes" else "no" end) \(.failed)"')"
check "the new container serves the same generation from the adopted pins" "$gen" \
	"$(sluice_on 1 status -o json | jq .generation)"
check "... and its clients stay on v2" "0 0" "$(window 1)"
out=$(cli weight --wait purchase-history.$NS v1=100 v2=0); rc=$?
check "rollback after the update: every node, v2 drained" "0 100 100 | 100 100 | 100 100" "$rc $(every_node_window)"

# 4. kubectl exec -n sluice-system sluiced-... -- bpftool map dump pinned /sys/fs/bpf/sluice/maps/services
check "the image's bpftool in a running container reads the node's services map: the VIP and port" \
	'[{"vip":[198,19,0,10],"port":8080}]' \
	"$(cluster_podman exec "$(cat "$(node_dir 2)/container")" bpftool -j map dump pinned /sys/fs/bpf/sluice/maps/services |
		jq -c '[.[].formatted | {vip: .key.vip.bytes[:4], port: .key.port}] | unique')"
check "liveness on every node" "ok ok ok" \
	"$(for n in $NODES; do daemonset_probe "$n" liveness && echo ok; done | paste -sd' ')"
check "the service account's requests: made, and every one allowed by deploy/'s ClusterRole" "yes 0" \
	"$(awk '$2 == "sluiced"' "$API_DIR/apiserver.log" | grep -q . && echo yes) $(awk '$2 == "sluiced" && $5 == 403' "$API_DIR/apiserver.log" | wc -l)"

e2e_end
