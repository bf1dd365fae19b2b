#!/usr/bin/env bash
# End-to-end test of the socket-mode data plane (bpf/sluice.bpf.c + loader/dataplane/), as root.
#
# Topology: a "node" network namespace whose client processes live in a cgroup this test
# creates, and a "pods" namespace holding the backends (198.18.x.y/32, 2001:db8:1::/64),
# joined by a veth pair. Nothing routes 198.19.0.0/16 (the VIPs): a connection the data
# plane did not rewrite fails with ENETUNREACH, so "not rewritten" is visible.
#
# Usage: tests/e2e/dataplane.sh     (builds what it needs; prints "N passed, N failed")
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
B=${BUILD:-build}
DRV=$B/tests/dp_driver
FAKESVC=$B/fakesvc
LOADGEN=$B/loadgen

[ "$(id -u)" = 0 ] || { echo "dataplane.sh: needs root (BPF, namespaces, cgroups)"; exit 1; }

tag=sldp
id=$$
NODE=$tag-node-$id
PODS=$tag-pods-$id
CG2=$(awk '$3 == "cgroup2" { print $2; exit }' /proc/mounts)
[ -n "$CG2" ] || { echo "dataplane.sh: no cgroup v2 mount in /proc/mounts"; exit 1; }
CG=$CG2/sluice-dptest-$id
BPFFS=/sys/fs/bpf/sluice-dptest-$id
tmp=$(mktemp -d /tmp/sluice-dp-test.XXXXXX)
pids=()
mounted_bpffs=0
passed=0
failed=0

# Removes what one run (this one, or a killed earlier one with pid $1) created.
remove_run() {
	local rid=$1 cg=$CG2/sluice-dptest-$1 p
	if [ -d "/sys/fs/bpf/sluice-dptest-$rid" ]; then
		"$DRV" uninstall --bpffs "/sys/fs/bpf/sluice-dptest-$rid" >/dev/null 2>&1 ||
			rm -rf "/sys/fs/bpf/sluice-dptest-$rid"
	fi
	if [ -d "$cg" ]; then
		for p in $(cat "$cg/cgroup.procs" 2>/dev/null); do kill -9 "$p" 2>/dev/null || true; done
		for _ in $(seq 50); do rmdir "$cg" 2>/dev/null && break; sleep 0.1; done
	fi
	for ns in "$tag-node-$rid" "$tag-pods-$rid"; do
		if ip netns list | grep -qw "$ns"; then
			for p in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$p" 2>/dev/null || true; done
			ip netns del "$ns" 2>/dev/null || true
		fi
	done
}

