// The batched-syscall backend, cb_loop (see CBatched.h). Deliberately free of io_uring: it is what
// runs when io_uring is refused, so it must not need anything from it. Sockets, addresses and the
// cmsg helpers come from CUDP.
#define _GNU_SOURCE
#include "CBatched.h"
#include "CUDPMessage.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>


#define CB_BATCH 64u           // datagrams per recvmmsg / sendmmsg call
#define CB_EVENTS 256u         // readiness events per epoll_wait
#define CB_ROUNDS_PER_SOCKET 4 // recvmmsg calls per ready socket per wait (level-triggered: the rest waits)
#define CB_ERROR_COMPLETIONS 512u
#define CB_POLL_SLACK 8u

enum { CB_NONE = 0, CB_RECEIVE = 1, CB_POLL = 2, CB_ACCEPT = 3, CB_STREAM = 4 };

struct cb_watch_entry {
    uint64_t user_data;
    uint8_t kind;
    // A stream socket's send that found its send buffer full: retried when the socket is writable.
    uint8_t send_pending;
    // A stream socket not read for now (backpressure, or on its way to another worker): its
    // pending send still completes.
    uint8_t paused;
    uint32_t send_length;
    const void *send_bytes;
    uint64_t send_user_data;
};

struct cb_send {
    int fd;
    uint32_t iov_count;
    uint64_t user_data;
    uint16_t gso;
    socklen_t addrlen;
    cu_addr addr;
    struct iovec iov[CU_SEND_MAX_IOV];
    union {
        char bytes[CMSG_SPACE(sizeof(uint16_t))];
        struct cmsghdr align;
    } control;
};

static cu_completion *push(cb_loop *l);

struct cb_loop {
    int epfd;
    unsigned char *buffers;
    uint32_t buffer_count, slot_stride, recv_bytes;
    uint16_t *free_ids;
    uint32_t free_count;

    struct cb_send *sends;
    uint32_t send_count;
    uint32_t *queue;
    uint32_t queued;

    cu_completion *cq;
    uint32_t cq_cap, cq_head, cq_len;

    struct cb_watch_entry *watches; // indexed by fd
    uint32_t watch_cap;

    struct epoll_event events[CB_EVENTS];
    struct mmsghdr msgs[CB_BATCH];
    struct iovec recv_iov[CB_BATCH];

    uint64_t sendmmsg_calls, recvmmsg_calls;
};

cb_loop *cb_loop_create(void *buffers, uint32_t buffer_count, uint32_t slot_stride, uint32_t recv_bytes,
                        uint32_t send_slots, int *error) {
    *error = 0;
    if (!buffers || buffer_count == 0 || buffer_count > 65536 || send_slots == 0 ||
        recv_bytes <= CU_RECV_PAYLOAD_OFFSET || recv_bytes > slot_stride) {
        *error = -EINVAL;
        return NULL;
    }
    cb_loop *l = calloc(1, sizeof(*l));
    if (!l) { *error = -ENOMEM; return NULL; }
    l->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (l->epfd < 0) {
        *error = -errno;
        free(l);
        return NULL;
    }
    l->buffers = buffers;
    l->buffer_count = buffer_count;
    l->slot_stride = slot_stride;
    l->recv_bytes = recv_bytes;
    l->free_ids = calloc(buffer_count, sizeof(uint16_t));
    l->sends = calloc(send_slots, sizeof(struct cb_send));
    l->send_count = send_slots;
    l->queue = calloc(send_slots, sizeof(uint32_t));
    l->cq_cap = send_slots + buffer_count + CB_ERROR_COMPLETIONS + CB_POLL_SLACK;
    l->cq = calloc(l->cq_cap, sizeof(cu_completion));
    l->watch_cap = 1024;
    l->watches = calloc(l->watch_cap, sizeof(struct cb_watch_entry));
    if (!l->free_ids || !l->sends || !l->queue || !l->cq || !l->watches) {
        *error = -ENOMEM;
        cb_loop_destroy(l);
        return NULL;
    }
    // Pop order: slot 0 first.
    for (uint32_t i = 0; i < buffer_count; i++) l->free_ids[i] = (uint16_t)(buffer_count - 1 - i);
    l->free_count = buffer_count;
    return l;
}

void cb_loop_destroy(cb_loop *l) {
    if (!l) return;
    if (l->epfd >= 0) close(l->epfd);
    free(l->free_ids);
    free(l->sends);
    free(l->queue);
    free(l->cq);
    free(l->watches);
    free(l);
}

