#!/usr/bin/env bash
# What a node agent must hold against an unlucky or hostile user (issue 10): one writer per data
# plane, no acknowledged change lost, no client able to stall another, status that tells the truth
# about the kernel, pins removed under a running sluiced.
set -u
. "$(dirname "$0")/lib.sh"
SMALL=""        # a tiny filesystem for the state directory, unmounted on exit
STALLERS=()     # process groups of the stalled clients
hardening_cleanup() {
	local g
	for g in "${STALLERS[@]}"; do kill -- "-$g" 2>/dev/null; done
	[ -n "$SMALL" ] && umount "$SMALL" 2>/dev/null
	e2e_cleanup
}
e2e_begin
trap hardening_cleanup EXIT

NS=istioinaction
VIP=198.19.0.10
pod_add client default app=client 198.18.0.10
pod_add ph-v1 $NS app=purchase-history,version=v1 198.18.1.1
pod_add ph-v2 $NS app=purchase-history,version=v2 198.18.2.1
backend_start ph-v1 v1 "Hello From Purchase History (v1)!" --http 8080
backend_start ph-v2 v2 "Hello From Purchase History (v2)!" --http 8080
svc_add purchase-history $NS $VIP app=purchase-history 8080
D=$CLUSTER_DIR
cluster_objects "$D/cluster.yaml"
rules() { split_rules purchase-history $NS 8080 "$1" > "$D/rules.yaml"; sluice apply -f "$D/cluster.yaml" -f "$D/rules.yaml" >/dev/null; }
lg() { loadgen_in client -o json "$@"; }
weights() { sluice status -o json | jq -r '[.services[].destinations[] | "\(.subset)=\(.weight)"] | join(" ")'; }
sluiced_pid() { cat "$CLUSTER_DIR/sluiced.pid"; }
# ms_of CMD...: runs it, prints how long it took in milliseconds
ms_of() { local t0; t0=$(date +%s%N); "$@" >/dev/null 2>&1; echo $((($(date +%s%N) - t0) / 1000000)); }

sluiced_start || exit 1
rules "v1:100 v2:0"

# 1. One writer per data plane: a second sluiced on the same pins, an uninstall under a running
#    sluiced, and a second sluiced on the same socket are refused, and the first keeps serving.
pid=$(sluiced_pid)
# (timeout: a sluiced that is not refused would serve in the foreground)
msg=$(timeout 5 "$SLUICE_BUILD/sluiced" --cgroup "$CLUSTER_CGROUP" --bpffs "$CLUSTER_BPFFS" --socket "$D/second.sock" \
	--state-dir "$D/second-state" 2>&1); rc=$?
check "second sluiced on the same pins: refused" "1 sluiced: error: cannot start: process $pid serves the data plane pinned under $CLUSTER_BPFFS, and there is one writer per data plane; hint: stop it first (kill -TERM $pid), or give this sluiced its own --bpffs" "$rc $msg"
check "second sluiced on the same pins: made no socket" no "$([ -e "$D/second.sock" ] && echo yes || echo no)"
msg=$("$SLUICE_BUILD/sluiced" --uninstall --bpffs "$CLUSTER_BPFFS" --socket "$CLUSTER_SOCKET" 2>&1); rc=$?
check "uninstall under a running sluiced: refused" "1 sluiced: error: refusing to uninstall: process $pid serves the data plane pinned under $CLUSTER_BPFFS, and there is one writer per data plane; hint: stop it first (kill -TERM $pid), or give this sluiced its own --bpffs" "$rc $msg"
msg=$(timeout 5 "$SLUICE_BUILD/sluiced" --cgroup "$CLUSTER_CGROUP" --bpffs "$CLUSTER_BPFFS-2" --socket "$CLUSTER_SOCKET" \
	--state-dir "$D/second-state" 2>&1); rc=$?
