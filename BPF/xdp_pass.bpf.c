/* SPDX-License-Identifier: Apache-2.0 */
/*
 * xdp_pass.bpf.c — an XDP program that passes every packet. Test and benchmark labs attach it to
 * the far end of a veth pair: a veth delivers frames sent with XDP_TX (by turn_router on the near
 * end) only when its peer has an XDP program attached too. The relay itself never loads it.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("xdp")
int xdp_pass(struct xdp_md *ctx)
{
    (void)ctx;
    return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