void cb_buffers_return(cb_loop *l, const uint16_t *ids, uint32_t count) {
    for (uint32_t i = 0; i < count && l->free_count < l->buffer_count; i++) {
        if (ids[i] < l->buffer_count) l->free_ids[l->free_count++] = ids[i];
    }
}

static int ensure_watch(cb_loop *l, int fd) {
    if (fd < 0) return -EBADF;
    if ((uint32_t)fd < l->watch_cap) return 0;
    uint32_t cap = l->watch_cap;
    while (cap <= (uint32_t)fd) {
        if (cap > (1u << 24)) return -EMFILE;
        cap *= 2;
    }
    struct cb_watch_entry *w = realloc(l->watches, (size_t)cap * sizeof(*w));
    if (!w) return -ENOMEM;
    memset(w + l->watch_cap, 0, (size_t)(cap - l->watch_cap) * sizeof(*w));
    l->watches = w;
    l->watch_cap = cap;
    return 0;
}

static int arm(cb_loop *l, int fd, uint64_t user_data, uint8_t kind, uint32_t events) {
    int rc = ensure_watch(l, fd);
    if (rc < 0) return rc;
    struct epoll_event ev;
    memset(&ev, 0, sizeof(ev));
    ev.events = events;
    ev.data.fd = fd;
    if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
        if (errno != EEXIST || epoll_ctl(l->epfd, EPOLL_CTL_MOD, fd, &ev) < 0) return -errno;
    }
    l->watches[fd].user_data = user_data;
    l->watches[fd].kind = kind;
    return 0;
}

int cb_watch(cb_loop *l, int fd, uint64_t user_data) { return arm(l, fd, user_data, CB_RECEIVE, EPOLLIN); }

int cb_poll_in(cb_loop *l, int fd, uint64_t user_data) {
    return arm(l, fd, user_data, CB_POLL, EPOLLIN | EPOLLONESHOT);
}

int cb_poll_out(cb_loop *l, int fd, uint64_t user_data) {
    return arm(l, fd, user_data, CB_POLL, EPOLLOUT | EPOLLONESHOT);
}

int cb_unwatch(cb_loop *l, int fd) {
    if (fd < 0) return -EBADF;
    if ((uint32_t)fd < l->watch_cap) {
        struct cb_watch_entry *w = &l->watches[fd];
        if (w->send_pending) {
            // The send never completes now: say so, so its bytes can be let go.
            cu_completion *c = push(l);
            if (c) {
                c->user_data = w->send_user_data;
                c->res = -ECANCELED;
            }
            w->send_pending = 0;
        }
        w->kind = CB_NONE;
    }
    if (epoll_ctl(l->epfd, EPOLL_CTL_DEL, fd, NULL) < 0 && errno != ENOENT) return -errno;
    return 0;
}

uint32_t cb_send_slot_count(const cb_loop *l) { return l->send_count; }

struct iovec *cb_send_iovecs(cb_loop *l, uint32_t slot) {
    if (slot >= l->send_count) return NULL;
    return l->sends[slot].iov;
}

int cb_prep_send(cb_loop *l, uint32_t slot, int fd, const cu_addr *dest, uint32_t iov_count, uint16_t gso_size,
                 uint64_t user_data) {
    if (slot >= l->send_count || iov_count == 0 || iov_count > CU_SEND_MAX_IOV) return -EINVAL;
    if (l->queued >= l->send_count) return -EBUSY;
    struct cb_send *s = &l->sends[slot];
    s->fd = fd;
    s->iov_count = iov_count;
    s->user_data = user_data;
    s->gso = gso_size;
    s->addr = *dest;
    s->addrlen = cu_addr_length(dest);
    l->queue[l->queued++] = slot;
    return 0;
}

static cu_completion *push(cb_loop *l) {
    if (l->cq_len >= l->cq_cap) return NULL;
    uint32_t at = (l->cq_head + l->cq_len) % l->cq_cap;
    l->cq_len++;
    cu_completion *c = &l->cq[at];
    memset(c, 0, sizeof(*c));
    return c;
}

static void fill_send(struct cb_send *s, struct msghdr *m) {
    memset(m, 0, sizeof(*m));
    m->msg_name = &s->addr;
    m->msg_namelen = s->addrlen;
    m->msg_iov = s->iov;
    m->msg_iovlen = s->iov_count;
    if (s->gso != 0) cu_msg_set_segment_size(m, s->control.bytes, sizeof(s->control), s->gso);
}

