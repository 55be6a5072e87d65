// The io_uring backend (see CURing.h). Sockets, addresses and the cmsg helpers come from CUDP.
#define _GNU_SOURCE
#include "CURing.h"
#include "CUDPMessage.h"

#include <liburing.h>

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

_Static_assert(CU_CQE_F_MORE == IORING_CQE_F_MORE, "CUDP's CU_CQE_F_MORE must be io_uring's IORING_CQE_F_MORE");


#define CU_BUFFER_GROUP 0

struct cu_send_slot {
    struct msghdr msg;
    cu_addr addr;
    union {
        size_t align; // cmsghdr alignment
        char bytes[32]; // >= CMSG_SPACE(sizeof(uint16_t)) = 24
    } control;
    struct iovec iov[CU_SEND_MAX_IOV];
};

// IORING_FEAT_MIN_TIMEOUT and the 6.12 layout of io_uring_getevents_arg, which liburing 2.3's
// headers predate (there the min_wait_usec word is called pad and must be zero).
#ifndef IORING_FEAT_MIN_TIMEOUT
#define IORING_FEAT_MIN_TIMEOUT (1U << 15)
#endif
struct cu_getevents_arg {
    uint64_t sigmask;
    uint32_t sigmask_sz;
    uint32_t min_wait_usec;
    uint64_t ts;
};

struct cu_ring {
    struct io_uring ring;
    int mode;
    struct io_uring_buf_ring *buf_ring;
    size_t buf_ring_bytes;
    uint32_t buffer_count;
    uint32_t buffer_mask;
    unsigned char *buffers;
    uint32_t slot_stride;
    uint32_t recv_bytes;
    // The msghdr every multishot recvmsg uses: only msg_namelen and msg_controllen matter, they fix
    // the layout of every provided buffer (see CURing.h).
    struct msghdr recv_msg;
    struct cu_send_slot *send_slots;
    uint32_t send_slot_count;
    // Whether the kernel takes a batch wait (min_wait_usec in io_uring_getevents_arg, 6.12+).
    int min_timeout_supported;
    // cu_reap calls that found IORING_SQ_CQ_OVERFLOW set (see cu_ring_overflow).
    uint64_t overflowed_reaps;
};

static int ring_init(struct io_uring *ring, uint32_t entries, int *mode) {
    struct io_uring_params p;
    const uint32_t attempts[3] = {
        IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN,
        IORING_SETUP_COOP_TASKRUN,
        0,
    };
    const int modes[3] = {CU_MODE_SINGLE_ISSUER_DEFER_TASKRUN, CU_MODE_COOP_TASKRUN, CU_MODE_PLAIN};
    int rc = -EINVAL;
    for (int i = 0; i < 3; i++) {
        memset(&p, 0, sizeof(p));
        p.flags = attempts[i] | IORING_SETUP_CQSIZE | IORING_SETUP_SUBMIT_ALL;
        p.cq_entries = entries * 4;
        rc = io_uring_queue_init_params(entries, ring, &p);
        if (rc == 0) {
            *mode = modes[i];
            return 0;
        }
        // Only an unknown flag is worth retrying with fewer flags; EPERM/ENOSYS/ENOMEM are final.
        if (rc != -EINVAL) return rc;
    }
    return rc;
}

