#!/usr/bin/env bash
# Writes long-name: a Service whose name is a terminal escape and then 100 MB of "a", into the
# folder $1. The error quotes 64 bytes of it, escaped, and says how long it was, rather than
# echoing 100 MB (issue 10).
set -eu
out=$1
size=$((100 * 1024 * 1024))
{
	echo "# A 100 MB Service name that starts with a terminal escape: quoted cut and escaped."
	printf '# expect: 5:18: Service name "\\x1b[2J%s..." (%d bytes) is not a valid DNS-1035 label: ' \
		"$(head -c 57 /dev/zero | tr '\0' a)" $((size + 4))
	echo "lowercase letters, digits and '-', starting with a letter and ending with a letter or digit, at most 63 characters"
	echo "apiVersion: v1"
	echo "kind: Service"
	printf 'metadata: {name: "\\e[2J'
	head -c "$size" /dev/zero | tr '\0' a
	echo '"}'
	echo "spec: {clusterIP: 198.19.1.1, selector: {app: web}, ports: [{port: 80}]}"
} >"$out/long-name.yaml"
