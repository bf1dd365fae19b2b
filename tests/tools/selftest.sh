#!/bin/bash
# v1_http, v1_pid, ... are set by start_fakesvc through eval.
# shellcheck disable=SC2154
#
# Self-test of the test tools (fakesvc, loadgen) on loopback, no BPF. As root it also
# checks --netns and --cgroup in a namespace and cgroup of its own, removed on exit.
# Usage: tests/tools/selftest.sh    (builds build/fakesvc and build/loadgen first)
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
build=${BUILD:-$root/build}
fakesvc=$build/fakesvc
loadgen=$build/loadgen
tmp=$(mktemp -d /tmp/sluice-tools-selftest.XXXXXX)
pids=()
in_netns=()          # prefix that runs a backend inside the test namespace
netns=""
cgroup=""
passed=0
failed=0

cleanup() {
	for pid in "${pids[@]}"; do
		kill "$pid" 2>/dev/null || true
	done
	for pid in "${pids[@]}"; do
		wait "$pid" 2>/dev/null || true
	done
	[ -z "$netns" ] || ip netns del "$netns" 2>/dev/null || true
	[ -z "$cgroup" ] || rmdir "$cgroup" 2>/dev/null || true
	rm -rf "$tmp"
}
trap cleanup EXIT

pass() { passed=$((passed + 1)); echo "ok   $1"; }
fail() { failed=$((failed + 1)); echo "FAIL $1"; [ -z "${2:-}" ] || echo "     $2"; }

# expect_json DESC FILE PYTHON-EXPR: the expression sees the parsed output as d.
expect_json() {
	local desc=$1 file=$2 expr=$3 got
	if got=$(python3 - "$file" "$expr" <<'EOF'
import json, sys
try:
    d = json.load(open(sys.argv[1]))
except Exception as e:
    print("output is not JSON: %s: %r" % (e, open(sys.argv[1]).read()[:300]))
    sys.exit(1)
if not eval("(" + sys.argv[2] + ")"):
    keep = {k: d.get(k) for k in ("connections", "ok", "failed", "requests", "versions", "errors",
                                   "peer_mismatch", "switched", "sequence", "interrupted") if k in d}
    print("expected %s, got %s" % (sys.argv[2], json.dumps(keep)))
    sys.exit(1)
EOF
	); then pass "$desc"; else fail "$desc" "$got"; fi
}

# start_fakesvc VAR ARGS...: starts a backend, waits for its ready-file, sets VAR_http etc. to its ports.
start_fakesvc() {
	local var=$1 ready=$tmp/$1.ready kind addr
	shift
	"${in_netns[@]}" "$fakesvc" "$@" --ready-file "$ready" --pidfile "$tmp/$var.pid" 2>>"$tmp/$var.log" &
	pids+=($!)
	eval "${var}_pid=$!"
	for _ in $(seq 100); do
		[ -e "$ready" ] && break
		sleep 0.05
	done
	if [ ! -e "$ready" ]; then
		echo "fakesvc $var did not become ready:"; cat "$tmp/$var.log"; exit 1
	fi
	while read -r kind addr; do
		eval "${var}_${kind}=${addr##*:}"
	done <"$ready"
}

# lg ARGS...: runs loadgen; a crash or a non-zero exit is a failure of its own, and the run goes on.
lg() {
	local rc=0
	"$loadgen" "$@" || rc=$?
	if [ "$rc" != 0 ]; then
		failed=$((failed + 1))
		echo "FAIL loadgen $* exited $rc" >&2
	fi
}

free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

make -s -C "$root" BUILD="$build" "$build/fakesvc" "$build/loadgen"

echo "== start two backends (ports chosen by the kernel, read back from --ready-file)"
start_fakesvc v1 --name purchase-history-v1 --version v1 --message 'Hello From Purchase History (v1)!' \
	--http 0 --tcp 0 --udp 0
start_fakesvc v2 --name purchase-history-v2 --version v2 --http 0 --tcp 0 --udp 0
if [ "$(cat "$tmp/v1.pid")" = "$v1_pid" ]; then pass "pidfile holds the pid"; else fail "pidfile holds the pid" "got $(cat "$tmp/v1.pid"), want $v1_pid"; fi

