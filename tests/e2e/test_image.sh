#!/usr/bin/env bash
# make image: the image podman builds from nothing runs sluiced, and its bpftool reads a node's
# pinned maps as `kubectl exec ... bpftool map dump pinned ...` would on a cluster; the archive is
# the docker-archive `kind load image-archive` takes. The image and its containers are removed.
set -u
. "$(dirname "$0")/lib.sh"
export CONTAINERS_CONF=$SLUICE_TOP/deploy/image/containers.conf
e2e_begin
IMG=localhost/sluice-test-$CLUSTER_PREFIX:dev
# podman's cgroups for these containers go under one parent of this run's, removed with the image
CG_PARENT=podman-$CLUSTER_PREFIX
image_cleanup() {
	podman rmi -f "$IMG" >/dev/null 2>&1
	find /sys/fs/cgroup -maxdepth 3 -depth -type d -path "*/$CG_PARENT*" -exec rmdir {} \; 2>/dev/null
	e2e_cleanup
}
trap image_cleanup EXIT
D=$CLUSTER_DIR
run() { podman run --rm --cgroup-parent="/$CG_PARENT" --network host "$@"; }

out=$(SLUICE_IMAGE_ARCHIVE=$D/image.tar BUILD=$SLUICE_BUILD bash "$SLUICE_TOP/deploy/image/build" "$IMG" 2>&1); rc=$?
check "deploy/image/build: the image and its archive" "0 yes" "$rc $(echo "$out" | grep -q "^image $IMG (.* unpacked), archive $D/image.tar" && echo yes)"
check "the archive is a docker-archive naming the image (what kind load image-archive reads)" "$IMG" \
	"$(tar -xOf "$D/image.tar" manifest.json | jq -r '.[0].RepoTags[0]')"
check "the image is small: no base image" yes "$([ "$(podman image inspect "$IMG" --format '{{.Size}}')" -lt 100000000 ] && echo yes)"
check "the image's entrypoint is sluiced" "Usage: sluiced [OPTIONS]" "$(run "$IMG" --help | head -1)"

# a node served by sluiced; the image's bpftool reads its pins
NS=istioinaction VIP=198.19.0.10
pod_add ph-v1 $NS app=purchase-history,version=v1 198.18.1.1
svc_add purchase-history $NS $VIP app=purchase-history 8080
cluster_objects "$D/cluster.yaml"
split_rules purchase-history $NS 8080 "v1:100" "{loadBalancer: {simple: ROUND_ROBIN}}" > "$D/rules.yaml"
sluiced_start || exit 1
sluice apply -f "$D/cluster.yaml" -f "$D/rules.yaml" >/dev/null
dump() { jq -c '[.[].formatted | {vip: .key.vip.bytes[:4], port: .key.port}] | unique'; }
check "the image's bpftool dumps the node's pinned services map as the node's bpftool does" \
	"$(bpftool -j map dump pinned "$CLUSTER_BPFFS/maps/services" | dump)" \
	"$(run --privileged -v /sys/fs/bpf:/sys/fs/bpf:ro --entrypoint /usr/bin/bpftool "$IMG" -j map dump pinned "$CLUSTER_BPFFS/maps/services" | dump)"
check "... with the VIP and port of the Service" '[{"vip":[198,19,0,10],"port":8080}]' \
	"$(run --privileged -v /sys/fs/bpf:/sys/fs/bpf:ro --entrypoint /usr/bin/bpftool "$IMG" -j map dump pinned "$CLUSTER_BPFFS/maps/services" | dump)"
check "podman's cgroups of the run: under its own parent only" "" \
	"$(find /sys/fs/cgroup -maxdepth 3 -type d -name 'libpod_parent' | head -1)"
e2e_end
