#!/usr/bin/env bash
# sluiced --kubernetes on a 3-node mini-cluster following the API server double (issue 12): the
# Istio lab's rollout driven with kubectl apply and with sluice weight --cluster, every node's
# clients seeing each step; pods joining, leaving and turning unready; watches dropped, 410 Gone
# and the API away under traffic; an invalid VirtualService refused with the previous weights
# kept; pods' changes journaled by the quick path and replayed by a killed node's restart; a node's
# sluiced killed during churn.
set -u
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/../apiserver/lib.sh"
kube_cleanup() { api_down; e2e_cleanup; }
e2e_begin
trap kube_cleanup EXIT

NS=istioinaction
VIP=198.19.0.10
NODES="1 2 3"
cluster_nodes 3
D=$CLUSTER_DIR
api_up "$D/api" --bookmark-interval 1 || exit 1
KC=$API_KUBECONFIG
k() { api_kubectl "$@"; }

CLUSTER_KUBELET_HOOK=api_kubelet
api_lab_workloads $NS $VIP || exit 1
# a second service, so that a change to one builds one VirtualService and keeps the other's entries
pod_add_on 3 catalog-v1 $NS app=catalog,version=v1
backend_start catalog-v1 v1 "Hello From Catalog (v1)!" --http 8080
k apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Service
metadata: {name: catalog, namespace: $NS}
spec:
  clusterIP: 198.19.0.11
  selector: {app: catalog}
  ports: [{name: http, port: 8080, targetPort: 8080}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: catalog, namespace: $NS}
