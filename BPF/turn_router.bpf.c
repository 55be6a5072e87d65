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
 * Next hop: the MAC addresses are swapped and the packet leaves by the interface it came in by
 * (XDP_TX). With TR_CONFIG_FIB (the loader sets it when attached to several interfaces) the kernel's
 * FIB and neighbour table give the egress interface and both MAC addresses (bpf_fib_lookup, as for a
 * packet forwarded from the ingress interface): XDP_TX when that is the ingress interface, else
 * XDP_REDIRECT through tr_egress; no neighbour entry, no route (forwarding disabled included) or an
 * egress interface not in tr_egress passes the packet untouched.
 *
 * The program never drops: whatever it does not fully own is XDP_PASS, counted by reason in
 * tr_counters (see turn_router.h for the maps' contract).
 *
 * How it is kept cheap (BPF/README.md, "Run time", has the measurements):
 * - The parsing is shared by both directions, each direction only builds its key and fills a
 *   `struct out` from its route; one common tail (rewrite) checks, resizes and writes the packet.
 * - Packet fields are read and written as whole 16/32-bit words, never byte by byte (struct
 *   ethhdr is packed, so it is not used for access).
 * - One's-complement sums are taken over words as they lie in memory (RFC 1071 §2(B): the sum is
 *   independent of byte order), in a 64-bit accumulator over 32-bit words, folded once: no byte
 *   swapping, no per-word fold.
 * - The old part and the new part of the UDP checksum are summed separately and combined once.
 *
 * Privileges: it loads with CAP_BPF and CAP_NET_ADMIN alone (no CAP_PERFMON). Without CAP_PERFMON
 * the verifier refuses subtracting one packet pointer from another and adding a variable offset
 * to a packet pointer (Spectre v1), so the packet is read and written at constant offsets only:
 * the frame's length comes from bpf_xdp_get_buff_len, the ChannelData padding (at a variable
 * offset) from bpf_xdp_load_bytes (both Linux 5.18), and NO_SINK keeps clang from merging the two
 * families' header stores into one store at a variable offset. BPF/tests loads it with exactly
 * those two capabilities.
 *
 * Spectre v4 without CAP_PERFMON: the verifier then puts a `nospec` barrier (lfence on x86) after
 * every store to a stack slot that is fresh or holds a spilled register. The first version that
 * loaded this way had 122 of them and ran 4-5 times slower. So the stack is hardly used: the map
 * keys, the parsed values and `struct out` live in a per-CPU scratch map value (struct scratch,
 * whose stores get no barrier), the configuration is copied there once, the work is split into
 * two BPF-to-BPF calls (find_route, rewrite) that each get their own r6-r9 (saved by the JIT, not
 * by stores the verifier sees), and FORGET() barriers make clang reload values from the scratch
 * value rather than hold them in registers until they spill. None is left (BPF/README.md,
 * "Privileges", tells how to count them after a change).
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
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

/* The interfaces a packet may be redirected to (TR_CONFIG_FIB): key = value = ifindex. */
struct {
    __uint(type, BPF_MAP_TYPE_DEVMAP_HASH);
    __uint(max_entries, TR_EGRESS_DEFAULT_ENTRIES);
    __type(key, __u32);
    __type(value, __u32);
} tr_egress SEC(".maps");

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
#define AF_INET_ 2
#define AF_INET6_ 10

/* Words in memory order. W16(a, b): the 16-bit word whose first byte in memory is a; W32(x, y):
 * the 32-bit word whose first two bytes in memory are the 16-bit word x. */
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define W16(a, b) ((__u16)((__u16)(a) | ((__u16)(b) << 8)))
#define W32(x, y) ((__u32)((__u32)(x) | ((__u32)(y) << 16)))
#else
#define W16(a, b) ((__u16)(((__u16)(a) << 8) | (__u16)(b)))
#define W32(x, y) ((__u32)(((__u32)(x) << 16) | (__u32)(y)))
#endif

/* The last n (1-3) bytes in memory of a 32-bit word loaded from memory. */
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define TAIL_BYTES_MASK(n) (0xffffffffu << (8 * (4 - (n))))
#else
#define TAIL_BYTES_MASK(n) (0xffffffffu >> (8 * (4 - (n))))
#endif

