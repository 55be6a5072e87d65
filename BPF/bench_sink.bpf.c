/* SPDX-License-Identifier: Apache-2.0 */
/*
 * bench_sink.bpf.c — the `turn-bench lab` counting sink. Attached (native XDP) to the generator's
 * end of the lab's veth pair, it counts and drops the benchmark's datagrams so that the load
 * generator never receives them in userspace (receive cost ~0), and passes everything else (STUN
 * answers to the control sockets, ARP, neighbour discovery) to the kernel.
 *
 * A benchmark datagram is IPv4 or IPv6 UDP (no IPv4 options, no IPv6 extension headers) whose
 * payload carries the bench magic "TRNB" (BenchPayload.magic, stored little-endian):
 *   - at offset 0: peer data as it reaches a peer            → counts[0] (client → peer)
 *   - at offset 4 after a ChannelData header (first byte 0x40..0x4F): ChannelData as it reaches
 *     a client                                                → counts[1] (peer → client)
 * The lab also attaches it to the relay's end for a calibration run (no relay): there it drops
 * the generator's own frames, so the machine CPU of that run is the generator's cost.
 *
 * counts: per-CPU array of 2 × { packets, bytes }, read by `turn-bench` with bpftool.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/in.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

struct sink_count {
    __u64 packets;
    __u64 bytes;
};

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, 2);
    __type(key, __u32);
    __type(value, struct sink_count);
} counts SEC(".maps");

/* "TRNB" as BenchPayload writes it: UInt32 0x54524E42 in little-endian memory order. */
#define BENCH_MAGIC_BYTES 0x54524E42u

static __always_inline int count(__u32 index, __u64 bytes)
{
    struct sink_count *c = bpf_map_lookup_elem(&counts, &index);
    if (!c)
        return XDP_PASS;
    c->packets += 1;
    c->bytes += bytes;
    return XDP_DROP;
}

SEC("xdp")
int bench_sink(struct xdp_md *ctx)
{
    void *data = (void *)(long)ctx->data;
    void *end = (void *)(long)ctx->data_end;
    struct ethhdr *eth = data;
    struct udphdr *udp;

    if ((void *)(eth + 1) > end)
        return XDP_PASS;
    if (eth->h_proto == bpf_htons(ETH_P_IP)) {
        struct iphdr *ip = (void *)(eth + 1);
        if ((void *)(ip + 1) > end || ip->ihl != 5 || ip->protocol != IPPROTO_UDP)
            return XDP_PASS;
        udp = (void *)(ip + 1);
    } else if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
        struct ipv6hdr *ip6 = (void *)(eth + 1);
        if ((void *)(ip6 + 1) > end || ip6->nexthdr != IPPROTO_UDP)
            return XDP_PASS;
        udp = (void *)(ip6 + 1);
    } else {
        return XDP_PASS;
    }
    __u8 *payload = (void *)(udp + 1);
    if ((void *)(payload + 8) > end)
        return XDP_PASS;
    __u64 bytes = (__u64)(end - data);
    if (*(__u32 *)payload == BENCH_MAGIC_BYTES)
        return count(0, bytes);
    if ((payload[0] & 0xF0) == 0x40 && *(__u32 *)(payload + 4) == BENCH_MAGIC_BYTES)
        return count(1, bytes);
    return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
