#ifndef CURING_H
#define CURING_H
// The io_uring backend: the only target that includes <liburing.h> (in CURing.c) and links liburing.
// Swift sees only the functions below; the slot layout, cu_addr and cu_completion they use are the
// neutral ones of CUDP.h, shared with the batched-syscall backend (CBatched).

#include "CUDP.h"

#ifdef __cplusplus
extern "C" {
#endif

// MARK: - Ring

typedef struct cu_ring cu_ring;

enum cu_ring_mode {
    CU_MODE_SINGLE_ISSUER_DEFER_TASKRUN = 1,
    CU_MODE_COOP_TASKRUN = 2,
    CU_MODE_PLAIN = 3,
};

// Creates a ring with `entries` SQEs (CQ 4x larger) and a provided buffer ring of `buffer_count`
// (power of two, <= 32768) slots of `slot_stride` bytes at `buffers`; the kernel is told each slot
// holds `recv_bytes` (<= slot_stride), the rest of a slot is the shell's slack (GRO spreading,
// tailroom). Tries SINGLE_ISSUER|DEFER_TASKRUN, then COOP_TASKRUN, then no flags.
// Returns NULL and sets *error to a negative errno and *stage to what failed (1 = ring setup,
// 2 = buffer ring registration, 3 = memory).
cu_ring *cu_ring_create(uint32_t entries, void *buffers, uint32_t buffer_count, uint32_t slot_stride,
                        uint32_t recv_bytes, int *error, int *stage);
void cu_ring_destroy(cu_ring *ring);
int cu_ring_mode(const cu_ring *ring);

// Returns `count` buffers (by id) to the provided buffer ring in one publication.
void cu_buffers_return(cu_ring *ring, const uint16_t *ids, uint32_t count);

// MARK: - Submissions (each returns 0, or -EBUSY when no SQE is free even after flushing)

// Arms a multishot recvmsg on `fd` drawing from the provided buffer ring.
int cu_prep_recv_multishot(cu_ring *ring, int fd, uint64_t user_data);
// Arms a multishot accept on the TCP listener `fd`: one completion per connection, res = its fd.
int cu_prep_accept_multishot(cu_ring *ring, int fd, uint64_t user_data);
// Arms a multishot recv on the stream socket `fd` drawing from the provided buffer ring; the bytes
// land at offset 0 of the buffer (`user_data`'s kind must be CU_KIND_STREAM_RECEIVE so cu_reap
// does not decode them as a recvmsg).
int cu_prep_stream_recv_multishot(cu_ring *ring, int fd, uint64_t user_data);
// send(fd, bytes, length, MSG_NOSIGNAL); `bytes` must stay untouched until the completion.
int cu_prep_stream_send(cu_ring *ring, int fd, const void *bytes, uint32_t length, uint64_t user_data);
// Cancels the request carrying `user_data` (its completion arrives with -ECANCELED).
int cu_prep_cancel(cu_ring *ring, uint64_t cancel_user_data, uint64_t user_data);
// One-shot POLLIN on `fd` (a wake-up eventfd).
int cu_prep_poll_in(cu_ring *ring, int fd, uint64_t user_data);
// One completion (res = revents) when `fd` is writable: a non-blocking connect finished.
int cu_prep_poll_out(cu_ring *ring, int fd, uint64_t user_data);

// Per-send storage: `cu_send_slot_count` slots, each with room for CU_SEND_MAX_IOV iovecs. The
// storage stays untouched by the shim until the completion of the send that used it arrives.
struct iovec *cu_send_iovecs(cu_ring *ring, uint32_t slot);
uint32_t cu_send_slot_count(const cu_ring *ring);
// Prepares sendmsg(fd, dest, iovecs[0..<iov_count] of `slot`), with a UDP_SEGMENT cmsg of
// `gso_size` when gso_size != 0.
int cu_prep_send(cu_ring *ring, uint32_t slot, int fd, const cu_addr *dest, uint32_t iov_count,
                 uint16_t gso_size, uint64_t user_data);

// MARK: - Submit and reap

// Submits pending SQEs and waits for at least one completion or `timeout_ns` (0: only collects what
// is ready). Returns >= 0 or -errno (-ETIME on timeout is mapped to 0).
int cu_submit_and_wait(cu_ring *ring, uint64_t timeout_ns);
// Like cu_submit_and_wait, but waits for up to `batch` completions: after `min_wait_us` it returns
// as soon as at least one is there (so a quiet socket costs one wake-up per min_wait_us at most,
// not one per datagram), and until `timeout_ns` for the first. Falls back to cu_submit_and_wait
// when the kernel lacks IORING_FEAT_MIN_TIMEOUT (before 6.12) or batch <= 1 or min_wait_us == 0.
// Returns at once, without waiting, when completions are already there after the submit (sends
// complete inside it): the caller reaps those first, so a wait starts with an empty queue.
int cu_submit_and_wait_batch(cu_ring *ring, uint64_t timeout_ns, uint32_t batch, uint32_t min_wait_us);
// 1 when the kernel takes the batch wait above.
int cu_min_timeout_supported(const cu_ring *ring);
// Submits pending SQEs without waiting.
int cu_submit(cu_ring *ring);

// Copies up to `max` completions into `out` and consumes them. Never blocks.
uint32_t cu_reap(cu_ring *ring, cu_completion *out, uint32_t max);

// Completion-queue overflow, as the kernel reports it. `overflowed_reaps`: cu_reap calls that found
// the kernel holding completions the CQ had no room for (IORING_SQ_CQ_OVERFLOW; they are kept on
// the kernel's overflow list and flushed as room frees, and a multishot receive whose completion
// did not fit ends and is re-armed). `lost`: completions the kernel dropped because it could not
// even keep them on that list (the CQ ring's overflow counter); each one leaks what it carried
// (a receive buffer, a send slot).
void cu_ring_overflow(const cu_ring *ring, uint64_t *overflowed_reaps, uint32_t *lost);

// MARK: - Probe

// Sets up a small ring, checks RECVMSG/SENDMSG/POLL/ASYNC_CANCEL support and registers a buffer
// ring. Returns 0, or a negative errno with *stage = 1 (io_uring_setup), 2 (opcode missing,
// *missing_opcode set), 3 (buffer ring registration, kernel < 5.19), 4 (multishot recvmsg, kernel < 6.0).
int cu_probe(int *stage, int *missing_opcode);

#ifdef __cplusplus
}
#endif

#endif
