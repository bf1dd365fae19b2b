#!/usr/bin/env bash
# The API server double (tests/apiserver) held to the Kubernetes API by the real kubectl and by curl:
# discovery, get, get -w, apply -f of the labs' files, patch, delete, 401/403/409/410 as kubectl prints
# them, paging, watch semantics (resourceVersion, bookmarks, selectors, 410 after compaction) and the
# faults tests inject. No mini-cluster: only the double, on loopback. KUBECTL=PATH picks a kubectl.
set -u
cd "$(dirname "$0")/../.." || exit 1
TOP=$PWD
. tests/apiserver/lib.sh

# The checks print as tests/e2e/lib.sh's do ("ok NAME" / "FAIL NAME: expected ..., got ..."); that
# file also brings up the mini-cluster, which this test does not need.
FAILED=0
ok() { echo "ok $1"; }
fail() { echo "FAIL $1: $2"; FAILED=$((FAILED + 1)); }
check() { if [ "$2" = "$3" ]; then ok "$1"; else fail "$1" "expected '$2', got '$3'"; fi; }
check_range() {
	if [ "$4" -ge "$2" ] && [ "$4" -le "$3" ]; then ok "$1 ($4 in [$2, $3])"; else fail "$1" "expected $2..$3, got $4"; fi
}

KUBECTL=${KUBECTL:-kubectl}
if ! command -v "$KUBECTL" >/dev/null; then
	fail kubectl "expected a kubectl on PATH (Debian: apt-get install kubernetes-client), got none"
	exit 1
fi
KMINOR=$("$KUBECTL" version --client -o json 2>/dev/null | jq -r '.clientVersion.minor' | tr -dc 0-9)
echo "kubectl $("$KUBECTL" version --client -o json | jq -r .clientVersion.gitVersion)"