echo "== every mode, both backends, IPv4 and IPv6"
for svc in v1 v2; do
	for host in 127.0.0.1 '[::1]'; do
		for mode in http keepalive tcp udp udp-connected; do
			case $mode in
			http|keepalive) port_var=${svc}_http ;;
			tcp) port_var=${svc}_tcp ;;
			*) port_var=${svc}_udp ;;
			esac
			target=$host:${!port_var}
			want_requests=200
			[ "$mode" = keepalive ] && want_requests=2000
			out=$tmp/$svc-$mode.json
			lg --target "$target" --mode "$mode" -n 200 -c 4 -o json >"$out"
			expect_json "$mode $target answered by purchase-history-$svc" "$out" \
				"d['target'] == '$target' and d['mode'] == '$mode' and d['connections'] == 200 and d['ok'] == 200
				 and d['failed'] == 0 and d['errors'] == {} and d['requests'] == $want_requests
				 and d['versions'] == {'$svc': $want_requests}
				 and d['backends'] == [{'name': 'purchase-history-$svc', 'version': '$svc', 'count': $want_requests}]
				 and d['peer_mismatch'] == 0 and d['switched'] == 0
				 and 0 < d['latency_us']['p50'] <= d['latency_us']['p90'] <= d['latency_us']['p99'] <= d['latency_us']['max']"
		done
	done
done

echo "== text output"
lg --target "127.0.0.1:$v1_http" -n 100 -c 2 >"$tmp/text.out"
if grep -q "^target 127.0.0.1:$v1_http mode http: 100 connections, 100 ok, 0 failed$" "$tmp/text.out" &&
   grep -Eq '^  purchase-history-v1 v1 +100 +100\.0%$' "$tmp/text.out" &&
   grep -Eq '^  latency_us: p50 [0-9]+ p90 [0-9]+ p99 [0-9]+ max [0-9]+$' "$tmp/text.out"; then
	pass "text summary lines"
else
	fail "text summary lines" "$(cat "$tmp/text.out")"
fi

echo "== sequence, refusals, timeouts"
lg --target "127.0.0.1:$v2_http" -n 10 -c 1 --sequence -o json >"$tmp/seq.json"
expect_json "--sequence records each connection's version in start order" "$tmp/seq.json" \
	"d['sequence'] == ['v2'] * 10"
closed=$(free_port)
for mode in http keepalive tcp udp udp-connected; do
	lg --target "127.0.0.1:$closed" --mode "$mode" -n 20 -c 2 -o json >"$tmp/refused.json"
	expect_json "$mode to a closed port fails ECONNREFUSED" "$tmp/refused.json" \
		"d['connections'] == 20 and d['ok'] == 0 and d['failed'] == 20 and d['errors'] == {'ECONNREFUSED': 20}"
done
lg --target "[::1]:$closed" --mode tcp -n 5 -o json >"$tmp/refused6.json"
expect_json "tcp to a closed IPv6 port fails ECONNREFUSED" "$tmp/refused6.json" "d['errors'] == {'ECONNREFUSED': 5}"
# An HTTP server sends no greeting: a tcp-mode client must give up after --timeout.
lg --target "127.0.0.1:$v1_http" --mode tcp -n 3 -c 3 --timeout 200 -o json >"$tmp/timeout.json"
expect_json "a silent server fails ETIMEDOUT" "$tmp/timeout.json" \
	"d['errors'] == {'ETIMEDOUT': 3} and d['elapsed_ms'] < 2000"

echo "== byte-exact echo"
lg --target "127.0.0.1:$v1_tcp" --mode tcp -n 1 --bytes 1000000 -o json >"$tmp/echo.json"
expect_json "tcp --bytes 1000000 comes back intact" "$tmp/echo.json" \
	"d['ok'] == 1 and d['failed'] == 0 and d['versions'] == {'v1': 1}"
lg --target "[::1]:$v2_tcp" --mode tcp -n 8 -c 4 --bytes 1000000 -o json >"$tmp/echo6.json"
expect_json "8 parallel IPv6 1 MB echoes come back intact" "$tmp/echo6.json" \
	"d['ok'] == 8 and d['failed'] == 0 and d['versions'] == {'v2': 8}"
lg --target "127.0.0.1:$v1_udp" --mode udp -n 50 -c 5 --bytes 1400 -o json >"$tmp/udpbytes.json"
expect_json "udp --bytes 1400 payloads come back intact" "$tmp/udpbytes.json" "d['ok'] == 50 and d['errors'] == {}"
# A datagram to 127.0.0.2 must be answered from 127.0.0.2 (IP_PKTINFO), or the client sees a stranger.
lg --target "127.0.0.2:$v1_udp" --mode udp -n 20 -o json >"$tmp/pktinfo.json"
expect_json "udp reply leaves from the address the datagram was sent to" "$tmp/pktinfo.json" \
	"d['ok'] == 20 and d['peer_mismatch'] == 0"

