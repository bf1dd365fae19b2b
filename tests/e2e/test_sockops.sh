#!/usr/bin/env bash
# sockops: the TCP policy of a DestinationRule (connectionPool.tcp connectTimeout, tcpKeepalive)
# applied to the connections sluice translates, and what sluice status and /metrics show of their
# TCP life: handshakes, RTT, retransmits, failed connects by reason.
set -u
. "$(dirname "$0")/lib.sh"
e2e_begin

NS=shop
VIP=198.19.0.40
pod_add client default app=client 198.18.0.40
pod_add bystander default app=bystander 198.18.0.41
pod_add cart-v1 $NS app=cart,version=v1 198.18.1.40
pod_add cart-v2 $NS app=cart,version=v2 198.18.2.40
for v in 1 2; do
	backend_start cart-v$v v$v "cart v$v" --http 8080 --tcp 9000
done
# 9100: nothing listens there
svc_add cart $NS $VIP app=cart 8080 9000 9100
D=$CLUSTER_DIR
cluster_objects "$D/cluster.yaml"

# rules "W1 W2" [TCP-POLICY-YAML]: both ports split W1/W2; the policy goes under connectionPool.tcp.
rules() {
	local policy=
	[ -n "${2:-}" ] && policy="{connectionPool: {tcp: $2}}"
	split_rules cart $NS "8080 9000 9100" "v1:${1% *} v2:${1#* }" "$policy" > "$D/rules.yaml"
	sluice apply -f "$D/cluster.yaml" -f "$D/rules.yaml" >/dev/null
}

lg() { loadgen_in client -o json "$@"; }
# ep_stat ADDR PORT FIELD: one counter of an endpoint in sluice status -o json
ep_stat() {
	sluice status -o json | jq -rc --arg a "$1:$2" --arg f "$3" \
		'[.services[].destinations[].endpoints[] | select(.address == $a) | .[$f]] | first'
}
# sockopts POD [ADDR PORT]: connects from the pod (its cgroup: sluice translates) and prints
# SO_KEEPALIVE TCP_KEEPIDLE TCP_KEEPINTVL TCP_KEEPCNT TCP_USER_TIMEOUT of the connected socket.
sockopts() {
	pod_exec "$1" python3 -c '
import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)
T = socket.IPPROTO_TCP
print(s.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE), s.getsockopt(T, socket.TCP_KEEPIDLE),
      s.getsockopt(T, socket.TCP_KEEPINTVL), s.getsockopt(T, socket.TCP_KEEPCNT), s.getsockopt(T, socket.TCP_USER_TIMEOUT))
' "${2:-$VIP}" "${3:-8080}"
}
# sockconnect POD ADDR PORT: one connect() from the pod: "connected" or the errno name, and its ms
sockconnect() {
	pod_exec "$1" python3 -c '
import socket, sys, time, errno
s = socket.socket()
t = time.monotonic()
try:
    s.connect((sys.argv[1], int(sys.argv[2]))); r = "connected"
except OSError as e:
    r = errno.errorcode.get(e.errno, str(e.errno))
print(r, int((time.monotonic() - t) * 1000))
' "$2" "$3"
}

sluiced_start || exit 1
defaults=$(pod_exec client sh -c 'cat /proc/sys/net/ipv4/tcp_keepalive_time /proc/sys/net/ipv4/tcp_keepalive_intvl /proc/sys/net/ipv4/tcp_keepalive_probes' | paste -sd' ')

# 1. No policy: sockets keep the kernel's settings; status counts handshakes and RTT per endpoint.
rules "100 0"
check "no policy: the socket keeps the kernel's settings (keepalive off, user timeout 0)" \
	"0 $defaults 0" "$(sockopts client)"
out=$(lg --target $VIP:8080 -n 200 -c 4)
check "200 connections to v1" 200 "$(jqr "$out" '.versions.v1 // 0')"
st=$(sluice status -o json)
check "status: v1's endpoint established 201 handshakes (200 + the socket above), none failed" "201 201 0" \
	"$(jqr "$st" '.services[] | select(.port == 8080) | .destinations[0].endpoints[0] | "\(.connections) \(.established) \(.failed)"')"
