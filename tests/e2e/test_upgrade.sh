#!/usr/bin/env bash
# Upgrading sluiced across a change of the maps' layout (DESIGN.md §2 property 5, §12), from each earlier
# release whose maps this build cannot reuse:
#   b26a97a  the release before failed connects were counted by reason (a larger counters value)
#   d4bc8ac  the release before the maps became readable with bpftool (host-order ports,
#            configured weights in the record, rr_state a hash of the ids in use)
#   bd361dd  the release before sockops (smaller records, counters and socket storage)
# For each: the old sluiced serves a split, in socket mode to a pod and in TC mode (--tc on an
# uplink) to an outside client, then under load it is stopped and this one started over its
# pins: the running programs keep their maps until the plan is in new ones, then the new
# programs are swapped into the pinned links. Nothing fails, long connections and TC flows (TCP
# and UDP) stay where they are. One cluster serves both rounds; between them the pins and the
# saved plan go.
set -u
. "$(dirname "$0")/lib.sh"
RELEASES=${UPGRADE_FROM:-b26a97a d4bc8ac bd361dd}
OLDS=()
e2e_begin
trap 'e2e_cleanup; rm -rf "${OLDS[@]}"' EXIT

NS=shop
VIP=198.19.0.50
pod_add client default app=client 198.18.0.50
pod_add web-v1 $NS app=web,version=v1 198.18.1.50
pod_add web-v2 $NS app=web,version=v2 198.18.2.50
for v in 1 2; do backend_start web-v$v v$v "web v$v" --http 8080 --tcp 9000 --udp 9001; done
svc_add web $NS $VIP app=web 8080 9000 9001/udp
D=$CLUSTER_DIR
cluster_objects "$D/cluster.yaml"
split_rules web $NS "8080 9000 9001" "v1:50 v2:50" > "$D/rules.yaml"
split_rules web $NS "9001" "v1:50 v2:50" > "$D/rules-9001.yaml"
lg() { loadgen_in client -o json "$@"; }

# An uplink from an "outside" namespace to the node, as in test_tc.sh: its clients reach the VIP
# through TC mode.
OUT=$CLUSTER_PREFIX-outside
UP=${CLUSTER_PREFIX}up
ip netns add "$OUT"
ip -n "$OUT" link set lo up
ip link add "$UP" netns "$CLUSTER_NODE" type veth peer name eth0 netns "$OUT"
ip -n "$CLUSTER_NODE" addr add 198.18.250.254/24 dev "$UP"
ip -n "$CLUSTER_NODE" link set "$UP" up
ip -n "$OUT" addr add 198.18.250.1/24 dev eth0
ip -n "$OUT" link set eth0 up
ip -n "$OUT" route add 198.19.0.0/16 via 198.18.250.254
out_lg() { "$SLUICE_BUILD/loadgen" --netns "$OUT" -o json "$@"; }
# start [BUILD]: sluiced of BUILD (default: this one) in the node's namespace, TC on the uplink.
start() { SLUICE_BUILD=${1:-$SLUICE_BUILD} SLUICED_NETNS=$CLUSTER_NODE sluiced_start --tc "$UP"; }
connect4_id() { bpftool -j cgroup show "$CLUSTER_CGROUP" | jq '.[] | select(.name == "sluice_connect4") | .id'; }
# ids_by_port SERVICES_PIN SWAP: "PORT:ID ..." of a services map; SWAP=true for a release whose ports
# were in network byte order (bpftool prints them byte-swapped): d4bc8ac and every release before it.
ids_by_port() {
	bpftool -j map dump pinned "$1" | jq -r --argjson swap "$2" '[.[].formatted | select(.key.side == 0) |
		.key.port as $p | "\(if $swap then ($p % 256) * 256 + ($p / 256 | floor) else $p end):\(.value.id)"] |
		sort | join(" ")'
}
established() { sluice status -o json | jq '[.services[] | select(.port == 8080) | .destinations[].endpoints[].established] | add'; }

