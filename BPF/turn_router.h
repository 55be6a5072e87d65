/* SPDX-License-Identifier: Apache-2.0 */
/*
 * turn_router.h — the contract between the XDP program (turn_router.bpf.c) and whoever fills its
 * maps (the tests in BPF/tests today, the relay's loader later).
 *
 * Every struct here has a fixed size and explicit padding, so its layout is the same for the BPF
 * target, for x86_64/arm64 C and for a Swift mirror of it. Padding fields must be written as zero:
 * the hash maps compare keys byte for byte.
 *
 * Byte order: every multi-byte integer in a key, a value or the configuration (ports, channel
 * numbers, the MTU, the flags) is stored in NETWORK byte order (big-endian), exactly as it appears
 * on the wire, so the program compares and copies them without conversion. The counters are the
 * exception: they are native-endian __u64 (the loader reads them as plain integers).
 *
 * Addresses: always 16 bytes. An IPv4 address is stored IPv4-mapped (::ffff:a.b.c.d, RFC 4291
 * §2.5.5.2: ten zero bytes, two 0xff bytes, then the four address bytes). The *_family fields say
 * which IP version the program reads or writes on the wire for that side (TR_FAMILY_*); an IPv6
 * packet whose source happens to be an IPv4-mapped address never matches an IPv4 route, because
 * the family of the route's receiving side is checked against the packet.
 *
 * "Relay address" and "listener address" are the addresses as they appear on the wire at the
 * attached interface (the destination address of the packets the relay receives). Behind a 1:1 NAT
 * that is the interface's private address, not the advertised public one.
 */
#ifndef TURN_ROUTER_H
#define TURN_ROUTER_H

#include <linux/types.h>

/* Default number of entries of each route map in the object; the loader may resize them
 * (bpf_map__set_max_entries before load). Both maps are BPF_MAP_TYPE_HASH (pre-allocated). */
#define TR_ROUTES_DEFAULT_ENTRIES 65536

/* Values of the *_family fields. */
#define TR_FAMILY_IPV4 4
#define TR_FAMILY_IPV6 6

/* ---------------------------------------------------------------------------------------------
 * Map "tr_client_routes": client → peer (ChannelData received on a listener port).
 * ------------------------------------------------------------------------------------------- */
struct tr_client_key {
    __u8 client_ip[16];   /* [0,16)  client's source address as seen on the wire (IPv4-mapped for IPv4) */
    __be16 client_port;   /* [16,18) client's UDP source port */
    __be16 listener_port; /* [18,20) UDP destination port: the listener the client talks to */
    __be16 channel;       /* [20,22) channel number, as in the ChannelData header (0x4000-0x4FFF, or
                           *         up to 0x7FFF when TR_CONFIG_RFC5766_CHANNELS is set) */
    __u16 pad;            /* [22,24) zero */
};                        /* 24 bytes */

struct tr_client_value {
    __u8 relay_ip[16];   /* [0,16)  new source address: the allocation's relayed address on the wire */
    __u8 peer_ip[16];    /* [16,32) new destination address: the peer */
    __be16 relay_port;   /* [32,34) new source port: the allocation port */
    __be16 peer_port;    /* [34,36) new destination port: the peer's port */
    __u8 client_family;  /* [36]    TR_FAMILY_* of the client side (must match the received packet) */
    __u8 peer_family;    /* [37]    TR_FAMILY_* of relay_ip/peer_ip: the IP version sent to the peer */
    __u8 pad[2];         /* [38,40) zero */
};                       /* 40 bytes */

/* ---------------------------------------------------------------------------------------------
 * Map "tr_peer_routes": peer → client (plain UDP received on an allocation port).
 * ------------------------------------------------------------------------------------------- */
struct tr_peer_key {
    __u8 peer_ip[16];  /* [0,16)  peer's source address (IPv4-mapped for IPv4) */
    __u8 relay_ip[16]; /* [16,32) destination address: the allocation's relayed address on the wire */
    __be16 peer_port;  /* [32,34) peer's UDP source port (channels bind a transport address) */
    __be16 relay_port; /* [34,36) UDP destination port: the allocation port */
    __u32 pad;         /* [36,40) zero */
};                     /* 40 bytes */

