// SPDX-License-Identifier: GPL-2.0
/* The cheapest XDP program there is: bench/tc-bench attaches it to measure what XDP costs on a
 * veth before it does any work (the floor under any XDP translation). */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

SEC("xdp")
int xdp_pass(struct xdp_md *ctx)
{
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
