# shellcheck shell=bash
# The Kubernetes API server double (apiserver.py beside this file), for tests to source:
#   api_up DIR [SERVER OPTIONS...]   CA, server certificate, tokens, the server on 127.0.0.1 at a free
#                                    port (API_NETNS=NS API_ADDRESS=IP: in that network namespace at
#                                    that address, as a control plane on the nodes' network), DIR/kubeconfig with one context per user (current: admin;
#                                    sluiced-cert: the sluiced user by client certificate),
#                                    DIR/serviceaccount/{token,ca.crt,namespace} (the sluiced user, as
#                                    a pod's service account); exports API_URL API_PORT API_CA API_DIR
#                                    API_KUBECONFIG API_SA_DIR, and KUBECONFIG and KUBECACHEDIR so that
#                                    kubectl uses only DIR
#   api_down                         stops it (safe from traps, twice, after a crash)
#   api_token USER                   the bearer token of admin, sluiced, rollout or nobody
#   api_rotate_token USER            a new token; the old one is 401 at once; files follow
#   api_curl USER METHOD PATH [BODY|@FILE] [CONTENT-TYPE]
#                                    the response body on stdout, its HTTP code in DIR/last_status
#                                    (api_status); returns 0 for 2xx. PATCH defaults to a merge patch.
#   api_kubectl [ARGS...]            the real kubectl against the double, caches kept in DIR
#   api_fault drop-watches [RESOURCE] | fail COUNT [CODE] [PATH-REGEX] [METHOD] | compact |
#             down SECONDS | slow MS [PATH-REGEX] | crds on|off | reset
#   api_load FILE                    objects stored as given (a JSON List or array), events sent
#   api_stats                        requests per user and verb, watches, events sent (JSON)
#   api_wait_up [SECONDS]            until the server answers again (after `api_fault down`)
# Server options: apiserver.py --help (--bookmark-interval S, --history N, --no-crds, --load FILE,
# --graceful-pod-deletion, ...). Needs python3, openssl, curl and jq.

API_LIB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
API_PYTHON=${API_PYTHON:-python3}
API_USERS="admin sluiced rollout nobody"
API_ADDRESS=${API_ADDRESS:-127.0.0.1}

# api_in CMD...: CMD where the server can be reached (API_NETNS's network namespace, when set).
api_in() { ${API_NETNS:+nsenter --net="/run/netns/$API_NETNS"} "$@"; }

api_log() { echo "apiserver: $*" >&2; }

# api_certs DIR: an EC P-256 CA and a server certificate for API_ADDRESS and localhost, two days long.
api_certs() {
	local d=$1
	openssl ecparam -name prime256v1 -genkey -noout -out "$d/ca.key" 2>/dev/null &&
	openssl req -x509 -new -key "$d/ca.key" -subj "/CN=sluice-test-ca" -days 2 -out "$d/ca.crt" \
		-addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
		2>/dev/null &&
	openssl ecparam -name prime256v1 -genkey -noout -out "$d/server.key" 2>/dev/null &&
	openssl req -new -key "$d/server.key" -subj "/CN=kube-apiserver" -out "$d/server.csr" 2>/dev/null &&
	printf '%s\n' "subjectAltName=IP:$API_ADDRESS,DNS:localhost" "extendedKeyUsage=serverAuth" \
		"keyUsage=critical,digitalSignature,keyEncipherment" "basicConstraints=CA:FALSE" > "$d/server.ext" &&
	openssl x509 -req -in "$d/server.csr" -CA "$d/ca.crt" -CAkey "$d/ca.key" \
		-set_serial "0x$(od -An -tx1 -N8 /dev/urandom | tr -d ' \n')" -days 2 \
		-extfile "$d/server.ext" -out "$d/server.crt" 2>/dev/null &&
	# a client certificate for the sluiced user (CN is the user, O a group), as kubeadm makes them
	openssl ecparam -name prime256v1 -genkey -noout -out "$d/sluiced-client.key" 2>/dev/null &&
	openssl req -new -key "$d/sluiced-client.key" -subj "/O=sluice/CN=sluiced" -out "$d/sluiced-client.csr" \
		2>/dev/null &&
	printf '%s\n' "extendedKeyUsage=clientAuth" "keyUsage=critical,digitalSignature" > "$d/client.ext" &&
	openssl x509 -req -in "$d/sluiced-client.csr" -CA "$d/ca.crt" -CAkey "$d/ca.key" \
		-set_serial "0x$(od -An -tx1 -N8 /dev/urandom | tr -d ' \n')" -days 2 \
		-extfile "$d/client.ext" -out "$d/sluiced-client.crt" 2>/dev/null
}