D=$(mktemp -d /tmp/sluice-apiserver.XXXXXX)
WATCHERS=()
cleanup() {
	local p
	for p in "${WATCHERS[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
	api_down
	rm -rf "$D"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
api_up "$D/api" --bookmark-interval 1 || { fail api_up "expected the double to start, got no server"; exit 1; }

k() { api_kubectl "$@"; }
NS=istioinaction
LAB=$TOP/tests/e2e/lab
VS=purchase-history-vs
HOST=purchase-history.$NS.svc.cluster.local
VSPATH=/apis/networking.istio.io/v1/namespaces/$NS/virtualservices
# without_age: kubectl's table with the AGE column (the last) taken off, spaces squeezed
without_age() { awk 'NF == 0 { print; next } { $NF = ""; sub(/ +$/, ""); print }'; }
weights() { k get vs $VS -n $NS -o jsonpath='{range .spec.http[0].route[*]}{.destination.subset}={.weight} {end}' | sed 's/ $//'; }
field() { k get "$1" "$2" -n $NS -o jsonpath="$3"; }
# wait_for SECONDS CMD...: until CMD succeeds
wait_for() { local _; for _ in $(seq $(($1 * 20))); do "${@:2}" && return 0; sleep 0.05; done; return 1; }
curl_watch() { curl -sN --cacert "$API_CA" -H "Authorization: Bearer $(api_token "$1")" "$API_URL$2"; }
types() { jq -r '.type' | paste -sd' '; }
list_rv() { api_curl admin GET "$VSPATH" | jq -r .metadata.resourceVersion; }

# ---- patch formats, on their own ----
if out=$(PYTHONDONTWRITEBYTECODE=1 "$API_PYTHON" tests/apiserver/patches_test.py 2>&1); then ok "merge, JSON and strategic merge patch cases"
else fail "merge, JSON and strategic merge patch cases" "expected them to pass, got: $(echo "$out" | tail -3)"; fi

# ---- discovery ----
check "api-resources lists the Istio kinds with their short names" \
	"destinationrules dr DestinationRule|gateways gw Gateway|virtualservices vs VirtualService" \
	"$(k api-resources --api-group=networking.istio.io --no-headers | awk '{print $1, $2, $NF}' | paste -sd'|')"
check "the Istio group serves v1, v1beta1 and v1alpha3, v1 preferred" "v1 v1beta1 v1alpha3 / v1" \
	"$(k get --raw /apis/networking.istio.io | jq -r '"\([.versions[].version] | join(" ")) / \(.preferredVersion.version)"')"

# ---- a namespace, a Service and two Pods, the kubelet's part played through pods/status ----
check "kubectl create namespace" "namespace/$NS created" "$(k create namespace $NS 2>&1)"
cat > "$D/svc.yaml" <<EOF
apiVersion: v1
kind: Service
metadata: {name: purchase-history, namespace: $NS, labels: {app: purchase-history}}
spec:
  clusterIP: 198.19.0.10
  selector: {app: purchase-history}
  ports:
  - {name: http, port: 8080, targetPort: 8080}
  - {name: admin, port: 9090}
EOF
pod_yaml() {
	printf 'apiVersion: v1\nkind: Pod\nmetadata: {name: purchase-history-%s, namespace: %s, labels: {app: purchase-history, version: %s}}\n' "$1" $NS "$1"
	printf 'spec:\n  nodeName: node-%s\n  containers:\n  - {name: app, image: "purchase-history:%s", ports: [{containerPort: 8080}]}\n' "$2" "$1"
}
{ pod_yaml v1 1; echo ---; pod_yaml v2 2; } > "$D/pods.yaml"
check "kubectl apply of a Service and two Pods" \
	"service/purchase-history created|pod/purchase-history-v1 created|pod/purchase-history-v2 created" \
	"$(k apply -f "$D/svc.yaml" -f "$D/pods.yaml" 2>&1 | paste -sd'|')"
kubelet_status() { # POD READY(True|False) IP
	api_curl admin PATCH "/api/v1/namespaces/$NS/pods/purchase-history-$1/status" "$(jq -cn --arg r "$2" --arg ip "$3" '
		{status: {phase: "Running", podIP: $ip, podIPs: [{ip: $ip}], hostIP: "198.18.254.1",
		  conditions: [{type: "PodScheduled", status: "True"}, {type: "Ready", status: $r}],
		  containerStatuses: [{name: "app", ready: ($r == "True"), restartCount: 0, image: "x", imageID: "",
		    started: true, state: {running: {startedAt: "2025-01-01T00:00:00Z"}}}]}}')" \
		application/strategic-merge-patch+json >/dev/null
}
kubelet_status v1 True 198.18.1.1
check "a new pod is Pending until the kubelet writes its status" "Pending" "$(field pod purchase-history-v2 '{.status.phase}')"

# ---- the lab, applied as the lab applies it ----
check "kubectl apply -f of the lab's VirtualService and DestinationRule" \
	"virtualservice.networking.istio.io/$VS created|destinationrule.networking.istio.io/purchase-history-dr created" \
	"$(k apply -n $NS -f "$LAB/purchase-history-vs-all-v1.yaml" -f "$LAB/purchase-history-dr.yaml" 2>&1 | paste -sd'|')"
cat > "$D/all.txt" <<EOF
NAMESPACE NAME TYPE CLUSTER-IP EXTERNAL-IP PORT(S)
$NS service/purchase-history ClusterIP 198.19.0.10 <none> 8080/TCP,9090/TCP

NAMESPACE NAME READY STATUS RESTARTS
$NS pod/purchase-history-v1 1/1 Running 0
$NS pod/purchase-history-v2 0/1 Pending 0

NAMESPACE NAME GATEWAYS HOSTS
$NS virtualservice.networking.istio.io/$VS ["$HOST"]

NAMESPACE NAME HOST
$NS destinationrule.networking.istio.io/purchase-history-dr $HOST
EOF
check "kubectl get svc,pods,vs,dr,gw -A prints what a cluster prints" "$(cat "$D/all.txt")" \
	"$(k get svc,pods,vs,dr,gw -A 2>&1 | without_age)"
rv1=$(field vs $VS '{.metadata.resourceVersion}')
check "the lab's dark launch: all to v1, generation 1" "v1=100 gen 1" "$(weights) gen $(field vs $VS '{.metadata.generation}')"
prev=$rv1 gen=1
for step in 20-v2:"v1=80 v2=20" 50-v2:"v1=50 v2=50" all-v2:"v2=100" all-v1:"v1=100"; do
	file=$LAB/purchase-history-vs-${step%%:*}.yaml
	out=$(k apply -n $NS -f "$file" 2>&1)
	rv=$(field vs $VS '{.metadata.resourceVersion}')
	gen=$((gen + 1))
	check "apply purchase-history-vs-${step%%:*}.yaml: configured, weights, generation $gen, resourceVersion moved" \
		"virtualservice.networking.istio.io/$VS configured|${step#*:}|$gen|moved" \
		"$out|$(weights)|$(field vs $VS '{.metadata.generation}')|$([ "$rv" -gt "$prev" ] && echo moved || echo "$prev -> $rv")"
	prev=$rv
done
check "the same file applied again is unchanged and writes nothing" \
	"virtualservice.networking.istio.io/$VS unchanged|$prev" \
	"$(k apply -n $NS -f "$LAB/purchase-history-vs-all-v1.yaml" 2>&1)|$(field vs $VS '{.metadata.resourceVersion}')"
k apply -n $NS -f "$LAB/purchase-history-vs-20-v2.yaml" >/dev/null 2>&1
check "kubectl get vs -o yaml shows the canary's routes" "subset: v1 weight: 80 subset: v2 weight: 20" \
	"$(k get vs -n $NS -o yaml | grep -E '^ +(subset|weight):' | tr -s ' ' | sed 's/^ //' | paste -sd' ')"
check "the last-applied-configuration annotation round-trips the file" \
	"$(k create --dry-run=client -n $NS -f "$LAB/purchase-history-vs-20-v2.yaml" -o json | jq -cS '[.apiVersion, .spec]')" \
	"$(field vs $VS '{.metadata.annotations.kubectl\.kubernetes\.io/last-applied-configuration}' | jq -cS '[.apiVersion, .spec]')"
rv=$(field vs $VS '{.metadata.resourceVersion}')
check "one object, served in every Istio version" \
	"networking.istio.io/v1alpha3 $rv|networking.istio.io/v1beta1 $rv|networking.istio.io/v1 $rv" \
	"$(for v in v1alpha3 v1beta1 v1; do k get virtualservices.$v.networking.istio.io $VS -n $NS \
		-o jsonpath='{.apiVersion} {.metadata.resourceVersion}'; echo; done | paste -sd'|')"

# ---- strategic merge patch through kubectl apply, and the status subresource ----
sed -i '/name: admin, port: 9090/d; s/selector: {app: purchase-history}/selector: {app: purchase-history, tier: web}/' "$D/svc.yaml"
check "apply of a Service with a port removed: the port goes, the allocated clusterIP stays" \
	"service/purchase-history configured|8080|198.19.0.10|purchase-history web" \
	"$(k apply -f "$D/svc.yaml" 2>&1)|$(field svc purchase-history '{.spec.ports[*].port}')|$(field svc purchase-history \
		'{.spec.clusterIP}')|$(field svc purchase-history '{.spec.selector.app} {.spec.selector.tier}')"
kubelet_status v2 True 198.18.2.1
kubelet_status v2 False 198.18.2.1
check "pods/status: the kubelet's Ready=False merges into the conditions by type" "PodScheduled=True Ready=False 0/1" \
	"$(field pod purchase-history-v2 '{range .status.conditions[*]}{.type}={.status} {end}')$(k get pod \
		purchase-history-v2 -n $NS --no-headers | awk '{print $2}')"
api_curl admin PATCH "/api/v1/namespaces/$NS/pods/purchase-history-v2/status" \
	'{"metadata":{"labels":{"version":"v9"}},"status":{"phase":"Failed"}}' >/dev/null
api_curl admin PATCH "/api/v1/namespaces/$NS/pods/purchase-history-v2" '{"status":{"phase":"Succeeded"}}' >/dev/null
check "pods/status writes only status; the pod itself never writes status" "v2 Failed" \
	"$(field pod purchase-history-v2 '{.metadata.labels.version} {.status.phase}')"
kubelet_status v2 True 198.18.2.1

# ---- patch, conflicts, delete ----
P="{\"spec\":{\"http\":[{\"route\":[{\"destination\":{\"host\":\"$HOST\",\"subset\":\"v1\"},\"weight\":90},{\"destination\":{\"host\":\"$HOST\",\"subset\":\"v2\"},\"weight\":10}]}]}}"
check "kubectl patch --type merge by the rollout user" "virtualservice.networking.istio.io/$VS patched|v1=90 v2=10" \
	"$(k --context rollout patch vs $VS -n $NS --type merge -p "$P" 2>&1)|$(weights)"
check "the same patch again changes nothing" "virtualservice.networking.istio.io/$VS patched (no change)" \
	"$(k --context rollout patch vs $VS -n $NS --type merge -p "$P" 2>&1)"
check "kubectl patch --type json" "virtualservice.networking.istio.io/$VS patched|v1=70 v2=30" \
	"$(k patch vs $VS -n $NS --type json -p '[{"op":"test","path":"/spec/http/0/route/0/weight","value":90},{"op":"replace","path":"/spec/http/0/route/0/weight","value":70},{"op":"replace","path":"/spec/http/0/route/1/weight","value":30}]' 2>&1)|$(weights)"
check "a patch holding a stale resourceVersion is a conflict" \
	"Error from server (Conflict): Operation cannot be fulfilled on virtualservices.networking.istio.io \"$VS\": the object has been modified; please apply your changes to the latest version and try again" \
	"$(k patch vs $VS -n $NS --type merge -p "{\"metadata\":{\"resourceVersion\":\"$rv1\"}}" 2>&1)"
body=$(k get vs $VS -n $NS -o json | jq -c ".metadata.resourceVersion = \"$rv1\"")
api_curl admin PUT "$VSPATH/$VS" "$body" > "$D/put.json"
check "an update (PUT) with a stale resourceVersion is 409 Conflict" "409 Conflict" "$(api_status) $(jq -r .reason "$D/put.json")"
api_curl admin POST "$VSPATH" "$(jq -c 'del(.metadata.resourceVersion, .metadata.uid)' <<< "$body")" > "$D/post.json"
check "a second create of the same name is 409 AlreadyExists" \
	"409 AlreadyExists virtualservices.networking.istio.io \"$VS\" already exists" \
	"$(api_status) $(jq -r '"\(.reason) \(.message)"' "$D/post.json")"
cat > "$D/bad-vs.yaml" <<EOF
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {name: typo, namespace: $NS}
spex: {hosts: [x]}
EOF
if [ "${KMINOR:-0}" -ge 25 ]; then
	check "kubectl apply's server-side strict field validation refuses an unknown field" \
		"Error from server (BadRequest): error when creating \"$D/bad-vs.yaml\": VirtualService in version \"v1beta1\" cannot be handled as a VirtualService: strict decoding error: unknown field \"spex\"" \
		"$(k apply -f "$D/bad-vs.yaml" 2>&1)"
else
	check "kubectl 1.$KMINOR validates on the client without schemas; the server warns and drops the unknown field" \
		"Warning: unknown field \"spex\"|virtualservice.networking.istio.io/typo created|null" \
		"$(k apply -f "$D/bad-vs.yaml" 2>&1 | paste -sd'|')|$(k get vs typo -n $NS -o json | jq -c .spex)"
	k delete vs typo -n $NS >/dev/null
fi
check "kubectl delete" "destinationrule.networking.istio.io \"purchase-history-dr\" deleted" \
	"$(k delete dr purchase-history-dr -n $NS 2>&1)"
check "a deleted object is NotFound" \
	"Error from server (NotFound): destinationrules.networking.istio.io \"purchase-history-dr\" not found" \
	"$(k get dr purchase-history-dr -n $NS 2>&1)"

# ---- who may do what ----
check "the nobody user is refused a list, in the authorizer's words" \
	"Error from server (Forbidden): virtualservices.networking.istio.io is forbidden: User \"nobody\" cannot list resource \"virtualservices\" in API group \"networking.istio.io\" in the namespace \"$NS\"" \
	"$(k --context nobody get vs -n $NS 2>&1)"
check "sluiced may read, not patch" \
	"Error from server (Forbidden): virtualservices.networking.istio.io \"$VS\" is forbidden: User \"sluiced\" cannot patch resource \"virtualservices\" in API group \"networking.istio.io\" in the namespace \"$NS\"" \
	"$(k --context sluiced patch vs $VS -n $NS --type merge -p "$P" 2>&1)"
check "sluiced lists every kind it follows in all namespaces" "0 0 0 0 0" \
	"$(for r in services pods vs dr gw; do k --context sluiced get $r -A >/dev/null 2>&1; printf '%s ' $?; done | sed 's/ $//')"
check "rollout may not delete, nor write pods/status" \
	"Error from server (Forbidden): virtualservices.networking.istio.io \"$VS\" is forbidden: User \"rollout\" cannot delete resource \"virtualservices\" in API group \"networking.istio.io\" in the namespace \"$NS\"|403 pods \"purchase-history-v1\" is forbidden: User \"rollout\" cannot patch resource \"pods/status\" in API group \"\" in the namespace \"$NS\"" \
	"$(k --context rollout delete vs $VS -n $NS 2>&1)|$(api_curl rollout PATCH /api/v1/namespaces/$NS/pods/purchase-history-v1/status '{}' | jq -r '"\(.code) \(.message)"')"
api_curl sluiced POST /_sluice/faults '{"compact":true}' > "$D/ctl.json"
check "only admin may inject faults" "403 forbidden: User \"sluiced\" cannot post path \"/_sluice/faults\"" \
	"$(api_status) $(jq -r .message "$D/ctl.json")"
check "a bad token is 401, as kubectl prints it" "error: You must be logged in to the server (Unauthorized)" \
	"$(k --token not-a-token get vs -n $NS 2>&1 | tail -1)"
check "a client certificate authenticates its CN: sluiced-cert reads as sluiced, and only as sluiced" \
	"0|Error from server (Forbidden): namespaces is forbidden: User \"sluiced\" cannot list resource \"namespaces\" in API group \"\" at the cluster scope" \
	"$(k --context sluiced-cert get vs -n $NS >/dev/null 2>&1; echo $?)|$(k --context sluiced-cert get ns 2>&1)"
old_token=$(cat "$API_SA_DIR/token")
api_rotate_token sluiced
check "a rotated token: the old one is 401 at once, the new one is in the kubeconfig and the service account's file" \
	"401|0|new" \
	"$(curl -s -o /dev/null -w '%{http_code}' --cacert "$API_SA_DIR/ca.crt" -H "Authorization: Bearer $old_token" \
		"$API_URL$VSPATH")|$(k --context sluiced get vs -n $NS >/dev/null 2>&1; echo $?)|$([ "$(cat "$API_SA_DIR/token")" = \
		"$(api_token sluiced)" ] && [ "$old_token" != "$(api_token sluiced)" ] && echo new)"
api_curl nobody-at-all GET "$VSPATH" > "$D/401.json"
check "no token at all is 401 with an Unauthorized Status" "401 Status Unauthorized Unauthorized" \
	"$(api_status) $(jq -r '"\(.kind) \(.reason) \(.message)"' "$D/401.json")"

# ---- watch: kubectl get -w, then the protocol itself with curl ----
k get vs -n $NS -w --output-watch-events > "$D/kwatch.out" 2>&1 &
WATCHERS+=($!)
wait_for 10 grep -q "^ADDED .*$VS" "$D/kwatch.out"
api_curl rollout PATCH "$VSPATH/$VS" "$(jq -cn '{spec: {http: [{route: [{destination: {host: "'"$HOST"'", subset: "v1"}, weight: 60}, {destination: {host: "'"$HOST"'", subset: "v2"}, weight: 40}]}]}}')" >/dev/null
wait_for 10 grep -q "^MODIFIED .*$VS" "$D/kwatch.out"
check "kubectl get vs -w sees a change another client made" "EVENT NAME|ADDED $VS|MODIFIED $VS" \
	"$(awk '{print $1, $2}' "$D/kwatch.out" | paste -sd'|')"
kill "${WATCHERS[@]}"; wait "${WATCHERS[@]}" 2>/dev/null; WATCHERS=()
rv_before=$(field vs $VS '{.metadata.resourceVersion}')
k --context rollout patch vs $VS -n $NS --type merge -p "$P" >/dev/null
k apply -n $NS -f "$LAB/purchase-history-dr.yaml" >/dev/null
rv_now=$(list_rv)
curl_watch sluiced "$VSPATH?watch=1&resourceVersion=$rv_before&timeoutSeconds=1" > "$D/w1.json"
check "a watch from resourceVersion N gets exactly the events after N" "MODIFIED 90" \
	"$(jq -r '"\(.type) \(.object.spec.http[0].route[0].weight)"' "$D/w1.json" | paste -sd'|')"
curl_watch sluiced "/apis/networking.istio.io/v1/virtualservices?watch=1&timeoutSeconds=1" > "$D/w2.json"
check "a watch without resourceVersion starts with the state as ADDED events" "ADDED $VS" \
	"$(jq -r '"\(.type) \(.object.metadata.name)"' "$D/w2.json" | paste -sd'|')"
curl_watch sluiced "$VSPATH?watch=1&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true&timeoutSeconds=1" > "$D/w2b.json"
check "a streaming list (sendInitialEvents): the state, then a bookmark marking its end" "ADDED $VS|BOOKMARK true" \
	"$(head -2 "$D/w2b.json" | jq -r '"\(.type) \(.object.metadata.name // .object.metadata.annotations["k8s.io/initial-events-end"])"' | paste -sd'|')"
t0=$(date +%s%N)
curl_watch sluiced "$VSPATH?watch=1&resourceVersion=$rv_now&allowWatchBookmarks=true&timeoutSeconds=3" > "$D/w3.json"; rc=$?
ms=$((($(date +%s%N) - t0) / 1000000))
check "bookmarks come every second carrying the current resourceVersion, and the stream ends at timeoutSeconds" \
	"BOOKMARK BOOKMARK BOOKMARK|$rv_now|0" \
	"$(types < "$D/w3.json" | cut -d' ' -f1-3)|$(jq -r .object.metadata.resourceVersion "$D/w3.json" | sort -u | paste -sd,)|$rc"
check_range "the watch lasted timeoutSeconds=3 (ms)" 2900 6000 "$ms"
curl_watch sluiced "/api/v1/namespaces/$NS/pods?watch=1&labelSelector=version%3Dv2&resourceVersion=$rv_now&timeoutSeconds=2" > "$D/w4.json" &
WATCHERS+=($!)
curl_watch sluiced "/api/v1/pods?watch=1&fieldSelector=metadata.name%3Dpurchase-history-v1&resourceVersion=$rv_now&timeoutSeconds=2" > "$D/w5.json" &
WATCHERS+=($!)
sleep 0.3
k label pod purchase-history-v2 -n $NS version=v3 --overwrite >/dev/null
k label pod purchase-history-v2 -n $NS version=v2 --overwrite >/dev/null
k label pod purchase-history-v1 -n $NS tier=web >/dev/null
wait "${WATCHERS[@]}" 2>/dev/null
WATCHERS=()
check "a label selector watch: leaving the selection is DELETED, entering it ADDED" "DELETED v3|ADDED v2" \
	"$(jq -r '"\(.type) \(.object.metadata.labels.version)"' "$D/w4.json" | paste -sd'|')"
check "a field selector watch on metadata.name sees that pod only" "MODIFIED purchase-history-v1 web" \
	"$(jq -r '"\(.type) \(.object.metadata.name) \(.object.metadata.labels.tier)"' "$D/w5.json" | paste -sd'|')"

# ---- paging ----
jq -cn --arg ns paging '{kind: "List", items: [range(1; 26) | {apiVersion: "v1", kind: "Pod",
	metadata: {name: ("p-\(if . < 10 then "0" else "" end)\(.)"), namespace: $ns, labels: {app: "pager"}},
	spec: {containers: [{name: "c", image: "x"}]}, status: {phase: "Running"}}]}' > "$D/load.json"