rtt=$(jqr "$st" '.services[] | select(.port == 8080) | .destinations[0].endpoints[0].rtt_us')
check_range "status: v1's mean smoothed RTT at close, us (a veth pair)" 1 100000 "$rtt"
check "status text shows the TCP counters (no failure: no reasons after failed)" "connections N  established N  failed N  retransmits N  rtt N us" \
	"$(sluice status cart.$NS | grep -m1 '198.18.1.40:8080' | sed 's/^ *[^ ]* *//; s/[0-9][0-9]*/N/g')"

# 2. tcpKeepalive: SO_KEEPALIVE and the three timers on the translated socket, the kernel's
#    defaults where a field is left out; a socket of the same pod to a pod IP is left alone.
rules "100 0" "{tcpKeepalive: {time: 7s, interval: 3s, probes: 4}}"
check "tcpKeepalive time 7s interval 3s probes 4: set on the socket once connected" "1 7 3 4 0" "$(sockopts client)"
check "... a socket to the pod address (not translated) is untouched" "0 $defaults 0" \
	"$(sockopts client 198.18.1.40 8080)"
rules "100 0" "{tcpKeepalive: {}}"
check "tcpKeepalive {}: keepalive on with the kernel's timers" "1 $defaults 0" "$(sockopts client)"
check "status shows the destination's policy" "tcp policy: keepalive default/default x default" \
	"$(sluice status cart.$NS | grep -m1 'tcp policy' | sed 's/^ *//')"
rules "100 0" "{tcpKeepalive: {time: 7s, interval: 3s, probes: 4}}"
check "status -o json shows the destination's policy" '{"keepalive":{"time_s":7,"interval_s":3,"probes":4}}' \
	"$(sluice status -o json | jq -c '.services[0].destinations[0].tcp')"

# 3. connectTimeout: a connect to an endpoint that drops SYNs fails after the timeout, not after
#    the kernel's two minutes of SYN retries; once connected the timeout no longer applies.
ip netns exec "$CLUSTER_PREFIX-cart-v2" iptables -A INPUT -p tcp --syn -j DROP
rules "0 100" "{connectTimeout: 300ms}"
read -r res ms <<< "$(sockconnect client $VIP 8080)"
check "connectTimeout 300ms to a silent endpoint: ETIMEDOUT" ETIMEDOUT "$res"
check_range "... after about 300 ms (ms)" 280 900 "$ms"
out=$(lg --target $VIP:8080 -n 4 -c 1 --timeout 10000)
check "4 connections to the silent endpoint: all ETIMEDOUT" 4 "$(jqr "$out" '.errors.ETIMEDOUT // 0')"
check_range "... in well under loadgen's own 10 s each (ms for all 4)" 1100 3000 "$(jqr "$out" '.elapsed_ms | floor')"
check "status: the silent endpoint's 5 failed connects, all timeouts, none established" \
	'5 {"timeout":5,"refused":0,"unreachable":0,"aborted":0,"other":0} 0' \
	"$(ep_stat 198.18.2.40 8080 failed) $(ep_stat 198.18.2.40 8080 failedBy) $(ep_stat 198.18.2.40 8080 established)"
rules "0 100" "{connectTimeout: 2s}"
read -r res ms <<< "$(sockconnect client $VIP 8080)"
check_range "connectTimeout 2s: ETIMEDOUT after about 2 s (ms)" 1950 2600 "$ms"
rules "0 100"
# without a policy the kernel retries the SYN for about two minutes: still trying after 3 s
pod_run client python3 -c "import socket; socket.create_connection(('$VIP', 8080))" > "$D/hang.pid" 2>/dev/null
pid=$(head -1 "$D/hang.pid")
sleep 3
check "no connectTimeout: the same connect is still trying after 3 s" yes "$(kill -0 "$pid" 2>/dev/null && echo yes || echo no)"
kill "$pid" 2>/dev/null
while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
check "... killed while it tried: an aborted connect (closed in SYN_SENT), beside the 6 timeouts" \
	'{"timeout":6,"refused":0,"unreachable":0,"aborted":1,"other":0}' "$(ep_stat 198.18.2.40 8080 failedBy)"