cleanup() {
	local rc=$?
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	remove_run "$id"
	if [ "$mounted_bpffs" = 1 ] && [ -z "$(ls /sys/fs/bpf | grep -v '\.debug$')" ]; then
		umount /sys/fs/bpf 2>/dev/null || true
	fi
	rm -rf "$tmp"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Leftovers of earlier runs of this script (names end in their pid) that were killed before their trap ran.
for d in $(ls -d /sys/fs/bpf/sluice-dptest-* "$CG2"/sluice-dptest-* 2>/dev/null; ip netns list | awk '{print $1}' | grep -E "^$tag-(node|pods)-"); do
	rid=${d##*-}
	case $rid in '' | *[!0-9]*) continue ;; esac
	[ "$rid" != "$id" ] && ! kill -0 "$rid" 2>/dev/null && remove_run "$rid"
done

# ---- build ----
make -s BUILD="$B" "$DRV" "$B/fakesvc" "$B/loadgen" >/dev/null

# ---- topology ----
if ! awk '$2 == "/sys/fs/bpf" && $3 == "bpf" { found = 1 } END { exit !found }' /proc/mounts; then
	mount -t bpf bpf /sys/fs/bpf
	mounted_bpffs=1
fi
mkdir "$CG"
ip netns add "$NODE"
ip netns add "$PODS"
ip -n "$NODE" link set lo up
ip -n "$PODS" link set lo up
ip -n "$NODE" link add n0 type veth peer name p0 netns "$PODS"
ip -n "$NODE" addr add 198.18.0.1/32 dev n0
ip -n "$NODE" addr add 2001:db8::1/128 dev n0 nodad
ip -n "$NODE" link set n0 up
ip -n "$NODE" route add 198.18.0.0/16 dev n0
ip -n "$NODE" -6 route add 2001:db8:1::/64 dev n0
pod_addrs="198.18.1.1 198.18.1.2 198.18.2.1 198.18.2.2 198.18.3.1 198.18.3.2 198.18.4.1 198.18.4.2"
for a in $pod_addrs; do ip -n "$PODS" addr add "$a/32" dev p0; done
for a in 2001:db8:1::11 2001:db8:1::21; do ip -n "$PODS" addr add "$a/128" dev p0 nodad; done
ip -n "$PODS" link set p0 up
ip -n "$PODS" route add 198.18.0.0/24 dev p0
ip -n "$PODS" -6 route add 2001:db8::/64 dev p0

# start_backend VERSION LISTENERS...: one fakesvc in the pods namespace.
start_backend() {
	local ver=$1
	shift
	ip netns exec "$PODS" "$FAKESVC" --name svc --version "$ver" "$@" --ready-file "$tmp/$ver.ready" \
		2>>"$tmp/$ver.log" &
	pids+=($!)
}
start_backend v1 --tcp 198.18.1.1:8080 --tcp 198.18.1.2:8080 --udp 198.18.1.1:5353 --tcp '[2001:db8:1::11]:8080'
start_backend v2 --tcp 198.18.2.1:8080 --udp 198.18.2.1:5353 --tcp '[2001:db8:1::21]:8080'
start_backend a1 --tcp 198.18.3.1:9000
start_backend a2 --tcp 198.18.3.2:9000
start_backend b1 --tcp 198.18.4.1:9000
start_backend b2 --tcp 198.18.4.2:9000
for v in v1 v2 a1 a2 b1 b2; do
	for _ in $(seq 100); do [ -e "$tmp/$v.ready" ] && break; sleep 0.05; done
	[ -e "$tmp/$v.ready" ] || { echo "backend $v did not start:"; cat "$tmp/$v.log"; exit 1; }
done

# ---- the plan ----
RR=(--service 198.19.0.1:8080/tcp=rr v1:80@198.18.1.1:8080,198.18.1.2:8080 v2:20@198.18.2.1:8080)
RANDOM80=(--service 198.19.0.2:8080/tcp=random v1:80@198.18.1.1:8080,198.18.1.2:8080 v2:20@198.18.2.1:8080)
REFUSED=(--service 198.19.0.3:8080/tcp=rr v1:50@198.18.1.1:8080 v2:50@
	--service 198.19.0.8:5353/udp=rr v1:50@198.18.1.1:5353 v2:50@)
UDP=(--service 198.19.0.4:5353/udp=rr v1:80@198.18.1.1:5353 v2:20@198.18.2.1:5353)
V6=(--service '198.19.0.5,[2001:db8:2::1]:8080/tcp=rr' v1:50@198.18.1.1:8080,'[2001:db8:1::11]:8080'
	v2:50@198.18.2.1:8080,'[2001:db8:1::21]:8080')
LONG=(--service 198.19.0.6:8080/tcp=rr v1:100@198.18.1.1:8080 v2:0@198.18.2.1:8080)
FLAP_A=(--service 198.19.0.7:9000/tcp=rr a1:50@198.18.3.1:9000 a2:50@198.18.3.2:9000)
FLAP_B=(--service 198.19.0.7:9000/tcp=rr b1:50@198.18.4.1:9000 b2:50@198.18.4.2:9000)
OTHERS=("${RR[@]}" "${RANDOM80[@]}" "${REFUSED[@]}" "${UDP[@]}" "${V6[@]}" "${FLAP_A[@]}")
PLAN=("${LONG[@]}" "${OTHERS[@]}")
DP=(--bpffs "$BPFFS" --cgroup "$CG")

pass() { passed=$((passed + 1)); echo "ok   $1"; }
fail() { failed=$((failed + 1)); echo "FAIL $1"; [ -z "${2:-}" ] || echo "     $2"; }

# load NAME TARGET ARGS...: loadgen as a client in the node namespace and the test cgroup; JSON in $tmp/NAME.json.
load() {
	local name=$1 target=$2
	shift 2
	"$LOADGEN" --target "$target" --netns "$NODE" --cgroup "$CG" -o json "$@" >"$tmp/$name.json" 2>"$tmp/$name.err" || true
}

# expect DESC NAME PYTHON-EXPR: the expression sees loadgen's JSON as d (and counters as c when given).
expect() {
	local desc=$1 name=$2 expr=$3 got
	if got=$(python3 - "$tmp/$name.json" "$expr" "$tmp/counters.txt" <<'EOF'
import json, sys
try:
    d = json.load(open(sys.argv[1]))
except Exception as e:
    print("no JSON from loadgen: %s: %r" % (e, open(sys.argv[1]).read()[:300])); sys.exit(1)
c = {}
try:
    for line in open(sys.argv[3]):
        sub, addr, port, n = line.split()
        c[addr + ":" + port] = int(n)
except OSError:
    pass
seq = d.get("sequence") or []
def windows(n, version):   # counts of version in every window of n consecutive connections
    return {sum(1 for v in seq[i:i + n] if v == version) for i in range(len(seq) - n + 1)}
if not eval(sys.argv[2]):
    keep = {k: d.get(k) for k in ("connections", "ok", "failed", "versions", "errors", "peer_mismatch", "switched") if k in d}
    print("expected %s; got %s counters %s" % (sys.argv[2], json.dumps(keep), c)); sys.exit(1)
EOF
	); then pass "$desc"; else fail "$desc" "$got"; fi
}

counters() { "$DRV" counters "${DP[@]}" "$@" >"$tmp/counters.txt"; }

# drv OUT ARGS...: a long driver run in the background, so that a signal to this script is handled at once.
drv() {
	local out=$1 p
	shift
	"$DRV" "$@" >"$out" 2>&1 &
	p=$!
	pids+=($p)
	wait "$p"
}

# ---- tests ----
if "$DRV" apply "${DP[@]}" "${PLAN[@]}" >"$tmp/apply.txt"; then pass "apply the plan ($(cat "$tmp/apply.txt"))"; else fail "apply the plan"; exit 1; fi

# Round robin: 80/20 exact in every window of 100 consecutive connections, endpoints in turn.
load rr 198.19.0.1:8080 --mode tcp -n 1000 -c 1 --sequence
counters "${RR[@]}"
expect "round robin 80/20: every window of 100 consecutive connections has exactly 80 v1" rr \
	'd["ok"] == 1000 and d["failed"] == 0 and windows(100, "v1") == {80}'
expect "round robin: endpoints of v1 take turns, counters 400/400/200" rr \
	'c == {"198.18.1.1:8080": 400, "198.18.1.2:8080": 400, "198.18.2.1:8080": 200}'
expect "getpeername on a rewritten TCP connection returns the VIP" rr 'd["peer_mismatch"] == 0'

# The maps as a user reads them, with bpftool alone (README: "Inspecting the maps with bpftool"):
# the 80/20 service on port 8080 after the 1000 connections above.
for m in active services endpoints counters rr_state; do
	bpftool -j map dump pinned "$BPFFS/maps/$m" >"$tmp/dump-$m.json"
done
"$DRV" view "${DP[@]}" "${RR[@]}" >"$tmp/view.txt" 2>&1 || true
while IFS='|' read -r verdict desc why; do
	if [ "$verdict" = ok ]; then pass "$desc"; else fail "$desc" "$why"; fi
done < <(python3 - "$tmp" <<'EOF'
import json, sys
sys.excepthook = lambda t, v, tb: print("FAIL|reading the maps with bpftool|%s: %s" % (t.__name__, v))
tmp = sys.argv[1]
dump = {m: [e["formatted"] for e in json.load(open("%s/dump-%s.json" % (tmp, m)))]
        for m in ("active", "services", "endpoints", "counters", "rr_state")}
def check(desc, cond, why):
    print("ok|%s|" % desc if cond else "FAIL|%s|%s" % (desc, why))
vip = [198, 19, 0, 1] + [0] * 12
active = dump["active"][0]["value"]
check("bpftool: active holds the generation and, explicitly, its side of services",
      active["side"] == active["generation"] & 1, json.dumps(active))
recs = [r for r in dump["services"] if r["key"]["vip"]["bytes"] == vip]
check("bpftool: services holds the VIP's record once per side, its port as written (8080), protocol by name",
      sorted(r["key"]["side"] for r in recs) == [0, 1] and
      all(r["key"]["port"] == 8080 and r["key"]["protocol"] == "SLUICE_PROTO_TCP" and
          r["key"]["family"] == "SLUICE_AF_INET" for r in recs),
      json.dumps([r["key"] for r in recs]))
live = [r["value"] for r in recs if r["key"]["side"] == active["side"]]
live = live[0] if live else {}
dests = live.get("destinations", [])[:live.get("n_destinations", 0)]
check("bpftool: the live record (key side == active side) shows the configured weights 80 and 20, round robin",
      [d["weight"] for d in dests] == [80, 20] and live["lb"] == "SLUICE_LB_ROUND_ROBIN" and
      [d["n_endpoints"] for d in dests] == [2, 1],
      json.dumps({k: live.get(k) for k in ("lb", "id", "generation")}) + " weights " +
      json.dumps([d.get("weight") for d in dests]))
check("bpftool: outside an apply the VIP's two records are equal and name the generation they were written for",
      len(recs) == 2 and recs[0]["value"] == recs[1]["value"] and 1 <= live.get("generation", 0) <= active["generation"],
      "generations %s, active %d" % ([r["value"]["generation"] for r in recs], active["generation"]))
sid = live.get("id")
eps = sorted((e["key"]["slot"], e["value"]["addr"]["bytes"][:4], e["value"]["port"]) for e in dump["endpoints"]
             if e["key"]["service_id"] == sid and e["key"]["generation"] == live.get("generation"))
check("bpftool: endpoints of the live record, {id, slot, generation} -> address and port 8080",
      eps == [(0, [198, 18, 1, 1], 8080), (1, [198, 18, 1, 2], 8080), (2, [198, 18, 2, 1], 8080)], json.dumps(eps))
cnt = {".".join(map(str, c["key"]["addr"]["bytes"][:4])) + ":%d" % c["key"]["port"]:
       c["value"]["connections"] for c in dump["counters"] if c["key"]["service_id"] == sid}
check("bpftool: counters, one value for all CPUs, are 400/400/200 on port 8080",
      cnt == {"198.18.1.1:8080": 400, "198.18.1.2:8080": 400, "198.18.2.1:8080": 200}, json.dumps(cnt))
ids = {r["value"]["id"] for r in dump["services"]}
rr = [r["key"] for r in dump["rr_state"]]
check("bpftool: rr_state holds one entry per service id in use (%d ids), no more" % len(ids),
      sorted(rr) == sorted(ids) and sid in rr, "rr_state keys %s, ids %s" % (sorted(rr), sorted(ids)))
view = open("%s/view.txt" % tmp).read().split("\n")
want = ["198.19.0.1:8080 id %s lb rr v1 weight 80 percent 80.00 endpoints 2" % sid,
        "198.19.0.1:8080 id %s lb rr v2 weight 20 percent 20.00 endpoints 1" % sid]
check("dataplane_service_view reads the live record: the id, weights 80/20, shares 80%/20%, endpoints 2/1",
      view[:2] == want, json.dumps(view[:3]))
EOF
)

# Random: 10,000 connections within binomial 99.9% bounds (p = 0.8, sd = 40, z = 3.29).
load random 198.19.0.2:8080 --mode tcp -n 10000 -c 8
expect "random 80/20 over 10000 connections: v1 within 8000 +- 132" random \
	'd["ok"] == 10000 and 7868 <= d["versions"].get("v1", 0) <= 8132 and d["versions"]["v1"] + d["versions"]["v2"] == 10000'

# A subset without endpoints refuses its share, the other share works.
load refused 198.19.0.3:8080 --mode tcp -n 1000 -c 1
expect "zero-endpoint destination: its half is refused with ECONNREFUSED, the other half reaches v1" refused \
	'd["errors"] == {"ECONNREFUSED": 500} and d["versions"] == {"v1": 500}'
load refused_dgram 198.19.0.8:5353 --mode udp -n 100 -c 1
expect "zero-endpoint destination, unconnected UDP: sendto() of its half fails with ECONNREFUSED" refused_dgram \
	'd["errors"] == {"ECONNREFUSED": 50} and d["versions"] == {"v1": 50}'
load refused_udp 198.19.0.3:8080 --mode udp-connected -n 10 -c 1
expect "nothing else is rewritten: UDP to a TCP service's VIP:port is left alone (ENETUNREACH)" refused_udp \
	'd["ok"] == 0 and list(d["errors"]) == ["ENETUNREACH"]'

# Nothing else is rewritten.
load direct 198.18.2.1:8080 --mode tcp -n 50 -c 1
expect "a pod address that is no VIP is not rewritten" direct 'd["versions"] == {"v2": 50}'
load otherport 198.19.0.1:9999 --mode tcp -n 5 -c 1
expect "a VIP on a port the plan does not route is not rewritten (ENETUNREACH)" otherport \
	'd["ok"] == 0 and list(d["errors"]) == ["ENETUNREACH"]'
"$LOADGEN" --target 198.19.0.1:8080 --netns "$NODE" -o json --mode tcp -n 5 >"$tmp/outside.json" 2>/dev/null || true
expect "a process outside the cgroup is not rewritten" outside 'd["ok"] == 0'

# UDP: unconnected (sendmsg/recvmsg) and connected.
load udp 198.19.0.4:5353 --mode udp -n 1000 -c 1 --sequence
expect "unconnected UDP: datagrams reach 80/20 exactly per 100 sockets, replies come from the VIP" udp \
	'd["ok"] == 1000 and windows(100, "v1") == {80} and d["peer_mismatch"] == 0'
load udp_sticky 198.19.0.4:5353 --mode udp -c 10 --duration 2 --interval 20
expect "unconnected UDP: one socket's datagrams to one VIP stick to one backend" udp_sticky \
	'd["failed"] == 0 and d["switched"] == 0 and d["peer_mismatch"] == 0 and all(p["requests"] >= 20 and len(p["versions"]) == 1 for p in d["per_connection"])'
load udp_conn 198.19.0.4:5353 --mode udp-connected -n 100 -c 1
expect "connected UDP: 80/20, replies and getpeername show the VIP" udp_conn \
	'd["versions"] == {"v1": 80, "v2": 20} and d["peer_mismatch"] == 0'

# IPv6, and an IPv4 service dialed through a dual-stack socket.
load v6 '[2001:db8:2::1]:8080' --mode tcp -n 200 -c 1
expect "IPv6 service: 50/50 to the IPv6 endpoints, getpeername shows the VIP" v6 \
	'd["versions"] == {"v1": 100, "v2": 100} and d["peer_mismatch"] == 0'
load v4mapped '[::ffff:198.19.0.5]:8080' --mode tcp -n 100 -c 1
expect "IPv4 VIP dialed as ::ffff:198.19.0.5 from an IPv6 socket is rewritten" v4mapped \
	'd["versions"] == {"v1": 50, "v2": 50} and d["peer_mismatch"] == 0'

# A long-lived connection opened at 100/0 stays on v1 through 100 weight changes.
"$LOADGEN" --target 198.19.0.6:8080 --netns "$NODE" --cgroup "$CG" -o json --mode tcp -c 4 \
	--duration 8 --interval 50 >"$tmp/long.json" 2>"$tmp/long.err" &
long_pid=$!
pids+=($long_pid)
sleep 1
drv "$tmp/sweep.txt" sweep "${DP[@]}" --times 100 "${LONG[@]}" "${OTHERS[@]}" || fail "sweep applies" "$(cat "$tmp/sweep.txt")"
wait "$long_pid" || true
expect "long-lived connections opened at 100/0 stay on v1 through 100 weight changes" long \
	'd["failed"] == 0 and d["switched"] == 0 and d["versions"].get("v2", 0) == 0 and d["versions"]["v1"] > 100 and all(p["versions"] == ["v1"] for p in d["per_connection"])'
load after_sweep 198.19.0.6:8080 --mode tcp -n 20 -c 1
counters "${LONG[@]}"
expect "new connections follow the last weights (0/100)" after_sweep 'd["versions"] == {"v2": 20}'
expect "per-endpoint counters survive 100 weight changes (4 long-lived on v1, then 20 on v2)" after_sweep \
	'c == {"198.18.1.1:8080": 4, "198.18.2.1:8080": 20}'
"$DRV" view "${DP[@]}" "${LONG[@]}" >"$tmp/view_sweep.txt" 2>&1 || true
if [ "$(awk '{ print $8, $10, $12 }' "$tmp/view_sweep.txt" | paste -sd ' ')" = "0 0.00 1 100 100.00 1" ]; then
	pass "dataplane_service_view follows the last weight change (0/100)"
else
	fail "dataplane_service_view follows the last weight change (0/100)" "$(cat "$tmp/view_sweep.txt")"
fi

# 1,000 switches between two plans with disjoint endpoint sets under continuous connections.
"$LOADGEN" --target 198.19.0.7:9000 --netns "$NODE" --cgroup "$CG" -o json --mode tcp -n 100000000 -c 4 \
	>"$tmp/flap.json" 2>"$tmp/flap.err" &
flap_pid=$!
pids+=($flap_pid)
sleep 0.3
drv "$tmp/flap.txt" flap "${DP[@]}" --times 1000 "${LONG[@]}" "${OTHERS[@]}" --alt "${LONG[@]}" "${RR[@]}" \
	"${RANDOM80[@]}" "${REFUSED[@]}" "${UDP[@]}" "${V6[@]}" "${FLAP_B[@]}" || fail "flap applies" "$(cat "$tmp/flap.txt")"
kill -INT "$flap_pid"
wait "$flap_pid" || true
expect "1000 switches under continuous connections: none failed, each on an endpoint of plan A or B ($(cat "$tmp/flap.txt"))" flap \
	'd["failed"] == 0 and d["ok"] > 1000 and set(d["versions"]) <= {"a1", "a2", "b1", "b2"} and set(d["versions"]) & {"a1", "a2"} and set(d["versions"]) & {"b1", "b2"}'

# A writer killed in the middle of switching: the next open adopts, resynchronises both sides
# and collects what the dead writer left; the maps then hold exactly the plan.
"$DRV" flap "${DP[@]}" --times 100000 "${LONG[@]}" "${OTHERS[@]}" --alt "${LONG[@]}" "${RR[@]}" "${RANDOM80[@]}" \
	"${REFUSED[@]}" "${UDP[@]}" "${V6[@]}" "${FLAP_B[@]}" >/dev/null 2>&1 &
killme=$!
pids+=($killme)
sleep 1.5
kill -9 "$killme"
wait "$killme" 2>/dev/null || true
"$DRV" apply "${DP[@]}" "${PLAN[@]}" >/dev/null
entries() { bpftool -j map dump pinned "$BPFFS/maps/$1" | python3 -c 'import json, sys; print(len(json.load(sys.stdin)))'; }
n_services=$(entries services)
n_endpoints=$(entries endpoints)
n_counters=$(entries counters)
n_rr=$(entries rr_state)
if [ "$n_services" = 18 ] && [ "$n_endpoints" = 18 ] && [ "$n_counters" = 18 ] && [ "$n_rr" = 9 ]; then
	pass "after a writer was killed mid-switch: 9 records on each side, 18 endpoint slots, 18 counters, 9 rr states"
else
	fail "after a writer was killed mid-switch: 9 records on each side, 18 endpoint slots, 18 counters, 9 rr states" \
		"got $n_services records, $n_endpoints endpoint slots, $n_counters counters, $n_rr rr states"
fi
load after_kill 198.19.0.7:9000 --mode tcp -n 100 -c 1
expect "after a writer was killed mid-switch the plan serves (flap service on plan A)" after_kill \
	'd["failed"] == 0 and set(d["versions"]) == {"a1", "a2"}'

# Adopt: close and reopen over the pins while connections run; counters continue.
"$DRV" apply "${DP[@]}" "${PLAN[@]}" >/dev/null
counters "${RR[@]}"
before=$(awk '{ s += $4 } END { print s }' "$tmp/counters.txt")
gen_before=$("$DRV" generation "${DP[@]}")
"$LOADGEN" --target 198.19.0.1:8080 --netns "$NODE" --cgroup "$CG" -o json --mode tcp -n 100000000 -c 2 \
	>"$tmp/adopt.json" 2>"$tmp/adopt.err" &
adopt_pid=$!
pids+=($adopt_pid)
sleep 0.3
drv "$tmp/reopen.txt" reopen "${DP[@]}" --times 10 "${PLAN[@]}" || fail "reopen" "$(cat "$tmp/reopen.txt")"
sleep 0.3
kill -INT "$adopt_pid"
wait "$adopt_pid" || true
counters "${RR[@]}"
gen_after=$("$DRV" generation "${DP[@]}")
made=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["ok"])' "$tmp/adopt.json" 2>/dev/null || echo 0)
expect "adopt: 10 close/reopen cycles under load, no connection failed or went unrewritten" adopt \
	"d['failed'] == 0 and d['ok'] > 0 and d['peer_mismatch'] == 0 and set(d['versions']) <= {'v1', 'v2'}"
