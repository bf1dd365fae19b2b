# shellcheck shell=bash
# The mini-cluster: a "node" network namespace routing between "pod" namespaces the way
# Calico and kindnet do (/32 pods, default route via 169.254.1.1), each pod's processes in
# their own cgroup under a cgroup this cluster made, and sluiced attached to that cgroup only.
# Source it, then: cluster_up; pod_add ...; svc_add ...; cluster_objects FILE; ...; cluster_down.
# Every cluster lives under its own prefix, so a crashed run never blocks the next one.
# The topology and the safety rules it keeps: DESIGN.md §16.
#
# Several nodes instead of one: cluster_up; cluster_nodes N; pod_add_on K ...; sluiced_start_node K
# (or sluiced_start_all); sluice_on K ...; cluster_down. See "Multi-node" below for the topology.
# A cluster is either single-node (pod_add, sluiced_start, sluice) or multi-node, not both:
# cluster_nodes removes the single node, and pod_add and sluiced_start refuse a cluster of nodes.

SLUICE_TOP=${SLUICE_TOP:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
SLUICE_BUILD=${SLUICE_BUILD:-$SLUICE_TOP/build}
CLUSTER_RUN=/run/sluice-test        # one directory per live cluster: its prefix, pid and state

cluster_log() { [ -n "${CLUSTER_QUIET:-}" ] || echo "cluster: $*" >&2; }
cluster_die() { echo "cluster: error: $*" >&2; return 1; }

cgroup2_mount() { awk '$3 == "cgroup2" { print $2; exit }' /proc/mounts; }

# sluiced_is PID BPFFS: PID is a sluiced serving BPFFS (a pid file of a dead run may name another
# process by now: only ours are signalled).
sluiced_is() {
	[ -n "$1" ] && [ -r "/proc/$1/cmdline" ] &&
		[ "$(tr '\0' '\n' < "/proc/$1/cmdline" 2>/dev/null | grep -A1 -x -e --bpffs | sed -n 2p)" = "$2" ]
}

# sluiced_gone PID: exited (or a zombie, which holds no pins).
sluiced_gone() { ! [ -e "/proc/$1" ] || grep -q '^State:.*Z' "/proc/$1/status" 2>/dev/null; }

# Removes what a cluster made, whatever state it reached; safe to call twice.
# A sluiced's home is a directory holding bpffs (its pin directory), sluiced.pid, sluice.sock,
# sluiced.log and state/: the cluster's own directory for the single node, node<K>/ for node K.
cluster_teardown_dir() {
	local dir=$1 p ns cg bpffs home pid pids=() left homes=() un=()
	[ -d "$dir" ] || return 0
	p=$(cat "$dir/prefix" 2>/dev/null) || return 0
	cg=$(cat "$dir/cgroup" 2>/dev/null || true)
	for home in "$dir" "$dir"/node*/; do
		home=${home%/}
		[ -f "$home/bpffs" ] && homes+=("$home")
		# a node's sluiced in a container goes with its container (TERM first: it may hold the pins)
		[ -f "$home/container" ] && cluster_podman rm -f -t 2 "$(cat "$home/container")" >/dev/null 2>&1
	done
	# every sluiced at once: uninstall is refused while a sluiced holds the pins, so wait for them
	for home in "${homes[@]}"; do
		pid=$(cat "$home/sluiced.pid" 2>/dev/null) || continue
		sluiced_is "$pid" "$(cat "$home/bpffs")" || continue
		kill "$pid" 2>/dev/null && pids+=("$pid")
	done
	for _ in $(seq 100); do
		left=()
		for pid in "${pids[@]}"; do sluiced_gone "$pid" || left+=("$pid"); done
		pids=("${left[@]}")
		[ ${#pids[@]} = 0 ] && break
		sleep 0.05
	done
	for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
	# processes first, so nothing holds the namespaces or the cgroups
	if [ -n "$cg" ] && [ -d "$cg" ]; then
		find "$cg" -name cgroup.kill 2>/dev/null | while read -r k; do echo 1 > "$k" 2>/dev/null || true; done
		for _ in $(seq 50); do
			[ -z "$(find "$cg" -name cgroup.procs -exec cat {} + 2>/dev/null)" ] && break
			sleep 0.1
		done
	fi
	for home in "${homes[@]}"; do
		bpffs=$(cat "$home/bpffs")
		if [ -n "$bpffs" ] && [ -d "$bpffs" ] && [ -x "$SLUICE_BUILD/sluiced" ]; then
			"$SLUICE_BUILD/sluiced" --uninstall --bpffs "$bpffs" --socket "$home/sluice.sock" >/dev/null 2>&1 &
			un+=($!)
		fi
	done
	for pid in "${un[@]}"; do wait "$pid"; done    # only these: a test's own jobs may still run
	for home in "${homes[@]}"; do
		bpffs=$(cat "$home/bpffs")
		[ -n "$bpffs" ] && rm -rf "$bpffs" 2>/dev/null
		[ -f "$home/bpffs-root" ] && rm -rf "$(cat "$home/bpffs-root")" 2>/dev/null
	done
	if [ -f "$dir/podman-parent" ]; then
		find /sys/fs/cgroup -maxdepth 3 -depth -type d -path "*/$(cat "$dir/podman-parent")*" -exec rmdir {} \; 2>/dev/null
	fi
	[ -f "$dir/image" ] && cluster_podman rmi -f "$(cat "$dir/image")" >/dev/null 2>&1
	for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep "^$p-" || true); do
		ip netns pids "$ns" 2>/dev/null | xargs -r kill -9 2>/dev/null || true
		ip netns delete "$ns" 2>/dev/null || true
	done
	if [ -n "$cg" ] && [ -d "$cg" ]; then
		find "$cg" -depth -type d -exec rmdir {} \; 2>/dev/null || true
	fi
	# bpffs goes back to unmounted if a cluster mounted it and nothing else lives there now. The
	# mark is also kept beside the clusters, so that when the cluster that mounted it ends first,
	# the last one to end (which found it mounted) still unmounts it.
	if { [ -e "$dir/mounted-bpffs" ] || [ -e "$CLUSTER_RUN/.mounted-bpffs" ]; } &&
		[ -z "$(ls -d "$CLUSTER_RUN"/*/ 2>/dev/null | grep -v "^$dir/")" ] &&
		[ -z "$(find /sys/fs/bpf -mindepth 1 -maxdepth 1 ! -name '*.debug' 2>/dev/null)" ]; then
		umount /sys/fs/bpf 2>/dev/null || true
		rm -f "$CLUSTER_RUN/.mounted-bpffs"
	fi
	rm -rf "$dir"
}

# Clusters whose owner died (a killed run) are removed before a new one starts.
cluster_gc() {
	local dir pid
	for dir in "$CLUSTER_RUN"/*/; do
		[ -d "$dir" ] || continue
		pid=$(cat "$dir/owner" 2>/dev/null || echo 0)
		if [ "$pid" = 0 ] || ! kill -0 "$pid" 2>/dev/null; then
			cluster_log "removing leftovers of a dead run: $(cat "$dir/prefix" 2>/dev/null)"
			cluster_teardown_dir "${dir%/}"
		fi
	done
}

# cluster_up [PREFIX]: node namespace, cgroup, bpffs dir. Sets CLUSTER_* variables.
cluster_up() {
	local cgroot
	cluster_gc
	CLUSTER_PREFIX=${1:-sl$(printf '%04x' $((RANDOM % 65536)))}
	CLUSTER_DIR=$CLUSTER_RUN/$CLUSTER_PREFIX
	[ -e "$CLUSTER_DIR" ] && { cluster_die "cluster $CLUSTER_PREFIX exists"; return 1; }
	mkdir -p "$CLUSTER_DIR"
	echo "$CLUSTER_PREFIX" > "$CLUSTER_DIR/prefix"
	echo "${CLUSTER_OWNER:-$$}" > "$CLUSTER_DIR/owner"
	cgroot=$(cgroup2_mount)
	[ -n "$cgroot" ] || { cluster_die "no cgroup2 mount in /proc/mounts"; return 1; }
	CLUSTER_CGROUP=$cgroot/sluice-test-$CLUSTER_PREFIX
	echo "$CLUSTER_CGROUP" > "$CLUSTER_DIR/cgroup"
	mkdir -p "$CLUSTER_CGROUP"
	if ! grep -q ' /sys/fs/bpf bpf ' /proc/mounts; then
		mount -t bpf bpf /sys/fs/bpf
		touch "$CLUSTER_DIR/mounted-bpffs" "$CLUSTER_RUN/.mounted-bpffs"
	fi
	CLUSTER_BPFFS=/sys/fs/bpf/sluice-test-$CLUSTER_PREFIX
	echo "$CLUSTER_BPFFS" > "$CLUSTER_DIR/bpffs"
	CLUSTER_NODE=$CLUSTER_PREFIX-node
	CLUSTER_SOCKET=$CLUSTER_DIR/sluice.sock
	CLUSTER_STATE=$CLUSTER_DIR/state
	CLUSTER_OBJECTS=$CLUSTER_DIR/objects
	mkdir -p "$CLUSTER_OBJECTS"
	CLUSTER_PODS=0
	CLUSTER_NODES=0
	export SLUICE_SOCKET=$CLUSTER_SOCKET
	ip netns add "$CLUSTER_NODE"
	ip -n "$CLUSTER_NODE" link set lo up
	ip netns exec "$CLUSTER_NODE" sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1
	cluster_log "up: prefix $CLUSTER_PREFIX, cgroup $CLUSTER_CGROUP"
}

cluster_down() {
	[ -n "${CLUSTER_DIR:-}" ] || return 0
	cluster_teardown_dir "$CLUSTER_DIR"
	cluster_log "down: $CLUSTER_PREFIX"
	CLUSTER_DIR=
}

# sluiced_spawn HOME CGROUP STATE [ARGS]: sluiced in the background with the pins named by
# HOME/bpffs, the socket HOME/sluice.sock, its log appended to HOME/sluiced.log and its pid in
# HOME/sluiced.pid; in the network namespace SLUICED_NETNS when set. sluiced_ready HOME waits for
# its socket (5 s), and says why not.
# SLUICED_WRAP=(CMD ARGS...): a command that runs sluiced's command line in place of itself (exec:
# the pid stays sluiced's), e.g. in a mount namespace of its own.
sluiced_spawn() {
	local home=$1 cg=$2 state=$3
	shift 3
	rm -f "$home/sluice.sock"    # a killed sluiced leaves its socket behind
	${SLUICED_NETNS:+nsenter --net="/run/netns/$SLUICED_NETNS"} ${SLUICED_WRAP[@]+"${SLUICED_WRAP[@]}"} \
		"$SLUICE_BUILD/sluiced" --cgroup "$cg" \
		--bpffs "$(cat "$home/bpffs")" --socket "$home/sluice.sock" --state-dir "$state" "$@" 2>>"$home/sluiced.log" &
	echo $! > "$home/sluiced.pid"
	disown $!    # teardown kills it; no job-control noise
}
sluiced_ready() {
	local home=$1
	for _ in $(seq 100); do
		[ -S "$home/sluice.sock" ] && return 0
		kill -0 "$(cat "$home/sluiced.pid")" 2>/dev/null || break
		sleep 0.05
	done
	cat "$home/sluiced.log" >&2
	cluster_die "sluiced did not start (log: $home/sluiced.log)"
}

# sluiced_halt HOME [SIG]: signals HOME's sluiced (TERM by default) and waits until it is gone.
sluiced_halt() {
	local home=$1 sig=${2:-TERM} pid
	pid=$(cat "$home/sluiced.pid" 2>/dev/null) || return 0
	kill -"$sig" "$pid" 2>/dev/null || true
	while ! sluiced_gone "$pid"; do sleep 0.02; done
	rm -f "$home/sluiced.pid"
}

# sluiced on this cluster's cgroup, with its own pins, socket and state; in the network namespace
# SLUICED_NETNS when set (--tc names interfaces there).
sluiced_start() {
	[ "${CLUSTER_NODES:-0}" = 0 ] || { cluster_die "a cluster of nodes: sluiced_start_node K"; return 1; }
	sluiced_spawn "$CLUSTER_DIR" "$CLUSTER_CGROUP" "$CLUSTER_STATE" "$@"
	sluiced_ready "$CLUSTER_DIR"
}

sluiced_stop() { sluiced_halt "$CLUSTER_DIR" "$@"; }

sluice() { "$SLUICE_BUILD/sluice" --socket "$CLUSTER_SOCKET" "$@"; }

# pod_add NAME NAMESPACE LABELS IPV4 [IPV6]
#   LABELS: app=purchase-history,version=v1. The pod is Running and Ready.
pod_add() {
	local name=$1 kns=$2 labels=$3 ip4=$4 ip6=${5:-} idx ns veth
	[ "${CLUSTER_NODES:-0}" = 0 ] || { cluster_die "a cluster of nodes: pod_add_on K $name ..."; return 1; }
	CLUSTER_PODS=$((CLUSTER_PODS + 1))
	idx=$CLUSTER_PODS
	ns=$CLUSTER_PREFIX-$name
	veth=${CLUSTER_PREFIX}p$idx
	ip netns add "$ns"
	ip -n "$ns" link set lo up
	ip link add "$veth" netns "$CLUSTER_NODE" type veth peer name eth0 netns "$ns"
	ip -n "$CLUSTER_NODE" link set "$veth" up
	ip -n "$CLUSTER_NODE" addr add 169.254.1.1/32 dev "$veth"
	ip -n "$ns" link set eth0 up
	ip -n "$ns" addr add "$ip4/32" dev eth0
	ip -n "$ns" route add 169.254.1.1 dev eth0 scope link
	ip -n "$ns" route add default via 169.254.1.1 dev eth0
	# a VIP nobody translated fails at once instead of timing out on rate-limited ICMP
	ip -n "$ns" route add unreachable 198.19.0.0/16
	ip -n "$ns" -6 route add unreachable 2001:db8:19::/48 2>/dev/null || true
	ip -n "$CLUSTER_NODE" route add "$ip4/32" dev "$veth"
	if [ -n "$ip6" ]; then
		ip netns exec "$ns" sysctl -qw net.ipv6.conf.eth0.accept_dad=0
		ip netns exec "$CLUSTER_NODE" sysctl -qw "net.ipv6.conf.$veth.accept_dad=0"
		ip -n "$CLUSTER_NODE" addr add fe80::1/64 dev "$veth"
		ip -n "$ns" addr add "$ip6/128" dev eth0 nodad
		ip -n "$ns" route add default via fe80::1 dev eth0
		ip -n "$CLUSTER_NODE" route add "$ip6/128" dev "$veth"
	fi
	mkdir -p "$CLUSTER_CGROUP/$name"
	kubelet_pod create "$name" "$kns" "$labels" "$ip4" "$ip6" ""
}

# pod_ready NAME true|false: the Ready condition written into the Pod objects.
pod_ready() { kubelet_pod ready "$1" "$2"; }

# ---- The kubelet's reports -----------------------------------------------------------------
# kubelet_pod EVENT NAME ...: the one place where the harness, playing each node's kubelet, makes
# a pod's life known to the cluster:
#   kubelet_pod create NAME NAMESPACE LABELS IPV4 IPV6 NODE   Running and Ready, on node NODE
#                                                             ("" for the single node's pods)
#   kubelet_pod ready NAME true|false                         its Ready condition changed
#   kubelet_pod delete NAME                                   its processes and namespace are gone
# pod_add, pod_add_on, pod_ready and pod_del report through it, after the pod's namespace and
# cgroup exist (create) or its processes are gone (delete). Today a report is the record
# CLUSTER_DIR/pod.NAME that cluster_objects reads (lines: name, namespace, labels, IPv4, IPv6,
# ready, node). To send the same reports to an API server as well, set CLUSTER_KUBELET_HOOK to the
# name of a function: it is called after the record is written, with the same arguments, and its
# status is the report's.
kubelet_pod() {
	local event=$1 name=$2 rec=$CLUSTER_DIR/pod.$2
	case $event in
	create) printf '%s\n' "$name" "$3" "$4" "$5" "$6" "true" "$7" > "$rec" ;;
	ready) sed -i "6s/.*/$3/" "$rec" ;;
	delete) rm -f "$rec" ;;
	*) cluster_die "kubelet_pod: unknown event $event"; return 1 ;;
	esac
	[ -z "${CLUSTER_KUBELET_HOOK:-}" ] || "$CLUSTER_KUBELET_HOOK" "$@"
}

