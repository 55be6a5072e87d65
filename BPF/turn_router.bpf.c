// SPDX-License-Identifier: Apache-2.0
/*
 * turn_router: an XDP program that relays TURN ChannelData (RFC 8656 §12) in the driver's receive
 * path and passes everything else, untouched, to the kernel stack (and so to the relay process).
 *
 *   client → peer: UDP to a listener port carrying ChannelData on a routed channel: the 4-byte
 *                  header and the padding are removed, the packet is rewritten to
 *                  relay address:allocation port → peer and sent back out (XDP_TX).
 *   peer → client: UDP to an allocation port from a routed peer transport address: a 4-byte
 *                  ChannelData header is prepended (no padding: RFC 8656 §12.5 makes padding
 *                  optional over UDP, and the userspace path sends none either), the packet is
 *                  rewritten to listener → client and sent back out (XDP_TX).
 *
 * Both sides may be IPv4 or IPv6 independently (the IP header grows or shrinks by 20 bytes).
 * The packet sent is a fresh datagram, as the userspace path would send: its TTL / hop limit is
 * tr_config.ttl / hop_limit (0 = 64), whatever the received one was (a packet addressed to this host
 * is delivered to the relay's socket with any TTL, so it is relayed with any TTL here). The IPv4 header
 * checksum is computed afresh; the UDP checksum is updated incrementally (RFC 1624) from the
 * received one, so the data bytes are never read. A received UDP checksum of 0 (IPv4 "no checksum")
 * stays 0 towards IPv4 and is passed towards IPv6 (which requires one).
 *
 * The program never drops: whatever it does not fully own is XDP_PASS, counted by reason in
 * tr_counters (see turn_router.h for the maps' contract).
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "turn_router.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, TR_ROUTES_DEFAULT_ENTRIES);
    __type(key, struct tr_client_key);
    __type(value, struct tr_client_value);
} tr_client_routes SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, TR_ROUTES_DEFAULT_ENTRIES);
    __type(key, struct tr_peer_key);
    __type(value, struct tr_peer_value);
} tr_peer_routes SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, struct tr_config);
} tr_config SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, TR_COUNTER_COUNT);
    __type(key, __u32);
    __type(value, __u64);
} tr_counters SEC(".maps");

#define ETH_HLEN_ 14
#define IPV4_HLEN 20
#define IPV6_HLEN 40
#define UDP_HLEN 8
#define CHANNEL_DATA_HLEN 4
#define DEFAULT_MTU 1500
#define DEFAULT_TTL 64

/* What the program keeps of a received packet before it moves the headers. */
struct parsed {
    __u8 src[16];      /* IPv4-mapped for IPv4 */
    __u8 dst[16];
    __u8 smac[ETH_ALEN];
    __u8 dmac[ETH_ALEN];
    __u8 family;       /* TR_FAMILY_* */
    __u8 out_ttl;      /* configuration: IPv4 TTL of the packets sent */
    __u8 out_hop_limit; /* configuration: IPv6 hop limit of the packets sent */
    __u8 tos;          /* IPv4 TOS or IPv6 traffic class */
    __u8 rfc5766;      /* configuration: channel numbers up to 0x7fff */
    __be32 flow;       /* IPv6 flow label (low 20 bits, network order of the first word) */
    __be16 ip_id;      /* IPv4 identification */
    __be16 frag_off;   /* IPv4 flags (DF only: fragments are passed) */
    __be16 sport;
    __be16 dport;
    __u16 ip_hlen;     /* 20 or 40 */
    __u16 udp_len;     /* host order, UDP header included */
    __u16 check;       /* received UDP checksum, host order */
    __u16 mtu;         /* configuration: largest IP packet sent */
    __u32 frame_len;   /* received frame length (Ethernet header included) */
};

static __always_inline void count(__u32 index, __u64 amount)
{
    __u64 *counter = bpf_map_lookup_elem(&tr_counters, &index);
    if (counter)
        *counter += amount;
}

static __always_inline int pass(__u32 reason)
{
    count(reason, 1);
    return XDP_PASS;
}