[ -e "$CLUSTER_BPFFS-2" ] && "$SLUICE_BUILD/sluiced" --uninstall --bpffs "$CLUSTER_BPFFS-2" --socket "$D/none.sock" 2>/dev/null
check "second sluiced on the same socket: refused" "1 sluiced: error: another sluiced answers on $CLUSTER_SOCKET; hint: stop it, or give this one its own --socket" "$rc $msg"
check "second sluiced on the same socket: pinned nothing" no "$([ -e "$CLUSTER_BPFFS-2" ] && echo yes || echo no)"
check "the first sluiced still serves its plan" "v1=100 v2=0" "$(weights)"
out=$(lg --target $VIP:8080 -n 50)
check "the first sluiced's data plane still routes" 50 "$(jqr "$out" '.versions.v1 // 0')"

# 2. Weight arguments: digits only, the service's full name, a lone destination said out loud.
msg=$(sluice weight purchase-history.$NS v1=+5 v2=1 2>&1); rc=$?
check "weight v1=+5: refused" "2 Error: \"v1=+5\" is not SUBSET=WEIGHT with a weight from 0 to 2147483647 in digits; e.g. v1=80 v2=20" "$rc $msg"
msg=$(sluice weight purchase-history.$NS v1=50 "v2= 5" 2>&1); rc=$?
check "weight v2=' 5': refused" "2 Error: \"v2= 5\" is not SUBSET=WEIGHT with a weight from 0 to 2147483647 in digits; e.g. v1=80 v2=20" "$rc $msg"
sluice weight purchase-history.$NS.svc.cluster.local v1=90 v2=10 >/dev/null; rc=$?
check "weight by the full name SERVICE.NAMESPACE.svc.cluster.local" "0 v1=90 v2=10" "$rc $(weights)"
msg=$(sluice status purchase-history.$NS.svc.cluster.local | head -2 | tail -1)
check "status by the full name" "service purchase-history.$NS  vip $VIP  port 8080/TCP  lb ROUND_ROBIN" "$msg"
msg=$(sluice weight purchase-history.$NS.svc.example.org v1=90 v2=10 2>&1); rc=$?
check "weight by a name in another cluster domain: refused" "2 Error: \"purchase-history.$NS.svc.example.org\" is not SERVICE, SERVICE.NAMESPACE or SERVICE.NAMESPACE.svc.cluster.local; e.g. purchase-history.istioinaction" "$rc $msg"
long=$(printf 'x%.0s' $(seq 300))
msg=$(sluice weight "$long" v1=1 2>&1); rc=$?
check "weight on a 300-character name: the echo is cut" "2 Error: no routed service \"$(printf 'x%.0s' $(seq 64))...\" (300 bytes): names are 1 to 63 characters; 'sluice status' lists the services" "$rc $msg"
msg=$(sluice weight purchase-history v1=1 2>&1); rc=$?
check "weight in the wrong namespace: the namespaces that have it" "1 Error: no routed service purchase-history.default; in other namespaces: purchase-history.$NS; 'sluice status' lists them" "$rc $msg"
split_rules purchase-history $NS 8080 "v1:100" > "$D/lone.yaml"
sluice apply -f "$D/cluster.yaml" -f "$D/lone.yaml" >/dev/null
msg=$(sluice weight purchase-history.$NS v1=5 | grep '^note')
check "weight on a lone destination: said out loud" "note: a route with one destination sends it all traffic whatever its weight, as Istio does: its weight stays 100" "$msg"
check "weight on a lone destination: it holds 100, as the compiler gives it" "v1=100" "$(weights)"
rules "v1:100 v2:0"