# pod_node NAME: the node a pod runs on (empty for the single node). pod_cgroup NAME: its cgroup.
pod_node() { sed -n 7p "$CLUSTER_DIR/pod.$1" 2>/dev/null; }
pod_cgroup() {
	local k
	k=$(pod_node "$1")
	echo "$CLUSTER_CGROUP${k:+/node$k}/$1"
}

# pod_run NAME CMD...: in the pod's cgroup and network namespace, in the background; prints the pid.
# The cgroup comes first: `ip netns exec` remounts /sys, which hides the cgroup mount.
pod_run() {
	local name=$1; shift
	bash -c 'echo $$ > "$1/cgroup.procs"; ns=$2; shift 2; exec ip netns exec "$ns" "$@"' _ \
		"$(pod_cgroup "$name")" "$CLUSTER_PREFIX-$name" "$@" &
	echo $!
	disown $!
}

# pod_exec NAME CMD...: the same in the foreground.
pod_exec() {
	local name=$1; shift
	bash -c 'echo $$ > "$1/cgroup.procs"; ns=$2; shift 2; exec ip netns exec "$ns" "$@"' _ \
		"$(pod_cgroup "$name")" "$CLUSTER_PREFIX-$name" "$@"
}

# backend_start NAME VERSION MESSAGE [fakesvc listener options]: the labs' fake-service in pod NAME.
backend_start() {
	local pod=$1 version=$2 message=$3 ready=$CLUSTER_DIR/ready.$1
	shift 3
	rm -f "$ready"
	pod_run "$pod" "$SLUICE_BUILD/fakesvc" --name "$pod" --version "$version" --message "$message" \
		--ready-file "$ready" "$@" > "$CLUSTER_DIR/backend.$pod.pid"
	for _ in $(seq 100); do [ -e "$ready" ] && return 0; sleep 0.02; done
	cluster_die "backend $pod did not start"
}