/* One's-complement arithmetic on 16-bit big-endian word values (host-order numbers), in a 32-bit
 * accumulator that is folded at the end. Subtracting v is adding its complement. */
static __always_inline __u32 csum_add16(__u32 sum, __u16 v) { return sum + v; }
static __always_inline __u32 csum_sub16(__u32 sum, __u16 v) { return sum + (__u16)~v; }

/* Sum of the eight 16-bit words of a 16-byte address (4-byte aligned: map values, struct parsed).
 * The IPv4-mapped prefix adds 0xffff, which is zero in one's-complement arithmetic, so a mapped
 * IPv4 address sums exactly like its four bytes. */
static __always_inline __u32 csum_addr(const __u8 a[16])
{
    const __u32 *w = (const __u32 *)a;
    __u32 sum = 0;
#pragma unroll
    for (int i = 0; i < 4; i++) {
        __u32 v = bpf_ntohl(w[i]);
        sum += (v >> 16) + (v & 0xffff);
    }
    return sum;
}

/* Minus an address: each of its eight words w adds 0xffff - w, so the eight together add
 * 8 * 0xffff - csum_addr (never negative), with no fold in between. */
#define CSUM_MINUS_ADDR(addr_sum) (8u * 0xffff - (addr_sum))

static __always_inline __u16 csum_fold(__u32 sum)
{
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    return (__u16)sum;
}

static __always_inline __u16 bswap_port(__be16 p) { return bpf_ntohs(p); }

static __always_inline void map_v4(__u8 out[16], __be32 addr)
{
    __builtin_memset(out, 0, 10);
    out[10] = 0xff;
    out[11] = 0xff;
    __builtin_memcpy(&out[12], &addr, 4);
}

/* Writes Ethernet (MACs swapped), IP and UDP headers at the start of the (already resized)
 * packet. Returns 0, or -1 when the packet is shorter than the headers (cannot happen after a
 * successful resize, but the verifier wants the check). */
static __always_inline int write_headers(struct xdp_md *ctx, const struct parsed *p, __u8 out_family,
                                         const __u8 saddr[16], const __u8 daddr[16], __be16 sport,
                                         __be16 dport, __u16 udp_len, __u16 udp_check)
{
    void *data = (void *)(long)ctx->data;
    void *data_end = (void *)(long)ctx->data_end;
    struct ethhdr *eth = data;
    struct udphdr *udp;

    if ((void *)(eth + 1) > data_end)
        return -1;
    __builtin_memcpy(eth->h_dest, p->smac, ETH_ALEN);
    __builtin_memcpy(eth->h_source, p->dmac, ETH_ALEN);

    if (out_family == TR_FAMILY_IPV4) {
        struct iphdr *ip = (void *)(eth + 1);
        if ((void *)(ip + 1) > data_end)
            return -1;
        __u16 tot_len = IPV4_HLEN + udp_len;
        __be16 id = 0, frag = bpf_htons(0x4000); /* DF, as a UDP socket with PMTU discovery sends */
        if (p->family == TR_FAMILY_IPV4) {
            id = p->ip_id;
            frag = p->frag_off;
        }
        eth->h_proto = bpf_htons(ETH_P_IP);
        ip->version = 4;
        ip->ihl = 5;
        ip->tos = p->tos;
        ip->tot_len = bpf_htons(tot_len);
        ip->id = id;
        ip->frag_off = frag;
        ip->ttl = p->out_ttl;
        ip->protocol = IPPROTO_UDP;
        ip->check = 0;
        __builtin_memcpy(&ip->saddr, &saddr[12], 4);
        __builtin_memcpy(&ip->daddr, &daddr[12], 4);
        __u32 sum = 0;
        sum = csum_add16(sum, (0x45 << 8) | p->tos);
        sum = csum_add16(sum, tot_len);
        sum = csum_add16(sum, bpf_ntohs(id));
        sum = csum_add16(sum, bpf_ntohs(frag));
        sum = csum_add16(sum, ((__u16)p->out_ttl << 8) | IPPROTO_UDP);
        sum = csum_add16(sum, ((__u16)saddr[12] << 8) | saddr[13]);
        sum = csum_add16(sum, ((__u16)saddr[14] << 8) | saddr[15]);
        sum = csum_add16(sum, ((__u16)daddr[12] << 8) | daddr[13]);
        sum = csum_add16(sum, ((__u16)daddr[14] << 8) | daddr[15]);
        ip->check = bpf_htons((__u16)~csum_fold(sum));
        udp = (void *)(ip + 1);
    } else {
        struct ipv6hdr *ip6 = (void *)(eth + 1);
        if ((void *)(ip6 + 1) > data_end)
            return -1;
        __u32 first = (6u << 28) | ((__u32)p->tos << 20);
        if (p->family == TR_FAMILY_IPV6)
            first |= bpf_ntohl(p->flow) & 0xfffff;
        eth->h_proto = bpf_htons(ETH_P_IPV6);
        *(__be32 *)ip6 = bpf_htonl(first);
        ip6->payload_len = bpf_htons(udp_len);
        ip6->nexthdr = IPPROTO_UDP;
        ip6->hop_limit = p->out_hop_limit;
        __builtin_memcpy(&ip6->saddr, saddr, 16);
        __builtin_memcpy(&ip6->daddr, daddr, 16);
        udp = (void *)(ip6 + 1);
    }
    if ((void *)(udp + 1) > data_end)
        return -1;
    udp->source = sport;
    udp->dest = dport;
    udp->len = bpf_htons(udp_len);
    udp->check = bpf_htons(udp_check);
    return 0;
}

