// SPDX-License-Identifier: Apache-2.0
/*
 * Kernel-level tests of BPF/turn_router.bpf.c.
 *
 *   test_turn_router OBJECT
 *
 * 1. Loads the object with libbpf with only CAP_BPF and CAP_NET_ADMIN effective, as the systemd
 *    unit runs it (the kernel's verifier runs for real, and must leave no Spectre v4 `nospec`
 *    barrier in the program), fills its maps and runs
 *    crafted packets through BPF_PROG_TEST_RUN. Every expected packet is built from scratch by this
 *    file's own packet builder, with checksums from a plain RFC 1071 function; the program's output
 *    must match byte for byte, and every test checks the exact change of every counter.
 * 2. Attaches the program for real to a veth in a throwaway network namespace, in native and in
 *    generic mode, then relays a datagram end to end over the veth pair (both directions, IPv4 and
 *    IPv6). The namespaces are deleted on exit, on failure too.
 *
 * Exit status: 0 all passed (or SKIP: not root, or the kernel refuses bpf() with EPERM), 1 failure.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <linux/if_link.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/capability.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "turn_router.h"

/* ------------------------------------------------------------------------------------------ */
/* Bookkeeping                                                                                 */

static int failures, checks;
static const char *current_test = "";

#define CHECK(cond, ...)                                                                       \
    do {                                                                                       \
        checks++;                                                                              \
        if (!(cond)) {                                                                         \
            failures++;                                                                        \
            fprintf(stderr, "FAIL [%s] %s:%d: %s: ", current_test, __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                                      \
            fprintf(stderr, "\n");                                                             \
        }                                                                                      \
    } while (0)

static const char *counter_names[TR_COUNTER_COUNT] = {
    "relayed_packets_c2p", "relayed_bytes_c2p", "relayed_packets_p2c", "relayed_bytes_p2c",
    "pass_not_ip_udp", "pass_ipv4_options_or_fragment", "pass_ipv6_extension_header",
    "pass_not_our_port", "pass_not_channel_data", "pass_map_miss", "pass_malformed_channel_data",
    "pass_channel_length_beyond_datagram", "pass_oversized", "pass_headroom",
    "pass_checksum_or_other", "pass_ttl", "pass_partial_checksum", "pass_hairpin",
    "pass_no_neigh", "pass_no_route", "pass_egress_not_attached",
};

static struct bpf_object *obj;
static int prog_fd, client_routes_fd, peer_routes_fd, config_fd, counters_fd, egress_fd, ncpus;

/* ------------------------------------------------------------------------------------------ */
/* Independent packet construction                                                             */

struct a16 {
    uint8_t b[16];
};

static struct a16 v4(int a, int b, int c, int d)
{
    struct a16 r = {{0}};
    r.b[10] = 0xff;
    r.b[11] = 0xff;
    r.b[12] = a;
    r.b[13] = b;
    r.b[14] = c;
    r.b[15] = d;
    return r;
}

static struct a16 v6(const char *text)
{
    struct a16 r;
    if (inet_pton(AF_INET6, text, r.b) != 1) {
        fprintf(stderr, "bad IPv6 literal %s\n", text);
        exit(1);
    }
    return r;
}

/* RFC 1071: one's-complement sum of 16-bit big-endian words, odd byte padded with zero. */
static uint32_t sum16(const uint8_t *p, size_t n, uint32_t sum)
{
    for (size_t i = 0; i + 1 < n; i += 2)
        sum += (uint32_t)p[i] << 8 | p[i + 1];
    if (n & 1)
        sum += (uint32_t)p[n - 1] << 8;
    return sum;
}

static uint16_t fold_complement(uint32_t sum)
{
    while (sum >> 16)
        sum = (sum & 0xffff) + (sum >> 16);
    return (uint16_t)~sum;
}

static const uint8_t MAC_A[6] = {0x02, 0x00, 0x00, 0x00, 0x00, 0x0a}; /* sender (router) */
static const uint8_t MAC_R[6] = {0x02, 0x00, 0x00, 0x00, 0x00, 0x01}; /* relay's interface */

struct spec {
    int family; /* 4 or 6 */
    struct a16 src, dst;
    uint16_t sport, dport;
    uint8_t ttl, tos;
    uint32_t flow;      /* IPv6 */
    uint16_t ip_id;     /* IPv4 */
    uint16_t frag;      /* IPv4 flags + offset, host order */
    int zero_checksum;  /* leave the UDP checksum 0 (IPv4 only) */
    size_t min_frame;   /* pad the frame with zero bytes up to this size (Ethernet minimum: 60) */
    const uint8_t *smac, *dmac;
    const uint8_t *payload;
    size_t plen;
};

/* Builds Ethernet + IP + UDP + payload into buf and returns the frame length. */
static size_t build(uint8_t *buf, const struct spec *s)
{
    size_t o = 0;
    memcpy(buf, s->dmac ? s->dmac : MAC_R, 6);
    memcpy(buf + 6, s->smac ? s->smac : MAC_A, 6);
    uint16_t udp_len = (uint16_t)(8 + s->plen);
    if (s->family == 4) {
        buf[12] = 0x08, buf[13] = 0x00;
        uint8_t *ip = buf + 14;
        uint16_t tot = 20 + udp_len;
        ip[0] = 0x45;
        ip[1] = s->tos;
        ip[2] = tot >> 8, ip[3] = tot & 0xff;
        ip[4] = s->ip_id >> 8, ip[5] = s->ip_id & 0xff;
        ip[6] = s->frag >> 8, ip[7] = s->frag & 0xff;
        ip[8] = s->ttl;
        ip[9] = 17;
        ip[10] = ip[11] = 0;
        memcpy(ip + 12, s->src.b + 12, 4);
        memcpy(ip + 16, s->dst.b + 12, 4);
        uint16_t c = fold_complement(sum16(ip, 20, 0));
        ip[10] = c >> 8, ip[11] = c & 0xff;
        o = 34;
    } else {
        buf[12] = 0x86, buf[13] = 0xdd;
        uint8_t *ip = buf + 14;
        uint32_t first = 6u << 28 | (uint32_t)s->tos << 20 | (s->flow & 0xfffff);
        ip[0] = first >> 24, ip[1] = first >> 16, ip[2] = first >> 8, ip[3] = first;
        ip[4] = udp_len >> 8, ip[5] = udp_len & 0xff;
        ip[6] = 17;
        ip[7] = s->ttl;
        memcpy(ip + 8, s->src.b, 16);
        memcpy(ip + 24, s->dst.b, 16);
        o = 54;
    }
    uint8_t *udp = buf + o;
    udp[0] = s->sport >> 8, udp[1] = s->sport & 0xff;
    udp[2] = s->dport >> 8, udp[3] = s->dport & 0xff;
    udp[4] = udp_len >> 8, udp[5] = udp_len & 0xff;
    udp[6] = udp[7] = 0;
    memcpy(udp + 8, s->payload, s->plen);
    if (!s->zero_checksum) {
        /* pseudo header: addresses, protocol, UDP length */
        uint32_t sum = 0;
        if (s->family == 4) {
            sum = sum16(s->src.b + 12, 4, sum);
            sum = sum16(s->dst.b + 12, 4, sum);
        } else {
            sum = sum16(s->src.b, 16, sum);
            sum = sum16(s->dst.b, 16, sum);
        }
        sum += 17 + udp_len;
        sum = sum16(udp, udp_len, sum);
        uint16_t c = fold_complement(sum);
        if (c == 0)
            c = 0xffff;
        udp[6] = c >> 8, udp[7] = c & 0xff;
    }
    size_t len = o + udp_len;
    while (len < s->min_frame)
        buf[len++] = 0;
    return len;
}

/* ChannelData: channel, length, data, then `pad` padding bytes of value `pad_byte`. */
static size_t channel_data(uint8_t *out, uint16_t channel, const uint8_t *data, uint16_t len, size_t pad,
                           uint8_t pad_byte)
{
    out[0] = channel >> 8, out[1] = channel & 0xff;
    out[2] = len >> 8, out[3] = len & 0xff;
    memcpy(out + 4, data, len);
    memset(out + 4 + len, pad_byte, pad);
    return 4 + len + pad;
}

/* ------------------------------------------------------------------------------------------ */
/* Program, maps, counters                                                                      */

static void counters_read(uint64_t out[TR_COUNTER_COUNT])
{
    uint64_t *per_cpu = calloc(ncpus, sizeof(uint64_t));
    for (uint32_t i = 0; i < TR_COUNTER_COUNT; i++) {
        out[i] = 0;
        if (bpf_map_lookup_elem(counters_fd, &i, per_cpu) == 0)
            for (int c = 0; c < ncpus; c++)
                out[i] += per_cpu[c];
    }
    free(per_cpu);
}

struct expect_counter {
    int index;
    uint64_t delta;
};

/* Checks that exactly the listed counters moved, by exactly the listed amounts. */
static void check_counters(const uint64_t before[TR_COUNTER_COUNT], const struct expect_counter *e, size_t n)
{
    uint64_t after[TR_COUNTER_COUNT];
    counters_read(after);
    for (int i = 0; i < TR_COUNTER_COUNT; i++) {
        uint64_t want = 0;
        for (size_t k = 0; k < n; k++)
            if (e[k].index == i)
                want = e[k].delta;
        CHECK(after[i] - before[i] == want, "counter %s moved by %llu, expected %llu", counter_names[i],
              (unsigned long long)(after[i] - before[i]), (unsigned long long)want);
    }
}

static void hexdump(const char *title, const uint8_t *p, size_t n)
{
    fprintf(stderr, "  %s (%zu bytes):", title, n);
    for (size_t i = 0; i < n; i++)
        fprintf(stderr, "%s%02x", i % 16 == 0 ? "\n    " : " ", p[i]);
    fprintf(stderr, "\n");
}

/* The ingress interface test runs give the program (xdp_md.ingress_ifindex, in the current network
 * namespace); 0: none (the kernel's loopback device). */
static int run_ifindex;

static int run_packet(const uint8_t *in, size_t in_len, uint8_t *out, size_t *out_len)
{
    uint32_t size_out = 4096;
    struct xdp_md ctx = {.data_end = (uint32_t)in_len, .ingress_ifindex = (uint32_t)run_ifindex};
    LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = in, .data_size_in = (uint32_t)in_len, .data_out = out,
                .data_size_out = size_out, .repeat = 1, .ctx_in = run_ifindex ? &ctx : NULL,
                .ctx_size_in = run_ifindex ? sizeof ctx : 0);
    int err = bpf_prog_test_run_opts(prog_fd, &opts);
    if (err) {
        fprintf(stderr, "bpf_prog_test_run_opts: %s\n", strerror(errno));
        return -1;
    }
    *out_len = opts.data_size_out;
    return (int)opts.retval;
}

static const char *action_name(int a)
{
    switch (a) {
    case XDP_ABORTED: return "XDP_ABORTED";
    case XDP_DROP: return "XDP_DROP";
    case XDP_PASS: return "XDP_PASS";
    case XDP_TX: return "XDP_TX";
    case XDP_REDIRECT: return "XDP_REDIRECT";
    default: return "?";
    }
}

/* The action a relayed packet must get (XDP_TX unless a test of TR_CONFIG_FIB says otherwise). */
static int relay_action = XDP_TX;

/* Runs `in`; expects relay_action (XDP_TX) with exactly `want`, or (want == NULL) XDP_PASS with the
 * packet untouched. Then checks the counters. */
static void expect(const uint8_t *in, size_t in_len, const uint8_t *want, size_t want_len,
                   const struct expect_counter *e, size_t n)
{
    uint64_t before[TR_COUNTER_COUNT];
    counters_read(before);
    uint8_t out[4096];
    size_t out_len = 0;
    int action = run_packet(in, in_len, out, &out_len);
    int want_action = want ? relay_action : XDP_PASS;
    if (!want) {
        want = in;
        want_len = in_len;
    }
    CHECK(action == want_action, "action %s, expected %s", action_name(action), action_name(want_action));
    int same = out_len == want_len && memcmp(out, want, want_len) == 0;
    CHECK(same, "output differs from the expected packet");
    if (!same) {
        hexdump("got", out, out_len);
        hexdump("expected", want, want_len);
    }
    check_counters(before, e, n);
}

/* tr_config.ttl / hop_limit as set_config writes them (0 = the program's default, 64). */
static uint8_t cfg_ttl, cfg_hop_limit;

/* The TTL / hop limit a relayed packet leaves with: the configured one, like a fresh datagram sent
 * from userspace, whatever the received packet had. */
static uint8_t sent_ttl(int family)
{
    uint8_t v = family == 4 ? cfg_ttl : cfg_hop_limit;
    return v ? v : 64;
}

static void set_config(uint16_t mtu, uint32_t flags)
{
    struct tr_config c;
    memset(&c, 0, sizeof c);
    c.listener_ports[0] = htons(3478);
    c.listener_ports[1] = htons(3479);
    c.relay_port_min = htons(49152);
    c.relay_port_max = htons(65535);
    c.mtu = htons(mtu);
    c.flags = htonl(flags);
    c.ttl = cfg_ttl;
    c.hop_limit = cfg_hop_limit;
    uint32_t zero = 0;
    if (bpf_map_update_elem(config_fd, &zero, &c, BPF_ANY)) {
        fprintf(stderr, "config update: %s\n", strerror(errno));
        exit(1);
    }
}

/* A channel: both route entries, as the loader will install them for one binding. */
struct binding {
    int client_family, peer_family;
    struct a16 client, listener, relay, peer;
    uint16_t client_port, listener_port, relay_port, peer_port, channel;
};

static void client_key(const struct binding *b, struct tr_client_key *k)
{
    memset(k, 0, sizeof *k);
    memcpy(k->client_ip, b->client.b, 16);
    k->client_port = htons(b->client_port);
    k->listener_port = htons(b->listener_port);
    k->channel = htons(b->channel);
}

static void peer_key(const struct binding *b, struct tr_peer_key *k)
{
    memset(k, 0, sizeof *k);
    memcpy(k->peer_ip, b->peer.b, 16);
    memcpy(k->relay_ip, b->relay.b, 16);
    k->peer_port = htons(b->peer_port);
    k->relay_port = htons(b->relay_port);
}

static void route_up(const struct binding *b)
{
    struct tr_client_key ck;
    struct tr_client_value cv;
    client_key(b, &ck);
    memset(&cv, 0, sizeof cv);
    memcpy(cv.relay_ip, b->relay.b, 16);
    memcpy(cv.peer_ip, b->peer.b, 16);
    cv.relay_port = htons(b->relay_port);
    cv.peer_port = htons(b->peer_port);
    cv.client_family = b->client_family;
    cv.peer_family = b->peer_family;
    struct tr_peer_key pk;
    struct tr_peer_value pv;
    peer_key(b, &pk);
    memset(&pv, 0, sizeof pv);
    memcpy(pv.listener_ip, b->listener.b, 16);
    memcpy(pv.client_ip, b->client.b, 16);
    pv.listener_port = htons(b->listener_port);
    pv.client_port = htons(b->client_port);
    pv.channel = htons(b->channel);
    pv.peer_family = b->peer_family;
    pv.client_family = b->client_family;
    if (bpf_map_update_elem(client_routes_fd, &ck, &cv, BPF_ANY) ||
        bpf_map_update_elem(peer_routes_fd, &pk, &pv, BPF_ANY)) {
        fprintf(stderr, "route update: %s\n", strerror(errno));
        exit(1);
    }
}