expect "adopt: counters were not reset (before $before, +$made answered connections, $gen_before kept)" adopt \
	"0 <= sum(c.values()) - $before - d['ok'] <= 2 and '$gen_before' == '$gen_after'"

# Uninstall leaves nothing.
prog_ids=$(bpftool cgroup show "$CG" | awk '$1 ~ /^[0-9]+$/ { print $1 }')
"$DRV" uninstall --bpffs "$BPFFS"
left=""
[ -e "$BPFFS" ] && left+="pins under $BPFFS; "
[ -n "$(bpftool cgroup show "$CG" 2>/dev/null | awk '$1 ~ /^[0-9]+$/')" ] && left+="programs attached to $CG; "
for p in $prog_ids; do bpftool prog show id "$p" >/dev/null 2>&1 && left+="program id $p; "; done
[ -z "$prog_ids" ] && left+="(no program ids were recorded); "
if [ -z "$left" ]; then pass "uninstall detaches and unpins everything"; else fail "uninstall detaches and unpins everything" "left: $left"; fi
load gone 198.19.0.1:8080 --mode tcp -n 3 -c 1
expect "after uninstall the VIP is no longer rewritten" gone 'd["ok"] == 0'

echo "dataplane: $passed passed, $failed failed"
[ "$failed" = 0 ]
