#!/usr/bin/env bash
# tests/cluster/nodes-bench.sh [N]: what a multi-node mini-cluster costs (root; not in make test).
# Brings up N nodes (default 20) the way tests/e2e/test_nodes.sh does: a client pod on every node,
# purchase-history v1 on node 1 and v2 on node 2 (node 1 alone when N = 1), every node's sluiced,
# the same 80/20 plan applied on every node. Prints the time of each stage and the memory the
# cluster holds, checks that every node's client gets the exact split and that the last node
# reaches a pod on node 1 directly, then tears down and says what is left (nothing, or it fails).
set -u
. "$(dirname "$0")/cluster.sh"
N=${1:-20}
NS=istioinaction VIP=198.19.0.10
CLUSTER_QUIET=1
[ "$(id -u)" = 0 ] || { echo "nodes-bench: needs root (namespaces, cgroups, BPF)" >&2; exit 2; }
# Everything the run makes (namespaces, links, maps, processes) is charged to a memory cgroup of
# its own (cgroup v1's, as bench/run measures the kernel memory of rules), when there is one.
MEMROOT=/sys/fs/cgroup/memory MEMCG='' MEMCG_BACK=''
for d in "$MEMROOT"/sluice-nodes-bench-*; do     # a killed run's
	[ -d "$d" ] && ! kill -0 "${d##*-}" 2>/dev/null && rmdir "$d" 2>/dev/null
done
if [ -e "$MEMROOT/memory.kmem.usage_in_bytes" ]; then
	MEMCG_BACK=$MEMROOT$(awk -F: '$2 == "memory" { print $3 }' /proc/self/cgroup)
	MEMCG=$MEMROOT/sluice-nodes-bench-$$
	mkdir "$MEMCG" && echo $$ > "$MEMCG/cgroup.procs" || MEMCG=
fi
cleanup() {
	cluster_down
	if [ -n "$MEMCG" ]; then
		echo $$ > "$MEMCG_BACK/cgroup.procs" 2>/dev/null || echo $$ > "$MEMROOT/cgroup.procs"
		for _ in $(seq 50); do rmdir "$MEMCG" 2>/dev/null && break; sleep 0.1; done
	fi
}
trap cleanup EXIT
trap 'echo "nodes-bench: interrupted"; exit 130' INT TERM
memcg_kb() { [ -n "$MEMCG" ] && echo $(( $(cat "$MEMCG/memory.${1:-}usage_in_bytes") / 1024 )) || echo 0; }

now() { date +%s%N; }
ms() { echo $(( ($2 - $1) / 1000000 )); }
avail_kb() { awk '$1 == "MemAvailable:" { print $2 }' /proc/meminfo; }
mib() { awk -v kb="$1" 'BEGIN { printf "%.1f", kb / 1024 }'; }
fail=0
bad() { echo "nodes-bench: FAIL $*"; fail=1; }

a0=$(avail_kb) m0=$(memcg_kb) k0=$(memcg_kb kmem.)
t0=$(now)
cluster_up || exit 1
cluster_nodes "$N" || exit 1
t1=$(now)
pod_add_on 1 ph-v1 $NS app=purchase-history,version=v1 || exit 1
v2node=$(( N > 1 ? 2 : 1 ))
pod_add_on $v2node ph-v2 $NS app=purchase-history,version=v2 || exit 1
for k in $(seq "$N"); do pod_add_on "$k" client-$k default app=client || exit 1; done
backend_start ph-v1 v1 "v1" --http 8080 || exit 1
backend_start ph-v2 v2 "v2" --http 8080 || exit 1
svc_add purchase-history $NS $VIP app=purchase-history 8080
cluster_objects "$CLUSTER_DIR/cluster.yaml"
t2=$(now)
sluiced_start_all || exit 1
t3=$(now)
. "$SLUICE_TOP/tests/e2e/lib.sh" >/dev/null     # split_rules
split_rules purchase-history $NS 8080 "v1:80 v2:20" "{loadBalancer: {simple: ROUND_ROBIN}}" > "$CLUSTER_DIR/rules.yaml"
sluice_all apply -f "$CLUSTER_DIR/cluster.yaml" -f "$CLUSTER_DIR/rules.yaml" >/dev/null || bad "apply on some node"
t4=$(now)
a1=$(avail_kb) m1=$(memcg_kb) k1=$(memcg_kb kmem.)