static void route_down(const struct binding *b)
{
    struct tr_client_key ck;
    struct tr_peer_key pk;
    client_key(b, &ck);
    peer_key(b, &pk);
    CHECK(bpf_map_delete_elem(client_routes_fd, &ck) == 0, "delete client route: %s", strerror(errno));
    CHECK(bpf_map_delete_elem(peer_routes_fd, &pk) == 0, "delete peer route: %s", strerror(errno));
}

/* ------------------------------------------------------------------------------------------ */
/* The relaying tests                                                                          */

static uint8_t data_bytes[2048];

/* The received packets: client → listener, peer → relay address, through binding b. */
static struct spec spec_to_listener(const struct binding *b, const uint8_t *payload, size_t plen, uint8_t ttl)
{
    return (struct spec){.family = b->client_family, .src = b->client, .dst = b->listener, .sport = b->client_port,
                         .dport = b->listener_port, .ttl = ttl, .frag = 0x4000, .payload = payload, .plen = plen,
                         .min_frame = 60};
}

static struct spec spec_from_peer(const struct binding *b, const uint8_t *payload, size_t plen, uint8_t ttl)
{
    return (struct spec){.family = b->peer_family, .src = b->peer, .dst = b->relay, .sport = b->peer_port,
                         .dport = b->relay_port, .ttl = ttl, .payload = payload, .plen = plen, .min_frame = 60};
}

/* The MAC addresses a relayed packet must leave with: NULL, swapped (MAC_R → MAC_A); else, with
 * TR_CONFIG_FIB, the egress interface's and its neighbour's, set by the test. */
static const uint8_t *sent_smac, *sent_dmac;

/* The packet the program must send for `in` received through b (towards the peer or the client):
 * fresh TTL / hop limit, TOS kept, IPv4 identification and flags kept from IPv4 (else 0 and DF),
 * IPv6 flow label kept from IPv6 (else 0), MAC addresses swapped (or sent_smac/sent_dmac), no
 * Ethernet padding. */
static struct spec spec_sent(const struct binding *b, int to_peer, const struct spec *in, const uint8_t *payload,
                             size_t plen)
{
    int family = to_peer ? b->peer_family : b->client_family;
    struct spec w = {.family = family, .src = to_peer ? b->relay : b->listener, .dst = to_peer ? b->peer : b->client,
                     .sport = to_peer ? b->relay_port : b->listener_port, .dport = to_peer ? b->peer_port : b->client_port,
                     .ttl = sent_ttl(family), .tos = in->tos,
                     .flow = in->family == 6 && family == 6 ? in->flow : 0,
                     .ip_id = in->family == 4 ? in->ip_id : 0, .frag = in->family == 4 ? in->frag : 0x4000,
                     .zero_checksum = in->zero_checksum, .smac = sent_smac ? sent_smac : MAC_R,
                     .dmac = sent_dmac ? sent_dmac : MAC_A, .payload = payload,
                     .plen = plen};
    return w;
}

/* client → peer through binding b: ChannelData of `len` data bytes and `pad` padding bytes of value
 * pad_byte. Builds the received packet and the expected one from scratch and runs it. */
static void relay_client_to_peer_padded(const struct binding *b, uint16_t len, size_t pad, uint8_t pad_byte,
                                        uint8_t ttl, uint8_t tos, uint32_t flow)
{
    uint8_t payload[2100], in[4096], want[4096];
    size_t plen = channel_data(payload, b->channel, data_bytes, len, pad, pad_byte);
    struct spec s = spec_to_listener(b, payload, plen, ttl);
    s.tos = tos, s.flow = flow, s.ip_id = 0x1234;
    size_t in_len = build(in, &s);
    struct spec w = spec_sent(b, 1, &s, data_bytes, len);
    size_t want_len = build(want, &w);
    struct expect_counter e[] = {{TR_RELAYED_PACKETS_CLIENT_TO_PEER, 1}, {TR_RELAYED_BYTES_CLIENT_TO_PEER, len}};
    expect(in, in_len, want, want_len, e, 2);
}

static void relay_client_to_peer(const struct binding *b, uint16_t len, size_t pad, uint8_t ttl, uint8_t tos,
                                 uint32_t flow)
{
    relay_client_to_peer_padded(b, len, pad, 0xa5, ttl, tos, flow);
}

static void relay_peer_to_client(const struct binding *b, uint16_t len, uint8_t ttl, uint8_t tos, uint32_t flow)
{
    uint8_t payload[2100], in[4096], want[4096];
    struct spec s = spec_from_peer(b, data_bytes, len, ttl);
    s.tos = tos, s.flow = flow, s.ip_id = 0x4321;
    size_t in_len = build(in, &s);
    size_t plen = channel_data(payload, b->channel, data_bytes, len, 0, 0);
    struct spec w = spec_sent(b, 0, &s, payload, plen);
    size_t want_len = build(want, &w);
    struct expect_counter e[] = {{TR_RELAYED_PACKETS_PEER_TO_CLIENT, 1}, {TR_RELAYED_BYTES_PEER_TO_CLIENT, len}};
    expect(in, in_len, want, want_len, e, 2);
}

/* Bindings of the unit tests. Addresses from 198.18.0.0/15 and 2001:db8::/32. */
static struct binding b44, b66, b46, b64;

static void init_bindings(void)
{
    b44 = (struct binding){4, 4, v4(198, 18, 1, 10), v4(198, 18, 0, 1), v4(198, 18, 0, 1), v4(198, 19, 2, 20),
                           40000, 3478, 50000, 6000, 0x4001};
    b66 = (struct binding){6, 6, v6("2001:db8:1::10"), v6("2001:db8::1"), v6("2001:db8::1"), v6("2001:db8:2::20"),
                           40001, 3478, 50002, 6002, 0x4002};
    /* IPv4 client, IPv6 peer (a dual allocation's IPv6 relayed address) */
    b46 = (struct binding){4, 6, v4(198, 18, 1, 11), v4(198, 18, 0, 1), v6("2001:db8::1"), v6("2001:db8:2::21"),
                           40002, 3479, 50004, 6004, 0x4fff};
    /* IPv6 client, IPv4 peer */
    b64 = (struct binding){6, 4, v6("2001:db8:1::11"), v6("2001:db8::1"), v4(198, 18, 0, 1), v4(198, 19, 2, 21),
                           40003, 3478, 50006, 6006, 0x4000};
    for (size_t i = 0; i < sizeof data_bytes; i++)
        data_bytes[i] = (uint8_t)(i * 7 + 3);
}


/* One relayed packet: client → peer (ChannelData of len bytes and pad padding bytes) or peer →
 * client (len bytes), received with the given TTL / hop limit, TOS and flow label. */
struct relay_case {
    const char *name;
    int to_peer;
    const struct binding *b;
    uint16_t len;
    uint8_t pad, ttl, tos;
    uint32_t flow;
};

static void run_relay_cases(const struct relay_case *c, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        current_test = c[i].name;
        if (c[i].to_peer)
            relay_client_to_peer(c[i].b, c[i].len, c[i].pad, c[i].ttl, c[i].tos, c[i].flow);
        else
            relay_peer_to_client(c[i].b, c[i].len, c[i].ttl, c[i].tos, c[i].flow);
    }
}

static void test_relaying(void)
{
    const struct relay_case cases[] = {
        {"v4->v4 client->peer, 3 padding bytes stripped", 1, &b44, 5, 3, 64, 0x00, 0},
        {"v4->v4 client->peer, no padding, TOS kept", 1, &b44, 100, 0, 17, 0xb8, 0},
        {"v4->v4 client->peer, odd length 1, 3 padding bytes", 1, &b44, 1, 3, 2, 0, 0},
        {"v4->v4 client->peer, padding shorter than allowed (2 of 3)", 1, &b44, 5, 2, 64, 0, 0},
        {"v4->v4 peer->client", 0, &b44, 7, 0, 64, 0, 0},
        {"v4->v4 peer->client, 1 byte in a padded Ethernet frame", 0, &b44, 1, 0, 64, 0, 0},
        {"v4->v4 peer->client, 1,000 bytes", 0, &b44, 1000, 0, 2, 0x2e, 0},
        {"v6->v6 client->peer", 1, &b66, 33, 3, 64, 0x10, 0xabcde},
        {"v6->v6 client->peer, no padding", 1, &b66, 1200, 0, 255, 0, 0x12345},
        {"v6->v6 peer->client", 0, &b66, 33, 0, 64, 0x10, 0xabcde},
        {"v6->v6 peer->client, 1,400 bytes", 0, &b66, 1400, 0, 2, 0, 1},
        {"v4 client -> v6 peer", 1, &b46, 61, 3, 64, 0x08, 0},
        {"v6 peer -> v4 client", 0, &b46, 61, 0, 64, 0x08, 0x55555},
        {"v6 client -> v4 peer", 1, &b64, 62, 2, 64, 0, 0x11111},
        {"v4 peer -> v6 client", 0, &b64, 62, 0, 64, 0, 0},
        /* The received TTL / hop limit does not matter: a packet addressed to this host is
         * delivered to the socket whatever its TTL, and the userspace path relays it in a fresh
         * datagram. */
        {"TTL 1 received, client->peer relayed with TTL 64", 1, &b44, 8, 0, 1, 0, 0},
        {"TTL 1 received, peer->client relayed with TTL 64", 0, &b44, 20, 0, 1, 0, 0},
        {"hop limit 1 received, v6->v6 client->peer relayed with hop limit 64", 1, &b66, 20, 0, 1, 0, 0},
        {"hop limit 1 received, v6->v6 peer->client relayed with hop limit 64", 0, &b66, 20, 0, 1, 0, 0},
        {"hop limit 1 received, v6 peer -> v4 client relayed with TTL 64", 0, &b46, 20, 0, 1, 0, 0},
        {"TTL 0 received, v4 peer -> v6 client relayed with hop limit 64", 0, &b64, 20, 0, 0, 0, 0},
        {"hop limit 0 received, v6 client -> v4 peer relayed with TTL 64", 1, &b64, 20, 0, 0, 0, 0},
        /* The largest result that fits a 1500-byte MTU, each way. */
        {"v4->v4 client->peer, the input at the MTU", 1, &b44, 1468, 0, 64, 0, 0},
        {"v4 client -> v6 peer, the result at the MTU", 1, &b46, 1452, 0, 64, 0, 0},
        {"v4->v4 peer->client at the MTU", 0, &b44, 1468, 0, 64, 0, 0},
        {"v6 peer -> v4 client: the IPv6 input at the MTU shrinks", 0, &b46, 1452, 0, 64, 0, 0},
    };
    run_relay_cases(cases, sizeof cases / sizeof cases[0]);

    /* Padding present and non-zero (0xff, so that a byte missed by the checksum update shows):
     * every padding length, at both byte positions, each family pair. */
    const struct binding *bs[] = {&b44, &b66, &b46, &b64};
    char name[128];
    for (int i = 0; i < 4; i++)
        for (uint16_t len = 9; len <= 11; len++) {
            snprintf(name, sizeof name, "client->peer v%d->v%d, %u data bytes, %u padding bytes 0xff",
                     bs[i]->client_family, bs[i]->peer_family, len, 4 - len % 4);
            current_test = name;
            relay_client_to_peer_padded(bs[i], len, 4 - len % 4, 0xff, 64, 0, 0);
        }
}

/* ------------------------------------------------------------------------------------------ */
/* Passes                                                                                      */

static void expect_pass(const uint8_t *in, size_t len, int reason)
{
    struct expect_counter e[] = {{reason, 1}};
    expect(in, len, NULL, 0, e, 1);
}

/* Builds the packet of spec s and expects it to pass for `reason`. */
static void expect_spec_pass(const char *name, const struct spec *s, int reason)
{
    uint8_t pkt[4096];
    current_test = name;
    size_t n = build(pkt, s);
    expect_pass(pkt, n, reason);
}

/* A client → listener packet through binding b with an arbitrary UDP payload. */
static size_t to_listener(uint8_t *buf, const struct binding *b, const uint8_t *payload, size_t plen, uint8_t ttl)
{
    struct spec s = spec_to_listener(b, payload, plen, ttl);
    s.frag = 0;
    return build(buf, &s);
}

static size_t from_peer(uint8_t *buf, const struct binding *b, size_t plen, uint8_t ttl)
{
    struct spec s = spec_from_peer(b, data_bytes, plen, ttl);
    return build(buf, &s);
}
/* A STUN message header (RFC 8489 §5) with a zero-length body. */
static size_t stun(uint8_t *out, uint16_t type)
{
    memset(out, 0, 20);
    out[0] = type >> 8, out[1] = type & 0xff;
    out[4] = 0x21, out[5] = 0x12, out[6] = 0xa4, out[7] = 0x42; /* magic cookie */
    for (int i = 8; i < 20; i++)
        out[i] = (uint8_t)i;
    return 20;
}