# 3. No acknowledged change is lost. A full disk: the change is refused and taken back, and a
#    restart serves what was acknowledged. An unwritable journal: the whole plan is saved instead.
SMALL=$D/small
mkdir -p "$SMALL"
mount -t tmpfs -o size=256k,mode=0700 sluice-test-small "$SMALL"
sluiced_stop TERM
cp -a "$CLUSTER_STATE/." "$SMALL/"
CLUSTER_STATE=$SMALL
sluiced_start || exit 1
dd if=/dev/zero of="$SMALL/fill" bs=4k 2>/dev/null
gen=$(sluice status -o json | jq -r .generation)
msg=$(sluice weight purchase-history.$NS v1=0 v2=100 2>&1); rc=$?
check "full disk: weight refused" "1 Error: cannot save the plan to $SMALL/plan.json: No space left on device; nothing changed: a change is made only once it is saved, and the data plane is back as it was (generation $((gen + 2))); hint: free space in $SMALL, or make it writable, then try again" "$rc $msg"
check "full disk: status shows the weights still served" "v1=100 v2=0" "$(weights)"
out=$(lg --target $VIP:8080 -n 50)
check "full disk: traffic still on v1" 50 "$(jqr "$out" '.versions.v1 // 0')"
split_rules purchase-history $NS 8080 "v1:0 v2:100" > "$D/v2.yaml"
msg=$(sluice apply -f "$D/cluster.yaml" -f "$D/v2.yaml" 2>&1); rc=$?
check "full disk: apply refused" "1" "$rc"
check "full disk: apply says why" "Error: cannot save the plan to $SMALL/plan.json: No space left on device; nothing changed" "${msg%%: a change is made*}"
check "full disk: status after the refused apply" "v1=100 v2=0" "$(weights)"
sluiced_stop TERM
sluiced_start || exit 1
check "full disk: a restart serves what was acknowledged" "v1=100 v2=0" "$(weights)"
rm -f "$SMALL/fill"
sluice weight purchase-history.$NS v1=20 v2=80 >/dev/null; rc=$?
check "space again: the change is made" "0 v1=20 v2=80" "$rc $(weights)"
rm -f "$SMALL/weights.log"; mkdir "$SMALL/weights.log"
sluice weight purchase-history.$NS v1=70 v2=30 >/dev/null; rc=$?
check "journal is a directory: the change is made" "0 v1=70 v2=30" "$rc $(weights)"
check "journal is a directory: sluiced saved the whole plan instead" 1 \
	"$(grep -c "cannot append to $SMALL/weights.log: Is a directory; saving the whole plan instead" "$D/sluiced.log")"
sluiced_stop TERM
sluiced_start || exit 1
check "journal is a directory: a restart keeps the change" "v1=70 v2=30" "$(weights)"
out=$(lg --target $VIP:8080 -n 100)
check "journal is a directory: the restart serves 70/30" "70 30" "$(jqr "$out" '"\(.versions.v1) \(.versions.v2)"')"
rmdir "$SMALL/weights.log"
sluiced_stop TERM
CLUSTER_STATE=$D/state
cp -a "$SMALL/plan.json" "$CLUSTER_STATE/plan.json"
umount "$SMALL" && SMALL=""
sluiced_start || exit 1

# 4. The journal's lines are read back whatever the names, and a bad line is quoted, not copied.
sluice weight purchase-history.$NS v1=60 v2=40 >/dev/null
printf 'bogus \033[31mline\n{"generation":99999,"service":"nosuch","namespace":"x","weights":[{"subset":"v1","weight":1}]}\n' \
	>> "$CLUSTER_STATE/weights.log"
