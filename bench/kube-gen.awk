# The configuration of the benchmark's contenders, one layout per run, from one list of services:
# SERVICES-1 filler services numbered as bench/plan-gen.awk numbers them (VIP 198.19.x.y:80,
# 2 subsets of 4 endpoints in 10.0.0.0/8 split 90/10; never dialled), then the measured service
# last (VIP:PORT, v1 endpoints V1, v2 endpoints V2, split W1/W2), as kube-proxy's worst case.
#   awk -v format=F -v services=N -v vip=198.19.200.1 -v port=8080 -v v1=198.18.1.1 \
#       -v v2=198.18.2.1 -v w1=80 -v w2=20 [-v dir=DIR] -f bench/kube-gen.awk
# format:
#   iptables      iptables-restore input: kube-proxy's iptables layout (filter + nat tables)
#   iptables-svc  iptables-restore --noflush input rewriting only the measured service's chain
#   nft           nft -f input: kube-proxy's nftables layout (table ip kube-proxy)
#   nft-weights   nft -f input replacing the elements of the measured service's weight map
#   haproxy       haproxy.cfg of a client-side proxy (the sidecar's role); needs dir (its socket)
#   haproxy-map   the VIP -> backend map file the haproxy config reads
#   sluice        the measured service's DestinationRule (-v lb=RANDOM, default ROUND_ROBIN) and
#                 VirtualService (its Service and Pods come from the cluster harness, the filler
#                 from bench/plan-gen.awk)
# Endpoint weights: a subset's weight is shared equally by its endpoints. kube-proxy has no
# weights; its layouts are kept and only the per-endpoint probabilities (iptables) or numgen
# intervals (nft) follow the weights, which is what a weighted kube-proxy would have to write.
function ip4(n) { return sprintf("%d.%d.%d", int(n / 65536) % 256, int(n / 256) % 256, n % 256) }
function filler_vip(s) { return "198.19." int((s + 1) / 256) "." ((s + 1) % 256) }

# Fills the svc_* arrays for service s (0-based); the last one is the measured service.
function load_service(s,   v, p, k, n, list, i) {
	n_ep = 0
	if (s < services - 1) {
		svc_ns = sprintf("team-%02d", s % 100)
		svc_name = sprintf("svc-%05d", s)
		svc_vip = filler_vip(s)
		svc_port = 80
		svc_target = 8080
		for (v = 1; v <= 2; v++)
			for (p = 0; p < 4; p++) {
				k = (s * 2 + v - 1) * 4 + p
				n_ep++
				ep_ip[n_ep] = "10." ip4(k)
				ep_subset[n_ep] = v
			}
		sub_w[1] = 90; sub_w[2] = 10
	} else {
		svc_ns = "bench"
		svc_name = "canary"
		svc_vip = vip
		svc_port = port
		svc_target = port
		for (v = 1; v <= 2; v++) {
			n = split(v == 1 ? v1 : v2, list, ",")
			for (i = 1; i <= n; i++) {
				n_ep++
				ep_ip[n_ep] = list[i]
				ep_subset[n_ep] = v
			}
		}
		sub_w[1] = w1; sub_w[2] = w2
	}
	sub_n[1] = sub_n[2] = 0
	for (i = 1; i <= n_ep; i++) sub_n[ep_subset[i]]++
	for (i = 1; i <= n_ep; i++) ep_w[i] = sub_n[ep_subset[i]] ? sub_w[ep_subset[i]] / sub_n[ep_subset[i]] : 0
	svc_chain = sprintf("KUBE-SVC-%016d", s)
	svc_id = sprintf("%s/%s:http", svc_ns, svc_name)
	nft_svc = sprintf("service-%08d-%s/%s/tcp/http", s, svc_ns, svc_name)
}
function nft_map(s) { return s == services - 1 ? "weights-canary" : sprintf("weights-%08d", s) }
function sep_chain(s, i) { return sprintf("KUBE-SEP-%08d%08d", s, i) }
function nft_ep(s, i) { return sprintf("endpoint-%08d%02d-%s/%s/tcp/http__%s/%d", s, i, svc_ns, svc_name, ep_ip[i], svc_target) }

