#!/usr/bin/env bash
# The Istio lab rollout (labs/001, Lab 5 "Control Traffic") end to end on the mini-cluster, with the
# lab's own VirtualService and DestinationRule files (tests/e2e/lab/): dark launch, canary steps
# 10/20/50/100 (RANDOM within binomial bounds, ROUND_ROBIN exact per window), v2 unready mid-rollout,
# rollback two ways, UDP and IPv6, labs/003's bad YAML refused with nothing changed, and keep-alive
# connections opened at every step that keep their backend through all the steps after it.
set -u
. "$(dirname "$0")/lib.sh"
e2e_begin

NS=istioinaction
L=$(cd "$(dirname "$0")/lab" && pwd)
VIP=198.19.1.10 VIP6=2001:db8:19::1:10          # purchase-history, dual-stack
UVIP=198.19.1.11 UVIP6=2001:db8:19::1:11        # purchase-history-udp, dual-stack
V1_IP=198.18.1.1 V1_IP6=2001:db8:18::1:1
V2_IP=198.18.2.1 V2_IP6=2001:db8:18::2:1
D=$CLUSTER_DIR
OBJECTS=$CLUSTER_OBJECTS/cluster.yaml   # the Services and Pods, as `kubectl get svc,pods -o yaml` prints them
SVC=purchase-history.$NS

pod_add client $NS app=client 198.18.0.10 2001:db8:18::10
pod_add ph-v1 $NS app=purchase-history,version=v1 $V1_IP $V1_IP6
backend_start ph-v1 v1 "Hello From Purchase History (v1)!" --http 8080 --udp 9001 || exit 1
svc_add purchase-history $NS $VIP,$VIP6 app=purchase-history 8080
svc_add purchase-history-udp $NS $UVIP,$UVIP6 app=purchase-history 9001/udp
svc_add account-service $NS 198.19.3.30 app=account-service 8082     # labs/003's, for its bad YAML
cluster_objects "$OBJECTS"

# lab_apply VS [DR [MORE...]]: as `kubectl apply -n istioinaction -f ...` does in the lab, beside
# the Services and Pods of the cluster. A refused apply is a failed check.
lab_apply() {
	local vs=$1 dr=${2:-purchase-history-dr.yaml} more=() f out
	shift; [ $# = 0 ] || shift
	for f in "$@"; do more+=(-f "$L/$f"); done
	out=$(sluice apply -n $NS -f "$OBJECTS" -f "$L/$vs" -f "$L/$dr" "${more[@]}" 2>&1) ||
		fail "apply $vs $dr $*" "$out"
}

lg() { loadgen_in client -o json "$@"; }

# The share of v2 in every window of 100 consecutive connections of a --sequence run: "min max".
windows_v2() { jqr "$1" '[.sequence as $s | range(0; ($s|length) - 99) | [$s[.:.+100][] | select(. == "v2")] | length] | [min, max] | "\(.[0]) \(.[1])"'; }

# binomial_bounds N PERCENT: the 99.9% two-sided interval of a binomial count (z = 3.2905), "LOW HIGH".
binomial_bounds() {
	awk -v n="$1" -v p="$2" 'BEGIN { p /= 100; m = n * p; s = 3.2905 * sqrt(n * p * (1 - p));
		lo = int(m - s); hi = int(m + s); if (hi < m + s) hi++; print lo, hi }'
}