/* Moves the packet start by `delta` (positive: headers shrink) and drops `trailing` bytes at the
 * end. The head moves first: it is the step a driver can refuse (too little headroom) and then
 * nothing has changed yet. Shrinking the tail only fails below an Ethernet header. */
static __always_inline int resize(struct xdp_md *ctx, int delta, int trailing)
{
    if (delta != 0 && bpf_xdp_adjust_head(ctx, delta))
        return -1;
    if (trailing > 0 && bpf_xdp_adjust_tail(ctx, -trailing))
        return -1;
    return 0;
}

/* A datagram whose checksum is left to offload (CHECKSUM_PARTIAL: sent from this host, e.g. from
 * a container through a veth, or a GRO super-packet in generic mode) carries only the folded
 * pseudo-header sum in its checksum field. Nothing can be updated incrementally from that, so such
 * datagrams go to the kernel, which completes the checksum. */
static __always_inline int partial_checksum(const struct parsed *p, __u32 addr_sum)
{
    return p->check != 0 && p->check == csum_fold(addr_sum + IPPROTO_UDP + p->udp_len);
}

/* a and b are 4-byte aligned (map values, struct parsed). */
static __always_inline int same_address(const __u8 a[16], const __u8 b[16])
{
    const __u32 *x = (const __u32 *)a, *y = (const __u32 *)b;
    return ((x[0] ^ y[0]) | (x[1] ^ y[1]) | (x[2] ^ y[2]) | (x[3] ^ y[3])) == 0;
}