api_up() {
	local dir=${1:?api_up DIR}
	shift
	mkdir -p "$dir" || return 1
	API_DIR=$(cd "$dir" && pwd)
	API_CA=$API_DIR/ca.crt
	api_certs "$API_DIR" || { api_log "openssl failed making the certificates in $API_DIR"; return 1; }
	local u
	: > "$API_DIR/tokens.csv"
	for u in $API_USERS; do
		printf '%s,%s,uid-%s,"system:authenticated"\n' "$(api_random_token)" "$u" "$u" >> "$API_DIR/tokens.csv"
	done
	chmod 600 "$API_DIR/tokens.csv" "$API_DIR/ca.key" "$API_DIR/server.key" "$API_DIR/sluiced-client.key"
	rm -f "$API_DIR/port"
	# nsenter and env exec: the pid is the server's
	${API_NETNS:+nsenter --net="/run/netns/$API_NETNS"} env PYTHONDONTWRITEBYTECODE=1 "$API_PYTHON" "$API_LIB_DIR/apiserver.py" --address "$API_ADDRESS" --cert "$API_DIR/server.crt" --key "$API_DIR/server.key" \
		--tokens "$API_DIR/tokens.csv" --client-ca "$API_CA" --port-file "$API_DIR/port" --parent-pid $$ \
		--log "$API_DIR/apiserver.log" "$@" > "$API_DIR/apiserver.out" 2>&1 &
	echo $! > "$API_DIR/pid"
	local _
	for _ in $(seq 100); do
		[ -s "$API_DIR/port" ] && break
		kill -0 "$(cat "$API_DIR/pid")" 2>/dev/null || break
		sleep 0.05
	done
	if [ ! -s "$API_DIR/port" ]; then
		api_log "the server did not start:"; cat "$API_DIR/apiserver.out" >&2
		api_down; return 1
	fi
	API_PORT=$(cat "$API_DIR/port")
	API_URL=https://$API_ADDRESS:$API_PORT
	API_KUBECONFIG=$API_DIR/kubeconfig
	API_SA_DIR=$API_DIR/serviceaccount
	api_wait_up 10 || { api_log "no answer at $API_URL"; api_down; return 1; }
	api_write_credentials
	KUBECONFIG=$API_KUBECONFIG
	KUBECACHEDIR=$API_DIR/kubecache
	export API_URL API_PORT API_CA API_DIR API_KUBECONFIG API_SA_DIR KUBECONFIG KUBECACHEDIR
}

api_random_token() { od -An -tx1 -N16 /dev/urandom | tr -d ' \n'; }

# The kubeconfig, and the sluiced user's credentials as a pod sees its service account's
# (token, ca.crt, namespace), each file replaced whole (rename), as the kubelet does.
api_write_credentials() {
	local u
	{
		printf 'apiVersion: v1\nkind: Config\nclusters:\n- name: sluice-test\n  cluster:\n'
		printf '    server: %s\n    certificate-authority: %s\nusers:\n' "$API_URL" "$API_CA"
		for u in $API_USERS; do printf -- '- name: %s\n  user:\n    token: %s\n' "$u" "$(api_token "$u")"; done
		printf -- '- name: sluiced-cert\n  user:\n    client-certificate: %s\n    client-key: %s\n' \
			"$API_DIR/sluiced-client.crt" "$API_DIR/sluiced-client.key"
		printf 'contexts:\n'
		for u in $API_USERS sluiced-cert; do
			printf -- '- name: %s\n  context:\n    cluster: sluice-test\n    user: %s\n    namespace: default\n' \
				"$u" "$u"
		done
		printf 'current-context: admin\n'
	} > "$API_DIR/kubeconfig.tmp"
	chmod 600 "$API_DIR/kubeconfig.tmp"
	mv "$API_DIR/kubeconfig.tmp" "$API_DIR/kubeconfig"
	mkdir -p "$API_DIR/serviceaccount"
	cp "$API_CA" "$API_DIR/serviceaccount/ca.crt"
	echo default > "$API_DIR/serviceaccount/namespace"
	api_token sluiced > "$API_DIR/serviceaccount/token.tmp"
	mv "$API_DIR/serviceaccount/token.tmp" "$API_DIR/serviceaccount/token"
}

