#!/usr/bin/env bash
# TC mode (bpf/sluice_tc.bpf.c) on the mini-cluster: clients that are not in the cluster's cgroup
# reach services through per-packet translation. The acceptance of the TC data plane issue.
#
# Topology: the harness's node namespace routes to the pods; an "outside" namespace is linked to
# the node by a veth, the uplink (node side $UP: 198.18.250.254/24, 2001:db8:250::fe/64; outside
# 198.18.250.1, 2001:db8:250::1), and routes the VIPs and the gateway address through it.
# sluiced runs in the node namespace (nsenter: only the network namespace changes, so bpffs and
# cgroupfs stay visible) with --tc on the uplink. Nothing outside 198.18/16, 198.19/16 and
# 2001:db8::/32 is addressed.
set -u
. "$(dirname "$0")/lib.sh"
e2e_begin

NS=default
VIP=198.19.0.20
VIP6=2001:db8:19::20
GW=198.19.100.1          # the ingress gateway's address (the labs' $GATEWAY_IP), port 80
OUT=$CLUSTER_PREFIX-outside
UP=${CLUSTER_PREFIX}up
D=$CLUSTER_DIR

pod_add client $NS app=client 198.18.0.10 2001:db8:18::10          # in the cgroup: socket mode
pod_add outsider $NS app=outsider 198.18.0.11                       # not in the cgroup: TC on its veth
pod_add ecadraft-v1 $NS app=ecadraft,version=v1 198.18.1.1 2001:db8:18::1:1
pod_add ecadraft-v2 $NS app=ecadraft,version=v2 198.18.2.1 2001:db8:18::2:1
CLIENT_VETH=${CLUSTER_PREFIX}p1
OUTSIDER_VETH=${CLUSTER_PREFIX}p2
# the harness makes untranslated VIPs fail fast in pods; the outsider's VIP packets must leave it
ip -n "$CLUSTER_PREFIX-outsider" route del unreachable 198.19.0.0/16
for v in 1 2; do
	# answer every datagram to a closed port with ICMP at once (no rate limit), for the ICMP check
	ip netns exec "$CLUSTER_PREFIX-ecadraft-v$v" sysctl -qw net.ipv4.icmp_ratelimit=0 net.ipv6.icmp.ratelimit=0
	backend_start ecadraft-v$v v$v "ecadraft v$v" --http 8080 --tcp 9000 --udp 9001
done
# 9002/udp: a port the Service has and no backend listens on
svc_add ecadraft $NS $VIP,$VIP6 app=ecadraft 8080 9000 9001/udp 9002/udp
cluster_objects "$D/cluster.yaml"

# The uplink and the outside namespace.
ip netns add "$OUT"
# client ports 32768-49999; step 3 binds its UDP flows to 50000-50019, which no earlier step pinned
ip netns exec "$OUT" sysctl -qw net.ipv4.ip_local_port_range="32768 49999"
ip -n "$OUT" link set lo up
ip link add "$UP" netns "$CLUSTER_NODE" type veth peer name eth0 netns "$OUT"
ip netns exec "$CLUSTER_NODE" sysctl -qw "net.ipv6.conf.$UP.accept_dad=0"
ip netns exec "$OUT" sysctl -qw net.ipv6.conf.eth0.accept_dad=0
ip -n "$CLUSTER_NODE" addr add 198.18.250.254/24 dev "$UP"
ip -n "$CLUSTER_NODE" addr add 2001:db8:250::fe/64 dev "$UP" nodad
ip -n "$CLUSTER_NODE" link set "$UP" up
ip -n "$OUT" addr add 198.18.250.1/24 dev eth0
ip -n "$OUT" addr add 2001:db8:250::1/64 dev eth0 nodad
ip -n "$OUT" link set eth0 up
ip -n "$OUT" route add 198.19.0.0/16 via 198.18.250.254
ip -n "$OUT" -6 route add 2001:db8:19::/48 via 2001:db8:250::fe

# sluiced_tc_start ARGS...: sluiced in the node's network namespace (where --tc names interfaces).
sluiced_tc_start() { SLUICED_NETNS=$CLUSTER_NODE sluiced_start "$@"; }