spec:
  host: catalog
  subsets: [{name: v1, labels: {version: v1}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: catalog, namespace: $NS}
spec:
  hosts: [catalog]
  http: [{route: [{destination: {host: catalog, subset: v1}}]}]
EOF
# every partial build is checked against a whole build of the same objects; a difference is logged
export SLUICE_VERIFY_INCREMENTAL=1
sluiced_start_all --kubernetes --kubeconfig "$KC" --context sluiced || exit 1


# 1. The lab, with kubectl apply: dark launch, 20%, 50%, 100%, then a rollback with sluice weight.
k apply -n $NS -f tests/e2e/lab/purchase-history-dr.yaml -f tests/e2e/lab/purchase-history-vs-all-v1.yaml >/dev/null
wait_for "n1 v1=100 | n2 v1=100 | n3 v1=100" all_weights
check "kubectl apply all-v1: every node routes it" "n1 v1=100 | n2 v1=100 | n3 v1=100" "$(all_weights)"
check "all-v1: every node's clients, 100 of every 100 on v1" "100 100 | 100 100 | 100 100" "$(every_node_window)"
for step in "20-v2 80 20" "50-v2 50 50"; do
	set -- $step
	k apply -n $NS -f "tests/e2e/lab/purchase-history-vs-$1.yaml" >/dev/null
	want="n1 v1=$2 v2=$3 | n2 v1=$2 v2=$3 | n3 v1=$2 v2=$3"
	wait_for "$want" all_weights
	check "kubectl apply $1: every node's weights" "$want" "$(all_weights)"
	check "kubectl apply $1: every node's clients, exactly $2 of every 100 on v1" "$2 $2 | $2 $2 | $2 $2" "$(every_node_window)"
done
k apply -n $NS -f tests/e2e/lab/purchase-history-vs-all-v2.yaml >/dev/null
wait_for "n1 v2=100 | n2 v2=100 | n3 v2=100" all_weights
check "kubectl apply all-v2 (one destination): every node's clients on v2" "0 0 | 0 0 | 0 0" "$(every_node_window)"
k apply -n $NS -f tests/e2e/lab/purchase-history-vs-50-v2.yaml >/dev/null
wait_for "n1 v1=50 v2=50 | n2 v1=50 v2=50 | n3 v1=50 v2=50" all_weights
reads() { sluice_on "$1" status -o json | jq -r '"\(.generation) \(.kubernetes.objectsRead)"'; }
set -- $(reads 1)
k -n $NS annotate pod ph-v2 heartbeat="$(date +%s%N)" >/dev/null
wait_for "$1 $(($2 + 1))" reads 1
check "an annotation on a pod: read again alone, the plan unchanged, no new generation" "$1 $(($2 + 1))" "$(reads 1)"
out=$("$SLUICE_BUILD/sluice" --kubeconfig "$KC" --context rollout weight purchase-history.$NS v1=100 v2=0); rc=$?
check "sluice weight --kubeconfig: the rollback patches the VirtualService" "0 yes" \
	"$rc $(echo "$out" | grep -q "^virtualservice $NS/purchase-history-vs: resourceVersion [0-9]* -> [0-9]*$" && echo yes)"
wait_for "n1 v1=100 v2=0 | n2 v1=100 v2=0 | n3 v1=100 v2=0" all_weights
check "a weight change: the VirtualService alone is read again, one new generation" "$(($1 + 1)) $(($2 + 2))" "$(reads 1)"
check "a weight change: one VirtualService built, the other's entries kept" \
	"built 1 of 2 VirtualServices | built 1 of 2 VirtualServices | built 1 of 2 VirtualServices" \
	"$(for n in $NODES; do sluice_on "$n" status -o json | jq -r '.kubernetes.lastResult' | sed 's/.*; //'; done | paste -sd'|' | sed 's/|/ | /g')"
check "the rollback: every node's clients back on v1" "100 100 | 100 100 | 100 100" "$(every_node_window)"
check "the VirtualService on the API holds the new weights" "100 0" \
	"$(k -n $NS get vs purchase-history-vs -o json | jq -r '[.spec.http[0].route[].weight] | join(" ")')"
msg=$("$SLUICE_BUILD/sluice" --kubeconfig "$KC" --context nobody weight purchase-history.$NS v1=50 v2=50 2>&1); rc=$?
check "sluice weight --kubeconfig as a user without rights: exit 3, the API's words" \
	"3 Error: virtualservices.networking.istio.io is forbidden: User \"nobody\" cannot list resource \"virtualservices\" in API group \"networking.istio.io\" in the namespace \"$NS\" (403 Forbidden); hint: the user of context nobody needs get, list and patch on virtualservices.networking.istio.io" \
	"$rc $msg"
sed "s/$(api_token rollout)/0123456789abcdef/" "$KC" > "$D/stale-kubeconfig"
msg=$("$SLUICE_BUILD/sluice" --kubeconfig "$D/stale-kubeconfig" --context rollout weight purchase-history.$NS v1=50 v2=50 2>&1); rc=$?
check "sluice weight --kubeconfig with a token the API does not know: exit 3, which context" \
	"3 Error: the API server at $API_URL refused the credentials of context rollout (401 Unauthorized)" \
	"$rc $(echo "$msg" | sed 's/ to .*//')"
# a conflict: the object moved between the read and the patch; the CLI reads it again and patches
api_fault fail 1 409 '/virtualservices/purchase-history-vs$' PATCH
out=$("$SLUICE_BUILD/sluice" --kubeconfig "$KC" --context rollout weight purchase-history.$NS v1=90 v2=10); rc=$?
check "sluice weight --kubeconfig after a 409 Conflict: read again, patched" "0 yes" \
	"$rc $(echo "$out" | grep -q "^virtualservice $NS/purchase-history-vs: resourceVersion [0-9]* -> [0-9]* (read again after a conflict)$" && echo yes)"
wait_for "n1 v1=90 v2=10 | n2 v1=90 v2=10 | n3 v1=90 v2=10" all_weights
check "... and every node follows it" "n1 v1=90 v2=10 | n2 v1=90 v2=10 | n3 v1=90 v2=10" "$(all_weights)"
# the lab's rollout again, this time with sluice weight through the API: 20%, 50%, 100%, rollback
for step in "80 20" "50 50" "0 100" "100 0"; do
	set -- $step
	"$SLUICE_BUILD/sluice" --kubeconfig "$KC" --context rollout weight purchase-history.$NS v1=$1 v2=$2 >/dev/null
	want="n1 v1=$1 v2=$2 | n2 v1=$1 v2=$2 | n3 v1=$1 v2=$2"
	wait_for "$want" all_weights
	check "sluice weight v1=$1 v2=$2: every node's clients, exactly $1 of every 100 on v1" "$1 $1 | $1 $1 | $1 $1" \
		"$(every_node_window)"
done
msg=$(sluice_on 1 apply -f tests/e2e/lab/purchase-history-vs-50-v2.yaml 2>&1); rc=$?
check "a local apply on a following node: refused, and why" "1 yes" \
	"$rc $(echo "$msg" | grep -q "sluiced follows the Kubernetes API at $API_URL, which holds the truth" && echo yes)"
msg=$(sluice_on 1 weight purchase-history.$NS v1=50 v2=50 2>&1); rc=$?
check "a local weight change on a following node: refused, and why" "1 yes" \
	"$rc $(echo "$msg" | grep -q "sluiced follows the Kubernetes API at $API_URL, which holds the truth" && echo yes)"
st=$(sluice_on 2 status -o json)
check "status: the follower synced, every resource listed at the API's resourceVersion" "true true" \
	"$(jqr "$st" '.kubernetes.synced') $(jqr "$st" '[.kubernetes.resources[] | .synced] | all')"

# 2. Pods: a new ready pod joins on every node, an unready or deleted one leaves; under traffic
#    no connection goes to a pod after its removal reached the node.
"$SLUICE_BUILD/sluice" --kubeconfig "$KC" --context rollout weight purchase-history.$NS v1=50 v2=50 >/dev/null
pod_add_on 3 ph-v1b $NS app=purchase-history,version=v1
backend_start ph-v1b v1 "Hello From Purchase History (v1b)!" --http 8080
eps() { local n out=""; for n in $NODES; do out+="${out:+ | }$(sluice_on "$n" status purchase-history.$NS -o json | jq -r '[.services[].destinations[] | .endpoints | length] | join(",")')"; done; echo "$out"; }
wait_for "2,1 | 2,1 | 2,1" eps
check "a new ready pod joins every node's plan" "2,1 | 2,1 | 2,1" "$(eps)"
loadgen_exec client-3 -o json \
	--target $VIP:8080 -n 2000000 -c 2 --timeout 2000 > "$D/pods.json" 2>/dev/null &
bg=$!
sleep 0.5
pod_ready ph-v1b false
wait_for "1,1 | 1,1 | 1,1" eps
check "an unready pod leaves every node's plan" "1,1 | 1,1 | 1,1" "$(eps)"
check "a pod's change takes the quick path: every node journals the entries it changed, not the plan" "yes yes yes" \
	"$(for n in $NODES; do [ "$(grep -c '^{"generation":[0-9]*,"services":\[{"name":"purchase-history"' \
		"$D/node$n/state/weights.log")" -ge 1 ] && echo yes; done | paste -sd' ')"
pod_ready ph-v1b true
wait_for "2,1 | 2,1 | 2,1" eps
before=$(sluice_on 3 status purchase-history.$NS -o json | jq '[.services[].destinations[].endpoints[] | select(.address == "'"$(pod_ip ph-v1b)"':8080") | .connections] | add')
k -n $NS delete pod ph-v1b --wait=false >/dev/null
wait_for "1,1 | 1,1 | 1,1" eps
sleep 0.3
after=$(loadgen_in client-3 -o json --target $VIP:8080 -n 200 -c 2 | jq -r '[.backends[].name] | sort | join(",")')
pod_del ph-v1b
kill -INT $bg; wait $bg
out=$(cat "$D/pods.json")
check "a deleted pod leaves every node's plan" "1,1 | 1,1 | 1,1" "$(eps)"
check "after the deletion reached the node, no connection goes to that pod" "ph-v1,ph-v2" "$after"
check "pods joining, turning unready and leaving under traffic: zero failed connections" 0 "$(jqr "$out" '.failed')"
echo "   (ph-v1b had $before connections before its deletion; $(jqr "$out" '.ok') during the churn)"

# 3. Faults under traffic: dropped watches, 410 Gone, the API away for 10 s; a deletion made while
#    the nodes are cut off is reconciled afterwards.
pod_add_on 3 ph-v1c $NS app=purchase-history,version=v1
backend_start ph-v1c v1 "Hello From Purchase History (v1c)!" --http 8080
wait_for "2,1 | 2,1 | 2,1" eps
loadgen_exec client-1 -o json \
	--target $VIP:8080 -n 2000000 -c 2 --timeout 2000 > "$D/faults.json" 2>/dev/null &
bg=$!
sleep 0.3
pod_lists() { sluice_on "$1" status -o json | jq '.kubernetes.resources[] | select(.kind == "Pod") | .lists'; }
lists_before=$(pod_lists 1)
# watches cut and kept away while the API moves on and compacts: they resume into 410 Gone
api_fault fail 1000000 500 '.*' GET >/dev/null
api_fault drop-watches >/dev/null
api_curl admin POST /api/v1/namespaces '{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"moved-on"}}' >/dev/null
api_fault compact >/dev/null
api_fault reset >/dev/null
"$SLUICE_BUILD/sluice" --kubeconfig "$KC" --context rollout weight purchase-history.$NS v1=80 v2=20 >/dev/null
wait_for "n1 v1=80 v2=20 | n2 v1=80 v2=20 | n3 v1=80 v2=20" all_weights
check "dropped watches and 410 Gone: the next change still reaches every node" \
	"n1 v1=80 v2=20 | n2 v1=80 v2=20 | n3 v1=80 v2=20" "$(all_weights)"
pod_relisted() { [ "$(pod_lists 1)" -gt "$lists_before" ] && echo yes; }
WAIT_N=400 wait_for yes pod_relisted   # its watch may still be in its backoff when the weights arrive
check "410 Gone: the Pod reflector listed again (lists: $lists_before -> more)" yes "$(pod_relisted)"
# a slow API: every answer 300 ms late; the nodes follow all the same
api_fault slow 300
"$SLUICE_BUILD/sluice" --kubeconfig "$KC" --context rollout weight purchase-history.$NS v1=70 v2=30 >/dev/null
wait_for "n1 v1=70 v2=30 | n2 v1=70 v2=30 | n3 v1=70 v2=30" all_weights
check "a slow API (300 ms an answer): the change reaches every node" \
	"n1 v1=70 v2=30 | n2 v1=70 v2=30 | n3 v1=70 v2=30" "$(all_weights)"
api_fault slow 0
# the nodes cut off: every request of sluiced fails for a while; meanwhile a pod is deleted
api_fault fail 1000000 500 '.*' GET >/dev/null
api_fault drop-watches >/dev/null
sleep 0.5
api_curl admin DELETE "/api/v1/namespaces/$NS/pods/ph-v1c" >/dev/null
sleep 1
check "cut off from the API: the nodes keep their last plan" "2,1 | 2,1 | 2,1" "$(eps)"
api_fault reset >/dev/null
wait_for "1,1 | 1,1 | 1,1" eps
check "the API back: a deletion made meanwhile is reconciled on every node" "1,1 | 1,1 | 1,1" "$(eps)"
pod_del ph-v1c
api_fault down 10 >/dev/null
sleep 10.5
api_wait_up 10
check "the API down for 10 s: the last weights hold on every node" \
	"n1 v1=70 v2=30 | n2 v1=70 v2=30 | n3 v1=70 v2=30" "$(all_weights)"
"$SLUICE_BUILD/sluice" --kubeconfig "$KC" --context rollout weight purchase-history.$NS v1=20 v2=80 >/dev/null
# after 10 s of failures a reflector's next try may be up to 19 s away (backoff doubling from 0.2 s)
WAIT_N=600 wait_for "n1 v1=20 v2=80 | n2 v1=20 v2=80 | n3 v1=20 v2=80" all_weights
check "after the downtime the nodes follow again" "n1 v1=20 v2=80 | n2 v1=20 v2=80 | n3 v1=20 v2=80" "$(all_weights)"
kill -INT $bg; wait $bg
out=$(cat "$D/faults.json")
check "dropped watches, 410, failures and 10 s of downtime under traffic: zero failed connections" 0 "$(jqr "$out" '.failed')"
check_range "connections during the faults" 1000 100000000 "$(jqr "$out" '.ok')"

# 4. An invalid VirtualService from kubectl: every node names it, and keeps the previous weights.
sed 's/subset: v2/subset: v0/' tests/e2e/lab/purchase-history-vs-50-v2.yaml > "$D/bad-vs.yaml"
k apply -n $NS -f "$D/bad-vs.yaml" >/dev/null
refused() { local n out=""; for n in $NODES; do out+="${out:+ | }$(sluice_on "$n" status -o json | jq -r '[.kubernetes.refused[] | .object] | join(",")')"; done; echo "$out"; }
obj="VirtualService $NS/purchase-history-vs"
wait_for "$obj | $obj | $obj" refused
check "an invalid VirtualService: every node's status names it" "$obj | $obj | $obj" "$(refused)"
check "an invalid VirtualService: the error names the object, the field and what is wrong" \
	"VirtualService $NS/purchase-history-vs: spec.http[0].route[1].destination.subset: subset \"v0\" is not defined by any DestinationRule" \
	"$(sluice_on 3 status -o json | jq -r '.kubernetes.refused[0].errors' | sed 's/ for host .*//')"
check "an invalid VirtualService: every node keeps the previous weights" \
	"n1 v1=20 v2=80 | n2 v1=20 v2=80 | n3 v1=20 v2=80" "$(all_weights)"
set -- $(reads 1)
k -n $NS annotate pod ph-v1 another-batch=1 >/dev/null   # a batch more, the VirtualService still refused
wait_for "$1 $(($2 + 1))" reads 1
check "the refusal is logged once on every node, not at every batch" "1 1 1" \
	"$(for n in $NODES; do grep -c "refused, its last good version stays: $obj: spec.http\[0\]" "$D/node$n/sluiced.log"; done | paste -sd' ')"
k apply -n $NS -f tests/e2e/lab/purchase-history-vs-50-v2.yaml >/dev/null
wait_for "n1 v1=50 v2=50 | n2 v1=50 v2=50 | n3 v1=50 v2=50" all_weights
check "the fixed VirtualService applies on every node" "n1 v1=50 v2=50 | n2 v1=50 v2=50 | n3 v1=50 v2=50 |" \
	"$(all_weights) |$(refused | tr -d ' |')"

# 4b. A node's sluiced killed after pods' changes journaled: the restart replays them.
for ready in false true false; do
	pod_ready ph-v2 $ready
	wait_for "$([ $ready = true ] && echo "1,1 | 1,1 | 1,1" || echo "1,0 | 1,0 | 1,0")" eps
done
sluiced_stop_node 2 KILL
journaled=$(grep -c '^{"generation":[0-9]*,"services":\[' "$D/node2/state/weights.log" 2>/dev/null)
sluiced_start_node 2 --kubernetes --kubeconfig "$KC" --context sluiced || exit 1
check "killed after pods' changes: node 2's restart replays the batches its journal holds" "yes 1" \
	"$([ "${journaled:-0}" -ge 1 ] && echo yes) $(grep -c "replayed the entries of $journaled batch\(es\)\? of the API's changes" \
		"$D/node2/sluiced.log")"
check "killed after pods' changes: node 2 restarts without the unready pod" "1,0 | 1,0 | 1,0" "$(eps)"
pod_ready ph-v2 true
wait_for "1,1 | 1,1 | 1,1" eps

# 4c. A pod's new version refused after a good one (whose text sluiced no longer keeps, only its
#     records): the last good version keeps serving, and the fix is taken.
v2_addrs() { local n out=""; for n in $NODES; do out+="${out:+ | }$(sluice_on "$n" status purchase-history.$NS -o json | jq -r '[.services[] | select(.port == 8080) | .destinations[1].endpoints[].address] | join(",")')"; done; echo "$out"; }
good="$(pod_ip ph-v2):8080"
api_curl admin PATCH "/api/v1/namespaces/$NS/pods/ph-v2/status" '{"status":{"podIP":"10.1.2.999","podIPs":[{"ip":"10.1.2.999"}]}}' >/dev/null
pobj="Pod $NS/ph-v2"
wait_for "$pobj | $pobj | $pobj" refused
check "a pod's invalid new version: refused, why, and that its last good version serves" \
	"true $pobj: status.podIPs[0].ip must be an IP address, got 10.1.2.999" \
	"$(sluice_on 1 status -o json | jq -r '.kubernetes.refused[0] | "\(.lastGoodServes) \(.errors)"')"
check "a pod's invalid new version: every node keeps its last good address" "$good | $good | $good" "$(v2_addrs)"
api_curl admin PATCH "/api/v1/namespaces/$NS/pods/ph-v2/status" "{\"status\":{\"podIP\":\"${good%:*}\",\"podIPs\":[{\"ip\":\"${good%:*}\"}]}}" >/dev/null
wait_for "" refused
check "a pod's fixed version: taken on every node, nothing refused" "$good | $good | $good |" "$(v2_addrs) |$(refused | tr -d ' |')"

# 5. A node's sluiced killed during API churn, then restarted: it adopts, relists, reconciles.
loadgen_exec client-2 -o json \
	--target $VIP:8080 -n 2000000 -c 2 --timeout 2000 > "$D/kill.json" 2>/dev/null &
bg=$!
( for i in $(seq 20); do "$SLUICE_BUILD/sluice" --kubeconfig "$KC" --context rollout weight \
	purchase-history.$NS v1=$((i % 2 * 60 + 20)) v2=$((80 - i % 2 * 60)) >/dev/null; sleep 0.05; done ) &
churn=$!
sleep 0.3
sluiced_stop_node 2 KILL
wait $churn
sluiced_start_node 2 --kubernetes --kubeconfig "$KC" --context sluiced || exit 1
"$SLUICE_BUILD/sluice" --kubeconfig "$KC" --context rollout weight purchase-history.$NS v1=30 v2=70 >/dev/null
wait_for "n1 v1=30 v2=70 | n2 v1=30 v2=70 | n3 v1=30 v2=70" all_weights
check "killed during churn and restarted: node 2 reconciles with the API" \
	"n1 v1=30 v2=70 | n2 v1=30 v2=70 | n3 v1=30 v2=70" "$(all_weights)"
kill -INT $bg; wait $bg
out=$(cat "$D/kill.json")
check "killed during churn and restarted: zero failed connections on node 2" 0 "$(jqr "$out" '.failed')"
check "node 2's clients see the weights after the restart" "30 30" "$(window 2)"
# 6. As in a pod: node 3's sluiced from its service account alone (KUBERNETES_SERVICE_HOST/_PORT,
#    and a private mount namespace puts the double's serviceaccount/ where client-go looks for it),
#    its token rotated while it follows; node 1's from a client certificate.
SA=/var/run/secrets/kubernetes.io/serviceaccount
[ -e /run/secrets ] || made_secrets=1
mkdir -p /run/secrets/kubernetes.io/serviceaccount
kube_cleanup() { api_down; e2e_cleanup; [ -z "${made_secrets:-}" ] || rm -rf /run/secrets; }
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
EP3=$(free_port)
sluiced_stop_node 3
SLUICED_WRAP=(unshare -m --propagation private sh -c \
	"mount --bind \"\$0\" $SA && exec env KUBERNETES_SERVICE_HOST=127.0.0.1 KUBERNETES_SERVICE_PORT=$API_PORT \"\$@\"" \
	"$API_DIR/serviceaccount")
sluiced_start_node 3 --kubernetes --listen 127.0.0.1:$EP3 || exit 1
unset SLUICED_WRAP
# node 1 comes back while the API fails every read: its endpoint says not ready until it has listed
sluiced_stop_node 1
EP_PORT=$(free_port)
EP=http://127.0.0.1:$EP_PORT
api_fault fail 1000000 500 '.*' GET
sluiced_start_node 1 --kubernetes --kubeconfig "$KC" --context sluiced-cert --coalesce-ms 600 --listen 127.0.0.1:$EP_PORT || exit 1
check "/readyz before the first list: 503" "503 not ready: the API's objects are not listed and applied yet" \
	"$(curl -s -o "$D/readyz" -w '%{http_code}' "$EP/readyz") $(cat "$D/readyz")"
api_fault reset
readyz() { curl -s -o /dev/null -w '%{http_code}' "$EP/readyz"; }
WAIT_N=300 wait_for 200 readyz
check "/readyz once the API's objects are applied: 200" 200 "$(readyz)"
metric() { curl -s "$EP/metrics" | awk -v n="$1" '$1 == n { print $2 }'; }
check "/metrics: the follower synced, its VirtualService resourceVersion as status shows it" \
	"1 $(sluice_on 1 status -o json | jq -r '.kubernetes.resources[] | select(.kind == "VirtualService") | .resourceVersion')" \
	"$(metric sluice_kubernetes_synced) $(metric 'sluice_kubernetes_resource_version{kind="VirtualService"}')"
check "promtool: a follower's /metrics follows the exposition format and its naming rules" "" \
	"$(curl -s "$EP/metrics" | promtool check metrics 2>&1)"
ctx() { sluice_on "$1" status -o json | jq -r '"\(.kubernetes.context) \(.kubernetes.server)"'; }
check "in a pod: node 3 follows from its service account" "in-cluster https://127.0.0.1:$API_PORT" "$(ctx 3)"
check "node 1 follows as a client certificate's user" "sluiced-cert $API_URL" "$(ctx 1)"
api_rotate_token sluiced
api_fault drop-watches   # the watches made again present the token the file holds now
# node 2 took its token from the kubeconfig at start, as kubectl does: refused now, it says so
unauthorized() { sluice_on 2 status -o json | jq -r '[.kubernetes.resources[].error | select(test("401"))] | length'; }
wait_for 5 unauthorized
check "a kubeconfig's token revoked: node 2's status says 401 for every resource" 5 "$(unauthorized)"
EP2=$(free_port)
sluiced_stop_node 2
sluiced_start_node 2 --kubernetes --kubeconfig "$KC" --context sluiced --listen 127.0.0.1:$EP2 || exit 1
"$SLUICE_BUILD/sluice" --kubeconfig "$KC" --context rollout weight purchase-history.$NS v1=60 v2=40 >/dev/null
wait_for "n1 v1=60 v2=40 | n2 v1=60 v2=40 | n3 v1=60 v2=40" all_weights
check "the service account's token rotated: node 3 reads the new one and follows on" \
	"n1 v1=60 v2=40 | n2 v1=60 v2=40 | n3 v1=60 v2=40 | " \
	"$(all_weights) | $(sluice_on 3 status -o json | jq -r '[.kubernetes.resources[].error] | map(select(. != "")) | join(",")')"
check "... and node 3's clients see it" "60 60" "$(window 3)"
# node 1 batches for 600 ms: two changes 100 ms apart make one generation there, two elsewhere
gens() { local n; for n in $NODES; do sluice_on "$n" status -o json | jq -r .generation; done | paste -sd' '; }
set -- $(gens)
"$SLUICE_BUILD/sluice" --kubeconfig "$KC" --context rollout weight purchase-history.$NS v1=40 v2=60 >/dev/null
sleep 0.1
"$SLUICE_BUILD/sluice" --kubeconfig "$KC" --context rollout weight purchase-history.$NS v1=10 v2=90 >/dev/null
wait_for "n1 v1=10 v2=90 | n2 v1=10 v2=90 | n3 v1=10 v2=90" all_weights
check "changes within --coalesce-ms make one generation (node 1: 600 ms), each its own elsewhere" \
	"$(($1 + 1)) $(($2 + 2)) $(($3 + 2))" "$(gens)"

# 7. The cluster's view: sluice's DaemonSet pods (as deploy/ makes them: the host network, the
#    endpoint's port) reported by the kubelet; status --cluster and weight --wait read every node.
k create namespace sluice-system >/dev/null
for n in $NODES; do
	port=$(eval echo "\$EP$([ "$n" = 1 ] && echo _PORT || echo "$n")")
	api_curl admin POST /api/v1/namespaces/sluice-system/pods "{\"apiVersion\":\"v1\",\"kind\":\"Pod\",\"metadata\":{\"name\":\"sluiced-n$n\",\"labels\":{\"app.kubernetes.io/name\":\"sluice\"}},\"spec\":{\"nodeName\":\"$(node_ns "$n")\",\"hostNetwork\":true,\"containers\":[{\"name\":\"sluiced\",\"image\":\"localhost/sluice:dev\",\"ports\":[{\"name\":\"endpoint\",\"containerPort\":$port}]}]}}" >/dev/null
	api_curl admin PATCH /api/v1/namespaces/sluice-system/pods/sluiced-n$n/status "{\"status\":{\"phase\":\"Running\",\"podIP\":\"127.0.0.1\",\"conditions\":[{\"type\":\"Ready\",\"status\":\"True\"}]}}" >/dev/null
done
out=$("$SLUICE_BUILD/sluice" --kubeconfig "$KC" --context rollout weight --wait purchase-history.$NS v1=70 v2=30); rc=$?
check "sluice weight --wait: returns once every node applied it, and says how long it took" "0 yes" \
	"$rc $(echo "$out" | grep -qE '^every node \(3\) applied resourceVersion [0-9]+ in [0-9]+ ms$' && echo yes)"
check "... and when it returns, every node serves it" "n1 v1=70 v2=30 | n2 v1=70 v2=30 | n3 v1=70 v2=30" "$(all_weights)"
rv=$(k -n $NS get vs purchase-history-vs -o jsonpath='{.metadata.resourceVersion}')
out=$("$SLUICE_BUILD/sluice" --kubeconfig "$KC" --context rollout status --cluster); rc=$?
check "sluice status --cluster: every node answers with its generation, synced" "0 3" \
	"$rc $(echo "$out" | awk 'NR > 1 && $1 ~ /-node[123]$/ && $4 == "yes"' | wc -l)"
check "sluice status --cluster: each VirtualService's resourceVersion, applied on every node" \
	"virtualservice $NS/purchase-history-vs resourceVersion $rv: applied on every node, 3 of 3 nodes" \
	"$(echo "$out" | grep "^virtualservice $NS/purchase-history-vs ")"
sluiced_stop_node 3
out=$("$SLUICE_BUILD/sluice" --kubeconfig "$KC" --context rollout --timeout 2 weight --wait purchase-history.$NS v1=60 v2=40 2>&1); rc=$?
check "weight --wait with node 3 down: exit 1 after --timeout, naming the node" "1 yes" \
	"$rc $(echo "$out" | grep -q "^Error: 2 of 3 nodes applied resourceVersion [0-9]* of VirtualService $NS/purchase-history-vs within 2 s ($(node_ns 3) unreachable)" && echo yes)"
out=$("$SLUICE_BUILD/sluice" --kubeconfig "$KC" --context rollout status --cluster -o json); rc=$?
check "status --cluster -o json with node 3 down: exit 3, the node unreachable, not converged" "3 false false" \
	"$rc $(echo "$out" | jq -r '"\([.nodes[] | select(.node | endswith("-node3")) | .answered][0]) \([.virtualServices[] | select(.name == "purchase-history-vs") | .converged][0])"')"
SLUICED_WRAP=(unshare -m --propagation private sh -c \
	"mount --bind \"\$0\" $SA && exec env KUBERNETES_SERVICE_HOST=127.0.0.1 KUBERNETES_SERVICE_PORT=$API_PORT \"\$@\"" \
	"$API_DIR/serviceaccount")
sluiced_start_node 3 --kubernetes --listen 127.0.0.1:$EP3 || exit 1
unset SLUICED_WRAP
WAIT_N=200 wait_for "n1 v1=60 v2=40 | n2 v1=60 v2=40 | n3 v1=60 v2=40" all_weights

check "the catalog's clients on every node: all on its v1, through every partial build" "100 | 100 | 100" \
	"$(for n in $NODES; do loadgen_in client-$n -o json --target 198.19.0.11:8080 -n 100 -c 1 | jq -r '.versions.v1'; done | paste -sd'|' | sed 's/|/ | /g')"
check "every partial build on every node gave what a whole build gives" "" \
	"$(grep -h 'verify:' "$D"/node*/sluiced.log)"

e2e_end