# svc_add NAME NAMESPACE VIP[,VIP6] SELECTOR PORT[/PROTO][:TARGET]...   (SELECTOR: app=x)
svc_add() {
	local name=$1 kns=$2 vips=$3 selector=$4
	shift 4
	printf '%s\n' "$name" "$kns" "$vips" "$selector" "$*" > "$CLUSTER_DIR/svc.$name"
}

yaml_labels() { # a=b,c=d -> YAML map lines at indent $2
	local IFS=, kv
	for kv in $1; do printf '%*s%s: %s\n' "$2" '' "${kv%%=*}" "${kv#*=}"; done
}

# cluster_objects FILE: the Services and Pods as `kubectl get svc,pods -o yaml` prints them.
cluster_objects() {
	local out=$1 f name kns labels ip4 ip6 ready node ports vips selector spec vip port proto target pname n
	{
		echo "apiVersion: v1"
		echo "kind: List"
		echo "metadata:"
		echo "  resourceVersion: \"\""
		echo "items:"
		for f in "$CLUSTER_DIR"/svc.*; do
			[ -e "$f" ] || continue
			{ read -r name; read -r kns; read -r vips; read -r selector; read -r ports; } < "$f"
			echo "- apiVersion: v1"
			echo "  kind: Service"
			echo "  metadata:"
			echo "    name: $name"
			echo "    namespace: $kns"
			echo "    labels:"
			yaml_labels "$selector" 6
			echo "  spec:"
			echo "    type: ClusterIP"
			echo "    clusterIP: ${vips%%,*}"
			echo "    clusterIPs:"
			for vip in ${vips//,/ }; do echo "    - $vip"; done
			echo "    ipFamilies:"
			for vip in ${vips//,/ }; do case $vip in *:*) echo "    - IPv6";; *) echo "    - IPv4";; esac; done
			echo "    ipFamilyPolicy: $([ "${vips#*,}" != "$vips" ] && echo RequireDualStack || echo SingleStack)"
			echo "    sessionAffinity: None"
			echo "    selector:"
			yaml_labels "$selector" 6
			echo "    ports:"
			n=0
			for spec in $ports; do
				port=${spec%%[/:]*}; proto=TCP; target=$port
				case $spec in */udp*|*/UDP*) proto=UDP;; esac
				case $spec in *:*) target=${spec##*:};; esac
				pname=$(echo "$proto" | tr 'A-Z' 'a-z')-$port; [ $n = 0 ] && [ "$proto" = TCP ] && pname=http
				n=$((n + 1))
				echo "    - name: $pname"
				echo "      port: $port"
				echo "      protocol: $proto"
				echo "      targetPort: $target"
			done
			echo "  status:"
			echo "    loadBalancer: {}"
		done
		for f in "$CLUSTER_DIR"/pod.*; do
			[ -e "$f" ] || continue
			{ read -r name; read -r kns; read -r labels; read -r ip4; read -r ip6; read -r ready; read -r node; } < "$f"
			echo "- apiVersion: v1"
			echo "  kind: Pod"
			echo "  metadata:"
			echo "    name: $name"
			echo "    namespace: $kns"
			echo "    labels:"
			yaml_labels "$labels" 6
			echo "  spec:"
			echo "    containers:"
			echo "    - name: ${name%-v*}"
			echo "      image: sluice/fakesvc:latest"
			echo "      ports:"
			echo "      - containerPort: 8080"
			echo "        name: http"
			echo "        protocol: TCP"
			echo "    nodeName: $CLUSTER_PREFIX-node$node"
			echo "    restartPolicy: Always"
			echo "  status:"
			echo "    phase: Running"
			echo "    conditions:"
			echo "    - type: Ready"
			echo "      status: \"$( [ "$ready" = true ] && echo True || echo False)\""
			echo "    - type: ContainersReady"
			echo "      status: \"$( [ "$ready" = true ] && echo True || echo False)\""
			if [ -n "$node" ]; then
				echo "    hostIP: $(node_ip "$node")"
				echo "    hostIPs:"
				echo "    - ip: $(node_ip "$node")"
				echo "    - ip: $(node_ip6 "$node")"
			fi
			echo "    podIP: $ip4"
			echo "    podIPs:"
			echo "    - ip: $ip4"
			[ -n "$ip6" ] && echo "    - ip: $ip6"
		done
	} > "$out"
}

# loadgen_in POD ARGS...: the load generator inside a pod (namespace and cgroup), on any node.
loadgen_in() {
	local pod=$1; shift
	"$SLUICE_BUILD/loadgen" --netns "$CLUSTER_PREFIX-$pod" --cgroup "$(pod_cgroup "$pod")" "$@"
}

# loadgen_exec POD ARGS &: the same in place of the calling shell, so the job's pid is loadgen's
# (a background subshell ignores SIGINT; kill -INT must reach loadgen to end it).
loadgen_exec() {
	local pod=$1; shift
	exec "$SLUICE_BUILD/loadgen" --netns "$CLUSTER_PREFIX-$pod" --cgroup "$(pod_cgroup "$pod")" "$@"
}

# pod_del NAME: the pod's processes, its namespace (the veth pair and the node's route go with
# it) and its cgroup; the Pod object is gone from the next cluster_objects.
pod_del() {
	local name=$1 cg ns=$CLUSTER_PREFIX-$1
	cg=$(pod_cgroup "$name")
	[ -e "$cg/cgroup.kill" ] && echo 1 > "$cg/cgroup.kill" 2>/dev/null
	for _ in $(seq 100); do
		[ -z "$(cat "$cg/cgroup.procs" 2>/dev/null)" ] && break
		sleep 0.02
	done
	ip netns pids "$ns" 2>/dev/null | xargs -r kill -9 2>/dev/null
	ip netns delete "$ns" 2>/dev/null
	rmdir "$cg" 2>/dev/null
	rm -f "$CLUSTER_DIR/ready.$name" "$CLUSTER_DIR/backend.$name.pid"
	kubelet_pod delete "$name"
}

# ---- Multi-node --------------------------------------------------------------------------------
# cluster_nodes N turns the cluster into N nodes (1 <= N <= 249), each what the single node is:
#   node K   network namespace PREFIX-nodeK, forwarding on, routing its pods as the single node
#            does (/32 per pod, 169.254.1.1 and fe80::1 on the node's end of each veth);
#            cgroup CLUSTER_CGROUP/nodeK, its pods' cgroups under it; a home directory
#            CLUSTER_DIR/nodeK (sluiced.log, sluice.sock, sluiced.pid, state/) and its own pins
#            /sys/fs/bpf/sluice-test-PREFIX-nodeK. Its sluiced is attached to CLUSTER_CGROUP/nodeK
#            only: it translates the connections of that node's pods and of no other.
#   pods     node K's pods in 198.18.K.0/24 and 2001:db8:18:K::/64 (198.18.K.H <-> ...:K::H).
#            Not DESIGN.md's 2001:db8:K::/48: node 19's would be the VIP range 2001:db8:19::/48.
#   fabric   namespace PREFIX-fabric, one bridge; node K's eth0 is on it with 198.18.254.K/24 and
#            2001:db8:18:254::K/64 (its hostIP), and holds a route per other node J: 198.18.J.0/24
#            via 198.18.254.J, and the same for IPv6. This is flannel's host-gw, or Calico
#            without encapsulation: pod addresses are routed, never translated, between nodes.
#            A bridge rather than a veth mesh: N veth pairs and one L2 segment instead of
#            N(N-1)/2 pairs (1,225 at 50 nodes); the network cost of a node is one namespace, one
#            veth pair and 2(N-1) routes. No node has a default route: a pod reaches pods (its
#            node routes 198.18.0.0/16 and 2001:db8:18::/48 and nothing else), and the VIP ranges
#            stay unreachable in every pod.
# A pod's connection to a VIP is translated at connect() by its own node's sluiced, then routed
# to the chosen pod on whichever node it lives. sluiced runs in the machine's network namespace
# like the single node's (socket mode needs none, and an API server on loopback stays reachable);
# SLUICED_NETNS=$(node_ns K) runs it in the node's, where --tc eth0 names the node's uplink.
# What N nodes cost, stage by stage: tests/cluster/nodes-bench.sh N (20 nodes came up in 1.7 s, 50
# in 5.6 s; 50 nodes charge 2.6 MiB a node, 0.1 MiB of it sluiced's maps, sized by the plan).

node_ns() { echo "$CLUSTER_PREFIX-node$1"; }
node_dir() { echo "$CLUSTER_DIR/node$1"; }
node_cgroup() { echo "$CLUSTER_CGROUP/node$1"; }
node_socket() { echo "$CLUSTER_DIR/node$1/sluice.sock"; }
node_bpffs() { echo "/sys/fs/bpf/sluice-test-$CLUSTER_PREFIX-node$1"; }
node_ip() { echo "198.18.254.$1"; }
node_ip6() { echo "2001:db8:18:254::$1"; }
node_check() {
	case $1 in '' | *[!0-9]*) ;; *) [ "$1" -ge 1 ] && [ "$1" -le "$CLUSTER_NODES" ] && return 0 ;; esac
	cluster_die "no node '$1' (nodes 1 to $CLUSTER_NODES)"
}

