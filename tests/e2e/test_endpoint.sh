#!/usr/bin/env bash
# The node endpoint (sluiced --listen): /healthz, /readyz, /status and /metrics over HTTP, read-only;
# the metrics agree with what loadgen counted, and a client that never finishes its request holds
# nobody up.
set -u
. "$(dirname "$0")/lib.sh"
e2e_begin

NS=istioinaction
VIP=198.19.0.10
lab_pods || exit 1
svc_add purchase-history $NS $VIP app=purchase-history 8080
D=$CLUSTER_DIR
cluster_objects "$D/cluster.yaml"
rules() {
	split_rules purchase-history $NS 8080 "$1" "{loadBalancer: {simple: ROUND_ROBIN}}" > "$D/rules.yaml"
	sluice apply -f "$D/cluster.yaml" -f "$D/rules.yaml" >/dev/null
}
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
EP=http://127.0.0.1:$PORT
get() { curl -s --max-time 5 -o "$D/body" -w '%{http_code}' "$@"; }
# metric NAME SUBSET: the value of one destination's series
metric() { curl -s --max-time 5 "$EP/metrics" | awk -v n="$1" -v s="subset=\"$2\"" '$1 ~ "^"n"{" && index($1, s) { print $2 }'; }

# refused with the options: this sluiced touches nothing (its paths are the test's all the same)
msg=$("$SLUICE_BUILD/sluiced" --listen 127.0.0.1 --cgroup "$CLUSTER_CGROUP" --bpffs "$D/unused-pins" \
	--state-dir "$D/unused-state" --socket "$D/unused.sock" 2>&1); rc=$?
check "--listen without a port: a usage error" "2 sluiced: error: --listen \"127.0.0.1\" is not ADDR:PORT, [ADDR6]:PORT or :PORT" \
	"$rc $(echo "$msg" | head -1)"
sluiced_start --listen 127.0.0.1:$PORT || exit 1
rules "v1:80 v2:20"

# 1. Probes and status.
check "/healthz: 200 ok" "200 ok" "$(get "$EP/healthz") $(cat "$D/body")"
check "/readyz: 200 once the plan is served" "200 ready: generation $(sluice status -o json | jq .generation)" \
	"$(get "$EP/readyz") $(cat "$D/body")"
check "/status: what sluice status -o json prints" "200 $(sluice status -o json | jq -c '[.generation, [.services[].destinations[] | [.subset, .weight]]]')" \
	"$(get "$EP/status") $(jq -c '[.generation, [.services[].destinations[] | [.subset, .weight]]]' "$D/body")"

# 2. Metrics agree with what the clients counted.
check "/metrics: the weights, per subset" "80 20" "$(metric sluice_destination_weight v1) $(metric sluice_destination_weight v2)"
check "/metrics: the generation" "$(sluice status -o json | jq .generation)" \
	"$(curl -s "$EP/metrics" | awk '$1 == "sluice_generation" { print $2 }')"
b1=$(metric sluice_connections_total v1) b2=$(metric sluice_connections_total v2)
e1=$(metric sluice_tcp_established_total v1)
out=$(loadgen_in client -o json --target $VIP:8080 -n 1000 -c 1)
check "1000 connections at 80/20: loadgen counted" "800 200 0" \
	"$(jqr "$out" '.versions.v1') $(jqr "$out" '.versions.v2') $(jqr "$out" '.failed')"
check "/metrics: sluice_connections_total grew as loadgen counted, per subset" "800 200" \
	"$(($(metric sluice_connections_total v1) - b1)) $(($(metric sluice_connections_total v2) - b2))"
check "/metrics: sockops saw each handshake (sluice_tcp_established_total)" 800 \
	"$(($(metric sluice_tcp_established_total v1) - e1))"
check "/metrics: none failed, a series per reason (sluice_tcp_connect_failures_total{reason})" \
	"timeout refused unreachable aborted other: 0 0 0 0 0" \
	"$(curl -s "$EP/metrics" | grep -o '^sluice_tcp_connect_failures_total{.*subset="v1",reason="[a-z]*"' |
		sed 's/.*reason="//; s/"$//' | paste -sd' '): $(metric sluice_tcp_connect_failures_total v1 | paste -sd' ')"