/* Two subprograms (not inlined) so that each path's stack frame stays well below the 512-byte limit. */
static __noinline int client_to_peer(struct xdp_md *ctx, struct parsed *p)
{
    void *data = (void *)(long)ctx->data;
    void *data_end = (void *)(long)ctx->data_end;
    __u8 *payload = (__u8 *)data + ETH_HLEN_ + (p->ip_hlen & 0x7f) + UDP_HLEN;
    __u16 mtu = p->mtu;
    __u32 frame_len = p->frame_len;
    __u16 plen = p->udp_len - UDP_HLEN;
    if (plen < CHANNEL_DATA_HLEN || payload + CHANNEL_DATA_HLEN > (__u8 *)data_end)
        return pass(plen == 0 ? TR_PASS_NOT_CHANNEL_DATA : TR_PASS_MALFORMED_CHANNEL_DATA);
    if ((payload[0] & 0xc0) != 0x40)
        return pass(TR_PASS_NOT_CHANNEL_DATA);
    __u16 channel = ((__u16)payload[0] << 8) | payload[1];
    __u16 len = ((__u16)payload[2] << 8) | payload[3];
    if (channel > 0x4fff && !p->rfc5766)
        return pass(TR_PASS_MALFORMED_CHANNEL_DATA);
    if ((__u32)CHANNEL_DATA_HLEN + len > plen)
        return pass(TR_PASS_CHANNEL_LENGTH_BEYOND_DATAGRAM);
    if (len == 0 || plen > CHANNEL_DATA_HLEN + ((len + 3) & ~3))
        return pass(TR_PASS_MALFORMED_CHANNEL_DATA);
    if (plen >= 0x4000) /* beyond any MTU the program is meant for (see tr_config.mtu) */
        return pass(TR_PASS_OVERSIZED);

    struct tr_client_key key = {};
    __builtin_memcpy(key.client_ip, p->src, 16);
    key.client_port = p->sport;
    key.listener_port = p->dport;
    key.channel = bpf_htons(channel);
    struct tr_client_value *found = bpf_map_lookup_elem(&tr_client_routes, &key);
    if (!found)
        return pass(TR_PASS_MAP_MISS);
    /* A copy: a pre-allocated hash element deleted by the loader meanwhile may be reused at once. */
    struct tr_client_value r = *found, *route = &r;
    if (route->client_family != p->family)
        return pass(TR_PASS_MAP_MISS);
    /* The received addresses' share of the checksum, used twice below. */
    __u32 src_sum = csum_addr(p->src), dst_sum = csum_addr(p->dst);
    if (partial_checksum(p, src_sum + dst_sum))
        return pass(TR_PASS_PARTIAL_CHECKSUM);
    if (same_address(route->peer_ip, route->relay_ip) || same_address(route->peer_ip, p->dst))
        return pass(TR_PASS_HAIRPIN);
    __u8 out_family = route->peer_family;
    if (out_family != TR_FAMILY_IPV4 && out_family != TR_FAMILY_IPV6)
        return pass(TR_PASS_CHECKSUM_OR_OTHER);
    __u16 out_hlen = out_family == TR_FAMILY_IPV4 ? IPV4_HLEN : IPV6_HLEN;
    __u16 out_udp_len = UDP_HLEN + len;
    if ((__u32)out_hlen + out_udp_len > mtu)
        return pass(TR_PASS_OVERSIZED);

    const __u8 *relay_ip = route->relay_ip, *peer_ip = route->peer_ip;
    __be16 relay_port = route->relay_port, peer_port = route->peer_port;

    __u16 check = 0;
    if (p->check == 0) {
        /* IPv6 requires a checksum (RFC 8200 §8.1): the kernel drops a zero one, and so must we. */
        if (out_family == TR_FAMILY_IPV6 || p->family == TR_FAMILY_IPV6)
            return pass(TR_PASS_CHECKSUM_OR_OTHER);
    } else {
        /* Everything the received checksum covered except the data bytes: remove it. */
        __u32 sum = (__u16)~p->check;
        sum += CSUM_MINUS_ADDR(src_sum);
        sum += CSUM_MINUS_ADDR(dst_sum);
        sum = csum_sub16(sum, p->udp_len); /* pseudo header */
        sum = csum_sub16(sum, p->udp_len); /* UDP header */
        sum = csum_sub16(sum, bswap_port(p->sport));
        sum = csum_sub16(sum, bswap_port(p->dport));
        sum = csum_sub16(sum, channel);
        sum = csum_sub16(sum, len);
        /* Padding bytes (at most 3) after the data. The data starts at an even offset in both
         * the old and the new payload, so only the padding's own position matters. */
        __u16 pad_off = CHANNEL_DATA_HLEN + len;
#pragma unroll
        for (int i = 0; i < 3; i++) {
            __u16 off = pad_off + i;
            if (off < plen) {
                /* off < plen < 0x4000 (checked above): the mask only tells the verifier. */
                __u8 *b = payload + (off & 0x3fff);
                if ((void *)(b + 1) > data_end)
                    return pass(TR_PASS_CHECKSUM_OR_OTHER);
                __u16 word = (off & 1) ? *b : ((__u16)*b << 8);
                sum = csum_sub16(sum, word);
            }
        }
        /* What the new packet's checksum covers besides the data. */
        sum += csum_addr(relay_ip);
        sum += csum_addr(peer_ip);
        sum = csum_add16(sum, out_udp_len);
        sum = csum_add16(sum, out_udp_len);
        sum = csum_add16(sum, bswap_port(relay_port));
        sum = csum_add16(sum, bswap_port(peer_port));
        check = (__u16)~csum_fold(sum);
        if (check == 0)
            check = 0xffff;
    }

    int delta = (int)p->ip_hlen + UDP_HLEN + CHANNEL_DATA_HLEN - (int)out_hlen - UDP_HLEN;
    int trailing = (int)frame_len - (ETH_HLEN_ + p->ip_hlen + UDP_HLEN + CHANNEL_DATA_HLEN + len);
    if (resize(ctx, delta, trailing))
        return pass(TR_PASS_HEADROOM);
    if (write_headers(ctx, p, out_family, relay_ip, peer_ip, relay_port, peer_port, out_udp_len, check))
        return pass(TR_PASS_HEADROOM);
    count(TR_RELAYED_PACKETS_CLIENT_TO_PEER, 1);
    count(TR_RELAYED_BYTES_CLIENT_TO_PEER, len);
    return XDP_TX;
}