static void test_passes(void)
{
    uint8_t pkt[4096], payload[2100];
    size_t n, plen;

    current_test = "ARP (not IP) passes";
    memset(pkt, 0, 60);
    memcpy(pkt, MAC_R, 6);
    memcpy(pkt + 6, MAC_A, 6);
    pkt[12] = 0x08, pkt[13] = 0x06;
    expect_pass(pkt, 60, TR_PASS_NOT_IP_UDP);

    current_test = "802.1Q VLAN-tagged frame passes";
    memset(pkt, 0, 60);
    memcpy(pkt, MAC_R, 6);
    memcpy(pkt + 6, MAC_A, 6);
    pkt[12] = 0x81, pkt[13] = 0x00, pkt[16] = 0x08, pkt[17] = 0x00;
    expect_pass(pkt, 60, TR_PASS_NOT_IP_UDP);

    current_test = "IPv4 TCP passes";
    plen = channel_data(payload, b44.channel, data_bytes, 8, 0, 0);
    n = to_listener(pkt, &b44, payload, plen, 64);
    pkt[14 + 9] = 6;
    expect_pass(pkt, n, TR_PASS_NOT_IP_UDP);

    current_test = "IPv6 ICMPv6 passes";
    n = to_listener(pkt, &b66, payload, plen, 64);
    pkt[14 + 6] = 58;
    expect_pass(pkt, n, TR_PASS_NOT_IP_UDP);

    current_test = "truncated IPv4 header passes";
    n = to_listener(pkt, &b44, payload, plen, 64);
    expect_pass(pkt, 14 + 12, TR_PASS_NOT_IP_UDP);

    current_test = "IPv4 options pass";
    {
        uint8_t tmp[4096];
        size_t m = to_listener(tmp, &b44, payload, plen, 64);
        /* insert 4 bytes of options (NOP NOP NOP EOL) after the 20-byte header, IHL 6 */
        memcpy(pkt, tmp, 34);
        pkt[34] = 1, pkt[35] = 1, pkt[36] = 1, pkt[37] = 0;
        memcpy(pkt + 38, tmp + 34, m - 34);
        pkt[14] = 0x46;
        uint16_t tot = (uint16_t)(((tmp[16] << 8) | tmp[17]) + 4);
        pkt[16] = tot >> 8, pkt[17] = tot & 0xff;
        expect_pass(pkt, m + 4, TR_PASS_IPV4_OPTIONS_OR_FRAGMENT);
    }

    {
        struct spec s = spec_to_listener(&b44, payload, plen, 64);
        s.frag = 0x2000;
        expect_spec_pass("IPv4 first fragment (MF) passes", &s, TR_PASS_IPV4_OPTIONS_OR_FRAGMENT);
        s.frag = 0x0010;
        expect_spec_pass("IPv4 later fragment (offset) passes", &s, TR_PASS_IPV4_OPTIONS_OR_FRAGMENT);
    }

    current_test = "IPv6 hop-by-hop extension header passes";
    {
        uint8_t tmp[4096];
        size_t m = to_listener(tmp, &b66, payload, plen, 64);
        memcpy(pkt, tmp, 54);
        /* hop-by-hop: next header UDP, length 0 (8 bytes), PadN option of 4 bytes */
        uint8_t hbh[8] = {17, 0, 1, 4, 0, 0, 0, 0};
        memcpy(pkt + 54, hbh, 8);
        memcpy(pkt + 62, tmp + 54, m - 54);
        pkt[14 + 6] = 0;
        uint16_t pl = (uint16_t)(((tmp[18] << 8) | tmp[19]) + 8);
        pkt[18] = pl >> 8, pkt[19] = pl & 0xff;
        expect_pass(pkt, m + 8, TR_PASS_IPV6_EXTENSION_HEADER);
        current_test = "IPv6 fragment header passes";
        pkt[14 + 6] = 44;
        expect_pass(pkt, m + 8, TR_PASS_IPV6_EXTENSION_HEADER);
    }

    {
        struct spec s = spec_to_listener(&b44, payload, plen, 64);
        s.sport = 5353, s.dport = 53;
        expect_spec_pass("UDP to another port passes", &s, TR_PASS_NOT_OUR_PORT);
        s.dport = 49151;
        expect_spec_pass("UDP just below the relay range passes", &s, TR_PASS_NOT_OUR_PORT);
    }

    current_test = "STUN Binding request to the listener passes";
    plen = stun(payload, 0x0001);
    n = to_listener(pkt, &b44, payload, plen, 64);
    expect_pass(pkt, n, TR_PASS_NOT_CHANNEL_DATA);
    current_test = "Send indication to the listener passes";
    plen = stun(payload, 0x0016);
    n = to_listener(pkt, &b66, payload, plen, 64);
    expect_pass(pkt, n, TR_PASS_NOT_CHANNEL_DATA);
    current_test = "Data-indication-style STUN message passes";
    plen = stun(payload, 0x0017);
    n = to_listener(pkt, &b44, payload, plen, 64);
    expect_pass(pkt, n, TR_PASS_NOT_CHANNEL_DATA);
    current_test = "first two bits 10 (not ChannelData) pass";
    payload[0] = 0x80;
    n = to_listener(pkt, &b44, payload, plen, 64);
    expect_pass(pkt, n, TR_PASS_NOT_CHANNEL_DATA);
    current_test = "empty UDP to the listener passes";
    n = to_listener(pkt, &b44, payload, 0, 64);
    expect_pass(pkt, n, TR_PASS_NOT_CHANNEL_DATA);

    current_test = "ChannelData on an unbound channel passes (map miss)";
    plen = channel_data(payload, 0x4abc, data_bytes, 8, 0, 0);
    n = to_listener(pkt, &b44, payload, plen, 64);
    expect_pass(pkt, n, TR_PASS_MAP_MISS);
    current_test = "ChannelData on a bound channel from another client port passes (map miss)";
    {
        struct binding other = b44;
        other.client_port = 40099;
        plen = channel_data(payload, b44.channel, data_bytes, 8, 0, 0);
        n = to_listener(pkt, &other, payload, plen, 64);
        expect_pass(pkt, n, TR_PASS_MAP_MISS);
        current_test = "ChannelData of a route on the other listener port passes (map miss)";
        other = b44;
        other.listener_port = 3479;
        n = to_listener(pkt, &other, payload, plen, 64);
        expect_pass(pkt, n, TR_PASS_MAP_MISS);
    }
    current_test = "IPv6 packet from the IPv4-mapped form of an IPv4 client passes (family mismatch)";
    {
        struct binding mapped = b44;
        mapped.client_family = 6;
        mapped.listener = v6("2001:db8::1");
        plen = channel_data(payload, b44.channel, data_bytes, 8, 0, 0);
        n = to_listener(pkt, &mapped, payload, plen, 64);
        expect_pass(pkt, n, TR_PASS_MAP_MISS);
    }
    current_test = "peer datagram from a permission-only peer passes (map miss)";
    {
        struct binding other = b44;
        other.peer = v4(198, 19, 2, 99);
        n = from_peer(pkt, &other, 30, 64);
        expect_pass(pkt, n, TR_PASS_MAP_MISS);
        current_test = "peer datagram from the bound peer's other port passes (map miss)";
        other = b44;
        other.peer_port = 6001;
        n = from_peer(pkt, &other, 30, 64);
        expect_pass(pkt, n, TR_PASS_MAP_MISS);
    }

    current_test = "ChannelData shorter than 4 bytes passes";
    payload[0] = 0x40, payload[1] = 0x01, payload[2] = 0;
    n = to_listener(pkt, &b44, payload, 3, 64);
    expect_pass(pkt, n, TR_PASS_MALFORMED_CHANNEL_DATA);
    current_test = "ChannelData with length 0 passes";
    plen = channel_data(payload, b44.channel, data_bytes, 0, 0, 0);
    n = to_listener(pkt, &b44, payload, plen, 64);
    expect_pass(pkt, n, TR_PASS_MALFORMED_CHANNEL_DATA);
    current_test = "ChannelData with 4 bytes after the data passes";
    plen = channel_data(payload, b44.channel, data_bytes, 8, 4, 0);
    n = to_listener(pkt, &b44, payload, plen, 64);
    expect_pass(pkt, n, TR_PASS_MALFORMED_CHANNEL_DATA);
    current_test = "ChannelData on channel 0x5001 passes without the RFC 5766 flag";
    plen = channel_data(payload, 0x5001, data_bytes, 8, 0, 0);
    n = to_listener(pkt, &b44, payload, plen, 64);
    expect_pass(pkt, n, TR_PASS_MALFORMED_CHANNEL_DATA);
    current_test = "ChannelData length beyond the datagram passes";
    plen = channel_data(payload, b44.channel, data_bytes, 8, 0, 0);
    payload[3] = 9;
    n = to_listener(pkt, &b44, payload, plen, 64);
    expect_pass(pkt, n, TR_PASS_CHANNEL_LENGTH_BEYOND_DATAGRAM);
    current_test = "ChannelData length far beyond the datagram passes";
    payload[2] = 0xff, payload[3] = 0xff;
    n = to_listener(pkt, &b44, payload, plen, 64);
    expect_pass(pkt, n, TR_PASS_CHANNEL_LENGTH_BEYOND_DATAGRAM);

    current_test = "IPv4 packet above the MTU (a GRO super-packet) passes";
    n = from_peer(pkt, &b44, 1600, 64);
    expect_pass(pkt, n, TR_PASS_OVERSIZED);
    current_test = "peer->client whose result would exceed the MTU passes";
    n = from_peer(pkt, &b44, 1469, 64);
    expect_pass(pkt, n, TR_PASS_OVERSIZED);
    current_test = "v4 client -> v6 peer whose result would exceed the MTU passes";
    plen = channel_data(payload, b46.channel, data_bytes, 1460, 0, 0);
    n = to_listener(pkt, &b46, payload, plen, 64);
    expect_pass(pkt, n, TR_PASS_OVERSIZED);

    {
        plen = channel_data(payload, b46.channel, data_bytes, 8, 0, 0);
        struct spec s = spec_to_listener(&b46, payload, plen, 64);
        s.zero_checksum = 1;
        expect_spec_pass("zero UDP checksum towards IPv6 passes", &s, TR_PASS_CHECKSUM_OR_OTHER);
    }
    current_test = "zero UDP checksum received over IPv6 passes (even towards IPv4)";
    n = from_peer(pkt, &b46, 30, 64); /* IPv6 peer, IPv4 client */
    pkt[54 + 6] = pkt[54 + 7] = 0;
    expect_pass(pkt, n, TR_PASS_CHECKSUM_OR_OTHER);
    current_test = "UDP length inconsistent with the IP length passes";
    n = from_peer(pkt, &b44, 30, 64);
    pkt[34 + 5] -= 2; /* UDP length 2 short of the IP payload */
    expect_pass(pkt, n, TR_PASS_CHECKSUM_OR_OTHER);
    current_test = "IP total length beyond the frame passes";
    n = from_peer(pkt, &b44, 100, 64);
    expect_pass(pkt, n - 10, TR_PASS_CHECKSUM_OR_OTHER);
    current_test = "empty peer datagram passes";
    n = from_peer(pkt, &b44, 0, 64);
    expect_pass(pkt, n, TR_PASS_CHECKSUM_OR_OTHER);

    current_test = "bad IPv4 header checksum passes";
    n = from_peer(pkt, &b44, 30, 64);
    pkt[14 + 10] ^= 0x01;
    expect_pass(pkt, n, TR_PASS_CHECKSUM_OR_OTHER);

    current_test = "hairpin: a route whose peer is the relay's own address passes";
    {
        struct binding h = b44;
        h.client_port = 42000;
        h.peer = b44.relay; /* another allocation on this relay */
        h.peer_port = 50100;
        route_up(&h);
        plen = channel_data(payload, h.channel, data_bytes, 8, 0, 0);
        n = to_listener(pkt, &h, payload, plen, 64);
        expect_pass(pkt, n, TR_PASS_HAIRPIN);
        route_down(&h);
        current_test = "hairpin: a route whose client is the relay's own address passes";
        h = b66;
        h.client = b66.listener;
        h.client_port = 42001;
        h.peer_port = 6200;
        route_up(&h);
        n = from_peer(pkt, &h, 30, 64);
        expect_pass(pkt, n, TR_PASS_HAIRPIN);
        route_down(&h);
    }

    /* The checksum field holding the folded pseudo-header sum, as CHECKSUM_PARTIAL leaves it. */
    for (int family = 4; family <= 6; family += 2) {
        const struct binding *b = family == 4 ? &b44 : &b66;
        current_test = family == 4 ? "partial checksum (offloaded) passes, IPv4 peer" : "partial checksum (offloaded) passes, IPv6 client";
        size_t ip = family == 4 ? 34 : 54;
        if (family == 4)
            n = from_peer(pkt, b, 40, 64);
        else {
            plen = channel_data(payload, b->channel, data_bytes, 40, 0, 0);
            n = to_listener(pkt, b, payload, plen, 64);
        }
        uint32_t sum = 0;
        if (family == 4)
            sum = sum16(pkt + 26, 8, 0); /* IPv4 source and destination */
        else
            sum = sum16(pkt + 22, 32, 0); /* IPv6 source and destination */
        uint16_t ulen = (uint16_t)(pkt[ip + 4] << 8 | pkt[ip + 5]);
        sum += 17 + ulen;
        uint16_t partial = (uint16_t)~fold_complement(sum);
        pkt[ip + 6] = partial >> 8, pkt[ip + 7] = partial & 0xff;
        expect_pass(pkt, n, TR_PASS_PARTIAL_CHECKSUM);
    }
}

static void test_zero_checksum_v4(void)
{
    current_test = "zero UDP checksum v4->v4 stays zero";
    uint8_t payload[64], in[256], want[256];
    size_t plen = channel_data(payload, b44.channel, data_bytes, 10, 2, 0);
    struct spec s = spec_to_listener(&b44, payload, plen, 64);
    s.ip_id = 7, s.zero_checksum = 1;
    size_t n = build(in, &s);
    struct spec w = spec_sent(&b44, 1, &s, data_bytes, 10);
    size_t wn = build(want, &w);
    struct expect_counter e[] = {{TR_RELAYED_PACKETS_CLIENT_TO_PEER, 1}, {TR_RELAYED_BYTES_CLIENT_TO_PEER, 10}};
    expect(in, n, want, wn, e, 2);
}

/* tr_config.ttl / hop_limit set: every family pair sends with them, whatever was received. */
static void test_configured_ttl(void)
{
    cfg_ttl = 100;
    cfg_hop_limit = 7;
    set_config(1500, 0);
    const struct binding *bs[] = {&b44, &b66, &b46, &b64};
    const char *names[] = {"configured TTL 100 / hop limit 7: v4->v4", "configured TTL 100 / hop limit 7: v6->v6",
                           "configured TTL 100 / hop limit 7: v4 client, v6 peer",
                           "configured TTL 100 / hop limit 7: v6 client, v4 peer"};
    for (int i = 0; i < 4; i++) {
        current_test = names[i];
        relay_client_to_peer(bs[i], 30, 2, 1, 0x20, 0x12345);
        relay_peer_to_client(bs[i], 30, 255, 0x20, 0x12345);
    }
    cfg_ttl = cfg_hop_limit = 0;
    set_config(1500, 0);
}

/* The edges of the channel number range (RFC 8656 §12: 0x4000-0x4FFF; RFC 5766 §11 allowed up to
 * 0x7FFF, accepted with TR_CONFIG_RFC5766_CHANNELS), each with a route installed, both directions
 * where the number is valid. */