# pod_conns STATUS_JSON IP4 IP6: connections sluice counted on a pod's purchase-history endpoints.
pod_conns() {
	jqr "$1" "[.services[] | select(.name == \"purchase-history\") | .destinations[].endpoints[]
		| select(.address == \"$2:8080\" or .address == \"[$3]:8080\") | .connections] | add // 0"
}
all_conns() { jqr "$(sluice status -o json)" '[.services[].destinations[].endpoints[].connections] | add // 0'; }
routing() { jqr "$(sluice status -o json)" '.services[] | select(.name == "purchase-history")
	| "\(.loadBalancer) \([.destinations[] | "\(.subset)=\(.weight)"] | join(" "))"'; }

# keepalive STEP C [WANT]: C keep-alive connections to the VIP opened now, left running until the
# end; WANT is the sorted versions they must land on when the step's weights decide it ("v1 v2").
KA=0 KA_PID=() KA_STEP=() KA_C=() KA_WANT=()
keepalive() {
	local before i
	before=$(all_conns)
	KA=$((KA + 1))
	"$SLUICE_BUILD/loadgen" --netns "$CLUSTER_PREFIX-client" --cgroup "$CLUSTER_CGROUP/client" -o json \
		--target $VIP:8080 --mode keepalive -c "$2" --duration 600 --interval 100 --timeout 5000 > "$D/keepalive.$KA.json" &
	KA_PID[KA]=$! KA_STEP[KA]=$1 KA_C[KA]=$2 KA_WANT[KA]=${3:-}
	# the next step must come after these connections exist: wait for sluice to count them
	for i in $(seq 200); do [ "$(all_conns)" -ge $((before + $2)) ] && return 0; sleep 0.02; done
	fail "keepalive at $1: $2 connections opened" "sluice counted $(( $(all_conns) - before ))"
}

# canary PERCENT VS N_RANDOM KEEPALIVE_C KEEPALIVE_WANT: one rollout step, first with the lab's
# DestinationRule made RANDOM, then with the lab's own (ROUND_ROBIN).
canary() {
	local pct=$1 vs=$2 n=$3 kc=$4 kwant=$5 out lo hi want
	want="v1=$((100 - pct)) v2=$pct"; [ "$pct" = 100 ] && want="v2=100"

	lab_apply "$vs" purchase-history-dr-random.yaml
	check "$pct%: status shows the step (random)" "RANDOM $want" "$(routing)"
	keepalive "$pct% random" 2
	out=$(lg --target $VIP:8080 -n "$n" -c 8)
	read -r lo hi < <(binomial_bounds "$n" "$pct")
	check "$pct% random: $n connections, none failed" "$n 0" "$(jqr "$out" '"\(.connections) \(.failed)"')"
	check_range "$pct% random: v2 answers of $n within the binomial 99.9% bounds [$lo, $hi]" "$lo" "$hi" \
		"$(jqr "$out" '.versions.v2 // 0')"

	lab_apply "$vs" purchase-history-dr.yaml
	check "$pct%: status shows the step (round robin)" "ROUND_ROBIN $want" "$(routing)"
	keepalive "$pct% round robin" "$kc" "$kwant"
	out=$(lg --target $VIP:8080 -n 1000 -c 1 --sequence)
	check "$pct% round robin: v2 in every window of 100 consecutive connections is $pct (min max), none failed" \
		"$pct $pct 0" "$(windows_v2 "$out") $(jqr "$out" '.failed')"
}

sluiced_start || exit 1

# 1. v1 alone, the lab's all-v1 rules.
lab_apply purchase-history-vs-all-v1.yaml
out=$(lg --target $VIP:8080 -n 200 -c 4)
check "v1 alone, all-v1 rules: 200 answers from v1, none failed" "200 0" "$(jqr "$out" '"\(.versions.v1) \(.failed)"')"

# 2. Dark launch: v2 deployed (pod, backend, objects re-applied), zero connections reach it.
pod_add ph-v2 $NS app=purchase-history,version=v2 $V2_IP $V2_IP6
backend_start ph-v2 v2 "Hello From Purchase History (v2)!" --http 8080 --udp 9001 || exit 1
cluster_objects "$OBJECTS"
lab_apply purchase-history-vs-all-v1.yaml
out=$(lg --target $V2_IP:8080 -n 10)
check "dark launch: v2 is up (10 answers on its pod IP, as the lab tests it directly)" 10 "$(jqr "$out" '.versions.v2 // 0')"
keepalive "dark launch" 2 "v1 v1"
before=$(sluice status -o json)
out=$(lg --target $VIP:8080 -n 2000 -c 8)
out6=$(lg --target "[$VIP6]:8080" -n 500 -c 8)
after=$(sluice status -o json)
check "dark launch: 2000 IPv4 + 500 IPv6 connections answered by v1, none by v2, none failed" "2000 500 0 0 0" \
	"$(jqr "$out" '.versions.v1 // 0') $(jqr "$out6" '.versions.v1 // 0') $(jqr "$out" '.versions.v2 // 0') $(jqr "$out6" '.versions.v2 // 0') $(( $(jqr "$out" .failed) + $(jqr "$out6" .failed) ))"
check "dark launch: status -o json counts +2500 connections on v1's endpoints, 0 on v2's" "2500 0" \
	"$(( $(pod_conns "$after" $V1_IP $V1_IP6) - $(pod_conns "$before" $V1_IP $V1_IP6) )) $(pod_conns "$after" $V2_IP $V2_IP6)"

# 3. Canary 10%: status counters agree with loadgen once v2 has a share.
canary 10 purchase-history-vs-10-v2.yaml 10000 10 "v1 v1 v1 v1 v1 v1 v1 v1 v1 v2"
before=$(sluice status -o json)
out=$(lg --target $VIP:8080 -n 1000 -c 4)
after=$(sluice status -o json)
check "10%: status -o json counts on v2's endpoints the connections loadgen saw answered by v2" \
	"$(jqr "$out" '.versions.v2 // 0')" "$(( $(pod_conns "$after" $V2_IP $V2_IP6) - $(pod_conns "$before" $V2_IP $V2_IP6) ))"

# 4. Canary 20%, the lab's step.
canary 20 purchase-history-vs-20-v2.yaml 10000 5 "v1 v1 v1 v1 v2"

# 5. labs/003's bad YAML, mid-rollout: refused with the exact error, nothing changed.
before=$(sluice status -o json)
gen=$(jqr "$before" .generation)
bad_apply() { # NAME FILE EXPECTED_ERROR, run from the lab folder as a user would: errors name FILE as given
	local err rc
	err=$(cd "$L" && sluice apply -n $NS -f "$OBJECTS" -f purchase-history-vs-20-v2.yaml -f purchase-history-dr.yaml \
		-f account-service.yaml -f "$2" 2>&1 >/dev/null)
	rc=$?
	check "$1: sluice apply exits 1" 1 "$rc"
	check "$1: the error line" "$2:$3" "$(head -n 1 <<< "$err")"
	check "$1: nothing applied" "1 error: nothing applied" "$(tail -n 1 <<< "$err")"
}
bad_apply "labs/003 subset v0" bad-account-service-vs-subset-v0.yaml \
	'13:19: error: subset "v0" is not defined by any DestinationRule for host account-service (defined: v1, v2)'
bad_apply "labs/003 end-user header match" bad-account-service-vs-end-user.yaml \
	'11:7: error: spec.http[0].match[0].headers: matching on HTTP headers needs an L7 proxy: sluice picks the backend at connect(), before any request byte exists; split by weight, or run the client pinned to a subset'
check "bad YAML refused: sluice status -o json byte-identical before and after (generation $gen, v1=80 v2=20, counters)" \
	"$before" "$(sluice status -o json)"
out=$(lg --target $VIP:8080 -n 500 -c 1 --sequence)
check "bad YAML refused: the data plane still splits 80/20 (v2 per window of 100, min max)" "20 20" "$(windows_v2 "$out")"

# 6. UDP and IPv6 in the lab's namespace, split by weight (round robin, so exact).
lab_apply purchase-history-vs-20-v2.yaml purchase-history-dr.yaml purchase-history-udp.yaml
out=$(lg --target "[$VIP6]:8080" -n 1000 -c 1 --sequence)
check "ipv6 20%: v2 in every window of 100 on [$VIP6]:8080 (min max), none failed, peer = VIP" "20 20 0 0" \
	"$(windows_v2 "$out") $(jqr "$out" '"\(.failed) \(.peer_mismatch)"')"
out=$(lg --target $UVIP:9001 --mode udp -n 500 -c 1)
check "udp 80/20: 500 datagrams to $UVIP:9001, v1 v2 failed, replies from the VIP" "400 100 0 0" \
	"$(jqr "$out" '"\(.versions.v1) \(.versions.v2) \(.failed) \(.peer_mismatch)"')"
out=$(lg --target "[$UVIP6]:9001" --mode udp -n 500 -c 1)
check "udp ipv6 80/20: 500 datagrams to [$UVIP6]:9001, v1 v2 failed, replies from the VIP" "400 100 0 0" \
	"$(jqr "$out" '"\(.versions.v1) \(.versions.v2) \(.failed) \(.peer_mismatch)"')"
out=$(lg --target $UVIP:9001 --mode udp-connected -n 500 -c 8)
check "connected udp 80/20, 8 at once: 500 datagrams to $UVIP:9001, v1 v2 failed" "400 100 0" \
	"$(jqr "$out" '"\(.versions.v1) \(.versions.v2) \(.failed)"')"

# 7. Canary 50%, then v2 unready mid-rollout: its share refused, v1 unaffected; ready restores it.
canary 50 purchase-history-vs-50-v2.yaml 10000 2 "v1 v2"
pod_ready ph-v2 false
cluster_objects "$OBJECTS"
lab_apply purchase-history-vs-50-v2.yaml
out=$(lg --target $VIP:8080 -n 400 -c 1)
check "v2 unready: v1 still answers its 200 of 400" 200 "$(jqr "$out" '.versions.v1 // 0')"
check "v2 unready: v2's 200 refused with ECONNREFUSED, nothing else failed" "200 200 0" \
	"$(jqr "$out" '"\(.errors.ECONNREFUSED // 0) \(.failed) \(.versions.v2 // 0)"')"
out=$(lg --target $VIP:8080 -n 1000 -c 8)
check "v2 unready, 8 at once: v1 answers 500 of 1000, 500 ECONNREFUSED" "500 500 500" \
	"$(jqr "$out" '"\(.versions.v1 // 0) \(.errors.ECONNREFUSED // 0) \(.failed)"')"
pod_ready ph-v2 true
cluster_objects "$OBJECTS"
lab_apply purchase-history-vs-50-v2.yaml
out=$(lg --target $VIP:8080 -n 1000 -c 1 --sequence)
check "v2 ready again: 50/50 in every window of 100 (min max), none failed" "50 50 0" "$(windows_v2 "$out") $(jqr "$out" .failed)"
keepalive "v2 ready again" 2 "v1 v2"

# 8. Rollback from 50/50 with sluice weight.
if out=$(sluice weight $SVC v1=100 v2=0 2>&1); then ok "rollback: sluice weight $SVC v1=100 v2=0"; else fail "rollback: sluice weight" "$out"; fi
check "rollback by weight: status shows v1=100 v2=0" "ROUND_ROBIN v1=100 v2=0" "$(routing)"
out=$(lg --target $VIP:8080 -n 1000 -c 8)
check "rollback by weight: 1000 new connections, v1 v2 failed" "1000 0 0" \
	"$(jqr "$out" '"\(.versions.v1 // 0) \(.versions.v2 // 0) \(.failed)"')"
keepalive "rollback by weight" 2 "v1 v1"

# 9. Forward again to 100%, then rollback by re-applying the all-v1 VirtualService.
lab_apply purchase-history-vs-50-v2.yaml
canary 100 purchase-history-vs-all-v2.yaml 2000 2 "v2 v2"
lab_apply purchase-history-vs-all-v1.yaml
check "rollback by the all-v1 VirtualService: status shows v1=100" "ROUND_ROBIN v1=100" "$(routing)"
out=$(lg --target $VIP:8080 -n 1000 -c 8)
out6=$(lg --target "[$VIP6]:8080" -n 200 -c 8)
check "rollback by the all-v1 VirtualService: 1000 IPv4 + 200 IPv6 new connections, v1 v2 failed" "1200 0 0" \
	"$(( $(jqr "$out" '.versions.v1 // 0') + $(jqr "$out6" '.versions.v1 // 0') )) $(( $(jqr "$out" '.versions.v2 // 0') + $(jqr "$out6" '.versions.v2 // 0') )) $(( $(jqr "$out" .failed) + $(jqr "$out6" .failed) ))"
keepalive "rollback by all-v1" 2 "v1 v1"

# 10. Every keep-alive connection, opened at its step, kept its backend through all the later steps.
for i in $(seq "$KA"); do
	kill -INT "${KA_PID[i]}" 2>/dev/null
	wait "${KA_PID[i]}"
	out=$(cat "$D/keepalive.$i.json")
	check "keepalive opened at ${KA_STEP[i]}: ${KA_C[i]} connections still open at the end, 0 failed, 0 switched backend" \
		"${KA_C[i]} 0 0 true" "$(jqr "$out" '"\(.connections) \(.failed) \(.switched) \(.interrupted)"')"
	[ -n "${KA_WANT[i]}" ] &&
		check "keepalive opened at ${KA_STEP[i]}: on the backends the step's weights gave" "${KA_WANT[i]}" \
			"$(jqr "$out" '[.per_connection[].versions | join("+")] | sort | join(" ")')"
done

e2e_end