ip netns exec "$CLUSTER_PREFIX-cart-v2" iptables -F INPUT

rules "100 0" "{connectTimeout: 300ms, tcpKeepalive: {time: 7s}}"
check "connected with connectTimeout 300ms: the user timeout is lifted (keepalive 7s, kernel interval/probes)" \
	"1 7 ${defaults#* } 0" "$(sockopts client)"
# An established connection whose segments go unanswered for 1.5 s survives: with the 300 ms
# timeout still in force the kernel would abort it (ETIMEDOUT).
lg --target $VIP:9000 --mode tcp -c 2 --duration 4 --interval 100 --timeout 10000 > "$D/stall.json" &
stall=$!
sleep 1
ip netns exec "$CLUSTER_PREFIX-cart-v1" iptables -A INPUT -p tcp --dport 9000 -j DROP
sleep 1.5
ip netns exec "$CLUSTER_PREFIX-cart-v1" iptables -F INPUT
wait $stall
out=$(cat "$D/stall.json")
check "echo connections through a 1.5 s stall: none failed" "0 {}" "$(jqr "$out" '"\(.failed) \(.errors | tojson)"')"
check_range "... and they kept echoing (requests)" 20 1000 "$(jqr "$out" '.requests')"
check_range "status: the stall shows as retransmits at close" 1 100000 "$(ep_stat 198.18.1.40 9000 retransmits)"

