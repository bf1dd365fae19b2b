#!/usr/bin/env bash
# make demo: the Istio purchase-history lab (dark launch, canary, full shift, rollback) on the
# mini-cluster, with the kernel data plane instead of sidecars. Tears everything down on exit.
set -u
. "$(dirname "$0")/cluster.sh"
LAB=$SLUICE_TOP/tests/e2e/lab
NS=istioinaction
VIP=198.19.0.10
REQUESTS=${DEMO_REQUESTS:-300}
CLUSTER_QUIET=1

trap cluster_down EXIT
trap 'echo; echo "interrupted: tearing down"; exit 130' INT TERM

if [ -t 1 ]; then B=$'\033[1m' N=$'\033[0m'; else B= N=; fi
say() { printf '\n%s== %s%s\n' "$B" "$*" "$N"; }
run() { printf '$ %s\n' "$*"; "$@"; }

# traffic WEIGHTS: REQUESTS requests from the client pod, a bar per version beside its weight.
traffic() {
	local out total v count pct weight bar
	# in the background and waited for, so Ctrl-C runs the teardown at once (bash defers traps
	# while a foreground child runs)
	loadgen_in client --target $VIP:8080 -n "$REQUESTS" -c 4 -o json > "$CLUSTER_DIR/traffic.json" &
	wait $!
	out=$(cat "$CLUSTER_DIR/traffic.json")
	total=$(jq -r '.ok + .failed' <<<"$out")
	printf '%s requests to purchase-history (%s:8080) from the client pod:\n' "$total" "$VIP"
	for v in v1 v2; do
		count=$(jq -r ".versions.$v // 0" <<<"$out")
		pct=$((total ? count * 100 / total : 0))
		weight=$(sluice status purchase-history.$NS -o json |
			jq -r "[.services[0].destinations[] | select(.subset == \"$v\") | .percent] | first // 0")
		bar=$(printf '%*s' $((pct / 2)) '' | tr ' ' '#')
		printf '  %s %-50s %3d%%  (%4d answers, configured %s%%)\n' "$v" "$bar" "$pct" "$count" "$weight"
	done
	[ "$(jq -r '.failed' <<<"$out")" = 0 ] || echo "  failures: $(jq -c '.errors' <<<"$out")"
}

status() { run "$SLUICE_BUILD/sluice" status purchase-history.$NS; }

say "A mini-cluster: node namespace, client pod, purchase-history v1"
cluster_up
pod_add client $NS app=client 198.18.0.10
pod_add purchase-history-v1 $NS app=purchase-history,version=v1 198.18.1.1
backend_start purchase-history-v1 v1 "Hello From Purchase History (v1)!" --http 8080 || exit 1
svc_add purchase-history $NS $VIP app=purchase-history 8080
cluster_objects "$CLUSTER_OBJECTS/cluster.yaml"
sluiced_start || exit 1
echo "sluiced attached to $CLUSTER_CGROUP (pins in $CLUSTER_BPFFS)"

say "Dark launch: all traffic to v1 (labs/05/purchase-history-vs-all-v1.yaml + purchase-history-dr.yaml)"
run sluice apply -n $NS -f "$CLUSTER_OBJECTS/cluster.yaml" -f "$LAB/purchase-history-vs-all-v1.yaml" \
	-f "$LAB/purchase-history-dr.yaml"

say "Deploy v2: the pod is Ready, the rules keep it dark"
pod_add purchase-history-v2 $NS app=purchase-history,version=v2 198.18.2.1
backend_start purchase-history-v2 v2 "Hello From Purchase History (v2)!" --http 8080 || exit 1
cluster_objects "$CLUSTER_OBJECTS/cluster.yaml"
sluice apply -n $NS -f "$CLUSTER_OBJECTS/cluster.yaml" -f "$LAB/purchase-history-vs-all-v1.yaml" \
	-f "$LAB/purchase-history-dr.yaml" >/dev/null
echo "Test v2 directly, at its pod IP (the lab's kubectl exec ... curl):"
loadgen_in client --target 198.18.2.1:8080 -n 5 | sed -n 2p
echo "Users on the service still see v1 only:"
traffic
status

for step in 20 50; do
	say "Canary: $step% to v2 (labs/05/purchase-history-vs-$step-v2.yaml)"
	run sluice apply -n $NS -f "$CLUSTER_OBJECTS/cluster.yaml" -f "$LAB/purchase-history-vs-$step-v2.yaml" \
		-f "$LAB/purchase-history-dr.yaml"
	traffic
done
status

say "Shift all traffic to v2 (labs/05/purchase-history-vs-all-v2.yaml)"
run sluice apply -n $NS -f "$CLUSTER_OBJECTS/cluster.yaml" -f "$LAB/purchase-history-vs-all-v2.yaml" \
	-f "$LAB/purchase-history-dr.yaml"
traffic

say "Something looks wrong: roll back to v1 at once"
run sluice apply -n $NS -f "$CLUSTER_OBJECTS/cluster.yaml" -f "$LAB/purchase-history-vs-all-v1.yaml" \
	-f "$LAB/purchase-history-dr.yaml"
traffic
status

say "Done: tearing the mini-cluster down"