struct tr_peer_value {
    __u8 listener_ip[16]; /* [0,16)  new source address: the address the client sends its requests to */
    __u8 client_ip[16];   /* [16,32) new destination address: the client */
    __be16 listener_port; /* [32,34) new source port: the listener port */
    __be16 client_port;   /* [34,36) new destination port: the client's port */
    __be16 channel;       /* [36,38) channel number written into the ChannelData header */
    __u8 peer_family;     /* [38]    TR_FAMILY_* of the peer side (must match the received packet) */
    __u8 client_family;   /* [39]    TR_FAMILY_* of listener_ip/client_ip: the IP version sent */
};                        /* 40 bytes */

/* ---------------------------------------------------------------------------------------------
 * Map "tr_config": BPF_MAP_TYPE_ARRAY with one entry (key 0). All zero = the program passes
 * everything (no listener port, empty relay range).
 * ------------------------------------------------------------------------------------------- */
#define TR_MAX_LISTENER_PORTS 4

/* flags */
#define TR_CONFIG_RFC5766_CHANNELS 0x1u /* accept channel numbers 0x5000-0x7FFF (RFC 5766 §11) */
#define TR_CONFIG_FIB 0x2u              /* next hop from the kernel's FIB (bpf_fib_lookup): the MAC
                                         * addresses from the route's neighbour entry, and a packet
                                         * whose route leaves by another interface is redirected
                                         * there (XDP_REDIRECT through tr_egress). Needs IP
                                         * forwarding on the attached interfaces (the helper answers
                                         * "forwarding disabled" otherwise: every such packet
                                         * passes). Without it: the MAC addresses are swapped and
                                         * the packet leaves by the interface it came in on. */

struct tr_config {
    __be16 listener_ports[TR_MAX_LISTENER_PORTS]; /* [0,8)   listener UDP ports; 0 = unused slot */
    __be16 relay_port_min;                        /* [8,10)  allocation port range, inclusive;
                                                   *         min 0 = no range */
    __be16 relay_port_max;                        /* [10,12) */
    __be16 mtu;                                   /* [12,14) largest IP packet (L3, header included)
                                                   *         the program may send; 0 = 1500 */
    __u8 ttl;                                     /* [14]    IPv4 TTL of the packets the program
                                                   *         sends; 0 = 64. Like a datagram the
                                                   *         relay sends from userspace (a fresh
                                                   *         packet, net.ipv4.ip_default_ttl). */
    __u8 hop_limit;                               /* [15]    IPv6 hop limit of the packets sent;
                                                   *         0 = 64 (net.ipv6.conf.*.hop_limit) */
    __be32 flags;                                 /* [16,20) TR_CONFIG_* */
    __u32 pad2;                                   /* [20,24) zero */
};                                                /* 24 bytes */

/* ---------------------------------------------------------------------------------------------
 * Map "tr_counters": BPF_MAP_TYPE_PERCPU_ARRAY of __u64, TR_COUNTER_COUNT entries; the loader sums
 * the CPUs. Bytes count the relayed application data (the ChannelData payload, the peer's UDP
 * payload), as the userspace path's relay_relayed_bytes_total does.
 * ------------------------------------------------------------------------------------------- */
