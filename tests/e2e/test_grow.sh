#!/usr/bin/env bash
# The maps sized by the plan (issue 14): one service takes kilobytes of maps, not their limits; a
# plan that outgrows them grows them while a client connects without pause: no connection fails,
# the counters count on exactly, round robin holds after it, and a restart adopts the grown maps;
# a subset at the limit of 4,096 endpoints fits.
set -u
. "$(dirname "$0")/lib.sh"
e2e_begin

NS=istioinaction
VIP=198.19.0.10
lab_pods --http 8080 --udp 9001 || exit 1
svc_add purchase-history $NS $VIP app=purchase-history 8080
D=$CLUSTER_DIR
cluster_objects "$D/cluster.yaml"
split_rules purchase-history $NS 8080 "v1:80 v2:20" "{loadBalancer: {simple: ROUND_ROBIN}}" > "$D/rules.yaml"

# extra N [UDP]: N more Services over the same pods at 198.19.1.1 onwards, each with a
# VirtualService; with UDP, every tenth also has a UDP port
extra() {
	awk -v n="$1" -v ns=$NS -v udp="${2:-0}" 'BEGIN { for (i = 0; i < n; i++)
		printf "---\napiVersion: v1\nkind: Service\nmetadata: {name: extra-%d, namespace: %s}\nspec:\n  clusterIP: 198.19.%d.%d\n  selector: {app: purchase-history}\n  ports: [{name: http, port: 8080}%s]\n---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: extra-%d, namespace: %s}\nspec:\n  hosts: [extra-%d]\n  tcp:\n  - {match: [{port: 8080}], route: [{destination: {host: extra-%d, port: {number: 8080}}}]}\n%s",
			i, ns, 1 + int(i / 250), i % 250 + 1, (u = udp && i % 10 == 0) ? ", {name: dns, port: 9001, protocol: UDP}" : "", i, ns, i, i,
			u ? sprintf("  - {match: [{port: 9001}], route: [{destination: {host: extra-%d, port: {number: 9001}}}]}\n", i) : "" }' > "$D/extra.yaml"
}
apply() { sluice apply -f "$D/cluster.yaml" -f "$D/rules.yaml" ${EXTRA:+-f "$D/extra.yaml"} >/dev/null; }
caps() {
	local m out=""
	for m in services endpoints counters rr_state udp_flows udp_reverse; do
		out+="${out:+ }$m $(bpftool -j map show pinned "$CLUSTER_BPFFS/maps/$m" | jq .max_entries)"
	done
	echo "$out"
}
memlock() { for m in "$CLUSTER_BPFFS"/maps/*; do bpftool -j map show pinned "$m" | jq .bytes_memlock; done | awk '{ s += $1 } END { print s }'; }
lg() { loadgen_in client -o json "$@"; }
# connections the status counts per subset of purchase-history: "v1 v2"
counted() {
	sluice status purchase-history.$NS -o json |
		jq -r '[.services[] | select(.port == 8080) | .destinations[] | ([.endpoints[].connections] | add)] | join(" ")'
}

sluiced_start || exit 1
apply
check "one service: every sized map at its least" \
	"services 64 endpoints 256 counters 256 rr_state 32 udp_flows 256 udp_reverse 256" "$(caps)"
bytes=$(memlock)
echo "   (the maps with one service: $bytes bytes, bpftool's bytes_memlock)"
check "one service: the maps take under 4 MiB" yes "$([ "$bytes" -lt 4194304 ] && echo yes)"
check "sluice status shows the same account of the maps, and their sizes" "$bytes services 64" \
	"$(sluice status -o json | jq -r '"\(.maps.bytes) services \(.maps.sizes[] | select(.name == "services") | .maxEntries)"')"
check "... and its text ends with them" "maps N.N KiB: counters N rr_state N services N endpoints N udp_flows N udp_reverse N" \
	"$(sluice status | tail -1 | sed 's/[0-9][0-9]*/N/g')"
out=$(lg --target $VIP:8080 -n 100 -c 1)
check "before growing: 80 on v1, 20 on v2, counted" "80 20 | 80 20" \
	"$(jqr "$out" '"\(.versions.v1) \(.versions.v2)"') | $(counted)"

# A client connecting without pause through three growths, the last one adding UDP services.
"$SLUICE_BUILD/loadgen" --netns "$CLUSTER_PREFIX-client" --cgroup "$CLUSTER_CGROUP/client" -o json \
	--target $VIP:8080 -n 100000000 -c 1 > "$D/through.json" &
through=$!
sleep 0.3
for step in "40 0" "400 0" "3000 1"; do
	set -- $step
	extra "$1" "$2"
	EXTRA=1 apply
	check "$1 more services applied while the client connects" yes \
		"$(sluice status -o json | jq -r --argjson n $(($1 + 1 + $1 / 10 * $2)) 'if (.services | length) == $n then "yes" else "no \(.services | length)" end')"
done
sleep 0.3
kill -INT $through
wait $through
out=$(cat "$D/through.json")
check "through the growths: connections made, none failed" "yes 0" \
	"$(jqr "$out" '"\(if .ok > 1000 then "yes" else "no \(.ok)" end) \(.failed)"')"
check "the maps grew to twice what the plan needs, rounded up to a power of two" \
	"services 16384 endpoints 16384 counters 16384 rr_state 8192 udp_flows 65536 udp_reverse 65536" "$(caps)"
check "sluiced said what it grew, once per growth" 3 "$(grep -c '^sluiced: maps grown in ' "$D/sluiced.log")"
set -- $(counted)
# connect() is counted at the hook: the client's connections, answered or still in flight at its end
check "the counters counted on exactly: every connect the client made, none lost or counted twice" \
	"$((100 + $(jqr "$out" '.connections')))" "$(($1 + $2))"
check "... per subset, what answered (the one in flight at the end aside)" "yes" \
	"$(d1=$(($1 - 80 - $(jqr "$out" '.versions.v1'))) d2=$(($2 - 20 - $(jqr "$out" '.versions.v2')));
		[ $d1 -ge 0 ] && [ $d2 -ge 0 ] && [ $((d1 + d2)) = $(jqr "$out" '.connections - .ok - .failed') ] && echo yes || echo "no $d1 $d2")"