echo "== long-lived connections stopped by SIGINT"
for mode in keepalive tcp udp; do
	case $mode in keepalive) port=$v1_http ;; tcp) port=$v1_tcp ;; udp) port=$v1_udp ;; esac
	"$loadgen" --target "127.0.0.1:$port" --mode "$mode" --duration 60 --interval 20 -c 4 -o json \
		>"$tmp/duration-$mode.json" &
	lg=$!
	pids+=("$lg")
	sleep 1
	kill -INT "$lg"
	rc=0
	wait "$lg" || rc=$?
	if [ "$rc" = 0 ]; then pass "$mode --duration ended by SIGINT exits 0"; else fail "$mode --duration ended by SIGINT exits 0" "exit $rc"; fi
	expect_json "$mode --duration: 4 connections, each saw only v1, switched 0" "$tmp/duration-$mode.json" \
		"d['interrupted'] and d['switched'] == 0 and d['failed'] == 0 and d['connections'] == 4
		 and d['requests'] >= 80 and all(c['versions'] == ['v1'] and c['error'] is None for c in d['per_connection'])
		 and d['failure_log'] == []"
done
# A backend that dies mid-run shows up as failures on the connections that used it.
start_fakesvc v3 --name purchase-history-v3 --version v3 --http 127.0.0.1:0
"$loadgen" --target "127.0.0.1:$v3_http" --duration 60 --interval 20 -c 2 --timeout 300 -o json >"$tmp/dying.json" &
lg=$!
pids+=("$lg")
sleep 0.5
kill -TERM "$v3_pid"
rc=0
wait "$v3_pid" || rc=$?
if [ "$rc" = 0 ]; then pass "fakesvc exits 0 on SIGTERM"; else fail "fakesvc exits 0 on SIGTERM" "exit $rc"; fi
if [ ! -e "$tmp/v3.ready" ]; then pass "fakesvc removes its ready-file on exit"; else fail "fakesvc removes its ready-file on exit"; fi
sleep 0.5
kill -INT "$lg"
wait "$lg" || true
expect_json "--duration reports each failure of a killed backend" "$tmp/dying.json" \
	"d['failed'] >= 2 and len(d['failure_log']) == d['failed'] and set(d['errors']) <= {'EOF', 'ECONNREFUSED', 'ECONNRESET'}
	 and d['versions'] == {'v3': d['requests']} and d['switched'] == 0"

echo "== HTTP server behaviour"
while read -r verdict rest; do
	if [ "$verdict" = ok ]; then pass "$rest"; else fail "${rest%%: *}" "${rest#*: }"; fi