# The KUBE-SVC chain's rules: kube-proxy's probabilities, endpoint i taken with w_i / (w_i + ... + w_n).
function iptables_svc_rules(s,   i, rest, last) {
	printf "-A %s ! -s %s -d %s/32 -p tcp -m comment --comment \"%s cluster IP\" -m tcp --dport %d -j KUBE-MARK-MASQ\n",
		svc_chain, cluster_cidr, svc_vip, svc_id, svc_port
	last = 0
	for (i = 1; i <= n_ep; i++) if (ep_w[i] > 0) last = i
	rest = 0
	for (i = 1; i <= n_ep; i++) rest += ep_w[i]
	for (i = 1; i <= n_ep; i++) {
		if (ep_w[i] <= 0) continue
		if (i == last)
			printf "-A %s -m comment --comment \"%s -> %s:%d\" -j %s\n", svc_chain, svc_id, ep_ip[i], svc_target, sep_chain(s, i)
		else
			printf "-A %s -m comment --comment \"%s -> %s:%d\" -m statistic --mode random --probability %.10f -j %s\n",
				svc_chain, svc_id, ep_ip[i], svc_target, ep_w[i] / rest, sep_chain(s, i)
		rest -= ep_w[i]
	}
}

# numgen random mod 1000: endpoint i owns an interval as wide as its share of 1000.
function nft_intervals(s,   i, lo, hi, acc, total, out, last) {
	total = 0
	for (i = 1; i <= n_ep; i++) total += ep_w[i]
	last = 0
	for (i = 1; i <= n_ep; i++) if (ep_w[i] > 0) last = i
	acc = 0; lo = 0; out = ""
	for (i = 1; i <= n_ep; i++) {
		if (ep_w[i] <= 0) continue
		acc += ep_w[i]
		hi = i == last ? 999 : int(acc * 1000 / total + 0.5) - 1
		if (hi < lo) continue
		out = out (out == "" ? "" : ", ") (lo == hi ? lo : lo "-" hi) " : goto " nft_ep(s, i)
		lo = hi + 1
	}
	return out
}

function gen_iptables(   s, i) {
	print "*filter"
	print ":KUBE-FORWARD - [0:0]"
	print ":KUBE-SERVICES - [0:0]"
	print ":KUBE-PROXY-FIREWALL - [0:0]"
	print "-A FORWARD -m conntrack --ctstate NEW -m comment --comment \"kubernetes load balancer firewall\" -j KUBE-PROXY-FIREWALL"
	print "-A FORWARD -m comment --comment \"kubernetes forwarding rules\" -j KUBE-FORWARD"
	print "-A FORWARD -m conntrack --ctstate NEW -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES"
	print "-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP"
	print "-A KUBE-FORWARD -m comment --comment \"kubernetes forwarding rules\" -m mark --mark 0x4000/0x4000 -j ACCEPT"
	print "-A KUBE-FORWARD -m comment --comment \"kubernetes forwarding conntrack rule\" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"
	print "COMMIT"
	print "*nat"
	print ":KUBE-SERVICES - [0:0]"
	print ":KUBE-NODEPORTS - [0:0]"
	print ":KUBE-POSTROUTING - [0:0]"
	print ":KUBE-MARK-MASQ - [0:0]"
	for (s = 0; s < services; s++) {
		load_service(s)
		print ":" svc_chain " - [0:0]"
		for (i = 1; i <= n_ep; i++) print ":" sep_chain(s, i) " - [0:0]"
	}
	print "-A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES"
	print "-A OUTPUT -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES"
	print "-A POSTROUTING -m comment --comment \"kubernetes postrouting rules\" -j KUBE-POSTROUTING"
	print "-A KUBE-MARK-MASQ -j MARK --or-mark 0x4000"
	print "-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN"
	print "-A KUBE-POSTROUTING -j MARK --xor-mark 0x4000"
	print "-A KUBE-POSTROUTING -m comment --comment \"kubernetes service traffic requiring SNAT\" -j MASQUERADE --random-fully"
	for (s = 0; s < services; s++) {
		load_service(s)
		printf "-A KUBE-SERVICES -d %s/32 -p tcp -m comment --comment \"%s cluster IP\" -m tcp --dport %d -j %s\n",
			svc_vip, svc_id, svc_port, svc_chain
	}
	print "-A KUBE-SERVICES -m comment --comment \"kubernetes service nodeports; NOTE: this must be the last rule in this chain\" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS"
	for (s = 0; s < services; s++) {
		load_service(s)
		iptables_svc_rules(s)
		for (i = 1; i <= n_ep; i++) {
			printf "-A %s -s %s/32 -m comment --comment \"%s\" -j KUBE-MARK-MASQ\n", sep_chain(s, i), ep_ip[i], svc_id
			printf "-A %s -p tcp -m comment --comment \"%s\" -m tcp -j DNAT --to-destination %s:%d\n",
				sep_chain(s, i), svc_id, ep_ip[i], svc_target
		}
	}
	print "COMMIT"
}

