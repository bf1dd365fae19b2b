#!/usr/bin/env bash
# Three nodes, each with its own pods, cgroup subtree and sluiced (own pins, socket, state), joined
# by a fabric (tests/cluster/cluster.sh, "Multi-node"): purchase-history v1 on node 1 and v2 on
# node 2, a client on every node. The same plan applied on every node gives every node's clients
# the split; a weight change made on every node reaches every node; one node's sluiced stopped
# leaves the others untouched and its own data plane serving from its pins; a killed run's nodes
# are removed by the next run, and teardown leaves nothing.
set -u
. "$(dirname "$0")/lib.sh"
e2e_begin

NS=istioinaction
SVC=purchase-history.$NS
VIP=198.19.0.10 VIP6=2001:db8:19::10
D=$CLUSTER_DIR
N=3

ms_since() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }

t0=$(date +%s%N)
cluster_nodes $N || exit 1
pod_add_on 1 ph-v1 $NS app=purchase-history,version=v1 || exit 1
pod_add_on 2 ph-v2 $NS app=purchase-history,version=v2 || exit 1
for k in $(seq $N); do pod_add_on "$k" client-$k default app=client || exit 1; done
backend_start ph-v1 v1 "Hello From Purchase History (v1)!" --http 8080 || exit 1
backend_start ph-v2 v2 "Hello From Purchase History (v2)!" --http 8080 || exit 1
svc_add purchase-history $NS $VIP,$VIP6 app=purchase-history 8080
cluster_objects "$D/cluster.yaml"
sluiced_start_all || exit 1
echo "   ($N nodes, 5 pods, 2 backends and $N sluiced up in $(ms_since "$t0") ms)"
V1_IP=$(pod_ip ph-v1) V2_IP=$(pod_ip ph-v2)

lg() { loadgen_in "$@" -o json; }
# lg_bg POD ARGS > FILE &: the same in the background, as the job's own pid (kill -INT ends it).
lg_bg() { loadgen_exec "$1" -o json "${@:2}"; }
# The share of v2 in every window of 100 consecutive connections of a --sequence run: "min max".
windows_v2() { jqr "$1" '[.sequence as $s | range(0; ($s|length) - 99) | [$s[.:.+100][] | select(. == "v2")] | length] | [min, max] | "\(.[0]) \(.[1])"'; }
# routing K: node K's generation and weights, as its sluiced reports them.
routing() { sluice_on "$1" status -o json | jq -r '"\(.generation) \([.services[].destinations[] | "\(.subset)=\(.weight)"] | join(" "))"'; }
# split_everywhere NAME V2_PCT: 1,000 sequential connections from every node's client at once;
# every window of 100 must hold exactly V2_PCT answers from v2, none failed, the VIP as the peer.
split_everywhere() {
	local k pids=() out
	for k in $(seq $N); do
		lg_bg client-$k --target $VIP:8080 -n 1000 -c 1 --sequence > "$D/split.$k.json" &
		pids+=($!)
	done
	for k in $(seq $N); do
		wait "${pids[k - 1]}"
		out=$(cat "$D/split.$k.json")
		check "$1: node $k's client, v2 in every window of 100 (min max), failed, peer not the VIP" \
			"$2 $2 0 0" "$(windows_v2 "$out") $(jqr "$out" '"\(.failed) \(.peer_mismatch)"')"
	done
}
# pod_field POD FIELD: a field of the Pod object in cluster.yaml (nodeName, hostIP, podIP).
pod_field() {
	awk -v pod="$1" -v f="$2:" '/^- apiVersion/ { inpod = 0 } $1 == "kind:" && $2 == "Pod" { kind = 1 }
		$1 == "name:" && $2 == pod && kind { inpod = 1 } inpod && $1 == f { print $2; exit }
		/^- apiVersion/ { kind = 0 }' "$D/cluster.yaml"
}