# cluster_nodes N: after cluster_up, before any pod. The single node's namespace goes away; pod_add
# and sluiced_start are refused from now on (pod_add_on, sluiced_start_node; sluice_on for sluice).
cluster_nodes() {
	local n=$1 k j fabric=$CLUSTER_PREFIX-fabric
	[ -n "${CLUSTER_DIR:-}" ] || { cluster_die "cluster_nodes: cluster_up first"; return 1; }
	[ "${CLUSTER_NODES:-0}" = 0 ] && [ "${CLUSTER_PODS:-0}" = 0 ] ||
		{ cluster_die "cluster_nodes: only once, before any pod"; return 1; }
	case $n in '' | *[!0-9]*) n=0 ;; esac
	[ "$n" -ge 1 ] && [ "$n" -le 249 ] || { cluster_die "cluster_nodes: 1 to 249 nodes, not '$1'"; return 1; }
	CLUSTER_NODES=$n
	echo "$n" > "$CLUSTER_DIR/nodes"
	# what teardown must find, written before anything exists
	for k in $(seq "$n"); do
		mkdir -p "$(node_dir "$k")"
		node_bpffs "$k" > "$(node_dir "$k")/bpffs"
	done
	ip netns delete "$CLUSTER_NODE"
	CLUSTER_NODE=
	{
		echo "netns add $fabric"
		for k in $(seq "$n"); do echo "netns add $(node_ns "$k")"; done
	} | ip -batch - || { cluster_die "cluster_nodes: namespaces"; return 1; }
	# IPv6 DAD off before any interface exists, so that every veth made later starts usable
	for k in $(seq "$n"); do
		nsenter --net="/run/netns/$(node_ns "$k")" sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1 \
			net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0 || return 1
	done
	{
		for k in $(seq "$n"); do
			echo "link add eth0 netns $(node_ns "$k") type veth peer name ${CLUSTER_PREFIX}n$k netns $fabric"
		done
	} | ip -batch - || { cluster_die "cluster_nodes: node links"; return 1; }
	{
		echo "link set lo up"
		echo "link add br0 type bridge"
		echo "link set br0 up"
		for k in $(seq "$n"); do echo "link set ${CLUSTER_PREFIX}n$k master br0 up"; done
	} | ip -n "$fabric" -batch - || { cluster_die "cluster_nodes: fabric"; return 1; }
	for k in $(seq "$n"); do
		{
			echo "link set lo up"
			echo "link set eth0 up"
			echo "addr add $(node_ip "$k")/24 dev eth0"
			echo "addr add $(node_ip6 "$k")/64 dev eth0 nodad"
			for j in $(seq "$n"); do
				[ "$j" = "$k" ] && continue
				echo "route add 198.18.$j.0/24 via 198.18.254.$j dev eth0"
				echo "route add 2001:db8:18:$j::/64 via 2001:db8:18:254::$j dev eth0"
			done
		} | ip -n "$(node_ns "$k")" -batch - || { cluster_die "cluster_nodes: node $k"; return 1; }
		mkdir -p "$(node_cgroup "$k")"
	done
	cluster_log "$n nodes: $(node_ns 1)..$(node_ns "$n"), joined by $fabric"
}