enum tr_counter {
    TR_RELAYED_PACKETS_CLIENT_TO_PEER = 0,
    TR_RELAYED_BYTES_CLIENT_TO_PEER = 1,
    TR_RELAYED_PACKETS_PEER_TO_CLIENT = 2,
    TR_RELAYED_BYTES_PEER_TO_CLIENT = 3,
    /* passes to the kernel stack (XDP_PASS), one reason each */
    TR_PASS_NOT_IP_UDP = 4,            /* not IPv4/IPv6, or not UDP, or a truncated IP/UDP header */
    TR_PASS_IPV4_OPTIONS_OR_FRAGMENT = 5, /* IHL != 5, MF set or fragment offset != 0 */
    TR_PASS_IPV6_EXTENSION_HEADER = 6, /* next header is an extension header (fragments included) */
    TR_PASS_NOT_OUR_PORT = 7,          /* UDP to neither a listener port nor the relay port range */
    TR_PASS_NOT_CHANNEL_DATA = 8,      /* on a listener: first two bits not 01 (STUN, indications) */
    TR_PASS_MAP_MISS = 9,              /* no route (unbound channel, permission-only peer, ...), or
                                        * a route whose receiving family differs from the packet's */
    TR_PASS_MALFORMED_CHANNEL_DATA = 10, /* shorter than 4 bytes, channel number out of range, empty,
                                          * or more than padding after the data */
    TR_PASS_CHANNEL_LENGTH_BEYOND_DATAGRAM = 11, /* ChannelData length field > bytes present */
    TR_PASS_OVERSIZED = 12,            /* packet or result above the MTU (GRO/GSO super-packets) */
    TR_PASS_HEADROOM = 13,             /* bpf_xdp_adjust_head/tail refused (driver headroom) */
    TR_PASS_CHECKSUM_OR_OTHER = 14,    /* zero UDP checksum to IPv6, bad IPv4 header checksum,
                                        * inconsistent IP/UDP lengths, empty peer datagram, a route
                                        * with an unknown family value */
    TR_PASS_TTL = 15,                  /* reserved, never counted: the program sends with
                                        * tr_config.ttl / hop_limit like a fresh datagram from
                                        * userspace, so the received TTL / hop limit (even 1 or 0:
                                        * the kernel delivers those to the socket, too) is no
                                        * reason to pass. The index stays, the layout is fixed. */
    TR_PASS_PARTIAL_CHECKSUM = 16,     /* the UDP checksum field holds only the pseudo-header sum:
                                        * a locally sent datagram whose checksum is offloaded
                                        * (CHECKSUM_PARTIAL, e.g. from a container over a veth) or a
                                        * GRO super-packet in generic mode. Its real checksum was
                                        * never computed, so it cannot be updated. (By chance 1 in
                                        * 65,536 complete checksums looks the same: passed, too.) */
    TR_PASS_HAIRPIN = 17,              /* the route's destination is one of the relay's own addresses
                                        * (the packet's destination or the route's new source):
                                        * XDP_TX would send it out of the interface, so the loader
                                        * should not install such routes; the program passes them */
    /* TR_CONFIG_FIB only: bpf_fib_lookup did not give a next hop */
    TR_PASS_NO_NEIGH = 18,             /* the next hop has no resolved neighbour entry (ARP/ND):
                                        * the kernel's path resolves it, later packets relay */
    TR_PASS_NO_ROUTE = 19,             /* any other answer: forwarding disabled on the ingress
                                        * interface, unreachable, blackhole, prohibit, a local
                                        * destination, encapsulation, fragmentation needed */
    TR_PASS_EGRESS_NOT_ATTACHED = 20,  /* the route leaves by an interface not in tr_egress */
    TR_COUNTER_COUNT = 21,
};

/* ---------------------------------------------------------------------------------------------
 * Map "tr_egress": BPF_MAP_TYPE_DEVMAP_HASH, key = value = ifindex (__u32, native byte order):
 * the interfaces a packet may be redirected to (TR_CONFIG_FIB), i.e. those the program is
 * attached to. The loader sizes it (bpf_map__set_max_entries before load) and adds each
 * interface it attaches to.
 * ------------------------------------------------------------------------------------------- */
#define TR_EGRESS_DEFAULT_ENTRIES 64

/* The layout above is a contract: any change must show here first. */
#define TR_LAYOUT_CHECK(cond) _Static_assert(cond, #cond)
TR_LAYOUT_CHECK(sizeof(struct tr_client_key) == 24);
TR_LAYOUT_CHECK(__builtin_offsetof(struct tr_client_key, client_port) == 16);
TR_LAYOUT_CHECK(__builtin_offsetof(struct tr_client_key, channel) == 20);
TR_LAYOUT_CHECK(sizeof(struct tr_client_value) == 40);
TR_LAYOUT_CHECK(__builtin_offsetof(struct tr_client_value, relay_port) == 32);
TR_LAYOUT_CHECK(__builtin_offsetof(struct tr_client_value, client_family) == 36);
TR_LAYOUT_CHECK(sizeof(struct tr_peer_key) == 40);
TR_LAYOUT_CHECK(__builtin_offsetof(struct tr_peer_key, peer_port) == 32);
TR_LAYOUT_CHECK(sizeof(struct tr_peer_value) == 40);
TR_LAYOUT_CHECK(__builtin_offsetof(struct tr_peer_value, channel) == 36);
TR_LAYOUT_CHECK(__builtin_offsetof(struct tr_peer_value, client_family) == 39);
TR_LAYOUT_CHECK(sizeof(struct tr_config) == 24);
TR_LAYOUT_CHECK(__builtin_offsetof(struct tr_config, relay_port_min) == 8);
TR_LAYOUT_CHECK(__builtin_offsetof(struct tr_config, mtu) == 12);
TR_LAYOUT_CHECK(__builtin_offsetof(struct tr_config, ttl) == 14);
TR_LAYOUT_CHECK(__builtin_offsetof(struct tr_config, flags) == 16);
#undef TR_LAYOUT_CHECK

#endif /* TURN_ROUTER_H */