static void test_channel_numbers(void)
{
    uint8_t pkt[256], payload[64];
    struct {
        uint16_t channel;
        int flag;   /* TR_CONFIG_RFC5766_CHANNELS set */
        int reason; /* 0: relayed */
        const char *name;
    } cases[] = {
        {0x4000, 0, 0, "channel 0x4000 (the lowest) relays"},
        {0x4fff, 0, 0, "channel 0x4fff (the highest of RFC 8656) relays without the RFC 5766 flag"},
        {0x4fff, 1, 0, "channel 0x4fff relays with the RFC 5766 flag"},
        {0x5000, 0, TR_PASS_MALFORMED_CHANNEL_DATA, "channel 0x5000 passes without the RFC 5766 flag"},
        {0x5000, 1, 0, "channel 0x5000 relays with the RFC 5766 flag"},
        {0x7fff, 0, TR_PASS_MALFORMED_CHANNEL_DATA, "channel 0x7fff passes without the RFC 5766 flag"},
        {0x7fff, 1, 0, "channel 0x7fff (the highest of RFC 5766) relays with the RFC 5766 flag"},
        {0x8000, 1, TR_PASS_NOT_CHANNEL_DATA, "0x8000 (first bits 10) is not ChannelData, even with the flag"},
        {0x3fff, 1, TR_PASS_NOT_CHANNEL_DATA, "0x3fff (first bits 00: STUN) is not ChannelData"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        current_test = cases[i].name;
        set_config(1500, cases[i].flag ? TR_CONFIG_RFC5766_CHANNELS : 0);
        struct binding b = b44;
        b.channel = cases[i].channel;
        b.client_port = (uint16_t)(41000 + i);
        b.peer_port = (uint16_t)(6100 + i); /* a peer transport address has one channel per allocation */
        route_up(&b);
        if (cases[i].reason == 0) {
            relay_client_to_peer(&b, 12, 0, 64, 0, 0);
            relay_peer_to_client(&b, 12, 64, 0, 0);
        } else {
            size_t plen = channel_data(payload, b.channel, data_bytes, 12, 0, 0);
            size_t n = to_listener(pkt, &b, payload, plen, 64);
            expect_pass(pkt, n, cases[i].reason);
        }
        route_down(&b);
    }
    set_config(1500, 0);
}

/* UDP length and IP length disagree: the kernel drops the datagram (or trims it); the program
 * passes it, on either side, in either family, shorter or longer. */
static void test_length_mismatch(void)
{
    uint8_t pkt[512], payload[64];
    size_t plen = channel_data(payload, b44.channel, data_bytes, 24, 0, 0);
    const struct binding *bs[] = {&b44, &b66};
    for (int i = 0; i < 2; i++)
        for (int side = 0; side < 2; side++)
            for (int d = -2; d <= 2; d += 4) {
                char name[128];
                snprintf(name, sizeof name, "IPv%d %s: UDP length %+d against the IP length passes",
                         bs[i]->client_family, side ? "to the listener" : "from a peer", d);
                current_test = name;
                size_t n = side ? to_listener(pkt, bs[i], payload, plen, 64) : from_peer(pkt, bs[i], 24, 64);
                uint8_t *udp = pkt + (bs[i]->client_family == 4 ? 34 : 54);
                uint16_t ulen = (uint16_t)((udp[4] << 8 | udp[5]) + d);
                udp[4] = ulen >> 8, udp[5] = ulen & 0xff;
                expect_pass(pkt, n, TR_PASS_CHECKSUM_OR_OTHER);
            }
}

static void test_route_down(void)
{
    uint8_t pkt[4096], payload[256];
    current_test = "route down: relayed before";
    relay_client_to_peer(&b44, 20, 0, 64, 0, 0);
    relay_peer_to_client(&b44, 20, 64, 0, 0);
    route_down(&b44);
    current_test = "route down: the next ChannelData passes";
    size_t plen = channel_data(payload, b44.channel, data_bytes, 20, 0, 0);
    size_t n = to_listener(pkt, &b44, payload, plen, 64);
    expect_pass(pkt, n, TR_PASS_MAP_MISS);
    current_test = "route down: the next peer datagram passes";
    n = from_peer(pkt, &b44, 20, 64);
    expect_pass(pkt, n, TR_PASS_MAP_MISS);
    route_up(&b44);
    current_test = "route up again: relayed";
    relay_client_to_peer(&b44, 20, 0, 64, 0, 0);
}

static void test_no_config(void)
{
    current_test = "no configuration: everything passes";
    uint32_t zero = 0;
    struct tr_config c;
    memset(&c, 0, sizeof c);
    bpf_map_update_elem(config_fd, &zero, &c, BPF_ANY);
    uint8_t pkt[256], payload[64];
    size_t plen = channel_data(payload, b44.channel, data_bytes, 8, 0, 0);
    size_t n = to_listener(pkt, &b44, payload, plen, 64);
    expect_pass(pkt, n, TR_PASS_NOT_OUR_PORT);
    set_config(1500, 0);
}

/* ------------------------------------------------------------------------------------------ */
/* Real attachment: veth pair between two throwaway namespaces                                  */

static char ns_relay[64], ns_outside[64], ns_peer[64];
static int namespaces_made, original_ns = -1;

static int sh(const char *fmt, ...)
{
    char cmd[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    int rc = system(cmd);
    if (rc != 0)
        fprintf(stderr, "command failed (%d): %s\n", rc, cmd);
    return rc;
}

static void cleanup_namespaces(void)
{
    if (original_ns >= 0)
        setns(original_ns, CLONE_NEWNET);
    if (namespaces_made) {
        /* deleting the namespaces deletes the veth pair and detaches its programs */
        char cmd[512];
        snprintf(cmd, sizeof cmd, "ip netns del %s 2>/dev/null; ip netns del %s 2>/dev/null; ip netns del %s 2>/dev/null",
                 ns_relay, ns_outside, ns_peer);
        if (system(cmd) != 0) { /* nothing more to do */
        }
        namespaces_made = 0;
    }
}

static void on_signal(int sig)
{
    cleanup_namespaces();
    signal(sig, SIG_DFL);
    raise(sig);
}

static int enter(const char *ns)
{
    char path[128];
    snprintf(path, sizeof path, "/run/netns/%s", ns);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int rc = setns(fd, CLONE_NEWNET);
    close(fd);
    return rc;
}

static int make_namespaces(void)
{
    const char *suffix = getenv("TRXDP_NS_SUFFIX");
    char own[32];
    if (!suffix) {
        snprintf(own, sizeof own, "%d", (int)getpid());
        suffix = own;
    }
    snprintf(ns_relay, sizeof ns_relay, "trxdp-relay-%s", suffix);
    snprintf(ns_outside, sizeof ns_outside, "trxdp-out-%s", suffix);
    snprintf(ns_peer, sizeof ns_peer, "trxdp-peer-%s", suffix);
    original_ns = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
    namespaces_made = 1;
    atexit(cleanup_namespaces);
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    if (sh("ip netns add %s", ns_relay) || sh("ip netns add %s", ns_outside) ||
        sh("ip -n %s link add veth0 type veth peer name veth1 netns %s", ns_relay, ns_outside) ||
        sh("ip -n %s addr add 198.18.0.1/24 dev veth0", ns_relay) ||
        sh("ip -n %s addr add 2001:db8::1/64 dev veth0 nodad", ns_relay) ||
        sh("ip -n %s addr add 198.18.0.2/24 dev veth1", ns_outside) ||
        sh("ip -n %s addr add 2001:db8::2/64 dev veth1 nodad", ns_outside) ||
        sh("ip -n %s link set lo up", ns_relay) || sh("ip -n %s link set lo up", ns_outside) ||
        sh("ip -n %s link set veth0 up", ns_relay) || sh("ip -n %s link set veth1 up", ns_outside))
        return -1;
    /* The second leg, for TR_CONFIG_FIB (test_fib): the relay's veth2 to a peer namespace's veth3,
     * 198.19.0.0/24 and 2001:db8:1::/64. Every interface has a fixed MAC address (MAC_VETH). */
    if (sh("ip netns add %s", ns_peer) ||
        sh("ip -n %s link add veth2 type veth peer name veth3 netns %s", ns_relay, ns_peer) ||
        sh("ip -n %s addr add 198.19.0.1/24 dev veth2", ns_relay) ||
        sh("ip -n %s addr add 2001:db8:1::1/64 dev veth2 nodad", ns_relay) ||
        sh("ip -n %s addr add 198.19.0.2/24 dev veth3", ns_peer) ||
        sh("ip -n %s addr add 2001:db8:1::2/64 dev veth3 nodad", ns_peer) ||
        sh("ip -n %s link set lo up", ns_peer))
        return -1;
    const char *ns_of[4] = {ns_relay, ns_outside, ns_relay, ns_peer};
    for (int i = 0; i < 4; i++)
        if (sh("ip -n %s link set veth%d address 02:00:00:00:0%d:0%d", ns_of[i], i, i / 2 + 1, i % 2) ||
            sh("ip -n %s link set veth%d up", ns_of[i], i))
            return -1;
    return 0;
}

/* The fixed MAC address of veth0-veth3 (make_namespaces): 02:00:00:00:0<pair>:0<end>. */
static const uint8_t MAC_VETH[4][6] = {
    {0x02, 0, 0, 0, 0x01, 0x00}, {0x02, 0, 0, 0, 0x01, 0x01}, {0x02, 0, 0, 0, 0x02, 0x00}, {0x02, 0, 0, 0, 0x02, 0x01}};

static void test_attach_modes(void)
{
    current_test = "attach native and generic";
    CHECK(enter(ns_relay) == 0, "enter %s: %s", ns_relay, strerror(errno));
    int ifindex = (int)if_nametoindex("veth0");
    CHECK(ifindex > 0, "veth0 not found");
    struct {
        uint32_t flag;
        const char *name;
    } modes[] = {{XDP_FLAGS_DRV_MODE, "native"}, {XDP_FLAGS_SKB_MODE, "generic"}};
    struct bpf_prog_info info;
    uint32_t info_len = sizeof info;
    memset(&info, 0, sizeof info);
    bpf_obj_get_info_by_fd(prog_fd, &info, &info_len);
    for (int m = 0; m < 2; m++) {
        int err = bpf_xdp_attach(ifindex, prog_fd, modes[m].flag, NULL);
        CHECK(err == 0, "%s attach: %s", modes[m].name, strerror(-err));
        uint32_t id = 0;
        err = bpf_xdp_query_id(ifindex, modes[m].flag, &id);
        CHECK(err == 0 && id == info.id, "%s query: err %d, id %u, expected %u", modes[m].name, err, id, info.id);
        err = bpf_xdp_detach(ifindex, modes[m].flag, NULL);
        CHECK(err == 0, "%s detach: %s", modes[m].name, strerror(-err));
        id = 0;
        bpf_xdp_query_id(ifindex, modes[m].flag, &id);
        CHECK(id == 0, "%s: still attached after detach (id %u)", modes[m].name, id);
        if (err == 0)
            printf("ok   attach/detach in %s mode on veth0\n", modes[m].name);
    }
    /* A BPF link (what the loader should use): the attachment lives only as long as the link's
     * file descriptor, so a crashed relay leaves nothing attached. */
    struct bpf_program *prog = bpf_object__find_program_by_name(obj, "turn_router");
    struct bpf_link *link = bpf_program__attach_xdp(prog, ifindex);
    CHECK(link != NULL, "attach through a BPF link: %s", strerror(errno));
    uint32_t id = 0;
    bpf_xdp_query_id(ifindex, 0, &id);
    CHECK(id == info.id, "link attachment not visible (id %u, expected %u)", id, info.id);
    if (link)
        bpf_link__destroy(link);
    id = 0;
    bpf_xdp_query_id(ifindex, 0, &id);
    CHECK(id == 0, "still attached after the link's fd was closed (id %u)", id);
    if (link && id == 0)
        printf("ok   attach through a BPF link; closing the link detaches\n");
    setns(original_ns, CLONE_NEWNET);
}

/* An XDP program that only passes: XDP_TX on a veth reaches the other end only when that end has
 * an XDP program too. Two instructions, no object file needed. */
static int load_pass_program(void)
{
    struct bpf_insn insns[] = {
        {.code = BPF_ALU64 | BPF_MOV | BPF_K, .dst_reg = BPF_REG_0, .imm = XDP_PASS},
        {.code = BPF_JMP | BPF_EXIT},
    };
    return bpf_prog_load(BPF_PROG_TYPE_XDP, "xdp_pass", "GPL", insns, 2, NULL);
}

/* A floor for the low-rate bench: reads the packet's first 48 bytes (Ethernet, IPv4 or the start
 * of IPv6, UDP and the ChannelData header over IPv4), as any program that looks at the datagram
 * must, and passes it. Ten instructions, no object file needed. */
static int load_touch_program(void)
{
    struct bpf_insn insns[] = {
        {.code = BPF_LDX | BPF_MEM | BPF_W, .dst_reg = BPF_REG_2, .src_reg = BPF_REG_1, .off = 0}, /* data */
        {.code = BPF_LDX | BPF_MEM | BPF_W, .dst_reg = BPF_REG_3, .src_reg = BPF_REG_1, .off = 4}, /* data_end */
        {.code = BPF_ALU64 | BPF_MOV | BPF_X, .dst_reg = BPF_REG_4, .src_reg = BPF_REG_2},
        {.code = BPF_ALU64 | BPF_ADD | BPF_K, .dst_reg = BPF_REG_4, .imm = 48},
        {.code = BPF_ALU64 | BPF_MOV | BPF_K, .dst_reg = BPF_REG_0, .imm = XDP_PASS},
        {.code = BPF_JMP | BPF_JGT | BPF_X, .dst_reg = BPF_REG_4, .src_reg = BPF_REG_3, .off = 3},
        {.code = BPF_LDX | BPF_MEM | BPF_DW, .dst_reg = BPF_REG_4, .src_reg = BPF_REG_2, .off = 0},
        {.code = BPF_LDX | BPF_MEM | BPF_DW, .dst_reg = BPF_REG_5, .src_reg = BPF_REG_2, .off = 40},
        {.code = BPF_ALU64 | BPF_ADD | BPF_X, .dst_reg = BPF_REG_4, .src_reg = BPF_REG_5},
        {.code = BPF_JMP | BPF_EXIT},
    };
    return bpf_prog_load(BPF_PROG_TYPE_XDP, "xdp_touch", "GPL", insns, sizeof insns / sizeof insns[0], NULL);
}

/* Sends a UDP datagram through a raw socket (IPPROTO_UDP), UDP header and checksum computed here,
 * so the kernel passes it on as complete (no checksum offload left to do). */
static int raw_send_n(int family, const struct a16 *src, uint16_t sport, const struct a16 *dst, uint16_t dport,
                      const uint8_t *payload, size_t plen, int count);

static int raw_send(int family, const struct a16 *src, uint16_t sport, const struct a16 *dst, uint16_t dport,
                    const uint8_t *payload, size_t plen)
{
    return raw_send_n(family, src, sport, dst, dport, payload, plen, 1);
}

/* The UDP datagram a raw socket sends: header with a complete checksum, then the payload. */
static uint16_t udp_datagram(uint8_t *dgram, int family, const struct a16 *src, uint16_t sport, const struct a16 *dst,
                             uint16_t dport, const uint8_t *payload, size_t plen)
{
    uint16_t ulen = (uint16_t)(8 + plen);
    dgram[0] = sport >> 8, dgram[1] = sport & 0xff, dgram[2] = dport >> 8, dgram[3] = dport & 0xff;
    dgram[4] = ulen >> 8, dgram[5] = ulen & 0xff, dgram[6] = dgram[7] = 0;
    memcpy(dgram + 8, payload, plen);
    uint32_t sum = 0;
    if (family == 4) {
        sum = sum16(src->b + 12, 4, sum);
        sum = sum16(dst->b + 12, 4, sum);
    } else {
        sum = sum16(src->b, 16, sum);
        sum = sum16(dst->b, 16, sum);
    }
    sum += 17 + ulen;
    sum = sum16(dgram, ulen, sum);
    uint16_t c = fold_complement(sum);
    if (c == 0)
        c = 0xffff;
    dgram[6] = c >> 8, dgram[7] = c & 0xff;
    return ulen;
}

/* A raw UDP socket whose source address is src (bound, so that the kernel's IP header carries the
 * one in the checksum), and dst as a sockaddr. */
static int raw_socket(int family, const struct a16 *src, const struct a16 *dst, struct sockaddr_storage *ss,
                      socklen_t *sl)
{
    int fd = socket(family == 4 ? AF_INET : AF_INET6, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_UDP);
    if (fd < 0)
        return -1;
    memset(ss, 0, sizeof *ss);
    if (family == 4) {
        struct sockaddr_in *a = (struct sockaddr_in *)ss;
        a->sin_family = AF_INET;
        memcpy(&a->sin_addr, dst->b + 12, 4);
        *sl = sizeof *a;
        /* bind the source address so the kernel's IP header carries the one in the checksum */
        struct sockaddr_in b = {.sin_family = AF_INET};
        memcpy(&b.sin_addr, src->b + 12, 4);
        bind(fd, (struct sockaddr *)&b, sizeof b);
    } else {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;
        a->sin6_family = AF_INET6;
        memcpy(&a->sin6_addr, dst->b, 16);
        *sl = sizeof *a;
        struct sockaddr_in6 b = {.sin6_family = AF_INET6};
        memcpy(&b.sin6_addr, src->b, 16);
        bind(fd, (struct sockaddr *)&b, sizeof b);
    }
    return fd;
}

static int raw_send_n(int family, const struct a16 *src, uint16_t sport, const struct a16 *dst, uint16_t dport,
                      const uint8_t *payload, size_t plen, int count)
{
    struct sockaddr_storage ss;
    socklen_t sl;
    int fd = raw_socket(family, src, dst, &ss, &sl);
    if (fd < 0)
        return -1;
    uint8_t dgram[2048];
    uint16_t ulen = udp_datagram(dgram, family, src, sport, dst, dport, payload, plen);
    int ok = 0;
    for (int i = 0; i < count; i++)
        if (sendto(fd, dgram, ulen, 0, (struct sockaddr *)&ss, sl) == (ssize_t)ulen)
            ok++;
    close(fd);
    return ok == count ? 0 : -1;
}

static int udp_socket(int family, const struct a16 *addr, uint16_t port)
{
    int fd = socket(family == 4 ? AF_INET : AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    int rc;
    if (family == 4) {
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
        memcpy(&a.sin_addr, addr->b + 12, 4);
        rc = bind(fd, (struct sockaddr *)&a, sizeof a);
    } else {
        struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_port = htons(port)};
        memcpy(&a.sin6_addr, addr->b, 16);
        rc = bind(fd, (struct sockaddr *)&a, sizeof a);
    }
    if (rc) {
        close(fd);
        return -1;
    }
    return fd;
}

/* A received datagram's source address (IPv4-mapped for IPv4) and port. */
static void from_sockaddr(const struct sockaddr_storage *ss, struct a16 *from, uint16_t *from_port)
{
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
        *from = v4(0, 0, 0, 0);
        memcpy(from->b + 12, &a->sin_addr, 4);
        *from_port = ntohs(a->sin_port);
    } else {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
        memcpy(from->b, &a->sin6_addr, 16);
        *from_port = ntohs(a->sin6_port);
    }
}

/* Receives one datagram within `ms`; returns its length (-1 on timeout) and the source. */
static ssize_t receive_within(int fd, uint8_t *buf, size_t cap, struct a16 *from, uint16_t *from_port, int ms)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (poll(&p, 1, ms) != 1)
        return -1;
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    ssize_t n = recvfrom(fd, buf, cap, 0, (struct sockaddr *)&ss, &sl);
    from_sockaddr(&ss, from, from_port);
    return n;
}

