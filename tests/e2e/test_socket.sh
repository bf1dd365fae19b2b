#!/usr/bin/env bash
# Socket-mode data plane through sluiced and the CLI: the acceptance of the kernel data plane issue.
set -u
. "$(dirname "$0")/lib.sh"
e2e_begin

NS=istioinaction
VIP=198.19.0.10
VIP6=2001:db8:19::10
pod_add client default app=client 198.18.0.10 2001:db8:18::10
pod_add ph-v1 $NS app=purchase-history,version=v1 198.18.1.1 2001:db8:18::1:1
pod_add ph-v2 $NS app=purchase-history,version=v2 198.18.2.1 2001:db8:18::2:1
pod_add ph-v3 $NS app=purchase-history,version=v3 198.18.3.1 2001:db8:18::3:1
pod_add ph-v4 $NS app=purchase-history,version=v4 198.18.4.1 2001:db8:18::4:1
for v in 1 2 3 4; do
	backend_start ph-v$v v$v "Hello From Purchase History (v$v)!" --http 8080 --tcp 9000 --udp 9001
done
svc_add purchase-history $NS $VIP,$VIP6 app=purchase-history 8080 9000 9001/udp
D=$CLUSTER_DIR
cluster_objects "$D/cluster.yaml"

# rules SUBSETS_WEIGHTS [LB]: a VirtualService for all three ports, e.g. rules "v1:80 v2:20" RANDOM
rules() {
	split_rules purchase-history $NS "8080 9000 9001" "$1" "{loadBalancer: {simple: ${2:-ROUND_ROBIN}}}" > "$D/rules.yaml"
	sluice apply -f "$D/cluster.yaml" -f "$D/rules.yaml" >/dev/null
}

lg() { loadgen_in client -o json "$@"; }

sluiced_start || exit 1

# 1. VIP connections land on the right subset; other addresses pass untouched.
rules "v1:100"
out=$(lg --target $VIP:8080 -n 200 -c 4)
check "all-v1: 200 answers from v1" 200 "$(jqr "$out" '.versions.v1 // 0')"
check "all-v1: no failures" 0 "$(jqr "$out" '.failed')"
check "all-v1: getpeername shows the VIP" 0 "$(jqr "$out" '.peer_mismatch')"
out=$(lg --target 198.18.2.1:8080 -n 20)
check "pod IP untouched: direct connection to v2 answers v2" 20 "$(jqr "$out" '.versions.v2 // 0')"

# 2. RANDOM 80/20 over 10,000 connections: v2 within binomial 99.9% bounds (p=0.2, sd 40, z 3.29).
rules "v1:80 v2:20" RANDOM
out=$(lg --target $VIP:8080 -n 10000 -c 16)
check "random 80/20: no failures" 0 "$(jqr "$out" '.failed')"
check_range "random 80/20: v2 share of 10000" 1868 2132 "$(jqr "$out" '.versions.v2 // 0')"

# 3. ROUND_ROBIN: every window of 100 consecutive connections from one client is exactly 80/20.
rules "v1:80 v2:20"
out=$(lg --target $VIP:8080 -n 1000 -c 1 --sequence)
worst=$(jqr "$out" '[.sequence as $s | range(0; ($s|length) - 99) | [$s[.:.+100][] | select(. == "v1")] | length] | [min, max] | "\(.[0]) \(.[1])"')
check "round robin 80/20: v1 in every window of 100 (min max)" "80 80" "$worst"

# 4. A long-lived connection opened at 100/0 stays on v1 through 100 weight changes.
rules "v1:100 v2:0"
"$SLUICE_BUILD/loadgen" --netns "$CLUSTER_PREFIX-client" --cgroup "$CLUSTER_CGROUP/client" -o json \
	--target $VIP:8080 --mode keepalive -c 4 --duration 60 --interval 20 > "$D/long.json" &
long=$!
sleep 0.5
for i in $(seq 100); do sluice weight purchase-history.$NS v1=$((i % 2 * 100)) v2=$(((i + 1) % 2 * 100)) >/dev/null || break; done
check "100 weight changes applied" 100 "$i"
out=$(lg --target $VIP:8080 -n 100)
check "after the last change (v1=0 v2=100) new connections go to v2" 100 "$(jqr "$out" '.versions.v2 // 0')"
kill -INT $long; wait $long
out=$(cat "$D/long.json")
check "long-lived connections: no failures" 0 "$(jqr "$out" '.failed')"
check "long-lived connections: none switched backend" 0 "$(jqr "$out" '.switched')"
check "long-lived connections: only v1 answered" "v1" "$(jqr "$out" '.versions | keys | join(",")')"