# api_rotate_token USER: a new token for USER; the old one is refused (401) from the next request
# on. The server re-reads tokens.csv when it changes; the kubeconfig and, for sluiced, the service
# account's token file follow.
api_rotate_token() {
	local user=${1:?api_rotate_token USER}
	awk -F, -v OFS=, -v u="$user" -v t="$(api_random_token)" '$2 == u { $1 = t } { print }' \
		"$API_DIR/tokens.csv" > "$API_DIR/tokens.csv.tmp" && chmod 600 "$API_DIR/tokens.csv.tmp" &&
	mv "$API_DIR/tokens.csv.tmp" "$API_DIR/tokens.csv" && api_write_credentials
}

api_down() {
	[ -n "${API_DIR:-}" ] && [ -f "$API_DIR/pid" ] || return 0
	local pid
	pid=$(cat "$API_DIR/pid")
	if kill "$pid" 2>/dev/null; then
		for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
		kill -9 "$pid" 2>/dev/null
	fi
	wait "$pid" 2>/dev/null
	rm -f "$API_DIR/pid"
	return 0
}

api_wait_up() {
	local n=$((${1:-10} * 20))
	for _ in $(seq "$n"); do
		[ "$(api_in curl -s --max-time 1 --cacert "$API_CA" "$API_URL/readyz" 2>/dev/null)" = ok ] && return 0
		sleep 0.05
	done
	return 1
}

api_token() { awk -F, -v u="${1:?api_token USER}" '$2 == u { print $1 }' "${API_DIR:?api_up first}/tokens.csv"; }

api_curl() {
	local user=$1 method=$2 path=$3 body=${4-} ctype=${5:-} code
	: "${API_DIR:?api_up first}"
	[ -n "$ctype" ] || { [ "$method" = PATCH ] && ctype=application/merge-patch+json || ctype=application/json; }
	local args=(-sS --cacert "$API_CA" -X "$method" -o "$API_DIR/last_body" -w '%{http_code}')
	[ -n "$(api_token "$user")" ] && args+=(-H "Authorization: Bearer $(api_token "$user")")
	[ -n "$body" ] && args+=(-H "Content-Type: $ctype" --data-binary "$body")
	code=$(api_in curl "${args[@]}" "$API_URL$path") || code=000
	echo "$code" > "$API_DIR/last_status"
	cat "$API_DIR/last_body" 2>/dev/null
	case $code in 2??) return 0 ;; *) return 1 ;; esac
}

api_status() { cat "$API_DIR/last_status"; }

api_kubectl() { api_in "${KUBECTL:-kubectl}" --kubeconfig "$API_KUBECONFIG" --cache-dir "$API_DIR/kubecache" "$@"; }

api_fault() {
	local what=${1:?api_fault WHAT} json
	shift
	case $what in
	drop-watches) json=$(jq -cn --arg r "${1:-}" '{drop_watches: (if $r == "" then true else $r end)}') ;;
	fail) json=$(jq -cn --argjson n "${1:?fail COUNT}" --argjson c "${2:-500}" --arg p "${3:-}" --arg m "${4:-}" \
		'{fail: {count: $n, code: $c, path: $p, method: $m}}') ;;
	compact) json='{"compact":true}' ;;
	down) json=$(jq -cn --argjson s "${1:?down SECONDS}" '{down: $s}') ;;
	slow) json=$(jq -cn --argjson d "${1:?slow MS}" --arg p "${2:-}" \
		'{delay_ms: $d} + (if $p == "" then {} else {delay_path: $p} end)') ;;
	crds) case ${1:-} in on) json='{"crds":true}' ;; off) json='{"crds":false}' ;;
		*) api_log "api_fault crds on|off"; return 2 ;; esac ;;
	reset) json='{"reset":true}' ;;
	*) api_log "unknown fault: $what"; return 2 ;;
	esac
	api_curl admin POST /_sluice/faults "$json" >/dev/null
}

api_load() { api_curl admin POST /_sluice/load "@${1:?api_load FILE}"; }

api_stats() { api_curl admin GET /_sluice/stats; }