static ssize_t plain_send(int fd, int family, const struct a16 *dst, uint16_t dport, const uint8_t *p, size_t n)
{
    if (family == 4) {
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(dport)};
        memcpy(&a.sin_addr, dst->b + 12, 4);
        return sendto(fd, p, n, 0, (struct sockaddr *)&a, sizeof a);
    }
    struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_port = htons(dport)};
    memcpy(&a.sin6_addr, dst->b, 16);
    return sendto(fd, p, n, 0, (struct sockaddr *)&a, sizeof a);
}

static ssize_t receive(int fd, uint8_t *buf, size_t cap, struct a16 *from, uint16_t *from_port)
{
    return receive_within(fd, buf, cap, from, from_port, 3000);
}

/* Asks the kernel to report the TTL / hop limit of each datagram fd receives. */
static int report_ttl(int fd, int family)
{
    int on = 1;
    return family == 4 ? setsockopt(fd, IPPROTO_IP, IP_RECVTTL, &on, sizeof on)
                       : setsockopt(fd, IPPROTO_IPV6, IPV6_RECVHOPLIMIT, &on, sizeof on);
}

/* Receives one datagram within 3 s (report_ttl first): its length (-1 on timeout), the source and
 * the TTL / hop limit it arrived with (-1 when not reported). */
static ssize_t receive_ttl(int fd, uint8_t *buf, size_t cap, struct a16 *from, uint16_t *from_port, int *ttl)
{
    *ttl = -1;
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (poll(&p, 1, 3000) != 1)
        return -1;
    struct sockaddr_storage ss;
    char control[128];
    struct iovec iov = {.iov_base = buf, .iov_len = cap};
    struct msghdr m = {.msg_name = &ss, .msg_namelen = sizeof ss, .msg_iov = &iov, .msg_iovlen = 1,
                       .msg_control = control, .msg_controllen = sizeof control};
    ssize_t n = recvmsg(fd, &m, 0);
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c))
        if ((c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_TTL) ||
            (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_HOPLIMIT))
            memcpy(ttl, CMSG_DATA(c), sizeof *ttl);
    from_sockaddr(&ss, from, from_port);
    return n;
}

/* A binding between two sockets in the outside namespace (client and peer there, 198.18.0.2 or
 * 2001:db8::2) and the relay's veth0 addresses (198.18.0.1 or 2001:db8::1). Each test takes its
 * own slot k, so no two tests share ports or a channel. */
static struct binding veth_binding(int family, uint16_t k)
{
    struct binding b;
    memset(&b, 0, sizeof b);
    b.client_family = b.peer_family = family;
    b.client = b.peer = family == 4 ? v4(198, 18, 0, 2) : v6("2001:db8::2");
    b.listener = b.relay = family == 4 ? v4(198, 18, 0, 1) : v6("2001:db8::1");
    b.client_port = 40000 + k, b.listener_port = 3478, b.relay_port = 50000 + k, b.peer_port = 40001 + k;
    b.channel = 0x4000 + k + family;
    return b;
}

/* Attaches prog to veth0 in the relay namespace, then enters the outside namespace. */
static int veth_attach(int prog, uint32_t mode_flag)
{
    CHECK(enter(ns_relay) == 0, "enter relay namespace");
    int err = bpf_xdp_attach((int)if_nametoindex("veth0"), prog, mode_flag, NULL);
    CHECK(err == 0, "attach to veth0 (%s mode): %s", mode_flag == XDP_FLAGS_SKB_MODE ? "generic" : "native",
          strerror(-err));
    CHECK(enter(ns_outside) == 0, "enter outside namespace");
    return err;
}

/* Detaches from veth0 and returns to the original namespace. */
static void veth_detach(uint32_t mode_flag)
{
    CHECK(enter(ns_relay) == 0, "enter relay namespace");
    CHECK(bpf_xdp_detach((int)if_nametoindex("veth0"), mode_flag, NULL) == 0, "detach");
    setns(original_ns, CLONE_NEWNET);
}

/* One veth test: its binding routed, the program attached, a client and a peer socket open in the
 * outside namespace (which is the current one between veth_start and veth_stop). */
struct veth_run {
    char name[128];
    struct binding b;
    uint32_t mode_flag;
    int client, peer;
};

static void veth_start(struct veth_run *v, int family, uint16_t k, uint32_t mode_flag)
{
    v->b = veth_binding(family, k);
    v->mode_flag = mode_flag;
    route_up(&v->b);
    veth_attach(prog_fd, mode_flag);
    v->client = udp_socket(family, &v->b.client, v->b.client_port);
    v->peer = udp_socket(family, &v->b.peer, v->b.peer_port);
    CHECK(v->client >= 0 && v->peer >= 0, "sockets: %s", strerror(errno));
}

static void veth_stop(struct veth_run *v)
{
    if (v->client >= 0)
        close(v->client);
    if (v->peer >= 0)
        close(v->peer);
    veth_detach(v->mode_flag);
    route_down(&v->b);
}

/* Names the test after `what`, the family and the mode, starts it (veth_start) and reads the
 * counters into `before`. */
static void veth_begin(struct veth_run *v, const char *what, int family, uint16_t k, uint32_t mode_flag,
                       uint64_t before[TR_COUNTER_COUNT])
{
    snprintf(v->name, sizeof v->name, "%s, IPv%d, %s mode", what, family,
             mode_flag == XDP_FLAGS_SKB_MODE ? "generic" : "native");
    current_test = v->name;
    veth_start(v, family, k, mode_flag);
    counters_read(before);
}

static void end_to_end(int family, uint32_t mode_flag)
{
    struct veth_run v;
    uint64_t before[TR_COUNTER_COUNT];
    veth_begin(&v, "end to end over veth", family, 0, mode_flag, before);
    const struct binding *b = &v.b;
    uint8_t payload[512], buf[2048];
    uint16_t len = 301;
    size_t plen = channel_data(payload, b->channel, data_bytes, len, 3, 0);
    struct a16 from;
    uint16_t from_port = 0;
    /* The first datagram may go before neighbour discovery is done; retry a few times. */
    ssize_t n = -1;
    for (int attempt = 0; attempt < 3 && n < 0; attempt++) {
        CHECK(raw_send(family, &b->client, b->client_port, &b->listener, b->listener_port, payload, plen) == 0,
              "raw send: %s", strerror(errno));
        n = receive(v.peer, buf, sizeof buf, &from, &from_port);
    }
    CHECK(n == len && memcmp(buf, data_bytes, len) == 0, "peer received %zd bytes, expected the %u data bytes", n,
          len);
    CHECK(memcmp(from.b, b->relay.b, 16) == 0 && from_port == b->relay_port,
          "peer's datagram came from port %u, expected the allocation port %u", from_port, b->relay_port);

    /* and back: the peer answers the relayed address; the client gets ChannelData from the listener */
    CHECK(raw_send(family, &b->peer, b->peer_port, &b->relay, b->relay_port, data_bytes + 50, 77) == 0,
          "raw send back");
    n = receive(v.client, buf, sizeof buf, &from, &from_port);
    uint8_t want[128];
    size_t want_len = channel_data(want, b->channel, data_bytes + 50, 77, 0, 0);
    CHECK(n == (ssize_t)want_len && memcmp(buf, want, want_len) == 0, "client received %zd bytes, expected %zu",
          n, want_len);
    CHECK(memcmp(from.b, b->listener.b, 16) == 0 && from_port == b->listener_port,
          "client's ChannelData came from port %u, expected the listener port %u", from_port, b->listener_port);

    uint64_t after[TR_COUNTER_COUNT];
    counters_read(after);
    CHECK(after[TR_RELAYED_PACKETS_CLIENT_TO_PEER] - before[TR_RELAYED_PACKETS_CLIENT_TO_PEER] >= 1 &&
              after[TR_RELAYED_PACKETS_PEER_TO_CLIENT] - before[TR_RELAYED_PACKETS_PEER_TO_CLIENT] == 1,
          "the XDP program's relayed counters did not move");
    veth_stop(&v);
    if (n == (ssize_t)want_len)
        printf("ok   %s: ChannelData relayed to the peer and back by XDP_TX\n", v.name);
}

/* An ordinary UDP socket on this host leaves the checksum to offload: over the veth the frame
 * carries only the pseudo-header sum (CHECKSUM_PARTIAL). The program must not relay it (an
 * incremental update of a partial sum yields a wrong checksum and the peer would silently drop
 * the datagram): it passes, counted, and the peer receives nothing from XDP. */
static void offloaded_checksum_passes(int family, uint32_t mode_flag)
{
    struct veth_run v;
    uint64_t before[TR_COUNTER_COUNT], after[TR_COUNTER_COUNT];
    veth_begin(&v, "offloaded (partial) checksum over veth passes", family, 0x10, mode_flag, before);
    uint8_t payload[512], buf[2048];
    size_t plen = channel_data(payload, v.b.channel, data_bytes, 100, 0, 0);
    CHECK(plain_send(v.client, family, &v.b.listener, v.b.listener_port, payload, plen) == (ssize_t)plen,
          "send: %s", strerror(errno));
    struct a16 from;
    uint16_t from_port;
    ssize_t n = receive_within(v.peer, buf, sizeof buf, &from, &from_port, 500);
    counters_read(after);
    CHECK(n < 0, "the peer received %zd bytes", n);
    CHECK(after[TR_PASS_PARTIAL_CHECKSUM] - before[TR_PASS_PARTIAL_CHECKSUM] == 1,
          "pass_partial_checksum moved by %llu, expected 1",
          (unsigned long long)(after[TR_PASS_PARTIAL_CHECKSUM] - before[TR_PASS_PARTIAL_CHECKSUM]));
    CHECK(after[TR_RELAYED_PACKETS_CLIENT_TO_PEER] == before[TR_RELAYED_PACKETS_CLIENT_TO_PEER],
          "relayed a datagram with a partial checksum");
    veth_stop(&v);
    if (n < 0)
        printf("ok   %s\n", v.name);
}

/* ------------------------------------------------------------------------------------------ */
/* --bench: the program's own run time per packet as the kernel accounts it (BPF_ENABLE_STATS, the
 * same figure as kernel.bpf_stats_enabled and bpftool's run_time_ns / run_cnt). With
 * --bench-against OTHER.o, the other build is loaded too (same configuration and routes) and the
 * two are measured alternately in slices, side by side in one run, so that the machine's noise
 * falls on both alike. */

static int with_bench;

/* An object loaded into the kernel, with its program and maps. */
struct loaded {
    const char *label;
    struct bpf_object *obj;
    int prog, client_routes, peer_routes, config, counters, egress; /* egress: -1 when absent (main) */
};
static struct loaded objects[2];
static int nobjects;

/* Makes l the object the tests and the helpers above work on. */
static void use(const struct loaded *l)
{
    obj = l->obj;
    prog_fd = l->prog;
    client_routes_fd = l->client_routes;
    peer_routes_fd = l->peer_routes;
    config_fd = l->config;
    counters_fd = l->counters;
    egress_fd = l->egress;
}

struct run_time {
    uint64_t cnt, ns;
};

static void run_time_read(int prog, struct run_time *t)
{
    struct bpf_prog_info info;
    uint32_t len = sizeof info;
    memset(&info, 0, sizeof info);
    bpf_obj_get_info_by_fd(prog, &info, &len);
    t->cnt = info.run_cnt;
    t->ns = info.run_time_ns;
}

static double per_packet(const struct run_time *t) { return t->cnt ? (double)t->ns / (double)t->cnt : 0.0; }

#define BENCH_SLICES 10

/* Runs pkt `rounds` times through every loaded object, in BENCH_SLICES alternating slices, and
 * prints the run time per packet of each. */
