#ifndef CURING_H
#define CURING_H
// The io_uring shim. The only code in the project that includes <liburing.h> is CURing.c; Swift sees
// only the plain structs and functions below (and Glibc's iovec).

#include <stdint.h>
#include <stddef.h>
#include <sys/uio.h>

#ifdef __cplusplus
extern "C" {
#endif

// MARK: - Receive buffer layout
//
// A provided buffer ("slot") is filled by multishot recvmsg as:
//   [0, 16)            struct io_uring_recvmsg_out
//   [16, 48)           source address (msg_namelen = 32 >= sizeof(struct sockaddr_in6) = 28)
//   [48, 96)           control messages (msg_controllen = 48 >= CMSG_SPACE(sizeof(int)) = 24 for UDP_GRO)
//   [96, 96 + cap)     payload
// The payload therefore always starts at offset 96: after the shim has decoded the header, name and
// control into a cu_completion, those 96 bytes are free headroom (>= the core's 64).
#define CU_RECV_NAME_BYTES 32u
#define CU_RECV_CONTROL_BYTES 48u
#define CU_RECV_PAYLOAD_OFFSET 96u

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
// Cancels the request carrying `user_data` (its completion arrives with -ECANCELED).
int cu_prep_cancel(cu_ring *ring, uint64_t cancel_user_data, uint64_t user_data);
// One-shot POLLIN on `fd` (a wake-up eventfd).
int cu_prep_poll_in(cu_ring *ring, int fd, uint64_t user_data);

// A destination in plain form: family 4 or 6, port in host order, address bytes in network order
// (4 or 16 used).
typedef struct cu_addr {
    uint8_t family;
    uint8_t reserved;
    uint16_t port;
    uint8_t bytes[16];
} cu_addr;

// Per-send storage: `cu_send_slots` of them, each with room for CU_SEND_MAX_IOV iovecs. The
// storage stays untouched by the shim until the completion of the send that used it arrives.
#define CU_SEND_MAX_IOV 64u
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
int cu_submit_and_wait_batch(cu_ring *ring, uint64_t timeout_ns, uint32_t batch, uint32_t min_wait_us);
// 1 when the kernel takes the batch wait above.
int cu_min_timeout_supported(const cu_ring *ring);
// Submits pending SQEs without waiting.
int cu_submit(cu_ring *ring);

#define CU_CQE_F_MORE 2u

// One completion, decoded. For a receive (has_buffer = 1) the header, source and UDP_GRO segment
// size have been read out of the buffer, so its first CU_RECV_PAYLOAD_OFFSET bytes are free.
typedef struct cu_completion {
    uint64_t user_data;
    int32_t res;
    uint32_t cqe_flags;
    uint32_t payload_length;   // receives: bytes of payload at CU_RECV_PAYLOAD_OFFSET
    uint32_t msg_flags;        // receives: MSG_TRUNC / MSG_CTRUNC as reported by the kernel
    uint16_t buffer_id;
    uint16_t gro_segment;      // receives: UDP_GRO segment size, 0 when not coalesced
    uint8_t has_buffer;
    uint8_t valid;             // receives: header and address decoded sanely
    cu_addr source;
} cu_completion;

// Copies up to `max` completions into `out` and consumes them. Never blocks.
uint32_t cu_reap(cu_ring *ring, cu_completion *out, uint32_t max);

// MARK: - Sockets (plain syscalls, no io_uring)

enum cu_socket_option {
    CU_SO_REUSEPORT = 1,
    CU_SO_GRO = 2,
    CU_SO_V6ONLY = 4,
    // No UDP checksums on send. The kernel then refuses UDP_SEGMENT with EINVAL, which is how
    // tests exercise the GSO fallback on loopback.
    CU_SO_NO_CHECK = 8,
};

// A UDP socket bound to `bind`; returns fd or -errno. GRO failure is not fatal
// (*gro_enabled says whether it took).
int cu_udp_socket(const cu_addr *bind, int options, int buffer_bytes, int *gro_enabled);
// Makes the kernel pick the socket of a SO_REUSEPORT group by the datagram's source IP address
// (its last 32 bits) modulo `group_size`, instead of by the 4-tuple hash: every socket of one client
// host then reaches the same member. Member i is the i-th socket bound into the group. 0 or -errno.
int cu_steer_by_source_ip(int fd, int family, uint32_t group_size);
// The locally bound address of `fd`; 0 or -errno.
int cu_local_address(int fd, cu_addr *out);
int cu_close(int fd);
// A non-blocking, close-on-exec eventfd; fd or -errno.
int cu_eventfd(void);
// Names the calling thread (first 15 bytes).
void cu_set_thread_name(const char *name);

// MARK: - Plain blocking helpers (tests and the load generator; not used by the workers)

// sendto(dest) of `len` bytes, with a UDP_SEGMENT cmsg when gso_size != 0. Returns bytes or -errno.
int cu_udp_send(int fd, const cu_addr *dest, const void *buf, size_t len, uint16_t gso_size);
// Waits up to timeout_ms for a datagram; returns its length (> cap: truncated), 0 for an empty one,
// -ETIMEDOUT or -errno.
int cu_udp_recv(int fd, void *buf, size_t cap, cu_addr *from, int timeout_ms);

// MARK: - Probe

// Sets up a small ring, checks RECVMSG/SENDMSG/POLL/ASYNC_CANCEL support and registers a buffer
// ring. Returns 0, or a negative errno with *stage = 1 (io_uring_setup), 2 (opcode missing,
// *missing_opcode set), 3 (buffer ring registration, kernel < 5.19), 4 (multishot recvmsg, kernel < 6.0).
int cu_probe(int *stage, int *missing_opcode);

#ifdef __cplusplus
}
#endif

// The batched-syscall backend (epoll + recvmmsg/sendmmsg), same completion shape, no liburing.
#include "CBatched.h"

#endif