/* The ten zero bytes and two 0xff bytes of an IPv4-mapped address (::ffff:a.b.c.d), word 2. */
#define MAPPED_WORD2 W32(0, 0xffff)

/* Unaligned-tolerant word access to the packet (x86-64 and arm64 load unaligned words, and the
 * verifier allows it there; the IP header after a 14-byte Ethernet header is 2-byte aligned). */
#define LOAD16(p) (*(const __u16 *)(p))
#define LOAD32(p) (*(const __u32 *)(p))
#define STORE16(p, v) (*(__u16 *)(p) = (v))
#define STORE32(p, v) (*(__u32 *)(p) = (v))

/* Ends a branch whose last stores resemble the other branch's: without it clang may merge them
 * into one store after the branches at "packet pointer + an offset chosen by the branch", which the
 * verifier refuses without CAP_PERFMON (a packet pointer plus a variable offset). Clang does not
 * merge inline assembly, so the stores before it stay in their branch. */
#define NO_SINK() asm volatile("" ::: "memory")

/* Values clang loaded from memory before it are loaded again after it rather than held in
 * registers: on a long stretch the registers run out and clang spills to the stack, and without
 * CAP_PERFMON each spill costs a nospec (see struct scratch). */
#define FORGET() asm volatile("" ::: "memory")


/* Folds a 64-bit accumulator of 16/32-bit words to the 16-bit one's-complement sum. */
static __always_inline __u16 fold(__u64 s)
{
    s = (s & 0xffffffff) + (s >> 32);
    s = (s & 0xffff) + (s >> 16);
    s = (s & 0xffff) + (s >> 16);
    s = (s & 0xffff) + (s >> 16);
    return (__u16)s;
}

static __always_inline __u64 sum_addr(const __u32 a[4]) { return (__u64)a[0] + a[1] + a[2] + a[3]; }

/* Map values are 8-byte aligned in the kernel, so their addresses can be read as words. */
static __always_inline void copy_addr(__u32 to[4], const __u32 from[4])
{
    to[0] = from[0], to[1] = from[1], to[2] = from[2], to[3] = from[3];
}

static __always_inline int same_addr(const __u32 a[4], const __u32 b[4])
{
    return ((a[0] ^ b[0]) | (a[1] ^ b[1]) | (a[2] ^ b[2]) | (a[3] ^ b[3])) == 0;
}

/* What both directions send: filled from a route (copied out of the map: the loader may delete a
 * pre-allocated hash element and reuse it at once) and from the received packet. */
struct out {
    __u32 saddr[4], daddr[4]; /* IPv4-mapped for IPv4 */
    __be16 sport, dport;
    __u8 family;              /* TR_FAMILY_* sent */
    __u8 route_family;        /* TR_FAMILY_* the route expects on the receiving side */
    __u16 data_len;           /* application data bytes (the counters count these) */
    __u32 cd_header;          /* p2c: the ChannelData header to write (memory order); c2p: 0 */
    __u64 old_extra;          /* c2p: the received ChannelData header and padding, as summed */
    int delta;                /* bpf_xdp_adjust_head: positive = the headers shrink */
    int trailing;             /* bytes dropped at the end (padding, Ethernet padding) */
    __u32 relayed_counter;    /* TR_RELAYED_PACKETS_* (the bytes counter is the next index) */
};

/* The program's working memory, one per CPU, instead of the stack. Without CAP_PERFMON the
 * verifier puts a `nospec` barrier (lfence on x86) after every store to a stack slot that is
 * fresh or holds a spilled register (Spectre v4), and the map keys, the received addresses and
 * `struct out` written to the stack paid one per store: 4-5 times the run time. Stores to a map
 * value get none. One entry per CPU: native XDP runs in the driver's NAPI poll (softirq), which
 * nothing on the same CPU interrupts with another run of this program, and BPF programs do not
 * migrate. Every field is written before it is read in each run. (Generic mode on a preemptible
 * kernel, for a packet received in process context rather than in softirq, could in principle be
 * preempted by another run on the same CPU; the paths this project uses, veth and real NICs, receive
 * in softirq.) */
