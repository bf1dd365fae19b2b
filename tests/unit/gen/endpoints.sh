#!/usr/bin/env bash
# Writes endpoints-4096 (valid: the limit itself) and endpoints-4097 (one ready endpoint too many
# in a subset) into the folder $1.
set -eu
out=$1
write() { # NAME PODS HEADER...
	local name=$1 pods=$2
	shift 2
	{
		printf '%s\n' "$@"
		cat <<'YAML'
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  clusterIP: 198.19.10.1
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: web}
spec:
  host: web
  subsets:
  - {name: v1, labels: {version: v1}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: web}
spec:
  hosts: [web]
  http:
  - route:
    - destination:
        host: web
        subset: v1
YAML
		# one not-ready pod beyond the ready ones: only ready endpoints count
		awk -v n="$pods" 'BEGIN {
			for (i = 0; i <= n; i++)
				printf "---\n{apiVersion: v1, kind: Pod, metadata: {name: web-v1-%d, labels: {app: web, version: v1}}, status: {phase: Running, conditions: [{type: Ready, status: \"%s\"}], podIP: 198.18.%d.%d}}\n", i, i < n ? "True" : "False", 10 + int(i / 256), i % 256
		}'
	} >"$out/$name.yaml"
}
write endpoints-4096 4096 "# 4,096 ready endpoints in a subset: the limit itself."
echo "valid: 1 file, 4100 objects (0 skipped), 1 service, 1 destination, 4096 endpoints" >"$out/endpoints-4096.validate.txt"
write endpoints-4097 4097 "# 4,097 ready endpoints in a subset, one past the limit of 4,096." \
	'# expect: 28:17: subset "v1" of web.default has 4097 ready endpoints, more than the limit of 4096: split the Deployment into more subsets'