# 5. 1,000 switches between two plans with disjoint endpoints under continuous connections.
rules "v1:50 v2:50"; cp "$D/rules.yaml" "$D/a.yaml"
rules "v3:50 v4:50"; cp "$D/rules.yaml" "$D/b.yaml"
"$SLUICE_BUILD/loadgen" --netns "$CLUSTER_PREFIX-client" --cgroup "$CLUSTER_CGROUP/client" -o json \
	--target $VIP:8080 -n 2000000 -c 4 --timeout 2000 > "$D/swaps.json" &
bg=$!
start=$(date +%s%N)
swaps=0
for i in $(seq 500); do
	sluice apply -f "$D/cluster.yaml" -f "$D/a.yaml" >/dev/null && swaps=$((swaps + 1))
	sluice apply -f "$D/cluster.yaml" -f "$D/b.yaml" >/dev/null && swaps=$((swaps + 1))
done
elapsed=$(( ($(date +%s%N) - start) / 1000000 ))
kill -INT $bg; wait $bg
out=$(cat "$D/swaps.json")
check "1000 swaps applied" 1000 "$swaps"
echo "   ($swaps swaps in $elapsed ms, $(jqr "$out" '.ok') connections during them)"
check "swaps: zero failed connections" 0 "$(jqr "$out" '.failed')"
check "swaps: every connection landed on the old or the new plan (v1..v4)" "" \
	"$(jqr "$out" '.versions | keys - ["v1","v2","v3","v4"] | join(",")')"
check_range "swaps: connections made during the swaps" 1000 100000000 "$(jqr "$out" '.ok')"

# 6. Empty subset: its share is refused with ECONNREFUSED, the other share works.
pod_ready ph-v2 false
cluster_objects "$D/cluster.yaml"
rules "v1:50 v2:50"
out=$(lg --target $VIP:8080 -n 200 -c 1)
check "unready v2: v1 keeps its 100 of 200" 100 "$(jqr "$out" '.versions.v1 // 0')"
check "unready v2: its 100 refused with ECONNREFUSED" 100 "$(jqr "$out" '.errors.ECONNREFUSED // 0')"
pod_ready ph-v2 true
cluster_objects "$D/cluster.yaml"

# 7. UDP to the VIP reaches the chosen subset and the reply comes from the VIP; TCP getpeername.
rules "v1:100"
out=$(lg --target $VIP:9001 --mode udp -n 50)
check "udp: 50 replies from v1" 50 "$(jqr "$out" '.versions.v1 // 0')"
check "udp: replies come from the VIP" 0 "$(jqr "$out" '.peer_mismatch')"
out=$(lg --target $VIP:9001 --mode udp-connected -n 50)
check "connected udp: 50 replies from v1" 50 "$(jqr "$out" '.versions.v1 // 0')"
out=$(lg --target $VIP:9000 --mode tcp -n 50 --bytes 10000)
check "tcp echo: 50 from v1, getpeername = VIP" "50 0 0" "$(jqr "$out" '"\(.versions.v1) \(.peer_mismatch) \(.failed)"')"

# 8. IPv6: the same service on its IPv6 VIP.
rules "v1:0 v2:100"
out=$(lg --target "[$VIP6]:8080" -n 100)
check "ipv6: 100 answers from v2" 100 "$(jqr "$out" '.versions.v2 // 0')"
check "ipv6: getpeername shows the VIP" 0 "$(jqr "$out" '.peer_mismatch')"

# 9. sluiced killed with SIGKILL under load: zero failed connections; restarted, it adopts the pins.
rules "v1:50 v2:50"
before=$(sluice status -o json)
gen_before=$(jqr "$before" '.generation')
"$SLUICE_BUILD/loadgen" --netns "$CLUSTER_PREFIX-client" --cgroup "$CLUSTER_CGROUP/client" -o json \
	--target $VIP:8080 -n 2000000 -c 4 > "$D/kill.json" &
bg=$!
sleep 0.5
sluiced_stop KILL
sleep 1
kill -INT $bg; wait $bg
out=$(cat "$D/kill.json")
check "sigkill: zero failed connections while sluiced is dead" 0 "$(jqr "$out" '.failed')"
check "sigkill: both subsets kept serving" "v1,v2" "$(jqr "$out" '.versions | keys | join(",")')"
sluiced_start || exit 1
after=$(sluice status -o json)
check "restart adopts the pins: same generation" "$gen_before" "$(jqr "$after" '.generation')"
check "socket mode only: status has no TC part (json null, no text line)" "null 0" \
	"$(jqr "$after" '.tc') $(sluice status | grep -c '^tc ')"