# 1. The topology: every node's sluiced serves its own cgroup from its own pins; nothing routes
#    off the machine; the Pod objects say where each pod runs.
for k in $(seq $N); do
	link_cg=$(bpftool -j link show pinned "$(node_bpffs "$k")/links/sluice_connect4" | jq .cgroup_id)
	check "node $k: its pinned connect4 link is attached to its own cgroup (node$k)" \
		"$(stat -c %i "$(node_cgroup "$k")")" "$link_cg"
	check "node $k: one sluice connect4 program on its cgroup" 1 \
		"$(bpftool cgroup show "$(node_cgroup "$k")" | grep -c sluice_connect4)"
	check "node $k: no default route, IPv4 or IPv6 (nothing leaves the machine)" "" \
		"$(ip -n "$(node_ns "$k")" route show default; ip -n "$(node_ns "$k")" -6 route show default)"
done
check "the cluster's own cgroup carries no program (each node's subtree only)" "" "$(bpftool cgroup show "$CLUSTER_CGROUP")"
check "Pod objects: ph-v1 and ph-v2 carry their node's name and hostIP" \
	"$CLUSTER_PREFIX-node1 198.18.254.1 $CLUSTER_PREFIX-node2 198.18.254.2" \
	"$(pod_field ph-v1 nodeName) $(pod_field ph-v1 hostIP) $(pod_field ph-v2 nodeName) $(pod_field ph-v2 hostIP)"
check "pod addresses come from their node's range" "198.18.1.1 198.18.2.1 198.18.3.1 2001:db8:18:3::1" \
	"$V1_IP $V2_IP $(pod_ip client-3) $(pod_ip6 client-3)"