function gen_iptables_svc() {
	load_service(services - 1)
	print "*nat"
	print ":" svc_chain " - [0:0]"
	iptables_svc_rules(services - 1)
	print "COMMIT"
}

function gen_nft(   s, i, sep) {
	print "table ip kube-proxy {"
	print "\tcomment \"rules for kube-proxy\""
	print "\tchain mark-for-masquerade {\n\t\tmeta mark set meta mark | 0x00004000\n\t}"
	print "\tchain masquerading {"
	print "\t\tmeta mark & 0x00004000 == 0x00000000 return"
	print "\t\tmeta mark set meta mark ^ 0x00004000"
	print "\t\tmasquerade fully-random\n\t}"
	print "\tchain nodeports {\n\t}"
	print "\tchain nat-prerouting {\n\t\ttype nat hook prerouting priority dstnat; policy accept;\n\t\tjump services\n\t}"
	print "\tchain nat-output {\n\t\ttype nat hook output priority -100; policy accept;\n\t\tjump services\n\t}"
	print "\tchain nat-postrouting {\n\t\ttype nat hook postrouting priority srcnat; policy accept;\n\t\tjump masquerading\n\t}"
	print "\tchain filter-forward {"
	print "\t\ttype filter hook forward priority -110; policy accept;"
	print "\t\tct state new jump service-endpoints-check"
	print "\t\tct state new jump cluster-ips-check\n\t}"
	print "\tmap no-endpoint-services {\n\t\ttype ipv4_addr . inet_proto . inet_service : verdict\n\t}"
	print "\tchain service-endpoints-check {\n\t\tip daddr . meta l4proto . th dport vmap @no-endpoint-services\n\t}"
	printf "\tset cluster-ips {\n\t\ttype ipv4_addr\n\t\telements = { "
	for (s = 0; s < services; s++) { load_service(s); printf "%s%s", s ? ", " : "", svc_vip }
	print " }\n\t}"
	print "\tchain cluster-ips-check {"
	print "\t\tip daddr @cluster-ips reject comment \"Reject traffic to invalid ports of ClusterIPs\""
	print "\t\tip daddr 198.19.0.0/16 drop comment \"Drop traffic to unallocated ClusterIPs\"\n\t}"
	printf "\tmap service-ips {\n\t\ttype ipv4_addr . inet_proto . inet_service : verdict\n\t\telements = { "
	for (s = 0; s < services; s++) {
		load_service(s)
		printf "%s%s . tcp . %d : goto %s", s ? ", " : "", svc_vip, svc_port, nft_svc
	}
	print " }\n\t}"
	print "\tchain services {"
	print "\t\tip daddr . meta l4proto . th dport vmap @service-ips"
	print "\t\tfib daddr type local ip daddr != 127.0.0.0/8 jump nodeports\n\t}"
	for (s = 0; s < services; s++) {
		load_service(s)
		printf "\tchain %s {\n", nft_svc
		printf "\t\tip daddr %s tcp dport %d ip saddr != %s jump mark-for-masquerade\n", svc_vip, svc_port, cluster_cidr
		# A named map per service: a weight change is one element update, and a commit binds no
		# anonymous set (the kernel scans the whole transaction for each one it binds, which
		# makes one transaction of 10,000 kube-proxy-style anonymous vmaps take minutes).
		printf "\t\tnumgen random mod 1000 vmap @%s\n\t}\n", nft_map(s)
		printf "\tmap %s {\n\t\ttypeof numgen random mod 1000 : verdict\n\t\tflags interval\n\t\telements = { %s }\n\t}\n", nft_map(s), nft_intervals(s)
		for (i = 1; i <= n_ep; i++) {
			printf "\tchain %s {\n", nft_ep(s, i)
			printf "\t\tip saddr %s jump mark-for-masquerade\n", ep_ip[i]
			printf "\t\tmeta l4proto tcp dnat to %s:%d\n\t}\n", ep_ip[i], svc_target
		}
	}
	print "}"
}