check "api_load stores 25 pods" "25" "$(api_load "$D/load.json" | jq -r .loaded)"
api_curl sluiced GET "/api/v1/namespaces/paging/pods?limit=10" > "$D/page1.json"
cont=$(jq -r .metadata.continue "$D/page1.json")
check "limit=10: ten items, a continue token, 15 remaining" "10 15 token" \
	"$(jq -r '"\(.items | length) \(.metadata.remainingItemCount) \(if (.metadata.continue // "") != "" then "token" else "none" end)"' "$D/page1.json")"
api_curl admin POST /api/v1/namespaces/paging/pods \
	'{"metadata":{"name":"p-00"},"spec":{"containers":[{"name":"c","image":"x"}]}}' >/dev/null
names=$(jq -r '.items[].metadata.name' "$D/page1.json")
while [ -n "$cont" ] && [ "$cont" != null ]; do
	api_curl sluiced GET "/api/v1/namespaces/paging/pods?limit=10&continue=$cont" > "$D/page.json"
	names+=$'\n'$(jq -r '.items[].metadata.name' "$D/page.json")
	cont=$(jq -r '.metadata.continue // empty' "$D/page.json")
done
check "the pages hold the 25 pods in key order, as of the first page (a pod made meanwhile is not in them)" \
	"$(seq -f 'p-%02g' 1 25 | paste -sd' ')" "$(echo "$names" | paste -sd' ')"
before=$(grep -c 'GET /api/v1/namespaces/paging/pods?[^ ]*limit=7' "$API_DIR/apiserver.log")
check "kubectl get --chunk-size=7 pages through all 26 pods" "26 4" \
	"$(k get pods -n paging --chunk-size=7 --no-headers | wc -l) $(($(grep -c 'GET /api/v1/namespaces/paging/pods?[^ ]*limit=7' "$API_DIR/apiserver.log") - before))"
old_cont=$(jq -r .metadata.continue "$D/page1.json")

# ---- compaction: 410 Gone for old resourceVersions and continue tokens ----
api_fault compact
curl_watch sluiced "$VSPATH?watch=1&resourceVersion=$rv_before" > "$D/w6.json"
check "after compaction, a watch from an older resourceVersion gets an ERROR event with a 410 Status" \
	"ERROR 410 Expired too old resource version: $rv_before" \
	"$(jq -r '"\(.type) \(.object.code) \(.object.reason) \(.object.message)"' "$D/w6.json" | sed 's/ ([0-9]*)$//')"
api_curl sluiced GET "/api/v1/namespaces/paging/pods?limit=10&continue=$old_cont" > "$D/gone.json"
check "an expired continue token is HTTP 410 Expired" "410 Expired" "$(api_status) $(jq -r .reason "$D/gone.json")"
rv_now=$(list_rv)
curl_watch sluiced "$VSPATH?watch=1&resourceVersion=$rv_now&timeoutSeconds=1" > "$D/w7.json"
check "a watch from the current resourceVersion still works after compaction" "" "$(types < "$D/w7.json")"

# ---- faults ----
api_fault fail 2 500 '/virtualservices'
c1=$(api_curl sluiced GET "$VSPATH" | jq -r .code); c2=$(api_curl sluiced GET "$VSPATH" | jq -r .reason)
api_curl sluiced GET "$VSPATH" >/dev/null
check "fail 2: the next two requests get 500 InternalError, the third is served" "500 InternalError 200" "$c1 $c2 $(api_status)"
api_fault fail 1 500 '/virtualservices'
check "kubectl shows the 500" "Error from server (InternalError): Internal error occurred: injected fault (sluice test double)" \
	"$(k get vs -n $NS 2>&1 | tail -1)"
curl_watch sluiced "$VSPATH?watch=1" > "$D/w8.json" &
wpid=$!
WATCHERS+=("$wpid")
wait_for 5 grep -q ADDED "$D/w8.json"
api_fault drop-watches
wait_for 5 bash -c "! kill -0 $wpid 2>/dev/null"
wait "$wpid"; rc=$?
WATCHERS=()
check "drop-watches cuts an open watch (curl: exit 18, transfer closed mid-stream), none left open" "18 0" \
	"$rc $(api_stats | jq -r .watches_open)"
# A watcher that never reads must not hold back the others: its socket fills, its thread waits.
"$API_PYTHON" - "$API_PORT" "$API_CA" "$(api_token sluiced)" <<'PY' &
import socket, ssl, sys, time
ctx = ssl.create_default_context(cafile=sys.argv[2])
raw = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
s = ctx.wrap_socket(raw, server_hostname="127.0.0.1")
s.sendall(b"GET /api/v1/pods?watch=1&timeoutSeconds=60 HTTP/1.1\r\nHost: 127.0.0.1\r\n"
          b"Authorization: Bearer %s\r\n\r\n" % sys.argv[3].encode())
time.sleep(60)
PY
staller=$!
WATCHERS+=("$staller")
watches_open() { [ "$(api_stats | jq .watches_open)" = "$1" ]; }
wait_for 5 watches_open 1
rv_now=$(list_rv)
curl_watch sluiced "/api/v1/pods?watch=1&resourceVersion=$rv_now&timeoutSeconds=8" > "$D/w9.json" &
WATCHERS+=($!)
wait_for 5 watches_open 2
jq -cn '{kind: "List", items: [range(3000) | {apiVersion: "v1", kind: "Pod",
	metadata: {name: "big-\(.)", namespace: "stall", annotations: {pad: ("x" * 2048)}},
	spec: {containers: [{name: "c", image: "x"}]}}]}' > "$D/big.json"
