#ifndef CBATCHED_H
#define CBATCHED_H
// Batched UDP syscalls: epoll + recvmmsg/sendmmsg, plain syscalls only (no io_uring). Two layers:
// - cb_loop, the relay's second I/O backend: recvmmsg/sendmmsg with UDP_GRO/UDP_SEGMENT, epoll for
//   readiness. It offers the same shape as the ring in CURing.h (arm a receive, prepare a send,
//   submit-and-wait, reap decoded CUDP completions) so the worker runs unchanged on top of either.
// - cb_batch and cb_epoll_*, thin wrappers for a caller that drives its own loop (the benchmark's
//   load generator): the Glibc Swift module does not expose mmsghdr, sendmmsg, recvmmsg or epoll.

#include "CUDP.h"

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
// One completion (res = the epoll events) when `fd` is writable (a non-blocking connect finished).
int cb_poll_out(cb_loop *loop, int fd, uint64_t user_data);

// Streams (TURN over TCP/TLS). cb_watch_accept: completions with res = an accepted fd (or -errno)
// while `fd` (a listener, made non-blocking here) is watched. cb_watch_stream: one completion per
// recv into a free slot, bytes at offset 0, payload_length = res; res 0 (end of stream) or an error
// ends the watch. cb_stream_send: send now, or when the socket is writable again; exactly one
// completion (bytes sent, -errno, or -ECANCELED after cb_unwatch); -EBUSY while one is pending.
int cb_watch_accept(cb_loop *loop, int fd, uint64_t user_data);
int cb_watch_stream(cb_loop *loop, int fd, uint64_t user_data);
// Stops reading a watched stream socket (no completion follows); a send waiting for room still
// completes. cb_watch_stream reads it again.
int cb_pause_stream(cb_loop *loop, int fd);
int cb_stream_send(cb_loop *loop, int fd, const void *bytes, uint32_t length, uint64_t user_data);

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

// MARK: - Plain batches and epoll (CBatchedIO.c)

typedef struct cb_batch cb_batch;

// A batch of `capacity` message headers, each with one iovec.
cb_batch *cb_batch_create(unsigned capacity);
void cb_batch_destroy(cb_batch *b);
// Points message `i` at `base`/`len` and the destination `dest` (NULL for none; it must outlive the
// sends, the batch keeps the pointer).
void cb_batch_set(cb_batch *b, unsigned i, void *base, size_t len, const cu_addr *dest);
void cb_batch_set_length(cb_batch *b, unsigned i, size_t len);
void cb_batch_set_destination(cb_batch *b, unsigned i, const cu_addr *dest);
// Length of message `i` after cb_recvmmsg.
unsigned cb_batch_received_length(const cb_batch *b, unsigned i);

// sendmmsg(2) of the first `n` messages; returns how many were sent, or -errno.
int cb_sendmmsg(int fd, cb_batch *b, unsigned n);
// recvmmsg(2) with MSG_DONTWAIT into the first `n` messages (source names not kept); returns how
// many, or -errno.
int cb_recvmmsg(int fd, cb_batch *b, unsigned n);

// An epoll instance (close-on-exec); fd or -errno.
int cb_epoll_create(void);
// Watches `fd` for EPOLLIN, reporting `data`. 0 or -errno.
int cb_epoll_add(int epfd, int fd, uint64_t data);
// Waits up to `timeout_ms`; writes the data of ready descriptors to `out` (at most 64); returns the
// count, or -errno.
int cb_epoll_wait(int epfd, uint64_t *out, int max, int timeout_ms);

#ifdef __cplusplus
}
#endif

#endif
