#ifndef CUDP_H
#define CUDP_H
// The neutral UDP layer both I/O backends (CURing: io_uring, CBatched: epoll + recvmmsg/sendmmsg)
// and the tools build on: the receive slot layout, the address and completion structs the backends
// hand to Swift, socket creation and options, SO_REUSEPORT steering, eventfd, thread names, and
// plain blocking send/receive for tests. Plain syscalls only, nothing of io_uring.
// The cmsg helpers (UDP_SEGMENT, UDP_GRO) and the kernel name check the backends share are in
// CUDPMessage.h, which only C includes.

#include <stdint.h>
#include <stddef.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/uio.h>

#ifdef __cplusplus
extern "C" {
#endif

// MARK: - Receive slot layout (both backends)
//
// A receive slot is filled as:
//   [0, 16)            io_uring: struct io_uring_recvmsg_out; batched syscalls: unused
//   [16, 48)           source address (msg_namelen = 32 >= sizeof(struct sockaddr_in6) = 28)
//   [48, 96)           control messages (msg_controllen = 48 >= CMSG_SPACE(sizeof(int)) = 24 for UDP_GRO)
//   [96, 96 + cap)     payload
// The payload therefore always starts at offset 96: after a backend has decoded the header, name and
// control into a cu_completion, those 96 bytes are free headroom (>= the core's 64).
#define CU_RECV_NAME_BYTES 32u
#define CU_RECV_CONTROL_BYTES 48u
#define CU_RECV_PAYLOAD_OFFSET 96u

// Per-send storage of a backend: room for CU_SEND_MAX_IOV iovecs (GSO segments) per send slot.
#define CU_SEND_MAX_IOV 64u

// MARK: - Addresses

// A socket address as the kernel reads and writes it: sockaddr_in (sin_family AF_INET) or
// sockaddr_in6 (AF_INET6), port and address in network byte order. The C code never converts it;
// the one conversion to and from the relay's TransportAddress is in Swift (SocketAddressing).
typedef union cu_addr {
    struct sockaddr sa;
    struct sockaddr_in in4;
    struct sockaddr_in6 in6;
} cu_addr;

// The length to pass to the kernel with `a`: sizeof(sockaddr_in) or sizeof(sockaddr_in6); 0 for
// any other family.
static inline socklen_t cu_addr_length(const cu_addr *a) {
    return a->sa.sa_family == AF_INET ? (socklen_t)sizeof(struct sockaddr_in)
         : a->sa.sa_family == AF_INET6 ? (socklen_t)sizeof(struct sockaddr_in6) : 0;
}

// MARK: - Completions (both backends)

// The receive continues after this completion (io_uring's IORING_CQE_F_MORE; the batched backend
// sets it while a socket stays watched).
#define CU_CQE_F_MORE 2u

// One completion, decoded. For a receive (has_buffer = 1) the header, source and UDP_GRO segment
// size have been read out of the slot, so its first CU_RECV_PAYLOAD_OFFSET bytes are free.
typedef struct cu_completion {
    uint64_t user_data;
    int32_t res;
    uint32_t cqe_flags;
    uint32_t payload_length;   // receives: bytes of payload at CU_RECV_PAYLOAD_OFFSET
    uint32_t msg_flags;        // receives: MSG_TRUNC / MSG_CTRUNC as reported by the kernel
    uint16_t buffer_id;
    uint16_t gro_segment;      // receives: UDP_GRO segment size, 0 when not coalesced
    uint8_t has_buffer;
    uint8_t valid;             // receives: header and source address complete (AF_INET or AF_INET6)
    cu_addr source;
} cu_completion;

// MARK: - Sockets

enum cu_socket_option {
    CU_SO_REUSEPORT = 1,
    CU_SO_GRO = 2,
    CU_SO_V6ONLY = 4,
    // No UDP checksums on send. The kernel then refuses UDP_SEGMENT with EINVAL, which is how
    // tests exercise the GSO fallback on loopback.
    CU_SO_NO_CHECK = 8,
};

// A blocking UDP socket bound to `bind` (io_uring arms a poll when a call would block; the batched
// backend passes MSG_DONTWAIT); returns fd or -errno. GRO failure is not fatal (*gro_enabled says
// whether it took).
int cu_udp_socket(const cu_addr *bind, int options, int buffer_bytes, int *gro_enabled);
// Makes the kernel pick the socket of a SO_REUSEPORT group by the datagram's source IP address
// (its last 32 bits) modulo `group_size`, instead of by the 4-tuple hash: every socket of one client
// host then reaches the same member. Member i is the i-th socket bound into the group. `family` is
// 4 or 6. A classic BPF program (SO_ATTACH_REUSEPORT_CBPF); 0 or -errno.
int cu_steer_by_source_ip(int fd, int family, uint32_t group_size);
// The locally bound address of `fd`; 0 or -errno (-EAFNOSUPPORT when it is not an IP socket).
int cu_local_address(int fd, cu_addr *out);
int cu_close(int fd);

// MARK: - Stream sockets (TURN over TCP and TLS)

// The user data kind (top byte of a completion's user_data) of a stream receive. Both backends
// put a stream receive's bytes at offset 0 of the slot (no header, name or control: a stream has
// none), `payload_length` = res; a receive of 0 bytes is the peer's end of stream.
#define CU_KIND_STREAM_RECEIVE 6u

// A TCP listening socket bound to `bind_addr` (CU_SO_REUSEPORT: one per worker, the kernel spreads
// connections across them; CU_SO_V6ONLY), SO_REUSEADDR, listening with `backlog`. fd or -errno.
int cu_tcp_listener(const cu_addr *bind_addr, int options, int backlog);
// The remote address of a connected socket (getpeername). 0 or -errno.
int cu_peer_address(int fd, cu_addr *out);

// An outgoing TCP connection (a TCP allocation's Connect, RFC 6062 §5.2) from `local` to `remote`,
// non-blocking. The socket has SO_REUSEADDR and SO_REUSEPORT so that it can share the port of the
// allocation's listening socket (which has them too). fd with *in_progress = 1 (wait for it to
// be writable, then cu_socket_error) or 0 (connected already), or -errno.
int cu_tcp_connect(const cu_addr *local, const cu_addr *remote, int *in_progress);

// SO_ERROR of `fd`: 0, or the errno a non-blocking connect failed with.
int cu_socket_error(int fd);
// An accepted client connection's options: TCP_NODELAY (a relay forwards each message at once).
int cu_stream_configure(int fd);
// Ends a connection for good: shutdown(SHUT_RDWR) wakes any receive or send still pending on it
// (they complete with end of stream or EPIPE), then close.
int cu_stream_close(int fd);
// A non-blocking, close-on-exec eventfd; fd or -errno.
int cu_eventfd(void);
// Names the calling thread (first 15 bytes).
void cu_set_thread_name(const char *name);

// MARK: - Plain blocking helpers (tests and tools; not used by the workers)

// sendto(dest) of `len` bytes, with a UDP_SEGMENT cmsg when gso_size != 0. Returns bytes or -errno.
int cu_udp_send(int fd, const cu_addr *dest, const void *buf, size_t len, uint16_t gso_size);
// Waits up to timeout_ms for a datagram; returns its length (> cap: truncated), 0 for an empty one,
// -ETIMEDOUT or -errno. `from` gets the sender (family 0 if it was not AF_INET/AF_INET6).
int cu_udp_recv(int fd, void *buf, size_t cap, cu_addr *from, int timeout_ms);

#ifdef __cplusplus
}
#endif

#endif