added() { [ "$(grep -c '"type":"ADDED"' "$D/w9.json")" -ge "$1" ]; }
t0=$(date +%s%N)
api_load "$D/big.json" >/dev/null
wait_for 10 added 3000
ms=$((($(date +%s%N) - t0) / 1000000))
check "a watcher that never reads does not hold back another: all 3000 events (6 MB) reach it, both watches open" \
	"3000 2" "$(grep -c '"type":"ADDED"' "$D/w9.json") $(api_stats | jq .watches_open)"
check_range "... within 5 s of the write (ms)" 0 5000 "$ms"
kill "${WATCHERS[@]}" 2>/dev/null
wait "${WATCHERS[@]}" 2>/dev/null
WATCHERS=()
api_fault slow 400 '/virtualservices'
ms=$(curl -s -o /dev/null -w '%{time_total}' --cacert "$API_CA" -H "Authorization: Bearer $(api_token admin)" "$API_URL$VSPATH" | awk '{printf "%d", $1 * 1000}')
api_fault slow 0
check_range "slow 400: a request takes 400 ms more (ms)" 400 3000 "$ms"
rv_now=$(k get vs $VS -n $NS -o jsonpath='{.metadata.resourceVersion}')
t0=$(date +%s%N)
api_fault down 2
curl -s --cacert "$API_CA" "$API_URL/readyz" >/dev/null; rc=$?
api_wait_up 10
ms=$((($(date +%s%N) - t0) / 1000000))
check "down 2: connections refused (curl exit 7), then back with its data" "7|$rv_now" \
	"$rc|$(k get vs $VS -n $NS -o jsonpath='{.metadata.resourceVersion}')"