struct scratch {
    __u32 addrs[sizeof(struct tr_peer_key) / 4];       /* received src, dst (tr_peer_key layout) */
    __u32 client_key[sizeof(struct tr_client_key) / 4];
    __u32 counter_key;
    __u32 unused;
    __u32 config[sizeof(struct tr_config) / 4]; /* a copy of tr_config's entry */
    struct out out;
    struct bpf_fib_lookup fib; /* next_hop's question and answer (TR_CONFIG_FIB) */
    /* find_route's and rewrite's variables (V.name): kept here, clang loads them again after a
     * helper call or FORGET() instead of spilling them to the stack (each spill: a nospec). */
    struct {
        __u64 old_sum;
        __u32 frame_len, ip_word1, flow, ports, out_udp_len, mac_a, mac_d;
        int listener, delta, trailing, action;
        __u16 ip_hlen, udp_len, check, mtu, plen, out_hlen, out_check, mac_b, mac_c;
        __be16 sport, dport, udp_len_be, out_udp_len_be;
        __u8 family, tos, out_ttl, out_hop_limit;
    } v;
};

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, struct scratch);
} tr_scratch SEC(".maps");

/* The variables in the scratch value of the function's `s`. */
#define V (s->v)

/* The key of the one-entry maps, in read-only global data rather than on the stack (see above). */
static const __u32 tr_zero = 0;

static __always_inline void count(struct scratch *s, __u32 index, __u64 amount)
{
    s->counter_key = index;
    __u64 *counter = bpf_map_lookup_elem(&tr_counters, &s->counter_key);
    if (counter)
        *counter += amount;
}

static __always_inline int pass(struct scratch *s, __u32 reason)
{
    count(s, reason, 1);
    return XDP_PASS;
}

/* client → peer: the ChannelData header checks and the route lookup. Returns 0 with *o filled,
 * or the pass reason. */
static __always_inline int client_route(struct scratch *s, struct xdp_md *ctx, void *payload, void *data_end,
                                        __u16 plen, __u32 rfc5766,
                                        const __u32 src[4], struct out *o)
{
    if (plen < CHANNEL_DATA_HLEN || payload + CHANNEL_DATA_HLEN > data_end)
        return plen == 0 ? TR_PASS_NOT_CHANNEL_DATA : TR_PASS_MALFORMED_CHANNEL_DATA;
    __u32 cd = LOAD32(payload);
    __be16 channel_be = LOAD16(payload);
    __u16 channel = bpf_ntohs(channel_be), len = bpf_ntohs(LOAD16(payload + 2));
    if ((channel & 0xc000) != 0x4000)
        return TR_PASS_NOT_CHANNEL_DATA;
    if (channel > 0x4fff && !rfc5766)
        return TR_PASS_MALFORMED_CHANNEL_DATA;
    if ((__u32)CHANNEL_DATA_HLEN + len > plen)
        return TR_PASS_CHANNEL_LENGTH_BEYOND_DATAGRAM;
    if (len == 0 || plen > CHANNEL_DATA_HLEN + ((len + 3) & ~3))
        return TR_PASS_MALFORMED_CHANNEL_DATA;
    /* Beyond any MTU the program is meant for (tr_config.mtu may be set up to 65535), and the
     * padding offsets below rely on it. */
    if (plen >= 0x4000)
        return TR_PASS_OVERSIZED;

    /* What does not depend on the route is stored before the lookup (in *o, not in registers
     * that would be spilled across the call). The received checksum covered the ChannelData
     * header and the padding (at most 3 bytes after the data): both go (old_extra). */
    o->data_len = len;
    o->cd_header = 0;
    o->delta = CHANNEL_DATA_HLEN;
    o->trailing = plen - CHANNEL_DATA_HLEN - len;
    o->relayed_counter = TR_RELAYED_PACKETS_CLIENT_TO_PEER;
    o->old_extra = cd;

    /* Word by word: the structs of turn_router.h are only 2-byte aligned by type. */
    __u32 *key = s->client_key;
    copy_addr(key, src);
    FORGET(); /* the ports again from *s, not held in registers through the checks above */
    key[4] = W32(V.sport, V.dport);
    key[5] = W32(channel_be, 0);
    struct tr_client_value *r = bpf_map_lookup_elem(&tr_client_routes, key);
    if (!r)
        return TR_PASS_MAP_MISS;
    copy_addr(o->saddr, (const __u32 *)r->relay_ip);
    copy_addr(o->daddr, (const __u32 *)r->peer_ip);
    o->sport = r->relay_port;
    o->dport = r->peer_port;
    o->family = r->peer_family;
    o->route_family = r->client_family;

    /* The padding's share. The data starts at an even offset in the old and the new payload, so
     * a padding byte's share depends only on its own position. */
    __u16 pad = o->trailing;
    if (pad) {
        plen = V.plen;
        __u32 payload_off = ETH_HLEN_ + V.ip_hlen + UDP_HLEN;
        /* The last 4 bytes of the payload (plen >= 5), through a helper: without CAP_PERFMON the
         * verifier refuses a packet pointer plus a variable offset. The padding is their last pad. */
        __u32 tail;
        if (bpf_xdp_load_bytes(ctx, payload_off + plen - 4, &tail, 4))
            return TR_PASS_CHECKSUM_OR_OTHER;
        tail &= TAIL_BYTES_MASK(pad & 3);
        /* As if the 4 bytes started at an even payload offset; a byte at an odd offset counts
         * in the other half of its checksum word, so an odd start swaps the folded sum. */
        __u16 share = fold((__u64)(tail & 0xffff) + (tail >> 16));
        if (plen & 1)
            share = (__u16)((share >> 8) | (share << 8));
        o->old_extra += share;
    }
    return 0;
}