static void bench_one(const char *what, const uint8_t *pkt, size_t len, int rounds, int n, const struct loaded *objs)
{
    struct run_time total[2] = {{0, 0}, {0, 0}};
    int action[2] = {-1, -1};
    uint8_t out[4096];
    size_t out_len;
    for (int s = 0; s < BENCH_SLICES; s++)
        for (int o = 0; o < n; o++) {
            struct run_time a, z;
            run_time_read(objs[o].prog, &a);
            int saved = prog_fd;
            prog_fd = objs[o].prog;
            for (int i = 0; i < rounds / BENCH_SLICES; i++)
                action[o] = run_packet(pkt, len, out, &out_len);
            prog_fd = saved;
            run_time_read(objs[o].prog, &z);
            total[o].cnt += z.cnt - a.cnt;
            total[o].ns += z.ns - a.ns;
        }
    printf("bench %-44s %-9s %7.1f ns/packet over %llu runs", what, action_name(action[0]), per_packet(&total[0]),
           (unsigned long long)total[0].cnt);
    if (n > 1)
        printf("   | %s: %-9s %7.1f ns (%+.0f %%)", objs[1].label, action_name(action[1]), per_packet(&total[1]),
               per_packet(&total[1]) > 0 ? 100.0 * (per_packet(&total[0]) / per_packet(&total[1]) - 1.0) : 0.0);
    printf("\n");
}

static void bench(int rounds)
{
    int stats_fd = bpf_enable_stats(BPF_STATS_RUN_TIME);
    if (stats_fd < 0) {
        printf("bench: BPF_ENABLE_STATS refused: %s\n", strerror(errno));
        return;
    }
    if (nobjects > 1)
        printf("bench: %s (left) against %s (right), alternating in %d slices\n", objects[0].label,
               objects[1].label, BENCH_SLICES);
    uint8_t pkt[4096], payload[2100];
    const struct binding *bs[] = {&b44, &b66, &b46, &b64};
    const char *names[] = {"v4->v4", "v6->v6", "v4 client, v6 peer", "v6 client, v4 peer"};
    for (int i = 0; i < 4; i++) {
        char what[96];
        size_t plen = channel_data(payload, bs[i]->channel, data_bytes, 100, 0, 0);
        size_t n = to_listener(pkt, bs[i], payload, plen, 64);
        snprintf(what, sizeof what, "client->peer %s, 100 B", names[i]);
        bench_one(what, pkt, n, rounds, nobjects, objects);
        n = from_peer(pkt, bs[i], 100, 64);
        snprintf(what, sizeof what, "peer->client %s, 100 B", names[i]);
        bench_one(what, pkt, n, rounds, nobjects, objects);
    }
    size_t plen = channel_data(payload, b44.channel, data_bytes, 1001, 3, 0);
    size_t n = to_listener(pkt, &b44, payload, plen, 64);
    bench_one("client->peer v4->v4, 1,001 B + 3 padding", pkt, n, rounds, nobjects, objects);
    plen = stun(payload, 0x0001);
    n = to_listener(pkt, &b44, payload, plen, 64);
    bench_one("STUN to the listener (pass)", pkt, n, rounds, nobjects, objects);
    plen = channel_data(payload, 0x4abc, data_bytes, 100, 0, 0);
    n = to_listener(pkt, &b44, payload, plen, 64);
    bench_one("unbound channel (map miss, pass)", pkt, n, rounds, nobjects, objects);
    struct spec s = spec_to_listener(&b44, data_bytes, 100, 64);
    s.sport = 5353, s.dport = 53;
    n = build(pkt, &s);
    bench_one("UDP to another port (pass)", pkt, n, rounds, nobjects, objects);
    /* The floor: a two-instruction program that only passes, measured the same way. */
    struct loaded empty = {.label = "empty", .prog = load_pass_program()};
    if (empty.prog >= 0) {
        bench_one("baseline: an empty XDP program (pass)", pkt, n, rounds, 1, &empty);
        close(empty.prog);
    }
    close(stats_fd);
}

/* The veth benches' sums: each object's run time and relayed datagrams over its slices. */
struct veth_tally {
    struct run_time total[2];
    uint64_t relayed[2];
};

/* Before a slice's datagrams: the attached program's run time and the counters so far. */
static void slice_start(struct run_time *a, uint64_t c0[TR_COUNTER_COUNT])
{
    run_time_read(prog_fd, a);
    counters_read(c0);
}

/* After them (100 ms for the last ones to arrive): adds the slice to object o's sums. */
static void slice_end(struct veth_tally *t, int o, const struct run_time *a, const uint64_t c0[TR_COUNTER_COUNT])
{
    struct run_time z;
    uint64_t c1[TR_COUNTER_COUNT];
    usleep(100000);
    run_time_read(prog_fd, &z);
    counters_read(c1);
    t->total[o].cnt += z.cnt - a->cnt;
    t->total[o].ns += z.ns - a->ns;
    t->relayed[o] += c1[TR_RELAYED_PACKETS_CLIENT_TO_PEER] - c0[TR_RELAYED_PACKETS_CLIENT_TO_PEER];
}

static void veth_report(const char *what, const struct veth_tally *t)
{
    printf("bench veth %s: %.1f ns/packet over %llu runs (%llu relayed)", what, per_packet(&t->total[0]),
           (unsigned long long)t->total[0].cnt, (unsigned long long)t->relayed[0]);
    if (nobjects > 1)
        printf("   | %s: %.1f ns over %llu runs (%llu relayed) (%+.0f %%)", objects[1].label,
               per_packet(&t->total[1]), (unsigned long long)t->total[1].cnt, (unsigned long long)t->relayed[1],
               per_packet(&t->total[1]) > 0 ? 100.0 * (per_packet(&t->total[0]) / per_packet(&t->total[1]) - 1.0)
                                             : 0.0);
    printf("\n");
}

/* --bench over the veth: the program's run time per packet on real receives (native mode),
 * ChannelData from the outside namespace relayed by XDP_TX. With two objects, each is attached in
 * turn for a slice of the datagrams. */
static void bench_veth(int family, int count)
{
    struct binding b = veth_binding(family, 0x20);
    for (int o = 0; o < nobjects; o++) {
        use(&objects[o]);
        route_up(&b);
    }
    uint8_t payload[256];
    size_t plen = channel_data(payload, b.channel, data_bytes, 100, 0, 0);
    struct veth_tally t;
    memset(&t, 0, sizeof t);
    int stats_fd = bpf_enable_stats(BPF_STATS_RUN_TIME);
    int slices = nobjects > 1 ? 4 : 1;
    for (int s = 0; s < slices; s++)
        for (int o = 0; o < nobjects; o++) {
            use(&objects[o]);
            if (veth_attach(prog_fd, XDP_FLAGS_DRV_MODE) != 0) {
                setns(original_ns, CLONE_NEWNET);
                continue;
            }
            int peer = udp_socket(family, &b.peer, b.peer_port); /* the relayed datagrams' sink */
            raw_send(family, &b.client, b.client_port, &b.listener, b.listener_port, payload, plen); /* ND/ARP */
            usleep(100000);
            struct run_time a;
            uint64_t c0[TR_COUNTER_COUNT];
            slice_start(&a, c0);
            raw_send_n(family, &b.client, b.client_port, &b.listener, b.listener_port, payload, plen, count / slices);
            slice_end(&t, o, &a, c0);
            if (peer >= 0)
                close(peer);
            veth_detach(XDP_FLAGS_DRV_MODE);
        }
    char what[96];
    snprintf(what, sizeof what, "native IPv%d client->peer, 100 B", family);
    veth_report(what, &t);
    /* The floor on this path: the empty program receiving the same datagrams (it passes them to
     * the stack, where no socket takes them). */
    int empty = load_pass_program();
    if (empty >= 0 && veth_attach(empty, XDP_FLAGS_DRV_MODE) == 0) {
        struct run_time a, z;
        raw_send(family, &b.client, b.client_port, &b.listener, b.listener_port, payload, plen);
        usleep(100000);
        run_time_read(empty, &a);
        raw_send_n(family, &b.client, b.client_port, &b.listener, b.listener_port, payload, plen, count / slices);
        usleep(100000);
        run_time_read(empty, &z);
        struct run_time d = {z.cnt - a.cnt, z.ns - a.ns};
        printf("bench veth native IPv%d, baseline: an empty XDP program (pass): %.1f ns/packet over %llu runs\n",
               family, per_packet(&d), (unsigned long long)d.cnt);
        veth_detach(XDP_FLAGS_DRV_MODE);
    } else {
        setns(original_ns, CLONE_NEWNET);
    }
    if (empty >= 0)
        close(empty);
    if (stats_fd >= 0)
        close(stats_fd);
    for (int o = nobjects - 1; o >= 0; o--) {
        use(&objects[o]);
        route_down(&b);
    }
}


/* ------------------------------------------------------------------------------------------ */
/* TR_CONFIG_FIB: the next hop from the kernel's FIB, XDP_REDIRECT to the other interface       */

/* A second host on veth0's link (198.18.0.3, 2001:db8::3), known only by a neighbour entry. */
static const uint8_t MAC_NEAR[6] = {0x02, 0, 0, 0, 0x01, 0x03};

/* A binding across the relay's two legs: the client on veth0's link (the outside namespace),
 * listener 198.18.0.1 / 2001:db8::1 (veth0), the relay address 198.19.0.1 / 2001:db8:1::1 (veth2)
 * and the peer on veth2's link (the peer namespace). */
static struct binding fib_binding(int client_family, int peer_family, uint16_t k)
{
    struct binding b;
    memset(&b, 0, sizeof b);
    b.client_family = client_family, b.peer_family = peer_family;
    b.client = client_family == 4 ? v4(198, 18, 0, 2) : v6("2001:db8::2");
    b.listener = client_family == 4 ? v4(198, 18, 0, 1) : v6("2001:db8::1");
    b.relay = peer_family == 4 ? v4(198, 19, 0, 1) : v6("2001:db8:1::1");
    b.peer = peer_family == 4 ? v4(198, 19, 0, 2) : v6("2001:db8:1::2");
    b.client_port = 41000 + k, b.listener_port = 3478, b.relay_port = 51000 + k, b.peer_port = 41500 + k;
    b.channel = 0x4100 + k;
    return b;
}

/* A binding whose peer is on the client's link (veth0): 198.18.0.3 or 2001:db8::3. */
static struct binding same_leg_binding(int family)
{
    struct binding b = fib_binding(family, family, (uint16_t)(4 + family));
    b.relay = b.listener;
    b.peer = family == 4 ? v4(198, 18, 0, 3) : v6("2001:db8::3");
    return b;
}

static int egress_set(int ifindex, int present)
{
    uint32_t key = (uint32_t)ifindex, value = (uint32_t)ifindex;
    return present ? bpf_map_update_elem(egress_fd, &key, &value, BPF_ANY) : bpf_map_delete_elem(egress_fd, &key);
}

/* One relayed packet through b (client → peer when to_peer), received on `ingress`, which must
 * leave with `action` and the MAC addresses smac → dmac; everything else as test_relaying expects
 * it (TTL, TOS, flow label, checksums; byte for byte). */
static void fib_relay(const char *name, const struct binding *b, int to_peer, int ingress, int action,
                      const uint8_t *smac, const uint8_t *dmac)
{
    current_test = name;
    run_ifindex = ingress, relay_action = action, sent_smac = smac, sent_dmac = dmac;
    if (to_peer)
        relay_client_to_peer(b, 101, 3, 9, 0x28, 0x12345);
    else
        relay_peer_to_client(b, 101, 9, 0x28, 0x12345);
    run_ifindex = 0, relay_action = XDP_TX, sent_smac = sent_dmac = NULL;
}

/* One packet through b received on `ingress` that must pass, untouched, counted as `reason`. */
static void fib_pass(const char *name, const struct binding *b, int to_peer, int ingress, int reason)
{
    uint8_t pkt[4096], payload[256];
    size_t n;
    current_test = name;
    run_ifindex = ingress;
    if (to_peer)
        n = to_listener(pkt, b, payload, channel_data(payload, b->channel, data_bytes, 100, 0, 0), 64);
    else
        n = from_peer(pkt, b, 100, 64);
    expect_pass(pkt, n, reason);
    run_ifindex = 0;
}

/* --bench with TR_CONFIG_FIB, in the relay namespace, received on veth0: client → peer with the FIB
 * flag across the two legs (XDP_REDIRECT) and to a peer on the same leg (XDP_TX), and the first
 * without the flag (MAC swap, XDP_TX); each against the base object, which has the same routes
 * and configuration (main has no FIB flag and swaps). */
static void bench_fib(const struct binding *other_leg, const struct binding *same_leg, int ingress, int rounds)
{
    int stats_fd = bpf_enable_stats(BPF_STATS_RUN_TIME);
    if (stats_fd < 0)
        return;
    const struct {
        const char *what;
        const struct binding *b;
        uint32_t flags;
    } cases[] = {
        {"client->peer v4->v4, 100 B, FIB, other leg", other_leg, TR_CONFIG_FIB},
        {"client->peer v4->v4, 100 B, FIB, same leg", same_leg, TR_CONFIG_FIB},
        {"client->peer v4->v4, 100 B, no FIB flag", other_leg, 0},
    };
    run_ifindex = ingress;
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        for (int o = 0; o < nobjects; o++) {
            use(&objects[o]);
            if (o > 0 || c == 1)
                route_up(cases[c].b);
            set_config(1500, cases[c].flags);
        }
        uint8_t pkt[4096], payload[256];
        size_t plen = channel_data(payload, cases[c].b->channel, data_bytes, 100, 0, 0);
        size_t n = to_listener(pkt, cases[c].b, payload, plen, 64);
        use(&objects[0]);
        bench_one(cases[c].what, pkt, n, rounds, nobjects, objects);
        for (int o = 0; o < nobjects; o++) {
            use(&objects[o]);
            if (o > 0 || c == 1)
                route_down(cases[c].b);
            set_config(1500, 0);
        }
    }
    run_ifindex = 0;
    use(&objects[0]);
    close(stats_fd);
}

/* End to end across the two legs: the client in the outside namespace sends ChannelData to the
 * listener on veth0; the program redirects the datagram out of veth2 to the peer in the peer
 * namespace, whose socket receives it from the relay address; the peer's answer comes in on veth2
 * and leaves by veth0 to the client as ChannelData. The receiving kernels check the MAC address
 * (a frame for another MAC is dropped as PACKET_OTHERHOST), the IP header checksum and the UDP
 * checksum. */
