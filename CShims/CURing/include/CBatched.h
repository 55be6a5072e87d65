#ifndef CBATCHED_H
#define CBATCHED_H
// The batched-syscall backend: recvmmsg/sendmmsg with UDP_GRO/UDP_SEGMENT, epoll for readiness.
// Plain syscalls only (CBatched.c does not include <liburing.h>); it offers the same shape as the
// ring in CURing.h (arm a receive, prepare a send, submit-and-wait, reap decoded completions) so the
// worker runs unchanged on top of either.

#include "CURing.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct cb_loop cb_loop;

// Creates an epoll instance and the loop's state over the worker's receive slots: `buffer_count`
// slots of `slot_stride` bytes at `buffers`, laid out like the io_uring ones (name at 16, control
// at 48, payload at CU_RECV_PAYLOAD_OFFSET, up to `recv_bytes` per slot in total), all free at
// first. `send_slots` sends may be outstanding (prepared, not yet reaped). NULL with *error = -errno.
cb_loop *cb_loop_create(void *buffers, uint32_t buffer_count, uint32_t slot_stride, uint32_t recv_bytes,
                        uint32_t send_slots, int *error);
void cb_loop_destroy(cb_loop *loop);

// Gives `count` slots back to the free list receives draw from.
void cb_buffers_return(cb_loop *loop, const uint16_t *ids, uint32_t count);

// Watches `fd` for datagrams (level-triggered); each datagram read becomes a completion carrying
// `user_data`, with CU_CQE_F_MORE while the watch lasts. When no slot is free the watch ends with a
// -ENOBUFS completion (no CU_CQE_F_MORE), like a multishot receive. 0 or -errno.
int cb_watch(cb_loop *loop, int fd, uint64_t user_data);
// Stops watching `fd` (before it is closed). 0 or -errno.
int cb_unwatch(cb_loop *loop, int fd);
// One-shot readability of `fd` (a wake-up eventfd): one completion, then re-arm. 0 or -errno.
int cb_poll_in(cb_loop *loop, int fd, uint64_t user_data);

uint32_t cb_send_slot_count(const cb_loop *loop);
struct iovec *cb_send_iovecs(cb_loop *loop, uint32_t slot);
// Queues sendmsg(fd, dest, iovecs of `slot`) (UDP_SEGMENT `gso_size` when != 0); it is sent by the
// next cb_submit_and_wait in one sendmmsg per run of sends on the same socket. 0 or -errno.
int cb_prep_send(cb_loop *loop, uint32_t slot, int fd, const cu_addr *dest, uint32_t iov_count,
                 uint16_t gso_size, uint64_t user_data);

// Sends what is queued, then waits up to `timeout_ns` (not at all when completions are pending)
// for readiness and reads the ready sockets with recvmmsg. Returns >= 0 or -errno.
int cb_submit_and_wait(cb_loop *loop, uint64_t timeout_ns);
// Copies up to `max` completions into `out` and consumes them.
uint32_t cb_reap(cb_loop *loop, cu_completion *out, uint32_t max);

// Counters of the syscalls made (for statistics and benchmarks).
uint64_t cb_sendmmsg_calls(const cb_loop *loop);
uint64_t cb_recvmmsg_calls(const cb_loop *loop);

#ifdef __cplusplus
}
#endif

#endif