sluiced_stop KILL
sluiced_start || exit 1
check "journal replayed: the change after the saved plan" "v1=60 v2=40" "$(weights)"
check "journal replayed: a bad line is quoted with its control bytes escaped" 1 \
	"$(grep -cF 'skipping "bogus \x1b[31mline": not a weight change' "$D/sluiced.log")"
check "journal replayed: counts what it applied and what it skipped" 1 \
	"$(grep -c "replayed 1 weight change from $CLUSTER_STATE/weights.log, skipped 2 that no longer apply" "$D/sluiced.log")"

# 5. Status tells the truth about the kernel: started over live pins without a saved plan, sluiced
#    clears them and says so; a state file that is a directory stops it with the reason.
sluiced_stop TERM
mv "$CLUSTER_STATE/plan.json" "$D/plan.json.moved"
sluiced_start || exit 1
check "no saved plan: status lists no service" 0 "$(sluice status -o json | jq '.services | length')"
check "no saved plan: the maps route nothing either" 0 \
	"$(bpftool -j map dump pinned "$CLUSTER_BPFFS/maps/services" | jq length)"
check "no saved plan: the log says the maps were cleared" yes \
	"$(grep -q "no saved plan in $CLUSTER_STATE: cleared the 1 service address the pinned maps routed (generation [0-9]*), which sluiced has no record of" "$D/sluiced.log" && echo yes)"
sluiced_stop TERM
rm -f "$CLUSTER_STATE/plan.json"; mkdir "$CLUSTER_STATE/plan.json"
timeout 5 "$SLUICE_BUILD/sluiced" --cgroup "$CLUSTER_CGROUP" --bpffs "$CLUSTER_BPFFS" --socket "$CLUSTER_SOCKET" \
	--state-dir "$CLUSTER_STATE" 2> "$D/dir.log"; rc=$?
check "plan.json is a directory: sluiced does not start, and says why" "1 sluiced: error: cannot read the saved plan $CLUSTER_STATE/plan.json: Is a directory; hint: move it away to start with an empty data plane" \
	"$rc $(cat "$D/dir.log")"
rmdir "$CLUSTER_STATE/plan.json"
sed 's/"weight":60/"weight":-1/' "$D/plan.json.moved" > "$CLUSTER_STATE/plan.json"
timeout 5 "$SLUICE_BUILD/sluiced" --cgroup "$CLUSTER_CGROUP" --bpffs "$CLUSTER_BPFFS" --socket "$CLUSTER_SOCKET" \
	--state-dir "$CLUSTER_STATE" 2> "$D/neg.log"; rc=$?
check "a weight of -1 in the saved plan: sluiced does not start" 1 "$rc"
check "a weight of -1 in the saved plan: the place and the rule" yes \
	"$(grep -qE "^$CLUSTER_STATE/plan.json:1:[0-9]+: error: services\[0\]\.destinations\[0\]\.weight must be an integer from 0 to 2147483647 written as plain digits, got -1$" "$D/neg.log" && echo yes)"
mv "$D/plan.json.moved" "$CLUSTER_STATE/plan.json"
sluiced_start || exit 1
check "the saved plan back: served again" "v1=60 v2=40" "$(weights)"

# Status shows the shares the maps give: 1:2000 scaled into the 1024-slot round-robin table
# gives v1 one slot, 0.1%, where the weights alone would say 0.05%.
sluice weight purchase-history.$NS v1=1 v2=2000 >/dev/null
check "status: weights as configured, shares as the maps give them" "v1 1 0.1 v2 2000 99.9" \
	"$(sluice status -o json | jq -r '[.services[].destinations[] | "\(.subset) \(.weight) \(.percent)"] | join(" ")')"
sluice weight purchase-history.$NS v1=60 v2=40 >/dev/null

# Names and addresses that would hijack traffic are refused through sluiced too.
sed "s/clusterIP: $VIP/clusterIP: 127.0.0.1/; s/- $VIP\$/- 127.0.0.1/" "$D/cluster.yaml" > "$D/loopback.yaml"
msg=$(sluice apply -f "$D/loopback.yaml" -f "$D/rules.yaml" 2>&1); rc=$?
check "apply: a loopback VIP refused" "1 yes" "$rc $(echo "$msg" | grep -q 'spec.clusterIP "127.0.0.1" is a loopback address' && echo yes)"
sed 's/v2/v 2/g' "$D/rules.yaml" > "$D/space.yaml"
msg=$(sluice apply -f "$D/cluster.yaml" -f "$D/space.yaml" 2>&1); rc=$?
check "apply: a subset named 'v 2' refused" "1 yes" "$rc $(echo "$msg" | grep -q '"v 2" is not a valid DNS-1123 label' && echo yes)"
check "refused applies changed nothing" "v1=60 v2=40" "$(weights)"

# 6. Pins removed under a running sluiced are pinned again, and a restart then loses nothing.
"$SLUICE_BUILD/loadgen" --netns "$CLUSTER_PREFIX-client" --cgroup "$CLUSTER_CGROUP/client" -o json \
	--target $VIP:8080 -n 2000000 -c 4 --timeout 2000 > "$D/pins.json" &
bg=$!
sleep 0.5
rm -rf "$CLUSTER_BPFFS"
for _ in $(seq 50); do [ -e "$CLUSTER_BPFFS/links/sluice_connect4" ] && [ -e "$CLUSTER_BPFFS/maps/services" ] && break; sleep 0.1; done
sleep 1.2   # a second check: whatever the first raced with rm is in place too
check "pins removed: pinned again" yes "$([ -e "$CLUSTER_BPFFS/maps/services" ] && [ -e "$CLUSTER_BPFFS/links/sluice_connect4" ] && echo yes)"
check "pins removed: status says so" "note: pins under $CLUSTER_BPFFS were removed while sluiced ran; pinned again" \
	"$(sluice status | grep '^note: pins' | sed 's/ at [0-9-]* [0-9:]*: .*//')"
check "pins removed: the log says so" yes "$(grep -q "pins under $CLUSTER_BPFFS were removed while sluiced ran; pinned again" "$D/sluiced.log" && echo yes)"
sluiced_stop TERM
sluiced_start || exit 1
sleep 0.5
kill -INT $bg; wait $bg
out=$(cat "$D/pins.json")
check "pins removed, then a restart under load: zero failed connections" 0 "$(jqr "$out" '.failed')"
check_range "pins removed, then a restart under load: connections made" 1000 100000000 "$(jqr "$out" '.ok')"
check "pins removed, then a restart: the plan is adopted" "v1=60 v2=40" "$(weights)"

# 7. No client can stall another: silent, trickling and not-reading clients beside a rollback.
#    A plan of 3,000 services makes status about a megabyte, more than a socket buffer holds.
awk -v ns=$NS 'BEGIN {
	print "apiVersion: v1\nkind: List\nitems:"
	for (i = 0; i < 3000; i++) {
		vip = sprintf("198.19.%d.%d", 100 + int(i / 250), i % 250 + 1)
		ip = sprintf("198.18.%d.%d", 100 + int(i / 250), i % 250 + 1)
		printf "- {apiVersion: v1, kind: Service, metadata: {name: filler-%d, namespace: %s}, spec: {clusterIP: %s, selector: {app: filler-%d}, ports: [{name: http, port: 80, targetPort: 8080}]}}\n", i, ns, vip, i
		printf "- {apiVersion: v1, kind: Pod, metadata: {name: filler-%d, namespace: %s, labels: {app: filler-%d, version: v1}}, spec: {containers: [{name: c}]}, status: {phase: Running, podIP: %s, conditions: [{type: Ready, status: \"True\"}]}}\n", i, ns, i, ip
		printf "- {apiVersion: networking.istio.io/v1beta1, kind: VirtualService, metadata: {name: filler-%d, namespace: %s}, spec: {hosts: [filler-%d], http: [{route: [{destination: {host: filler-%d}}]}]}}\n", i, ns, i, i
	}
}' > "$D/filler.yaml"
split_rules purchase-history $NS 8080 "v1:60 v2:40" > "$D/rules.yaml"
sluice apply -f "$D/cluster.yaml" -f "$D/rules.yaml" -f "$D/filler.yaml" >/dev/null
check "3,001 services applied" 3001 "$(sluice status -o json | jq '.services | length')"
check_range "status is larger than a socket buffer (bytes)" 500000 100000000 "$(sluice status | wc -c)"
stall() { setsid bash -c "$1" >/dev/null 2>&1 & STALLERS+=($!); }
stall "sleep 60 | socat -u - UNIX-CONNECT:$CLUSTER_SOCKET"                                  # silent
stall "{ printf 'sluice/1 2\ncmd 6\nstatusarg 100000\n'; while sleep 0.3; do printf x; done; } | socat -u - UNIX-CONNECT:$CLUSTER_SOCKET"   # trickling
stall "{ printf 'sluice/1 1\ncmd 6\nstatus'; sleep 60; } | socat -u - UNIX-CONNECT:$CLUSTER_SOCKET"  # never reads its reply
sleep 1
ms=$(ms_of sluice weight purchase-history.$NS v1=100 v2=0)
check_range "a rollback beside silent, trickling and not-reading clients: answered (ms)" 0 1000 "$ms"
check "the rollback took effect" "v1=100 v2=0" "$(sluice status purchase-history.$NS -o json | jq -r '[.services[].destinations[] | "\(.subset)=\(.weight)"] | join(" ")')"
for i in $(seq 70); do stall "sleep 60 | socat -u - UNIX-CONNECT:$CLUSTER_SOCKET"; done
sleep 1
ms=$(ms_of sluice weight purchase-history.$NS v1=0 v2=100)
check_range "a weight change beside 70 silent clients (more than sluiced keeps): answered (ms)" 0 1000 "$ms"
ms=$(ms_of sluice status)
check_range "a 3,001-service status beside them: answered (ms)" 0 3000 "$ms"
for g in "${STALLERS[@]}"; do kill -- "-$g" 2>/dev/null; done
STALLERS=()
kill -STOP "$(sluiced_pid)"
msg=$(sluice --timeout 1 status 2>&1); rc=$?
kill -CONT "$(sluiced_pid)"
check "the CLI's own deadline: a stopped sluiced" "3 Error: sluiced at $CLUSTER_SOCKET did not answer within 1 s: it is stuck or busy; check its log, or raise --timeout" "$rc $msg"
check "sluiced answers again once it runs" "v1=0 v2=100" "$(sluice status purchase-history.$NS -o json | jq -r '[.services[].destinations[] | "\(.subset)=\(.weight)"] | join(" ")')"
sluice apply -f "$D/cluster.yaml" -f "$D/rules.yaml" >/dev/null