static __noinline int peer_to_client(struct xdp_md *ctx, struct parsed *p)
{
    __u16 mtu = p->mtu;
    __u32 frame_len = p->frame_len;
    __u16 plen = p->udp_len - UDP_HLEN;
    if (plen == 0)
        return pass(TR_PASS_CHECKSUM_OR_OTHER);

    struct tr_peer_key key = {};
    __builtin_memcpy(key.peer_ip, p->src, 16);
    __builtin_memcpy(key.relay_ip, p->dst, 16);
    key.peer_port = p->sport;
    key.relay_port = p->dport;
    struct tr_peer_value *found = bpf_map_lookup_elem(&tr_peer_routes, &key);
    if (!found)
        return pass(TR_PASS_MAP_MISS);
    struct tr_peer_value r = *found, *route = &r;
    if (route->peer_family != p->family)
        return pass(TR_PASS_MAP_MISS);
    /* The received addresses' share of the checksum, used twice below. */
    __u32 src_sum = csum_addr(p->src), dst_sum = csum_addr(p->dst);
    if (partial_checksum(p, src_sum + dst_sum))
        return pass(TR_PASS_PARTIAL_CHECKSUM);
    if (same_address(route->client_ip, route->listener_ip) || same_address(route->client_ip, p->dst))
        return pass(TR_PASS_HAIRPIN);
    __u8 out_family = route->client_family;
    if (out_family != TR_FAMILY_IPV4 && out_family != TR_FAMILY_IPV6)
        return pass(TR_PASS_CHECKSUM_OR_OTHER);
    __u16 out_hlen = out_family == TR_FAMILY_IPV4 ? IPV4_HLEN : IPV6_HLEN;
    __u32 out_udp_len32 = UDP_HLEN + CHANNEL_DATA_HLEN + (__u32)plen;
    if ((__u32)out_hlen + out_udp_len32 > mtu)
        return pass(TR_PASS_OVERSIZED);
    __u16 out_udp_len = (__u16)out_udp_len32;

    const __u8 *listener_ip = route->listener_ip, *client_ip = route->client_ip;
    __be16 listener_port = route->listener_port, client_port = route->client_port;
    __be16 channel = route->channel;

    __u16 check = 0;
    if (p->check == 0) {
        /* IPv6 requires a checksum (RFC 8200 §8.1): the kernel drops a zero one, and so must we. */
        if (out_family == TR_FAMILY_IPV6 || p->family == TR_FAMILY_IPV6)
            return pass(TR_PASS_CHECKSUM_OR_OTHER);
    } else {
        __u32 sum = (__u16)~p->check;
        sum += CSUM_MINUS_ADDR(src_sum);
        sum += CSUM_MINUS_ADDR(dst_sum);
        sum = csum_sub16(sum, p->udp_len);
        sum = csum_sub16(sum, p->udp_len);
        sum = csum_sub16(sum, bswap_port(p->sport));
        sum = csum_sub16(sum, bswap_port(p->dport));
        sum += csum_addr(listener_ip);
        sum += csum_addr(client_ip);
        sum = csum_add16(sum, out_udp_len);
        sum = csum_add16(sum, out_udp_len);
        sum = csum_add16(sum, bswap_port(listener_port));
        sum = csum_add16(sum, bswap_port(client_port));
        sum = csum_add16(sum, bswap_port(channel));
        sum = csum_add16(sum, plen);
        check = (__u16)~csum_fold(sum);
        if (check == 0)
            check = 0xffff;
    }

    int delta = (int)p->ip_hlen - (int)out_hlen - CHANNEL_DATA_HLEN;
    int trailing = (int)frame_len - (ETH_HLEN_ + p->ip_hlen + p->udp_len);
    if (resize(ctx, delta, trailing))
        return pass(TR_PASS_HEADROOM);
    if (write_headers(ctx, p, out_family, listener_ip, client_ip, listener_port, client_port, out_udp_len, check))
        return pass(TR_PASS_HEADROOM);

    /* The ChannelData header right after the UDP header. */
    void *data = (void *)(long)ctx->data;
    void *data_end = (void *)(long)ctx->data_end;
    __u8 *cd = (__u8 *)data + ETH_HLEN_ + out_hlen + UDP_HLEN;
    if ((void *)(cd + CHANNEL_DATA_HLEN) > data_end)
        return pass(TR_PASS_HEADROOM);
    __builtin_memcpy(cd, &channel, 2);
    __be16 be_len = bpf_htons(plen);
    __builtin_memcpy(cd + 2, &be_len, 2);
    count(TR_RELAYED_PACKETS_PEER_TO_CLIENT, 1);
    count(TR_RELAYED_BYTES_PEER_TO_CLIENT, plen);
    return XDP_TX;
}