out=$(lg --target $VIP:8080 -n 1000 -c 1 --sequence)
check "round robin after the growths: 80 of every 100 consecutive connections on v1" "80 80" \
	"$(jqr "$out" '[.sequence as $s | range(0; ($s|length) - 99) | [$s[.:.+100][] | select(. == "v1")] | length] | "\(min) \(max)"')"
out=$(lg --target 198.19.1.1:9001 --mode udp -n 20 -c 1)
check "a UDP service of the last growth answers" "20 0" "$(jqr "$out" '"\(.ok) \(.failed)"')"

# A restart adopts the grown maps: same sizes, same counts, no upgrade.
before=$(counted)
sluiced_stop
sluiced_start || exit 1
check "a restart keeps the grown sizes and the counts, and upgrades nothing" \
	"services 16384 endpoints 16384 counters 16384 rr_state 8192 udp_flows 65536 udp_reverse 65536 | $before | 0" \
	"$(caps) | $(counted) | $(grep -c 'upgrade' "$D/sluiced.log")"

# The limit of endpoints per subset, 4,096, reached: a service of two such subsets (8,192 slots in
# one record), its endpoints all in the maps; the 3,000 services before it removed.
awk -v services=1 -v form=compact -v pods=8192 -f "$SLUICE_TOP/bench/plan-gen.awk" > "$D/extra.yaml"
out=$(EXTRA=1 apply 2>&1); rc=$?
check "a subset of 4,096 ready endpoints, twice in one service: applied" "0 true" \
	"$rc $(sluice status svc-00000.team-00 -o json | jq -r '.services[0].in_maps')"
check "... its 8,192 endpoint slots in the maps, every other service's gone" 8194 \
	"$(bpftool -j map dump pinned "$CLUSTER_BPFFS/maps/endpoints" | jq length)"
e2e_end