cu_ring *cu_ring_create(uint32_t entries, void *buffers, uint32_t buffer_count, uint32_t slot_stride,
                        uint32_t recv_bytes, int *error, int *stage) {
    *error = 0;
    *stage = 0;
    if (buffer_count == 0 || buffer_count > 32768 || (buffer_count & (buffer_count - 1)) != 0 ||
        recv_bytes > slot_stride || recv_bytes <= CU_RECV_PAYLOAD_OFFSET) {
        *error = -EINVAL;
        *stage = 3;
        return NULL;
    }
    cu_ring *r = calloc(1, sizeof(*r));
    if (!r) {
        *error = -ENOMEM;
        *stage = 3;
        return NULL;
    }
    int rc = ring_init(&r->ring, entries, &r->mode);
    if (rc < 0) {
        free(r);
        *error = rc;
        *stage = 1;
        return NULL;
    }
    r->min_timeout_supported = (r->ring.features & IORING_FEAT_MIN_TIMEOUT) != 0;

    // liburing 2.3 has no io_uring_setup_buf_ring: map the ring memory and register it ourselves.
    size_t bytes = (size_t)buffer_count * sizeof(struct io_uring_buf);
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    bytes = (bytes + page - 1) & ~(page - 1);
    void *mem = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
    if (mem == MAP_FAILED) {
        *error = -errno;
        *stage = 3;
        io_uring_queue_exit(&r->ring);
        free(r);
        return NULL;
    }
    struct io_uring_buf_reg reg;
    memset(&reg, 0, sizeof(reg));
    reg.ring_addr = (uint64_t)(uintptr_t)mem;
    reg.ring_entries = buffer_count;
    reg.bgid = CU_BUFFER_GROUP;
    rc = io_uring_register_buf_ring(&r->ring, &reg, 0);
    if (rc < 0) {
        *error = rc;
        *stage = 2;
        munmap(mem, bytes);
        io_uring_queue_exit(&r->ring);
        free(r);
        return NULL;
    }
    r->buf_ring = mem;
    r->buf_ring_bytes = bytes;
    r->buffer_count = buffer_count;
    r->buffer_mask = (uint32_t)io_uring_buf_ring_mask(buffer_count);
    r->buffers = buffers;
    r->slot_stride = slot_stride;
    r->recv_bytes = recv_bytes;
    io_uring_buf_ring_init(r->buf_ring);
    for (uint32_t i = 0; i < buffer_count; i++) {
        io_uring_buf_ring_add(r->buf_ring, r->buffers + (size_t)i * slot_stride, recv_bytes, (unsigned short)i,
                              (int)r->buffer_mask, (int)i);
    }
    io_uring_buf_ring_advance(r->buf_ring, (int)buffer_count);

    memset(&r->recv_msg, 0, sizeof(r->recv_msg));
    r->recv_msg.msg_namelen = CU_RECV_NAME_BYTES;
    r->recv_msg.msg_controllen = CU_RECV_CONTROL_BYTES;

    // One send slot per SQE is enough: a send slot is busy only while its SQE is in flight.
    r->send_slot_count = entries;
    r->send_slots = calloc(entries, sizeof(struct cu_send_slot));
    if (!r->send_slots) {
        *error = -ENOMEM;
        *stage = 3;
        cu_ring_destroy(r);
        return NULL;
    }
    return r;
}

void cu_ring_destroy(cu_ring *r) {
    if (!r) return;
    if (r->buf_ring) {
        io_uring_unregister_buf_ring(&r->ring, CU_BUFFER_GROUP);
        munmap(r->buf_ring, r->buf_ring_bytes);
    }
    io_uring_queue_exit(&r->ring);
    free(r->send_slots);
    free(r);
}

int cu_ring_mode(const cu_ring *r) { return r->mode; }

void cu_buffers_return(cu_ring *r, const uint16_t *ids, uint32_t count) {
    for (uint32_t i = 0; i < count; i++) {
        uint16_t id = ids[i];
        if (id >= r->buffer_count) continue;
        io_uring_buf_ring_add(r->buf_ring, r->buffers + (size_t)id * r->slot_stride, r->recv_bytes, id,
                              (int)r->buffer_mask, (int)i);
    }
    io_uring_buf_ring_advance(r->buf_ring, (int)count);
}

static struct io_uring_sqe *next_sqe(cu_ring *r) {
    struct io_uring_sqe *sqe = io_uring_get_sqe(&r->ring);
    if (sqe) return sqe;
    // The SQ is full of prepared entries: hand them to the kernel and try once more.
    io_uring_submit(&r->ring);
    return io_uring_get_sqe(&r->ring);
}