// One sendmmsg per run of queued sends on the same socket, never waiting: the worker thread also
// receives, so a send buffer that is full (a slow egress queue) must not stall it. What the
// kernel cannot take now is dropped, as a router drops, and reported: every queued send gets a
// completion, bytes sent or -errno for the message the kernel refused (sendmmsg stops at it);
// after EAGAIN/ENOBUFS the rest of the run gets the same errno without another system call.
static void flush_sends(cb_loop *l) {
    uint32_t i = 0;
    while (i < l->queued) {
        int fd = l->sends[l->queue[i]].fd;
        uint32_t count = 0;
        while (i + count < l->queued && count < CB_BATCH && l->sends[l->queue[i + count]].fd == fd) {
            fill_send(&l->sends[l->queue[i + count]], &l->msgs[count].msg_hdr);
            l->msgs[count].msg_len = 0;
            count++;
        }
        uint32_t k = 0;
        int interrupted = 0;
        while (k < count) {
            int n = sendmmsg(fd, l->msgs + k, count - k, MSG_DONTWAIT);
            l->sendmmsg_calls++;
            if (n < 0 && errno == EINTR && interrupted++ < 8) continue;
            if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS)) {
                int error = errno;
                for (; k < count; k++) {
                    cu_completion *c = push(l);
                    if (c) {
                        c->user_data = l->sends[l->queue[i + k]].user_data;
                        c->res = -error;
                    }
                }
                break;
            }
            if (n <= 0) {
                cu_completion *c = push(l);
                if (c) {
                    c->user_data = l->sends[l->queue[i + k]].user_data;
                    c->res = n < 0 ? -errno : -EIO;
                }
                k++;
                continue;
            }
            for (int m = 0; m < n; m++) {
                cu_completion *c = push(l);
                if (c) {
                    c->user_data = l->sends[l->queue[i + k + (uint32_t)m]].user_data;
                    c->res = (int32_t)l->msgs[k + (uint32_t)m].msg_len;
                }
            }
            k += (uint32_t)n;
        }
        i += count;
    }
    l->queued = 0;
}

// MARK: - Streams

int cb_watch_accept(cb_loop *l, int fd, uint64_t user_data) {
    // Non-blocking, so an accept after readiness never waits (a connection reset in between).
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) return -errno;
    return arm(l, fd, user_data, CB_ACCEPT, EPOLLIN);
}

int cb_watch_stream(cb_loop *l, int fd, uint64_t user_data) {
    int rc = ensure_watch(l, fd);
    if (rc < 0) return rc;
    l->watches[fd].paused = 0;
    uint32_t events = EPOLLIN | (l->watches[fd].send_pending ? EPOLLOUT : 0);
    return arm(l, fd, user_data, CB_STREAM, events);
}

int cb_pause_stream(cb_loop *l, int fd) {
    if (fd < 0 || (uint32_t)fd >= l->watch_cap || l->watches[fd].kind != CB_STREAM) return -EBADF;
    struct cb_watch_entry *w = &l->watches[fd];
    w->paused = 1;
    struct epoll_event ev;
    memset(&ev, 0, sizeof(ev));
    ev.events = w->send_pending ? EPOLLOUT : 0;
    ev.data.fd = fd;
    return epoll_ctl(l->epfd, EPOLL_CTL_MOD, fd, &ev) < 0 ? -errno : 0;
}

static void stream_events(cb_loop *l, int fd, uint32_t events) {
    struct cb_watch_entry *w = &l->watches[fd];
    struct epoll_event ev;
    memset(&ev, 0, sizeof(ev));
    ev.events = (w->paused ? 0 : EPOLLIN) | (w->send_pending ? EPOLLOUT : 0);
    ev.data.fd = fd;
    epoll_ctl(l->epfd, EPOLL_CTL_MOD, fd, &ev);
}