/* peer → client: the route lookup. Returns 0 with *o filled, or the pass reason. */
static __always_inline int peer_route(__u16 plen, __u32 key[10], __be16 sport, __be16 dport, struct out *o)
{
    if (plen == 0)
        return TR_PASS_CHECKSUM_OR_OTHER;
    /* key[0..8) already holds the peer's and the relay's address (tr_peer_key's layout) */
    key[8] = W32(sport, dport);
    key[9] = 0;
    struct tr_peer_value *r = bpf_map_lookup_elem(&tr_peer_routes, key);
    if (!r)
        return TR_PASS_MAP_MISS;
    copy_addr(o->saddr, (const __u32 *)r->listener_ip);
    copy_addr(o->daddr, (const __u32 *)r->client_ip);
    o->sport = r->listener_port;
    o->dport = r->client_port;
    o->family = r->client_family;
    o->route_family = r->peer_family;
    o->data_len = plen;
    o->cd_header = W32(r->channel, bpf_htons(plen));
    o->old_extra = 0;
    o->delta = -CHANNEL_DATA_HLEN;
    o->trailing = 0;
    o->relayed_counter = TR_RELAYED_PACKETS_PEER_TO_CLIENT;
    return 0;
}

/* The program is split in two BPF-to-BPF calls (and the main function): each has its own
 * registers r6-r9, which the JIT saves with its own push and pop, so fewer values are spilled to
 * the stack, where each spill costs a nospec without CAP_PERFMON. All they share is in *s. */

/* Parses the packet and finds its route: 0 with s->v, s->addrs and s->out filled, or the pass
 * reason. */