static __always_inline int is_ipv6_extension(__u8 next)
{
    switch (next) {
    case 0:   /* hop-by-hop options */
    case 43:  /* routing */
    case 44:  /* fragment */
    case 50:  /* ESP */
    case 51:  /* AH */
    case 60:  /* destination options */
    case 135: /* mobility */
    case 139: /* HIP */
    case 140: /* shim6 */
    case 253:
    case 254: /* experimental */
        return 1;
    default:
        return 0;
    }
}

SEC("xdp")
int turn_router(struct xdp_md *ctx)
{
    void *data = (void *)(long)ctx->data;
    void *data_end = (void *)(long)ctx->data_end;
    __u32 frame_len = (__u32)(data_end - data);
    struct ethhdr *eth = data;
    struct udphdr *udp;
    struct parsed p = {};

    if ((void *)(eth + 1) > data_end)
        return pass(TR_PASS_NOT_IP_UDP);
    __builtin_memcpy(p.smac, eth->h_source, ETH_ALEN);
    __builtin_memcpy(p.dmac, eth->h_dest, ETH_ALEN);

    __u32 ip_payload_len;
    if (eth->h_proto == bpf_htons(ETH_P_IP)) {
        struct iphdr *ip = (void *)(eth + 1);
        if ((void *)(ip + 1) > data_end || ip->version != 4 || ip->ihl < 5)
            return pass(TR_PASS_NOT_IP_UDP);
        if (ip->ihl != 5 || (ip->frag_off & bpf_htons(0x3fff)))
            return pass(TR_PASS_IPV4_OPTIONS_OR_FRAGMENT);
        if (ip->protocol != IPPROTO_UDP)
            return pass(TR_PASS_NOT_IP_UDP);
        __u16 tot_len = bpf_ntohs(ip->tot_len);
        if (tot_len < IPV4_HLEN + UDP_HLEN || (__u32)ETH_HLEN_ + tot_len > frame_len)
            return pass(TR_PASS_CHECKSUM_OR_OTHER);
        /* The header checksum: the kernel drops a bad one, so must we (by passing it there). The
         * one's-complement sum does not depend on the byte order of the loads. */
        __u16 *words = (__u16 *)ip;
        __u32 hsum = 0;
#pragma unroll
        for (int i = 0; i < IPV4_HLEN / 2; i++)
            hsum += words[i];
        if (csum_fold(hsum) != 0xffff)
            return pass(TR_PASS_CHECKSUM_OR_OTHER);
        p.family = TR_FAMILY_IPV4;
        map_v4(p.src, ip->saddr);
        map_v4(p.dst, ip->daddr);
        p.tos = ip->tos;
        p.ip_id = ip->id;
        p.frag_off = ip->frag_off;
        p.ip_hlen = IPV4_HLEN;
        ip_payload_len = tot_len - IPV4_HLEN;
        udp = (void *)(ip + 1);
    } else if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
        struct ipv6hdr *ip6 = (void *)(eth + 1);
        if ((void *)(ip6 + 1) > data_end || ip6->version != 6)
            return pass(TR_PASS_NOT_IP_UDP);
        if (ip6->nexthdr != IPPROTO_UDP)
            return pass(is_ipv6_extension(ip6->nexthdr) ? TR_PASS_IPV6_EXTENSION_HEADER : TR_PASS_NOT_IP_UDP);
        __u16 payload_len = bpf_ntohs(ip6->payload_len);
        if (payload_len < UDP_HLEN || (__u32)ETH_HLEN_ + IPV6_HLEN + payload_len > frame_len)
            return pass(TR_PASS_CHECKSUM_OR_OTHER); /* jumbograms (0) included */
        p.family = TR_FAMILY_IPV6;
        __builtin_memcpy(p.src, &ip6->saddr, 16);
        __builtin_memcpy(p.dst, &ip6->daddr, 16);
        __u32 first = bpf_ntohl(*(__be32 *)ip6);
        p.tos = (first >> 20) & 0xff;
        p.flow = bpf_htonl(first & 0xfffff);
        p.ip_hlen = IPV6_HLEN;
        ip_payload_len = payload_len;
        udp = (void *)(ip6 + 1);
    } else {
        return pass(TR_PASS_NOT_IP_UDP);
    }

    if ((void *)(udp + 1) > data_end)
        return pass(TR_PASS_NOT_IP_UDP);
    p.udp_len = bpf_ntohs(udp->len);
    if (p.udp_len != ip_payload_len)
        return pass(TR_PASS_CHECKSUM_OR_OTHER);
    p.sport = udp->source;
    p.dport = udp->dest;
    p.check = bpf_ntohs(udp->check);

    __u32 zero = 0;
    struct tr_config *cfg = bpf_map_lookup_elem(&tr_config, &zero);
    if (!cfg)
        return pass(TR_PASS_NOT_OUR_PORT);
    __u16 mtu = cfg->mtu ? bpf_ntohs(cfg->mtu) : DEFAULT_MTU;
    p.mtu = mtu;
    p.frame_len = frame_len;
    p.rfc5766 = (bpf_ntohl(cfg->flags) & TR_CONFIG_RFC5766_CHANNELS) != 0;
    p.out_ttl = cfg->ttl ? cfg->ttl : DEFAULT_TTL;
    p.out_hop_limit = cfg->hop_limit ? cfg->hop_limit : DEFAULT_TTL;

    int listener = 0;
#pragma unroll
    for (int i = 0; i < TR_MAX_LISTENER_PORTS; i++)
        if (cfg->listener_ports[i] != 0 && cfg->listener_ports[i] == p.dport)
            listener = 1;
    __u16 dport = bpf_ntohs(p.dport);
    __u16 min = bpf_ntohs(cfg->relay_port_min), max = bpf_ntohs(cfg->relay_port_max);
    int allocation = !listener && min != 0 && dport >= min && dport <= max;
    if (!listener && !allocation)
        return pass(TR_PASS_NOT_OUR_PORT);
    /* A GRO/GSO super-packet (generic mode) or a jumbo frame: larger than anything we send. */
    if ((__u32)p.ip_hlen + p.udp_len > mtu)
        return pass(TR_PASS_OVERSIZED);

    if (listener)
        return client_to_peer(ctx, &p);
    return peer_to_client(ctx, &p);
}