function gen_nft_weights() {
	load_service(services - 1)
	print "flush map ip kube-proxy weights-canary"
	print "add element ip kube-proxy weights-canary { " nft_intervals(services - 1) " }"
}

# HAProxy weights are 0..256: the endpoint's share of 100, at least 1 where it has any.
function hap_weight(w, total) { return w <= 0 ? 0 : (int(w * 100 / total + 0.5) < 1 ? 1 : int(w * 100 / total + 0.5)) }
function gen_haproxy(   s, i, total) {
	print "global"
	print "\tnbthread 2"
	print "\tmaxconn 8000"
	printf "\tstats socket %s/haproxy.sock mode 600 level admin\n", dir
	print "\ttune.bufsize 16384"
	print "defaults"
	print "\tmode http"
	print "\toption http-keep-alive"
	print "\thttp-reuse safe"
	print "\ttimeout connect 2s"
	print "\ttimeout client 30s"
	print "\ttimeout server 30s"
	print "\ttimeout http-keep-alive 30s"
	print "frontend outbound"
	print "\tbind 0.0.0.0:15001"
	printf "\tuse_backend %%[dst,map_ip(%s/haproxy.map)]\n", dir
	for (s = 0; s < services; s++) {
		load_service(s)
		total = 0
		for (i = 1; i <= n_ep; i++) total += ep_w[i]
		printf "backend %s.%s\n\tbalance roundrobin\n", svc_name, svc_ns
		for (i = 1; i <= n_ep; i++)
			printf "\tserver v%d-%d %s:%d weight %d\n", ep_subset[i], i, ep_ip[i], svc_target, hap_weight(ep_w[i], total)
	}
}

function gen_haproxy_map(   s) {
	for (s = 0; s < services; s++) {
		load_service(s)
		printf "%s %s.%s\n", svc_vip, svc_name, svc_ns
	}
}

function gen_sluice() {
	load_service(services - 1)
	printf "---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata:\n  name: canary\n  namespace: bench\n"
	printf "spec:\n  host: canary\n  trafficPolicy:\n    loadBalancer:\n      simple: %s\n", lb ? lb : "ROUND_ROBIN"
	printf "  subsets:\n  - name: v1\n    labels:\n      version: v1\n  - name: v2\n    labels:\n      version: v2\n"
	printf "---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: canary\n  namespace: bench\n"
	printf "spec:\n  hosts:\n  - canary\n  http:\n  - route:\n"
	printf "    - destination:\n        host: canary\n        subset: v1\n      weight: %d\n", w1
	printf "    - destination:\n        host: canary\n        subset: v2\n      weight: %d\n", w2
}

BEGIN {
	if (services < 1) services = 1
	if (!vip) vip = "198.19.200.1"
	if (!port) port = 8080
	if (!v1) v1 = "198.18.1.1"
	if (!v2) v2 = "198.18.2.1"
	if (w1 == "") w1 = 80
	if (w2 == "") w2 = 20
	cluster_cidr = "198.18.0.0/16"
	if (format == "iptables") gen_iptables()
	else if (format == "iptables-svc") gen_iptables_svc()
	else if (format == "nft") gen_nft()
	else if (format == "nft-weights") gen_nft_weights()
	else if (format == "haproxy") gen_haproxy()
	else if (format == "haproxy-map") gen_haproxy_map()
	else if (format == "sluice") gen_sluice()
	else { print "kube-gen.awk: unknown format '" format "'" > "/dev/stderr"; exit 2 }
}