static __noinline int find_route(struct xdp_md *ctx, struct scratch *s)
{
    struct tr_config *cfg = (struct tr_config *)s->config;
    void *data = (void *)(long)ctx->data;
    void *data_end = (void *)(long)ctx->data_end;

    if (data + ETH_HLEN_ > data_end)
        return (TR_PASS_NOT_IP_UDP);
    __u16 proto = LOAD16(data + 12);
    void *l3 = data + ETH_HLEN_;
    void *udp;
    /* The received source and destination address (IPv4-mapped for IPv4), laid out as the start
     * of a tr_peer_key, so that the peer → client direction looks up this very array. */
    __u32 *addrs = s->addrs;
    __u32 *src = addrs, *dst = addrs + 4;
    V.ip_word1 = 0, V.flow = 0; /* IPv4 identification + flags; IPv6 V.flow label (memory order) */

    if (proto == bpf_htons(ETH_P_IP)) {
        if (l3 + IPV4_HLEN > data_end)
            return (TR_PASS_NOT_IP_UDP);
        __u8 vihl = *(__u8 *)l3;
        if ((vihl & 0xf0) != 0x40 || (vihl & 0x0f) < 5)
            return (TR_PASS_NOT_IP_UDP);
        /* IHL != 5, MF or a fragment offset */
        if ((vihl & 0x0f) != 5 || (LOAD16(l3 + 6) & bpf_htons(0x3fff)))
            return (TR_PASS_IPV4_OPTIONS_OR_FRAGMENT);
        if (*(__u8 *)(l3 + 9) != IPPROTO_UDP)
            return (TR_PASS_NOT_IP_UDP);
        __u16 tot_len = bpf_ntohs(LOAD16(l3 + 2));
        if (tot_len < IPV4_HLEN + UDP_HLEN || (__u32)ETH_HLEN_ + tot_len > V.frame_len)
            return (TR_PASS_CHECKSUM_OR_OTHER);
        src[0] = 0, src[1] = 0, src[2] = MAPPED_WORD2, src[3] = LOAD32(l3 + 12);
        dst[0] = 0, dst[1] = 0, dst[2] = MAPPED_WORD2, dst[3] = LOAD32(l3 + 16);
        /* The header checksum: the kernel drops a bad one, so must we (by passing it there). */
        if (fold((__u64)LOAD32(l3) + LOAD32(l3 + 4) + LOAD32(l3 + 8) + src[3] + dst[3]) != 0xffff)
            return (TR_PASS_CHECKSUM_OR_OTHER);
        V.family = TR_FAMILY_IPV4;
        V.tos = *(__u8 *)(l3 + 1);
        V.ip_word1 = LOAD32(l3 + 4);
        V.ip_hlen = IPV4_HLEN;
        V.udp_len = tot_len - IPV4_HLEN;
        udp = l3 + IPV4_HLEN;
        FORGET();
    } else if (proto == bpf_htons(ETH_P_IPV6)) {
        if (l3 + IPV6_HLEN > data_end)
            return (TR_PASS_NOT_IP_UDP);
        __u32 first = bpf_ntohl(LOAD32(l3));
        if ((first >> 28) != 6)
            return (TR_PASS_NOT_IP_UDP);
        __u8 next = *(__u8 *)(l3 + 6);
        if (next != IPPROTO_UDP) {
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
                return (TR_PASS_IPV6_EXTENSION_HEADER);
            default:
                return (TR_PASS_NOT_IP_UDP);
            }
        }
        V.udp_len = bpf_ntohs(LOAD16(l3 + 4));
        if (V.udp_len < UDP_HLEN || (__u32)ETH_HLEN_ + IPV6_HLEN + V.udp_len > V.frame_len)
            return (TR_PASS_CHECKSUM_OR_OTHER); /* jumbograms (0) included */
#pragma unroll
        for (int i = 0; i < 4; i++) {
            src[i] = LOAD32(l3 + 8 + 4 * i);
            dst[i] = LOAD32(l3 + 24 + 4 * i);
        }
        V.family = TR_FAMILY_IPV6;
        V.tos = (first >> 20) & 0xff;
        V.flow = first & 0xfffff;
        V.ip_hlen = IPV6_HLEN;
        udp = l3 + IPV6_HLEN;
        FORGET();
    } else {
        return (TR_PASS_NOT_IP_UDP);
    }

    if (udp + UDP_HLEN > data_end)
        return (TR_PASS_NOT_IP_UDP);
    V.ports = LOAD32(udp);
    V.sport = (__be16)LOAD16(udp), V.dport = (__be16)LOAD16(udp + 2);
    V.udp_len_be = LOAD16(udp + 4);
    V.check = LOAD16(udp + 6); /* memory order */
    if (bpf_ntohs(V.udp_len_be) != V.udp_len)
        return (TR_PASS_CHECKSUM_OR_OTHER);
    FORGET();

    V.mtu = cfg->mtu ? bpf_ntohs(cfg->mtu) : DEFAULT_MTU;
    V.listener = V.dport != 0 && (cfg->listener_ports[0] == V.dport || cfg->listener_ports[1] == V.dport ||
                                  cfg->listener_ports[2] == V.dport || cfg->listener_ports[3] == V.dport);
    if (!V.listener) {
        __u16 port = bpf_ntohs(V.dport), min = bpf_ntohs(cfg->relay_port_min), max = bpf_ntohs(cfg->relay_port_max);
        if (min == 0 || port < min || port > max)
            return (TR_PASS_NOT_OUR_PORT);
    }
    /* A GRO/GSO super-packet (generic mode) or a jumbo frame: larger than anything we send. */
    if ((__u32)V.ip_hlen + V.udp_len > V.mtu)
        return (TR_PASS_OVERSIZED);
    V.out_ttl = cfg->ttl ? cfg->ttl : DEFAULT_TTL;
    V.out_hop_limit = cfg->hop_limit ? cfg->hop_limit : DEFAULT_TTL;
    FORGET();

    /* Each direction: its checks, its key, its route. */
    struct out *o = &s->out;
    V.plen = V.udp_len - UDP_HLEN;
    int reason;
    if (V.listener)
        reason = client_route(s, ctx, udp + UDP_HLEN, data_end, V.plen, cfg->flags & bpf_htonl(TR_CONFIG_RFC5766_CHANNELS),
                              src, o);
    else
        reason = peer_route(V.plen, addrs, V.sport, V.dport, o);
    if (reason)
        return (reason);

    return 0;
}