# 2. A pod on node 3 reaches a pod on node 1 directly, and the backend sees the client's own address.
out=$(lg client-3 --target "$V1_IP:8080" -n 20)
check "client on node 3 -> v1's pod IP on node 1: 20 answers from v1, none failed" "20 0" \
	"$(jqr "$out" '"\(.versions.v1 // 0) \(.failed)"')"
out=$(lg client-3 --target "[$(pod_ip6 ph-v1)]:8080" -n 20)
check "client on node 3 -> v1's IPv6 pod IP on node 1: 20 answers from v1, none failed" "20 0" \
	"$(jqr "$out" '"\(.versions.v1 // 0) \(.failed)"')"
lg_bg client-3 --target "$V1_IP:8080" --mode keepalive -c 1 --duration 30 --interval 50 > "$D/direct.json" &
ka=$!
peers=
for _ in $(seq 100); do
	peers=$(ip netns exec "$CLUSTER_PREFIX-ph-v1" ss -Htn state established '( sport = :8080 )' | awk '{print $4}' | sed -E 's/:[0-9]+$//; s/^\[(::ffff:)?//; s/\]$//' | sort -u)
	[ -n "$peers" ] && break
	sleep 0.05
done
kill -INT $ka; wait $ka
check "the backend on node 1 sees the node 3 client's pod address (routed, not translated)" "$(pod_ip client-3)" "$peers"

# 3. The same plan on every node: every node's clients see the split, exact per window of 100.
split_rules purchase-history $NS 8080 "v1:80 v2:20" "{loadBalancer: {simple: ROUND_ROBIN}}" > "$D/rules.yaml"
for k in $(seq $N); do
	out=$(sluice_on "$k" apply -f "$D/cluster.yaml" -f "$D/rules.yaml" 2>&1); rc=$?
	check "node $k: sluice_on $k apply: exit 0, generation 1" "0 generation 1: 1 service routed" "$rc $(head -n 1 <<< "$out")"
done
split_everywhere "80/20 applied on every node" 20
out=$(lg client-2 --target "[$VIP6]:8080" -n 500 -c 1 --sequence)
check "80/20 on IPv6: node 2's client, v2 per window of 100 (min max), none failed" "20 20 0" \
	"$(windows_v2 "$out") $(jqr "$out" .failed)"

# 4. A weight change made on every node reaches every node's clients.
for k in $(seq $N); do
	out=$(sluice_on "$k" weight $SVC v1=50 v2=50 2>&1) || fail "node $k: sluice weight" "$out"
done
check "every node's status after the change (generation weights)" "2 v1=50 v2=50|2 v1=50 v2=50|2 v1=50 v2=50" \
	"$(routing 1)|$(routing 2)|$(routing 3)"
split_everywhere "50/50 by weight on every node" 50

# 5. Each node's sluiced writes its own maps only: a change on node 1 alone is seen on node 1 alone.
sluice_on 1 weight $SVC v1=100 v2=0 >/dev/null
check "node 1 alone at 100/0: node 1's status changed, nodes 2 and 3 did not" "3 v1=100 v2=0|2 v1=50 v2=50|2 v1=50 v2=50" \
	"$(routing 1)|$(routing 2)|$(routing 3)"
o1=$(lg client-1 --target $VIP:8080 -n 200 -c 4) o2=$(lg client-2 --target $VIP:8080 -n 200 -c 1) o3=$(lg client-3 --target $VIP:8080 -n 200 -c 1)
check "node 1 alone at 100/0: v1/v2 answers on nodes 1, 2, 3 (200 each)" "200/0 100/100 100/100" \
	"$(for o in "$o1" "$o2" "$o3"; do jqr "$o" '"\(.versions.v1 // 0)/\(.versions.v2 // 0)"'; done | xargs)"
sluice_on 1 weight $SVC v1=50 v2=50 >/dev/null

# 6. Node 2's sluiced stopped while every node's clients connect: no connection fails anywhere,
#    nodes 1 and 3 keep their status and take changes, node 2 serves from its pins.
before1=$(routing 1) before3=$(routing 3) gen2=$(routing 2)
bg=()
for k in $(seq $N); do
	lg_bg client-$k --target $VIP:8080 -n 2000000 -c 2 --timeout 2000 > "$D/stop.$k.json" &
	bg+=($!)
done
sleep 0.5
sluiced_stop_node 2 TERM
sleep 1
for p in "${bg[@]}"; do kill -INT "$p"; done
for p in "${bg[@]}"; do wait "$p"; done
for k in $(seq $N); do
	out=$(cat "$D/stop.$k.json")
	check "node 2's sluiced stopped under load: node $k's client, failed, versions answering" "0 v1,v2" \
		"$(jqr "$out" '"\(.failed) \(.versions | keys | join(","))"')"
	check_range "node 2's sluiced stopped under load: node $k's client made connections" 100 1999999 "$(jqr "$out" .ok)"
done
check "node 2 stopped: nodes 1 and 3 report the same generation and weights" "$before1|$before3" "$(routing 1)|$(routing 3)"
msg=$(sluice_on 2 status 2>&1); rc=$?
check "node 2 stopped: its CLI says no sluiced answers (exit 3)" "3 Error: cannot reach sluiced at $(node_socket 2)" "$rc ${msg%% (*}"
check "node 2 stopped: its programs stay attached to its cgroup from its pins" "1 yes" \
	"$(bpftool cgroup show "$(node_cgroup 2)" | grep -c sluice_connect4) $([ -e "$(node_bpffs 2)/links/sluice_connect4" ] && echo yes)"
sluice_on 1 weight $SVC v1=80 v2=20 >/dev/null && sluice_on 3 weight $SVC v1=80 v2=20 >/dev/null
check "node 2 stopped: nodes 1 and 3 take a change to 80/20" "5 v1=80 v2=20|3 v1=80 v2=20" "$(routing 1)|$(routing 3)"
o1=$(lg client-1 --target $VIP:8080 -n 500 -c 1 --sequence) o2=$(lg client-2 --target $VIP:8080 -n 500 -c 1 --sequence) o3=$(lg client-3 --target $VIP:8080 -n 500 -c 1 --sequence)
check "node 2 stopped: v2 per window of 100 on nodes 1, 2, 3 (node 2 keeps 50/50 from its pins), none failed" \
	"20 20|50 50|20 20 0" "$(windows_v2 "$o1")|$(windows_v2 "$o2")|$(windows_v2 "$o3") $(( $(jqr "$o1" .failed) + $(jqr "$o2" .failed) + $(jqr "$o3" .failed) ))"
sluiced_start_node 2 || exit 1
check "node 2's sluiced restarted: it adopts its pins (same generation and weights)" "$gen2" "$(routing 2)"
sluice_on 2 weight $SVC v1=80 v2=20 >/dev/null
split_everywhere "80/20 again on every node after node 2's restart" 20

# 7. Each node's sluiced logs in the cluster directory and names its own cgroup and pins.
for k in $(seq $N); do
	check "node $k's log ($(node_dir "$k")/sluiced.log) names its cgroup and pins" yes \
		"$(grep -qF "serving cgroup $(node_cgroup "$k"), pins in $(node_bpffs "$k")," "$(node_dir "$k")/sluiced.log" && echo yes)"
done

# 8. A run killed with SIGKILL leaves its nodes behind; the next cluster_gc removes all of it.
bash -c '. "$1/tests/cluster/cluster.sh"; CLUSTER_QUIET=1; cluster_up || exit 1; cluster_nodes 2 || exit 1
	pod_add_on 1 a x app=a && pod_add_on 2 b x app=b && backend_start b v1 b --http 8080 && sluiced_start_all || exit 1
	echo "$CLUSTER_PREFIX" > "$2.tmp"; mv "$2.tmp" "$2"; exec sleep 60' _ "$SLUICE_TOP" "$D/killed" 2>"$D/killed.log" &
victim=$!
for _ in $(seq 200); do [ -e "$D/killed" ] && break; sleep 0.05; done
vp=$(cat "$D/killed" 2>/dev/null)
check "a second cluster of 2 nodes came up in a child run" yes "$([ -n "$vp" ] && echo yes)"
vpids=$(cat "$CLUSTER_RUN/$vp"/node*/sluiced.pid 2>/dev/null | xargs)
kill -9 $victim; wait $victim 2>/dev/null
CLUSTER_QUIET=1 cluster_gc
alive=0; for p in $vpids; do sluiced_gone "$p" || alive=$((alive + 1)); done    # a zombie holds nothing
check "the killed run's leftovers removed: its 2 sluiced, namespaces, pins, cgroup, directory" "2 0 0 0 0 0" \
	"$(wc -w <<< "$vpids") $alive $(ip netns list | grep -c "^$vp-") $(ls -d /sys/fs/bpf/sluice-test-"$vp"* 2>/dev/null | wc -l) \
$(ls -d "$(cgroup2_mount)/sluice-test-$vp" 2>/dev/null | wc -l) $(ls -d "$CLUSTER_RUN/$vp" 2>/dev/null | wc -l)"
check "this cluster survived the collection (its owner lives)" "3 v1=80 v2=20" "$(routing 3)"

# 9. Teardown leaves nothing: every node's sluiced, namespace, pin directory and cgroup.
p=$CLUSTER_PREFIX cg=$CLUSTER_CGROUP dir=$CLUSTER_DIR
node_pids=$(cat "$D"/node*/sluiced.pid | xargs)
t0=$(date +%s%N)
cluster_down
echo "   (teardown of $N nodes in $(ms_since "$t0") ms)"
alive=0; for q in $node_pids; do sluiced_gone "$q" || alive=$((alive + 1)); done
check "teardown: sluiced left, namespaces, pin directories, cgroups, cluster directory" "0 0 0 0 0" \
	"$alive $(ip netns list | grep -c "^$p-") $(ls -d /sys/fs/bpf/sluice-test-"$p"* 2>/dev/null | wc -l) $(ls -d "$cg" 2>/dev/null | wc -l) $(ls -d "$dir" 2>/dev/null | wc -l)"

e2e_end