static void fib_end_to_end(int family, uint32_t mode_flag)
{
    char name[160];
    snprintf(name, sizeof name, "end to end across two interfaces (TR_CONFIG_FIB, XDP_REDIRECT), IPv%d, %s mode",
             family, mode_flag == XDP_FLAGS_SKB_MODE ? "generic" : "native");
    current_test = name;
    struct binding b = fib_binding(family, family, (uint16_t)(0x10 + family + (mode_flag == XDP_FLAGS_SKB_MODE)));
    route_up(&b);
    cfg_ttl = cfg_hop_limit = 77; /* not what the raw sockets send (64), nor 64 - 1 */
    set_config(1500, TR_CONFIG_FIB);
    CHECK(enter(ns_relay) == 0, "enter relay namespace");
    int ifs[2] = {(int)if_nametoindex("veth0"), (int)if_nametoindex("veth2")};
    for (int i = 0; i < 2; i++) {
        int err = bpf_xdp_attach(ifs[i], prog_fd, mode_flag, NULL);
        CHECK(err == 0, "attach to veth%d: %s", 2 * i, strerror(-err));
    }
    CHECK(enter(ns_peer) == 0, "enter peer namespace");
    int peer = udp_socket(family, &b.peer, b.peer_port);
    CHECK(enter(ns_outside) == 0, "enter outside namespace");
    int client = udp_socket(family, &b.client, b.client_port);
    CHECK(client >= 0 && peer >= 0, "sockets: %s", strerror(errno));
    CHECK(report_ttl(client, family) == 0 && report_ttl(peer, family) == 0, "IP_RECVTTL: %s", strerror(errno));
    int ttl = -1, ttl_back = -1;
    uint64_t before[TR_COUNTER_COUNT], after[TR_COUNTER_COUNT];
    counters_read(before);

    uint8_t payload[512], buf[2048];
    uint16_t len = 301;
    size_t plen = channel_data(payload, b.channel, data_bytes, len, 3, 0);
    struct a16 from;
    uint16_t from_port = 0;
    ssize_t n = -1;
    for (int attempt = 0; attempt < 3 && n < 0; attempt++) { /* the first may wait for ARP / ND */
        CHECK(raw_send(family, &b.client, b.client_port, &b.listener, b.listener_port, payload, plen) == 0,
              "raw send: %s", strerror(errno));
        n = receive_ttl(peer, buf, sizeof buf, &from, &from_port, &ttl);
    }
    CHECK(n == len && memcmp(buf, data_bytes, len) == 0, "peer received %zd bytes, expected the %u data bytes", n,
          len);
    CHECK(memcmp(from.b, b.relay.b, 16) == 0 && from_port == b.relay_port,
          "peer's datagram came from port %u, expected the allocation port %u", from_port, b.relay_port);
    /* A fresh datagram's TTL (tr_config.ttl), not the client's (the raw socket's 64) or that minus 1. */
    CHECK(ttl == 77, "the peer's datagram arrived with TTL / hop limit %d, expected 77", ttl);

    CHECK(enter(ns_peer) == 0, "enter peer namespace");
    CHECK(raw_send(family, &b.peer, b.peer_port, &b.relay, b.relay_port, data_bytes + 50, 77) == 0, "raw send back");
    ssize_t m = receive_ttl(client, buf, sizeof buf, &from, &from_port, &ttl_back);
    CHECK(ttl_back == 77, "the client's datagram arrived with TTL / hop limit %d, expected 77", ttl_back);
    uint8_t want[128];
    size_t want_len = channel_data(want, b.channel, data_bytes + 50, 77, 0, 0);
    CHECK(m == (ssize_t)want_len && memcmp(buf, want, want_len) == 0, "client received %zd bytes, expected %zu", m,
          want_len);
    CHECK(memcmp(from.b, b.listener.b, 16) == 0 && from_port == b.listener_port,
          "client's ChannelData came from port %u, expected the listener port %u", from_port, b.listener_port);
    counters_read(after);
    CHECK(after[TR_RELAYED_PACKETS_CLIENT_TO_PEER] - before[TR_RELAYED_PACKETS_CLIENT_TO_PEER] >= 1 &&
              after[TR_RELAYED_PACKETS_PEER_TO_CLIENT] - before[TR_RELAYED_PACKETS_PEER_TO_CLIENT] == 1,
          "the XDP program's relayed counters did not move");
    CHECK(after[TR_PASS_NO_NEIGH] == before[TR_PASS_NO_NEIGH] && after[TR_PASS_NO_ROUTE] == before[TR_PASS_NO_ROUTE] &&
              after[TR_PASS_EGRESS_NOT_ATTACHED] == before[TR_PASS_EGRESS_NOT_ATTACHED],
          "a FIB pass counter moved");

    if (client >= 0)
        close(client);
    if (peer >= 0)
        close(peer);
    CHECK(enter(ns_relay) == 0, "enter relay namespace");
    for (int i = 0; i < 2; i++)
        CHECK(bpf_xdp_detach(ifs[i], mode_flag, NULL) == 0, "detach veth%d", 2 * i);
    setns(original_ns, CLONE_NEWNET);
    route_down(&b);
    cfg_ttl = cfg_hop_limit = 0;
    set_config(1500, 0);
    if (n == len && m == (ssize_t)want_len)
        printf("ok   %s\n", name);
}

static void test_fib(void)
{
    current_test = "TR_CONFIG_FIB: set up forwarding and the neighbour entries";
    int before_failures = failures;
    /* The FIB helper answers "forwarding disabled" unless the ingress interface forwards. The
     * neighbour entries are permanent, so no test waits for ARP / ND. */
    if (sh("ip netns exec %s sysctl -qw net.ipv4.conf.all.forwarding=1 net.ipv6.conf.all.forwarding=1 >/dev/null",
           ns_relay) ||
        sh("ip -n %s neigh replace 198.18.0.2 lladdr 02:00:00:00:01:01 dev veth0 nud permanent", ns_relay) ||
        sh("ip -n %s neigh replace 2001:db8::2 lladdr 02:00:00:00:01:01 dev veth0 nud permanent", ns_relay) ||
        sh("ip -n %s neigh replace 198.19.0.2 lladdr 02:00:00:00:02:01 dev veth2 nud permanent", ns_relay) ||
        sh("ip -n %s neigh replace 2001:db8:1::2 lladdr 02:00:00:00:02:01 dev veth2 nud permanent", ns_relay) ||
        sh("ip -n %s neigh replace 198.18.0.3 lladdr 02:00:00:00:01:03 dev veth0 nud permanent", ns_relay) ||
        sh("ip -n %s neigh replace 2001:db8::3 lladdr 02:00:00:00:01:03 dev veth0 nud permanent", ns_relay)) {
        CHECK(0, "could not set up the relay namespace for TR_CONFIG_FIB");
        return;
    }
    CHECK(egress_fd >= 0, "no map tr_egress in the object");
    CHECK(enter(ns_relay) == 0, "enter relay namespace");
    int if0 = (int)if_nametoindex("veth0"), if2 = (int)if_nametoindex("veth2");
    CHECK(egress_set(if0, 1) == 0 && egress_set(if2, 1) == 0, "tr_egress: %s", strerror(errno));
    set_config(1500, TR_CONFIG_FIB);

    /* Across the two legs, every family pair, both directions: XDP_REDIRECT, the egress
     * interface's MAC address and its neighbour's. */
    struct binding fs[4] = {fib_binding(4, 4, 0), fib_binding(6, 6, 1), fib_binding(4, 6, 2), fib_binding(6, 4, 3)};
    char name[160];
    for (int i = 0; i < 4; i++) {
        route_up(&fs[i]);
        snprintf(name, sizeof name, "FIB: v%d client -> v%d peer, veth0 -> veth2, XDP_REDIRECT", fs[i].client_family,
                 fs[i].peer_family);
        fib_relay(name, &fs[i], 1, if0, XDP_REDIRECT, MAC_VETH[2], MAC_VETH[3]);
        snprintf(name, sizeof name, "FIB: v%d peer -> v%d client, veth2 -> veth0, XDP_REDIRECT", fs[i].peer_family,
                 fs[i].client_family);
        fib_relay(name, &fs[i], 0, if2, XDP_REDIRECT, MAC_VETH[0], MAC_VETH[1]);
    }

    /* A peer on the client's link: the route leaves by the ingress interface, XDP_TX, with the
     * neighbour's MAC address (not the frame's sender's). */
    for (int family = 4; family <= 6; family += 2) {
        struct binding near = same_leg_binding(family);
        route_up(&near);
        snprintf(name, sizeof name, "FIB: IPv%d, the peer on the client's link: XDP_TX to the neighbour's MAC", family);
        fib_relay(name, &near, 1, if0, XDP_TX, MAC_VETH[0], MAC_NEAR);
        snprintf(name, sizeof name, "FIB: IPv%d, from a peer on the client's link: XDP_TX to the client's MAC", family);
        fib_relay(name, &near, 0, if0, XDP_TX, MAC_VETH[0], MAC_VETH[1]);
        route_down(&near);

        /* No neighbour entry for the next hop (the kernel's path resolves it), and no route to
         * the peer at all: passed. */
        const struct {
            const char *what;
            struct a16 peer;
            int reason;
        } unreachable[] = {
            {"no neighbour entry for the peer", family == 4 ? v4(198, 19, 0, 3) : v6("2001:db8:1::3"), TR_PASS_NO_NEIGH},
            {"no route to the peer", family == 4 ? v4(203, 0, 113, 9) : v6("2001:db8:ff::9"), TR_PASS_NO_ROUTE},
        };
        for (int u = 0; u < 2; u++) {
            struct binding b = fib_binding(family, family, (uint16_t)(20 + 10 * u + family));
            b.peer = unreachable[u].peer;
            route_up(&b);
            snprintf(name, sizeof name, "FIB: IPv%d, %s: passed", family, unreachable[u].what);
            fib_pass(name, &b, 1, if0, unreachable[u].reason);
            route_down(&b);
        }
    }

    /* Forwarding off on the ingress interface: the helper answers "forwarding disabled". */
    for (int family = 4; family <= 6; family += 2) {
        const struct binding *b = family == 4 ? &fs[0] : &fs[1];
        CHECK(sh("ip netns exec %s sysctl -qw net.ipv%d.conf.veth0.forwarding=0 >/dev/null", ns_relay, family) == 0,
              "sysctl");
        snprintf(name, sizeof name, "FIB: IPv%d, forwarding disabled on the ingress interface: passed", family);
        fib_pass(name, b, 1, if0, TR_PASS_NO_ROUTE);
        CHECK(sh("ip netns exec %s sysctl -qw net.ipv%d.conf.veth0.forwarding=1 >/dev/null", ns_relay, family) == 0,
              "sysctl");
    }

    /* The egress interface not in tr_egress: passed; the other direction still redirects. */
    CHECK(egress_set(if2, 0) == 0, "tr_egress delete");
    fib_pass("FIB: the egress interface is not in tr_egress: passed", &fs[0], 1, if0, TR_PASS_EGRESS_NOT_ATTACHED);
    fib_relay("FIB: the other direction, to an interface in tr_egress, still redirects", &fs[0], 0, if2, XDP_REDIRECT,
              MAC_VETH[0], MAC_VETH[1]);
    CHECK(egress_set(if2, 1) == 0, "tr_egress add");

    /* Without the flag, the same packet is swapped back out of the ingress interface (XDP_TX). */
    set_config(1500, 0);
    fib_relay("no FIB flag: MAC addresses swapped, XDP_TX", &fs[0], 1, if0, XDP_TX, NULL, NULL);
    if (with_bench) {
        struct binding near = same_leg_binding(4);
        bench_fib(&fs[0], &near, if0, 200000);
    }
    for (int i = 0; i < 4; i++)
        route_down(&fs[i]);
    setns(original_ns, CLONE_NEWNET);
    printf("%s TR_CONFIG_FIB: next hop from the FIB, XDP_REDIRECT across interfaces, passes counted (test runs)\n",
           failures == before_failures ? "ok  " : "FAIL");

    /* The far ends need an XDP program for native-mode redirects to reach them (veth1 has one). */
    int pass_fd = load_pass_program();
    CHECK(enter(ns_peer) == 0, "enter peer namespace");
    int err = bpf_xdp_attach((int)if_nametoindex("veth3"), pass_fd, XDP_FLAGS_DRV_MODE, NULL);
    CHECK(err == 0, "attach the pass program to veth3: %s", strerror(-err));
    setns(original_ns, CLONE_NEWNET);
    const uint32_t modes[] = {XDP_FLAGS_DRV_MODE, XDP_FLAGS_SKB_MODE};
    for (int m = 0; m < 2; m++)
        for (int family = 4; family <= 6; family += 2)
            fib_end_to_end(family, modes[m]);
    if (pass_fd >= 0)
        close(pass_fd);
}


/* --bench over the veth at a low rate across many flows, the case where the program runs cold (few
 * packets per NAPI poll, the route maps' entries not in the cache): `flows` channel bindings,
 * consecutive datagrams from different flows (interleaved), paced to `pps`. Native mode, client →
 * peer; each object attached in turn for a slice. */
static void bench_veth_spread(int family, int flows, int pps, int count)
{
    struct binding *bs = calloc((size_t)flows, sizeof *bs);
    uint8_t (*dgrams)[160] = calloc((size_t)flows, sizeof *dgrams);
    uint16_t *lens = calloc((size_t)flows, sizeof *lens);
    if (!bs || !dgrams || !lens)
        return;
    for (int f = 0; f < flows; f++) {
        bs[f] = veth_binding(family, (uint16_t)(0x100 + f));
        uint8_t payload[128];
        size_t plen = channel_data(payload, bs[f].channel, data_bytes, 100, 0, 0);
        lens[f] = udp_datagram(dgrams[f], family, &bs[f].client, bs[f].client_port, &bs[f].listener,
                               bs[f].listener_port, payload, plen);
        for (int o = 0; o < nobjects; o++) {
            use(&objects[o]);
            route_up(&bs[f]);
        }
    }
    struct veth_tally t;
    memset(&t, 0, sizeof t);
    int stats_fd = bpf_enable_stats(BPF_STATS_RUN_TIME);
    int slices = nobjects > 1 ? 4 : 1, per_slice = count / slices;
    for (int sl = 0; sl < slices; sl++)
        for (int o = 0; o < nobjects; o++) {
            use(&objects[o]);
            if (veth_attach(prog_fd, XDP_FLAGS_DRV_MODE) != 0) {
                setns(original_ns, CLONE_NEWNET);
                continue;
            }
            struct sockaddr_storage ss;
            socklen_t len;
            int fd = raw_socket(family, &bs[0].client, &bs[0].listener, &ss, &len);
            sendto(fd, dgrams[0], lens[0], 0, (struct sockaddr *)&ss, len); /* ARP / ND */
            usleep(100000);
            struct run_time a;
            uint64_t c0[TR_COUNTER_COUNT];
            slice_start(&a, c0);
            struct timespec t0, next;
            clock_gettime(CLOCK_MONOTONIC, &t0);
            for (int i = 0; i < per_slice; i++) {
                int f = i % flows;
                sendto(fd, dgrams[f], lens[f], 0, (struct sockaddr *)&ss, len);
                if (i % 10 == 9) { /* paced in steps of 10 datagrams */
                    uint64_t at = (uint64_t)t0.tv_nsec + (uint64_t)(i + 1) * 1000000000ull / (uint64_t)pps;
                    next.tv_sec = t0.tv_sec + (time_t)(at / 1000000000ull);
                    next.tv_nsec = (long)(at % 1000000000ull);
                    clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, NULL);
                }
            }
            slice_end(&t, o, &a, c0);
            if (fd >= 0)
                close(fd);
            veth_detach(XDP_FLAGS_DRV_MODE);
        }
    char what[96];
    snprintf(what, sizeof what, "native IPv%d client->peer, %d flows interleaved at %d pps", family, flows, pps);
    veth_report(what, &t);
    /* The floors at the same pace and flows: an empty program, and one that only reads the
     * headers. What the relaying program costs above them is its own work and its misses. */
    struct {
        const char *label;
        int fd;
    } floors[] = {{"an empty XDP program (pass)", load_pass_program()},
                  {"a program that reads the first 48 bytes (pass)", load_touch_program()}};
    for (int k = 0; k < 2; k++) {
        if (floors[k].fd < 0 || veth_attach(floors[k].fd, XDP_FLAGS_DRV_MODE) != 0) {
            printf("bench veth native IPv%d, %d flows at %d pps, floor: %s: not loaded (%s)\n", family, flows, pps,
                   floors[k].label, strerror(errno));
            setns(original_ns, CLONE_NEWNET);
            continue;
        }
        struct sockaddr_storage ss;
        socklen_t len;
        int fd = raw_socket(family, &bs[0].client, &bs[0].listener, &ss, &len);
        usleep(100000);
        struct run_time a, z;
        run_time_read(floors[k].fd, &a);
        struct timespec t0, next;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        for (int i = 0; i < per_slice; i++) {
            sendto(fd, dgrams[i % flows], lens[i % flows], 0, (struct sockaddr *)&ss, len);
            if (i % 10 == 9) {
                uint64_t at = (uint64_t)t0.tv_nsec + (uint64_t)(i + 1) * 1000000000ull / (uint64_t)pps;
                next.tv_sec = t0.tv_sec + (time_t)(at / 1000000000ull);
                next.tv_nsec = (long)(at % 1000000000ull);
                clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, NULL);
            }
        }
        usleep(100000);
        run_time_read(floors[k].fd, &z);
        struct run_time d = {z.cnt - a.cnt, z.ns - a.ns};
        printf("bench veth native IPv%d, %d flows at %d pps, floor: %s: %.1f ns/packet over %llu runs\n", family, flows,
               pps, floors[k].label, per_packet(&d), (unsigned long long)d.cnt);
        if (fd >= 0)
            close(fd);
        veth_detach(XDP_FLAGS_DRV_MODE);
        close(floors[k].fd);
    }
    if (stats_fd >= 0)
        close(stats_fd);
    for (int o = nobjects - 1; o >= 0; o--) {
        use(&objects[o]);
        for (int f = 0; f < flows; f++)
            route_down(&bs[f]);
    }
    free(bs);
    free(dgrams);
    free(lens);
}