# 4. Failed connects by reason: the error the kernel gave the socket as it went SYN_SENT -> CLOSE.
#    All to cart-v2's port 9100, where nothing listens; a different count per reason.
rules "0 100" "{connectTimeout: 300ms}"
# lg9100 N: N loadgen connects (non-blocking, SO_ERROR), its errors. connect9100: one blocking
# connect's errno name. giveup9100 N WAIT: N non-blocking connects, each closed WAIT s later unread.
lg9100() { lg --target $VIP:9100 -n "$1" -c 1 --timeout 5000 | jq -c .errors; }
connect9100() { sockconnect client $VIP 9100 | cut -d' ' -f1; }
giveup9100() {
	pod_exec client python3 -c '
import socket, sys, time
for _ in range(int(sys.argv[2])):
    s = socket.socket()
    s.setblocking(False)
    s.connect_ex((sys.argv[1], 9100))   # EINPROGRESS: the SYN is out
    time.sleep(float(sys.argv[3]))
    s.close()
' $VIP "$1" "$2"
}
# v2_input [RULE...]: cart-v2's INPUT chain holds that one rule (none: empty)
v2_input() {
	ip netns exec "$CLUSTER_PREFIX-cart-v2" iptables -F INPUT
	[ $# = 0 ] || ip netns exec "$CLUSTER_PREFIX-cart-v2" iptables -A INPUT "$@"
}
check "refused: 2 connects answered with RST" '{"ECONNREFUSED":2}' "$(lg9100 2)"
# The node answers ICMP host unreachable for cart-v2 (a route of that type ahead of the pod's).
# icmp_ratemask 0: those errors then pass ip_error's own limit alone (a burst of 5 per client),
# not the ICMP rate limit too, whose tokens it shares and which would let 2 through.
ip netns exec "$CLUSTER_NODE" sysctl -qw net.ipv4.icmp_ratemask=0
ip -n "$CLUSTER_NODE" route prepend unreachable 198.18.2.40/32
check "unreachable: 2 connects answered ICMP host unreachable by the node" "EHOSTUNREACH EHOSTUNREACH" \
	"$(connect9100) $(connect9100)"
ip -n "$CLUSTER_NODE" route del unreachable 198.18.2.40/32
ip netns exec "$CLUSTER_PREFIX-cart-v2" sysctl -qw net.ipv4.icmp_ratemask=0
v2_input -p tcp --dport 9100 -j REJECT --reject-with icmp-net-unreachable
check "unreachable: 1 connect answered ICMP net unreachable by the pod" ENETUNREACH "$(connect9100)"
# A same-node ICMP error reaches the socket while connect() holds it: a soft error, which the
# kernel makes the socket's error at the next timer. A client that closes before that, not
# having read it, leaves it for sockops all the same.
giveup9100 1 0.05
check "unreachable: a non-blocking client that closed 50 ms later, the error unread" \
	'{"timeout":0,"refused":2,"unreachable":4,"aborted":0,"other":0}' "$(ep_stat 198.18.2.40 9100 failedBy)"
# A known limit: a non-blocking client reads that soft error with SO_ERROR (which clears it) and
# closes the socket itself; sockops sees a client's close with no error.
check "limit: a non-blocking client that read ENETUNREACH with SO_ERROR and closed: counted aborted" \
	'{"ENETUNREACH":1} {"timeout":0,"refused":2,"unreachable":4,"aborted":1,"other":0}' \
	"$(lg9100 1) $(ep_stat 198.18.2.40 9100 failedBy)"
v2_input -p tcp --dport 9100 -j REJECT --reject-with icmp-proto-unreachable
check "other: 1 connect answered ICMP protocol unreachable" ENOPROTOOPT "$(connect9100)"
v2_input -p tcp --syn -j DROP
check "timeout: 3 connects to a silent port, connectTimeout 300ms" '{"ETIMEDOUT":3}' "$(lg9100 3)"
giveup9100 5 0   # aborted: closed before any answer, as a client that gives up does
v2_input
byreason='{"timeout":3,"refused":2,"unreachable":4,"aborted":6,"other":1}'
check "status -o json: 16 failed, by reason, none established" "16 $byreason 0" \
	"$(ep_stat 198.18.2.40 9100 failed) $(ep_stat 198.18.2.40 9100 failedBy) $(ep_stat 198.18.2.40 9100 established)"
check "status text: failed 16 and the reasons that happened" \
	"failed 16 (timeout 3, refused 2, unreachable 4, aborted 6, other 1)" \
	"$(sluice status cart.$NS | grep -m1 '198.18.2.40:9100' | grep -o 'failed [^)]*)')"
check "status text: an endpoint without failures shows failed 0 alone" "failed 0  retransmits" \
	"$(sluice status cart.$NS | grep -m1 '198.18.1.40:9100' | grep -o 'failed [0-9]*  retransmits')"

# 5. A restart keeps the policy (the saved plan), the sockops link and the counters (adopted pins);
#    the node endpoint's /metrics has one failure series per reason.
rules "100 0" "{connectTimeout: 300ms, tcpKeepalive: {time: 7s}}"
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
sluiced_stop TERM
sluiced_start --listen 127.0.0.1:$PORT || exit 1
check "after a restart: the policy still applies" "1 7 ${defaults#* } 0" "$(sockopts client)"
check "after a restart: the failed connects by reason are kept" "$byreason" "$(ep_stat 198.18.2.40 9100 failedBy)"
# failures PORT SUBSET: "reason=value ..." of sluice_tcp_connect_failures_total for one destination
failures() {
	curl -s --max-time 5 "http://127.0.0.1:$PORT/metrics" | awk -v p="port=\"$1\"" -v s="subset=\"$2\"" '
		$1 ~ /^sluice_tcp_connect_failures_total\{/ && index($1, p) && index($1, s) {
			match($1, /reason="[a-z]*"/); printf "%s%s=%s", n++ ? " " : "", substr($1, RSTART + 8, RLENGTH - 9), $2 }'
}
check "/metrics: sluice_tcp_connect_failures_total{reason} of v2 on 9100" \
	"timeout=3 refused=2 unreachable=4 aborted=6 other=1" "$(failures 9100 v2)"
check "/metrics: ... of v2 on 8080 (the silent endpoint, the killed connect)" \
	"timeout=6 refused=0 unreachable=0 aborted=1 other=0" "$(failures 8080 v2)"
check "/metrics: ... every reason, at 0, where nothing failed" \
	"timeout=0 refused=0 unreachable=0 aborted=0 other=0" "$(failures 8080 v1)"

e2e_end