# pod_add_on K NAME NAMESPACE LABELS [IPV4]: a Running, Ready pod on node K, dual-stack. Without
# IPV4 the harness gives the first free 198.18.K.H; a given one must be in 198.18.K.0/24. The
# IPv6 address follows: 2001:db8:18:K::H. Pod names are unique in the cluster.
pod_add_on() {
	local k=$1 name=$2 kns=$3 labels=$4 ip4=${5:-} h ip6 ns node veth used
	node_check "$k" || return 1
	[ -e "$CLUSTER_DIR/pod.$name" ] && { cluster_die "pod $name exists"; return 1; }
	used=$(awk 'FNR == 4' "$CLUSTER_DIR"/pod.* /dev/null 2>/dev/null)    # every pod's IPv4, one process
	if [ -z "$ip4" ]; then
		h=$(awk -v net="198.18.$k." 'index($0, net) == 1 { taken[substr($0, length(net) + 1)] = 1 }
			END { for (h = 1; h <= 254; h++) if (!(h in taken)) { print h; exit } }' <<< "$used")
		[ -n "$h" ] || { cluster_die "node $k has no free pod address"; return 1; }
		ip4=198.18.$k.$h
	else
		h=${ip4#198.18.$k.}
		case $h in '' | *[!0-9]*) h=0 ;; esac
		[ "$ip4" = "198.18.$k.$h" ] && [ "$h" -ge 1 ] && [ "$h" -le 254 ] ||
			{ cluster_die "pod $name: $ip4 is not in node $k's pods, 198.18.$k.1-254"; return 1; }
		grep -qx "$ip4" <<< "$used" && { cluster_die "pod $name: $ip4 is taken"; return 1; }
	fi
	ip6=2001:db8:18:$k::$h
	ns=$CLUSTER_PREFIX-$name
	node=$(node_ns "$k")
	veth=${CLUSTER_PREFIX}p$h
	CLUSTER_PODS=$((CLUSTER_PODS + 1))
	printf '%s\n' "netns add $ns" "link add $veth netns $node type veth peer name eth0 netns $ns" |
		ip -batch - || { cluster_die "pod $name: namespace"; return 1; }
	{
		echo "link set $veth up"
		echo "addr add 169.254.1.1/32 dev $veth"
		echo "addr add fe80::1/64 dev $veth nodad"
		echo "route add $ip4/32 dev $veth"
		echo "route add $ip6/128 dev $veth"
	} | ip -n "$node" -batch - || { cluster_die "pod $name: node side"; return 1; }
	{
		echo "link set lo up"
		echo "link set eth0 up"
		echo "addr add $ip4/32 dev eth0"
		echo "addr add $ip6/128 dev eth0 nodad"
		echo "route add 169.254.1.1 dev eth0 scope link"
		echo "route add default via 169.254.1.1 dev eth0"
		echo "route add ::/0 via fe80::1 dev eth0"
		# a VIP nobody translated fails at once instead of timing out on rate-limited ICMP
		echo "route add unreachable 198.19.0.0/16"
		echo "route add unreachable 2001:db8:19::/48"
	} | ip -n "$ns" -batch - || { cluster_die "pod $name: pod side"; return 1; }
	mkdir -p "$(node_cgroup "$k")/$name"
	kubelet_pod create "$name" "$kns" "$labels" "$ip4" "$ip6" "$k"
}

# pod_ip NAME / pod_ip6 NAME: a pod's addresses.
pod_ip() { sed -n 4p "$CLUSTER_DIR/pod.$1"; }
pod_ip6() { sed -n 5p "$CLUSTER_DIR/pod.$1"; }

# sluiced_start_node K [ARGS]: node K's sluiced on CLUSTER_CGROUP/nodeK with node K's pins, socket
# and state directory, log in CLUSTER_DIR/nodeK/sluiced.log; returns once it answers.
sluiced_start_node() {
	local k=$1
	node_check "$k" || return 1
	shift
	sluiced_spawn "$(node_dir "$k")" "$(node_cgroup "$k")" "$(node_dir "$k")/state" "$@"
	sluiced_ready "$(node_dir "$k")"
}

# sluiced_start_all [ARGS]: every node's sluiced, started together; returns once all answer.
sluiced_start_all() {
	local k
	for k in $(seq "${CLUSTER_NODES:-0}"); do
		sluiced_spawn "$(node_dir "$k")" "$(node_cgroup "$k")" "$(node_dir "$k")/state" "$@"
	done
	for k in $(seq "${CLUSTER_NODES:-0}"); do sluiced_ready "$(node_dir "$k")" || return 1; done
}

# sluiced_stop_node K [SIG]: signals node K's sluiced (TERM by default) and waits until it is gone;
# its pins stay, and its data plane with them.
sluiced_stop_node() {
	node_check "$1" || return 1
	sluiced_halt "$(node_dir "$1")" "${2:-TERM}"
}

# sluice_on K ARGS...: the CLI against node K's sluiced. sluice_all ARGS...: on every node in turn,
# output prefixed "nodeK: ", failing if any node fails.
sluice_on() {
	local k=$1
	node_check "$k" || return 2
	shift
	"$SLUICE_BUILD/sluice" --socket "$(node_socket "$k")" "$@"
}
sluice_all() {
	local k rc=0
	for k in $(seq "${CLUSTER_NODES:-0}"); do
		sluice_on "$k" "$@" 2>&1 | sed "s/^/node$k: /"
		[ "${PIPESTATUS[0]}" = 0 ] || rc=1
	done
	return $rc
}

# ---- Containers: deploy/'s DaemonSet on the nodes ------------------------------------------------
# The kubelet's part, played for the manifest as written (tests/cluster/kubelet.py reads it): node
# K's sluiced runs from an image, in podman, in node K's network namespace (hostNetwork), with the
# manifest's command, args, env, security context, resources and volumes. A host path is node K's
# own: /sys/fs/bpf is the bpffs directory node_bpffs K, /sys/fs/cgroup is node_cgroup K (mounted
# alone, so the container's only cgroup2 mount is its node's subtree: checked before it starts),
# any other path is under CLUSTER_DIR/nodeK/host. The control plane is on the nodes' network:
# control_plane_up puts 198.18.254.254/24 on the fabric's bridge, where an API server listens
# (tests/apiserver/lib.sh with API_NETNS=$(fabric_ns) API_ADDRESS=$(control_plane_ip)).
# podman's cgroups go under CLUSTER_DIR's parent podman-PREFIX; teardown removes the containers,
# that parent and the image named by daemonset_image.

CLUSTER_CONTAINERS_CONF=$SLUICE_TOP/deploy/image/containers.conf
cluster_podman() { CONTAINERS_CONF=$CLUSTER_CONTAINERS_CONF podman "$@"; }
fabric_ns() { echo "$CLUSTER_PREFIX-fabric"; }
control_plane_ip() { echo 198.18.254.254; }
control_plane_up() { ip -n "$(fabric_ns)" addr add "$(control_plane_ip)/24" dev br0; }

# daemonset_image IMAGE: the image daemonset_start_node runs (the run's own tag: removed at teardown).
daemonset_image() {
	CLUSTER_IMAGE=$1
	echo "$1" > "$CLUSTER_DIR/image"
}

# daemonset_start_node K MANIFEST SERVICE_ACCOUNT_DIR: node K's pod of MANIFEST's DaemonSet, its
# container created, checked, started; returns once its readiness probe passes (or fails after
# 30 s, saying why). Its kubelet plan is CLUSTER_DIR/nodeK/kubelet.json.
daemonset_start_node() {
	local k=$1 manifest=$2 sa=$3 home plan name pid cg root bpffs sock args
	node_check "$k" || return 1
	home=$(node_dir "$k")
	name=sluice-test-$CLUSTER_PREFIX-node$k
	plan=$home/kubelet.json
	echo podman-"$CLUSTER_PREFIX" > "$CLUSTER_DIR/podman-parent"
	python3 "$SLUICE_TOP/tests/cluster/kubelet.py" podman "$manifest" --node "$(node_ns "$k")" \
		--node-ip "$(node_ip "$k")" --image "$CLUSTER_IMAGE" --name "$name" --netns "/run/netns/$(node_ns "$k")" \
		--host-path "/sys/fs/bpf=$(node_bpffs "$k")" --host-path "/sys/fs/cgroup=$(node_cgroup "$k")" \
		--host-root "$home/host" --service-account "$sa" --api "$(control_plane_ip):$API_PORT" \
		--cgroup-parent "/podman-$CLUSTER_PREFIX" > "$plan" || return 1
	bpffs=$(jq -r '.hostPaths["--bpffs"]' "$plan")
	sock=$(jq -r '.hostPaths["--socket"]' "$plan")
	[ "$bpffs" != null ] && [ "$sock" != null ] || { cluster_die "the manifest's --bpffs and --socket are not on host paths"; return 1; }
	# what teardown must find: the container, the pins and the node's bpffs directory above them
	echo "$name" > "$home/container"
	echo "$bpffs" > "$home/bpffs"
	node_bpffs "$k" > "$home/bpffs-root"
	jq -r '.directories[]' "$plan" | while read -r d; do mkdir -p "$d"; done
	mkdir -p "$(node_bpffs "$k")"
	ln -sfn "$sock" "$home/sluice.sock"
	cluster_podman rm -f -t 0 "$name" >/dev/null 2>&1
	mapfile -t args < <(jq -r '.create[]' "$plan")
	cluster_podman create "${args[@]}" > "$home/container.id" 2> "$home/podman.err" ||
		{ cat "$home/podman.err" >&2; cluster_die "podman create refused node $k's plan"; return 1; }
	cluster_podman init "$name" >/dev/null || return 1
	pid=$(cluster_podman inspect -f '{{.State.Pid}}' "$name")
	# the container sees one cgroup2 mount, the node's subtree, or it does not start: sluiced's
	# default is the first cgroup2 mount, and the machine's root must never be it
	cg=$(awk '$9 == "cgroup2" { print $5 " " $4 }' "/proc/$pid/mountinfo")
	root=$(cgroup2_mount)
	[ "$cg" = "/sys/fs/cgroup ${CLUSTER_CGROUP#"$root"}/node$k" ] || {
		cluster_podman rm -f -t 0 "$name" >/dev/null
		cluster_die "node $k's container: cgroup2 mounts '$cg', not node $k's subtree alone"; return 1; }
	cluster_podman start "$name" >/dev/null || return 1
	daemonset_probe "$k" readiness 30
}

# daemonset_probe K readiness|liveness [SECONDS]: the manifest's probe of node K's container, from
# the node (its podIP is the node's, host network), every 0.1 s until it answers 2xx (SECONDS at most).
daemonset_probe() {
	local k=$1 which=$2 secs=${3:-0} plan url i
	plan=$(node_dir "$k")/kubelet.json
	url=http://$(node_ip "$k"):$(jq -r ".$which.port" "$plan")$(jq -r ".$which.path" "$plan")
	for i in $(seq 0 $((secs * 10))); do
		nsenter --net="/run/netns/$(node_ns "$k")" curl -sf -o /dev/null --max-time 1 "$url" && return 0
		[ "$(cluster_podman inspect -f '{{.State.Running}}' "$(cat "$(node_dir "$k")/container")")" = true ] || break
		[ "$i" -lt $((secs * 10)) ] && sleep 0.1
	done
	cluster_podman logs --tail 20 "$(cat "$(node_dir "$k")/container")" >&2
	cluster_die "node $k: $which probe $url failed"
}

# daemonset_stop_node K: stopped as the kubelet stops a pod (TERM, the manifest's grace period,
# then KILL) and removed; its pins stay, and its data plane with them.
daemonset_stop_node() {
	local home
	node_check "$1" || return 1
	home=$(node_dir "$1")
	cluster_podman stop -t "$(jq -r .grace "$home/kubelet.json")" "$(cat "$home/container")" >/dev/null &&
		cluster_podman rm "$(cat "$home/container")" >/dev/null
}

# daemonset_pid K: node K's sluiced, as the machine sees it.
daemonset_pid() { cluster_podman inspect -f '{{.State.Pid}}' "$(cat "$(node_dir "$1")/container")"; }