int cb_stream_send(cb_loop *l, int fd, const void *bytes, uint32_t length, uint64_t user_data) {
    int rc = ensure_watch(l, fd);
    if (rc < 0) return rc;
    struct cb_watch_entry *w = &l->watches[fd];
    if (w->send_pending) return -EBUSY;
    ssize_t n = send(fd, bytes, length, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) && w->kind == CB_STREAM) {
        w->send_pending = 1;
        w->send_bytes = bytes;
        w->send_length = length;
        w->send_user_data = user_data;
        stream_events(l, fd, 0);
        return 0;
    }
    cu_completion *c = push(l);
    if (!c) return -EBUSY;
    c->user_data = user_data;
    c->res = n < 0 ? -errno : (int32_t)n;
    return 0;
}

static void stream_writable(cb_loop *l, int fd) {
    struct cb_watch_entry *w = &l->watches[fd];
    if (!w->send_pending) return;
    ssize_t n = send(fd, w->send_bytes, w->send_length, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    cu_completion *c = push(l);
    if (!c) return;  // retried on the next readiness
    c->user_data = w->send_user_data;
    c->res = n < 0 ? -errno : (int32_t)n;
    w->send_pending = 0;
    stream_events(l, fd, 0);
}

// One recv into a free slot (bytes at offset 0); end of stream and errors end the watch.
static void stream_receive(cb_loop *l, int fd, uint64_t user_data) {
    if (l->cq_len >= l->cq_cap) return;
    if (l->free_count == 0) {
        cu_completion *c = push(l);
        c->user_data = user_data;
        c->res = -ENOBUFS;
        cb_unwatch(l, fd);
        return;
    }
    uint16_t id = l->free_ids[l->free_count - 1];
    unsigned char *slot = l->buffers + (size_t)id * l->slot_stride;
    ssize_t n = recv(fd, slot, l->recv_bytes, MSG_DONTWAIT);
    l->recvmmsg_calls++;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return;
    cu_completion *c = push(l);
    c->user_data = user_data;
    if (n > 0) {
        c->res = (int32_t)n;
        c->cqe_flags = CU_CQE_F_MORE;
        c->payload_length = (uint32_t)n;
        c->buffer_id = id;
        c->has_buffer = 1;
        c->valid = 1;
        l->free_count--;
        return;
    }
    c->res = n == 0 ? 0 : -errno;
    uint8_t pending = l->watches[fd].send_pending;
    if (!pending) {
        cb_unwatch(l, fd);
    } else {
        // Keep the send's watch; stop reading.
        l->watches[fd].kind = CB_STREAM;
        struct epoll_event ev;
        memset(&ev, 0, sizeof(ev));
        ev.events = EPOLLOUT;
        ev.data.fd = fd;
        epoll_ctl(l->epfd, EPOLL_CTL_MOD, fd, &ev);
    }
}

static void accept_ready(cb_loop *l, int fd, uint64_t user_data) {
    for (int i = 0; i < 16 && l->cq_len < l->cq_cap; i++) {
        int client = accept4(fd, NULL, NULL, SOCK_CLOEXEC);
        if (client < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return;
        cu_completion *c = push(l);
        c->user_data = user_data;
        c->res = client < 0 ? -errno : client;
        c->cqe_flags = CU_CQE_F_MORE;
        if (client < 0) return;
    }
}

// Reads datagrams from a ready socket into free slots, one completion each.
static void receive(cb_loop *l, int fd, uint64_t user_data) {
    for (int round = 0; round < CB_ROUNDS_PER_SOCKET; round++) {
        if (l->free_count == 0) {
            // Every slot is held: end the watch like an exhausted multishot receive; the worker
            // re-arms once slots are back. The datagrams wait in the socket meanwhile.
            cu_completion *c = l->cq_len < CB_ERROR_COMPLETIONS ? push(l) : NULL;
            if (c) {
                c->user_data = user_data;
                c->res = -ENOBUFS;
                cb_unwatch(l, fd);
            }
            return;
        }
        uint32_t room = l->cq_cap - l->cq_len;
        uint32_t want = l->free_count < CB_BATCH ? l->free_count : CB_BATCH;
        if (want > room) want = room;
        if (want == 0) return;
        for (uint32_t i = 0; i < want; i++) {
            uint16_t id = l->free_ids[l->free_count - 1 - i];
            unsigned char *slot = l->buffers + (size_t)id * l->slot_stride;
            struct msghdr *m = &l->msgs[i].msg_hdr;
            memset(m, 0, sizeof(*m));
            m->msg_name = slot + 16;
            m->msg_namelen = CU_RECV_NAME_BYTES;
            m->msg_control = slot + 16 + CU_RECV_NAME_BYTES;
            m->msg_controllen = CU_RECV_CONTROL_BYTES;
            l->recv_iov[i].iov_base = slot + CU_RECV_PAYLOAD_OFFSET;
            l->recv_iov[i].iov_len = l->recv_bytes - CU_RECV_PAYLOAD_OFFSET;
            m->msg_iov = &l->recv_iov[i];
            m->msg_iovlen = 1;
            l->msgs[i].msg_len = 0;
        }
        int n = recvmmsg(fd, l->msgs, want, MSG_DONTWAIT, NULL);
        l->recvmmsg_calls++;
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return;
            cu_completion *c = l->cq_len < CB_ERROR_COMPLETIONS ? push(l) : NULL;
            if (c) {
                c->user_data = user_data;
                c->res = -errno;
                c->cqe_flags = CU_CQE_F_MORE;
            }
            return;
        }
        for (int i = 0; i < n; i++) {
            uint16_t id = l->free_ids[l->free_count - 1 - (uint32_t)i];
            struct msghdr *m = &l->msgs[i].msg_hdr;
            cu_completion *c = push(l); // room was reserved above
            if (!c) continue;
            c->user_data = user_data;
            c->res = (int32_t)l->msgs[i].msg_len;
            c->cqe_flags = CU_CQE_F_MORE;
            c->payload_length = l->msgs[i].msg_len;
            c->msg_flags = (uint32_t)m->msg_flags;
            c->buffer_id = id;
            c->has_buffer = 1;
            uint32_t namelen = m->msg_namelen < CU_RECV_NAME_BYTES ? m->msg_namelen : CU_RECV_NAME_BYTES;
            cu_addr_from_name(m->msg_name, namelen, &c->source);
            if (!(m->msg_flags & MSG_CTRUNC)) {
                for (struct cmsghdr *cm = CMSG_FIRSTHDR(m); cm; cm = CMSG_NXTHDR(m, cm)) {
                    uint16_t seg = cu_cmsg_gro_segment(cm);
                    if (seg != 0) c->gro_segment = seg;
                }
            }
            c->valid = c->source.sa.sa_family != 0;
        }
        l->free_count -= (uint32_t)n;
        if ((uint32_t)n < want) return;
    }
}

int cb_submit_and_wait(cb_loop *l, uint64_t timeout_ns) {
    flush_sends(l);
    int timeout_ms = 0;
    if (l->cq_len == 0 && timeout_ns != 0) {
        uint64_t ms = (timeout_ns + 999999ull) / 1000000ull;
        timeout_ms = ms > 60000ull ? 60000 : (int)ms;
    }
    int n = epoll_wait(l->epfd, l->events, CB_EVENTS, timeout_ms);
    if (n < 0) return errno == EINTR ? 0 : -errno;
    for (int i = 0; i < n; i++) {
        int fd = l->events[i].data.fd;
        if (fd < 0 || (uint32_t)fd >= l->watch_cap) continue;
        struct cb_watch_entry w = l->watches[fd];
        if (w.kind == CB_POLL) {
            l->watches[fd].kind = CB_NONE; // one-shot: disarmed until cb_poll_in again
            cu_completion *c = push(l);
            if (c) {
                c->user_data = w.user_data;
                c->res = (int32_t)l->events[i].events;
            }
        } else if (w.kind == CB_RECEIVE) {
            receive(l, fd, w.user_data);
        } else if (w.kind == CB_ACCEPT) {
            accept_ready(l, fd, w.user_data);
        } else if (w.kind == CB_STREAM) {
            uint32_t ev = l->events[i].events;
            if (ev & (EPOLLOUT | EPOLLERR | EPOLLHUP)) stream_writable(l, fd);
            if (!w.paused && (ev & (EPOLLIN | EPOLLERR | EPOLLHUP | EPOLLRDHUP))) stream_receive(l, fd, w.user_data);
        }
    }
    return n;
}

uint32_t cb_reap(cb_loop *l, cu_completion *out, uint32_t max) {
    uint32_t n = 0;
    while (n < max && l->cq_len > 0) {
        out[n++] = l->cq[l->cq_head];
        l->cq_head = (l->cq_head + 1) % l->cq_cap;
        l->cq_len--;
    }
    return n;
}

uint64_t cb_sendmmsg_calls(const cb_loop *l) { return l->sendmmsg_calls; }
uint64_t cb_recvmmsg_calls(const cb_loop *l) { return l->recvmmsg_calls; }
