// Batched UDP I/O and epoll for turn-bench. The Glibc Swift module does not expose mmsghdr,
// sendmmsg, recvmmsg or epoll, so these thin wrappers do.
#ifndef CTURNBENCHIO_H
#define CTURNBENCHIO_H

#include <stddef.h>
#include <stdint.h>

typedef struct tb_batch tb_batch;

/// A batch of `capacity` message headers, each with one iovec.
tb_batch *tb_batch_create(unsigned capacity);
void tb_batch_destroy(tb_batch *b);
/// Points message `i` at `base`/`len` and the destination `name`/`namelen` (NULL for none).
void tb_batch_set(tb_batch *b, unsigned i, void *base, size_t len, const void *name, unsigned namelen);
void tb_batch_set_length(tb_batch *b, unsigned i, size_t len);
void tb_batch_set_name(tb_batch *b, unsigned i, const void *name, unsigned namelen);
/// Length of message `i` after tb_recvmmsg.
unsigned tb_batch_received_length(const tb_batch *b, unsigned i);

/// sendmmsg(2) of the first `n` messages; returns how many were sent, or -errno.
int tb_sendmmsg(int fd, tb_batch *b, unsigned n);
/// recvmmsg(2) with MSG_DONTWAIT into the first `n` messages; returns how many, or -errno.
int tb_recvmmsg(int fd, tb_batch *b, unsigned n);

int tb_epoll_create(void);
int tb_epoll_add(int epfd, int fd, uint64_t data);
/// Waits up to `timeout_ms`; writes the data of ready descriptors to `out`; returns the count, or -errno.
int tb_epoll_wait(int epfd, uint64_t *out, int max, int timeout_ms);

#endif
