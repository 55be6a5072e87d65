// What both I/O backends (CURing.c: io_uring, CBatched.c: epoll + recvmmsg/sendmmsg) and the plain
// helpers need to speak to UDP sockets: the UDP option numbers older libc headers lack, address
// conversion between cu_addr and sockaddr, and the UDP_SEGMENT (GSO) control message.
// Private to this module: not under include/, so Swift never sees it.
#ifndef CURING_SOCKET_COMMON_H
#define CURING_SOCKET_COMMON_H

#include "CURing.h"

#include <arpa/inet.h>
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

// Writes `a` as a sockaddr_in (family 4) or sockaddr_in6 into `storage`; returns its length.
static inline socklen_t cu_sockaddr_from(const cu_addr *a, struct sockaddr_in6 *storage) {
    memset(storage, 0, sizeof(*storage));
    if (a->family == 4) {
        struct sockaddr_in *in = (struct sockaddr_in *)storage;
        in->sin_family = AF_INET;
        in->sin_port = htons(a->port);
        memcpy(&in->sin_addr, a->bytes, 4);
        return sizeof(struct sockaddr_in);
    }
    storage->sin6_family = AF_INET6;
    storage->sin6_port = htons(a->port);
    memcpy(&storage->sin6_addr, a->bytes, 16);
    return sizeof(struct sockaddr_in6);
}

// Reads a sockaddr the kernel wrote (`namelen` bytes of it) into `out`; family 0 when it is
// neither a complete sockaddr_in nor a complete sockaddr_in6.
static inline void cu_addr_from_sockaddr(const void *name, uint32_t namelen, cu_addr *out) {
    memset(out, 0, sizeof(*out));
    if (namelen >= sizeof(struct sockaddr_in)) {
        const struct sockaddr_in *in = name;
        if (in->sin_family == AF_INET) {
            out->family = 4;
            out->port = ntohs(in->sin_port);
            memcpy(out->bytes, &in->sin_addr, 4);
            return;
        }
    }
    if (namelen >= sizeof(struct sockaddr_in6)) {
        const struct sockaddr_in6 *in6 = name;
        if (in6->sin6_family == AF_INET6) {
            out->family = 6;
            out->port = ntohs(in6->sin6_port);
            memcpy(out->bytes, &in6->sin6_addr, 16);
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

#endif