check_range "down 2: back after 2 s (ms)" 1900 6000 "$ms"
api_fault crds off
check "crds off: the Istio kinds leave discovery, their paths are 404, kubectl knows no vs" \
	"0|404|error: the server doesn't have a resource type \"vs\"" \
	"$(k api-resources --api-group=networking.istio.io --no-headers 2>/dev/null | wc -l)|$(api_curl admin GET "$VSPATH" >/dev/null; api_status)|$(k get vs -n $NS 2>&1 | tail -1)"
api_fault crds on
check "crds on: installed again, and empty" "3|No resources found in $NS namespace." \
	"$(k api-resources --api-group=networking.istio.io --no-headers 2>/dev/null | wc -l)|$(k get vs -n $NS 2>&1)"
api_fault reset

# ---- finalizers: a delete marks the object, the last finalizer's removal deletes it ----
api_curl admin POST "$VSPATH" '{"metadata":{"name":"held","finalizers":["example.com/hold"]},"spec":{"hosts":["x"]}}' >/dev/null
k delete vs held -n $NS --wait=false >/dev/null 2>&1
check "delete of an object with a finalizer sets deletionTimestamp and keeps it" "set example.com/hold" \
	"$(field vs held '{.metadata.deletionTimestamp}' | sed 's/.\+/set/') $(field vs held '{.metadata.finalizers[0]}')"
k patch vs held -n $NS --type json -p '[{"op":"remove","path":"/metadata/finalizers"}]' >/dev/null 2>&1
check "removing the last finalizer deletes it" "404" "$(api_curl admin GET "$VSPATH/held" >/dev/null; api_status)"

# ---- namespaces ----
check "deleting a namespace deletes what is in it" "namespace \"paging\" deleted|0" \
	"$(k delete namespace paging 2>&1)|$(api_curl admin GET /api/v1/pods?labelSelector=app%3Dpager | jq '.items | length')"

[ -s "$API_DIR/apiserver.out" ] && { echo "apiserver.out:"; cat "$API_DIR/apiserver.out"; }
grep -q 'error on' "$API_DIR/apiserver.log" && { fail "the double's log" "expected no internal error, got: $(grep -A3 'error on' "$API_DIR/apiserver.log" | head -20)"; }
[ "$FAILED" = 0 ]