/* TR_CONFIG_FIB: the next hop of the packet to send, from the kernel's FIB and neighbour table,
 * as a forwarded packet that came in by ctx's interface would take it. 0 with V.mac_* (the new
 * destination and source MAC addresses) and V.action (XDP_TX when the route leaves by the ingress
 * interface, else XDP_REDIRECT with bpf_redirect_map's target set), or the pass reason. Nothing in
 * the packet has changed yet when it returns a reason. */
static __noinline int next_hop(struct xdp_md *ctx, struct scratch *s)
{
    struct out *o = &s->out;
    struct bpf_fib_lookup *f = &s->fib;
    if (o->family == TR_FAMILY_IPV4) {
        f->family = AF_INET_;
        f->rt_metric = 0;
        f->tos = V.tos;
        f->ipv4_src = o->saddr[3];
        f->ipv4_dst = o->daddr[3];
    } else {
        f->family = AF_INET6_;
        f->flowinfo = bpf_htonl(((__u32)V.tos << 20) | (V.family == TR_FAMILY_IPV6 ? V.flow : 0));
        copy_addr(f->ipv6_src, o->saddr);
        copy_addr(f->ipv6_dst, o->daddr);
    }
    f->l4_protocol = IPPROTO_UDP;
    f->sport = o->sport;
    f->dport = o->dport;
    f->tot_len = V.out_hlen + V.out_udp_len;
    f->ifindex = ctx->ingress_ifindex;
    f->tbid = 0;
    long rc = bpf_fib_lookup(ctx, f, sizeof(*f), 0);
    if (rc == BPF_FIB_LKUP_RET_NO_NEIGH)
        return TR_PASS_NO_NEIGH;
    if (rc != BPF_FIB_LKUP_RET_SUCCESS)
        return TR_PASS_NO_ROUTE;
    FORGET();
    /* The frame's first 12 bytes in the words rewrite stores: dmac[0..4), dmac[4..6), smac[0..2),
     * smac[2..6). */
    V.mac_a = W32(LOAD16(f->dmac), LOAD16(f->dmac + 2));
    V.mac_b = LOAD16(f->dmac + 4);
    V.mac_c = LOAD16(f->smac);
    V.mac_d = W32(LOAD16(f->smac + 2), LOAD16(f->smac + 4));
    V.action = XDP_TX;
    if (f->ifindex != ctx->ingress_ifindex) {
        /* Records the target for when the program returns XDP_REDIRECT; an interface that is not
         * in tr_egress answers XDP_PASS, and the packet passes untouched. */
        if (bpf_redirect_map(&tr_egress, f->ifindex, XDP_PASS) != XDP_REDIRECT)
            return TR_PASS_EGRESS_NOT_ATTACHED;
        V.action = XDP_REDIRECT;
    }
    return 0;
}

/* Checks the route against the packet, updates the checksum and writes the packet: XDP_TX (or
 * XDP_REDIRECT, TR_CONFIG_FIB), or XDP_PASS counted by reason. */