done < <(python3 - "$v1_http" <<'EOF'
import json, socket, sys, time
port = int(sys.argv[1])

def conn(host="127.0.0.1"):
    s = socket.create_connection((host, port), timeout=2)
    return s

def read_responses(s, count):
    """Reads COUNT responses; returns (list of (status, headers, body)), rest, eof."""
    data, out = b"", []
    while len(out) < count:
        while b"\r\n\r\n" not in data:
            chunk = s.recv(65536)
            if not chunk:
                return out, data, True
            data += chunk
        head, data = data.split(b"\r\n\r\n", 1)
        lines = head.decode().split("\r\n")
        status = int(lines[0].split()[1])
        headers = {k.lower(): v.strip() for k, v in (l.split(":", 1) for l in lines[1:])}
        n = int(headers.get("content-length", 0))
        while len(data) < n:
            data += s.recv(65536)
        out.append((status, headers, data[:n]))
        data = data[n:]
    return out, data, False

def closed(s):
    try:
        return s.recv(1) == b""
    except (ConnectionResetError, socket.timeout):
        return False

def check(name, cond, detail=""):
    print(("ok %s" % name) if cond else ("FAIL %s: %s" % (name, detail)))

def main():
    s = conn()
    s.sendall(b"GET /purchase/1?x=%22 HTTP/1.1\r\nHost: a\r\n\r\n")
    (r,), _, _ = read_responses(s, 1)
    body = json.loads(r[2])
    want = {"name": "purchase-history-v1", "version": "v1", "uri": "/purchase/1?x=%22", "type": "HTTP",
            "ip_addresses": ["127.0.0.1"], "body": "Hello From Purchase History (v1)!", "code": 200}
    check("GET answers fake-service JSON", r[0] == 200 and r[1].get("content-type") == "application/json" and body == want,
          "%r %r" % (r[0], body))
    s.sendall(b"GET /again HTTP/1.1\r\n\r\n")
    (r,), _, _ = read_responses(s, 1)
    check("HTTP/1.1 keeps the connection open", r[0] == 200 and json.loads(r[2])["uri"] == "/again", repr(r))

    s.sendall(b"GET /1 HTTP/1.1\r\n\r\nGET /2 HTTP/1.1\r\n\r\nGET /3 HTTP/1.1\r\nConnection: close\r\n\r\n")
    rs, rest, _ = read_responses(s, 3)
    check("pipelined requests are answered in order, then Connection: close closes",
          [json.loads(x[2])["uri"] for x in rs] == ["/1", "/2", "/3"] and rs[2][1].get("connection") == "close"
          and rest == b"" and closed(s), repr(rs))
    s.close()

    s = conn()
    for b in b"GET /split HTTP/1.1\r\nHost: x\r\n\r\n":
        s.send(bytes([b]))
        time.sleep(0.001)
    (r,), _, _ = read_responses(s, 1)
    check("a request split across many reads is answered", r[0] == 200 and json.loads(r[2])["uri"] == "/split", repr(r))
    s.close()

    s = conn("::1")
    s.sendall(b"GET /v6 HTTP/1.0\r\n\r\n")
    (r,), _, _ = read_responses(s, 1)
    check("HTTP/1.0 is answered then closed; ip_addresses shows ::1",
          r[0] == 200 and json.loads(r[2])["ip_addresses"] == ["::1"] and closed(s), repr(r))
    s.close()

    s = conn()
    s.sendall(b"HEAD / HTTP/1.1\r\n\r\n")
    time.sleep(0.2)
    s.sendall(b"GET /after-head HTTP/1.1\r\n\r\n")
    data = b""
    while not data.endswith(b"}\n"):
        data += s.recv(65536)
    head, data = data.split(b"\r\n\r\n", 1)
    check("HEAD has headers and no body", head.startswith(b"HTTP/1.1 200") and b"Content-Length: " in head, repr(head))
    # HEAD sent a Content-Length but no body: the next bytes are the next response.
    check("HEAD leaves the connection usable", data.startswith(b"HTTP/1.1 200"), repr(data[:40]))
    s.close()

    s = conn()
    s.sendall(b"POST /p HTTP/1.1\r\nContent-Length: 5\r\n\r\nhelloGET /next HTTP/1.1\r\n\r\n")
    rs, _, _ = read_responses(s, 2)
    check("a body is skipped and the next request answered",
          rs[0][0] == 405 and rs[1][0] == 200 and json.loads(rs[1][2])["uri"] == "/next", repr(rs))
    s.close()

    s = conn()
    s.sendall(b"this is not http\r\n\r\n")
    rs, rest, _ = read_responses(s, 1)
    check("a bad request gets 400 and a close", rs and rs[0][0] == 400 and closed(s), repr(rs))
    s.close()

    s = conn()
    s.sendall(b"GET / HTTP/1.1\r\n" + b"X-Filler: " + b"a" * 40000 + b"\r\n\r\n")
    rs, _, _ = read_responses(s, 1)
    check("an oversized request head gets 400", rs and rs[0][0] == 400 and closed(s), repr(rs)[:80])
    s.close()

try:
    main()
except Exception as e:
    print("FAIL HTTP checks stopped: %s: %s" % (type(e).__name__, e))
EOF
)

echo "== command-line errors"
rc=0
"$fakesvc" --name dup --version v1 --tcp "127.0.0.1:$v1_tcp" 2>"$tmp/bind.err" || rc=$?
if [ "$rc" = 1 ] && grep -q '^fakesvc: error: .*bind: Address already in use' "$tmp/bind.err"; then
	pass "fakesvc on a taken port: exit 1, fakesvc: error: ... bind"
else
	fail "fakesvc on a taken port: exit 1, fakesvc: error: ... bind" "exit $rc: $(cat "$tmp/bind.err")"
fi
for args in "" "--target 127.0.0.1" "--target ::1:80" "--target 127.0.0.1:80 --mode quic" \
	    "--target 127.0.0.1:80 -n 0" "--target 127.0.0.1:80 --interval 10" "--target 127.0.0.1:80 --bytes 10"; do
	rc=0
	# shellcheck disable=SC2086
	"$loadgen" $args >/dev/null 2>"$tmp/usage.err" || rc=$?
	if [ "$rc" = 2 ] && grep -q '^loadgen: error: ' "$tmp/usage.err"; then
		pass "loadgen $args: exit 2 with loadgen: error:"
	else
		fail "loadgen $args: exit 2 with loadgen: error:" "exit $rc: $(head -1 "$tmp/usage.err")"
	fi
done