# api_kubelet: tests/cluster/cluster.sh's CLUSTER_KUBELET_HOOK for a mini-cluster of nodes that an API
# server follows: the kubelet's reports go to the API as the kubelet makes them, the pod, then its status.
api_kubelet() {
	local event=$1 name=$2 rec=$CLUSTER_DIR/pod.$2 kns="" labels="" ip4="" ip6="" node=""
	if [ "$event" = delete ]; then   # the record is gone by now: the namespace was kept at create
		kns=$(cat "$CLUSTER_DIR/kube-ns.$name" 2>/dev/null)
	else
		{ read -r _; read -r kns; read -r labels; read -r ip4; read -r ip6; read -r _; read -r node; } < "$rec"
		echo "$kns" > "$CLUSTER_DIR/kube-ns.$name"
	fi
	case $event in
	create)
		local lab
		lab=$(printf '%s' "$labels" | awk -F, '{ for (i = 1; i <= NF; i++) { split($i, kv, "="); printf "%s\"%s\":\"%s\"", (i > 1 ? "," : ""), kv[1], kv[2] } }')
		api_curl admin POST "/api/v1/namespaces/$kns/pods" "{\"apiVersion\":\"v1\",\"kind\":\"Pod\",\"metadata\":{\"name\":\"$name\",\"namespace\":\"$kns\",\"labels\":{$lab}},\"spec\":{\"nodeName\":\"$(node_ns "$node")\",\"containers\":[{\"name\":\"app\",\"image\":\"sluice/fakesvc\",\"ports\":[{\"containerPort\":8080,\"name\":\"http\"}]}]}}" >/dev/null || return 1
		api_curl admin PATCH "/api/v1/namespaces/$kns/pods/$name/status" "{\"status\":{\"phase\":\"Running\",\"hostIP\":\"$(node_ip "$node")\",\"podIP\":\"$ip4\",\"podIPs\":[{\"ip\":\"$ip4\"}],\"conditions\":[{\"type\":\"Ready\",\"status\":\"True\"}]}}" >/dev/null ;;
	ready)
		api_curl admin PATCH "/api/v1/namespaces/$kns/pods/$name/status" "{\"status\":{\"conditions\":[{\"type\":\"Ready\",\"status\":\"$([ "$3" = true ] && echo True || echo False)\"}]}}" application/strategic-merge-patch+json >/dev/null ;;
	delete)   # already deleted through the API by a test: 404, nothing to report
		api_curl admin DELETE "/api/v1/namespaces/$kns/pods/$name" >/dev/null || [ "$(api_status)" = 404 ] ;;
	esac
}

# api_lab_workloads NS VIP: the lab's purchase-history on a mini-cluster of nodes whose kubelet
# reports to the API (CLUSTER_KUBELET_HOOK=api_kubelet): v1 on node 1, v2 on node 2, a client on
# every node, the namespace and the Service at VIP.
api_lab_workloads() {
	local ns=$1 vip=$2 n
	LAB_NS=$ns LAB_VIP=$vip
	api_kubectl create namespace "$ns" >/dev/null || return 1
	for n in $(seq "$CLUSTER_NODES"); do pod_add_on "$n" "client-$n" default app=client || return 1; done
	pod_add_on 1 ph-v1 "$ns" app=purchase-history,version=v1 || return 1
	pod_add_on 2 ph-v2 "$ns" app=purchase-history,version=v2 || return 1
	backend_start ph-v1 v1 "Hello From Purchase History (v1)!" --http 8080 || return 1
	backend_start ph-v2 v2 "Hello From Purchase History (v2)!" --http 8080 || return 1
	api_kubectl apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Service
metadata: {name: purchase-history, namespace: $ns}
spec:
  clusterIP: $vip
  selector: {app: purchase-history}
  ports: [{name: http, port: 8080, targetPort: 8080}]
EOF
}

# The lab's checks, after api_lab_workloads: every node's weights for purchase-history
# ("n1 v1=80 v2=20 | n2 ..."), until-true waits, and what every node's client sees.
weights_on() { sluice_on "$1" status purchase-history.$LAB_NS -o json | jq -r '[.services[].destinations[] | "\(.subset)=\(.weight)"] | join(" ")'; }
all_weights() { local n out=""; for n in $(seq "$CLUSTER_NODES"); do out+="${out:+ | }n$n $(weights_on "$n")"; done; echo "$out"; }
wait_for() { local want=$1 i; shift; for i in $(seq "${WAIT_N:-100}"); do [ "$("$@")" = "$want" ] && return 0; sleep 0.05; done; return 1; }
# the worst window of 100 consecutive connections from node N's client: "min max" of v1's count
window() {
	loadgen_in "client-$1" -o json --target $LAB_VIP:8080 -n 300 -c 1 --sequence |
		jq -r '[.sequence as $s | range(0; ($s|length) - 99) | [$s[.:.+100][] | select(. == "v1")] | length] | "\(min) \(max)"'
}
every_node_window() { local n out=""; for n in $(seq "$CLUSTER_NODES"); do out+="${out:+ | }$(window "$n")"; done; echo "$out"; }
