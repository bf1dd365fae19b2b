# shellcheck shell=bash
# Assertions for end-to-end tests: each check prints "ok NAME" or "FAIL NAME: expected ..., got ...";
# tests/e2e/run counts them. A test script sources this and tests/cluster/cluster.sh.
. "$(dirname "${BASH_SOURCE[0]}")/../cluster/cluster.sh"

E2E_FAILED=0
ok() { echo "ok $1"; }
fail() { echo "FAIL $1: $2"; E2E_FAILED=$((E2E_FAILED + 1)); }

# check NAME EXPECTED ACTUAL
check() { if [ "$2" = "$3" ]; then ok "$1"; else fail "$1" "expected '$2', got '$3'"; fi; }

# check_range NAME LOW HIGH ACTUAL (inclusive)
check_range() {
	if [ "$4" -ge "$2" ] && [ "$4" -le "$3" ]; then ok "$1 ($4 in [$2, $3])"; else fail "$1" "expected $2..$3, got $4"; fi
}

# jqr JSON FILTER: one value from a JSON text, "null" when absent.
jqr() { printf '%s' "$1" | jq -r "$2"; }

# split_rules HOST NS "PORT..." "SUBSET:WEIGHT..." [TRAFFIC_POLICY]: on stdout, a DestinationRule
# for HOST with those subsets (label version=SUBSET) and the trafficPolicy given (flow YAML), and
# a VirtualService sending every port's TCP to the subsets by weight.
split_rules() {
	local host=$1 ns=$2 ports=$3 split=$4 policy=${5:-} sw port
	printf 'apiVersion: networking.istio.io/v1beta1\nkind: DestinationRule\n'
	printf 'metadata: {name: %s, namespace: %s}\nspec:\n  host: %s\n' "$host" "$ns" "$host"
	[ -n "$policy" ] && printf '  trafficPolicy: %s\n' "$policy"
	printf '  subsets:\n'
	for sw in $split; do printf '  - {name: %s, labels: {version: %s}}\n' "${sw%%:*}" "${sw%%:*}"; done
	printf -- '---\napiVersion: networking.istio.io/v1beta1\nkind: VirtualService\n'
	printf 'metadata: {name: %s, namespace: %s}\nspec:\n  hosts: [%s]\n  tcp:\n' "$host" "$ns" "$host"
	for port in $ports; do
		printf '  - match: [{port: %s}]\n    route:\n' "$port"
		for sw in $split; do
			printf '    - {destination: {host: %s, subset: %s, port: {number: %s}}, weight: %s}\n' \
				"$host" "${sw%%:*}" "$port" "${sw##*:}"
		done
	done
}

# lab_pods [fakesvc listener options]: the single node's client (198.18.0.10) and the lab's
# purchase-history v1 (198.18.1.1) and v2 (198.18.2.1) in istioinaction, answering (default --http 8080).
lab_pods() {
	local v
	[ $# -gt 0 ] || set -- --http 8080
	pod_add client default app=client 198.18.0.10 || return 1
	for v in 1 2; do
		pod_add ph-v$v istioinaction app=purchase-history,version=v$v 198.18.$v.1 || return 1
		backend_start ph-v$v v$v "Hello From Purchase History (v$v)!" "$@" || return 1
	done
}

e2e_cleanup() { cluster_down; }

# e2e_begin: cluster up with teardown on any exit, failure included.
e2e_begin() {
	trap e2e_cleanup EXIT
	trap 'exit 130' INT TERM
	cluster_up
}

e2e_end() { [ "$E2E_FAILED" = 0 ]; }