# rules "v1:W v2:W" [LB]: DestinationRule and a VirtualService routing every port of ecadraft.
rules() {
	split_rules ecadraft $NS "8080 9000 9001 9002" "$1" "{loadBalancer: {simple: ${2:-ROUND_ROBIN}}}" > "$D/rules.yaml"
	sluice apply -f "$D/cluster.yaml" -f "$D/rules.yaml" >/dev/null
}

out_lg() { "$SLUICE_BUILD/loadgen" --netns "$OUT" -o json "$@"; }
# tc_stat NAME: one of sluice status's TC counters (tc.NAME of -o json).
tc_stat() { sluice status -o json | jq ".tc.$1"; }
# tc_stat_map NAME: the same counter read from the pinned map, summed over CPUs (enum sluice_tc_stat order).
tc_stat_map() {
	local i
	i=$(echo "new_flows forwarded replies icmp_errors refused unknown_flows fragments malformed errors" |
		tr ' ' '\n' | grep -nx "$1" | cut -d: -f1)
	bpftool -j map lookup pinned "$CLUSTER_BPFFS/maps/tc_stats" key $((i - 1)) 0 0 0 | jq '[.formatted.values[].value] | add'
}
tc_flow_entries() { bpftool -j map dump pinned "$CLUSTER_BPFFS/maps/tc_flows" | jq length; }
# tcx_on IFACE: tcx links the running sluiced holds on the node's IFACE (bpftool 7.1 does not list
# tcx; the kernel's fdinfo of a link names its type and interface).
tcx_on() {   # distinct links: sluiced holds a second reference to each pin, to pin it again if removed
	local idx pid f
	idx=$(ip -n "$CLUSTER_NODE" -j link show "$1" | jq '.[0].ifindex')
	pid=$(cat "$CLUSTER_DIR/sluiced.pid")
	for f in /proc/"$pid"/fdinfo/*; do
		grep -q '^link_type:.*tcx' "$f" 2>/dev/null && grep -q "^ifindex:[[:space:]]*$idx\$" "$f" &&
			awk '/^link_id:/ { print $2 }' "$f"
	done | sort -u | wc -l
}
tc_pins() { ls "$CLUSTER_BPFFS/links" 2>/dev/null | grep -c "^sluice_tc_.*@$1\$"; }

sluiced_tc_start --tc "$UP" || exit 1
check "--tc attaches ingress and egress programs to the uplink (links held, pinned)" "2 2" "$(tcx_on "$UP") $(tc_pins "$UP")"

# 1. The ticket service from outside, through TC: 50/50, then 100% v2.
rules "v1:50 v2:50"
out=$(out_lg --target $VIP:8080 -n 1000 -c 1 --sequence)
check "outside, 50/50 round robin: no failures" 0 "$(jqr "$out" '.failed')"
worst=$(jqr "$out" '[.sequence as $s | range(0; ($s|length) - 99) | [$s[.:.+100][] | select(. == "v1")] | length] | [min, max] | "\(.[0]) \(.[1])"')
check "outside, 50/50 round robin: exactly 50 v1 in every window of 100 (min max)" "50 50" "$worst"
check "outside: replies come from the VIP (no pod address seen)" 0 "$(jqr "$out" '.peer_mismatch')"
rules "v1:0 v2:100"
out=$(out_lg --target $VIP:8080 -n 300 -c 4)
check "outside, 100% v2: 300 answers from v2" 300 "$(jqr "$out" '.versions.v2 // 0')"
# the UDP ports grew the UDP flow tables with TC loaded: TC's object was loaded again over the new
# maps and swapped into its links, and what answers above went through it
link_prog() { bpftool -j link show pinned "$CLUSTER_BPFFS/links/sluice_tc_$1@$UP" | jq .prog_id; }
check "the maps grew under TC mode, and TC's pinned links run the programs pinned now" \
	"yes $(bpftool -j prog show pinned "$CLUSTER_BPFFS/progs/sluice_tc_ingress" | jq .id) $(bpftool -j prog show pinned "$CLUSTER_BPFFS/progs/sluice_tc_egress" | jq .id)" \
	"$(grep -q '^sluiced: maps grown in .*udp_flows 256 -> 65536' "$CLUSTER_DIR/sluiced.log" && echo yes) $(link_prog ingress) $(link_prog egress)"
rules "v1:50 v2:50" RANDOM
out=$(out_lg --target $VIP:8080 -n 10000 -c 8)
check "outside, random 50/50: no failures" 0 "$(jqr "$out" '.failed')"
# binomial, n 10000, p 0.5: sd 50, 99.9% bounds (z 3.29) +-165
check_range "outside, random 50/50: v2 share of 10000" 4835 5165 "$(jqr "$out" '.versions.v2 // 0')"
echo "   (TC: $(jqr "$out" '.conn_per_s | floor') connections/s from outside, p99 $(jqr "$out" '.latency_us.p99') us)"

# 2. TCP echo, UDP and IPv6 through TC; status counts TC flows beside socket-mode connections.
rules "v1:100"
before=$(sluice status -o json | jq '[.services[] | select(.port == 9000) | .destinations[].endpoints[].connections] | add')
out=$(out_lg --target $VIP:9000 --mode tcp -n 50 --bytes 100000)
check "tcp echo of 100 kB through TC: 50 from v1, every byte back" "50 0" "$(jqr "$out" '"\(.versions.v1 // 0) \(.failed)"')"
after=$(sluice status -o json | jq '[.services[] | select(.port == 9000) | .destinations[].endpoints[].connections] | add')
check "sluice status counts the 50 TC flows" 50 "$((after - before))"
st=$(sluice status -o json)
check "status -o json: the TC interfaces and table size" '["'"$UP"'"] 65536' "$(jqr "$st" '"\(.tc.interfaces | tojson) \(.tc.flows_max)"')"
check "status -o json: TC counters are the pinned map's (new flows, forwarded, replies)" \
	"$(tc_stat_map new_flows) $(tc_stat_map forwarded) $(tc_stat_map replies)" \
	"$(jqr "$st" '"\(.tc.new_flows) \(.tc.forwarded) \(.tc.replies)"')"
check_range "status: the 50 echo flows, closed seconds ago, are still live (closing timeout 10 s)" 50 65536 \
	"$(jqr "$st" '.tc.flows_live')"
check "sluice status (text) shows TC mode" "tc on $UP  flows live N of N|  new flows N, forwarded N, replies N, icmp errors N, refused N, unknown flows N, fragments passed N, malformed passed N, rewrite errors N" \
	"$(sluice status | sed -n '2,3p' | sed 's/ [0-9][0-9]*/ N/g' | paste -sd'|')"
out=$(out_lg --target $VIP:9001 --mode udp-connected -n 50)
check "connected UDP through TC: 50 answers from v1, from the VIP" "50 0" "$(jqr "$out" '"\(.versions.v1 // 0) \(.peer_mismatch)"')"
out=$(out_lg --target $VIP:9001 --mode udp -n 50)
check "unconnected UDP through TC: 50 answers, sources are the VIP" "50 0" "$(jqr "$out" '"\(.versions.v1 // 0) \(.peer_mismatch)"')"
out=$(out_lg --target "[$VIP6]:8080" -n 100)
check "IPv6 through TC: 100 answers from v1" 100 "$(jqr "$out" '.versions.v1 // 0')"
icmp_before=$(tc_stat icmp_errors)
out=$(out_lg --target $VIP:9002 --mode udp-connected -n 5 --timeout 1000)
check "UDP to a port no endpoint listens on: the endpoint's ICMP error, translated, reads ECONNREFUSED" 5 \
	"$(jqr "$out" '.errors.ECONNREFUSED // 0')"
check_range "ICMP errors about translated flows were rewritten" 5 1000 "$(( $(tc_stat icmp_errors) - icmp_before ))"

# 3. An empty share is refused the way socket mode refuses it: RST for TCP, ICMP for UDP.
pod_ready ecadraft-v2 false
cluster_objects "$D/cluster.yaml"
rules "v1:50 v2:50"
out=$(out_lg --target $VIP:8080 -n 200 -c 1)
check "unready v2, through TC: v1 keeps its 100 of 200" 100 "$(jqr "$out" '.versions.v1 // 0')"
check "unready v2, through TC: its 100 refused with ECONNREFUSED (RST)" 100 "$(jqr "$out" '.errors.ECONNREFUSED // 0')"
# 20 flows on 20 ports no earlier step used: a port repeated would ride an earlier flow's entry
out=$(out_lg --target $VIP:9001 --mode udp-connected -n 20 -c 1 --source-port 50000)
check "unready v2, UDP through TC: its 10 refused with ECONNREFUSED (ICMP port unreachable)" "10 10" \
	"$(jqr "$out" '"\(.versions.v1 // 0) \(.errors.ECONNREFUSED // 0)"')"
pod_ready ecadraft-v2 true
cluster_objects "$D/cluster.yaml"

# 4. 100 weight changes while 200 long transfers run through TC: each completes, every byte echoed,
#    on the endpoint it started on (a flow moved to the other pod would be reset there).
rules "v1:50 v2:50"
"$SLUICE_BUILD/loadgen" --netns "$OUT" -o json --target $VIP:9000 --mode tcp -n 200 -c 200 --bytes 20000000 \
	--timeout 60000 > "$D/transfers.json" &
lg_pid=$!
for _ in $(seq 200); do [ "$(tc_flow_entries)" -ge 400 ] && break; sleep 0.05; done
check "200 transfers under way before the changes (flow entries >= 400)" yes "$([ "$(tc_flow_entries)" -ge 400 ] && echo yes || echo "no: $(tc_flow_entries)")"
check_range "sluice status: the 200 transfers among the live flows" 200 65536 "$(tc_stat flows_live)"
changes=0
t0=$(date +%s%N)
for i in $(seq 100); do
	sluice weight ecadraft.$NS v1=$((i % 2 * 100)) v2=$(((i + 1) % 2 * 100)) >/dev/null && changes=$((changes + 1))
done
echo "   (100 weight changes in $(( ($(date +%s%N) - t0) / 1000000 )) ms)"
running=$(kill -0 $lg_pid 2>/dev/null && echo yes || echo no)
wait $lg_pid
out=$(cat "$D/transfers.json")
check "100 weight changes applied" 100 "$changes"
check "the transfers were still under way after the last change" yes "$running"
check "200 transfers of 20 MB: all completed, every byte echoed (ok failed errors)" "200 0 {}" \
	"$(jqr "$out" '"\(.ok) \(.failed) \(.errors | tojson)"')"
check "each transfer stayed on the endpoint it started on: 100 on v1, 100 on v2 (opened at 50/50)" "100 100" \
	"$(jqr "$out" '"\(.versions.v1 // 0) \(.versions.v2 // 0)"')"
echo "   ($(jqr "$out" '.elapsed_ms') ms for the transfers)"
out=$(out_lg --target $VIP:8080 -n 50)
check "after the last change (v1=0 v2=100) new flows go to v2" 50 "$(jqr "$out" '.versions.v2 // 0')"

# 5. Socket mode and TC together, TC also on two pods' veths: the cgroup's client is translated
#    once (at connect; its packets carry a pod address TC leaves alone), the outsider by TC.
sluiced_stop TERM
sluiced_tc_start --tc "$UP,$CLIENT_VETH,$OUTSIDER_VETH" || exit 1
check "restart with more interfaces: the pod veths get the TC programs" "2 2 2" \
	"$(tcx_on "$UP") $(tcx_on "$CLIENT_VETH") $(tcx_on "$OUTSIDER_VETH")"
rules "v1:50 v2:50"
flows_before=$(tc_stat new_flows)
c_before=$(sluice status -o json | jq '[.services[] | select(.port == 8080) | .destinations[].endpoints[].connections] | add')
out=$(loadgen_in client -o json --target $VIP:8080 -n 200 -c 1)
check "socket-mode client with TC on its veth: 200 answers, 100/100" "100 100 0" \
	"$(jqr "$out" '"\(.versions.v1 // 0) \(.versions.v2 // 0) \(.failed)"')"
check "socket-mode connections made no TC flow (not translated twice)" 0 "$(( $(tc_stat new_flows) - flows_before ))"
c_after=$(sluice status -o json | jq '[.services[] | select(.port == 8080) | .destinations[].endpoints[].connections] | add')
check "each socket-mode connection counted once" 200 "$((c_after - c_before))"
out=$("$SLUICE_BUILD/loadgen" --netns "$CLUSTER_PREFIX-outsider" -o json --target $VIP:8080 -n 100 -c 1)
check "a pod outside the cgroup is served by TC on its veth: 50/50" "50 50" \
	"$(jqr "$out" '"\(.versions.v1 // 0) \(.versions.v2 // 0)"')"
check "... as 100 TC flows" 100 "$(( $(tc_stat new_flows) - flows_before ))"

# 6. sluiced killed under load through TC: the pinned links keep translating; restarted, it adopts them.
"$SLUICE_BUILD/loadgen" --netns "$OUT" -o json --target $VIP:8080 -n 100000000 -c 4 > "$D/kill.json" &
bg=$!
sleep 0.5
sluiced_stop KILL
sleep 0.5
sluiced_tc_start --tc "$UP" || exit 1
sleep 0.5
kill -INT $bg; wait $bg
out=$(cat "$D/kill.json")
check "sigkill and restart under TC load: zero failed connections" 0 "$(jqr "$out" '.failed')"
check_range "... while connections kept being made" 100 100000000 "$(jqr "$out" '.ok')"
check "restart without the pod veths: their links are unpinned, the uplink's adopted" "0 0 2 2" \
	"$(tc_pins "$CLIENT_VETH") $(tc_pins "$OUTSIDER_VETH") $(tc_pins "$UP") $(tcx_on "$UP")"
out=$("$SLUICE_BUILD/loadgen" --netns "$CLUSTER_PREFIX-outsider" -o json --target $VIP:8080 -n 3 -c 1 --timeout 500)
check "... and detached: the outsider pod's VIP connections are no longer translated" 3 "$(jqr "$out" '.failed')"

# 7. Conntrack full: a 64-flow table (128 entries). New flows are always translated (the LRU evicts
#    the least recently used entries, in batches); a flow whose entry was evicted is reset at its
#    next segment (RST), never carried to another endpoint.
sluiced_stop TERM
"$SLUICE_BUILD/sluiced" --uninstall --bpffs "$CLUSTER_BPFFS" --socket "$CLUSTER_SOCKET" 2>/dev/null
sluiced_tc_start --tc "$UP" --tc-flows 64 || exit 1
check "a restart over no pins creates the table of --tc-flows 64 (128 entries)" 128 \
	"$(bpftool -j map show pinned "$CLUSTER_BPFFS/maps/tc_flows" | jq .max_entries)"
"$SLUICE_BUILD/loadgen" --netns "$OUT" -o json --target $VIP:9000 --mode tcp -c 8 --duration 6 --interval 20 \
	> "$D/longlived.json" &
ll=$!
sleep 0.5
out=$(out_lg --target $VIP:8080 -n 3000 -c 8)
check "table full: all 3000 new flows translated and answered" "3000 0" "$(jqr "$out" '"\(.ok) \(.failed)"')"
check_range "table full: the table stayed within its 128 entries" 1 128 "$(tc_flow_entries)"
check "table full: sluice status shows the table's size, and live flows within it (1 to 64)" "64 true" \
	"$(sluice status -o json | jq -r '"\(.tc.flows_max) \(.tc.flows_live >= 1 and .tc.flows_live <= 64)"')"
wait $ll
out=$(cat "$D/longlived.json")
check "long-lived flows under eviction: none carried to another endpoint" 0 "$(jqr "$out" '.switched')"
check "long-lived flows under eviction: failures, if any, are resets only" "" \
	"$(jqr "$out" '.errors | keys - ["ECONNRESET"] | join(",")')"
echo "   (long-lived flows: $(jqr "$out" '.requests') echoes, $(jqr "$out" '.errors.ECONNRESET // 0') resets by eviction)"
# An idle flow is among the least recently used: new flows usually evict it (the kernel's LRU is an
# approximation: per-CPU lists, rotated on demand, so not always). Either it is still there and its
# next segment is echoed, or sluice resets it (counted as unknown_flow); a reset from a pod would
# mean the segment went to another endpoint. The idle connection is held by bash's /dev/tcp, which
# sends nothing until told to.
rm -f "$D/go"
ip netns exec "$OUT" bash -c 'exec 3<>/dev/tcp/'"$VIP"'/9000 || exit 1
	read -r -t 5 greeting <&3 && echo "greeting: $greeting"
	while [ ! -e "$1" ]; do sleep 0.05; done
	echo ping >&3 && read -r -t 3 line <&3 && echo "echo: $line" || echo "no echo"' _ "$D/go" > "$D/idle.out" 2>&1 &
idle=$!
for _ in $(seq 100); do grep -q greeting "$D/idle.out" && break; sleep 0.05; done
unknown_before=$(tc_stat unknown_flows)
out_lg --target $VIP:8080 -n 6000 -c 8 >/dev/null
touch "$D/go"
wait $idle
idle_result="$(grep -o 'no echo\|echo: .*' "$D/idle.out" | head -1), $(( $(tc_stat unknown_flows) - unknown_before )) reset by sluice"
case $idle_result in
"echo: ping, 0 reset by sluice" | "no echo, 1 reset by sluice") ok "an idle flow after 6000 new flows: kept, or reset by sluice ($idle_result)" ;;
*) fail "an idle flow after 6000 new flows: kept, or reset by sluice" "got: $idle_result" ;;
esac

# 8. Gateway: the ticket service on the gateway's address and port (the lab's $GATEWAY_URL), 50/50
#    then 100% v2, from the YAML a user writes.
cat > "$D/gateway.yaml" <<EOF
apiVersion: networking.istio.io/v1beta1
kind: Gateway
metadata: {name: ecadraft-gateway, namespace: $NS}
spec:
  selector: {istio: ingressgateway}
  addresses: [$GW]
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: ["*"]
---
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {name: ecadraft-ingress, namespace: $NS}
spec:
  hosts: ["*"]
  gateways: [ecadraft-gateway]
  http:
  - route:
    - destination: {host: ecadraft, subset: v1, port: {number: 8080}}
      weight: WEIGHT1
    - destination: {host: ecadraft, subset: v2, port: {number: 8080}}
      weight: WEIGHT2
EOF
gw_yaml() { sed "s/WEIGHT1/$1/; s/WEIGHT2/$2/" "$D/gateway.yaml" > "$D/gw.yaml"; }
# Fresh client ports for the gateway: a port that reached a pod through the VIP above may still be
# in that pod's TIME_WAIT (the pod closed first), and a SYN through another address with an
# unrelated sequence number gets that socket's ACK, a reset and a retry a second later (the
# README's limits of TC mode). Ports 32768-50019 served the VIP; the gateway gets 61000-65499.
ip netns exec "$OUT" sysctl -qw net.ipv4.ip_local_port_range="61000 65499"
rules "v1:50 v2:50"
gw_yaml 50 50
msg=$(sluice validate -f "$D/cluster.yaml" -f "$D/rules.yaml" -f "$D/gw.yaml" 2>&1)
check "the lab's Gateway and VirtualService compile" 0 "$?"
gw_apply() { gw_yaml "$1" "$2"; sluice apply -f "$D/cluster.yaml" -f "$D/rules.yaml" -f "$D/gw.yaml" >/dev/null; }
gw_apply 50 50
out=$(out_lg --target $GW:80 -n 1000 -c 1 --sequence)
check "gateway $GW:80, 50/50: no failures, answers from the gateway address" "0 0" \
	"$(jqr "$out" '"\(.failed) \(.peer_mismatch)"')"
worst=$(jqr "$out" '[.sequence as $s | range(0; ($s|length) - 99) | [$s[.:.+100][] | select(. == "v1")] | length] | [min, max] | "\(.[0]) \(.[1])"')
check "gateway, 50/50 round robin: exactly 50 v1 in every window of 100 (min max)" "50 50" "$worst"
[ "$worst" = "50 50" ] || { jqr "$out" '.sequence[0:40] | join(" ")'; sluice status; bpftool -j map show pinned "$CLUSTER_BPFFS/maps/tc_flows"; }
gw_apply 0 100
out=$(out_lg --target $GW:80 -n 300 -c 4)
check "gateway, 100% v2: 300 answers from v2" 300 "$(jqr "$out" '.versions.v2 // 0')"
check "status shows a Gateway route's address and gateway, not an empty vip" \
	"service ecadraft-gateway.$NS  gateway $GW:80 ($NS/ecadraft-gateway)  port 80/TCP  lb ROUND_ROBIN" \
	"$(sluice status | grep '^service ecadraft-gateway')"
msg=$(sluice weight ecadraft-ingress.$NS v1=1 v2=1 2>&1); rc=$?
check "weight by the VirtualService's name: the service it routes is named" "1 Error: no routed service ecadraft-ingress.$NS; VirtualService $NS/ecadraft-ingress routes service ecadraft-gateway.$NS: sluice weight ecadraft-gateway.$NS ..." "$rc $msg"
out=$(out_lg --target $GW:81 -n 3 --timeout 500)
check "the gateway address on another port is not translated" 3 "$(jqr "$out" '.failed')"

# 8b. The maps grow under TC's flows: 300 more Services applied while the outside connects through
#     the gateway, so TC's object is loaded again over the grown maps' pins (below 1,303 gateway
#     connections so far and 1,500 here: no port of the 4,500 is used twice).
awk -v n=300 -v ns=$NS 'BEGIN { for (i = 0; i < n; i++)
	printf "---\napiVersion: v1\nkind: Service\nmetadata: {name: more-%d, namespace: %s}\nspec:\n  clusterIP: 198.19.%d.%d\n  selector: {app: ecadraft}\n  ports: [{name: http, port: 8080}]\n---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: more-%d, namespace: %s}\nspec:\n  hosts: [more-%d]\n  tcp:\n  - {match: [{port: 8080}], route: [{destination: {host: more-%d, port: {number: 8080}}}]}\n",
		i, ns, 1 + int(i / 250), i % 250 + 1, i, ns, i, i }' > "$D/more.yaml"
grown_before=$(grep -c "maps grown" "$D/sluiced.log")
out_lg --target $GW:80 -n 1500 -c 2 > "$D/grow.json" &
lg=$!
sleep 0.2
msg=$(sluice apply -f "$D/cluster.yaml" -f "$D/rules.yaml" -f "$D/gw.yaml" -f "$D/more.yaml" 2>&1)
wait $lg
check "TC mode: 300 more services grow the maps once, and every gateway connection meanwhile is answered" \
	"1 0 1500" "$(( $(grep -c "maps grown" "$D/sluiced.log") - grown_before )) $(jq -r '"\(.failed) \(.ok)"' "$D/grow.json")"
[ "$(grep -c "maps grown" "$D/sluiced.log")" -gt "$grown_before" ] || echo "   apply: $msg"
out=$(out_lg --target 198.19.2.50:8080 -n 10 -c 1)
check "TC mode after the growth: a new service is translated from outside" "0 10" "$(jqr "$out" '"\(.failed) \(.ok)"')"

# 9. Uninstall detaches TC too.
sluiced_stop TERM 2>/dev/null
"$SLUICE_BUILD/sluiced" --uninstall --bpffs "$CLUSTER_BPFFS" --socket "$CLUSTER_SOCKET" 2>/dev/null
check "uninstall leaves no pin" no "$([ -e "$CLUSTER_BPFFS" ] && echo yes || echo no)"
out=$(out_lg --target $VIP:8080 -n 3 --timeout 500)
check "uninstalled: the VIP is no longer translated" 3 "$(jqr "$out" '.failed')"

e2e_end