c_before=$(jqr "$before" '[.services[].destinations[].endpoints[].connections] | add')
c_after=$(jqr "$after" '[.services[].destinations[].endpoints[].connections] | add')
if [ "$c_after" -gt "$c_before" ]; then ok "restart keeps counters ($c_before -> $c_after)"; else fail "restart keeps counters" "$c_before -> $c_after"; fi
out=$(lg --target $VIP:8080 -n 100)
check "after restart: 50/50 round robin" "50 50" "$(jqr "$out" '"\(.versions.v1) \(.versions.v2)"')"

# 10. CLI errors a user relies on: exit status and the one-line message.
msg=$(sluice weight purchase-history.$NS v1=100 2>&1); rc=$?
check "weight naming one of two subsets: exit 1" 1 "$rc"
check "weight naming one of two subsets: message" "Error: service purchase-history.$NS port 8080 routes to subsets v1, v2: give a weight for each of them, and add other subsets to the VirtualService with 'sluice apply'" "$msg"
msg=$(sluice weight nosuch v1=1 2>&1); rc=$?
check "weight on an unknown service: exit 1 and message" "1 Error: no routed service nosuch.default; 'sluice status' lists them" "$rc $msg"
msg=$(sluice weight purchase-history.$NS v1=eighty v2=20 2>&1); rc=$?
check "weight with a bad value: exit 2 and message" "2 Error: \"v1=eighty\" is not SUBSET=WEIGHT with a weight from 0 to 2147483647 in digits; e.g. v1=80 v2=20" "$rc $msg"
install -m 755 "$SLUICE_BUILD/sluice" "$D/sluice-as-nobody"   # the checkout may not be readable by nobody
msg=$(setpriv --reuid=65534 --regid=65534 --clear-groups "$D/sluice-as-nobody" --socket "$CLUSTER_SOCKET" status 2>&1); rc=$?
check "status as an unprivileged user: exit 3, permission denied" "3 Error: permission denied on $CLUSTER_SOCKET: run sluice as root (the socket is mode 0600)" "$rc $msg"
msg=$("$SLUICE_BUILD/sluice" --socket "$CLUSTER_DIR/nothing.sock" status 2>&1); rc=$?
check "status with no daemon: exit 3 and a hint" "3 Error: cannot reach sluiced at $CLUSTER_DIR/nothing.sock (No such file or directory): start sluiced, or point --socket or SLUICE_SOCKET at its socket" "$rc $msg"
msg=$(SLUICE_SOCKET=$CLUSTER_DIR/nothing.sock "$SLUICE_BUILD/sluice" status 2>&1); rc=$?
check "SLUICE_SOCKET is honoured" 3 "$rc"

cat > "$D/gw.yaml" <<EOF
apiVersion: networking.istio.io/v1beta1
kind: Gateway
metadata: {name: public, namespace: $NS}
spec:
  addresses: [198.19.100.1]
  servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ["*"]}]
---
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {name: ph-public, namespace: $NS}
spec:
  hosts: ["*"]
  gateways: [public]
  http: [{route: [{destination: {host: purchase-history, subset: v1, port: {number: 8080}}}]}]
EOF
gen=$(sluice status -o json | jq -r .generation)
msg=$(sluice apply -f "$D/cluster.yaml" -f "$D/rules.yaml" -f "$D/gw.yaml" 2>&1); rc=$?
check "a Gateway without TC mode: exit 1 and what to do" "1 Error: Gateway $NS/public needs TC mode, which sees traffic from outside the node: start sluiced with --tc IFACE (the interface ingress arrives on); nothing applied" "$rc $msg"
check "a refused Gateway changes nothing" "$gen" "$(sluice status -o json | jq -r .generation)"

# 11. A node reboot: pins gone, the state directory kept. sluiced restores the last plan,
#     weight changes included, and the data plane serves it again.
sluice weight purchase-history.$NS v1=30 v2=70 >/dev/null
sluiced_stop TERM
"$SLUICE_BUILD/sluiced" --uninstall --bpffs "$CLUSTER_BPFFS" --socket "$CLUSTER_SOCKET" --state-dir "$CLUSTER_STATE"
check "uninstall leaves no program on the cgroup" "" "$(bpftool cgroup show "$CLUSTER_CGROUP")"
out=$(lg --target $VIP:8080 -n 5 --timeout 500)
check "uninstalled: the VIP is no longer translated" 5 "$(jqr "$out" '.failed')"
sluiced_start || exit 1
st=$(sluice status -o json)
check "reboot: weights restored on every port" "30/70 30/70 30/70" \
	"$(jqr "$st" '[.services[] | "\(.destinations[0].weight)/\(.destinations[1].weight)"] | join(" ")')"
out=$(lg --target $VIP:8080 -n 100)
check "reboot: the restored plan serves 30/70" "30 70" "$(jqr "$out" '"\(.versions.v1) \(.versions.v2)"')"

e2e_end