# 8. A cgroup removed and made again: sluiced attaches to the new one instead of refusing it.
CG2=$CLUSTER_CGROUP/recreated
mkdir "$CG2"
"$SLUICE_BUILD/sluiced" --cgroup "$CG2" --bpffs "$CLUSTER_BPFFS-cg" --socket "$D/cg.sock" --state-dir "$D/cg-state" 2> "$D/cg.log" &
cgd=$!
for _ in $(seq 100); do [ -S "$D/cg.sock" ] && break; sleep 0.05; done
kill $cgd; wait $cgd
rmdir "$CG2"
# the kernel detaches a removed cgroup's links from a work queue: wait for it, as a reboot-free node would
for _ in $(seq 100); do
	[ "$(bpftool -j link show pinned "$CLUSTER_BPFFS-cg/links/sluice_connect4" | jq .cgroup_id)" = 0 ] && break
	sleep 0.05
done
mkdir "$CG2"
"$SLUICE_BUILD/sluiced" --cgroup "$CG2" --bpffs "$CLUSTER_BPFFS-cg" --socket "$D/cg.sock" --state-dir "$D/cg-state" 2>> "$D/cg.log" &
cgd=$!
for _ in $(seq 100); do [ -S "$D/cg.sock" ] && break; kill -0 $cgd 2>/dev/null || break; sleep 0.05; done
check "recreated cgroup: sluiced serves it" 1 "$(bpftool cgroup show "$CG2" | grep -c sluice_connect4)"
check "recreated cgroup: the log says what happened" yes "$(grep -q 'served a cgroup that no longer exists (removed, perhaps made again): attaching anew' "$D/cg.log" && echo yes)"
kill $cgd; wait $cgd
"$SLUICE_BUILD/sluiced" --uninstall --bpffs "$CLUSTER_BPFFS-cg" --socket "$D/cg.sock" 2>/dev/null
rmdir "$CG2"

e2e_end
