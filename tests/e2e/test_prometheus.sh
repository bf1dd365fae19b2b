#!/usr/bin/env bash
# A real Prometheus (Debian's) scrapes every node's endpoint (sluiced --listen) of a 3-node
# mini-cluster; what PromQL says of the canary's connections per subset is what loadgen counted
# on every node's clients. promtool holds /metrics to the exposition format and its naming rules.
set -u
. "$(dirname "$0")/lib.sh"
prom_down() { [ -n "${prom:-}" ] && kill "$prom" 2>/dev/null && wait "$prom" 2>/dev/null; e2e_cleanup; }
e2e_begin
trap prom_down EXIT

NS=istioinaction
VIP=198.19.0.10
D=$CLUSTER_DIR
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
cluster_nodes 3 || exit 1
pod_add_on 1 ph-v1 $NS app=purchase-history,version=v1 || exit 1
pod_add_on 2 ph-v2 $NS app=purchase-history,version=v2 || exit 1
for k in 1 2 3; do pod_add_on "$k" client-$k default app=client || exit 1; done
backend_start ph-v1 v1 "Hello From Purchase History (v1)!" --http 8080 || exit 1
backend_start ph-v2 v2 "Hello From Purchase History (v2)!" --http 8080 || exit 1
svc_add purchase-history $NS $VIP app=purchase-history 8080
cluster_objects "$D/cluster.yaml"
split_rules purchase-history $NS 8080 "v1:80 v2:20" "{loadBalancer: {simple: ROUND_ROBIN}}" > "$D/rules.yaml"
targets=""
for k in 1 2 3; do
	port=$(free_port)
	sluiced_start_node "$k" --listen 127.0.0.1:"$port" || exit 1
	sluice_on "$k" apply -f "$D/cluster.yaml" -f "$D/rules.yaml" >/dev/null || exit 1
	targets+="${targets:+, }'127.0.0.1:$port'"
done

check "promtool: every node's /metrics follows the exposition format and its naming rules" "" \
	"$(for t in $(echo "$targets" | tr -d "',"); do curl -s "http://$t/metrics" | promtool check metrics 2>&1; done)"

PROM_PORT=$(free_port)
cat > "$D/prometheus.yml" <<YAML
global: {scrape_interval: 1s, evaluation_interval: 1s}
scrape_configs:
- job_name: sluice
  static_configs: [{targets: [$targets]}]
YAML
prometheus --config.file="$D/prometheus.yml" --storage.tsdb.path="$D/prometheus" \
	--web.listen-address=127.0.0.1:"$PROM_PORT" --log.level=warn > "$D/prometheus.log" 2>&1 &
prom=$!
query() { curl -s --max-time 5 "http://127.0.0.1:$PROM_PORT/api/v1/query" --data-urlencode "query=$1"; }
up() { query 'sum(up{job="sluice"})' | jq -r '.data.result[0].value[1] // 0'; }
for _ in $(seq 200); do [ "$(up)" = 3 ] && break; sleep 0.1; done
check "Prometheus scrapes the 3 nodes' endpoints" 3 "$(up)"

# 1,000 connections from every node's client at 80/20, then one more scrape of every node
v1=0 v2=0
for k in 1 2 3; do
	out=$(loadgen_in client-$k -o json --target $VIP:8080 -n 1000 -c 2)
	v1=$((v1 + $(jqr "$out" '.versions.v1 // 0'))) v2=$((v2 + $(jqr "$out" '.versions.v2 // 0')))
done
check "loadgen counted, on the 3 nodes' clients together" "2400 600" "$v1 $v2"
counted() { query 'sum by (subset) (sluice_connections_total{service="purchase-history"})' |
	jq -r '[.data.result[] | {(.metric.subset): .value[1]}] | add | "\(.v1) \(.v2)"'; }
for _ in $(seq 100); do [ "$(counted)" = "$v1 $v2" ] && break; sleep 0.1; done
check "PromQL: sum by (subset) (sluice_connections_total) is what loadgen counted" "$v1 $v2" "$(counted)"
share=$(query 'sum(increase(sluice_connections_total{subset="v2"}[1m])) / sum(increase(sluice_connections_total[1m]))' |
	jq -r '.data.result[0].value[1] | tonumber * 1000 | round')
check_range "PromQL: the canary's share of the connection rate over the last minute, in thousandths" 190 210 "$share"
check "PromQL: every node serves weight 20 to v2" "20 20 20" \
	"$(query 'sluice_destination_weight{subset="v2"}' | jq -r '[.data.result[].value[1]] | join(" ")')"

e2e_end