int cu_prep_recv_multishot(cu_ring *r, int fd, uint64_t user_data) {
    struct io_uring_sqe *sqe = next_sqe(r);
    if (!sqe) return -EBUSY;
    io_uring_prep_recvmsg_multishot(sqe, fd, &r->recv_msg, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = CU_BUFFER_GROUP;
    io_uring_sqe_set_data64(sqe, user_data);
    return 0;
}

int cu_prep_accept_multishot(cu_ring *r, int fd, uint64_t user_data) {
    struct io_uring_sqe *sqe = next_sqe(r);
    if (!sqe) return -EBUSY;
    io_uring_prep_multishot_accept(sqe, fd, NULL, NULL, SOCK_CLOEXEC);
    io_uring_sqe_set_data64(sqe, user_data);
    return 0;
}

int cu_prep_stream_recv_multishot(cu_ring *r, int fd, uint64_t user_data) {
    struct io_uring_sqe *sqe = next_sqe(r);
    if (!sqe) return -EBUSY;
    io_uring_prep_recv_multishot(sqe, fd, NULL, 0, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = CU_BUFFER_GROUP;
    io_uring_sqe_set_data64(sqe, user_data);
    return 0;
}

int cu_prep_stream_send(cu_ring *r, int fd, const void *bytes, uint32_t length, uint64_t user_data) {
    struct io_uring_sqe *sqe = next_sqe(r);
    if (!sqe) return -EBUSY;
    io_uring_prep_send(sqe, fd, bytes, length, MSG_NOSIGNAL);
    io_uring_sqe_set_data64(sqe, user_data);
    return 0;
}

int cu_prep_cancel(cu_ring *r, uint64_t cancel_user_data, uint64_t user_data) {
    struct io_uring_sqe *sqe = next_sqe(r);
    if (!sqe) return -EBUSY;
    io_uring_prep_cancel64(sqe, cancel_user_data, 0);
    io_uring_sqe_set_data64(sqe, user_data);
    return 0;
}

static int prep_poll(cu_ring *r, int fd, unsigned mask, uint64_t user_data) {
    struct io_uring_sqe *sqe = next_sqe(r);
    if (!sqe) return -EBUSY;
    io_uring_prep_poll_add(sqe, fd, mask);
    io_uring_sqe_set_data64(sqe, user_data);
    return 0;
}

int cu_prep_poll_in(cu_ring *r, int fd, uint64_t user_data) { return prep_poll(r, fd, POLLIN, user_data); }

int cu_prep_poll_out(cu_ring *r, int fd, uint64_t user_data) { return prep_poll(r, fd, POLLOUT, user_data); }

struct iovec *cu_send_iovecs(cu_ring *r, uint32_t slot) {
    if (slot >= r->send_slot_count) return NULL;
    return r->send_slots[slot].iov;
}

uint32_t cu_send_slot_count(const cu_ring *r) { return r->send_slot_count; }

int cu_prep_send(cu_ring *r, uint32_t slot, int fd, const cu_addr *dest, uint32_t iov_count, uint16_t gso_size,
                 uint64_t user_data) {
    if (slot >= r->send_slot_count || iov_count == 0 || iov_count > CU_SEND_MAX_IOV) return -EINVAL;
    struct io_uring_sqe *sqe = next_sqe(r);
    if (!sqe) return -EBUSY;
    struct cu_send_slot *s = &r->send_slots[slot];
    memset(&s->msg, 0, sizeof(s->msg));
    s->addr = *dest;
    s->msg.msg_name = &s->addr;
    s->msg.msg_namelen = cu_addr_length(dest);
    s->msg.msg_iov = s->iov;
    s->msg.msg_iovlen = iov_count;
    if (gso_size != 0) cu_msg_set_segment_size(&s->msg, s->control.bytes, sizeof(s->control), gso_size);
    // MSG_DONTWAIT: a full socket send buffer (the egress queue toward that peer backed up) fails
    // the send with EAGAIN at once. Without it io_uring would wait for room, and every send in
    // flight holds a send slot and a receive buffer the worker's other sockets share: one
    // congested peer would stall the whole worker.
    io_uring_prep_sendmsg(sqe, fd, &s->msg, MSG_DONTWAIT);
    io_uring_sqe_set_data64(sqe, user_data);
    return 0;
}

int cu_submit_and_wait(cu_ring *r, uint64_t timeout_ns) {
    if (timeout_ns == 0) {
        // Do not sleep, but still let the kernel post completions: with DEFER_TASKRUN they are only
        // produced inside io_uring_enter(GETEVENTS).
        int rc = io_uring_submit(&r->ring);
        if (rc < 0 && rc != -EINTR) return rc;
        rc = io_uring_get_events(&r->ring);
        return rc == -EINTR ? 0 : rc;
    }
    struct __kernel_timespec ts;
    ts.tv_sec = (long long)(timeout_ns / 1000000000ull);
    ts.tv_nsec = (long long)(timeout_ns % 1000000000ull);
    struct io_uring_cqe *cqe = NULL;
    int rc = io_uring_submit_and_wait_timeout(&r->ring, &cqe, 1, &ts, NULL);
    if (rc == -ETIME || rc == -EINTR) return 0;
    return rc;
}

int cu_min_timeout_supported(const cu_ring *r) { return r->min_timeout_supported; }

int cu_submit_and_wait_batch(cu_ring *r, uint64_t timeout_ns, uint32_t batch, uint32_t min_wait_us) {
    if (timeout_ns == 0 || batch <= 1 || min_wait_us == 0 || !r->min_timeout_supported)
        return cu_submit_and_wait(r, timeout_ns);
    // Submit first (no wait), then one wait for `batch` completions that gives up on the batch after
    // min_wait_us: the kernel returns then if at least one completion is there, else it keeps waiting
    // up to the timeout for the first one.
    if (io_uring_sq_ready(&r->ring) > 0) {
        int rc = io_uring_submit(&r->ring);
        if (rc < 0 && rc != -EINTR && rc != -EBUSY && rc != -EAGAIN) return rc;
    }
    // Completions already there (a UDP or TCP send completes inside the submit above) go back to
    // the caller first. Waited on, they would count as "at least one" when min_wait_us expires and
    // end that wait with a wake-up that brings no datagram: one extra wake-up per batch.
    if (io_uring_cq_ready(&r->ring) > 0) return 0;
    struct __kernel_timespec ts;
    ts.tv_sec = (long long)(timeout_ns / 1000000000ull);
    ts.tv_nsec = (long long)(timeout_ns % 1000000000ull);
    struct cu_getevents_arg arg;
    memset(&arg, 0, sizeof(arg));
    arg.sigmask_sz = _NSIG / 8;
    arg.min_wait_usec = min_wait_us;
    arg.ts = (uint64_t)(uintptr_t)&ts;
    long rc = syscall(__NR_io_uring_enter, r->ring.ring_fd, 0, batch,
                      IORING_ENTER_GETEVENTS | IORING_ENTER_EXT_ARG, &arg, sizeof(arg));
    if (rc >= 0) return 0;
    int error = errno;
    if (error == ETIME || error == EINTR || error == EBUSY || error == EAGAIN) return 0;
    if (error == EINVAL) {
        // A kernel that advertises the feature but refuses the argument: stop asking.
        r->min_timeout_supported = 0;
        return 0;
    }
    return -error;
}

int cu_submit(cu_ring *r) {
    int rc = io_uring_submit(&r->ring);
    return rc == -EINTR ? 0 : rc;
}

static void decode_receive(cu_ring *r, cu_completion *c) {
    unsigned char *buf = r->buffers + (size_t)c->buffer_id * r->slot_stride;
    struct io_uring_recvmsg_out *o = io_uring_recvmsg_validate(buf, c->res, &r->recv_msg);
    if (!o) return;
    c->msg_flags = o->flags;
    // The payload bytes that actually landed in the buffer (a truncated datagram reports its
    // full length in payloadlen together with MSG_TRUNC).
    uint32_t landed = io_uring_recvmsg_payload_length(o, c->res, &r->recv_msg);
    c->payload_length = o->payloadlen < landed ? o->payloadlen : landed;
    uint32_t namelen = o->namelen < CU_RECV_NAME_BYTES ? o->namelen : CU_RECV_NAME_BYTES;
    cu_addr_from_name(io_uring_recvmsg_name(o), namelen, &c->source);
    if (o->controllen <= CU_RECV_CONTROL_BYTES) {
        for (struct cmsghdr *cm = io_uring_recvmsg_cmsg_firsthdr(o, &r->recv_msg); cm;
             cm = io_uring_recvmsg_cmsg_nexthdr(o, &r->recv_msg, cm)) {
            uint16_t seg = cu_cmsg_gro_segment(cm);
            if (seg != 0) c->gro_segment = seg;
        }
    }
    c->valid = c->source.sa.sa_family != 0;
}

uint32_t cu_reap(cu_ring *r, cu_completion *out, uint32_t max) {
    uint32_t n = 0;
    // io_uring_peek_batch_cqe flushes the kernel's overflow list when the CQ is empty; counted here.
    if (IO_URING_READ_ONCE(*r->ring.sq.kflags) & IORING_SQ_CQ_OVERFLOW) r->overflowed_reaps++;
    struct io_uring_cqe *cqes[256];
    while (n < max) {
        unsigned want = max - n < 256 ? max - n : 256;
        unsigned got = io_uring_peek_batch_cqe(&r->ring, cqes, want);
        if (got == 0) break;
        for (unsigned i = 0; i < got; i++) {
            cu_completion *c = &out[n++];
            memset(c, 0, sizeof(*c));
            c->user_data = cqes[i]->user_data;
            c->res = cqes[i]->res;
            c->cqe_flags = cqes[i]->flags;
            if (cqes[i]->flags & IORING_CQE_F_BUFFER) {
                c->has_buffer = 1;
                c->buffer_id = (uint16_t)(cqes[i]->flags >> IORING_CQE_BUFFER_SHIFT);
                if ((c->user_data >> 56) == CU_KIND_STREAM_RECEIVE) {
                    // A stream receive: the bytes are at offset 0 of the buffer, nothing to decode.
                    c->payload_length = c->res > 0 ? (uint32_t)c->res : 0;
                    c->valid = 1;
                } else if (c->buffer_id < r->buffer_count && c->res > 0) {
                    decode_receive(r, c);
                }
            }
        }
        io_uring_cq_advance(&r->ring, got);
    }
    return n;
}

void cu_ring_overflow(const cu_ring *r, uint64_t *overflowed_reaps, uint32_t *lost) {
    *overflowed_reaps = r->overflowed_reaps;
    *lost = IO_URING_READ_ONCE(*r->ring.cq.koverflow);
}

// MARK: - Probe

int cu_probe(int *stage, int *missing_opcode) {
    *stage = 0;
    *missing_opcode = -1;
    struct io_uring ring;
    int rc = io_uring_queue_init(8, &ring, 0);
    if (rc < 0) {
        *stage = 1;
        return rc;
    }
    struct io_uring_probe *p = io_uring_get_probe_ring(&ring);
    if (p) {
        const int needed[] = {IORING_OP_RECVMSG, IORING_OP_SENDMSG, IORING_OP_POLL_ADD, IORING_OP_ASYNC_CANCEL};
        for (unsigned i = 0; i < sizeof(needed) / sizeof(needed[0]); i++) {
            if (!io_uring_opcode_supported(p, needed[i])) {
                *stage = 2;
                *missing_opcode = needed[i];
                io_uring_free_probe(p);
                io_uring_queue_exit(&ring);
                return -EOPNOTSUPP;
            }
        }
        io_uring_free_probe(p);
    }
    io_uring_queue_exit(&ring);

    // Buffer ring registration (5.19) and multishot recvmsg (6.0): exercise them on loopback.
    enum { N = 4, STRIDE = 256 };
    static unsigned char probe_buffers[N * STRIDE];
    int err = 0, st = 0;
    cu_ring *r = cu_ring_create(8, probe_buffers, N, STRIDE, STRIDE, &err, &st);
    if (!r) {
        *stage = st == 2 ? 3 : 1;
        return err;
    }
    cu_addr lo;
    memset(&lo, 0, sizeof(lo));
    lo.in4.sin_family = AF_INET;
    lo.in4.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int gro = 0;
    int fd = cu_udp_socket(&lo, 0, 0, &gro);
    if (fd < 0) {
        // No loopback socket: nothing more can be checked here; the ring itself works.
        cu_ring_destroy(r);
        return 0;
    }
    cu_addr self;
    rc = cu_local_address(fd, &self);
    if (rc == 0) rc = cu_prep_recv_multishot(r, fd, 1);
    if (rc == 0) rc = cu_submit(r);
    if (rc >= 0) {
        sendto(fd, "probe", 5, 0, &self.sa, cu_addr_length(&self));
        rc = 0;
        cu_completion c;
        for (int attempt = 0; attempt < 10 && rc == 0; attempt++) {
            cu_submit_and_wait(r, 100000000ull);
            if (cu_reap(r, &c, 1) == 1) {
                if (c.res < 0) {
                    *stage = 4;
                    rc = c.res;
                } else {
                    rc = 1;
                }
            }
        }
        if (rc == 1) rc = 0;
    }
    close(fd);
    cu_ring_destroy(r);
    return rc;
}
