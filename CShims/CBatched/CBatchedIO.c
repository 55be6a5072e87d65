#define _GNU_SOURCE
// Plain batches of mmsghdr and epoll wrappers (see CBatched.h), for callers that drive their own
// loop: the benchmark's load generator.
#include "CBatched.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>

struct cb_batch {
    unsigned capacity;
    struct mmsghdr *msgs;
    struct iovec *iov;
};

cb_batch *cb_batch_create(unsigned capacity) {
    cb_batch *b = calloc(1, sizeof *b);
    if (!b) return NULL;
    b->capacity = capacity;
    b->msgs = calloc(capacity, sizeof *b->msgs);
    b->iov = calloc(capacity, sizeof *b->iov);
    if (!b->msgs || !b->iov) {
        free(b->msgs);
        free(b->iov);
        free(b);
        return NULL;
    }
    for (unsigned i = 0; i < capacity; i++) {
        b->msgs[i].msg_hdr.msg_iov = &b->iov[i];
        b->msgs[i].msg_hdr.msg_iovlen = 1;
    }
    return b;
}

void cb_batch_destroy(cb_batch *b) {
    if (!b) return;
    free(b->msgs);
    free(b->iov);
    free(b);
}

void cb_batch_set(cb_batch *b, unsigned i, void *base, size_t len, const cu_addr *dest) {
    if (i >= b->capacity) return;
    b->iov[i].iov_base = base;
    b->iov[i].iov_len = len;
    cb_batch_set_destination(b, i, dest);
}

void cb_batch_set_length(cb_batch *b, unsigned i, size_t len) {
    if (i < b->capacity) b->iov[i].iov_len = len;
}

void cb_batch_set_destination(cb_batch *b, unsigned i, const cu_addr *dest) {
    if (i >= b->capacity) return;
    b->msgs[i].msg_hdr.msg_name = (void *)dest;
    b->msgs[i].msg_hdr.msg_namelen = dest ? cu_addr_length(dest) : 0;
}

unsigned cb_batch_received_length(const cb_batch *b, unsigned i) {
    return i < b->capacity ? b->msgs[i].msg_len : 0;
}

int cb_sendmmsg(int fd, cb_batch *b, unsigned n) {
    if (n > b->capacity) n = b->capacity;
    int rc = sendmmsg(fd, b->msgs, n, 0);
    return rc < 0 ? -errno : rc;
}

int cb_recvmmsg(int fd, cb_batch *b, unsigned n) {
    if (n > b->capacity) n = b->capacity;
    for (unsigned i = 0; i < n; i++) {
        b->msgs[i].msg_hdr.msg_name = NULL;
        b->msgs[i].msg_hdr.msg_namelen = 0;
        b->msgs[i].msg_hdr.msg_flags = 0;
    }
    int rc = recvmmsg(fd, b->msgs, n, MSG_DONTWAIT, NULL);
    return rc < 0 ? -errno : rc;
}

int cb_epoll_create(void) {
    int fd = epoll_create1(EPOLL_CLOEXEC);
    return fd < 0 ? -errno : fd;
}

int cb_epoll_add(int epfd, int fd, uint64_t data) {
    struct epoll_event ev;
    memset(&ev, 0, sizeof ev);
    ev.events = EPOLLIN;
    ev.data.u64 = data;
    return epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0 ? -errno : 0;
}

int cb_epoll_wait(int epfd, uint64_t *out, int max, int timeout_ms) {
    struct epoll_event evs[64];
    if (max > 64) max = 64;
    int n = epoll_wait(epfd, evs, max, timeout_ms);
    if (n < 0) return -errno;
    for (int i = 0; i < n; i++) out[i] = evs[i].data.u64;
    return n;
}
