// The neutral UDP layer (see CUDP.h): plain syscalls, no io_uring.
#define _GNU_SOURCE
#include "CUDP.h"
#include "CUDPMessage.h"

#include <errno.h>
#include <linux/filter.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

// MARK: - Sockets

int cu_udp_socket(const cu_addr *bind_addr, int options, int buffer_bytes, int *gro_enabled) {
    *gro_enabled = 0;
    socklen_t len = cu_addr_length(bind_addr);
    if (len == 0) return -EAFNOSUPPORT;
    int domain = bind_addr->sa.sa_family;
    // Blocking: io_uring arms a poll when a receive would block; both backends send with
    // MSG_DONTWAIT (a full send buffer drops the datagram instead of stalling the worker).
    int fd = socket(domain, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -errno;
    int one = 1;
    if ((options & CU_SO_REUSEPORT) && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0) goto fail;
    if (domain == AF_INET6 && (options & CU_SO_V6ONLY) &&
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) < 0)
        goto fail;
    if (buffer_bytes > 0) {
        // Best effort: the kernel caps these at net.core.{r,w}mem_max.
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &buffer_bytes, sizeof(buffer_bytes));
        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &buffer_bytes, sizeof(buffer_bytes));
    }
    if ((options & CU_SO_GRO) && setsockopt(fd, SOL_UDP, UDP_GRO, &one, sizeof(one)) == 0) *gro_enabled = 1;
    if ((options & CU_SO_NO_CHECK) && setsockopt(fd, SOL_SOCKET, SO_NO_CHECK, &one, sizeof(one)) < 0) goto fail;
    if (bind(fd, &bind_addr->sa, len) < 0) goto fail;
    return fd;
fail:;
    int e = errno;
    close(fd);
    return -e;
}

int cu_steer_by_source_ip(int fd, int family, uint32_t group_size) {
    if (group_size == 0) return -EINVAL;
    // Offsets from the network header: IPv4 source at 12, the last word of the IPv6 source at 20.
    uint32_t offset = family == 4 ? 12 : 20;
    struct sock_filter code[] = {
        {BPF_LD | BPF_W | BPF_ABS, 0, 0, (uint32_t)SKF_NET_OFF + offset},
        {BPF_ALU | BPF_MOD | BPF_K, 0, 0, group_size},
        {BPF_RET | BPF_A, 0, 0, 0},
    };
    struct sock_fprog program = {.len = sizeof(code) / sizeof(code[0]), .filter = code};
    if (setsockopt(fd, SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, &program, sizeof(program)) < 0) return -errno;
    return 0;
}

int cu_local_address(int fd, cu_addr *out) {
    struct sockaddr_storage storage;
    socklen_t len = sizeof(storage);
    if (getsockname(fd, (struct sockaddr *)&storage, &len) < 0) return -errno;
    cu_addr_from_name(&storage, len, out);
    return out->sa.sa_family ? 0 : -EAFNOSUPPORT;
}

int cu_close(int fd) { return close(fd) < 0 ? -errno : 0; }

int cu_eventfd(void) {
    int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    return fd < 0 ? -errno : fd;
}

void cu_set_thread_name(const char *name) {
    char short_name[16];
    strncpy(short_name, name, sizeof(short_name) - 1);
    short_name[sizeof(short_name) - 1] = 0;
    pthread_setname_np(pthread_self(), short_name);
}

// MARK: - Plain blocking helpers

int cu_udp_send(int fd, const cu_addr *dest, const void *buf, size_t len, uint16_t gso_size) {
    struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};
    struct msghdr msg;
    union {
        size_t align;
        char bytes[32];
    } control;
    memset(&msg, 0, sizeof(msg));
    msg.msg_name = (void *)dest;
    msg.msg_namelen = cu_addr_length(dest);
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    if (gso_size) cu_msg_set_segment_size(&msg, control.bytes, sizeof(control), gso_size);
    ssize_t n = sendmsg(fd, &msg, 0);
    return n < 0 ? -errno : (int)n;
}

int cu_udp_recv(int fd, void *buf, size_t cap, cu_addr *from, int timeout_ms) {
    struct pollfd p = {.fd = fd, .events = POLLIN};
    int rc = poll(&p, 1, timeout_ms);
    if (rc < 0) return -errno;
    if (rc == 0) return -ETIMEDOUT;
    struct sockaddr_storage storage;
    socklen_t len = sizeof(storage);
    ssize_t n = recvfrom(fd, buf, cap, MSG_TRUNC | MSG_DONTWAIT, (struct sockaddr *)&storage, &len);
    if (n < 0) return -errno;
    if (from) cu_addr_from_name(&storage, len, from);
    return (int)n;
}

// MARK: - Stream sockets

int cu_tcp_listener(const cu_addr *bind_addr, int options, int backlog) {
    socklen_t len = cu_addr_length(bind_addr);
    if (len == 0) return -EAFNOSUPPORT;
    int domain = bind_addr->sa.sa_family;
    int fd = socket(domain, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -errno;
    int one = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0) goto fail;
    if ((options & CU_SO_REUSEPORT) && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0) goto fail;
    if (domain == AF_INET6 && (options & CU_SO_V6ONLY) &&
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) < 0)
        goto fail;
    if (bind(fd, &bind_addr->sa, len) < 0) goto fail;
    if (listen(fd, backlog > 0 ? backlog : 1024) < 0) goto fail;
    return fd;
fail:;
    int e = errno;
    close(fd);
    return -e;
}

int cu_peer_address(int fd, cu_addr *out) {
    memset(out, 0, sizeof(*out));
    socklen_t len = sizeof(*out);
    if (getpeername(fd, &out->sa, &len) < 0) return -errno;
    return 0;
}

int cu_tcp_connect(const cu_addr *local, const cu_addr *remote, int *in_progress) {
    *in_progress = 0;
    socklen_t local_len = cu_addr_length(local), remote_len = cu_addr_length(remote);
    if (local_len == 0 || remote_len == 0 || local->sa.sa_family != remote->sa.sa_family) return -EAFNOSUPPORT;
    int fd = socket(local->sa.sa_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) return -errno;
    int one = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0) goto fail;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0) goto fail;
    if (local->sa.sa_family == AF_INET6 && setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) < 0) goto fail;
    if (bind(fd, &local->sa, local_len) < 0) goto fail;
    if (connect(fd, &remote->sa, remote_len) < 0) {
        if (errno != EINPROGRESS) goto fail;
        *in_progress = 1;
    }
    return fd;
fail:;
    int e = errno;
    close(fd);
    return -e;
}

int cu_socket_error(int fd) {
    int error = 0;
    socklen_t len = sizeof(error);
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &len) < 0) return errno;
    return error;
}

int cu_stream_configure(int fd) {
    int one = 1;
    if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0) return -errno;
    return 0;
}

int cu_stream_close(int fd) {
    shutdown(fd, SHUT_RDWR);
    return close(fd) < 0 ? -errno : 0;
}
