#!/usr/bin/env bash
# Upgrading sluiced across a change of the maps' layout (DESIGN property 5): the build before
# sockops had smaller service records, counters and socket storage, so its pinned maps do not fit
# this build. Under load the old sluiced is stopped and this one started over its pins: the
# running programs keep their maps until the plan is in new ones, then the new programs are
# swapped into the pinned links. Nothing fails, long connections stay where they are.
set -u
. "$(dirname "$0")/lib.sh"
FROM=${UPGRADE_FROM:-bd361dd}   # the last commit before sockops changed the maps' layout
OLD=$(mktemp -d /tmp/sluice-upgrade.XXXXXX)
e2e_begin
trap 'e2e_cleanup; rm -rf "$OLD"' EXIT

if ! git -C "$SLUICE_TOP" archive "$FROM" | tar -x -C "$OLD" ||
	! make -s -C "$OLD" build/sluiced build/sluice >"$OLD/build.log" 2>&1; then
	tail -20 "$OLD/build.log" 2>/dev/null
	fail "build the previous release ($FROM) to upgrade from" "no build (a clone with history is needed)"
	exit 1
fi
ok "built the previous release ($FROM) to upgrade from"

NS=shop
VIP=198.19.0.50
pod_add client default app=client 198.18.0.50
pod_add web-v1 $NS app=web,version=v1 198.18.1.50
pod_add web-v2 $NS app=web,version=v2 198.18.2.50
for v in 1 2; do backend_start web-v$v v$v "web v$v" --http 8080 --tcp 9000; done
svc_add web $NS $VIP app=web 8080 9000
D=$CLUSTER_DIR
cluster_objects "$D/cluster.yaml"
split_rules web $NS "8080 9000" "v1:50 v2:50" > "$D/rules.yaml"
lg() { loadgen_in client -o json "$@"; }

SLUICE_BUILD=$OLD/build sluiced_start || exit 1
"$OLD/build/sluice" apply -f "$D/cluster.yaml" -f "$D/rules.yaml" >/dev/null
"$OLD/build/sluice" weight web.$NS v1=50 v2=50 >/dev/null   # a journalled change, to carry over too
gen_old=$("$OLD/build/sluice" status -o json | jq .generation)
connect4_id() { bpftool -j cgroup show "$CLUSTER_CGROUP" | jq '.[] | select(.name == "sluice_connect4") | .id'; }
id_old=$(connect4_id)
out=$(lg --target $VIP:8080 -n 100 -c 1)
check "the previous release serves 50/50" "50 50" "$(jqr "$out" '"\(.versions.v1 // 0) \(.versions.v2 // 0)"')"

# Under load: short connections all along, and long echo connections opened before the upgrade.
# (loadgen itself in the background, not a function's subshell: SIGINT must reach it)
"$SLUICE_BUILD/loadgen" --netns "$CLUSTER_PREFIX-client" --cgroup "$CLUSTER_CGROUP/client" -o json \
	--target $VIP:8080 -n 100000000 -c 2 > "$D/short.json" &
short=$!
lg --target $VIP:9000 --mode tcp -c 4 --duration 5 --interval 50 --timeout 5000 > "$D/long.json" &
long=$!
sleep 1
sluiced_stop TERM
# First an upgrade that stops before its switch: the new sluiced cannot read the saved plan and
# exits; the programs in the hooks never left the previous maps. Fixed, the next start resumes.
mv "$CLUSTER_STATE/plan.json" "$D/plan.json.good"
echo "not a plan" > "$CLUSTER_STATE/plan.json"
sluiced_start >/dev/null 2>&1 && fail "a start with an unreadable plan fails" "it started"
check "an upgrade stopped before its switch leaves the previous maps serving (maps_old kept)" yes \
	"$([ -e "$CLUSTER_BPFFS/maps_old/services" ] && echo yes || echo no)"
mv "$D/plan.json.good" "$CLUSTER_STATE/plan.json"
sleep 0.5
sluiced_start || exit 1
check "the next start resumes the upgrade" 1 "$(grep -c 'resuming an upgrade' "$D/sluiced.log")"
sleep 1
kill -INT $short
wait $short $long
out=$(cat "$D/short.json")
check "short connections across both starts: none failed" "0 {}" "$(jqr "$out" '"\(.failed) \(.errors | tojson)"')"
check_range "... while connections kept being made" 500 100000000 "$(jqr "$out" '.ok')"
check "... all on v1 or v2, translated (no answer from elsewhere)" "v1,v2" "$(jqr "$out" '.versions | keys | join(",")')"
out=$(cat "$D/long.json")
check "long echo connections across the upgrade: none failed, none moved" "0 0 {}" \
	"$(jqr "$out" '"\(.failed) \(.switched) \(.errors | tojson)"')"
check "sluiced logged the upgrade" 1 "$(grep -c 'do not fit this build: upgrading' "$D/sluiced.log")"
check "the previous maps are gone once the new programs serve" no \
	"$([ -e "$CLUSTER_BPFFS/maps_old" ] && echo yes || echo no)"

st=$(sluice status -o json)
check "the generation carries on (one apply of the saved plan)" "$((gen_old + 1))" "$(jqr "$st" '.generation')"
check "the saved plan and its weight change are served" "50/50 50/50" \
	"$(jqr "$st" '[.services[] | "\(.destinations[0].weight)/\(.destinations[1].weight)"] | join(" ")')"
established() { sluice status -o json | jq '[.services[] | select(.port == 8080) | .destinations[].endpoints[].established] | add'; }
before=$(established)
out=$(lg --target $VIP:8080 -n 100 -c 1 --sequence)
check "new connections after the upgrade: exactly 50/50 per 100" "50 50" \
	"$(jqr "$out" '"\(.versions.v1 // 0) \(.versions.v2 // 0)"')"
check "... counted with their TCP life by the new programs (sockops)" 100 "$(( $(established) - before ))"
check "the cgroup's hooks hold the new programs: connect4 swapped, sockops added" "yes 1" \
	"$([ "$(connect4_id)" != "$id_old" ] && echo yes || echo no) $(bpftool -j cgroup show "$CLUSTER_CGROUP" |
		jq '[.[] | select(.name == "sluice_sockops")] | length')"

# A second start over the new pins is a plain adopt.
sluiced_stop TERM
sluiced_start || exit 1
check "a second restart adopts without upgrading" 1 "$(grep -c 'do not fit this build: upgrading' "$D/sluiced.log")"
check "... same generation" "$((gen_old + 1))" "$(sluice status -o json | jq .generation)"

e2e_end