rss=0 maps=0
for k in $(seq "$N"); do
	rss=$((rss + $(awk '$1 == "VmRSS:" { print $2 }' "/proc/$(cat "$(node_dir "$k")/sluiced.pid")/status")))
done
for f in "$(node_bpffs 1)"/maps/*; do
	maps=$((maps + $(bpftool -j map show pinned "$f" | jq .bytes_memlock)))
done
maps_kb=$((maps / 1024))
used_kb=$((m1 - m0)) kmem_kb=$((k1 - k0)) src="memory cgroup"
[ -n "$MEMCG" ] || { used_kb=$((a0 - a1)) kmem_kb=0 src="MemAvailable before - after"; }

ok_nodes=0
for k in $(seq "$N"); do
	out=$(loadgen_in client-$k --target $VIP:8080 -n 200 -c 1 --sequence -o json)
	w=$(jq -r '[.sequence as $s | range(0; ($s|length) - 99) | [$s[.:.+100][] | select(. == "v2")] | length] | [min, max] | "\(.[0]) \(.[1])"' <<< "$out")
	[ "$w $(jq .failed <<< "$out")" = "20 20 0" ] && ok_nodes=$((ok_nodes + 1)) || bad "node $k: v2 per window $w"
done
out=$(loadgen_in client-"$N" --target "$(pod_ip ph-v1):8080" -n 10 -o json)
[ "$(jq -r '.versions.v1 // 0' <<< "$out")" = 10 ] || bad "node $N's client does not reach v1 on node 1 directly"

p=$CLUSTER_PREFIX cg=$CLUSTER_CGROUP
t5=$(now)
cluster_down
t6=$(now)
left=$(( $(ip netns list | grep -c "^$p-") + $(ls -d /sys/fs/bpf/sluice-test-"$p"* 2>/dev/null | wc -l) + $(ls -d "$cg" 2>/dev/null | wc -l) ))
[ "$left" = 0 ] || bad "$left namespaces, pin directories or cgroups left after teardown"

printf '%d nodes (%d pods, %d sluiced), %s\n' "$N" $((N + 2)) "$N" "$(uname -r), $(nproc) cores"
printf '  %-46s %8s ms\n' "namespaces, fabric, routes (cluster_nodes)" "$(ms "$t0" "$t1")" \
	"pods and 2 backends" "$(ms "$t1" "$t2")" \
	"every node's sluiced (sluiced_start_all)" "$(ms "$t2" "$t3")" \
	"the plan applied on every node (sluice_all)" "$(ms "$t3" "$t4")" \
	"bring-up, all of the above" "$(ms "$t0" "$t4")" \
	"teardown (cluster_down)" "$(ms "$t5" "$t6")"
# without a memory cgroup, MemAvailable moves with whatever else runs on the machine
printf '  %-46s %8s MiB  (%s MiB a node)\n' \
	"memory charged ($src)" "$(mib "$used_kb")" "$(mib $((used_kb / N)))" \
	"  of which kernel (kmem)" "$(mib "$kmem_kb")" "$(mib $((kmem_kb / N)))" \
	"  BPF maps of the data plane (bytes_memlock)" "$(mib $((maps_kb * N)))" "$(mib "$maps_kb")" \
	"  sluiced RSS (shared pages included)" "$(mib "$rss")" "$(mib $((rss / N)))"
printf '  every node'"'"'s client exact 80/20 per window of 100: %d of %d nodes\n' "$ok_nodes" "$N"
exit $fail