static __noinline int rewrite(struct xdp_md *ctx, struct scratch *s)
{
    __u32 *src = s->addrs, *dst = s->addrs + 4;
    struct out *o = &s->out;
    void *data, *data_end, *l3, *udp;
    /* From here on both directions are the same. */
    if (o->route_family != V.family)
        return pass(s, TR_PASS_MAP_MISS);
    /* The received addresses, ports and length as the received checksum covered them. */
    __u64 addr_sum = sum_addr(src) + sum_addr(dst);
    V.old_sum = addr_sum + V.ports + V.udp_len_be + V.udp_len_be + o->old_extra;
    /* A checksum field holding just the folded pseudo-header sum: offloaded (CHECKSUM_PARTIAL). */
    if (V.check != 0 && V.check == fold(addr_sum + bpf_htons(IPPROTO_UDP) + V.udp_len_be))
        return pass(s, TR_PASS_PARTIAL_CHECKSUM);
    FORGET();
    if (same_addr(o->daddr, o->saddr) || same_addr(o->daddr, dst))
        return pass(s, TR_PASS_HAIRPIN);
    FORGET();
    if (o->family != TR_FAMILY_IPV4 && o->family != TR_FAMILY_IPV6)
        return pass(s, TR_PASS_CHECKSUM_OR_OTHER);
    V.out_hlen = o->family == TR_FAMILY_IPV4 ? IPV4_HLEN : IPV6_HLEN;
    V.out_udp_len = UDP_HLEN + (o->cd_header ? CHANNEL_DATA_HLEN : 0) + (__u32)o->data_len;
    if (V.out_hlen + V.out_udp_len > V.mtu)
        return pass(s, TR_PASS_OVERSIZED);
    V.out_udp_len_be = bpf_htons((__u16)V.out_udp_len);

    V.out_check = 0;
    if (V.check == 0) {
        /* IPv6 requires a checksum (RFC 8200 §8.1): the kernel drops a zero one, and so must we. */
        if (o->family == TR_FAMILY_IPV6 || V.family == TR_FAMILY_IPV6)
            return pass(s, TR_PASS_CHECKSUM_OR_OTHER);
    } else {
        /* RFC 1624 eqn. 3: ~(~old + new - old parts); the data bytes cancel out. */
        __u64 new_sum = sum_addr(o->saddr) + sum_addr(o->daddr) + o->sport + o->dport + V.out_udp_len_be +
                        V.out_udp_len_be + o->cd_header;
        V.out_check = ~fold((__u16)~V.check + (__u64)fold(new_sum) + (__u16)~fold(V.old_sum));
        if (V.out_check == 0)
            V.out_check = 0xffff;
    }

    FORGET();
    V.action = 0;
    if (((struct tr_config *)s->config)->flags & bpf_htonl(TR_CONFIG_FIB)) {
        int reason = next_hop(ctx, s);
        if (reason)
            return pass(s, reason);
    }
    FORGET();
    /* The packet pointers again (not kept across the route lookup: a spilled pointer costs a
     * nospec). This check cannot fail. */
    data = (void *)(long)ctx->data;
    data_end = (void *)(long)ctx->data_end;
    if (data + ETH_HLEN_ > data_end)
        return pass(s, TR_PASS_NOT_IP_UDP);
    if (!V.action) {
        /* The MAC addresses, swapped: the packet goes back to the frame's sender. */
        V.mac_a = LOAD32(data + 6), V.mac_d = LOAD32(data + 2);
        V.mac_b = LOAD16(data + 10), V.mac_c = LOAD16(data);
        V.action = XDP_TX;
    }

    /* The head moves first: it is the step a driver can refuse (too little headroom), and then
     * nothing has changed yet. Shrinking the tail only fails below an Ethernet header. */
    V.delta = (int)V.ip_hlen + o->delta - (int)V.out_hlen;
    V.trailing = (int)V.frame_len - (ETH_HLEN_ + V.ip_hlen + V.udp_len) + o->trailing;
    if (V.delta != 0 && bpf_xdp_adjust_head(ctx, V.delta))
        return pass(s, TR_PASS_HEADROOM);
    if (V.trailing > 0 && bpf_xdp_adjust_tail(ctx, -V.trailing))
        return pass(s, TR_PASS_HEADROOM);
    data = (void *)(long)ctx->data;
    data_end = (void *)(long)ctx->data_end;
    /* These checks cannot fail after a successful resize, but the verifier wants them. */
    if (data + ETH_HLEN_ + IPV4_HLEN + UDP_HLEN > data_end)
        return pass(s, TR_PASS_HEADROOM);

    STORE32(data, V.mac_a);
    STORE16(data + 4, V.mac_b);
    STORE16(data + 6, V.mac_c);
    STORE32(data + 8, V.mac_d);
    l3 = data + ETH_HLEN_;
    if (o->family == TR_FAMILY_IPV4) {
        STORE16(data + 12, bpf_htons(ETH_P_IP));
        /* IPv4 → IPv4 keeps the identification and DF; IPv6 → IPv4: identification 0, DF (as a UDP
         * socket with path MTU discovery sends). */
        __u32 w0 = W32(W16(0x45, V.tos), bpf_htons(IPV4_HLEN + V.out_udp_len));
        __u32 w1 = V.family == TR_FAMILY_IPV4 ? V.ip_word1 : W32(0, bpf_htons(0x4000));
        __u32 w2 = W32(W16(V.out_ttl, IPPROTO_UDP), 0);
        __u16 ip_check = ~fold((__u64)w0 + w1 + w2 + o->saddr[3] + o->daddr[3]);
        STORE32(l3, w0);
        STORE32(l3 + 4, w1);
        STORE32(l3 + 8, W32(W16(V.out_ttl, IPPROTO_UDP), ip_check));
        STORE32(l3 + 12, o->saddr[3]);
        STORE32(l3 + 16, o->daddr[3]);
        udp = l3 + IPV4_HLEN;
        NO_SINK();
    } else {
        if (data + ETH_HLEN_ + IPV6_HLEN + UDP_HLEN > data_end)
            return pass(s, TR_PASS_HEADROOM);
        STORE16(data + 12, bpf_htons(ETH_P_IPV6));
        /* IPv6 → IPv6 keeps the V.flow label; IPv4 → IPv6: V.flow label 0. */
        STORE32(l3, bpf_htonl((6u << 28) | ((__u32)V.tos << 20) | V.flow));
        STORE32(l3 + 4, W32(bpf_htons((__u16)V.out_udp_len), W16(IPPROTO_UDP, V.out_hop_limit)));
#pragma unroll
        for (int i = 0; i < 4; i++) {
            STORE32(l3 + 8 + 4 * i, o->saddr[i]);
            STORE32(l3 + 24 + 4 * i, o->daddr[i]);
        }
        udp = l3 + IPV6_HLEN;
        NO_SINK();
    }
    if (udp + UDP_HLEN > data_end)
        return pass(s, TR_PASS_HEADROOM);
    STORE32(udp, W32(o->sport, o->dport));
    STORE32(udp + 4, W32(V.out_udp_len_be, V.out_check));
    if (o->cd_header) {
        if (udp + UDP_HLEN + CHANNEL_DATA_HLEN > data_end)
            return pass(s, TR_PASS_HEADROOM);
        STORE32(udp + UDP_HLEN, o->cd_header);
    }
    count(s, o->relayed_counter, 1);
    count(s, o->relayed_counter + 1, o->data_len);
    return V.action;
}
SEC("xdp")
int turn_router(struct xdp_md *ctx)
{
    struct scratch *s = bpf_map_lookup_elem(&tr_scratch, &tr_zero);
    if (!s)
        return XDP_PASS;
    /* The frame's length from a helper: without CAP_PERFMON the verifier refuses data_end - data
     * (subtracting pointers) and any packet pointer plus a variable offset (Spectre v1). */
    V.frame_len = (__u32)bpf_xdp_get_buff_len(ctx);
    /* A copy of the configuration, so that find_route calls no helper before its route lookup and
     * keeps no pointer across one (a spilled pointer costs a nospec). No configuration (never, for
     * an array) reads as all zero: everything passes as not to our port. */
    struct tr_config *cfg = bpf_map_lookup_elem(&tr_config, &tr_zero);
    if (cfg) {
        const __u32 *from = (const __u32 *)cfg; /* map values are 8-byte aligned */
#pragma unroll
        for (int i = 0; i < sizeof(s->config) / 4; i++)
            s->config[i] = from[i];
    } else {
#pragma unroll
        for (int i = 0; i < sizeof(s->config) / 4; i++)
            s->config[i] = 0;
    }
    int reason = find_route(ctx, s);
    if (reason)
        return pass(s, reason);
    return rewrite(ctx, s);
}
#undef V