check "/metrics: the RTT summary has a sample per closed connection" yes \
	"$([ "$(metric sluice_tcp_rtt_seconds_count v1)" -ge 800 ] && echo yes)"
check "/metrics: every family has HELP and TYPE" "" \
	"$(curl -s "$EP/metrics" | awk '/^# TYPE/ { t[$3] = 1 } !/^#/ { n = $1; sub(/{.*/, "", n); b = n; sub(/_(sum|count|bucket)$/, "", b); if (!t[n] && !t[b]) print n }' | sort -u)"

# 3. Read-only, and nobody holds it up.
check "an unknown path: 404" 404 "$(get "$EP/nothing")"
check "POST: 405, nothing changes" "405 read-only: GET only" "$(get -X POST "$EP/metrics") $(cat "$D/body")"
check "a request past 8 KiB: 431" 431 "$(get -H "X-Long: $(head -c 9000 /dev/zero | tr '\0' a)" "$EP/healthz")"
ops() { curl -s "$EP/metrics" | awk '/^sluice_bpf_map_ops_total/ { print }' | sort; }
ops > "$D/ops.before"
exec 7<>/dev/tcp/127.0.0.1/$PORT   # connected, and never sends a request
t0=$(date +%s%N)
code=$(get "$EP/healthz")
sluice weight purchase-history.$NS v1=50 v2=50 >/dev/null
check "a client that sends nothing holds neither /healthz nor a weight change" "200 fast" \
	"$code $([ $(( ($(date +%s%N) - t0) / 1000000 )) -lt 2000 ] && echo fast)"
exec 7>&-
check "/metrics follows the change" "50 50" "$(metric sluice_destination_weight v1) $(metric sluice_destination_weight v2)"
# one service port: its record on the inactive side, the switch, the barrier, the same record on
# the side the switch left; its 2 endpoints' slots under the new generation, their counters kept
# (an insert that finds them counts as done), the old slots deleted
check "sluice_bpf_map_ops_total: what the weight change wrote, map by map; no failure" \
	"active/update/success +1 counters/update/success +2 endpoints/delete/success +2 endpoints/update/success +2 rcu_barrier/update/success +1 services/update/success +2" \
	"$(ops | join - <(sed 's/ / /' "$D/ops.before") | awk '{ d = $2 - $3; if (d) { split($1, l, "\""); printf "%s%s/%s/%s %+d", sep, l[2], l[4], l[6], d; sep = " " } }')"

# 4. --metrics-endpoints: a series per endpoint, with its pod.
sluiced_stop TERM
sluiced_start --listen 127.0.0.1:$PORT --metrics-endpoints || exit 1
check "--metrics-endpoints after a restart: per endpoint; the saved plan names no pods" \
	'sluice_endpoint_connections_total{service="purchase-history",namespace="istioinaction",port="8080",protocol="TCP",subset="v1",endpoint="198.18.1.1:8080"}' \
	"$(curl -s "$EP/metrics" | awk '$1 ~ /^sluice_endpoint_connections_total.*subset="v1"/ { print $1 }')"
rules "v1:50 v2:50"
check "--metrics-endpoints: per endpoint, with its pod" \
	'sluice_endpoint_connections_total{service="purchase-history",namespace="istioinaction",port="8080",protocol="TCP",subset="v1",endpoint="198.18.1.1:8080",pod="ph-v1"}' \
	"$(curl -s "$EP/metrics" | awk '$1 ~ /^sluice_endpoint_connections_total.*ph-v1/ { print $1 }')"
check "--metrics-endpoints: failed connects per endpoint and reason" \
	'sluice_endpoint_tcp_connect_failures_total{service="purchase-history",namespace="istioinaction",port="8080",protocol="TCP",subset="v1",endpoint="198.18.1.1:8080",pod="ph-v1",reason="timeout"} 0' \
	"$(curl -s "$EP/metrics" | grep -m1 '^sluice_endpoint_tcp_connect_failures_total.*ph-v1')"

e2e_end