# upgrade_from COMMIT: one round, from sluiced of COMMIT to this build, on a clean node.
upgrade_from() {
	local from=$1 old out st gen_old id_old ids_old before short long tc_tcp tc_udp
	old=$(mktemp -d /tmp/sluice-upgrade.XXXXXX)
	OLDS+=("$old")
	if ! git -C "$SLUICE_TOP" archive "$from" | tar -x -C "$old" ||
		! make -s -C "$old" build/sluiced build/sluice >"$old/build.log" 2>&1; then
		tail -20 "$old/build.log" 2>/dev/null
		fail "$from: build the previous release to upgrade from" "no build (a clone with history is needed)"
		return 1
	fi
	ok "$from: built the previous release to upgrade from"
	: > "$D/sluiced.log"

	start "$old/build" || return 1
	# port 9001 first: the services' ids are then not the ones a fresh apply of the plan would give
	"$old/build/sluice" apply -f "$D/cluster.yaml" -f "$D/rules-9001.yaml" >/dev/null
	"$old/build/sluice" apply -f "$D/cluster.yaml" -f "$D/rules.yaml" >/dev/null
	"$old/build/sluice" weight web.$NS v1=50 v2=50 >/dev/null   # a journalled change, to carry over too
	gen_old=$("$old/build/sluice" status -o json | jq .generation)
	id_old=$(connect4_id)
	ids_old=$(ids_by_port "$CLUSTER_BPFFS/maps/services" \
		"$(git -C "$SLUICE_TOP" merge-base --is-ancestor "$from" d4bc8ac && echo true || echo false)")
	out=$(lg --target $VIP:8080 -n 100 -c 1)
	check "$from: the previous release serves 50/50" "50 50" "$(jqr "$out" '"\(.versions.v1 // 0) \(.versions.v2 // 0)"')"
	out=$(out_lg --target $VIP:8080 -n 100 -c 1)
	check "$from: ... and through TC from outside" "50 50" "$(jqr "$out" '"\(.versions.v1 // 0) \(.versions.v2 // 0)"')"

	# Under load: short connections all along, and long echo connections opened before the upgrade.
	# (loadgen itself in the background, not a function's subshell: SIGINT must reach it)
	"$SLUICE_BUILD/loadgen" --netns "$CLUSTER_PREFIX-client" --cgroup "$CLUSTER_CGROUP/client" -o json \
		--target $VIP:8080 -n 100000000 -c 2 > "$D/short.json" &
	short=$!
	lg --target $VIP:9000 --mode tcp -c 4 --duration 5 --interval 50 --timeout 5000 > "$D/long.json" &
	long=$!
	out_lg --target $VIP:9000 --mode tcp -c 4 --duration 5 --interval 50 --timeout 5000 > "$D/tc_tcp.json" &
	tc_tcp=$!
	out_lg --target $VIP:9001 --mode udp -c 4 --duration 5 --interval 50 --timeout 5000 > "$D/tc_udp.json" &
	tc_udp=$!
	sleep 1
	sluiced_stop TERM
	# First an upgrade that stops before its switch: the new sluiced cannot read the saved plan and
	# exits; the programs in the hooks never left the previous maps. Fixed, the next start resumes.
	mv "$CLUSTER_STATE/plan.json" "$D/plan.json.good"
	echo "not a plan" > "$CLUSTER_STATE/plan.json"
	start >/dev/null 2>&1 && fail "$from: a start with an unreadable plan fails" "it started"
	check "$from: an upgrade stopped before its switch leaves the previous maps serving (maps_old kept)" yes \
		"$([ -e "$CLUSTER_BPFFS/maps_old/services" ] && echo yes || echo no)"
	mv "$D/plan.json.good" "$CLUSTER_STATE/plan.json"
	sleep 0.5
	start || return 1
	check "$from: the next start resumes the upgrade" 1 "$(grep -c 'resuming an upgrade' "$D/sluiced.log")"
	sleep 1
	kill -INT $short
	wait $short $long $tc_tcp $tc_udp
	out=$(cat "$D/short.json")
	check "$from: short connections across both starts: none failed" "0 {}" "$(jqr "$out" '"\(.failed) \(.errors | tojson)"')"
	check_range "$from: ... while connections kept being made" 500 100000000 "$(jqr "$out" '.ok')"
	check "$from: ... all on v1 or v2, translated (no answer from elsewhere)" "v1,v2" "$(jqr "$out" '.versions | keys | join(",")')"
	out=$(cat "$D/long.json")
	check "$from: $(jqr "$out" '.per_connection | length') long echo connections ($(jqr "$out" '.requests') echoes) across the upgrade: none failed, none moved" \
		"0 0 {}" "$(jqr "$out" '"\(.failed) \(.switched) \(.errors | tojson)"')"
	for f in tc_tcp tc_udp; do
		out=$(cat "$D/$f.json")
		check "$from: $(jqr "$out" '.per_connection | length') ${f#tc_} flows through TC ($(jqr "$out" '.requests') echoes) across the upgrade: none failed, none moved" \
			"0 0 {} 1" "$(jqr "$out" '"\(.failed) \(.switched) \(.errors | tojson) \([.per_connection[].versions | length] | max)"')"
	done
	check "$from: sluiced logged the upgrade" 1 "$(grep -c 'do not fit this build; the running programs keep' "$D/sluiced.log")"
	check "$from: the previous maps are gone once the new programs serve" no \
		"$([ -e "$CLUSTER_BPFFS/maps_old" ] && echo yes || echo no)"

	st=$(sluice status -o json)
	check "$from: the generation carries on (one apply of the saved plan)" "$((gen_old + 1))" "$(jqr "$st" '.generation')"
	check "$from: the saved plan and its weight change are served" "50/50 50/50 50/50" \
		"$(jqr "$st" '[.services[] | "\(.destinations[0].weight)/\(.destinations[1].weight)"] | join(" ")')"
	check "$from: the new maps read plainly with bpftool: ports 8080, 9000, 9001, weights 50/50, one rr_state per id" \
		"8080:50/50 9000:50/50 9001:50/50 3" \
		"$(bpftool -j map dump pinned "$CLUSTER_BPFFS/maps/services" | jq -r '[.[].formatted | select(.key.side == 0) |
			"\(.key.port):\(.value.destinations[0].weight)/\(.value.destinations[1].weight)"] | sort | join(" ")') $(
			bpftool -j map dump pinned "$CLUSTER_BPFFS/maps/rr_state" | jq length)"
	check "$from: services keep their ids across the upgrade (TC flows in progress name them)" \
		"8080:1 9000:2 9001:0 8080:1 9000:2 9001:0" \
		"$ids_old $(ids_by_port "$CLUSTER_BPFFS/maps/services" false)"
	before=$(established)
	out=$(lg --target $VIP:8080 -n 100 -c 1 --sequence)
	check "$from: new connections after the upgrade: exactly 50/50 per 100" "50 50" \
		"$(jqr "$out" '"\(.versions.v1 // 0) \(.versions.v2 // 0)"')"
	check "$from: ... counted with their TCP life by the new programs (sockops)" 100 "$(( $(established) - before ))"
	check "$from: the cgroup's hooks hold the new programs: connect4 swapped, one sockops" "yes 1" \
		"$([ "$(connect4_id)" != "$id_old" ] && echo yes || echo no) $(bpftool -j cgroup show "$CLUSTER_CGROUP" |
			jq '[.[] | select(.name == "sluice_sockops")] | length')"

	# A second start over the new pins is a plain adopt.
	sluiced_stop TERM
	start || return 1
	check "$from: a second restart adopts without upgrading" 1 "$(grep -c 'do not fit this build; the running programs keep' "$D/sluiced.log")"
	check "$from: ... same generation" "$((gen_old + 1))" "$(sluice status -o json | jq .generation)"

	# The next round starts from an empty node.
	sluiced_stop TERM
	"$SLUICE_BUILD/sluiced" --uninstall --bpffs "$CLUSTER_BPFFS" --socket "$CLUSTER_SOCKET" 2>>"$D/sluiced.log"
	rm -rf "$CLUSTER_STATE"
}

for from in $RELEASES; do
	upgrade_from "$from" || break
done

e2e_end
