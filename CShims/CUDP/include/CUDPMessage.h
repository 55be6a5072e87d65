// What the C backends (CURing.c, CBatched.c) and CUDP.c share to speak msghdr to UDP sockets: the
// UDP option numbers older libc headers lack, the check of a source name the kernel wrote, the
// UDP_SEGMENT (GSO) control message on send and the UDP_GRO one on receive. For C only: CUDP.h
// (the Swift module's umbrella header) does not include it.
#ifndef CUDP_MESSAGE_H
#define CUDP_MESSAGE_H

#include "CUDP.h"

#include <netinet/in.h>
#include <netinet/udp.h>
#include <string.h>
#include <sys/socket.h>

#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103
#endif
#ifndef UDP_GRO
#define UDP_GRO 104
#endif
#ifndef SOL_UDP
#define SOL_UDP 17
#endif

// Copies the source name the kernel wrote (`namelen` bytes at `name`) into `out`, or leaves `out`
// zeroed (family 0) when it is neither a complete sockaddr_in nor a complete sockaddr_in6. No
// conversion: `out` keeps the kernel's byte order.
static inline void cu_addr_from_name(const void *name, uint32_t namelen, cu_addr *out) {
    memset(out, 0, sizeof(*out));
    if (namelen >= sizeof(struct sockaddr_in)) {
        sa_family_t family;
        memcpy(&family, name, sizeof(family));
        if (family == AF_INET) {
            memcpy(&out->in4, name, sizeof(struct sockaddr_in));
        } else if (family == AF_INET6 && namelen >= sizeof(struct sockaddr_in6)) {
            memcpy(&out->in6, name, sizeof(struct sockaddr_in6));
        }
    }
}

// Attaches a UDP_SEGMENT control message (GSO: the kernel cuts the payload into `segment_size`
// datagrams) to `m`, using `control` (at least CMSG_SPACE(sizeof(uint16_t)) bytes, aligned).
static inline void cu_msg_set_segment_size(struct msghdr *m, void *control, size_t control_bytes,
                                           uint16_t segment_size) {
    memset(control, 0, control_bytes);
    m->msg_control = control;
    m->msg_controllen = CMSG_SPACE(sizeof(uint16_t));
    struct cmsghdr *c = CMSG_FIRSTHDR(m);
    c->cmsg_level = SOL_UDP;
    c->cmsg_type = UDP_SEGMENT;
    c->cmsg_len = CMSG_LEN(sizeof(uint16_t));
    memcpy(CMSG_DATA(c), &segment_size, sizeof(uint16_t));
}

// The UDP_GRO segment size carried by control message `cm`, or 0 when `cm` is something else.
static inline uint16_t cu_cmsg_gro_segment(const struct cmsghdr *cm) {
    if (cm->cmsg_level != SOL_UDP || cm->cmsg_type != UDP_GRO || cm->cmsg_len < CMSG_LEN(sizeof(int))) return 0;
    int seg = 0;
    memcpy(&seg, CMSG_DATA(cm), sizeof(int));
    return seg > 0 && seg <= 65535 ? (uint16_t)seg : 0;
}

#endif