echo "== concurrency"
lg --target "127.0.0.1:$v2_http" -n 5000 -c 500 -o json >"$tmp/c500.json"
expect_json "5000 short connections, 500 at a time, all answered" "$tmp/c500.json" \
	"d['ok'] == 5000 and d['versions'] == {'v2': 5000}"
lg --target "127.0.0.1:$v1_tcp" --mode tcp --duration 2 --interval 500 -c 3000 --timeout 5000 -o json \
	>"$tmp/c3000.json"
expect_json "3000 concurrent echo connections held for 2 s" "$tmp/c3000.json" \
	"d['connections'] == 3000 and d['failed'] == 0 and d['requests'] >= 3000 and d['switched'] == 0"

cgroup2=$(awk '$3 == "cgroup2" { print $2; exit }' /proc/mounts)
if [ "$(id -u)" = 0 ] && command -v ip >/dev/null && [ -n "$cgroup2" ]; then
	echo "== --netns and --cgroup (root: a namespace and a cgroup of our own, removed on exit)"
	netns=sluice-tools-selftest-$$
	ip netns add "$netns"
	ip -n "$netns" link set lo up
	ip -n "$netns" addr add 198.19.0.1/32 dev lo
	ip -n "$netns" addr add 2001:db8::1/128 dev lo nodad
	in_netns=(ip netns exec "$netns")
	start_fakesvc ns --name reviews-v3 --version v3 --http 0 --udp 198.19.0.1:0
	in_netns=()
	for target in "198.19.0.1:$ns_http" "[2001:db8::1]:$ns_http"; do
		lg --netns "$netns" --target "$target" -n 50 -c 5 -o json >"$tmp/netns.json"
		expect_json "--netns reaches $target inside the namespace" "$tmp/netns.json" \
			"d['ok'] == 50 and d['versions'] == {'v3': 50} and d['peer_mismatch'] == 0"
	done
	lg --netns "$netns" --target "198.19.0.1:$ns_udp" --mode udp -n 20 -o json >"$tmp/netns-udp.json"
	expect_json "--netns udp to 198.19.0.1" "$tmp/netns-udp.json" "d['ok'] == 20 and d['peer_mismatch'] == 0"
	cgroup=$cgroup2/sluice-tools-selftest-$$
	mkdir "$cgroup"
	"$loadgen" --netns "$netns" --cgroup "$cgroup" --target "198.19.0.1:$ns_http" --duration 30 --interval 50 \
		-o json >"$tmp/cgroup.json" &
	lg=$!
	pids+=("$lg")
	sleep 0.5
	if grep -q "^0::/sluice-tools-selftest-$$\$" "/proc/$lg/cgroup"; then
		pass "--cgroup moves loadgen into the cgroup"
	else
		fail "--cgroup moves loadgen into the cgroup" "$(cat "/proc/$lg/cgroup")"
	fi
	kill -INT "$lg"
	wait "$lg" || true
	expect_json "--cgroup run answered" "$tmp/cgroup.json" "d['failed'] == 0 and d['requests'] > 0"
	for args in "--netns no-such-netns-$$" "--cgroup $cgroup2/no-such-cgroup-$$"; do
		rc=0
		# shellcheck disable=SC2086
		"$loadgen" $args --target 127.0.0.1:1 -n 1 >/dev/null 2>"$tmp/setup.err" || rc=$?
		if [ "$rc" = 1 ] && grep -q '^loadgen: error: ' "$tmp/setup.err"; then
			pass "loadgen $args: exit 1 with loadgen: error:"
		else
			fail "loadgen $args: exit 1 with loadgen: error:" "exit $rc: $(cat "$tmp/setup.err")"
		fi
	done
else
	echo "== --netns and --cgroup skipped (needs root, ip and a cgroup2 mount)"
fi

echo "== figures (printed, not asserted)"
lg --target "127.0.0.1:$v1_http" -n 20000 -c 32 -o json >"$tmp/rate.json"
lg --target "127.0.0.1:$v1_http" --mode keepalive -n 64 -c 32 --requests-per-conn 2000 -o json >"$tmp/ka.json"
python3 - "$tmp/rate.json" "$tmp/ka.json" <<'EOF'
import json, sys
r, k = (json.load(open(f)) for f in sys.argv[1:])
print("info short HTTP connections: %d/s (%d ok of %d, p99 %d us)" % (r["conn_per_s"], r["ok"], r["connections"], r["latency_us"]["p99"]))
print("info keep-alive HTTP requests: %d/s (%d answered, p99 %d us)" % (k["req_per_s"], k["requests"], k["latency_us"]["p99"]))
EOF

echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