static void test_namespaces(void)
{
    current_test = "namespaces";
    if (make_namespaces()) {
        CHECK(0, "could not create the network namespaces and veth pair");
        return;
    }
    test_attach_modes();

    /* The outside end gets a pass-only program, so that XDP_TX'd frames arrive there. */
    int pass_fd = load_pass_program();
    CHECK(pass_fd >= 0, "load the pass program: %s", strerror(errno));
    CHECK(enter(ns_outside) == 0, "enter outside namespace");
    int out_if = (int)if_nametoindex("veth1");
    int err = bpf_xdp_attach(out_if, pass_fd, XDP_FLAGS_DRV_MODE, NULL);
    CHECK(err == 0, "attach the pass program to veth1: %s", strerror(-err));
    setns(original_ns, CLONE_NEWNET);

    const uint32_t modes[] = {XDP_FLAGS_DRV_MODE, XDP_FLAGS_SKB_MODE};
    for (int m = 0; m < 2; m++)
        for (int family = 4; family <= 6; family += 2)
            end_to_end(family, modes[m]);
    for (int m = 0; m < 2; m++)
        for (int family = 4; family <= 6; family += 2)
            offloaded_checksum_passes(family, modes[m]);
    test_fib();
    if (with_bench) {
        bench_veth(4, 20000);
        bench_veth(6, 20000);
        bench_veth_spread(4, 1, 50000, 20000);
        bench_veth_spread(4, 1000, 50000, 20000);
    }

    cleanup_namespaces();
    char path[128];
    snprintf(path, sizeof path, "/run/netns/%s", ns_relay);
    CHECK(access(path, F_OK) != 0, "namespace %s still exists after cleanup", ns_relay);
}

/* ------------------------------------------------------------------------------------------ */

static void test_map_sizing(const char *path)
{
    current_test = "route maps sized by the loader; a full map refuses with E2BIG";
    struct bpf_object *o = bpf_object__open_file(path, NULL);
    CHECK(o != NULL, "open");
    if (!o)
        return;
    struct bpf_map *m = bpf_object__find_map_by_name(o, "tr_client_routes");
    CHECK(m && bpf_map__set_max_entries(m, 4) == 0, "set_max_entries");
    CHECK(bpf_object__load(o) == 0, "load: %s", strerror(errno));
    int fd = bpf_map__fd(m);
    struct binding b = b44;
    struct tr_client_value v;
    memset(&v, 0, sizeof v);
    int err = 0;
    for (int i = 0; i < 5; i++) {
        struct tr_client_key k;
        b.client_port = (uint16_t)(30000 + i);
        client_key(&b, &k);
        err = bpf_map_update_elem(fd, &k, &v, BPF_NOEXIST) ? errno : 0;
        if (i < 4)
            CHECK(err == 0, "route %d refused: %s", i, strerror(err));
    }
    CHECK(err == E2BIG, "the fifth route into a map of 4: %s, expected E2BIG", strerror(err));
    bpf_object__close(o);
}

/* Opens and loads the object at path (the kernel's verifier runs) and finds its program and maps.
 * Returns 0, or the errno of the failure. */
/* Sets this process's effective capabilities to `effective` (two 32-bit halves) and returns the
 * ones it had in *saved; the permitted set stays, so they can be raised again. */
#ifndef CAP_BPF
#define CAP_BPF 39
#endif
static int set_effective_capabilities(const uint32_t effective[2], uint32_t saved[2])
{
    struct __user_cap_header_struct h = {.version = _LINUX_CAPABILITY_VERSION_3};
    struct __user_cap_data_struct d[2];
    if (syscall(SYS_capget, &h, d) != 0)
        return errno;
    saved[0] = d[0].effective, saved[1] = d[1].effective;
    d[0].effective = effective[0], d[1].effective = effective[1];
    return syscall(SYS_capset, &h, d) == 0 ? 0 : errno;
}

/* Loads an object. With unit_capabilities the load runs with only CAP_BPF and CAP_NET_ADMIN
 * effective, what packaging/turn-relay.service grants (no CAP_PERFMON, no CAP_SYS_ADMIN): the
 * verifier then refuses pointer arithmetic it allows with CAP_PERFMON, and it rewrites the program
 * against Spectre v1/v4 (index masking, `nospec` barriers), so the tests and the bench run the
 * program as the relay runs it. The capabilities are raised again afterwards. */
/* --route-entries N: both route maps of every object sized to N before load (the relay's loader
 * sizes them to its limits); 0 keeps the object's size. */
static uint32_t route_entries;
/* --against-route-entries N: the --bench-against object's route maps sized to N instead (e.g. the
 * same object at two sizes, to measure what the size costs); it is then loaded with the same
 * capabilities as this one. */
static uint32_t against_route_entries;

static int load_object(struct loaded *l, const char *path, const char *label, int unit_capabilities,
                       uint32_t entries)
{
    memset(l, 0, sizeof *l);
    l->label = label;
    l->obj = bpf_object__open_file(path, NULL);
    if (!l->obj)
        return errno ? errno : EINVAL;
    uint32_t unit[2] = {0, 0}, saved[2];
    unit[CAP_NET_ADMIN / 32] |= 1u << (CAP_NET_ADMIN % 32);
    unit[CAP_BPF / 32] |= 1u << (CAP_BPF % 32);
    if (unit_capabilities) {
        int e = set_effective_capabilities(unit, saved);
        if (e) {
            fprintf(stderr, "capset: %s\n", strerror(e));
            return e;
        }
    }
    const char *route_maps[] = {"tr_client_routes", "tr_peer_routes"};
    for (int i = 0; i < 2 && entries; i++) {
        struct bpf_map *m = bpf_object__find_map_by_name(l->obj, route_maps[i]);
        if (!m || bpf_map__set_max_entries(m, entries))
            return m ? errno : ENOENT;
    }
    int loaded = bpf_object__load(l->obj), load_errno = errno;
    if (unit_capabilities && set_effective_capabilities(saved, unit)) {
        fprintf(stderr, "capset (raising the capabilities again): %s\n", strerror(errno));
        return EPERM;
    }
    if (loaded)
        return load_errno ? load_errno : EINVAL;
    struct bpf_program *prog = bpf_object__find_program_by_name(l->obj, "turn_router");
    const char *maps[] = {"tr_client_routes", "tr_peer_routes", "tr_config", "tr_counters"};
    int *fds[] = {&l->client_routes, &l->peer_routes, &l->config, &l->counters};
    if (!prog) {
        fprintf(stderr, "no program turn_router in %s\n", path);
        return ENOENT;
    }
    l->prog = bpf_program__fd(prog);
    struct bpf_map *egress = bpf_object__find_map_by_name(l->obj, "tr_egress");
    l->egress = egress ? bpf_map__fd(egress) : -1;
    for (int i = 0; i < 4; i++) {
        struct bpf_map *m = bpf_object__find_map_by_name(l->obj, maps[i]);
        if (!m) {
            fprintf(stderr, "map %s not in %s\n", maps[i], path);
            return ENOENT;
        }
        *fds[i] = bpf_map__fd(m);
    }
    return 0;
}

/* The Spectre v4 barriers (`nospec`, an lfence on x86) the verifier put into the loaded program.
 * Without CAP_PERFMON it puts one after every store to a fresh or spilled stack slot, and each costs
 * 10 ns or more per packet: the first version that loaded without CAP_PERFMON had 122 and ran 4-5
 * times slower. Whether clang spills depends on the code around, so this count is what catches a
 * change that brings them back (BPF/README.md, "Privileges"). Reading the translated instructions
 * needs root (CAP_SYS_ADMIN/CAP_SYSLOG), which this process has again by then. Returns -1 when the
 * kernel does not show them. */
#define NOSPEC_INSN (BPF_ST | 0xc0) /* BPF_NOSPEC, kernel-internal (include/linux/filter.h) */
static int count_nospec(int prog_fd)
{
    struct bpf_prog_info info;
    __u32 len = sizeof info;
    memset(&info, 0, sizeof info);
    if (bpf_obj_get_info_by_fd(prog_fd, &info, &len) || info.xlated_prog_len == 0)
        return -1;
    __u32 n = info.xlated_prog_len / sizeof(struct bpf_insn);
    struct bpf_insn *insns = calloc(n, sizeof *insns);
    if (!insns)
        return -1;
    memset(&info, 0, sizeof info);
    info.xlated_prog_len = n * sizeof *insns;
    info.xlated_prog_insns = (__u64)(unsigned long)insns;
    len = sizeof info;
    int count = -1;
    if (bpf_obj_get_info_by_fd(prog_fd, &info, &len) == 0) {
        count = 0;
        for (__u32 i = 0; i < n; i++)
            count += insns[i].code == NOSPEC_INSN;
    }
    free(insns);
    return count;
}

/* The configuration and the four bindings every crafted-packet test starts from. */
static void install_defaults(void)
{
    set_config(1500, 0);
    route_up(&b44);
    route_up(&b66);
    route_up(&b46);
    route_up(&b64);
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc < 2) {
        fprintf(stderr, "usage: %s turn_router.bpf.o [--no-namespaces] [--bench [--bench-against OTHER.o]] "
                        "[--route-entries N] [--against-route-entries N]\n",
                argv[0]);
        return 2;
    }
    int with_namespaces = 1;
    const char *against = NULL;
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--no-namespaces") == 0)
            with_namespaces = 0;
        else if (strcmp(argv[i], "--bench") == 0)
            with_bench = 1;
        else if (strcmp(argv[i], "--bench-against") == 0 && i + 1 < argc)
            against = argv[++i];
        else if (strcmp(argv[i], "--route-entries") == 0 && i + 1 < argc)
            route_entries = (uint32_t)strtoul(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--against-route-entries") == 0 && i + 1 < argc)
            against_route_entries = (uint32_t)strtoul(argv[++i], NULL, 10);
        else {
            fprintf(stderr, "unknown argument %s\n", argv[i]);
            return 2;
        }
    }
    if (geteuid() != 0) {
        printf("SKIP: BPF tests need root (CAP_BPF, CAP_NET_ADMIN); running as uid %d\n", (int)geteuid());
        return 0;
    }
    int e = load_object(&objects[0], argv[1], "this", 1, route_entries);
    if (e == EPERM) {
        printf("SKIP: the kernel refuses bpf() (EPERM: no CAP_BPF, a seccomp filter or lockdown)\n");
        return 0;
    }
    if (e) {
        fprintf(stderr, "FAIL: load %s with only CAP_BPF and CAP_NET_ADMIN (the verifier's log is above): %s\n", argv[1], strerror(e));
        return 1;
    }
    nobjects = 1;
    checks++;
    printf("ok   the verifier accepted turn_router with only CAP_BPF and CAP_NET_ADMIN\n");
    {
        current_test = "no Spectre v4 barriers with only CAP_BPF and CAP_NET_ADMIN";
        int before = failures, nospec = count_nospec(objects[0].prog);
        CHECK(nospec == 0, "%d nospec barriers in the program as loaded (-1: instructions not readable); "
              "a store to the stack clang added, see BPF/README.md, \"Privileges\"", nospec);
        printf("%s the verifier added no Spectre v4 barrier (nospec) to turn_router\n",
               failures == before ? "ok  " : "FAIL");
    }
    ncpus = libbpf_num_possible_cpus();
    init_bindings();
    if (against && with_bench) {
        /* The base may need more (main before this change needed CAP_PERFMON): loaded as root. */
        e = against_route_entries ? load_object(&objects[1], against, "base", 1, against_route_entries)
                                  : load_object(&objects[1], against, "base", 0, route_entries);
        if (e) {
            fprintf(stderr, "FAIL: load %s: %s\n", against, strerror(e));
            return 1;
        }
        use(&objects[1]);
        install_defaults();
        nobjects = 2;
    }
    use(&objects[0]);
    install_defaults();

    struct {
        const char *name;
        void (*fn)(void);
    } groups[] = {
        {"relaying (all family pairs, padding, TTL, MTU edge)", test_relaying},
        {"passes (one per reason, counted)", test_passes},
        {"zero UDP checksum over IPv4", test_zero_checksum_v4},
        {"configured TTL and hop limit", test_configured_ttl},
        {"channel numbers at the edges, with and without the RFC 5766 flag", test_channel_numbers},
        {"UDP length against the IP length", test_length_mismatch},
        {"route down, route up", test_route_down},
        {"no configuration", test_no_config},
    };
    for (size_t g = 0; g < sizeof groups / sizeof groups[0]; g++) {
        int before = failures;
        groups[g].fn();
        printf("%s %s\n", failures == before ? "ok  " : "FAIL", groups[g].name);
    }
    {
        int before = failures;
        test_map_sizing(argv[1]);
        printf("%s map sizing and a full map\n", failures == before ? "ok  " : "FAIL");
    }
    if (with_namespaces)
        test_namespaces();
    use(&objects[0]);
    if (with_bench)
        bench(200000);

    if (failures) {
        printf("test-bpf: %d of %d checks FAILED\n", failures, checks);
        return 1;
    }
    printf("test-bpf: all %d checks passed\n", checks);
    return 0;
}
