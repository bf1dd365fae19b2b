#!/usr/bin/env bash
# Writes services-65537: one VirtualService routing 65,537 Services, one past the limit of 65,536
# (service, port) entries, into the folder $1.
set -eu
out=$1
awk 'BEGIN {
	n = 65537
	print "# 65,537 routed services, one past the limit of 65,536."
	# the error names the host that goes past the limit: hosts start on line 10, one a line
	printf "# expect: %d:5: more than 65536 service ports are routed: the limit of sluice\n", 10 + n - 1
	print "apiVersion: networking.istio.io/v1"
	print "kind: VirtualService"
	print "metadata: {name: all}"
	print "spec:"
	print "  http:"
	print "  - route: [{destination: {host: s0}}]"
	print "  hosts:"
	for (i = 0; i < n; i++)
		printf "  - s%d\n", i
	for (i = 0; i < n; i++)
		printf "---\n{apiVersion: v1, kind: Service, metadata: {name: s%d}, spec: {clusterIP: \"2001:db8:1::%x:%x\", selector: {app: s%d}, ports: [{port: 80}]}}\n", i, int(i / 65536), i % 65536, i
}' >"$out/services-65537.yaml"
